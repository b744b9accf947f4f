"""temperatures step: CCDTEMP/BASETEMP/ARCHTEMP from CONPARS (processing.md "temperatures")."""

import warnings
from pathlib import Path

import pytest
from astropy.io import fits
from hypothesis import given, settings
from hypothesis import strategies as st

from modsingest.fits.frame import Conpars, Frame
from modsingest.processing.steps import StepContext
from modsingest.processing.steps.temperatures import run

ROWS = {"MOD10/TEMPA": "-5.5", "MOD10/TEMPB": "-110.25", "BACKPLANE_TEMP": "31.75", "POWER": "4"}


def raw_primary(instrume="MODS1B"):
    """The temperature block as azcam writes it: -999.9 placeholders."""
    cards = [("INSTRUME", instrume, "Instrument Name")] if instrume is not None else []
    cards += [
        ("COMMENT", "Temperature"),
        ("BASETEMP", -999.9, "CCD mount base temperature [deg C]"),
        ("CCDTEMP", -999.9, "CCD detector temperature [deg C]"),
        ("COMMENT", "AzCam Focal plane"),
        ("REF-PIX1", 4146, "Reference pixel 1"),
    ]
    return fits.Header(cards)


def make_frame(hdr, rows=ROWS, name="mods1b.20260102.0002.fits", conpars=True):
    cp = Conpars(header=fits.Header(), block=memoryview(b""), rows=dict(rows)) if conpars else None
    return Frame(path=Path(name), primary=hdr, amps=[], conpars=cp)


def apply(frame):
    return run(frame, StepContext(source_name=frame.name))


def temps(hdr):
    return hdr["CCDTEMP"], hdr["BASETEMP"], hdr["ARCHTEMP"]


@pytest.mark.parametrize("instrume", ["MODS1B", "MODS1R"])
def test_mods1_wiring_ccd_is_tempb_base_is_tempa(instrume):
    frame = make_frame(raw_primary(instrume))
    assert apply(frame) == []
    assert temps(frame.primary) == (-110.25, -5.5, 31.75)


@pytest.mark.parametrize("instrume", ["MODS2B", "MODS2R"])
def test_mods2_wiring_ccd_is_tempa_base_is_tempb(instrume):
    frame = make_frame(raw_primary(instrume), name="mods2b.20260102.0002.fits")
    assert apply(frame) == []
    assert temps(frame.primary) == (-5.5, -110.25, 31.75)


def test_instrume_wins_over_file_name():
    frame = make_frame(raw_primary("MODS2R"), name="mods1b.20260102.0002.fits")
    assert apply(frame) == []
    assert temps(frame.primary) == (-5.5, -110.25, 31.75)


def test_comments_say_after_readout():
    frame = make_frame(raw_primary())
    apply(frame)
    hdr = frame.primary
    assert hdr.comments["CCDTEMP"] == "CCD temperature after readout [deg C]"
    assert hdr.comments["BASETEMP"] == "CCD mount base temp after readout [deg C]"
    assert hdr.comments["ARCHTEMP"] == "Archon backplane temp after readout [deg C]"


def test_cards_serialise_without_astropy_warnings():
    frame = make_frame(raw_primary())
    apply(frame)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text = frame.primary.tostring()
    assert "after readout" in text


def test_raw_cards_updated_in_place_and_archtemp_follows_them():
    frame = make_frame(raw_primary())
    apply(frame)
    assert list(frame.primary.keys()) == [
        "INSTRUME",
        "COMMENT",
        "BASETEMP",
        "CCDTEMP",
        "ARCHTEMP",
        "COMMENT",
        "REF-PIX1",
    ]


def test_keywords_added_when_raw_header_has_none():
    hdr = fits.Header()
    hdr["INSTRUME"] = "MODS1R"
    frame = make_frame(hdr)
    assert apply(frame) == []
    assert temps(hdr) == (-110.25, -5.5, 31.75)


def test_missing_instrume_inferred_from_file_name_with_warning():
    frame = make_frame(raw_primary(None), name="mods2r.20260102.0002.fits")
    assert apply(frame) == ["INSTRUME missing; MODS2R taken from the file name mods2r.20260102.0002.fits"]
    assert temps(frame.primary) == (-5.5, -110.25, 31.75)


def test_placeholder_instrume_inferred_from_file_name_with_warning():
    frame = make_frame(raw_primary("None"), name="mods1r.20260102.0002.fits")
    (warning,) = apply(frame)
    assert "INSTRUME 'None' is not a MODS channel; MODS1R taken from the file name" in warning
    assert temps(frame.primary) == (-110.25, -5.5, 31.75)


def test_unknown_instrument_gives_no_ccd_or_base_reading_but_keeps_backplane():
    frame = make_frame(raw_primary("TESTCAM"), name="m1bTest.0001.fits")
    assert apply(frame) == [
        "INSTRUME 'TESTCAM' is not a MODS channel and the file name 'm1bTest.0001.fits' names no "
        "MODS channel: CCDTEMP, BASETEMP = -999.9"
    ]
    assert temps(frame.primary) == (-999.9, -999.9, 31.75)


def test_no_conpars_gives_sentinel_everywhere_and_one_warning():
    frame = make_frame(raw_primary(), conpars=False)
    assert apply(frame) == ["no CONPARS table: CCDTEMP, BASETEMP, ARCHTEMP = -999.9"]
    assert temps(frame.primary) == (-999.9, -999.9, -999.9)


def test_conpars_without_rows_gives_sentinel_everywhere_and_one_warning():
    frame = make_frame(raw_primary(), rows={})
    assert apply(frame) == ["CONPARS has no rows: CCDTEMP, BASETEMP, ARCHTEMP = -999.9"]
    assert temps(frame.primary) == (-999.9, -999.9, -999.9)


def test_missing_row_named_in_warning():
    rows = {k: v for k, v in ROWS.items() if k != "MOD10/TEMPB"}
    frame = make_frame(raw_primary("MODS1B"), rows=rows)
    assert apply(frame) == ["CONPARS has no MOD10/TEMPB: CCDTEMP = -999.9"]
    assert temps(frame.primary) == (-999.9, -5.5, 31.75)


def test_missing_backplane_row():
    rows = {k: v for k, v in ROWS.items() if k != "BACKPLANE_TEMP"}
    frame = make_frame(raw_primary("MODS2B"), rows=rows)
    assert apply(frame) == ["CONPARS has no BACKPLANE_TEMP: ARCHTEMP = -999.9"]
    assert temps(frame.primary) == (-5.5, -110.25, -999.9)


@pytest.mark.parametrize("bad", ["", "NOCOMM", "nan", "-inf", "12,5", "1e999"])
def test_unreadable_value_named_with_key_in_warning(bad):
    rows = dict(ROWS, **{"MOD10/TEMPA": bad})
    frame = make_frame(raw_primary("MODS2R"), rows=rows)
    (warning,) = apply(frame)
    assert warning.startswith(f"CONPARS MOD10/TEMPA = {bad!r} unreadable (")
    assert warning.endswith("): CCDTEMP = -999.9")
    assert temps(frame.primary) == (-999.9, -110.25, 31.75)


def test_idempotent():
    frame = make_frame(raw_primary())
    first_warnings = apply(frame)
    once = frame.primary.tostring()
    assert apply(frame) == first_warnings
    assert frame.primary.tostring() == once


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["MOD10/TEMPA", "MOD10/TEMPB", "BACKPLANE_TEMP", "POWER"]),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
    ),
    st.one_of(st.none(), st.sampled_from(["MODS1B", "MODS2R", "None", "", "x"])),
)
def test_any_conpars_values_give_floats_and_no_exception(rows, instrume):
    frame = make_frame(raw_primary(instrume), rows=rows)
    apply(frame)
    assert all(isinstance(v, float) for v in temps(frame.primary))
