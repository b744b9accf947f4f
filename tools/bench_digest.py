#!/usr/bin/env python3
"""``make bench`` (digest part): the night log's SHA-256, hashed while written, against read back.

The night log needs each delivered file's size and SHA-256.  Three ways,
``Pipeline.process`` on full frames, interleaved (the machine is shared):

- ``none``: no hash at all (the floor);
- ``while written``: what the agent does (``publish.FileDigest``: a thread hashes
  the stream as it is written, and MERGED from the page cache once complete);
- ``read back``: the former way, the published file read again and hashed
  after ``<CHAN>.new``, in the worker.

Reported: time to ``<CHAN>.new`` (read + steps + write+publish; ratio
while-written / none, PASS within 1.15) and the worker's time per file (what
the next file waits for; read back minus while written is the time saved).

``--reps N`` (default 5), ``--smoke`` (1 rep, a 1k file: proves it runs).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = ("none", "while written", "read back")


def layout(root: Path) -> Path:
    for d in ("raw", "newdata", "processed", "state"):
        (root / d).mkdir(parents=True, exist_ok=True)
    cfg = root / "modsingest.yaml"
    cfg.write_text(
        f"paths:\n  raw: [{root / 'raw'}]\n  newdata: {root / 'newdata'}\n"
        f"  processed: {root / 'processed'}\n  state: {root / 'state'}\n"
    )
    return cfg


def read_back(path: Path) -> str:
    """The former way: read the file in 4 MB pieces and hash it."""
    digest = hashlib.sha256()
    buf = bytearray(4 << 20)
    view = memoryview(buf)
    with open(path, "rb") as fh:
        for _ in range(os.fstat(fh.fileno()).st_size // len(buf) + 1):
            n = fh.readinto(buf)
            if not n:
                break
            digest.update(view[:n])
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    from modsingest import sim
    from modsingest.config import load
    from modsingest.processing import publish
    from modsingest.processing.pipeline import Pipeline

    real_digest = publish.FileDigest

    class NoDigest(real_digest):
        """Hashes nothing (the ``none`` and ``read back`` variants)."""

        def start(self) -> None:
            pass

        def feed(self, chunk) -> None:
            pass

        def finish(self, fd: int, start: int, end: int, reset: bool) -> None:
            os.close(fd)

    reps = 1 if args.smoke else args.reps
    roi = "1k" if args.smoke else "full"
    scratch = Path(tempfile.mkdtemp(prefix="bench-digest-"))
    try:
        pipes = {v: Pipeline(load(layout(scratch / v.replace(" ", "-")))) for v in VARIANTS}
        to_new: dict[str, list[float]] = {v: [] for v in VARIANTS}
        worker: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for rep in range(reps):
            spec = sim.ExposureSpec(channel="mods1r", date="20260102", seq=rep + 1, roi=roi)
            order = VARIANTS[rep % 3 :] + VARIANTS[: rep % 3]
            for v in order:
                root = scratch / v.replace(" ", "-")
                raw = sim.write(spec, root / "raw", two_pass=False, overwrite=True)
                publish.FileDigest = real_digest if v == "while written" else NoDigest
                try:
                    result = pipes[v].process(raw)
                finally:
                    publish.FileDigest = real_digest
                if not result.ok:
                    print(f"bench-digest: {result.error}", file=sys.stderr)
                    return 1
                seconds = result.seconds
                if v == "read back":
                    start = time.perf_counter()
                    digest = read_back(result.outputs[1])
                    seconds += time.perf_counter() - start
                    assert digest == read_back(result.outputs[0])
                elif v == "while written":
                    assert result.log.sha256 == read_back(result.outputs[1]), "digest differs from the file"
                t = result.timings
                to_new[v].append(t["read"] + t["steps"] + t["write+publish"])
                worker[v].append(seconds)

        def ms(values: list[float]) -> str:
            return f"{statistics.median(values) * 1000:7.0f} ms  ({min(values) * 1000:.0f}-{max(values) * 1000:.0f})"

        print(f"night-log SHA-256, {roi} frame, {reps} interleaved repetitions (median, min-max):")
        for v in VARIANTS:
            print(f"  {v:14s} to <CHAN>.new {ms(to_new[v])}   worker per file {ms(worker[v])}")
        ratio = statistics.median(to_new["while written"]) / statistics.median(to_new["none"])
        verdict = "PASS" if ratio <= 1.15 else "FAIL"
        print(f"  to <CHAN>.new, while written / none  {ratio:5.2f}   target <= 1.15   {verdict}")
        saved = statistics.median(worker["read back"]) - statistics.median(worker["while written"])
        print(f"  worker time saved against read back  {saved * 1000:5.0f} ms per file")
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
