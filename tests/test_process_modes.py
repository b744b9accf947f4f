"""`modsingest process` on simulator files of every ROI mode, binning and geometry.

Besides the header values, MERGED is checked against the simulator's own idea of
where each amplifier pixel sits on the CCD (``Roi.true_axes``, written without the
geometry model): every amplifier pixel, mapped through MERGED's LTM/LTV, must land
on the MERGED pixel holding its bias-subtracted value, and through its own
extension's LTM/LTV on its own array position.
"""

import warnings

import numpy as np
import pytest
from astropy.io import fits

from conftest import assert_fitsverify_ok
from modsingest import sim as sim
from modsingest.cli import main

MODES = [
    ("full", (1, 1), 2026),
    ("full", (2, 2), 2026),
    ("4k", (1, 1), 2026),
    ("4k", (2, 2), 2026),
    ("3k", (1, 1), 2026),
    ("3k", (2, 2), 2026),
    ("1k", (1, 1), 2026),
    ("1k", (2, 2), 2026),
    ("1k", (1, 2), 2026),
    ("full", (2, 2), 2025),
    ("3k", (2, 1), 2025),
    ("1k", (1, 1), 2025),
]
ROI = {
    2026: {
        "full": "[1:8292,1:3088]",
        "4k": "[2099:6194,1:3088]",
        "3k": "[2603:5690,1:3088]",
        "1k": "[3635:4658,1033:2056]",
    },
    2025: {
        "full": "[1:8288,1:3088]",
        "4k": "[2097:6192,1:3088]",
        "3k": "[2601:5688,1:3088]",
        "1k": "[3633:4656,1033:2056]",
    },
}


def image_coord(header, phys_x, phys_y):
    """0-based numpy (row, col) of physical CCD coordinates through LTM/LTV."""
    col = header["LTM1_1"] * phys_x + header["LTV1"] - 1
    row = header["LTM2_2"] * phys_y + header["LTV2"] - 1
    return np.rint(row).astype(int), np.rint(col).astype(int), row, col


@pytest.mark.parametrize("roi, binning, epoch", MODES, ids=lambda v: str(v))
def test_every_mode_is_delivered_correctly(layout, roi, binning, epoch):
    spec = sim.ExposureSpec(channel="mods1r", date="20260102", seq=1, roi=roi, binning=binning, epoch=epoch)
    raw = sim.write(spec, layout["raw"], two_pass=True)
    assert main(["process", "--config", str(layout["config"]), "-q", str(raw)]) == 0
    out = layout["newdata"] / raw.name
    assert (layout["newdata"] / "MODS1R.new").read_text() == raw.name + "\n"
    assert (layout["processed"] / "20260102" / raw.name).read_bytes() == out.read_bytes()
    region = spec.region
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hdul = fits.open(out, checksum=True)
        hdul.verify("exception")
    with hdul:
        p = hdul[0].header
        assert p["CCDROI"] == ROI[epoch][roi]
        assert (p["CCDXBIN"], p["CCDYBIN"]) == binning
        merged = hdul[6]
        assert merged.name == "MERGED" and merged.data.dtype.kind == "f"
        assert merged.data.shape == (2 * region.rows, 2 * region.data_cols)
        for amp in (1, 2, 3, 4):
            ext = hdul[amp]
            x, y = region.true_axes(amp)
            # the extension's own LTM/LTV map the true CCD position to its array position
            r, c, rf, cf = image_coord(ext.header, x[None, :], y[:, None])
            np.testing.assert_allclose(cf[0], np.arange(region.data_cols), atol=1e-9)
            np.testing.assert_allclose(rf[:, 0], np.arange(region.rows), atol=1e-9)
            # ... and MERGED's map it to the MERGED pixel holding the same value
            q = {1: 3, 2: 4, 3: 1, 4: 2}[amp]
            bias = merged.header[f"Q{q}BIAS"]
            mr, mc, _, _ = image_coord(merged.header, x[None, :], y[:, None])
            nd = region.data_cols
            expected = ext.data[:, :nd].astype(np.float64) - bias
            np.testing.assert_array_equal(merged.data[mr, mc], expected.astype(np.float32))
    assert_fitsverify_ok(out)
