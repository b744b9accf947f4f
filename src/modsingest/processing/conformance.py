"""Holding a file's headers to the keyword dictionary (``modsingest check``).

The archive step writes headers by the dictionary; this module reads them back
against the same dictionary, so "what the archive step writes" and "what check
accepts" are one definition.  It works on raw and processed files alike: a raw
file simply reports what the archive step would have to fix, and the HDUs an
entry names that a file does not have (MERGED in a raw file) are not checked.

Only headers are read (the structural walk gives their offsets), never data.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

from modsingest.fits import scan
from modsingest.keywords import KeywordDictionary
from modsingest.processing.headerval import is_blank

#: Cards with free text rather than a value.
_COMMENTARY = {"COMMENT", "HISTORY", ""}


@dataclass(frozen=True)
class Problem:
    hdu: str | None  # 'primary', 'MERGED', 'IM1'...; None for the file as a whole
    keyword: str | None
    problem: str

    def line(self) -> str:
        where = " ".join(p for p in (f"[{self.hdu}]" if self.hdu else "", self.keyword or "") if p)
        return f"{where}: {self.problem}" if where else self.problem


@dataclass(frozen=True)
class Report:
    path: str
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {"file": self.path, "ok": self.ok, "problems": [asdict(p) for p in self.problems]}


def headers(path: str | os.PathLike) -> tuple[dict[str, list[tuple[str, fits.Header]]], list[str]]:
    """({'primary'|'merged'|'amps': [(hdu name, header)]}, problems reading the file)."""
    layout = scan.scan(path)
    problems = [p for p in layout.problems if "CONPARS" not in p]
    groups: dict[str, list[tuple[str, fits.Header]]] = {"primary": [], "merged": [], "amps": []}
    if not layout.hdus:
        return groups, problems or ["no FITS header found"]
    with open(path, "rb") as fh:
        for info in layout.hdus:
            fh.seek(info.header_offset)
            raw = fh.read(info.header_nbytes).decode("ascii", "replace")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", AstropyUserWarning)
                    header = fits.Header.fromstring(raw)
            except Exception as exc:
                problems.append(f"header of HDU {info.index} unreadable: {exc}")
                continue
            if info.index == 0:
                groups["primary"].append(("primary", header))
            elif info.extname == "MERGED":
                groups["merged"].append(("MERGED", header))
            elif info.xtension == "IMAGE" and 1 <= info.index <= 4:
                groups["amps"].append((info.extname or f"HDU{info.index}", header))
    return groups, problems


def check_header(header: fits.Header, hdu_group: str, hdu_name: str, kd: KeywordDictionary) -> list[Problem]:
    """What in ``header`` (an HDU of kind ``hdu_group``) does not conform to ``kd``."""
    out: list[Problem] = []
    for entry in kd.where(hdu=hdu_group):
        present = entry.name in header
        if entry.presence == "removed":
            if present:
                out.append(Problem(hdu_name, entry.name, "must not be present"))
            continue
        if not present:
            if entry.presence != "optional":
                out.append(Problem(hdu_name, entry.name, f"missing ({entry.presence})"))
            continue
        for problem in entry.problems(header[entry.name]):
            out.append(Problem(hdu_name, entry.name, problem))
    if hdu_group in kd.no_blank_strings:
        for card in header.cards:
            if card.keyword not in _COMMENTARY and is_blank(card.value):
                out.append(Problem(hdu_name, card.keyword, f"blank string value (use {kd.blank!r})"))
    return out


def check_file(path: str | os.PathLike, kd: KeywordDictionary) -> Report:
    """Every non-conformance of the file at ``path``; a file that cannot be read is one problem."""
    name = os.fspath(path)
    if not Path(name).is_file():
        return Report(name, (Problem(None, None, "no such file"),))
    try:
        groups, read_problems = headers(name)
    except OSError as exc:
        return Report(name, (Problem(None, None, f"cannot read: {exc.strerror or exc}"),))
    problems = [Problem(None, None, p) for p in read_problems]
    for group, items in groups.items():
        for hdu_name, header in items:
            problems.extend(check_header(header, group, hdu_name, kd))
    return Report(name, tuple(problems))
