"""modsingest.fitsconf: astropy.io.fits' card configuration read once, same answers."""

from __future__ import annotations

from astropy.io import fits
from astropy.io.fits import card as card_module

from modsingest.fits import cardconf as fitsconf


class Counting:
    def __init__(self):
        self.reads = 0

    @property
    def strip_header_whitespace(self):
        self.reads += 1
        return True


def test_each_item_is_read_once_and_then_kept():
    real = Counting()
    snap = fitsconf.ConfSnapshot(real)
    assert [snap.strip_header_whitespace for _ in range(5)] == [True] * 5
    assert real.reads == 1


def test_freeze_keeps_astropys_values_and_is_idempotent():
    fitsconf.freeze()
    fitsconf.freeze()
    assert isinstance(card_module.conf, fitsconf.ConfSnapshot)
    real = card_module.conf._real
    assert not isinstance(real, fitsconf.ConfSnapshot)
    for name in ("strip_header_whitespace", "enable_record_valued_keyword_cards"):
        assert getattr(card_module.conf, name) == getattr(real, name)


def test_cards_parse_and_format_the_same_after_freeze():
    images = [
        "OBJECT  = 'M42     '           / target",
        "DP1     = 'AXIS.1: 1'",
        "HISTORY a history line",
        "TELALT  =     45.5 / deg",
    ]
    fitsconf.freeze()
    for image in images:
        card = fits.Card.fromstring(image)
        assert card.image == fits.Card.fromstring(image).image
        assert card.image.rstrip() == image.rstrip() or card.keyword == "DP1"
    rvkc = fits.Card.fromstring("DP1     = 'AXIS.1: 1'")
    assert rvkc.keyword == "DP1.AXIS.1" and rvkc.value == 1.0  # record-valued cards still on
