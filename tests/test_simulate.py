"""The simulator must write what azcam writes: geometry, quirks, two passes.

Expected numbers are stated here from raw-format.md, not recomputed with the
simulator's own helpers, so a slip in either shows up as a failure.
"""

from __future__ import annotations

import io
import re
import subprocess
import time
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from conftest import require_tool
from modsingest import cli
from modsingest import sim as sim
from modsingest.fits import scan as fitscheck
from modsingest.names import observing_night

UTC = UTC
# A copy of ../shared/reference/ kept in the repository so CI always runs this test.
REFERENCE = Path(__file__).resolve().parents[1] / "fixtures/reference/mods2r.20251210.0009.primary-header.txt"

# raw-format.md geometry table: (epoch, roi, binning) -> (NAXIS1, NAXIS2) of each IMx,
# NAXIS1 = W/(2 xb) + 32, NAXIS2 = H/(2 yb).
EXPECTED_SHAPES = {
    (2026, "full", (1, 1)): (4178, 1544),
    (2026, "full", (2, 2)): (2105, 772),
    (2026, "full", (1, 2)): (4178, 772),
    (2026, "full", (2, 1)): (2105, 1544),
    (2026, "4k", (1, 1)): (2080, 1544),
    (2026, "4k", (2, 2)): (1056, 772),
    (2026, "4k", (1, 2)): (2080, 772),
    (2026, "4k", (2, 1)): (1056, 1544),
    (2026, "3k", (1, 1)): (1576, 1544),
    (2026, "3k", (2, 2)): (804, 772),
    (2026, "3k", (1, 2)): (1576, 772),
    (2026, "3k", (2, 1)): (804, 1544),
    (2026, "1k", (1, 1)): (544, 512),
    (2026, "1k", (2, 2)): (288, 256),
    (2026, "1k", (1, 2)): (544, 256),
    (2026, "1k", (2, 1)): (288, 512),
    (2025, "full", (1, 1)): (4176, 1544),
    (2025, "full", (2, 2)): (2104, 772),
    (2025, "full", (1, 2)): (4176, 772),
    (2025, "full", (2, 1)): (2104, 1544),
    (2025, "4k", (1, 1)): (2080, 1544),
    (2025, "4k", (2, 2)): (1056, 772),
    (2025, "4k", (1, 2)): (2080, 772),
    (2025, "4k", (2, 1)): (1056, 1544),
    (2025, "3k", (1, 1)): (1576, 1544),
    (2025, "3k", (2, 2)): (804, 772),
    (2025, "3k", (1, 2)): (1576, 772),
    (2025, "3k", (2, 1)): (804, 1544),
    (2025, "1k", (1, 1)): (544, 512),
    (2025, "1k", (2, 2)): (288, 256),
    (2025, "1k", (1, 2)): (544, 256),
    (2025, "1k", (2, 1)): (288, 512),
}
EPOCH_CARDS = {
    2026: (("IM1", "IM2", "IM3", "IM4"), "[1:8292,1:3088]", 4146, 1544),
    2025: (("Q1", "Q2", "Q3", "Q4"), "[1:8288,1:3088]", 4144, 1544),
}


def small(**kw) -> sim.ExposureSpec:
    """A cheap 1k exposure with a fixed date and start (deterministic)."""
    base = dict(
        channel="mods1b",
        date="20261121",
        seq=1,
        roi="1k",
        utc_start=datetime(2026, 11, 21, 4, 30, 15, 123000, tzinfo=UTC),
        exptime=60.0,
    )
    base.update(kw)
    return sim.ExposureSpec(**base)


def headers(path) -> list[fits.Header]:
    with fits.open(path) as hdul:
        return [h.header.copy() for h in hdul]


# --------------------------------------------------------------------------- geometry


@pytest.mark.parametrize(
    "epoch,roi,binning",
    sorted(EXPECTED_SHAPES),
    ids=lambda v: f"{v[0]}x{v[1]}" if isinstance(v, tuple) else str(v),
)
def test_geometry_matches_the_table(tmp_path, epoch, roi, binning):
    spec = sim.ExposureSpec(
        channel="mods2b",
        date="20261121",
        roi=roi,
        binning=binning,
        epoch=epoch,
        imagetype="bias",
        exptime=0.0,
        telescope=False,
    )
    path = sim.write(spec, tmp_path, two_pass=False)
    naxis1, naxis2 = EXPECTED_SHAPES[(epoch, roi, binning)]
    extnames, detsize, ref1, ref2 = EPOCH_CARDS[epoch]
    hdrs = headers(path)
    prim = hdrs[0]
    assert (prim["REF-PIX1"], prim["REF-PIX2"], prim["DETSIZE"]) == (ref1, ref2, detsize)
    assert prim["CCDSUM"] == f"{binning[0]} {binning[1]}"
    assert (prim["CCDBIN1"], prim["CCDBIN2"]) == binning
    assert tuple(h["EXTNAME"] for h in hdrs[1:5]) == extnames
    assert hdrs[5]["EXTNAME"] == "CONPARS"
    for h in hdrs[1:5]:
        assert (h["NAXIS1"], h["NAXIS2"]) == (naxis1, naxis2)
        assert (h["BITPIX"], h["BZERO"], h["BSCALE"]) == (16, 32768.0, 1.0)
        assert h["DETSIZE"] == detsize and h["CCDSUM"] == prim["CCDSUM"]
        nd = naxis1 - 32
        assert h["DATASEC"] == h["TRIMSEC"] == f"[1:{nd},1:{naxis2}]"
        assert h["BIASSEC"] == f"[{nd + 1}:{nd + 32},1:{naxis2}]"
        assert h["OVRSCAN1"] == 32
    assert fitscheck.scan(path).complete


def test_raw_detsec_is_azcams_wrong_one_for_the_december_1k_example():
    spec = small(channel="mods2r", date="20251210", epoch=2025)
    cards = {i: dict((k, v) for k, v, _ in sim.amp_header_cards(spec, i)) for i in (1, 2, 3, 4)}
    # raw-format.md: Q2 [8288:7777,1033:1544] (should be [4656:4145,...]),
    # Q3 [3633:4144,2577:3088] (should be [3633:4144,1545:2056]).
    assert cards[2]["DETSEC"] == "[8288:7777,1033:1544]"
    assert cards[3]["DETSEC"] == "[3633:4144,2577:3088]"
    assert cards[1]["DETSEC"] == "[3633:4144,1033:1544]"
    assert cards[4]["DETSEC"] == "[8288:7777,2577:3088]"
    assert all(cards[i]["CCDSEC"] == cards[i]["DETSEC"] for i in cards)
    # LTV follows the wrong sections: image = LTM * ccd + LTV at the first pixel.
    assert (cards[2]["LTM1_1"], cards[2]["LTV1"]) == (-1.0, 8289.0)
    assert cards[3]["LTV2"] == -2576.0


def test_full_frame_sections_are_right():
    spec = small(roi="full", epoch=2026)
    detsec = {i: dict((k, v) for k, v, _ in sim.amp_header_cards(spec, i))["DETSEC"] for i in (1, 2, 3, 4)}
    assert detsec == {
        1: "[1:4146,1:1544]",
        2: "[8292:4147,1:1544]",
        3: "[1:4146,1545:3088]",
        4: "[8292:4147,1545:3088]",
    }


def test_extension_header_has_azcams_73_cards():
    h = sim.hdulist(small())
    assert [len(h[i].header) for i in (1, 2, 3, 4)] == [73] * 4
    assert len(h[5].header) == 13


# --------------------------------------------------------------------------- full frame


def _bias_corrected(hdu) -> np.ndarray:
    data = hdu.data.astype(np.float64)
    overscan = np.median(data[:, -28:-4])
    return data[:, : hdu.header["NAXIS1"] - 32] - overscan


def test_full_frame_orientation_speed_and_validity(tmp_path):
    """One full flat: amplifiers meet where raw-format.md says they do.

    IM2/IM4 are read in -x, so their array column 1 is the CCD's right edge
    (the 50 light-free prescan columns come first) and their last data column
    touches IM1/IM3's last one at the reference column; IM3/IM4 rows run in
    +y from just above IM1/IM2's last row.  The flat is smooth, so values
    must be continuous across both seams.
    """
    spec = sim.ExposureSpec(
        channel="mods1r", date="20261121", roi="full", imagetype="flat", exptime=5.0, seed=7
    )
    t0 = time.process_time()
    sim.amplifier_pixels(spec)
    assert time.process_time() - t0 < 2.0, "a full frame must generate well under 2 s"

    path = sim.write(spec, tmp_path)
    assert path.stat().st_size == 51_672_960
    with fits.open(path) as hdul:
        im = {i: _bias_corrected(hdul[i]) for i in (1, 2, 3, 4)}
    for i in (1, 2, 3, 4):  # prescan first along every readout: no light there
        assert abs(np.median(im[i][:, :48])) < 5
        assert np.median(im[i][:, 60:200]) > 10_000
    # x seam (ref column | ref+1) and y seam (ref row | ref+1), both ways.
    assert np.median(im[1][:, -1]) == pytest.approx(np.median(im[2][:, -1]), rel=0.02)
    assert np.median(im[3][:, -1]) == pytest.approx(np.median(im[4][:, -1]), rel=0.02)
    assert np.median(im[1][-1]) == pytest.approx(np.median(im[3][0]), rel=0.02)
    assert np.median(im[2][-1]) == pytest.approx(np.median(im[4][0]), rel=0.02)
    # ...and the far edges really are different places (so the test can fail).
    assert np.median(im[1][-1]) != pytest.approx(np.median(im[3][-1]), rel=0.02)
    _assert_fitsverify_clean(path)


# --------------------------------------------------------------------------- two passes


def test_two_pass_write_lacks_conpars_between_the_passes(tmp_path):
    spec = small()
    seen = []

    def between(path: Path) -> None:
        layout = fitscheck.scan(path)
        seen.append((layout.complete, layout.has_conpars, len(layout.hdus)))

    path = sim.write(spec, tmp_path, after_first_pass=between)
    assert seen == [(True, False, 5)]
    final = fitscheck.scan(path)
    assert final.complete and final.has_conpars and len(final.hdus) == 6
    # astropy's update-mode append leaves no temporary file behind, and the
    # result is the same file a one-pass write gives.
    assert [p.name for p in tmp_path.iterdir()] == [spec.filename]
    assert path.read_bytes() == sim.render(spec)


def test_one_pass_and_no_conpars_variants(tmp_path):
    calls = []
    one = sim.write(small(seq=1), tmp_path, two_pass=False, after_first_pass=calls.append)
    assert fitscheck.scan(one).has_conpars and calls == []
    bare = sim.write(small(seq=2, conpars=False), tmp_path, after_first_pass=calls.append)
    layout = fitscheck.scan(bare)
    assert layout.complete and not layout.has_conpars and calls == []


def test_pause_between_passes_is_honoured(tmp_path):
    stamps = []
    t0 = time.monotonic()
    sim.write(small(), tmp_path, pause=0.3, after_first_pass=lambda p: stamps.append(time.monotonic()))
    assert time.monotonic() - stamps[0] >= 0.3 and stamps[0] >= t0


def test_existing_file_is_not_overwritten_unless_asked(tmp_path):
    sim.write(small(), tmp_path)
    with pytest.raises(FileExistsError):
        sim.write(small(), tmp_path)
    sim.write(small(), tmp_path, overwrite=True)


# --------------------------------------------------------------------------- headers and quirks


def test_primary_header_reproduces_the_real_december_file():
    text = REFERENCE.read_text().split("Primary FITS Header:")[1]
    reference = [line.ljust(80) for line in text.splitlines() if line.strip()]
    spec = sim.ExposureSpec(
        channel="mods2r",
        date="20251210",
        seq=9,
        roi="1k",
        epoch=2025,
        utc_start=datetime(2025, 12, 10, 19, 8, 7, 251000, tzinfo=UTC),
        exptime=1.0,
        imagetype="object",
        object="Sieve Mask 1Kx1K 500ms",
        telescope=False,
    )
    assert [str(card) for card in sim.hdulist(spec)[0].header.cards] == reference


def test_default_file_is_a_science_exposure_with_azcam_primary_quirks():
    h = sim.hdulist(small())[0].header
    assert h["DATE-OBS"] == "2026-11-21" and h["DATE"] == "2026-11-21"
    assert h["UTC-OBS"] == h["TIME-OBS"] == h["UT"] == "04:30:15.123"
    assert h["IMAGETYP"] == "object" and h["NEXTEND"] == 4
    assert h["FILENAME"] == "mods1b.20261121.0001.fits"
    assert h["LBTWLINK"] == "1" and h["NONSIDER"] == 0 and isinstance(h["NONSIDER"], int)
    assert isinstance(h["TELALT"], float) and isinstance(h["TELAZ"], float)
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d", h["TELRA"])
    assert re.fullmatch(r"[+-]\d\d:\d\d:\d\d", h["TELDEC"])
    assert h["CCDTEMP"] == h["BASETEMP"] == -999.9
    assert h["NSTYPE"] == "None" and h["TIMEZONE"] == "0.0"
    assert h["LOCTIME"] == "04:30:15"
    assert "HATCH" in h and h["AZCAM-HEAD"] == "OK"


@pytest.mark.parametrize(
    "channel,instrume,chan,telescop,pixscale,detector",
    [
        ("mods1b", "MODS1B", "BLUE", "LBT-SX", 0.120, "e2v CCD231-68 Blue CCD 1"),
        ("mods1r", "MODS1R", "RED", "LBT-SX", 0.123, "e2v CCD231-68 Red CCD 1"),
        ("mods2b", "MODS2B", "BLUE", "LBT-DX", 0.120, "e2v CCD231-68 Blue CCD 2"),
        ("mods2r", "MODS2R", "RED", "LBT-DX", 0.123, "e2v CCD231-68 Red CCD 2"),
    ],
)
def test_channel_identity(channel, instrume, chan, telescop, pixscale, detector):
    h = sim.primary_header(small(channel=channel))
    identity = (h["INSTRUME"], h["DEWAR"], h["CHANNEL"], h["TELESCOP"])
    assert identity == (instrume, instrume, chan, telescop)
    assert (h["PIXSCALE"], h["DETECTOR"]) == (pixscale, detector)
    side = telescop[-2:]
    assert h.comments["TELRA"].startswith(side)


def test_no_telescope_drops_both_blocks():
    h = sim.primary_header(small(telescope=False))
    assert "TELRA" not in h and "TELALT" not in h and "HATCH" not in h and "NSTYPE" not in h
    titles = [c for c in h["COMMENT"]]
    assert "Telescope" not in titles and "Instrument" not in titles
    assert h["PARTNER"] == "ENGINEERING"


def test_telalt_styles():
    sexa = sim.primary_header(small(telalt_style="sexagesimal"))
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d\d", sexa["TELALT"])
    assert re.fullmatch(r"\d{2,3}:\d\d:\d\d\.\d\d", sexa["TELAZ"])
    dec = sim.primary_header(small(telalt_style="decimal"))
    assert 0 < dec["TELALT"] < 90 and 0 <= dec["TELAZ"] < 360


def test_fraction_1000_prints_the_next_second_as_dot_1000():
    h = sim.primary_header(
        small(utc_start=datetime(2026, 11, 21, 23, 59, 59, 999700, tzinfo=UTC), fraction_1000=True)
    )
    assert h["UTC-OBS"] == h["TIME-OBS"] == h["UT"] == "23:59:59.1000"
    assert h["DATE-OBS"] == "2026-11-21"
    assert sim.primary_header(small())["UTC-OBS"] == "04:30:15.123"


def test_blank_nstype():
    h = sim.primary_header(small(blank_nstype=True))
    assert h["NSTYPE"] == "" and h["NSEPHFIL"] == ""


def test_nocomm_keeps_strings_and_drops_numbers():
    h = sim.primary_header(small(nocomm=("HATCH", "TELALT", "IUBTAIR")))
    assert h["HATCH"] == "NOCOMM"
    assert "TELALT" not in h and "IUBTAIR" not in h and "TELAZ" in h
    sexa = sim.primary_header(small(nocomm=("TELALT",), telalt_style="sexagesimal"))
    assert sexa["TELALT"] == "NOCOMM"
    default = sim.primary_header(small(nocomm=True))
    assert default["HATCH"] == "NOCOMM" and "TELALT" not in default
    assert "TELALT" in sim.primary_header(small(nocomm=False))
    with pytest.raises(ValueError):
        small(nocomm=("NOSUCHKEY",))
    with pytest.raises(ValueError):
        small(nocomm=("HATCH",), telescope=False)


def test_custom_root_and_timezone(tmp_path):
    path = sim.write(small(root="m1bTest.", timezone="7.0", telescope=False), tmp_path)
    assert path.name == "m1bTest.0001.fits"
    h = headers(path)[0]
    assert h["FILENAME"] == "m1bTest.0001.fits"
    assert h["TIMEZONE"] == "7.0" and h["LOCTIME"] == "21:30:15"
    assert fitscheck.scan(path).complete


@pytest.mark.parametrize(
    "imagetype,intms,nointms",
    [
        ("object", 60000, 500),
        ("flat", 60000, 500),
        ("dark", 0, 60000),
        ("bias", 0, 0),
    ],
)
def test_shutter_times(imagetype, intms, nointms):
    h = sim.primary_header(small(imagetype=imagetype))
    assert (h["IMAGETYP"], h["INTMS"], h["NOINTMS"]) == (imagetype, intms, nointms)


def test_conpars_table_and_temperature_wiring():
    for channel, ccd_key, base_key in (
        ("mods1b", "MOD10/TEMPB", "MOD10/TEMPA"),
        ("mods2r", "MOD10/TEMPA", "MOD10/TEMPB"),
    ):
        table = sim.hdulist(small(channel=channel))["CONPARS"]
        assert [c.format for c in table.columns] == ["20A", "20A"]
        assert table.columns.names == ["Keyword", "Value"]
        rows = dict(zip(table.data["Keyword"], table.data["Value"]))
        assert 190 <= len(rows) <= 220
        assert all(isinstance(v, str) and len(v) <= 20 for v in rows.values())
        assert float(rows[ccd_key]) == pytest.approx(-110, abs=1)
        assert float(rows[base_key]) == pytest.approx(-130, abs=2)
        assert float(rows["BACKPLANE_TEMP"]) == pytest.approx(30, abs=3)
        for key in ("VALID", "COUNT", "LOG", "POWER", "MOD10/TEMPC", "MOD10/HEATERAOUTPUT"):
            assert key in rows


# --------------------------------------------------------------------------- pixels


def test_bias_statistics_look_like_real_data():
    h = sim.hdulist(small(imagetype="bias", exptime=0.0, roi="4k"))
    for i in (1, 2, 3, 4):
        data = h[i].data.astype(np.float64)
        over = data[:, -31:-1]  # inner overscan columns
        assert 950 <= np.median(over) <= 1050
        assert 1.3 < over[1:-1].std() < 1.8
        assert 0.3 < np.median(over[1:-1], axis=1).std() < 0.7
        assert np.median(data[:, -32]) > np.median(over) + 4  # first overscan column high
        assert np.median(data[0]) > np.median(data[1:-1]) + 3  # first row high


def test_generation_is_deterministic_for_a_seed():
    assert sim.render(small(seed=3)) == sim.render(small(seed=3))
    assert sim.render(small()) == sim.render(small())
    a, b = sim.hdulist(small(seed=3)), sim.hdulist(small(seed=4))
    assert not np.array_equal(a[1].data, b[1].data)
    assert a[0].header.tostring() != b[0].header.tostring()  # telemetry differs too


# --------------------------------------------------------------------------- fitsverify


def _assert_fitsverify_clean(path: Path) -> None:
    exe = require_tool("fitsverify", "fitsverify")
    out = subprocess.run([exe, str(path)], capture_output=True, text=True, check=False).stdout
    assert "Verification found 0 warning(s) and 0 error(s)" in out, out[-2000:]


@pytest.mark.parametrize(
    "spec",
    [
        small(),
        small(channel="mods2r", epoch=2025, telescope=False, date="20251210"),
        small(
            binning=(2, 2),
            roi="3k",
            telalt_style="sexagesimal",
            blank_nstype=True,
            fraction_1000=True,
            nocomm=("HATCH", "TELALT"),
        ),
        small(imagetype="comp", binning=(1, 2), conpars=False, root="m1bTest."),
    ],
    ids=["default", "december-engineering", "quirks", "no-conpars"],
)
def test_fitsverify_is_clean(tmp_path, spec):
    _assert_fitsverify_clean(sim.write(spec, tmp_path))


# --------------------------------------------------------------------------- names, dates, CLI


def test_spec_validation():
    for bad in (
        dict(channel="mods3b"),
        dict(roi="2k"),
        dict(binning="3 1"),
        dict(epoch=2024),
        dict(seq=0),
        dict(seq=10000),
        dict(date="2026-11-21"),
        dict(imagetype="OBJECT"),
        dict(timezone="-7.0"),
        dict(telalt_style="hms"),
    ):
        with pytest.raises(ValueError):
            small(**bad)


def run_cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = cli.main(["simulate", *argv])
    return status, out.getvalue(), err.getvalue()


def test_cli_writes_successive_exposures(tmp_path):
    status, out, err = run_cli(
        "--out",
        str(tmp_path),
        "--channel",
        "mods2b",
        "--date",
        "20261121",
        "--seq",
        "7",
        "--count",
        "3",
        "--roi",
        "1k",
        "--bin",
        "2 2",
        "--no-telescope",
        "--exptime",
        "10",
        "--fraction-1000",
    )
    assert status == 0, err
    lines = out.splitlines()
    assert [Path(line).name for line in lines] == [
        "mods2b.20261121.0007.fits",
        "mods2b.20261121.0008.fits",
        "mods2b.20261121.0009.fits",
    ]
    starts = []
    for line in lines:
        h = headers(line)[0]
        assert h["CCDSUM"] == "2 2" and "TELRA" not in h and h["UTC-OBS"].endswith(".1000")
        assert fitscheck.scan(line).has_conpars
        starts.append(h["UTC-OBS"])
    assert starts == sorted(starts) and len(set(starts)) == 3


def test_cli_defaults_to_todays_observing_date(tmp_path):
    before = observing_night(datetime.now(UTC))
    status, out, _ = run_cli("--out", str(tmp_path), "--roi", "1k", "--no-conpars", "--imagetype", "bias")
    after = observing_night(datetime.now(UTC))
    assert status == 0
    assert Path(out.strip()).name in (f"mods1b.{before}.0001.fits", f"mods1b.{after}.0001.fits")
    assert not fitscheck.scan(out.strip()).has_conpars


def test_cli_errors_are_one_line(tmp_path):
    status, out, err = run_cli("--out", str(tmp_path), "--bin", "3 3")
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1
    status, _, err = run_cli("--out", str(tmp_path / "missing"), "--roi", "1k")
    assert status == 2 and "does not exist" in err
    run_cli("--out", str(tmp_path), "--roi", "1k", "--date", "20261121")
    status, _, err = run_cli("--out", str(tmp_path), "--roi", "1k", "--date", "20261121")
    assert status == 1 and "exists" in err and len(err.strip().splitlines()) == 1


def test_cli_start_and_interval_set_utc_and_pacing(tmp_path):
    t0 = time.monotonic()
    status, out, _ = run_cli(
        "--out",
        str(tmp_path),
        "--roi",
        "1k",
        "--count",
        "2",
        "--interval",
        "0.3",
        "--start",
        "2026-02-25T23:59:58.5",
        "--one-pass",
        "--telalt",
        "sexagesimal",
        "--timezone",
        "7.0",
    )
    assert status == 0 and time.monotonic() - t0 >= 0.3
    first, second = (headers(line)[0] for line in out.splitlines())
    assert Path(out.splitlines()[0]).name == "mods1b.20260226.0001.fits"
    assert (first["DATE-OBS"], first["UTC-OBS"]) == ("2026-02-25", "23:59:58.500")
    assert (second["DATE-OBS"], second["UTC-OBS"]) == ("2026-02-25", "23:59:58.800")
    assert isinstance(first["TELALT"], str) and first["LOCTIME"] == "16:59:58"
    start = datetime(2026, 2, 25, 23, 59, 58, 500000, tzinfo=UTC)
    assert sim.ExposureSpec(utc_start=start).date == "20260226"
    assert sim.ExposureSpec(date="20260226").utc_start == datetime(2026, 2, 26, 4, tzinfo=UTC)
