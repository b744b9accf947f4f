"""headerval: the value spellings of real MODS headers, and what is refused."""

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modsingest.processing import headerval as hv

PRINTABLE = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


# --- is_blank ---------------------------------------------------------------


@pytest.mark.parametrize("value", ["", " ", "        "])
def test_blank_strings_are_blank(value):
    assert hv.is_blank(value)


@pytest.mark.parametrize("value", ["None", " x ", 0, 0.0, None, False])
def test_non_blank_values(value):
    assert not hv.is_blank(value)


# --- decimal ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [(" -110.25", -110.25), ("30", 30.0), ("+1.5e1", 15.0), (".5", 0.5), ("-7.", -7.0)],
)
def test_decimal_reads_archon_numbers(text, expected):
    assert hv.decimal(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "nan", "inf", "-Infinity", "1e999", "1_0", "1,5", "--1"])
def test_decimal_refuses_non_numbers_and_non_finite(text):
    with pytest.raises(ValueError):
        hv.decimal(text)


# --- degrees ----------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (45, 45.0),
        (60.25, 60.25),
        ("60.25", 60.25),
        (" -12.5 ", -12.5),
        ("+45:12:30.5", 45.20847222222223),
        ("45:12:30.5", 45.20847222222223),
        ("-45:12:30.5", -45.20847222222223),
        ("270:15:00", 270.25),
        ("12:30", 12.5),
        ("12:30.5", 12.508333333333333),
        ("-00:30:00", -0.5),  # the sign of a zero degrees field must not be lost
        ("-0:00:36", -0.01),
        ("+00:00:00", 0.0),
    ],
)
def test_degrees_from_numbers_decimal_and_sexagesimal(value, expected):
    result = hv.degrees(value)
    assert type(result) is float
    assert result == expected


@pytest.mark.parametrize(
    "value",
    [
        "NOCOMM",
        "",
        " ",
        "12:60:00",
        "12:30:60",
        "12:30.5:10",
        "1:2:3:4",
        "45d12m",
        "nan",
        "inf",
        "++45",
        "4500:00:00",
        True,
        False,
        None,
        10**400,
        [45],
    ],
)
def test_degrees_refuses_unusable_values(value):
    with pytest.raises(ValueError):
        hv.degrees(value)


@settings(max_examples=200, deadline=None)
@given(st.one_of(PRINTABLE, st.integers(), st.floats(), st.booleans(), st.none()))
def test_degrees_raises_only_valueerror(value):
    try:
        result = hv.degrees(value)
    except ValueError:
        return
    assert isinstance(result, float)


# --- logical ----------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (1, True),
        (0, False),
        ("1", True),
        ("0", False),
        ("T", True),
        ("F", False),
        ("t", True),
        (" f ", False),
        ("TRUE", True),
        ("false", False),
        (True, True),
        (False, False),
    ],
)
def test_logical_understands_mods_spellings(value, expected):
    assert hv.logical(value) is expected


@pytest.mark.parametrize("value", [2, -1, 1.0, "", "yes", "None", "10", None])
def test_logical_refuses_other_values(value):
    with pytest.raises(ValueError):
        hv.logical(value)


# --- time_of_day and date_time ------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("19:08:07.251", timedelta(hours=19, minutes=8, seconds=7, microseconds=251000)),
        ("19:08:07", timedelta(hours=19, minutes=8, seconds=7)),
        ("9:08:07.5", timedelta(hours=9, minutes=8, seconds=7, microseconds=500000)),
        ("19:08:07.1000", timedelta(hours=19, minutes=8, seconds=8)),  # azcam's overflow
        ("19:08:07.10000", timedelta(hours=19, minutes=8, seconds=7, microseconds=100000)),
        ("19:08:07.100", timedelta(hours=19, minutes=8, seconds=7, microseconds=100000)),
        ("00:00:00.0000005", timedelta(0)),  # half to even
        ("00:00:00.0000015", timedelta(microseconds=2)),
        ("00:00:00.00000050001", timedelta(microseconds=1)),
        ("00:00:00.9999996", timedelta(seconds=1)),
        ("23:59:59.1000", timedelta(hours=24)),
    ],
)
def test_time_of_day(text, expected):
    assert hv.time_of_day(text) == expected


@pytest.mark.parametrize(
    "text", ["", "24:00:00", "12:60:00", "12:00:60", "12:00", "12:00:00.", "ab:cd:ef", "1:2:3"]
)
def test_time_of_day_refuses(text):
    with pytest.raises(ValueError):
        hv.time_of_day(text)


@pytest.mark.parametrize(
    "day, clock, expected",
    [
        ("2025-12-10", "19:08:07.251", datetime(2025, 12, 10, 19, 8, 7, 251000)),
        ("2026-01-02", "23:59:59.1000", datetime(2026, 1, 3, 0, 0, 0)),
        ("2025-12-31", "23:59:59.1000", datetime(2026, 1, 1, 0, 0, 0)),
        ("2028-02-28", "23:59:59.1000", datetime(2028, 2, 29, 0, 0, 0)),
        ("2026-01-02", "10:59:59.1000", datetime(2026, 1, 2, 11, 0, 0)),
    ],
)
def test_date_time_carries_1000_into_next_second_minute_hour_date(day, clock, expected):
    assert hv.date_time(day, clock) == expected


@pytest.mark.parametrize(
    "day, clock",
    [
        ("2026-02-30", "00:00:00"),
        ("2026-13-01", "00:00:00"),
        ("0000-01-01", "00:00:00"),
        ("9999-12-31", "23:59:59.1000"),
        ("2026-1-2", "00:00:00"),
        ("20260102", "00:00:00"),
    ],
)
def test_date_time_refuses_impossible_dates(day, clock):
    with pytest.raises(ValueError):
        hv.date_time(day, clock)


@settings(max_examples=200, deadline=None)
@given(PRINTABLE, PRINTABLE)
def test_date_time_raises_only_valueerror(day, clock):
    try:
        hv.date_time(day, clock)
    except ValueError:
        pass


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2025-12-10", ("2025-12-10", None)),
        ("2025-12-10T19:08:07.251", ("2025-12-10", "19:08:07.251")),
        (" 2025-12-10T ", ("2025-12-10", "")),
    ],
)
def test_split_date_obs(text, expected):
    assert hv.split_date_obs(text) == expected


# --- channels -----------------------------------------------------------------


def test_resolve_channel_prefers_instrume_silently():
    assert hv.resolve_channel("MODS1R", "mods2b.20260102.0002.fits") == ("MODS1R", None)


def test_resolve_channel_falls_back_to_file_name_with_a_warning():
    channel, warning = hv.resolve_channel(None, "mods2b.20260102.0002.fits")
    assert channel == "MODS2B"
    assert warning == "INSTRUME missing; MODS2B taken from the file name mods2b.20260102.0002.fits"
    channel, warning = hv.resolve_channel("None", "mods1r.20260102.0002.fits")
    assert channel == "MODS1R"
    assert "'None' is not a MODS channel" in warning


def test_resolve_channel_unknown():
    channel, warning = hv.resolve_channel("TESTCAM", "m1bTest.0001.fits")
    assert channel is None
    assert (
        warning
        == "INSTRUME 'TESTCAM' is not a MODS channel and the file name 'm1bTest.0001.fits' names no MODS channel"
    )
