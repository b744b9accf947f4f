"""The one geometry model against the exact values of raw-format.md and processing.md."""

import pytest
from astropy.io import fits
from hypothesis import given
from hypothesis import strategies as st

from modsingest.processing.geometry import (
    GeometryError,
    Readout,
    parse_ccdsum,
    parse_section,
    readout_from_headers,
)

# (mode, epoch, NAXIS1, NAXIS2, binning) -> CCDROI, IM1..IM4 DETSEC
CASES = {
    ("full", 2026, 4178, 1544, (1, 1)): (
        "[1:8292,1:3088]",
        ["[1:4146,1:1544]", "[8292:4147,1:1544]", "[1:4146,1545:3088]", "[8292:4147,1545:3088]"],
    ),
    ("4k", 2026, 2080, 1544, (1, 1)): (
        "[2099:6194,1:3088]",
        ["[2099:4146,1:1544]", "[6194:4147,1:1544]", "[2099:4146,1545:3088]", "[6194:4147,1545:3088]"],
    ),
    ("3k", 2026, 1576, 1544, (1, 1)): (
        "[2603:5690,1:3088]",
        ["[2603:4146,1:1544]", "[5690:4147,1:1544]", "[2603:4146,1545:3088]", "[5690:4147,1545:3088]"],
    ),
    ("1k", 2026, 544, 512, (1, 1)): (
        "[3635:4658,1033:2056]",
        ["[3635:4146,1033:1544]", "[4658:4147,1033:1544]", "[3635:4146,1545:2056]", "[4658:4147,1545:2056]"],
    ),
    ("full", 2026, 2105, 772, (2, 2)): (
        "[1:8292,1:3088]",
        ["[1:4146,1:1544]", "[8292:4147,1:1544]", "[1:4146,1545:3088]", "[8292:4147,1545:3088]"],
    ),
    ("3k", 2026, 804, 772, (2, 2)): (
        "[2603:5690,1:3088]",
        ["[2603:4146,1:1544]", "[5690:4147,1:1544]", "[2603:4146,1545:3088]", "[5690:4147,1545:3088]"],
    ),
    ("1k", 2026, 288, 256, (2, 2)): (
        "[3635:4658,1033:2056]",
        ["[3635:4146,1033:1544]", "[4658:4147,1033:1544]", "[3635:4146,1545:2056]", "[4658:4147,1545:2056]"],
    ),
    ("1k", 2026, 544, 256, (1, 2)): (
        "[3635:4658,1033:2056]",
        ["[3635:4146,1033:1544]", "[4658:4147,1033:1544]", "[3635:4146,1545:2056]", "[4658:4147,1545:2056]"],
    ),
    ("full", 2025, 4176, 1544, (1, 1)): (
        "[1:8288,1:3088]",
        ["[1:4144,1:1544]", "[8288:4145,1:1544]", "[1:4144,1545:3088]", "[8288:4145,1545:3088]"],
    ),
    # The real December 1k file of raw-format.md: Q2 and Q3 as they should be.
    ("1k", 2025, 544, 512, (1, 1)): (
        "[3633:4656,1033:2056]",
        ["[3633:4144,1033:1544]", "[4656:4145,1033:1544]", "[3633:4144,1545:2056]", "[4656:4145,1545:2056]"],
    ),
    ("full", 2025, 2104, 772, (2, 2)): (
        "[1:8288,1:3088]",
        ["[1:4144,1:1544]", "[8288:4145,1:1544]", "[1:4144,1545:3088]", "[8288:4145,1545:3088]"],
    ),
}


def readout(epoch, naxis1, naxis2, binning):
    ref_x = 4146 if epoch == 2026 else 4144
    # the cards' values: NAXIS1 holds the 32 overscan columns after the data
    return Readout(
        ref_x=ref_x, ref_y=1544, xbin=binning[0], ybin=binning[1], data_cols=naxis1 - 32, rows=naxis2
    )


@pytest.mark.parametrize("case", list(CASES), ids=lambda c: f"{c[0]}-{c[1]}-{c[4][0]}x{c[4][1]}")
def test_detsec_and_ccdroi_for_every_mode_and_binning(case):
    _, epoch, naxis1, naxis2, binning = case
    roi, detsecs = CASES[case]
    r = readout(epoch, naxis1, naxis2, binning)
    assert r.roi == roi
    assert [str(r.amp_section(n)) for n in (1, 2, 3, 4)] == detsecs


def test_full_frame_im2_upper_bound_is_the_ccd_edge_not_plus_overscan():
    """The incumbent wrote 8356 (c0+nc+overscan) for IM2/IM4."""
    r = readout(2026, 4178, 1544, (1, 1))
    assert str(r.amp_section(2)) == "[8292:4147,1:1544]"


@pytest.mark.parametrize(
    "binning, amp, expected",
    [
        ((1, 1), 1, {"LTM1_1": 1.0, "LTM2_2": 1.0, "LTV1": 0.0, "LTV2": 0.0}),
        ((1, 1), 2, {"LTM1_1": -1.0, "LTM2_2": 1.0, "LTV1": 8293.0, "LTV2": 0.0}),
        ((1, 1), 3, {"LTM1_1": 1.0, "LTM2_2": 1.0, "LTV1": 0.0, "LTV2": -1544.0}),
        ((1, 1), 4, {"LTM1_1": -1.0, "LTM2_2": 1.0, "LTV1": 8293.0, "LTV2": -1544.0}),
        ((2, 2), 1, {"LTM1_1": 0.5, "LTM2_2": 0.5, "LTV1": 0.25, "LTV2": 0.25}),
        ((2, 2), 2, {"LTM1_1": -0.5, "LTM2_2": 0.5, "LTV1": 4146.75, "LTV2": 0.25}),
        ((2, 2), 3, {"LTM1_1": 0.5, "LTM2_2": 0.5, "LTV1": 0.25, "LTV2": -771.75}),
        ((2, 2), 4, {"LTM1_1": -0.5, "LTM2_2": 0.5, "LTV1": 4146.75, "LTV2": -771.75}),
    ],
)
def test_ltm_ltv_full_frame(binning, amp, expected):
    naxis1, naxis2 = (4178, 1544) if binning == (1, 1) else (2105, 772)
    assert readout(2026, naxis1, naxis2, binning).amp_section(amp).wcs_cards() == expected


def test_ltv_for_the_1k_roi():
    r = readout(2026, 544, 512, (1, 1))
    assert r.amp_section(1).wcs_cards() == {"LTM1_1": 1.0, "LTM2_2": 1.0, "LTV1": -3634.0, "LTV2": -1032.0}
    assert r.amp_section(4).wcs_cards() == {"LTM1_1": -1.0, "LTM2_2": 1.0, "LTV1": 4659.0, "LTV2": -1544.0}


def test_merged_section_and_wcs():
    r = readout(2026, 1576, 1544, (1, 1))  # 3k acquisition image
    s = r.merged_section()
    assert str(s) == "[2603:5690,3088:1]"
    assert s.wcs_cards() == {"LTM1_1": 1.0, "LTM2_2": -1.0, "LTV1": -2602.0, "LTV2": 3089.0}
    assert r.merged_shape == (3088, 3088)


readouts = st.builds(
    lambda xb, yb, half_w, half_h, epoch: Readout(
        ref_x=4146 if epoch else 4144,
        ref_y=1544,
        xbin=xb,
        ybin=yb,
        data_cols=half_w // xb,
        rows=half_h // yb,
    ),
    st.sampled_from([1, 2]),
    st.sampled_from([1, 2]),
    st.integers(1, 2072).map(lambda n: 2 * n),
    st.integers(1, 772).map(lambda n: 2 * n),
    st.booleans(),
)


@given(readouts)
def test_ltv_puts_first_and_last_pixel_on_block_centres(r):
    """image = LTM*physical + LTV; pixel 1 and the last DATASEC pixel sit on the
    centres of the CCD pixel blocks at the two ends of DETSEC (processing.md)."""
    for amp in (1, 2, 3, 4):
        s = r.amp_section(amp)
        for axis, n in ((s.x, r.data_cols), (s.y, r.rows)):
            b = axis.binning
            first_centre = axis.start + axis.step * (b - 1) / 2
            last_centre = axis.stop - axis.step * (b - 1) / 2
            assert axis.ltm * first_centre + axis.ltv == pytest.approx(1.0, abs=1e-9)
            assert axis.ltm * last_centre + axis.ltv == pytest.approx(float(n), abs=1e-9)
            assert abs(axis.stop - axis.start) + 1 == n * b


@given(readouts)
def test_amplifier_sections_tile_the_roi_exactly(r):
    covered = set()
    for amp in (1, 2, 3, 4):
        a, b, c, d = parse_section(str(r.amp_section(amp)))
        cells = {(x, y) for x in (min(a, b), max(a, b)) for y in (min(c, d), max(c, d))}
        covered |= cells
        assert r.x1 <= min(a, b) and max(a, b) <= r.x2 and r.y1 <= min(c, d) and max(c, d) <= r.y2
    # the corners of the four sections are the corners of the ROI and its centre lines
    assert (r.x1, r.y1) in covered and (r.x2, r.y2) in covered
    assert (r.ref_x, r.ref_y) in covered and (r.ref_x + 1, r.ref_y + 1) in covered


def test_parse_helpers():
    assert parse_ccdsum("2 1     ") == (2, 1)
    assert parse_section("[8292:4147,1:1544]") == (8292, 4147, 1, 1544)
    for bad in ("", "1", "a b", "0 1"):
        with pytest.raises(GeometryError):
            parse_ccdsum(bad)
    with pytest.raises(GeometryError):
        parse_section("[1:2]")


def _amp_headers(naxis1=544, naxis2=512, ccdsum="1 1", names=("IM1", "IM2", "IM3", "IM4")):
    out = []
    for name in names:
        h = fits.Header()
        h["NAXIS1"], h["NAXIS2"], h["EXTNAME"], h["CCDSUM"], h["OVRSCAN1"] = naxis1, naxis2, name, ccdsum, 32
        out.append(h)
    return out


def test_missing_ref_pix_falls_back_to_detsize_with_a_warning():
    primary = fits.Header({"DETSIZE": "[1:8292,1:3088]"})
    r, warnings = readout_from_headers(primary, _amp_headers())
    assert (r.ref_x, r.ref_y) == (4146, 1544)
    assert len(warnings) == 1 and "REF-PIX" in warnings[0] and "DETSIZE" in warnings[0]


def test_missing_ref_pix_and_detsize_fall_back_to_the_epoch_of_the_names():
    r, warnings = readout_from_headers(fits.Header(), _amp_headers(names=("Q1", "Q2", "Q3", "Q4")))
    assert (r.ref_x, r.ref_y) == (4144, 1544)
    assert "2025" in warnings[0]


def test_missing_ccdsum_falls_back_to_ccdbin():
    primary = fits.Header({"REF-PIX1": 4146, "REF-PIX2": 1544, "CCDBIN1": 2, "CCDBIN2": 2})
    heads = _amp_headers(naxis1=288, naxis2=256, ccdsum="garbage")
    r, warnings = readout_from_headers(primary, heads)
    assert (r.xbin, r.ybin) == (2, 2) and r.roi == "[3635:4658,1033:2056]"
    assert any("CCDBIN" in w for w in warnings)


def test_unequal_amplifiers_are_an_error():
    heads = _amp_headers()
    heads[2]["NAXIS1"] = 100
    with pytest.raises(GeometryError, match="differ"):
        readout_from_headers(fits.Header({"REF-PIX1": 4146, "REF-PIX2": 1544}), heads)
