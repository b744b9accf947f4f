"""Completeness check of a raw MODS file by its content.

Why a content check and not just "the writer closed it": azcam writes every file
twice under its final name (PRIMARY+IM1..IM4, then CONPARS appended in update
mode), the raw disks are NFS mounts written by another host, and a reader that
trusts a close event or a size alone can pick up a file mid-write.  This module
walks the FITS structure block by block and says exactly what is missing.  It
never raises for a content problem: the answer is a ``Layout`` whose
``problems`` list is empty when the file is structurally complete.

The same walk gives the byte offsets of every header and data block, which the
reader uses to copy the amplifier and CONPARS blocks verbatim into the output.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

BLOCK = 2880
CARD = 80
_CARDS_PER_BLOCK = BLOCK // CARD

#: Names the four amplifier extensions carry (2026 on / December 2025).
AMP_NAMES = (("IM1", "IM2", "IM3", "IM4"), ("Q1", "Q2", "Q3", "Q4"))


def padded(nbytes: int) -> int:
    """Size of ``nbytes`` rounded up to whole 2880-byte FITS blocks."""
    return -(-nbytes // BLOCK) * BLOCK


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

    ``problems`` empty means every header parses and ends in END, the data sizes
    add up, the file is a whole number of blocks equal to the sum of the HDUs,
    and a primary plus four amplifier extensions are there.  CONPARS is judged
    apart (``has_conpars``) because azcam appends it in a second pass and the
    gate waits for it only up to a grace period.
    """

    path: str
    size: int
    hdus: list[HDUInfo] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.problems

    @property
    def has_conpars(self) -> bool:
        return any(h.extname == "CONPARS" for h in self.hdus)

    def describe(self) -> str:
        """One line for logs and error messages."""
        if self.complete:
            extra = "" if self.has_conpars else " (no CONPARS yet)"
            return f"{self.path}: complete, {len(self.hdus)} HDUs, {self.size} bytes{extra}"
        return f"{self.path}: " + "; ".join(self.problems)


def _card_value(card: bytes) -> str:
    """The raw value text of a fixed-format card, comment removed."""
    text = card[10:].decode("ascii", "replace")
    if text.lstrip().startswith("'"):
        start = text.index("'")
        end = start + 1
        while True:
            end = text.find("'", end)
            if end < 0:
                return text[start + 1 :].rstrip()
            if end + 1 < len(text) and text[end + 1] == "'":
                end += 2
                continue
            return text[start + 1 : end].replace("''", "'").rstrip()
    return text.split("/", 1)[0].strip()


def _parse_header(buf, offset: int, size: int, index: int) -> tuple[dict[str, str], int] | str:
    """Read cards from ``offset`` until END.

    Returns the structural keywords and the header size in bytes (whole blocks),
    or a problem sentence when the header is cut short or malformed.
    """
    cards: dict[str, str] = {}
    pos = offset
    while True:
        if pos + BLOCK > size:
            where = "primary header" if index == 0 else f"header of HDU {index}"
            return f"{where} ends without an END card (file cut at byte {size})"
        block = bytes(buf[pos : pos + BLOCK])
        for i in range(_CARDS_PER_BLOCK):
            card = block[i * CARD : (i + 1) * CARD]
            key = card[:8].rstrip()
            if key == b"END":
                return cards, pos + BLOCK - offset
            if card[8:10] == b"= " and key:
                name = key.decode("ascii", "replace")
                if name in _STRUCTURAL or name.startswith("NAXIS"):
                    cards[name] = _card_value(card)
        pos += BLOCK


_STRUCTURAL = {"SIMPLE", "XTENSION", "BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "EXTNAME"}


def _data_size(cards: dict[str, str], index: int) -> tuple[int, int, tuple[int, ...]] | str:
    try:
        bitpix = int(cards["BITPIX"])
        naxis = int(cards["NAXIS"])
        shape = tuple(int(cards[f"NAXIS{i}"]) for i in range(1, naxis + 1))
        pcount = int(cards.get("PCOUNT", "0") or 0)
        gcount = int(cards.get("GCOUNT", "1") or 1)
    except (KeyError, ValueError) as exc:
        return f"HDU {index} has a missing or unreadable size keyword ({exc})"
    if bitpix not in (8, 16, 32, 64, -32, -64):
        return f"HDU {index} has an invalid BITPIX {bitpix}"
    count = 0
    if naxis:
        count = 1
        for n in shape:
            count *= n
    nbytes = abs(bitpix) // 8 * gcount * (pcount + count)
    return bitpix, nbytes, shape


def scan_buffer(buf, size: int, path: str = "<buffer>") -> Layout:
    """Walk the HDUs of a FITS image held in ``buf`` (bytes, mmap or memoryview)."""
    layout = Layout(path=path, size=size)
    if size == 0:
        layout.problems.append("file is empty")
        return layout
    if size < BLOCK or bytes(buf[:9]) != b"SIMPLE  =":
        layout.problems.append("not a FITS file (does not start with a SIMPLE card)")
        return layout
    offset = 0
    index = 0
    while offset < size:
        parsed = _parse_header(buf, offset, size, index)
        if isinstance(parsed, str):
            layout.problems.append(parsed)
            break
        cards, hsize = parsed
        if index > 0 and "XTENSION" not in cards:
            layout.problems.append(f"HDU {index} at byte {offset} does not start with XTENSION")
            break
        sized = _data_size(cards, index)
        if isinstance(sized, str):
            layout.problems.append(sized)
            break
        bitpix, nbytes, shape = sized
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
        if info.end_offset > size:
            name = info.extname or f"HDU {index}"
            layout.problems.append(f"{name} data cut short: needs {info.end_offset} bytes, file has {size}")
            layout.hdus.append(info)
            break
        layout.hdus.append(info)
        offset = info.end_offset
        index += 1
        # Trailing zero blocks (some writers pre-allocate) would read as a
        # header without END; a block of NULs is not an HDU.
        if offset < size and bytes(buf[offset : offset + 8]) in (b"\0" * 8, b" " * 8):
            layout.problems.append(f"{size - offset} bytes of padding after the last HDU")
            break
    if size % BLOCK and not layout.problems:
        layout.problems.append(f"file size {size} is not a whole number of 2880-byte blocks")
    if not layout.problems:
        _check_expected(layout)
    return layout


def _check_expected(layout: Layout) -> None:
    names = [h.extname for h in layout.hdus[1:5]]
    if len(layout.hdus) < 5:
        have = [h.extname or ("PRIMARY" if h.index == 0 else f"HDU {h.index}") for h in layout.hdus]
        layout.problems.append(
            f"only {', '.join(have)}: a MODS file has a primary and 4 amplifier extensions"
        )
        return
    if tuple(names) not in AMP_NAMES:
        layout.problems.append(f"HDUs 1-4 are named {names}, expected IM1..IM4 (or Q1..Q4 before 2026)")
        return
    for h in layout.hdus[1:5]:
        if h.xtension != "IMAGE" or len(h.shape) != 2:
            layout.problems.append(f"{h.extname} is not a 2-D image extension")


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
    """Walk the file at ``path``; unreadable files are a problem, not an exception."""
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        layout = Layout(path=path, size=0)
        layout.problems.append(f"cannot open: {exc.strerror or exc}")
        return layout
    try:
        size = os.fstat(fd).st_size
        return scan_buffer(_PreadBuffer(fd), size, path)
    except OSError as exc:
        layout = Layout(path=path, size=0)
        layout.problems.append(f"cannot read: {exc.strerror or exc}")
        return layout
    finally:
        os.close(fd)


def scan_bytes(data: bytes | bytearray | memoryview, path: str | Path = "<buffer>") -> Layout:
    """Walk an in-memory copy of a file (the reader reads once and walks that)."""
    return scan_buffer(data, len(data), os.fspath(path))
