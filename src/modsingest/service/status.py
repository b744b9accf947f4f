"""``modsingest status``: what the service has seen, delivered and failed.

Written to be read at 3 a.m., and to work during the outage being looked into:
the configuration is loaded without requiring its directories, and each one
that is missing or unusable is reported as a problem.  It shows, from what the
service keeps in the ledger (not from the service's memory): is the service
alive; files waiting for a destination (full disk, NFS away) with the reason,
attempts and next try; files the gate holds (incomplete so far, waiting for
CONPARS, impossible) with the reason; failed and incomplete files; the newest
exposure per channel by DATE-OBS beside the name ``<CHAN>.new`` gives; how long
files take from detection to delivery.  It only reads (the ledger, the state
directory's lock, the ``.new`` files), so it is safe to run at any time, as any
user who can read the state directory.

``--json`` gives the same facts for scripts.  ``--check`` prints one line in the
Nagios/Icinga plugin convention and exits 0 (OK), 1 (WARNING) or 2 (CRITICAL):
see ``check``.
"""

from __future__ import annotations

import os
import re
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
    WAITING,
    open_existing,
    path_of,
    service_running,
)

#: a heartbeat older than this, with the lock held, means a stuck service
STALE_HEARTBEAT = 30.0
#: without --night: what happened in this many seconds (not by the name's date tag:
#: azcam's tag is fixed when its server starts, so tonight's files may carry an old one)
RECENT = 86400.0

OK, WARNING, CRITICAL = 0, 1, 2
LEVELS = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL"}


def gather(
    settings, night: str | None = None, now: float | None = None, directory_problems: list[str] | None = None
) -> dict[str, Any]:
    """Everything ``status`` shows, as plain data.

    ``directory_problems``: from ``config.check_directories`` (the command passes
    them; None: checked here).
    """
    now = time.time() if now is None else now
    state = settings.paths.state
    if directory_problems is None:
        from modsingest.config import check_directories

        directory_problems = check_directories(settings)
    report: dict[str, Any] = {
        "ledger": str(path_of(state)),
        "night": night,
        "now": now,
        "directory_problems": list(directory_problems),
        "waiting": [],
        "held": [],
        "newest": {},
    }
    running = service_running(state) if os.path.isdir(state) else False
    unreadable = None
    try:
        ledger = open_existing(state)
    except Exception as exc:  # sqlite3.Error, PermissionError, an older schema: say it, do not trace
        unreadable = str(exc) if str(path_of(state)) in str(exc) else f"{path_of(state)}: {exc}"
        report["directory_problems"].append(f"cannot read the ledger: {unreadable}")
        ledger = None
    if ledger is None:
        what = "never ran (no ledger yet)" if unreadable is None else "unknown (the ledger cannot be read)"
        if unreadable is not None and running:
            what = "running (the ledger cannot be read)"
        report["service"] = {"running": running, "state": what}
        report.update(
            counts={},
            latency=None,
            problems=[],
            inotify_blind=None,
            found_by_rescan=0,
            older_problems=0,
            oldest_queued_age=None,
            gate={},
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
        waiting = ledger.waiting()
        held = ledger.held() if running else []
        newest = ledger.newest_exposures()
    finally:
        ledger.close()
    report["service"] = _service(info, running, now)
    counts = {s: 0 for s in STATES if s != SUPERSEDED}
    for r in rows:
        if r.state in counts:
            counts[r.state] += 1
    counts[WAITING] = len(waiting)  # all of them, whatever the window: each is a file not delivered
    report["counts"] = counts
    gate = info.get("gate") if running else None
    report["gate"] = gate or {}
    report["waiting"] = [
        {
            "name": r.name,
            "path": r.path,
            "reason": r.reason,
            "attempts": r.attempts,
            "since": r.waiting_since,
            "next_try": r.retry_at,
        }
        for r in waiting
    ]
    report["held"] = [
        {
            "name": os.path.basename(str(h["path"])),
            "path": h["path"],
            "state": h["state"],
            "since": h["since"],
            "reason": h["reason"],
        }
        for h in held
    ]
    report["newest"] = {
        channel: {
            "name": r.name,
            "delivered_as": r.delivered_as,
            "date_obs": r.date_obs,
            "delivered_at": r.finished_at or 0,
            "pointer": _pointer(settings.paths.newdata, channel),
        }
        for channel, r in sorted(newest.items())
    }
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


def _pointer(newdata, channel: str) -> dict[str, Any]:
    """What ``<newdata>/<CHAN>.new`` names now (observers' modsDisp reads it), or why it cannot be read."""
    path = os.path.join(newdata, f"{channel}.new")
    try:
        with open(path, "rb") as f:
            text = f.read(4096).decode("ascii", "replace").strip()
    except OSError as exc:
        return {"file": path, "names": None, "error": exc.strerror or str(exc)}
    return {"file": path, "names": text or None, "error": None if text else "empty"}


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
        "unwatched": info.get("unwatched", []) if running else [],
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
    if svc.get("unwatched"):
        lines.append(
            f"WARNING:  not watched by inotify (missing or unmounted; rescans go on): {', '.join(svc['unwatched'])}"
        )
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
    dirs = report.get("directory_problems") or []
    if dirs:
        lines.append(f"DIRECTORY PROBLEMS ({len(dirs)}):")
        lines += [f"  {p}" for p in dirs]
    waiting = report.get("waiting") or []
    if waiting:
        lines.append(
            f"WAITING FOR A DESTINATION ({len(waiting)}): processed, not delivered; "
            "tried again until a destination takes them"
        )
        for w in waiting:
            due = (w["next_try"] or now) - now
            lines.append(
                f"  {w['name']}  since {_utc(w['since'])} ({_ago(now - (w['since'] or now))}), "
                f"{w['attempts']} attempt(s), next try {'now' if due <= 0 else 'in ' + _ago(due)}"
            )
            lines.append(f"             {w['reason']}")
    held = report.get("held") or []
    if held:
        lines.append(f"Held by the gate ({len(held)}):")
        for h in held:
            reason = f": {h['reason']}" if h.get("reason") else ""
            lines.append(
                f"  {h['state'].upper():<20} {h['name']}  since {_utc(h['since'])} "
                f"({_ago(now - (h['since'] or now))}){reason}"
            )
    scope = f"Night {report['night']}" if report["night"] else "Last 24 h"
    counts = report["counts"]
    if not counts:
        lines.append(f"{scope}: nothing recorded yet")
        return "\n".join(lines)
    total = sum(counts.values())
    parts = [f"{n} {state}" for state, n in counts.items() if n or state == DELIVERED]
    if counts.get(WAITING):
        total -= counts[WAITING]  # shown above; they may be older than the window
        parts = [p for p in parts if not p.endswith(f" {WAITING}")]
    waiting_note = f"; {counts[WAITING]} waiting for a destination (above)" if counts.get(WAITING) else ""
    lines.append(f"{scope}: {total} file(s): " + ", ".join(parts) + waiting_note)
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
        lines.append("Newest exposure per channel (by DATE-OBS), and what <CHAN>.new names:")
        for channel, n in report["newest"].items():
            shown = n["delivered_as"] or n["name"]
            if shown != n["name"]:
                shown = f"{n['name']} as {shown}"
            lines.append(
                f"  {channel:<7} {shown}  DATE-OBS {n['date_obs'] or '?'}, delivered "
                f"{_utc(n['delivered_at'])} ({_ago(now - n['delivered_at'])} ago)"
            )
            pointer = n.get("pointer") or {}
            delivered_name = n["delivered_as"] or n["name"]
            if pointer.get("error"):
                lines.append(f"          {channel}.new: cannot read: {pointer['error']}")
            elif pointer.get("names") == delivered_name:
                lines.append(f"          {channel}.new: {pointer['names']} (the same)")
            else:
                lines.append(f"          {channel}.new: {pointer.get('names')} (NOT the newest exposure)")
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
        if report.get("waiting") or report.get("directory_problems"):
            # not "Problems: none" while files wait or a directory is away (they are above)
            lines.append("Failed or incomplete files: none")
        else:
            lines.append("Problems: none")
    if report.get("older_problems"):
        lines.append(
            f"          and {report['older_problems']} older failed or incomplete "
            f"file(s): modsingest status --night CCYYMMDD"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- monitoring
def check(report: dict[str, Any]) -> tuple[int, str]:
    """The monitoring verdict: (exit status, one line), in the Nagios/Icinga plugin convention.

    CRITICAL (2): the service is not running or not responding, a configured
    directory is missing or unusable, or files wait for a destination (delivery
    has stopped).  WARNING (1): failed or incomplete files in the window, files
    the gate found impossible, or inotify blind.  OK (0) otherwise.  After the
    text, ``|`` and performance data (counts) for graphs.
    """
    critical: list[str] = []
    warning: list[str] = []
    svc = report["service"]
    if svc.get("state") != "running":
        critical.append(f"service {svc.get('state', 'not running')}")
    dirs = report.get("directory_problems") or []
    if dirs:
        first = re.sub(r"^\S+:(\d+|\?): ", "", dirs[0])  # the key and problem, without file:line
        critical.append(f"{len(dirs)} directory problem(s): {first}")
    waiting = report.get("waiting") or []
    if waiting:
        critical.append(f"{len(waiting)} file(s) waiting for a destination ({waiting[0]['reason']})")
    problems = report.get("problems") or []
    failed = sum(1 for p in problems if p["state"] == FAILED)
    incomplete = sum(1 for p in problems if p["state"] == INCOMPLETE)
    if failed:
        warning.append(f"{failed} failed")
    if incomplete:
        warning.append(f"{incomplete} incomplete")
    impossible = [h for h in report.get("held") or [] if h["state"] == "impossible"]
    if impossible:
        warning.append(f"{len(impossible)} impossible file(s) held")
    if report.get("inotify_blind"):
        warning.append("inotify blind (rescans and UDP still find files)")
    level = CRITICAL if critical else WARNING if warning else OK
    counts = report.get("counts") or {}
    if level == OK:
        text = (
            f"{counts.get(DELIVERED, 0)} delivered in the last 24 h"
            if not report.get("night")
            else (f"{counts.get(DELIVERED, 0)} delivered on night {report['night']}")
        )
    else:
        text = "; ".join(critical + warning)
    perf = " ".join(
        f"{key}={value}"
        for key, value in (
            ("delivered", counts.get(DELIVERED, 0)),
            ("failed", counts.get(FAILED, 0)),
            ("incomplete", counts.get(INCOMPLETE, 0)),
            ("queued", counts.get(QUEUED, 0)),
            ("waiting", len(waiting)),
            ("held", len(report.get("held") or [])),
        )
    )
    return level, f"MODSINGEST {LEVELS[level]} - {' '.join(text.split())} | {perf}"
