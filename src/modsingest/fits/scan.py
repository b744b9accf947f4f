"""Completeness check of a raw MODS file by its content, with a verdict.

Why a content check and not just "the writer closed it": azcam writes every file
twice under its final name (PRIMARY+IM1..IM4, then CONPARS appended in update
mode), the raw disks are NFS mounts written by another host, and a reader that
trusts a close event or a size alone can pick up a file mid-write.  This module
walks the FITS structure block by block and says exactly what is missing.  It
never raises for a content problem: the answer is a ``Layout``.

The API (used by the gate, replay and the worker's reader, which all walk a
file with this one function)::

    layout = scan(path)            # or scan_bytes(data, path)
    layout.verdict                 # Verdict.COMPLETE / INCOMPLETE / IMPOSSIBLE
    layout.complete                # verdict is COMPLETE
    layout.impossible              # verdict is IMPOSSIBLE
    layout.reason                  # one line naming the file and the problem ('' if complete)
    layout.problems                # the problem sentences, without the path
    layout.has_conpars, layout.hdus

The three verdicts:

- ``COMPLETE``: every header ends in END, the data sizes add up, the file is a
  whole number of blocks equal to the sum of the HDUs, and a primary plus four
  amplifier extensions are there.  CONPARS is judged apart (``has_conpars``).
- ``INCOMPLETE``: what is there is a prefix of a possible MODS file, so the file
  may still grow into one: cut anywhere (inside a card, at a block boundary,
  before an END or inside a data block), fewer than five HDUs so far, NUL bytes
  where a header should be (a network file system can show a file's new size
  before the bytes written by the other host), zero padding after the last HDU.
  Wait for it (``watch.incomplete_timeout``).
- ``IMPOSSIBLE``: no amount of appending can make this content a MODS file,
  so waiting is pointless: the first card is not ``SIMPLE = T``; a header holds
  a byte that is not printable ASCII; BITPIX is not one of 8, 16, 32, 64, -32,
  -64; NAXIS is not in 0..999; NAXISn, PCOUNT or GCOUNT is negative, unreadable
  or absurd (an HDU or file beyond ``MAX_FILE_BYTES``); a size keyword is
  missing from a finished header; an extension does not start with XTENSION;
  a header has no END within ``MAX_HEADER_BLOCKS`` blocks; more than
  ``MAX_HDUS`` HDUs; the amplifier extensions are misnamed or not 2-D images.
  The content can still be *replaced* (rewritten in place, renamed over), so a
  watcher reports it at once and looks again only when the file changes.

Every loop here is bounded by the content it is given: the walk moves forward
by at least one block per HDU and stops after ``MAX_HDUS``, a header is read at
most ``MAX_HEADER_BLOCKS`` blocks, and sizes are checked before any offset is
computed from them, so a hostile header can neither send the walk backwards nor
make it run long.

The same walk gives the byte offsets of every header and data block, which the
reader uses to copy the amplifier and CONPARS blocks verbatim into the output.
"""

from __future__ import annotations

import enum
import os
import stat
from dataclasses import dataclass, field
from mmap import mmap
from pathlib import Path

BLOCK = 2880
CARD = 80
_CARDS_PER_BLOCK = BLOCK // CARD

#: Names the four amplifier extensions carry (2026 on / December 2025).
AMP_NAMES = (("IM1", "IM2", "IM3", "IM4"), ("Q1", "Q2", "Q3", "Q4"))

#: Bounds of the walk.  A MODS file has 6 or 7 HDUs, a primary header of about
#: 8 blocks, and is at most about 160 MB (a full frame with MERGED); these are
#: far above that and far below anything that would make a look slow.
MAX_HDUS = 100
MAX_HEADER_BLOCKS = 100
MAX_FILE_BYTES = 1 << 32  # 4 GiB, 25 times a full frame with MERGED
MAX_NAXIS = 999  # the FITS standard's own limit

_BITPIX = (8, 16, 32, 64, -32, -64)


def padded(nbytes: int) -> int:
    """Size of ``nbytes`` rounded up to whole 2880-byte FITS blocks."""
    return -(-nbytes // BLOCK) * BLOCK


class Verdict(enum.StrEnum):
    """What one look at a file's content says (see the module docstring)."""

    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    IMPOSSIBLE = "impossible"


@dataclass(frozen=True)
class HDUInfo:
    """Where one HDU sits in the file and the few cards that define its size."""

    index: int
    header_offset: int
    header_nbytes: int  # whole blocks, END card included
    data_offset: int
    data_nbytes: int  # exact size of the data, without padding
    extname: str  # '' for the primary or an unnamed extension
    xtension: str  # '' for the primary
    bitpix: int
    shape: tuple[int, ...]  # NAXIS1, NAXIS2, ... as in the header

    @property
    def data_padded(self) -> int:
        return padded(self.data_nbytes)

    @property
    def end_offset(self) -> int:
        return self.data_offset + self.data_padded


@dataclass
class Layout:
    """The structure of a file as found, and what keeps it from being complete.

    ``problems`` empty means the file is complete.  When it is not, ``verdict``
    says whether it may still become complete (INCOMPLETE) or never can
    (IMPOSSIBLE).  CONPARS is judged apart (``has_conpars``) because azcam
    appends it in a second pass and the gate waits for it only up to a grace
    period.
    """

    path: str
    size: int
    hdus: list[HDUInfo] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: set by the walk when a problem can never be cured by the file growing
    hopeless: bool = False

    @property
    def complete(self) -> bool:
        return not self.problems

    @property
    def verdict(self) -> Verdict:
        if not self.problems:
            return Verdict.COMPLETE
        return Verdict.IMPOSSIBLE if self.hopeless else Verdict.INCOMPLETE

    @property
    def impossible(self) -> bool:
        return self.verdict is Verdict.IMPOSSIBLE

    @property
    def reason(self) -> str:
        """One line naming the file and the problem; '' when complete."""
        return "" if self.complete else self.describe()

    @property
    def has_conpars(self) -> bool:
        return any(h.extname == "CONPARS" for h in self.hdus)

    def describe(self) -> str:
        """One line for logs and error messages."""
        if self.complete:
            extra = "" if self.has_conpars else " (no CONPARS yet)"
            return f"{self.path}: complete, {len(self.hdus)} HDUs, {self.size} bytes{extra}"
        return f"{self.path}: " + "; ".join(self.problems)

    def _incomplete(self, problem: str) -> None:
        self.problems.append(problem)

    def _impossible(self, problem: str) -> None:
        self.problems.append(problem)
        self.hopeless = True


class _Impossible(Exception):
    """Internal: the walk met content no file can grow out of."""


class _Incomplete(Exception):
    """Internal: the walk ran out of content (or met unwritten bytes)."""


def _card_value(card: bytes) -> str:
    """The raw value text of a fixed-format card, comment removed."""
    text = card[10:].decode("ascii", "replace")
    if text.lstrip().startswith("'"):
        start = text.index("'")
        end = start + 1
        while True:  # bounded: ``end`` moves forward through a 70-character string
            end = text.find("'", end)
            if end < 0:
                return text[start + 1 :].rstrip()
            if end + 1 < len(text) and text[end + 1] == "'":
                end += 2
                continue
            return text[start + 1 : end].replace("''", "'").rstrip()
    return text.split("/", 1)[0].strip()


_STRUCTURAL = {"SIMPLE", "XTENSION", "BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "EXTNAME"}
_PRINTABLE = bytes(range(0x20, 0x7F))


def _where(index: int) -> str:
    return "primary header" if index == 0 else f"header of HDU {index}"


def _check_card(card: bytes, at: int, index: int) -> None:
    """Refuse a card that cannot be in any FITS header (or is not written yet)."""
    bad = card.translate(None, _PRINTABLE)
    if not bad:
        return
    if bad.count(0) == len(bad):
        raise _Incomplete(f"{_where(index)} has NUL bytes at byte {at} (not written yet?)")
    byte = next(b for b in bad if b != 0)
    raise _Impossible(f"{_where(index)} has a non-ASCII byte 0x{byte:02x} in the card at byte {at}")


def _int_card(cards: dict[str, str], name: str, index: int, default: int | None = None) -> int:
    text = cards.get(name)
    if text is None or text == "":
        if default is None:
            raise _Impossible(f"HDU {index} has no {name} card")
        return default
    try:
        return int(text)
    except ValueError:
        raise _Impossible(f"HDU {index} has an unreadable {name} = {text[:20]!r}") from None


def _parse_header(buf, offset: int, size: int, index: int) -> tuple[dict[str, str], int]:
    """Read cards from ``offset`` until END, at most ``MAX_HEADER_BLOCKS`` blocks.

    Returns the structural keywords and the header size in bytes (whole
    blocks).  Raises ``_Incomplete`` when the content ends first (whatever is
    there is checked first, so a bad byte in a partial header is found at
    once) and ``_Impossible`` for content no header can hold.
    """
    cards: dict[str, str] = {}
    for nblock in range(MAX_HEADER_BLOCKS):
        pos = offset + nblock * BLOCK
        block = bytes(buf[pos : min(size, pos + BLOCK)])
        if nblock == 0:
            _check_first(block[:CARD], index, offset)
        if block.translate(None, _PRINTABLE):
            # find the first card holding the bad byte (rare path)
            for i in range(0, len(block), CARD):
                _check_card(block[i : i + CARD], pos + i, index)
        for i in range(len(block) // CARD):
            card = block[i * CARD : (i + 1) * CARD]
            key = card[:8].rstrip()
            if key == b"END":
                if len(block) < BLOCK:
                    raise _Incomplete(
                        f"{_where(index)} is cut inside its last block (file cut at byte {size})"
                    )
                return cards, pos + BLOCK - offset
            if card[8:10] == b"= " and key:
                name = key.decode("ascii")
                if name in _STRUCTURAL or name.startswith("NAXIS"):
                    cards[name] = _card_value(card)
        if len(block) < BLOCK:
            raise _Incomplete(f"{_where(index)} ends without an END card (file cut at byte {size})")
    raise _Impossible(f"{_where(index)} has no END card within {MAX_HEADER_BLOCKS} blocks")


_SIMPLE_T = b"SIMPLE  =                    T"


def _check_first(card: bytes, index: int, offset: int) -> None:
    """The primary must open with ``SIMPLE = T``; an extension with XTENSION."""
    if b"\0" in card:
        # NFS can show a file's new length before its bytes: not written yet,
        # so incomplete (looked at again), never impossible
        _check_card(card, offset, index)
    if index == 0:
        if len(card) < len(_SIMPLE_T):
            if not _SIMPLE_T.startswith(card):
                raise _Impossible("not a FITS file (does not start with SIMPLE = T)")
            return
        if card[:10] != b"SIMPLE  = " or _card_value(card) != "T":
            raise _Impossible("not a FITS file (does not start with SIMPLE = T)")
    elif not (card[:10] == b"XTENSION= " or b"XTENSION= ".startswith(card)):
        raise _Impossible(f"HDU {index} does not start with XTENSION")


def _data_size(cards: dict[str, str], index: int) -> tuple[int, int, tuple[int, ...]]:
    """BITPIX, exact data size and shape of a finished header; ``_Impossible`` if absurd."""
    bitpix = _int_card(cards, "BITPIX", index)
    if bitpix not in _BITPIX:
        raise _Impossible(f"HDU {index} has an invalid BITPIX {bitpix}")
    naxis = _int_card(cards, "NAXIS", index)
    if not 0 <= naxis <= MAX_NAXIS:
        raise _Impossible(f"HDU {index} has NAXIS = {naxis}, outside 0..{MAX_NAXIS}")
    shape = tuple(_int_card(cards, f"NAXIS{i}", index) for i in range(1, naxis + 1))
    pcount = _int_card(cards, "PCOUNT", index, 0)
    gcount = _int_card(cards, "GCOUNT", index, 1)
    for name, value in [(f"NAXIS{i}", n) for i, n in enumerate(shape, 1)] + [
        ("PCOUNT", pcount),
        ("GCOUNT", gcount),
    ]:
        if value < 0:
            raise _Impossible(f"HDU {index} has a negative size: {name} = {value}")
        if value > MAX_FILE_BYTES:
            raise _Impossible(f"HDU {index} has an absurd size: {name} = {value}")
    count = 0
    if naxis:
        count = 1
        for n in shape:  # at most MAX_NAXIS factors of at most 37 bits each
            count *= n
    nbytes = abs(bitpix) // 8 * gcount * (pcount + count)
    if nbytes > MAX_FILE_BYTES:
        raise _Impossible(f"HDU {index} data size overflows: more than {MAX_FILE_BYTES} bytes")
    return bitpix, nbytes, shape


def scan_buffer(buf, size: int, path: str = "<buffer>") -> Layout:
    """Walk the HDUs of a FITS image held in ``buf`` (bytes, mmap or memoryview)."""
    layout = Layout(path=path, size=size)
    if size == 0:
        layout._incomplete("file is empty")
        return layout
    try:
        _walk(buf, size, layout)
    except _Impossible as exc:
        layout._impossible(str(exc))
    except _Incomplete as exc:
        layout._incomplete(str(exc))
    if not layout.problems and size % BLOCK:
        layout._incomplete(f"file size {size} is not a whole number of 2880-byte blocks")
    if not layout.problems:
        _check_expected(layout)
    return layout


def _walk(buf, size: int, layout: Layout) -> None:
    offset = 0
    for index in range(MAX_HDUS):
        cards, hsize = _parse_header(buf, offset, size, index)
        bitpix, nbytes, shape = _data_size(cards, index)
        info = HDUInfo(
            index=index,
            header_offset=offset,
            header_nbytes=hsize,
            data_offset=offset + hsize,
            data_nbytes=nbytes,
            extname=cards.get("EXTNAME", "").strip(),
            xtension=cards.get("XTENSION", "").strip(),
            bitpix=bitpix,
            shape=shape,
        )
        if info.end_offset > MAX_FILE_BYTES:
            raise _Impossible(f"HDU {index} would end at byte {info.end_offset}, beyond any MODS file")
        layout.hdus.append(info)
        if info.end_offset > size:
            name = info.extname or f"HDU {index}"
            raise _Incomplete(f"{name} data cut short: needs {info.end_offset} bytes, file has {size}")
        offset = info.end_offset  # always forward: a header is at least one block
        if offset >= size:
            return
        # Trailing zero blocks (some writers pre-allocate) would read as a
        # header without END; a block of NULs is not an HDU.
        if bytes(buf[offset : offset + 8]) in (b"\0" * 8, b" " * 8):
            raise _Incomplete(f"{size - offset} bytes of padding after the last HDU")
    raise _Impossible(f"more than {MAX_HDUS} HDUs")


def _check_expected(layout: Layout) -> None:
    """The MODS shape: fewer than five HDUs may still grow; misnamed or odd amplifiers cannot."""
    names = [h.extname for h in layout.hdus[1:5]]
    if len(layout.hdus) < 5:
        have = [h.extname or ("PRIMARY" if h.index == 0 else f"HDU {h.index}") for h in layout.hdus]
        layout._incomplete(f"only {', '.join(have)}: a MODS file has a primary and 4 amplifier extensions")
        return
    if tuple(names) not in AMP_NAMES:
        layout._impossible(f"HDUs 1-4 are named {names}, expected IM1..IM4 (or Q1..Q4 before 2026)")
        return
    for h in layout.hdus[1:5]:
        if h.xtension != "IMAGE" or len(h.shape) != 2:
            layout._impossible(f"{h.extname} is not a 2-D image extension")
        elif h.data_nbytes != abs(h.bitpix) // 8 * h.shape[0] * h.shape[1]:
            # PCOUNT/GCOUNT other than 0/1: the pixels would not be where the shape says
            layout._impossible(
                f"{h.extname} data size {h.data_nbytes} does not match its shape (PCOUNT/GCOUNT)"
            )


class _PreadBuffer:
    """Slices of an open file read on demand, so a scan reads headers only.

    The gate looks at a file every poll interval; reading 52 MB each time to
    find six headers would be wasteful, and a memory map of a file on NFS that
    another host is still writing can fault.
    """

    def __init__(self, fd: int):
        self._fd = fd

    def __getitem__(self, item: slice) -> bytes:
        start = item.start or 0
        return os.pread(self._fd, item.stop - start, start)


def scan(path: str | os.PathLike) -> Layout:
    """Walk the file at ``path``; unreadable files are a problem, not an exception.

    Opened non-blocking, so a FIFO (or a device) named like a raw file cannot
    hang the caller in ``open``; anything but a regular file is impossible.
    """
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        layout = Layout(path=path, size=0)
        layout._incomplete(f"cannot open: {exc.strerror or exc}")
        return layout
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            layout = Layout(path=path, size=0)
            layout._impossible("not a regular file")
            return layout
        return scan_buffer(_PreadBuffer(fd), st.st_size, path)
    except OSError as exc:
        layout = Layout(path=path, size=0)
        layout._incomplete(f"cannot read: {exc.strerror or exc}")
        return layout
    finally:
        os.close(fd)


def scan_bytes(data: bytes | bytearray | memoryview | mmap, path: str | Path = "<buffer>") -> Layout:
    """Walk an in-memory copy of a file (the reader reads once and walks that)."""
    return scan_buffer(data, len(data), os.fspath(path))
