"""Atomic delivery of a processed file and of the ``<CHAN>.new`` pointer.

Why this care: observers' tools open whatever appears in ``/newdata`` at once,
and read ``<CHAN>.new`` every 2 s and open the file it names.  The incumbent
wrote straight to final names and truncated ``.new`` before writing it, so
readers saw half files and empty pointers.  Here every file is written to a
hidden temporary name in its destination directory, fsynced, renamed over the
final name (atomic on POSIX within one file system) and the directory fsynced,
so a reader sees either the old complete file or the new complete file.

Order: processed copy, then newdata copy, then ``.new`` (which must only ever
name a file already in place).  A lock per output name keeps two writers (the
service and a manual ``process``) from publishing the same name at once, and a
lock per channel keeps ``.new`` naming the newest exposure when workers finish
out of order.

Temporary names, fsync, atomic replacement and locks are ``modsingest.fsutil``'s;
this module decides names, order and the pointer.  Importing it loads neither
astropy nor numpy (``read_primary`` and the writer threads import what they need
when they first run).
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from modsingest import fsutil, names
from modsingest.fits.scan import BLOCK

if TYPE_CHECKING:  # annotations only; see the module docstring
    from astropy.io import fits

log = logging.getLogger("modsingest.publish")

#: Start writing a destination's pages to disk once this much is waiting (see _Destination).
WRITEBACK_EVERY = 4 << 20


@dataclass(frozen=True)
class Identity:
    """What makes two files the same exposure (processing.md: same INSTRUME and DATE-OBS).

    The time of day is part of it: a raw DATE-OBS is only a date, and a file
    processed with the timestamps step off keeps it that way.
    """

    instrume: str
    date_obs: str
    time_obs: str

    @classmethod
    def of(cls, header: fits.Header) -> Identity:
        def text(key: str) -> str:
            return str(header.get(key, "")).strip()

        date_obs = text("DATE-OBS")
        time_obs = next((text(k) for k in ("UTC-OBS", "TIME-OBS", "UT") if text(k)), "")
        return cls(text("INSTRUME").upper(), date_obs, time_obs)

    def same_exposure(self, other: Identity) -> bool:
        if self.instrume != other.instrume:
            return False
        a, b = self.date_obs, other.date_obs
        if "T" in a and "T" in b:
            return a == b
        # one side date-only: compare date and the time-of-day cards
        return a.split("T")[0] == b.split("T")[0] and self.time_obs == other.time_obs


class NameRefused(ValueError):
    """The raw (or UNIQNAME) name cannot be published; nothing was written."""


@dataclass
class Delivery:
    name: str
    outputs: tuple[Path, ...]
    channel: str | None
    warnings: list[str] = field(default_factory=list)
    pointer_updated: bool = False
    #: size and SHA-256 of the delivered bytes, hashed while written (``digest.result()``)
    digest: FileDigest | None = None


# --------------------------------------------------------------------------- primitives
class FileDigest:
    """Size and SHA-256 of one destination's file, from the bytes as they are written.

    Why not hash the delivered file afterwards: reading 147 MB back and hashing
    it cost the worker 240-600 ms per full frame, after ``<CHAN>.new``.  Here a
    thread of its own hashes while the file is written, fsynced, renamed and
    pointed to, and while the optional extras run; ``result()`` then mostly
    finds it done.  Not the writer thread: hashing is slower than writing
    (about 250 MB/s on the loaded development VM), and a slow writer would hold
    back the whole stream, so ``.new`` would wait for the hash.

    The stream is hashed in order as long as it is final.  From MERGED's header
    on it is not: that header is a ``writer.Placeholder`` until the ``Patch``
    written after MERGED's data, and SHA-256 cannot take bytes out of order.  So
    the part from the placeholder to the end is hashed once the file is
    complete, read from the file being delivered (the newdata copy, whose pages
    are still in the page cache; its own descriptor, so a later replacement of
    the name cannot be read instead).  Keeping MERGED's bands until the patch
    instead would add ~100 MB to a worker's peak memory; rendering MERGED twice
    to know its checksum first would put the time on the observers' path.
    A ``Patch`` with no placeholder announced before it (another producer)
    restarts the hash from the file's start: slower, never wrong.

    The queue to the hashing thread is not bounded: it holds references to the
    chunks before the placeholder, which are the frame's own data blocks (alive
    until the file is processed anyway) and headers, not copies.
    """

    def __init__(self, directory: Path):
        #: the destination whose file is hashed (write_temps matches it)
        self.directory = directory
        self.size: int | None = None
        self.sha256: str | None = None
        self.error: BaseException | None = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"sha256-{directory}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def feed(self, chunk) -> None:
        """A chunk in file order, final (called by the writer thread, never blocks)."""
        self._queue.put(chunk)

    def finish(self, fd: int, start: int, end: int, reset: bool) -> None:
        """Hash ``fd``'s bytes ``start``..``end`` (after what was fed, or from scratch), then stop.

        Takes ownership of ``fd`` (closed when read).
        """
        self._queue.put(_Tail(fd, start, end, reset))

    def cancel(self) -> None:
        """The file is abandoned: stop without a result."""
        self._queue.put(None)

    def result(self) -> tuple[int, str] | None:
        """(size, SHA-256 hex) once hashed; None if the file was abandoned or could not be read."""
        if self._thread.ident is None:
            return None
        self._thread.join()
        if self.sha256 is None or self.size is None:
            return None
        return self.size, self.sha256

    def _run(self) -> None:
        import hashlib

        digest = hashlib.sha256()
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                if isinstance(item, _Tail):
                    try:
                        if item.reset:
                            digest = hashlib.sha256()
                        _hash_range(digest, item.fd, item.start, item.end)
                    finally:
                        os.close(item.fd)
                    self.size, self.sha256 = item.end, digest.hexdigest()
                    return
                digest.update(item)  # releases the GIL on large buffers
                item = None  # do not hold a chunk while waiting for the next
        except BaseException as exc:  # reported by result() as no digest
            self.error = exc
            log.warning("%s: SHA-256 of the delivered file not computed: %s", self.directory, exc)


@dataclass(frozen=True)
class _Tail:
    fd: int
    start: int
    end: int
    reset: bool


def _hash_range(digest, fd: int, start: int, end: int) -> None:
    """Feed ``fd``'s bytes ``start``..``end`` to ``digest``, 4 MB at a time."""
    buf = bytearray(min(4 << 20, max(end - start, 1)))
    view = memoryview(buf)
    at = start
    for _ in range((end - start) // len(buf) + 2):  # bounded: each turn reads > 0 bytes or stops
        if at >= end:
            return
        n = os.preadv(fd, [view[: min(len(buf), end - at)]], at)
        if n <= 0:
            raise OSError(f"file ends at {at}, {end - at} bytes short of what was written")
        digest.update(view[:n])
        at += n
    raise OSError(f"reading {start}..{end} did not finish")  # unreachable unless reads shrink


class _Destination(threading.Thread):
    """Writes a stream of chunks (and patches) to one temporary file, then fsyncs.

    One thread per destination: the processed disk and the newdata NFS mount
    are written at the same time, and while they write, the main thread is
    already rendering the next chunk (numpy and file writes release the GIL).
    The queue is short so memory stays bounded by a few chunks.

    Writeback is started as the file grows (``sync_file_range`` WRITE, which
    does not wait), every ``WRITEBACK_EVERY`` bytes.  Without it the kernel
    keeps the whole 150 MB dirty in memory while MERGED is rendered and only
    writes it in the final fsync, so disk time adds to CPU time; with it the
    disk works while the CPU renders, and the fsync only waits for the tail
    (measured on a full frame: about 250 ms of fsync down to under 100 ms).
    """

    def __init__(
        self, directory: Path, name: str, drop_cache: bool = False, digest: FileDigest | None = None
    ):
        super().__init__(name=f"write-{directory}", daemon=True)
        self.path, self.fd = fsutil.open_temp(directory, name)
        #: after the fsync, tell the kernel these pages are not needed (see run)
        self.drop_cache = drop_cache
        #: hashes what this thread writes (FileDigest), or None
        self.digest = digest
        self.queue: queue.Queue = queue.Queue(maxsize=4)
        self.error: BaseException | None = None

    def run(self) -> None:
        end = 0  # bytes written in sequence so far
        flushed = 0  # writeback started up to here
        digest = self.digest
        held_from: int | None = None  # the stream is not final from here on (FileDigest)
        try:
            from modsingest.fits.writer import Patch, Placeholder  # loaded wherever chunks are written

            while True:
                item = self.queue.get()
                if item is _DONE:
                    if digest is not None:  # hashing the rest overlaps the fsync
                        reader = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                        start = end if held_from is None else held_from
                        digest.finish(reader, start, end, reset=held_from == 0)
                        digest = None
                    os.fsync(self.fd)
                    if self.drop_cache:
                        fsutil.drop_cached_pages(self.fd)
                    return
                if isinstance(item, Patch):
                    os.pwrite(self.fd, item.data, item.offset)
                    if held_from is None:  # a patch nobody announced: hash it all again
                        held_from = 0
                else:
                    if digest is not None and held_from is None:
                        if isinstance(item, Placeholder):
                            held_from = end
                        else:
                            digest.feed(item)
                    fsutil.write_all(self.fd, [item])
                    end += len(memoryview(item).cast("B"))
                    if end - flushed >= WRITEBACK_EVERY:
                        fsutil.start_writeback(self.fd, flushed, end - flushed)
                        flushed = end
                item = None  # do not hold a chunk while waiting for the next
        except BaseException as exc:  # reported to the producer by finish()/put()
            self.error = exc
            if digest is not None:
                digest.cancel()
            # keep draining so the producer never blocks on a dead writer
            while self.queue.get() is not _DONE:
                pass

    def put(self, item) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(item)

    def finish(self) -> None:
        self.queue.put(_DONE)
        self.join()
        os.close(self.fd)
        if self.error is not None:
            raise self.error

    def abandon(self) -> None:
        """Stop and remove the temporary file (an error elsewhere)."""
        if self.is_alive():
            self.queue.put(_DONE)
            self.join()
        try:
            os.close(self.fd)
        except OSError:
            pass
        self.path.unlink(missing_ok=True)


_DONE = object()


def write_temps(
    directories: list[Path],
    name: str,
    items: Iterable,
    drop_cache: Iterable[Path] = (),
    digest: FileDigest | None = None,
) -> list[Path]:
    """Stream ``items`` into one hidden temporary file per directory, all fsynced.

    The pages of the copies in ``drop_cache`` directories leave the page cache
    once durable (``fsutil.drop_cached_pages``).  Why for the processed copy: it
    is the archive copy, which nobody reads soon, and a night writes tens of GB
    of them; cached, they would push out pages that are read right away (the raw
    files azcam is writing, the newdata copies the observers' tools open).  Freed
    at once, they are also what the next file's writes reuse (measured: about
    15 % more replay throughput with two workers on the development VM).

    ``digest`` (a ``FileDigest`` of one of the directories) gets the size and
    SHA-256 of that copy, computed while it is written; it may still be hashing
    when this returns (``FileDigest.result`` waits).

    Returns the temporary paths; on any error every temporary file is removed
    and the error raised.
    """
    writers: list[_Destination] = []
    dropped = set(drop_cache)
    if digest is not None and digest.directory not in directories:
        raise ValueError(f"digest of {digest.directory}, which is not among {directories}")
    try:
        for directory in directories:
            hashed = digest if digest is not None and directory == digest.directory else None
            writers.append(_Destination(directory, name, drop_cache=directory in dropped, digest=hashed))
        if digest is not None:
            digest.start()
        for w in writers:
            w.start()
        for item in items:
            for w in writers:
                w.put(item)
        for w in writers:
            w.finish()
    except BaseException:
        if digest is not None:
            digest.cancel()
        for w in writers:
            w.abandon()
        raise
    return [w.path for w in writers]


# --------------------------------------------------------------------------- decisions
def read_primary(path: Path) -> fits.Header | None:
    """The primary header of an existing file, or None if it cannot be read."""
    from astropy.io import fits

    try:
        with open(path, "rb") as fh:
            raw = b""
            while True:
                block = fh.read(BLOCK)
                if len(block) < BLOCK:
                    return None
                raw += block
                if any(block[i : i + 8] == b"END     " for i in range(0, BLOCK, 80)):
                    break
                if len(raw) > 100 * BLOCK:
                    return None
        return fits.Header.fromstring(raw.decode("ascii", "replace"))
    except (OSError, ValueError):
        return None


def night_of(name: str, header: fits.Header) -> str:
    """CCYYMMDD for the processed sub-directory: the name's date tag, else from DATE-OBS.

    Names with another root (``m1bTest.0001.fits``) carry no tag (``names``); the
    observing night of DATE-OBS is used for them, "undated" if it cannot be read.
    """
    tag = names.name_night(name)
    if tag:
        return tag
    from datetime import datetime

    text = str(header.get("DATE-OBS", "")).strip()
    time_text = str(header.get("UTC-OBS", header.get("TIME-OBS", "00:00:00"))).strip()
    try:
        if "T" in text:
            stamp = datetime.fromisoformat(text[:19])
        else:
            stamp = datetime.fromisoformat(f"{text}T{time_text[:8]}")
        return names.observing_night(stamp)
    except ValueError:
        return "undated"


def channel_of(name: str, header: fits.Header) -> str | None:
    """MODS1B..MODS2R from INSTRUME, else from the raw name (``names.channel_of_name``), else None."""
    return names.channel(header.get("INSTRUME")) or names.channel_of_name(name)


def choose_name(raw_name: str, header: fits.Header, destinations: list[Path]) -> tuple[str, list[str]]:
    """The name to deliver under: the raw name, unless a different exposure holds it.

    The same exposure again (a replay, a duplicate trigger) replaces the earlier
    delivery.  A different exposure under an existing name (azcam restarted and
    its counter began again) is delivered under UNIQNAME, with a warning.
    """
    mine = Identity.of(header)
    clash = None
    for directory in destinations:
        existing = directory / raw_name
        if not existing.exists():
            continue
        theirs = read_primary(existing)
        if theirs is None or not mine.same_exposure(Identity.of(theirs)):
            clash = existing
            break
    if clash is None:
        return raw_name, []
    unique = str(header.get("UNIQNAME", "")).strip()
    if not unique or unique == raw_name:
        stem = raw_name[:-5] if raw_name.endswith(".fits") else raw_name
        stamp = re.sub(r"[^0-9]", "", mine.date_obs + mine.time_obs)[:14] or "nodate"
        unique = f"{stem}.{stamp}.fits"
    final = unique
    n = 1
    while any((d / final).exists() and not _is_same(d / final, mine) for d in destinations):
        n += 1
        final = unique[:-5] + f".{n}.fits" if unique.endswith(".fits") else f"{unique}.{n}"
    warning = f"{clash} holds a different exposure; delivered as {final} instead of {raw_name}"
    return final, [warning]


def _is_same(path: Path, mine: Identity) -> bool:
    theirs = read_primary(path)
    return theirs is not None and mine.same_exposure(Identity.of(theirs))


def _pointer_is_newer(newdata: Path, pointer: Path, header: fits.Header) -> bool:
    """True when the file ``pointer`` names is a later exposure than ``header``'s.

    A replay of an old night must not send modsDisp back to old frames.
    """
    try:
        current = pointer.read_text().strip()
    except OSError:
        return False
    if not current:
        return False
    theirs = read_primary(newdata / current)
    if theirs is None:
        return False
    a = str(theirs.get("DATE-OBS", "")).strip()
    b = str(header.get("DATE-OBS", "")).strip()
    return "T" in a and "T" in b and a > b


# --------------------------------------------------------------------------- delivery
def deliver(
    raw_name: str,
    header: fits.Header,
    items: Iterable,
    newdata: Path,
    processed: Path,
    state: Path,
) -> Delivery:
    """Publish one processed file to processed/<night>/ and newdata/, then ``.new``.

    ``items`` are the writer's chunks and patches (``writer.Output.items()``),
    consumed once while both destinations are written.  A name that cannot be
    published (``names.unpublishable``) raises ``NameRefused`` before anything
    is written.
    """
    problem = names.unpublishable(raw_name)
    if problem is not None:
        raise NameRefused(problem)
    night_dir = processed / night_of(raw_name, header)
    fsutil.ensure_dir(night_dir)
    destinations = [night_dir, newdata]
    lock_dir = state / "locks"
    with fsutil.locked(lock_dir, f"name-{raw_name}"):
        name, warnings = choose_name(raw_name, header, destinations)
        problem = names.unpublishable(name)  # an UNIQNAME from the header
        if problem is not None:
            raise NameRefused(problem)
        # Both temporaries are complete and fsynced before either final name
        # appears, so a crash leaves either nothing new or the processed copy.
        # The newdata copy is the one hashed: the processed copy's pages leave
        # the cache, and the part after MERGED's placeholder is read back (FileDigest).
        digest = FileDigest(newdata)
        tmp_processed, tmp_newdata = write_temps(
            [night_dir, newdata], name, items, drop_cache=[night_dir], digest=digest
        )
        fsutil.commit(tmp_processed, night_dir / name)
        fsutil.commit(tmp_newdata, newdata / name)
    channel = channel_of(raw_name, header)
    delivery = Delivery(name=name, outputs=(night_dir / name, newdata / name), channel=channel, digest=digest)
    delivery.warnings += warnings
    if channel is None:
        delivery.warnings.append(
            f"no channel known (INSTRUME {header.get('INSTRUME')!r}); no <CHAN>.new updated"
        )
        return delivery
    pointer = newdata / f"{channel}.new"
    with fsutil.locked(lock_dir, f"pointer-{channel}"):
        if _pointer_is_newer(newdata, pointer, header):
            log.info("%s: %s names a later exposure; left as it is", name, pointer.name)
        else:
            fsutil.atomic_write(newdata, pointer.name, [f"{name}\n".encode("ascii")])
            delivery.pointer_updated = True
    return delivery
