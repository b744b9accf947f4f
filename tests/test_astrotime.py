"""modsingest.astrotime: offline astropy set-up, MJD/HJD/BJD, leap seconds (processing.md "timestamps")."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import warnings
from datetime import date

import pytest
from astropy.utils import data as astropy_data
from astropy.utils import iers

from modsingest.processing import astrotime

# The reference exposure (processing.md accuracy rule; values from an
# independent barycentric computation for the LBT site of the raw headers).
UTC = "2025-12-30T03:12:45.123"
RA, DEC = "05:35:17.3", "-05:23:28"
MJD_UTC = 61039.13385559028
HMJD_UTC = 61039.13866143456
BMJD_TDB = 61039.13943207522
ONE_MS_IN_DAYS = 1.16e-8
# Largest possible |HJD - MJD| or |BJD - TT|: light time over 1.02 au, in days.
MAX_LIGHT_TIME_DAYS = 1.02 * 499.005 / 86400
TT_MINUS_UTC_DAYS = 69.184 / 86400  # 37 leap seconds + 32.184 s, valid since 2017

HEADER_SITE = astrotime.Site(latitude=32.70131, west_longitude=109.88906, elevation=3221.0)


@pytest.fixture
def fresh_log_once(monkeypatch):
    """A clean once-per-process memory, so the test sees the first occurrence."""
    monkeypatch.setattr(astrotime, "_once", astrotime._LogOnce())


def test_configure_offline_turns_every_download_off():
    astrotime.configure_offline()
    assert iers.conf.auto_download is False
    assert iers.conf.auto_max_age is None
    assert astropy_data.conf.allow_internet is False


def test_mjd_utc_of_reference_instant():
    expected = 61039 + (3 * 3600 + 12 * 60 + 45.123) / 86400  # 2025-12-30 is MJD 61039
    assert astrotime.mjd_utc(UTC) == pytest.approx(MJD_UTC, abs=2e-11)
    assert astrotime.mjd_utc(UTC) == pytest.approx(expected, abs=2e-11)


def test_heliocentric_and_barycentric_mjd_agree_with_reference_within_1_ms():
    hmjd = astrotime.heliocentric_mjd_utc(UTC, RA, DEC, HEADER_SITE)
    bmjd = astrotime.barycentric_mjd_tdb(UTC, RA, DEC, HEADER_SITE)
    assert hmjd == pytest.approx(HMJD_UTC, abs=ONE_MS_IN_DAYS)
    assert bmjd == pytest.approx(BMJD_TDB, abs=ONE_MS_IN_DAYS)


def test_observation_mjds_gives_the_three_single_values():
    both = astrotime.observation_mjds(UTC, RA, DEC, HEADER_SITE)
    assert both.mjd_utc == astrotime.mjd_utc(UTC)
    assert both.hmjd_utc == astrotime.heliocentric_mjd_utc(UTC, RA, DEC, HEADER_SITE)
    assert both.bmjd_tdb == astrotime.barycentric_mjd_tdb(UTC, RA, DEC, HEADER_SITE)


def test_longitude_is_positive_west():
    terms = astrotime.site_terms(HEADER_SITE)
    assert math.degrees(terms.east_longitude) == pytest.approx(-109.88906)
    assert math.degrees(terms.latitude) == pytest.approx(32.70131)
    # The same longitude read as east moves the site half-way round the Earth:
    # tens of ms of light time, so the reference test above would catch it too.
    east = astrotime.Site(32.70131, -109.88906, 3221.0)
    moved = astrotime.heliocentric_mjd_utc(UTC, RA, DEC, east)
    assert abs(moved - HMJD_UTC) > 10 * ONE_MS_IN_DAYS


def test_site_terms_are_computed_once_per_site_and_match_astropys_location():
    import astropy.units as u
    from astropy.coordinates import EarthLocation

    same_site = astrotime.Site(32.70131, 109.88906, 3221.0)
    terms = astrotime.site_terms(HEADER_SITE)
    assert astrotime.site_terms(same_site) is terms
    loc = EarthLocation.from_geodetic(lon=-109.88906 * u.deg, lat=32.70131 * u.deg, height=3221 * u.m)
    x, y, z = (c.to_value(u.km) for c in loc.geocentric)
    assert terms.spin_axis_km == pytest.approx(math.hypot(x, y), abs=1e-6)
    assert terms.equator_km == pytest.approx(z, abs=1e-6)
    assert terms.east_longitude == pytest.approx(math.radians(-109.88906), abs=1e-15)


# Dates inside the installed IERS tables, and targets all over the sky.
_ASTROPY_CASES = [
    ("2019-03-21T06:30:00.000", "00:00:00", "+00:00:00"),
    ("2021-06-21T11:59:59.999", "06:00:00", "+66:33:00"),
    ("2023-09-23T02:00:00.500", "12:30:45.6", "-45:10:00"),
    ("2024-12-31T23:59:59.900", "18:00:00", "-89:00:00"),
    ("2025-12-30T03:12:45.123", "05:35:17.3", "-05:23:28"),
    ("2026-02-15T08:08:08.080", "23:59:59.9", "+89:59:00"),
]


@pytest.mark.parametrize(("utc", "ra", "dec"), _ASTROPY_CASES)
def test_agrees_with_astropys_full_iers_computation_within_10_microseconds(utc, ra, dec):
    """astropy's own chain (IERS UT1 and polar motion, frame transforms) as the oracle."""
    import astropy.units as u
    from astropy.coordinates import EarthLocation, SkyCoord
    from astropy.time import Time

    site = astrotime.LBT
    where = EarthLocation.from_geodetic(
        lon=-site.west_longitude * u.deg, lat=site.latitude * u.deg, height=site.elevation * u.m
    )
    target = SkyCoord(ra=astrotime.ra_degrees(ra) * u.deg, dec=astrotime.dec_degrees(dec) * u.deg)
    t = Time(utc, format="isot", scale="utc", location=where)
    helio = t.light_travel_time(target, "heliocentric", ephemeris="builtin")
    bary = t.light_travel_time(target, "barycentric", ephemeris="builtin")
    mine = astrotime.observation_mjds(utc, ra, dec, site)
    ten_us = 10e-6 / 86400
    assert mine.mjd_utc == pytest.approx(float(t.mjd), abs=2e-11)
    assert mine.hmjd_utc == pytest.approx(float(t.mjd + helio.to_value(u.day)), abs=ten_us)
    assert mine.bmjd_tdb == pytest.approx(float((t.tdb + bary).mjd), abs=ten_us)


def test_a_leap_second_is_a_valid_instant_only_where_there_was_one():
    inside = astrotime.mjd_utc("2016-12-31T23:59:60.500")
    assert inside == pytest.approx(57754 - 0.5 / 86401, abs=1e-9)
    assert astrotime.mjd_utc("2017-01-01T00:00:00.000") == 57754.0
    with pytest.raises(ValueError):
        astrotime.mjd_utc("2025-12-30T23:59:60.500")


def assert_no_filter_leak(call):
    """Run ``call`` with every warning an error, and check it leaves the warning filters as it
    found them.  The check is made inside ``catch_warnings``: that block restores the filters
    when it ends, so a check after it could never see a leak."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any escaping astropy/ERFA warning fails the test
        inside = list(warnings.filters)
        result = call()
        assert list(warnings.filters) == inside, "the silencing leaked out"
    return result


def test_the_leak_check_can_fail():
    def leaky():
        warnings.filterwarnings("ignore", message="something")

    with pytest.raises(AssertionError, match="the silencing leaked out"):
        assert_no_filter_leak(leaky)


@pytest.mark.parametrize("utc", ["2031-03-15T06:00:00.000", "2035-06-01T00:00:00.000"])
def test_dates_years_past_the_installed_tables_work_without_warnings(utc):
    mjds = assert_no_filter_leak(lambda: astrotime.observation_mjds(utc, RA, DEC, astrotime.LBT))
    assert mjds.mjd_utc == pytest.approx(astrotime.mjd_utc(utc), abs=0)
    assert abs(mjds.hmjd_utc - mjds.mjd_utc) < MAX_LIGHT_TIME_DAYS
    # No leap second is known after 2017, so TT-UTC stays 69.184 s; TDB-TT < 2 ms.
    assert abs(mjds.bmjd_tdb - mjds.mjd_utc - TT_MINUS_UTC_DAYS) < MAX_LIGHT_TIME_DAYS + 2e-3 / 86400


def test_dates_past_the_installed_tables_log_nothing(fresh_log_once, caplog):
    """No IERS table is used, so its end is no event (only an expired leap-second table is)."""
    with caplog.at_level(logging.WARNING, logger="modsingest.astrotime"):
        astrotime.observation_mjds("2031-03-15T06:00:00.000", RA, DEC, astrotime.LBT)
    assert not [r for r in caplog.records if "IERS" in r.getMessage()]


def test_leap_second_status_of_the_installed_table():
    status = astrotime.leap_second_status(today=date(2020, 1, 1))
    assert status.expires > date(2020, 1, 1)
    assert status.expired is False
    assert astrotime.leap_second_status(today=date(2099, 1, 1)).expired is True


def test_expired_leap_second_table_is_logged_once(fresh_log_once, caplog):
    with caplog.at_level(logging.WARNING, logger="modsingest.astrotime"):
        astrotime.warn_if_leap_seconds_expired(today=date(2020, 1, 1))
        assert not caplog.records
        astrotime.warn_if_leap_seconds_expired(today=date(2099, 1, 1))
        astrotime.warn_if_leap_seconds_expired(today=date(2099, 1, 2))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert "leap-second table expired" in messages[0]


@pytest.mark.parametrize(
    ("text", "degrees"),
    [("05:35:17.3", 83.82208333333333), ("00:00:00", 0.0), ("23:59:59.9", 359.99958333333336)],
)
def test_ra_from_hours_minutes_seconds(text, degrees):
    assert astrotime.ra_degrees(text) == pytest.approx(degrees, abs=1e-12)


@pytest.mark.parametrize(
    ("text", "degrees"),
    [("-05:23:28", -5.391111111111111), ("+05:23:28", 5.391111111111111), ("-00:30:00", -0.5)],
)
def test_dec_sign_applies_to_the_whole_angle(text, degrees):
    assert astrotime.dec_degrees(text) == pytest.approx(degrees, abs=1e-12)


@pytest.mark.parametrize("text", ["NOCOMM", "", "   ", "83.82", "24:00:00", "-05:35:17", "05:61:00", 5.5])
def test_unusable_ra_is_refused(text):
    with pytest.raises(ValueError):
        astrotime.ra_degrees(text)


@pytest.mark.parametrize("text", ["NOCOMM", "", "-5.39", "+91:00:00", "-90:00:01", None])
def test_unusable_dec_is_refused(text):
    with pytest.raises(ValueError):
        astrotime.dec_degrees(text)


@pytest.mark.parametrize("utc", ["03:12:45", "2025-12-30 03:12:45", "2025-12-30T25:00:00", "NOCOMM"])
def test_unusable_utc_instant_is_a_value_error(utc):
    with pytest.raises(ValueError):
        astrotime.mjd_utc(utc)


@pytest.mark.parametrize(
    "site",
    [
        dict(latitude=91.0, west_longitude=109.9, elevation=3221.0),
        dict(latitude=32.7, west_longitude=400.0, elevation=3221.0),
        dict(latitude=32.7, west_longitude=109.9, elevation=math.nan),
    ],
)
def test_impossible_site_is_refused(site):
    with pytest.raises(ValueError):
        astrotime.Site(**site)


# Runs in a fresh interpreter, with sockets and urlopen replaced by a recorder
# that refuses, an empty astropy cache and configuration, so nothing loaded or
# downloaded earlier can help.  Prints what happened as JSON.
_OFFLINE_SCRIPT = r"""
import json, socket, time, urllib.request
attempts = []
def refuse(*args, **kwargs):
    attempts.append(repr(args[:2]))
    raise OSError("network access attempted")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
urllib.request.urlopen = refuse

from modsingest.processing import astrotime
warm = astrotime.warm_up()
start = time.perf_counter()
ref = astrotime.observation_mjds("2025-12-30T03:12:45.123", "05:35:17.3", "-05:23:28", astrotime.LBT)
after_warm_up = time.perf_counter() - start
late = astrotime.observation_mjds("2035-06-01T00:00:00.000", "12:00:00", "+45:00:00", astrotime.LBT)
import sys
print(json.dumps(dict(coordinates="astropy.coordinates" in sys.modules, attempts=attempts, ref=[ref.mjd_utc, ref.hmjd_utc, ref.bmjd_tdb],
                      late=late.bmjd_tdb, warm=warm, after_warm_up=after_warm_up,
                      leap=astrotime.leap_second_status().expires.isoformat())))
"""


def test_fresh_process_without_network_computes_everything(tmp_path):
    env = dict(
        os.environ,
        HOME=str(tmp_path),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
    )
    env.pop("ASTROPY_CACHE_DIR", None)
    done = subprocess.run(
        [sys.executable, "-c", _OFFLINE_SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["attempts"] == []
    # the 60 MB coordinate machinery is never loaded (astrotime's docstring)
    assert result["coordinates"] is False
    assert result["ref"][0] == pytest.approx(MJD_UTC, abs=2e-11)
    assert result["ref"][1] == pytest.approx(HMJD_UTC, abs=ONE_MS_IN_DAYS)
    assert result["ref"][2] == pytest.approx(BMJD_TDB, abs=ONE_MS_IN_DAYS)
    assert math.isfinite(result["late"])
    # Cold, the first computation takes seconds; warm_up must have paid for it.
    assert result["after_warm_up"] < 0.5, result
