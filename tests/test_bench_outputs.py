"""tools/bench_outputs.py (part of ``make bench``) runs: its smoke mode on a small file."""

import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parent.parent / "tools" / "bench_outputs.py"


def test_smoke_run_prints_the_table():
    run = subprocess.run([sys.executable, str(TOOL), "--smoke"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "ratio with/without" in run.stdout
    assert "compressed copy, MERGED left out: ratio" in run.stdout
    assert "alternative, MERGED kept (GZIP_2 lossless): ratio" in run.stdout
