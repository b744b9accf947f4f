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

from modsingest import astrotime

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
    location = astrotime.earth_location(HEADER_SITE)
    assert location.lon.deg == pytest.approx(-109.88906)
    assert location.lat.deg == pytest.approx(32.70131)
    # The same longitude read as east moves the site half-way round the Earth:
    # tens of ms of light time, so the reference test above would catch it too.
    east = astrotime.Site(32.70131, -109.88906, 3221.0)
    moved = astrotime.heliocentric_mjd_utc(UTC, RA, DEC, east)
    assert abs(moved - HMJD_UTC) > 10 * ONE_MS_IN_DAYS


def test_earth_location_is_built_once_per_site():
    same_site = astrotime.Site(32.70131, 109.88906, 3221.0)
    assert astrotime.earth_location(HEADER_SITE) is astrotime.earth_location(same_site)


@pytest.mark.parametrize("utc", ["2031-03-15T06:00:00.000", "2035-06-01T00:00:00.000"])
def test_dates_years_past_the_installed_tables_work_without_warnings(utc):
    before = list(warnings.filters)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any escaping astropy/ERFA warning fails the test
        mjds = astrotime.observation_mjds(utc, RA, DEC, astrotime.LBT)
    assert list(warnings.filters) == before  # the silencing did not leak out
    assert mjds.mjd_utc == pytest.approx(astrotime.mjd_utc(utc), abs=0)
    assert abs(mjds.hmjd_utc - mjds.mjd_utc) < MAX_LIGHT_TIME_DAYS
    # No leap second is known after 2017, so TT-UTC stays 69.184 s; TDB-TT < 2 ms.
    assert abs(mjds.bmjd_tdb - mjds.mjd_utc - TT_MINUS_UTC_DAYS) < MAX_LIGHT_TIME_DAYS + 2e-3 / 86400


def test_past_the_iers_tables_is_logged_once(fresh_log_once, caplog):
    with caplog.at_level(logging.WARNING, logger="modsingest.astrotime"):
        astrotime.observation_mjds(UTC, RA, DEC, astrotime.LBT)
        assert not caplog.records  # inside the tables: nothing to say
        astrotime.observation_mjds("2031-03-15T06:00:00.000", RA, DEC, astrotime.LBT)
        astrotime.observation_mjds("2035-06-01T00:00:00.000", RA, DEC, astrotime.LBT)
    notes = [r for r in caplog.records if "IERS" in r.getMessage()]
    assert len(notes) == 1


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

from modsingest import astrotime
warm = astrotime.warm_up()
start = time.perf_counter()
ref = astrotime.observation_mjds("2025-12-30T03:12:45.123", "05:35:17.3", "-05:23:28", astrotime.LBT)
after_warm_up = time.perf_counter() - start
late = astrotime.observation_mjds("2035-06-01T00:00:00.000", "12:00:00", "+45:00:00", astrotime.LBT)
print(json.dumps(dict(attempts=attempts, ref=[ref.mjd_utc, ref.hmjd_utc, ref.bmjd_tdb],
                      late=late.bmjd_tdb, warm=warm, after_warm_up=after_warm_up,
                      leap=astrotime.leap_second_status().expires.isoformat())))
"""


def test_fresh_process_without_network_computes_everything(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / "cache"),
               XDG_CONFIG_HOME=str(tmp_path / "config"))
    env.pop("ASTROPY_CACHE_DIR", None)
    done = subprocess.run([sys.executable, "-c", _OFFLINE_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["attempts"] == []
    assert result["ref"][0] == pytest.approx(MJD_UTC, abs=2e-11)
    assert result["ref"][1] == pytest.approx(HMJD_UTC, abs=ONE_MS_IN_DAYS)
    assert result["ref"][2] == pytest.approx(BMJD_TDB, abs=ONE_MS_IN_DAYS)
    assert math.isfinite(result["late"])
    # Cold, the first computation takes seconds; warm_up must have paid for it.
    assert result["after_warm_up"] < 0.5, result
