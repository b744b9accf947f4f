"""PypeIt 2.0.1 itself reads our exported files (docs/formats.md, "Tested with the readers").

The files are simulator exposures exported here; PypeIt runs in its own
environment (``make clients``) through tests/clients/pypeit_driver.py, which
calls ``get_rawimage`` and the metadata and frame typing of ``pypeit_setup``
offline and reports what PypeIt returned.  Locally the test is skipped when
``make clients`` was not run; under CI (CI=true) that is a failure.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from conftest import needed
from modsingest import sim
from modsingest.cli import main

ROOT = Path(__file__).resolve().parent.parent
CLIENT_PYTHON = ROOT / ".venv-clients" / "bin" / "python"
DRIVER = Path(__file__).resolve().parent / "clients" / "pypeit_driver.py"
CHANNELS = ("mods1r", "mods1b", "mods2r", "mods2b")

#: azcam image type -> PypeIt frame type (an exposure time PypeIt accepts for each)
FRAMETYPES = {
    "object": ("science", 300.0),
    "std": ("standard", 30.0),
    "zero": ("bias", 0.0),
    "bias": ("bias", 0.0),
    "flat": ("illumflat,pixelflat,trace", 5.0),
    "comp": ("arc,tilt", 5.0),
}


def client_python() -> Path:
    if CLIENT_PYTHON.exists():
        return CLIENT_PYTHON
    needed(f"PypeIt's environment {CLIENT_PYTHON}", "run `make clients` (.ci/run does)")


def run_pypeit(jobs, tmp_path):
    python = client_python()
    jobs_file = tmp_path / "jobs.json"
    jobs_file.write_text(json.dumps(jobs))
    home = tmp_path / "astropy-home"
    home.mkdir()
    env = {**os.environ, "XDG_CONFIG_HOME": str(home), "XDG_CACHE_HOME": str(home), "MPLBACKEND": "Agg"}
    env.pop("PYTHONPATH", None)
    run = subprocess.run(
        [str(python), str(DRIVER), str(jobs_file)], capture_output=True, text=True, env=env, timeout=1200
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return {r["file"]: r for r in json.loads(run.stdout)}


def expected_sections(width, rows, xbin, proc):
    """Pixels per amplifier PypeIt assigns to data and to its overscan (from the format's rules)."""
    half_rows = rows // 2
    if proc:
        return width // 2 * half_rows, 0
    prescan = 48 // xbin
    return (width // 2 - prescan) * half_rows, (prescan - 1) * half_rows


def test_get_rawimage_and_setup_on_every_channel_mode_and_format(tmp_path):
    python = client_python()
    assert python.exists()
    raw_dir, out = tmp_path / "raw", tmp_path / "out"
    raw_dir.mkdir()
    cases = []  # (raw path, binning, image type)
    seq = 0
    for channel in CHANNELS:
        for binning, epoch, imagetype in (
            ((1, 1), 2026, "object"),
            ((2, 2), 2026, "object"),
            ((1, 1), 2025, "flat"),
        ):
            seq += 1
            exptime = FRAMETYPES[imagetype][1]
            spec = sim.ExposureSpec(
                channel=channel, date="20260102", seq=seq, binning=binning, epoch=epoch,
                imagetype=imagetype, exptime=exptime,
            )  # fmt: skip
            cases.append((sim.write(spec, raw_dir, two_pass=False), binning, imagetype))
    for imagetype in ("std", "zero", "bias", "comp"):
        seq += 1
        spec = sim.ExposureSpec(
            channel="mods2b", date="20260102", seq=seq, binning=(2, 2), imagetype=imagetype,
            exptime=FRAMETYPES[imagetype][1],
        )  # fmt: skip
        cases.append((sim.write(spec, raw_dir, two_pass=False), (2, 2), imagetype))
    jobs = []
    for fmt in ("legacy", "legacy-proc"):
        (out / fmt).mkdir(parents=True)
        assert (
            main(["export", "-q", "--format", fmt, "--out", str(out / fmt), *(str(c[0]) for c in cases)]) == 0
        )
        suffix = "_proc" if fmt == "legacy-proc" else ""
        for raw, _, _ in cases:
            jobs.append({"file": str(out / fmt / raw.name), "spectrograph": f"lbt_{raw.name[:6]}{suffix}"})
    results = run_pypeit(jobs, tmp_path)
    assert len(results) == len(jobs) == 2 * len(cases)
    for job in jobs:
        got = results[job["file"]]
        assert "error" not in got, f"{job}: {got.get('traceback')}"
        raw_name = Path(job["file"]).name
        _, binning, imagetype = next(c for c in cases if c[0].name == raw_name)
        proc = job["spectrograph"].endswith("_proc")
        with fits.open(job["file"]) as h:
            data = h[0].data
            head = h[0].header
        rows, width = data.shape
        # PypeIt's image is the file's array transposed and flipped
        assert got["shape"] == [width, rows]
        assert got["corners"] == [float(data[0, -1]), float(data[-1, 0])]
        assert got["finite"]
        datasec, oscansec = expected_sections(width, rows, binning[0], proc)
        assert got["datasec_pixels"] == {str(a): datasec for a in (1, 2, 3, 4)}, job
        assert got["oscansec_pixels"] == {str(a): oscansec for a in (1, 2, 3, 4)}, job
        assert set(got["frametype"].split(",")) == set(FRAMETYPES[imagetype][0].split(",")), job
        assert got["meta"]["binning"] == f"{binning[0]},{binning[1]}"
        assert float(got["meta"]["mjd"]) == pytest.approx(head["MJD-OBS"])
        assert float(got["meta"]["exptime"]) == head["EXPTIME"]
        assert got["meta"]["target"] == head["OBJECT"]
        assert got["exptime"] == head["EXPTIME"]
    assert np.all(
        [r["meta"]["idname"] in ("OBJECT", "STD", "BIAS", "FLAT", "COMP") for r in results.values()]
    )


def test_driver_is_not_collected_by_the_main_environment():
    """The driver imports PypeIt, which the project's environment must not need."""
    assert not DRIVER.name.startswith("test_")
    assert "pypeit" not in sys.modules
