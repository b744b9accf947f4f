"""tools/bench_digest.py (part of ``make bench``) runs: its smoke mode on a small file."""

import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parent.parent / "tools" / "bench_digest.py"


def test_smoke_run_prints_the_table():
    run = subprocess.run([sys.executable, str(TOOL), "--smoke"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    for variant in ("none", "while written", "read back"):
        assert f"  {variant:14s} to <CHAN>.new" in run.stdout
    assert "while written / none" in run.stdout
    assert "worker time saved against read back" in run.stdout
