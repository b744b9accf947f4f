"""The references the agent is judged against, run in this process or a helper.

- the byte-copy floor: the fastest plain copy of the agent's output bytes;
- the astropy baseline: the incumbent's way of doing the same work;
- another source tree's warm ``Pipeline.process`` (``--baseline-src``), for
  before/after measurements of a change in the same run.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits

from modsingest import fsutil
from modsingest.fits.frame import Amplifier, Conpars, Frame
from modsingest.processing.geometry import MERGED_QUADRANT, readout_from_headers
from modsingest.processing.steps import StepContext, discover, run_steps

#: the floor's write size and early-writeback step when streamed (the agent's own step)
FLOOR_CHUNK = 4 << 20


def floor_once(raw: Path, out_bytes: bytes, dests: list[Path], name: str, streamed: bool = True) -> float:
    """Read the raw file; write the output's exact bytes to each destination; fsync each.

    One thread per destination, as the agent writes its two destinations at
    once: the floor is the best a plain copy can do, so nothing is flattered.
    ``streamed`` (the floor the targets use): written in 4 MB pieces, each
    handed to the disk at once with ``fsutil.start_writeback``
    so the disk works while the rest is copied, the fastest way to get bytes
    durable that we know (the agent does the same).  Not streamed: one
    ``write`` of everything, then ``fsync`` (the naive copy, for reference).
    No temporary names, renames or directory fsyncs: those are the agent's own
    costs, part of what the ratio shows.
    """
    errors: list[BaseException] = []
    step = FLOOR_CHUNK if streamed else len(out_bytes)

    def put(path: Path) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(out_bytes)
                done = 0
                while done < len(view):
                    start = done
                    done += os.write(fd, view[done : done + step])
                    if streamed:
                        fsutil.start_writeback(fd, start, done - start)
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    t0 = time.perf_counter()
    with open(raw, "rb") as fh:
        data = fh.read()
    threads = [threading.Thread(target=put, args=(d / name,)) for d in dests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    del data
    if errors:
        raise errors[0]
    return elapsed


# --------------------------------------------------------------------------- another source tree
_HELPER = r"""
import json, sys
import modsingest
from modsingest.config import load
from modsingest.processing.pipeline import Pipeline
pipeline = Pipeline(load(sys.argv[1]))
print(json.dumps({"ready": modsingest.__file__}), flush=True)
for line in sys.stdin:
    r = pipeline.process(line.strip())
    print(json.dumps({"ok": r.ok, "seconds": r.seconds, "error": r.error}), flush=True)
"""


class OtherTree:
    """A warm ``Pipeline`` from another source tree, in a helper process.

    Why: an optimisation must be measured before/after in the same run, on the
    same files, under the same machine noise.  ``--baseline-src DIR`` (e.g. a
    copy of ``src/`` taken before a change) puts DIR first on the helper's
    ``sys.path``; its ``Pipeline.process`` then joins the rotation next to this
    tree's.
    """

    def __init__(self, src: Path, config: Path):
        env = dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _HELPER, str(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None  # both are pipes
        self.requests, self.answers = self.proc.stdin, self.proc.stdout
        ready = json.loads(self.answers.readline() or "{}")
        where = str(ready.get("ready", ""))
        if not where.startswith(str(src)):
            self.close()
            raise RuntimeError(f"the helper imported modsingest from {where or '?'}, not from {src}")

    def process(self, path: Path) -> float:
        self.requests.write(f"{path}\n")
        self.requests.flush()
        answer = json.loads(self.answers.readline() or "{}")
        if not answer.get("ok"):
            raise RuntimeError(f"baseline tree: {answer.get('error', 'no answer')}")
        return float(answer["seconds"])

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.requests.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# --------------------------------------------------------------------------- astropy baseline
class AstropyBaseline:
    """The incumbent's way: astropy decodes everything, numpy merges, astropy re-encodes.

    Header rules: modsingest's own header-only steps (geometry, timestamps,
    temperatures, archive) run on the astropy headers, so both sides do the same
    header work and the comparison is about the data path.  MERGED is computed
    with plain numpy from processing.md's rule (median/std of the overscan,
    subtract, flip and place, float32), the HDUList gets MERGED at index 6, and
    ``writeto(checksum=True)`` writes each destination, which is fsynced.
    """

    HEADER_STEPS = ("geometry", "timestamps", "temperatures", "archive")

    def __init__(self) -> None:
        self.registry = discover()

    def process(self, raw: Path, dests: list[Path], name: str) -> float:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(raw) as hdul:
                primary = hdul[0].header
                amps = [hdul[i] for i in range(1, 5)]
                datas = [h.data for h in amps]
                table = hdul["CONPARS"]
                rows = {
                    str(k).strip(): str(v).strip() for k, v in zip(table.data["Keyword"], table.data["Value"])
                }
                frame = Frame(
                    path=raw,
                    primary=primary,
                    amps=[
                        Amplifier(i + 1, h.header, memoryview(b""), d.shape, 16)
                        for i, (h, d) in enumerate(zip(amps, datas))
                    ],
                    conpars=Conpars(table.header, memoryview(b""), rows),
                )
                run_steps(frame, self.HEADER_STEPS, StepContext(source_name=raw.name), self.registry)
                merged, mheader = self.merged(frame, datas)
                out = fits.HDUList(
                    [fits.PrimaryHDU(header=primary)]
                    + [fits.ImageHDU(data=d, header=h.header) for h, d in zip(amps, datas)]
                    + [fits.BinTableHDU(data=table.data, header=table.header)]
                    + [fits.ImageHDU(data=merged, header=mheader)]
                )
                for d in dests:
                    with open(d / name, "wb") as fh:
                        out.writeto(fh, checksum=True)
                        fh.flush()
                        os.fsync(fh.fileno())
        return time.perf_counter() - t0

    @staticmethod
    def merged(frame: Frame, datas: list[np.ndarray]) -> tuple[np.ndarray, fits.Header]:
        readout, _ = readout_from_headers(frame.primary, [a.header for a in frame.amps])
        ny, nd = readout.rows, readout.data_cols
        merged = np.empty((2 * ny, 2 * nd), dtype=np.float32)
        h = fits.Header()
        h["EXTNAME"] = "MERGED"
        for card in frame.primary.cards:
            if card.keyword in (
                "SIMPLE",
                "BITPIX",
                "NAXIS",
                "EXTEND",
                "NEXTEND",
                "CHECKSUM",
                "DATASUM",
                "BZERO",
                "BSCALE",
            ) or card.keyword.startswith("NAXIS"):
                continue
            h.append(card, end=True)
        h["BUNIT"] = ("ADU", "bias-subtracted counts")
        for amp, data in zip(frame.amps, datas):
            nx = data.shape[1]
            region = data[2 : ny - 2, nd + 2 : nx].astype(np.float64)
            bias, noise = float(np.median(region)), float(np.std(region))
            quad = MERGED_QUADRANT[amp.number]
            h[f"Q{quad}BIAS"] = (bias, f"Q{quad} median overscan bias [DN] ({amp.extname})")
            h[f"Q{quad}STD"] = (noise, f"Q{quad} overscan bias stdev [DN] ({amp.extname})")
            piece = (data[:, :nd].astype(np.float64) - bias).astype(np.float32)[::-1]
            if amp.number in (2, 4):
                piece = piece[:, ::-1]
            rows = slice(0, ny) if quad in (1, 2) else slice(ny, 2 * ny)
            cols = slice(0, nd) if quad in (1, 3) else slice(nd, 2 * nd)
            merged[rows, cols] = piece
        section = readout.merged_section()
        for key, value in section.wcs_cards().items():
            h[key] = (value, "MERGED to CCD transformation")
        h["CCDSEC"] = (str(section), "CCD section of MERGED (rows run in -y)")
        return merged, h


def same_data(a: Path, b: Path) -> list[str]:
    """Differences between the data of two outputs (HDUs 1..6), for the baseline check."""
    problems = []
    with fits.open(a) as x, fits.open(b) as y:
        if len(x) != len(y):
            return [f"{len(x)} HDUs against {len(y)}"]
        for i in range(1, len(x)):
            if x[i].name != y[i].name:
                problems.append(f"HDU {i}: {x[i].name} against {y[i].name}")
            elif x[i].name == "CONPARS":
                if x[i].data.tobytes() != y[i].data.tobytes():
                    problems.append("CONPARS rows differ")
            elif not np.array_equal(
                np.asarray(x[i].data).view(np.uint8),
                np.asarray(y[i].data).astype(x[i].data.dtype).view(np.uint8),
            ):
                problems.append(f"HDU {i} ({x[i].name}) data differ")
    return problems
