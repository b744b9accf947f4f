"""The gate: decides that a raw file is complete and stable before anything reads it.

Why a gate: the raw directories are NFS mounts written by another host, and azcam
writes every file twice under its final name (PRIMARY+IM1..IM4 and close, then
re-open to append CONPARS).  A close event, a size or a UDP datagram alone can
each point at a file that is still being written, so the gate looks at the file
itself (a header walk and a fingerprint) until it is sure.

The rule (what a look shows, which state that puts the path in, and how each
state is left) is written once, in docs/service.md, "States of a raw file"; this
module is its code: ``State`` names the states, ``Gate._verdict`` maps a look to a
state, and ``Gate`` has one method per state saying how it is left.
``tests/test_gate.py`` holds the two to the same names.

The gate only reads headers (``fitscheck.scan`` preads a few blocks), holds
nothing but a small record per path under consideration, and runs in its own
thread (``GateLoop``) fed by detection hints; it never processes a file.
"""

from __future__ import annotations

import enum
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


class State(enum.Enum):
    """Where a path under consideration stands (docs/service.md, "States of a raw file")."""

    SEEN = "seen"  # hinted, not looked at yet
    INCOMPLETE = "incomplete"  # the structure is not complete (yet)
    IMPOSSIBLE = "impossible"  # as it stands, it can never become a MODS file (or is no file)
    WAITING_FOR_CONPARS = "waiting for CONPARS"  # complete, without azcam's second pass
    SETTLING = "settling"  # complete with CONPARS; its fingerprint must hold ``settle``
    CLOSED = "closed"  # complete with CONPARS after a writer-done hint: one quick look more
    GONE = "gone"  # the name was missing at the last look (astropy's rename)


class Exit(enum.Enum):
    """How a path leaves the gate."""

    QUEUED = "queued"  # on_ready: the ledger queues it
    REPORTED = "reported"  # on_incomplete: the ledger records it incomplete, with the reason
    SETTLED = "settled"  # the ledger already has this very content: nothing to do
    FORGOTTEN = "forgotten"  # the name stayed missing: the file is gone


@dataclass(frozen=True)
class Look:
    """One look at a file: its fingerprint and what its structure says."""

    fingerprint: Fingerprint | None  # None: the file changed while it was being looked at
    complete: bool
    has_conpars: bool
    problem: str | None = None  # why it is not complete (one line)
    impossible: bool = False  # as it stands, it can never become a MODS file (``problem`` says why)


def _lstat(path: str) -> os.stat_result | Look | None:
    """``os.lstat``, or None when the file is gone, or a Look saying why it cannot be had."""
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return Look(None, False, False, f"{path}: cannot stat: {exc.strerror or exc}")


def _not_a_file(path: str, st: os.stat_result) -> Look:
    """A name that is not a regular file is refused at once (docs/service.md, "Symbolic links").

    A symbolic link could point anywhere on this machine, and the service would
    publish what it reads; a FIFO would block the gate for good when opened.
    """
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        why = f"{path}: a symbolic link (to {target}), not a file: refused; raw files must be regular files"
    else:
        why = f"{path}: not a regular file"
    return Look(Fingerprint.of(st), False, False, why, impossible=True)


def look(path: str) -> Look | None:
    """Scan the structure, then take the fingerprint; None when the file is gone.

    The scan opens the file, which on NFS revalidates the cached attributes
    (close-to-open consistency), so the ``lstat`` after it is fresh.  A file that
    moved under us (a new size or inode; for an impossible verdict any change)
    gets no verdict this time: it is looked at again.
    """
    before = _lstat(path)
    if not isinstance(before, os.stat_result):
        return before
    if not stat.S_ISREG(before.st_mode):
        return _not_a_file(path, before)
    layout = fitscheck.scan(path)
    st = _lstat(path)
    if not isinstance(st, os.stat_result):
        return st
    moved = st.st_ino != before.st_ino or not stat.S_ISREG(st.st_mode)
    if moved or (layout.complete and layout.size != st.st_size):
        return Look(None, False, False, f"{path}: changed while being looked at")
    fp = Fingerprint.of(st)
    if layout.impossible and fp != Fingerprint.of(before):
        return Look(None, False, False, f"{path}: changed while being looked at")
    return Look(fp, layout.complete, layout.has_conpars, layout.reason or None, layout.impossible)


@dataclass
class Candidate:
    """A path under consideration: its state, and the content the looks have shown."""

    path: str
    seen_wall: float  # first hint, Unix time (for the ledger and latency)
    sources: set[str] = field(default_factory=set)
    force: bool = False  # a replay: process even if this content was delivered
    state: State = State.SEEN
    since: float = 0.0  # monotonic time the state began (a moment GONE does not restart it)
    resume: tuple[State, float] | None = None  # while GONE: the state and its start to pick up
    fp: Fingerprint | None = None
    fp_since: float = 0.0  # monotonic time the current fingerprint was first seen
    looks: int = 0  # consecutive looks that found ``fp``
    next_look: float = 0.0
    closed: bool = False  # a writer-done hint (``final_sources``) came since the last look
    problem: str | None = None  # why the last look found it incomplete (for status)

    @property
    def standing(self) -> State:
        """The state, looking through a moment GONE (what status counts)."""
        if self.state is State.GONE and self.resume is not None:
            return self.resume[0]
        return self.state

    @property
    def waiting_for_conpars(self) -> bool:
        return self.standing is State.WAITING_FOR_CONPARS


#: on_ready(candidate, fingerprint, has_conpars)
ReadyCallback = Callable[[Candidate, Fingerprint, bool], None]
#: on_incomplete(candidate, fingerprint, reason)
IncompleteCallback = Callable[[Candidate, Fingerprint, str], None]


class Gate:
    """The states and their transitions, driven by ``hint`` and ``run_due`` (one thread only)."""

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
        #: How long a complete file's fingerprint must hold still (``watch.settle``).
        #: Not the poll interval: polling is about how often directories are listed.
        self.settle = poll_interval if settle is None else settle
        #: Hint sources that say the writer is done with the file (State.CLOSED);
        #: empty (``watch.pass_on_close: no``): every file waits for ``settle``.
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
        self._in_state: dict[State, Callable[[Candidate, Look, float], None]] = {
            State.INCOMPLETE: self._in_incomplete,
            State.IMPOSSIBLE: self._in_impossible,
            State.WAITING_FOR_CONPARS: self._in_waiting_for_conpars,
            State.SETTLING: self._in_settling,
            State.CLOSED: self._in_closed,
        }

    def hint(self, path: str, source: str, force: bool = False) -> None:
        """Something says ``path`` may have changed: look at it at once."""
        now = self._clock()
        c = self.candidates.get(path)
        if c is None:
            c = self.candidates[path] = Candidate(path, self._wall(), since=now, next_look=now)
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

    # ------------------------------------------------------------------ one look
    def _judge(self, c: Candidate) -> None:
        """Look once, move to the state the look shows, then let that state decide."""
        closed, c.closed = c.closed, False  # this look answers the hints before it
        seen = self._look(c.path)
        now = self._clock()
        if seen is None:
            self._in_gone(c, now)
            return
        if c.state is State.GONE and c.resume is not None:  # back: the earlier state goes on
            (c.state, c.since), c.resume = c.resume, None
        fp = seen.fingerprint
        c.problem = seen.problem
        if fp is not None and not c.force and self._is_settled(c.path, fp):
            self._leave(c, Exit.SETTLED)  # this very content is delivered, failed, queued or reported
            return
        same = fp is not None and fp == c.fp
        if same:
            c.looks += 1
        else:
            c.fp, c.fp_since, c.looks = fp, now, 1
        # a complete file is looked at again after the settle time, one being written later
        c.next_look = now + (self.settle if seen.complete else self.poll_interval)
        self._enter(c, self._verdict(c, seen, closed, same), now)
        self._in_state[c.state](c, seen, now)

    def _verdict(self, c: Candidate, seen: Look, closed: bool, same: bool) -> State:
        """The state a look shows (the left half of the docs' table)."""
        if seen.impossible:
            return State.IMPOSSIBLE
        if not seen.complete:
            return State.INCOMPLETE
        if not seen.has_conpars:
            return State.WAITING_FOR_CONPARS
        # A close counts for the content it was seen with: a close before a change
        # (astropy's rename, then its mode change) says nothing of the new content.
        if closed or (c.state is State.CLOSED and same):
            return State.CLOSED
        return State.SETTLING

    def _enter(self, c: Candidate, state: State, now: float) -> None:
        if c.state is not state:
            c.state, c.since = state, now

    def _stable(self, c: Candidate, now: float) -> bool:
        """The same fingerprint on two looks at least ``settle`` apart."""
        return c.fp is not None and c.looks >= 2 and now - c.fp_since >= self.settle

    def _leave(self, c: Candidate, how: Exit) -> None:
        self.candidates.pop(c.path, None)
        log.debug("%s: %s, leaves the gate %s", c.path, c.state.value, how.value)

    # ------------------------------------------------------------------ how each state is left
    def _in_gone(self, c: Candidate, now: float) -> None:
        """astropy's update mode (azcam's second pass) replaces the file by a rename,
        so the name can be missing for a moment: keep looking a while."""
        if c.state is not State.GONE:
            c.resume = (c.state, c.since)
            c.state, c.since = State.GONE, now
        if now - c.since >= max(self.conpars_grace, 2 * self.poll_interval):
            self._leave(c, Exit.FORGOTTEN)
        else:
            c.next_look = now + min(self.poll_interval, 0.2)

    def _in_incomplete(self, c: Candidate, seen: Look, now: float) -> None:
        if c.fp is not None and now - c.since >= self.incomplete_timeout:
            self._leave(c, Exit.REPORTED)
            self._on_incomplete(c, c.fp, seen.problem or f"{c.path}: incomplete")

    def _in_impossible(self, c: Candidate, seen: Look, now: float) -> None:
        """Waiting cannot help: report it as soon as one content holds still for ``settle``
        (a content that keeps changing: after ``incomplete_timeout``, like an incomplete one)."""
        if c.fp is not None and (self._stable(c, now) or now - c.since >= self.incomplete_timeout):
            self._leave(c, Exit.REPORTED)
            self._on_incomplete(c, c.fp, seen.problem or f"{c.path}: cannot become a MODS file")
        else:
            c.next_look = max(c.fp_since + self.settle, now + min(self.settle, CLOSE_RELOOK))

    def _in_settling(self, c: Candidate, seen: Look, now: float) -> None:
        if self._stable(c, now):
            self._ready(c, True)

    def _in_closed(self, c: Candidate, seen: Look, now: float) -> None:
        if self._stable(c, now) or c.looks >= 2:
            self._ready(c, True)
        else:  # first look at this content since the close: once more, soon
            c.next_look = min(c.next_look, now + min(self.settle, CLOSE_RELOOK))

    def _in_waiting_for_conpars(self, c: Candidate, seen: Look, now: float) -> None:
        if self._stable(c, now) and now - c.since >= self.conpars_grace:
            self._ready(c, False)
            return
        # Look again when the grace ends, but not before the fingerprint can be stable.
        c.next_look = max(
            min(now + self.poll_interval, c.since + self.conpars_grace), c.fp_since + self.settle
        )

    def _ready(self, c: Candidate, conpars: bool) -> None:
        assert c.fp is not None
        self._leave(c, Exit.QUEUED)
        self._on_ready(c, c.fp, conpars)

    def held(self) -> list[tuple[str, str, float, str | None]]:
        """Files held for a reason, as (path, state, since as Unix time, reason), for status.

        Every state but the passing moments (seen, settling, closed) and a moment
        GONE (which shows the state it interrupted).
        """
        now, wall = self._clock(), self._wall()
        return [
            (c.path, c.standing.value, wall - (now - c.since), c.problem)
            for c in self.candidates.values()
            if c.standing not in _PASSING
        ]

    def counts(self) -> dict[str, int]:
        """What the gate holds right now, for status and logs."""
        standing = [c.standing for c in self.candidates.values()]
        return {
            "considering": len(standing),
            "waiting_for_conpars": standing.count(State.WAITING_FOR_CONPARS),
            "incomplete": standing.count(State.INCOMPLETE) + standing.count(State.IMPOSSIBLE),
        }


#: states a file passes through on its way to the queue: not "held"
_PASSING = frozenset({State.SEEN, State.SETTLING, State.CLOSED, State.GONE})


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
        self._held = gate.held()

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

    def held(self) -> list[tuple[str, str, float, str | None]]:
        """``Gate.held`` as the gate thread last saw it (safe to read from any thread)."""
        return list(self._held)

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
            self._held = self.gate.held()
