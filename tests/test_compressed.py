"""The compressed archive copy (paths.compressed): fpack-compatible, lossless, MERGED left out.

funpack (cfitsio's own tool), astropy and fitsio must each give back exactly the
delivered pixel data and header cards; MERGED, left out, is rebuilt bit for bit
from the restored file.
"""

from __future__ import annotations

import subprocess

import fitsio
import numpy as np
import pytest
from astropy.io import fits

from conftest import assert_fitsverify_ok, require_tool
from modsingest import sim
from modsingest.cli import main
from modsingest.config import load
from modsingest.fits import frame as frame_mod
from modsingest.processing.compress import MERGED_NOTE
from modsingest.processing.pipeline import Pipeline
from modsingest.processing.steps import merged as merged_step

NIGHT = "20260102"
#: cards cfitsio writes itself (their comments differ); everything else must be identical
STRUCTURAL = {
    "SIMPLE", "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "PCOUNT", "GCOUNT",
    "BZERO", "BSCALE", "CHECKSUM", "DATASUM", "TFIELDS", "TTYPE1", "TTYPE2", "TFORM1", "TFORM2", "EXTNAME",
}  # fmt: skip
CFITSIO_COMMENT = (
    "FITS (Flexible Image Transport System) format is defined in 'Astronomy",
    "and Astrophysics',",
)


def with_compressed(layout, tmp_path):
    directory = tmp_path / "compressed"
    directory.mkdir()
    cfg = layout["config"]
    cfg.write_text(cfg.read_text() + f"  compressed: {directory}\n")
    return cfg, directory


def cards(header, extra=()):
    return [
        c.image
        for c in header.cards
        if c.keyword not in STRUCTURAL
        and c.keyword not in extra
        and not (c.keyword == "COMMENT" and str(c.value).strip().startswith(CFITSIO_COMMENT))
    ]


@pytest.mark.parametrize("binning, epoch", [((1, 1), 2026), ((2, 2), 2025)], ids=str)
def test_funpack_astropy_and_fitsio_restore_the_delivered_data(layout, tmp_path, binning, epoch):
    cfg, directory = with_compressed(layout, tmp_path)
    spec = sim.ExposureSpec(channel="mods2r", date=NIGHT, seq=1, binning=binning, epoch=epoch)
    raw = sim.write(spec, layout["raw"], two_pass=False)
    result = Pipeline(load(cfg), warm=False).process(raw)
    assert result.ok and not [w for w in result.warnings if w.startswith("compressed")]
    delivered = layout["newdata"] / raw.name
    fz = directory / NIGHT / f"{raw.name}.fz"
    assert fz in result.outputs
    assert fz.stat().st_size < delivered.stat().st_size / 3
    with fits.open(delivered) as d:
        want = [(h.name, None if h.data is None else np.array(h.data), h.header.copy()) for h in d]
    amps = ["Q1", "Q2", "Q3", "Q4"] if epoch == 2025 else ["IM1", "IM2", "IM3", "IM4"]
    assert [w[0] for w in want] == ["PRIMARY", *amps, "CONPARS", "MERGED"]
    want = want[:6]  # MERGED is left out of the copy
    # the integer HDUs are Rice-compressed tiles, the table is copied as it is
    with fits.open(fz, disable_image_compression=True) as raw_fz:
        assert [h.header.get("ZCMPTYPE") for h in raw_fz[1:5]] == ["RICE_1"] * 4
        assert raw_fz[5].name == "CONPARS" and "ZIMAGE" not in raw_fz[5].header
    # astropy reads the .fz itself
    with fits.open(fz, checksum=True) as z:
        assert [h.name for h in z] == [w[0] for w in want]
        assert z[0].header["MSIFZ"] == MERGED_NOTE
        for (name, data, header), hdu in zip(want, z):
            assert cards(hdu.header, {"MSIFZ"}) == cards(header), name
            if data is not None:
                assert hdu.data.dtype == data.dtype and np.array_equal(hdu.data, data), name
    # fitsio (cfitsio) reads it too
    with fitsio.FITS(str(fz)) as f:
        for i in range(1, 5):
            assert np.array_equal(f[i].read(), want[i][1])
        table = f[5].read()
        for column in ("Keyword", "Value"):
            assert list(table[column].astype(str)) == list(want[5][1][column].astype(str))
    assert_fitsverify_ok(fz)
    funpack = require_tool("funpack", "libcfitsio-bin")
    restored = tmp_path / "restored.fits"
    subprocess.run([funpack, "-O", str(restored), str(fz)], check=True)
    with fits.open(restored, checksum=True) as r:
        assert [h.name for h in r] == [w[0] for w in want]
        for (name, data, header), hdu in zip(want, r):
            assert cards(hdu.header, {"MSIFZ"}) == cards(header), name
            if data is not None:
                assert np.array_equal(hdu.data, data), name
    # MERGED is derived: rebuilt from the restored file, it is the delivered one bit for bit
    frame = frame_mod.read(restored)
    rebuilt, _ = merged_step.build(frame)
    with fits.open(delivered) as d:
        assert np.array_equal(rebuilt.data, d["MERGED"].data)
        for q in (1, 2, 3, 4):
            assert rebuilt.header[f"Q{q}BIAS"] == d["MERGED"].header[f"Q{q}BIAS"]


def test_a_copy_that_cannot_be_written_is_a_warning_not_a_lost_file(layout, tmp_path, capsys):
    cfg, directory = with_compressed(layout, tmp_path)
    (directory / NIGHT).write_text("a file where the night's directory should be")
    raw = sim.write(sim.ExposureSpec(channel="mods1b", date=NIGHT, seq=2, roi="1k"), layout["raw"])
    assert main(["process", "--config", str(cfg), str(raw)]) == 0
    assert (layout["newdata"] / raw.name).exists()
    assert (layout["newdata"] / "MODS1B.new").read_text() == raw.name + "\n"
    assert "compressed: not written: " in capsys.readouterr().out
