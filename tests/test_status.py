"""``modsingest status``: counts, newest per channel, latency, problems, blindness."""

from __future__ import annotations

import argparse
import json
import os
import time

import pytest

from modsingest import config
from modsingest.commands import status as status_command
from modsingest.service import status
from modsingest.service.ledger import DELIVERED, FAILED, QUEUED, Fingerprint, Ledger, lock_service, path_of


@pytest.fixture
def settings(layout):
    return config.load(layout["config"])


def fill(state, now):
    """A night with deliveries on two channels, a failure, an incomplete file, a queue."""
    clock = [now - 1000.0]
    led = Ledger(state, clock=lambda: clock[0])
    raw = "/data"

    def add(name, state_, *, seen, done, fp=1, reason=None, channel=None):
        clock[0] = seen
        path = f"{raw}/{name}"
        rid = led.enqueue(path, Fingerprint(fp, fp, fp, fp), seen_at=seen, conpars=True, sources={"event"})
        if state_ == QUEUED:
            return rid
        led.claim(set(), 10, only={rid})
        clock[0] = done
        if state_ == DELIVERED:
            led.delivered(rid, name=name, outputs=[], channel=channel, warnings=[], seconds=0.3)
        elif state_ == FAILED:
            led.failed(rid, reason)
        return rid

    add("mods1b.20260102.0001.fits", DELIVERED, seen=now - 900, done=now - 898, channel="MODS1B")
    add("mods1b.20260102.0002.fits", DELIVERED, seen=now - 600, done=now - 596, channel="MODS1B")
    add("mods1r.20260102.0001.fits", DELIVERED, seen=now - 500, done=now - 499, channel="MODS1R")
    add(
        "mods1r.20260102.0002.fits",
        FAILED,
        seen=now - 400,
        done=now - 399,
        reason="/data/mods1r.20260102.0002.fits: cannot publish: No space left on device",
    )
    add("mods1b.20260101.0007.fits", DELIVERED, seen=now - 90000, done=now - 89990, channel="MODS1B")
    clock[0] = now - 100
    led.mark_incomplete(
        f"{raw}/mods1b.20260102.0003.fits",
        Fingerprint(0, 0, 0, 9),
        f"{raw}/mods1b.20260102.0003.fits: file is empty",
        seen_at=now - 110,
    )
    add("mods1b.20260102.0004.fits", QUEUED, seen=now - 30, done=0)
    led.close()


def test_never_ran(settings):
    report = status.gather(settings)
    assert report["service"]["running"] is False
    text = status.render(report)
    assert "NOT RUNNING" in text and "nothing recorded yet" in text
    assert not path_of(settings.paths.state).exists()  # status created nothing


def test_a_night_at_a_glance(settings):
    now = time.time()
    fill(settings.paths.state, now)
    report = status.gather(settings, night="20260102", now=now)
    assert report["counts"] == {
        "queued": 1,
        "processing": 0,
        "waiting": 0,
        "delivered": 3,
        "failed": 1,
        "incomplete": 1,
    }
    assert report["newest"]["MODS1B"]["name"] == "mods1b.20260102.0002.fits"
    assert report["newest"]["MODS1R"]["name"] == "mods1r.20260102.0001.fits"
    lat = report["latency"]
    assert lat["count"] == 3 and lat["median"] == pytest.approx(2) and lat["max"] == pytest.approx(4)
    assert [p["state"] for p in report["problems"]] == ["failed", "incomplete"]
    assert report["oldest_queued_age"] == pytest.approx(30, abs=1)
    text = status.render(report)
    assert "Night 20260102: 6 file(s): 1 queued, 3 delivered, 1 failed, 1 incomplete" in text
    assert "No space left on device" in text
    assert "INCOMPLETE mods1b.20260102.0003.fits" in text
    assert "file is empty" in text
    assert "MODS1B  mods1b.20260102.0002.fits" in text
    assert "median 2.0 s" in text
    assert "NOT RUNNING" in text


def test_default_is_the_last_24_hours(settings):
    """Not by date tag: azcam's tag can be days old when its server was not restarted."""
    now = time.time()
    fill(settings.paths.state, now)
    led = Ledger(settings.paths.state, clock=lambda: now - 3 * 86400)
    led.mark_incomplete(
        "/data/mods1b.20251230.0001.fits",
        Fingerprint(5, 5, 5, 5),
        "/data/mods1b.20251230.0001.fits: file is empty",
        seen_at=now - 3 * 86400,
    )
    led.close()
    report = status.gather(settings, now=now)
    assert report["counts"]["delivered"] == 3  # the one from 25 h ago is not counted
    assert report["older_problems"] == 1
    text = status.render(report)
    assert "Last 24 h: 6 file(s)" in text
    assert "and 1 older failed or incomplete file(s)" in text
    assert "mods1b.20251230.0001.fits" not in text


def test_running_service_and_blind_inotify(settings):
    state = settings.paths.state
    now = time.time()
    fill(state, now)
    led = Ledger(state)
    led.set_info(
        pid=os.getpid(),
        started=now - 7200,
        heartbeat=now - 1,
        method="inotify",
        workers=2,
        found_by_rescan=3,
        inotify_blind={
            "since": now - 3600,
            "example": "/data/mods1b.20260102.0002.fits",
            "rescan_interval": 60.0,
        },
        gate={"considering": 2, "waiting_for_conpars": 1, "incomplete": 0},
        unwatched=["/data/mods1r"],
    )
    led.close()
    fd = lock_service(state)
    try:
        report = status.gather(settings, now=now)
        text = status.render(report)
    finally:
        os.close(fd)
    assert report["service"]["state"] == "running"
    assert f"running, pid {os.getpid()}" in text
    assert "WARNING:  inotify looks blind" in text
    assert "rescans every 60 s" in text
    assert "3 file(s) found only by a rescan" in text
    assert "waiting for CONPARS: 1" in text
    assert "WARNING:  not watched by inotify (missing or unmounted; rescans go on): /data/mods1r" in text
    assert report["service"]["unwatched"] == ["/data/mods1r"]


def test_stale_heartbeat_is_a_problem(settings):
    state = settings.paths.state
    led = Ledger(state)
    led.set_info(pid=123, heartbeat=time.time() - 300)
    led.close()
    fd = lock_service(state)
    try:
        text = status.render(status.gather(settings))
    finally:
        os.close(fd)
    assert "PROBLEM: running (pid 123) but its last heartbeat was 5 min ago" in text


def test_json(settings, layout, capsys):
    fill(settings.paths.state, time.time())
    args = argparse.Namespace(config=str(layout["config"]), night="20260102", json=True, check=False)
    assert status_command.command(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["counts"]["delivered"] == 3
    assert data["problems"][0]["reason"].endswith("No space left on device")
    assert data["service"]["running"] is False
    assert data["check"]["level"] == 2 and data["check"]["line"].startswith(
        "MODSINGEST CRITICAL - service not running"
    )


def test_bad_config_is_exit_2(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("paths: {raw: [/nonexistent], newdata: /x, processed: /x, state: /y}\n")
    args = argparse.Namespace(config=str(cfg), night=None, json=False, check=False)
    assert status_command.command(args) == 2
    assert capsys.readouterr().err == (
        f"modsingest: {cfg}:1: paths.processed: /x is the same directory as paths.newdata: "
        "they are two separate copies\n"
    )
    args.check = True
    assert status_command.command(args) == 2
    assert capsys.readouterr().out.startswith(
        f"MODSINGEST CRITICAL - configuration: {cfg}:1: paths.processed"
    )


# --------------------------------------------------------------------------- during an outage (issue 10)
def run(layout, capsys, **kw):
    args = argparse.Namespace(config=str(layout["config"]), night=None, json=False, check=False)
    for k, v in kw.items():
        setattr(args, k, v)
    rc = status_command.command(args)
    return rc, capsys.readouterr()


def test_status_works_with_directories_missing_and_names_each(layout, capsys):
    cfg = layout["config"]
    layout["newdata"].rmdir()
    layout["raw"].rmdir()
    rc, out = run(layout, capsys)
    assert rc == 0 and out.err == ""
    assert (
        "DIRECTORY PROBLEMS (2):\n"
        f"  {cfg}:2: paths.raw[0]: directory {layout['raw']} does not exist\n"
        f"  {cfg}:3: paths.newdata: directory {layout['newdata']} does not exist\n"
    ) in out.out
    rc, out = run(layout, capsys, check=True)
    assert rc == 2
    assert out.out == (
        f"MODSINGEST CRITICAL - service never ran (no ledger yet); 2 directory problem(s): "
        f"paths.raw[0]: directory {layout['raw']} does not exist | delivered=0 failed=0 incomplete=0 queued=0 waiting=0 held=0\n"
    )


def outage(state, now):
    """A running service's ledger during a newdata outage: one delivered, two waiting, two held."""
    led = Ledger(state, clock=lambda: now - 600)
    rid = led.enqueue(
        "/data/mods1b.20260102.0317.fits", Fingerprint(1, 1, 1, 1), seen_at=now - 700, conpars=True
    )
    led.claim(set(), 1)
    led.delivered(
        rid,
        name="mods1b.20260102.0317.fits",
        outputs=[],
        channel="MODS1B",
        warnings=[],
        seconds=0.5,
        date_obs="2026-01-03T01:00:00.5",
    )
    for n, fp in ((338, 2), (339, 3)):
        rid = led.enqueue(
            f"/data/mods1b.20260102.0{n}.fits", Fingerprint(fp, fp, fp, fp), seen_at=now - 500, conpars=True
        )
        for _ in range(4):
            led.requeue(rid, "the next try")
            led.claim(set(), 1, only={rid})
            led.wait_for_destination(
                rid, f"/data/mods1b.20260102.0{n}.fits: cannot publish: No space left on device", now + 40
            )
    led.replace_held(
        [
            (
                "/data/mods1r.20260102.0340.fits",
                "incomplete",
                now - 120,
                "IM3 data cut short: needs 100 bytes, file has 50",
            ),
            ("/data/mods1r.20260102.0341.fits", "waiting for CONPARS", now - 4, None),
        ]
    )
    led.set_info(pid=os.getpid(), started=now - 7200, heartbeat=now - 1, method="poll", workers=2)
    led.close()


def test_status_shows_files_waiting_for_a_destination_and_what_the_gate_holds(settings, layout, capsys):
    now = time.time()
    outage(settings.paths.state, now)
    (layout["newdata"] / "MODS1B.new").write_text("mods1b.20260102.0317.fits\n")
    fd = lock_service(settings.paths.state)
    try:
        report = status.gather(settings, now=now)
        level, line = status.check(report)
    finally:
        os.close(fd)
    text = status.render(report)
    assert report["counts"]["waiting"] == 2
    assert [(w["name"], w["attempts"]) for w in report["waiting"]] == [
        ("mods1b.20260102.0338.fits", 4),
        ("mods1b.20260102.0339.fits", 4),
    ]
    assert (
        "WAITING FOR A DESTINATION (2): processed, not delivered; tried again until a destination takes them\n"
        f"  mods1b.20260102.0338.fits  since {status._utc(now - 600)} (10 min), 4 attempt(s), next try in 40 s\n"
        "             /data/mods1b.20260102.0338.fits: cannot publish: No space left on device\n"
    ) in text
    assert (
        "Held by the gate (2):\n"
        f"  INCOMPLETE           mods1r.20260102.0340.fits  since {status._utc(now - 120)} (2 min): "
        "IM3 data cut short: needs 100 bytes, file has 50\n"
        f"  WAITING FOR CONPARS  mods1r.20260102.0341.fits  since {status._utc(now - 4)} (4 s)\n"
    ) in text
    assert "Last 24 h: 1 file(s): 1 delivered; 2 waiting for a destination (above)" in text
    assert "Problems: none" not in text and "Failed or incomplete files: none" in text
    assert (
        "  MODS1B  mods1b.20260102.0317.fits  DATE-OBS 2026-01-03T01:00:00.5, delivered "
        f"{status._utc(now - 600)} (10 min ago)\n"
        "          MODS1B.new: mods1b.20260102.0317.fits (the same)"
    ) in text
    assert level == 2
    assert line == (
        "MODSINGEST CRITICAL - 2 file(s) waiting for a destination "
        "(/data/mods1b.20260102.0338.fits: cannot publish: No space left on device) "
        "| delivered=1 failed=0 incomplete=0 queued=0 waiting=2 held=2"
    )


def test_a_pointer_that_is_not_the_newest_exposure_is_pointed_out(settings, layout):
    now = time.time()
    outage(settings.paths.state, now)
    (layout["newdata"] / "MODS1B.new").write_text("mods1b.20260102.0300.fits\n")
    text = status.render(status.gather(settings, now=now))
    assert "          MODS1B.new: mods1b.20260102.0300.fits (NOT the newest exposure)" in text
    (layout["newdata"] / "MODS1B.new").unlink()
    text = status.render(status.gather(settings, now=now))
    assert "          MODS1B.new: cannot read: No such file or directory" in text


def test_check_levels(settings, layout, capsys):
    state = settings.paths.state
    now = time.time()
    fill(state, now)
    led = Ledger(state)
    led.set_info(pid=os.getpid(), started=now - 7200, heartbeat=time.time(), method="poll", workers=2)
    led.close()
    rc, out = run(layout, capsys, check=True)
    assert rc == 2 and out.out.startswith(
        "MODSINGEST CRITICAL - service not running; 1 failed; 1 incomplete | "
    )
    fd = lock_service(state)
    try:
        rc, out = run(layout, capsys, check=True)
        assert rc == 1
        assert out.out == (
            "MODSINGEST WARNING - 1 failed; 1 incomplete "
            "| delivered=3 failed=1 incomplete=1 queued=1 waiting=0 held=0\n"
        )
        rc, out = run(layout, capsys, check=True, night="20260103")
        assert (rc, out.out) == (
            0,
            "MODSINGEST OK - 0 delivered on night 20260103 | delivered=0 failed=0 incomplete=0 queued=0 waiting=0 held=0\n",
        )
    finally:
        os.close(fd)


def test_an_older_ledger_is_reported_not_migrated(settings, layout, capsys):
    import sqlite3

    db = sqlite3.connect(path_of(settings.paths.state))
    db.executescript("CREATE TABLE files (id INTEGER PRIMARY KEY); PRAGMA user_version=1;")
    db.close()
    rc, out = run(layout, capsys, check=True)
    assert rc == 2
    assert out.out.startswith(
        "MODSINGEST CRITICAL - service unknown (the ledger cannot be read); 1 directory problem(s): "
        f"cannot read the ledger: {path_of(settings.paths.state)}: ledger schema 1 is older than this modsingest"
    )
    db = sqlite3.connect(path_of(settings.paths.state))
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    db.close()


@pytest.mark.parametrize(
    "failed_first", [True, False], ids=["failed-then-rewritten", "rewritten-while-failing"]
)
def test_a_failure_whose_path_was_delivered_since_is_history_not_a_problem(
    settings, layout, capsys, failed_first
):
    """Cut short while read (FAILED), then written whole again and delivered: nothing to chase.

    Both orders the service can record it in: the failure before the gate sees the
    rewritten file, or the rewritten file queued while the worker was still failing.
    """
    now = time.time()
    clock = [now - 60.0]
    led = Ledger(settings.paths.state, clock=lambda: clock[0])
    path = "/data/mods1b.20260102.0002.fits"
    cut = led.enqueue(path, Fingerprint(662400, 1, 1, 7), seen_at=now - 60, conpars=True)
    led.claim(set(), 1)
    reason = f"{path}: IM2 data cut short: needs 334080 bytes, file has 331200"
    clock[0] = now - 50
    if failed_first:
        led.failed(cut, reason)
        assert led.current(path).state == FAILED  # an open problem until the file changes
    whole = led.enqueue(path, Fingerprint(662400, 2, 2, 7), seen_at=now - 49, conpars=True)
    if not failed_first:
        led.failed(cut, reason)
    assert [r.id for r in led.claim(set(), 1)] == [whole]
    clock[0] = now - 48
    led.delivered(
        whole, name="mods1b.20260102.0002.fits", outputs=[], channel="MODS1B", warnings=[], seconds=0.3
    )
    assert [(r.id, r.state, r.current) for r in led.rows(current_only=False)] == [
        (cut, FAILED, False),
        (whole, DELIVERED, True),
    ]
    led.set_info(pid=os.getpid(), started=now - 7200, heartbeat=time.time(), method="poll", workers=2)
    led.close()
    report = status.gather(settings, now=now)
    assert report["problems"] == [] and report["older_problems"] == 0
    assert report["counts"][FAILED] == 0 and report["counts"][DELIVERED] == 1
    assert "PROBLEMS" not in status.render(report)
    night = status.gather(settings, night="20260102", now=now)
    assert night["problems"] == [] and night["counts"][FAILED] == 0
    fd = lock_service(settings.paths.state)
    try:
        rc, out = run(layout, capsys, check=True)
    finally:
        os.close(fd)
    assert (rc, out.out) == (
        0,
        "MODSINGEST OK - 1 delivered in the last 24 h | delivered=1 failed=0 incomplete=0 queued=0 waiting=0 held=0\n",
    )
