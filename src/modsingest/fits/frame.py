"""The in-memory model of one MODS file, and how it is read.

A ``Frame`` holds what the steps change (headers, the MERGED image) and what
they must not change (the amplifier and CONPARS data blocks, kept as the raw
bytes so the writer can copy them verbatim).  Steps read pixel values through
``Amplifier.stored``, a zero-copy view of those bytes.

Reading is one copy of the file into memory (see ``read`` for why not a
memory map), one structural walk (``fitscheck``, the gate's, with
the same bounds and verdicts) for the offsets,
astropy ``Header`` objects parsed from the exact header bytes, and the CONPARS
table decoded from the same bytes by its TTYPE/TFORM cards.  A file that is not complete FITS raises
``ReadError`` naming the file and the problem; a file that is complete but odd
(no CONPARS, extra HDUs) is read and the oddity left for the steps to warn about.
"""

from __future__ import annotations

import mmap
import os
import stat
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

from modsingest.fits import scan as fitscheck
from modsingest.fits.scan import HDUInfo

#: the card that marks a telemetry table (steps/telemetry.py writes it)
TELEMETRY_MARK = "TELSRC"

_DTYPES = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


class ReadError(Exception):
    """A raw file that cannot be read as a MODS raw file; the message names it.

    ``io`` is True when reading the file failed (EIO, ESTALE, the file cut
    short while it was read): the content may be fine, so it is worth looking
    at the file again.  False means the content itself is not a MODS file.
    """

    def __init__(self, message: str, io: bool = False):
        super().__init__(message)
        self.io = io


@dataclass
class Amplifier:
    """One amplifier extension: its header and its untouched data block."""

    number: int  # 1..4, the position among IM1..IM4 (or Q1..Q4)
    header: fits.Header
    block: memoryview  # the data block as in the file, padding included
    shape: tuple[int, int]  # numpy (NAXIS2, NAXIS1)
    bitpix: int

    @property
    def extname(self) -> str:
        return str(self.header.get("EXTNAME", f"IM{self.number}"))

    @property
    def stored(self) -> np.ndarray:
        """The stored (unscaled) values, a read-only view of the raw bytes."""
        count = self.shape[0] * self.shape[1]
        arr = np.frombuffer(self.block, dtype=_DTYPES[self.bitpix], count=count)
        return arr.reshape(self.shape)

    @property
    def bzero(self) -> float:
        return float(self.header.get("BZERO", 0.0))

    @property
    def bscale(self) -> float:
        return float(self.header.get("BSCALE", 1.0))

    def physical(self, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        """Physical values (BSCALE*stored + BZERO) of a region, float64."""
        region = self.stored[rows, cols].astype(np.float64)
        if self.bscale != 1.0:
            region *= self.bscale
        if self.bzero:
            region += self.bzero
        return region


@dataclass
class Conpars:
    """The Archon STATUS snapshot: header, verbatim data block, decoded rows."""

    header: fits.Header
    block: memoryview
    rows: dict[str, str]


@dataclass
class Merged:
    """The MERGED image made by the merged step, as a plan rather than an array.

    A full-frame MERGED is 8292x3088 float32, 102 MB: holding it whole next to
    the raw file would break the agent's memory budget.  So the step records how
    to render any band of rows (``render(first_row, stop_row, out)`` fills a
    big-endian float32 array of shape (stop-first, columns)), and the writer
    renders band after band straight into the output while earlier bands are
    being written.  ``data`` renders the whole image, for tests and small files.

    ``header`` holds only MERGED's own cards (Q{n}BIAS, LTM/LTV, CCDSEC...);
    the writer puts the final primary cards before them, so MERGED always
    carries the primary as it is after every step, whatever the step order.
    """

    shape: tuple[int, int]  # numpy (rows, columns)
    render: Callable[[int, int, np.ndarray], None]
    header: fits.Header = field(default_factory=fits.Header)

    @property
    def data(self) -> np.ndarray:
        out = np.empty(self.shape, dtype=">f4")
        self.render(0, self.shape[0], out)
        return out

    def bands(self, max_bytes: int = 4 << 20) -> Iterator[np.ndarray]:
        """Successive row bands of at most ``max_bytes`` each, freshly rendered."""
        rows, cols = self.shape
        step = max(1, max_bytes // max(1, cols * 4))
        for first in range(0, rows, step):
            stop = min(rows, first + step)
            out = np.empty((stop - first, cols), dtype=">f4")
            self.render(first, stop, out)
            yield out


@dataclass
class ExtraHDU:
    """An HDU this agent does not know; carried through untouched."""

    header: fits.Header
    block: memoryview


@dataclass
class Frame:
    """Everything the steps see of one file."""

    path: Path
    primary: fits.Header
    amps: list[Amplifier]
    conpars: Conpars | None = None
    merged: Merged | None = None
    #: telemetry tables (the telemetry step), written after MERGED
    tables: list[ExtraHDU] = field(default_factory=list)
    extras: list[ExtraHDU] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    def amp(self, number: int) -> Amplifier:
        return self.amps[number - 1]


def _header(data: memoryview, info: HDUInfo, path: Path) -> fits.Header:
    raw = bytes(data[info.header_offset : info.header_offset + info.header_nbytes])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyUserWarning)
            return fits.Header.fromstring(raw.decode("ascii", "replace"))
    except Exception as exc:  # astropy raises several types for bad cards
        raise ReadError(f"{path}: header of HDU {info.index} unreadable: {exc}") from exc


def _block(data: memoryview, info: HDUInfo) -> memoryview:
    return data[info.data_offset : info.data_offset + info.data_padded]


def decode_conpars(header: fits.Header, block: memoryview) -> dict[str, str]:
    """CONPARS rows as {Keyword: Value}, blanks stripped.

    The columns are located by TTYPE and sized by TFORM ('20A' today), so a
    change in azcam's column order or width is read right rather than mis-sliced.
    """
    width = int(header.get("NAXIS1", 0))
    nrows = int(header.get("NAXIS2", 0))
    if width == 0 or nrows == 0:
        return {}
    raw = np.frombuffer(block, dtype=np.uint8, count=width * nrows).reshape(nrows, width)
    columns: dict[str, tuple[int, int]] = {}
    offset = 0
    for i in range(1, min(int(header.get("TFIELDS", 0)), _MAX_TFIELDS) + 1):
        form = str(header.get(f"TFORM{i}", "")).strip().upper()
        size = _tform_bytes(form)
        columns[str(header.get(f"TTYPE{i}", "")).strip().lower()] = (offset, size)
        offset += size
    if "keyword" not in columns or "value" not in columns:
        return {}
    (ko, kn), (vo, vn) = columns["keyword"], columns["value"]
    keys = raw[:, ko : ko + kn].copy().view(f"S{kn}").ravel()
    values = raw[:, vo : vo + vn].copy().view(f"S{vn}").ravel()
    rows: dict[str, str] = {}
    for key, value in zip(keys, values):
        name = key.decode("ascii", "replace").strip()
        if name:
            rows[name] = value.decode("ascii", "replace").strip()
    return rows


#: The FITS standard's limit on table columns; bounds the loop over a hostile TFIELDS.
_MAX_TFIELDS = 999

_TFORM_SIZES = {"L": 1, "X": 1, "B": 1, "I": 2, "J": 4, "K": 8, "A": 1, "E": 4, "D": 8, "C": 8, "M": 16}


def _tform_bytes(form: str) -> int:
    digits = "".join(ch for ch in form if ch.isdigit())
    letter = form[len(digits) : len(digits) + 1] or "A"
    count = int(digits) if digits else 1
    if letter == "X":
        return -(-count // 8)
    if letter in "PQ":
        return 8 if letter == "P" else 16
    return count * _TFORM_SIZES.get(letter, 1)


def read(path: str | os.PathLike) -> Frame:
    """Read the file at ``path`` into a ``Frame``; ``ReadError`` if it cannot be had.

    The file is copied into this process's memory with one ``preadv``, not
    memory-mapped.  A mapping of the raw file cannot survive the file being
    truncated while it is processed (an operator's ``cp`` over it, a writer on
    another NFS host): touching a mapped page beyond the new end raises SIGBUS,
    which kills the worker, and a ``write`` from such a page fails with EFAULT,
    which used to be reported as a destination error ("cannot publish: Bad
    address").  With a copy, a file truncated or failing under us is a short
    read or an ``OSError`` here, in one place, reported as a raw-side error
    (``ReadError.io``), and everything after works on bytes that cannot change.

    The cost of the copy is the page faults of fresh memory more than the copy
    itself (a full frame: about 20 ms into memory already touched, 60 ms into
    fresh memory), so the buffer is kept for the next file (``_Arena``).
    """
    path = Path(path)
    try:
        # a plain (blocking) open: the gate passes regular files only (and scan,
        # which replay uses first, refuses the rest without blocking)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise ReadError(f"{path}: cannot read: {exc.strerror or exc}", io=True) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ReadError(f"{path}: not a regular file")
        size = st.st_size
        buf = _ARENA.take(size)
        got = os.preadv(fd, [buf], 0) if size else 0
        if got != size:
            raise ReadError(f"{path}: file changed while reading ({got} of {size} bytes)", io=True)
    except OSError as exc:
        raise ReadError(f"{path}: cannot read: {exc.strerror or exc}", io=True) from exc
    finally:
        os.close(fd)
    return from_bytes(buf, path)


class _Arena:
    """One reusable anonymous buffer per process for the raw file being read.

    Reused only when nothing still refers to it: every view of the buffer (the
    previous frame's data blocks) holds a reference to the mapping, so a
    reference count above the arena's own means a frame is still alive and a
    fresh buffer is made instead; the data a live frame sees never changes.
    Held between files, it costs the size of the largest raw file read (about
    52 MB for a full frame) per worker.  The pages are mapped at once
    (``MAP_POPULATE``), which is much cheaper than faulting them one by one.
    """

    def __init__(self) -> None:
        self._map: mmap.mmap | None = None

    def take(self, size: int) -> memoryview | bytearray:
        if size == 0:
            return bytearray()
        current = self._map
        # references: self._map, ``current``, getrefcount's argument
        if current is None or len(current) < size or sys.getrefcount(current) > 3:
            current = None
            self._map = None  # a live frame keeps the old one alive; it is freed with it
            try:
                self._map = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | _POPULATE)
            except (OSError, ValueError):
                return bytearray(size)
            current = self._map
        return memoryview(current)[:size]


_POPULATE = getattr(mmap, "MAP_POPULATE", 0)
_ARENA = _Arena()


def from_bytes(
    buf: bytes | bytearray | memoryview | mmap.mmap, path: str | os.PathLike = "<buffer>"
) -> Frame:
    """Build a ``Frame`` from a whole file held in memory (or mapped)."""
    path = Path(path)
    layout = fitscheck.scan_bytes(buf, path)
    if not layout.complete:
        raise ReadError(f"{path}: " + "; ".join(layout.problems))
    data = memoryview(buf)
    if not data.readonly:
        data = data.toreadonly()
    primary = _header(data, layout.hdus[0], path)
    amps = []
    for number, info in enumerate(layout.hdus[1:5], start=1):
        amps.append(
            Amplifier(
                number=number,
                header=_header(data, info, path),
                block=_block(data, info),
                shape=(info.shape[1], info.shape[0]),
                bitpix=info.bitpix,
            )
        )
    frame = Frame(path=path, primary=primary, amps=amps)
    for info in layout.hdus[5:]:
        header = _header(data, info, path)
        if info.extname == "CONPARS" and frame.conpars is None:
            block = _block(data, info)
            frame.conpars = Conpars(header=header, block=block, rows=_decode_table(header, block))
        elif info.extname == "MERGED":
            continue  # a processed file read again: rebuilt by the merged step, never appended twice
        elif info.xtension == "BINTABLE" and TELEMETRY_MARK in header:
            # a processed file read again: kept, and replaced by name if the telemetry step runs
            frame.tables.append(ExtraHDU(header=header, block=_block(data, info)))
        else:
            frame.extras.append(ExtraHDU(header=header, block=_block(data, info)))
    return frame


def _decode_table(header: fits.Header, block: memoryview) -> dict[str, str]:
    """CONPARS rows; an undecodable table is kept verbatim with no rows."""
    try:
        return decode_conpars(header, block)
    except Exception:  # a broken table must not stop delivery
        return {}
