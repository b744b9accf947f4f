"""The step runner: discovery, failure capture, provenance, idempotent reruns."""

from pathlib import Path

from astropy.io import fits

from modsingest.fits.frame import Frame
from modsingest.processing.steps import StepContext, discover, run_steps

CTX = StepContext(source_name="x.fits", version="9.9")


def frame():
    return Frame(path=Path("x.fits"), primary=fits.Header({"OBJECT": "M31"}), amps=[])


def test_all_five_steps_are_installed_as_plugins():
    assert {"geometry", "timestamps", "temperatures", "archive", "merged"} <= set(discover())


def test_failure_is_a_warning_and_later_steps_still_run():
    calls = []

    def bad(f, ctx):
        raise ValueError("no REF-PIX")

    def good(f, ctx):
        calls.append("good")
        f.primary["GOOD"] = True
        return ["a note"]

    f = frame()
    outcomes = run_steps(f, ["bad", "good", "absent"], CTX, {"bad": bad, "good": good})
    assert [(o.name, o.ok) for o in outcomes] == [("bad", False), ("good", True), ("absent", False)]
    assert calls == ["good"] and f.primary["GOOD"] is True
    assert f.primary["MSISTEPS"] == "good" and f.primary["MSIVER"] == "9.9"
    history = [str(v) for v in f.primary["HISTORY"]]
    assert history == [
        "modsingest bad: failed: ValueError: no REF-PIX",
        "modsingest good: a note",
        "modsingest absent: step 'absent' unavailable: not installed",
    ]


def test_long_warnings_are_split_into_prefixed_history_cards():
    def chatty(f, ctx):
        return ["x" * 200]

    f = frame()
    run_steps(f, ["chatty"], CTX, {"chatty": chatty})
    lines = [str(v) for v in f.primary["HISTORY"]]
    assert lines[0].startswith("modsingest chatty: ") and all(
        line.startswith("modsingest+ ") for line in lines[1:]
    )
    assert len(f.primary["HISTORY"]) == 4  # 208 characters, 60 a card
    run_steps(f, ["chatty"], CTX, {"chatty": chatty})
    assert len(f.primary["HISTORY"]) == 4  # the same warning again is not repeated


def test_rerun_keeps_provenance_identical_when_the_step_finds_less_to_say():
    state = {"first": True}

    def step(f, ctx):
        if state["first"]:
            state["first"] = False
            return ["FILTNAME missing: added as 'None'"]
        return []

    f = frame()
    f.primary.add_history("written by azcam")
    run_steps(f, ["s"], CTX, {"s": step}, now=lambda: 0.0)
    first = str(f.primary)
    run_steps(f, ["s"], CTX, {"s": step}, now=lambda: 0.0)
    assert str(f.primary) == first
    assert [str(v) for v in f.primary["HISTORY"]] == [
        "written by azcam",
        "modsingest s: FILTNAME missing: added as 'None'",
    ]


def test_a_step_that_recovers_loses_its_old_failure_line():
    state = {"fail": True}

    def step(f, ctx):
        if state["fail"]:
            raise RuntimeError("boom")
        return []

    f = frame()
    run_steps(f, ["s"], CTX, {"s": step})
    state["fail"] = False
    run_steps(f, ["s"], CTX, {"s": step})
    assert "HISTORY" not in f.primary and f.primary["MSISTEPS"] == "s"
