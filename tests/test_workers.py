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
