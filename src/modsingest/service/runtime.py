"""One start-up and shutdown recipe for whatever drives the workers: ``watch`` and ``replay``.

Why one: the order is what makes a restart safe, and two copies drift.

    lock  -> the state directory's ``service.lock``: one writer of file rows
    orphans -> no worker of a killed predecessor still alive (it could still be
               writing the file that is about to be redone)
    recover -> deliveries a killed run published but did not record are recorded
               (``dispatch.adopt_published``); rows left ``processing`` go back to
               ``queued``
    clean -> this agent's hidden temporary files left in the destinations go
    pool  -> the worker processes, each with its pipeline built

and at the end: busy workers get until a deadline, what is still running is
abandoned (killed, re-queued) and its temporaries removed, the ledger closed,
the lock released.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modsingest import fsutil
from modsingest.config import Settings
from modsingest.service.dispatch import Dispatcher, adopt_published
from modsingest.service.ledger import Ledger, Row, lock_service
from modsingest.service.workers import (
    WORKERS_LOCK,
    WorkerPool,
    WorkerStartError,
    destination_dirs,
    wait_for_orphans,
)

log = logging.getLogger("modsingest.service")

#: how long busy workers may go on after a stop request (systemd allows 30 s in all)
STOP_GRACE = 20.0
#: how long to wait for a killed predecessor's workers to be gone
ORPHAN_WAIT = 30.0


class StartFailed(RuntimeError):
    """The recipe could not complete; ``code`` is the exit status to end with."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def root_warning(state: Path) -> str | None:
    """Why running as root is wrong, or None when this process is not root.

    The unit runs the service as its own user.  Started by hand as root, it
    would create state files (ledger, locks, metrics, notes) owned by root, and
    the service, started again by systemd, could not write them.  Tests and CI
    run as root, so this is a warning, never a refusal.
    """
    if os.geteuid() != 0:
        return None
    return (
        f"RUNNING AS ROOT: files it creates in {state} belong to root, and the service "
        "started by systemd (User= in the unit) cannot write them afterwards; run it as "
        "the service's user (systemctl start modsingest, or sudo -u modsingest ...)"
    )


def clean_destinations(settings: Settings) -> int:
    """Remove this agent's hidden temporary files left in newdata and processed/<night>."""
    removed: list = []
    for d in destination_dirs(settings):
        removed += fsutil.clean_stale(d)
    for path in removed:
        log.info("removed stale temporary file %s", path)
    return len(removed)


@contextmanager
def state_held(settings: Settings) -> Iterator[Ledger]:
    """Lock, orphans, recover, clean: the ledger of a state directory this process now owns.

    Raises ``ledger.AlreadyRunning`` when another process holds the lock, and
    ``StartFailed`` (code 1) when a predecessor's workers stay alive.  On exit
    the ledger is closed and the lock released.
    """
    state = settings.paths.state
    lock_fd = lock_service(state)
    ledger: Ledger | None = None
    try:
        if not wait_for_orphans(state / WORKERS_LOCK, ORPHAN_WAIT):
            raise StartFailed(f"workers of an earlier run are still alive after {ORPHAN_WAIT:g} s", 1)
        as_root = root_warning(state)
        if as_root:
            log.warning("%s", as_root)
        ledger = Ledger(state)
        adopt_published(ledger)
        for row in ledger.recover():
            log.warning("%s: was being processed when the last run ended; processing it again", row.name)
        clean_destinations(settings)
        yield ledger
    finally:
        if ledger is not None:
            ledger.close()
        os.close(lock_fd)


def start_pool(settings: Settings, size: int) -> WorkerPool:
    """The worker processes, each with its pipeline built; ``StartFailed`` (code 2) if they cannot."""
    pool = WorkerPool(settings, size, lock_path=settings.paths.state / WORKERS_LOCK)
    try:
        pool.start()
    except WorkerStartError as exc:
        raise StartFailed(str(exc), 2) from exc
    return pool


def stop(dispatcher: Dispatcher, settings: Settings, deadline: float) -> list[Row]:
    """Busy files get until ``deadline`` (monotonic); the rest is abandoned and its temporaries removed.

    Returns the abandoned rows (queued again for the next start).
    """
    abandoned = dispatcher.shutdown(deadline)
    if abandoned:
        clean_destinations(settings)
    return abandoned
