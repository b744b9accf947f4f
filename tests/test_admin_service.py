"""The admin's day with the real service (issue 10, issue 9 item 3): a destination
outage longer than the old give-up time, seen in status while it lasts and healed
without a replay; and the documented upgrade sequence (stop, install, check-config,
start) with files arriving throughout, losing none and delivering none twice.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from modsingest import sim as simulate
from modsingest.service.ledger import DELIVERED, FAILED, WAITING
from servicekit import Agent, wait_for

BIN = [sys.executable, "-m", "modsingest.cli"]


def spec(channel: str = "mods1b", seq: int = 1) -> simulate.ExposureSpec:
    return simulate.ExposureSpec(channel=channel, seq=seq, roi="1k", date="20260102")


@pytest.fixture
def agent(tmp_path):
    a = Agent(tmp_path / "svc", "poll", workers=1)
    yield a
    a.close()


def cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*BIN, *args], capture_output=True, text=True, cwd=cwd, timeout=60)


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


def test_the_documented_upgrade_sequence_loses_no_file(agent):
    """docs/install.md, "Upgrading": stop, install, check-config, start; files arrive all along.

    The install step's pip run is not repeated here (no package index in a test);
    what the sequence asks of the service is: SIGTERM while files arrive and are
    processed, the configuration checked while it is down, a start that finds
    what arrived meanwhile.  Every file is delivered exactly once, and nothing
    half-written is left.
    """
    agent.start()
    written: list = []
    stop = threading.Event()

    def azcam():
        seq = 1
        while not stop.is_set() and seq <= 40:
            for channel in ("mods1b", "mods1r"):
                written.append(simulate.write(spec(channel, seq), agent.raw[channel], two_pass=True))
            seq += 1
            time.sleep(0.15)

    writer = threading.Thread(target=azcam)
    writer.start()
    try:
        wait_for(lambda: len(agent.delivered_rows()) >= 4, 60, "some deliveries before the upgrade")
        agent.stop()  # 1. systemctl stop modsingest (SIGTERM)
        version = cli("--version")  # 2. install; the docs' check of what is installed
        assert version.returncode == 0 and version.stdout.startswith("modsingest ")
        checked = cli("check-config", str(agent.config))  # 3. check-config as the service user
        assert checked.returncode == 0, checked.stderr
        assert checked.stdout.startswith(f"{agent.config}: ok: 2 raw directories")
        agent.start()  # 4. systemctl start modsingest
    finally:
        writer.join(120)
        stop.set()
    assert len(written) == 80
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
    agent.stop()
