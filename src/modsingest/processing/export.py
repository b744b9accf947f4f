"""Writing the legacy single-image files (the format rules are in ``legacy.py``).

Two callers: ``modsingest export`` (files an astronomer has, raw or processed)
and the pipeline's optional ``paths.legacy`` target (a file just delivered).
Either way the file is written like every other output: a hidden temporary
file in the destination, fsynced, renamed over the final name, the directory
fsynced, so a reader never sees half a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from modsingest import fsutil
from modsingest.config import DEFAULT_STEPS
from modsingest.fits import frame as frame_mod
from modsingest.fits import writer
from modsingest.fits.frame import Frame
from modsingest.processing import legacy
from modsingest.processing.publish import write_temps
from modsingest.processing.steps import StepContext, run_steps

#: The header steps applied before converting a file: every default step but
#: ``merged``, whose values legacy-proc takes from ``steps.merged.build``.
HEADER_STEPS = tuple(s for s in DEFAULT_STEPS if s != "merged")


class ExportError(Exception):
    """A file that could not be exported; the message names it and says why."""


@dataclass
class Exported:
    source: Path
    output: Path
    warnings: list[str] = field(default_factory=list)


def write_frame(frame: Frame, fmt: str, directory: Path, name: str) -> tuple[Path, list[str]]:
    """Convert ``frame`` to ``fmt`` and publish it atomically as ``directory/name``."""
    image = legacy.convert(frame, fmt)
    fsutil.ensure_dir(directory)
    items = writer.image_file_items(image.header, image.bands())
    (tmp,) = write_temps([directory], name, items, drop_cache=[directory])
    final = directory / name
    fsutil.commit(tmp, final)
    return final, image.warnings


def export_file(path: str | Path, fmt: str, out_dir: Path, registry=None) -> Exported:
    """Read ``path`` (raw or processed), apply the header steps, write ``out_dir/<name>``.

    The header steps are idempotent, so a processed file comes out as the
    pipeline made it and a raw file gains what the reducers read (DATE-OBS
    with its time, MJD-OBS, upper-case IMAGETYP ...).
    """
    path = Path(path)
    if fmt not in legacy.FORMATS:
        raise ExportError(f"{path}: format {fmt!r} is not one of {', '.join(legacy.FORMATS)}")
    try:
        frame = frame_mod.read(path)
    except frame_mod.ReadError as exc:
        raise ExportError(str(exc)) from None
    if out_dir.resolve() == path.parent.resolve():
        raise ExportError(f"{path}: --out is the file's own directory; the export would replace it")
    outcomes = run_steps(frame, HEADER_STEPS, StepContext(source_name=path.name), registry)
    warnings = [f"{o.name}: {w}" for o in outcomes for w in o.warnings]
    try:
        output, more = write_frame(frame, fmt, out_dir, path.name)
    except legacy.LegacyError as exc:
        raise ExportError(f"{path}: not exported as {fmt}: {exc}") from None
    except OSError as exc:
        raise ExportError(f"{path}: cannot write to {out_dir}: {exc.strerror or exc}") from None
    return Exported(source=path, output=output, warnings=warnings + more)
