"""Step ``merged``: the bias-subtracted MERGED image in pre-Archon orientation.

On-site acquisition tools open HDU 6 and are calibrated for the pre-Archon
MODS orientation, which is the DETSEC mosaic turned upside down; placement and
MERGED's own LTM/LTV/CCDSEC come from the geometry model.  The values must equal
the incumbent's bit for bit: raw integers minus a median that is an integer or
a half-integer are exact in float32, so the subtraction is done straight into
big-endian float32 output, band by band as the writer asks for it (see
``frame.Merged``: a full-frame MERGED is 102 MB and is never held whole).
"""

from __future__ import annotations

import numpy as np
from astropy.io import fits

from modsingest.fits.frame import Merged
from modsingest.processing.geometry import MERGED_QUADRANT, readout_from_headers


def overscan_region(naxis1: int, naxis2: int, data_cols: int) -> tuple[slice, slice]:
    """Bias region: rows 2..NAXIS2-3, columns nd+2..NAXIS1-1 (0-based, inclusive).

    The first two overscan columns and two rows at each end are skipped: they
    can be high (raw-format.md, pixel statistics).
    """
    return slice(2, naxis2 - 2), slice(data_cols + 2, naxis1)


def bias_and_noise(amp, data_cols: int) -> tuple[float, float]:
    rows, cols = overscan_region(amp.shape[1], amp.shape[0], data_cols)
    region = amp.physical(rows, cols)
    if region.size == 0:
        raise ValueError(f"{amp.extname}: overscan region is empty")
    return float(np.median(region)), float(np.std(region))


def amp_band(amp, readout, first: int, stop: int):
    """The part of MERGED rows [first, stop) that ``amp`` fills.

    Returns (rows of ``out``, columns of MERGED, stored-value view already
    flipped) or None when the band misses the amplifier's quadrant.  Every
    amplifier is flipped top-bottom: MERGED row ``r0 + i`` is amplifier row
    ``ny - 1 - i``.
    """
    rows, cols, fliplr = readout.merged_slot(amp.number)
    lo, hi = max(first, rows.start), min(stop, rows.stop)
    if lo >= hi:
        return None
    ny, nd = readout.rows, readout.data_cols
    top = ny - 1 - (lo - rows.start)  # amplifier row of MERGED row lo
    bottom = ny - (hi - rows.start)  # amplifier row of MERGED row hi-1
    source = amp.stored[bottom : top + 1, :nd][::-1]
    if fliplr:
        source = source[:, ::-1]
    return slice(lo - first, hi - first), cols, source


def make_renderer(amps, readout, offsets):
    """A closure filling any band of MERGED; ``offsets[n]`` = BZERO - bias of amp n.

    stored + (BZERO - bias) in float32 is exact: the true value (raw integer
    minus an integer or half-integer median) is representable, and IEEE
    addition rounds to it.  The incumbent's float64 subtraction gives the same.
    """

    def render(first: int, stop: int, out) -> None:
        for amp in amps:
            placed = amp_band(amp, readout, first, stop)
            if placed is None:
                continue
            out_rows, cols, source = placed
            target = out[out_rows, cols]
            if amp.bscale == 1.0:
                np.add(source, np.float32(offsets[amp.number]), out=target, casting="unsafe")
            else:
                scaled = source.astype(np.float64) * amp.bscale
                np.add(scaled, offsets[amp.number], out=target, casting="unsafe")

    return render


def run(frame, ctx) -> list[str]:
    frame.merged, warnings = build(frame)
    return warnings


def build(frame) -> tuple[Merged, list[str]]:
    """The MERGED plan of ``frame`` and the geometry's warnings, ``frame`` untouched.

    The legacy export uses it too (processing/legacy.py): its processed variant
    holds MERGED's values, whether or not the merged step ran.
    """
    readout, warnings = readout_from_headers(frame.primary, [a.header for a in frame.amps])
    nd = readout.data_cols
    header = fits.Header()
    header["BUNIT"] = ("ADU", "bias-subtracted counts")
    offsets = {}
    for amp in frame.amps:
        bias, noise = bias_and_noise(amp, nd)
        offsets[amp.number] = amp.bzero - bias
        q = MERGED_QUADRANT[amp.number]
        header[f"Q{q}BIAS"] = (bias, f"Q{q} median overscan bias [DN] ({amp.extname})")
        header[f"Q{q}STD"] = (noise, f"Q{q} overscan bias stdev [DN] ({amp.extname})")
    section = readout.merged_section()
    for key, value in section.wcs_cards().items():
        header[key] = (value, "MERGED to CCD transformation")
    header["CCDSEC"] = (str(section), "CCD section of MERGED (rows run in -y)")
    render = make_renderer(list(frame.amps), readout, offsets)
    return Merged(shape=readout.merged_shape, render=render, header=header), warnings
