"""Raw directories that behave like the site's NFS mounts, through a FUSE mount.

At LBTO the raw directories are NFS mounts written by the Archon hosts, so this
host's inotify sees none of the writes and azcam's UDP ``proc`` is the
writer-done signal.  Here ``bindfs`` mounts each raw directory over a backing
directory, and the simulated files are written into the backing directory: the
mount shows them, and inotify on the mount sees nothing, as on NFS.

Run as root (mounting needs it).  Without root these tests are skipped, except
under CI=true, where a missing bindfs, FUSE or root fails them: the FUSE tests
are part of what CI proves.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time

import pytest

from conftest import needed, require_tool
from modsingest import sim as simulate
from servicekit import CHANNELS, Agent, wait_for

UDP = "udp:\n  enabled: true\n  host: 127.0.0.1\n  port: 0\n"


@pytest.fixture
def fuse_agent(tmp_path):
    """An Agent whose raw directories are bindfs mounts of backing directories."""
    if os.geteuid() != 0:
        needed("root (mounting needs it)", "run the tests as root, as CI does")
    require_tool("bindfs", "bindfs")
    if not os.path.exists("/dev/fuse"):
        needed("/dev/fuse", "a machine or container with FUSE")
    agents: list[Agent] = []
    mounted: list[str] = []

    def make(method: str, **config) -> tuple[Agent, dict[str, os.PathLike]]:
        agent = Agent(tmp_path / f"{method}-{len(agents)}", method, **config)
        agents.append(agent)
        backing = {}
        for channel in CHANNELS:
            backing[channel] = agent.root / "backing" / channel
            backing[channel].mkdir(parents=True)
            subprocess.run(["bindfs", str(backing[channel]), str(agent.raw[channel])], check=True)
            mounted.append(str(agent.raw[channel]))
        return agent, backing

    try:
        yield make
    finally:
        for agent in agents:
            agent.close()
        for path in mounted:
            _unmount(path)


def _unmount(path: str) -> None:
    """FUSE's own unmount when it is there, else a lazy unmount (root): never left mounted."""
    for tool in ("fusermount3", "fusermount"):
        if shutil.which(tool) and subprocess.run([tool, "-u", path], capture_output=True).returncode == 0:
            return
    subprocess.run(["umount", "-l", path], check=True)


def spec(channel: str, seq: int) -> simulate.ExposureSpec:
    return simulate.ExposureSpec(channel=channel, seq=seq, roi="1k")


def test_the_mount_hides_writes_from_inotify(fuse_agent):
    """The premise of the other tests: a write in the backing directory makes no event on the mount."""
    from modsingest.service import detect

    agent, backing = fuse_agent("inotify")
    hints = []
    det = detect.Detector(
        [agent.raw["mods1b"]],
        method="inotify",
        poll_interval=1.0,
        rescan_interval=3600.0,
        lookback_days=2,
        emit=lambda path, source: hints.append((path, source)),
        is_settled=lambda p, fp: False,
    )
    det.start()
    try:
        assert det.startup_done.wait(5)
        (backing["mods1b"] / "mods1b.20260102.0001.fits").write_bytes(b"x")
        time.sleep(0.5)
        assert hints == []  # no event; the file is there all the same
        assert (agent.raw["mods1b"] / "mods1b.20260102.0001.fits").read_bytes() == b"x"
    finally:
        det.stop()


def test_inotify_on_a_blind_mount_delivers_every_file_and_says_blind_once(fuse_agent):
    agent, backing = fuse_agent("inotify", rescan=1.0)
    agent.start()
    paths = [simulate.write(spec(c, seq), backing[c]) for seq in (1, 2) for c in CHANNELS]
    rows = agent.wait_delivered(len(paths), timeout=30)
    assert sorted(r.path for r in rows) == sorted(str(agent.raw[p.parent.name] / p.name) for p in paths)
    assert sorted(agent.delivered_lines()) == sorted(p.name for p in paths)  # each once
    log = agent.log_text()
    assert len(re.findall(r"inotify looks blind", log)) == 1, log
    assert agent.stop() < 30


def test_poll_with_udp_proc_as_azcam_sends_it_delivers_at_once(fuse_agent):
    """azcam sends the file's full path on the Archon host, not ours: the base name counts."""
    agent, backing = fuse_agent("poll", poll=30.0, rescan=60.0, extra=UDP)
    agent.start()
    port = int(re.search(r"udp: listening on 127\.0\.0\.1:(\d+)", agent.log_text()).group(1))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for seq, channel in enumerate(CHANNELS, start=1):
            path = simulate.write(spec(channel, seq), backing[channel])
            sent = time.time()
            sock.sendto(f"proc /home/data/{path.name}".encode(), ("127.0.0.1", port))
            row = wait_for(
                lambda p=path: next((r for r in agent.delivered_rows() if r.name == p.name), None),
                20,
                f"{path.name} delivered after its proc",
            )
            assert row.path == str(agent.raw[channel] / path.name)
            assert row.finished_at - sent < 10  # the UDP request, not the 30 s poll
    assert "inotify looks blind" not in agent.log_text()
    assert agent.stop() < 30
