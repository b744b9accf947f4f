"""File-system care: temporary names, fsync, atomic replacement, stale temporaries, locks.

Why one home: readers (observers' tools, node_exporter) open whatever appears
under a final name at once, so every file this agent writes is written under a
hidden temporary name in its destination directory, made durable, renamed over
the final name (atomic on POSIX within one file system) and the directory made
durable, so a reader sees either the old complete file or the new complete one.
A crash between write and rename leaves a hidden temporary that carries
``TEMP_MARK``; ``clean_stale`` removes those at start-up.

Also here: the NFS revalidation every look at a raw file's attributes needs
(``fresh_stat``) and the kernel hints the writers give (``start_writeback``,
``drop_cached_pages``).  The service's main process imports this module, so it
uses the standard library only.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("modsingest.publish")

#: part of every temporary name this agent makes, so a leftover is recognised as ours
TEMP_MARK = ".modsingest-tmp"
#: files are readable by everyone whatever the umask (node_exporter, observers' tools)
FILE_MODE = 0o644
#: directories 0755, never world-writable like the incumbent's 0777
DIR_MODE = 0o755
#: os.writev takes at most this many buffers at once (Linux IOV_MAX)
_IOV_MAX = 512
_SYNC_FILE_RANGE_WRITE = 2


# --------------------------------------------------------------------------- NFS
def fresh_stat(path: str | os.PathLike) -> os.stat_result:
    """The file's attributes as the server has them now, not as the NFS client cached them.

    The raw mounts use ``actimeo=1800``: a plain ``stat`` may answer from a cache
    up to 30 minutes old, so a ``touch`` meant as a replay would go unseen.  An
    ``open`` forces the client to revalidate (close-to-open consistency).
    Non-blocking, so a FIFO cannot hang the caller; a symbolic link is not followed
    (``ELOOP``): raw files are never links, and one swapped in must not lead outside
    the raw directories.  Raises ``OSError``.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- durability
def fsync_dir(directory: str | os.PathLike) -> None:
    """Make the directory's entries (a new name, a rename) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike) -> None:
    """Make a file's content durable (flushes its dirty pages)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(directory: Path) -> None:
    """Create ``directory`` with ``DIR_MODE`` (and its parents) and make its name durable."""
    if directory.is_dir():
        return
    directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(directory, DIR_MODE)
    fsync_dir(directory.parent)


def _writeback_call():
    """libc's ``sync_file_range``, or None.

    Python's ``os`` has no binding for it; ctypes releases the GIL during the call.
    """
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_sync_file_range = _writeback_call()
#: whether ``start_writeback`` does anything here (Linux: yes)
WRITEBACK_AVAILABLE = _sync_file_range is not None


def start_writeback(fd: int, offset: int, nbytes: int) -> None:
    """Ask the kernel to start writing a byte range to disk now, without waiting.

    ``sync_file_range(SYNC_FILE_RANGE_WRITE)``: a hint only, so a big file's pages
    go to disk while the rest is still being produced and the final fsync waits
    only for the tail.  Errors surface in that fsync.  A no-op where the call is
    missing (not Linux): the final fsync then does all the work.
    """
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, nbytes, _SYNC_FILE_RANGE_WRITE)


def drop_cached_pages(fd: int) -> None:
    """Let the kernel drop a durable file's pages from the page cache (a hint).

    Only after an fsync: the pages are clean then, so dropping them costs nothing
    and loses nothing.  Where the call is unsupported only the cache is affected.
    """
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except (OSError, AttributeError):
        pass


# --------------------------------------------------------------------------- temporaries
def temp_path(directory: Path, name: str) -> Path:
    """A new hidden temporary name for ``name`` in ``directory``, unique to this process and call."""
    return directory / f".{name}{TEMP_MARK}.{os.getpid()}.{secrets.token_hex(4)}"


def open_temp(directory: Path, name: str) -> tuple[Path, int]:
    """Create a new hidden temporary file in ``directory`` (``FILE_MODE`` whatever the umask).

    Returns its path and a descriptor open for writing.
    """
    path = temp_path(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return path, fd


def write_all(fd: int, chunks: Iterable) -> None:
    """Write every buffer of ``chunks`` in order, however little each ``writev`` takes."""
    views = [memoryview(c).cast("B") for c in chunks if len(c)]
    while views:
        batch = views[:_IOV_MAX]
        written = os.writev(fd, batch)
        # drop what was fully written, trim a partly written view
        while written and views:
            head = views[0]
            if written >= len(head):
                written -= len(head)
                views.pop(0)
            else:
                views[0] = head[written:]
                written = 0


def write_temp(directory: Path, name: str, chunks: Iterable, *, durable: bool = True) -> Path:
    """Write ``chunks`` to a hidden temporary file in ``directory`` (fsynced if ``durable``).

    On any error the temporary file is removed and the error raised.
    """
    tmp, fd = open_temp(directory, name)
    try:
        write_all(fd, chunks)
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return tmp


def commit(tmp: Path, final: Path, *, durable: bool = True) -> None:
    """Rename the temporary file over the final name, then (if ``durable``) make the rename durable."""
    os.replace(tmp, final)
    if durable:
        fsync_dir(final.parent)


def atomic_write(directory: Path, name: str, chunks: Iterable, *, durable: bool = True) -> Path:
    """Replace ``directory/name`` with ``chunks`` so that no reader sees a partial file.

    ``durable=False`` skips both fsyncs: for a file that is rewritten often and
    whose loss in a power cut costs nothing (the metrics text file).  The
    temporary file is removed if anything fails.
    """
    final = directory / name
    tmp = write_temp(directory, name, chunks, durable=durable)
    try:
        commit(tmp, final, durable=durable)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def clean_stale(directory: Path, pid: int | None = None) -> list[Path]:
    """Remove this agent's leftover temporary files in ``directory`` (a crash between write and rename).

    Only hidden regular files (not symlinks) carrying ``TEMP_MARK`` are touched,
    and with ``pid`` only those process ``pid`` made (``temp_path`` puts the pid
    right after the mark): a dead worker's, while live ones go on writing.  An
    unreadable directory removes nothing.  Returns what was removed.
    """
    mark = TEMP_MARK if pid is None else f"{TEMP_MARK}.{pid}."
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        if entry.name.startswith(".") and mark in entry.name and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cannot remove stale temporary file %s: %s", entry.path, exc)
    return removed


# --------------------------------------------------------------------------- locks
@contextmanager
def locked(lock_dir: Path, key: str) -> Iterator[None]:
    """Hold an exclusive advisory lock named ``key`` under ``lock_dir`` (waits for it).

    Between processes (``flock``): the service's workers and a manual ``process``
    publishing the same name take the same lock file.
    """
    lock_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", key)
    fd = os.open(lock_dir / f"{safe}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
