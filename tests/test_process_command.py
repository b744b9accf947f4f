"""`modsingest process`: delivers good files, refuses bad ones with one clear line each."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from astropy.io import fits

from conftest import tiny_raw
from modsingest.cli import main

BIN = Path(sys.executable).parent / "modsingest"


def write_raw(layout, name, data):
    path = layout["raw"] / name
    path.write_bytes(data)
    os.chmod(path, 0o444)  # raw files are read-only for the agent
    return path


def test_bad_files_are_refused_and_good_ones_delivered(layout, capsys):
    good = write_raw(layout, "mods1b.20260102.0001.fits", tiny_raw())
    data = tiny_raw()
    truncated = write_raw(layout, "mods1b.20260102.0002.fits", data[: len(data) // 2])
    empty = write_raw(layout, "mods1b.20260102.0003.fits", b"")
    notfits = write_raw(layout, "mods1b.20260102.0004.fits", b"hello world\n" * 300)
    good2 = write_raw(layout, "mods1b.20260102.0005.fits", tiny_raw(seed=9))
    rc = main(
        [
            "process",
            "--config",
            str(layout["config"]),
            str(good),
            str(truncated),
            str(empty),
            str(notfits),
            str(good2),
        ]
    )
    err = capsys.readouterr().err.splitlines()
    assert rc == 1
    assert sorted(p.name for p in layout["newdata"].glob("*.fits")) == [good.name, good2.name]
    for path, why in (
        (truncated, "file cut at byte"),
        (empty, "file is empty"),
        (notfits, "not a FITS file"),
    ):
        line = next(line for line in err if str(path) in line)
        assert why in line
    assert err[-1] == "modsingest: 3 of 5 file(s) not delivered"


def test_raw_file_is_never_modified(layout):
    raw = write_raw(layout, "mods1b.20260102.0001.fits", tiny_raw())
    before = (hashlib.sha256(raw.read_bytes()).hexdigest(), raw.stat().st_mtime_ns)
    assert main(["process", "--config", str(layout["config"]), str(raw)]) == 0
    assert (hashlib.sha256(raw.read_bytes()).hexdigest(), raw.stat().st_mtime_ns) == before


def test_console_script_exit_status_and_one_line_reason(layout):
    rc = subprocess.run(
        [str(BIN), "process", "--config", str(layout["config"]), "/nonexistent.fits"],
        capture_output=True,
        text=True,
    )
    assert rc.returncode == 1
    assert rc.stderr.splitlines()[0].startswith("modsingest: /nonexistent.fits: cannot read")


def test_bad_config_exit_2(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("paths: {}\n")
    rc = subprocess.run([str(BIN), "process", "--config", str(cfg), "x.fits"], capture_output=True, text=True)
    assert rc.returncode == 2 and len(rc.stderr.strip().splitlines()) == 1


def test_a_failing_step_still_delivers_with_a_warning_in_the_header(layout, monkeypatch):
    from modsingest.processing import steps

    registry = dict(steps.discover())

    def broken(frame, ctx):
        raise RuntimeError("boom")

    registry["geometry"] = broken
    monkeypatch.setattr(steps, "_REGISTRY", registry)
    raw = write_raw(layout, "mods1b.20260102.0001.fits", tiny_raw())
    assert main(["process", "--config", str(layout["config"]), str(raw)]) == 0
    h = fits.getheader(layout["newdata"] / raw.name)
    assert "geometry" not in h["MSISTEPS"]
    assert any("geometry: failed: RuntimeError: boom" in str(v) for v in h["HISTORY"])
    with fits.open(layout["newdata"] / raw.name) as hdul:
        assert hdul[6].name == "MERGED"


def test_merged_failing_while_rendering_still_delivers_the_raw_data(layout, monkeypatch):
    from modsingest.processing.steps import merged as merged_step

    def exploding_renderer(amps, readout, offsets):
        def render(first, stop, out):
            raise MemoryError("simulated")

        return render

    monkeypatch.setattr(merged_step, "make_renderer", exploding_renderer)
    raw = write_raw(layout, "mods1b.20260102.0001.fits", tiny_raw())
    assert main(["process", "--config", str(layout["config"]), str(raw)]) == 0
    with fits.open(layout["newdata"] / raw.name, checksum=True) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "IM1", "IM2", "IM3", "IM4", "CONPARS"]
        assert "merged" not in hdul[0].header["MSISTEPS"]
        assert any("merged: failed while rendering: MemoryError" in str(v) for v in hdul[0].header["HISTORY"])
    assert not [p for p in layout["newdata"].iterdir() if p.name.startswith(".")]


def test_publish_errors_are_retryable_and_read_errors_are_not(layout, monkeypatch):
    import errno

    from modsingest.config import load
    from modsingest.processing import publish
    from modsingest.processing.pipeline import Pipeline

    pipe = Pipeline(load(layout["config"]))
    bad = write_raw(layout, "mods1b.20260102.0009.fits", b"not fits" * 400)
    r = pipe.process(bad)
    assert (r.ok, r.stage, r.retryable) == (False, "read", False)

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(layout["newdata"]))

    monkeypatch.setattr(publish, "deliver", full)
    good = write_raw(layout, "mods1b.20260102.0001.fits", tiny_raw())
    r = pipe.process(good)
    assert (r.ok, r.stage, r.retryable) == (False, "publish", True)
    assert r.error.startswith(f"{good}: cannot publish: No space left on device")
