"""The completeness check says exactly what is missing."""

import pytest

from conftest import tiny_raw
from modsingest.fits import scan as fitscheck


def scan(tmp_path, data, name="f.fits"):
    path = tmp_path / name
    path.write_bytes(data)
    return fitscheck.scan(path)


def test_complete_file(tmp_path):
    layout = scan(tmp_path, tiny_raw())
    assert layout.complete and layout.has_conpars
    assert [h.extname for h in layout.hdus] == ["", "IM1", "IM2", "IM3", "IM4", "CONPARS"]
    assert layout.hdus[-1].end_offset == layout.size


def test_first_pass_without_conpars_is_complete_but_says_so(tmp_path):
    layout = scan(tmp_path, tiny_raw(conpars=False))
    assert layout.complete and not layout.has_conpars
    assert "no CONPARS yet" in layout.describe()


@pytest.mark.parametrize(
    "cut, expected",
    [
        (0, "file is empty"),
        (100, "not a FITS file"),
        (2880, "only PRIMARY: a MODS file has a primary and 4 amplifier extensions"),
        (2880 + 1000, "header of HDU 1 ends without an END card"),
        (2880 * 3, "IM1 data cut short"),
    ],
)
def test_truncations_are_named(tmp_path, cut, expected):
    layout = scan(tmp_path, tiny_raw()[:cut])
    assert not layout.complete
    assert expected in layout.describe()
    assert str(tmp_path / "f.fits") in layout.describe()


def test_cut_inside_conpars(tmp_path):
    data = tiny_raw()
    layout = scan(tmp_path, data[: len(data) - 2880])
    assert not layout.complete and "cut" in layout.describe() or "END" in layout.describe()


def test_not_whole_blocks(tmp_path):
    layout = scan(tmp_path, tiny_raw() + b"xx")
    assert not layout.complete


def test_trailing_zero_blocks_are_reported(tmp_path):
    layout = scan(tmp_path, tiny_raw() + bytes(2880))
    assert not layout.complete and "padding after the last HDU" in layout.describe()


def test_wrong_extension_names(tmp_path):
    data = tiny_raw().replace(b"EXTNAME = 'IM3", b"EXTNAME = 'XX3")
    layout = scan(tmp_path, data)
    assert not layout.complete and "expected IM1..IM4" in layout.describe()


def test_missing_file(tmp_path):
    layout = fitscheck.scan(tmp_path / "nope.fits")
    assert not layout.complete and "cannot open" in layout.describe()


def test_scan_of_bytes_equals_scan_of_file(tmp_path):
    data = tiny_raw(epoch=2025)
    a = scan(tmp_path, data)
    b = fitscheck.scan_bytes(data, tmp_path / "f.fits")
    assert a.hdus == b.hdus and a.problems == b.problems
