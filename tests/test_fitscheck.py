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
        (100, "primary header ends without an END card (file cut at byte 100)"),
        (2880, "only PRIMARY: a MODS file has a primary and 4 amplifier extensions"),
        (2880 + 1000, "header of HDU 1 ends without an END card"),
        (2880 * 3, "IM1 data cut short"),
    ],
)
def test_truncations_are_named(tmp_path, cut, expected):
    layout = scan(tmp_path, tiny_raw()[:cut])
    assert not layout.complete
    assert layout.verdict is fitscheck.Verdict.INCOMPLETE  # a prefix may still grow
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
    assert layout.impossible


def test_missing_file(tmp_path):
    layout = fitscheck.scan(tmp_path / "nope.fits")
    assert not layout.complete and "cannot open" in layout.describe()


def test_scan_of_bytes_equals_scan_of_file(tmp_path):
    data = tiny_raw(epoch=2025)
    a = scan(tmp_path, data)
    b = fitscheck.scan_bytes(data, tmp_path / "f.fits")
    assert a.hdus == b.hdus and a.problems == b.problems


def test_complete_verdict(tmp_path):
    layout = scan(tmp_path, tiny_raw())
    assert layout.verdict is fitscheck.Verdict.COMPLETE and layout.verdict == "complete"
    assert layout.reason == "" and not layout.impossible


def test_every_prefix_of_a_good_file_is_incomplete(tmp_path):
    """Whatever moment the writer is caught at, the answer is 'wait', never 'impossible'."""
    data = tiny_raw()
    cuts = sorted({1, 9, 29, 30, 79, 80, 81, 2879, 2881} | set(range(0, len(data), 997)) | {len(data) - 1})
    for cut in cuts:
        layout = fitscheck.scan_bytes(data[:cut], "f.fits")
        assert layout.verdict is fitscheck.Verdict.INCOMPLETE, (cut, layout.problems)


def _set_card(data: bytes, hdu: int, key: str, value: str) -> bytes:
    """``data`` with the card ``key`` of HDU ``hdu`` given a new value text (right-justified)."""
    layout = fitscheck.scan_bytes(data)
    info = layout.hdus[hdu]
    head = data[info.header_offset : info.header_offset + info.header_nbytes]
    for i in range(0, len(head), 80):
        if head[i : i + 8].rstrip() == key.encode():
            card = f"{key:<8}= {value:>20}".ljust(80).encode()
            at = info.header_offset + i
            return data[:at] + card + data[at + 80 :]
    raise AssertionError(f"no {key} in HDU {hdu}")


@pytest.mark.parametrize(
    "hdu, key, value, expected",
    [
        (2, "NAXIS1", "-1", "HDU 2 has a negative size: NAXIS1 = -1"),
        (2, "NAXIS2", "-48", "HDU 2 has a negative size: NAXIS2 = -48"),
        (1, "PCOUNT", "-5", "HDU 1 has a negative size: PCOUNT = -5"),
        (1, "GCOUNT", "-1", "HDU 1 has a negative size: GCOUNT = -1"),
        (5, "PCOUNT", "-2880", "HDU 5 has a negative size: PCOUNT = -2880"),
        (3, "BITPIX", "12", "HDU 3 has an invalid BITPIX 12"),
        (3, "NAXIS", "1000", "HDU 3 has NAXIS = 1000, outside 0..999"),
        (3, "NAXIS", "-2", "HDU 3 has NAXIS = -2, outside 0..999"),
        (3, "NAXIS1", "99999999999", "HDU 3 has an absurd size: NAXIS1 = 99999999999"),
        (3, "NAXIS1", "999999999", "HDU 3 data size overflows: more than 4294967296 bytes"),
        (3, "NAXIS1", "'abc'", "HDU 3 has an unreadable NAXIS1 = 'abc'"),
        (4, "NAXIS", "3", "HDU 4 has no NAXIS3 card"),
    ],
)
def test_impossible_sizes_are_named_at_once(tmp_path, hdu, key, value, expected):
    layout = scan(tmp_path, _set_card(tiny_raw(), hdu, key, value))
    assert layout.verdict is fitscheck.Verdict.IMPOSSIBLE
    assert layout.problems == [expected]
    assert layout.reason == f"{tmp_path / 'f.fits'}: {expected}"


def test_negative_sizes_cut_short_are_still_impossible(tmp_path):
    """The header is judged as soon as it ends, whatever follows it."""
    data = _set_card(tiny_raw(), 2, "NAXIS1", "-1")
    info = fitscheck.scan_bytes(tiny_raw()).hdus[2]
    layout = scan(tmp_path, data[: info.data_offset])
    assert layout.impossible and layout.problems == ["HDU 2 has a negative size: NAXIS1 = -1"]


def test_first_card_not_simple_true(tmp_path):
    data = tiny_raw()
    for bad in (
        data.replace(b"SIMPLE  =                    T", b"SIMPLE  =                    F", 1),
        b"\x89PNG" + data[4:],
        b"XYZ",
    ):
        layout = scan(tmp_path, bad)
        assert layout.impossible and layout.problems == ["not a FITS file (does not start with SIMPLE = T)"]


@pytest.mark.parametrize("byte, verdict", [(0xE9, "impossible"), (0x07, "impossible"), (0x00, "incomplete")])
def test_non_ascii_in_a_header(tmp_path, byte, verdict):
    """High and control bytes cannot be in a header; NULs may be bytes not arrived yet (NFS)."""
    data = bytearray(tiny_raw())
    at = fitscheck.scan_bytes(bytes(data)).hdus[1].header_offset + 80 * 3 + 40
    data[at] = byte
    layout = scan(tmp_path, bytes(data))
    assert layout.verdict == verdict
    card = at - at % 80
    if verdict == "impossible":
        assert layout.problems == [
            f"header of HDU 1 has a non-ASCII byte 0x{byte:02x} in the card at byte {card}"
        ]
    else:
        assert layout.problems == [f"header of HDU 1 has NUL bytes at byte {card} (not written yet?)"]


def test_non_ascii_in_a_partial_header_is_found_before_the_end(tmp_path):
    data = bytearray(tiny_raw()[:2000])
    data[500] = 0xFF
    layout = scan(tmp_path, bytes(data))
    assert layout.impossible and "non-ASCII byte 0xff in the card at byte 480" in layout.reason


def test_header_without_end_is_bounded(tmp_path):
    """A header that never ends is refused after MAX_HEADER_BLOCKS blocks, not read on."""
    block = b"".join(f"COMMENT {i:<72}".encode() for i in range(36))
    head = b"SIMPLE  =                    T".ljust(80) + block[80:]
    data = head + block * (fitscheck.MAX_HEADER_BLOCKS + 5)
    layout = scan(tmp_path, data)
    assert layout.impossible
    assert layout.problems == [f"primary header has no END card within {fitscheck.MAX_HEADER_BLOCKS} blocks"]


def test_too_many_hdus_is_bounded(tmp_path):
    empty_ext = (
        b"XTENSION= 'IMAGE   '".ljust(80)
        + b"BITPIX  =                    8".ljust(80)
        + b"NAXIS   =                    0".ljust(80)
        + b"END".ljust(80)
    ).ljust(2880)
    data = tiny_raw() + empty_ext * (fitscheck.MAX_HDUS + 1)
    layout = scan(tmp_path, data)
    assert layout.impossible and layout.problems == [f"more than {fitscheck.MAX_HDUS} HDUs"]


def test_extension_without_xtension(tmp_path):
    data = tiny_raw()
    at = fitscheck.scan_bytes(data).hdus[3].header_offset
    data = data[:at] + b"SIMPLE  = " + data[at + 10 :]
    layout = scan(tmp_path, data)
    assert layout.impossible and layout.problems == ["HDU 3 does not start with XTENSION"]


def test_missing_file_is_incomplete_not_impossible(tmp_path):
    assert fitscheck.scan(tmp_path / "nope.fits").verdict is fitscheck.Verdict.INCOMPLETE


def test_reader_refuses_impossible_sizes_with_the_scan_reason(tmp_path):
    """The worker's reader walks with the same bounded scan, so it ends with the same reason."""
    from modsingest.fits import frame

    path = tmp_path / "f.fits"
    path.write_bytes(_set_card(tiny_raw(), 2, "NAXIS1", "-1"))
    with pytest.raises(frame.ReadError) as err:
        frame.read(path)
    assert str(err.value) == f"{path}: HDU 2 has a negative size: NAXIS1 = -1"


def test_amplifier_whose_size_is_not_its_shape_is_impossible(tmp_path):
    """An IMAGE extension is PCOUNT 0, GCOUNT 1; otherwise the reader would misplace the pixels."""
    # 2 x (96 x 48 + 10) bytes: still within the padding, so the walk goes on
    layout = scan(tmp_path, _set_card(tiny_raw(), 2, "PCOUNT", "10"))
    assert layout.impossible
    assert layout.problems == ["IM2 data size 9236 does not match its shape (PCOUNT/GCOUNT)"]
    # GCOUNT 0: no data at all, in a file that ends right after IM4's header
    data = tiny_raw(conpars=False)
    im4 = fitscheck.scan_bytes(data).hdus[4]
    layout = scan(tmp_path, _set_card(data, 4, "GCOUNT", "0")[: im4.data_offset])
    assert layout.impossible
    assert layout.problems == ["IM4 data size 0 does not match its shape (PCOUNT/GCOUNT)"]


@pytest.mark.parametrize("unwritten", [2880, 80, 5, 1])
def test_nul_bytes_where_the_primary_should_start_are_incomplete(tmp_path, unwritten):
    """NFS can show a file's new length before its bytes: NULs at the start are not there yet,
    so the file must stay incomplete (looked at again), never be reported impossible."""
    data = bytearray(tiny_raw())
    data[:unwritten] = bytes(unwritten)
    layout = scan(tmp_path, bytes(data))
    assert layout.verdict == "incomplete"
    assert layout.problems == ["primary header has NUL bytes at byte 0 (not written yet?)"]


@pytest.mark.parametrize("unwritten", [1, 3, 7])
def test_nul_bytes_where_an_extension_should_start_are_incomplete(tmp_path, unwritten):
    """The same for the next HDU, even when fewer than 8 of its bytes are visible."""
    data = tiny_raw(conpars=False)
    layout = scan(tmp_path, data + bytes(unwritten))
    assert layout.verdict == "incomplete"
    assert layout.problems == [f"header of HDU 5 has NUL bytes at byte {len(data)} (not written yet?)"]
