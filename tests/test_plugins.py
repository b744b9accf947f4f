"""Steps from outside the package: a plugin built and installed from tests/plugin_example.

The example package is built with the test environment's setuptools (no network,
no build isolation) and installed with ``pip install --target`` into a temporary
directory, which the ``modsingest`` subprocess gets on its PYTHONPATH: exactly
how an entry point of another installed distribution is found.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from astropy.io import fits

from conftest import tiny_raw

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent / "modsingest"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """A directory holding the installed example plugin (built from a copy: the tree stays clean)."""
    work = tmp_path_factory.mktemp("plugin")
    source = work / "source"
    shutil.copytree(HERE / "plugin_example", source)
    site = work / "site"
    run = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-build-isolation",
         "--no-deps", "--target", str(site), str(source)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    return site


def process(layout, site, steps, name="mods1b.20260102.0001.fits"):
    raw = layout["raw"] / name
    raw.write_bytes(tiny_raw())
    config = layout["config"]
    config.write_text(config.read_text() + "steps: [" + ", ".join(steps) + "]\n")
    env = dict(os.environ, PYTHONPATH=str(site))
    run = subprocess.run([str(BIN), "process", "--config", str(config), str(raw)],
                         capture_output=True, text=True, env=env)  # fmt: skip
    return run, layout["newdata"] / name


def step_warnings(primary):
    """The runner's HISTORY warnings, continuation cards joined, archive's left out."""
    entries = []
    for line in (str(v) for v in primary["HISTORY"]):
        if line.startswith("modsingest+ "):
            entries[-1] += line[len("modsingest+ ") :]
        else:
            entries.append(line.removeprefix("modsingest "))
    return [e for e in entries if not e.startswith(("archive:", "geometry:"))]


def test_a_step_from_another_package_runs_in_the_configured_order(layout, plugin_site):
    steps = ["geometry", "timestamps", "{temperatures: no}", "archive", "observer_note", "merged"]
    run, out = process(layout, plugin_site, steps)
    assert run.returncode == 0, run.stderr
    with fits.open(out) as hdul:
        primary = hdul[0].header
        assert primary["OBSNOTE"] == "seen mods1b.20260102.0001.fits"
        assert primary.comments["OBSNOTE"] == "written by the example plugin"
        assert primary["MSISTEPS"] == "geometry,timestamps,archive,observer_note,merged"
        assert "modsingest observer_note: example plugin was here" in [str(v) for v in primary["HISTORY"]]
        # the plugin ran before merged, so MERGED's copy of the primary has its card
        assert hdul[6].name == "MERGED" and hdul[6].header["OBSNOTE"] == primary["OBSNOTE"]
    assert "observer_note: example plugin was here" in run.stdout


def test_a_plugin_that_raises_or_cannot_be_imported_is_a_warning_and_the_file_is_delivered(
    layout, plugin_site
):
    steps = ["geometry", "{timestamps: no}", "{temperatures: no}", "archive", "explodes", "broken_import"]
    steps += ["observer_note", "merged"]
    run, out = process(layout, plugin_site, steps)
    assert run.returncode == 0, run.stderr
    with fits.open(out) as hdul:
        primary = hdul[0].header
        assert primary["MSISTEPS"] == "geometry,archive,observer_note,merged"
        assert step_warnings(primary) == [
            "explodes: failed: RuntimeError: the example plugin's deliberate failure",
            "broken_import: step 'broken_import' unavailable: ModuleNotFoundError: "
            "No module named 'msi_example_step_dependency_that_is_not_installed'",
            "observer_note: example plugin was here",
        ]
        assert primary["OBSNOTE"] == "seen mods1b.20260102.0001.fits"
        assert hdul[6].name == "MERGED"
    assert "step plugin broken_import (msi_example_step.broken:run) cannot be loaded" in run.stdout  # the log


def test_a_step_name_nothing_provides_is_still_refused(layout, plugin_site):
    run, out = process(
        layout, plugin_site, ["geometry", "timestamps", "temperatures", "archive", "observer_nite", "merged"]
    )
    assert run.returncode == 2 and not out.exists()
    assert "steps.observer_nite: no such step" in run.stderr and "observer_note" in run.stderr
