"""The phases of a bench run: full frames, 3k files (detection, the production configuration, idle CPU), replay.

Each phase starts the services it needs, runs its alternatives in rotation
(``Run.rotate``) and stops them again; a failure is recorded as an error of the
run, and the phases after it still run.
"""

from __future__ import annotations

import dataclasses
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from benchkit.baselines import floor_once
from benchkit.common import CHANNEL, log, modsingest_cmd, settle
from benchkit.machine import cpu_seconds, proc_status, process_tree
from benchkit.measure import Run
from benchkit.service import Layout, ServiceProcess, agent_once
from modsingest import sim
from modsingest.config import load as load_config

Alternatives = list[tuple[str, Callable[[], Any]]]


# =========================================================================== full frames
def full_frames(run: Run) -> None:
    """Full frames: floor, agent(s), astropy, in-process, cold one-shot, in rotation.

    The agent runs with the shipped watch settings (``--settle`` overrides
    the stability window).  With ``--compare-settle S`` a second service
    with ``watch.settle: S`` runs alongside (each idle while the other
    works): the gate waits one settle time for its second look, so the pair
    shows what that setting costs observers.
    """
    a, facts = run.args, run.results.facts
    services: dict[str, ServiceProcess] = {}
    wanted: list[tuple[str, float | None]] = [("main", a.settle)]
    if a.compare_settle:
        wanted.append(("compare", a.compare_settle))
    for which, settle_s in wanted:
        lay = Layout.make(
            run.work / f"svc-full-{which}",
            method="inotify",
            workers=1,
            poll_interval=a.poll_interval,
            settle=settle_s,
        )
        try:
            facts[f"settle_{which}"] = float(load_config(lay.config).watch.settle)
            services[which] = run.start_service(f"inotify-full-{which}", lay)
        except Exception as exc:
            run.results.error(f"starting the service (full frames, {which})", exc)
    # The first file after start, before anything else has used the service.
    for which, svc in services.items():
        try:
            key = "first_full" if which == "main" else "first_full_compare"
            first = run.run_agent(svc, key, f"first file after start (full, {which})", "full")
            if which == "main":
                facts["first_file"] = {k: v for k, v in first.items() if k != "row"}
        except Exception as exc:
            run.results.error(f"first file after start ({which})", exc)
    run.rotate(a.reps, _full_alternatives(run, services))
    if "compare" in services:
        run.stop_service(services["compare"])
    if "main" in services:
        try:
            memory(run, services["main"])
        except Exception as exc:
            run.results.error("memory of the agent", exc)
        run.stop_service(services["main"])


def _full_alternatives(run: Run, services: dict[str, ServiceProcess]) -> Alternatives:
    alts: Alternatives = [("floor", lambda: run.run_floor("full"))]
    if "main" in services:
        settle_s = run.results.facts["settle_main"]
        label = f"agent latency, warm, inotify, settle {settle_s:g} s (full)"
        alts.append(("agent", lambda: run.run_agent(services["main"], "agent_full", label, "full")))
    alts.append(("plain copy", lambda: run.run_floor("full", streamed=False)))
    if "compare" in services:
        label_cmp = f"agent latency, warm, inotify, settle {run.args.compare_settle:g} s (full)"
        alts.append(
            (
                "agent, other settle",
                lambda: run.run_agent(services["compare"], "agent_full_compare", label_cmp, "full"),
            )
        )
    alts.append(("astropy", lambda: run.run_astropy("full")))
    if run.other is not None:
        alts.append(("baseline tree", lambda: run.run_other("full")))
    alts.append(("in-process", lambda: run.run_inproc("full")))
    alts.append(("cold one-shot", lambda: run.run_cold("full")))
    if "main" in services:
        alts.append(("fresh service's first file", run.run_fresh_first))
    return alts


def memory(run: Run, svc: ServiceProcess) -> None:
    """Peak RSS (VmHWM) of each of the service's processes after the full frames.

    The worker is forked from a fork server that holds the warmed astropy
    state, so their RSS share most pages and a sum of peaks counts those
    twice.  So the total is also taken as PSS (each shared page split
    between its users), summed over the processes and sampled every 10 ms
    while the service processes one more full frame (untimed).
    """
    facts = run.results.facts
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
        agent_once(svc, run.templates["full"], run.next_name(), run.night)
    finally:
        stop.set()
        sampler.join()
    facts["pss_peak_total_mb"] = peak[0]
    procs: list[dict[str, Any]] = []
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
    facts["memory"] = procs
    workers = [p["hwm_mb"] for p in procs if p["role"] == "worker"]
    facts["rss_worker_mb"] = max(workers) if workers else None
    facts["rss_total_mb"] = sum(p["hwm_mb"] for p in procs) if procs else None
    facts["pss_total_mb"] = sum(p["pss_mb"] for p in procs) if procs else None


# =========================================================================== 3k files
#: The services of the 3k phase: key, label, how their layout is made.
#: ``prod_*`` run etc/mods1.yaml (see Layout.production): the site's poll + UDP
#: next to the same file with inotify, the pair the 1.25x target compares.
SERVICES_3K = (
    ("inotify", "inotify"),
    ("poll", "poll"),
    ("prod_poll_udp", "etc/mods1.yaml as shipped: poll + UDP proc"),
    ("prod_inotify", "etc/mods1.yaml with inotify, no UDP"),
)


def _layout_3k(run: Run, key: str) -> Layout:
    root = run.work / f"svc-{key}"
    if key == "prod_poll_udp":
        return Layout.production(root, CHANNEL, any_port=run.args.smoke)
    if key == "prod_inotify":
        return Layout.production(root, CHANNEL, inotify=True)
    a = run.args
    return Layout.make(root, method=key, workers=1, poll_interval=a.poll_interval, settle=a.settle)


def files_3k(run: Run) -> None:
    """3k files through every service of SERVICES_3K, beside the floor and in-process; then idle CPU."""
    layouts: dict[str, Layout] = {}
    for key, _ in SERVICES_3K:
        try:
            layouts[key] = _layout_3k(run, key)
        except Exception as exc:
            run.results.error(f"the layout of the service {key}", exc)
            continue
        if layouts[key].note:
            run.results.facts[f"note_{key}"] = layouts[key].note
            log(layouts[key].note)
    services = run.start_services(layouts)
    alts: Alternatives = [
        ("floor", lambda: run.run_floor("3k")),
        ("in-process", lambda: run.run_inproc("3k")),
        ("astropy", lambda: run.run_astropy("3k")),
    ]
    if run.other is not None:
        alts.append(("baseline tree", lambda: run.run_other("3k")))
    for key, what in SERVICES_3K:
        if key in services:
            label = f"agent latency, warm, {what} (3k)"
            alts.insert(
                1, (f"agent {key}", partial(run.run_agent, services[key], f"agent_3k_{key}", label, "3k"))
            )
    run.rotate(run.args.reps_3k, alts)
    for key in [k for k in services if k.startswith("prod_")]:
        run.stop_service(services.pop(key))
    if services:
        idle(run, services)
    for svc in services.values():
        run.stop_service(svc)


def idle(run: Run, services: dict[str, ServiceProcess]) -> None:
    """CPU used by each idle service (all its processes) over a quiet window."""
    time.sleep(min(2.0, run.args.idle_seconds))  # let the last file's bookkeeping finish
    pids = {m: [p for p, _ in svc.processes()] for m, svc in services.items()}
    before = {m: sum(cpu_seconds(p) for p in ps) for m, ps in pids.items()}
    t0 = time.monotonic()
    time.sleep(run.args.idle_seconds)
    wall = time.monotonic() - t0
    for m, ps in pids.items():
        used = sum(cpu_seconds(p) for p in ps) - before[m]
        run.results.facts[f"idle_cpu_{m}_pct"] = 100.0 * used / wall
    run.results.facts["idle_window_s"] = round(wall, 1)


# =========================================================================== replay
#: nights of at most this many files are simulated in this process
SMALL_NIGHT = 4


def make_night(run: Run) -> tuple[Path, str, int]:
    """A night of exposures (3k ROI) from the simulator.

    Many files: ``modsingest simulate`` in two parallel halves (the two cores);
    a few (a smoke run): written here, quicker than starting two interpreters.
    """
    n = run.args.night_files
    roi = run.rois["3k"]
    night_raw = run.work / "night-raw"
    night_raw.mkdir()
    night = (datetime.strptime(run.night, "%Y%m%d") - timedelta(days=1)).strftime("%Y%m%d")
    first = sim.ExposureSpec(channel=CHANNEL, date=night, roi=roi, exptime=60.0)
    cadence = first.exptime + sim.SHUTTER_DELAY + sim.readout_seconds(first.region)
    t0 = time.perf_counter()
    if n <= SMALL_NIGHT:
        for seq in range(1, n + 1):
            start = first.utc_start + timedelta(seconds=(seq - 1) * cadence)
            sim.write(dataclasses.replace(first, seq=seq, utc_start=start), night_raw)
    else:
        _simulate_in_halves(night_raw, first, cadence, n)
    made = len(list(night_raw.glob("*.fits")))
    log(f"simulated a night of {made} {roi} files in {time.perf_counter() - t0:.0f} s")
    return night_raw, night, made


def _simulate_in_halves(night_raw: Path, first: sim.ExposureSpec, cadence: float, n: int) -> None:
    """``modsingest simulate`` twice at once, each writing half of the night's ``n`` files."""
    half = (n + 1) // 2
    procs = []
    for seq, count in ((1, half), (half + 1, n - half)):
        if count <= 0:
            continue
        start = first.utc_start + timedelta(seconds=(seq - 1) * cadence)
        argv = ["simulate", "--out", str(night_raw), "--channel", first.channel, "--roi", first.roi]
        argv += ["--date", str(first.date), "--start", start.isoformat(), "--seq", str(seq)]
        argv += ["--count", str(count), "--exptime", f"{first.exptime:g}"]
        procs.append(
            subprocess.Popen(
                modsingest_cmd() + argv,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
            )
        )
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"simulate failed: {err.decode(errors='replace')[-500:]}")


def replay(run: Run) -> None:
    """Copy-only nights (1 and 2 copiers), replay with 1 and 2 workers, alternating order."""
    try:
        night_raw, night, n = make_night(run)
    except Exception as exc:
        run.results.error("simulating the replay night", exc)
        return
    run.results.facts["replay_files"] = n
    # the order reversed every other round, so a drift in machine load favours none
    steps: list[tuple[str, int]] = [("copy", 1), ("copy", 2), ("replay", 1), ("replay", 2)]
    order: list[tuple[str, int]] = []
    for rnd in range(run.args.replay_rounds):
        order += steps if rnd % 2 == 0 else steps[::-1]
    for i, (what, count) in enumerate(order):
        try:
            if what == "copy":
                copy_night(run, night_raw, count)
            else:
                replay_once(run, night_raw, night, n, count, i)
        except Exception as exc:
            where = (
                f"replay with {count} worker(s)"
                if what == "replay"
                else f"copy-only night, {count} copier(s)"
            )
            run.results.error(where, exc)


def copy_night(run: Run, night_raw: Path, copiers: int = 1) -> None:
    """The byte-copy floor applied to every file of the night, by ``copiers`` at a time.

    Why: replay writes about 110 MB per 3k file; over a night that is
    gigabytes, and a disk sustains less than it takes in one burst.  One
    copier is the rate at which the machine can merely copy the night file
    after file; two (each taking the next file as it finishes, like two
    workers) show how much the disk gains from a second stream.  Together
    they say whether the workers or the machine set the replay rate.
    """
    dest = run.work / f"copy-night-{copiers}"
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
                floor_once(f, run.out_bytes["3k"], dests, f.name)
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
    label = f"copy-only night, {copiers} copier(s): files/s (byte-copy floor)"
    run.results.series_for(f"copy_night_{copiers}", label, "files/s").add(len(files) / wall)
    log(f"  {len(files) / wall:.2f} files/s")


def replay_once(run: Run, night_raw: Path, night: str, n: int, workers: int, i: int) -> None:
    """``modsingest replay`` of the night with ``workers``; rates from wall clock and from the ledger."""
    a = run.args
    lay = Layout.make(
        run.work / f"replay-{i}-w{workers}",
        raw=night_raw,
        workers=workers,
        poll_interval=a.poll_interval,
        settle=a.settle,
    )
    settle()
    log(f"replay of {n} files with {workers} worker(s)")
    t0 = time.perf_counter()
    with open(lay.root / "replay.log", "wb") as logf:  # the child keeps its own copy
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
    series = run.results.series_for
    what = f"replay, {workers} worker(s)"
    series(f"replay_w{workers}_cpu", f"{what}: CPU / wall (cores busy)", "cores").add(
        sum(cpu.values()) / wall
    )
    if proc.returncode != 0:
        tail = (lay.root / "replay.log").read_text(errors="replace")[-1500:]
        raise RuntimeError(f"modsingest replay exited {proc.returncode}:\n{tail}")
    spans = _delivered_spans(lay.state / "ledger.sqlite3")
    if len(spans) != n:
        raise RuntimeError(f"replay delivered {len(spans)} of {n} files")
    span = max(end for _, end in spans) - min(start for start, _ in spans)
    series(f"replay_w{workers}_wall", f"{what}: files/s (wall clock)", "files/s").add(n / wall)
    series(f"replay_w{workers}_span", f"{what}: files/s (first start to last finish)", "files/s").add(
        n / span
    )
    log(f"  {n / wall:.2f} files/s wall clock ({wall:.1f} s), {n / span:.2f} files/s processing")
    lay.clear_outputs()
    shutil.rmtree(lay.root, ignore_errors=True)


def _delivered_spans(db_path: Path) -> list[tuple[float, float]]:
    """(started_at, finished_at) of every delivered file in a ledger."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return db.execute(
            "SELECT started_at, finished_at FROM files WHERE state='delivered' AND current=1"
        ).fetchall()
    finally:
        db.close()
