"""The real service (``modsingest watch`` in a subprocess) on temporary directories,
in both detection modes: azcam's two-pass writes, bursts, kill -9 and restart,
replay by timestamp, bad files, CONPARS that never comes, UDP duplicates, SIGTERM.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
import time

import pytest
from astropy.io import fits

from modsingest import sim as simulate
from modsingest.fits import scan as fitscheck
from modsingest.service.ledger import DELIVERED, INCOMPLETE, PROCESSING
from servicekit import Agent, PartialWatch, wait_for

MODES = ["inotify", "poll"]


def spec(channel: str = "mods1b", seq: int = 1, **kw) -> simulate.ExposureSpec:
    return simulate.ExposureSpec(channel=channel, seq=seq, roi="1k", **kw)


@pytest.fixture
def agent_factory(tmp_path):
    agents: list[Agent] = []

    def make(method: str, **config) -> Agent:
        a = Agent(tmp_path / f"{method}-{len(agents)}", method, **config)
        agents.append(a)
        return a

    yield make
    for a in agents:
        a.close()


def conpars_rows(path) -> int:
    with fits.open(path) as hdul:
        return len(hdul["CONPARS"].data)


@pytest.mark.parametrize("method", MODES)
def test_two_pass_write_is_delivered_once_with_conpars(agent_factory, method):
    """A file seen after azcam's first pass is not delivered until CONPARS arrives."""
    agent = agent_factory(method, grace=5.0).start()
    seen_first_pass = []

    def first_pass_done(path):
        # the first pass is a complete FITS file without CONPARS; the agent sees it
        assert fitscheck.scan(path).complete and not fitscheck.scan(path).has_conpars
        seen_first_pass.append(path)

    path = simulate.write(
        spec(), agent.raw["mods1b"], two_pass=True, pause=1.0, after_first_pass=first_pass_done
    )
    assert seen_first_pass
    rows = agent.wait_delivered(1)
    assert [r.path for r in rows] == [str(path)]
    row = rows[0]
    assert row.conpars is True
    assert not [w for w in row.warnings if "CONPARS" in w]
    out = agent.newdata / path.name
    assert conpars_rows(out) > 100  # the real table, not the empty stand-in
    # exactly one delivery of this file: none from the first pass
    assert [r for r in agent.rows(path) if r.state == DELIVERED] == [row]
    assert agent.delivered_lines() == [path.name]
    assert (agent.newdata / "MODS1B.new").read_text() == f"{path.name}\n"
    assert agent.stop() < 30


@pytest.mark.parametrize("pass_on_close", [True, False])
def test_inotify_passes_a_closed_complete_file_without_waiting_for_settle(agent_factory, pass_on_close):
    """watch.pass_on_close: azcam's final close is enough; off, the settle time is waited."""
    settle = 3.0
    agent = agent_factory("inotify", settle=settle, pass_on_close=pass_on_close).start()
    path = simulate.write(spec(), agent.raw["mods1b"], two_pass=True, pause=0.2)
    written = time.time()
    (row,) = agent.wait_delivered(1, timeout=60)
    waited = row.queued_at - written
    if pass_on_close:
        assert waited < settle / 2, waited
    else:
        assert waited >= settle - 0.1, waited
    assert row.conpars is True
    assert [r.path for r in agent.delivered_rows()] == [str(path)]  # once, not per pass
    os.chmod(path, 0o600)  # an admin fixing permissions: metadata, not new content
    time.sleep(1.0)
    assert [r.path for r in agent.delivered_rows()] == [str(path)]
    assert agent.stop() < 30


@pytest.mark.parametrize("method", MODES)
def test_burst_of_40_delivered_exactly_once(agent_factory, method):
    agent = agent_factory(method).start()
    with PartialWatch(agent.newdata, agent.processed) as watch:
        paths = []
        for i in range(40):
            channel = ("mods1b", "mods1r")[i % 2]
            paths.append(simulate.write(spec(channel, seq=i // 2 + 1), agent.raw[channel]))
        agent.wait_delivered(40, timeout=90)
    assert not watch.problems, watch.problems[:3]
    assert watch.checked > 0
    delivered = agent.delivered_rows()
    assert sorted(r.path for r in delivered) == sorted(map(str, paths))  # once each
    assert sorted(agent.delivered_lines()) == sorted(p.name for p in paths)
    assert [p.name for p in agent.newdata_files()] == sorted(p.name for p in paths)
    assert agent.hidden_files() == []
    assert agent.stop() < 30


@pytest.mark.parametrize("method", MODES)
def test_kill9_mid_burst_then_restart_delivers_everything_once(agent_factory, method):
    agent = agent_factory(method).start()
    paths: list = []

    def burst():
        for i in range(40):
            channel = ("mods1b", "mods1r")[i % 2]
            paths.append(simulate.write(spec(channel, seq=i // 2 + 1), agent.raw[channel]))

    writer = threading.Thread(target=burst)
    with PartialWatch(agent.newdata, agent.processed) as watch:
        writer.start()
        agent.wait_delivered(8, timeout=60)
        agent.kill9()  # in the middle: workers busy, files queued, files still arriving
        killed_with = {r.path for r in agent.rows() if r.state == PROCESSING}
        agent.start()
        writer.join(60)
        agent.wait_delivered(40, timeout=120)
    assert len(paths) == 40
    assert not watch.problems, watch.problems[:3]
    delivered = agent.delivered_rows()
    assert sorted(r.path for r in delivered) == sorted(map(str, paths))
    lines = agent.delivered_lines()
    assert sorted(lines) == sorted(p.name for p in paths), "a file was delivered twice"
    # what the crash interrupted was redone by the second run
    for path in killed_with:
        assert agent.current(path).state == DELIVERED
    assert [p.name for p in agent.newdata_files()] == sorted(p.name for p in paths)
    assert agent.hidden_files() == []
    for p in agent.newdata_files():
        assert fitscheck.scan(p).complete
    assert agent.stop() < 30


@pytest.mark.parametrize("method", MODES)
def test_replay_by_touch_and_utime(agent_factory, method):
    agent = agent_factory(method).start()
    path = simulate.write(spec(), agent.raw["mods1b"])
    agent.wait_delivered(1)
    out = agent.newdata / path.name

    def deliveries():
        return [r for r in agent.rows(path) if r.state == DELIVERED]

    ways = [
        ("GNU touch", lambda: subprocess.run(["touch", str(path)], check=True)),
        ("touch -c", lambda: subprocess.run(["touch", "-c", "-d", "2 minutes ago", str(path)], check=True)),
        ("os.utime", lambda: os.utime(path, (time.time() - 60, time.time() - 60))),
    ]
    for n, (how, do) in enumerate(ways, start=2):
        inode = out.stat().st_ino
        do()
        wait_for(lambda n=n: len(deliveries()) == n, 30, f"a replay after {how}")
        assert out.stat().st_ino != inode, f"{how}: output not replaced"
    assert agent.current(path).state == DELIVERED
    # nothing else happened to the file: four deliveries logged, no more (the ledger is
    # written before the log line, so wait for the fourth line before counting)
    wait_for(lambda: len(agent.delivered_lines()) >= 4, 10, "the fourth delivery line")
    time.sleep(0.5)
    assert len(agent.delivered_lines()) == 4
    assert agent.stop() < 30


@pytest.mark.parametrize("method", MODES)
def test_bad_files_are_reported_while_good_files_flow(agent_factory, method):
    agent = agent_factory(method, incomplete=1.5).start()
    raw = agent.raw["mods1r"]
    good = simulate.render(spec("mods1r", seq=1))
    bad = {
        "mods1r.20260101.0101.fits": good[: len(good) // 2],  # truncated
        "mods1r.20260101.0102.fits": b"",  # empty
        "mods1r.20260101.0103.fits": b"this is not FITS\n" * 400,
    }
    for name, data in bad.items():
        (raw / name).write_bytes(data)
    (raw / "notes.txt").write_text("ignored\n")
    (raw / ".hidden.fits").write_bytes(good)
    goods = [simulate.write(spec("mods1r", seq=i), raw) for i in range(1, 5)]
    goods.append(simulate.write(spec("mods1r", seq=1, root="m1rTest."), raw))  # another root
    agent.wait_delivered(5)
    assert (agent.newdata / "m1rTest.0001.fits").exists()

    def reported():
        rows = {r.name: r for r in agent.rows() if r.current and r.state == INCOMPLETE}
        return rows if set(rows) == set(bad) else None

    rows = wait_for(reported, 30, "the three bad files to be reported")
    assert "cut short" in rows["mods1r.20260101.0101.fits"].reason
    assert "empty" in rows["mods1r.20260101.0102.fits"].reason
    assert "not a FITS file" in rows["mods1r.20260101.0103.fits"].reason
    assert sorted(r.path for r in agent.delivered_rows()) == sorted(map(str, goods))
    log = agent.log_text()
    for name in bad:  # the not-FITS one at once (impossible), the others after the timeout
        assert re.search(rf"(INCOMPLETE|IMPOSSIBLE) .*{re.escape(name)}", log)
    assert "notes.txt" not in log and ".hidden.fits" not in log
    # status shows every problem with its reason
    status = subprocess.run(
        [os.sys.executable, "-m", "modsingest.cli", "status", "--config", str(agent.config)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in bad:
        assert name in status
    assert "cut short" in status
    assert agent.stop() < 30


@pytest.mark.parametrize("method", MODES)
def test_impossible_files_and_symbolic_links_are_reported_at_once(agent_factory, method, tmp_path):
    """Not after incomplete_timeout (300 s here): one look shows they can never be delivered."""
    agent = agent_factory(method, incomplete=300.0).start()
    raw = agent.raw["mods1b"]
    outside = simulate.write(spec("mods1b", seq=9), tmp_path)  # a good file outside the raw dirs
    started = time.monotonic()
    (raw / "mods1b.20260101.0201.fits").write_bytes(b"this is not FITS\n" * 400)
    negative = bytearray(simulate.render(spec("mods1b", seq=2)))
    at = negative.index(b"NAXIS1  =", 2880)  # IM1's width
    negative[at : at + 30] = b"NAXIS1  =                   -1"
    (raw / "mods1b.20260101.0202.fits").write_bytes(bytes(negative))
    (raw / ".link.tmp").symlink_to(outside)
    os.rename(raw / ".link.tmp", raw / "mods1b.20260101.0203.fits")  # moved in: inotify sees it
    good = simulate.write(spec("mods1b", seq=4), raw)
    bad = {"mods1b.20260101.0201.fits", "mods1b.20260101.0202.fits", "mods1b.20260101.0203.fits"}

    def reported():
        rows = {r.name: r for r in agent.rows() if r.current and r.state == INCOMPLETE}
        return rows if set(rows) == bad else None

    rows = wait_for(reported, 20, "the impossible files to be reported")
    assert time.monotonic() - started < 20
    assert "not a FITS file" in rows["mods1b.20260101.0201.fits"].reason
    assert "negative" in rows["mods1b.20260101.0202.fits"].reason
    assert f"a symbolic link (to {outside})" in rows["mods1b.20260101.0203.fits"].reason
    (row,) = agent.wait_delivered(1)
    assert row.path == str(good)
    log = agent.log_text()
    for name in bad:
        assert len(re.findall(rf"IMPOSSIBLE .*{re.escape(name)}", log)) == 1
    assert agent.newdata_files() == [agent.newdata / good.name]  # the link's target never published
    # replaced by a real file (a new inode): looked at again and delivered
    (raw / "mods1b.20260101.0203.fits").unlink()
    fixed = simulate.write(spec("mods1b", seq=203, date="20260101"), raw)
    assert fixed.name == "mods1b.20260101.0203.fits"
    agent.wait_delivered(2)
    assert agent.stop() < 30


@pytest.mark.parametrize("method", MODES)
def test_conpars_that_never_arrives_is_delivered_after_the_grace(agent_factory, method):
    agent = agent_factory(method, grace=1.5).start()
    written = time.time()
    path = simulate.write(spec(conpars=False), agent.raw["mods1b"])
    row = agent.wait_delivered(1)[0]
    assert row.path == str(path)
    assert row.conpars is False
    assert row.finished_at - written >= 1.5
    assert any("CONPARS" in w for w in row.warnings)
    assert re.search(rf"{re.escape(path.name)}: no CONPARS after 1.5 s", agent.log_text())
    assert conpars_rows(agent.newdata / path.name) == 0
    assert agent.stop() < 30


def test_udp_duplicate_proc_is_ignored(agent_factory):
    """azcam re-sends the last name after an aborted exposure: no second delivery."""
    agent = agent_factory(
        "poll", poll=0.2, extra="udp:\n  enabled: true\n  host: 127.0.0.1\n  port: 0\n"
    ).start()
    match = re.search(r"udp: listening on 127\.0\.0\.1:(\d+)", agent.log_text())
    assert match, agent.log_text()
    port = int(match.group(1))
    path = simulate.write(spec(), agent.raw["mods1b"])
    agent.wait_delivered(1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(f"proc /home/data/{path.name}".encode(), ("127.0.0.1", port))
    wait_for(
        lambda: "ignored: already delivered and unchanged" in agent.log_text(),
        10,
        "the duplicate to be ignored",
    )
    assert agent.delivered_lines() == [path.name]
    assert len([r for r in agent.rows(path) if r.state == DELIVERED]) == 1
    assert agent.stop() < 30


def test_udp_proc_passes_a_complete_file_without_waiting_for_settle(agent_factory):
    """azcam-mods sends "proc" after both passes: a writer-done signal, like inotify's close."""
    settle = 3.0
    agent = agent_factory(
        "poll", poll=5.0, settle=settle, extra="udp:\n  enabled: true\n  host: 127.0.0.1\n  port: 0\n"
    ).start()
    port = int(re.search(r"udp: listening on 127\.0\.0\.1:(\d+)", agent.log_text()).group(1))
    path = simulate.write(spec(), agent.raw["mods1b"], two_pass=True, pause=0.2)
    sent = time.time()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(f"proc /home/data/{path.name}".encode(), ("127.0.0.1", port))
    (row,) = agent.wait_delivered(1, timeout=60)
    assert row.queued_at - sent < settle / 2, row.queued_at - sent
    assert [r.path for r in agent.delivered_rows()] == [str(path)]
    assert agent.stop() < 30


def test_sigterm_with_work_queued_then_restart_finishes_it(agent_factory):
    """SIGTERM with work queued: exits in time; nothing is lost or half-published.

    (A worker stuck in a file at shutdown is abandoned and re-queued:
    test_workers.test_shutdown_abandons_a_stuck_file_cleanly.)"""
    agent = agent_factory("inotify", workers=1).start()
    paths = [simulate.write(spec("mods1b", seq=i), agent.raw["mods1b"], two_pass=False) for i in range(1, 9)]
    agent.wait_delivered(1)
    assert agent.stop() < 30
    assert agent.hidden_files() == []
    states = {r.state for r in agent.rows() if r.current}
    assert PROCESSING not in states
    agent.start()
    agent.wait_delivered(len(paths))
    assert sorted(agent.delivered_lines()) == sorted(p.name for p in paths)
    assert agent.stop() < 30
