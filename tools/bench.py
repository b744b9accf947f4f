#!/usr/bin/env python3
"""``make bench``: how long observers wait for a processed MODS file, and why.

Observers acquire targets from the files modsingest delivers, so the number that
matters is the time from azcam's last close of a raw file to ``<CHAN>.new``
naming the processed result.  This benchmark measures that with the real service
(``modsingest watch`` as a subprocess), next to the references that give it a
meaning, in one run:

- the byte-copy floor: read the raw file, write the exact bytes of the agent's
  output to the two destinations (streamed, writeback started every 4 MB, the
  fastest plain copy we know), fsync each.  Nothing can be faster than this
  on the machine, so the agent is judged as a multiple of it;
- an ``astropy.io.fits`` implementation of the same rules (decode, compute,
  re-encode with ``checksum=True``): the incumbent's approach, kept here only as
  the baseline the agent must beat by 2x;
- ``Pipeline.process()`` in this process (pure processing, warm) and
  ``modsingest process`` as a cold one-shot (interpreter start-up included);
- the agent's peak RSS (and PSS), the first file after start against the
  rest, detection latency with inotify and with polling, idle CPU, and replay
  throughput of a night with 1 and 2 workers next to the rate at which the
  machine can merely copy that night, file after file and two at a time;
- optionally (``--baseline-src``) a warm ``Pipeline.process`` from another
  source tree, for before/after measurements of a change in the same run.

Why interleaved: the machine is shared and noisy.  Every repetition runs each
alternative once, in a rotated order, so a burst of someone else's load hits
all of them alike; medians over the repetitions are compared, and the spread
(min-max) is printed so noise is visible rather than hidden.

Why every alternative gets a freshly staged raw file and fresh output names,
and ``sync`` before each timed step: the file system must cost the same for
all.  Renaming over an existing 150 MB output frees its blocks inside the timed
region (tens of ms on ext4), and dirty pages left by the previous alternative
would be flushed by the next one's fsync; both would distort one side only.
Old outputs are removed, and dirty data flushed, outside the timed regions.

Everything happens in a scratch directory (default ``bench-out/`` in the repo,
git-ignored) that is removed at the end unless ``--keep``.  Exit status 0 when
every measurement was taken (a missed target is a FAIL in the table, not an
error); 1 when a measurement could not be taken (e.g. the service did not
start); the table is printed either way.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))  # run from a checkout even without the editable install

import numpy as np  # noqa: E402
from astropy.io import fits  # noqa: E402

import modsingest  # noqa: E402
from modsingest import fsutil  # noqa: E402
from modsingest import sim as simulate  # noqa: E402
from modsingest.config import load as load_config  # noqa: E402
from modsingest.fits.frame import Amplifier, Conpars, Frame  # noqa: E402
from modsingest.names import observing_night  # noqa: E402
from modsingest.processing.geometry import MERGED_QUADRANT, readout_from_headers  # noqa: E402
from modsingest.processing.pipeline import Pipeline  # noqa: E402
from modsingest.processing.steps import StepContext, discover, run_steps  # noqa: E402

CHANNEL = "mods1b"
#: The parts of the agent's latency, from its ledger (see agent_once).
PARTS = {
    "detect": "detect (close to first hint)",
    "gate": "gate (first hint to queued)",
    "dispatch": "dispatch (queued to worker)",
    "process": "process (Pipeline.process in the worker)",
    "other": "other (polling; <0: .new before process returned)",
}
POINTER = "MODS1B.new"
MB = 1024 * 1024

#: Targets of the issue: (key, description, comparison, goal).
TARGETS = {
    "latency_vs_floor": ("<=", 1.25),
    "latency_vs_astropy": ("<=", 0.5),
    "latency_cmp_vs_floor": ("<=", 1.25),
    "latency_cmp_vs_astropy": ("<=", 0.5),
    "rss_worker": ("<=", 250.0),
    "pss_total": ("<=", 250.0),
    "first_vs_rest": ("<=", 1.2),
    "replay_scaling": (">=", 1.6),
    "idle_cpu_inotify": ("<=", 1.0),
}


# =========================================================================== small helpers
def log(msg: str) -> None:
    """Progress on stderr, so stdout carries only the results."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def modsingest_cmd() -> list[str]:
    exe = REPO / ".venv" / "bin" / "modsingest"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "modsingest.cli"]


def raw_name(night: str, seq: int) -> str:
    return f"{CHANNEL}.{night}.{seq:04d}.fits"


def copy_durable(src: Path, dst: Path) -> None:
    """Copy and fsync, so staging a raw file leaves no dirty pages for the next timed step."""
    shutil.copyfile(src, dst)
    fsutil.fsync_file(dst)


def settle() -> None:
    """Flush every dirty page outside the timed region (see the module docstring)."""
    os.sync()


def unlink_quiet(*paths: Path) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)


@dataclass
class Series:
    """Samples of one quantity, in seconds (or the unit given)."""

    name: str
    unit: str = "s"
    values: list[float] = field(default_factory=list)

    def add(self, v: float | None) -> None:
        if v is not None:
            self.values.append(float(v))

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    def summary(self) -> dict[str, Any]:
        v = self.values
        return {
            "unit": self.unit,
            "n": len(v),
            "median": self.median,
            "min": min(v) if v else None,
            "max": max(v) if v else None,
            "mean": statistics.fmean(v) if v else None,
            "samples": v,
        }


class Results:
    """Every series, the single facts, the errors; printing and JSON."""

    def __init__(self) -> None:
        self.series: dict[str, Series] = {}
        self.facts: dict[str, Any] = {}
        self.errors: list[str] = []

    def s(self, key: str, label: str, unit: str = "s") -> Series:
        if key not in self.series:
            self.series[key] = Series(label, unit)
        return self.series[key]

    def med(self, key: str) -> float | None:
        s = self.series.get(key)
        return s.median if s else None

    def error(self, where: str, exc: BaseException | str) -> None:
        text = f"{where}: {exc}" if isinstance(exc, str) else f"{where}: {type(exc).__name__}: {exc}"
        self.errors.append(text)
        log("ERROR " + text)
        if isinstance(exc, BaseException):
            traceback.print_exception(exc, file=sys.stderr)


def fmt_s(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v * 1000:.0f} ms" if v < 10 else f"{v:.1f} s"


# =========================================================================== machine
def free_page_reporting() -> bool | None:
    """Whether a virtio balloon hands the guest's free memory back to the host.

    Why it matters: with free page reporting, memory the guest freed a few
    seconds ago is unmapped by the hypervisor, and touching it again costs a
    host fault (measured on the development VM: about 2 s per GiB, charged as
    kernel time of whoever touches it).  Every new page-cache page of an
    output can be such a page, so the cost of writing a file there depends on
    how recently memory was freed: noise that no real telescope computer has.
    None when there is no balloon device to ask.
    """
    found = None
    for dev in Path("/sys/bus/virtio/devices").glob("*"):
        with contextlib.suppress(OSError, ValueError):
            if int((dev / "device").read_text(), 16) != 5:  # 5: memory balloon
                continue
            features = (dev / "features").read_text().strip()
            found = len(features) > 5 and features[5] == "1"  # VIRTIO_BALLOON_F_REPORTING
    return found


def machine_description(workdir: Path) -> dict[str, Any]:
    """What the numbers were measured on: they mean nothing without it."""
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_total = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    fs_type, fs_dev, best = "?", "?", ""
    with contextlib.suppress(OSError):
        target = str(workdir.resolve())
        for line in Path("/proc/mounts").read_text().splitlines():
            dev, mnt, typ = line.split()[:3]
            if (target == mnt or target.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, fs_type, fs_dev = mnt, typ, dev
    commit = "?"
    with contextlib.suppress(Exception):
        commit = (
            subprocess.run(
                ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
            or "?"
        )
    import astropy

    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory": mem_total,
        "bench_dir": str(workdir),
        "filesystem": f"{fs_type} ({fs_dev} on {best})",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "astropy": astropy.__version__,
        "modsingest": modsingest.__version__,
        "commit": commit,
        "loadavg_start": os.getloadavg(),
        "free_page_reporting": free_page_reporting(),
    }


# =========================================================================== layouts and configs
@dataclass
class Layout:
    """One configuration's directories (raw, newdata, processed, state) and its YAML."""

    root: Path
    raw: Path
    newdata: Path
    processed: Path
    state: Path
    config: Path

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

    def outputs(self, name: str, night: str) -> tuple[Path, Path]:
        return self.processed / night / name, self.newdata / name

    def clear_outputs(self) -> None:
        for d in (self.newdata, self.processed):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True, exist_ok=True)


# =========================================================================== the service
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
        self._db: sqlite3.Connection | None = None

    def start(self, timeout: float = 180.0) -> float:
        """Start and wait until ready; returns the seconds that took."""
        logf = open(self.log_path, "wb")  # noqa: SIM115
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            modsingest_cmd() + ["watch", "--config", str(self.layout.config)],
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a ^C at the terminal is the bench's to handle
        )
        logf.close()
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.label}: service exited with {self.proc.returncode}:\n" + self.log_tail()
                )
            if b"ready:" in self.log_path.read_bytes():
                return time.perf_counter() - t0
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


def process_tree(root: int) -> list[tuple[int, str]]:
    """``root`` and its descendants (from /proc), each with a role for the report."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out = [(root, "main")]
    roles = {root: "main"}
    todo = [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            cmd = ""
            with contextlib.suppress(OSError):
                cmd = (
                    Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                )
            if "resource_tracker" in cmd:
                role = "resource tracker"
            elif roles.get(pid) == "forkserver":
                role = "worker"
            elif "forkserver" in cmd:
                role = "forkserver"
            else:
                role = "child"
            roles[child] = role
            out.append((child, role))
            todo.append(child)
    return out


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM/VmRSS (kB) from /proc/<pid>/status, Pss (kB) from smaps_rollup."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(line.split()[1])
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                out["Pss"] = int(line.split()[1])
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) from /proc/<pid>/stat."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


# =========================================================================== the alternatives
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
    closed.  That close, azcam's last act, is t0.  The ledger then says when the
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


#: the floor's write size and early-writeback step when streamed (the agent's own step)
FLOOR_CHUNK = 4 << 20


def floor_once(raw: Path, out_bytes: bytes, dests: list[Path], name: str, streamed: bool = True) -> float:
    """Read the raw file; write the output's exact bytes to each destination; fsync each.

    One thread per destination, as the agent writes its two destinations at
    once: the floor is the best a plain copy can do, so nothing is flattered.
    ``streamed`` (the floor the targets use): written in 4 MB pieces, each
    handed to the disk at once with ``sync_file_range(SYNC_FILE_RANGE_WRITE)``
    so the disk works while the rest is copied, the fastest way to get bytes
    durable that we know (the agent does the same).  Not streamed: one
    ``write`` of everything, then ``fsync`` (the naive copy, for reference).
    No temporary names, renames or directory fsyncs: those are the agent's own
    costs, part of what the ratio shows.
    """
    errors: list[BaseException] = []
    step = FLOOR_CHUNK if streamed else len(out_bytes)

    def put(path: Path) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(out_bytes)
                done = 0
                while done < len(view):
                    start = done
                    done += os.write(fd, view[done : done + step])
                    if streamed:
                        fsutil.start_writeback(fd, start, done - start)  # the agent's writers' call
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    t0 = time.perf_counter()
    with open(raw, "rb") as fh:
        data = fh.read()
    threads = [threading.Thread(target=put, args=(d / name,)) for d in dests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    del data
    if errors:
        raise errors[0]
    return elapsed


# --------------------------------------------------------------------------- another source tree
_HELPER = r"""
import json, sys
import modsingest
from modsingest.config import load
from modsingest.processing.pipeline import Pipeline
pipeline = Pipeline(load(sys.argv[1]))
print(json.dumps({"ready": modsingest.__file__}), flush=True)
for line in sys.stdin:
    r = pipeline.process(line.strip())
    print(json.dumps({"ok": r.ok, "seconds": r.seconds, "error": r.error}), flush=True)
"""


class OtherTree:
    """A warm ``Pipeline`` from another source tree, in a helper process.

    Why: an optimisation must be measured before/after in the same run, on the
    same files, under the same machine noise.  ``--baseline-src DIR`` (e.g. a
    copy of ``src/`` taken before a change) puts DIR first on the helper's
    ``sys.path``; its ``Pipeline.process`` then joins the rotation next to this
    tree's.
    """

    def __init__(self, src: Path, config: Path):
        env = dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _HELPER, str(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        ready = json.loads(self.proc.stdout.readline() or "{}")
        where = str(ready.get("ready", ""))
        if not where.startswith(str(src)):
            self.close()
            raise RuntimeError(f"the helper imported modsingest from {where or '?'}, not from {src}")

    def process(self, path: Path) -> float:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(f"{path}\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline() or "{}")
        if not answer.get("ok"):
            raise RuntimeError(f"baseline tree: {answer.get('error', 'no answer')}")
        return float(answer["seconds"])

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()  # type: ignore[union-attr]
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# --------------------------------------------------------------------------- astropy baseline
class AstropyBaseline:
    """The incumbent's way: astropy decodes everything, numpy merges, astropy re-encodes.

    Header rules: modsingest's own header-only steps (geometry, timestamps,
    temperatures, archive) run on the astropy headers, so both sides do the same
    header work and the comparison is about the data path.  MERGED is computed
    with plain numpy from processing.md's rule (median/std of the overscan,
    subtract, flip and place, float32), the HDUList gets MERGED at index 6, and
    ``writeto(checksum=True)`` writes each destination, which is fsynced.
    """

    HEADER_STEPS = ("geometry", "timestamps", "temperatures", "archive")

    def __init__(self) -> None:
        self.registry = discover()

    def process(self, raw: Path, dests: list[Path], name: str) -> float:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(raw) as hdul:
                primary = hdul[0].header
                amps = [hdul[i] for i in range(1, 5)]
                datas = [h.data for h in amps]
                table = hdul["CONPARS"]
                rows = {
                    str(k).strip(): str(v).strip() for k, v in zip(table.data["Keyword"], table.data["Value"])
                }
                frame = Frame(
                    path=raw,
                    primary=primary,
                    amps=[
                        Amplifier(i + 1, h.header, memoryview(b""), d.shape, 16)
                        for i, (h, d) in enumerate(zip(amps, datas))
                    ],
                    conpars=Conpars(table.header, memoryview(b""), rows),
                )
                run_steps(frame, self.HEADER_STEPS, StepContext(source_name=raw.name), self.registry)
                merged, mheader = self.merged(frame, datas)
                out = fits.HDUList(
                    [fits.PrimaryHDU(header=primary)]
                    + [fits.ImageHDU(data=d, header=h.header) for h, d in zip(amps, datas)]
                    + [fits.BinTableHDU(data=table.data, header=table.header)]
                    + [fits.ImageHDU(data=merged, header=mheader)]
                )
                for d in dests:
                    with open(d / name, "wb") as fh:
                        out.writeto(fh, checksum=True)
                        fh.flush()
                        os.fsync(fh.fileno())
        return time.perf_counter() - t0

    @staticmethod
    def merged(frame: Frame, datas: list[np.ndarray]) -> tuple[np.ndarray, fits.Header]:
        readout, _ = readout_from_headers(frame.primary, [a.header for a in frame.amps])
        ny, nd = readout.rows, readout.data_cols
        merged = np.empty((2 * ny, 2 * nd), dtype=np.float32)
        h = fits.Header()
        h["EXTNAME"] = "MERGED"
        for card in frame.primary.cards:
            if card.keyword in (
                "SIMPLE",
                "BITPIX",
                "NAXIS",
                "EXTEND",
                "NEXTEND",
                "CHECKSUM",
                "DATASUM",
                "BZERO",
                "BSCALE",
            ) or card.keyword.startswith("NAXIS"):
                continue
            h.append(card, end=True)
        h["BUNIT"] = ("ADU", "bias-subtracted counts")
        for amp, data in zip(frame.amps, datas):
            nx = data.shape[1]
            region = data[2 : ny - 2, nd + 2 : nx].astype(np.float64)
            bias, noise = float(np.median(region)), float(np.std(region))
            quad = MERGED_QUADRANT[amp.number]
            h[f"Q{quad}BIAS"] = (bias, f"Q{quad} median overscan bias [DN] ({amp.extname})")
            h[f"Q{quad}STD"] = (noise, f"Q{quad} overscan bias stdev [DN] ({amp.extname})")
            piece = (data[:, :nd].astype(np.float64) - bias).astype(np.float32)[::-1]
            if amp.number in (2, 4):
                piece = piece[:, ::-1]
            rows = slice(0, ny) if quad in (1, 2) else slice(ny, 2 * ny)
            cols = slice(0, nd) if quad in (1, 3) else slice(nd, 2 * nd)
            merged[rows, cols] = piece
        section = readout.merged_section()
        for key, value in section.wcs_cards().items():
            h[key] = (value, "MERGED to CCD transformation")
        h["CCDSEC"] = (str(section), "CCD section of MERGED (rows run in -y)")
        return merged, h


def same_data(a: Path, b: Path) -> list[str]:
    """Differences between the data of two outputs (HDUs 1..6), for the baseline check."""
    problems = []
    with fits.open(a) as x, fits.open(b) as y:
        if len(x) != len(y):
            return [f"{len(x)} HDUs against {len(y)}"]
        for i in range(1, len(x)):
            if x[i].name != y[i].name:
                problems.append(f"HDU {i}: {x[i].name} against {y[i].name}")
            elif x[i].name == "CONPARS":
                if x[i].data.tobytes() != y[i].data.tobytes():
                    problems.append("CONPARS rows differ")
            elif not np.array_equal(
                np.asarray(x[i].data).view(np.uint8),
                np.asarray(y[i].data).astype(x[i].data.dtype).view(np.uint8),
            ):
                problems.append(f"HDU {i} ({x[i].name}) data differ")
    return problems


# =========================================================================== the run
class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.r = Results()
        self.seq = 0
        self.night = observing_night(time.time())
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.work = (Path(args.workdir) / f"run-{stamp}-{os.getpid()}").resolve()
        self.services: list[ServiceProcess] = []

    def next_name(self) -> str:
        self.seq += 1
        return raw_name(self.night, self.seq)

    # ------------------------------------------------------------------ set-up
    def setup(self) -> None:
        a = self.args
        self.work.mkdir(parents=True)
        self.r.facts["machine"] = machine_description(self.work)
        self.r.facts["parameters"] = {
            "reps_full": a.reps,
            "reps_3k": a.reps_3k,
            "night_files": a.night_files,
            "replay_rounds": a.replay_rounds,
            "idle_seconds": a.idle_seconds,
            "poll_interval": a.poll_interval,
            "settle": a.settle,
            "compare_settle": a.compare_settle,
            "quick": a.quick,
            "argv": sys.argv[1:],
        }
        self.templates = self.work / "templates"
        self.templates.mkdir()
        self.stage = self.work / "stage"
        self.stage.mkdir()
        self.tpl: dict[str, Path] = {}
        for roi in ("full", "3k"):
            t0 = time.perf_counter()
            spec = simulate.ExposureSpec(channel=CHANNEL, date=self.night, seq=1, roi=roi)
            (self.templates / roi).mkdir()
            path = simulate.write(spec, self.templates / roi, two_pass=True)
            self.tpl[roi] = path
            log(
                f"simulated a {roi} raw file ({path.stat().st_size / MB:.1f} MB) "
                f"in {time.perf_counter() - t0:.1f} s"
            )
        # One layout for everything run in this process or as a one-shot: the
        # floor, the astropy baseline, Pipeline.process and `modsingest process`.
        self.local = Layout.make(self.work / "local", poll_interval=a.poll_interval)
        self.local_dests = [self.local.processed / self.night, self.local.newdata]
        self.local_dests[0].mkdir(parents=True, exist_ok=True)
        self.pipeline = Pipeline(load_config(self.local.config))
        self.astropy = AstropyBaseline()
        self.other: OtherTree | None = None
        if self.args.baseline_src:
            self.other = OtherTree(Path(self.args.baseline_src).resolve(), self.local.config)
            self.r.facts["baseline_src"] = str(Path(self.args.baseline_src).resolve())
            log(f"baseline tree {self.args.baseline_src} ready in a helper process")
        # The floor writes the agent's output bytes: take them from a real output.
        self.out_bytes: dict[str, bytes] = {}
        for roi, tpl in self.tpl.items():
            name = self.next_name()
            raw = self.local.raw / name
            copy_durable(tpl, raw)
            res = self.pipeline.process(raw)
            if not res.ok:
                raise RuntimeError(f"Pipeline.process failed on the {roi} template: {res.error}")
            out = self.local.outputs(name, self.night)
            self.out_bytes[roi] = out[1].read_bytes()
            # the baseline must do the same work: check its output against the agent's
            self.astropy.process(raw, [self.stage], name)
            problems = same_data(out[1], self.stage / name)
            self.r.facts[f"astropy_check_{roi}"] = problems or "identical data in HDUs 1-6"
            if problems:
                self.r.error(
                    f"astropy baseline ({roi})", "output differs from the agent's: " + "; ".join(problems)
                )
            else:
                log(f"astropy baseline output checked ({roi}): data of HDUs 1-6 identical to the agent's")
            unlink_quiet(raw, *out, self.stage / name)
            self.r.facts[f"output_mb_{roi}"] = len(self.out_bytes[roi]) / MB
            self.r.facts[f"raw_mb_{roi}"] = tpl.stat().st_size / MB

    def stage_local(self, roi: str) -> tuple[Path, str]:
        """A fresh raw copy with a fresh name for one timed alternative."""
        name = self.next_name()
        raw = self.local.raw / name
        copy_durable(self.tpl[roi], raw)
        settle()
        return raw, name

    def done_local(self, raw: Path, name: str) -> None:
        unlink_quiet(raw, *self.local.outputs(name, self.night), *[d / name for d in self.local_dests])

    # ------------------------------------------------------------------ alternatives run locally
    def run_floor(self, roi: str, streamed: bool = True) -> None:
        raw, name = self.stage_local(roi)
        key, label = (
            (f"floor_{roi}", f"byte-copy floor ({roi})")
            if streamed
            else (f"floor_plain_{roi}", f"byte-copy, one write + fsync, not streamed ({roi})")
        )
        try:
            self.r.s(key, label).add(floor_once(raw, self.out_bytes[roi], self.local_dests, name, streamed))
        finally:
            self.done_local(raw, name)

    def run_astropy(self, roi: str) -> None:
        raw, name = self.stage_local(roi)
        try:
            self.r.s(f"astropy_{roi}", f"astropy.io.fits baseline ({roi})").add(
                self.astropy.process(raw, self.local_dests, name)
            )
        finally:
            self.done_local(raw, name)

    def run_inproc(self, roi: str) -> None:
        raw, name = self.stage_local(roi)
        try:
            t0 = time.perf_counter()
            res = self.pipeline.process(raw)
            elapsed = time.perf_counter() - t0
            if not res.ok:
                raise RuntimeError(res.error)
            self.r.s(f"inproc_{roi}", f"Pipeline.process, warm, in-process ({roi})").add(elapsed)
            for k, v in res.timings.items():
                self.r.s(f"inproc_{roi}_{k}", f"  of which {k}").add(v)
        finally:
            self.done_local(raw, name)

    def run_other(self, roi: str) -> None:
        assert self.other is not None
        raw, name = self.stage_local(roi)
        try:
            self.r.s(f"other_{roi}", f"Pipeline.process, warm, baseline tree ({roi})").add(
                self.other.process(raw)
            )
        finally:
            self.done_local(raw, name)

    def run_cold(self, roi: str) -> None:
        raw, name = self.stage_local(roi)
        try:
            t0 = time.perf_counter()
            done = subprocess.run(
                modsingest_cmd() + ["process", "--config", str(self.local.config), "-q", str(raw)],
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
            )
            elapsed = time.perf_counter() - t0
            if done.returncode != 0:
                raise RuntimeError(f"modsingest process exited {done.returncode}: {done.stderr[-500:]}")
            self.r.s(f"cold_{roi}", f"modsingest process, cold one-shot ({roi})").add(elapsed)
        finally:
            self.done_local(raw, name)

    def run_agent(self, svc: ServiceProcess, key: str, label: str, roi: str) -> dict[str, Any]:
        got = agent_once(svc, self.tpl[roi], self.next_name(), self.night)
        if got["latency"] is None:
            raise RuntimeError(
                f"{svc.label}: .new did not name the file within the timeout; "
                f"ledger row {got.get('row')}\n{svc.log_tail()}"
            )
        self.r.s(key, label).add(got["latency"])
        for part, what in PARTS.items():
            self.r.s(f"{key}_{part}", f"  {what}").add(got.get(part))
        return got

    def run_fresh_first(self) -> None:
        """A service started afresh, its first file, stopped: one sample of "first file".

        One first file per run would be a single sample of a disk whose speed
        varies by tens of percent from one file to the next; a fresh service in
        every repetition gives as many samples as the warm files have.
        """
        self.seq_fresh = getattr(self, "seq_fresh", 0) + 1
        lay = Layout.make(
            self.work / f"svc-fresh-{self.seq_fresh}",
            method="inotify",
            workers=1,
            poll_interval=self.args.poll_interval,
            settle=self.args.settle,
        )
        svc = ServiceProcess(lay, f"fresh-{self.seq_fresh}")
        self.services.append(svc)
        try:
            svc.start()
            self.run_agent(svc, "first_full", "first file after start (full, main)", "full")
        finally:
            svc.stop()
            self.services.remove(svc)
            shutil.rmtree(lay.root, ignore_errors=True)

    def rotate(self, reps: int, alternatives: list[tuple[str, Callable[[], Any]]]) -> None:
        """Each repetition runs every alternative once, the order rotated by one each time."""
        for rep in range(reps):
            order = alternatives[rep % len(alternatives) :] + alternatives[: rep % len(alternatives)]
            log(f"repetition {rep + 1}/{reps}: " + ", ".join(n for n, _ in order))
            for label, fn in order:
                try:
                    fn()
                except Exception as exc:
                    self.r.error(f"{label} (repetition {rep + 1})", exc)

    def start_service(self, label: str, layout: Layout) -> ServiceProcess:
        svc = ServiceProcess(layout, label)
        self.services.append(svc)
        seconds = svc.start()
        self.r.facts[f"start_seconds_{label}"] = seconds
        log(f"service {label} ready in {seconds:.1f} s (pid {svc.proc.pid})")
        return svc

    # ------------------------------------------------------------------ phase A: full frames
    def phase_full(self) -> None:
        """Full frames: floor, agent(s), astropy, in-process, cold one-shot, in rotation.

        The agent runs with the shipped watch settings (``--settle`` overrides
        the stability window).  With ``--compare-settle S`` a second service
        with ``watch.settle: S`` runs alongside (each idle while the other
        works): the gate waits one settle time for its second look, so the pair
        shows what that setting costs observers.
        """
        a = self.args
        svcs: dict[str, ServiceProcess] = {}
        wanted: list[tuple[str, float | None]] = [("main", a.settle)]
        if a.compare_settle:
            wanted.append(("compare", a.compare_settle))
        for which, settle in wanted:
            lay = Layout.make(
                self.work / f"svc-full-{which}",
                method="inotify",
                workers=1,
                poll_interval=a.poll_interval,
                settle=settle,
            )
            try:
                self.r.facts[f"settle_{which}"] = self.settle_of(lay)
                svcs[which] = self.start_service(f"inotify-full-{which}", lay)
            except Exception as exc:
                self.r.error(f"starting the service (full frames, {which})", exc)
        # The first file after start, before anything else has used the service.
        for which, svc in svcs.items():
            try:
                key = "first_full" if which == "main" else "first_full_compare"
                first = self.run_agent(svc, key, f"first file after start (full, {which})", "full")
                if which == "main":
                    self.r.facts["first_file"] = {k: v for k, v in first.items() if k != "row"}
            except Exception as exc:
                self.r.error(f"first file after start ({which})", exc)
        alts: list[tuple[str, Callable[[], Any]]] = [
            ("floor", lambda: self.run_floor("full")),
            ("plain copy", lambda: self.run_floor("full", streamed=False)),
            ("astropy", lambda: self.run_astropy("full")),
            ("in-process", lambda: self.run_inproc("full")),
            ("cold one-shot", lambda: self.run_cold("full")),
        ]
        if self.other is not None:
            alts.insert(3, ("baseline tree", lambda: self.run_other("full")))
        if "main" in svcs:
            alts.append(("fresh service's first file", self.run_fresh_first))
            alts.insert(
                1,
                (
                    "agent",
                    lambda: self.run_agent(
                        svcs["main"],
                        "agent_full",
                        f"agent latency, warm, inotify, settle {self.r.facts['settle_main']:g} s (full)",
                        "full",
                    ),
                ),
            )
        if "compare" in svcs:
            alts.insert(
                3,
                (
                    "agent, other settle",
                    lambda: self.run_agent(
                        svcs["compare"],
                        "agent_full_compare",
                        f"agent latency, warm, inotify, settle {a.compare_settle:g} s (full)",
                        "full",
                    ),
                ),
            )
        self.rotate(a.reps, alts)
        if "compare" in svcs:
            svcs["compare"].stop()
        if "main" in svcs:
            try:
                self.memory(svcs["main"])
            except Exception as exc:
                self.r.error("memory of the agent", exc)
            svcs["main"].stop()

    @staticmethod
    def settle_of(lay: Layout) -> float:
        """The gate's stability window the service will use (older trees: the poll interval)."""
        watch = load_config(lay.config).watch
        return float(getattr(watch, "settle", watch.poll_interval))

    def memory(self, svc: ServiceProcess) -> None:
        """Peak RSS (VmHWM) of each of the service's processes after the full frames.

        The worker is forked from a fork server that holds the warmed astropy
        state, so their RSS share most pages and a sum of peaks counts those
        twice.  So the total is also taken as PSS (each shared page split
        between its users), summed over the processes and sampled every 10 ms
        while the service processes one more full frame (untimed).
        """
        pids = [pid for pid, _ in svc.processes()]
        peak = [0.0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                total = sum(proc_status(pid).get("Pss", 0) for pid in pids) / 1024
                peak[0] = max(peak[0], total)
                stop.wait(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            agent_once(svc, self.tpl["full"], self.next_name(), self.night)
        finally:
            stop.set()
            sampler.join()
        self.r.facts["pss_peak_total_mb"] = peak[0]
        procs = []
        for pid, role in svc.processes():
            st = proc_status(pid)
            if st:
                procs.append(
                    {
                        "pid": pid,
                        "role": role,
                        "hwm_mb": st.get("VmHWM", 0) / 1024,
                        "rss_mb": st.get("VmRSS", 0) / 1024,
                        "pss_mb": st.get("Pss", 0) / 1024,
                    }
                )
        self.r.facts["memory"] = procs
        workers = [p["hwm_mb"] for p in procs if p["role"] == "worker"]
        self.r.facts["rss_worker_mb"] = max(workers) if workers else None
        self.r.facts["rss_total_mb"] = sum(p["hwm_mb"] for p in procs) if procs else None
        self.r.facts["pss_total_mb"] = sum(p["pss_mb"] for p in procs) if procs else None

    # ------------------------------------------------------------------ phase B: 3k, detection, idle
    def phase_3k(self) -> None:
        a = self.args
        services: dict[str, ServiceProcess] = {}
        for method in ("inotify", "poll"):
            lay = Layout.make(
                self.work / f"svc-{method}",
                method=method,
                workers=1,
                poll_interval=a.poll_interval,
                settle=a.settle,
            )
            try:
                services[method] = self.start_service(f"{method}-3k", lay)
            except Exception as exc:
                self.r.error(f"starting the service ({method})", exc)
        alts: list[tuple[str, Callable[[], Any]]] = [
            ("floor", lambda: self.run_floor("3k")),
            ("in-process", lambda: self.run_inproc("3k")),
            ("astropy", lambda: self.run_astropy("3k")),
        ]
        if self.other is not None:
            alts.append(("baseline tree", lambda: self.run_other("3k")))
        for method, svc in services.items():
            alts.insert(
                1,
                (
                    f"agent {method}",
                    lambda svc=svc, m=method: self.run_agent(
                        svc, f"agent_3k_{m}", f"agent latency, warm, {m} (3k)", "3k"
                    ),
                ),
            )
        self.rotate(a.reps_3k, alts)
        if services:
            self.idle(services)
        for svc in services.values():
            svc.stop()

    def idle(self, services: dict[str, ServiceProcess]) -> None:
        """CPU used by each idle service (all its processes) over a quiet window."""
        time.sleep(2.0)  # let the last file's bookkeeping finish
        pids = {m: [p for p, _ in svc.processes()] for m, svc in services.items()}
        before = {m: sum(cpu_seconds(p) for p in ps) for m, ps in pids.items()}
        t0 = time.monotonic()
        time.sleep(self.args.idle_seconds)
        wall = time.monotonic() - t0
        for m, ps in pids.items():
            used = sum(cpu_seconds(p) for p in ps) - before[m]
            self.r.facts[f"idle_cpu_{m}_pct"] = 100.0 * used / wall
        self.r.facts["idle_window_s"] = round(wall, 1)

    # ------------------------------------------------------------------ phase C: replay
    def make_night(self) -> tuple[Path, str, int]:
        """A night of 3k-ROI exposures from the simulator, in two parallel halves."""
        n = self.args.night_files
        night_raw = self.work / "night-raw"
        night_raw.mkdir()
        night = (datetime.strptime(self.night, "%Y%m%d") - timedelta(days=1)).strftime("%Y%m%d")
        first = simulate.ExposureSpec(channel=CHANNEL, date=night, roi="3k", exptime=60.0)
        cadence = first.exptime + simulate.SHUTTER_DELAY + simulate.readout_seconds(first.region)
        half = (n + 1) // 2
        t0 = time.perf_counter()
        procs = []
        for seq, count in ((1, half), (half + 1, n - half)):
            if count <= 0:
                continue
            start = first.utc_start + timedelta(seconds=(seq - 1) * cadence)
            procs.append(
                subprocess.Popen(
                    modsingest_cmd()
                    + [
                        "simulate",
                        "--out",
                        str(night_raw),
                        "--channel",
                        CHANNEL,
                        "--roi",
                        "3k",
                        "--date",
                        night,
                        "--start",
                        start.isoformat(),
                        "--seq",
                        str(seq),
                        "--count",
                        str(count),
                        "--exptime",
                        "60",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    stdin=subprocess.DEVNULL,
                )
            )
        for p in procs:
            _, err = p.communicate()
            if p.returncode != 0:
                raise RuntimeError(f"simulate failed: {err.decode(errors='replace')[-500:]}")
        made = len(list(night_raw.glob("*.fits")))
        log(f"simulated a night of {made} 3k-ROI files in {time.perf_counter() - t0:.0f} s")
        return night_raw, night, made

    def phase_replay(self) -> None:
        a = self.args
        try:
            night_raw, night, n = self.make_night()
        except Exception as exc:
            self.r.error("simulating the replay night", exc)
            return
        self.r.facts["replay_files"] = n
        # copy-only nights (1 and 2 copiers), 1 worker, 2 workers; the order
        # reversed every other round, so a drift in machine load favours none
        steps: list[tuple[str, int]] = [("copy", 1), ("copy", 2), ("replay", 1), ("replay", 2)]
        order: list[tuple[str, int]] = []
        for rnd in range(a.replay_rounds):
            order += steps if rnd % 2 == 0 else steps[::-1]
        for i, (what, count) in enumerate(order):
            try:
                if what == "copy":
                    self.copy_night(night_raw, count)
                else:
                    self.replay_once(night_raw, night, n, count, i)
            except Exception as exc:
                self.r.error(
                    f"replay with {count} worker(s)"
                    if what == "replay"
                    else f"copy-only night, {count} copier(s)",
                    exc,
                )

    def copy_night(self, night_raw: Path, copiers: int = 1) -> None:
        """The byte-copy floor applied to every file of the night, by ``copiers`` at a time.

        Why: replay writes about 110 MB per 3k file; over a night that is
        gigabytes, and a disk sustains less than it takes in one burst.  One
        copier is the rate at which the machine can merely copy the night file
        after file; two (each taking the next file as it finishes, like two
        workers) show how much the disk gains from a second stream.  Together
        they say whether the workers or the machine set the replay rate.
        """
        dest = self.work / f"copy-night-{copiers}"
        dests = [dest / "processed", dest / "newdata"]
        for d in dests:
            d.mkdir(parents=True)
        files = sorted(night_raw.glob("*.fits"))
        todo = list(files)
        lock = threading.Lock()
        errors: list[BaseException] = []

        def copier() -> None:
            while True:
                with lock:
                    if not todo or errors:
                        return
                    f = todo.pop(0)
                try:
                    floor_once(f, self.out_bytes["3k"], dests, f.name)
                except BaseException as exc:  # reported below
                    errors.append(exc)

        settle()
        log(f"copy-only night of {len(files)} files, {copiers} at a time")
        t0 = time.perf_counter()
        threads = [threading.Thread(target=copier) for _ in range(copiers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        shutil.rmtree(dest, ignore_errors=True)
        if errors:
            raise errors[0]
        self.r.s(
            f"copy_night_{copiers}",
            f"copy-only night, {copiers} copier(s): files/s (byte-copy floor)",
            "files/s",
        ).add(len(files) / wall)
        log(f"  {len(files) / wall:.2f} files/s")

    def replay_once(self, night_raw: Path, night: str, n: int, workers: int, i: int) -> None:
        lay = Layout.make(
            self.work / f"replay-{i}-w{workers}",
            raw=night_raw,
            workers=workers,
            poll_interval=self.args.poll_interval,
            settle=self.args.settle,
        )
        settle()
        log(f"replay of {n} files with {workers} worker(s)")
        logf = open(lay.root / "replay.log", "wb")  # noqa: SIM115
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            modsingest_cmd() + ["replay", "--config", str(lay.config), "--night", night],
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        # CPU of the whole replay tree (main, fork server, workers), sampled
        # from /proc while it runs: workers may exit unseen by our rusage
        cpu: dict[int, float] = {}
        while proc.poll() is None:
            for pid, _ in process_tree(proc.pid):
                cpu[pid] = max(cpu.get(pid, 0.0), cpu_seconds(pid))
            time.sleep(0.2)
        wall = time.perf_counter() - t0
        logf.close()
        done = proc
        self.r.s(
            f"replay_w{workers}_cpu", f"replay, {workers} worker(s): CPU / wall (cores busy)", "cores"
        ).add(sum(cpu.values()) / wall)
        if done.returncode != 0:
            tail = (lay.root / "replay.log").read_text(errors="replace")[-1500:]
            raise RuntimeError(f"modsingest replay exited {done.returncode}:\n{tail}")
        db = sqlite3.connect(f"file:{lay.state / 'ledger.sqlite3'}?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT started_at, finished_at FROM files WHERE state='delivered' AND current=1"
            ).fetchall()
        finally:
            db.close()
        if len(rows) != n:
            raise RuntimeError(f"replay delivered {len(rows)} of {n} files")
        span = max(r[1] for r in rows) - min(r[0] for r in rows)
        self.r.s(
            f"replay_w{workers}_wall", f"replay, {workers} worker(s): files/s (wall clock)", "files/s"
        ).add(n / wall)
        self.r.s(
            f"replay_w{workers}_span",
            f"replay, {workers} worker(s): files/s (first start to last finish)",
            "files/s",
        ).add(n / span)
        log(f"  {n / wall:.2f} files/s wall clock ({wall:.1f} s), {n / span:.2f} files/s processing")
        lay.clear_outputs()
        shutil.rmtree(lay.root, ignore_errors=True)

    # ------------------------------------------------------------------ all
    def run(self) -> int:
        try:
            self.setup()
            log(f"phase A: full frames, {self.args.reps} repetitions")
            self.phase_full()
            log(f"phase B: 3k ROI, inotify and poll services, {self.args.reps_3k} repetitions")
            self.phase_3k()
            log("phase C: replay throughput")
            self.phase_replay()
        except KeyboardInterrupt:
            self.r.error("bench", "interrupted")
        except Exception as exc:
            self.r.error("bench", exc)
        finally:
            for svc in self.services:
                with contextlib.suppress(Exception):
                    svc.stop()
            if getattr(self, "other", None) is not None:
                self.other.close()
            self.r.facts.setdefault("machine", {})["loadavg_end"] = os.getloadavg()
            if self.args.keep:
                log(f"kept {self.work}")
            else:
                shutil.rmtree(self.work, ignore_errors=True)
        report = Report(self.r)
        report.print()
        if self.args.json:
            Path(self.args.json).write_text(json.dumps(report.as_json(), indent=2, default=str) + "\n")
            log(f"results written to {self.args.json}")
        return 1 if self.r.errors else 0


# =========================================================================== the report
class Report:
    def __init__(self, r: Results):
        self.r = r
        self.rows: list[dict[str, Any]] = []

    def ratio(self, a: str, b: str) -> float | None:
        x, y = self.r.med(a), self.r.med(b)
        return x / y if x is not None and y else None

    def target(self, key: str, label: str, value: float | None, fmt: str) -> None:
        op, goal = TARGETS[key]
        if value is None:
            verdict = "n/a"
        else:
            ok = value <= goal if op == "<=" else value >= goal
            verdict = "PASS" if ok else "FAIL"
        self.rows.append(
            {
                "key": key,
                "label": label,
                "value": value,
                "goal": f"{op} {goal:g}",
                "verdict": verdict,
                "fmt": fmt,
            }
        )

    def info(self, key: str, label: str, value: float | None, fmt: str) -> None:
        self.rows.append({"key": key, "label": label, "value": value, "goal": "", "verdict": "", "fmt": fmt})

    def build(self) -> None:
        r, f = self.r, self.r.facts
        p = f.get("parameters", {})
        main, other = f.get("settle_main") or 0.0, p.get("compare_settle") or 0.0
        self.target(
            "latency_vs_floor",
            f"agent latency / byte-copy floor (full, settle {main:g} s)",
            self.ratio("agent_full", "floor_full"),
            "{:.2f}x",
        )
        self.target(
            "latency_vs_astropy",
            f"agent latency / astropy baseline (full, settle {main:g} s)",
            self.ratio("agent_full", "astropy_full"),
            "{:.2f}x",
        )
        if r.med("agent_full_compare") is not None:
            self.target(
                "latency_cmp_vs_floor",
                f"agent latency / byte-copy floor (full, settle {other:g} s)",
                self.ratio("agent_full_compare", "floor_full"),
                "{:.2f}x",
            )
            self.target(
                "latency_cmp_vs_astropy",
                f"agent latency / astropy baseline (full, settle {other:g} s)",
                self.ratio("agent_full_compare", "astropy_full"),
                "{:.2f}x",
            )
        gate, lat = r.med("agent_full_gate"), r.med("agent_full")
        if gate is not None and lat is not None and r.med("floor_full"):
            self.info(
                "latency_minus_gate_vs_floor",
                "  (agent latency - gate wait) / floor",
                (lat - gate) / r.med("floor_full"),
                "{:.2f}x",
            )
        self.info(
            "worker_vs_floor",
            "agent's Pipeline.process in the worker / floor (full)",
            self.ratio("agent_full_process", "floor_full"),
            "{:.2f}x",
        )
        self.info(
            "inproc_vs_floor",
            "Pipeline.process (warm) / floor (full)",
            self.ratio("inproc_full", "floor_full"),
            "{:.2f}x",
        )
        if r.med("other_full") is not None:
            self.info(
                "inproc_vs_other",
                "Pipeline.process, this tree / baseline tree (full)",
                self.ratio("inproc_full", "other_full"),
                "{:.2f}x",
            )
            self.info(
                "inproc_vs_other_3k",
                "Pipeline.process, this tree / baseline tree (3k)",
                self.ratio("inproc_3k", "other_3k"),
                "{:.2f}x",
            )
        self.info(
            "inproc_vs_astropy",
            "Pipeline.process (warm) / astropy baseline (full)",
            self.ratio("inproc_full", "astropy_full"),
            "{:.2f}x",
        )
        self.info(
            "plain_vs_floor",
            "plain copy (one write + fsync) / floor (full)",
            self.ratio("floor_plain_full", "floor_full"),
            "{:.2f}x",
        )
        self.info(
            "astropy_vs_floor",
            "astropy baseline / floor (full)",
            self.ratio("astropy_full", "floor_full"),
            "{:.2f}x",
        )
        self.info(
            "cold_vs_inproc",
            "cold one-shot / warm Pipeline.process (full)",
            self.ratio("cold_full", "inproc_full"),
            "{:.2f}x",
        )
        self.info(
            "agent3k_vs_floor",
            "agent latency / floor (3k, inotify)",
            self.ratio("agent_3k_inotify", "floor_3k"),
            "{:.2f}x",
        )
        self.info(
            "inproc3k_vs_floor",
            "Pipeline.process (warm) / floor (3k)",
            self.ratio("inproc_3k", "floor_3k"),
            "{:.2f}x",
        )
        self.target("rss_worker", "peak RSS of the worker (MB)", f.get("rss_worker_mb"), "{:.0f}")
        self.target(
            "pss_total", "peak PSS, sum over the agent's processes (MB)", f.get("pss_peak_total_mb"), "{:.0f}"
        )
        self.info(
            "rss_total",
            "  sum of the processes' peak RSS (shared pages twice)",
            f.get("rss_total_mb"),
            "{:.0f}",
        )
        first = r.med("first_full")
        rest = r.med("agent_full")
        self.target(
            "first_vs_rest",
            "first file after start / median of the rest (latency)",
            first / rest if first and rest else None,
            "{:.2f}x",
        )
        fp, rp = r.med("first_full_process"), r.med("agent_full_process")
        self.info(
            "first_vs_rest_process",
            "  same, worker processing time only",
            fp / rp if fp and rp else None,
            "{:.2f}x",
        )
        self.target(
            "replay_scaling",
            "replay throughput, 2 workers / 1 (processing span)",
            self.ratio("replay_w2_span", "replay_w1_span"),
            "{:.2f}x",
        )
        self.info(
            "replay_scaling_wall",
            "  same, wall clock of `modsingest replay`",
            self.ratio("replay_w2_wall", "replay_w1_wall"),
            "{:.2f}x",
        )
        self.info(
            "copy_scaling",
            "  the machine's own: copy-only night, 2 copiers / 1",
            self.ratio("copy_night_2", "copy_night_1"),
            "{:.2f}x",
        )
        for w in (1, 2):
            self.info(
                f"replay_w{w}_vs_copy",
                f"  replay, {w} worker(s) / copy-only night with {w} copier(s) (files/s)",
                self.ratio(f"replay_w{w}_span", f"copy_night_{w}"),
                "{:.2f}x",
            )
            self.info(
                f"replay_w{w}_cpu",
                f"  replay, {w} worker(s): cores busy (CPU s / wall s)",
                r.med(f"replay_w{w}_cpu"),
                "{:.2f}",
            )
        self.target(
            "idle_cpu_inotify",
            "idle CPU, inotify mode (% of one core)",
            f.get("idle_cpu_inotify_pct"),
            "{:.2f}",
        )
        self.info(
            "idle_cpu_poll", "idle CPU, poll mode (% of one core)", f.get("idle_cpu_poll_pct"), "{:.2f}"
        )
        self.info(
            "detect_inotify",
            "detection latency, inotify (ms)",
            _ms(r.med("agent_3k_inotify_detect")),
            "{:.1f}",
        )
        self.info("detect_poll", "detection latency, poll (ms)", _ms(r.med("agent_3k_poll_detect")), "{:.0f}")

    def print(self) -> None:  # noqa: C901
        r, f = self.r, self.r.facts
        out = sys.stdout
        m = f.get("machine", {})
        p = f.get("parameters", {})
        print("\n== modsingest benchmark ==", file=out)
        if m:
            print(
                f"machine: {m.get('nproc')} CPUs, {m.get('cpu')}, {m.get('memory')}; "
                f"kernel {m.get('kernel')}; bench dir on {m.get('filesystem')}",
                file=out,
            )
            print(
                f"software: Python {m.get('python')}, numpy {m.get('numpy')}, astropy "
                f"{m.get('astropy')}, modsingest {m.get('modsingest')} ({m.get('commit')})",
                file=out,
            )
            print(
                f"load average at start {_load(m.get('loadavg_start'))}, at end "
                f"{_load(m.get('loadavg_end'))}",
                file=out,
            )
            if m.get("free_page_reporting"):
                print(
                    "virtio balloon with free page reporting: memory freed a few seconds ago "
                    "costs a host fault when touched again (noise in every write)",
                    file=out,
                )
        if p:
            print(
                f"repetitions: {p.get('reps_full')} full frame, {p.get('reps_3k')} 3k; replay night "
                f"of {f.get('replay_files', p.get('night_files'))} files x {p.get('replay_rounds')} "
                f"round(s); watch.poll_interval {p.get('poll_interval')} s, watch.settle "
                f"{f.get('settle_main', '?')} s"
                + (f" (full frames also settle {p['compare_settle']} s)" if p.get("compare_settle") else ""),
                file=out,
            )
        for roi in ("full", "3k"):
            if f.get(f"raw_mb_{roi}"):
                print(
                    f"{roi}: raw {f[f'raw_mb_{roi}']:.1f} MB, output {f[f'output_mb_{roi}']:.1f} MB "
                    f"(written twice)",
                    file=out,
                )
        print("\n-- times (median, min-max over repetitions) --", file=out)
        width = max([len(s.name) for s in r.series.values()] + [20])
        for s in r.series.values():
            if not s.values:
                continue
            if s.unit == "s":
                line = f"{fmt_s(s.median):>9}  ({fmt_s(min(s.values))} - {fmt_s(max(s.values))})"
            else:
                line = f"{s.median:>9.2f}  ({min(s.values):.2f} - {max(s.values):.2f}) {s.unit}"
            print(f"{s.name:<{width}}  {line}  n={s.n}", file=out)
        for key, what in (
            ("agent_full", "full frame"),
            ("agent_full_compare", "full frame, other settle"),
            ("agent_3k_inotify", "3k, inotify"),
            ("agent_3k_poll", "3k, poll"),
        ):
            lat = r.med(key)
            if not lat:
                continue
            parts = ", ".join(
                f"{part} {fmt_s(r.med(f'{key}_{part}'))} ({100 * (r.med(f'{key}_{part}') or 0) / lat:.0f} %)"
                for part in PARTS
                if r.med(f"{key}_{part}") is not None
            )
            print(f"latency split, {what} (medians of {fmt_s(lat)}): {parts}", file=out)
        if f.get("memory"):
            print("\n-- agent memory after the full frames (VmHWM = peak RSS) --", file=out)
            for proc in f["memory"]:
                print(
                    f"  {proc['role']:<16} pid {proc['pid']:>7}: peak {proc['hwm_mb']:6.0f} MB, "
                    f"now {proc['rss_mb']:5.0f} MB (PSS {proc['pss_mb']:.0f} MB)",
                    file=out,
                )
            print(
                f"  sum of peaks {f['rss_total_mb']:.0f} MB; sum of PSS now "
                f"{f['pss_total_mb']:.0f} MB, at its peak while processing a full frame "
                f"{f.get('pss_peak_total_mb', 0):.0f} MB (PSS: shared pages counted once)",
                file=out,
            )
        if "idle_cpu_inotify_pct" in f or "idle_cpu_poll_pct" in f:
            print(
                f"\nidle CPU over {f.get('idle_window_s')} s: inotify "
                f"{f.get('idle_cpu_inotify_pct', float('nan')):.2f} %, poll "
                f"{f.get('idle_cpu_poll_pct', float('nan')):.2f} % of one core",
                file=out,
            )
        self.build()
        print("\n-- ratios and targets --", file=out)
        lw = max(len(row["label"]) for row in self.rows)
        print(f"{'':<{lw}}  {'measured':>9}  {'goal':>8}  verdict", file=out)
        for row in self.rows:
            v = "n/a" if row["value"] is None else row["fmt"].format(row["value"])
            print(f"{row['label']:<{lw}}  {v:>9}  {row['goal']:>8}  {row['verdict']}", file=out)
        if r.errors:
            print("\n-- ERRORS (measurements not taken) --", file=out)
            for e in r.errors:
                print(f"  {e}", file=out)

    def as_json(self) -> dict[str, Any]:
        if not self.rows:
            self.build()
        return {
            "facts": self.r.facts,
            "series": {k: s.summary() | {"label": s.name} for k, s in self.r.series.items()},
            "table": [{k: v for k, v in row.items() if k != "fmt"} for row in self.rows],
            "errors": self.r.errors,
        }


def _ms(v: float | None) -> float | None:
    return None if v is None else v * 1000


def _load(v: Any) -> str:
    return " ".join(f"{x:.2f}" for x in v) if v else "?"


# =========================================================================== command line
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2 full-frame and 3 3k repetitions, a night of 20 files, "
        "5 s idle window (a few minutes)",
    )
    p.add_argument("--reps", type=int, help="full-frame repetitions (default 5; quick 2)")
    p.add_argument("--reps-3k", type=int, help="3k-ROI repetitions (default 6; quick 3)")
    p.add_argument("--night-files", type=int, help="files in the replay night (default 100; quick 20)")
    p.add_argument(
        "--replay-rounds",
        type=int,
        help="replay rounds, each a copy-only night, 1 worker and 2 workers, the order "
        "reversed every other round (default 2; quick 1)",
    )
    p.add_argument("--idle-seconds", type=float, help="idle CPU window (default 10; quick 5)")
    p.add_argument(
        "--poll-interval",
        type=float,
        default=1.0,
        help="watch.poll_interval of the services, seconds (default 1.0, as shipped)",
    )
    p.add_argument(
        "--settle",
        type=float,
        help="watch.settle of the services, seconds (default: the service's own, as shipped)",
    )
    p.add_argument(
        "--compare-settle",
        type=float,
        metavar="S",
        help="also run the full frames through a second service with watch.settle S, "
        "to show what the gate's stability window costs",
    )
    p.add_argument(
        "--baseline-src",
        metavar="DIR",
        help="also time a warm Pipeline.process from another source tree (a copy of "
        "src/ from before a change), in the same rotation",
    )
    p.add_argument(
        "--workdir",
        default=str(REPO / "bench-out"),
        help="where the scratch directory is made (default bench-out/ in the repo)",
    )
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    p.add_argument("--json", metavar="FILE", help="also write every sample and the table as JSON")
    args = p.parse_args(argv)
    defaults = dict(
        reps=(3, 5), reps_3k=(3, 6), night_files=(30, 100), replay_rounds=(2, 2), idle_seconds=(5.0, 10.0)
    )
    for key, (quick, full) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    if args.reps < 1 or args.reps_3k < 1 or args.night_files < 2 or args.replay_rounds < 1:
        p.error("repetitions and rounds must be at least 1, the night at least 2 files")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    return Bench(args).run()


if __name__ == "__main__":
    sys.exit(main())
