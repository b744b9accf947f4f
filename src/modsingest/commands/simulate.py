"""``modsingest simulate``: arguments for the simulator, one line per file written."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from modsingest.names import ROOTS
from modsingest.sim import (
    EPOCHS,
    IMAGE_TYPES,
    ROI_MODES,
    SHUTTER_DELAY,
    TELALT_STYLES,
    TIMEZONES,
    ExposureSpec,
    as_utc,
    parse_binning,
    readout_seconds,
    write,
)


def _iso_time(text: str) -> datetime:
    try:
        return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date-time") from None


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``modsingest simulate``."""
    add = parser.add_argument
    add("--out", required=True, type=Path, help="directory to write into (must exist)")
    add("--channel", default="mods1b", choices=ROOTS)
    add("--date", help="observing-date tag CCYYMMDD (default: UTC date of now + 5 h)")
    add(
        "--start",
        type=_iso_time,
        help="UTC start of the first exposure, ISO (default: now, or 04:00 UTC of --date)",
    )
    add("--seq", type=int, default=1, help="sequence number of the first file (1..9999)")
    add("--count", type=int, default=1, help="number of successive exposures")
    add(
        "--interval",
        type=float,
        default=0.0,
        help="seconds between files, real time (0: as fast as possible)",
    )
    add("--roi", default="full", choices=ROI_MODES)
    add("--bin", default="1 1", help="binning 'xb yb', each 1 or 2 (e.g. '2 2', '1 2')")
    add(
        "--epoch",
        type=int,
        default=2026,
        choices=sorted(EPOCHS),
        help="2026: IM1..IM4, 8292 columns; 2025: Q1..Q4, 8288 columns",
    )
    add("--imagetype", default="object", choices=IMAGE_TYPES)
    add("--exptime", type=float, default=300.0, help="exposure time, seconds")
    add("--object", default="NGC 4151", help="OBJECT title")
    passes = parser.add_mutually_exclusive_group()
    passes.add_argument(
        "--two-pass",
        dest="two_pass",
        action="store_true",
        default=True,
        help="write CONPARS in a second pass, as azcam (default)",
    )
    passes.add_argument(
        "--one-pass", dest="two_pass", action="store_false", help="write the whole file at once"
    )
    add("--pass-delay", type=float, default=0.0, help="seconds between the two passes")
    add(
        "--no-telescope",
        dest="telescope",
        action="store_false",
        help="omit the telescope and instrument blocks (engineering/calibration file)",
    )
    add(
        "--no-conpars",
        dest="conpars",
        action="store_false",
        help="never append CONPARS (the second pass does not happen)",
    )
    add(
        "--telalt",
        default="decimal",
        choices=TELALT_STYLES,
        help="TELALT/TELAZ style: sexagesimal before 2026-02-26, decimal after",
    )
    add("--fraction-1000", action="store_true", help="print UTC-OBS with azcam's '.1000' fraction")
    add("--blank-nstype", action="store_true", help="blank NSTYPE/NSEPHFIL")
    add(
        "--nocomm",
        action="append",
        default=[],
        metavar="KEYWORD",
        help="telescope/instrument keyword returning NOCOMM (repeatable): "
        "string keywords carry it, numeric ones are left out",
    )
    add("--timezone", default="0.0", choices=TIMEZONES, help="host clock TIMEZONE")
    add(
        "--name",
        dest="root",
        metavar="ROOT",
        help="azcam file-name root used verbatim, e.g. 'm1bTest.' -> m1bTest.0001.fits",
    )
    add("--seed", type=int, help="pixel/telemetry seed (default: from the file name)")
    add("--overwrite", action="store_true", help="replace existing files")
    add(
        "--telemetry",
        type=Path,
        metavar="DIR",
        help="also write the night's telemetry (weather CSV, guider JSON lines, WFS HDF5) into DIR, "
        "covering the exposures and an hour either side (docs/telemetry.md)",
    )


def specs_from_args(args: argparse.Namespace) -> list[ExposureSpec]:
    """The exposures the command line asks for, in order."""
    if args.count < 1:
        raise ValueError(f"--count {args.count} must be at least 1")
    if args.interval < 0 or args.pass_delay < 0:
        raise ValueError("--interval and --pass-delay must not be negative")
    first = ExposureSpec(
        channel=args.channel,
        date=args.date,
        seq=args.seq,
        roi=args.roi,
        binning=parse_binning(args.bin),
        epoch=args.epoch,
        utc_start=args.start,
        exptime=args.exptime,
        imagetype=args.imagetype,
        object=args.object,
        telescope=args.telescope,
        telalt_style=args.telalt,
        fraction_1000=args.fraction_1000,
        blank_nstype=args.blank_nstype,
        conpars=args.conpars,
        nocomm=tuple(args.nocomm),
        root=args.root,
        timezone=args.timezone,
        seed=args.seed,
    )
    if args.seq + args.count - 1 > 9999:
        raise ValueError(f"sequence numbers {args.seq}..{args.seq + args.count - 1} go past 9999")
    cadence = args.interval or (first.exptime + SHUTTER_DELAY + readout_seconds(first.region))
    return [
        dataclasses.replace(first, seq=first.seq + i, utc_start=first.start + timedelta(seconds=i * cadence))
        for i in range(args.count)
    ]


def command(args: argparse.Namespace) -> int:
    """Write the files, one line per file on stdout; 0 on success."""
    try:
        specs = specs_from_args(args)
    except ValueError as exc:
        print(f"modsingest simulate: {exc}", file=sys.stderr)
        return 2
    if not args.out.is_dir():
        print(f"modsingest simulate: output directory {args.out} does not exist", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    for i, spec in enumerate(specs):
        wait = t0 + i * args.interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        try:
            path = write(
                spec, args.out, two_pass=args.two_pass, pause=args.pass_delay, overwrite=args.overwrite
            )
        except OSError as exc:
            print(f"modsingest simulate: {exc}", file=sys.stderr)
            return 1
        print(path, flush=True)
    if args.telemetry is not None:
        return _telemetry(args.telemetry, specs)
    return 0


def _telemetry(directory: Path, specs: list[ExposureSpec]) -> int:
    """The sources' files for the night of ``specs``, matching their times (sim/telemetry.py)."""
    from modsingest.sim import telemetry

    if not directory.is_dir():
        print(f"modsingest simulate: telemetry directory {directory} does not exist", file=sys.stderr)
        return 2
    hour = timedelta(hours=1)
    start = min(s.start for s in specs) - hour
    end = max(s.start + timedelta(seconds=s.exptime) for s in specs) + hour
    for path in telemetry.write_night(directory, specs[0].tag, start, end).values():
        print(path, flush=True)
    return 0
