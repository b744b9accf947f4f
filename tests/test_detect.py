"""Detection: inotify events that matter, polling, rescans, overflow, supervision."""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import time
from pathlib import Path

import pytest

from conftest import needed
from modsingest.names import observing_night
from modsingest.service import detect
from modsingest.service.ledger import Fingerprint

DAY = 86400.0


class Hints:
    def __init__(self):
        self.q: queue.Queue = queue.Queue()

    def __call__(self, path, source):
        self.q.put((path, source))

    def next(self, timeout=5.0):
        return self.q.get(timeout=timeout)

    def wait_for(self, path, timeout=5.0, source=None):
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no hint for {path}")
            try:
                p, s = self.q.get(timeout=remaining)
            except queue.Empty:
                raise AssertionError(f"no hint for {path}") from None
            if p == str(path) and (source is None or s == source):
                return s

    def drain(self, settle=0.3):
        """Everything hinted until nothing came for ``settle`` seconds."""
        got = []
        while True:
            try:
                got.append(self.q.get(timeout=settle))
            except queue.Empty:
                return got


@pytest.fixture
def raw(tmp_path):
    d = tmp_path / "mods1b"
    d.mkdir()
    return d


@pytest.fixture
def detector_factory(raw):
    made = []

    def make(method="inotify", dirs=None, settled=lambda p, fp: False, **kw):
        hints = Hints()
        det = detect.Detector(
            dirs or [raw],
            method=method,
            poll_interval=kw.pop("poll", 0.1),
            rescan_interval=kw.pop("rescan", 3600.0),
            lookback_days=kw.pop("lookback", 2),
            emit=hints,
            is_settled=settled,
        )
        det.start()
        assert det.startup_done.wait(5)
        made.append(det)
        return det, hints

    yield make
    for det in made:
        det.stop()


def test_start_up_scan_finds_files_written_while_down(raw, detector_factory):
    (raw / "mods1b.20260102.0001.fits").write_bytes(b"x")
    (raw / "m1bTest.0001.fits").write_bytes(b"x")
    (raw / "notes.txt").write_bytes(b"x")
    det, hints = detector_factory()
    got = sorted(hints.drain())
    assert got == sorted(
        [
            (str(raw / "m1bTest.0001.fits"), detect.STARTUP),
            (str(raw / "mods1b.20260102.0001.fits"), detect.STARTUP),
        ]
    )


def test_inotify_close_after_write(raw, detector_factory):
    det, hints = detector_factory()
    path = raw / "mods1b.20260102.0001.fits"
    with open(path, "wb") as fh:
        fh.write(b"x" * 10000)
        fh.flush()
        # writing (IN_MODIFY) is not an event we asked the kernel for
        assert hints.drain(0.3) == []
    assert hints.wait_for(path) == detect.CLOSED  # the writer is done: the gate's fast path


def test_inotify_moved_in_and_attribute_change(raw, tmp_path, detector_factory):
    outside = tmp_path / "elsewhere.fits"
    outside.write_bytes(b"x")
    det, hints = detector_factory()
    moved = raw / "mods1b.20260102.0002.fits"
    os.rename(outside, moved)
    # moved in: not a writer's close, so the gate waits for a stable fingerprint
    assert hints.wait_for(moved) == detect.EVENT
    within = raw / ".mods1b.20260102.0003.fits.tmp"  # astropy's second pass: a rename within
    within.write_bytes(b"y")
    hints.drain()
    final = raw / "mods1b.20260102.0003.fits"
    os.rename(within, final)
    assert hints.wait_for(final) == detect.EVENT
    hints.drain()
    os.utime(moved, (1, 1))  # replay by os.utime: only IN_ATTRIB, not a writer done
    assert hints.wait_for(moved) == detect.EVENT
    hints.drain()
    subprocess.run(["touch", "-c", str(moved)], check=True)
    assert hints.wait_for(moved) == detect.EVENT


def test_inotify_ignores_hidden_and_other_names(raw, detector_factory):
    det, hints = detector_factory()
    (raw / ".mods1b.x.fits.modsingest-tmp.1").write_bytes(b"x")
    (raw / "tmpab12cd34").write_bytes(b"x")
    (raw / "log.txt").write_bytes(b"x")
    marker = raw / "mods1b.20260102.0009.fits"
    marker.write_bytes(b"x")
    got = [p for p, _ in hints.drain(0.5)]
    assert got and set(got) == {str(marker)}


def test_queue_overflow_triggers_a_rescan(raw, detector_factory):
    path = raw / "mods1b.20260102.0003.fits"
    path.write_bytes(b"x")
    det, hints = detector_factory()
    hints.drain()
    (emitter,) = det._observer.emitters
    emitter._inotify.on_queue_overflow()  # what watchdog calls on IN_Q_OVERFLOW
    assert hints.wait_for(path) == detect.RECOVERY


def test_dead_observer_is_noticed_and_restarted(raw, detector_factory):
    det, hints = detector_factory()
    det._observer.stop()
    det._observer.join(5)
    assert det.check() == []
    assert det.observer_restarts == 1
    assert det._observer.healthy(1)
    path = raw / "mods1b.20260102.0004.fits"
    path.write_bytes(b"x")
    assert hints.wait_for(path, source=detect.CLOSED) == detect.CLOSED


def test_dead_emitter_is_noticed_and_restarted(raw, detector_factory):
    det, hints = detector_factory()
    (emitter,) = det._observer.emitters
    emitter.stop()
    emitter.join(5)
    det.check()
    assert det.observer_restarts == 1
    path = raw / "mods1b.20260102.0005.fits"
    path.write_bytes(b"x")
    assert hints.wait_for(path, source=detect.CLOSED) == detect.CLOSED


def test_watch_comes_back_when_a_directory_reappears(raw, detector_factory, caplog):
    det, hints = detector_factory()
    moved = raw.with_name("gone")
    raw.rename(moved)  # e.g. an NFS mount gone: the directory cannot be watched
    with caplog.at_level(logging.ERROR, logger="modsingest.detect"):
        det._observer.stop()
        det._observer.join(5)
        assert det.check() == [f"{raw}: not watched by inotify"]
        assert det.check() == [f"{raw}: not watched by inotify"]
    assert det.unwatched == [raw]
    assert len([r for r in caplog.records if "cannot watch" in r.message]) == 1  # said once
    moved.rename(raw)
    assert det.check() == []
    path = raw / "mods1b.20260102.0006.fits"
    path.write_bytes(b"x")
    assert hints.wait_for(path, source=detect.CLOSED) == detect.CLOSED


def test_periodic_rescan_in_inotify_mode_finds_unseen_files(raw, detector_factory):
    """Files written by another NFS client produce no event: the rescan finds them."""
    det, hints = detector_factory(rescan=0.3)
    det._observer.stop()  # blind, like NFS written elsewhere (and not restarted: no check())
    det._observer.join(5)
    path = raw / "mods1b.20260102.0007.fits"
    path.write_bytes(b"x")
    assert hints.wait_for(path, timeout=5) == detect.RESCAN


def test_poll_mode_sees_new_and_changed_files(raw, detector_factory):
    det, hints = detector_factory("poll", poll=0.05)
    assert det._observer is None
    path = raw / f"mods1b.{observing_night(time.time())}.0008.fits"
    path.write_bytes(b"x")
    assert hints.wait_for(path) == detect.POLL
    assert hints.drain(0.3) == []  # unchanged: no more hints
    os.utime(path, (5, 5))  # a replay seen by polling
    assert hints.wait_for(path) == detect.POLL


def test_poll_mode_leaves_old_dated_files_to_the_rescan(raw, detector_factory):
    """Polling stats only names that can be new; a touched old file waits for a rescan."""
    path = raw / "mods1b.20200101.0001.fits"
    path.write_bytes(b"x")
    os.utime(path, (time.time() - 30 * DAY,) * 2)
    det, hints = detector_factory("poll", poll=0.05, rescan=1.0)
    assert hints.drain(0.2) == []  # outside the look-back window
    os.utime(path, None)  # now recent by its mtime
    assert hints.wait_for(path, timeout=5) == detect.RESCAN


# --------------------------------------------------------------------------- the scanner itself
def scanner(raw, settled=lambda p, fp: False, now=None):
    hints = Hints()
    sc = detect.Scanner(
        [raw], lookback_days=2, emit=hints, is_settled=settled, wall=(lambda: now) if now else time.time
    )
    return sc, hints


def test_full_scan_skips_settled_files(raw):
    a = raw / "mods1b.20260102.0001.fits"
    b = raw / "mods1b.20260102.0002.fits"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    done = {str(a): Fingerprint.of(os.stat(a))}
    sc, hints = scanner(raw, settled=lambda p, fp: done.get(p) == fp)
    assert sc.scan(detect.RESCAN) == 1
    assert hints.drain(0.05) == [(str(b), detect.RESCAN)]


def test_lookback_keeps_old_files_out(raw):
    now = time.time()
    old = now - 10 * DAY
    old_night = observing_night(old)
    recent_night = observing_night(now)
    files = {
        f"mods1b.{old_night}.0001.fits": old,  # old name, old mtime: history
        f"mods1b.{old_night}.0002.fits": now,  # stale azcam date tag, new file
        f"mods1b.{recent_night}.0003.fits": old,  # recent name (copied with -p)
        "m1bTest.0001.fits": old,  # undated, old
        "m1bTest.0002.fits": now,  # undated, new
    }
    for name, when in files.items():
        (raw / name).write_bytes(b"x")
        os.utime(raw / name, (when, when))
    sc, hints = scanner(raw)
    sc.scan(detect.STARTUP)
    got = sorted(Path(p).name for p, _ in hints.drain(0.05))
    assert got == sorted(
        [f"mods1b.{old_night}.0002.fits", f"mods1b.{recent_night}.0003.fits", "m1bTest.0002.fits"]
    )
    # polling: a new file with an old-looking name but a fresh mtime is found too
    fresh = raw / f"mods1b.{old_night}.0004.fits"
    fresh.write_bytes(b"x")
    sc.scan(detect.POLL)
    assert hints.drain(0.05) == [(str(fresh), detect.POLL)]


def test_unreadable_directory_is_reported_once(tmp_path, caplog):
    missing = tmp_path / "not-mounted"
    sc, hints = scanner(missing)
    with caplog.at_level(logging.ERROR, logger="modsingest.detect"):
        assert sc.scan(detect.RESCAN) == 0
        assert sc.scan(detect.RESCAN) == 0
    assert len([r for r in caplog.records if "cannot list" in r.message]) == 1


# --------------------------------------------------------------------------- blindness
def test_blindness_is_said_once_and_rescan_finds_counted(caplog):
    b = detect.Blindness("inotify", 60.0)
    with caplog.at_level(logging.WARNING, logger="modsingest.detect"):
        assert not b.note("/r/a.fits", {detect.EVENT})
        assert not b.note("/r/b.fits", {detect.STARTUP})
        assert not b.blind
        assert b.note("/r/c.fits", {detect.RESCAN})
        assert b.blind and b.blind_example == "/r/c.fits"
        assert b.note("/r/d.fits", {detect.RESCAN})
        assert not b.note("/r/e.fits", {detect.UDP})
    assert b.found_by_rescan == 2
    warnings = [r for r in caplog.records if "inotify looks blind" in r.message]
    assert len(warnings) == 1


def test_udp_only_files_mean_blind_and_poll_mode_is_never_blind():
    b = detect.Blindness("inotify", 60.0)
    b.note("/r/a.fits", {detect.UDP})
    assert b.blind
    p = detect.Blindness("poll", 60.0)
    p.note("/r/a.fits", {detect.POLL})
    p.note("/r/b.fits", {detect.RESCAN})
    assert not p.blind and p.found_by_rescan == 1


def test_a_symbolic_link_is_hinted_with_its_own_attributes_never_followed(raw, tmp_path):
    """The gate refuses and reports it; the ledger settles it by the link's fingerprint."""
    outside = tmp_path / "secret.fits"
    outside.write_bytes(b"x" * 100)
    link = raw / "mods1b.20260102.0001.fits"
    link.symlink_to(outside)
    (raw / "mods1b.20260102.0002.fits").symlink_to(tmp_path / "dangling.fits")
    asked = []
    sc, hints = scanner(raw, settled=lambda p, fp: asked.append((p, fp)) or False)
    assert sc.scan(detect.RESCAN) == 2
    assert (str(link), Fingerprint.of(os.lstat(link))) in asked
    assert sorted(p for p, _ in hints.drain(0.05)) == sorted(str(p) for p in raw.iterdir())
    assert sc.scan(detect.POLL) == 0  # unchanged links: no new hints
    sc2, hints2 = scanner(raw, settled=lambda p, fp: fp == Fingerprint.of(os.lstat(p)))
    assert sc2.scan(detect.RESCAN) == 0  # reported once (the ledger has the link's fingerprint)


# --------------------------------------------------------------------------- re-arming the watches
def _write_and_expect(hints, path, source=detect.CLOSED):
    path.write_bytes(b"x")
    assert hints.wait_for(path, source=source) == source


def test_a_directory_removed_and_made_again_is_watched_again(raw, detector_factory):
    det, hints = detector_factory()
    raw.rmdir()
    raw.mkdir()
    early = raw / "mods1b.20260102.0010.fits"
    early.write_bytes(b"x")  # before the re-arm: no watch sees it
    # The new directory may get the old inode number back: then it is the kernel's
    # IN_IGNORED (or the emitter ending on IN_DELETE_SELF) that says so, a moment later;
    # the service checks every second.
    deadline = time.monotonic() + 5
    while det.observer_restarts == 0 and time.monotonic() < deadline:
        det.check()
        time.sleep(0.02)
    assert det.observer_restarts == 1 and det.unwatched == []
    assert hints.wait_for(early, source=detect.RECOVERY) == detect.RECOVERY  # the rescan after re-arming
    _write_and_expect(hints, raw / "mods1b.20260102.0011.fits")


def test_a_directory_renamed_away_and_made_again_is_watched_again(raw, detector_factory, caplog):
    det, hints = detector_factory()
    raw.rename(raw.with_name("old"))  # the watch follows the old inode: no event ever says so
    raw.mkdir()
    with caplog.at_level(logging.WARNING, logger="modsingest.detect"):
        assert det.check() == []
        assert det.check() == []  # re-armed once
    assert [r.message for r in caplog.records] == [
        f"raw directory {raw} changed (made again, remounted or relinked): "
        "watching the raw directories again and rescanning"
    ]
    _write_and_expect(hints, raw / "mods1b.20260102.0012.fits")


def test_a_symlinked_raw_directory_is_watched_through_its_target(tmp_path, detector_factory):
    target = tmp_path / "mount" / "mods1b"
    target.mkdir(parents=True)
    link = tmp_path / "mods1b-link"
    link.symlink_to(target)
    det, hints = detector_factory(dirs=[link])
    (target / "mods1b.20260102.0013.fits").write_bytes(b"x")
    # hinted under the configured name, as the scanner and the ledger spell it
    assert hints.wait_for(link / "mods1b.20260102.0013.fits") == detect.CLOSED
    other = tmp_path / "mount2"
    other.mkdir()
    link.unlink()
    link.symlink_to(other)  # the link pointed elsewhere: the watch follows on the next check
    det.check()
    assert det.observer_restarts == 1
    (other / "mods1b.20260102.0014.fits").write_bytes(b"x")
    assert hints.wait_for(link / "mods1b.20260102.0014.fits", source=detect.CLOSED) == detect.CLOSED


def test_one_missing_directory_does_not_blind_the_others(tmp_path, detector_factory):
    here = tmp_path / "mods1r"
    here.mkdir()
    missing = tmp_path / "mods2b"
    det, hints = detector_factory(dirs=[missing, here])
    assert det.unwatched == [missing]
    _write_and_expect(hints, here / "mods1r.20260102.0001.fits")
    missing.mkdir()
    det.check()
    assert det.unwatched == []
    _write_and_expect(hints, missing / "mods2b.20260102.0001.fits")


def test_a_directory_mounted_over_and_unmounted_is_watched_again(raw, tmp_path, detector_factory):
    """A bind mount, then a file system of its own (tmpfs), stand for the NFS mount
    coming and going under a running service."""
    if os.geteuid() != 0:
        needed("root (mounting needs it)", "run the tests as root, as CI does")
    other = tmp_path / "export"
    other.mkdir()
    det, hints = detector_factory()
    subprocess.run(["mount", "--bind", str(other), str(raw)], check=True)
    try:
        det.check()  # a new device/inode behind the name: re-armed
        assert det.observer_restarts == 1
        _write_and_expect(hints, raw / "mods1b.20260102.0020.fits")
    finally:
        subprocess.run(["umount", "-l", str(raw)], check=True)
    det.check()  # the bind mount's inode lives on elsewhere: only the name says it changed
    assert det.observer_restarts == 2
    _write_and_expect(hints, raw / "mods1b.20260102.0021.fits")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(raw)], check=True)
    try:
        det.check()
        assert det.observer_restarts == 3
        _write_and_expect(hints, raw / "mods1b.20260102.0022.fits")
    finally:
        subprocess.run(["umount", "-l", str(raw)], check=True)
    # its file system gone, the kernel drops the watch (IN_UNMOUNT, IN_IGNORED): said at once
    deadline = time.monotonic() + 5
    while not det._watch_lost.is_set() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert det._watch_lost.is_set()
    det.check()
    assert det.observer_restarts == 4 and not det._watch_lost.is_set()
    _write_and_expect(hints, raw / "mods1b.20260102.0023.fits")
