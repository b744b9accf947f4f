"""The keyword dictionary: the archive's and the on-site readers' header rules as data.

Why data: the rules (which keywords must exist, their types, comments, blank
values, allowed values, case) change with the archive and the readers, not with
modsingest's code.  The shipped ``keywords.yaml`` encodes processing.md's
archive rules and clients.md's needs; a site can override it in the
configuration (``archive.dictionary``).  The archive step applies it and
``modsingest check`` holds files to it, so the two can never disagree.

This module is pure Python (ruamel only): the service's main process validates
an overriding dictionary at start, and must not import numpy or astropy.  A
missing or wrong entry is a ``ConfigError`` naming the file, the line and the key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

SHIPPED = Path(__file__).with_name("keywords.yaml")

TYPES = ("string", "float", "int", "logical", "degrees")
PRESENCE = ("required", "default", "computed", "expected", "optional", "removed")
HDUS = ("primary", "merged", "amps")
FIELDS = ("type", "comment", "presence", "blank", "default", "allowed", "pattern", "upper", "after", "hdus")

#: Entries the archive step's rules cannot work without: keyword -> (why, required type or None).
NEEDED_BY_RULES: dict[str, tuple[str, str | None]] = {
    "TELALT": ("rule 2 of the archive step reads it", "degrees"),
    "ZD": ("rule 2 of the archive step writes it", "float"),
    "LBTWLINK": ("rule 3 of the archive step writes it", "string"),
    "OBJNAME": ("rule 4 of the archive step writes it", "string"),
    "UNIQNAME": ("rule 10 of the archive step writes it", "string"),
    "INSTRUME": ("rule 10 of the archive step reads it", "string"),
}

#: Which presences the archive step writes a card for (and so needs a comment).
_WRITTEN = ("required", "default", "computed")


class DictionaryError(Exception):
    """A dictionary problem; one line ``file:line: key: problem`` (config.py makes it a ConfigError)."""


@dataclass(frozen=True)
class Keyword:
    name: str
    type: str | None
    comment: str
    presence: str
    blank: Any
    default: Any = None
    allowed: tuple[Any, ...] | None = None
    pattern: str | None = None
    upper: bool = False
    after: tuple[str, ...] = ()
    hdus: tuple[str, ...] = ("primary",)

    def problems(self, value: Any, blank_ok: bool = True) -> list[str]:
        """What is wrong with ``value`` for this keyword ([] when it conforms)."""
        if blank_ok and value == self.blank and type(value) is type(self.blank):
            return []
        if self.type is not None and not type_ok(self.type, value):
            return [f"{value!r} is not {_ARTICLE[self.type]}"]
        out = []
        if self.allowed is not None and value not in self.allowed:
            out.append(f"{value!r} is not one of {', '.join(map(str, self.allowed))}")
        if self.pattern is not None and isinstance(value, str) and not re.fullmatch(self.pattern, value):
            out.append(f"{value!r} does not match {self.pattern}")
        if self.upper and isinstance(value, str) and value != value.upper():
            out.append(f"{value!r} is not upper case")
        return out


_ARTICLE = {
    "string": "a string",
    "float": "a number",
    "int": "an integer",
    "logical": "a logical (T/F)",
    "degrees": "decimal degrees",
}


def type_ok(kind: str, value: Any) -> bool:
    """Does ``value`` (as astropy reads a card) have the dictionary type ``kind``?"""
    if kind == "string":
        return isinstance(value, str)
    if kind == "logical":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    # float and degrees: a FITS real; an integer value is a real number too
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class KeywordDictionary:
    source: Path
    blank: Any
    no_blank_strings: tuple[str, ...]
    keywords: Mapping[str, Keyword] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Keyword:
        return self.keywords[name]

    def __contains__(self, name: object) -> bool:
        return name in self.keywords

    def where(
        self, presence: str | None = None, type: str | None = None, hdu: str = "primary"
    ) -> list[Keyword]:
        """Entries for ``hdu`` with that presence and/or type, in the file's order."""
        return [
            k
            for k in self.keywords.values()
            if hdu in k.hdus
            and (presence is None or k.presence == presence)
            and (type is None or k.type == type)
        ]


@cache
def shipped() -> KeywordDictionary:
    """The dictionary shipped with modsingest (read once per process)."""
    return load(SHIPPED)


def load(path: str | Path) -> KeywordDictionary:
    source = Path(path)
    try:
        text = source.read_text()
    except OSError as exc:
        raise DictionaryError(f"{source}: cannot read the keyword dictionary: {exc.strerror or exc}") from exc
    return loads(text, source)


def _line(node: Any, key: Any) -> int | str:
    try:
        if isinstance(node, CommentedMap):
            return node.lc.key(key)[0] + 1
        if isinstance(node, CommentedSeq):
            return node.lc.item(key)[0] + 1
    except (KeyError, IndexError, TypeError, AttributeError):
        pass
    line = getattr(getattr(node, "lc", None), "line", None)
    return line + 1 if isinstance(line, int) else "?"


def loads(text: str, source: str | Path = "<dictionary>") -> KeywordDictionary:
    """Parse and validate a dictionary; ``DictionaryError`` ``file:line: key: problem`` on any fault."""
    source = Path(source)

    def fail(node: Any, key: Any, dotted: str, problem: str) -> DictionaryError:
        return DictionaryError(f"{source}:{_line(node, key)}: {dotted}: {problem}")

    try:
        doc = YAML(typ="rt").load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else "?"
        raise DictionaryError(f"{source}:{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(doc, CommentedMap):
        raise DictionaryError(f"{source}:1: the keyword dictionary must be a mapping with 'keywords'")
    for key in doc:
        if key not in ("blank", "no_blank_strings", "keywords"):
            raise fail(doc, key, str(key), "unknown key (known: blank, keywords, no_blank_strings)")
    if not isinstance(doc.get("keywords"), CommentedMap) or not doc["keywords"]:
        raise fail(doc, "keywords", "keywords", "missing or not a mapping of keyword entries")
    blank = _plain(doc.get("blank", "None"))
    if not isinstance(blank, str):
        raise fail(doc, "blank", "blank", f"{blank!r} is not a string")
    no_blank = doc.get("no_blank_strings", [])
    if not isinstance(no_blank, list) or any(h not in HDUS for h in no_blank):
        raise fail(doc, "no_blank_strings", "no_blank_strings", f"must be a list of {', '.join(HDUS)}")
    node = doc["keywords"]
    entries: dict[str, Keyword] = {}
    for name in node:
        entries[str(name)] = _entry(node, name, blank, fail)
    for name, (why, kind) in NEEDED_BY_RULES.items():
        if name not in entries:
            raise fail(doc, "keywords", f"keywords.{name}", f"missing ({why})")
        if kind is not None and entries[name].type != kind:
            raise fail(node, name, f"keywords.{name}.type", f"must be {kind} ({why})")
    return KeywordDictionary(source, blank, tuple(no_blank), entries)


def _entry(node: CommentedMap, name: Any, blank: str, fail) -> Keyword:
    dotted = f"keywords.{name}"
    if not isinstance(name, str) or not re.fullmatch(r"[A-Z0-9_-]{1,8}", name):
        raise fail(node, name, dotted, "not a FITS keyword (1-8 of A-Z 0-9 - _)")
    entry = node[name]
    if not isinstance(entry, CommentedMap):
        raise fail(node, name, dotted, "must be a mapping (type, comment, presence, ...)")
    for key in entry:
        if key not in FIELDS:
            raise fail(entry, key, f"{dotted}.{key}", f"unknown field (known: {', '.join(FIELDS)})")
    presence = entry.get("presence")
    if presence not in PRESENCE:
        where = (entry, "presence") if "presence" in entry else (node, name)
        raise fail(*where, f"{dotted}.presence", f"{presence!r} is not one of {', '.join(PRESENCE)}")
    kind = entry.get("type")
    if presence != "removed" and kind not in TYPES:
        where = (entry, "type") if "type" in entry else (node, name)
        raise fail(*where, f"{dotted}.type", f"{kind!r} is not one of {', '.join(TYPES)}")
    comment = entry.get("comment", "")
    if not isinstance(comment, str) or (presence in _WRITTEN and not comment.strip()):
        where = (entry, "comment") if "comment" in entry else (node, name)
        raise fail(*where, f"{dotted}.comment", "missing or not a string (the archive step writes this card)")
    value_blank, default, allowed, pattern = _values(entry, dotted, kind, presence, blank, node, name, fail)
    upper = entry.get("upper", False)
    if not isinstance(upper, bool):
        raise fail(entry, "upper", f"{dotted}.upper", f"{upper!r} is not true or false")
    return Keyword(
        name=name,
        type=kind,
        comment=comment.strip(),
        presence=presence,
        blank=value_blank,
        default=default,
        allowed=allowed,
        pattern=pattern,
        upper=upper,
        after=_names(entry, "after", dotted, fail, ()),
        hdus=_names(entry, "hdus", dotted, fail, ("primary",), HDUS),
    )


def _plain(value: Any) -> Any:
    """A YAML scalar as the plain Python value astropy would hold (ruamel's ScalarFloat is not a float card)."""
    if isinstance(value, bool) or value is None:
        return value
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value


def _values(entry: CommentedMap, dotted: str, kind, presence, blank, node, name, fail) -> tuple:
    """(blank, default, allowed, pattern) of one entry, each checked against the entry's type."""
    value_blank = _plain(entry.get("blank", blank))
    if kind is not None and not isinstance(value_blank, str) and not type_ok(kind, value_blank):
        raise fail(entry, "blank", f"{dotted}.blank", f"{value_blank!r} is not {_ARTICLE[kind]}")
    default = _plain(entry.get("default"))
    if presence == "default":
        if "default" not in entry:
            raise fail(node, name, f"{dotted}.default", "missing (presence: default needs a value)")
        if not type_ok(kind, default):
            raise fail(entry, "default", f"{dotted}.default", f"{default!r} is not {_ARTICLE[kind]}")
    elif "default" in entry:
        raise fail(entry, "default", f"{dotted}.default", "only for presence: default")
    allowed = entry.get("allowed")
    if allowed is not None:
        if not isinstance(allowed, list) or not allowed:
            raise fail(entry, "allowed", f"{dotted}.allowed", "must be a non-empty list")
        for i, item in enumerate(allowed):
            if kind is not None and not type_ok(kind, item):
                raise fail(allowed, i, f"{dotted}.allowed[{i}]", f"{item!r} is not {_ARTICLE[kind]}")
        allowed = tuple(_plain(a) for a in allowed)
    pattern = entry.get("pattern")
    if pattern is not None:
        try:
            re.compile(str(pattern))
        except re.error as exc:
            raise fail(entry, "pattern", f"{dotted}.pattern", f"not a regular expression: {exc}") from None
        pattern = str(pattern)
    return value_blank, default, allowed, pattern


def _names(
    entry: CommentedMap, key: str, dotted: str, fail, default: tuple, known: Iterable[str] = ()
) -> tuple:
    if key not in entry:
        return default
    value = entry[key]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise fail(entry, key, f"{dotted}.{key}", "must be a list of names")
    known = tuple(known)
    for i, item in enumerate(value):
        if known and item not in known:
            raise fail(value, i, f"{dotted}.{key}[{i}]", f"{item!r} is not one of {', '.join(known)}")
    return tuple(value)
