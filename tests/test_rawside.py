"""Raw-side faults: names that cannot be published, raw files failing or cut while read.

Each failure lands on the right side (``Result.side``/``kind``), so the service
can tell "look at the raw file again" from "the destination is away", and only a
real MERGED rendering failure makes the pipeline deliver without MERGED.
"""

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_raw
from modsingest import names
from modsingest.cli import main
from modsingest.config import load
from modsingest.fits import frame as frame_mod
from modsingest.processing import publish
from modsingest.processing.pipeline import Pipeline


def write_raw(directory: Path, name, data: bytes) -> Path:
    path = directory / name
    path.write_bytes(data)
    os.chmod(path, 0o444)
    return path


def everything_under(*dirs: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for d in dirs for p in d.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    "name, shown",
    [
        ("mods1b.20260102.0001é.fits", "'é'"),
        ("mods1b.20260102.0002\n.fits", "'\\n'"),
        (os.fsdecode(b"mods1b.20260102.0003\xff.fits"), "'\\udcff'"),
    ],
)
def test_unpublishable_name_is_refused_before_anything_is_written(layout, capsys, name, shown):
    raw = write_raw(layout["raw"], name, tiny_raw())
    before = everything_under(layout["newdata"], layout["processed"])
    assert main(["process", "--config", str(layout["config"]), str(raw)]) == 1
    err = capsys.readouterr().err.splitlines()
    reason = f"name is not printable ASCII ({shown}): it cannot be named in <CHAN>.new; rename the raw file"
    assert f"modsingest: {names.shown(str(raw))}: {reason}" in err
    assert len([line for line in err if "printable" in line]) == 1
    assert everything_under(layout["newdata"], layout["processed"]) == before == []


def test_unpublishable_name_result_is_raw_content(layout):
    raw = write_raw(layout["raw"], "mods1b.20260102.0001é.fits", tiny_raw())
    r = Pipeline(load(layout["config"]), warm=False).process(raw)
    assert (r.ok, r.stage, r.side, r.kind, r.retryable) == (False, "name", "raw", "content", False)


def test_deliver_refuses_the_name_itself(layout):
    """The guard is in deliver too, for any caller, and it writes nothing."""
    header = frame_mod.from_bytes(tiny_raw(), "x.fits").primary
    with pytest.raises(publish.NameRefused):
        publish.deliver(
            "mods1b.0001é.fits", header, iter(()), layout["newdata"], layout["processed"], layout["state"]
        )
    assert everything_under(layout["newdata"], layout["processed"]) == []


def test_only_a_merged_rendering_failure_delivers_without_merged(layout, monkeypatch):
    """Any other failure in deliver is not MERGED's: one attempt, reported as it is."""
    calls = []

    def broken(*args, **kwargs):
        calls.append(args[0])
        raise UnicodeEncodeError("ascii", "é", 0, 1, "simulated")

    monkeypatch.setattr(publish, "deliver", broken)
    raw = write_raw(layout["raw"], "mods1b.20260102.0001.fits", tiny_raw())
    r = Pipeline(load(layout["config"]), warm=False).process(raw)
    assert calls == ["mods1b.20260102.0001.fits"]
    assert (r.ok, r.stage, r.side, r.kind) == (False, "internal", "internal", "bug")
    assert not any("merged" in w for w in r.warnings)


def test_read_errors_by_side(layout, monkeypatch):
    pipe = Pipeline(load(layout["config"]), warm=False)
    notfits = write_raw(layout["raw"], "mods1b.20260102.0009.fits", b"not fits" * 400)
    r = pipe.process(notfits)
    assert (r.ok, r.stage, r.side, r.kind, r.retryable) == (False, "read", "raw", "content", False)

    good = write_raw(layout["raw"], "mods1b.20260102.0001.fits", tiny_raw())

    def eio(fd, buffers, offset):
        raise OSError(errno.EIO, "Input/output error")

    with monkeypatch.context() as m:
        m.setattr(os, "preadv", eio)
        r = pipe.process(good)
    assert (r.ok, r.stage, r.side, r.kind, r.retryable) == (False, "read", "raw", "io", False)
    assert r.error == f"{good}: cannot read: Input/output error"

    def enospc(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(layout["newdata"]))

    with monkeypatch.context() as m:
        m.setattr(publish, "deliver", enospc)
        r = pipe.process(good)
    assert (r.ok, r.stage, r.side, r.kind, r.retryable) == (False, "publish", "destination", "io", True)

    r = pipe.process(good)  # and the file itself was fine all along
    assert r.ok, r.error


_TRUNCATING = textwrap.dedent(
    """
    import os, sys
    from modsingest.config import load
    from modsingest.processing import pipeline
    from modsingest.processing.pipeline import Pipeline

    config, raw, when = sys.argv[1:4]
    size = os.path.getsize(raw)
    real_preadv, real_run_steps = os.preadv, pipeline.run_steps

    def cut():
        os.chmod(raw, 0o644)
        os.truncate(raw, 2880 * 3)

    def preadv(fd, buffers, offset):  # the file is cut just as it is read
        cut()
        return real_preadv(fd, buffers, offset)

    def run_steps(*args):  # the file is cut after it was read, while it is processed
        cut()
        return real_run_steps(*args)

    if when == "during-read":
        os.preadv = preadv
    else:
        pipeline.run_steps = run_steps
    r = Pipeline(load(config), warm=False).process(raw)
    print(r.ok, r.stage, r.side, r.kind)
    print(r.error)
    """
)


@pytest.mark.parametrize(
    "when, first, second",
    [
        ("during-read", "False read raw io", "file changed while reading (8640 of {size} bytes)"),
        ("after-read", "True None None None", "None"),
    ],
)
def test_raw_file_truncated_while_read_does_not_kill_the_process(layout, when, first, second):
    """A mapped file cut under us raised SIGBUS (the worker died) or EFAULT ("cannot publish:
    Bad address").  Now the file is copied once: cut during the copy it is a raw-side
    short read; cut later, the copy is complete and delivered (the gate sees the change)."""
    data = tiny_raw()
    raw = write_raw(layout["raw"], "mods1b.20260102.0001.fits", data)
    proc = subprocess.run(
        [sys.executable, "-c", _TRUNCATING, str(layout["config"]), str(raw), when],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stdout.splitlines()
    assert lines[0] == first
    assert lines[1] == (second if second == "None" else f"{raw}: " + second.format(size=len(data)))
    if when == "after-read":
        delivered = (layout["newdata"] / raw.name).read_bytes()
        assert frame_mod.from_bytes(delivered).amp(1).stored.tobytes() == (
            frame_mod.from_bytes(data).amp(1).stored.tobytes()
        )


def test_a_live_frame_never_sees_the_next_file(tmp_path):
    """The reader's buffer is reused only when no frame still holds it."""
    a = write_raw(tmp_path, "a.fits", tiny_raw(seed=1))
    b = write_raw(tmp_path, "b.fits", tiny_raw(seed=2))
    first = frame_mod.read(a)
    kept = first.amp(1).stored.copy()
    second = frame_mod.read(b)
    assert np.array_equal(first.amp(1).stored, kept)
    assert not np.array_equal(second.amp(1).stored, kept)
    del first, second
    third = frame_mod.read(a)
    assert np.array_equal(third.amp(1).stored, kept)


def test_a_fifo_named_like_a_raw_file_does_not_hang_the_scan(tmp_path):
    """replay scans every candidate first; a FIFO would block it in open() for good."""
    from modsingest.fits import scan as fitscheck

    fifo = tmp_path / "mods1b.20260102.0001.fits"
    os.mkfifo(fifo)
    layout = fitscheck.scan(fifo)
    assert layout.impossible and layout.problems == ["not a regular file"]
