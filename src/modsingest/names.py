"""Raw-file names: the one home of every rule read from a raw file's name.

azcam names a file ``root + NNNN + '.fits'`` (a 4-digit sequence number).  The
standard root is ``<chan>.<CCYYMMDD>.``, so a standard name reads
``mods2r.20251210.0009.fits``; observers may set any other root
(``m1bTest.0001.fits``) and such files must still be processed (raw-format.md,
"Names").  The service's main process imports this module, so it uses the
standard library only.

The night of a name.  A name carries a night only in azcam's standard shape: a
root ending in ``.CCYYMMDD.`` followed by the sequence number and ``.fits``
(``\\.CCYYMMDD\\.<digits>\\.fits$``, any case), and only if the eight digits are a
calendar date.  Two rules used to disagree here: the ledger's (this one) and
publish's, which took any ``.<8 digits>.`` anywhere in the name.  The looser rule
is wrong for user roots: in ``m1bTest.20260102.fits`` the eight digits stand where
azcam writes the sequence number (root ``m1bTest.2026``, number ``0102``), so they
say nothing about the night.  Such a file, like any name without a tag, belongs to
the observing night of when it was taken (the ledger: when it was first seen;
publish: DATE-OBS).  A tag that is not a date (``mods1b.20261340.0001.fits``) is no
tag either, so it can never become a processed/<night>/ folder named after it.

The observing night of a moment is the UTC date of (moment + 5 h): from local
noon to 17:00 MST (UTC-7, no daylight saving) the coming night's date, so
afternoon calibrations carry the tag of the night they belong to.  azcam fixes
its tag when its server starts, so a name's tag can be older than the night.

The channel of a name is read from its first six characters
(``mods1bTest.0001.fits`` -> MODS1B): a user root that starts with a channel's
root still says which controller wrote it.  Channels are spelled in upper case
as INSTRUME spells them (``CHANNELS``); the lower-case roots are ``ROOTS``.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

#: the four MODS Archon channels, as INSTRUME spells them
CHANNELS = ("MODS1B", "MODS1R", "MODS2B", "MODS2R")
#: the same channels as file-name roots and directory names spell them
ROOTS = tuple(channel.lower() for channel in CHANNELS)
#: the suffix of every raw file azcam writes
SUFFIX = ".fits"
#: observing night = UTC date of (moment + this)
NIGHT_OFFSET = timedelta(hours=5)

_NAME_NIGHT = re.compile(r"\.(\d{8})\.\d+\.fits$", re.IGNORECASE)


def is_candidate(name: str) -> bool:
    """A visible ``*.fits`` base name: what azcam writes, whatever the root.

    Hidden names are never candidates: the service's own temporary files are
    hidden, and astropy's update-mode temporary (``tmpXXXXXXXX``) has no suffix.
    """
    return not name.startswith(".") and name.lower().endswith(SUFFIX) and len(name) > len(SUFFIX)


def name_night(name: str) -> str | None:
    """The CCYYMMDD date tag of a standard raw name, None for any other name.

    See the module docstring for why ``m1bTest.20260102.fits`` has none.
    """
    m = _NAME_NIGHT.search(name)
    if m is None:
        return None
    tag = m.group(1)
    try:
        date(int(tag[:4]), int(tag[4:6]), int(tag[6:]))
    except ValueError:
        return None
    return tag


def observing_night(when: float | datetime) -> str:
    """CCYYMMDD of the observing night at ``when`` (Unix time, or a datetime; naive = UTC)."""
    if isinstance(when, datetime):
        stamp = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
        stamp = stamp.astimezone(UTC)
    else:
        stamp = datetime.fromtimestamp(when, UTC)
    return (stamp + NIGHT_OFFSET).strftime("%Y%m%d")


def night_of(name: str, when: float | datetime) -> str:
    """The night a raw file belongs to: its name's date tag, else the observing night of ``when``."""
    return name_night(name) or observing_night(when)


def channel(word: object) -> str | None:
    """The channel a word names (an INSTRUME value, a metric label), any case and padding; else None."""
    if not isinstance(word, str):
        return None
    upper = word.strip().upper()
    return upper if upper in CHANNELS else None


def channel_of_name(name: str) -> str | None:
    """The channel a raw file name starts with (``mods2r.20251210.0009.fits`` -> MODS2R), else None."""
    prefix = name[:6].upper()
    return prefix if prefix in CHANNELS else None


def unpublishable(name: str) -> str | None:
    """Why a raw name cannot be published, or None when it can.

    A delivered file is named in ``<CHAN>.new``, one line of ASCII that the
    observers' tools read, and in the log.  A name with a byte outside
    printable ASCII (an accented letter, a byte that is not UTF-8, a newline
    or another control character) cannot be written there faithfully, so it is
    refused before anything is written; the file stays in the raw directory,
    reported as failed with this reason, and is delivered once renamed.
    azcam's own names (root + number + ``.fits``) are always ASCII.
    """
    bad = sorted({ch for ch in name if not " " <= ch <= "~"})
    if not bad:
        return None
    shown = ", ".join(repr(ch) if ch.isprintable() else ascii(ch) for ch in bad[:3])
    return f"name is not printable ASCII ({shown}): it cannot be named in <CHAN>.new; rename the raw file"


def shown(text: str) -> str:
    """``text`` with every character outside printable ASCII escaped (``\\n``, ``\\xe9``, ``\\udcff``).

    For a path in a one-line message: a newline in a name must not split the
    line, and a byte that is not UTF-8 must not make printing it fail.
    """
    return "".join(ch if " " <= ch <= "~" else ascii(ch)[1:-1] for ch in text)
