"""The report: ratios against the references, the targets, the printed table and the JSON.

Only reads ``Results``; every number it prints was measured by ``benchkit.measure``
and ``benchkit.phases`` in the same run.
"""

from __future__ import annotations

from typing import Any, TextIO

from benchkit.common import PARTS, Results, fmt_s

#: Targets of the issues: key -> (comparison, goal).
TARGETS = {
    "latency_vs_floor": ("<=", 1.25),
    "latency_vs_astropy": ("<=", 0.5),
    "latency_cmp_vs_floor": ("<=", 1.25),
    "latency_cmp_vs_astropy": ("<=", 0.5),
    "poll_udp_vs_inotify": ("<=", 1.25),
    "rss_worker": ("<=", 250.0),
    "pss_total": ("<=", 250.0),
    "first_vs_rest": ("<=", 1.2),
    "replay_scaling": (">=", 1.6),
    "idle_cpu_inotify": ("<=", 1.0),
}

#: Latency series whose split (from the ledger) is printed: key, what.
SPLITS = (
    ("agent_full", "full frame"),
    ("agent_full_compare", "full frame, other settle"),
    ("agent_3k_inotify", "3k, inotify"),
    ("agent_3k_poll", "3k, poll"),
    ("agent_3k_prod_poll_udp", "3k, etc/mods1.yaml: poll + UDP"),
    ("agent_3k_prod_inotify", "3k, etc/mods1.yaml with inotify"),
)

RATIO = "{:.2f}x"


class Report:
    """The rows of the ratio table, built from one run's results."""

    def __init__(self, results: Results):
        self.results = results
        self.rows: list[dict[str, Any]] = []

    def ratio(self, a: str, b: str) -> float | None:
        x, y = self.results.median(a), self.results.median(b)
        return x / y if x is not None and y else None

    def target(self, key: str, label: str, value: float | None, fmt: str = RATIO) -> None:
        op, goal = TARGETS[key]
        if value is None:
            verdict = "n/a"
        else:
            ok = value <= goal if op == "<=" else value >= goal
            verdict = "PASS" if ok else "FAIL"
        row = {"key": key, "label": label, "value": value, "goal": f"{op} {goal:g}", "verdict": verdict}
        self.rows.append(row | {"fmt": fmt})

    def info(self, key: str, label: str, value: float | None, fmt: str = RATIO) -> None:
        self.rows.append({"key": key, "label": label, "value": value, "goal": "", "verdict": "", "fmt": fmt})

    # ------------------------------------------------------------------ the rows
    def build(self) -> None:
        self.rows = []
        self._latency_rows()
        self._poll_udp_rows()
        self._memory_rows()
        self._replay_rows()
        self._idle_rows()

    def _latency_rows(self) -> None:
        med, facts = self.results.median, self.results.facts
        main = facts.get("settle_main") or 0.0
        other = facts.get("parameters", {}).get("compare_settle") or 0.0
        floor = "agent latency / byte-copy floor (full, settle {:g} s)"
        astropy = "agent latency / astropy baseline (full, settle {:g} s)"
        self.target("latency_vs_floor", floor.format(main), self.ratio("agent_full", "floor_full"))
        self.target("latency_vs_astropy", astropy.format(main), self.ratio("agent_full", "astropy_full"))
        if med("agent_full_compare") is not None:
            cmp_floor = self.ratio("agent_full_compare", "floor_full")
            cmp_astropy = self.ratio("agent_full_compare", "astropy_full")
            self.target("latency_cmp_vs_floor", floor.format(other), cmp_floor)
            self.target("latency_cmp_vs_astropy", astropy.format(other), cmp_astropy)
        gate, lat, floor_full = med("agent_full_gate"), med("agent_full"), med("floor_full")
        if gate is not None and lat is not None and floor_full:
            self.info(
                "latency_minus_gate_vs_floor",
                "  (agent latency - gate wait) / floor",
                (lat - gate) / floor_full,
            )
        for key, label, a, b in (
            (
                "worker_vs_floor",
                "agent's Pipeline.process in the worker / floor (full)",
                "agent_full_process",
                "floor_full",
            ),
            ("inproc_vs_floor", "Pipeline.process (warm) / floor (full)", "inproc_full", "floor_full"),
        ):
            self.info(key, label, self.ratio(a, b))
        if med("other_full") is not None:
            self.info(
                "inproc_vs_other",
                "Pipeline.process, this tree / baseline tree (full)",
                self.ratio("inproc_full", "other_full"),
            )
            self.info(
                "inproc_vs_other_3k",
                "Pipeline.process, this tree / baseline tree (3k)",
                self.ratio("inproc_3k", "other_3k"),
            )
        for key, label, a, b in (
            (
                "inproc_vs_astropy",
                "Pipeline.process (warm) / astropy baseline (full)",
                "inproc_full",
                "astropy_full",
            ),
            (
                "plain_vs_floor",
                "plain copy (one write + fsync) / floor (full)",
                "floor_plain_full",
                "floor_full",
            ),
            ("astropy_vs_floor", "astropy baseline / floor (full)", "astropy_full", "floor_full"),
            ("cold_vs_inproc", "cold one-shot / warm Pipeline.process (full)", "cold_full", "inproc_full"),
            ("agent3k_vs_floor", "agent latency / floor (3k, inotify)", "agent_3k_inotify", "floor_3k"),
            ("inproc3k_vs_floor", "Pipeline.process (warm) / floor (3k)", "inproc_3k", "floor_3k"),
        ):
            self.info(key, label, self.ratio(a, b))
        first, rest = med("first_full"), med("agent_full")
        label = "first file after start / median of the rest (latency)"
        self.target("first_vs_rest", label, first / rest if first and rest else None)
        fp, rp = med("first_full_process"), med("agent_full_process")
        self.info(
            "first_vs_rest_process", "  same, worker processing time only", fp / rp if fp and rp else None
        )

    def _poll_udp_rows(self) -> None:
        """The site's configuration (poll + azcam's UDP proc) against inotify, same file, same run."""
        med = self.results.median
        self.target(
            "poll_udp_vs_inotify",
            "close to .new, etc/mods1.yaml: poll + UDP / inotify (3k)",
            self.ratio("agent_3k_prod_poll_udp", "agent_3k_prod_inotify"),
        )
        self.info(
            "poll_udp_ms", "  poll + UDP, close to .new (ms)", _ms(med("agent_3k_prod_poll_udp")), "{:.0f}"
        )
        self.info(
            "prod_inotify_ms", "  inotify, close to .new (ms)", _ms(med("agent_3k_prod_inotify")), "{:.0f}"
        )
        self.info(
            "poll_udp_detect_ms",
            "  poll + UDP, close to first hint (ms)",
            _ms(med("agent_3k_prod_poll_udp_detect")),
            "{:.1f}",
        )

    def _memory_rows(self) -> None:
        facts = self.results.facts
        self.target("rss_worker", "peak RSS of the worker (MB)", facts.get("rss_worker_mb"), "{:.0f}")
        label = "peak PSS, sum over the agent's processes (MB)"
        self.target("pss_total", label, facts.get("pss_peak_total_mb"), "{:.0f}")
        label = "  sum of the processes' peak RSS (shared pages twice)"
        self.info("rss_total", label, facts.get("rss_total_mb"), "{:.0f}")

    def _replay_rows(self) -> None:
        med = self.results.median
        label = "replay throughput, 2 workers / 1 (processing span)"
        self.target("replay_scaling", label, self.ratio("replay_w2_span", "replay_w1_span"))
        label = "  same, wall clock of `modsingest replay`"
        self.info("replay_scaling_wall", label, self.ratio("replay_w2_wall", "replay_w1_wall"))
        label = "  the machine's own: copy-only night, 2 copiers / 1"
        self.info("copy_scaling", label, self.ratio("copy_night_2", "copy_night_1"))
        for w in (1, 2):
            label = f"  replay, {w} worker(s) / copy-only night with {w} copier(s) (files/s)"
            self.info(f"replay_w{w}_vs_copy", label, self.ratio(f"replay_w{w}_span", f"copy_night_{w}"))
            label = f"  replay, {w} worker(s): cores busy (CPU s / wall s)"
            self.info(f"replay_w{w}_cpu", label, med(f"replay_w{w}_cpu"), "{:.2f}")

    def _idle_rows(self) -> None:
        med, facts = self.results.median, self.results.facts
        label = "idle CPU, inotify mode (% of one core)"
        self.target("idle_cpu_inotify", label, facts.get("idle_cpu_inotify_pct"), "{:.2f}")
        label = "idle CPU, poll mode (% of one core)"
        self.info("idle_cpu_poll", label, facts.get("idle_cpu_poll_pct"), "{:.2f}")
        label = "detection latency, inotify (ms)"
        self.info("detect_inotify", label, _ms(med("agent_3k_inotify_detect")), "{:.1f}")
        self.info("detect_poll", "detection latency, poll (ms)", _ms(med("agent_3k_poll_detect")), "{:.0f}")

    # ------------------------------------------------------------------ printing
    def print(self, out: TextIO) -> None:
        print("\n== modsingest benchmark ==", file=out)
        self._print_setting(out)
        self._print_series(out)
        self._print_memory(out)
        self.build()
        print("\n-- ratios and targets --", file=out)
        width = max(len(row["label"]) for row in self.rows)
        print(f"{'':<{width}}  {'measured':>9}  {'goal':>8}  verdict", file=out)
        for row in self.rows:
            v = "n/a" if row["value"] is None else row["fmt"].format(row["value"])
            print(f"{row['label']:<{width}}  {v:>9}  {row['goal']:>8}  {row['verdict']}", file=out)
        if self.results.errors:
            print("\n-- ERRORS (measurements not taken) --", file=out)
            for e in self.results.errors:
                print(f"  {e}", file=out)

    def _print_setting(self, out: TextIO) -> None:
        facts = self.results.facts
        m, p = facts.get("machine", {}), facts.get("parameters", {})
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
                f"load average at start {_load(m.get('loadavg_start'))}, at end {_load(m.get('loadavg_end'))}",
                file=out,
            )
            if m.get("free_page_reporting"):
                print(
                    "virtio balloon with free page reporting: memory freed a few seconds ago "
                    "costs a host fault when touched again (noise in every write)",
                    file=out,
                )
        if p:
            compare = f" (full frames also settle {p['compare_settle']} s)" if p.get("compare_settle") else ""
            print(
                f"repetitions: {p.get('reps_full')} full frame, {p.get('reps_3k')} 3k; replay night "
                f"of {facts.get('replay_files', p.get('night_files'))} files x {p.get('replay_rounds')} "
                f"round(s); watch.poll_interval {p.get('poll_interval')} s, watch.settle "
                f"{facts.get('settle_main', '?')} s{compare}",
                file=out,
            )
            if p.get("smoke"):
                print(
                    f"SMOKE RUN: files {p.get('rois')} stand in for full and 3k; the figures mean nothing",
                    file=out,
                )
        for note in (v for k, v in facts.items() if k.startswith("note_")):
            print(f"note: {note}", file=out)
        for role in ("full", "3k"):
            if facts.get(f"raw_mb_{role}"):
                print(
                    f"{role}: raw {facts[f'raw_mb_{role}']:.1f} MB, output {facts[f'output_mb_{role}']:.1f} MB "
                    f"(written twice)",
                    file=out,
                )

    def _print_series(self, out: TextIO) -> None:
        series, med = self.results.series, self.results.median
        print("\n-- times (median, min-max over repetitions) --", file=out)
        width = max([len(s.name) for s in series.values()] + [20])
        for s in series.values():
            if not s.values:
                continue
            if s.unit == "s":
                line = f"{fmt_s(s.median):>9}  ({fmt_s(min(s.values))} - {fmt_s(max(s.values))})"
            else:
                line = f"{s.median:>9.2f}  ({min(s.values):.2f} - {max(s.values):.2f}) {s.unit}"
            print(f"{s.name:<{width}}  {line}  n={s.n}", file=out)
        for key, what in SPLITS:
            lat = med(key)
            if not lat:
                continue
            parts = []
            for part in PARTS:
                v = med(f"{key}_{part}")
                if v is not None:
                    parts.append(f"{part} {fmt_s(v)} ({100 * v / lat:.0f} %)")
            print(f"latency split, {what} (medians of {fmt_s(lat)}): {', '.join(parts)}", file=out)

    def _print_memory(self, out: TextIO) -> None:
        facts = self.results.facts
        if facts.get("memory"):
            print("\n-- agent memory after the full frames (VmHWM = peak RSS) --", file=out)
            for proc in facts["memory"]:
                print(
                    f"  {proc['role']:<16} pid {proc['pid']:>7}: peak {proc['hwm_mb']:6.0f} MB, "
                    f"now {proc['rss_mb']:5.0f} MB (PSS {proc['pss_mb']:.0f} MB)",
                    file=out,
                )
            print(
                f"  sum of peaks {facts['rss_total_mb']:.0f} MB; sum of PSS now "
                f"{facts['pss_total_mb']:.0f} MB, at its peak while processing a full frame "
                f"{facts.get('pss_peak_total_mb', 0):.0f} MB (PSS: shared pages counted once)",
                file=out,
            )
        if "idle_cpu_inotify_pct" in facts or "idle_cpu_poll_pct" in facts:
            print(
                f"\nidle CPU over {facts.get('idle_window_s')} s: inotify "
                f"{facts.get('idle_cpu_inotify_pct', float('nan')):.2f} %, poll "
                f"{facts.get('idle_cpu_poll_pct', float('nan')):.2f} % of one core",
                file=out,
            )

    def as_json(self) -> dict[str, Any]:
        if not self.rows:
            self.build()
        return {
            "facts": self.results.facts,
            "series": {k: s.summary() | {"label": s.name} for k, s in self.results.series.items()},
            "table": [{k: v for k, v in row.items() if k != "fmt"} for row in self.rows],
            "errors": self.results.errors,
        }


def _ms(v: float | None) -> float | None:
    return None if v is None else v * 1000


def _load(v: Any) -> str:
    return " ".join(f"{x:.2f}" for x in v) if v else "?"
