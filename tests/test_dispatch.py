"""The dispatcher's handling of outcomes: a publishing failure is retried later, not lost."""

import os

from modsingest.service import dispatch
from modsingest.service.ledger import DELIVERED, FAILED, PROCESSING, QUEUED, Fingerprint, Ledger
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


FULL = {
    "ok": False,
    "error": "x.fits: cannot publish: No space left on device",
    "stage": "publish",
    "retryable": True,
}
OK = {
    "ok": True,
    "name": "mods1b.20260102.0001.fits",
    "outputs": [],
    "channel": "MODS1B",
    "warnings": [],
    "seconds": 0.1,
}


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


def test_publish_failure_gives_up_after_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(dispatch, "retry_delay", lambda attempts: 0.0)
    ledger = new_ledger(tmp_path)
    row_id = queued(ledger, tmp_path)
    d = dispatch.Dispatcher(ledger, FakePool([FULL] * dispatch.MAX_PUBLISH_ATTEMPTS))
    d.fill()
    for _ in range(dispatch.MAX_PUBLISH_ATTEMPTS):
        d.pump(0.0)
    row = ledger.row(row_id)
    assert row.state == FAILED and "No space left" in row.reason


def test_a_waiting_row_is_not_handed_out_before_its_time(tmp_path):
    ledger = new_ledger(tmp_path)
    row_id = queued(ledger, tmp_path)
    pool = FakePool([FULL, OK])
    d = dispatch.Dispatcher(ledger, pool)
    d.fill()
    d.pump(0.0)
    assert ledger.row(row_id).state == PROCESSING and row_id in d.waiting
    d.fill()
    assert pool.jobs == []  # 5 s have not passed
    d.shutdown(0.0)
    assert ledger.row(row_id).state == QUEUED  # the next start retries it


def test_retry_delays_grow_and_are_bounded():
    assert [dispatch.retry_delay(n) for n in (1, 2, 3, 7, 8)] == [5.0, 10.0, 20.0, 300.0, 300.0]


def test_a_read_failure_is_final(tmp_path):
    ledger = new_ledger(tmp_path)
    row_id = queued(ledger, tmp_path)
    bad = {"ok": False, "error": "x.fits: not a FITS file", "stage": "read", "retryable": False}
    d = dispatch.Dispatcher(ledger, FakePool([bad]))
    d.fill()
    d.pump(0.0)
    assert ledger.row(row_id).state == FAILED


RAW_EIO = {
    "ok": False,
    "error": "x.fits: cannot read: Input/output error",
    "stage": "read",
    "retryable": False,
    "side": "raw",
    "kind": "io",
}


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
