"""What every part of the bench shares: results, file names, staging helpers, progress lines."""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modsingest import fsutil

REPO = Path(__file__).resolve().parents[2]
CHANNEL = "mods1b"
POINTER = "MODS1B.new"
MB = 1024 * 1024
#: The parts of the agent's latency, from its ledger (see service.agent_once).
PARTS = {
    "detect": "detect (close to first hint)",
    "gate": "gate (first hint to queued)",
    "dispatch": "dispatch (queued to worker)",
    "process": "process (Pipeline.process in the worker)",
    "other": "other (polling; <0: .new before process returned)",
}


def log(msg: str) -> None:
    """Progress on stderr, so stdout carries only the results."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def modsingest_cmd() -> list[str]:
    """The installed command beside this interpreter, else the module."""
    exe = Path(sys.executable).parent / "modsingest"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "modsingest.cli"]


def raw_name(night: str, seq: int, channel: str = CHANNEL) -> str:
    return f"{channel}.{night}.{seq:04d}.fits"


def copy_durable(src: Path, dst: Path) -> None:
    """Copy and fsync, so staging a raw file leaves no dirty pages for the next timed step."""
    shutil.copyfile(src, dst)
    fsutil.fsync_file(dst)


def settle() -> None:
    """Flush every dirty page outside the timed region (see tools/bench.py's docstring)."""
    os.sync()


def unlink_quiet(*paths: Path) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)


def fmt_s(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v * 1000:.0f} ms" if v < 10 else f"{v:.1f} s"


@dataclass
class Series:
    """Samples of one quantity, in seconds (or the unit given)."""

    name: str
    unit: str = "s"
    values: list[float] = field(default_factory=list)

    def add(self, v: float | None) -> None:
        if v is not None:
            self.values.append(float(v))

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    def summary(self) -> dict[str, Any]:
        v = self.values
        return {
            "unit": self.unit,
            "n": len(v),
            "median": self.median,
            "min": min(v) if v else None,
            "max": max(v) if v else None,
            "mean": statistics.fmean(v) if v else None,
            "samples": v,
        }


class Results:
    """Every series, the single facts and the errors of one run."""

    def __init__(self) -> None:
        self.series: dict[str, Series] = {}
        self.facts: dict[str, Any] = {}
        self.errors: list[str] = []

    def series_for(self, key: str, label: str, unit: str = "s") -> Series:
        """The series ``key``, made with ``label`` on first use."""
        if key not in self.series:
            self.series[key] = Series(label, unit)
        return self.series[key]

    def median(self, key: str) -> float | None:
        s = self.series.get(key)
        return s.median if s else None

    def error(self, where: str, exc: BaseException | str) -> None:
        text = f"{where}: {exc}" if isinstance(exc, str) else f"{where}: {type(exc).__name__}: {exc}"
        self.errors.append(text)
        log("ERROR " + text)
        if isinstance(exc, BaseException):
            traceback.print_exception(exc, file=sys.stderr)
