"""The astronomy of the timestamps step: MJD, heliocentric and barycentric MJD, offline.

The telescope computers have no internet, and astropy's defaults assume one:
it would try to download Earth-orientation (IERS) tables, and when it may not,
it raises for any date more than 30 days past the predictions of the tables it
has.  The incumbent then silently dropped HJD/BJD.  ``configure_offline`` turns
every download off and lets astropy use the tables shipped in the installed
``astropy-iers-data`` for ever: past their end UT1-UTC is held at its last
prediction and polar motion at its 50-year mean, which moves HJD/BJD by about a
microsecond at most.  That, and an expired leap-second table, are logged once
per process; they are not a problem of any one file, so they do not go into
file headers.

The computing functions are pure: strings and a ``Site`` in, floats out.  They
raise ``ValueError`` with a short reason for input they cannot use.  astropy
and ERFA warn about extrapolation on every call (and a test run or a service
that turns warnings into errors would then fail); those known warnings are
silenced inside the calls, and only those.

Everything astropy holds globally (configuration, the loaded tables, the
warning filters) is touched under one lock, so the module is also safe in a
threaded caller (the service's workers are processes today).
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from functools import lru_cache
from typing import Iterator

import astropy.units as u
import erfa
from astropy.coordinates import EarthLocation, SkyCoord
from astropy.time import Time
from astropy.utils import data as astropy_data
from astropy.utils import iers
from astropy.utils.exceptions import AstropyWarning

from . import headerval

__all__ = [
    "Site",
    "LBT",
    "ObservationMJDs",
    "LeapSecondStatus",
    "configure_offline",
    "warm_up",
    "leap_second_status",
    "warn_if_leap_seconds_expired",
    "ra_degrees",
    "dec_degrees",
    "earth_location",
    "mjd_utc",
    "heliocentric_mjd_utc",
    "barycentric_mjd_tdb",
    "observation_mjds",
]

log = logging.getLogger("modsingest.astrotime")

#: Plausible values of each site coordinate; outside them a header value is a fault.
LATITUDE_RANGE = (-90.0, 90.0)
WEST_LONGITUDE_RANGE = (-360.0, 360.0)
ELEVATION_RANGE = (-500.0, 9000.0)

# The ephemeris built into ERFA: needs no file and no download, and is good to
# a few km for the Earth, i.e. ~10 µs of light time, far inside the 1 ms goal.
_EPHEMERIS = "builtin"

# Warnings astropy and ERFA give for dates past the installed tables.  They
# repeat on every call and say nothing the once-per-process log does not.
_EXPECTED_WARNINGS = (
    (erfa.ErfaWarning, r'ERFA function "\w+" yielded .*dubious year'),
    (AstropyWarning, r"Tried to get polar motions for times (after|before) IERS data is valid"),
    (iers.IERSStaleWarning, r""),
)

_LOCK = threading.RLock()
_configured = False


@dataclass(frozen=True)
class Site:
    """An observatory as MODS headers describe it.

    The longitude is positive WEST, as in the header's LONGITUD; mixing this
    up with astropy's east-positive convention would put the LBT in China and
    move HJD by up to ~20 ms, so the field name says it.  The elevation is
    taken as height above the WGS84 ellipsoid; the header's is above sea level,
    a ~30 m difference worth 0.1 µs of light time.
    """

    latitude: float  # degrees north
    west_longitude: float  # degrees west of Greenwich
    elevation: float  # metres

    def __post_init__(self) -> None:
        for name, value, (low, high) in (
            ("latitude", self.latitude, LATITUDE_RANGE),
            ("west longitude", self.west_longitude, WEST_LONGITUDE_RANGE),
            ("elevation", self.elevation, ELEVATION_RANGE),
        ):
            if not low <= value <= high:  # also false for NaN
                raise ValueError(f"{name} {value!r} outside {low:g}..{high:g}")


#: The LBT, for headers without usable site keywords (processing.md).
LBT = Site(latitude=32.70131, west_longitude=109.88906, elevation=3221.0)


@dataclass(frozen=True)
class ObservationMJDs:
    """The three MJDs of one instant as seen from one site, towards one target."""

    mjd_utc: float  # MJD (UTC)
    hmjd_utc: float  # heliocentric MJD (UTC)
    bmjd_tdb: float  # barycentric MJD (TDB)


@dataclass(frozen=True)
class LeapSecondStatus:
    """The leap-second table in use: until when it is known to be complete."""

    expires: date
    expired: bool


class _LogOnce:
    """Log each kind of process-wide condition once, not once per file."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def warning(self, key: str, message: str, *args: object) -> bool:
        with self._lock:
            if key in self._seen:
                return False
            self._seen.add(key)
        log.warning(message, *args)
        return True


_once = _LogOnce()


@contextmanager
def _astropy_calls() -> Iterator[None]:
    """Hold the lock and silence the known extrapolation warnings.

    ``warnings.catch_warnings`` swaps process-global state in Python 3.11, so
    it is only ever entered under the lock; unknown warnings still pass.
    """
    with _LOCK, warnings.catch_warnings():
        for category, message in _EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        yield


def configure_offline() -> None:
    """Make astropy work from installed data only; safe to call any number of times.

    Must run before any astropy time or coordinate use in the process, since
    astropy reads the configuration when it first opens a table.  It also
    loads the leap-second table now, under the silenced warnings, so that
    astropy's own "leap-second file is expired" warning does not fire later in
    the middle of a file (``warn_if_leap_seconds_expired`` says it instead).
    """
    global _configured
    if _configured:
        return
    with _LOCK:
        if _configured:
            return
        iers.conf.auto_download = False
        iers.conf.auto_max_age = None  # never refuse a date past the predictions
        astropy_data.conf.allow_internet = False  # any download attempt fails at once
        with _astropy_calls():
            Time("2000-01-01T00:00:00", scale="utc").tai  # first conversion loads the leap seconds
        _configured = True


def warm_up() -> float:
    """Do one complete HJD/BJD computation so the first real file is as fast as the rest.

    Loading the IERS tables, ERFA's ephemeris and astropy's coordinate
    machinery takes about two seconds the first time and milliseconds after.
    Returns the seconds it took.
    """
    start = time.perf_counter()
    configure_offline()
    observation_mjds("2025-12-30T03:12:45.123", "05:35:17.3", "-05:23:28", LBT)
    warn_if_leap_seconds_expired()
    seconds = time.perf_counter() - start
    log.debug("time machinery warmed up in %.2f s", seconds)
    return seconds


def leap_second_status(today: date | None = None) -> LeapSecondStatus:
    """The expiry date of the leap-second table astropy loaded into ERFA.

    Past it, a leap second announced since would be missing and UTC-based
    times (MJD, HJD) would still be right but BJD (TDB) off by a second.
    """
    configure_offline()
    expires = erfa.leap_seconds.expires.date()
    today = today if today is not None else datetime.now(timezone.utc).date()
    return LeapSecondStatus(expires=expires, expired=today > expires)


def warn_if_leap_seconds_expired(today: date | None = None) -> LeapSecondStatus:
    """``leap_second_status``, logging once per process when the table has expired."""
    status = leap_second_status(today)
    if status.expired:
        _once.warning(
            "leap-seconds",
            "the installed leap-second table expired on %s: a leap second announced since "
            "would make BJD-OBS one second wrong; install a newer astropy-iers-data",
            status.expires.isoformat(),
        )
    return status


def ra_degrees(text: object) -> float:
    """ICRS right ascension in degrees from ``'hh:mm:ss.s'``.

    Only the sexagesimal form is accepted: a bare number could be hours or
    degrees, and the wrong guess would move HJD by minutes.
    """
    hours = _sexagesimal(text)
    if str(text).strip().startswith(("+", "-")):
        raise ValueError("a right ascension has no sign")
    if not 0.0 <= hours < 24.0:
        raise ValueError("hours not below 24")
    return hours * 15.0


def dec_degrees(text: object) -> float:
    """ICRS declination in degrees from ``'±dd:mm:ss'``."""
    degrees = _sexagesimal(text)
    if abs(degrees) > 90.0:
        raise ValueError("declination beyond ±90°")
    return degrees


def _sexagesimal(text: object) -> float:
    if not isinstance(text, str):
        raise ValueError("not a string")
    if ":" not in text:
        raise ValueError("not sexagesimal (..:..:..)")
    return headerval.degrees(text)


@lru_cache(maxsize=32)
def earth_location(site: Site) -> EarthLocation:
    """The astropy location of ``site``, built once per site (never from a registry)."""
    return EarthLocation.from_geodetic(
        lon=-site.west_longitude * u.deg, lat=site.latitude * u.deg, height=site.elevation * u.m
    )


def mjd_utc(utc: str) -> float:
    """MJD (UTC) of an ISO ``'YYYY-MM-DDThh:mm:ss[.fff]'`` UTC instant."""
    configure_offline()
    with _astropy_calls():
        return float(_utc_time(utc, None).mjd)


def heliocentric_mjd_utc(utc: str, ra: str, dec: str, site: Site) -> float:
    """Heliocentric MJD (UTC): when the light reached the Sun's centre, in UTC."""
    return observation_mjds(utc, ra, dec, site).hmjd_utc


def barycentric_mjd_tdb(utc: str, ra: str, dec: str, site: Site) -> float:
    """Barycentric MJD (TDB): when the light reached the solar-system barycentre."""
    return observation_mjds(utc, ra, dec, site).bmjd_tdb


def observation_mjds(utc: str, ra: str, dec: str, site: Site) -> ObservationMJDs:
    """MJD (UTC), heliocentric MJD (UTC) and barycentric MJD (TDB) of one instant.

    One function for the three because they share the parsed time and the
    observatory position; the step needs all of them for every file.
    """
    configure_offline()
    target = SkyCoord(ra=ra_degrees(ra) * u.deg, dec=dec_degrees(dec) * u.deg, frame="icrs")
    location = earth_location(site)
    warn_if_leap_seconds_expired()
    with _astropy_calls():
        start = _utc_time(utc, location)
        _note_if_past_iers(start)
        helio = start.light_travel_time(target, "heliocentric", location=location, ephemeris=_EPHEMERIS)
        bary = start.light_travel_time(target, "barycentric", location=location, ephemeris=_EPHEMERIS)
        mjd = float(start.mjd)
        return ObservationMJDs(
            mjd_utc=mjd,
            hmjd_utc=mjd + float(helio.to_value(u.day)),
            bmjd_tdb=float((start.tdb + bary).mjd),
        )


def _utc_time(utc: str, location: EarthLocation | None) -> Time:
    if not isinstance(utc, str):
        raise ValueError("UTC instant is not a string")
    try:
        return Time(utc.strip(), format="isot", scale="utc", location=location)
    except ValueError as exc:
        raise ValueError(f"{utc!r} is not an ISO UTC date and time") from exc


@lru_cache(maxsize=1)
def _iers_end_mjd() -> float:
    """The last day of the Earth-orientation table astropy uses."""
    table = iers.earth_orientation_table.get()
    return float(table["MJD"][-1].to_value(u.day))


def _note_if_past_iers(start: Time) -> None:
    end = _iers_end_mjd()
    if start.mjd > end:
        _once.warning(
            "iers-past-end",
            "observation dates are past the installed IERS Earth-orientation data (ends %s): "
            "UT1-UTC is held at its last prediction and polar motion at its 50-year mean, "
            "about 1 µs on HJD/BJD at most; a newer astropy-iers-data removes this note",
            Time(end, format="mjd").to_value("iso", subfmt="date"),
        )
