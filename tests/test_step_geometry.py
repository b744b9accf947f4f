"""Step geometry writes the model's values into the headers (processing.md 'geometry')."""

from conftest import tiny_raw
from modsingest.fits import frame as frame_mod
from modsingest.processing.steps import StepContext
from modsingest.processing.steps import geometry as geometry_step

CTX = StepContext(source_name="t.fits")


def test_headers_written_for_a_binned_december_file():
    f = frame_mod.from_bytes(tiny_raw(nd=256, ny=256, binning=(2, 2), epoch=2025), "x.fits")
    assert geometry_step.run(f, CTX) == []
    p = f.primary
    assert (p["CCDROI"], p["CCDXBIN"], p["CCDYBIN"]) == ("[3633:4656,1033:2056]", 2, 2)
    expected = {
        1: ("[3633:4144,1033:1544]", 0.5, -1815.75, "Q3"),
        2: ("[4656:4145,1033:1544]", -0.5, 2328.75, "Q4"),
        3: ("[3633:4144,1545:2056]", 0.5, -1815.75, "Q1"),
        4: ("[4656:4145,1545:2056]", -0.5, 2328.75, "Q2"),
    }
    for amp in f.amps:
        detsec, ltm1, ltv1, quad = expected[amp.number]
        h = amp.header
        assert h["DETSEC"] == h["CCDSEC"] == detsec
        assert (h["LTM1_1"], h["LTV1"], h["LTM2_2"]) == (ltm1, ltv1, 0.5)
        assert h["MODSQUAD"] == quad
    assert f.amp(1).header["LTV2"] == 1 - (1033 + 0.5) / 2
    assert f.amp(3).header["LTV2"] == 1 - (1545 + 0.5) / 2


def test_idempotent():
    f = frame_mod.from_bytes(tiny_raw(), "x.fits")
    geometry_step.run(f, CTX)
    first = [str(a.header) for a in f.amps] + [str(f.primary)]
    geometry_step.run(f, CTX)
    assert [str(a.header) for a in f.amps] + [str(f.primary)] == first


def test_missing_ref_pix_is_a_warning_not_a_failure():
    raw = tiny_raw(primary_cards={"REF-PIX1": None, "REF-PIX2": None})
    f = frame_mod.from_bytes(raw, "x.fits")
    warnings = geometry_step.run(f, CTX)
    assert len(warnings) == 1 and "REF-PIX" in warnings[0]
    assert f.primary["CCDROI"] == "[4083:4210,1497:1592]"
