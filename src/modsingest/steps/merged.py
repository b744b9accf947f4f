"""Step ``merged``: the bias-subtracted MERGED image in pre-Archon orientation.

On-site acquisition tools open HDU 6 and are calibrated for the pre-Archon
MODS orientation, which is the DETSEC mosaic turned upside down; placement and
MERGED's own LTM/LTV/CCDSEC come from the geometry model.  The values must equal
the incumbent's bit for bit: raw integers minus a median that is an integer or
a half-integer are exact in float32, so the subtraction is done straight into a
preallocated big-endian float32 buffer, one pass per amplifier.
"""

from __future__ import annotations

import numpy as np
from astropy.io import fits

from ..frame import Merged
from ..geometry import MERGED_QUADRANT, readout_from_headers


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


def run(frame, ctx) -> list[str]:
    readout, warnings = readout_from_headers(frame.primary, [a.header for a in frame.amps])
    nd = readout.data_cols
    out = np.empty(readout.merged_shape, dtype=">f4")
    header = fits.Header()
    header["BUNIT"] = ("ADU", "bias-subtracted counts")
    for amp in frame.amps:
        bias, noise = bias_and_noise(amp, nd)
        rows, cols, fliplr = readout.merged_slot(amp.number)
        target = out[rows, cols]
        if amp.bscale == 1.0:
            source = amp.stored[::-1, :nd]
            if fliplr:
                source = source[:, ::-1]
            np.add(source, np.float32(amp.bzero - bias), out=target, casting="unsafe")
        else:
            source = amp.physical(slice(None, None, -1), slice(0, nd))
            if fliplr:
                source = source[:, ::-1]
            np.subtract(source, bias, out=target, casting="unsafe")
        q = MERGED_QUADRANT[amp.number]
        header[f"Q{q}BIAS"] = (bias, f"Q{q} median overscan bias [DN] ({amp.extname})")
        header[f"Q{q}STD"] = (noise, f"Q{q} overscan bias stdev [DN] ({amp.extname})")
    section = readout.merged_section()
    for key, value in section.wcs_cards().items():
        header[key] = (value, "MERGED to CCD transformation")
    header["CCDSEC"] = (str(section), "CCD section of MERGED (rows run in -y)")
    frame.merged = Merged(data=out, header=header)
    return warnings
