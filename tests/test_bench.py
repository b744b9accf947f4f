"""``make bench`` end to end in its smoke mode, so a broken bench fails ``make test``.

The smoke run (``tools/bench.py --smoke``) goes through every phase once on 1k
files: the services (the bench's own and ``etc/mods1.yaml`` with UDP), the
baselines, replay and the report.  Nothing here judges a figure (performance
claims belong to ``make bench``); the test holds that every measurement was
taken and every row of the table has a value.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_smoke_run_takes_every_measurement(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "bench.py"),
            "--smoke",
            "--workdir",
            str(tmp_path),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["errors"] == []
    table = {row["key"]: row for row in result["table"]}
    missing = [key for key, row in table.items() if row["value"] is None]
    assert missing == []
    # the site's configuration beside inotify, as a target with a verdict
    row = table["poll_udp_vs_inotify"]
    assert row["goal"] == "<= 1.25"
    assert row["verdict"] in ("PASS", "FAIL")
    assert "etc/mods1.yaml: poll + UDP / inotify" in row["label"]
    assert row["label"] in done.stdout
    # the poll+UDP file was noticed through its datagram, not by the next poll (1 s)
    series = result["series"]
    assert series["agent_3k_prod_poll_udp"]["n"] == 1
    assert series["agent_3k_prod_poll_udp_detect"]["median"] < 0.5
    # the scratch directory is removed (no --keep)
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]


def test_production_layout_changes_only_the_paths(tmp_path):
    """The bench's copy of etc/mods1.yaml: its directories moved, every other setting shipped."""
    sys.path.insert(0, str(REPO / "tools"))
    try:
        from benchkit.service import Layout
    finally:
        sys.path.remove(str(REPO / "tools"))
    from modsingest.config import load

    lay = Layout.production(tmp_path / "poll", "mods1b")
    settings = load(lay.config)
    assert settings.paths.raw == (tmp_path / "poll/raw/mods1b", tmp_path / "poll/raw/mods1r")
    assert settings.paths.newdata == tmp_path / "poll/newdata"
    assert lay.raw == tmp_path / "poll/raw/mods1b"
    assert (settings.watch.method, settings.udp.enabled, settings.workers) == ("poll", True, 2)
    assert lay.udp_port == settings.udp.port

    ref = Layout.production(tmp_path / "inotify", "mods1b", inotify=True)
    settings = load(ref.config)
    assert (settings.watch.method, settings.udp.enabled) == ("inotify", False)
    assert ref.udp_port is None
