"""``modsingest watch`` as a black box: its directories and configuration, one file timed to ``.new``.

Two kinds of layout.  ``Layout.make`` writes a small configuration of the bench's
own (one raw directory, the settings under study).  ``Layout.production`` takes
the shipped ``etc/mods1.yaml`` and changes nothing but where its directories are
(and the UDP port if 10301 is taken on this machine), so the bench measures the
configuration the site runs: ``method: poll`` with azcam's UDP ``proc`` datagram
as the writer-done signal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from benchkit.common import POINTER, REPO, copy_durable, log, modsingest_cmd, settle, unlink_quiet
from benchkit.machine import process_tree
from modsingest.config import loads as load_config_text

#: the configuration the site runs (MODS1), measured as shipped
PRODUCTION_CONFIG = REPO / "etc" / "mods1.yaml"
#: where azcam writes on the Archon host: the folder part of its ``proc`` datagram
#: (docs clients.md: ``proc /home/data/mods1b.20260102.0002.fits``); the service
#: keeps only the base name
ARCHON_DATA_DIR = "/home/data"


def udp_port_free(port: int) -> bool:
    """Whether a UDP socket can bind ``port`` on every interface now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", 0))
        return int(sock.getsockname()[1])


def send_proc(port: int, path_on_archon: str) -> None:
    """One ``proc <file>`` datagram to the service, as azcam-mods sends it after its last pass."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(f"proc {path_on_archon}".encode(), ("127.0.0.1", port))


@dataclass
class Layout:
    """One configuration's directories (raw, newdata, processed, state) and its YAML.

    ``raw`` is the raw directory the bench places its files in; ``udp_port`` is
    where the service listens for ``proc`` datagrams (None: the bench sends none).
    """

    root: Path
    raw: Path
    newdata: Path
    processed: Path
    state: Path
    config: Path
    udp_port: int | None = None
    note: str = ""

    @classmethod
    def make(
        cls,
        root: Path,
        *,
        raw: Path | None = None,
        method: str = "inotify",
        workers: int = 1,
        poll_interval: float = 1.0,
        settle: float | None = None,
    ) -> Layout:
        """A configuration of the bench's own: one raw directory, no UDP."""
        root.mkdir(parents=True, exist_ok=True)
        raw = raw or root / "raw"
        dirs = dict(raw=raw, newdata=root / "newdata", processed=root / "processed", state=root / "state")
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        config = root / "modsingest.yaml"
        # watch.settle only when asked for: the service's default is what ships,
        # and a tree from before the key (--baseline-src) must still load this.
        config.write_text(
            "paths:\n"
            f"  raw: [{dirs['raw']}]\n"
            f"  newdata: {dirs['newdata']}\n"
            f"  processed: {dirs['processed']}\n"
            f"  state: {dirs['state']}\n"
            "watch:\n"
            f"  method: {method}\n"
            f"  poll_interval: {poll_interval}\n"
            + (f"  settle: {settle}\n" if settle is not None else "")
            + "  rescan_interval: 60\n"
            "  conpars_grace: 10\n"
            f"workers: {workers}\n"
            "log:\n"
            "  level: info\n"
        )
        return cls(root, dirs["raw"], dirs["newdata"], dirs["processed"], dirs["state"], config)

    @classmethod
    def production(cls, root: Path, channel: str, *, inotify: bool = False, any_port: bool = False) -> Layout:
        """``etc/mods1.yaml`` with its directories moved under ``root``, nothing else changed.

        Each shipped raw directory ``/data/<chan>`` becomes ``root/raw/<chan>``;
        files go into the one of ``channel``.  UDP stays on at the shipped port
        unless another program holds it, or ``any_port`` (smoke runs, which may
        run beside each other): then a free port, said in ``note``.
        ``inotify=True`` is the reference it is compared with: the same file with
        ``watch.method: inotify`` and UDP off, so inotify's close event alone is
        the writer-done signal.  The result is loaded back and compared with the
        shipped configuration, so a setting changed by mistake stops the bench.
        """
        yaml = YAML(typ="rt")
        doc = yaml.load(PRODUCTION_CONFIG.read_text())
        paths = doc["paths"]
        raws = [root / "raw" / Path(str(d)).name for d in paths["raw"]]
        new = {"newdata": root / "newdata", "processed": root / "processed", "state": root / "state"}
        for d in [*raws, *new.values()]:
            d.mkdir(parents=True, exist_ok=True)
        for i, d in enumerate(raws):
            paths["raw"][i] = str(d)
        for key, d in new.items():
            paths[key] = str(d)
        note = ""
        udp = doc["udp"]
        if inotify:
            doc["watch"]["method"] = "inotify"
            udp["enabled"] = False
        elif any_port or not udp_port_free(int(udp["port"])):
            port = free_udp_port()
            why = "a smoke run" if any_port else "it is taken on this machine"
            note = f"UDP port {port} used instead of {udp['port']} ({why})"
            udp["port"] = port
        buf = io.StringIO()
        yaml.dump(doc, buf)
        config = root / "modsingest.yaml"
        config.write_text(buf.getvalue())
        settings = load_config_text(buf.getvalue(), config)
        _check_only_paths_changed(settings, inotify)
        raw = next((d for d in raws if d.name == channel), raws[0])
        listen = settings.udp.port if settings.udp.enabled else None
        return cls(root, raw, new["newdata"], new["processed"], new["state"], config, listen, note)

    def outputs(self, name: str, night: str) -> tuple[Path, Path]:
        return self.processed / night / name, self.newdata / name

    def clear_outputs(self) -> None:
        for d in (self.newdata, self.processed):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True, exist_ok=True)


def _check_only_paths_changed(settings: Any, inotify: bool) -> None:
    """Refuse a rewritten production configuration that differs in more than intended."""
    shipped = load_config_text(PRODUCTION_CONFIG.read_text(), PRODUCTION_CONFIG, require_dirs=False)
    udp = dataclasses.replace(shipped.udp, port=settings.udp.port)
    watch = shipped.watch
    if inotify:
        udp = dataclasses.replace(udp, enabled=False)
        watch = dataclasses.replace(watch, method="inotify")
    expected = dataclasses.replace(
        shipped, paths=settings.paths, udp=udp, watch=watch, source=settings.source
    )
    if settings != expected:
        raise RuntimeError(f"the bench's copy of {PRODUCTION_CONFIG} differs in more than its paths")


class ServiceProcess:
    """``modsingest watch`` as a subprocess: the agent seen as a black box.

    Readiness is the service's own 'ready:' log line; timings come from its
    ledger (read-only; SQLite WAL lets a reader in while the service writes).
    """

    def __init__(self, layout: Layout, label: str):
        self.layout = layout
        self.label = label
        self.log_path = layout.root / f"{label}.log"
        self.proc: subprocess.Popen | None = None
        self._launched = 0.0
        self._db: sqlite3.Connection | None = None

    def start(self, timeout: float = 180.0) -> float:
        """Start and wait until ready; returns the seconds that took."""
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> None:
        """Start the service without waiting (several can then start at once)."""
        self._launched = time.perf_counter()
        with open(self.log_path, "wb") as logf:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                modsingest_cmd() + ["watch", "--config", str(self.layout.config)],
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a ^C at the terminal is the bench's to handle
            )

    def wait_ready(self, timeout: float = 180.0) -> float:
        """Wait for the 'ready:' line; the seconds since launch."""
        assert self.proc is not None
        deadline = self._launched + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.label}: service exited with {self.proc.returncode}:\n" + self.log_tail()
                )
            if b"ready:" in self.log_path.read_bytes():
                return time.perf_counter() - self._launched
            time.sleep(0.02)
        raise RuntimeError(f"{self.label}: service not ready after {timeout:.0f} s:\n" + self.log_tail())

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 40.0) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"{self.label}: did not stop within {timeout:.0f} s; killing pid {self.proc.pid}")
            self.proc.kill()
            self.proc.wait(10)

    # ------------------------------------------------------------------ ledger
    def row(self, path: Path) -> dict[str, Any] | None:
        if self._db is None:
            db_path = self.layout.state / "ledger.sqlite3"
            if not db_path.exists():
                return None
            self._db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
            self._db.row_factory = sqlite3.Row
        r = self._db.execute(
            "SELECT state, seen_at, queued_at, started_at, finished_at, seconds, sources "
            "FROM files WHERE path=? AND current=1",
            (str(path),),
        ).fetchone()
        return dict(r) if r is not None else None

    def wait_delivered(self, path: Path, timeout: float = 20.0) -> dict[str, Any] | None:
        """The ledger row once the dispatcher recorded the outcome (just after .new)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.row(path)
            if r is not None and r["state"] in ("delivered", "failed"):
                return r
            time.sleep(0.005)
        return self.row(path)

    # ------------------------------------------------------------------ processes
    def processes(self) -> list[tuple[int, str]]:
        """The service and every descendant, with a role: main, forkserver, worker, tracker."""
        assert self.proc is not None
        return process_tree(self.proc.pid)


def wait_pointer(pointer: Path, name: str, t0: float, timeout: float) -> float | None:
    """Poll ``<CHAN>.new`` every millisecond until it names ``name``; seconds since t0."""
    want = name.encode()
    deadline = t0 + timeout
    while True:
        with contextlib.suppress(OSError):
            if pointer.read_bytes().strip() == want:
                return time.perf_counter() - t0
        if time.perf_counter() > deadline:
            return None
        time.sleep(0.001)


def agent_once(
    svc: ServiceProcess, template: Path, name: str, night: str, timeout: float = 120.0
) -> dict[str, Any]:
    """Place a raw file as azcam's final pass does, time until ``.new`` names it.

    azcam's second pass is astropy's update mode, which writes the whole file
    under a temporary name, renames it over the final name, copies the old
    file's mode onto it, then re-opens and closes it.  The same here: the file
    is copied under a hidden temporary name (which detection ignores), fsynced,
    dirty pages flushed, renamed into place, chmod-ed, opened for update and
    closed.  That close is t0.  azcam's last act, the ``proc <path on the Archon
    host>`` datagram, follows at once when the layout listens for UDP (its
    sending is inside the timed region).  The ledger then says when the
    service first noticed it (seen_at), when the gate passed it (queued_at),
    when a worker took it (started_at) and how long ``Pipeline.process`` took.
    """
    lay = svc.layout
    final = lay.raw / name
    tmp = lay.raw / f".{name}.bench-tmp"
    copy_durable(template, tmp)
    settle()
    os.rename(tmp, final)
    os.chmod(final, 0o644)
    os.close(os.open(final, os.O_RDWR))
    t0 = time.perf_counter()
    wall0 = time.time()
    if lay.udp_port is not None:
        send_proc(lay.udp_port, f"{ARCHON_DATA_DIR}/{name}")
    latency = wait_pointer(lay.newdata / POINTER, name, t0, timeout)
    row = svc.wait_delivered(final)
    out: dict[str, Any] = {"latency": latency, "row": row}
    if row is not None and row.get("seen_at"):
        out["detect"] = row["seen_at"] - wall0
        if row.get("queued_at"):
            out["gate"] = row["queued_at"] - row["seen_at"]
        if row.get("started_at") and row.get("queued_at"):
            out["dispatch"] = row["started_at"] - row["queued_at"]
        out["process"] = row.get("seconds")
        if latency is not None and row.get("started_at"):
            # from t0 to the worker taking the file, then the worker's processing;
            # what is left is the bench's 1 ms polling, less the bits of
            # Pipeline.process after .new was written (so it can be below 0)
            out["other"] = latency - (row["started_at"] - wall0) - (row.get("seconds") or 0.0)
    unlink_quiet(final, *lay.outputs(name, night))
    return out
