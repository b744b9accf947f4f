"""The gate: decides that a raw file is complete and stable before anything reads it.

Why a gate: the raw directories are NFS mounts written by another host, and azcam
writes every file twice under its final name (PRIMARY+IM1..IM4 and close, then
re-open to append CONPARS).  A close event, a size or a UDP datagram alone can
each point at a file that is still being written.  So a path only passes when

1. ``fitscheck`` finds the FITS structure complete (headers end, data sizes add up),
2. its fingerprint (size, mtime, ctime, inode) is the same on two looks at least
   ``watch.settle`` apart, measured on this host's monotonic clock (the writer's
   clock and ours need not agree); or, when a writer-done signal came (inotify's
   IN_CLOSE_WRITE, or azcam-mods' UDP "proc", sent after both passes: the
   service's ``final_sources``) and the content is then the same
   on two looks ``CLOSE_RELOOK`` apart (``watch.pass_on_close``): CONPARS is
   the last thing azcam writes and its close is its last act, so waiting the
   whole settle time only delays observers.  The second look is there because
   astropy's second pass closes the old file, renames the new one into place,
   changes its mode (a new ctime) and only then opens and closes it: a close
   reported late must not pass the file between the rename and the mode
   change.  Content that changes after a close needs a close of its own.
   Should anything change the file again later, its new fingerprint brings it
   back and the ledger has it processed again; and
3. CONPARS is there, or the file has been complete without it for
   ``watch.conpars_grace`` seconds (then it is processed without it; the core
   writes an empty table and a warning).

A path that stays incomplete for ``watch.incomplete_timeout`` is reported to the
ledger as ``incomplete`` with the reason: reported, not forgotten; when it
changes again detection brings it back.

The gate only reads headers (``fitscheck.scan`` preads a few blocks), holds
nothing but a small record per path under consideration, and runs in its own
thread (``GateLoop``) fed by detection hints; it never processes a file.
"""

from __future__ import annotations

import logging
import os
import queue
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from modsingest.fits import scan as fitscheck
from modsingest.service.ledger import Fingerprint

log = logging.getLogger("modsingest.gate")

#: After a writer's close, look again this soon (not ``settle`` later): a
#: second look at the same content with the close between them passes it.
CLOSE_RELOOK = 0.005


@dataclass(frozen=True)
class Look:
    """One look at a file: its fingerprint and what its structure says."""

    fingerprint: Fingerprint | None  # None: the file changed while it was being looked at
    complete: bool
    has_conpars: bool
    problem: str | None = None  # why it is not complete (one line)


def _stat(path: str) -> os.stat_result | Look | None:
    """``os.stat``, or None when the file is gone, or a Look saying why it cannot be had."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return Look(None, False, False, f"{path}: cannot stat: {exc.strerror or exc}")


def look(path: str) -> Look | None:
    """Scan the structure, then take the fingerprint; None when the file is gone.

    The scan opens the file, which on NFS revalidates the cached attributes
    (close-to-open consistency), so the ``stat`` after it is fresh.  A size that
    differs between the two means the file moved under us: no verdict this time.
    """
    st = _stat(path)
    if not isinstance(st, os.stat_result):
        return st
    if not stat.S_ISREG(st.st_mode):  # opening a FIFO would block the gate for good
        return Look(Fingerprint.of(st), False, False, f"{path}: not a regular file")
    layout = fitscheck.scan(path)
    st = _stat(path)
    if not isinstance(st, os.stat_result):
        return st
    if layout.size != st.st_size and layout.complete:
        return Look(None, False, False, f"{path}: changed while being looked at")
    return Look(
        Fingerprint.of(st),
        layout.complete,
        layout.has_conpars,
        None if layout.complete else layout.describe(),
    )


@dataclass
class Candidate:
    """A path under consideration, and what the looks so far have shown."""

    path: str
    seen_mono: float  # first hint, local monotonic clock (for decisions)
    seen_wall: float  # first hint, Unix time (for the ledger and latency)
    sources: set[str] = field(default_factory=set)
    force: bool = False  # a replay: process even if this content was delivered
    fp: Fingerprint | None = None
    fp_since: float = 0.0  # monotonic time the current fingerprint was first seen
    looks: int = 0  # consecutive looks that found ``fp``
    incomplete_since: float | None = None
    waiting_since: float | None = None  # complete but without CONPARS since
    problem: str | None = None
    gone_since: float | None = None  # the name was missing at the last looks
    next_look: float = 0.0
    closed: bool = False  # a writer-done hint (``final_sources``) came since the last look
    close_pending: bool = False  # a close was seen; the next look at the same content passes

    @property
    def waiting_for_conpars(self) -> bool:
        return self.waiting_since is not None


#: on_ready(candidate, fingerprint, has_conpars)
ReadyCallback = Callable[[Candidate, Fingerprint, bool], None]
#: on_incomplete(candidate, fingerprint, reason)
IncompleteCallback = Callable[[Candidate, Fingerprint, str], None]


class Gate:
    """The decision logic, driven by ``hint`` and ``run_due`` (one thread only)."""

    def __init__(
        self,
        *,
        poll_interval: float,
        conpars_grace: float,
        settle: float | None = None,
        final_sources: frozenset[str] = frozenset(),
        incomplete_timeout: float,
        is_settled: Callable[[str, Fingerprint], bool],
        on_ready: ReadyCallback,
        on_incomplete: IncompleteCallback,
        look: Callable[[str], Look | None] = look,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ):
        self.poll_interval = poll_interval
        #: How long a complete file's fingerprint must hold still.  Not the poll
        #: interval: a complete file with CONPARS is azcam's final pass, and
        #: observers wait on every tenth of a second; polling is about how often
        #: directories are listed, which costs NFS round trips.
        self.settle = poll_interval if settle is None else settle
        #: Hint sources that say the writer is done with the file (inotify's
        #: close-after-write, azcam's UDP "proc"): a complete file with CONPARS
        #: then passes on two looks ``CLOSE_RELOOK`` apart.  Empty: every file
        #: waits for ``settle``.
        self.final_sources = final_sources
        self.conpars_grace = conpars_grace
        self.incomplete_timeout = incomplete_timeout
        self._is_settled = is_settled
        self._on_ready = on_ready
        self._on_incomplete = on_incomplete
        self._look = look
        self._clock = clock
        self._wall = wall
        self.candidates: dict[str, Candidate] = {}

    def hint(self, path: str, source: str, force: bool = False) -> None:
        """Something says ``path`` may have changed: look at it at once."""
        now = self._clock()
        c = self.candidates.get(path)
        if c is None:
            c = self.candidates[path] = Candidate(path, now, self._wall(), next_look=now)
        c.sources.add(source)
        c.closed = c.closed or source in self.final_sources
        c.force = c.force or force
        c.next_look = min(c.next_look, now)

    def next_due(self) -> float | None:
        """Seconds until the next look is due (0 if overdue), None if nothing is waiting."""
        if not self.candidates:
            return None
        return max(0.0, min(c.next_look for c in self.candidates.values()) - self._clock())

    def run_due(self) -> None:
        """Look at every candidate whose time has come."""
        now = self._clock()
        for c in [c for c in self.candidates.values() if c.next_look <= now]:
            try:
                self._judge(c)
            except Exception:  # a bug here must not stop the gate; try again later
                log.exception("%s: error while looking at the file", c.path)
                c.next_look = self._clock() + max(self.poll_interval, 1.0)

    def _drop(self, c: Candidate) -> None:
        self.candidates.pop(c.path, None)

    def _judge(self, c: Candidate) -> None:
        closed, c.closed = c.closed, False  # this look answers the hints before it
        seen = self._look(c.path)
        now = self._clock()
        if seen is None:
            # astropy's update mode (azcam's second pass) replaces the file by a
            # rename, so the name can be missing for a moment: keep looking a while.
            if c.gone_since is None:
                c.gone_since = now
            if now - c.gone_since >= max(self.conpars_grace, 2 * self.poll_interval):
                log.debug("%s: gone before it was complete", c.path)
                self._drop(c)
            else:
                c.next_look = now + min(self.poll_interval, 0.2)
            return
        c.gone_since = None
        fp = seen.fingerprint
        if fp is not None and not c.force and self._is_settled(c.path, fp):
            self._drop(c)  # this very content is delivered, failed, queued or reported
            return
        if fp is None or fp != c.fp:
            c.fp, c.fp_since, c.looks = fp, now, 1
            c.close_pending = False  # new content: only a close after it counts
        else:
            c.looks += 1
        stable = fp is not None and c.looks >= 2 and now - c.fp_since >= self.settle
        # a complete file is looked at again after the settle time, one being written later
        c.next_look = now + (self.settle if seen.complete else self.poll_interval)

        if not seen.complete or not seen.has_conpars:
            c.close_pending = False  # a close of an unfinished file says nothing of the final one
        if not seen.complete:
            c.waiting_since = None
            c.problem = seen.problem
            if c.incomplete_since is None:
                c.incomplete_since = now
            if fp is not None and now - c.incomplete_since >= self.incomplete_timeout:
                self._drop(c)
                self._on_incomplete(c, fp, seen.problem or f"{c.path}: incomplete")
            return
        c.incomplete_since = None
        c.problem = None
        assert fp is not None
        if seen.has_conpars:
            c.waiting_since = None
            after_close = closed or c.close_pending
            if stable or (after_close and c.looks >= 2):
                self._drop(c)
                self._on_ready(c, fp, True)
            elif after_close:  # first look at this content since a close: once more, soon
                c.close_pending = True
                c.next_look = min(c.next_look, now + min(self.settle, CLOSE_RELOOK))
            return
        if c.waiting_since is None:
            c.waiting_since = now
        waited = now - c.waiting_since
        if stable and waited >= self.conpars_grace:
            self._drop(c)
            self._on_ready(c, fp, False)
            return
        # Look again when the grace ends, but not before the fingerprint can be stable.
        c.next_look = max(
            min(now + self.poll_interval, c.waiting_since + self.conpars_grace),
            c.fp_since + self.settle,
        )

    def counts(self) -> dict[str, int]:
        """What the gate holds right now, for status and logs."""
        waiting = sum(1 for c in self.candidates.values() if c.waiting_for_conpars)
        incomplete = sum(1 for c in self.candidates.values() if c.incomplete_since is not None)
        return {
            "considering": len(self.candidates),
            "waiting_for_conpars": waiting,
            "incomplete": incomplete,
        }


class GateLoop:
    """The gate's thread: takes hints from any thread, looks when looks are due.

    Detection (watchdog's thread, the scanner, the UDP listener) only calls
    ``put``; all file reading happens here, all processing in the workers.
    """

    def __init__(self, gate: Gate, name: str = "modsingest-gate"):
        self.gate = gate
        self._hints: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._counts = gate.counts()

    def put(self, path: os.PathLike | str, source: str, force: bool = False) -> None:
        self._hints.put((os.fspath(path), source, force))

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._hints.put(None)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def counts(self) -> dict[str, int]:
        """A snapshot taken by the gate thread (safe to read from any thread)."""
        return dict(self._counts)

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # the service notices the dead thread and starts another
            log.exception("the gate thread failed")

    def _loop(self) -> None:
        while not self._stop.is_set():
            due = self.gate.next_due()
            try:  # nothing under consideration: sleep until a hint (or stop) arrives
                item = self._hints.get(timeout=due)
            except queue.Empty:
                item = ()
            while item is not None:
                if item:
                    self.gate.hint(*item)
                try:
                    item = self._hints.get_nowait()
                except queue.Empty:
                    break
            if item is None or self._stop.is_set():
                break
            self.gate.run_due()
            self._counts = self.gate.counts()
