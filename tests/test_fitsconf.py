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


def test_cards_parse_and_format_the_same_after_freeze(monkeypatch):
    """Each card as astropy's own configuration reads it, and as the snapshot does.

    (Both readings are taken here: comparing two readings made after ``freeze``
    could never show a difference.)
    """
    images = [
        "OBJECT  = 'M42     '           / target",
        "DP1     = 'AXIS.1: 1'",
        "HISTORY a history line",
        "TELALT  =     45.5 / deg",
        "COMMENT   spaces kept?   ",
    ]

    def read_all():
        cards = [fits.Card.fromstring(image) for image in images]
        return [(c.image, c.keyword, c.value, c.comment) for c in cards]

    fitsconf.freeze()
    frozen = card_module.conf
    monkeypatch.setattr(card_module, "conf", frozen._real)  # astropy's own configuration
    before = read_all()
    monkeypatch.setattr(card_module, "conf", fitsconf.ConfSnapshot(frozen._real))  # a fresh snapshot
    assert read_all() == before
    assert before[1][1] == "DP1.AXIS.1"  # the record-valued card was read as one
    rvkc = fits.Card.fromstring("DP1     = 'AXIS.1: 1'")
    assert rvkc.keyword == "DP1.AXIS.1" and rvkc.value == 1.0  # record-valued cards still on
