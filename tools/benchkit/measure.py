"""One bench run: its scratch directory, the template files, and every timed alternative.

``Run`` holds what the phases (``benchkit.phases``) share: the results, the
simulated templates, the local layout used by everything that runs in this
process or as a one-shot, and the services started (so they are all stopped at
the end, whatever failed).  Each ``run_*`` method times one alternative once on a
freshly staged raw file with a fresh name (see tools/bench.py's docstring for why).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchkit.baselines import AstropyBaseline, OtherTree, floor_once, same_data
from benchkit.common import (
    CHANNEL,
    MB,
    PARTS,
    Results,
    copy_durable,
    log,
    modsingest_cmd,
    raw_name,
    settle,
    unlink_quiet,
)
from benchkit.machine import machine_description
from benchkit.service import Layout, ServiceProcess, agent_once
from modsingest import sim
from modsingest.config import load as load_config
from modsingest.names import observing_night
from modsingest.processing.pipeline import Pipeline

#: The raw files each role uses: a full frame and a 3k ROI; a smoke run uses 1k for both.
ROIS = {"full": "full", "3k": "3k"}
SMOKE_ROIS = {"full": "1k", "3k": "1k"}


class Run:
    """The state of one bench run and the alternatives it times."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.results = Results()
        self.seq = 0
        self.fresh_count = 0
        self.night = observing_night(time.time())
        self.rois = SMOKE_ROIS if args.smoke else ROIS
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.work = (Path(args.workdir) / f"run-{stamp}-{os.getpid()}").resolve()
        self.services: list[ServiceProcess] = []
        self.other: OtherTree | None = None
        self.templates: dict[str, Path] = {}
        self.out_bytes: dict[str, bytes] = {}

    def next_name(self) -> str:
        self.seq += 1
        return raw_name(self.night, self.seq)

    # ------------------------------------------------------------------ set-up
    def setup(self) -> None:
        a = self.args
        self.work.mkdir(parents=True)
        facts = self.results.facts
        facts["machine"] = machine_description(self.work)
        facts["parameters"] = {
            "reps_full": a.reps,
            "reps_3k": a.reps_3k,
            "night_files": a.night_files,
            "replay_rounds": a.replay_rounds,
            "idle_seconds": a.idle_seconds,
            "poll_interval": a.poll_interval,
            "settle": a.settle,
            "compare_settle": a.compare_settle,
            "quick": a.quick,
            "smoke": a.smoke,
            "rois": self.rois,
            "argv": sys.argv[1:],
        }
        self.stage = self.work / "stage"
        self.stage.mkdir()
        for role, roi in self.rois.items():
            t0 = time.perf_counter()
            spec = sim.ExposureSpec(channel=CHANNEL, date=self.night, seq=1, roi=roi)
            folder = self.work / "templates" / role
            folder.mkdir(parents=True)
            self.templates[role] = sim.write(spec, folder, two_pass=True)
            size = self.templates[role].stat().st_size / MB
            log(f"simulated a {roi} raw file ({size:.1f} MB) in {time.perf_counter() - t0:.1f} s")
        # One layout for everything run in this process or as a one-shot: the
        # floor, the astropy baseline, Pipeline.process and `modsingest process`.
        self.local = Layout.make(self.work / "local", poll_interval=a.poll_interval)
        self.local_dests = [self.local.processed / self.night, self.local.newdata]
        self.local_dests[0].mkdir(parents=True, exist_ok=True)
        self.pipeline = Pipeline(load_config(self.local.config))
        self.astropy = AstropyBaseline()
        if a.baseline_src:
            src = Path(a.baseline_src).resolve()
            self.other = OtherTree(src, self.local.config)
            facts["baseline_src"] = str(src)
            log(f"baseline tree {src} ready in a helper process")
        for role in self.templates:
            self.check_template(role)

    def check_template(self, role: str) -> None:
        """Record the agent's output bytes (the floor writes them) and hold the astropy baseline to them."""
        facts = self.results.facts
        name = self.next_name()
        raw = self.local.raw / name
        copy_durable(self.templates[role], raw)
        res = self.pipeline.process(raw)
        if not res.ok:
            raise RuntimeError(f"Pipeline.process failed on the {role} template: {res.error}")
        out = self.local.outputs(name, self.night)
        self.out_bytes[role] = out[1].read_bytes()
        # the baseline must do the same work: check its output against the agent's
        self.astropy.process(raw, [self.stage], name)
        problems = same_data(out[1], self.stage / name)
        facts[f"astropy_check_{role}"] = problems or "identical data in HDUs 1-6"
        if problems:
            self.results.error(
                f"astropy baseline ({role})", "output differs from the agent's: " + "; ".join(problems)
            )
        else:
            log(f"astropy baseline output checked ({role}): data of HDUs 1-6 identical to the agent's")
        unlink_quiet(raw, *out, self.stage / name)
        facts[f"output_mb_{role}"] = len(self.out_bytes[role]) / MB
        facts[f"raw_mb_{role}"] = self.templates[role].stat().st_size / MB

    def stage_local(self, role: str) -> tuple[Path, str]:
        """A fresh raw copy with a fresh name for one timed alternative."""
        name = self.next_name()
        raw = self.local.raw / name
        copy_durable(self.templates[role], raw)
        settle()
        return raw, name

    def done_local(self, raw: Path, name: str) -> None:
        unlink_quiet(raw, *self.local.outputs(name, self.night), *[d / name for d in self.local_dests])

    # ------------------------------------------------------------------ alternatives run locally
    def run_floor(self, role: str, streamed: bool = True) -> None:
        raw, name = self.stage_local(role)
        if streamed:
            key, label = f"floor_{role}", f"byte-copy floor ({role})"
        else:
            key, label = f"floor_plain_{role}", f"byte-copy, one write + fsync, not streamed ({role})"
        try:
            seconds = floor_once(raw, self.out_bytes[role], self.local_dests, name, streamed)
            self.results.series_for(key, label).add(seconds)
        finally:
            self.done_local(raw, name)

    def run_astropy(self, role: str) -> None:
        raw, name = self.stage_local(role)
        try:
            seconds = self.astropy.process(raw, self.local_dests, name)
            self.results.series_for(f"astropy_{role}", f"astropy.io.fits baseline ({role})").add(seconds)
        finally:
            self.done_local(raw, name)

    def run_inproc(self, role: str) -> None:
        raw, name = self.stage_local(role)
        try:
            t0 = time.perf_counter()
            res = self.pipeline.process(raw)
            elapsed = time.perf_counter() - t0
            if not res.ok:
                raise RuntimeError(res.error)
            key = f"inproc_{role}"
            self.results.series_for(key, f"Pipeline.process, warm, in-process ({role})").add(elapsed)
            for part, seconds in res.timings.items():
                self.results.series_for(f"{key}_{part}", f"  of which {part}").add(seconds)
        finally:
            self.done_local(raw, name)

    def run_other(self, role: str) -> None:
        assert self.other is not None
        raw, name = self.stage_local(role)
        try:
            label = f"Pipeline.process, warm, baseline tree ({role})"
            self.results.series_for(f"other_{role}", label).add(self.other.process(raw))
        finally:
            self.done_local(raw, name)

    def run_cold(self, role: str) -> None:
        raw, name = self.stage_local(role)
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
            self.results.series_for(f"cold_{role}", f"modsingest process, cold one-shot ({role})").add(
                elapsed
            )
        finally:
            self.done_local(raw, name)

    # ------------------------------------------------------------------ the agent
    def run_agent(self, svc: ServiceProcess, key: str, label: str, role: str) -> dict[str, Any]:
        got = agent_once(svc, self.templates[role], self.next_name(), self.night)
        if got["latency"] is None:
            raise RuntimeError(
                f"{svc.label}: .new did not name the file within the timeout; "
                f"ledger row {got.get('row')}\n{svc.log_tail()}"
            )
        self.results.series_for(key, label).add(got["latency"])
        for part, what in PARTS.items():
            self.results.series_for(f"{key}_{part}", f"  {what}").add(got.get(part))
        return got

    def start_service(self, label: str, layout: Layout) -> ServiceProcess:
        """Start one service and wait until it is ready (an exception if it is not)."""
        svc = ServiceProcess(layout, label)
        self.services.append(svc)
        svc.launch()
        self._wait_ready(svc)
        return svc

    def start_services(self, layouts: dict[str, Layout]) -> dict[str, ServiceProcess]:
        """Start several services at once; one that does not become ready is an error of the run."""
        launched = [ServiceProcess(layout, label) for label, layout in layouts.items()]
        for svc in launched:
            self.services.append(svc)
            svc.launch()
        ready: dict[str, ServiceProcess] = {}
        for svc in launched:
            try:
                self._wait_ready(svc)
            except Exception as exc:
                self.results.error(f"starting the service {svc.label}", exc)
                continue
            ready[svc.label] = svc
        return ready

    def _wait_ready(self, svc: ServiceProcess) -> None:
        try:
            seconds = svc.wait_ready()
        except Exception:
            self.stop_service(svc)
            raise
        self.results.facts[f"start_seconds_{svc.label}"] = seconds
        assert svc.proc is not None
        log(f"service {svc.label} ready in {seconds:.1f} s (pid {svc.proc.pid})")

    def stop_service(self, svc: ServiceProcess) -> None:
        svc.stop()
        if svc in self.services:
            self.services.remove(svc)

    def run_fresh_first(self) -> None:
        """A service started afresh, its first file, stopped: one sample of "first file".

        One first file per run would be a single sample of a disk whose speed
        varies by tens of percent from one file to the next; a fresh service in
        every repetition gives as many samples as the warm files have.
        """
        self.fresh_count += 1
        lay = Layout.make(
            self.work / f"svc-fresh-{self.fresh_count}",
            method="inotify",
            workers=1,
            poll_interval=self.args.poll_interval,
            settle=self.args.settle,
        )
        try:
            svc = self.start_service(f"fresh-{self.fresh_count}", lay)
            try:
                self.run_agent(svc, "first_full", "first file after start (full, main)", "full")
            finally:
                self.stop_service(svc)
        finally:
            shutil.rmtree(lay.root, ignore_errors=True)

    def rotate(self, reps: int, alternatives: list[tuple[str, Callable[[], Any]]]) -> None:
        """Each repetition runs every alternative once, the order rotated by one each time."""
        for rep in range(reps):
            shift = rep % len(alternatives)
            order = alternatives[shift:] + alternatives[:shift]
            log(f"repetition {rep + 1}/{reps}: " + ", ".join(n for n, _ in order))
            for label, fn in order:
                try:
                    fn()
                except Exception as exc:
                    self.results.error(f"{label} (repetition {rep + 1})", exc)

    # ------------------------------------------------------------------ the end
    def close(self) -> None:
        """Stop every service and helper; remove the scratch directory unless --keep."""
        for svc in list(self.services):
            with contextlib.suppress(Exception):
                self.stop_service(svc)
        if self.other is not None:
            self.other.close()
        self.results.facts.setdefault("machine", {})["loadavg_end"] = os.getloadavg()
        if self.args.keep:
            log(f"kept {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)
