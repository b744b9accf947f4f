"""Processing a processed file again gives the same file (processing.md 'Idempotence').

Only the processing timestamp (MSIDATE) and the checksums that cover it may differ.
"""

import shutil

import numpy as np
from astropy.io import fits

from conftest import tiny_raw
from modsingest.cli import main

VOLATILE = {"MSIDATE", "CHECKSUM"}


def cards(header):
    return [(c.keyword, str(c.value), c.comment) for c in header.cards if c.keyword not in VOLATILE]


def process(layout, path):
    assert main(["process", "--config", str(layout["config"]), str(path)]) == 0


def test_processing_a_processed_file_gives_the_same_file(layout, tmp_path):
    raw = layout["raw"] / "mods1b.20260102.0001.fits"
    raw.write_bytes(
        tiny_raw(
            primary_cards={
                "TELRA": "05:35:17.3",
                "TELDEC": "-05:23:28",
                "LBTWLINK": "1",
                "IMAGETYP": "object",
                "UTC-OBS": "23:59:59.1000",
                "DATE-OBS": "2025-12-31",
                "NSTYPE": "",
                "TELALT": "+45:30:00",
                "NONSIDER": 0,
            }
        )
    )
    process(layout, raw)
    first = layout["newdata"] / raw.name
    again = tmp_path / "again" / raw.name
    again.parent.mkdir()
    shutil.copy(first, again)
    process(layout, again)
    with fits.open(first) as a_hdul, fits.open(layout["newdata"] / raw.name) as b_hdul:
        assert len(a_hdul) == len(b_hdul) == 7  # MERGED replaced, not appended
        for a, b in zip(a_hdul, b_hdul):
            assert cards(a.header) == cards(b.header), a.name
            if a.data is not None:
                np.testing.assert_array_equal(a.data, b.data)
        p = b_hdul[0].header
        assert p["DATE-OBS"] == "2026-01-01T00:00:00.000"  # the .1000 carry, applied once
        assert p["LBTWLINK"] == "Up" and p["UNIQNAME"] == "mods1b.20260101.000000.fits"
        assert p["NONSIDER"] is False and p["NSTYPE"] == "None" and p["TELALT"] == 45.5
