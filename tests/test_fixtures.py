"""Replay the recorded fixtures: the output of each recorded raw file must equal the
recorded expected output, card for card and digest for digest.

Regenerate on purpose only: ``make fixtures`` (see tools/make_fixtures.py).
"""

import hashlib
import importlib.util
import json
import math
import warnings
from pathlib import Path

import pytest
from astropy.io import fits

from conftest import assert_fitsverify_ok

ROOT = Path(__file__).resolve().parents[1]
RAWS = sorted((ROOT / "fixtures" / "raw").glob("*.fits"))

_spec = importlib.util.spec_from_file_location("make_fixtures", ROOT / "tools" / "make_fixtures.py")
make_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_fixtures)


def test_the_recorded_set_is_complete():
    assert [p.name for p in RAWS] == sorted(s.filename for s in make_fixtures.SPECS)
    assert sum(p.stat().st_size for p in RAWS) < 8_000_000  # a few MB in all


def same(a, b):
    if isinstance(a, float) and isinstance(b, float):
        # MJDs agree to 1e-9 day (86 us) across library versions; everything else exactly
        return math.isclose(a, b, rel_tol=1e-13, abs_tol=1e-9)
    return a == b


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    work = tmp_path_factory.mktemp("fixtures")
    return {raw.name: make_fixtures.process(raw, work / raw.name) for raw in RAWS}


@pytest.mark.parametrize("raw", RAWS, ids=lambda p: p.name)
def test_output_equals_the_recorded_expected_output(raw, outputs):
    expected = json.loads((ROOT / "fixtures" / "expected" / f"{raw.name}.json").read_text())
    got = make_fixtures.dump(outputs[raw.name])
    assert [h["name"] for h in got["hdus"]] == [h["name"] for h in expected["hdus"]]
    for e, g in zip(expected["hdus"], got["hdus"]):
        assert [c[0] for c in g["cards"]] == [c[0] for c in e["cards"]], e["name"]
        for ec, gc in zip(e["cards"], g["cards"]):
            assert same(ec[1], gc[1]) and ec[2] == gc[2], f"{e['name']} {ec} != {gc}"
        assert g["data_sha256"] == e["data_sha256"], f"{e['name']} data changed"


@pytest.mark.parametrize("raw", RAWS, ids=lambda p: p.name)
def test_raw_blocks_are_copied_byte_for_byte(raw, outputs):
    with fits.open(raw) as rin, fits.open(outputs[raw.name]) as rout:
        names = [h.name for h in rin]
        for i, name in enumerate(names[1:], start=1):
            a = raw.read_bytes()[rin[i]._data_offset : rin[i]._data_offset + rin[i]._data_size]
            out = outputs[raw.name].read_bytes()
            b = out[rout[i]._data_offset : rout[i]._data_offset + rout[i]._data_size]
            assert hashlib.sha256(a).digest() == hashlib.sha256(b).digest(), name
        assert rout[1].name == rin[1].name  # Q1..Q4 kept in December files


@pytest.mark.parametrize("raw", RAWS, ids=lambda p: p.name)
def test_output_verifies(raw, outputs):
    path = outputs[raw.name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with fits.open(path, checksum=True) as hdul:
            hdul.verify("exception")
            assert hdul[6].name == "MERGED" and hdul[5].name == "CONPARS"
    assert_fitsverify_ok(path)


@pytest.mark.parametrize("raw", RAWS, ids=lambda p: p.name)
def test_cfitsio_reads_the_output_the_same_way(raw, outputs):
    """An independent reader (cfitsio, through fitsio) agrees with the checksums,
    MERGED and CONPARS: the output is not only right by astropy's reading."""
    import fitsio
    import numpy as np

    path = outputs[raw.name]
    with fitsio.FITS(str(path)) as f, fits.open(path) as hdul, fitsio.FITS(str(raw)) as r:
        assert len(f) == len(hdul) == 7
        for i in range(len(f)):
            f[i].verify_checksum()  # raises ValueError on a bad HDU or data checksum
        np.testing.assert_array_equal(f["MERGED"].read(), hdul["MERGED"].data)
        got = f["CONPARS"].read()
        if "CONPARS" in r:
            assert got.tobytes() == r["CONPARS"].read().tobytes()
        else:
            assert len(got) == 0
