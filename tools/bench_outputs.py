#!/usr/bin/env python3
"""``make bench`` (second part): the optional outputs never delay ``<CHAN>.new``, and what they cost.

The legacy copy, the compressed copy and the night log (docs/formats.md) are
written after ``<CHAN>.new``.  This measures, on full frames, ``Pipeline.process``
with none of them and with all three, interleaved (the machine is shared):

- time to ``<CHAN>.new`` (read + steps + write+publish): must be the same within
  noise (ratio with/without, PASS within 1.15);
- the time the extras add after it, and each one alone;
- the compressed copy's ratio and time, and the same with MERGED kept losslessly
  (GZIP_2, no quantisation), the alternative docs/performance.md rejects.

``--reps N`` (default 5), ``--smoke`` (1 rep, a 1k file: proves it runs).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path


def layout(root: Path, extras: bool) -> Path:
    for d in ("raw", "newdata", "processed", "state", "legacy", "nightlog", "compressed"):
        (root / d).mkdir(parents=True, exist_ok=True)
    text = (
        "paths:\n"
        f"  raw: [{root / 'raw'}]\n  newdata: {root / 'newdata'}\n"
        f"  processed: {root / 'processed'}\n  state: {root / 'state'}\n"
    )
    if extras:
        text += f"  legacy: {root / 'legacy'}\n  nightlog: {root / 'nightlog'}\n  compressed: {root / 'compressed'}\n"
    cfg = root / "modsingest.yaml"
    cfg.write_text(text)
    return cfg


def merged_kept(source: Path, out: Path) -> float:
    """The rejected alternative: the same copy with MERGED as lossless GZIP_2; returns seconds."""
    import fitsio

    start = time.perf_counter()
    with fitsio.FITS(str(source)) as src, fitsio.FITS(str(out), "rw", clobber=True) as dst:
        for i, hdu in enumerate(src):
            if i == 0:
                dst.create_image_hdu(dims=None, dtype="u1")
            elif hdu.get_exttype() == "BINARY_TBL":
                dst.write(hdu.read())
            elif str(hdu.read_header().get("EXTNAME", "")).strip() == "MERGED":
                dst.write(hdu.read(), compress="GZIP_2", qlevel=None)
            else:
                dst.write(hdu.read(), compress="RICE")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    from modsingest import sim
    from modsingest.config import load
    from modsingest.processing.pipeline import Pipeline

    reps = 1 if args.smoke else args.reps
    roi = "1k" if args.smoke else "full"
    scratch = Path(tempfile.mkdtemp(prefix="bench-outputs-"))
    try:
        pipes = {}
        for name, extras in (("plain", False), ("extras", True)):
            pipes[name] = Pipeline(load(layout(scratch / name, extras)))
        samples: dict[str, list[float]] = {"plain": [], "extras": []}
        added: list[float] = []
        ratios: list[float] = []
        kept: list[tuple[float, float]] = []
        for rep in range(reps):
            spec = sim.ExposureSpec(channel="mods1r", date="20260102", seq=rep + 1, roi=roi)
            order = ("plain", "extras") if rep % 2 == 0 else ("extras", "plain")
            for name in order:
                raw = sim.write(spec, scratch / name / "raw", two_pass=False, overwrite=True)
                result = pipes[name].process(raw)
                if not result.ok:
                    print(f"bench-outputs: {result.error}", file=sys.stderr)
                    return 1
                t = result.timings
                samples[name].append(t["read"] + t["steps"] + t["write+publish"])
                if name == "extras":
                    added.append(t["extras"])
                    delivered = scratch / name / "newdata" / raw.name
                    fz = next(o for o in result.outputs if o.name.endswith(".fz"))
                    ratios.append(delivered.stat().st_size / fz.stat().st_size)
                    alt = scratch / "kept.fz"
                    seconds = merged_kept(delivered, alt)
                    kept.append((delivered.stat().st_size / alt.stat().st_size, seconds))
        plain, extras = statistics.median(samples["plain"]), statistics.median(samples["extras"])
        ratio = extras / plain
        print(f"optional outputs, {roi} frame, {reps} interleaved repetitions (median, min-max):")
        print(
            f"  to <CHAN>.new without extras   {plain * 1000:7.0f} ms  "
            f"({min(samples['plain']) * 1000:.0f}-{max(samples['plain']) * 1000:.0f})"
        )
        print(
            f"  to <CHAN>.new with all extras  {extras * 1000:7.0f} ms  "
            f"({min(samples['extras']) * 1000:.0f}-{max(samples['extras']) * 1000:.0f})"
        )
        verdict = "PASS" if ratio <= 1.15 else "FAIL"
        print(f"  ratio with/without             {ratio:7.2f}   target <= 1.15   {verdict}")
        print(f"  extras after .new (legacy+fz+log) {statistics.median(added) * 1000:5.0f} ms")
        print(f"  compressed copy, MERGED left out: ratio {statistics.median(ratios):.2f}")
        print(
            f"  alternative, MERGED kept (GZIP_2 lossless): ratio {statistics.median(r for r, _ in kept):.2f}, "
            f"{statistics.median(s for _, s in kept) * 1000:.0f} ms for the copy alone"
        )
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
