"""Raw-file name rules (modsingest.names): candidates, nights, channels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from modsingest import names
from modsingest.names import channel, channel_of_name, is_candidate, name_night, night_of, observing_night


def test_candidate_names():
    assert is_candidate("mods1b.20260102.0001.fits")
    assert is_candidate("m1bTest.0001.fits")
    assert is_candidate("MODS1B.TEST.FITS")
    assert not is_candidate(".mods1b.20260102.0001.fits.modsingest-tmp.1.ab")
    assert not is_candidate(".hidden.fits")
    assert not is_candidate("tmpab12cd34")  # astropy's update-mode temporary file
    assert not is_candidate("notes.txt")
    assert not is_candidate("mods1b.fits.gz")
    assert not is_candidate(".fits")
    assert is_candidate("x.fits")


@pytest.mark.parametrize(
    "name, night",
    [
        ("mods2r.20251210.0009.fits", "20251210"),
        ("MODS2R.20251210.0009.FITS", "20251210"),  # any case
        ("mods1b.20260102.12345.fits", "20260102"),  # azcam pads to 4 digits, never truncates
        ("mods1bTest.20260102.0001.fits", "20260102"),  # user root ending in the standard tag
        ("m1bTest.0001.fits", None),  # another root: no tag
        ("m1bTest.20260102.fits", None),  # 8 digits where azcam writes the sequence number
        ("mods1b.20260102.fits", None),  # no sequence number after the tag
        ("mods1b.2026010.0001.fits", None),  # seven digits
        ("mods1b.202601020.0001.fits", None),  # nine digits
        ("mods1b.20261340.0001.fits", None),  # not a calendar date
        ("mods1b.20250229.0001.fits", None),  # 2025 is no leap year
        ("mods1b.20240229.0001.fits", "20240229"),
        ("mods1b.20260102.0001.fits.gz", None),  # not a raw FITS name
        ("mods1b.20260102.0001", None),
        ("20260102.0001.fits", None),  # no root before the tag
    ],
)
def test_name_night_on_awkward_names(name, night):
    assert name_night(name) == night


@pytest.mark.parametrize(
    "utc, night",
    [
        ("2026-01-02T18:59:59", "20260102"),  # 11:59 MST: still that date
        ("2026-01-02T19:00:00", "20260103"),  # local noon: the coming night's tag
        ("2026-01-03T06:00:00", "20260103"),
        ("2026-11-22T12:00:00", "20261122"),  # 05:00 MST, same night
        ("2026-12-31T19:00:00", "20270101"),  # over the year
    ],
)
def test_observing_night_of_unix_time_and_datetime(utc, night):
    stamp = datetime.fromisoformat(utc).replace(tzinfo=UTC)
    assert observing_night(stamp.timestamp()) == night
    assert observing_night(stamp) == night
    assert observing_night(stamp.replace(tzinfo=None)) == night  # naive is UTC
    mst = stamp.astimezone(timezone(timedelta(hours=-7)))
    assert observing_night(mst) == night  # another zone is converted, not read as UTC


def test_night_of_prefers_the_tag():
    evening = datetime(2026, 1, 2, 20, tzinfo=UTC).timestamp()
    assert night_of("m1bTest.0001.fits", evening) == "20260103"
    assert night_of("m1bTest.20260102.fits", evening) == "20260103"
    assert night_of("mods1b.20251210.0001.fits", evening) == "20251210"  # a stale tag still wins


def test_channels():
    assert names.CHANNELS == ("MODS1B", "MODS1R", "MODS2B", "MODS2R")
    assert names.ROOTS == ("mods1b", "mods1r", "mods2b", "mods2r")
    assert channel("MODS2R  ") == "MODS2R"
    assert channel("mods1b") == "MODS1B"
    assert channel("None") is None
    assert channel(1) is None
    assert channel(None) is None


def test_channel_of_name_reads_the_first_six_characters():
    assert channel_of_name("mods2r.20251210.0009.fits") == "MODS2R"
    assert channel_of_name("mods1bTest.0001.fits") == "MODS1B"
    assert channel_of_name("m1bTest.0001.fits") is None
    assert channel_of_name("mods3b.20251210.0009.fits") is None
    assert channel_of_name("mods") is None


def test_names_is_standard_library_only():
    """The service's main process imports names: nothing outside the standard library."""
    import ast
    import sys
    from pathlib import Path

    tree = ast.parse(Path(names.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}
