"""Detection: turn the raw directories into "look at this path" hints.

Why both events and scans: inotify is immediate but, on an NFS client, sees only
what that same client writes (raw-format.md).  The raw disks are written by the
Archon hosts, so on the real system inotify may see nothing at all.  So:

- ``watch.method: inotify``: watchdog's inotify emitter on each raw directory,
  asking the kernel only for the events that matter for a raw file: closed after
  writing (azcam's two passes, GNU ``touch``), moved in, attribute change
  (``touch -c``, ``os.utime``: a replay request).  Plus a full rescan every
  ``watch.rescan_interval`` and after an inotify queue overflow or an observer
  restart, when events may have been lost.
- ``watch.method: poll``: a light listing every ``watch.poll_interval`` that
  stats only the files that can be new (new names, recent or undated names), and
  the same full rescans.
- In both, a full scan at start (files written while the service was down).

Files that only a periodic rescan found are counted; when a new file reaches the
queue without a single inotify event, inotify is taken to be blind, which is said
once in the log and kept for ``status`` and the metrics.

Nothing here opens a raw file or does real work in the watchdog thread: the
handler and the scanner only call ``emit(path, source)``; the gate looks.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers.inotify import InotifyEmitter, InotifyObserver, InotifyWatchGroup
from watchdog.observers.inotify_c import InotifyConstants

from modsingest.fsutil import fresh_stat
from modsingest.names import is_candidate, name_night, observing_night
from modsingest.service.ledger import Fingerprint

log = logging.getLogger("modsingest.detect")

#: hint sources.  CLOSED: inotify saw a writer close the file (IN_CLOSE_WRITE:
#: that writer is done with it); EVENT: any other inotify event (moved in,
#: attributes changed).
EVENT, CLOSED, POLL, RESCAN, STARTUP, RECOVERY, UDP, REPLAY = (
    "event",
    "closed",
    "poll",
    "rescan",
    "startup",
    "recovery",
    "udp",
    "replay",
)
#: watchdog's event type for IN_CLOSE_WRITE.  Not IN_MOVED_TO: astropy's
#: second pass renames its temporary file over the final name, then copies the
#: old file's mode onto it (IN_ATTRIB, a new ctime) and only then re-opens and
#: closes it: the close is the writer's last act, the rename is not.
_WRITER_DONE = "closed"

Emit = Callable[[str, str], None]


# --------------------------------------------------------------------------- inotify
#: The kernel events that matter for a raw file; IN_DELETE_SELF so a vanished
#: directory ends its emitter (and the health check rebuilds the watch).  The
#: kernel adds IN_UNMOUNT and IN_IGNORED by itself: a watch it removed is
#: reported through ``_RawDirWatch.on_lost`` and re-armed (``Detector.check``).
RAW_EVENT_MASK = (
    InotifyConstants.IN_CLOSE_WRITE
    | InotifyConstants.IN_MOVED_TO
    | InotifyConstants.IN_ATTRIB
    | InotifyConstants.IN_DELETE_SELF
)


class _RawDirWatch(InotifyWatchGroup):
    """watchdog's watch group, telling us when the kernel's event queue overflowed
    and when the kernel removed the watch.

    watchdog itself only repairs recursive watches on overflow; for us an
    overflow means files may have gone unseen, so it must trigger a rescan.  A
    watch the kernel removed (IN_IGNORED: the directory deleted, its file system
    unmounted) leaves watchdog's emitter running on nothing, so it would never
    be re-armed: ``on_lost`` says so.  Our own stop deactivates the group first,
    so its IN_IGNORED is not taken for a loss.
    """

    on_overflow: Callable[[], None] | None = None
    on_lost: Callable[[], None] | None = None

    def on_queue_overflow(self) -> None:
        super().on_queue_overflow()
        if self.on_overflow is not None:
            self.on_overflow()

    def on_watch_deleted(self, wd) -> None:
        active = self.is_active
        super().on_watch_deleted(wd)
        if active and self.on_lost is not None:
            self.on_lost()


class _RawDirEmitter(InotifyEmitter):
    """watchdog's inotify emitter with our kernel mask and the overflow callback."""

    def __init__(self, *args, on_overflow: Callable[[], None], on_lost: Callable[[], None], **kwargs):
        super().__init__(*args, **kwargs)
        self._on_overflow = on_overflow
        self._on_lost = on_lost

    def get_event_mask_from_filter(self):
        return RAW_EVENT_MASK

    def on_thread_start(self) -> None:
        group = _RawDirWatch(
            self._inotify_fd,
            os.fsencode(self.watch.path),
            is_recursive=False,
            event_mask=self.get_event_mask_from_filter(),
            follow_symlink=self.watch.follow_symlink,
        )
        group.on_overflow = self._on_overflow
        group.on_lost = self._on_lost
        self._inotify = group


class _RawDirObserver(InotifyObserver):
    def __init__(self, on_overflow: Callable[[], None], on_lost: Callable[[], None]):
        super().__init__()
        self._emitter_class = _RawDirEmitter
        self._emitter_kwargs["on_overflow"] = on_overflow
        self._emitter_kwargs["on_lost"] = on_lost

    def healthy(self, expected: int) -> bool:
        emitters = list(self.emitters)
        return (
            self.is_alive()
            and self._inotify_fd.is_alive()
            and len(emitters) == expected
            and all(e.is_alive() for e in emitters)
        )


class _Hinter(FileSystemEventHandler):
    """Runs in watchdog's thread: a path and nothing more.

    The watch is on the raw directory's resolved target (a watch on a symbolic
    link sees nothing), but the path hinted is under the configured name, as
    the scanner and the ledger spell it.
    """

    def __init__(self, emit: Emit, directory: Path):
        self._emit = emit
        self._directory = str(directory)

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        name = os.path.basename(os.fsdecode(event.dest_path or event.src_path))
        if is_candidate(name):
            self._emit(
                os.path.join(self._directory, name), CLOSED if event.event_type == _WRITER_DONE else EVENT
            )


# --------------------------------------------------------------------------- scanning
class Scanner:
    """Lists the raw directories and emits hints for files that need a look.

    ``full`` scans (start-up, rescans) stat every visible ``*.fits`` file within
    the look-back window and emit those whose fingerprint the ledger has not
    settled.  ``poll`` scans stat only names that can be new (not seen before,
    dated within the window, or undated) and emit those whose fingerprint changed
    since the last scan.  The look-back window keeps a fresh installation from
    delivering months of old files: a file counts as recent when its name's date
    or its mtime is within ``lookback_days`` (either, because azcam's date tag is
    fixed when its server starts and can be days old).
    """

    def __init__(
        self,
        dirs: Iterable[Path],
        *,
        lookback_days: int,
        emit: Emit,
        is_settled: Callable[[str, Fingerprint], bool],
        wall: Callable[[], float] = time.time,
    ):
        self.dirs = tuple(Path(d) for d in dirs)
        self.lookback = lookback_days * 86400.0
        self._emit = emit
        self._is_settled = is_settled
        self._wall = wall
        self._snapshot: dict[Path, dict[str, Fingerprint]] = {}  # per directory: path -> fp
        self._unreadable: set[Path] = set()

    def scan(self, source: str) -> int:
        """One pass over every raw directory; returns the number of hints emitted."""
        full = source != POLL
        cutoff = self._wall() - self.lookback
        cutoff_night = observing_night(cutoff)
        emitted = 0
        for directory in self.dirs:
            try:
                entries = list(os.scandir(directory))
            except OSError as exc:
                if directory not in self._unreadable:
                    log.error("cannot list raw directory %s: %s", directory, exc.strerror or exc)
                    self._unreadable.add(directory)
                continue
            if directory in self._unreadable:
                log.info("raw directory %s readable again", directory)
                self._unreadable.discard(directory)
            before = self._snapshot.get(directory, {})
            now_seen: dict[str, Fingerprint] = {}  # names gone from the directory drop out
            for entry in entries:
                if not is_candidate(entry.name):
                    continue
                path = entry.path
                known = before.get(path)
                if not full and known is not None and not _maybe_recent(entry.name, cutoff_night):
                    now_seen[path] = known
                    continue
                st = _entry_stat(entry, full)
                if st is None:
                    continue
                fp = now_seen[path] = Fingerprint.of(st)
                if full:
                    if not _recent(entry.name, st, cutoff, cutoff_night):
                        continue
                    if self._is_settled(path, fp):
                        continue
                elif fp == known or known is None and not _recent(entry.name, st, cutoff, cutoff_night):
                    continue
                self._emit(path, source)
                emitted += 1
            self._snapshot[directory] = now_seen
        return emitted


def _entry_stat(entry: os.DirEntry, full: bool) -> os.stat_result | None:
    """The attributes of a regular file or a symbolic link (never followed); None for others.

    A link is hinted with its own attributes so that the gate refuses and
    reports it (docs/service.md, "Symbolic links in a raw directory") and the
    ledger settles it; following it would read a file outside the raw directories.
    """
    try:
        if entry.is_symlink():
            return entry.stat(follow_symlinks=False)
        if not entry.is_file(follow_symlinks=False):
            return None
        # full scans run rarely and open each file (``fsutil.fresh_stat``: an NFS
        # client may answer a stat from a 30-minute cache, so a touch meant as a
        # replay would go unseen); the frequent polls keep the cheap stat: listing
        # a directory revalidates it, so new names appear promptly anyway
        return fresh_stat(entry.path) if full else entry.stat(follow_symlinks=False)
    except OSError:
        return None


def _maybe_recent(name: str, cutoff_night: str) -> bool:
    """Without a stat: could this name be a file of the look-back window?"""
    night = name_night(name)
    return night is None or night >= cutoff_night


def _recent(name: str, st: os.stat_result, cutoff: float, cutoff_night: str) -> bool:
    night = name_night(name)
    return st.st_mtime >= cutoff or (night is not None and night >= cutoff_night)


# --------------------------------------------------------------------------- detector
class Detector:
    """Observer plus scanner thread, supervised; everything becomes ``emit`` calls."""

    def __init__(
        self,
        dirs: Iterable[Path],
        *,
        method: str,
        poll_interval: float,
        rescan_interval: float,
        lookback_days: int,
        emit: Emit,
        is_settled: Callable[[str, Fingerprint], bool],
        on_startup_done: Callable[[], None] | None = None,
    ):
        self.dirs = tuple(Path(d) for d in dirs)
        self.method = method
        self._on_startup_done = on_startup_done
        self.poll_interval = poll_interval
        self.rescan_interval = rescan_interval
        self._emit = emit
        self.scanner = Scanner(self.dirs, lookback_days=lookback_days, emit=emit, is_settled=is_settled)
        self._observer: _RawDirObserver | None = None
        self._observer_lock = threading.Lock()
        self._observer_down_logged = False
        #: per raw directory, the (device, inode) its name led to when the watches
        #: were armed; None: not watched (missing, not a directory, refused)
        self._armed: dict[Path, tuple[int, int] | None] = {}
        self._watch_lost = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._rescan_reason: str | None = None
        self._thread = threading.Thread(target=self._run, name="modsingest-scan", daemon=True)
        self.startup_done = threading.Event()
        self.observer_restarts = 0

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Watch first, then scan: nothing written in between can be missed."""
        if self.method == "inotify":
            self._start_observer()
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        with self._observer_lock:
            observer, self._observer = self._observer, None
        if observer is not None:
            _stop_observer(observer, timeout)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def request_rescan(self, reason: str) -> None:
        """Scan every directory soon (from any thread)."""
        self._rescan_reason = reason
        self._wake.set()

    # ------------------------------------------------------------------ supervision
    def check(self) -> list[str]:
        """Called about once a second by the service: notice and restart dead threads,
        and re-arm the inotify watches when a raw directory is no longer the one watched.

        Returns what is wrong right now (empty when all is well).
        """
        problems = []
        if not self._thread.is_alive() and not self._stop.is_set():
            log.error("the scanner thread died; restarting it")
            self._thread = threading.Thread(target=self._run, name="modsingest-scan", daemon=True)
            self._thread.start()
            problems.append("scanner restarted")
        if self.method != "inotify" or self._stop.is_set():
            return problems
        with self._observer_lock:
            observer = self._observer
        reason = self._rearm_reason(observer)
        if reason is not None:
            if observer is not None and reason == _OBSERVER_DEAD:
                log.error("the inotify observer stopped working; restarting it and rescanning")
            elif observer is not None:
                log.warning("%s: watching the raw directories again and rescanning", reason)
            self._restart_observer(reason)
        if self._observer is None:
            problems.append("inotify observer down")
        problems += [f"{d}: not watched by inotify" for d in self.unwatched]
        return problems

    @property
    def unwatched(self) -> list[Path]:
        """Raw directories inotify does not watch now (rescans still list them)."""
        if self.method != "inotify":
            return []
        if self._observer is None:
            return list(self.dirs)
        return [d for d in self.dirs if self._armed.get(d) is None]

    def _rearm_reason(self, observer: _RawDirObserver | None) -> str | None:
        """Why the watches must be armed again, or None.

        A directory removed and made again, unmounted and mounted again, renamed
        away, or a symbolic link pointed elsewhere: its name leads to another
        (device, inode) than the one watched.  A watch the kernel dropped (the
        same directory unmounted and mounted again can come back with the same
        numbers) is reported by ``_RawDirWatch.on_lost``.
        """
        if observer is None:
            return _OBSERVER_DEAD
        if self._watch_lost.is_set():
            return "the kernel removed an inotify watch (a raw directory deleted or unmounted)"
        if not observer.healthy(sum(1 for ident in self._armed.values() if ident is not None)):
            return _OBSERVER_DEAD
        for directory in self.dirs:
            if _identity(directory) != self._armed.get(directory):
                return f"raw directory {directory} changed (made again, remounted or relinked)"
        return None

    def _restart_observer(self, reason: str) -> None:
        with self._observer_lock:
            observer, self._observer = self._observer, None
        if observer is not None:
            _stop_observer(observer, 2.0)
        if self._start_observer():
            self.observer_restarts += 1
            self.request_rescan(reason)

    def _start_observer(self) -> bool:
        """Arm a watch on every raw directory that is there; the others wait for ``check``.

        The watch is on the directory's resolved target: inotify on a symbolic
        link itself sees nothing of the files behind it.
        """
        self._watch_lost.clear()
        observer = _RawDirObserver(on_overflow=self._on_overflow, on_lost=self._on_lost)
        armed: dict[Path, tuple[int, int] | None] = {}
        try:
            for directory in self.dirs:
                armed[directory] = ident = _identity(directory)  # before the watch: a swap after it is seen
                if ident is None:
                    self._say_unwatched(directory, "missing or not a directory")
                    continue
                observer.schedule(
                    _Hinter(self._emit, directory), os.path.realpath(directory), recursive=False
                )
            observer.start()
        except OSError as exc:
            if not self._observer_down_logged:
                log.error("cannot watch the raw directories with inotify: %s (rescans go on)", exc)
                self._observer_down_logged = True
            _stop_observer(observer, 2.0)
            return False
        if self._observer_down_logged:
            log.info("inotify watches on the raw directories are back")
            self._observer_down_logged = False
        for directory, ident in armed.items():
            if ident is not None and self._armed.get(directory, ident) is None:
                log.info("raw directory %s is watched by inotify again", directory)
        with self._observer_lock:
            self._armed = armed
            self._observer = observer
        return True

    def _say_unwatched(self, directory: Path, why: str) -> None:
        if directory not in self._armed or self._armed[directory] is not None:  # once per loss
            log.error(
                "cannot watch raw directory %s with inotify: %s (rescans go on; watched again when it is back)",
                directory,
                why,
            )

    def _on_lost(self) -> None:
        if not self._stop.is_set():
            self._watch_lost.set()

    def _on_overflow(self) -> None:
        log.warning("inotify event queue overflowed: events were lost; rescanning")
        self.request_rescan("inotify queue overflow")

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    # ------------------------------------------------------------------ scanning thread
    def _run(self) -> None:
        if not self.startup_done.is_set():
            self._scan(STARTUP)
            self.startup_done.set()
            if self._on_startup_done is not None:
                self._on_startup_done()
        polling = self.method == "poll"
        next_rescan = time.monotonic() + self.rescan_interval
        next_poll = time.monotonic() + self.poll_interval
        while not self._stop.is_set():
            due = min(next_rescan, next_poll) if polling else next_rescan
            self._wake.wait(max(0.0, due - time.monotonic()))
            self._wake.clear()
            if self._stop.is_set():
                break
            now = time.monotonic()
            reason, self._rescan_reason = self._rescan_reason, None
            if reason is not None:
                log.info("rescanning the raw directories: %s", reason)
                self._scan(RECOVERY)
                next_rescan = now + self.rescan_interval
            elif now >= next_rescan:
                self._scan(RESCAN)
                next_rescan = now + self.rescan_interval
            if polling and now >= next_poll:
                self._scan(POLL)
                next_poll = now + self.poll_interval

    def _scan(self, source: str) -> None:
        try:
            found = self.scanner.scan(source)
        except Exception:  # never let one odd entry end detection
            log.exception("%s scan of the raw directories failed", source)
            return
        if found and source != POLL:
            log.info("%s scan: %d file(s) to look at", source, found)


#: why ``check`` restarts the observer when its threads died
_OBSERVER_DEAD = "the inotify observer stopped working"


def _identity(directory: Path) -> tuple[int, int] | None:
    """(device, inode) of what the directory's name leads to now (symbolic links
    followed); None when it is missing or not a directory."""
    try:
        st = os.stat(directory)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


def _stop_observer(observer: _RawDirObserver, timeout: float) -> None:
    try:
        observer.stop()
        if observer.is_alive():
            observer.join(timeout)
    except Exception as exc:  # stopping a broken observer must not break the service
        log.warning("stopping the inotify observer: %s", exc)


class Blindness:
    """Counts files that reached the queue without inotify seeing them.

    A file counts as *found by rescan* when periodic rescans were its only
    source.  In inotify mode, a new file (not from the start-up scan, not a
    replay) that reached the queue without a single inotify event is evidence
    that inotify is blind here (NFS written by another host): said once.
    """

    def __init__(self, method: str, rescan_interval: float):
        self.method = method
        self.rescan_interval = rescan_interval
        self.found_by_rescan = 0
        self.blind_since: float | None = None
        self.blind_example: str | None = None

    def note(self, path: str, sources: set[str]) -> bool:
        """Record how ``path`` was found; True when it was by a rescan only."""
        only_rescan = bool(sources) and sources <= {RESCAN}
        if only_rescan:
            self.found_by_rescan += 1
        if (
            self.method == "inotify"
            and self.blind_since is None
            and sources
            and not sources & {EVENT, CLOSED, STARTUP, REPLAY, RECOVERY}
        ):
            self.blind_since = time.time()
            self.blind_example = path
            log.warning(
                "inotify looks blind on %s: %s reached the queue without any inotify event "
                "(found by %s). On NFS, inotify sees only this host's writes; files are still "
                "found by rescans every %g s and by UDP requests (watch.method: poll would "
                "find them sooner).",
                os.path.dirname(path),
                os.path.basename(path),
                ", ".join(sorted(sources)),
                self.rescan_interval,
            )
        return only_rescan

    @property
    def blind(self) -> bool:
        return self.blind_since is not None
