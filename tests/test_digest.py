"""The delivered file's size and SHA-256, computed while it is written (publish.FileDigest).

MERGED's header is patched in after its data, so the digest cannot simply follow
the stream; these tests hold it to ``hashlib`` over the published file in every
fixture mode, with and without MERGED, and check that only the part from the
placeholder on is read back.
"""

import hashlib
import os
from pathlib import Path

import pytest

from modsingest import sim
from modsingest.config import load
from modsingest.fits.writer import Patch, Placeholder
from modsingest.processing import publish
from modsingest.processing.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = sorted((ROOT / "fixtures" / "raw").glob("*.fits"))


def file_digest(path: Path) -> tuple[int, str]:
    data = path.read_bytes()
    return len(data), hashlib.sha256(data).hexdigest()


def reads_of(monkeypatch) -> list[tuple[int, int]]:
    """(offset, length) of every read of a newdata file (``FileDigest``'s read-back)."""
    seen: list[tuple[int, int]] = []
    real = os.preadv

    def preadv(fd, buffers, offset):
        if "/newdata/" in os.readlink(f"/proc/self/fd/{fd}"):  # not the raw file being read
            seen.append((offset, sum(len(b) for b in buffers)))
        return real(fd, buffers, offset)

    monkeypatch.setattr(os, "preadv", preadv)
    return seen


def merged_header_offset(path: Path) -> int:
    from astropy.io import fits

    with fits.open(path) as hdul:
        return hdul["MERGED"].fileinfo()["hdrLoc"]


@pytest.mark.parametrize("raw", FIXTURES, ids=lambda p: p.name)
def test_result_digest_is_hashlib_of_the_published_file(raw, layout, monkeypatch):
    reads = reads_of(monkeypatch)
    result = Pipeline(load(layout["config"]), warm=False).process(raw)
    assert result.ok, result.error
    newdata, processed = result.outputs[1], result.outputs[0]
    assert (result.log.size, result.log.sha256) == file_digest(newdata) == file_digest(processed)
    # only MERGED (from its header on) is read back, never the whole file
    start = merged_header_offset(newdata)
    assert start > 0 and reads[0][0] == start
    assert sum(n for _, n in reads) == result.log.size - start


@pytest.mark.parametrize(
    "roi, binning", [("full", (2, 2)), ("3k", (1, 2)), ("1k", (1, 1))], ids=lambda v: str(v)
)
def test_without_merged_the_whole_stream_is_hashed_as_written(roi, binning, layout, monkeypatch):
    with open(layout["config"], "a") as f:
        f.write("steps:\n  merged: no\n")
    spec = sim.ExposureSpec(channel="mods2b", date="20260102", seq=3, roi=roi, binning=binning)
    raw = sim.write(spec, layout["raw"])
    reads = reads_of(monkeypatch)
    result = Pipeline(load(layout["config"]), warm=False).process(raw)
    assert result.ok and "merged" not in result.steps
    assert (result.log.size, result.log.sha256) == file_digest(result.outputs[1])
    assert reads == []  # nothing read back at all


@pytest.mark.parametrize("roi", ["full", "4k"])
def test_simulated_modes_with_merged(roi, layout):
    spec = sim.ExposureSpec(channel="mods1r", date="20260102", seq=2, roi=roi, binning=(1, 1))
    raw = sim.write(spec, layout["raw"], two_pass=True)
    result = Pipeline(load(layout["config"]), warm=False).process(raw)
    assert result.ok
    assert (result.log.size, result.log.sha256) == file_digest(result.outputs[1])


def items(*parts):
    yield from parts


def deliver(layout, stream):
    from astropy.io import fits

    h = fits.Header()
    h["INSTRUME"] = "MODS1B"
    h["DATE-OBS"] = "2026-01-02T03:04:05.678"
    return publish.deliver(
        "mods1b.20260102.0007.fits", h, stream, layout["newdata"], layout["processed"], layout["state"]
    )


def test_a_placeholder_is_hashed_with_its_patch(layout):
    head, body, tail = b"A" * 2880, memoryview(b"B" * 5760), b"D" * 2880
    d = deliver(layout, items(head, Placeholder(b"0" * 2880), body, Patch(2880, b"C" * 2880), tail))
    expected = head + b"C" * 2880 + bytes(body) + tail
    assert (layout["newdata"] / d.name).read_bytes() == expected
    assert d.digest.result() == (len(expected), hashlib.sha256(expected).hexdigest())


def test_a_patch_nobody_announced_rehashes_the_whole_file(layout, monkeypatch):
    reads = reads_of(monkeypatch)
    d = deliver(layout, items(b"A" * 2880, b"B" * 2880, Patch(0, b"Z" * 2880)))
    expected = b"Z" * 2880 + b"B" * 2880
    assert d.digest.result() == (len(expected), hashlib.sha256(expected).hexdigest())
    assert reads[0][0] == 0 and sum(n for _, n in reads) == len(expected)


def test_a_file_that_cannot_be_read_back_gets_no_digest_but_is_delivered(layout, monkeypatch, caplog):
    def fail(fd, buffers, offset):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "preadv", fail)
    d = deliver(layout, items(b"A" * 2880, Placeholder(b"0" * 2880), Patch(2880, b"C" * 2880)))
    assert d.digest.result() is None
    assert (layout["newdata"] / d.name).read_bytes() == b"A" * 2880 + b"C" * 2880
    assert "SHA-256 of the delivered file not computed: [Errno 5] Input/output error" in caplog.text


def test_a_failed_write_leaves_no_digest_and_no_file(layout):
    def broken():
        yield b"A" * 2880
        raise RuntimeError("render failed")

    digest = publish.FileDigest(layout["newdata"])
    with pytest.raises(RuntimeError, match="render failed"):
        publish.write_temps([layout["newdata"]], "x.fits", broken(), digest=digest)
    assert digest.result() is None
    assert list(layout["newdata"].iterdir()) == []


def test_a_digest_must_be_of_one_of_the_destinations(layout):
    with pytest.raises(ValueError, match="not among"):
        publish.write_temps([layout["newdata"]], "x.fits", [b""], digest=publish.FileDigest(layout["raw"]))
