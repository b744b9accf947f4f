"""One log line per event, whatever a file name or a datagram holds (``logsetup.safe``)."""

from __future__ import annotations

import io
import logging
import os

import pytest

from modsingest.logsetup import SafeFormatter, safe


@pytest.mark.parametrize(
    "text, shown",
    [
        ("mods1b.20260102.0001.fits", "mods1b.20260102.0001.fits"),
        ("with blanks and café", "with blanks and café"),
        (
            "a.fits\nINFO modsingest.dispatch: delivered b.fits",
            "a.fits\\nINFO modsingest.dispatch: delivered b.fits",
        ),
        ("cr\rtab\tesc\x1b[31mdel\x7f", "cr\\rtab\\tesc\\x1b[31mdel\\x7f"),
        ("c1\x85 ls\u2028 rlo\u202e", "c1\\x85 ls\\u2028 rlo\\u202e"),
        (os.fsdecode(b"not-utf8-\xff.fits"), "not-utf8-\\xff.fits"),
        (b"\xff\x00proc", "\\xff\\x00proc"),
        ("back\\slash\\n", "back\\\\slash\\\\n"),  # a literal backslash-n is not a newline
    ],
)
def test_safe_escapes_what_could_break_or_forge_a_line(text, shown):
    assert safe(text) == shown


def test_safe_cuts_long_text_before_escaping():
    assert safe("x" * 100, 8) == "xxxxxxxx..."
    assert safe("\n" * 100, 3) == "\\n\\n\\n..."
    assert safe("short", 8) == "short"


def test_the_formatter_escapes_messages_and_keeps_tracebacks():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(SafeFormatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("test.logsetup")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("INCOMPLETE %s: %s", "/raw/x.fits\nINFO forged", "cut\x1b[2J")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.error("worker: %s raised", "y\n.fits", exc_info=True)
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "WARNING test.logsetup: INCOMPLETE /raw/x.fits\\nINFO forged: cut\\x1b[2J"
    assert lines[1] == "ERROR test.logsetup: worker: y\\n.fits raised"
    assert lines[2] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: boom"
