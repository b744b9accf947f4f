"""Logging to standard output, one line per event, for journald.

No timestamps in the line when running under systemd (journald adds its own);
timestamps otherwise, so a terminal run is readable too.

Every message is passed through ``safe`` before it is written: file names come
from raw directories anyone on the instrument network can write to, and UDP
datagrams from anyone at all.  A newline in a name would otherwise let it forge
a ``delivered`` line of its own, and an escape sequence would reach the terminal
of whoever reads the journal.  Tracebacks (``exc_info``) keep their lines.
"""

from __future__ import annotations

import logging
import os
import sys

#: kept as they are: everything ``str.isprintable`` (which counts the blank), nothing else
_PLAIN = {" "}


def safe(text: object, limit: int | None = None) -> str:
    r"""``text`` fit for one log line: control and other unprintable characters escaped.

    ``\n`` ``\r`` ``\t`` and the backslash itself become their usual escapes, other
    control and format characters (C0, DEL, C1, U+2028, bidi overrides) ``\xHH`` /
    ``\uHHHH``, and the bytes of a name that is not UTF-8 (``os.fsdecode``'s lone
    surrogates) ``\xHH`` again.  Printable non-ASCII letters are kept.  ``limit``
    cuts long text (with "...") before escaping, so a 64 kB datagram stays short.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    text = str(text)
    cut = limit is not None and len(text) > limit
    if cut:
        text = text[:limit]
    if text.isprintable() and "\\" not in text:  # the usual case, at C speed
        return text + ("..." if cut else "")
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch in _PLAIN or ch.isprintable():  # not printable: Cc, Cf, Cs, Co, Cn, Zl, Zp
            out.append(ch)
        elif ch in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif 0xDC80 <= ord(ch) <= 0xDCFF:
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return "".join(out) + ("..." if cut else "")


class SafeFormatter(logging.Formatter):
    """Escapes each message with ``safe``; the traceback after it keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = safe(record.message)
        return super().formatMessage(record)


def setup_logging(level: str = "info") -> None:
    under_journald = bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))
    fmt = (
        "%(levelname)s %(name)s: %(message)s"
        if under_journald
        else ("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(SafeFormatter(fmt))
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
