"""Processing steps: discovery, the runner, and provenance.

A step is a module with one function ``run(frame, ctx) -> list[str]`` that
changes the frame's headers (or adds MERGED) and returns warnings.  Steps never
do I/O.  They are found through the ``modsingest.steps`` entry-point group, so a
new step is one new module plus one line in ``setup.cfg`` and one in the
configuration's ``steps`` list.

The runner wraps every step with timing, logging and error capture: a step that
raises is a warning on that step (in the log and in the header) and the file is
still delivered with the other steps applied.  It also writes provenance into
the primary header, after first removing the provenance of an earlier run, so
processing a processed file gives the same file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol

from astropy.io import fits

from modsingest import __version__
from modsingest.fits.frame import Frame
from modsingest.keywords import KeywordDictionary

log = logging.getLogger("modsingest.steps")

ENTRY_POINT_GROUP = "modsingest.steps"

#: Provenance keywords the runner owns.
PROV_VERSION = "MSIVER"
PROV_STEPS = "MSISTEPS"
PROV_DATE = "MSIDATE"
#: Default steps the configuration switched off (written only when there are any,
#: so a file processed with the defaults is unchanged): MSISTEPS says what ran,
#: MSIOFF that the missing ones were left out on purpose, not lost.
PROV_OFF = "MSIOFF"
HISTORY_PREFIX = "modsingest"


@dataclass(frozen=True)
class StepContext:
    """What a step may know besides the frame: nothing that needs I/O.

    Data a step needs from outside the file (the keyword dictionary, telemetry)
    is read by the pipeline before the steps run and handed over here as plain
    data, so every step stays a pure function of (frame, ctx).
    """

    source_name: str  # the raw file's base name
    version: str = __version__
    #: default steps the configuration switched off (recorded as ``MSIOFF``)
    steps_off: tuple[str, ...] = ()
    #: the archive step's keyword dictionary; None: the shipped one
    keywords: KeywordDictionary | None = None
    #: telemetry rows read before the steps ran (processing/telemetry.py); None: no source configured
    telemetry: Any = None


class Step(Protocol):
    def __call__(self, frame: Frame, ctx: StepContext) -> list[str] | None: ...


@dataclass
class StepOutcome:
    name: str
    warnings: list[str]
    seconds: float
    failed: bool = False  # the step raised: its changes may be partial

    @property
    def ok(self) -> bool:
        return not self.failed


_REGISTRY: dict[str, Step] | None = None
#: Plugins that are declared but failed to import, with the reason.
BROKEN: dict[str, str] = {}


def discover(refresh: bool = False) -> dict[str, Step]:
    """Every installed step, by entry-point name (loaded once per process)."""
    global _REGISTRY
    if _REGISTRY is None or refresh:
        found: dict[str, Step] = {}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                found[ep.name] = ep.load()
            except Exception as exc:  # one broken plugin must not stop the others
                log.error("step plugin %s (%s) cannot be loaded: %s", ep.name, ep.value, exc)
                BROKEN[ep.name] = f"{type(exc).__name__}: {exc}"
        _REGISTRY = found
    return _REGISTRY


def run_steps(
    frame: Frame,
    names: tuple[str, ...] | list[str],
    ctx: StepContext,
    registry: Mapping[str, Step] | None = None,
    now: Callable[[], float] = time.time,
) -> list[StepOutcome]:
    """Run ``names`` in order on ``frame``; never raises for a step's failure."""
    registry = discover() if registry is None else registry
    outcomes: list[StepOutcome] = []
    for name in names:
        step = registry.get(name)
        start = time.perf_counter()
        if step is None:
            why = BROKEN.get(name, "not installed")
            outcomes.append(StepOutcome(name, [f"step {name!r} unavailable: {why}"], 0.0, True))
            continue
        try:
            warnings = [str(w) for w in (step(frame, ctx) or [])]
            failed = False
        except Exception as exc:  # a step's bug or a header it cannot use
            log.exception("%s: step %s failed", ctx.source_name, name)
            warnings = [f"failed: {type(exc).__name__}: {exc}"]
            failed = True
        seconds = time.perf_counter() - start
        for w in warnings:
            # debug only: the outcome carries the warning, and the caller prints it
            # once (the service's "delivered" line, or process's summary line)
            log.debug("%s: %s: %s", ctx.source_name, name, w)
        outcomes.append(StepOutcome(name, warnings, seconds, failed))
    record_provenance(frame, outcomes, ctx, now())
    return outcomes


def fitting_comment(keyword: str, value, comment: str) -> str:
    """``comment``, or '' when it would not fit on the card beside ``value``.

    astropy would truncate it with a VerifyWarning (an error in the tests); a
    missing comment is better than a cut one.  A value long enough for CONTINUE
    cards keeps its comment (astropy puts it on the last card).
    """
    image = fits.Card(keyword, value).image
    if len(image) > fits.Card.length:
        return comment
    room = fits.Card.length - len(image.rstrip()) - len(" / ")
    return comment if len(comment) <= room else ""


def _split_history(header) -> tuple[list[str], list[str]]:
    """(HISTORY values that are not ours, our earlier warning lines)."""
    if "HISTORY" not in header:
        return [], []
    ours: list[str] = []
    theirs: list[str] = []
    for value in header["HISTORY"]:
        (ours if str(value).startswith(HISTORY_PREFIX) else theirs).append(str(value))
    return theirs, ours


def clear_provenance(frame: Frame) -> list[str]:
    """Remove what an earlier run of modsingest wrote; return its warning lines."""
    header = frame.primary
    for key in (PROV_VERSION, PROV_STEPS, PROV_DATE, PROV_OFF):
        header.remove(key, ignore_missing=True, remove_all=True)
    theirs, ours = _split_history(header)
    if ours:
        header.remove("HISTORY", remove_all=True)
        for value in theirs:
            header.add_history(value)
    return ours


def forget_step(frame: Frame, name: str) -> None:
    """Take step ``name`` out of the recorded steps (``PROV_STEPS``), after the fact.

    For a step whose work was undone after provenance was written (MERGED that
    failed while the file was being written): the header must not claim it.
    """
    header = frame.primary
    steps = [s for s in str(header.get(PROV_STEPS, "")).split(",") if s and s != name]
    header[PROV_STEPS] = ",".join(steps) or "none"


def record_provenance(frame: Frame, outcomes: list[StepOutcome], ctx: StepContext, when: float) -> None:
    """Version, steps applied and every step's warnings, in the primary.

    Warnings say what a step changed, so a rerun on a processed file finds less
    to change and says less; to keep reprocessing idempotent, the warnings of an
    earlier run are kept and only new lines added.  A step that failed before
    and succeeds now loses its old 'failed' lines.
    """
    earlier = clear_provenance(frame)
    header = frame.primary
    applied = ",".join(o.name for o in outcomes if o.ok)
    header[PROV_VERSION] = (ctx.version, "modsingest version that processed this file")
    header[PROV_STEPS] = (applied or "none", fitting_comment(PROV_STEPS, applied or "none", "steps applied"))
    if ctx.steps_off:
        header[PROV_OFF] = (",".join(ctx.steps_off), "default steps switched off by the configuration")
    header[PROV_DATE] = (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when)),
        "UTC when modsingest processed this file",
    )
    recovered = tuple(f"{HISTORY_PREFIX} {o.name}: failed" for o in outcomes if o.ok)
    entries = (
        [e for e in _entries(earlier) if not e[0].startswith(recovered)] if recovered else _entries(earlier)
    )
    for o in outcomes:
        for w in o.warnings:
            entry = tuple(history_lines(f"{o.name}: {w}"))
            if entry not in entries:
                entries.append(entry)
    for entry in entries:
        for line in entry:
            header.add_history(line)


def _entries(lines: list[str]) -> list[tuple[str, ...]]:
    """Group HISTORY lines into warnings: a continuation line starts with the prefix and '+'."""
    entries: list[list[str]] = []
    for line in lines:
        if line.startswith(HISTORY_PREFIX + "+") and entries:
            entries[-1].append(line)
        else:
            entries.append([line])
    return [tuple(e) for e in entries]


def history_lines(text: str, width: int = 72) -> list[str]:
    """``text`` as HISTORY values that each start with the prefix.

    A long value would otherwise be wrapped by astropy into cards that do not
    start with the prefix, and a rerun could not recognise them as ours.
    """
    room = width - len(HISTORY_PREFIX) - 2
    text = " ".join(text.split()) or "-"
    chunks = [text[i : i + room] for i in range(0, len(text), room)]
    return [f"{HISTORY_PREFIX} {chunks[0]}"] + [f"{HISTORY_PREFIX}+ {c}" for c in chunks[1:]]
