"""Worker processes and the dispatcher: a dead worker costs one attempt, never the
service; one worker per file; shutdown abandons cleanly; a broken setup is refused."""

from __future__ import annotations

import dataclasses
import os
import signal
import time

import pytest

from conftest import tiny_raw
from modsingest import config
from modsingest.config import StepSpec
from modsingest.service import faultpoints
from modsingest.service.dispatch import Dispatcher
from modsingest.service.ledger import DELIVERED, PROCESSING, QUEUED, Fingerprint, Ledger
from modsingest.service.workers import WORKERS_LOCK, WorkerPool, WorkerStartError, wait_for_orphans


@pytest.fixture
def setup(layout):
    settings = config.load(layout["config"])
    ledger = Ledger(settings.paths.state)
    pools: list[WorkerPool] = []

    def pool(size=1, s=settings):
        p = WorkerPool(s, size, lock_path=s.paths.state / WORKERS_LOCK)
        pools.append(p)
        return p

    yield settings, ledger, pool
    for p in pools:
        p.kill()
    ledger.close()


def enqueue(ledger, path, fp=None):
    fp = fp or Fingerprint.of(os.stat(path))
    return ledger.enqueue(path, fp, seen_at=time.time(), conpars=True, sources={"event"})


def pump_until(dispatcher, condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        dispatcher.pump(0.2)


def stuck_file(settings, name="mods1b.20260102.0001.fits"):
    """A FIFO under a raw name: a worker that opens it blocks until we say so."""
    path = settings.paths.raw[0] / name
    os.mkfifo(path)
    return path


def test_a_good_file_is_delivered(setup):
    settings, ledger, pool = setup
    path = settings.paths.raw[0] / "mods1b.20260102.0001.fits"
    path.write_bytes(tiny_raw())
    p = pool()
    p.start()
    d = Dispatcher(ledger, p)
    rid = enqueue(ledger, path)
    pump_until(d, lambda: ledger.row(rid).state == DELIVERED)
    row = ledger.row(rid)
    assert row.delivered_as == path.name and len(row.outputs) == 2
    assert (settings.paths.newdata / path.name).exists()
    assert d.delivered == 1 and not d.busy


def test_a_worker_killed_mid_file_is_replaced_and_the_file_redone(setup):
    settings, ledger, pool = setup
    path = stuck_file(settings)
    p = pool()
    p.start()
    d = Dispatcher(ledger, p)
    rid = enqueue(ledger, path, Fingerprint(1, 1, 1, 1))
    assert d.fill() == 1
    (pid,) = p.pids()
    os.kill(pid, signal.SIGKILL)
    pump_until(d, lambda: ledger.row(rid).state != PROCESSING, timeout=10)
    row = ledger.row(rid)
    assert row.state == QUEUED and row.attempts == 1 and "worker died (signal 9)" in row.reason
    assert p.deaths == 1
    # the file is fine now; the replacement worker takes it
    path.unlink()
    path.write_bytes(tiny_raw())
    pump_until(d, lambda: ledger.row(rid).state == DELIVERED)
    assert ledger.row(rid).attempts == 2
    assert p.pids() != [pid]


def test_one_worker_per_file(setup):
    settings, ledger, pool = setup
    path = stuck_file(settings)
    other = settings.paths.raw[0] / "mods1b.20260102.0002.fits"
    other.write_bytes(tiny_raw())
    p = pool(2)
    p.start()
    d = Dispatcher(ledger, p)
    first = enqueue(ledger, path, Fingerprint(1, 1, 1, 1))
    d.fill()
    second = enqueue(ledger, path, Fingerprint(2, 2, 2, 2))  # the file changed meanwhile
    assert d.fill() == 0 and p.idle == 1  # a worker is free, but not for this file
    assert [j.id for j in p.busy] == [first]
    third = enqueue(ledger, other)
    pump_until(d, lambda: ledger.row(third).state == DELIVERED)
    assert ledger.row(second).state == QUEUED
    abandoned = d.shutdown(time.monotonic() + 0.5)
    assert [r.id for r in abandoned] == [first]


def test_shutdown_abandons_a_stuck_file_cleanly(setup):
    settings, ledger, pool = setup
    path = stuck_file(settings)
    p = pool()
    p.start()
    d = Dispatcher(ledger, p)
    rid = enqueue(ledger, path, Fingerprint(1, 1, 1, 1))
    d.fill()
    start = time.monotonic()
    abandoned = d.shutdown(start + 1.0)
    assert time.monotonic() - start < 10
    assert [r.id for r in abandoned] == [rid]
    row = ledger.row(rid)
    assert row.state == QUEUED and row.attempts == 0  # redone at the next start
    assert p.pids() == []
    assert wait_for_orphans(settings.paths.state / WORKERS_LOCK, 5.0)


def test_workers_hold_the_workers_lock(setup):
    settings, ledger, pool = setup
    p = pool()
    p.start()
    assert not wait_for_orphans(settings.paths.state / WORKERS_LOCK, 0.2)
    p.stop(1.0)
    assert wait_for_orphans(settings.paths.state / WORKERS_LOCK, 5.0)


def test_a_pipeline_that_cannot_be_built_stops_the_start(setup):
    settings, ledger, pool = setup
    broken = dataclasses.replace(settings, steps=(StepSpec("nosuchstep"),))
    p = pool(1, broken)
    with pytest.raises(WorkerStartError, match="nosuchstep"):
        p.start()
    assert p.pids() == []


def test_a_worker_that_dies_before_its_job_reaches_it_costs_no_attempt(setup):
    """The race of a death between ``wait`` (idle) and ``submit``, made to happen."""
    settings, ledger, pool = setup
    path = settings.paths.raw[0] / "mods1b.20260102.0001.fits"
    path.write_bytes(tiny_raw())
    p = pool()
    p.start()
    d = Dispatcher(ledger, p)
    (pid,) = p.pids()
    os.kill(pid, signal.SIGKILL)
    faultpoints._wait_gone(pid)
    assert p.idle == 1  # the pool has not noticed: wait() was not called since
    rid = enqueue(ledger, path)
    assert d.fill() == 0  # BrokenPipeError handled: no job sent, the main process goes on
    row = ledger.row(rid)
    assert row.state == QUEUED and row.attempts == 0 and not d.busy
    assert p.deaths == 1
    pump_until(d, lambda: ledger.row(rid).state == DELIVERED)
    assert ledger.row(rid).attempts == 1
    assert p.pids() != [pid]


def test_the_submit_fault_point_kills_the_worker_then_sends(setup, tmp_path):
    settings, ledger, pool = setup
    path = settings.paths.raw[0] / "mods1b.20260102.0001.fits"
    path.write_bytes(tiny_raw())
    p = WorkerPool(settings, 2, fault=f"submit:worker:{tmp_path / 'token'}")
    try:
        p.start()
        d = Dispatcher(ledger, p)
        first = p.pids()[0]
        rid = enqueue(ledger, path)
        assert d.fill() == 1  # the first idle worker was gone; the second took it
        assert p.deaths == 1 and first not in p.pids()
        pump_until(d, lambda: ledger.row(rid).state == DELIVERED)
        assert ledger.row(rid).attempts == 1
    finally:
        p.kill()


def test_a_dead_workers_temporaries_are_removed_at_once_and_a_live_ones_kept(setup, tmp_path, caplog):
    settings, ledger, pool = setup
    path = settings.paths.raw[0] / "mods1b.20260102.0001.fits"
    path.write_bytes(tiny_raw())
    # the worker kills itself after both temporaries are written, before the first rename
    p = WorkerPool(settings, 2, fault=f"commit1:worker:{tmp_path / 'token'}")
    try:
        p.start()
        d = Dispatcher(ledger, p)
        live_pids = p.pids()
        other = settings.paths.newdata / f".x.fits.modsingest-tmp.{live_pids[1]}.0123abcd"
        other.write_bytes(b"a live worker's temporary file")
        rid = enqueue(ledger, path)
        pump_until(d, lambda: p.deaths == 1, timeout=30)
        dead = live_pids[0]
        removed = [
            r.getMessage() for r in caplog.records if "temporary file of the dead worker" in r.getMessage()
        ]
        assert len(removed) == 2  # newdata/ and processed/<night>/
        assert all(f".modsingest-tmp.{dead}." in m for m in removed)
        night = settings.paths.processed / "20260102"
        left = [f.name for f in [*settings.paths.newdata.iterdir(), *night.iterdir()]]
        assert not [n for n in left if f".modsingest-tmp.{dead}." in n]
        assert other.exists()  # not the dead worker's
        pump_until(d, lambda: ledger.row(rid).state == DELIVERED)
        assert ledger.row(rid).attempts == 2
    finally:
        p.kill()


def test_a_worker_that_dies_after_publishing_is_not_made_to_publish_again(setup, tmp_path, caplog):
    settings, ledger, pool = setup
    path = settings.paths.raw[0] / "mods1b.20260102.0001.fits"
    path.write_bytes(tiny_raw())
    p = WorkerPool(settings, 1, fault=f"done:worker:{tmp_path / 'token'}")
    try:
        p.start()
        d = Dispatcher(ledger, p)
        rid = enqueue(ledger, path)
        pump_until(d, lambda: ledger.row(rid).state not in (QUEUED, PROCESSING), timeout=30)
        row = ledger.row(rid)
        assert p.deaths == 1
        assert row.state == DELIVERED and row.attempts == 1
        assert "worker died (signal 9) after publishing it" in caplog.text
        assert not list((settings.paths.state / "published").iterdir())
    finally:
        p.kill()
