"""The outcome of one file (modsingest.result): plain data that crosses the worker pipe whole."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

from modsingest.result import Result


def delivered() -> Result:
    return Result(
        source=Path("/raw/mods1b.20260102.0001.fits"),
        ok=True,
        name="mods1b.20260102.0001.fits",
        outputs=(
            Path("/processed/20260102/mods1b.20260102.0001.fits"),
            Path("/newdata/mods1b.20260102.0001.fits"),
        ),
        channel="MODS1B",
        warnings=["archive: AIRMASS recomputed"],
        steps=("archive", "merged"),
        seconds=0.25,
        timings={"read": 0.01},
    )


def test_json_round_trip_keeps_types():
    res = delivered()
    data = json.loads(json.dumps(res.to_json()))
    assert data["outputs"] == [
        "/processed/20260102/mods1b.20260102.0001.fits",
        "/newdata/mods1b.20260102.0001.fits",
    ]
    assert Result.from_json(data) == res


def test_from_json_ignores_unknown_keys_and_defaults_missing_ones():
    res = Result.from_json({"source": "/raw/x.fits", "ok": False, "error": "x.fits: bad", "future": 1})
    assert res == Result(source=Path("/raw/x.fits"), ok=False, error="x.fits: bad")


def test_pickles_whole_as_the_worker_pipe_sends_it():
    res = delivered()
    assert pickle.loads(pickle.dumps(res)) == res


def test_raw_io_error_is_only_a_failed_raw_side_io_fault():
    assert Result(source=Path("x"), side="raw", kind="io").raw_io_error
    assert not Result(source=Path("x"), side="raw", kind="content").raw_io_error
    assert not Result(source=Path("x"), side="destination", kind="io").raw_io_error
    assert not Result(source=Path("x"), ok=True, side="raw", kind="io").raw_io_error


def test_summary_lines():
    assert delivered().summary() == (
        "delivered mods1b.20260102.0001.fits as mods1b.20260102.0001.fits in 250 ms "
        "(steps archive,merged); 1 warning(s): archive: AIRMASS recomputed"
    )
    assert Result(source=Path("x"), error="x: cannot read").summary() == "FAILED x: cannot read"
