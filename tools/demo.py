#!/usr/bin/env python3
"""``make demo``: the real agent on a local layout, fed by the simulator.

What a newcomer sees: ``./demo/`` is created fresh (raw directories for two
channels, newdata, processed, state), ``modsingest watch --config etc/demo.yaml``
starts, and the simulator writes raw files the way azcam does (PRIMARY+IM1..IM4
first, CONPARS appended in a second pass) into both raw directories.  Each file
appears in ``demo/newdata`` a moment later, processed, and ``MODS1B.new`` /
``MODS1R.new`` name the newest one.  The agent's own log lines are shown with an
``agent |`` prefix.

It stops by itself after ``--files`` files (6) or ``--timeout`` seconds (60),
stops the agent the way systemd does (SIGTERM) and prints what was delivered
(``modsingest status``).  ``--forever`` keeps writing files until Ctrl-C.
Exit status 0 when every file written was delivered.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo"
CONFIG = ROOT / "etc" / "demo.yaml"
CHANNELS = ("mods1b", "mods1r")


def say(text: str) -> None:
    print(f"demo  | {text}", flush=True)


def fresh_layout() -> dict[str, Path]:
    if DEMO.exists():
        shutil.rmtree(DEMO)
    dirs = {c: DEMO / "raw" / c for c in CHANNELS}
    dirs.update(
        newdata=DEMO / "newdata",
        processed=DEMO / "processed",
        state=DEMO / "state",
        nightlog=DEMO / "nightlog",
        telemetry=DEMO / "telemetry",
    )
    for d in dirs.values():
        d.mkdir(parents=True)
    return dirs


def start_agent() -> tuple[subprocess.Popen, threading.Event]:
    """The agent as systemd would run it; its log lines are echoed with a prefix."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "modsingest.cli", "watch", "--config", str(CONFIG)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        cwd=ROOT,
        start_new_session=True,  # Ctrl-C reaches the demo only; it stops the agent
    )
    ready = threading.Event()

    def echo() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(f"agent | {line.rstrip()}", flush=True)
            if "ready: watching" in line:
                ready.set()

    threading.Thread(target=echo, daemon=True).start()
    return proc, ready


def stop_agent(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(35)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()
    return proc.returncode


def delivered(newdata: Path) -> list[str]:
    return sorted(p.name for p in newdata.glob("*.fits") if not p.name.startswith("."))


def show_night_log(directory: Path, shown: int) -> int:
    """Print the rows of the night log added since ``shown`` (it grows with every delivery)."""
    for log in sorted(directory.glob("*_mods.txt")):
        lines = log.read_text().splitlines()
        if len(lines) - 1 > shown:
            if shown == 0:
                say(f"night log {log.relative_to(ROOT)} (rewritten on every delivery, DATE-OBS order):")
                say(f"  {lines[0].rstrip()}")
            for line in lines[1 + shown :]:
                say(f"  {line.rstrip()}")
            return len(lines) - 1
    return shown


def write_telemetry(directory: Path) -> Path:
    """The simulated weather station's file for tonight, covering the demo's exposures."""
    from datetime import UTC, datetime, timedelta

    from modsingest import names
    from modsingest.sim import telemetry

    now = datetime.now(UTC)
    night = names.observing_night(now)
    written = telemetry.write_night(
        directory, night, now - timedelta(hours=1), now + timedelta(hours=2), ("WEATHER",)
    )
    return written["WEATHER"]


def show_tables(path: Path) -> None:
    """The HDUs of one delivered file: the telemetry table after MERGED."""
    from astropy.io import fits

    with fits.open(path) as hdul:
        say(f"HDUs of newdata/{path.name} (TELTABS = {hdul[0].header.get('TELTABS')!r}):")
        for i, hdu in enumerate(hdul):
            shape = f"{len(hdu.data)} rows" if isinstance(hdu, fits.BinTableHDU) else str(hdu.shape or "")
            say(f"  [{i}] {hdu.name:8s} {type(hdu).__name__:12s} {shape}")
        if "WEATHER" in hdul:
            table = hdul["WEATHER"]
            units = ", ".join(f"{c.name} [{c.unit}]" if c.unit else c.name for c in table.columns)
            say(f"  WEATHER columns: {units}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=6, help="files to write (default 6)")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between exposures (default 2)")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="give up after this many seconds (default 60)"
    )
    parser.add_argument(
        "--roi",
        default="1k",
        choices=("full", "4k", "3k", "1k"),
        help="ROI of the simulated exposures (default 1k: small and quick)",
    )
    parser.add_argument("--forever", action="store_true", help="keep writing files until Ctrl-C")
    args = parser.parse_args(argv)

    from modsingest import sim as simulate

    dirs = fresh_layout()
    say(
        f"fresh layout in {DEMO.relative_to(ROOT)}/: raw/{{mods1b,mods1r}}, newdata, processed, state, nightlog"
    )
    weather = write_telemetry(dirs["telemetry"])
    say(f"the night's weather telemetry: {weather.relative_to(ROOT)} (attached to each file as a table)")
    say(f"starting: modsingest watch --config {CONFIG.relative_to(ROOT)}")
    proc, ready = start_agent()
    deadline = time.monotonic() + args.timeout
    while not ready.wait(0.2):
        if proc.poll() is not None or time.monotonic() > deadline:
            say("the agent did not become ready")
            stop_agent(proc)
            return 1
    say(
        f"the agent is ready; writing {'files until Ctrl-C' if args.forever else f'{args.files} files'}"
        f" (two passes each, as azcam) -- watch {dirs['newdata'].relative_to(ROOT)}/"
    )
    written: list[str] = []
    seen: set[str] = set()
    log_rows = 0  # night-log rows shown so far
    seq = {c: 0 for c in CHANNELS}
    next_write = time.monotonic()
    try:
        while args.forever or len(seen) < args.files:
            now = time.monotonic()
            if not args.forever and now > deadline:
                say(f"timed out after {args.timeout:.0f} s")
                break
            if proc.poll() is not None:
                say(f"the agent exited unexpectedly (status {proc.returncode})")
                break
            if now >= next_write and (args.forever or len(written) < args.files):
                channel = CHANNELS[len(written) % 2]
                seq[channel] += 1
                spec = simulate.ExposureSpec(channel=channel, seq=seq[channel], roi=args.roi, exptime=1.0)
                path = simulate.write(spec, dirs[channel], two_pass=True, pause=0.5)
                written.append(path.name)
                say(f"azcam wrote raw/{channel}/{path.name} (second pass: CONPARS appended)")
                next_write = now + args.interval
            for name in delivered(dirs["newdata"]):
                if name not in seen:
                    seen.add(name)
                    say(f"newdata/{name} appeared ({len(seen)}/{len(written)} delivered)")
                    log_rows = show_night_log(dirs["nightlog"], log_rows)
            time.sleep(0.1)
    except KeyboardInterrupt:
        say("Ctrl-C: stopping the agent")
    code = stop_agent(proc)
    show_night_log(dirs["nightlog"], log_rows)  # rows written after the last file appeared
    say(f"the agent stopped (exit status {code})")
    print(flush=True)
    status = subprocess.run(
        [sys.executable, "-m", "modsingest.cli", "status", "--config", str(CONFIG)],
        capture_output=True,
        text=True,
    )
    print(status.stdout, end="", flush=True)
    print(flush=True)
    final = delivered(dirs["newdata"])
    say(f"delivered to {dirs['newdata'].relative_to(ROOT)}/: {len(final)} file(s)")
    for name in final:
        say(f"  {name}")
    for pointer in sorted(dirs["newdata"].glob("*.new")):
        say(f"  {pointer.name} -> {pointer.read_text().strip()}")
    if final:
        show_tables(dirs["newdata"] / final[-1])
    missing = sorted(set(written) - set(final))
    if missing:
        say(f"NOT delivered: {', '.join(missing)}")
    return 0 if written and not missing and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
