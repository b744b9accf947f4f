"""Step ``timestamps``: DATE-OBS as date and time, MJD-OBS, HJD-OBS, BJD-OBS.

Raw MODS files hold the date alone in DATE-OBS and the time of day in
UTC-OBS (TIME-OBS and UT repeat it), with azcam's ``.1000`` for "the next
second".  Downstream tools and the archive want one ISO instant, and timing
work wants the instant moved to the Sun and the solar-system barycentre.  The
astronomy lives in ``modsingest.astrotime``; this module only reads and writes
header cards and says, in a warning naming the keyword and the value, why
something could not be written.

Processing a processed file must give the same header: a DATE-OBS that already
holds a time is that file's instant (its date may already carry a ``.1000``
rollover, so re-adding UTC-OBS to it would move it a day), and every other
card is computed from the DATE-OBS written here, never from the raw keywords.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from astropy.io import fits

from modsingest.processing import astrotime, headerval

#: Where the time of day is looked for, in order (processing.md).
TIME_KEYWORDS = ("UTC-OBS", "TIME-OBS", "UT")

#: The site keywords with astrotime's range and the LBT value used instead.
SITE_KEYWORDS = (
    ("LATITUDE", astrotime.LATITUDE_RANGE, astrotime.LBT.latitude, "deg N"),
    ("LONGITUD", astrotime.WEST_LONGITUDE_RANGE, astrotime.LBT.west_longitude, "deg W"),
    ("ELEVATIO", astrotime.ELEVATION_RANGE, astrotime.LBT.elevation, "m"),
)

DATE_OBS_COMMENT = "UTC date and time at start of obs"
MJD_COMMENT = "MJD at start of obs [UTC]"
HJD_COMMENT = "Heliocentric MJD at start of obs [UTC]"
BJD_COMMENT = "Barycentric MJD at start of obs [TDB]"


def run(frame, ctx) -> list[str]:
    """Write DATE-OBS, MJD-OBS, HJD-OBS, BJD-OBS into the primary; return the warnings.

    Without a usable date and time nothing is changed: a guessed DATE-OBS would
    be worse than the raw one.
    """
    header = frame.primary
    warnings: list[str] = []
    start = observation_start(header, warnings)
    if start is None:
        return warnings
    instant = iso_milliseconds(start)
    header.set("DATE-OBS", instant, DATE_OBS_COMMENT)
    write_mjds(header, instant, warnings)
    return warnings


# ----------------------------------------------------------------------------
# DATE-OBS


def observation_start(header: fits.Header, warnings: list[str]) -> datetime | None:
    """The UTC start of the exposure, or None (with a warning) when the header has none."""
    raw = header.get("DATE-OBS")
    not_written = "MJD-OBS/HJD-OBS/BJD-OBS not written"
    if raw is None:
        warnings.append(f"DATE-OBS missing; {not_written}")
        return None
    if not isinstance(raw, str):
        warnings.append(f"DATE-OBS {raw!r} is not a string; left as it is, {not_written}")
        return None
    day, clock = headerval.split_date_obs(raw)
    bad_date = _date_problem(day)
    if bad_date:
        warnings.append(f"DATE-OBS {raw!r} unusable ({bad_date}); left as it is, {not_written}")
        return None
    if clock is not None:
        try:
            return headerval.date_time(day, clock)
        except ValueError as exc:
            warnings.append(
                f"DATE-OBS {raw!r} time part unusable ({exc}); time of day from {'/'.join(TIME_KEYWORDS)}"
            )
    start, problems, used = _time_from_keywords(header, day)
    if start is None:
        warnings.append(
            "no usable time of day ("
            + "; ".join(problems)
            + f"); DATE-OBS {raw!r} left as it is, {not_written}"
        )
    elif problems:
        warnings.append("; ".join(problems) + f"; time of day taken from {used}")
    return start


def _date_problem(day: str) -> str | None:
    """Why the date part of DATE-OBS is unusable, or None when it is a date."""
    try:
        headerval.date_time(day, "00:00:00")
    except ValueError as exc:
        return str(exc)
    return None


def _time_from_keywords(header: fits.Header, day: str) -> tuple[datetime | None, list[str], str | None]:
    """(start, problems met on the way, keyword used): the first usable of TIME_KEYWORDS."""
    problems: list[str] = []
    for key in TIME_KEYWORDS:
        value = header.get(key)
        if value is None:
            problems.append(f"{key} missing")
        elif not isinstance(value, str):
            problems.append(f"{key} {value!r} is not a string")
        else:
            try:
                return headerval.date_time(day, value), problems, key
            except ValueError as exc:
                problems.append(f"{key} {value!r} unusable ({exc})")
    return None, problems, None


def round_to_millisecond(moment: datetime) -> datetime:
    """``moment`` to the nearest millisecond, halves up, carrying into the date."""
    milliseconds, rest = divmod(moment.microsecond, 1000)
    if rest >= 500:
        milliseconds += 1
    return moment.replace(microsecond=0) + timedelta(milliseconds=milliseconds)


def iso_milliseconds(moment: datetime) -> str:
    """``'YYYY-MM-DDThh:mm:ss.sss'``: always three fraction digits, as the archive expects."""
    m = round_to_millisecond(moment)
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T"
        f"{m.hour:02d}:{m.minute:02d}:{m.second:02d}.{m.microsecond // 1000:03d}"
    )


# ----------------------------------------------------------------------------
# MJD-OBS, HJD-OBS, BJD-OBS


def write_mjds(header: fits.Header, instant: str, warnings: list[str]) -> None:
    """MJD-OBS always; HJD-OBS and BJD-OBS when the target is known; all right after DATE-OBS.

    When HJD/BJD cannot be computed, cards of those names already in the header
    are removed: they could only belong to another DATE-OBS than the one just
    written, and a wrong BJD is worse than none.
    """
    target, why_not = telescope_target(header)
    mjds = None
    if target is not None:
        ra, dec = target
        site = observatory(header, warnings)
        try:
            mjds = astrotime.observation_mjds(instant, ra, dec, site)
        except ValueError as exc:
            why_not = f"not computed for DATE-OBS {instant!r}, TELRA {ra!r}, TELDEC {dec!r} ({exc})"
    if mjds is None:
        _write_mjd_only(header, instant, why_not, warnings)
        return
    header.set("MJD-OBS", mjds.mjd_utc, MJD_COMMENT, after="DATE-OBS")
    header.set("HJD-OBS", mjds.hmjd_utc, HJD_COMMENT, after="MJD-OBS")
    header.set("BJD-OBS", mjds.bmjd_tdb, BJD_COMMENT, after="HJD-OBS")


def _write_mjd_only(header: fits.Header, instant: str, why_not: str, warnings: list[str]) -> None:
    try:
        header.set("MJD-OBS", astrotime.mjd_utc(instant), MJD_COMMENT, after="DATE-OBS")
    except ValueError as exc:
        warnings.append(f"MJD-OBS not computed for DATE-OBS {instant!r} ({exc})")
    stale = [key for key in ("HJD-OBS", "BJD-OBS") if key in header]
    for key in stale:
        header.remove(key, remove_all=True)
    removed = f"; earlier {'/'.join(stale)} removed" if stale else ""
    warnings.append(f"HJD-OBS/BJD-OBS not written: {why_not}{removed}")


def telescope_target(header: fits.Header) -> tuple[tuple[str, str] | None, str]:
    """((TELRA, TELDEC), '') when both are usable, else (None, what is wrong with them).

    Engineering and calibration files have no telescope block at all, and a
    TCS that did not answer leaves ``NOCOMM`` or blanks: all mean the pointing
    is unknown.
    """
    ra, dec = header.get("TELRA"), header.get("TELDEC")
    if ra is None and dec is None:
        return None, "no telescope coordinates (TELRA, TELDEC missing: telescope not connected)"
    problems = []
    for key, value, parse in (("TELRA", ra, astrotime.ra_degrees), ("TELDEC", dec, astrotime.dec_degrees)):
        if value is None:
            problems.append(f"{key} missing")
            continue
        try:
            parse(value)
        except ValueError as exc:
            problems.append(f"{key} {value!r} unusable ({exc})")
    if problems:
        return None, "; ".join(problems)
    return (ra, dec), ""


def observatory(header: fits.Header, warnings: list[str]) -> astrotime.Site:
    """The site from LATITUDE, LONGITUD (deg W), ELEVATIO; the LBT value for each unusable one."""
    values = []
    for key, (low, high), lbt_value, unit in SITE_KEYWORDS:
        value = header.get(key)
        try:
            if value is None:
                raise ValueError("missing")
            number = _site_number(value)
            if not low <= number <= high:
                raise ValueError(f"outside {low:g}..{high:g}")
        except ValueError as exc:
            shown = "missing" if value is None else f"{value!r} unusable ({exc})"
            warnings.append(f"{key} {shown}; LBT {lbt_value:g} {unit} used")
            number = lbt_value
        values.append(number)
    return astrotime.Site(latitude=values[0], west_longitude=values[1], elevation=values[2])


def _site_number(value: object) -> float:
    """A site keyword's value: a FITS number, or a string copy of one (``'3221.0'``)."""
    if isinstance(value, str):
        return headerval.decimal(value)
    return headerval.degrees(value)  # for numbers: refuses logicals and non-finite values
