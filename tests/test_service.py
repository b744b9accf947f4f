"""The service in-process: systemd notifications, metrics, supervision, one per ledger."""

from __future__ import annotations

import os
import threading

import pytest

from modsingest import config
from modsingest import sim as simulate
from modsingest.service import status
from modsingest.service.agent import Service
from modsingest.service.ledger import DELIVERED, Ledger
from servicekit import wait_for, write_config


class FakeNotifier:
    def __init__(self):
        self.calls: list[tuple] = []

    def watchdog_interval(self):
        return 0.5

    def __getattr__(self, name):
        if name in ("ready", "status", "watchdog", "stopping"):
            return lambda *a: self.calls.append((name, *a))
        raise AttributeError(name)

    def names(self):
        return [c[0] for c in self.calls]


class FakeMetrics:
    def __init__(self):
        self.calls: list[tuple] = []

    def __getattr__(self, name):
        return lambda *a: self.calls.append((name, *a))

    def named(self, name):
        return [c for c in self.calls if c[0] == name]


@pytest.fixture
def running(tmp_path):
    """A Service running in a thread on a fresh layout; stopped at the end."""
    started: list[tuple[Service, threading.Thread]] = []

    def start(method="inotify", **kw):
        cfg = write_config(tmp_path, method, workers=1, **kw)
        svc = Service(config.load(cfg), notifier=FakeNotifier(), metrics=FakeMetrics())
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("code", svc.run()), daemon=True)
        t.start()
        wait_for(lambda: svc.ready.is_set() or not t.is_alive(), 60, "the service to be ready")
        started.append((svc, t))
        return svc, t, result

    yield start
    for svc, t in started:
        svc.request_stop("test over")
        t.join(30)


def delivered(svc, count):
    def check():
        led = Ledger(svc.settings.paths.state)
        try:
            rows = [r for r in led.rows() if r.state == DELIVERED]
        finally:
            led.close()
        return rows if len(rows) >= count else None

    return wait_for(check, 60, f"{count} deliveries")


def write(svc, seq, channel="mods1b"):
    spec = simulate.ExposureSpec(channel=channel, seq=seq, roi="1k")
    return simulate.write(spec, svc.settings.paths.raw[0])


def test_notifications_metrics_and_a_clean_stop(running):
    svc, t, result = running()
    write(svc, 1)
    (row,) = delivered(svc, 1)
    n = svc.notifier
    wait_for(lambda: "watchdog" in n.names(), 10, "a watchdog ping")
    assert n.names()[0] == "ready" and "0 delivered" in n.calls[0][1]
    # the ledger row is written just before the metric: wait for it, do not race it
    wait_for(lambda: svc.metrics.named("delivered"), 10, "the delivered metric")
    (call,) = svc.metrics.named("delivered")
    assert call[1] == "MODS1B" and call[2] == pytest.approx(row.latency) and call[3] == row.seconds
    wait_for(lambda: svc.metrics.named("write_textfile"), 10, "the metrics text file")
    svc.request_stop("test")
    t.join(30)
    assert result["code"] == 0
    assert n.names()[-1] == "stopping"
    led = Ledger(svc.settings.paths.state)
    info = led.info()
    led.close()
    assert info["heartbeat"] is None and info["stopped"]


def test_a_dead_gate_thread_is_restarted(running):
    svc, t, result = running()
    old = svc.gate_loop
    old._hints.put(("too", "many", "values", "here"))  # a bug in the gate thread
    wait_for(lambda: not old.is_alive(), 10, "the gate thread to die")
    wait_for(lambda: svc.gate_loop is not old and svc.gate_loop.is_alive(), 10, "a new gate thread")
    write(svc, 2)
    delivered(svc, 1)


def test_udp_duplicates_are_recognised(running):
    svc, t, result = running()
    path = write(svc, 3)
    delivered(svc, 1)
    assert svc.is_delivered_unchanged(path)
    os.utime(path, None)  # touched: a replay, not a duplicate
    assert not svc.is_delivered_unchanged(path)


def test_one_service_per_state_directory(running, caplog):
    svc, t, result = running()
    second = Service(svc.settings)
    assert second.run() == 1
    assert "another modsingest service is using" in caplog.text


def test_files_found_only_by_rescans_are_counted_and_blindness_said(running, tmp_path):
    svc, t, result = running(rescan=0.5)
    svc.detector._observer.stop()  # inotify sees nothing, as on NFS written elsewhere
    svc.detector._observer.join(5)
    svc.detector.check = lambda: []  # and stays blind (no restart) for this test
    write(svc, 4)
    delivered(svc, 1)
    wait_for(lambda: svc.metrics.named("found_by_rescan"), 10, "the rescan count")
    assert svc.metrics.named("set_inotify_blind") == [("set_inotify_blind", True)]
    led = Ledger(svc.settings.paths.state)
    info = led.info()
    led.close()
    assert info["found_by_rescan"] == 1
    assert info["inotify_blind"]["example"].endswith(".0004.fits")


def test_running_as_root_is_said_once_in_the_log_and_in_status(running, caplog, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)  # tests may run as root or not
    svc, t, result = running()
    said = [r for r in caplog.records if "RUNNING AS ROOT" in r.getMessage()]
    assert [r.levelname for r in said] == ["WARNING"]
    lines = [r.getMessage() for r in said]
    assert f"files it creates in {svc.settings.paths.state} belong to root" in lines[0]
    report = status.gather(svc.settings)
    assert report["running_as_root"] == lines[0]
    assert f"WARNING:  {lines[0]}" in status.render(report).splitlines()


def test_not_root_no_root_warning(running, caplog, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    svc, t, result = running()
    assert "RUNNING AS ROOT" not in caplog.text
    report = status.gather(svc.settings)
    assert report["running_as_root"] is None
    assert "ROOT" not in status.render(report)


def test_the_ledger_is_readable_by_the_group_under_a_tight_umask(running):
    old = os.umask(0o077)
    try:
        svc, t, result = running()
        write(svc, 1)
        delivered(svc, 1)
    finally:
        os.umask(old)
    state = svc.settings.paths.state
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in state.iterdir() if p.name.startswith("ledger")}
    assert modes == {n: "0o640" for n in ("ledger.sqlite3", "ledger.sqlite3-wal", "ledger.sqlite3-shm")}
