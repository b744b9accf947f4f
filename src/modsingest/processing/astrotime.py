"""The astronomy of the timestamps step: MJD, heliocentric and barycentric MJD, offline.

The telescope computers have no internet, and astropy's defaults assume one:
it would try to download Earth-orientation (IERS) tables, and when it may not,
it raises for any date more than 30 days past the predictions of the tables it
has.  The incumbent then silently dropped HJD/BJD.

Here the computation is ERFA's own (``pyerfa``, the library under astropy's
time and coordinates), called directly: UTC to TAI/TT/TDB with the leap
seconds of the installed ``astropy-iers-data``, then ``apco13`` for the
observer's barycentric and heliocentric position (Earth from ERFA's built-in
ephemeris ``epv00``, plus the site rotated into the celestial frame), and the
light time along the target's direction, as astropy's ``light_travel_time``
does.  Why not astropy's coordinate chain: it is two full frame-transform
chains per file (28 ms), its warm state (the IERS tables and the transform
graph) is about 60 MB that every worker process carries, and loading it took
seconds at start.  What this gives up is UT1-UTC and polar motion from the
IERS tables: they are taken as zero, which moves the observatory by at most
~0.4 km along its daily circle, about 1.5 µs of light time (the tests hold the
result to astropy's full IERS-based computation within 10 µs, and to an
independent reference within 1 ms as processing.md asks).  So no IERS table is
needed at all, and dates years past the installed tables work unchanged.

``configure_offline`` still turns astropy's downloads off for anything else in
the process, and loads the installed leap-second table into ERFA; an expired
one is logged once per process (it is not a problem of any one file, so it
does not go into file headers).

The computing functions are pure: strings and a ``Site`` in, floats out.  They
raise ``ValueError`` with a short reason for input they cannot use.  ERFA warns
"dubious year" for dates past the leap-second table on every call (and a test
run or a service that turns warnings into errors would then fail); that known
warning is silenced inside the calls, and only it.

Everything astropy and ERFA hold globally (configuration, the leap-second
table, the warning filters) is touched under one lock, so the module is also
safe in a threaded caller (the service's workers are processes today).
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache

import erfa
from astropy.utils import data as astropy_data
from astropy.utils import iers
from astropy.utils.exceptions import AstropyWarning

from modsingest.processing import headerval

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
    "site_terms",
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

#: Metres in one astronomical unit, and the speed of light (IAU 2012, exact).
AU_METRES = 149597870700.0
LIGHT_M_PER_S = 299792458.0
_LIGHT_DAYS_PER_AU = AU_METRES / LIGHT_M_PER_S / 86400.0

# Warnings astropy and ERFA give for dates past the installed tables.  They
# repeat on every call and say nothing the once-per-process log does not.
_EXPECTED_WARNINGS = (
    (erfa.ErfaWarning, r'ERFA function "\w+" yielded .*dubious year'),
    (AstropyWarning, r"Tried to get polar motions for times (after|before) IERS data is valid"),
    (iers.IERSStaleWarning, r""),
)

#: The only UTC form the step writes (DATE-OBS): 'YYYY-MM-DDThh:mm:ss[.fff]'.
_ISO_UTC = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2}(?:\.\d*)?)")

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
        from astropy.time import Time  # here: nothing else in this module needs it

        with _astropy_calls():
            # astropy's first UTC conversion loads astropy-iers-data's leap
            # seconds into ERFA, which every computation below then uses
            _ = Time("2000-01-01T00:00:00", scale="utc").tai
        _configured = True


def warm_up() -> float:
    """Do one complete HJD/BJD computation so the first real file is as fast as the rest.

    What remains to warm is small (astropy's leap-second table, ERFA's first
    calls, tens of milliseconds); doing it at start keeps it off the first
    file all the same.  Returns the seconds it took.
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
    today = today if today is not None else datetime.now(UTC).date()
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


@dataclass(frozen=True)
class SiteTerms:
    """What ERFA needs of a site, in its units (radians, metres, km)."""

    east_longitude: float  # radians, east positive (ERFA's convention)
    latitude: float  # radians, geodetic
    height: float  # metres above the WGS84 ellipsoid
    spin_axis_km: float  # distance from the Earth's spin axis (for TDB-TT)
    equator_km: float  # distance north of the equatorial plane (for TDB-TT)


@lru_cache(maxsize=32)
def site_terms(site: Site) -> SiteTerms:
    """The ERFA terms of ``site``, computed once per site (never from a registry)."""
    east = math.radians(-site.west_longitude)
    lat = math.radians(site.latitude)
    x, y, z = erfa.gd2gc(1, east, lat, site.elevation)  # 1 = WGS84
    return SiteTerms(east, lat, site.elevation, math.hypot(x, y) / 1000.0, z / 1000.0)


def mjd_utc(utc: str) -> float:
    """MJD (UTC) of an ISO ``'YYYY-MM-DDThh:mm:ss[.fff]'`` UTC instant."""
    configure_offline()
    with _astropy_calls():
        jd1, jd2 = _utc_jd(utc)
    return _mjd(jd1, jd2)


def heliocentric_mjd_utc(utc: str, ra: str, dec: str, site: Site) -> float:
    """Heliocentric MJD (UTC): when the light reached the Sun's centre, in UTC."""
    return observation_mjds(utc, ra, dec, site).hmjd_utc


def barycentric_mjd_tdb(utc: str, ra: str, dec: str, site: Site) -> float:
    """Barycentric MJD (TDB): when the light reached the solar-system barycentre."""
    return observation_mjds(utc, ra, dec, site).bmjd_tdb


def observation_mjds(utc: str, ra: str, dec: str, site: Site) -> ObservationMJDs:
    """MJD (UTC), heliocentric MJD (UTC) and barycentric MJD (TDB) of one instant.

    One function for the three because they share the parsed time and the
    observatory position; the step needs all of them for every file.  The
    light time is the observer's position (from the Sun's centre, or from the
    barycentre) projected on the unit vector towards the ICRS target, over c:
    the same model as astropy's ``Time.light_travel_time``.
    """
    configure_offline()
    towards = erfa.s2c(math.radians(ra_degrees(ra)), math.radians(dec_degrees(dec)))
    terms = site_terms(site)
    warn_if_leap_seconds_expired()
    with _astropy_calls():
        jd1, jd2 = _utc_jd(utc)
        tdb1, tdb2 = _tdb(jd1, jd2, terms)
        # UT1-UTC, polar motion and the refraction inputs are zero (see the module docstring)
        astrom, _ = erfa.apco13(
            jd1, jd2, 0.0, terms.east_longitude, terms.latitude, terms.height, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
        )
    from_sun = astrom["eh"] * astrom["em"]  # au: heliocentric unit vector times distance
    from_barycentre = astrom["eb"]  # au
    mjd = _mjd(jd1, jd2)
    return ObservationMJDs(
        mjd_utc=mjd,
        hmjd_utc=mjd + _dot(from_sun, towards) * _LIGHT_DAYS_PER_AU,
        bmjd_tdb=_mjd(tdb1, tdb2) + _dot(from_barycentre, towards) * _LIGHT_DAYS_PER_AU,
    )


def _dot(a, b) -> float:
    return float(a[0] * b[0] + a[1] * b[1] + a[2] * b[2])


def _mjd(jd1: float, jd2: float) -> float:
    """MJD of a two-part JD; the whole-day part first, so no precision is lost."""
    return float((jd1 - erfa.DJM0) + jd2)


def _utc_jd(utc: str) -> tuple[float, float]:
    """ERFA's two-part quasi-JD of a UTC instant (a leap second's 60.x s is allowed)."""
    if not isinstance(utc, str):
        raise ValueError("UTC instant is not a string")
    m = _ISO_UTC.fullmatch(utc.strip())
    if m is None:
        raise ValueError(f"{utc!r} is not an ISO UTC date and time (YYYY-MM-DDThh:mm:ss.sss)")
    year, month, day, hour, minute = (int(g) for g in m.groups()[:5])
    try:
        with warnings.catch_warnings():
            # "time is after end of day" (a 60.x s outside a leap second) is an error here
            warnings.filterwarnings("error", message=r".*time is after end of day", category=erfa.ErfaWarning)
            jd1, jd2 = erfa.dtf2d("UTC", year, month, day, hour, minute, float(m.group(6)))
    except (ValueError, erfa.ErfaWarning) as exc:
        raise ValueError(f"{utc!r} is not a valid UTC date and time ({exc})") from exc
    return float(jd1), float(jd2)


def _tdb(jd1: float, jd2: float, terms: SiteTerms) -> tuple[float, float]:
    """TDB of a UTC quasi-JD at the site: UTC → TAI (leap seconds) → TT → TDB."""
    tai1, tai2 = erfa.utctai(jd1, jd2)
    tt1, tt2 = erfa.taitt(tai1, tai2)
    # TDB-TT (at most 1.7 ms) needs the time of day and the site only roughly:
    # UTC stands in for UT1, a 0.9 s difference that changes it by picoseconds.
    day_fraction = ((jd1 - 0.5) % 1.0 + jd2) % 1.0
    tdb_minus_tt = erfa.dtdb(
        tt1, tt2, day_fraction, terms.east_longitude, terms.spin_axis_km, terms.equator_km
    )
    return float(tt1), float(tt2) + float(tdb_minus_tt) / 86400.0
