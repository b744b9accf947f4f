"""Step merged: MERGED equal bit for bit to a plain numpy reference of the rule,
and equal to the DETSEC mosaic turned upside down for any ROI and binning."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import tiny_raw
from modsingest.fits import frame as frame_mod
from modsingest.processing.geometry import parse_section
from modsingest.processing.steps import StepContext
from modsingest.processing.steps import geometry as geometry_step
from modsingest.processing.steps import merged as merged_step

CTX = StepContext(source_name="test.fits")


def read(**kw):
    return frame_mod.from_bytes(tiny_raw(**kw), "mods1b.20260102.0001.fits")


def reference_merged(frame):
    """processing.md 'merged', written as plainly as possible."""
    amps = {}
    biases = {}
    for amp in frame.amps:
        phys = amp.stored.astype(np.float64) + amp.bzero
        ny, nx = phys.shape
        nd = nx - 32
        region = phys[2 : ny - 2, nd + 2 : nx]
        biases[amp.number] = (np.median(region), np.std(region))
        amps[amp.number] = (phys[:, :nd] - biases[amp.number][0]).astype(np.float32)
    q1 = np.flipud(amps[3])
    q2 = np.flipud(np.fliplr(amps[4]))
    q3 = np.flipud(amps[1])
    q4 = np.flipud(np.fliplr(amps[2]))
    return np.block([[q1, q2], [q3, q4]]), biases


@pytest.mark.parametrize("binning", [(1, 1), (2, 2), (1, 2)])
@pytest.mark.parametrize("epoch", [2025, 2026])
def test_merged_equals_numpy_reference_bit_for_bit(binning, epoch):
    f = read(binning=binning, epoch=epoch, seed=3)
    assert merged_step.run(f, CTX) == []
    expected, biases = reference_merged(f)
    got = f.merged.data
    assert got.dtype == np.dtype(">f4")
    assert got.shape == expected.shape == (2 * 48, 2 * 64)
    assert got.astype("<f4").tobytes() == expected.astype("<f4").tobytes()
    # Q1BIAS is IM3's overscan, Q2 IM4, Q3 IM1, Q4 IM2
    h = f.merged.header
    for q, amp in ((1, 3), (2, 4), (3, 1), (4, 2)):
        assert h[f"Q{q}BIAS"] == biases[amp][0]
        assert h[f"Q{q}STD"] == pytest.approx(biases[amp][1], rel=1e-12)


def test_bias_region_skips_two_rows_and_two_overscan_columns():
    f = read(seed=5)
    amp = f.amp(3)
    stored = amp.stored.copy()
    # poison exactly the excluded border of the overscan: it must not move the median
    stored[:2, 64:] = -32768
    stored[-2:, 64:] = 32767
    stored[:, 64:66] = 32767
    amp.block = memoryview(stored.astype(">i2").tobytes())
    merged_step.run(f, CTX)
    inner = stored[2:-2, 66:].astype(np.float64) + 32768
    assert f.merged.header["Q1BIAS"] == np.median(inner)


def test_merged_header_has_no_detsec_and_maps_back_to_the_ccd():
    f = read()
    merged_step.run(f, CTX)
    h = f.merged.header
    assert "DETSEC" not in h
    # 1k-like ROI around the reference pixel: nd=64, ny=48 -> x1=4083, x2=4210, y1=1497, y2=1592
    assert h["CCDSEC"] == "[4083:4210,1592:1497]"
    assert (h["LTM1_1"], h["LTM2_2"], h["LTV1"], h["LTV2"]) == (1.0, -1.0, -4082.0, 1593.0)


def detsec_mosaic(frame):
    """Place every amplifier at its DETSEC (binned CCD grid), independent of merged_slot."""
    secs = [parse_section(a.header["DETSEC"]) for a in frame.amps]
    xb, yb = frame.primary["CCDXBIN"], frame.primary["CCDYBIN"]
    x1 = min(min(a, b) for a, b, _, _ in secs)
    y1 = min(min(c, d) for _, _, c, d in secs)
    x2 = max(max(a, b) for a, b, _, _ in secs)
    y2 = max(max(c, d) for _, _, c, d in secs)
    mosaic = np.full(((y2 - y1 + 1) // yb, (x2 - x1 + 1) // xb), np.nan, dtype=np.float64)
    for amp, (a, b, c, d) in zip(frame.amps, secs):
        phys = amp.stored.astype(np.float64) + amp.bzero
        nd = phys.shape[1] - 32
        region = phys[2:-2, nd + 2 :]
        data = phys[:, :nd] - np.median(region)
        if a > b:
            data = data[:, ::-1]
        if c > d:
            data = data[::-1, :]
        cols = slice((min(a, b) - x1) // xb, (max(a, b) - x1 + 1) // xb)
        rows = slice((min(c, d) - y1) // yb, (max(c, d) - y1 + 1) // yb)
        mosaic[rows, cols] = data
    return mosaic


@settings(max_examples=25, deadline=None)
@given(
    nd=st.integers(5, 40),
    ny=st.integers(5, 30),
    xb=st.sampled_from([1, 2]),
    yb=st.sampled_from([1, 2]),
    epoch=st.sampled_from([2025, 2026]),
    seed=st.integers(0, 1000),
)
def test_merged_is_the_detsec_mosaic_upside_down(nd, ny, xb, yb, epoch, seed):
    f = read(nd=nd, ny=ny, binning=(xb, yb), epoch=epoch, seed=seed)
    geometry_step.run(f, CTX)
    merged_step.run(f, CTX)
    mosaic = detsec_mosaic(f)
    assert not np.isnan(mosaic).any()
    np.testing.assert_array_equal(f.merged.data.astype(np.float64), np.flipud(mosaic))


def test_merged_fits_shape_is_rows_then_columns():
    f = read(nd=64, ny=48)
    merged_step.run(f, CTX)
    assert f.merged.data.shape == (96, 128)


@pytest.mark.parametrize("band_bytes", [1, 4 * 128 * 5, 4 * 128 * 47, 10**9])
def test_band_rendering_equals_the_whole_image(band_bytes):
    """Any band size gives the same MERGED: bands straddling the quadrant boundary too."""
    f = read(seed=11)
    merged_step.run(f, CTX)
    whole = f.merged.data
    parts = list(f.merged.bands(band_bytes))
    assert all(p.dtype == np.dtype(">f4") for p in parts)
    assert b"".join(p.tobytes() for p in parts) == whole.tobytes()
