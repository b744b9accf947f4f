"""Loading and validating the YAML configuration into typed settings.

Why so strict: the incumbent read ``N`` as a non-empty string and so as *yes*,
and ignored misspelt keys.  Here every key is known, every value is checked for
its type, every error names the file, the line and the key, and booleans accept
the spellings people actually write (true/false, yes/no, on/off, Y/N).

Two ways to load: ``load(path)`` is what ``watch``, ``process`` and ``replay``
use, and it refuses a configuration whose directories are missing;
``load(path, require_dirs=False)`` is for commands that must work during an
outage (``status``, ``check-config``): every check on the text runs, and the
directories are reported by ``check_directories`` as problems instead.  What
``watch`` would find wrong at start, ``check_all`` finds without starting it.

Numbers are YAML numbers (not strings, not booleans), finite and within a range
that can work: ``settle: .nan`` once delivered nothing, silently.

Steps: a *mapping* lists only changes from the default order
(``steps: {merged: no}`` switches MERGED off and keeps the rest); a *list* is
the complete order and must name every default step, switched off ones as
``name: no``, so leaving one out by mistake is an error, not a silent switch-off.
"""

from __future__ import annotations

import errno
import importlib.util
import math
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from modsingest.keywords import DictionaryError, KeywordDictionary

DEFAULT_STEPS = ("geometry", "timestamps", "temperatures", "archive", "merged")
STEPS_ENTRY_POINTS = "modsingest.steps"
#: More worker processes than this is a typo, not a plan: each holds about 200 MB
#: and there are four cameras (docs/performance.md).
MAX_WORKERS = 32


class ConfigError(Exception):
    """A configuration problem; the message is one line naming file, line and key."""


class DirectoryMissing(ConfigError):
    """A configured directory is not there (yet): an outage, not a wrong configuration."""


@dataclass(frozen=True)
class Paths:
    raw: tuple[Path, ...]
    newdata: Path
    processed: Path
    state: Path
    #: optional extra outputs, written after <CHAN>.new (docs/formats.md)
    legacy: Path | None = None  # <legacy>/<CCYYMMDD>/<name> in the pre-Archon single-image format
    nightlog: Path | None = None  # <nightlog>/<CCYYMMDD>_mods.txt
    compressed: Path | None = None  # <compressed>/<CCYYMMDD>/<name>.fz


@dataclass(frozen=True)
class WatchSettings:
    """Detection and the gate; what settle, pass_on_close, conpars_grace and
    incomplete_timeout decide is written in docs/service.md, "States of a raw file"."""

    method: str = "inotify"  # inotify | poll
    poll_interval: float = 1.0  # seconds between poll scans of the raw directories
    settle: float = 0.05  # state settling: how long a complete file's fingerprint must hold
    pass_on_close: bool = True  # state closed: a writer-done hint (inotify close, UDP proc) is final
    rescan_interval: float = 60.0  # full rescan of every raw directory
    conpars_grace: float = 10.0  # state waiting for CONPARS: how long
    incomplete_timeout: float = 300.0  # state incomplete: how long before it is reported
    lookback_days: int = 2  # full scans: files whose name's date tag or mtime is this recent (service.md)


@dataclass(frozen=True)
class UdpSettings:
    enabled: bool = False
    host: str = "0.0.0.0"
    port: int = 10301
    allow_quit: bool = False
    allow_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class MetricsSettings:
    port: int = 0  # 0: no HTTP endpoint; the text file in the state directory is always written
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class TelemetrySource:
    """One telemetry source: a file per night (``{night}`` in ``path``), read by processing/telemetry.py."""

    name: str  # the table's EXTNAME: GUIDER, WFS, WEATHER...
    format: str  # csv | jsonl | hdf5
    path: str  # with {night} = CCYYMMDD of the raw file's night
    time_column: str = "time"
    time_format: str = "iso"  # iso | unix | mjd
    columns: tuple[tuple[str, str], ...] = ()  # (column, unit); () = every column, no units
    dataset: str | None = None  # hdf5: the dataset of records


@dataclass(frozen=True)
class TelemetrySettings:
    sources: tuple[TelemetrySource, ...] = ()
    margin: float = 0.0  # seconds added before and after the exposure
    wait: float = 0.0  # at most this long per file for a source not yet written to the end


@dataclass(frozen=True)
class StepSpec:
    name: str
    enabled: bool = True


#: the steps when the configuration names none
DEFAULT_STEP_SPECS = tuple(StepSpec(n) for n in DEFAULT_STEPS)


@dataclass(frozen=True)
class Settings:
    paths: Paths
    watch: WatchSettings = field(default_factory=WatchSettings)
    workers: int = 1
    steps: tuple[StepSpec, ...] = DEFAULT_STEP_SPECS
    udp: UdpSettings = field(default_factory=UdpSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    log_level: str = "info"
    source: Path | None = None
    #: dotted key -> line in ``source`` (for problems found after loading)
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)
    #: archive.dictionary loaded and validated at start; None: the shipped dictionary
    keywords: KeywordDictionary | None = None
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)

    @property
    def enabled_steps(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.steps if s.enabled)

    @property
    def default_steps_off(self) -> tuple[str, ...]:
        """Default steps this configuration does not run (logged by every run, noted in headers)."""
        on = set(self.enabled_steps)
        return tuple(n for n in DEFAULT_STEPS if n not in on)

    def where(self, dotted: str) -> str:
        """``file:line: key`` for a problem with ``dotted`` found after loading."""
        line = self.lines.get(dotted, self.lines.get(dotted.split(".")[0].split("[")[0], "?"))
        return f"{self.source}:{line}: {dotted}"


_TRUE = {"true", "yes", "y", "on", "1"}
_FALSE = {"false", "no", "n", "off", "0"}


def parse_bool(value: Any) -> bool:
    """true/false, yes/no, y/n, on/off, 1/0 in any case; anything else is an error."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a boolean (use true/false, yes/no or Y/N)")


class _SourceLines:
    """Turns a node and key into 'file:line: key' for messages."""

    def __init__(self, source: Path):
        self.source = source
        self.lines: dict[str, int] = {}

    def at(self, node: Any, key: Any, dotted: str) -> str:
        line = None
        try:
            if isinstance(node, CommentedMap) and key in node:
                line = node.lc.key(key)[0] + 1
            elif isinstance(node, CommentedSeq):
                line = node.lc.item(key)[0] + 1
        except (KeyError, IndexError, TypeError, AttributeError):
            line = None
        if line is None:
            line = getattr(getattr(node, "lc", None), "line", None)
            line = line + 1 if isinstance(line, int) else "?"
        if isinstance(line, int):
            self.lines.setdefault(dotted, line)
        return f"{self.source}:{line}: {dotted}"


def _number(v: Any) -> float:
    """A finite YAML number; booleans, strings, NaN and infinities are refused in words."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{_shown(v)} is not a number")
    out = float(v)
    if math.isnan(out):
        raise ValueError("not a number (NaN); give seconds as a plain number")
    if math.isinf(out):
        raise ValueError(f"{_shown(v)} is infinite; give a finite number of seconds")
    return out


def _seconds(low: float, high: float, *, allow_zero: bool = False) -> Callable[[Any], float]:
    """A number of seconds in (low, high], or [0, high] when zero is meaningful."""

    def check(v: Any) -> float:
        out = _number(v)
        if allow_zero and out < 0:
            raise ValueError(f"{_shown(v)} must not be negative")
        if not allow_zero and out <= low:
            raise ValueError(f"{_shown(v)} must be greater than {low:g}")
        if out > high:
            raise ValueError(f"{_shown(v)} is more than the largest sensible value, {high:g} s")
        return out

    return check


def _shown(v: Any) -> str:
    """A value as the user wrote it (YAML spelling for booleans and None)."""
    if isinstance(v, bool):
        return "a boolean (" + ("true" if v else "false") + ")"
    if v is None:
        return "an empty value"
    return repr(v)


def _nonneg_int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{_shown(v)} is not a whole number")
    if v < 0:
        raise ValueError(f"{v!r} must not be negative")
    return v


def _int_range(low: int, high: int, why: str = "") -> Callable[[Any], int]:
    def check(v: Any) -> int:
        out = _nonneg_int(v)
        if out < low:
            raise ValueError(f"{v!r} must be at least {low}")
        if out > high:
            raise ValueError(f"{v!r} is more than {high}" + (f" ({why})" if why else ""))
        return out

    return check


def _port(v: Any) -> int:
    out = _nonneg_int(v)
    if out > 65535:
        raise ValueError(f"{v!r} is not a port number")
    return out


def _string(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"{_shown(v)} is not a non-empty string")
    return v.strip()


def _choice(*options: str) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        text = v.strip().lower() if isinstance(v, str) else None
        if text not in options:
            raise ValueError(f"{_shown(v)} is not one of {', '.join(options)}")
        return text

    return check


_LOG_LEVELS = ("debug", "info", "warning", "error")

# section -> key -> converter
#: section -> key -> parser (None: a key with its own handling below)
_SCHEMA: dict[str, dict[str, Callable[[Any], Any] | None]] = {
    "watch": {
        "method": _choice("inotify", "poll"),
        # upper bounds: beyond them a setting cannot do its job (a file would wait
        # an hour to be looked at), so it is a typo, not a choice
        "poll_interval": _seconds(0, 600),
        "settle": _seconds(0, 600),
        "pass_on_close": parse_bool,
        "rescan_interval": _seconds(0, 86400),
        "conpars_grace": _seconds(0, 3600, allow_zero=True),
        "incomplete_timeout": _seconds(0, 86400),
        "lookback_days": _int_range(1, 3660),
    },
    "udp": {
        "enabled": parse_bool,
        "host": _string,
        "port": _port,
        "allow_quit": parse_bool,
        "allow_hosts": None,  # list of strings, handled below
    },
    "metrics": {"port": _port, "host": _string},
    "log": {"level": _choice(*_LOG_LEVELS)},
    "archive": {"dictionary": None},  # a keyword dictionary file, handled below
    # docs/telemetry.md; sources is a list of mappings, handled below
    "telemetry": {
        "margin": _seconds(0, 3600, allow_zero=True),
        "wait": _seconds(0, 600, allow_zero=True),
        "sources": None,
    },
}
_TOP = {"paths", "watch", "workers", "steps", "udp", "metrics", "log", "archive", "telemetry"}
_OPTIONAL_PATH_KEYS = ("legacy", "nightlog", "compressed")
_PATH_KEYS = ("raw", "newdata", "processed", "state", *_OPTIONAL_PATH_KEYS)


def load(path: str | os.PathLike, *, require_dirs: bool = True) -> Settings:
    """Read and validate ``path``; ``ConfigError`` with file:line: key on any problem.

    ``require_dirs=False``: missing directories are not an error here (``status``
    and ``check-config`` report them through ``check_directories``).
    """
    source = Path(path)
    try:
        text = source.read_text()
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read configuration: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not a text file ({exc.reason} at byte {exc.start})") from None
    return loads(text, source, require_dirs=require_dirs)


def loads(text: str, source: Path | str = "<config>", *, require_dirs: bool = True) -> Settings:
    source = Path(source)
    where = _SourceLines(source)
    try:
        doc = YAML(typ="rt").load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"{mark.line + 1}" if mark is not None else "?"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}:{line}: not valid YAML: {problem}") from None
    if doc is None:
        raise ConfigError(f"{source}:1: paths: missing (the configuration is empty)")
    if not isinstance(doc, CommentedMap):
        raise ConfigError(f"{source}:1: the configuration must be a mapping of sections")
    for key in doc:
        if key not in _TOP:
            raise ConfigError(
                f"{where.at(doc, key, str(key))}: unknown key (known: {', '.join(sorted(_TOP))})"
            )
    if "paths" not in doc:
        raise ConfigError(f"{source}:1: paths: missing (needs raw, newdata, processed, state)")
    paths = _paths(doc, where, require_dirs)
    sections: dict[str, dict[str, Any]] = {}
    for name, schema in _SCHEMA.items():
        sections[name] = _section(doc, name, schema, where)
    workers = 1
    if "workers" in doc:
        where.at(doc, "workers", "workers")
        workers = _convert(
            doc,
            "workers",
            "workers",
            _int_range(1, MAX_WORKERS, "each worker is a process of about 200 MB"),
            where,
        )
    steps = _steps(doc, where) if "steps" in doc else DEFAULT_STEP_SPECS
    log_level = sections["log"].get("level", "info")
    return Settings(
        paths=paths,
        watch=WatchSettings(**sections["watch"]),
        workers=workers,
        steps=steps,
        udp=UdpSettings(**sections["udp"]),
        metrics=MetricsSettings(**sections["metrics"]),
        log_level=log_level,
        source=source,
        lines=where.lines,
        keywords=sections["archive"].get("dictionary"),
        telemetry=TelemetrySettings(**sections["telemetry"]),
    )


def _convert(node: Any, key: Any, dotted: str, conv: Callable[[Any], Any], where: _SourceLines) -> Any:
    try:
        return conv(node[key])
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where.at(node, key, dotted)}: {exc}") from None


def _section(doc: CommentedMap, name: str, schema: dict, where: _SourceLines) -> dict[str, Any]:
    if name not in doc or doc[name] is None:
        return {}
    node = doc[name]
    if not isinstance(node, CommentedMap):
        raise ConfigError(f"{where.at(doc, name, name)}: must be a mapping")
    out: dict[str, Any] = {}
    for key in node:
        dotted = f"{name}.{key}"
        where.at(node, key, dotted)  # records the line for checks made after loading
        if key not in schema:
            raise ConfigError(
                f"{where.at(node, key, dotted)}: unknown key (known: {', '.join(sorted(schema))})"
            )
        if name == "udp" and key == "allow_hosts":
            out["allow_hosts"] = _string_list(node, key, dotted, where)
            continue
        if name == "archive" and key == "dictionary":
            out["dictionary"] = _keyword_dictionary(node, key, dotted, where)
            continue
        if name == "telemetry" and key == "sources":
            out["sources"] = _telemetry_sources(node, key, dotted, where)
            continue
        attr = "level" if name == "log" else key
        out[attr] = _convert(node, key, dotted, schema[key], where)
    return out


def _string_list(node: Any, key: Any, dotted: str, where: _SourceLines) -> tuple[str, ...]:
    value = node[key]
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(f"{where.at(node, key, dotted)}: must be a list of strings")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise ConfigError(f"{where.at(value, i, f'{dotted}[{i}]')}: {_shown(item)} is not a string")
        out.append(item.strip())
    return tuple(out)


def _keyword_dictionary(node: Any, key: Any, dotted: str, where: _SourceLines) -> KeywordDictionary:
    """The keyword dictionary file named by ``archive.dictionary``, loaded and validated now.

    Relative to the configuration's directory.  A problem inside the dictionary
    is reported at the dictionary's own file and line (``keywords.py``).
    """
    value = node[key]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where.at(node, key, dotted)}: {value!r} is not a file path")
    path = Path(os.path.expanduser(value.strip()))
    if not path.is_absolute():
        path = (where.source.parent / path).resolve()
    if not path.is_file():
        raise ConfigError(f"{where.at(node, key, dotted)}: file {path} does not exist")
    from modsingest import keywords

    try:
        return keywords.load(path)
    except DictionaryError as exc:
        raise ConfigError(str(exc)) from None


_SOURCE_KEYS = ("name", "format", "path", "time", "time_format", "columns", "dataset")


def _telemetry_sources(node: Any, key: Any, dotted: str, where: _SourceLines) -> tuple[TelemetrySource, ...]:
    """``telemetry.sources``: a list of {name, format, path, time, time_format, columns, dataset}.

    An HDF5 source needs h5py, an optional dependency (``pip install
    'modsingest[hdf5]'``): without it the configuration is refused here rather
    than every file getting a warning.  Found without importing it (the
    service's main process imports no numerical library).
    """
    items = node[key]
    if items is None:
        return ()
    if not isinstance(items, CommentedSeq):
        raise ConfigError(f"{where.at(node, key, dotted)}: must be a list of sources")
    out: list[TelemetrySource] = []
    for i, item in enumerate(items):
        source = _telemetry_source(items, i, f"{dotted}[{i}]", where)
        if any(o.name == source.name for o in out):
            raise ConfigError(
                f"{where.at(item, 'name', f'{dotted}[{i}].name')}: {source.name!r} listed twice"
            )
        out.append(source)
    return tuple(out)


def _telemetry_source(items: CommentedSeq, i: int, at: str, where: _SourceLines) -> TelemetrySource:
    """One entry of ``telemetry.sources``, checked."""
    item = items[i]
    if not isinstance(item, CommentedMap):
        raise ConfigError(f"{where.at(items, i, at)}: must be a mapping (name, format, path, ...)")
    for k in item:
        if k not in _SOURCE_KEYS:
            raise ConfigError(
                f"{where.at(item, k, f'{at}.{k}')}: unknown key (known: {', '.join(_SOURCE_KEYS)})"
            )
    for k in ("name", "format", "path"):
        if k not in item:
            raise ConfigError(f"{where.at(items, i, f'{at}.{k}')}: missing")
    name = _convert(item, "name", f"{at}.name", _string, where).upper()
    if not re.fullmatch(r"[A-Z][A-Z0-9_]{0,67}", name) or name in ("PRIMARY", "CONPARS", "MERGED"):
        raise ConfigError(f"{where.at(item, 'name', f'{at}.name')}: {name!r} cannot be an EXTNAME here")
    fmt = _convert(item, "format", f"{at}.format", _choice("csv", "jsonl", "hdf5"), where)
    if fmt == "hdf5" and importlib.util.find_spec("h5py") is None:
        raise ConfigError(
            f"{where.at(item, 'format', f'{at}.format')}: hdf5 needs h5py, which is not installed "
            "(pip install 'modsingest[hdf5]')"
        )
    path = _convert(item, "path", f"{at}.path", _string, where)
    if not os.path.isabs(path):
        path = str((where.source.parent / path).resolve())
    columns: tuple[tuple[str, str], ...] = ()
    if item.get("columns") is not None:
        cols = item["columns"]
        if not isinstance(cols, CommentedMap):
            raise ConfigError(f"{where.at(item, 'columns', f'{at}.columns')}: must be a mapping column: unit")
        columns = tuple((str(c), "" if u is None else str(u)) for c, u in cols.items())
    dataset = None
    if "dataset" in item:
        dataset = _convert(item, "dataset", f"{at}.dataset", _string, where)
    elif fmt == "hdf5":
        raise ConfigError(
            f"{where.at(items, i, f'{at}.dataset')}: missing (an hdf5 source names its dataset)"
        )
    return TelemetrySource(
        name=name,
        format=fmt,
        path=path,
        time_column=_convert(item, "time", f"{at}.time", _string, where) if "time" in item else "time",
        time_format=(
            _convert(item, "time_format", f"{at}.time_format", _choice("iso", "unix", "mjd"), where)
            if "time_format" in item
            else "iso"
        ),
        columns=columns,
        dataset=dataset,
    )


def _paths(doc: CommentedMap, where: _SourceLines, require_dirs: bool) -> Paths:
    node = doc["paths"]
    if not isinstance(node, CommentedMap):
        raise ConfigError(f"{where.at(doc, 'paths', 'paths')}: must be a mapping")
    for key in node:
        if key not in _PATH_KEYS:
            raise ConfigError(
                f"{where.at(node, key, f'paths.{key}')}: unknown key (known: {', '.join(_PATH_KEYS)})"
            )
    for key in _PATH_KEYS:
        if key in _OPTIONAL_PATH_KEYS:
            continue
        if key not in node or node[key] in (None, "", []):
            raise ConfigError(f"{where.at(doc, 'paths', f'paths.{key}')}: missing")
    raw_node = node["raw"]
    if isinstance(raw_node, str):
        raw_items: list[tuple[Any, Any, str]] = [(node, "raw", raw_node)]
    elif isinstance(raw_node, list):
        raw_items = [(raw_node, i, v) for i, v in enumerate(raw_node)]
    else:
        raise ConfigError(f"{where.at(node, 'raw', 'paths.raw')}: must be a list of directories")
    raws = []
    for parent, idx, value in raw_items:
        dotted = "paths.raw" if parent is node else f"paths.raw[{idx}]"
        raws.append((dotted, _directory(parent, idx, value, dotted, where, require_dirs)))
    named = raws + [
        (f"paths.{key}", _directory(node, key, node[key], f"paths.{key}", where, require_dirs))
        for key in ("newdata", "processed", "state")
    ]
    optional = [
        (f"paths.{key}", _directory(node, key, node[key], f"paths.{key}", where, require_dirs))
        for key in _OPTIONAL_PATH_KEYS
        if node.get(key) not in (None, "")
    ]
    problem = layout_problem(named + optional)
    if problem is not None:
        dotted, text = problem
        raise ConfigError(f"{where.source}:{where.lines.get(dotted, '?')}: {dotted}: {text}")
    resolved = dict(named[len(raws) :])
    return Paths(
        raw=tuple(p for _, p in raws),
        newdata=resolved["paths.newdata"],
        processed=resolved["paths.processed"],
        state=resolved["paths.state"],
        **{dotted.split(".", 1)[1]: path for dotted, path in optional},
    )


def _directory(
    parent: Any, key: Any, value: Any, dotted: str, where: _SourceLines, require_dirs: bool = True
) -> Path:
    place = where.at(parent, key, dotted)  # also records the line for later checks
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{place}: {_shown(value)} is not a directory path")
    path = Path(os.path.expanduser(value.strip()))
    if not path.is_absolute() and where.source.parent:
        path = Path(os.path.abspath(where.source.parent / path))  # symlinks kept: the user's names
    if require_dirs and not path.is_dir():
        raise DirectoryMissing(f"{place}: directory {path} does not exist")
    return path


def _real(path: Path) -> str:
    """The path with symlinks resolved as far as they exist (a missing directory resolves lexically)."""
    return os.path.realpath(path)


def _inside(a: str, b: str) -> bool:
    """True when directory ``a`` is ``b`` or below it."""
    return a == b or a.startswith(b.rstrip(os.sep) + os.sep)


def layout_problem(named: list[tuple[str, Path]]) -> tuple[str, str] | None:
    """Why these directories cannot work together, as (key, problem), or None.

    The service writes into newdata and ``processed/<night>/`` and reads every
    raw directory: a raw directory that is, contains or lies inside an output
    directory would feed the service its own outputs (``raw == newdata`` once
    processed its own files in a loop and overwrote them).  newdata and
    processed are two copies, so they must differ; the state directory holds the
    ledger, which must not sit in a directory observers or detection read.
    Compared with symlinks resolved, so a link to the same place is caught.
    """
    real = [(k, _real(p), p) for k, p in named]
    raws = [r for r in real if r[0].startswith("paths.raw")]
    outputs = [r for r in real if r[0] in ("paths.newdata", "paths.processed")]
    extras = [r for r in real if r[0] in ("paths.legacy", "paths.nightlog", "paths.compressed")]
    state = [r for r in real if r[0] == "paths.state"]
    for i, (k, r, p) in enumerate(raws):
        for k2, r2, p2 in raws[:i]:
            if r == r2:
                return k, f"{p} is the same directory as {k2} ({p2})"
    for k, r, p in outputs:
        for _k2, r2, p2 in raws:
            if _inside(r2, r) or _inside(r, r2):
                rel = "the same directory as" if r == r2 else ("inside" if _inside(r, r2) else "contains")
                return k, (
                    f"{p} is {rel} raw directory {p2}: the service would read its own outputs "
                    f"as raw files (keep raw, newdata and processed apart)"
                )
    for k, r, p in extras:
        for k2, r2, p2 in raws + outputs + state:
            if r == r2 or (_inside(r, r2) and k2.startswith("paths.raw")):
                return k, f"{p} is the same directory as, or inside, {k2} ({p2}): keep each output apart"
    (_kn, rn, _pn), (kp, rp, pp) = outputs
    if rn == rp:
        return kp, f"{pp} is the same directory as paths.newdata: they are two separate copies"
    for k, r, p in state:
        for k2, r2, _p2 in raws + outputs:
            if r == r2:
                return k, f"{p} is the same directory as {k2}: the ledger needs a directory of its own"
    return None


def _steps(doc: CommentedMap, where: _SourceLines) -> tuple[StepSpec, ...]:
    """``steps`` as a mapping (changes to the default order) or a list (the complete order).

    Mapping: ``{merged: no}`` switches MERGED off and keeps every other default
    step in its default place; an installed step that is not a default one and
    is switched on here runs after the defaults, in the order written.
    List: names, or ``name: yes/no`` items, in the order run; every default step
    must be there (switched off ones as ``name: no``), because a list that leaves
    one out is far more often a mistake than a wish.
    """
    node = doc["steps"]
    where.at(doc, "steps", "steps")
    installed = installed_steps()
    items: list[tuple[Any, Any, Any, Any]] = []
    if isinstance(node, CommentedMap):
        items = [(node, key, key, node[key]) for key in node]
    elif isinstance(node, CommentedSeq):
        for i, item in enumerate(node):
            if isinstance(item, str):
                items.append((node, i, item, True))
            elif isinstance(item, CommentedMap) and len(item) == 1:
                ((name, flag),) = item.items()
                items.append((item, name, name, flag))
            else:
                raise ConfigError(
                    f"{where.at(node, i, f'steps[{i}]')}: {_shown(item)} is not a step name or 'name: yes/no'"
                )
    else:
        raise ConfigError(f"{where.at(doc, 'steps', 'steps')}: must be a list or a mapping")
    chosen: dict[str, bool] = {}
    for parent, key, name, flag in items:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{where.at(parent, key, 'steps')}: {_shown(name)} is not a step name")
        name = name.strip()
        dotted = f"steps.{name}"
        place = where.at(parent, key, dotted)
        if name in chosen:
            raise ConfigError(f"{place}: listed twice")
        if name not in installed and name not in DEFAULT_STEPS:
            known = ", ".join(sorted(set(installed) | set(DEFAULT_STEPS)))
            raise ConfigError(f"{place}: no such step (known: {known})")
        try:
            chosen[name] = parse_bool(flag)
        except ValueError as exc:
            raise ConfigError(f"{place}: {exc}") from None
    if isinstance(node, CommentedMap):
        specs = [StepSpec(n, chosen.pop(n, True)) for n in DEFAULT_STEPS]
        specs += [StepSpec(n, on) for n, on in chosen.items()]
        return tuple(specs)
    left_out = [n for n in DEFAULT_STEPS if n not in chosen]
    if left_out:
        raise ConfigError(
            f"{where.at(doc, 'steps', 'steps')}: the list leaves out {', '.join(left_out)}: a list is "
            f"the complete order, so name every step and switch one off with 'name: no' "
            f"(or write a mapping of changes only, e.g. 'steps: {{{left_out[0]}: no}}')"
        )
    return tuple(StepSpec(n, on) for n, on in chosen.items())


def installed_steps() -> set[str]:
    """Names of the step plugins installed (entry points; nothing is imported)."""
    from importlib.metadata import entry_points

    return {ep.name for ep in entry_points(group=STEPS_ENTRY_POINTS)}


def check_steps_known(settings: Settings, known: set[str]) -> None:
    """Fail on a step name no installed plugin provides (a typo must not skip a step)."""
    for spec in settings.steps:
        if spec.name not in known:
            raise ConfigError(
                f"{settings.where(f'steps.{spec.name}')}: no such step "
                f"(installed: {', '.join(sorted(known))})"
            )


# --------------------------------------------------------------------------- environment
def check_directories(settings: Settings, *, state_may_be_missing: bool = False) -> list[str]:
    """Each configured directory that is missing, not a directory, or not usable by this user.

    Raw directories must be readable and listable; newdata, processed and state
    writable.  ``state_may_be_missing``: before the first start, systemd's
    ``StateDirectory=`` has not made it yet; then its parent must exist.
    Checked as the user running this, so run it as the service user.
    """
    p = settings.paths
    problems = []
    wanted: list[tuple[str, Path, int, str]] = [
        (
            f"paths.raw[{i}]" if f"paths.raw[{i}]" in settings.lines else "paths.raw",
            d,
            os.R_OK | os.X_OK,
            "readable",
        )
        for i, d in enumerate(p.raw)
    ]
    wanted += [
        ("paths.newdata", p.newdata, os.W_OK | os.X_OK, "writable"),
        ("paths.processed", p.processed, os.W_OK | os.X_OK, "writable"),
        ("paths.state", p.state, os.W_OK | os.X_OK, "writable"),
    ]
    for dotted, path, mode, what in wanted:
        place = settings.where(dotted)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if dotted == "paths.state" and state_may_be_missing and path.parent.is_dir():
                continue
            problems.append(f"{place}: directory {path} does not exist")
            continue
        except OSError as exc:
            problems.append(f"{place}: {path} cannot be reached: {exc.strerror or exc}")
            continue
        if not os.path.isdir(path) or (st.st_mode & 0o170000) != 0o040000:
            problems.append(f"{place}: {path} is not a directory")
        elif not os.access(path, mode):
            problems.append(f"{place}: directory {path} is not {what} by this user ({_user()})")
    return problems


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (KeyError, ImportError):
        return f"uid {os.geteuid()}"


def check_ports(settings: Settings) -> list[str]:
    """The UDP trigger port and the metrics port can be bound (free, and allowed to this user)."""
    problems = []
    wanted = []
    if settings.udp.enabled:
        wanted.append(("udp.port", socket.SOCK_DGRAM, settings.udp.host, settings.udp.port, "UDP"))
    if settings.metrics.port:
        wanted.append(
            ("metrics.port", socket.SOCK_STREAM, settings.metrics.host, settings.metrics.port, "TCP")
        )
    for dotted, kind, host, port, proto in wanted:
        try:
            infos = socket.getaddrinfo(host, port, type=kind)
        except OSError as exc:
            problems.append(
                f"{settings.where(dotted)}: host {host!r} cannot be resolved ({exc.strerror or exc})"
            )
            continue
        family, _, _, _, address = infos[0]
        sock = socket.socket(family, kind)
        try:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                why = "already in use (the service itself, if it is running, or another program)"
            elif exc.errno == errno.EACCES:
                why = "not allowed for this user (ports below 1024 need privileges)"
            elif exc.errno == errno.EADDRNOTAVAIL:
                why = f"{host} is not an address of this machine"
            else:
                why = exc.strerror or str(exc)
            problems.append(f"{settings.where(dotted)}: {proto} {host}:{port} cannot be bound: {why}")
        finally:
            sock.close()
    return problems


def check_all(path: str | os.PathLike, *, ports: bool = True) -> tuple[Settings | None, list[str]]:
    """Everything ``watch`` checks at start, without starting: (settings, problems).

    The configuration text (keys, types, ranges, step names, directory layout),
    then the directories as this user sees them (the state directory may be
    missing: systemd creates it at the first start), then the ports.
    """
    try:
        settings = load(path, require_dirs=False)
    except ConfigError as exc:
        return None, [str(exc)]
    problems = check_directories(settings, state_may_be_missing=True)
    if ports:
        problems += check_ports(settings)
    return settings, problems
