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
- the site's configuration, ``etc/mods1.yaml`` as shipped (``method: poll``,
  azcam's UDP ``proc`` datagram as the writer-done signal), against the same
  file with inotify: close to ``.new``, side by side, target within 1.25x;
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

The parts live in ``tools/benchkit/``: the measurements (``measure``, ``phases``,
``service``, ``baselines``, ``machine``) and the report (``report``).  ``--smoke``
runs every phase once on small files, to prove the bench works (tests/test_bench.py
runs it); its figures mean nothing.

Everything happens in a scratch directory (default ``bench-out/`` in the repo,
git-ignored) that is removed at the end unless ``--keep``.  Exit status 0 when
every measurement was taken (a missed target is a FAIL in the table, not an
error); 1 when a measurement could not be taken (e.g. the service did not
start); the table is printed either way.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchkit import phases
from benchkit.common import REPO, log
from benchkit.measure import Run
from benchkit.report import Report


def run_all(args: argparse.Namespace) -> int:
    """Every phase, the report on stdout (and JSON); 1 if a measurement could not be taken."""
    run = Run(args)
    try:
        run.setup()
        log(f"phase A: full frames, {args.reps} repetitions")
        phases.full_frames(run)
        log(f"phase B: 3k files, inotify, poll and etc/mods1.yaml services, {args.reps_3k} repetitions")
        phases.files_3k(run)
        log("phase C: replay throughput")
        phases.replay(run)
    except KeyboardInterrupt:
        run.results.error("bench", "interrupted")
    except Exception as exc:
        run.results.error("bench", exc)
    finally:
        run.close()
    report = Report(run.results)
    report.print(sys.stdout)
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_json(), indent=2, default=str) + "\n")
        log(f"results written to {args.json}")
    return 1 if run.results.errors else 0


# =========================================================================== command line
#: Defaults per mode: full run, --quick, --smoke.
MODES = {
    "reps": (5, 3, 1),
    "reps_3k": (6, 3, 1),
    "night_files": (100, 30, 2),
    "replay_rounds": (2, 2, 1),
    "idle_seconds": (10.0, 5.0, 1.0),
}


def _defaults(key: str) -> str:
    full, quick, smoke = MODES[key]
    return f"(default {full:g}; quick {quick:g}; smoke {smoke:g})"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="fewer repetitions and a shorter night")
    mode.add_argument(
        "--smoke",
        action="store_true",
        help="every phase once on 1k files: proves the bench works, figures mean nothing",
    )
    p.add_argument("--reps", type=int, help="full-frame repetitions " + _defaults("reps"))
    p.add_argument("--reps-3k", type=int, help="3k-ROI repetitions " + _defaults("reps_3k"))
    p.add_argument("--night-files", type=int, help="files in the replay night " + _defaults("night_files"))
    p.add_argument(
        "--replay-rounds",
        type=int,
        help="replay rounds, each a copy-only night, 1 worker and 2 workers, the order "
        "reversed every other round " + _defaults("replay_rounds"),
    )
    p.add_argument("--idle-seconds", type=float, help="idle CPU window " + _defaults("idle_seconds"))
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
    column = 2 if args.smoke else 1 if args.quick else 0
    for key, values in MODES.items():
        if getattr(args, key) is None:
            setattr(args, key, values[column])
    if args.reps < 1 or args.reps_3k < 1 or args.night_files < 2 or args.replay_rounds < 1:
        p.error("repetitions and rounds must be at least 1, the night at least 2 files")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    return run_all(args)


if __name__ == "__main__":
    sys.exit(main())
