"""One raw file through read -> steps -> write -> publish.

``Pipeline.process(path)`` is what both ``modsingest process`` and the service's
workers call.  It never raises for a problem with the file: the ``Result`` says
what was delivered, with which warnings, or the one-line reason it was not.
Building a ``Pipeline`` loads the step plugins and warms up the time machinery
once, so the first file is as fast as the rest.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from modsingest import names, nightlog
from modsingest.config import Settings, check_steps_known
from modsingest.fits import cardconf as fitsconf
from modsingest.fits import frame as frame_mod
from modsingest.fits import writer
from modsingest.processing import publish
from modsingest.processing.steps import BROKEN, StepContext, discover, forget_step, run_steps
from modsingest.result import BUG, CONTENT, DESTINATION, INTERNAL, IO, RAW, Result

log = logging.getLogger("modsingest.pipeline")


class Pipeline:
    """Reusable processing of raw files under one configuration."""

    def __init__(self, settings: Settings, registry=None, warm: bool = True):
        self.settings = settings
        self.registry = discover() if registry is None else registry
        check_steps_known(settings, set(self.registry) | set(BROKEN))
        self.step_names = settings.enabled_steps
        #: telemetry sources are read here, before the steps (steps do no I/O); no
        #: reader at all when no source is configured, so the hot path pays nothing
        self.telemetry = None
        if "telemetry" in self.step_names and settings.telemetry.sources:
            from modsingest.processing.telemetry import TelemetryReader

            self.telemetry = TelemetryReader(settings.telemetry)
        fitsconf.freeze()
        if warm:
            self.warm_up()

    def warm_up(self) -> None:
        """Load what the first file would otherwise pay for (leap seconds, ERFA's first calls)."""
        if "timestamps" in self.step_names and "timestamps" in self.registry:
            try:
                from modsingest.processing import astrotime

                astrotime.warm_up()
            except Exception as exc:  # warming is an optimisation, never a reason to stop
                log.warning("warm-up of the time machinery failed: %s", exc)
        if self.telemetry is not None:
            # tonight's sources parsed now, not by the night's first file (0.5 s for 50 000 rows)
            from modsingest import names

            self.telemetry.preload(names.observing_night(time.time()))

    def process(self, path: str | Path) -> Result:
        path = Path(path)
        result = Result(source=path)
        start = time.perf_counter()
        try:
            self._process(path, result)
        except frame_mod.ReadError as exc:
            # every read of the raw file happens in frame.read (it copies the
            # file), so a raw-side I/O error can only surface here
            result.error, result.stage, result.side = str(exc), "read", RAW
            result.kind = IO if exc.io else CONTENT
        except publish.NameRefused as exc:
            result.error = f"{names.shown(str(path))}: {exc}"
            result.stage, result.side, result.kind = "name", RAW, CONTENT
        except OSError as exc:
            where = getattr(exc, "filename", None) or ""
            result.error = f"{path}: cannot publish: {exc.strerror or exc}" + (f" ({where})" if where else "")
            result.stage, result.retryable = "publish", True
            result.side, result.kind = DESTINATION, IO
        except Exception as exc:  # never let one file take a worker down
            log.exception("%s: unexpected failure", path)
            result.error = f"{path}: unexpected {type(exc).__name__}: {exc}"
            result.stage, result.side, result.kind = "internal", INTERNAL, BUG
        result.seconds = time.perf_counter() - start
        return result

    def _process(self, path: Path, result: Result) -> None:
        clock = time.perf_counter
        t0 = clock()
        problem = names.unpublishable(path.name)
        if problem is not None:  # refused before the file is even read
            raise publish.NameRefused(problem)
        frame = frame_mod.read(path)
        t1 = clock()
        telemetry = self.telemetry.read(frame.primary, path.name) if self.telemetry is not None else None
        t_tel = clock() - t1
        ctx = StepContext(
            source_name=path.name,
            steps_off=self.settings.default_steps_off,
            keywords=self.settings.keywords,
            telemetry=telemetry,
        )
        outcomes = run_steps(frame, self.step_names, ctx, self.registry)
        for o in outcomes:
            result.warnings += [f"{o.name}: {w}" for w in o.warnings]
        result.steps = tuple(o.name for o in outcomes if o.ok)
        if frame.conpars is None:
            result.warnings.append("CONPARS: missing in the raw file; an empty table was written")
        if frame.extras:
            result.warnings.append(f"{len(frame.extras)} unexpected extra HDU(s) carried after MERGED")
        t2 = clock()
        delivery = self._publish(path, frame, result)
        t3 = clock()
        result.warnings += [f"publish: {w}" for w in delivery.warnings]
        result.name = delivery.name
        result.date_obs = exposure_time(frame.primary)
        result.outputs = delivery.outputs
        result.channel = delivery.channel
        result.ok = True
        # writing and publishing overlap (the writer renders while publish writes)
        result.timings = {"read": t1 - t0, "steps": t2 - t1, "write+publish": t3 - t2}
        if telemetry is not None:  # reading the sources (inside "steps") plus the telemetry step
            result.timings["telemetry"] = t_tel + sum(o.seconds for o in outcomes if o.name == "telemetry")
        self._extra_outputs(path, frame, delivery, result)
        result.timings["extras"] = clock() - t3

    def _extra_outputs(self, path: Path, frame, delivery, result: Result) -> None:
        """The optional outputs, after ``<CHAN>.new``: a failure is a warning, never a lost delivery.

        In this order: the legacy copy, the compressed copy (both off the
        observers' path), then the night-log line with the delivered file's hash.

        The file is delivered already; nothing here may take that back, so every
        problem (a full legacy disk, a frame the format cannot hold) is logged
        and added to the result's warnings.
        """
        paths = self.settings.paths
        if paths.legacy is not None:
            from modsingest.processing import export, legacy

            night_dir = paths.legacy / publish.night_of(delivery.name, frame.primary)
            try:
                output, warnings = export.write_frame(frame, "legacy", night_dir, delivery.name)
                result.outputs += (output,)
                result.warnings += [f"legacy: {w}" for w in warnings]
            except legacy.LegacyError as exc:
                # ROI frames are not the reducers' business: expected, not a warning
                log.info("%s: no legacy copy: %s", path.name, exc)
            except Exception as exc:  # the delivery stands whatever happens here
                log.warning("%s: legacy copy not written: %s", path.name, exc)
                result.warnings.append(f"legacy: not written: {type(exc).__name__}: {exc}")
        if paths.compressed is not None:
            from modsingest.processing import compress

            night_dir = paths.compressed / publish.night_of(delivery.name, frame.primary)
            try:
                result.outputs += (compress.write_compressed(delivery.outputs[1], night_dir, delivery.name),)
            except Exception as exc:  # the delivery stands whatever happens here
                log.warning("%s: compressed copy not written: %s", path.name, exc)
                result.warnings.append(f"compressed: not written: {type(exc).__name__}: {exc}")
        result.log = self._log_entry(frame, delivery, result)

    @staticmethod
    def _log_entry(frame, delivery, result: Result) -> nightlog.Entry:
        """The night-log line: the delivered header's values and the delivered file's size and SHA-256.

        The size and hash come from ``publish`` (``FileDigest``), computed while
        the newdata copy was written and mostly done by now; not read again from
        the published file, whose name may already hold a later delivery.  A
        file that could not be hashed gets no size or hash (``FileDigest`` logs why).
        """
        size = digest = None
        hashed = delivery.digest.result() if delivery.digest is not None else None
        if hashed is not None:
            size, digest = hashed
        return nightlog.Entry(
            night=publish.night_of(delivery.name, frame.primary),
            name=delivery.name,
            fields=nightlog.fields_from_header(frame.primary, delivery.name),
            size=size,
            sha256=digest,
            warnings=tuple(result.warnings),
        )

    def _publish(self, path: Path, frame, result: Result):
        """Write and publish; if rendering MERGED fails mid-stream, deliver without it.

        MERGED is rendered while the file is written, so a failure there (which
        the step's own checks should prevent) surfaces here, as the writer's
        ``MergedRenderError`` and only as that: any other failure (a destination
        error, a refused name, a bug elsewhere) is not MERGED's and is raised
        as it is.  The raw data must still reach the observers: the file is
        written again without MERGED and the failure becomes a warning in the
        log and the header.
        """
        paths = self.settings.paths

        def attempt():
            return publish.deliver(
                path.name,
                frame.primary,
                writer.serialize(frame).items(),
                paths.newdata,
                paths.processed,
                paths.state,
            )

        if frame.merged is None:
            return attempt()
        try:
            return attempt()
        except writer.MergedRenderError as exc:
            log.error("%s: rendering MERGED failed; delivering without it", path, exc_info=exc.cause)
            warning = f"failed while rendering: {exc}"
            frame.merged = None
            from modsingest.processing.steps import history_lines

            for line in history_lines(f"merged: {warning}"):
                frame.primary.add_history(line)
            forget_step(frame, "merged")
            result.warnings.append(f"merged: {warning}")
            result.steps = tuple(s for s in result.steps if s != "merged")
            return attempt()


def exposure_time(header) -> str | None:
    """DATE-OBS with its time (``CCYY-MM-DDThh:mm:ss...``), joining UTC-OBS when it is apart."""
    date = str(header.get("DATE-OBS", "") or "").strip()
    if not date:
        return None
    if "T" in date:
        return date
    utc = str(header.get("UTC-OBS", "") or "").strip()
    return f"{date}T{utc}" if utc else date
