"""The admin's day with the real service (issue 10, issue 9 item 3): a destination
outage longer than the old give-up time, seen in status while it lasts and healed
without a replay; and the documented upgrade sequence (stop, install (pip, offline),
check-config, start) with files arriving throughout, losing none and delivering none twice.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from astropy.io import fits

from modsingest import __version__
from modsingest import sim as simulate
from modsingest.service.ledger import DELIVERED, FAILED, WAITING
from servicekit import Agent, wait_for

BIN = [sys.executable, "-m", "modsingest.cli"]
ROOT = Path(__file__).resolve().parents[1]
#: the version number the upgrade test gives the release it installs
NEW_RELEASE = "9.9.9"


def spec(channel: str = "mods1b", seq: int = 1) -> simulate.ExposureSpec:
    return simulate.ExposureSpec(channel=channel, seq=seq, roi="1k", date="20260102")


@pytest.fixture
def agent(tmp_path):
    a = Agent(tmp_path / "svc", "poll", workers=1)
    yield a
    a.close()


def cli(*args: str, cwd=None, env=None, python=False) -> subprocess.CompletedProcess:
    """``modsingest ARGS`` (``python ARGS`` with ``python``) in a subprocess."""
    command = [sys.executable, *args] if python else [*BIN, *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=60)


def test_a_destination_outage_waits_is_shown_and_heals_without_a_replay(agent):
    agent.start()
    away = agent.newdata.with_name("newdata-away")
    os.rename(agent.newdata, away)  # the NFS mount is gone
    paths = [simulate.write(spec(seq=n), agent.raw["mods1b"], two_pass=False) for n in (1, 2)]

    def both_waiting():
        rows = [agent.current(p) for p in paths]
        return all(r is not None and r.state == WAITING for r in rows) and rows

    rows = wait_for(both_waiting, 60, "both files waiting for the destination")
    assert all("cannot publish" in r.reason for r in rows)
    # status during the outage: the missing directory, the waiting files, a CRITICAL check
    out = cli("status", "--config", str(agent.config))
    assert out.returncode == 0, out.stderr
    assert f"paths.newdata: directory {agent.newdata} does not exist" in out.stdout
    assert "WAITING FOR A DESTINATION (2)" in out.stdout
    assert f"{paths[0].name}  since " in out.stdout and "next try" in out.stdout
    check = cli("status", "--config", str(agent.config), "--check")
    assert check.returncode == 2
    assert check.stdout.startswith("MODSINGEST CRITICAL - 1 directory problem(s): paths.newdata: directory ")
    assert "waiting=2" in check.stdout and len(check.stdout.splitlines()) == 1
    wait_for(
        lambda: (
            "modsingest_files_waiting_for_destination 2.0" in (agent.state / "modsingest.prom").read_text()
        ),
        30,
        "the metric of waiting files",
    )
    prom = (agent.state / "modsingest.prom").read_text()
    assert 'modsingest_publish_retries_total{channel="mods1b"}' in prom
    # the destination comes back: both are delivered with no replay and no restart
    os.rename(away, agent.newdata)
    agent.wait_delivered(2, timeout=90)
    rows = agent.rows()
    assert not [r for r in rows if r.state == FAILED]
    assert sorted(p.name for p in agent.newdata_files()) == sorted(p.name for p in paths)
    assert agent.hidden_files() == []
    check = cli("status", "--config", str(agent.config), "--check")
    assert check.returncode == 0, check.stdout
    assert check.stdout.startswith("MODSINGEST OK - 2 delivered in the last 24 h | ")
    assert agent.log_text().count("waiting for the destination") == 2  # one warning per file, not per try
    agent.stop()


def install_release(work: Path, version: str) -> Path:
    """Step 2, offline: the working tree, as a release numbered ``version``, built and
    installed with pip into a directory of its own; returns that directory.

    The source is copied first (the build writes ``build/`` and egg-info into it, and
    the tree must stay clean); the copy's version number is changed so that what runs
    after the restart can be told from what ran before it, in the start-up log line,
    in ``--version`` and in every delivered file's MSIVER.
    """
    source = work / "source"
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    init = source / "src" / "modsingest" / "__init__.py"
    text, count = re.subn(
        r'^__version__ = "[^"]*"$', f'__version__ = "{version}"', init.read_text(), flags=re.M
    )
    assert count == 1, "modsingest/__init__.py has no __version__ line to change"
    init.write_text(text)
    site = work / "site"
    run = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-build-isolation",
         "--no-deps", "--target", str(site), str(source)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    return site


def delivered_in(agent: Agent, run: int) -> list[str]:
    """The names the service delivered during its ``run``-th start."""
    return re.findall(r"modsingest\.dispatch: delivered (\S+)", agent.log_text(run))


def test_the_documented_upgrade_sequence_loses_no_file(agent, tmp_path):
    """docs/install.md, "Upgrading": stop, install, check-config, start; files arrive all along.

    The install is real and offline: the working tree, numbered as a new release, is
    built and installed with pip into a directory of its own while the service is
    stopped, and the restarted service (the same interpreter, that directory first on
    its path, as an upgraded installation runs) must run that copy: its start-up line,
    ``--version`` and the MSIVER of every file its workers deliver name the new release.
    Files arrive before the stop, while the service is down and after the start; each
    is delivered exactly once, and nothing half-written is left.
    """
    assert __version__ != NEW_RELEASE
    agent.start()
    written: list = []
    stop = threading.Event()

    def azcam():
        seq = 1
        while not stop.is_set() and seq <= 150:
            for channel in ("mods1b", "mods1r"):
                written.append(simulate.write(spec(channel, seq), agent.raw[channel], two_pass=True))
            seq += 1
            time.sleep(0.15)

    writer = threading.Thread(target=azcam)
    writer.start()
    try:
        wait_for(lambda: len(agent.delivered_rows()) >= 4, 60, "some deliveries before the upgrade")
        agent.stop()  # 1. systemctl stop modsingest (SIGTERM)
        at_stop = len(written)
        site = install_release(tmp_path / "upgrade", NEW_RELEASE)  # 2. install
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
        )
        probe = cli("-c", "import modsingest.cli; print(modsingest.cli.__file__)", env=env, python=True)
        assert probe.stdout.strip() == str(site / "modsingest" / "cli.py"), probe.stdout + probe.stderr
        version = cli("--version", env=env)  # the docs' check of what is installed
        assert version.returncode == 0, version.stderr
        assert version.stdout.strip() == (
            f"modsingest {NEW_RELEASE} (git commit unknown: not installed from a git checkout)"
        )
        checked = cli("check-config", str(agent.config), env=env)  # 3. check-config as the service user
        assert checked.returncode == 0, checked.stderr
        assert checked.stdout.startswith(f"{agent.config}: ok: 2 raw directories")
        agent.start(env={"PYTHONPATH": env["PYTHONPATH"]})  # 4. systemctl start modsingest
        at_start = len(written)
        wait_for(lambda: len(written) >= at_start + 8, 60, "files written after the restart")
    finally:
        stop.set()
        writer.join(120)
    assert 0 < at_stop < at_start < len(written), (at_stop, at_start, len(written))
    assert f"modsingest {NEW_RELEASE} (git commit unknown" in agent.log_text(2).split(" starting: ")[0]
    agent.wait_delivered(len(written), timeout=180)
    rows = agent.rows()
    delivered = [r for r in rows if r.state == DELIVERED and r.current]
    assert sorted(r.path for r in delivered) == sorted(map(str, written))
    assert not [r for r in rows if r.state in (FAILED, WAITING)]
    names = [line.split(" as ")[0] for line in agent.delivered_lines()]
    assert sorted(set(names)) == sorted(p.name for p in written)
    twice = {n for n in names if names.count(n) > 1}
    # a file is delivered twice only when azcam's second pass changed it after a first
    # delivery without CONPARS; with CONPARS written at once, none is
    assert twice == set(), twice
    assert agent.hidden_files() == []
    # what each run's workers wrote: the old release before the stop, the new one after
    before, after = delivered_in(agent, 1), delivered_in(agent, 2)
    assert before and after and sorted(before + after) == sorted(names)
    for name, release in [(n, __version__) for n in before] + [(n, NEW_RELEASE) for n in after]:
        assert fits.getval(agent.newdata / name, "MSIVER") == release, name
    agent.stop()
