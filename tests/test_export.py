"""`modsingest export` and the `paths.legacy` target: the pre-Archon single-image formats.

The expected pixels are built here straight from the raw extensions with numpy
(quadrant placement and the prescan rule as docs/formats.md states them), not
through the geometry model, so a wrong window or flip in the code fails.
The modsCCDRed rules (it is not on the package index) are checked as its
documentation states them; PypeIt itself reads the files in test_clients_pypeit.py.
"""

import warnings

import numpy as np
import pytest
from astropy.io import fits

from conftest import assert_fitsverify_ok
from modsingest import sim
from modsingest.cli import main


def raw_mosaic(path, fmt_proc=False):
    """The MERGED-orientation mosaic of the raw amplifiers (data columns only), int or bias-subtracted."""
    with fits.open(path) as h:
        amps = [h[i].data.astype(np.float64) for i in (1, 2, 3, 4)]
        nd = h[1].header["NAXIS1"] - h[1].header["OVRSCAN1"]
    if fmt_proc:
        ny = amps[0].shape[0]
        amps = [a[:, :nd] - np.median(a[2 : ny - 2, nd + 2 :]) for a in amps]
    else:
        amps = [a[:, :nd] for a in amps]
    im1, im2, im3, im4 = amps
    bottom = np.hstack([im3[::-1], im4[::-1, ::-1]])  # Q1, Q2
    top = np.hstack([im1[::-1], im2[::-1, ::-1]])  # Q3, Q4
    return np.vstack([bottom, top])


def export(fmt, out, *files):
    return main(["export", "-q", "--format", fmt, "--out", str(out), *map(str, files)])


# (binning, epoch) -> (columns cut at each outer edge for legacy, for legacy-proc, NAXIS1 legacy, legacy-proc)
CASES = {
    ((1, 1), 2026): (2, 50, 8288, 8192),
    ((2, 2), 2026): (1, 25, 4144, 4096),
    ((1, 1), 2025): (0, 48, 8288, 8192),
    ((2, 1), 2025): (0, 24, 4144, 4096),
}


@pytest.mark.parametrize("binning, epoch", list(CASES), ids=str)
def test_legacy_and_proc_pixels_and_sizes(tmp_path, binning, epoch):
    cut_raw, cut_proc, width_raw, width_proc = CASES[(binning, epoch)]
    spec = sim.ExposureSpec(channel="mods1b", date="20260102", seq=3, binning=binning, epoch=epoch)
    raw = sim.write(spec, tmp_path, two_pass=False)
    for fmt in ("legacy", "legacy-proc"):
        out = tmp_path / fmt
        out.mkdir()
        assert export(fmt, out, raw) == 0
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            hdul = fits.open(out / raw.name, checksum=True)
            hdul.verify("exception")
        with hdul:
            assert len(hdul) == 1
            data = hdul[0].data
            head = hdul[0].header
        mosaic = raw_mosaic(raw, fmt_proc=fmt == "legacy-proc")
        rows = 3088 // binning[1]
        if fmt == "legacy":
            assert data.dtype == np.uint16 and head["BITPIX"] == 16 and head["BZERO"] == 32768
            assert data.shape == (rows, width_raw)
            expect = mosaic[:, cut_raw : mosaic.shape[1] - cut_raw]
            assert head["OVERSCNX"] == 48 // binning[0]
        else:
            assert data.dtype == np.dtype(">f4") and head["BITPIX"] == -32
            assert data.shape == (rows, width_proc)
            expect = mosaic[:, cut_proc : mosaic.shape[1] - cut_proc]
            assert head["OVERSCNX"] == 0
        assert np.array_equal(data, expect)
        assert head["NAXIS1"] * binning[0] == (8288 if fmt == "legacy" else 8192)
        assert head["OVERSCNY"] == 0
        assert head["DETSIZE"] == "[1:8288,1:3088]"
        assert (head["CCDXBIN"], head["CCDYBIN"]) == binning
        assert head["CHANNEL"] == "BLUE" and head["INSTRUME"] == "MODS1B"
        assert head["TELESCOP"] == "LBT-SX" and head["DETECTOR"].startswith("e2v")
        assert head["IMAGETYP"] == "OBJECT" and "AZIMGTYP" not in head
        assert head["DATE-OBS"] == "2026-01-02T04:00:00.000" and head["MJD-OBS"] == pytest.approx(
            61042.1666667
        )
        assert head["MSIFORM"] == fmt
        assert_fitsverify_ok(out / raw.name, "-q")


def test_legacy_proc_equals_merged_of_the_delivered_file(layout, tmp_path):
    spec = sim.ExposureSpec(channel="mods2r", date="20260102", seq=4, binning=(2, 2))
    raw = sim.write(spec, layout["raw"], two_pass=False)
    assert main(["process", "-q", "--config", str(layout["config"]), str(raw)]) == 0
    delivered = layout["newdata"] / raw.name
    out = tmp_path / "out"
    out.mkdir()
    assert export("legacy-proc", out, delivered) == 0
    with fits.open(delivered) as d, fits.open(out / raw.name) as e:
        assert np.array_equal(e[0].data, d["MERGED"].data[:, 25:-25])
        for q in (1, 2, 3, 4):
            assert e[0].header[f"Q{q}BIAS"] == d["MERGED"].header[f"Q{q}BIAS"]
        assert e[0].header["CCDSEC"] == "[49:8240,3088:1]"
        # physical (pre-Archon CCD) x of image column 1 is the centre of block 49..50
        assert e[0].header["LTM1_1"] == 0.5 and e[0].header["LTV1"] == 1 - 0.5 * 49.5
    # a raw file and its delivered copy export to the same pixels and keywords
    raw_out = tmp_path / "raw_out"
    raw_out.mkdir()
    assert export("legacy", raw_out, raw) == 0
    assert export("legacy", out, delivered) == 0
    with fits.open(raw_out / raw.name) as a, fits.open(out / raw.name) as b:
        assert np.array_equal(a[0].data, b[0].data)
        for key in ("DATE-OBS", "MJD-OBS", "IMAGETYP", "UNIQNAME", "OVERSCNX", "CCDSEC", "LTV1", "LTV2"):
            assert a[0].header[key] == b[0].header[key]


@pytest.mark.parametrize(
    "azcam, reducers",
    [("zero", "BIAS"), ("bias", "BIAS"), ("flat", "FLAT"), ("comp", "COMP"), ("std", "STD")],
)
def test_image_types_in_the_reducers_vocabulary(tmp_path, azcam, reducers):
    spec = sim.ExposureSpec(channel="mods1r", date="20260102", seq=5, binning=(2, 2), imagetype=azcam)
    raw = sim.write(spec, tmp_path, two_pass=False)
    out = tmp_path / "out"
    out.mkdir()
    assert export("legacy", out, raw) == 0
    head = fits.getheader(out / raw.name)
    assert head["IMAGETYP"] == reducers
    assert head.get("AZIMGTYP") == ("ZERO" if azcam == "zero" else None)


def test_modsccdred_rules(tmp_path):
    """modsBias/modsProc/modsFixPix as documented: keywords, and the prescan is at the outer edges.

    modsBias takes the bias from OVERSCNX columns at each outer edge: those
    columns must hold bias only (no light) and the first active column must
    not; modsProc flips a 'RED' CHANNEL; modsFixPix names its list from
    INSTRUME lower-cased.
    """
    spec = sim.ExposureSpec(channel="mods2r", date="20260102", seq=6, imagetype="flat")
    raw = sim.write(spec, tmp_path, two_pass=False)
    out = tmp_path / "out"
    out.mkdir()
    assert export("legacy", out, raw) == 0
    with fits.open(out / raw.name) as h:
        head, data = h[0].header, h[0].data.astype(np.float64)
    n = head["OVERSCNX"]
    assert n == 48 and head["OVERSCNY"] == 0
    assert head["CHANNEL"] == "RED" and f"{head['INSTRUME'].lower()}.bpl" == "mods2r.bpl"
    with fits.open(raw) as r:
        bias = {i: np.median(r[i].data[2:-2, -30:]) for i in (1, 2, 3, 4)}
    half = data.shape[0] // 2
    # (rows, outer prescan columns, first active columns, amplifier): Q1 = IM3, Q2 = IM4, Q3 = IM1, Q4 = IM2
    quadrants = [
        (slice(0, half), slice(0, n), slice(n, n + 10), 3),
        (slice(0, half), slice(-n, None), slice(-n - 10, -n), 4),
        (slice(half, None), slice(0, n), slice(n, n + 10), 1),
        (slice(half, None), slice(-n, None), slice(-n - 10, -n), 2),
    ]
    for rows, prescan, active, amp in quadrants:
        assert abs(np.median(data[rows, prescan]) - bias[amp]) < 5
        assert np.median(data[rows, active]) > bias[amp] + 100


@pytest.mark.parametrize("roi", ["4k", "3k", "1k"])
def test_roi_frames_are_refused_with_the_reason(tmp_path, capsys, roi):
    spec = sim.ExposureSpec(channel="mods1b", date="20260102", seq=7, roi=roi)
    raw = sim.write(spec, tmp_path, two_pass=False)
    out = tmp_path / "out"
    out.mkdir()
    for fmt in ("legacy", "legacy-proc"):
        assert export(fmt, out, raw) == 1
        err = capsys.readouterr().err
        assert f"{raw}: not exported as {fmt}: ROI " in err and "is not the full frame" in err
    assert list(out.iterdir()) == []


def test_every_file_attempted_exit_1_when_any_fails(tmp_path, capsys):
    good = sim.write(sim.ExposureSpec(channel="mods1b", date="20260102", seq=8, binning=(2, 2)), tmp_path)
    bad = tmp_path / "mods1b.20260102.0009.fits"
    bad.write_bytes(b"SIMPLE  =                    T" + b" " * 50)
    out = tmp_path / "out"
    out.mkdir()
    assert (
        main(
            [
                "export",
                "--format",
                "legacy",
                "--out",
                str(out),
                str(bad),
                str(tmp_path / "nope.fits"),
                str(good),
            ]
        )
        == 1
    )
    captured = capsys.readouterr()
    assert f"exported {good} as {out / good.name}" in captured.out
    assert f"modsingest: {bad}: " in captured.err
    assert "nope.fits: cannot read" in captured.err
    assert "2 of 3 file(s) not exported" in captured.err
    assert [p.name for p in out.iterdir()] == [good.name]
    # never over the input itself
    assert export("legacy", tmp_path, good) == 1
    assert "would replace it" in capsys.readouterr().err


def test_publish_target_after_the_pointer(layout, tmp_path):
    legacy_dir = tmp_path / "legacy"
    legacy_dir.mkdir()
    cfg = layout["config"]
    cfg.write_text(cfg.read_text() + f"  legacy: {legacy_dir}\n")
    full = sim.write(
        sim.ExposureSpec(channel="mods1r", date="20260102", seq=10, binning=(2, 2)), layout["raw"]
    )
    acq = sim.write(
        sim.ExposureSpec(channel="mods1r", date="20260102", seq=11, roi="3k", binning=(2, 2)), layout["raw"]
    )
    assert main(["process", "-q", "--config", str(cfg), str(full), str(acq)]) == 0
    assert (layout["newdata"] / "MODS1R.new").read_text() == acq.name + "\n"
    night = legacy_dir / "20260102"
    assert sorted(p.name for p in night.iterdir()) == [full.name]  # the ROI frame is not the reducers'
    with fits.open(night / full.name, checksum=True) as h:
        assert h[0].data.shape == (1544, 4144) and h[0].header["MSIFORM"] == "legacy"


def test_publish_target_failure_is_a_warning_not_a_lost_file(layout, tmp_path):
    from modsingest.config import load
    from modsingest.processing.pipeline import Pipeline

    legacy_dir = tmp_path / "legacy"
    legacy_dir.mkdir()
    (legacy_dir / "20260102").write_text("a file where the night's directory should be")
    cfg = layout["config"]
    cfg.write_text(cfg.read_text() + f"  legacy: {legacy_dir}\n")
    raw = sim.write(
        sim.ExposureSpec(channel="mods1r", date="20260102", seq=12, binning=(2, 2)), layout["raw"]
    )
    result = Pipeline(load(cfg), warm=False).process(raw)
    assert result.ok and (layout["newdata"] / raw.name).exists()
    assert [w for w in result.warnings if w.startswith("legacy: not written: ")]
