"""Helpers for the service's end-to-end tests: a real ``modsingest watch`` in a
subprocess on a temporary layout, and waits on conditions with deadlines.

No test sleeps to let something happen: each waits for the condition it needs
(``wait_for``) and fails with what it was waiting for when the deadline passes.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from modsingest.fits import scan as fitscheck
from modsingest.service.ledger import DELIVERED, Ledger, Row

CHANNELS = ("mods1b", "mods1r")


def wait_for(condition: Callable[[], object], timeout: float, what: str, every: float = 0.05):
    """Poll ``condition`` until it returns something true; AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def write_config(
    root: Path,
    method: str,
    *,
    workers: int = 2,
    poll: float = 0.1,
    rescan: float = 30.0,
    grace: float = 1.0,
    incomplete: float = 2.0,
    extra: str = "",
    level: str = "info",
    settle: float | None = None,
    pass_on_close: bool | None = None,
) -> Path:
    """A layout under ``root`` (raw dirs for two channels) and its configuration."""
    for sub in [f"raw/{c}" for c in CHANNELS] + ["newdata", "processed", "state"]:
        (root / sub).mkdir(parents=True, exist_ok=True)
    cfg = root / "modsingest.yaml"
    cfg.write_text(
        "paths:\n"
        f"  raw: [{', '.join(f'raw/{c}' for c in CHANNELS)}]\n"
        "  newdata: newdata\n"
        "  processed: processed\n"
        "  state: state\n"
        "watch:\n"
        f"  method: {method}\n"
        f"  poll_interval: {poll}\n"
        f"  rescan_interval: {rescan}\n"
        f"  conpars_grace: {grace}\n"
        f"  incomplete_timeout: {incomplete}\n"
        + (f"  settle: {settle}\n" if settle is not None else "")
        + (f"  pass_on_close: {'yes' if pass_on_close else 'no'}\n" if pass_on_close is not None else "")
        + f"workers: {workers}\n"
        "log:\n"
        "  level: " + level + "\n" + extra
    )
    return cfg


class Agent:
    """One ``modsingest watch`` subprocess on a temporary layout."""

    def __init__(self, root: Path, method: str = "inotify", **config):
        self.root = root
        self.method = method
        self.config = write_config(root, method, **config)
        self.raw = {c: root / "raw" / c for c in CHANNELS}
        self.newdata = root / "newdata"
        self.processed = root / "processed"
        self.state = root / "state"
        self.proc: subprocess.Popen | None = None
        self.runs = 0
        self.logs: list[Path] = []

    # ------------------------------------------------------------------ life
    def start(self, timeout: float = 90.0, env: dict[str, str] | None = None) -> Agent:
        """Start ``modsingest watch``; ``env``: extra environment (a fault to inject)."""
        self.runs += 1
        log = self.root / f"watch-{self.runs}.log"
        self.logs.append(log)
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        env.pop("NOTIFY_SOCKET", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modsingest.cli", "watch", "--config", str(self.config)],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.root,
        )
        wait_for(
            lambda: "ready: watching" in self.log_text(self.runs) or self._died(),
            timeout,
            "the service to be ready",
        )
        assert self.proc.poll() is None, f"the service exited:\n{self.log_text(self.runs)}"
        return self

    def _died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def stop(self, limit: float = 30.0) -> float:
        """SIGTERM; asserts a clean exit within ``limit`` seconds; returns the time taken."""
        assert self.proc is not None
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(limit)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the service did not stop within {limit} s") from None
        took = time.monotonic() - start
        assert code == 0, f"exit status {code}:\n{self.log_text(self.runs)}"
        self.proc = None
        return took

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None
        # its workers must die with it (and release their shared lock)
        from modsingest.service.workers import WORKERS_LOCK, wait_for_orphans

        assert wait_for_orphans(self.state / WORKERS_LOCK, 15.0), "orphan workers survived"

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    # ------------------------------------------------------------------ looking
    def log_text(self, run: int | None = None) -> str:
        logs = self.logs if run is None else [self.logs[run - 1]]
        return "".join(p.read_text(errors="replace") for p in logs if p.exists())

    def delivered_lines(self) -> list[str]:
        return re.findall(r"modsingest\.dispatch: delivered (\S+)", self.log_text())

    def ledger(self) -> Ledger:
        return Ledger(self.state)

    def rows(self, path=None) -> list[Row]:
        led = self.ledger()
        try:
            rows = led.rows(current_only=False)
        finally:
            led.close()
        return [r for r in rows if path is None or r.path == str(path)]

    def delivered_rows(self) -> list[Row]:
        return [r for r in self.rows() if r.state == DELIVERED]

    def current(self, path) -> Row | None:
        led = self.ledger()
        try:
            return led.current(path)
        finally:
            led.close()

    def wait_delivered(self, count: int, timeout: float = 60.0) -> list[Row]:
        """Until ``count`` raw files have a delivered current row."""

        def done():
            rows = [r for r in self.rows() if r.current and r.state == DELIVERED]
            return rows if len(rows) >= count else None

        return wait_for(
            done, timeout, f"{count} delivered file(s) (log:\n{self.log_text()[-3000:]})", every=0.1
        )

    def newdata_files(self) -> list[Path]:
        return sorted(
            p for p in self.newdata.iterdir() if p.name.endswith(".fits") and not p.name.startswith(".")
        )

    def hidden_files(self) -> list[Path]:
        found = [p for p in self.newdata.iterdir() if p.name.startswith(".")]
        for d in self.processed.iterdir():
            if d.is_dir():
                found += [p for p in d.iterdir() if p.name.startswith(".")]
        return found


class PartialWatch:
    """A thread that keeps checking that every visible delivered file is complete."""

    def __init__(self, *dirs: Path):
        self.dirs = dirs
        self.problems: list[str] = []
        self.checked = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PartialWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            for d in self.dirs:
                for p in list(d.rglob("*.fits")):
                    if p.name.startswith("."):
                        continue
                    layout = fitscheck.scan(p)
                    if "cannot open" in " ".join(layout.problems):
                        continue  # replaced between listing and opening
                    self.checked += 1
                    if not layout.complete or len(layout.hdus) < 7:
                        self.problems.append(layout.describe())
            self._stop.wait(0.05)
