"""Step ``timestamps`` (processing.md "timestamps", raw-format.md "Primary-header quirks")."""

from __future__ import annotations

from pathlib import Path

import pytest
from astropy.io import fits

from modsingest.fits.frame import Frame
from modsingest.processing.steps import StepContext, timestamps

MJD_UTC = 61039.13385559028
HMJD_UTC = 61039.13866143456
BMJD_TDB = 61039.13943207522
ONE_MS_IN_DAYS = 1.16e-8

CTX = StepContext(source_name="mods2r.20251230.0042.fits")


def raw_header(date="2025-12-30", clock="03:12:45.123", telescope=True, **cards) -> fits.Header:
    """A raw MODS primary as azcam writes it (the cards this step reads, in the real order)."""
    header = fits.Header()
    header["DATE"] = (date, "UTC date and time file writtten")
    header["DATE-OBS"] = (date, "UTC shutter opened")
    header["ELEVATIO"] = (3221.0, "Site Elevation [meters]")
    header["LATITUDE"] = (32.70131, "Site Latitude [deg N]")
    header["LONGITUD"] = (109.88906, "Site Longitude [deg W]")
    header["TIME-OBS"] = (clock, "UTC at start of exposure")
    header["TIMESYS"] = ("UTC", "Time system")
    header["UT"] = (clock, "UTC at start of exposure")
    header["UTC-OBS"] = (clock, "UTC at start of exposure")
    if telescope:
        header["TELRA"] = ("05:35:17.3", "SX Telescope Achieved RA [hms]")
        header["TELDEC"] = ("-05:23:28", "SX Telescope Achieved DEC [dms]")
    for key, value in cards.items():
        key = key.replace("_", "-")
        if value is None:
            header.remove(key, ignore_missing=True)
        else:
            header[key] = value
    return header


def run(header: fits.Header) -> list[str]:
    return timestamps.run(Frame(path=Path("x.fits"), primary=header, amps=[]), CTX)


def test_reference_exposure_gets_iso_date_obs_and_the_three_mjds():
    header = raw_header()
    assert run(header) == []
    assert header["DATE-OBS"] == "2025-12-30T03:12:45.123"
    assert header["MJD-OBS"] == pytest.approx(MJD_UTC, abs=2e-11)
    assert header["HJD-OBS"] == pytest.approx(HMJD_UTC, abs=ONE_MS_IN_DAYS)
    assert header["BJD-OBS"] == pytest.approx(BMJD_TDB, abs=ONE_MS_IN_DAYS)


def test_comments_say_the_values_are_mjds_and_their_time_scales():
    header = raw_header()
    run(header)
    assert header.comments["MJD-OBS"] == "MJD at start of obs [UTC]"
    assert header.comments["HJD-OBS"] == "Heliocentric MJD at start of obs [UTC]"
    assert header.comments["BJD-OBS"] == "Barycentric MJD at start of obs [TDB]"
    assert "UTC" in header.comments["DATE-OBS"]


def test_mjd_cards_follow_date_obs():
    header = raw_header()
    run(header)
    keys = list(header.keys())
    at = keys.index("DATE-OBS")
    assert keys[at : at + 4] == ["DATE-OBS", "MJD-OBS", "HJD-OBS", "BJD-OBS"]


@pytest.mark.parametrize(
    ("clock", "expected"),
    [
        ("03:12:45", "2025-12-30T03:12:45.000"),
        ("03:12:45.1", "2025-12-30T03:12:45.100"),
        ("03:12:45.12", "2025-12-30T03:12:45.120"),
        ("03:12:45.1235", "2025-12-30T03:12:45.124"),
        ("03:12:45.9996", "2025-12-30T03:12:46.000"),
    ],
)
def test_date_obs_has_exactly_three_fraction_digits(clock, expected):
    header = raw_header(clock=clock)
    run(header)
    assert header["DATE-OBS"] == expected


@pytest.mark.parametrize(
    ("date", "clock", "expected"),
    [
        ("2025-12-10", "19:08:07.1000", "2025-12-10T19:08:08.000"),
        ("2025-12-10", "19:08:59.1000", "2025-12-10T19:09:00.000"),
        ("2025-12-10", "19:59:59.1000", "2025-12-10T20:00:00.000"),
        ("2025-12-10", "23:59:59.1000", "2025-12-11T00:00:00.000"),
        ("2025-12-31", "23:59:59.1000", "2026-01-01T00:00:00.000"),
    ],
)
def test_azcam_fraction_1000_carries_into_the_next_second(date, clock, expected):
    header = raw_header(date=date, clock=clock)
    assert run(header) == []
    assert header["DATE-OBS"] == expected


def test_carry_at_new_year_gives_mjd_of_the_new_day():
    header = raw_header(date="2025-12-31", clock="23:59:59.1000", telescope=False)
    run(header)
    assert header["MJD-OBS"] == 61041.0  # 2026-01-01T00:00:00 UTC


@pytest.mark.parametrize(
    ("cards", "expected", "warned_about"),
    [
        (dict(UTC_OBS=None, TIME_OBS="01:02:03.456", UT="09:09:09.999"), "T01:02:03.456", "UTC-OBS missing"),
        (dict(UTC_OBS=None, TIME_OBS=None, UT="01:02:03.456"), "T01:02:03.456", "TIME-OBS missing"),
        (dict(UTC_OBS="NOCOMM", TIME_OBS="01:02:03.456"), "T01:02:03.456", "UTC-OBS 'NOCOMM'"),
        (dict(UTC_OBS="", TIME_OBS="", UT="01:02:03.456"), "T01:02:03.456", "TIME-OBS ''"),
    ],
)
def test_time_of_day_falls_back_from_utc_obs_to_time_obs_to_ut(cards, expected, warned_about):
    header = raw_header(clock="22:22:22.222", telescope=False, **cards)
    warnings = run(header)
    assert header["DATE-OBS"] == "2025-12-30" + expected
    assert any(warned_about in w for w in warnings), warnings


def test_utc_obs_wins_over_time_obs_and_ut():
    header = raw_header(UTC_OBS="01:02:03.456", TIME_OBS="04:05:06.789", UT="07:08:09.012")
    assert run(header) == []
    assert header["DATE-OBS"] == "2025-12-30T01:02:03.456"


@pytest.mark.parametrize(
    ("date_obs", "expected"),
    [
        ("2025-12-30T03:12:45.123", "2025-12-30T03:12:45.123"),
        ("2025-12-30T03:12:45.1", "2025-12-30T03:12:45.100"),
        ("2025-12-30T03:12:45", "2025-12-30T03:12:45.000"),
    ],
)
def test_processed_date_obs_is_renormalised_not_doubled(date_obs, expected):
    header = raw_header(DATE_OBS=date_obs)
    assert run(header) == []
    assert header["DATE-OBS"] == expected


def test_processed_date_obs_is_the_instant_even_after_a_new_year_carry():
    # The processed DATE-OBS already moved to 2026-01-01; re-adding UTC-OBS's
    # 23:59:59.1000 to that date would move it by a day.
    header = raw_header(date="2025-12-31", clock="23:59:59.1000")
    run(header)
    run(header)
    assert header["DATE-OBS"] == "2026-01-01T00:00:00.000"


def test_unusable_time_in_processed_date_obs_falls_back_to_utc_obs():
    header = raw_header(DATE_OBS="2025-12-30Tnoon")
    warnings = run(header)
    assert header["DATE-OBS"] == "2025-12-30T03:12:45.123"
    assert any("'2025-12-30Tnoon'" in w for w in warnings), warnings


@pytest.mark.parametrize(
    "cards",
    [
        dict(),
        dict(date="2025-12-31", clock="23:59:59.1000"),
        dict(telescope=False),
        dict(TELRA="NOCOMM", LATITUDE=None, LONGITUD="NOCOMM"),
    ],
)
def test_running_twice_gives_the_same_header(cards):
    header = raw_header(**cards)
    first_warnings = run(header)
    once = header.tostring()
    second_warnings = run(header)
    assert header.tostring() == once
    assert second_warnings == first_warnings


def test_running_on_a_header_read_back_from_its_file_gives_the_same_header():
    header = raw_header()
    run(header)
    read_back = fits.Header.fromstring(header.tostring())
    run(read_back)
    assert read_back.tostring() == header.tostring()


def test_missing_telescope_block_skips_hjd_bjd_with_a_warning():
    header = raw_header(telescope=False)
    warnings = run(header)
    assert header["DATE-OBS"] == "2025-12-30T03:12:45.123"
    assert header["MJD-OBS"] == pytest.approx(MJD_UTC, abs=2e-11)
    assert "HJD-OBS" not in header and "BJD-OBS" not in header
    assert len(warnings) == 1
    assert "HJD-OBS/BJD-OBS not written" in warnings[0]
    assert "TELRA" in warnings[0] and "TELDEC" in warnings[0]


@pytest.mark.parametrize(
    ("cards", "named"),
    [
        (dict(TELRA="NOCOMM"), "TELRA 'NOCOMM'"),
        (dict(TELDEC="NOCOMM"), "TELDEC 'NOCOMM'"),
        (dict(TELDEC=""), "TELDEC ''"),
        (dict(TELRA=None), "TELRA missing"),
        (dict(TELRA="83.82"), "TELRA '83.82'"),
    ],
)
def test_unusable_telescope_coordinates_are_named_in_the_warning(cards, named):
    header = raw_header(**cards)
    warnings = run(header)
    assert "MJD-OBS" in header
    assert "HJD-OBS" not in header and "BJD-OBS" not in header
    assert any(named in w and "HJD-OBS/BJD-OBS not written" in w for w in warnings), warnings


def test_earlier_hjd_bjd_are_removed_when_they_cannot_be_recomputed():
    header = raw_header(TELRA="NOCOMM")
    header["HJD-OBS"] = 50000.0
    header["BJD-OBS"] = 50000.0
    warnings = run(header)
    assert "HJD-OBS" not in header and "BJD-OBS" not in header
    assert any("earlier HJD-OBS/BJD-OBS removed" in w for w in warnings), warnings


def test_missing_site_keywords_use_the_lbt_with_a_warning_each():
    header = raw_header(LATITUDE=None, LONGITUD=None, ELEVATIO=None)
    warnings = run(header)
    for key in ("LATITUDE", "LONGITUD", "ELEVATIO"):
        assert any(w.startswith(f"{key} missing") and "LBT" in w for w in warnings), warnings
    # The header's site is the LBT: same values as from the header.
    assert header["HJD-OBS"] == pytest.approx(HMJD_UTC, abs=ONE_MS_IN_DAYS)
    assert header["BJD-OBS"] == pytest.approx(BMJD_TDB, abs=ONE_MS_IN_DAYS)


@pytest.mark.parametrize(
    ("cards", "named"),
    [
        (dict(LONGITUD="NOCOMM"), "LONGITUD 'NOCOMM'"),
        (dict(LATITUDE=132.70131), "LATITUDE 132.70131"),
        (dict(ELEVATIO=True), "ELEVATIO True"),
    ],
)
def test_unusable_site_values_are_named_and_replaced_by_the_lbt(cards, named):
    header = raw_header(**cards)
    warnings = run(header)
    assert any(named in w and "LBT" in w for w in warnings), warnings
    assert header["BJD-OBS"] == pytest.approx(BMJD_TDB, abs=ONE_MS_IN_DAYS)


def test_site_given_as_strings_is_read():
    header = raw_header(LATITUDE="32.70131", LONGITUD="109.88906", ELEVATIO="3221.0")
    assert run(header) == []
    assert header["BJD-OBS"] == pytest.approx(BMJD_TDB, abs=ONE_MS_IN_DAYS)


@pytest.mark.parametrize(
    ("cards", "named"),
    [
        (dict(DATE_OBS=None), "DATE-OBS missing"),
        (dict(DATE_OBS="NOCOMM"), "DATE-OBS 'NOCOMM'"),
        (dict(DATE_OBS="2025-13-30"), "DATE-OBS '2025-13-30'"),
        (dict(UTC_OBS=None, TIME_OBS=None, UT=None), "UTC-OBS missing; TIME-OBS missing; UT missing"),
        (dict(UTC_OBS="NOCOMM", TIME_OBS="NOCOMM", UT="25:00:00"), "UT '25:00:00'"),
    ],
)
def test_no_usable_date_and_time_leaves_the_header_untouched(cards, named):
    header = raw_header(**cards)
    before = header.tostring()
    warnings = run(header)
    assert header.tostring() == before
    assert len(warnings) == 1 and named in warnings[0], warnings


@pytest.mark.filterwarnings("error")
def test_exposure_in_2035_gets_all_cards_and_no_escaping_warning():
    header = raw_header(date="2035-06-01", clock="04:00:00.000")
    assert run(header) == []
    assert header["DATE-OBS"] == "2035-06-01T04:00:00.000"
    assert header["MJD-OBS"] == pytest.approx(64479 + 4 / 24, abs=2e-11)
    assert abs(header["HJD-OBS"] - header["MJD-OBS"]) < 0.006  # light time across 1 au < 8.5 min
    assert "BJD-OBS" in header
