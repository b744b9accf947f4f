"""The real service under faults injected at a named phase (``service/faultpoints.py``):
a kill -9 of the main process while a worker is busy, a worker dying as its job is sent.
Each fault fires once, where it is named, so these tests do not depend on timing luck.
"""

from __future__ import annotations

import os

import pytest

from modsingest import sim as simulate
from modsingest.service.workers import WORKERS_LOCK, wait_for_orphans
from servicekit import Agent, wait_for


def spec(channel: str = "mods1b", seq: int = 1) -> simulate.ExposureSpec:
    return simulate.ExposureSpec(channel=channel, seq=seq, roi="1k")


@pytest.fixture
def agent(tmp_path):
    a = Agent(tmp_path / "site", "inotify", workers=1)
    yield a
    a.close()


def fault_env(agent: Agent, spec_text: str) -> dict[str, str]:
    return {"MODSINGEST_FAULT": spec_text.replace("TOKEN", str(agent.root / "fault-token"))}


def main_gone(agent: Agent) -> None:
    wait_for(lambda: agent.proc.poll() is not None, 30, "the main process to be killed by the fault")
    agent.proc = None


def test_a_busy_worker_does_not_outlive_a_killed_main_process(agent):
    """Item 11: the worker kills the main process as it starts writing, then sleeps 10 s.

    A worker that outlived its service would publish after that sleep; it must be
    gone within a second or two (the fork server ends, PR_SET_PDEATHSIG), having
    published nothing, and the restart delivers the file once.
    """
    agent.start(env=fault_env(agent, "write:main:TOKEN"))
    path = simulate.write(spec(), agent.raw["mods1b"])
    main_gone(agent)
    assert wait_for_orphans(agent.state / WORKERS_LOCK, 3.0), "the worker outlived the main process"
    assert agent.newdata_files() == []
    agent.start()
    agent.wait_delivered(1)
    assert agent.delivered_lines() == [path.name]
    assert "was being processed when the last run ended" in agent.log_text(2)
    assert agent.hidden_files() == []


def test_a_publish_the_killed_main_process_did_not_record_is_not_repeated(agent):
    """The worker published and noted it; the main process died before its ledger write."""
    agent.start(env=fault_env(agent, "done:main:TOKEN"))
    path = simulate.write(spec(), agent.raw["mods1b"])
    main_gone(agent)
    assert wait_for_orphans(agent.state / WORKERS_LOCK, 3.0)
    out = agent.newdata / path.name
    first = os.stat(out)
    agent.start()
    agent.wait_delivered(1)
    assert agent.delivered_lines() == [path.name]
    assert "published as the last run ended; recorded now" in agent.log_text(2)
    again = os.stat(out)
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)  # not published again
    assert not list((agent.state / "published").iterdir())


def test_a_worker_dead_as_its_job_is_sent_does_not_stop_the_service(agent):
    """Item 2: BrokenPipeError on submit; the file goes back to the queue, a new worker takes it."""
    agent.start(env=fault_env(agent, "submit:worker:TOKEN"))
    path = simulate.write(spec(), agent.raw["mods1b"])
    agent.wait_delivered(1)
    assert agent.proc.poll() is None
    text = agent.log_text()
    assert "is gone" in text and "goes to another worker" in text
    assert agent.delivered_lines() == [path.name]
    assert agent.current(path).attempts == 1
    assert agent.stop() < 30
