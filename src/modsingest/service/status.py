"""``modsingest status``: what the service has seen, delivered and failed.

Written to be read at 3 a.m.: is the service alive, is anything wrong (failed or
incomplete files with their reasons, inotify blind), where each channel is, how
long files take from detection to delivery.  It only reads the ledger (and the
state directory's lock, to tell a running service from a stale heartbeat), so
it is safe to run at any time, as any user who can read the state directory.

``--json`` gives the same facts for scripts.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime
from typing import Any

from modsingest.service.ledger import (
    DELIVERED,
    FAILED,
    INCOMPLETE,
    QUEUED,
    STATES,
    SUPERSEDED,
    open_existing,
    path_of,
    service_running,
)

#: a heartbeat older than this, with the lock held, means a stuck service
STALE_HEARTBEAT = 30.0
#: without --night: what happened in this many seconds (not by the name's date tag:
#: azcam's tag is fixed when its server starts, so tonight's files may carry an old one)
RECENT = 86400.0


def gather(settings, night: str | None = None, now: float | None = None) -> dict[str, Any]:
    """Everything ``status`` shows, as plain data."""
    now = time.time() if now is None else now
    state = settings.paths.state
    report: dict[str, Any] = {"ledger": str(path_of(state)), "night": night, "now": now}
    running = service_running(state)
    ledger = open_existing(state)
    if ledger is None:
        report["service"] = {"running": running, "state": "never ran (no ledger yet)"}
        report.update(
            counts={},
            newest={},
            latency=None,
            problems=[],
            inotify_blind=None,
            found_by_rescan=0,
            older_problems=0,
        )
        return report
    try:
        info = ledger.info()
        if night:
            rows = ledger.rows(night=night)
            report["older_problems"] = 0
        else:
            rows = ledger.rows(since=now - RECENT)
            report["older_problems"] = ledger.problems_before(now - RECENT)
    finally:
        ledger.close()
    report["service"] = _service(info, running, now)
    counts = {s: 0 for s in STATES if s != SUPERSEDED}
    for r in rows:
        if r.state in counts:
            counts[r.state] += 1
    report["counts"] = counts
    gate = info.get("gate") if running else None
    report["gate"] = gate or {}
    newest: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r.state != DELIVERED:
            continue
        channel = r.channel or "other"
        if channel not in newest or (r.finished_at or 0) > newest[channel]["delivered_at"]:
            newest[channel] = {
                "name": r.name,
                "delivered_as": r.delivered_as,
                "delivered_at": r.finished_at or 0,
            }
    report["newest"] = dict(sorted(newest.items()))
    latencies = sorted(r.latency for r in rows if r.latency is not None)
    report["latency"] = _latency(latencies)
    problems = [
        {
            "state": r.state,
            "name": r.name,
            "path": r.path,
            "reason": r.reason,
            "attempts": r.attempts,
            "when": r.finished_at or r.seen_at,
        }
        for r in rows
        if r.state in (FAILED, INCOMPLETE)
    ]
    report["problems"] = sorted(problems, key=lambda p: p["when"] or 0)
    queued = [r.queued_at for r in rows if r.state == QUEUED and r.queued_at]
    report["oldest_queued_age"] = now - min(queued) if queued else None
    report["inotify_blind"] = info.get("inotify_blind")
    report["running_as_root"] = info.get("running_as_root") if running else None
    report["found_by_rescan"] = info.get("found_by_rescan", 0)
    return report


def _service(info: dict[str, Any], running: bool, now: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        "running": running,
        "pid": info.get("pid") if running else None,
        "version": info.get("version"),
        "method": info.get("method"),
        "workers": info.get("workers"),
        "started": info.get("started"),
        "stopped": info.get("stopped"),
        "observer_restarts": info.get("observer_restarts", 0),
        "worker_deaths": info.get("worker_deaths", 0),
    }
    beat = info.get("heartbeat")
    out["heartbeat_age"] = now - beat if running and beat else None
    if not running:
        out["state"] = "not running"
    elif out["heartbeat_age"] is None or out["heartbeat_age"] > STALE_HEARTBEAT:
        out["state"] = "running but not responding"
    else:
        out["state"] = "running"
    return out


def _latency(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
    return {"count": len(values), "median": statistics.median(values), "p95": p95, "max": values[-1]}


# --------------------------------------------------------------------------- text
def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _utc(when: float | None) -> str:
    if not when:
        return "?"
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render(report: dict[str, Any]) -> str:  # noqa: C901
    now = report["now"]
    lines = [f"modsingest status ({report['ledger']})"]
    svc = report["service"]
    if svc["state"] == "running":
        lines.append(
            f"Service:  running, pid {svc['pid']}, up {_ago(now - (svc['started'] or now))}, "
            f"heartbeat {_ago(svc['heartbeat_age'])} ago; {svc['method']}, "
            f"{svc['workers']} worker(s)"
        )
    elif svc["state"] == "running but not responding":
        lines.append(
            f"Service:  PROBLEM: running (pid {svc['pid']}) but its last heartbeat was "
            f"{_ago(svc['heartbeat_age'])} ago"
        )
    elif svc.get("stopped"):
        lines.append(
            f"Service:  NOT RUNNING (stopped {_utc(svc['stopped'])}, {_ago(now - svc['stopped'])} ago)"
        )
    else:
        lines.append(f"Service:  NOT RUNNING ({svc['state']})")
    for key, label in (
        ("observer_restarts", "inotify observer restarts"),
        ("worker_deaths", "worker deaths"),
    ):
        if svc.get(key):
            lines.append(f"          {svc[key]} {label} since start")
    blind = report.get("inotify_blind")
    if blind:
        every = blind.get("rescan_interval")
        every = f"{every:g}" if isinstance(every, (int, float)) else "?"
        lines.append(
            f"WARNING:  inotify looks blind since {_utc(blind.get('since'))}: "
            f"{blind.get('example')} reached the queue without an inotify event "
            f"(NFS written by another host?). Files are still found by rescans every "
            f"{every} s and UDP requests; watch.method: poll "
            f"finds them sooner."
        )
    if report.get("running_as_root"):
        lines.append(f"WARNING:  {report['running_as_root']}")
    if report.get("found_by_rescan"):
        lines.append(f"          {report['found_by_rescan']} file(s) found only by a rescan since start")
    scope = f"Night {report['night']}" if report["night"] else "Last 24 h"
    counts = report["counts"]
    if not counts:
        lines.append(f"{scope}: nothing recorded yet")
        return "\n".join(lines)
    total = sum(counts.values())
    parts = [f"{n} {state}" for state, n in counts.items() if n or state == DELIVERED]
    lines.append(f"{scope}: {total} file(s): " + ", ".join(parts))
    gate = report.get("gate") or {}
    if gate.get("considering"):
        lines.append(
            f"          being looked at: {gate['considering']} "
            f"(waiting for CONPARS: {gate.get('waiting_for_conpars', 0)}, "
            f"incomplete so far: {gate.get('incomplete', 0)})"
        )
    if report.get("oldest_queued_age") is not None:
        lines.append(f"          oldest queued file waiting {_ago(report['oldest_queued_age'])}")
    if report["newest"]:
        lines.append("Newest per channel:")
        for channel, n in report["newest"].items():
            shown = (
                n["name"]
                if not n["delivered_as"] or n["delivered_as"] == n["name"]
                else (f"{n['name']} as {n['delivered_as']}")
            )
            lines.append(
                f"  {channel:<7} {shown}  {_utc(n['delivered_at'])} ({_ago(now - n['delivered_at'])} ago)"
            )
    lat = report["latency"]
    if lat:
        lines.append(
            f"Latency, detection to delivery ({lat['count']} files): median "
            f"{lat['median']:.1f} s, 95% {lat['p95']:.1f} s, max {lat['max']:.1f} s"
        )
    problems = report["problems"]
    if problems:
        lines.append(f"PROBLEMS ({len(problems)}):")
        for p in problems:
            tries = f", {p['attempts']} attempt(s)" if p["attempts"] else ""
            lines.append(f"  {p['state'].upper():<10} {p['name']}  {_utc(p['when'])}{tries}")
            lines.append(f"             {p['reason']}")
    else:
        lines.append("Problems: none")
    if report.get("older_problems"):
        lines.append(
            f"          and {report['older_problems']} older failed or incomplete "
            f"file(s): modsingest status --night CCYYMMDD"
        )
    return "\n".join(lines)
