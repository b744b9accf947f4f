"""The pre-Archon single-image formats that the offline reducers read.

PypeIt (``lbt_mods1r`` … and the ``_proc`` variants), modsCCDRed and modsIDL
read the whole CCD from HDU 0 and know nothing of the Archon's extensions, so a
delivered file is turned into one image here (docs/formats.md has the rules and
where each comes from):

- ``legacy``: unsigned 16-bit raw counts in the MERGED orientation, the 4096
  active columns of each half plus exactly 48 prescan columns at each outer edge
  (the reducers' overscan), every row, no Archon overscan: 8288 x 3088 unbinned.
- ``legacy-proc``: MERGED's bias-subtracted float32 values, the active columns only:
  8192 x 3088 unbinned.

Pure code: a ``Frame`` in, a ``LegacyImage`` out (its header, and a renderer
that fills any band of rows, so a full frame is never held twice in memory).
Every position comes from the geometry model; the pixels are the amplifiers'
stored values placed by ``steps.merged.amp_band`` and MERGED's own renderer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from astropy.io import fits

from modsingest import names
from modsingest.fits.frame import Frame
from modsingest.processing.geometry import Axis, GeometryError, Readout, Section, readout_from_headers
from modsingest.processing.steps import merged as merged_step

FORMATS = ("legacy", "legacy-proc")

#: Prescan columns per outer edge the legacy format keeps (unbinned): the
#: pre-Archon CCD format, whose prescan the reducers use as their overscan.
LEGACY_PRESCAN = 48
#: DETSIZE of the pre-Archon format (PypeIt sizes its amplifier sections from it).
LEGACY_DETSIZE = "[1:8288,1:3088]"
LEGACY_ROWS = 3088

#: azcam-mods' image types in the reducers' vocabulary.  PypeIt and modsIDL know
#: no ZERO: a zero-second exposure with the shutter closed is what they call BIAS.
IMAGETYP = {
    "OBJECT": "OBJECT",
    "STD": "STD",
    "BIAS": "BIAS",
    "ZERO": "BIAS",
    "FLAT": "FLAT",
    "COMP": "COMP",
    "DARK": "DARK",
}

#: Primary cards not carried into the legacy header: structure, the MEF's own
#: bookkeeping, and the checksums (recomputed by the writer).
_DROPPED = {
    "SIMPLE",
    "BITPIX",
    "NAXIS",
    "NAXIS1",
    "NAXIS2",
    "EXTEND",
    "NEXTEND",
    "BZERO",
    "BSCALE",
    "PCOUNT",
    "GCOUNT",
    "CHECKSUM",
    "DATASUM",
    "DETSEC",
}


class LegacyError(ValueError):
    """The frame cannot be given in the requested format; the message says why."""


@dataclass
class LegacyImage:
    """One image in HDU 0: its complete header and a band renderer."""

    header: fits.Header
    shape: tuple[int, int]  # numpy (rows, columns)
    dtype: str  # big-endian numpy dtype of the stored values
    render: Callable[[int, int, np.ndarray], None]
    warnings: list[str]

    @property
    def data(self) -> np.ndarray:
        """The stored values of the whole image (tests, small files)."""
        out = np.empty(self.shape, dtype=self.dtype)
        self.render(0, self.shape[0], out)
        return out

    def bands(self, max_bytes: int = 1 << 20) -> Iterator[np.ndarray]:
        rows, cols = self.shape
        itemsize = np.dtype(self.dtype).itemsize
        step = max(1, max_bytes // max(1, cols * itemsize))
        for first in range(0, rows, step):
            stop = min(rows, first + step)
            out = np.empty((stop - first, cols), dtype=self.dtype)
            self.render(first, stop, out)
            yield out


# --------------------------------------------------------------------------- columns
def full_frame(readout: Readout) -> None:
    """Refuse a readout the reducers cannot use: anything but the whole CCD.

    PypeIt tells its two variants apart by the width alone (NAXIS1 x CCDXBIN
    must be 8288 or 8192; any other width fails inside its reader) and
    modsCCDRed measures the bias in the outer prescans, which an ROI does not
    read.  ROI frames (4k, 3k, 1k) are acquisition and engineering images;
    their MERGED extension is what tools read.
    """
    lo, hi = readout.active_x()
    if readout.prescan < LEGACY_PRESCAN:
        raise LegacyError(
            f"only {readout.prescan} prescan columns per side, the legacy format needs {LEGACY_PRESCAN}"
        )
    lo, hi = lo - LEGACY_PRESCAN, hi + LEGACY_PRESCAN
    if readout.x1 > lo or readout.x2 < hi or readout.y2 - readout.y1 + 1 != LEGACY_ROWS:
        raise LegacyError(
            f"ROI {readout.roi} is not the full frame: PypeIt and modsCCDRed read only whole-CCD "
            f"images ({LEGACY_ROWS} rows, both outer prescans); use the MERGED extension instead"
        )
    if LEGACY_PRESCAN % readout.xbin:
        raise LegacyError(f"{LEGACY_PRESCAN} prescan columns are not whole {readout.xbin}-column bins")


def window(readout: Readout, fmt: str) -> tuple[int, int]:
    """The CCD columns (unbinned, inclusive) an image of ``fmt`` holds.

    ``legacy``: the 4096 active columns of each half and 48 prescan columns at
    each outer edge (2026 files read 50: the outermost 2 are dropped).
    ``legacy-proc``: the active columns only.
    """
    full_frame(readout)
    lo, hi = readout.active_x()
    if fmt == "legacy":
        return lo - LEGACY_PRESCAN, hi + LEGACY_PRESCAN
    return lo, hi


def legacy_x(readout: Readout, x: int) -> int:
    """An Archon CCD column in the pre-Archon numbering (DETSIZE [1:8288,...])."""
    return x - (readout.prescan - LEGACY_PRESCAN)


# --------------------------------------------------------------------------- header
def channel_colour(primary: fits.Header, instrume: str) -> str:
    """CHANNEL as the reducers test it: 'RED' or 'BLUE' (modsProc flips RED)."""
    text = str(primary.get("CHANNEL", "")).strip().upper()
    if text.startswith("R"):
        return "RED"
    if text.startswith("B"):
        return "BLUE"
    return "RED" if instrume.endswith("R") else "BLUE"


def _instrume(frame: Frame, warnings: list[str]) -> str:
    value = str(frame.primary.get("INSTRUME", "")).strip().upper()
    found = names.channel(value)
    if found is not None:
        return found
    found = names.channel_of_name(frame.name)
    if found is not None:
        warnings.append(f"INSTRUME {value or 'missing'!r}: used {found} from the file name")
        return found
    raise LegacyError(
        f"INSTRUME {value or 'missing'!r} is not one of {', '.join(names.CHANNELS)} and the name does not say"
    )


def legacy_header(frame: Frame, fmt: str, readout: Readout, lo: int, hi: int, shape, extra: fits.Header):
    """HDU 0's header: structure, the processed primary's cards, the reducers' keywords."""
    warnings: list[str] = []
    instrume = _instrume(frame, warnings)
    h = fits.Header()
    h["SIMPLE"] = (True, "conforms to FITS standard")
    if fmt == "legacy":
        h["BITPIX"] = (16, "unsigned 16-bit raw counts (BZERO 32768)")
    else:
        h["BITPIX"] = (-32, "float32, bias-subtracted")
    h["NAXIS"] = 2
    h["NAXIS1"] = shape[1]
    h["NAXIS2"] = shape[0]
    if fmt == "legacy":
        h["BZERO"] = 32768
        h["BSCALE"] = 1
    for card in frame.primary.cards:
        if card.keyword not in _DROPPED:
            h.append(card, end=True)
    imagetyp = str(frame.primary.get("IMAGETYP", "")).strip().upper()
    if imagetyp not in IMAGETYP:
        warnings.append(f"IMAGETYP {imagetyp!r} is none of {', '.join(sorted(set(IMAGETYP.values())))}; kept")
    elif IMAGETYP[imagetyp] != imagetyp:
        h["AZIMGTYP"] = (imagetyp, "image type as azcam-mods wrote it")
    h["IMAGETYP"] = (IMAGETYP.get(imagetyp, imagetyp or "None"), "image type (reducers' vocabulary)")
    h["INSTRUME"] = (instrume, "Instrument Name")
    h["CHANNEL"] = (channel_colour(frame.primary, instrume), "MODS Channel [BLUE|RED]")
    for key in ("DETECTOR", "TELESCOP"):
        if key not in h:
            h[key] = "None"
            warnings.append(f"{key} missing; written as 'None'")
    h["DETSIZE"] = (LEGACY_DETSIZE, "pre-Archon detector size")
    h["CCDXBIN"] = (readout.xbin, "column binning")
    h["CCDYBIN"] = (readout.ybin, "row binning")
    prescan = LEGACY_PRESCAN // readout.xbin if fmt == "legacy" else 0
    h["OVERSCNX"] = (prescan, "prescan columns at each outer edge (binned)")
    h["OVERSCNY"] = (0, "overscan rows")
    section = Section(
        Axis(legacy_x(readout, lo), legacy_x(readout, hi), readout.xbin),
        Axis(readout.y2, readout.y1, readout.ybin),
    )
    h["CCDSEC"] = (str(section), "pre-Archon CCD section (rows run in -y)")
    for key, value in section.wcs_cards().items():
        h[key] = (value, "image to pre-Archon CCD transformation")
    for card in extra.cards:
        h[card.keyword] = (card.value, card.comment)
    h["MSIFORM"] = (fmt, "modsingest export format")
    return h, warnings


# --------------------------------------------------------------------------- images
def _check_unsigned16(frame: Frame) -> None:
    for amp in frame.amps:
        if amp.bitpix != 16 or amp.bzero != 32768 or amp.bscale != 1.0:
            raise LegacyError(
                f"{amp.extname} is BITPIX {amp.bitpix} BZERO {amp.bzero:g} BSCALE {amp.bscale:g}, "
                "not the unsigned 16-bit counts the legacy format holds"
            )


def convert(frame: Frame, fmt: str) -> LegacyImage:
    """``frame`` (raw or processed, after the header steps) as a ``fmt`` image."""
    if fmt not in FORMATS:
        raise LegacyError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    try:
        readout, warnings = readout_from_headers(frame.primary, [a.header for a in frame.amps])
        lo, hi = window(readout, fmt)
        cols = readout.merged_columns(lo, hi)
    except GeometryError as exc:
        raise LegacyError(str(exc)) from None
    rows = readout.merged_shape[0]
    shape = (rows, cols.stop - cols.start)
    full_cols = readout.merged_shape[1]
    extra = fits.Header()
    if fmt == "legacy":
        _check_unsigned16(frame)
        dtype = ">i2"
        amps = list(frame.amps)
        fill: Callable[[int, int, np.ndarray], None]

        def fill(first: int, stop: int, out: np.ndarray) -> None:
            for amp in amps:
                placed = merged_step.amp_band(amp, readout, first, stop)
                if placed is not None:
                    out_rows, amp_cols, source = placed
                    out[out_rows, amp_cols] = source

    else:
        dtype = ">f4"
        merged = frame.merged
        if merged is None:
            merged, more = merged_step.build(frame)
            warnings += more
        for key in [k for k in merged.header if k.startswith("Q")]:
            extra[key] = (merged.header[key], merged.header.comments[key])
        extra["BUNIT"] = ("ADU", "bias-subtracted counts")
        fill = merged.render

    def render(first: int, stop: int, out: np.ndarray) -> None:
        whole = np.empty((stop - first, full_cols), dtype=dtype)
        fill(first, stop, whole)
        out[...] = whole[:, cols]

    header, more = legacy_header(frame, fmt, readout, lo, hi, shape, extra)
    return LegacyImage(header=header, shape=shape, dtype=dtype, render=render, warnings=warnings + more)
