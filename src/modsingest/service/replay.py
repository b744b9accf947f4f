"""``modsingest replay``: process a night or some raw files again, the service's way.

Why through the service's path: the rules that make delivery safe (one worker
per file, ``delivered`` recorded only after the core said ok, a crash redone at
the next start) live in the ledger and the dispatcher, and a replay must obey
them too.  So:

- when the service is running (it holds the state directory's lock), replay
  writes requests into the ledger; the service takes them up within a second,
  gates each file (complete and stable) and processes it even if that content
  was delivered before; replay follows the ledger with a progress bar;
- when no service is running, replay takes the lock itself, checks each file
  once with ``fitscheck``, queues it in the ledger and runs the same dispatcher
  and worker processes (``workers`` from the configuration) until its files are
  done.  This is also how throughput is measured.

``--dry-run`` lists what would be processed, with each file's current state.

A raw directory that is away (an NFS mount gone) does not stop a replay: the
files that can be reached are replayed, and each one that cannot is named
(``--night``: the ledger's files of that night in the missing directory).  A
file a destination refuses is left ``waiting`` for the service, and said so.
Exit status: 0 when every file was delivered, 1 otherwise, 2 for usage errors.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

from modsingest.config import Settings
from modsingest.fits import scan as fitscheck
from modsingest.names import is_candidate, name_night
from modsingest.service import runtime
from modsingest.service.detect import REPLAY
from modsingest.service.dispatch import Dispatcher
from modsingest.service.ledger import (
    DELIVERED,
    FAILED,
    INCOMPLETE,
    WAITING,
    AlreadyRunning,
    Fingerprint,
    Ledger,
    Row,
    open_existing,
    service_running,
)

#: replay through the service gives up when nothing has finished for this long
NO_PROGRESS_TIMEOUT = 600.0


def select(settings: Settings, night: str | None, files: list[str]) -> tuple[list[Path], list[str]]:
    """The raw files to replay, as the service names them, and the arguments not found."""
    raw_dirs = settings.paths.raw
    chosen: list[Path] = []
    missing: list[str] = []
    away = _away(raw_dirs)
    for d, why in away.items():
        missing.append(f"{d}: raw directory cannot be reached ({why}); its files are not replayed")
    if night:
        for d in raw_dirs:
            if d in away:
                continue
            try:
                names = sorted(e.name for e in os.scandir(d) if e.is_file())
            except OSError as exc:
                missing.append(f"{d}: cannot list: {exc.strerror or exc}")
                continue
            chosen += [d / n for n in names if is_candidate(n) and name_night(n) == night]
        ledger = open_existing(settings.paths.state)
        if ledger is not None:  # files with other roots belong to a night by the ledger
            try:
                rows = ledger.rows(night=night)
            finally:
                ledger.close()
            chosen += [Path(r.path) for r in rows if name_night(r.name) is None and Path(r.path).is_file()]
            missing += [
                f"{r.path}: cannot reach it (raw directory away)" for r in rows if Path(r.path).parent in away
            ]
    for arg in files:
        path = _in_raw_dir(Path(arg), raw_dirs)
        if path is not None:
            chosen.append(path)
        elif Path(arg).parent in away:
            missing.append(
                f"{arg}: cannot reach it (raw directory {Path(arg).parent}: {away[Path(arg).parent]})"
            )
        elif os.sep not in arg and away:
            missing.append(
                f"{arg}: not found in the raw directories that can be reached "
                f"(away: {', '.join(map(str, away))})"
            )
        else:
            missing.append(f"{arg}: not a file in a configured raw directory")
    unique = list(dict.fromkeys(chosen))  # first mention kept, in order
    return unique, missing


def _away(raw_dirs: tuple[Path, ...]) -> dict[Path, str]:
    """Raw directories that cannot be reached now, with the reason."""
    out = {}
    for d in raw_dirs:
        try:
            if not stat.S_ISDIR(os.stat(d).st_mode):
                out[d] = "not a directory"
        except OSError as exc:
            out[d] = exc.strerror or str(exc)
    return out


def _in_raw_dir(arg: Path, raw_dirs: tuple[Path, ...]) -> Path | None:
    """``arg`` (a base name or a path) as ``<raw dir>/<name>``, the ledger's key."""
    if os.sep not in str(arg):  # a bare name: look in the raw directories
        for d in raw_dirs:
            if (d / arg.name).is_file():
                return d / arg.name
    if arg.is_file():
        for d in raw_dirs:
            try:
                if os.path.samefile(arg.parent, d):
                    return d / arg.name
            except OSError:
                continue
    return None


# --------------------------------------------------------------------------- running
def dry_run(settings: Settings, paths: list[Path]) -> int:
    ledger = open_existing(settings.paths.state)
    try:
        for p in paths:
            row = ledger.current(p) if ledger else None
            layout = fitscheck.scan(p)
            check = "complete" if layout.complete else "INCOMPLETE: " + "; ".join(layout.problems)
            if layout.complete and not layout.has_conpars:
                check += " (no CONPARS)"
            state = f"{row.state}" if row else "not in the ledger"
            print(f"{p}  [{state}]  {check}")
    finally:
        if ledger:
            ledger.close()
    how = "by the running service" if service_running(settings.paths.state) else "here"
    print(f"would process {len(paths)} file(s) again, {how} (dry run: nothing done)")
    return 0


def via_service(settings: Settings, paths: list[Path]) -> int:
    """Hand the files to the running service and follow them in the ledger."""
    from tqdm import tqdm

    ledger = Ledger(settings.paths.state)
    try:
        asked = ledger.request(paths)
        print(f"asked the running service to process {len(paths)} file(s) again", file=sys.stderr)
        pending = {str(p) for p in paths}
        done: dict[str, Row] = {}
        last_progress = time.monotonic()
        with tqdm(total=len(paths), unit="file", disable=None) as bar:
            while pending:
                for path in list(pending):
                    row = ledger.current(path)
                    if (
                        row is not None
                        and row.finished_at
                        and row.finished_at >= asked
                        and row.state in (DELIVERED, FAILED, INCOMPLETE, WAITING)
                    ):
                        pending.discard(path)
                        done[path] = row
                        bar.update(1)
                        last_progress = time.monotonic()
                if pending and time.monotonic() - last_progress > NO_PROGRESS_TIMEOUT:
                    print(
                        f"modsingest replay: {len(pending)} file(s) not finished after "
                        f"{NO_PROGRESS_TIMEOUT:.0f} s without progress; the service still has "
                        f"them (see modsingest status)",
                        file=sys.stderr,
                    )
                    break
                time.sleep(0.2)
    except KeyboardInterrupt:
        print("modsingest replay: stopped following; the service still processes the files", file=sys.stderr)
        return 130
    finally:
        ledger.close()
    return _summary(list(done.values()), len(paths))


def without_service(settings: Settings, paths: list[Path]) -> int:
    """No service is running: take its place (``runtime``'s recipe) and drive the files through its path."""
    try:
        with runtime.state_held(settings) as ledger:
            ids, skipped = _queue(ledger, paths)
            for why in skipped:
                print(f"modsingest replay: skipped, not complete: {why}", file=sys.stderr)
            if not ids:
                return 1 if skipped else 0
            pool = runtime.start_pool(settings, min(settings.workers, len(ids)))
            dispatcher = Dispatcher(ledger, pool, only=ids, nightlog_dir=settings.paths.nightlog)
            finished, interrupted = _drive(dispatcher, settings, len(ids))
    except AlreadyRunning:
        return via_service(settings, paths)  # the service started meanwhile
    except runtime.StartFailed as exc:
        print(f"modsingest replay: {exc}", file=sys.stderr)
        return exc.code
    if interrupted:
        print("modsingest replay: interrupted; unfinished files stay queued for the service", file=sys.stderr)
        return 130
    return _summary(finished, len(paths))


def _queue(ledger: Ledger, paths: list[Path]) -> tuple[set[int], list[str]]:
    """Queue each complete file in the ledger (forced: delivered content too); the row ids and what was skipped."""
    ids: set[int] = set()
    skipped: list[str] = []
    now = time.time()
    for p in paths:
        layout = fitscheck.scan(p)
        if not layout.complete:
            skipped.append(layout.describe())
            continue
        fp = Fingerprint.of(os.stat(p))
        row_id = ledger.enqueue(p, fp, seen_at=now, conpars=layout.has_conpars, sources={REPLAY}, force=True)
        if row_id is None:  # already queued by a service that stopped
            row = ledger.find(p, fp)
            row_id = row.id if row else None
        if row_id is not None:
            ids.add(row_id)
    return ids, skipped


def _drive(dispatcher: Dispatcher, settings: Settings, count: int) -> tuple[list[Row], bool]:
    """Dispatch until ``count`` rows are delivered or failed (a progress bar); then stop the workers.

    Returns the finished rows and whether Ctrl-C cut it short (busy files then get
    ``runtime.STOP_GRACE`` to finish; the rest stays queued for the service).
    """
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    finished: list[Row] = []
    interrupted = False
    with logging_redirect_tqdm(), tqdm(total=count, unit="file", disable=None) as bar:
        try:
            dispatcher.fill()
            while len(finished) < count:
                for row in dispatcher.pump(1.0):
                    if row.state in (DELIVERED, FAILED, WAITING):
                        finished.append(row)
                        bar.update(1)
        except KeyboardInterrupt:
            interrupted = True
        runtime.stop(dispatcher, settings, time.monotonic() + (runtime.STOP_GRACE if interrupted else 5.0))
    return finished, interrupted


def _summary(rows: list[Row], asked: int) -> int:
    delivered = [r for r in rows if r.state == DELIVERED]
    bad = [r for r in rows if r.state != DELIVERED]
    print(f"replay: {len(delivered)} of {asked} file(s) delivered")
    for r in bad:
        print(f"  {r.state.upper()} {r.name}: {r.reason}")
        if r.state == WAITING:
            print("         (left waiting: the service tries it again until a destination takes it)")
    return 0 if len(delivered) == asked else 1
