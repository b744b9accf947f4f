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


# --------------------------------------------------------------------------- primitives
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

    def __init__(self, directory: Path, name: str, drop_cache: bool = False):
        super().__init__(name=f"write-{directory}", daemon=True)
        self.path, self.fd = fsutil.open_temp(directory, name)
        #: after the fsync, tell the kernel these pages are not needed (see run)
        self.drop_cache = drop_cache
        self.queue: queue.Queue = queue.Queue(maxsize=4)
        self.error: BaseException | None = None

    def run(self) -> None:
        end = 0  # bytes written in sequence so far
        flushed = 0  # writeback started up to here
        try:
            from modsingest.fits.writer import Patch  # loaded already wherever chunks are written

            while True:
                item = self.queue.get()
                if item is _DONE:
                    os.fsync(self.fd)
                    if self.drop_cache:
                        fsutil.drop_cached_pages(self.fd)
                    return
                if isinstance(item, Patch):
                    os.pwrite(self.fd, item.data, item.offset)
                else:
                    fsutil.write_all(self.fd, [item])
                    end += len(memoryview(item).cast("B"))
                    if end - flushed >= WRITEBACK_EVERY:
                        fsutil.start_writeback(self.fd, flushed, end - flushed)
                        flushed = end
                item = None  # do not hold a chunk while waiting for the next
        except BaseException as exc:  # reported to the producer by finish()/put()
            self.error = exc
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
    directories: list[Path], name: str, items: Iterable, drop_cache: Iterable[Path] = ()
) -> list[Path]:
    """Stream ``items`` into one hidden temporary file per directory, all fsynced.

    The pages of the copies in ``drop_cache`` directories leave the page cache
    once durable (``fsutil.drop_cached_pages``).  Why for the processed copy: it
    is the archive copy, which nobody reads soon, and a night writes tens of GB
    of them; cached, they would push out pages that are read right away (the raw
    files azcam is writing, the newdata copies the observers' tools open).  Freed
    at once, they are also what the next file's writes reuse (measured: about
    15 % more replay throughput with two workers on the development VM).

    Returns the temporary paths; on any error every temporary file is removed
    and the error raised.
    """
    writers: list[_Destination] = []
    dropped = set(drop_cache)
    try:
        for directory in directories:
            writers.append(_Destination(directory, name, drop_cache=directory in dropped))
        for w in writers:
            w.start()
        for item in items:
            for w in writers:
                w.put(item)
        for w in writers:
            w.finish()
    except BaseException:
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
        tmp_processed, tmp_newdata = write_temps([night_dir, newdata], name, items, drop_cache=[night_dir])
        fsutil.commit(tmp_processed, night_dir / name)
        fsutil.commit(tmp_newdata, newdata / name)
    channel = channel_of(raw_name, header)
    delivery = Delivery(name=name, outputs=(night_dir / name, newdata / name), channel=channel)
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
