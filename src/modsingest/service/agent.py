"""``modsingest watch``: the unattended service that systemd starts.

It wires the flow together, one way:

    detect (inotify / poll / rescans / UDP)  --path-->  gate  --complete file-->
    ledger (queued)  --claim-->  dispatcher  --job-->  worker processes (Pipeline)

and supervises it.  The main thread runs the dispatcher loop and the
housekeeping (restarting a dead observer or gate thread, replay requests,
systemd watchdog pings, metrics, the heartbeat ``status`` reads); signals only
set a flag and wake it.

Start-up: ``runtime``'s recipe, shared with ``replay`` (lock, orphans, recover,
clean the destinations, start the workers), then start watching, scan everything
once, and tell systemd READY.

SIGTERM (or an allowed UDP ``quit``): stop detection, let busy workers finish
their file for up to ``runtime.STOP_GRACE`` seconds, abandon (kill, re-queue)
what is still running, and exit, all within systemd's 30 s.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from modsingest import __version__, fsutil
from modsingest.config import Settings
from modsingest.names import channel_of_name
from modsingest.service import runtime
from modsingest.service.contracts import Metrics, Notifier, record_metric
from modsingest.service.detect import CLOSED, REPLAY, UDP, Blindness, Detector
from modsingest.service.dispatch import Dispatcher
from modsingest.service.gate import Candidate, Gate, GateLoop, State
from modsingest.service.ledger import AlreadyRunning, Fingerprint, Ledger
from modsingest.version import version_text

if TYPE_CHECKING:  # the listener is imported when UDP is enabled
    from modsingest.service.udp import UdpListener

log = logging.getLogger("modsingest.service")

HOUSEKEEPING = 1.0
HEARTBEAT = 2.0
STATUS_EVERY = 10.0


def fresh_fingerprint(path: str | os.PathLike) -> Fingerprint | None:
    """The file's fingerprint as the NFS server has it now (``fsutil.fresh_stat``), None if gone."""
    try:
        return Fingerprint.of(fsutil.fresh_stat(path))
    except OSError:
        return None


class Service:
    """One running ingest service (also used in-process by the tests)."""

    def __init__(
        self, settings: Settings, *, notifier: Notifier | None = None, metrics: Metrics | None = None
    ):
        self.settings = settings
        self.notifier = notifier
        self.metrics = metrics
        self._stop = threading.Event()
        self._stop_reason = ""
        self._stop_at: float | None = None
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.ledger: Ledger | None = None
        self.detector: Detector | None = None
        self.gate_loop: GateLoop | None = None
        self.dispatcher: Dispatcher | None = None
        self.udp: UdpListener | None = None
        self.blindness = Blindness(settings.watch.method, settings.watch.rescan_interval)
        self.started_at = time.time()
        self.ready = threading.Event()
        self._held_written: list | None = None  # the gate's holdings last copied to the ledger

    # ------------------------------------------------------------------ control (any thread)
    def request_stop(self, reason: str) -> None:
        if not self._stop.is_set():
            self._stop_reason = reason
            self._stop_at = time.monotonic()
            self._stop.set()
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"!")
        except (BlockingIOError, OSError):
            pass

    def _hint(self, path: str | os.PathLike, source: str, force: bool = False) -> None:
        """Detection's only way in: a path for the gate to look at."""
        assert self.gate_loop is not None
        self.gate_loop.put(path, source, force)

    def on_udp_proc(self, path: Path) -> str | None:
        """azcam-mods asked for ``path``: a hint, unless it is delivered and unchanged.

        azcam re-sends the previous file's name after an aborted exposure; such a
        duplicate must not deliver the file again.  Returns why it was ignored (the
        listener logs that, rate limited), None when taken.
        """
        if self.is_delivered_unchanged(path):
            return "already delivered and unchanged since"
        self._hint(path, UDP)
        return None

    def is_delivered_unchanged(self, path: str | os.PathLike) -> bool:
        """True when this raw file, as it is on disk now, was delivered already."""
        fp = fresh_fingerprint(path)
        return fp is not None and self.ledger is not None and self.ledger.is_delivered(path, fp)

    # ------------------------------------------------------------------ gate callbacks (gate thread)
    def _on_ready(self, candidate: Candidate, fp: Fingerprint, conpars: bool) -> None:
        assert self.ledger is not None
        row_id = self.ledger.enqueue(
            candidate.path,
            fp,
            seen_at=candidate.seen_wall,
            conpars=conpars,
            sources=candidate.sources,
            force=candidate.force,
        )
        if row_id is None:
            return
        name = os.path.basename(candidate.path)
        if not conpars:
            log.warning(
                "%s: no CONPARS after %g s; processing it without", name, self.settings.watch.conpars_grace
            )
        was_blind = self.blindness.blind
        if self.blindness.note(candidate.path, candidate.sources):
            record_metric(self.metrics, lambda m: m.found_by_rescan(1))
            self.ledger.set_info(found_by_rescan=self.blindness.found_by_rescan)
        if self.blindness.blind and not was_blind:
            record_metric(self.metrics, lambda m: m.set_inotify_blind(True))
            self.ledger.set_info(
                inotify_blind={
                    "since": self.blindness.blind_since,
                    "example": self.blindness.blind_example,
                    "rescan_interval": self.settings.watch.rescan_interval,
                }
            )
        log.debug("%s: queued (found by %s)", name, ",".join(sorted(candidate.sources)))
        self._wake()

    def _on_incomplete(self, candidate: Candidate, fp: Fingerprint, reason: str) -> None:
        assert self.ledger is not None
        self.ledger.mark_incomplete(candidate.path, fp, reason, seen_at=candidate.seen_wall)
        if candidate.state is State.IMPOSSIBLE:  # docs/service.md, "States of a raw file"
            log.warning(
                "IMPOSSIBLE %s (reported at once: as it stands it can never become a MODS file; "
                "it will be looked at again when it changes)",
                reason,
            )
        else:
            log.warning(
                "INCOMPLETE %s (for %g s; it will be looked at again when it changes)",
                reason,
                self.settings.watch.incomplete_timeout,
            )
        channel = channel_of_name(os.path.basename(candidate.path)) or ""
        record_metric(self.metrics, lambda m: m.incomplete(channel))

    # ------------------------------------------------------------------ life
    def run(self) -> int:
        """Start (``runtime``'s recipe), serve until asked to stop, stop; the exit status."""
        s = self.settings
        log.info(
            "%s starting: raw %s, method %s, %d worker(s)",
            version_text(),
            ", ".join(map(str, s.paths.raw)),
            s.watch.method,
            s.workers,
        )
        try:
            with runtime.state_held(s) as ledger:
                self.ledger = ledger
                pool = runtime.start_pool(s, s.workers)
                self.dispatcher = Dispatcher(
                    ledger, pool, metrics=self.metrics, nightlog_dir=s.paths.nightlog
                )
                return self._serve(ledger)
        except AlreadyRunning as exc:
            log.error("%s", exc)
            return 1
        except runtime.StartFailed as exc:
            log.error("%s; not starting", exc)
            return exc.code

    def _serve(self, ledger: Ledger) -> int:
        """Watch, gate and dispatch until a stop is asked for; then stop within systemd's limits."""
        s = self.settings
        gate = Gate(
            poll_interval=s.watch.poll_interval,
            settle=s.watch.settle,
            # writer-done signals: inotify's close-after-write, and azcam-mods'
            # "proc" datagram, which it sends after both passes
            final_sources=frozenset({CLOSED, UDP}) if s.watch.pass_on_close else frozenset(),
            conpars_grace=s.watch.conpars_grace,
            incomplete_timeout=s.watch.incomplete_timeout,
            is_settled=ledger.is_settled,
            on_ready=self._on_ready,
            on_incomplete=self._on_incomplete,
        )
        self.gate_loop = GateLoop(gate)
        self.detector = Detector(
            s.paths.raw,
            method=s.watch.method,
            poll_interval=s.watch.poll_interval,
            rescan_interval=s.watch.rescan_interval,
            lookback_days=s.watch.lookback_days,
            emit=self._hint,
            is_settled=ledger.is_settled,
            on_startup_done=self._wake,
        )
        ledger.set_info(
            pid=os.getpid(),
            version=__version__,
            started=self.started_at,
            stopped=None,
            method=s.watch.method,
            workers=s.workers,
            raw=[str(p) for p in s.paths.raw],
            inotify_blind=None,
            found_by_rescan=0,
            heartbeat=time.time(),
            rescan_interval=s.watch.rescan_interval,
            running_as_root=runtime.root_warning(s.paths.state),
        )
        self.gate_loop.start()
        self.detector.start()
        self._start_udp()
        try:
            return self._loop()
        finally:
            self._shutdown()

    def _start_udp(self) -> None:
        if not self.settings.udp.enabled:
            return
        from modsingest.service.udp import UdpListener

        self.udp = UdpListener(
            self.settings.udp,
            self.settings.paths.raw,
            self.on_udp_proc,
            lambda: self.request_stop("UDP quit"),
        )
        try:
            self.udp.start()
        except OSError as exc:
            log.error(
                "udp: cannot listen on %s:%d: %s (files are still found by watching)",
                self.settings.udp.host,
                self.settings.udp.port,
                exc,
            )
            self.udp = None

    def _loop(self) -> int:
        assert self.dispatcher and self.detector and self.ledger and self.gate_loop
        next_house = 0.0
        next_status = 0.0
        next_beat = 0.0
        interval = self.notifier.watchdog_interval() if self.notifier else None
        tick = min(HOUSEKEEPING, interval or HOUSEKEEPING)
        while not self._stop.is_set():
            finished = self.dispatcher.pump(tick, extra=[self._wake_r])
            self._drain_wake()
            if finished:
                self._metrics_out()
            now = time.monotonic()
            if not self.ready.is_set() and self.detector.startup_done.is_set():
                self.ready.set()
                log.info(
                    "ready: watching %d raw director%s",
                    len(self.settings.paths.raw),
                    "y" if len(self.settings.paths.raw) == 1 else "ies",
                )
                if self.notifier is not None:
                    self.notifier.ready(self._status_text())
            if now >= next_house:
                next_house = now + HOUSEKEEPING
                self._supervise()
                for path in self.ledger.take_requests():
                    self._hint(path, REPLAY, force=True)
                # The watchdog guards this loop.  A raw directory that cannot be
                # watched is not a reason for systemd to restart us: rescans go on.
                if self.notifier is not None:
                    self.notifier.watchdog()
            if now >= next_beat:
                next_beat = now + HEARTBEAT
                self.ledger.set_info(
                    heartbeat=time.time(),
                    gate=self.gate_loop.counts(),
                    observer_restarts=self.detector.observer_restarts,
                    unwatched=[str(d) for d in self.detector.unwatched],
                    worker_deaths=self.dispatcher.pool.deaths,
                )
                self._record_held()
            if now >= next_status:
                next_status = now + STATUS_EVERY
                if self.notifier is not None:
                    self.notifier.status(self._status_text())
                self._metrics_out()
        log.info("stopping: %s", self._stop_reason)
        return 0

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _supervise(self) -> None:
        """Notice dead threads (observer, scanner, gate) and restart them."""
        assert self.detector and self.gate_loop
        self.detector.check()
        if not self.gate_loop.is_alive():
            log.error("the gate thread died; restarting it and rescanning")
            self.gate_loop = GateLoop(self.gate_loop.gate)
            self.gate_loop.start()
            self.detector.request_rescan("gate thread restarted")

    def _record_held(self) -> None:
        """Copy what the gate holds into the ledger for ``status`` (only when it changed)."""
        assert self.ledger and self.gate_loop
        held = self.gate_loop.held()
        key = sorted((p, st, round(since), reason) for p, st, since, reason in held)
        if key != self._held_written:
            self.ledger.replace_held(held)
            self._held_written = key

    def _status_text(self) -> str:
        assert self.dispatcher and self.ledger and self.gate_loop
        dispatcher = self.dispatcher
        text = (
            f"{dispatcher.delivered} delivered, {dispatcher.failed} failed since start; "
            f"{self.ledger.queued_count()} queued, {len(dispatcher.busy)} processing, "
            f"{self.gate_loop.counts()['waiting_for_conpars']} waiting for CONPARS"
        )
        waiting = self.ledger.waiting()
        if waiting:
            text += f"; {len(waiting)} waiting for a destination ({waiting[0].reason})"
        if self.blindness.blind:
            text += "; inotify blind, relying on rescans"
        return text

    def _metrics_out(self) -> None:
        if self.metrics is None or self.dispatcher is None or self.ledger is None:
            return
        queued, busy = self.ledger.queued_count(), len(self.dispatcher.busy)
        record_metric(self.metrics, lambda m: m.set_queue_depth(queued))
        record_metric(self.metrics, lambda m: m.set_workers_busy(busy))
        waiting = self.ledger.waiting()
        oldest = time.time() - (waiting[0].waiting_since or time.time()) if waiting else 0.0
        record_metric(self.metrics, lambda m: m.set_waiting(len(waiting), oldest))
        if self.gate_loop is not None:
            held: dict[str, int] = {}
            for _path, state, _since, _reason in self.gate_loop.held():
                held[state] = held.get(state, 0) + 1
            record_metric(self.metrics, lambda m: m.set_gate_held(held))
        record_metric(self.metrics, lambda m: m.write_textfile())

    def _shutdown(self) -> None:
        if self.notifier is not None:
            self.notifier.stopping()
        started = self._stop_at or time.monotonic()
        if self.udp is not None:
            self.udp.stop(2.0)
        if self.detector is not None:
            self.detector.stop(2.0)
        if self.gate_loop is not None:
            self.gate_loop.stop(1.0)
        if self.dispatcher is not None:
            runtime.stop(self.dispatcher, self.settings, started + runtime.STOP_GRACE)
        if self.ledger is not None:  # closed by runtime.state_held after this
            self._metrics_out()
            self.ledger.replace_held([])  # the gate's memory ends with this run
            self.ledger.set_info(heartbeat=None, stopped=time.time(), pid=None)
        log.info("stopped")


def quiet_libraries() -> None:
    """watchdog logs every inotify event at debug level: keep our debug readable."""
    logging.getLogger("watchdog").setLevel(max(logging.INFO, logging.getLogger().level))
