"""File-system care (modsingest.fsutil): temporaries, atomic replacement, cleanup, locks, NFS revalidation."""

from __future__ import annotations

import fcntl
import os
import stat
import threading

import pytest

from modsingest import fsutil


def test_clean_stale_removes_only_our_temporaries(tmp_path):
    nd = tmp_path
    (nd / f".x.fits{fsutil.TEMP_MARK}.1.abcd").write_bytes(b"partial")
    (nd / ".other-hidden").write_bytes(b"keep")
    (nd / "x.fits").write_bytes(b"keep")
    (nd / f"visible{fsutil.TEMP_MARK}.1.abcd").write_bytes(b"keep")  # not hidden: not ours
    (nd / f".dir{fsutil.TEMP_MARK}").mkdir()  # not a file
    removed = fsutil.clean_stale(nd)
    assert [p.name for p in removed] == [f".x.fits{fsutil.TEMP_MARK}.1.abcd"]
    assert sorted(p.name for p in nd.iterdir()) == [
        ".dir.modsingest-tmp",
        ".other-hidden",
        "visible.modsingest-tmp.1.abcd",
        "x.fits",
    ]


def test_clean_stale_of_a_missing_directory_removes_nothing(tmp_path):
    assert fsutil.clean_stale(tmp_path / "not-mounted") == []


def test_write_all_survives_partial_writes(tmp_path, monkeypatch):
    real = os.writev

    def short(fd, views):  # the kernel may write less than asked
        return real(fd, [bytes(views[0])[: max(1, len(views[0]) // 2)]])

    monkeypatch.setattr(os, "writev", short)
    path = fsutil.atomic_write(tmp_path, "f", [b"abc", b"defgh", memoryview(b"ij")])
    assert path.read_bytes() == b"abcdefghij"


def test_atomic_write_replaces_with_mode_0644_whatever_the_umask(tmp_path):
    (tmp_path / "f").write_bytes(b"old")
    old = os.umask(0o077)
    try:
        path = fsutil.atomic_write(tmp_path, "f", [b"new"])
    finally:
        os.umask(old)
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


@pytest.mark.parametrize("durable", [True, False])
def test_atomic_write_fsyncs_file_and_directory_only_when_durable(tmp_path, monkeypatch, durable):
    synced = []
    real = os.fsync
    monkeypatch.setattr(
        os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd))[1]
    )
    fsutil.atomic_write(tmp_path, "f", [b"x"], durable=durable)
    if durable:
        assert len(synced) == 2
        assert fsutil.TEMP_MARK in synced[0] and synced[1] == str(tmp_path)
    else:
        assert synced == []


def test_a_failed_write_leaves_no_temporary(tmp_path, monkeypatch):
    def broken(fd, views):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "writev", broken)
    with pytest.raises(OSError, match="No space"):
        fsutil.atomic_write(tmp_path, "f", [b"x"])
    assert list(tmp_path.iterdir()) == []


def test_a_failed_rename_leaves_no_temporary(tmp_path):
    (tmp_path / "f").mkdir()  # a directory cannot be replaced by a file
    with pytest.raises(OSError):
        fsutil.atomic_write(tmp_path, "f", [b"x"])
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_temporary_names_are_hidden_marked_and_distinct(tmp_path):
    a, b = fsutil.temp_path(tmp_path, "x.fits"), fsutil.temp_path(tmp_path, "x.fits")
    assert a != b
    for p in (a, b):
        assert p.parent == tmp_path
        assert p.name.startswith(".x.fits" + fsutil.TEMP_MARK + f".{os.getpid()}.")


def test_ensure_dir_makes_parents_0755(tmp_path):
    target = tmp_path / "processed" / "20260102"
    old = os.umask(0o000)
    try:
        fsutil.ensure_dir(target)
    finally:
        os.umask(old)
    assert target.is_dir()
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    fsutil.ensure_dir(target)  # again: nothing to do


def test_locked_excludes_a_second_holder_until_released(tmp_path):
    order = []
    inside = threading.Event()
    release = threading.Event()

    def first():
        with fsutil.locked(tmp_path / "locks", "name-a/b c"):
            order.append("first in")
            inside.set()
            release.wait(5)
            order.append("first out")

    t = threading.Thread(target=first)
    t.start()
    assert inside.wait(5)
    (lock_file,) = (tmp_path / "locks").iterdir()
    assert lock_file.name == "name-a_b_c.lock"  # a key is never a path
    fd = os.open(lock_file, os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):  # held: another open file description cannot take it
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        release.set()
        t.join(5)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again
    finally:
        os.close(fd)
    assert order == ["first in", "first out"]


def test_start_writeback_is_a_hint_that_loses_nothing(tmp_path):
    path, fd = fsutil.open_temp(tmp_path, "f")
    try:
        fsutil.write_all(fd, [b"a" * 10000])
        fsutil.start_writeback(fd, 0, 10000)
        os.fsync(fd)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"a" * 10000
    assert fsutil.WRITEBACK_AVAILABLE  # Linux, where the service runs


def test_fresh_stat_opens_the_file_and_never_blocks_on_a_fifo(tmp_path):
    f = tmp_path / "mods1b.20260102.0001.fits"
    f.write_bytes(b"x" * 10)
    assert fsutil.fresh_stat(str(f)).st_size == 10
    fifo = tmp_path / "mods1b.20260102.0002.fits"
    os.mkfifo(fifo)
    assert fsutil.fresh_stat(fifo).st_size == 0  # returns at once: O_NONBLOCK
    with pytest.raises(FileNotFoundError):
        fsutil.fresh_stat(tmp_path / "gone.fits")


def test_fresh_stat_opens_rather_than_stats(tmp_path, monkeypatch):
    """The open is what makes an NFS client revalidate its cached attributes."""
    f = tmp_path / "a.fits"
    f.write_bytes(b"x")
    opened = []
    real = os.open
    monkeypatch.setattr(os, "open", lambda p, flags, *a: (opened.append(str(p)), real(p, flags, *a))[1])
    fsutil.fresh_stat(f)
    assert opened == [str(f)]


def test_fresh_stat_refuses_a_symbolic_link(tmp_path):
    target = tmp_path / "target.fits"
    target.write_bytes(b"x")
    link = tmp_path / "mods1b.20260102.0001.fits"
    link.symlink_to(target)
    with pytest.raises(OSError):
        fsutil.fresh_stat(str(link))
