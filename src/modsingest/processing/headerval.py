"""Parsing the values MODS headers actually contain.

Raw MODS headers hold the same quantity in several spellings, depending on the
date of the file and on which server wrote it: altitudes as ``'+45:12:30.5'``
or ``45.2`` or ``'45.2'``, logicals as ``1``/``'1'``/``'T'``/``True``, times
whose millisecond field can read ``.1000`` (azcam's way of saying "the next
second").  Every step that reads such a value needs the same answer, so the
parsing lives here, in small pure functions that raise ``ValueError`` with a
short reason; the steps turn that reason into a warning.

Nothing here touches a header or a file: the functions take values and return
values, so they are cheap to test exhaustively.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, timedelta

from modsingest import names

__all__ = [
    "is_blank",
    "decimal",
    "degrees",
    "logical",
    "time_of_day",
    "date_time",
    "split_date_obs",
    "resolve_channel",
]

# A plain decimal number, as FITS and the Archon print them.  Stricter than
# float(), which would also take 'nan', 'inf' and '1_0'.
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")

# ±d:m[:s] with the fraction only on the last field, as the LBT TCS writes DMS.
_SEXAGESIMAL = re.compile(
    r"(?P<sign>[+-]?)(?P<d>\d{1,3}):(?P<m>\d{1,2}(?:\.\d*)?)(?::(?P<s>\d{1,2}(?:\.\d*)?))?"
)

# hh:mm:ss with an optional fraction of any length.
_TIME = re.compile(r"(?P<h>\d{1,2}):(?P<m>\d{2}):(?P<s>\d{2})(?:\.(?P<f>\d+))?")

_DATE = re.compile(r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})")

# azcam prints the milliseconds of a clock read; when they round up to a whole
# second it prints this instead of carrying into the seconds field.
_WHOLE_SECOND_FRACTION = "1000"

_TRUE_WORDS = {"1", "T", "TRUE"}
_FALSE_WORDS = {"0", "F", "FALSE"}


def is_blank(value: object) -> bool:
    """True for a string value that holds nothing but spaces.

    Only strings count: a missing value (astropy's ``None``) or a number is
    not what the archive complains about as "blank".
    """
    return isinstance(value, str) and not value.strip()


def decimal(text: str) -> float:
    """A finite float from a decimal string such as ``' -110.25'``.

    NaN and infinities are refused because FITS cannot store them and because
    a sensor that reports them has no reading.
    """
    stripped = text.strip()
    if not _DECIMAL.fullmatch(stripped):
        raise ValueError("not a decimal number")
    value = float(stripped)
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    return value


def degrees(value: object) -> float:
    """Decimal degrees from a number, a decimal string or a ``±d:m[:s]`` string.

    The TCS wrote TELALT/TELAZ as DMS strings before 2026-02-26 and as decimal
    degrees after, and archives hold both.  The sign applies to the whole
    angle, so ``'-00:30:00'`` is -0.5 (reading the sign off the degrees field
    as a number would lose it).  A FITS logical is not an angle.
    """
    if isinstance(value, bool):
        raise ValueError("a logical is not an angle")
    if isinstance(value, (int, float)):
        try:
            result = float(value)
        except OverflowError:
            raise ValueError("number too large") from None
        if not math.isfinite(result):
            raise ValueError("not a finite number")
        return result
    if not isinstance(value, str):
        raise ValueError("not a number or a string")
    text = value.strip()
    if _DECIMAL.fullmatch(text):
        return decimal(text)
    match = _SEXAGESIMAL.fullmatch(text)
    if not match:
        raise ValueError("neither decimal degrees nor ±d:m:s")
    minutes = float(match["m"])
    seconds = float(match["s"]) if match["s"] is not None else 0.0
    if match["s"] is not None and "." in match["m"]:
        raise ValueError("fractional minutes followed by seconds")
    if minutes >= 60 or seconds >= 60:
        raise ValueError("minutes or seconds not below 60")
    magnitude = int(match["d"]) + minutes / 60 + seconds / 3600
    return -magnitude if match["sign"] == "-" else magnitude


def logical(value: object) -> bool:
    """A FITS logical from the spellings MODS headers use for one.

    TCS booleans arrive as integers 1/0 or strings '1'/'0'; a header written by
    a FITS library has T/F.  Anything else (2, 'yes', '') is refused rather
    than guessed.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if value in (0, 1):
            return value == 1
        raise ValueError("integer other than 0 or 1")
    if isinstance(value, str):
        word = value.strip().upper()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    raise ValueError("not 1/0, T/F or True/False")


def time_of_day(text: str) -> timedelta:
    """The time since midnight of an ``'hh:mm:ss[.fff]'`` string.

    A fraction of exactly ``1000`` is azcam's rounding overflow: the whole
    second and the milliseconds come from two clock reads, and 999.5 ms and up
    print as ``.1000``.  It means one second more, and the result may then
    reach 24 h, which ``date_time`` carries into the next date.
    """
    match = _TIME.fullmatch(text.strip())
    if not match:
        raise ValueError("not hh:mm:ss[.fff]")
    hours, minutes, seconds = int(match["h"]), int(match["m"]), int(match["s"])
    if hours > 23 or minutes > 59 or seconds > 59:
        raise ValueError("hours, minutes or seconds out of range")
    fraction = match["f"] or ""
    if fraction == _WHOLE_SECOND_FRACTION:
        micro = 1_000_000
    else:
        micro = _microseconds(fraction)
    return timedelta(hours=hours, minutes=minutes, seconds=seconds, microseconds=micro)


def _microseconds(fraction: str) -> int:
    """Digits after the decimal point as microseconds, rounded half to even."""
    if not fraction:
        return 0
    digits = fraction[:7].ljust(7, "0")  # one guard digit beyond microseconds
    micro, guard = divmod(int(digits), 10)
    rest_nonzero = any(ch != "0" for ch in fraction[7:])
    if guard > 5 or (guard == 5 and (rest_nonzero or micro % 2)):
        micro += 1
    return micro


def date_time(date_text: str, time_text: str) -> datetime:
    """A naive UTC ``datetime`` from ``'YYYY-MM-DD'`` and ``'hh:mm:ss[.fff]'``.

    Adding the time of day to the date, rather than building the datetime from
    fields, is what carries a ``.1000`` at 23:59:59 into the next second, minute,
    hour and date.
    """
    match = _DATE.fullmatch(date_text.strip())
    if not match:
        raise ValueError("not YYYY-MM-DD")
    # date() raises ValueError itself for a month 13 or a 31 April; only the
    # carry past 9999-12-31 needs translating.
    day = date(int(match["y"]), int(match["mo"]), int(match["d"]))
    try:
        return datetime.combine(day, datetime.min.time()) + time_of_day(time_text)
    except OverflowError:
        raise ValueError("date out of range") from None


def split_date_obs(text: str) -> tuple[str, str | None]:
    """``'YYYY-MM-DD[Thh:mm:ss.fff]'`` as (date, time or None).

    Raw files hold the date alone; processed files the ISO date and time.
    Nothing is validated here beyond the split: ``date_time`` does that.
    """
    stripped = text.strip()
    day, sep, clock = stripped.partition("T")
    return day, (clock if sep else None)


def resolve_channel(instrume: object, filename: str) -> tuple[str | None, str | None]:
    """(channel, warning) from INSTRUME, else from the file name.

    Engineering and calibration files can lack INSTRUME or carry a placeholder;
    the raw file name still says which controller wrote it.  The warning is
    None when INSTRUME itself was usable, and says what was done otherwise.
    """
    channel = names.channel(instrume)
    if channel is not None:
        return channel, None
    seen = "missing" if instrume is None else f"{instrume!r} is not a MODS channel"
    from_name = names.channel_of_name(filename)
    if from_name is not None:
        return from_name, f"INSTRUME {seen}; {from_name} taken from the file name {filename}"
    return None, f"INSTRUME {seen} and the file name {filename!r} names no MODS channel"


#: raw time of DATE-OBS, in order of trust
TIME_KEYWORDS = ("UTC-OBS", "TIME-OBS", "UT")


def start_of_exposure(header) -> tuple[datetime | None, str | None]:
    """(start of the exposure, None), or (None, the reason there is none).

    DATE-OBS is 'YYYY-MM-DDThh:mm:ss.sss' after the timestamps step; when that
    step is switched off it is the raw date alone, and the time is taken from
    UTC-OBS/TIME-OBS/UT, the first one that reads, as the timestamps step would.
    One home for "when did the exposure start" outside the timestamps step: the
    archive step's UNIQNAME and the telemetry window both use it.
    """
    date_obs = header.get("DATE-OBS")
    if not isinstance(date_obs, str):
        return None, f"DATE-OBS = {date_obs!r} is not a date"
    day, clock = split_date_obs(date_obs)
    sources = [("DATE-OBS", clock)] if clock is not None else []
    sources += [(k, header[k]) for k in TIME_KEYWORDS if isinstance(header.get(k), str)]
    if not sources:
        return None, f"DATE-OBS = {date_obs!r} has no time and there is no {'/'.join(TIME_KEYWORDS)}"
    problems = []
    for keyword, clock_text in sources:
        try:
            return date_time(day, clock_text), None
        except ValueError as exc:
            problems.append(f"with {keyword} time {clock_text!r}: {exc}")
    return None, f"DATE-OBS = {date_obs!r} unusable ({'; '.join(problems)})"
