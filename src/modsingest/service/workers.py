"""Long-lived worker processes, each with its own ``Pipeline``.

Why processes: the core is CPU-heavy Python and numpy; threads would queue on
one interpreter lock, and two workers must give close to twice the throughput
of one on two cores.  Why long-lived: building a ``Pipeline`` loads the step
plugins and warms up astropy, so each worker builds one once, before it is
counted as ready, and the first file after start is as fast as the rest.

Why the 'forkserver' start method: the service's main process has threads
(watchdog, gate, UDP listener), and forking a threaded process can copy a held
lock into the child.  The fork server is a single-threaded process that imports
the heavy modules once and forks every worker from that state, so starting or
replacing a worker costs the pipeline warm-up only.

Why not ``concurrent.futures.ProcessPoolExecutor``: when one of its processes
dies (the OOM killer, a crash in a C extension) the whole executor is broken and
every pending future fails.  Here only the dead worker's one file is affected,
the caller decides whether to retry it, and the worker is replaced.

Workers ignore SIGINT and SIGTERM: the main process decides when they stop
(finish the current file, or be killed at the shutdown deadline).  A worker must
not outlive the main process: a busy orphan would publish a file the next run
redoes (a second delivery).  Their parent is the fork server, not the main
process, so ``PR_SET_PDEATHSIG`` fires when the fork server ends; the fork server
ends when the last copy of its "alive" pipe closes, and multiprocessing hands a
copy to every child, so each worker closes its copy at once (otherwise the fork
server, and with it every busy worker, outlived a ``kill -9`` of the service until
the file was done).  As a second line, a thread in each worker waits for the hang-up
of its pipe to the main process and kills the worker.  Each worker holds a shared
lock on ``<state>/workers.lock`` for its whole life, so a new service can wait
until no worker of a killed predecessor is still writing.

When a worker dies, its hidden temporary files (named with its pid) are removed
from the destinations at once: a full frame leaves about 150 MB, and a restart
may be days away.  Other workers' temporaries are left alone.
"""

from __future__ import annotations

import fcntl
import json
import logging
import multiprocessing
import os
import select
import signal
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, NamedTuple

from modsingest import fsutil
from modsingest.config import Settings
from modsingest.result import Result
from modsingest.service import faultpoints

log = logging.getLogger("modsingest.workers")

#: prctl option: the kernel signals this process when its parent dies
_PR_SET_PDEATHSIG = 1

WORKERS_LOCK = "workers.lock"
#: ``<state>/published/<job id>.json``: a worker's note that it published a file,
#: written before its result is sent (see ``note_published``)
PUBLISHED_DIR = "published"
#: modules the fork server imports once, so forked workers start warm
PRELOAD = ["modsingest.service.workers", "modsingest.service.forkwarm"]
#: a worker that cannot build its pipeline is retried no sooner than this
RESTART_BACKOFF = 5.0


class Job(NamedTuple):
    id: int
    path: str


@dataclass
class Outcome:
    """What became of a job: the core's ``Result`` or the worker's death."""

    job: Job
    result: Result | None = None  # None when the worker died
    died: str | None = None  # why, when the worker died with the job

    @property
    def ok(self) -> bool:
        return self.result is not None and self.result.ok


class WorkerStartError(RuntimeError):
    """Workers could not build their pipeline (a configuration or installation problem)."""


# --------------------------------------------------------------------------- child side
def _die_with_parent() -> None:
    """Ask the kernel to kill this process when its parent (the fork server) ends."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
    except Exception:  # not Linux, or prctl filtered: the hang-up watch still ends us
        pass
    # Let the fork server end with the main process (see the module docstring).
    try:
        from multiprocessing import forkserver

        server = forkserver._forkserver
        alive = getattr(server, "_forkserver_alive_fd", None)
        if alive is not None:
            os.close(alive)
            setattr(server, "_forkserver_alive_fd", None)  # noqa: B010 (a private attribute)
    except Exception:  # pragma: no cover - another multiprocessing: the hang-up watch remains
        pass


def _die_with_main(conn: Connection) -> None:
    """A daemon thread: when the main process's end of ``conn`` hangs up, SIGKILL this worker.

    The worker's own thread may be deep in a file for seconds; this one only waits
    in ``poll`` (no GIL held), so the worker ends within milliseconds of its service.
    """
    fd = conn.fileno()

    def watch() -> None:
        poller = select.poll()
        poller.register(fd, select.POLLRDHUP)  # POLLHUP and POLLERR are always reported
        while True:
            for _, events in poller.poll():
                if events & (select.POLLHUP | select.POLLRDHUP | select.POLLERR | select.POLLNVAL):
                    os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="die-with-main", daemon=True).start()


def worker_main(
    conn: Connection,
    settings: Settings,
    lock_path: str | None,
    index: int,
    main_pid: int | None = None,
    fault_spec: str | None = None,
) -> None:
    """One worker: build the pipeline, then process what the main process sends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    _die_with_main(conn)
    from modsingest.logsetup import setup_logging

    setup_logging(settings.log_level)
    wlog = logging.getLogger(f"modsingest.worker{index}")
    if lock_path:
        lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(lock_fd, fcntl.LOCK_SH)  # held until this process ends
    try:
        from modsingest.processing.pipeline import Pipeline

        pipeline = Pipeline(settings)
    except BaseException as exc:
        wlog.error("cannot build the pipeline: %s", exc)
        conn.send(("init-failed", f"{type(exc).__name__}: {exc}"))
        return
    fault = faultpoints.arm_worker(fault_spec, main_pid, settings.paths.newdata)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the main process is gone
        if message is None:
            return
        job_id, path = message
        try:
            result = pipeline.process(path)
        except BaseException as exc:  # the core promises not to raise; record it if it does
            wlog.error("%s: the pipeline raised", path, exc_info=True)
            result = Result(
                source=Path(path),
                error=f"{path}: worker exception {type(exc).__name__}: {exc}",
                stage="worker",
            )
        if result.ok:
            note_published(settings.paths.state, job_id, result)
        if fault is not None:
            fault.fire("done", main_pid)
        try:
            conn.send(("done", job_id, result))
        except (BrokenPipeError, OSError):
            return


def note_published(state: Path, job_id: int, result: Result) -> None:
    """Record, beside the ledger, that job ``job_id`` was published.

    Why: between the worker's last rename and the main process's ledger write
    there is a moment when a ``kill -9`` of the service would leave the row
    ``processing`` and the restart would publish the file again.  This note
    (written without fsync: it guards against a killed process, not a power cut,
    like the ledger's ``synchronous=NORMAL``) lets the restart record the
    delivery instead (``dispatch.adopt_published``).  The main process removes
    it once the outcome is in the ledger.
    """
    folder = Path(state) / PUBLISHED_DIR
    try:
        folder.mkdir(mode=0o750, exist_ok=True)
        tmp = folder / f".{job_id}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(result.to_json()))
        os.replace(tmp, folder / f"{job_id}.json")
    except OSError as exc:  # the delivery stands; only the crash window stays open
        log.warning("cannot note job %s as published in %s: %s", job_id, folder, exc)


def forget_published(state: Path, job_id: int) -> None:
    """The outcome of ``job_id`` is in the ledger: its note is not needed any more."""
    try:
        os.unlink(Path(state) / PUBLISHED_DIR / f"{job_id}.json")
    except OSError:
        pass


def read_published(state: Path, job_id: int) -> Result | None:
    """The note of ``job_id`` (a worker that died after publishing, before its result arrived)."""
    try:
        return Result.from_json(json.loads((Path(state) / PUBLISHED_DIR / f"{job_id}.json").read_text()))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def take_published(state: Path) -> dict[int, Result]:
    """Start-up: the notes a killed run left (job id -> result), removed as they are read."""
    folder = Path(state) / PUBLISHED_DIR
    notes: dict[int, Result] = {}
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return notes
    for entry in entries:
        stem = entry.name[: -len(".json")]
        if entry.name.endswith(".json") and stem.isdigit():
            try:
                notes[int(stem)] = Result.from_json(json.loads(Path(entry.path).read_text()))
            except (OSError, ValueError, TypeError, AttributeError) as exc:
                log.warning("ignoring unreadable note %s: %s", entry.path, exc)
        try:
            os.unlink(entry.path)
        except OSError:
            pass
    return notes


# --------------------------------------------------------------------------- parent side
@dataclass
class _Worker:
    index: int
    process: Any
    conn: Connection
    ready: bool = False
    job: Job | None = None


class WorkerPool:
    """``size`` worker processes; the caller submits jobs to idle ones and waits."""

    def __init__(
        self,
        settings: Settings,
        size: int,
        *,
        lock_path: Path | None = None,
        start_method: str = "forkserver",
        ready_timeout: float = 180.0,
        fault: str | None = None,
    ):
        self.settings = settings
        self.size = max(1, size)
        self.lock_path = str(lock_path) if lock_path else None
        self.ready_timeout = ready_timeout
        #: fault injection (``faultpoints``): the argument, else ``MODSINGEST_FAULT``
        self.fault_spec = fault if fault is not None else faultpoints.from_env()
        self._fault = faultpoints.Fault.parse(self.fault_spec)
        #: typed Any: typeshed's BaseContext lacks Process, which every concrete context has
        self._ctx: Any = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            self._ctx.set_forkserver_preload(PRELOAD)
        self._workers: list[_Worker | None] = [None] * self.size
        self._restart_after: dict[int, float] = {}
        self.deaths = 0

    # ------------------------------------------------------------------ start / stop
    def start(self) -> None:
        """Start every worker and wait until each has built its pipeline."""
        for i in range(self.size):
            self._spawn(i)
        deadline = time.monotonic() + self.ready_timeout
        while not all(w is not None and w.ready for w in self._workers):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise WorkerStartError(f"workers not ready after {self.ready_timeout:.0f} s")
            self.wait(min(remaining, 1.0))  # nothing is submitted: no outcome to lose
            if self._init_error:
                self.kill()
                raise WorkerStartError(self._init_error)

    _init_error: str | None = None

    def _spawn(self, index: int) -> None:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=worker_main,
            args=(child_conn, self.settings, self.lock_path, index, os.getpid(), self.fault_spec),
            name=f"modsingest-worker{index}",
            daemon=True,
        )
        process.start()
        child_conn.close()
        self._workers[index] = _Worker(index, process, parent_conn)
        self._restart_after.pop(index, None)

    def stop(self, timeout: float) -> list[Job]:
        """Let busy workers finish within ``timeout``, then kill; returns unfinished jobs.

        Results that arrive meanwhile are returned by ``wait`` as usual, so call
        ``wait`` until ``busy`` is empty or the deadline passes, then this.
        """
        for w in self._live():
            if w.job is None:
                try:
                    w.conn.send(None)
                except OSError:
                    pass
        return self.kill(timeout)

    def kill(self, grace: float = 0.0) -> list[Job]:
        """End every worker (after ``grace`` for idle ones to leave); unfinished jobs."""
        lost = []
        deadline = time.monotonic() + grace
        for w in self._live():
            if w.job is None:
                w.process.join(max(0.0, deadline - time.monotonic()))
        for w in self._live():
            if w.job is not None:
                lost.append(w.job)
            if w.process.is_alive():
                w.process.kill()
            w.process.join(5.0)
            w.conn.close()
        self._workers = [None] * self.size
        return lost

    # ------------------------------------------------------------------ jobs
    def _live(self) -> list[_Worker]:
        return [w for w in self._workers if w is not None]

    @property
    def idle(self) -> int:
        return sum(1 for w in self._live() if w.ready and w.job is None)

    @property
    def busy(self) -> list[Job]:
        return [w.job for w in self._live() if w.job is not None]

    def pids(self) -> list[int]:
        return [w.process.pid for w in self._live() if w.process.pid]

    def submit(self, job: Job) -> bool:
        """Send ``job`` to an idle worker; False when no worker could take it.

        A worker can die after ``wait`` saw it idle and before the job reaches it
        (the OOM killer does not wait for us); then sending raises ``BrokenPipeError``.
        That worker is buried like any dead one (it never had the job, so the job
        costs no attempt) and the next idle worker is tried.  On False the caller
        gives the file back to the queue.
        """
        fault = self._fault
        for w in self._live():
            if not (w.ready and w.job is None):
                continue
            if fault is not None:
                fault.fire("submit", None, w.process.pid)  # the race, made to happen
            try:
                w.conn.send((job.id, job.path))
            except OSError as exc:
                log.error(
                    "worker %d (pid %s) is gone (%s); %s goes to another worker",
                    w.index,
                    w.process.pid,
                    exc.strerror or exc,
                    job.path,
                )
                if w.process.is_alive():
                    w.process.kill()
                self._buried(w, [])
                continue
            w.job = job
            return True
        return False

    def wait(self, timeout: float, extra: Iterable[Any] = ()) -> list[Outcome]:
        """Block up to ``timeout`` for results, deaths or any of ``extra`` (fds).

        Dead workers are replaced (a worker that failed to build its pipeline no
        sooner than ``RESTART_BACKOFF``).
        """
        self._respawn_due()
        live = self._live()
        objects: list[Any] = [w.conn for w in live] + [w.process.sentinel for w in live]
        objects += list(extra)
        ready = set(wait(objects, timeout)) if objects else set()
        if not objects:
            time.sleep(timeout)
        outcomes: list[Outcome] = []
        for w in live:
            if w.conn in ready:
                self._receive(w, outcomes)
        for w in live:
            if self._workers[w.index] is w and (w.process.sentinel in ready or not w.process.is_alive()):
                if w.conn.poll():  # a last message written before it died
                    self._receive(w, outcomes)
                if self._workers[w.index] is w:
                    self._buried(w, outcomes)
        return outcomes

    def _receive(self, worker: _Worker, outcomes: list[Outcome]) -> None:
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            return  # the sentinel reports the death
        kind = message[0]
        if kind == "ready":
            worker.ready = True
            log.debug("worker %d ready (pid %s)", worker.index, message[1])
        elif kind == "done":
            _, job_id, result = message
            job = worker.job if worker.job is not None and worker.job.id == job_id else Job(job_id, "?")
            worker.job = None
            outcomes.append(Outcome(job, result=result))
        elif kind == "init-failed":
            self._init_error = f"worker {worker.index} cannot build the pipeline: {message[1]}"
            log.error("%s", self._init_error)
            worker.process.join(5.0)
            self._workers[worker.index] = None
            self._restart_after[worker.index] = time.monotonic() + RESTART_BACKOFF

    def _buried(self, worker: _Worker, outcomes: list[Outcome]) -> None:
        worker.process.join(1.0)
        code = worker.process.exitcode
        why = f"signal {-code}" if code is not None and code < 0 else f"exit status {code}"
        self.deaths += 1
        if worker.job is not None:
            log.error(
                "worker %d (pid %s) died with %s while processing %s",
                worker.index,
                worker.process.pid,
                why,
                worker.job.path,
            )
            outcomes.append(Outcome(worker.job, died=f"worker died ({why})"))
        else:
            log.error("worker %d (pid %s) died with %s", worker.index, worker.process.pid, why)
        worker.conn.close()
        self._workers[worker.index] = None
        self._restart_after.setdefault(worker.index, 0.0)
        if worker.process.pid:
            for path in remove_temporaries_of(worker.process.pid, self.settings):
                log.warning("removed %s, a temporary file of the dead worker %d", path, worker.index)

    def _respawn_due(self) -> None:
        now = time.monotonic()
        for index, when in list(self._restart_after.items()):
            if self._workers[index] is None and now >= when:
                log.info("starting a new worker %d", index)
                try:
                    self._spawn(index)
                except OSError as exc:  # out of processes or memory: try again later
                    log.error("cannot start worker %d: %s; trying again in %g s", index, exc, RESTART_BACKOFF)
                    self._restart_after[index] = now + RESTART_BACKOFF


def destination_dirs(settings: Settings) -> list[Path]:
    """Where temporary files are made: newdata, processed and each processed/<night>,
    and the optional outputs (legacy/<night>, the night log, compressed/<night>)."""
    p = settings.paths
    dirs = [Path(p.newdata)]
    if p.nightlog is not None:
        dirs.append(Path(p.nightlog))
    for root in (p.processed, p.legacy, p.compressed):
        if root is None:
            continue
        dirs.append(Path(root))
        try:
            dirs += [Path(e.path) for e in os.scandir(root) if e.is_dir(follow_symlinks=False)]
        except OSError:
            pass
    return dirs


def remove_temporaries_of(pid: int, settings: Settings) -> list[Path]:
    """Remove the hidden temporary files that worker ``pid`` left in the destinations."""
    removed: list[Path] = []
    for d in destination_dirs(settings):
        removed += fsutil.clean_stale(d, pid=pid)
    return removed


def wait_for_orphans(lock_path: Path, timeout: float) -> bool:
    """Wait until no worker of an earlier run holds ``lock_path``; False on timeout.

    A worker killed along with its service dies at once (``PR_SET_PDEATHSIG``),
    but one that is blocked in the kernel (NFS) may take a while; redoing its file
    while it still writes would make two writers of one file.
    """
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.1)
    finally:
        os.close(fd)
