#!/usr/bin/env python3
"""``make faults``: the real service (``modsingest watch``) attacked the way bad luck would.

Each case runs the service in a subprocess on a temporary layout (as the end-to-end
tests do, ``tests/servicekit.py``), offers raw files, does something bad to it, and
counts what came out.  One table row per case:

    fault | trials | offered | delivered | lost | twice | partial | temps | restarts |
    recover s | status said | said after s | notes

- **offered**: raw files written that should be delivered; **delivered**: of those,
  delivered (a ``delivered`` log line and a ledger row); **lost**: offered and not
  delivered when the case gave up waiting.
- **twice**: a file published more than once: more than one ``delivered`` line for a
  name, or more than one inode seen under its name in newdata (a second rename).
- **partial**: visible (not hidden) ``*.fits`` in newdata or processed ever seen
  incomplete, polled every 20 ms during the whole case; **temps**: hidden temporary
  files left in the destinations at the end of the case.
- **restarts**: service starts needed after the first (what systemd would do).
- **recover s**: the worst time, over the trials, from the fault's end (the restart,
  space given back, the directory made again) until every offered file was delivered.
- **status said** / **after s**: the first line of ``modsingest status`` that is not
  "all is well" once the fault began, and how long after it began.

Faults at a named phase are injected, not raced: ``MODSINGEST_FAULT=@<control>``
(``service/faultpoints.py``) makes the worker, at that phase, kill itself, kill the
main process, or hold while the harness changes the raw file.

    python tools/faults.py            # the full run (about 40 minutes; see docs/reliability.md)
    python tools/faults.py --quick    # the short version of every case (what make test runs)
    python tools/faults.py --case kill-main --case udp --json out.json

Cases that need root (tmpfs mounts) are skipped with a note otherwise.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import itertools
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from modsingest import config as config_mod  # noqa: E402
from modsingest import sim  # noqa: E402
from modsingest.fits import scan as fitsscan  # noqa: E402
from modsingest.service import status as status_mod  # noqa: E402
from modsingest.service.ledger import DELIVERED, FAILED, INCOMPLETE, Ledger  # noqa: E402
from modsingest.service.workers import WORKERS_LOCK, wait_for_orphans  # noqa: E402
from servicekit import Agent  # noqa: E402  (the tests' helper: one way to run the service)

FAULT_ENV = "MODSINGEST_FAULT"
WORKER_PHASES = ("read", "steps", "write", "commit1", "commit2", "pointer", "done")
#: the old publish give-up time (8 attempts, 5 s doubling to 300 s): the full run holds longer
OLD_GIVE_UP = 615.0
NAME_DATE = "20260102"


# --------------------------------------------------------------------------- one row
@dataclass
class Row:
    fault: str
    trials: int = 0
    offered: int = 0
    delivered: int = 0
    lost: int = 0
    twice: int = 0
    twice_by_policy: int = 0  # of ``twice``, the documented cases (docs/reliability.md)
    #: a kill case: a file published again after a crash left its publication unrecorded
    #: (one ``delivered`` line) is the documented crash window, counted as policy
    crash_window: bool = False
    partial: int = 0
    temps: int = 0
    restarts: int = 0
    recover: float | None = None
    said: str = ""
    said_after: float | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def worst_recover(self, value: float | None) -> None:
        if value is not None:
            self.recover = value if self.recover is None else max(self.recover, value)

    def ok(self) -> bool:
        return self.lost == 0 and self.twice == self.twice_by_policy and self.partial == 0 and self.temps == 0


COLUMNS = [
    ("fault", 28),
    ("trials", 6),
    ("offered", 7),
    ("deliv", 5),
    ("lost", 4),
    ("twice", 12),
    ("partial", 7),
    ("temps", 5),
    ("restarts", 8),
    ("recover s", 9),
    ("status said", 60),
    ("after s", 7),
]


def table(rows: list[Row]) -> str:
    head = " | ".join(name.ljust(w) for name, w in COLUMNS)
    out = [head, "-|-".join("-" * w for _, w in COLUMNS)]
    for r in rows:
        cells = [
            r.fault,
            r.trials,
            r.offered,
            r.delivered,
            r.lost,
            f"{r.twice} ({r.twice_by_policy} policy)" if r.twice_by_policy else r.twice,
            r.partial,
            r.temps,
            r.restarts,
            "-" if r.recover is None else f"{r.recover:.1f}",
            (r.said or "-")[:60],
            "-" if r.said_after is None else f"{r.said_after:.1f}",
        ]
        out.append(" | ".join(str(c).ljust(w) for c, (_, w) in zip(cells, COLUMNS)))
    for r in rows:
        if r.notes:
            out.append(f"{r.fault}: " + "; ".join(r.notes))
    return "\n".join(out)


# --------------------------------------------------------------------------- watching
class DestinationWatch(threading.Thread):
    """Polls newdata and processed/<night> every 20 ms for the whole case.

    Every visible ``*.fits`` with a new (inode, size, mtime) is scanned: incomplete
    means a partial file was visible.  The inodes seen under each name in newdata
    count publications (a second rename is a second delivery), and the first time
    a name appears in newdata is its delivery time for latency figures.
    """

    def __init__(self, newdata: Path, processed: Path, every: float = 0.02):
        super().__init__(daemon=True)
        self.newdata, self.processed, self.every = newdata, processed, every
        self.partial: list[str] = []
        self.inodes: dict[str, set[int]] = collections.defaultdict(set)
        self.first_seen: dict[str, float] = {}
        self._checked: set[tuple] = set()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.look()
            self._halt.wait(self.every)

    def look(self) -> None:
        dirs = [self.newdata]
        with contextlib.suppress(OSError):
            dirs += [Path(e.path) for e in os.scandir(self.processed) if e.is_dir()]
        for d in dirs:
            try:
                entries = list(os.scandir(d))
            except OSError:
                continue
            for e in entries:
                if e.name.startswith(".") or not e.name.endswith(".fits"):
                    continue
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if d == self.newdata:
                    self.inodes[e.name].add(st.st_ino)
                    self.first_seen.setdefault(e.name, time.monotonic())
                key = (e.path, st.st_ino, st.st_size, st.st_mtime_ns)
                if key in self._checked:
                    continue
                layout = fitsscan.scan(e.path)
                if "cannot open" in " ".join(layout.problems):
                    continue  # replaced between listing and opening
                self._checked.add(key)
                if not layout.complete or len(layout.hdus) < 7:
                    self.partial.append(f"{e.path}: {layout.describe()}")

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
        self.look()


class StatusProbe(threading.Thread):
    """``modsingest status`` (its report, in-process) every half second.

    ``mark()`` starts a fault; the first line after it that is not a normal one is
    kept with its delay.
    """

    NOTABLE = re.compile(
        r"^(Service:  (PROBLEM|NOT RUNNING)|WARNING|DIRECTORY PROBLEMS|WAITING FOR|PROBLEMS)|\d+ worker deaths"
    )

    def __init__(self, cfg: Path, every: float = 0.5):
        super().__init__(daemon=True)
        self.cfg, self.every = cfg, every
        self.said = ""
        self.said_after: float | None = None
        self._since: float | None = None
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def mark(self) -> None:
        if self._since is None:
            self._since = time.monotonic()

    def run(self) -> None:
        while not self._halt.wait(self.every):
            self.look()

    def look(self) -> None:
        """One look at status now.  Also called by a case at a moment status must notice
        (the main process is dead and not yet restarted), so that a restart faster than
        the half-second poll cannot hide the outage from the table."""
        with self._lock:
            if self._since is None or self.said:
                return
            try:
                settings = config_mod.load(self.cfg, require_dirs=False)  # a case may remove one
                text = status_mod.render(status_mod.gather(settings))
            except Exception as exc:  # status must not fail; if it does, that is what it said
                text = f"PROBLEMS status failed: {type(exc).__name__}: {exc}"
            lines = text.splitlines()
            for i, line in enumerate(lines):
                if self.NOTABLE.search(line) and "RUNNING AS ROOT" not in line:  # the harness runs as root
                    said = line.strip()
                    if re.match(r"^[A-Z ]+ \(\d+\)", said):  # a heading: what follows says more
                        said = said.split(" (")[0] + ": " + " ".join(lines[i + 1 : i + 3])
                    self.said = re.sub(r"\s+", " ", said)
                    self.said_after = time.monotonic() - self._since
                    break

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


# --------------------------------------------------------------------------- a site
class Templates:
    """A few distinct raw files per channel, made once; offering a file copies one."""

    def __init__(self, root: Path, per_channel: int = 3):
        self.dir = root / "templates"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data: dict[str, list[bytes]] = {}
        for channel in ("mods1b", "mods1r"):
            self.data[channel] = []
            for i in range(per_channel):
                spec = sim.ExposureSpec(
                    channel=channel, seq=900 + i, roi="1k", binning=(2, 2), date=NAME_DATE
                )
                path = sim.write(spec, self.dir, two_pass=False, overwrite=True)
                self.data[channel].append(path.read_bytes())

    def pick(self, channel: str, i: int) -> bytes:
        options = self.data[channel]
        return options[i % len(options)]


class Site:
    """One service on a temporary layout, the files offered to it and the watchers."""

    counter = itertools.count(1)  # next() is atomic: outage cases run side by side

    def __init__(self, base: Path, templates: Templates, *, env: dict[str, str] | None = None, **cfg):
        self.root = base / f"site{next(Site.counter)}"
        self.templates = templates
        cfg.setdefault("workers", 1)
        cfg.setdefault("rescan", 5.0)
        cfg.setdefault("incomplete", 5.0)
        cfg.setdefault("grace", 0.5)
        self.agent = Agent(self.root, cfg.pop("method", "inotify"), **cfg)
        self.env = dict(env or {})
        self.offered: dict[str, Path] = {}
        self.written_at: dict[str, float] = {}
        self.seq = 0
        self.watch = DestinationWatch(self.agent.newdata, self.agent.processed)
        self.probe = StatusProbe(self.agent.config)
        self.restarts = 0

    # life
    def start(self) -> Site:
        self.agent.start(env=self.env)
        if not self.watch.is_alive():
            self.watch.start()
            self.probe.start()
        return self

    def restart(self) -> float:
        """Start again after a crash (what systemd does); returns the time it took."""
        started = time.monotonic()
        self.restarts += 1
        self.agent.start(env=self.env)
        return time.monotonic() - started

    def close(self) -> None:
        """Stop everything this site started, whatever state the case left it in."""
        try:
            if self.agent.proc is not None and self.agent.proc.poll() is None:
                with contextlib.suppress(AssertionError):
                    self.agent.stop()
        finally:
            self.agent.close()
            if self.watch.is_alive():
                self.watch.stop()
            if self.probe.is_alive():
                self.probe.stop()

    # offering
    def name(self, channel: str) -> str:
        self.seq += 1
        return f"{channel}.{NAME_DATE}.{self.seq:04d}.fits"

    def offer(self, channel: str | None = None, *, expect: bool = True, data: bytes | None = None) -> Path:
        channel = channel or ("mods1b", "mods1r")[self.seq % 2]
        name = self.name(channel)
        path = self.agent.raw[channel] / name
        path.write_bytes(data if data is not None else self.templates.pick(channel, self.seq))
        if expect:
            self.offered[name] = path
        self.written_at[name] = time.monotonic()
        return path

    def fault(self, phase: str, victim: str) -> Path:
        """Arm the one-shot fault for the next file (``@control`` mode)."""
        control = Path(self.env[FAULT_ENV][1:])
        for suffix in (".fired", ".fired.go"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{control}{suffix}")
        control.write_text(f"{phase}:{victim}")
        return Path(f"{control}.fired")

    def disarm(self) -> None:
        Path(self.env[FAULT_ENV][1:]).write_text("")

    # looking
    def delivered_counts(self) -> collections.Counter:
        return collections.Counter(self.agent.delivered_lines())

    def delivered_now(self) -> set[str]:
        led = Ledger(self.agent.state)
        try:
            return {r.name for r in led.rows(current_only=False) if r.state == DELIVERED}
        finally:
            led.close()

    def wait_delivered(self, names: set[str], timeout: float) -> float | None:
        """Seconds until every one of ``names`` is delivered, or None at the timeout."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if names <= self.delivered_now():
                return time.monotonic() - start
            if self.agent.proc is not None and self.agent.proc.poll() is not None:
                return None  # the service died: the caller says so
            time.sleep(0.1)
        return None

    def temps(self) -> list[Path]:
        found = []
        for d in [self.agent.newdata, *sorted(self.agent.processed.glob("*"))]:
            if d.is_dir():
                found += [p for p in d.iterdir() if p.name.startswith(".") and "modsingest-tmp" in p.name]
        return found

    def fill(self, row: Row, *, expected: set[str] | None = None) -> Row:
        """The counts of ``row`` from what this site saw; call at the end of a case."""
        self.watch.look()
        self.probe.look()  # what status keeps saying (worker deaths) is seen however short the case
        expected = set(self.offered) if expected is None else expected
        counts = self.delivered_counts()
        delivered = self.delivered_now()
        row.offered += len(expected)
        row.delivered += len(expected & delivered)
        row.lost += len(expected - delivered)
        twice = 0
        for name in sorted(expected):
            again = max(counts.get(name, 0) - 1, len(self.watch.inodes.get(name, ())) - 1, 0)
            twice += again
            if again and row.crash_window and counts.get(name, 0) <= 1:
                row.twice_by_policy += again  # killed after newdata's rename, before it was noted
            if again and not any(name in n for n in row.notes):
                row.notes.append(
                    f"{name}: published {len(self.watch.inodes.get(name, ()))}x, "
                    f"{counts.get(name, 0)} delivered line(s)"
                )
        row.twice += twice
        row.partial += len(self.watch.partial)
        row.temps += len(self.temps())
        row.restarts += self.restarts
        if self.probe.said and not row.said:
            row.said = self.probe.said.replace(str(self.root) + "/", "")
            row.said_after = self.probe.said_after
        if expected - delivered:
            row.notes.append("not delivered: " + ", ".join(sorted(expected - delivered)[:5]))
        if self.watch.partial:
            row.notes.append("partial: " + self.watch.partial[0])
        return row


# --------------------------------------------------------------------------- helpers
def main_pid_gone(site: Site, timeout: float) -> float | None:
    """Wait for the main process to be killed (by the injected fault); when it died."""
    proc = site.agent.proc
    assert proc is not None
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None
    site.agent.proc = None
    return time.monotonic()


def workers_gone_after(site: Site, died_at: float, limit: float = 15.0) -> float | None:
    """Seconds from the main process's death until no worker holds the workers' lock."""
    lock = site.agent.state / WORKERS_LOCK
    deadline = died_at + limit
    while time.monotonic() < deadline:
        if wait_for_orphans(lock, 0.0):
            return time.monotonic() - died_at
        time.sleep(0.002)
    return None


def note_twice(site: Site, row: Row, phase: str, name: str) -> None:
    """Say at which phase a file was published twice (the table only counts)."""
    time.sleep(0.1)
    site.watch.look()
    published = len(site.watch.inodes.get(name, ()))
    lines = site.delivered_counts().get(name, 0)
    if published > 1 or lines > 1:
        row.notes.append(f"{phase}: published {published}x, {lines} delivered line(s) ({name})")


def wait_path(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.01)
    return False


def is_root() -> bool:
    return os.geteuid() == 0


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def rss_kb(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def children(pid: int) -> list[int]:
    out = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                out += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return out


def descendants(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        for c in children(p):
            seen.append(c)
            todo.append(c)
    return seen


# --------------------------------------------------------------------------- the cases
def case_kill_main(base: Path, t: Templates, quick: bool) -> Row:
    """kill -9 of the main process, injected at each phase of a worker's file, then a restart."""
    row = Row("kill -9 main, each phase", crash_window=True)
    site = Site(base, t, env={FAULT_ENV: f"@{base / 'main-control'}"})
    trials = 1 if quick else 4
    worst_orphan = 0.0
    try:
        site.start()
        site.probe.mark()
        for _ in range(trials):
            for phase in WORKER_PHASES:
                row.trials += 1
                token = site.fault(phase, "main")
                path = site.offer()
                died = main_pid_gone(site, 60)
                if died is None:
                    row.notes.append(f"{phase}: the fault did not fire")
                    continue
                gone = workers_gone_after(site, died)
                if gone is None:
                    row.notes.append(f"{phase}: a worker outlived the main process by > 15 s")
                else:
                    worst_orphan = max(worst_orphan, gone)
                site.disarm()
                token.unlink(missing_ok=True)
                site.probe.look()  # dead and not restarted: status must say so
                site.restart()
                row.worst_recover(site.wait_delivered({path.name}, 90))
                note_twice(site, row, phase, path.name)
        site.fill(row)
        row.notes.append(f"workers gone at most {worst_orphan * 1000:.0f} ms after the main process")
    finally:
        site.close()
    return row


def case_kill_main_random(base: Path, t: Templates, quick: bool) -> Row:
    """kill -9 of the main process at a random moment of a burst, then a restart."""
    row = Row("kill -9 main, random moment", crash_window=True)
    site = Site(base, t, workers=2)
    rng = random.Random(9)
    trials = 2 if quick else 20
    burst = 6 if quick else 12
    try:
        site.start()
        site.probe.mark()
        for _ in range(trials):
            row.trials += 1
            names = set()
            for _ in range(burst):
                names.add(site.offer().name)
                time.sleep(rng.uniform(0.0, 0.15))
            time.sleep(rng.uniform(0.0, 1.0))
            site.agent.kill9()
            site.restart()
            row.worst_recover(site.wait_delivered(names, 120))
        site.fill(row)
    finally:
        site.close()
    return row


def case_kill_worker(base: Path, t: Templates, quick: bool) -> Row:
    """kill -9 of a worker at each phase (and as its job is sent); the service carries on."""
    row = Row("kill -9 worker, each phase", crash_window=True)
    site = Site(base, t, workers=2, env={FAULT_ENV: f"@{base / 'worker-control'}"})
    trials = 1 if quick else 5
    try:
        site.start()
        site.probe.mark()
        for _ in range(trials):
            for phase in (*WORKER_PHASES, "submit"):
                row.trials += 1
                token = site.fault(phase, "worker")
                started = time.monotonic()
                path = site.offer()
                if not wait_path(token, 30):
                    row.notes.append(f"{phase}: the fault did not fire")
                took = site.wait_delivered({path.name}, 60)
                row.worst_recover(None if took is None else time.monotonic() - started)
                note_twice(site, row, phase, path.name)
                if site.agent.proc.poll() is not None:
                    row.notes.append(f"{phase}: the service died")
                    site.restart()
        site.disarm()
        deadline = time.monotonic() + 10  # status learns of deaths from the 2 s heartbeat
        while not site.probe.said and time.monotonic() < deadline:
            time.sleep(0.1)
        site.fill(row)
        deaths = site.agent.log_text().count("died with signal 9")
        row.notes.append(f"{deaths} worker deaths, no restart of the service")
    finally:
        site.close()
    return row


def _outage(
    base: Path,
    t: Templates,
    quick: bool,
    label: str,
    begin: Callable[[Site], None],
    end: Callable[[Site], None],
    *,
    mount_size: str | None = None,
    files: int = 4,
) -> Row:
    """A destination outage: files offered during it must all arrive after it ends."""
    row = Row(label, trials=1)
    hold = 8.0 if quick else OLD_GIVE_UP + 60.0
    with contextlib.ExitStack() as stack:
        site = Site(base, t)
        if mount_size:
            stack.enter_context(tmpfs(site.agent.newdata, mount_size))
        try:
            site.start()
            site.offer()
            if site.wait_delivered(set(site.offered), 60) is None:
                row.notes.append("the first file was not delivered before the fault")
            begin(site)
            site.probe.mark()
            for _ in range(files):
                site.offer()
                time.sleep(0.2)
            time.sleep(hold)
            if site.agent.proc.poll() is not None:
                row.notes.append("the service died during the outage")
                site.restart()
            end(site)
            row.worst_recover(site.wait_delivered(set(site.offered), 360 if not quick else 60))
            site.fill(row)
            row.notes.append(f"outage held {hold:.0f} s")
            failed = [r for r in site.agent.rows() if r.state == FAILED]
            if failed:
                row.notes.append(f"{len(failed)} row(s) FAILED: {failed[0].reason}")
        finally:
            site.close()
    return row


def case_full_destination(base: Path, t: Templates, quick: bool) -> Row:
    """newdata on a small tmpfs, filled up; space comes back after the old give-up time."""
    if not is_root():
        return Row("newdata full (tmpfs)", notes=["skipped: needs root for a tmpfs mount"])

    def begin(site: Site) -> None:
        st = os.statvfs(site.agent.newdata)
        free = st.f_bavail * st.f_frsize
        with open(site.agent.newdata / "filler", "wb") as fh, contextlib.suppress(OSError):
            fh.write(b"\0" * max(0, free - 64 * 1024))

    def end(site: Site) -> None:
        (site.agent.newdata / "filler").unlink()

    return _outage(base, t, quick, "newdata full (tmpfs)", begin, end, mount_size="24m")


def case_readonly_destination(base: Path, t: Templates, quick: bool) -> Row:
    """newdata on a tmpfs remounted read-only for longer than the old give-up time."""
    if not is_root():
        return Row("newdata read-only (tmpfs)", notes=["skipped: needs root for a tmpfs mount"])

    def remount(mode: str) -> Callable[[Site], None]:
        return lambda site: subprocess.run(
            ["mount", "-o", f"remount,{mode}", str(site.agent.newdata)], check=True
        )

    return _outage(
        base, t, quick, "newdata read-only (tmpfs)", remount("ro"), remount("rw"), mount_size="24m"
    )


def case_destination_removed(base: Path, t: Templates, quick: bool) -> Row:
    """newdata removed (with what it held), files arrive, then it is made again."""

    def begin(site: Site) -> None:
        shutil.rmtree(site.agent.newdata)

    def end(site: Site) -> None:
        site.agent.newdata.mkdir()

    row = _outage(base, t, quick, "newdata removed, made again", begin, end)
    return row


def case_raw_directory(base: Path, t: Templates, quick: bool) -> Row:
    """A raw directory removed and made again, and a raw directory that is a symlink."""
    row = Row("raw dir remade / symlinked", trials=2)
    site = Site(base, t, rescan=10.0)
    real = site.root / "elsewhere" / "mods1r"
    real.mkdir(parents=True)
    site.agent.raw["mods1r"].rmdir()
    site.agent.raw["mods1r"].symlink_to(real)
    try:
        site.start()
        site.probe.mark()
        # removed and made again
        blue = site.agent.raw["mods1b"]
        shutil.rmtree(blue)
        time.sleep(0.5)
        blue.mkdir()
        remade = {site.offer("mods1b").name for _ in range(2)}
        # the symlinked one: written through the link's target
        linked = set()
        for _ in range(2):
            name = site.name("mods1r")
            (real / name).write_bytes(t.pick("mods1r", site.seq))
            site.offered[name] = real / name
            site.written_at[name] = time.monotonic()
            linked.add(name)
        took = site.wait_delivered(remade | linked, 60)
        site.fill(row)
        lat = {n: site.watch.first_seen.get(n, float("nan")) - site.written_at[n] for n in remade | linked}
        row.worst_recover(took)
        row.notes.append(
            f"latency remade dir {'/'.join(f'{lat[n]:.1f}' for n in sorted(remade))} s, "
            f"symlinked dir {'/'.join(f'{lat[n]:.1f}' for n in sorted(linked))} s (rescan every 10 s)"
        )
        if "blind" in site.agent.log_text():
            row.notes.append("the log says inotify looks blind")
    finally:
        site.close()
    return row


def _mounted(path: Path) -> bool:
    """Whether ``path`` is a mount point (os.path.ismount misses a bind mount within one file system)."""
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        points = {line.split()[4].encode().decode("unicode_escape") for line in fh}
    return str(path) in points


def case_raw_remount(base: Path, t: Templates, quick: bool) -> Row:
    """A raw directory that is a mount (a bind mount of a backing directory, standing for
    the NFS export) unmounted and mounted again while the service runs with inotify.

    Files are written before, while unmounted (to the backing directory: the export still
    takes them, the service cannot see them) and after; all must arrive, once each.
    """
    label = "raw dir unmounted, mounted"
    if not is_root():
        return Row(label, notes=["skipped: needs root for a bind mount"])
    cycles = 1 if quick else 5
    hold = 2.0 if quick else 12.0  # full run: longer than the 10 s rescan
    row = Row(label, trials=cycles)
    site = Site(base, t, rescan=10.0, method="inotify")
    raw = site.agent.raw["mods1b"]
    backing = site.root / "export" / "mods1b"
    backing.mkdir(parents=True)

    def write_backing() -> str:
        name = site.name("mods1b")
        (backing / name).write_bytes(t.pick("mods1b", site.seq))
        site.offered[name] = raw / name
        site.written_at[name] = time.monotonic()
        return name

    subprocess.run(["mount", "--bind", str(backing), str(raw)], check=True)
    try:
        site.start()
        site.probe.mark()
        lat: dict[str, list[float]] = {"before": [], "unmounted": [], "after": []}
        for _ in range(cycles):
            before = {site.offer("mods1b").name for _ in range(2)}
            if site.wait_delivered(before, 60) is None:
                row.notes.append("files written before the unmount were not delivered")
            subprocess.run(["umount", str(raw)], check=True)
            hidden = {write_backing() for _ in range(2)}
            time.sleep(hold)
            subprocess.run(["mount", "--bind", str(backing), str(raw)], check=True)
            remounted = time.monotonic()
            after = {site.offer("mods1b").name for _ in range(2)}
            took = site.wait_delivered(before | hidden | after, 60)
            row.worst_recover(None if took is None else time.monotonic() - remounted)
            site.watch.look()
            for key, names in (("before", before), ("unmounted", hidden), ("after", after)):
                start = {n: (remounted if key == "unmounted" else site.written_at[n]) for n in names}
                lat[key] += [site.watch.first_seen.get(n, float("nan")) - start[n] for n in names]
        site.fill(row)
        row.notes.append(
            f"{cycles} unmount/mount cycle(s), unmounted {hold:.0f} s each; worst latency "
            + ", ".join(f"{k} {max(v):.1f} s" for k, v in lat.items())
            + " (written while unmounted: from the remount; rescan every 10 s)"
        )
        if "blind" in site.agent.log_text():
            row.notes.append("the log says inotify looks blind")
    finally:
        try:
            site.close()
        finally:
            while _mounted(raw):
                if subprocess.run(["umount", "-l", str(raw)], check=False).returncode:
                    break
    return row


def case_raw_changes_under_the_worker(base: Path, t: Templates, quick: bool) -> Row:
    """A raw file vanishes, is cut short, or is replaced while a worker is reading it."""
    row = Row("raw file changed while read")
    site = Site(base, t, env={FAULT_ENV: f"@{base / 'raw-control'}"})
    try:
        site.start()
        site.probe.mark()
        for what in ("vanish", "truncate", "replace"):
            row.trials += 1
            token = site.fault("read", "hold")
            channel = "mods1b"
            path = site.offer(channel, expect=what != "vanish")
            if not wait_path(token, 30):
                row.notes.append(f"{what}: the fault did not fire")
                continue
            full = path.read_bytes()
            if what == "vanish":
                path.unlink()
            elif what == "truncate":
                with open(path, "r+b") as fh:
                    fh.truncate(len(full) // 2)
            else:
                other = t.pick(channel, site.seq + 1)
                tmp = path.with_name("." + path.name + ".new")
                tmp.write_bytes(other)
                os.replace(tmp, path)
            go = Path(f"{token}.go")
            go.touch()
            deadline = time.monotonic() + 10
            while go.exists() and time.monotonic() < deadline:  # the worker goes on
                time.sleep(0.01)
            if what == "truncate":
                time.sleep(1.0)
                path.write_bytes(full)  # the writer finishes it after all
            took = site.wait_delivered({path.name}, 60) if what != "vanish" else 0.0
            row.worst_recover(took)
            settle = time.monotonic() + 30
            while time.monotonic() < settle and any(
                r.state in ("queued", "processing") for r in site.agent.rows(path)
            ):
                time.sleep(0.2)
            states = [
                r.state + (f" ({(r.reason or '').split(': ', 1)[-1][:60]})" if r.reason else "")
                for r in site.agent.rows(path)
            ]
            row.notes.append(f"{what}: " + ", ".join(states))
            if what == "replace":
                row.twice_by_policy += 1
                row.notes.append(
                    "replace: the new content is a new fingerprint, delivered again by policy "
                    "(docs/service.md, changed files)"
                )
        site.disarm()
        after = site.offer()
        site.wait_delivered({after.name}, 60)
        site.fill(row)
        # what status lists as problems (its own report, not the ledger's history:
        # a failed row whose path was delivered since is history, not an open problem)
        report = status_mod.gather(config_mod.load(site.agent.config, require_dirs=False))
        reasons = [f"{p['name']}: {p['state']} ({(p['reason'] or '')[:60]})" for p in report["problems"]]
        if reasons:
            row.notes.append("status reports: " + " | ".join(reasons[:3]))
        history = sorted(
            r.name for r in site.agent.rows() if r.state in (FAILED, INCOMPLETE) and not r.current
        )
        if history:
            row.notes.append("history only (a newer version delivered): " + ", ".join(history))
    finally:
        site.close()
    return row


def mutants(good: bytes) -> dict[str, bytes]:
    """Hostile raw files made from a good one: headers and sizes that cannot be."""

    def card(data: bytes, key: str, value: str) -> bytes:
        out = bytearray(data)
        first = None
        for off in range(2880, len(out), 80):  # the first extension header's card
            if out[off : off + 8] == key.ljust(8).encode():
                first = off
                break
        if first is None:
            return bytes(out)
        out[first : first + 80] = f"{key:<8}= {value:>20}".ljust(80).encode()
        return bytes(out)

    end_at = good.find(b"END" + b" " * 77)
    return {
        "truncated": good[: len(good) // 3],
        "not-fits": b"HELLO   = 'not a FITS file'".ljust(2880, b" ") + good[2880:],
        "naxis1-negative": card(good, "NAXIS1", "-1"),
        "pcount-negative": card(good, "PCOUNT", "-5"),
        "gcount-negative": card(good, "GCOUNT", "-1"),
        "naxis2-huge": card(good, "NAXIS2", "999999999"),
        "bitpix-bad": card(good, "BITPIX", "7"),
        "no-end": good[:end_at] + b"X" * 80 + good[end_at + 80 :],
        "non-ascii": good[:400] + "é".encode() * 40 + good[480:],
        "empty": b"",
    }


def case_hostile_mix(base: Path, t: Templates, quick: bool) -> Row:
    """Bad files among good ones: every good one delivered, each bad one reported, none stops the rest."""
    row = Row("hostile input mix", trials=1)
    site = Site(base, t, workers=2, incomplete=5.0)
    rounds = 1 if quick else 4
    try:
        site.start()
        site.probe.mark()
        bad_names = []
        for r in range(rounds):
            for kind, data in mutants(t.pick("mods1b", r)).items():
                bad_names.append((kind, site.offer("mods1b", expect=False, data=data).name))
                site.offer("mods1r")
        took = site.wait_delivered(set(site.offered), 120)
        row.worst_recover(took)
        time.sleep(6.0)  # incomplete_timeout: the slowest way a bad file is reported
        site.fill(row)
        rows = {r.name: r for r in site.agent.rows()}
        unreported = [k for k, n in bad_names if n not in rows or rows[n].state not in (FAILED, INCOMPLETE)]
        row.notes.append(f"{len(bad_names)} bad files, {len(bad_names) - len(unreported)} reported")
        if unreported:
            row.notes.append("not reported: " + ", ".join(sorted(set(unreported))))
        delivered_bad = [k for k, n in bad_names if n in rows and rows[n].state == DELIVERED]
        if delivered_bad:
            row.notes.append("bad files delivered: " + ", ".join(sorted(set(delivered_bad))))
    finally:
        site.close()
    return row


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def case_udp(base: Path, t: Templates, quick: bool) -> Row:
    """Garbage, oversize datagrams and a flood of ``proc <delivered file>``; latency under the flood."""
    port = free_udp_port()
    extra = f"udp:\n  enabled: yes\n  host: 127.0.0.1\n  port: {port}\n"
    row = Row("UDP garbage + flood", trials=1)
    site = Site(base, t, extra=extra)
    flood_seconds = 5.0 if quick else 30.0
    try:
        site.start()
        first = site.offer()
        site.wait_delivered({first.name}, 60)
        baseline = []
        for _ in range(4):
            p = site.offer()
            site.wait_delivered({p.name}, 30)
            baseline.append(site.watch.first_seen.get(p.name, float("nan")) - site.written_at[p.name])
        stop = threading.Event()
        sent = [0]

        def flood() -> None:
            rng = random.Random(1)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                kinds = [
                    f"proc /home/data/{first.name}".encode(),
                    b"\xff\xfe garbage \x00",
                    b"x" * 2000,
                    b"proc ../../etc/passwd",
                    b"frob\x1b[2J\nINFO modsingest.dispatch: delivered forged.fits",
                ]
                while not stop.is_set():
                    data = kinds[0] if rng.random() < 0.8 else rng.choice(kinds[1:])
                    with contextlib.suppress(OSError):
                        s.sendto(data, ("127.0.0.1", port))
                        sent[0] += 1

        site.probe.mark()
        lines_before = site.agent.log_text().count("modsingest.udp")
        flooder = threading.Thread(target=flood, daemon=True)
        flooder.start()
        during = []
        started = time.monotonic()
        while time.monotonic() - started < flood_seconds:
            p = site.offer()
            site.wait_delivered({p.name}, 30)
            during.append(site.watch.first_seen.get(p.name, float("nan")) - site.written_at[p.name])
            time.sleep(0.3)
        stop.set()
        flooder.join(5)
        time.sleep(0.5)
        text = site.agent.log_text()
        udp_lines = text.count("modsingest.udp") - lines_before
        site.fill(row)
        row.trials = len(during)
        row.notes.append(
            f"{sent[0]} datagrams in {flood_seconds:.0f} s, {udp_lines} udp log lines; "
            f"close-to-newdata latency median {statistics.median(baseline):.2f} s before, "
            f"{statistics.median(during):.2f} s (max {max(during):.2f}) during the flood"
        )
        if "forged.fits" in text and "\\nINFO modsingest.dispatch: delivered forged" not in text:
            row.notes.append("a forged log line got through")
        if site.agent.proc.poll() is not None:
            row.notes.append("the service died")
    finally:
        site.close()
    return row


def case_soak(base: Path, t: Templates, quick: bool) -> Row:
    """Many files at a steady pace; RSS, open fds and latency sampled: all flat."""
    count = 60 if quick else 2000
    row = Row(f"soak {count} files", trials=1)
    site = Site(base, t, workers=2, rescan=30.0)
    samples: list[tuple[float, int, int, int]] = []
    try:
        site.start()
        pid = site.agent.proc.pid
        site.probe.mark()
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(1.0):
                procs = [pid, *descendants(pid)]
                samples.append((time.monotonic(), rss_kb(pid), sum(rss_kb(p) for p in procs), fds(pid)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        for _ in range(count):
            site.offer()
            time.sleep(0.2 if count > 100 else 0.12)
        took = site.wait_delivered(set(site.offered), 300)
        stop.set()
        sampler.join(5)
        row.worst_recover(took)
        site.fill(row)
        lat = [site.watch.first_seen.get(n, float("nan")) - site.written_at[n] for n in site.offered]
        q = max(1, len(lat) // 4)
        s = max(1, len(samples) // 4)

        def mb(kb: float) -> str:
            return f"{kb / 1024:.0f}"

        first, last = samples[:s], samples[-s:]
        row.notes.append(
            "first→last quarter: main RSS "
            f"{mb(statistics.median(x[1] for x in first))}→{mb(statistics.median(x[1] for x in last))} MB, "
            f"all processes {mb(statistics.median(x[2] for x in first))}→{mb(statistics.median(x[2] for x in last))} MB, "
            f"main fds {statistics.median(x[3] for x in first):.0f}→{statistics.median(x[3] for x in last):.0f}, "
            f"latency median {statistics.median(lat[:q]):.2f}→{statistics.median(lat[-q:]):.2f} s"
        )
    finally:
        site.close()
    return row


CASES: dict[str, Callable[[Path, Templates, bool], Row]] = {
    "kill-main": case_kill_main,
    "kill-main-random": case_kill_main_random,
    "kill-worker": case_kill_worker,
    "full": case_full_destination,
    "readonly": case_readonly_destination,
    "newdata-removed": case_destination_removed,
    "raw-dir": case_raw_directory,
    "raw-remount": case_raw_remount,
    "raw-changes": case_raw_changes_under_the_worker,
    "hostile": case_hostile_mix,
    "udp": case_udp,
    "soak": case_soak,
}


#: the long outages of the full run wait side by side (they mostly sleep)
SIDE_BY_SIDE = ("full", "readonly", "newdata-removed")


def run_case(name: str, base: Path, templates: Templates, quick: bool) -> Row:
    started = time.monotonic()
    try:
        row = CASES[name](base, templates, quick)
    except Exception as exc:  # a broken case is a row that says so, not a lost table
        row = Row(name, notes=[f"the case itself failed: {type(exc).__name__}: {exc}"])
        row.lost = -1
    row.seconds = time.monotonic() - started
    row.notes = [n.replace(str(base) + "/", "") for n in row.notes]
    row.said = row.said.replace(str(base) + "/", "")
    print(f"[{name}: {row.seconds:.0f} s]", file=sys.stderr, flush=True)
    return row


def run(cases: list[str], quick: bool, keep: bool = False) -> list[Row]:
    base = Path(tempfile.mkdtemp(prefix="modsingest-faults-"))
    rows: dict[str, Row] = {}
    try:
        templates = Templates(base)
        together = [c for c in cases if c in SIDE_BY_SIDE] if not quick else []
        with concurrent.futures.ThreadPoolExecutor(max(1, len(together))) as pool:
            waiting = {c: pool.submit(run_case, c, base, templates, quick) for c in together}
            for name in cases:
                if name not in waiting:
                    rows[name] = run_case(name, base, templates, quick)
            for name, future in waiting.items():
                rows[name] = future.result()
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
    return [rows[c] for c in cases]


def machine() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.node()}: {os.cpu_count()} CPU ({cpu}), {mem:.0f} GiB, Linux {platform.release()}, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the short version of each case")
    ap.add_argument("--case", action="append", choices=sorted(CASES), help="only these cases")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary layouts")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    started = time.monotonic()
    rows = run(args.case or list(CASES), args.quick, args.keep)
    print(
        f"make faults ({'quick' if args.quick else 'full'} run, {time.monotonic() - started:.0f} s) on {machine()}"
    )
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0 if all(r.ok() for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
