"""``modsingest replay``: a night or files again, with and without a running service."""

from __future__ import annotations

import subprocess
import sys

import pytest

from modsingest import config
from modsingest import sim as simulate
from modsingest.service import replay
from modsingest.service.ledger import DELIVERED, Fingerprint, Ledger, service_running
from servicekit import Agent, write_config

NIGHT = "20260102"


def raw_file(directory, seq, channel="mods1b", **kw):
    spec = simulate.ExposureSpec(channel=channel, seq=seq, roi="1k", date=NIGHT, **kw)
    return simulate.write(spec, directory, two_pass=False)


def run_replay(cfg, *args):
    return subprocess.run(
        [sys.executable, "-m", "modsingest.cli", "replay", "--config", str(cfg), *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture
def site(tmp_path):
    cfg = write_config(tmp_path, "poll", workers=2)
    return tmp_path, cfg, config.load(cfg)


def delivered(settings):
    led = Ledger(settings.paths.state)
    try:
        return [r for r in led.rows(current_only=False) if r.state == DELIVERED]
    finally:
        led.close()


def test_select_by_night_and_by_name(site):
    root, cfg, settings = site
    raw = root / "raw" / "mods1b"
    a = raw_file(raw, 1)
    b = raw_file(root / "raw" / "mods1r", 1, channel="mods1r")
    (raw / "mods1b.20260103.0001.fits").write_bytes(b"other night")
    (raw / ".hidden.fits").write_bytes(b"x")
    odd = raw / "m1bTest.0001.fits"
    odd.write_bytes(b"x")
    paths, missing = replay.select(settings, NIGHT, [])
    assert paths == [a, b] and missing == []
    # a file with another root belongs to the night the ledger gave it
    led = Ledger(settings.paths.state)
    seen = 1767369600.0  # 2026-01-02T16:00Z, observing night 20260102
    led.mark_incomplete(odd, Fingerprint(1, 1, 1, 1), "x", seen_at=seen)
    led.close()
    paths, _ = replay.select(settings, NIGHT, [])
    assert odd in paths
    paths, missing = replay.select(settings, None, [a.name, str(b), "nosuch.fits", "/etc/passwd"])
    assert paths == [a, b]
    assert len(missing) == 2


def test_replay_without_service_delivers_and_redelivers(site):
    root, cfg, settings = site
    files = [raw_file(root / "raw" / "mods1b", i) for i in (1, 2, 3)]
    dry = run_replay(cfg, "--night", NIGHT, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would process 3 file(s) again" in dry.stdout
    assert list((root / "newdata").iterdir()) == []  # a dry run does nothing
    first = run_replay(cfg, "--night", NIGHT)
    assert first.returncode == 0, first.stderr
    assert "replay: 3 of 3 file(s) delivered" in first.stdout
    assert sorted(p.name for p in (root / "newdata").glob("*.fits")) == [f.name for f in files]
    rows = delivered(settings)
    assert sorted(r.path for r in rows) == sorted(map(str, files))
    before = {r.path: r.finished_at for r in rows}
    # again: the same content is processed again on request (one row per fingerprint)
    second = run_replay(cfg, files[0].name)
    assert second.returncode == 0, second.stderr
    after = {r.path: r for r in delivered(settings)}
    assert after[str(files[0])].finished_at > before[str(files[0])]
    assert after[str(files[1])].finished_at == before[str(files[1])]
    assert not service_running(settings.paths.state)  # the lock was given back


def test_replay_reports_incomplete_and_missing_files(site):
    root, cfg, settings = site
    raw = root / "raw" / "mods1b"
    good = raw_file(raw, 1)
    bad = raw / f"mods1b.{NIGHT}.0002.fits"
    bad.write_bytes(good.read_bytes()[:10000])
    out = run_replay(cfg, good.name, bad.name, "nosuch.fits")
    assert out.returncode == 1
    assert "nosuch.fits: not a file in a configured raw directory" in out.stderr
    assert "skipped, not complete" in out.stderr and bad.name in out.stderr
    assert [r.path for r in delivered(settings)] == [str(good)]


def test_usage_errors(site):
    root, cfg, settings = site
    assert run_replay(cfg).returncode == 2
    assert run_replay(cfg, "--night", "2026-01-02").returncode == 2
    assert run_replay(cfg, "--night", NIGHT, "x.fits").returncode == 2


def test_replay_goes_through_a_running_service(tmp_path):
    agent = Agent(tmp_path, "poll", workers=1)
    try:
        agent.start()
        path = simulate.write(simulate.ExposureSpec(channel="mods1b", seq=1, roi="1k"), agent.raw["mods1b"])
        first = agent.wait_delivered(1)[0]
        out = run_replay(agent.config, str(path))
        assert out.returncode == 0, out.stdout + out.stderr
        assert "asked the running service" in out.stderr
        assert "replay: 1 of 1 file(s) delivered" in out.stdout
        row = agent.current(path)
        assert row.id == first.id and row.state == DELIVERED
        assert row.finished_at > first.finished_at
        assert "replay" in row.sources
        assert agent.delivered_lines() == [path.name, path.name]  # by the service itself
        assert agent.stop() < 30
    finally:
        agent.close()


def test_replay_works_while_a_raw_directory_is_away_and_names_what_it_cannot_reach(site):
    """Issue 10: an NFS raw mount gone must not stop replaying the other channel."""
    root, cfg, settings = site
    blue = raw_file(root / "raw" / "mods1b", 1)
    red = raw_file(root / "raw" / "mods1r", 1, channel="mods1r")
    led = Ledger(settings.paths.state)  # the service had seen the red file
    rid = led.enqueue(red, Fingerprint(1, 1, 1, 1), seen_at=1767369600.0, conpars=True)
    led.claim(set(), 1)
    led.delivered(rid, name=red.name, outputs=[], channel="MODS1R", warnings=[], seconds=0.1)
    led.close()
    away = root / "raw" / "mods1r-away"
    (root / "raw" / "mods1r").rename(away)
    red_dir = root / "raw" / "mods1r"
    out = run_replay(cfg, "--night", NIGHT)
    assert out.returncode == 1, out.stderr
    err = out.stderr.splitlines()
    assert (
        f"modsingest replay: {red_dir}: raw directory cannot be reached (No such file or directory); its files are not replayed"
        in err
    )
    assert f"modsingest replay: {red}: cannot reach it (raw directory away)" in err
    assert "replay: 1 of 1 file(s) delivered" in out.stdout
    assert [r.path for r in delivered(settings) if r.path == str(blue)] == [str(blue)]
    out = run_replay(cfg, str(red), red.name)
    assert out.returncode == 1
    err = out.stderr.splitlines()
    assert (
        f"modsingest replay: {red}: cannot reach it (raw directory {red_dir}: No such file or directory)"
        in err
    )
    assert (
        f"modsingest replay: {red.name}: not found in the raw directories that can be reached (away: {red_dir})"
        in err
    )
