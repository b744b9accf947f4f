"""The outcome of one raw file: what ``Pipeline.process`` returns and the service records.

Why its own module: the worker process computes it and the service's main
process reads it, and the main process must never import astropy, numpy or
erfa.  So it holds plain values only (paths, strings, numbers, the night-log
line) and imports nothing but the standard library and ``nightlog`` (pure
Python); a worker sends the object itself through its pipe (pickled), and the
main process reads typed fields, not a dict.

Failure fields say what the dispatcher does next: ``side`` and ``kind`` say
whose fault and what kind (a raw-side I/O error is read again; a
destination-side one waits and is tried again, ``retryable``); ``stage`` is
the metric label of where it failed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from modsingest import nightlog

#: ``side``: whose fault a failure is
RAW, DESTINATION, INTERNAL = "raw", "destination", "internal"
#: ``kind``: what kind of fault
CONTENT, IO, BUG = "content", "io", "bug"


@dataclass
class Result:
    source: Path
    ok: bool = False
    error: str | None = None
    name: str | None = None
    outputs: tuple[Path, ...] = ()
    channel: str | None = None
    warnings: list[str] = field(default_factory=list)
    steps: tuple[str, ...] = ()
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    #: where it failed: 'read' (the raw file), 'name' (the raw name), 'publish'
    #: (the destinations), 'internal', 'worker' (the worker caught the pipeline raising)
    stage: str | None = None
    #: the failure is in the destinations (full disk, NFS away), not in the file:
    #: the service tries again later instead of giving the file up
    retryable: bool = False
    #: whose fault: 'raw' (the raw file or its name), 'destination' (processed,
    #: newdata, the state directory's locks), 'internal' (a bug)
    side: str | None = None
    #: what kind of fault: 'content' (the raw file or name can never be
    #: delivered as it is), 'io' (an I/O error: on the raw side, look at the raw
    #: file again; on the destination side, an outage), 'bug'
    kind: str | None = None
    #: when the exposure was taken (DATE-OBS with its time, as delivered): what
    #: ``status`` calls the newest exposure of a channel
    date_obs: str | None = None
    #: the night-log line of the delivered file (header values at delivery, size, SHA-256)
    log: nightlog.Entry | None = None

    def summary(self) -> str:
        """The one log line per file."""
        if not self.ok:
            return f"FAILED {self.error}"
        warn = f"; {len(self.warnings)} warning(s): " + " | ".join(self.warnings) if self.warnings else ""
        return (
            f"delivered {self.source.name} as {self.name} in {self.seconds * 1000:.0f} ms "
            f"(steps {','.join(self.steps) or 'none'}){warn}"
        )

    @property
    def raw_io_error(self) -> bool:
        """Reading the raw file failed (EIO, ESTALE, cut while read): worth reading again."""
        return not self.ok and self.side == RAW and self.kind == IO

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data (paths as strings), for the note a worker leaves on disk."""
        data = asdict(self)
        data["source"] = str(self.source)
        data["outputs"] = [str(p) for p in self.outputs]
        data["steps"] = list(self.steps)
        data["log"] = self.log.to_dict() if self.log is not None else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        """The inverse of ``to_json``; unknown keys are ignored, missing ones take defaults."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["source"] = Path(str(values.get("source", "")))
        values["outputs"] = tuple(Path(p) for p in values.get("outputs") or ())
        values["steps"] = tuple(values.get("steps") or ())
        values["warnings"] = list(values.get("warnings") or [])
        values["timings"] = dict(values.get("timings") or {})
        log = values.get("log")
        values["log"] = nightlog.Entry.from_dict(log) if log else None
        return cls(**values)
