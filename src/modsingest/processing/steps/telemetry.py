"""telemetry: the guider, WFS and weather rows of the exposure as BINTABLE extensions.

The rows were read before the steps ran (``processing/telemetry.py``) and come
in ``ctx.telemetry`` as plain tables; this step only lays them out as FITS
binary tables (one per source, EXTNAME = the source's name, TUNITn = the
configured units, TELSRC = the file read) and says in the primary which were
attached (``TELTABS``).  The writer puts them after MERGED, so MERGED stays at
index 6.  A source's problem (missing, unreadable, not yet written to the end
of the exposure) is returned as a warning: the log and HISTORY say it, and the
file is delivered with whatever tables there are.

Idempotent: a table of the same name from an earlier run is replaced, and
TELTABS is rewritten.
"""

from __future__ import annotations

import numpy as np
from astropy.io import fits

from modsingest.fits.frame import TELEMETRY_MARK, ExtraHDU, Frame
from modsingest.fits.scan import padded
from modsingest.processing.steps import StepContext, fitting_comment
from modsingest.processing.telemetry import iso

CARD = "TELTABS"
SOURCE_CARD = TELEMETRY_MARK  # how a reread processed file's tables are recognised


def run(frame: Frame, ctx: StepContext) -> list[str]:
    telemetry = ctx.telemetry
    if telemetry is None:
        return ["no telemetry source configured: nothing attached"]
    warnings = list(telemetry.problems)
    names = []
    for table in telemetry.tables:
        header, block = bintable(table, telemetry.window)
        frame.tables = [t for t in frame.tables if t.header.get("EXTNAME") != table.name]
        frame.tables.append(ExtraHDU(header=header, block=memoryview(block)))
        names.append(f"{table.name}({table.rows})")
    _set(frame.primary, CARD, ",".join(names) or "none", "telemetry tables (rows) after MERGED")
    return warnings


def _set(header: fits.Header, keyword: str, value, comment: str) -> None:
    header[keyword] = (value, fitting_comment(keyword, value, comment))


def _format(values: np.ndarray) -> tuple[str, np.dtype]:
    """(TFORM, big-endian dtype) of a column: float64 as D, text as nA."""
    if values.dtype.kind == "f":
        return "D", np.dtype(">f8")
    width = max(1, int(values.dtype.itemsize))
    return f"{width}A", np.dtype(f"S{width}")


def bintable(table, window) -> tuple[fits.Header, bytes]:
    """The BINTABLE header and its padded data block, built in memory."""
    forms = [_format(values) for _, values, _ in table.columns]
    dtype = np.dtype([(f"c{i}", dt) for i, (_, dt) in enumerate(forms)])
    rows = np.zeros(table.rows, dtype=dtype)
    for i, (_, values, _) in enumerate(table.columns):
        rows[f"c{i}"] = values
    data = rows.tobytes()
    h = fits.Header()
    h["XTENSION"] = ("BINTABLE", "binary table extension")
    h["BITPIX"] = 8
    h["NAXIS"] = 2
    h["NAXIS1"] = (dtype.itemsize, "bytes per row")
    h["NAXIS2"] = (table.rows, "rows in the exposure window")
    h["PCOUNT"] = 0
    h["GCOUNT"] = 1
    h["TFIELDS"] = len(table.columns)
    for i, ((name, _, unit), (form, _)) in enumerate(zip(table.columns, forms), start=1):
        h[f"TTYPE{i}"] = name
        h[f"TFORM{i}"] = form
        if unit:
            h[f"TUNIT{i}"] = unit
    _set(h, "EXTNAME", table.name, "telemetry table")
    _set(h, SOURCE_CARD, _fits_text(table.source), "telemetry source file")
    if window is not None:
        h["TELBEG"] = (iso(window[0]), "UTC start of the rows' window (margin incl.)")
        h["TELEND"] = (iso(window[1]), "UTC end of the rows' window (margin incl.)")
    return h, data + bytes(padded(len(data)) - len(data))


def _fits_text(text: str) -> str:
    """ASCII only (FITS header values); a long path goes on CONTINUE cards."""
    return text.encode("ascii", "replace").decode("ascii")
