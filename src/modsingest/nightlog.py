"""The night log: one row per delivered file, as the observers' ``modsLog`` writes it.

Today ``modsLog CCYYMMDD`` is run by hand after the night: it globs the
repository and writes ``<logdir>/<CCYYMMDD>_mods.txt``, rows in glob order, with
DATE-OBS cut to tenths of a second.  Here the log is kept up to date on every
delivery (service, ``replay``, ``process``): the worker takes the values from the
header it delivered (``fields_from_header``), the ledger stores them
(``Ledger.record_log``), and the night's file is rewritten atomically from the
ledger, rows in DATE-OBS order.  ``modsingest nightlog`` prints the same from the
ledger, in txt, csv or json.

Pure Python, no numpy or astropy: the service's main process formats and writes
the log.  A header is anything with ``get`` (an astropy ``Header`` in the worker).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: (heading, keyword, width, number format or None): the observers' current log.
#: DATE-OBS is 23 wide (today's 21 cut the milliseconds to tenths).
COLUMNS: tuple[tuple[str, str, int, str | None], ...] = (
    ("ProjectID", "PROPID", 20, None),
    ("Chan", "CHANNEL", 4, None),
    ("ImgTyp", "IMAGETYP", 7, None),
    ("Object", "OBJECT", 40, None),
    ("RA", "TELRA", 11, None),
    ("Dec", "TELDEC", 11, None),
    ("PA", "POSANGLE", 6, ".1f"),
    ("Exp", "EXPTIME", 6, ".1f"),
    ("UTCDate/Time", "DATE-OBS", 23, None),
    ("SecZ", "AIRMASS", 5, ".2f"),
    ("SlitMask", "MASKNAME", 12, None),
    ("Mode", "DICHNAME", 4, None),
    ("Grat", "GRATNAME", 5, None),
    ("Filter", "FILTNAME", 7, None),
    ("Filename", "FILENAME", 25, None),
)
#: the extra header values csv and json carry
EXTRA_KEYWORDS = ("UNIQNAME", "MSIVER")
KEYWORDS = tuple(c[1] for c in COLUMNS) + EXTRA_KEYWORDS
FORMATS = ("txt", "csv", "json")


@dataclass(frozen=True)
class Entry:
    """One delivered file's line: header values at delivery time and the file's identity."""

    night: str  # the processed night directory, CCYYMMDD
    name: str  # the delivered name
    fields: dict[str, str | float | int | None]  # KEYWORDS -> value (None: absent)
    size: int | None = None  # bytes of the delivered file
    sha256: str | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def date_obs(self) -> str:
        return str(self.fields.get("DATE-OBS") or "")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["warnings"] = list(self.warnings)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Entry:
        return cls(
            night=str(data["night"]),
            name=str(data["name"]),
            fields=dict(data.get("fields") or {}),
            size=data.get("size"),
            sha256=data.get("sha256"),
            warnings=tuple(data.get("warnings") or ()),
        )


def _plain(value) -> str | float | int | None:
    """A header value as JSON-able data: numbers stay numbers, the rest text."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, (int, float)):
        return value
    text = str(value).strip()
    return text


def fields_from_header(header, name: str) -> dict[str, str | float | int | None]:
    """The log's keywords from the delivered primary header (FILENAME: else the delivered name)."""
    fields = {key: _plain(header.get(key)) for key in KEYWORDS}
    if not fields.get("FILENAME"):
        fields["FILENAME"] = name
    return fields


def order(entries: list[Entry]) -> list[Entry]:
    """DATE-OBS order (a file without one last), then by name."""
    return sorted(entries, key=lambda e: (e.date_obs == "", e.date_obs, e.name))


# --------------------------------------------------------------------------- txt
def _cell(value, width: int, number: str | None) -> str:
    if value is None or value == "":
        return " " * width
    if number is not None:
        try:
            text = format(float(value), f"{width}{number}")
        except (TypeError, ValueError):
            text = str(value)
        if len(text) > width:  # never wider than the column: fewer decimals, then a mark
            try:
                text = format(float(value), f"{width}.0f")
            except (TypeError, ValueError):
                pass
        return text[:width] if len(text) <= width else "*" * width
    return f"{str(value):<{width}.{width}}"


def heading() -> str:
    return " ".join(f"{h:<{w}.{w}}" for h, _, w, _ in COLUMNS) + " "


def row(entry: Entry) -> str:
    """One fixed-width row: every field cut to its width and followed by one space."""
    return "".join(_cell(entry.fields.get(k), w, n) + " " for _, k, w, n in COLUMNS)


def to_txt(entries: list[Entry]) -> str:
    """The log file: the heading line, then one row per file in DATE-OBS order."""
    lines = [heading()] + [row(e) for e in order(entries)]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- csv, json
def _record(entry: Entry) -> dict:
    record: dict = {"night": entry.night, "delivered_as": entry.name}
    for heading_, key, _, _ in COLUMNS:
        record[heading_] = entry.fields.get(key)
    record["UNIQNAME"] = entry.fields.get("UNIQNAME")
    record["MSIVER"] = entry.fields.get("MSIVER")
    record["size"] = entry.size
    record["sha256"] = entry.sha256
    record["warnings"] = list(entry.warnings)
    return record


def to_json(entries: list[Entry]) -> str:
    return json.dumps([_record(e) for e in order(entries)], indent=1) + "\n"


def to_csv(entries: list[Entry]) -> str:
    buf = io.StringIO()
    records = [_record(e) for e in order(entries)]
    names = list(_record(Entry("", "", {})).keys())
    writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for record in records:
        record["warnings"] = " | ".join(record["warnings"])
        writer.writerow({k: "" if v is None else v for k, v in record.items()})
    return buf.getvalue()


def render(entries: list[Entry], fmt: str) -> str:
    if fmt == "txt":
        return to_txt(entries)
    if fmt == "csv":
        return to_csv(entries)
    if fmt == "json":
        return to_json(entries)
    raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")


# --------------------------------------------------------------------------- the file
def log_path(directory: Path, night: str) -> Path:
    return Path(directory) / f"{night}_mods.txt"


def rewrite(directory: Path, night: str, entries: list[Entry]) -> Path:
    """Write the night's log atomically (temporary file, fsync, rename)."""
    from modsingest.fsutil import atomic_write

    final = log_path(directory, night)
    atomic_write(Path(directory), final.name, [to_txt(entries).encode("utf-8")])
    return final


def update(ledger, directory: Path | None, entry: Entry) -> Path | None:
    """Record ``entry`` in the ledger, then rewrite its night's log file (when configured).

    Called once per delivery by the service's dispatcher and by ``process``.
    The caller treats an error here as a warning: the file is delivered already.
    """
    ledger.record_log(entry)
    if directory is None:
        return None
    return rewrite(directory, entry.night, ledger.log_entries([entry.night]))
