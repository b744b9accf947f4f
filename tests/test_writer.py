"""The writer: verbatim data blocks, FITS checksums that astropy and fitsverify accept."""

import io
import warnings

import numpy as np
import pytest
from astropy.io import fits

from conftest import assert_fitsverify_ok, tiny_raw
from modsingest.fits import frame as frame_mod
from modsingest.fits import writer
from modsingest.processing.steps import StepContext, discover, run_steps


@pytest.mark.parametrize("value", [0, 1, 0xFFFFFFFF, 0x12345678, 0x8F2B7D2C, 0xDEADBEEF, 0x3A3B3C3D])
def test_encode_checksum_matches_astropy(value):
    hdu = fits.ImageHDU(np.zeros((2, 2), dtype=">i4"))
    assert writer.encode_checksum(value) == hdu._char_encode(value)


def test_ones_sum_folds_carries():
    data = np.array([0xFFFFFFFF, 0x00000002], dtype=">u4").tobytes()
    assert writer.ones_sum(data) == 0x00000002  # 0xFFFFFFFF + 2 = 0x1_00000001 -> 1 + 1


def processed_bytes(**kw):
    raw = tiny_raw(**kw)
    f = frame_mod.from_bytes(raw, "mods1b.20260102.0001.fits")
    run_steps(f, ["geometry", "merged"], StepContext("mods1b.20260102.0001.fits"), discover())
    return raw, writer.serialize(f).tobytes()


def test_checksums_verify_with_astropy():
    _, out = processed_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # astropy warns on a bad checksum
        with fits.open(io.BytesIO(out), checksum=True) as hdul:
            hdul.verify("exception")
            assert [h.name for h in hdul] == ["PRIMARY", "IM1", "IM2", "IM3", "IM4", "CONPARS", "MERGED"]
            for h in hdul:
                assert "CHECKSUM" in h.header and "DATASUM" in h.header


def test_amplifier_data_blocks_are_byte_identical():
    raw, out = processed_bytes()
    rin = fits.open(io.BytesIO(raw))
    rout = fits.open(io.BytesIO(out))
    for i in range(1, 6):
        a, b = rin[i]._get_raw_data(rin[i]._data_size, "uint8", rin[i]._data_offset), None
        b = rout[i]._get_raw_data(rout[i]._data_size, "uint8", rout[i]._data_offset)
        assert a.tobytes() == b.tobytes(), rin[i].name


def test_missing_conpars_gives_an_empty_table_with_the_same_columns(tmp_path):
    raw = tiny_raw(conpars=False)
    f = frame_mod.from_bytes(raw, "x.fits")
    out = writer.serialize(f).tobytes()
    with fits.open(io.BytesIO(out), checksum=True) as hdul:
        c = hdul["CONPARS"]
        assert c.columns.names == ["Keyword", "Value"]
        assert [col.format for col in c.columns] == ["20A", "20A"]
        assert len(c.data) == 0 and c.header["CONPMISS"] is True
        assert hdul.index_of("CONPARS") == 5


def test_merged_header_carries_the_final_primary():
    raw = tiny_raw()
    f = frame_mod.from_bytes(raw, "x.fits")
    run_steps(f, ["merged", "geometry"], StepContext("x.fits"), discover())  # merged first on purpose
    out = writer.serialize(f).tobytes()
    with fits.open(io.BytesIO(out)) as hdul:
        m = hdul[6].header
        assert m["CCDROI"] == hdul[0].header["CCDROI"]  # written by geometry after merged ran
        assert m["EXTNAME"] == "MERGED" and "DETSEC" not in m and "NEXTEND" not in m


def test_output_passes_fitsverify(tmp_path):
    _, out = processed_bytes(conpars=False)
    path = tmp_path / "out.fits"
    path.write_bytes(out)
    assert_fitsverify_ok(path)


# --------------------------------------------------------------------------- checksum card placement
def astropy_placement(header: fits.Header) -> str:
    """The oracle: what astropy itself makes of adding CHECKSUM and DATASUM."""
    h = header.copy(strip=False)
    h.remove("CHECKSUM", ignore_missing=True, remove_all=True)
    h.remove("DATASUM", ignore_missing=True, remove_all=True)
    h["CHECKSUM"] = ("0" * 16, "HDU checksum")
    h["DATASUM"] = ("0", "data unit checksum")
    return h.tostring(sep="", endcard=True, padding=True)


def _awkward_headers():
    base = [("SIMPLE", True), ("BITPIX", 16), ("NAXIS", 0), ("OBJECT", "M42")]
    tails = {
        "plain": [],
        "trailing blanks": [("", "")] * 3,
        "commentary tail": [("HISTORY", "one"), ("COMMENT", "two"), ("HISTORY", "three")],
        "commentary then blanks": [("HISTORY", "x"), ("", ""), ("", "")],
        "blank inside": [("", ""), ("FILTER", "g"), ("", "")],
        "old checksums": [("CHECKSUM", "abc"), ("DATASUM", "12"), ("HISTORY", "h")],
        "long string": [("LONGSTR", "x" * 150), ("", "")],
        "blank keyword text": [("", "a note with a blank keyword")],
    }
    for name, tail in tails.items():
        h = fits.Header()
        for key, value in base + tail:
            if key in ("", "HISTORY", "COMMENT"):
                h.append((key, value), bottom=True, useblanks=False)
            else:
                h.append((key, value), end=True)
        yield name, h


@pytest.mark.parametrize(("name", "header"), list(_awkward_headers()))
def test_checksum_cards_are_placed_as_astropy_places_them(name, header):
    assert writer.with_checksum_cards(header) == astropy_placement(header), name


def test_checksum_cards_are_placed_as_astropy_places_them_in_every_fixture_hdu():
    from pathlib import Path

    raws = sorted((Path(__file__).resolve().parent.parent / "fixtures" / "raw").glob("*.fits"))
    assert raws
    checked = 0
    for raw in raws:
        f = frame_mod.read(raw)
        run_steps(f, [s for s in discover()], StepContext(raw.name), discover())
        headers = [f.primary] + [a.header for a in f.amps]
        headers.append(f.conpars.header if f.conpars is not None else writer.placeholder_conpars())
        if f.merged is not None:
            headers.append(writer.merged_header(f.primary, f.merged))
        for h in headers:
            assert writer.with_checksum_cards(h) == astropy_placement(h)
            checked += 1
    assert checked >= 4 * 6
