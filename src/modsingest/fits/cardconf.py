"""Read astropy.io.fits' per-card configuration once per process, not on every card access.

Why: ``astropy.io.fits.card`` looks up ``conf.strip_header_whitespace`` and
``conf.enable_record_valued_keyword_cards`` through astropy's configuration
system (a configobj walk) every time a card's value or comment is read or its
image checked: about 1,300 lookups per raw file, 11 ms of the 41 ms of CPU a
3k-ROI file costs (profiled; the values never change while the agent runs).

``freeze`` swaps the module's ``conf`` for a snapshot that asks astropy's real
configuration once per item and then answers from its own attributes, so a
site's ``astropy.cfg`` still counts, and an item this module has never seen is
still looked up (once).  Only ``astropy.io.fits.card`` is touched; a
``conf.set_temp`` after ``freeze`` would not reach card parsing, and nothing in
modsingest sets one.  The parsed and written bytes are the same (the recorded
fixtures are held byte for byte).
"""

from __future__ import annotations

from typing import Any


class ConfSnapshot:
    """Attributes of ``real`` read once each, then kept."""

    def __init__(self, real: Any):
        self._real = real

    def __getattr__(self, name: str) -> Any:  # only for attributes not yet kept
        value = getattr(self._real, name)
        setattr(self, name, value)
        return value


def freeze() -> None:
    """Install the snapshot in ``astropy.io.fits.card`` (idempotent)."""
    from astropy.io.fits import card

    if not isinstance(card.conf, ConfSnapshot):
        card.conf = ConfSnapshot(card.conf)
