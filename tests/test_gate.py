"""The gate: complete, stable over two looks, CONPARS or its grace, incomplete timeout."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest

from conftest import tiny_raw
from modsingest.service import gate
from modsingest.service.ledger import Fingerprint

POLL, GRACE, TIMEOUT = 0.5, 3.0, 10.0
FP = Fingerprint(100, 1, 1, 7)
FP_B = Fingerprint(200, 2, 2, 8)


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


class Harness:
    """A gate with a fake clock and a scripted file."""

    def __init__(self, settled=(), final_sources=frozenset()):
        self.clock = Clock()
        self.file: gate.Look | None = None
        self.looks = 0
        self.ready: list[tuple[Fingerprint, bool]] = []
        self.incomplete: list[tuple[Fingerprint, str]] = []
        self.settled = set(settled)
        self.gate = gate.Gate(
            poll_interval=POLL,
            conpars_grace=GRACE,
            incomplete_timeout=TIMEOUT,
            final_sources=final_sources,
            is_settled=lambda p, fp: fp in self.settled,
            on_ready=lambda c, fp, conpars: self.ready.append((fp, conpars)),
            on_incomplete=lambda c, fp, why: self.incomplete.append((fp, why)),
            look=self._look,
            clock=self.clock,
            wall=lambda: 5.0,
        )

    def _look(self, path):
        self.looks += 1
        return self.file

    def run_for(self, seconds: float, step: float = 0.05):
        """Advance the clock, running due looks, like the gate thread would."""
        end = self.clock.t + seconds
        while self.clock.t < end:
            self.gate.run_due()
            self.clock.t = round(self.clock.t + step, 6)
        self.gate.run_due()


def complete(fp=FP, conpars=True):
    return gate.Look(fp, True, conpars)


def test_complete_file_passes_after_two_looks_a_poll_interval_apart():
    h = Harness()
    h.file = complete()
    h.gate.hint("/r/a.fits", "event")
    h.gate.run_due()
    assert h.ready == [] and h.looks == 1  # one look is not enough
    h.run_for(POLL - 0.1)
    assert h.ready == []
    h.run_for(0.2)
    assert h.ready == [(FP, True)]
    assert "/r/a.fits" not in h.gate.candidates


def test_a_close_of_a_complete_file_with_conpars_passes_on_the_next_quick_look():
    h = Harness(final_sources=frozenset({"closed"}))
    h.file = complete()
    h.gate.hint("/r/a.fits", "closed")
    h.gate.run_due()
    assert h.ready == [] and h.looks == 1
    h.run_for(gate.CLOSE_RELOOK, step=0.001)
    assert h.ready == [(FP, True)] and h.looks == 2  # long before the settle time


def test_a_close_between_two_looks_at_the_same_content_passes_at_once():
    h = Harness(final_sources=frozenset({"closed"}))
    h.file = complete()
    h.gate.hint("/r/a.fits", "event")  # moved in: looked at, not passed
    h.gate.run_due()
    h.gate.hint("/r/a.fits", "closed")
    h.gate.run_due()
    assert h.ready == [(FP, True)] and h.looks == 2


def test_a_late_close_does_not_pass_content_that_changes_right_after():
    """astropy's second pass: rename into place, then a mode change (new ctime), then the close."""
    h = Harness(final_sources=frozenset({"closed"}))
    h.file = complete(FP)  # renamed into place, mode not yet copied
    h.gate.hint("/r/a.fits", "closed")  # the old file's close, reported late
    h.gate.run_due()
    h.file = complete(FP_B)  # the mode change: a new fingerprint
    h.run_for(gate.CLOSE_RELOOK, step=0.001)
    assert h.ready == []  # FP was never delivered
    h.gate.hint("/r/a.fits", "closed")  # the final close
    h.gate.run_due()
    assert h.ready == [(FP_B, True)]


def test_a_close_without_conpars_still_waits_for_the_second_pass():
    """azcam's first pass ends in a close too: it must not pass without CONPARS."""
    h = Harness(final_sources=frozenset({"closed"}))
    h.file = complete(FP, conpars=False)
    h.gate.hint("/r/a.fits", "closed")
    h.run_for(GRACE - 0.5)
    assert h.ready == []
    h.file = complete(FP_B, conpars=True)  # the second pass renames the full file in place
    h.gate.hint("/r/a.fits", "closed")
    h.run_for(gate.CLOSE_RELOOK, step=0.001)
    assert h.ready == [(FP_B, True)]


def test_a_close_of_an_incomplete_file_does_not_pass_it_later():
    """The close flag answers one look only: a later complete look must be stable first."""
    h = Harness(final_sources=frozenset({"closed"}))
    h.file = gate.Look(None, False, False, "IM3 data cut short")
    h.gate.hint("/r/a.fits", "closed")
    h.gate.run_due()
    h.file = complete()
    h.gate.hint("/r/a.fits", "poll")
    h.gate.run_due()
    assert h.ready == []
    h.run_for(POLL + 0.1)
    assert h.ready == [(FP, True)]


@pytest.mark.parametrize("source", ["event", "poll", "rescan", "startup"])
def test_only_a_writer_done_hint_takes_the_fast_path(source):
    h = Harness(final_sources=frozenset({"closed"}))
    h.file = complete()
    h.gate.hint("/r/a.fits", source)
    h.run_for(2 * gate.CLOSE_RELOOK, step=0.001)
    assert h.ready == []


def test_without_final_sources_a_close_waits_like_any_hint():
    h = Harness()  # watch.pass_on_close: no
    h.file = complete()
    h.gate.hint("/r/a.fits", "closed")
    h.run_for(2 * gate.CLOSE_RELOOK, step=0.001)
    assert h.ready == []
    h.run_for(POLL + 0.1)
    assert h.ready == [(FP, True)]


def test_a_changing_file_never_passes():
    h = Harness()
    sizes = iter(range(100, 10_000))
    h.gate._look = lambda path: complete(Fingerprint(next(sizes), 1, 1, 7))  # grows every look
    h.gate.hint("/r/a.fits", "poll")
    h.run_for(20 * POLL)
    assert h.ready == []
    assert "/r/a.fits" in h.gate.candidates


def test_two_pass_write_waits_for_conpars():
    """azcam's first pass is complete FITS without CONPARS: not delivered before CONPARS."""
    h = Harness()
    h.file = complete(FP, conpars=False)
    h.gate.hint("/r/a.fits", "event")
    h.run_for(GRACE - 0.5)
    assert h.ready == []
    assert h.gate.counts()["waiting_for_conpars"] == 1
    h.file = gate.Look(None, False, False, "CONPARS data cut short")  # second pass under way
    h.run_for(0.3)
    h.file = complete(FP_B, conpars=True)
    h.run_for(0.1)
    assert h.ready == []
    h.run_for(POLL + 0.1)
    assert h.ready == [(FP_B, True)]


def test_conpars_grace_then_processed_without():
    h = Harness()
    h.file = complete(FP, conpars=False)
    h.gate.hint("/r/a.fits", "event")
    h.run_for(GRACE - 0.1)
    assert h.ready == []
    h.run_for(0.2)
    assert h.ready == [(FP, False)]


def test_zero_grace_still_needs_stability():
    h = Harness()
    h.gate.conpars_grace = 0.0
    h.file = complete(FP, conpars=False)
    h.gate.hint("/r/a.fits", "event")
    h.gate.run_due()
    assert h.ready == []
    h.run_for(POLL + 0.1)
    assert h.ready == [(FP, False)]


def test_incomplete_file_reported_after_timeout_once():
    h = Harness()
    h.file = gate.Look(FP, False, False, "/r/a.fits: file is empty")
    h.gate.hint("/r/a.fits", "event")
    h.run_for(TIMEOUT - 0.2)
    assert h.incomplete == []
    h.run_for(1.0)
    assert h.incomplete == [(FP, "/r/a.fits: file is empty")]
    h.run_for(TIMEOUT * 2)
    assert len(h.incomplete) == 1 and h.ready == []


def test_incomplete_that_completes_in_time_passes():
    h = Harness()
    h.file = gate.Look(FP, False, False, "IM3 data cut short")
    h.gate.hint("/r/a.fits", "event")
    h.run_for(TIMEOUT - 1)
    h.file = complete(FP_B)
    h.run_for(2 * POLL + 0.1)  # the next look, then one a poll interval later
    assert h.ready == [(FP_B, True)] and h.incomplete == []


def test_settled_content_is_dropped_without_work():
    h = Harness(settled={FP})
    h.file = complete(FP)
    h.gate.hint("/r/a.fits", "rescan")
    h.run_for(2.0)
    assert h.ready == [] and h.looks == 1
    assert h.gate.candidates == {}


def test_forced_replay_of_delivered_content():
    h = Harness(settled={FP})
    h.file = complete(FP)
    h.gate.hint("/r/a.fits", "replay", force=True)
    h.run_for(POLL + 0.2)
    assert h.ready == [(FP, True)]


def test_a_file_missing_for_a_moment_is_not_forgotten():
    """astropy's update mode (the second pass) replaces the file by a rename."""
    h = Harness()
    h.file = complete(FP, conpars=False)
    h.gate.hint("/r/a.fits", "event")
    h.run_for(0.3)
    h.file = None
    h.run_for(0.3)
    assert "/r/a.fits" in h.gate.candidates
    h.file = complete(FP_B, conpars=True)
    h.run_for(POLL + 0.3)
    assert h.ready == [(FP_B, True)]


def test_a_file_gone_for_good_is_dropped():
    h = Harness()
    h.file = None
    h.gate.hint("/r/a.fits", "event")
    h.run_for(GRACE + 1)
    assert h.gate.candidates == {} and h.ready == [] and h.incomplete == []


def test_sources_accumulate_and_a_hint_brings_the_next_look_forward():
    h = Harness()
    h.file = complete(FP, conpars=False)
    h.gate.hint("/r/a.fits", "rescan")
    h.gate.run_due()
    c = h.gate.candidates["/r/a.fits"]
    assert c.next_look > h.clock.t
    h.gate.hint("/r/a.fits", "event")
    assert c.sources == {"rescan", "event"} and c.next_look <= h.clock.t
    assert c.seen_wall == 5.0


def test_a_look_that_raises_is_retried():
    h = Harness()
    calls = []

    def flaky(path):
        calls.append(path)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return complete()

    h.gate._look = flaky
    h.gate.hint("/r/a.fits", "event")
    h.run_for(3.0)
    assert h.ready == [(FP, True)]


def test_next_due():
    h = Harness()
    assert h.gate.next_due() is None
    h.file = complete()
    h.gate.hint("/r/a.fits", "event")
    assert h.gate.next_due() == 0.0
    h.gate.run_due()
    assert h.gate.next_due() == pytest.approx(POLL)


# --------------------------------------------------------------------------- real files
def test_look_at_real_files(tmp_path):
    data = tiny_raw()
    path = tmp_path / "mods1b.20260102.0001.fits"
    path.write_bytes(data)
    seen = gate.look(str(path))
    assert seen.complete and seen.has_conpars and seen.problem is None
    assert seen.fingerprint == Fingerprint.of(os.stat(path))
    path.write_bytes(data[: len(data) - 2880])  # CONPARS header written, its data not yet
    seen = gate.look(str(path))
    assert not seen.complete and "cut short" in seen.problem
    path.write_bytes(tiny_raw(conpars=False))
    seen = gate.look(str(path))
    assert seen.complete and not seen.has_conpars
    path.unlink()
    assert gate.look(str(path)) is None
    os.mkfifo(path)  # would block a reader forever
    seen = gate.look(str(path))
    assert not seen.complete and seen.impossible and "not a regular file" in seen.problem


def test_look_does_not_follow_a_symbolic_link(tmp_path):
    outside = tmp_path / "elsewhere.fits"
    outside.write_bytes(tiny_raw())
    raw = tmp_path / "raw"
    raw.mkdir()
    link = raw / "mods1b.20260102.0001.fits"
    link.symlink_to(outside)
    seen = gate.look(str(link))
    assert seen.impossible and not seen.complete
    assert seen.fingerprint == Fingerprint.of(os.lstat(link))  # the link's, not the target's
    assert seen.problem == (
        f"{link}: a symbolic link (to {outside}), not a file: refused; raw files must be regular files"
    )
    link.unlink()
    link.symlink_to(tmp_path / "nothing-there.fits")  # dangling: still a link, not "gone"
    assert gate.look(str(link)).impossible


def test_look_says_impossible_for_content_that_can_never_be_fits(tmp_path):
    path = tmp_path / "mods1b.20260102.0001.fits"
    path.write_bytes(b"this is not FITS\n" * 400)
    seen = gate.look(str(path))
    assert seen.impossible and not seen.complete
    assert seen.problem == f"{path}: not a FITS file (does not start with SIMPLE = T)"
    assert seen.fingerprint == Fingerprint.of(os.stat(path))
    path.write_bytes(tiny_raw()[:5000])  # a prefix of a good file: incomplete, not impossible
    seen = gate.look(str(path))
    assert not seen.impossible and not seen.complete


def test_gate_loop_thread_with_a_two_pass_file(tmp_path):
    """The gate's own thread, real files: first pass waits, second pass passes."""
    ready = threading.Event()
    got = []

    def on_ready(c, fp, conpars):
        got.append((c.path, fp, conpars))
        ready.set()

    the_gate = gate.Gate(
        poll_interval=0.05,
        conpars_grace=30.0,
        incomplete_timeout=30.0,
        is_settled=lambda p, fp: False,
        on_ready=on_ready,
        on_incomplete=lambda *a: None,
    )
    loop = gate.GateLoop(the_gate)
    loop.start()
    try:
        path = tmp_path / "mods1b.20260102.0001.fits"
        path.write_bytes(tiny_raw(conpars=False))
        loop.put(path, "event")
        assert not ready.wait(0.5)  # complete, but CONPARS is missing and the grace is long
        assert loop.counts()["waiting_for_conpars"] == 1
        path.write_bytes(tiny_raw(conpars=True))
        loop.put(path, "event")
        assert ready.wait(10)
        assert got[0][0] == str(path) and got[0][2] is True
        assert got[0][1] == Fingerprint.of(os.stat(path))
    finally:
        loop.stop()
    assert not loop.is_alive()


def test_a_complete_file_passes_after_the_settle_time_not_the_poll_interval():
    """watch.settle: observers wait on this; polling frequency is a separate matter."""
    h = Harness()
    h.gate.settle = 0.1
    h.file = complete()
    h.gate.hint("/r/a.fits", "event")
    h.run_for(0.05, step=0.01)
    assert h.ready == []
    h.run_for(0.1, step=0.01)
    assert h.ready == [(FP, True)]


def test_settle_still_needs_an_unchanged_fingerprint():
    h = Harness()
    h.gate.settle = 0.1
    sizes = iter(range(100, 10_000))
    h.gate._look = lambda path: complete(Fingerprint(next(sizes), 1, 1, 7))
    h.gate.hint("/r/a.fits", "event")
    h.run_for(2.0, step=0.01)
    assert h.ready == []


# --------------------------------------------------------------------------- the states
def _docs_state_table() -> dict[str, str]:
    """docs/service.md, "States of a raw file": the table's state column -> its "left when"."""
    text = (Path(__file__).parents[1] / "docs" / "service.md").read_text()
    section = text.split("## States of a raw file", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \|[^|]*\|([^|]*)\|$", section, re.MULTILINE)
    return dict(rows)


def test_the_docs_and_the_code_name_the_same_states_and_exits():
    table = _docs_state_table()
    assert list(table) == [s.value for s in gate.State]
    section = (Path(__file__).parents[1] / "docs" / "service.md").read_text()
    exits = " ".join(table.values()) + section.split("A path leaves the gate", 1)[1][:400]
    for how in gate.Exit:
        assert f"**{how.value}**" in exits, how


def test_each_look_puts_the_path_in_the_state_it_shows():
    h = Harness(final_sources=frozenset({"closed"}))
    h.gate.hint("/r/a.fits", "event")
    c = h.gate.candidates["/r/a.fits"]
    assert c.state is gate.State.SEEN
    for look, state in [
        (gate.Look(FP, False, False, "IM3 data cut short"), gate.State.INCOMPLETE),
        (complete(FP, conpars=False), gate.State.WAITING_FOR_CONPARS),
        (complete(FP_B), gate.State.SETTLING),
        (None, gate.State.GONE),
    ]:
        h.file = look
        h.gate.hint("/r/a.fits", "event")
        h.gate.run_due()
        assert c.state is state
    h.file = complete(Fingerprint(300, 3, 3, 9))  # new content, a close: one more look
    h.gate.hint("/r/a.fits", "closed")
    h.gate.run_due()
    assert c.state is gate.State.CLOSED and h.ready == []


def test_a_moment_gone_does_not_restart_the_incomplete_clock():
    h = Harness()
    h.file = gate.Look(FP, False, False, "/r/a.fits: IM3 data cut short")
    h.gate.hint("/r/a.fits", "event")
    h.run_for(TIMEOUT - 1.0)
    h.file = None  # astropy's rename
    h.run_for(0.3)
    assert h.gate.counts() == {"considering": 1, "waiting_for_conpars": 0, "incomplete": 1}
    h.file = gate.Look(FP, False, False, "/r/a.fits: IM3 data cut short")
    h.run_for(1.0)
    assert h.incomplete == [(FP, "/r/a.fits: IM3 data cut short")]


def test_a_moment_gone_does_not_restart_the_conpars_grace():
    h = Harness()
    h.file = complete(FP, conpars=False)
    h.gate.hint("/r/a.fits", "event")
    h.run_for(GRACE - 1.0)
    h.file = None
    h.run_for(0.3)
    assert h.gate.counts()["waiting_for_conpars"] == 1
    h.file = complete(FP_B, conpars=False)  # a new fingerprint restarts stability, not the grace
    h.run_for(1.0)
    assert h.ready == [(FP_B, False)]


def test_the_incomplete_clock_restarts_after_a_complete_look():
    h = Harness()
    h.file = gate.Look(FP, False, False, "cut short")
    h.gate.hint("/r/a.fits", "event")
    h.run_for(TIMEOUT - 1.0)
    h.file = complete(FP_B, conpars=False)
    h.run_for(0.5)
    h.file = gate.Look(FP, False, False, "cut short")
    h.run_for(TIMEOUT - 1.0)
    assert h.incomplete == []
    h.run_for(1.5)
    assert h.incomplete == [(FP, "cut short")]


def impossible(fp=FP, why="/r/a.fits: not a FITS file (does not start with SIMPLE = T)"):
    return gate.Look(fp, False, False, why, impossible=True)


def test_an_impossible_file_is_reported_once_it_holds_still_not_after_the_timeout():
    h = Harness()
    h.gate.settle = 0.05
    h.file = impossible()
    h.gate.hint("/r/a.fits", "event")
    h.gate.run_due()
    assert h.incomplete == [] and h.gate.candidates["/r/a.fits"].state is gate.State.IMPOSSIBLE
    h.run_for(0.1, step=0.01)
    assert h.incomplete == [(FP, "/r/a.fits: not a FITS file (does not start with SIMPLE = T)")]
    assert h.gate.candidates == {} and h.looks <= 3


def test_an_impossible_file_that_keeps_changing_is_reported_after_the_timeout():
    h = Harness()
    sizes = iter(range(100, 100_000))
    h.gate._look = lambda path: impossible(Fingerprint(next(sizes), 1, 1, 7))
    h.gate.hint("/r/a.fits", "event")
    h.run_for(TIMEOUT - 0.5)
    assert h.incomplete == []
    h.run_for(1.0)
    assert len(h.incomplete) == 1


def test_an_impossible_view_replaced_by_a_good_file_passes():
    """A file caught while being replaced is judged on what it becomes."""
    h = Harness()
    h.file = impossible()
    h.gate.hint("/r/a.fits", "event")
    h.gate.run_due()
    h.file = complete(FP_B)  # renamed over before the second look
    h.run_for(2 * POLL + 0.2)
    assert h.incomplete == [] and h.ready == [(FP_B, True)]


def test_held_names_the_files_waiting_with_their_state_since_and_reason():
    """What status shows from the ledger: the gate's holdings, copied every heartbeat."""
    h = Harness()
    # the harness's wall clock says 5.0 at every call: since = 5.0 - how long ago
    h.file = gate.Look(FP, False, False, "IM3 data cut short: needs 100 bytes, file has 50")
    h.gate.hint("/raw/a.fits", "poll")
    h.run_for(2.0)
    assert h.gate.held() == [
        ("/raw/a.fits", "incomplete", 5.0 - 2.0, "IM3 data cut short: needs 100 bytes, file has 50")
    ]
    h.file = complete(FP_B, conpars=False)
    h.run_for(1.0)
    # the change is first seen at the next look, POLL after the last one
    assert h.gate.held() == [("/raw/a.fits", "waiting for CONPARS", 5.0 - (1.0 - POLL), None)]
    h.run_for(GRACE)
    assert h.ready == [(FP_B, False)] and h.gate.held() == []


def test_a_file_passing_through_is_not_held():
    h = Harness()
    h.file = complete()
    h.gate.hint("/raw/a.fits", "poll")
    h.gate.run_due()
    assert h.gate.counts()["considering"] == 1 and h.gate.held() == []
