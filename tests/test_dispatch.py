"""The dispatcher's handling of outcomes: a publishing failure is retried later, not lost."""

import os
import time
from pathlib import Path

from modsingest.result import Result
from modsingest.service import dispatch
from modsingest.service.ledger import DELIVERED, FAILED, PROCESSING, QUEUED, WAITING, Fingerprint, Ledger
from modsingest.service.workers import Outcome


class FakePool:
    """Answers each job with the next scripted result."""

    def __init__(self, results):
        self.results = list(results)
        self.jobs = []
        self.idle = 1

    def submit(self, job):
        self.jobs.append(job)
        self.idle = 0
        return True

    def wait(self, timeout, extra=()):
        if not self.jobs:
            return []
        job = self.jobs.pop(0)
        self.idle = 1
        return [Outcome(job, result=self.results.pop(0))]

    def stop(self, timeout=1.0):
        return []


def new_ledger(tmp_path):
    (tmp_path / "state").mkdir()
    return Ledger(tmp_path / "state")


def queued(ledger, tmp_path):
    raw = tmp_path / "mods1b.20260102.0001.fits"
    raw.write_bytes(b"x")
    return ledger.enqueue(raw, Fingerprint.of(os.stat(raw)), seen_at=0.0, conpars=True)


RAW = Path("mods1b.20260102.0001.fits")
FULL = Result(
    source=RAW,
    ok=False,
    error="x.fits: cannot publish: No space left on device",
    stage="publish",
    retryable=True,
)
OK = Result(
    source=RAW,
    ok=True,
    name="mods1b.20260102.0001.fits",
    outputs=(),
    channel="MODS1B",
    warnings=[],
    seconds=0.1,
)


def test_publish_failure_waits_and_is_retried_until_delivered(tmp_path, monkeypatch):
    monkeypatch.setattr(dispatch, "retry_delay", lambda attempts: 0.0)
    ledger = new_ledger(tmp_path)
    row_id = queued(ledger, tmp_path)
    d = dispatch.Dispatcher(ledger, FakePool([FULL, FULL, OK]))
    d.fill()
    states = []
    for _ in range(3):
        states += [r.state for r in d.pump(0.0)]
    assert ledger.row(row_id).state == DELIVERED
    assert d.failed == 0 and d.delivered == 1
    assert ledger.row(row_id).attempts == 3


def test_a_destination_that_refuses_for_long_never_fails_the_file(tmp_path, monkeypatch):
    """Issue 9 item 3: after 8 attempts the old dispatcher failed the file, and nothing re-queued it."""
    monkeypatch.setattr(dispatch, "retry_delay", lambda attempts: 0.0)
    ledger = new_ledger(tmp_path)
    row_id = queued(ledger, tmp_path)
    d = dispatch.Dispatcher(ledger, FakePool([FULL] * 50 + [OK]))
    d.fill()
    seen = []
    for _ in range(51):
        seen += [(r.state, r.reason) for r in d.pump(0.0)]
    assert seen[:50] == [(WAITING, "x.fits: cannot publish: No space left on device")] * 50
    row = ledger.row(row_id)
    assert row.state == DELIVERED and row.attempts == 51 and d.failed == 0
    assert row.retry_at is None


def test_a_waiting_row_is_kept_in_the_ledger_with_its_next_try(tmp_path):
    ledger = new_ledger(tmp_path)
    row_id = queued(ledger, tmp_path)
    pool = FakePool([FULL, OK])
    d = dispatch.Dispatcher(ledger, pool)
    d.fill()
    before = time.time()
    d.pump(0.0)
    row = ledger.row(row_id)
    assert row.state == WAITING and row.reason == "x.fits: cannot publish: No space left on device"
    assert before + 5.0 <= row.retry_at <= time.time() + 5.0
    assert before <= row.waiting_since <= time.time()
    assert [r.id for r in ledger.waiting()] == [row_id]
    d.fill()
    assert pool.jobs == []  # 5 s have not passed
    d.shutdown(0.0)
    assert ledger.row(row_id).state == WAITING  # not released: the next start knows it waits
    ledger.close()
    again = Ledger(tmp_path / "state")
    again.recover()  # a restart tries the destinations at once
    assert again.requeue_waiting(due_by=time.time()) == 1
    assert again.row(row_id).state == QUEUED


def test_a_delivery_queues_every_waiting_file_at_once(tmp_path):
    """The destination is back: files waiting for their next try need not wait it out."""
    ledger = new_ledger(tmp_path)
    waiting = []
    for n in (1, 2):
        raw = tmp_path / f"mods1b.20260102.000{n}.fits"
        raw.write_bytes(b"x" * n)
        rid = ledger.enqueue(raw, Fingerprint.of(os.stat(raw)), seen_at=0.0, conpars=True)
        ledger.claim(set(), 1, only={rid})
        ledger.wait_for_destination(rid, "cannot publish: No space left on device", time.time() + 3600)
        waiting.append(rid)
    third = tmp_path / "mods1b.20260102.0003.fits"
    third.write_bytes(b"xyz")
    rid = ledger.enqueue(third, Fingerprint.of(os.stat(third)), seen_at=0.0, conpars=True)
    pool = FakePool([OK])
    d = dispatch.Dispatcher(ledger, pool)
    d.fill()
    for outcome in pool.wait(0.0):  # recorded, without pump's refill
        d.record(outcome)
    assert ledger.row(rid).state == DELIVERED
    assert [ledger.row(w).state for w in waiting] == [QUEUED, QUEUED]


def test_worker_deaths_are_counted_apart_from_destination_tries(tmp_path, monkeypatch):
    """Many tries against a full disk must not use up a file's chances against a crashing worker."""
    monkeypatch.setattr(dispatch, "retry_delay", lambda attempts: 0.0)
    ledger = new_ledger(tmp_path)
    row_id = queued(ledger, tmp_path)
    pool = FakePool([FULL] * 5)
    d = dispatch.Dispatcher(ledger, pool)
    d.fill()
    for _ in range(5):
        d.pump(0.0)
    job = pool.jobs.pop(0)
    after = d.record(Outcome(job, died="worker 123 died (signal 9)"))
    assert after.id == row_id and after.state == QUEUED and after.deaths == 1 and after.attempts == 6


def test_a_read_failure_is_final(tmp_path):
    ledger = new_ledger(tmp_path)
    row_id = queued(ledger, tmp_path)
    bad = Result(source=RAW, ok=False, error="x.fits: not a FITS file", stage="read", retryable=False)
    d = dispatch.Dispatcher(ledger, FakePool([bad]))
    d.fill()
    d.pump(0.0)
    assert ledger.row(row_id).state == FAILED


RAW_EIO = Result(
    source=RAW,
    ok=False,
    error="x.fits: cannot read: Input/output error",
    stage="read",
    retryable=False,
    side="raw",
    kind="io",
)


def test_a_raw_side_io_error_is_read_again_not_taken_for_a_destination_outage(tmp_path, monkeypatch):
    monkeypatch.setattr(dispatch, "retry_delay", lambda attempts: 0.0)
    ledger = new_ledger(tmp_path)
    row_id = queued(ledger, tmp_path)
    d = dispatch.Dispatcher(ledger, FakePool([RAW_EIO, OK]))
    d.fill()
    d.pump(0.0)
    assert d.failed == 0 and ledger.row(row_id).state == PROCESSING  # handed out again
    d.pump(0.0)
    assert ledger.row(row_id).state == DELIVERED and ledger.row(row_id).attempts == 2


def test_a_raw_side_io_error_is_failed_after_max_attempts_with_its_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(dispatch, "retry_delay", lambda attempts: 0.0)
    ledger = new_ledger(tmp_path)
    row_id = queued(ledger, tmp_path)
    d = dispatch.Dispatcher(ledger, FakePool([RAW_EIO] * dispatch.MAX_ATTEMPTS))
    d.fill()
    for _ in range(dispatch.MAX_ATTEMPTS):
        d.pump(0.0)
    row = ledger.row(row_id)
    assert row.state == FAILED and row.reason == "x.fits: cannot read: Input/output error"
    assert row.attempts == dispatch.MAX_ATTEMPTS


def test_a_replay_without_the_service_leaves_waiting_files_to_the_service(tmp_path, monkeypatch):
    """replay's own dispatcher (``only``) records the wait and stops there: one outcome per file."""
    monkeypatch.setattr(dispatch, "retry_delay", lambda attempts: 0.0)
    ledger = new_ledger(tmp_path)
    row_id = queued(ledger, tmp_path)
    pool = FakePool([FULL, OK])
    d = dispatch.Dispatcher(ledger, pool, only={row_id})
    d.fill()
    assert [r.state for r in d.pump(0.0)] == [WAITING]
    d.fill()
    assert pool.jobs == [] and ledger.row(row_id).state == WAITING
    service = dispatch.Dispatcher(ledger, pool)  # the service takes it up
    service.fill()
    assert [j.id for j in pool.jobs] == [row_id]
