"""Loading and validating the YAML configuration into typed settings.

Why so strict: the incumbent read ``N`` as a non-empty string and so as *yes*,
and ignored misspelt keys.  Here every key is known, every value is checked for
its type, every error names the file, the line and the key, and booleans accept
the spellings people actually write (true/false, yes/no, on/off, Y/N).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

DEFAULT_STEPS = ("geometry", "timestamps", "temperatures", "archive", "merged")


class ConfigError(Exception):
    """A configuration problem; the message is one line naming file, line and key."""


@dataclass(frozen=True)
class Paths:
    raw: tuple[Path, ...]
    newdata: Path
    processed: Path
    state: Path


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
    lookback_days: int = 2  # start-up scan: only files whose name dates are this recent


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
class StepSpec:
    name: str
    enabled: bool = True


@dataclass(frozen=True)
class Settings:
    paths: Paths
    watch: WatchSettings = field(default_factory=WatchSettings)
    workers: int = 1
    steps: tuple[StepSpec, ...] = tuple(StepSpec(n) for n in DEFAULT_STEPS)
    udp: UdpSettings = field(default_factory=UdpSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    log_level: str = "info"
    source: Path | None = None

    @property
    def enabled_steps(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.steps if s.enabled)


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


class _Where:
    """Turns a node and key into 'file:line: key' for messages."""

    def __init__(self, source: Path):
        self.source = source

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
        return f"{self.source}:{line}: {dotted}"


def _positive_float(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError(f"{v!r} is not a number")
    out = float(v)
    if out <= 0:
        raise ValueError(f"{v!r} must be greater than 0")
    return out


def _nonneg_int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{v!r} is not a whole number")
    if v < 0:
        raise ValueError(f"{v!r} must not be negative")
    return v


def _positive_int(v: Any) -> int:
    out = _nonneg_int(v)
    if out < 1:
        raise ValueError(f"{v!r} must be at least 1")
    return out


def _port(v: Any) -> int:
    out = _nonneg_int(v)
    if out > 65535:
        raise ValueError(f"{v!r} is not a port number")
    return out


def _string(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"{v!r} is not a non-empty string")
    return v.strip()


def _choice(*options: str) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        text = str(v).strip().lower()
        if text not in options:
            raise ValueError(f"{v!r} is not one of {', '.join(options)}")
        return text

    return check


_LOG_LEVELS = ("debug", "info", "warning", "error")

# section -> key -> converter
_SCHEMA: dict[str, dict[str, Callable[[Any], Any]]] = {
    "watch": {
        "method": _choice("inotify", "poll"),
        "poll_interval": _positive_float,
        "settle": _positive_float,
        "pass_on_close": parse_bool,
        "rescan_interval": _positive_float,
        "conpars_grace": lambda v: float(v) if float(v) >= 0 else _positive_float(v),
        "incomplete_timeout": _positive_float,
        "lookback_days": _positive_int,
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
}
_TOP = {"paths", "watch", "workers", "steps", "udp", "metrics", "log"}
_PATH_KEYS = ("raw", "newdata", "processed", "state")


def load(path: str | os.PathLike) -> Settings:
    """Read and validate ``path``; ``ConfigError`` with file:line: key on any problem."""
    source = Path(path)
    try:
        text = source.read_text()
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read configuration: {exc.strerror or exc}") from exc
    return loads(text, source)


def loads(text: str, source: Path | str = "<config>") -> Settings:
    source = Path(source)
    where = _Where(source)
    try:
        doc = YAML(typ="rt").load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"{mark.line + 1}" if mark is not None else "?"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}:{line}: not valid YAML: {problem}") from exc
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
    paths = _paths(doc, where)
    sections: dict[str, dict[str, Any]] = {}
    for name, schema in _SCHEMA.items():
        sections[name] = _section(doc, name, schema, where)
    workers = 1
    if "workers" in doc:
        workers = _convert(doc, "workers", "workers", _positive_int, where)
    steps = _steps(doc, where) if "steps" in doc else Settings.__dataclass_fields__["steps"].default
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
    )


def _convert(node: Any, key: Any, dotted: str, conv: Callable[[Any], Any], where: _Where) -> Any:
    try:
        return conv(node[key])
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where.at(node, key, dotted)}: {exc}") from None


def _section(doc: CommentedMap, name: str, schema: dict, where: _Where) -> dict[str, Any]:
    if name not in doc or doc[name] is None:
        return {}
    node = doc[name]
    if not isinstance(node, CommentedMap):
        raise ConfigError(f"{where.at(doc, name, name)}: must be a mapping")
    out: dict[str, Any] = {}
    for key in node:
        dotted = f"{name}.{key}"
        if key not in schema:
            raise ConfigError(
                f"{where.at(node, key, dotted)}: unknown key (known: {', '.join(sorted(schema))})"
            )
        if name == "udp" and key == "allow_hosts":
            out["allow_hosts"] = _string_list(node, key, dotted, where)
            continue
        attr = "level" if name == "log" else key
        out[attr] = _convert(node, key, dotted, schema[key], where)
    return out


def _string_list(node: Any, key: Any, dotted: str, where: _Where) -> tuple[str, ...]:
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
            raise ConfigError(f"{where.at(value, i, f'{dotted}[{i}]')}: {item!r} is not a string")
        out.append(item.strip())
    return tuple(out)


def _paths(doc: CommentedMap, where: _Where) -> Paths:
    node = doc["paths"]
    if not isinstance(node, CommentedMap):
        raise ConfigError(f"{where.at(doc, 'paths', 'paths')}: must be a mapping")
    for key in node:
        if key not in _PATH_KEYS:
            raise ConfigError(
                f"{where.at(node, key, f'paths.{key}')}: unknown key (known: {', '.join(_PATH_KEYS)})"
            )
    for key in _PATH_KEYS:
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
        raws.append(_directory(parent, idx, value, dotted, where))
    resolved = {
        key: _directory(node, key, node[key], f"paths.{key}", where)
        for key in ("newdata", "processed", "state")
    }
    return Paths(raw=tuple(raws), **resolved)


def _directory(parent: Any, key: Any, value: Any, dotted: str, where: _Where) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where.at(parent, key, dotted)}: {value!r} is not a directory path")
    path = Path(os.path.expanduser(value.strip()))
    if not path.is_absolute() and where.source.parent:
        path = (where.source.parent / path).resolve()
    if not path.is_dir():
        raise ConfigError(f"{where.at(parent, key, dotted)}: directory {path} does not exist")
    return path


def _steps(doc: CommentedMap, where: _Where) -> tuple[StepSpec, ...]:
    """``steps`` as a list (names, or ``name: Y/N`` items) or a mapping name -> on/off.

    The order written is the order run.
    """
    node = doc["steps"]
    specs: list[StepSpec] = []
    if isinstance(node, CommentedMap):
        items = [(node, key, key, node[key]) for key in node]
    elif isinstance(node, CommentedSeq):
        items = []
        for i, item in enumerate(node):
            if isinstance(item, str):
                items.append((node, i, item, True))
            elif isinstance(item, CommentedMap) and len(item) == 1:
                ((name, flag),) = item.items()
                items.append((item, name, name, flag))
            else:
                raise ConfigError(
                    f"{where.at(node, i, f'steps[{i}]')}: {item!r} is not a step name or 'name: yes/no'"
                )
    else:
        raise ConfigError(f"{where.at(doc, 'steps', 'steps')}: must be a list or a mapping")
    seen = set()
    for parent, key, name, flag in items:
        dotted = f"steps.{name}"
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{where.at(parent, key, 'steps')}: {name!r} is not a step name")
        name = name.strip()
        if name in seen:
            raise ConfigError(f"{where.at(parent, key, dotted)}: listed twice")
        seen.add(name)
        try:
            enabled = parse_bool(flag)
        except ValueError as exc:
            raise ConfigError(f"{where.at(parent, key, dotted)}: {exc}") from None
        specs.append(StepSpec(name, enabled))
    return tuple(specs)


def check_steps_known(settings: Settings, known: set[str]) -> None:
    """Fail on a step name no installed plugin provides (a typo must not skip a step)."""
    for spec in settings.steps:
        if spec.name not in known:
            raise ConfigError(
                f"{settings.source}: steps.{spec.name}: no such step (installed: {', '.join(sorted(known))})"
            )
