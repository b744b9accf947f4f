"""Between the ledger and the workers: who processes what, and what became of it.

The dispatcher is the only place that hands a file to a worker.  It claims
``queued`` rows from the ledger (which marks them ``processing``), never two rows
of the same path at once, and records each outcome: ``delivered`` only after
``Pipeline.process`` returned ok, ``failed`` with the core's one-line reason, or,
when the worker died with the file or could not read the raw file (a raw-side
I/O error: ``side`` 'raw', ``kind`` 'io'), queued again up to ``MAX_ATTEMPTS``
times.

A destination that refuses a file (``retryable``: full disk, NFS away,
read-only) is not the file's fault, so it never makes the file ``failed``: the
row is ``waiting`` in the ledger with the reason and its next try, tried again
with a backoff capped at ``RETRY_CAP`` seconds for as long as the raw file is
unchanged, and all waiting files are queued at once as soon as any file is
delivered again (the destination is back).  That state is in the ledger, not in
this process, so a restart keeps it and ``status`` shows it.
It writes the one log line per delivered or failed file and feeds the metrics.

Both the service and ``replay`` (when no service is running) drive files through
this same path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from modsingest import nightlog
from modsingest.result import Result
from modsingest.service.contracts import Metrics, record_metric
from modsingest.service.ledger import FAILED, PROCESSING, Ledger, Row
from modsingest.service.workers import (
    Job,
    Outcome,
    WorkerPool,
    forget_published,
    read_published,
    take_published,
)

log = logging.getLogger("modsingest.dispatch")

#: a file whose worker died this many times is failed, not retried (a poison file)
MAX_ATTEMPTS = 3
#: the longest pause between two tries of a file a destination refused: once the
#: destination is back, a waiting file is delivered within this long even when no
#: other file arrives to show it (each try reads and processes the file again,
#: about a second of one core for a full frame, so not much shorter)
RETRY_CAP = 60.0


def retry_delay(attempts: int) -> float:
    """Seconds before trying again: 5, 10, 20, 40, then every 60."""
    return float(min(RETRY_CAP, 5 * 2 ** min(max(0, attempts - 1), 16)))


class Dispatcher:
    def __init__(
        self,
        ledger: Ledger,
        pool: WorkerPool,
        *,
        metrics: Metrics | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        only: set[int] | None = None,
        nightlog_dir: Path | None = None,
    ):
        self.ledger = ledger
        #: paths.nightlog: the night's log file is rewritten after each delivery
        self.nightlog_dir = nightlog_dir
        self.only = only
        self.pool = pool
        self.metrics = metrics
        self.max_attempts = max_attempts
        self.busy: dict[int, Row] = {}
        #: rows whose raw file could not be read, held (still 'processing') until
        #: their re-read, a few times (destinations that refuse wait in the ledger)
        self.waiting: dict[int, tuple[float, str]] = {}
        self.accepting = True
        self.delivered = 0
        self.failed = 0

    def fill(self) -> int:
        """Give every idle worker the oldest queued file nobody else has."""
        if not self.accepting:
            return 0
        self._requeue_due()
        rows = self.ledger.claim({r.path for r in self.busy.values()}, self.pool.idle, self.only)
        sent = 0
        for row in rows:
            if not self.pool.submit(Job(row.id, row.path)):
                # the worker died before the job reached it: back to the queue, no attempt counted
                self.ledger.release(row.id)
                log.warning("%s: no worker could take it now; it stays queued", row.name)
                continue
            self.busy[row.id] = row
            sent += 1
            log.debug("%s: to a worker (attempt %d)", row.name, row.attempts)
        return sent

    def pump(self, timeout: float, extra: Iterable[Any] = ()) -> list[Row]:
        """Wait up to ``timeout`` for outcomes (or ``extra`` fds), record them, refill."""
        finished = [self.record(o) for o in self.pool.wait(timeout, extra)]
        self.fill()
        return finished

    def record(self, outcome: Outcome) -> Row:
        after = self._record(outcome)
        forget_published(Path(self.ledger.path).parent, outcome.job.id)
        return after

    def _night_log(self, row: Row, entry: nightlog.Entry | None) -> None:
        """Store the delivered file's night-log line and rewrite the night's log: never fatal."""
        if entry is None:
            return
        try:
            nightlog.update(self.ledger, self.nightlog_dir, entry)
        except Exception as exc:  # the file is delivered; the log catches up at the next delivery
            log.warning("%s: night log not updated: %s: %s", row.name, type(exc).__name__, exc)
            record_metric(self.metrics, lambda m: m.warned("nightlog", 1))

    def _record(self, outcome: Outcome) -> Row:
        if outcome.died is not None and (
            note := read_published(Path(self.ledger.path).parent, outcome.job.id)
        ):
            # it died after publishing, before its result arrived: delivered, not to be redone
            log.warning("%s: %s after publishing it", outcome.job.path, outcome.died)
            outcome = Outcome(outcome.job, result=note)
        row = self.busy.pop(outcome.job.id, None) or self.ledger.row(outcome.job.id)
        if outcome.died is not None:
            after = self.ledger.retry_or_fail(outcome.job.id, outcome.died, self.max_attempts)
            if after.state == FAILED:
                self.failed += 1
                log.error("FAILED %s: %s", after.path, after.reason)
                channel = after.channel or after.name
                record_metric(self.metrics, lambda m: m.failed(channel, "worker"))
            else:
                log.warning("%s: %s; it will be processed again", after.name, outcome.died)
            return after
        res = outcome.result if outcome.result is not None else Result(source=Path(outcome.job.path))
        seconds = res.seconds
        warnings = list(res.warnings)
        if res.ok:
            after = self.ledger.delivered(
                outcome.job.id,
                name=res.name,
                outputs=res.outputs,
                channel=res.channel,
                warnings=warnings,
                seconds=seconds,
                date_obs=res.date_obs,
            )
            self.delivered += 1
            log.info("%s", delivered_line(after, res))
            if after.waiting_since is not None:
                log.info(
                    "%s: delivered after waiting %.0f s for a destination",
                    after.name,
                    (after.finished_at or 0) - after.waiting_since,
                )
            woken = self.ledger.requeue_waiting() if self.only is None else 0
            if woken:
                log.info("a destination accepts files again: %d waiting file(s) queued", woken)
            self._night_log(after, res.log)
            channel, latency = after.channel or after.name, after.latency or 0.0
            record_metric(self.metrics, lambda m: m.delivered(channel, latency, seconds))
            by_step = _warnings_by_step(warnings)

            def warned(m: Metrics) -> None:
                for step, count in by_step.items():
                    m.warned(step, count)

            record_metric(self.metrics, warned)
            return after
        reason = res.error or f"{row.path if row else outcome.job.path}: not delivered (no reason given)"
        attempts = row.attempts if row else 1
        if res.raw_io_error and attempts < self.max_attempts:
            # reading the raw file failed (EIO, ESTALE, cut while read): not the
            # destinations' fault and maybe not the file's; read it again shortly,
            # a few times (the gate sees a rewritten file as new content anyway)
            delay = retry_delay(attempts)
            self.waiting[outcome.job.id] = (time.monotonic() + delay, reason)
            log.warning(
                "%s; the raw file will be read again in %.0f s (attempt %d of %d)",
                reason,
                delay,
                attempts,
                self.max_attempts,
            )
            current = self.ledger.row(outcome.job.id) or row
            assert current is not None  # a dispatched row stays in the ledger
            return current
        if res.retryable:
            delay = retry_delay(attempts)
            before = self.ledger.row(outcome.job.id)
            after = self.ledger.wait_for_destination(outcome.job.id, reason, time.time() + delay)
            # one warning when a file starts waiting; its retries are debug lines
            # (a night-long outage must not flood the journal); status shows it all
            first = before is None or before.waiting_since is None
            log.log(
                logging.WARNING if first else logging.DEBUG,
                "%s; waiting for the destination, trying again in %.0f s (attempt %d; see modsingest status)",
                reason,
                delay,
                attempts,
            )
            channel = after.channel or after.name
            record_metric(self.metrics, lambda m: m.publish_retry(channel))
            return after
        after = self.ledger.failed(outcome.job.id, reason, seconds=seconds, warnings=warnings)
        self.failed += 1
        log.error("FAILED %s", reason)
        channel, stage = after.channel or after.name, res.stage or "process"
        record_metric(self.metrics, lambda m: m.failed(channel, stage, seconds))
        return after

    def _requeue_due(self) -> None:
        """Rows whose retry time has come go back to the queue (attempts kept)."""
        now = time.monotonic()
        for row_id, (due, reason) in list(self.waiting.items()):
            if due <= now:
                del self.waiting[row_id]
                self.ledger.requeue(row_id, reason)
        if self.only is None:  # a replay without the service leaves waiting files to the service
            self.ledger.requeue_waiting(due_by=time.time())  # destinations: their retry time has come

    def shutdown(self, deadline: float) -> list[Row]:
        """Take no new files; let busy ones finish until ``deadline`` (monotonic).

        What is still running then is abandoned cleanly: the worker is killed (its
        temporary files are hidden and removed at the next start) and the row goes
        back to ``queued`` so the next start redoes it.  Returns the abandoned rows.
        """
        self.accepting = False
        while self.busy and time.monotonic() < deadline:
            for o in self.pool.wait(min(0.5, max(0.0, deadline - time.monotonic()))):
                self.record(o)
        lost = self.pool.stop(timeout=1.0)
        for row_id in list(self.waiting):
            del self.waiting[row_id]
            self.ledger.release(row_id)  # retried at the next start
        abandoned = []
        for job in lost:
            row = self.busy.pop(job.id, None)
            self.ledger.release(job.id)
            log.warning(
                "%s: abandoned at shutdown; it will be processed at the next start",
                row.name if row else job.path,
            )
            if row:
                abandoned.append(row)
        return abandoned


def adopt_published(ledger: Ledger) -> list[Row]:
    """Start-up, before ``ledger.recover``: deliveries a killed run did not record.

    A worker notes each file it published (``workers.note_published``) before it
    sends its result; a row still ``processing`` with such a note was delivered,
    and is recorded so instead of being published a second time.
    """
    adopted = []
    for job_id, res in sorted(take_published(Path(ledger.path).parent).items()):
        row = ledger.row(job_id)
        if row is None or row.state != PROCESSING:
            continue  # the outcome was recorded before the run ended
        after = ledger.delivered(
            job_id,
            name=res.name,
            outputs=res.outputs,
            channel=res.channel,
            warnings=list(res.warnings),
            seconds=res.seconds,
            date_obs=res.date_obs,
        )
        log.info("%s (published as the last run ended; recorded now)", delivered_line(after, res))
        if res.log is not None:  # its night's log file is rewritten at that night's next delivery
            ledger.record_log(res.log)
        adopted.append(after)
    return adopted


def delivered_line(row: Row, res: Result) -> str:
    """The one log line per delivered file: name, channel, steps, warnings, latency."""
    name = row.delivered_as or row.name
    what = row.name if name == row.name else f"{row.name} as {name}"
    steps = ",".join(res.steps) or "none"
    timing = f" in {res.seconds:.2f} s"
    if row.latency is not None:
        timing += f", latency {row.latency:.1f} s"
    text = f"delivered {what} ({row.channel or 'no channel'}){timing}, steps {steps}"
    warnings = res.warnings
    if warnings:
        text += f"; {len(warnings)} warning(s): " + " | ".join(warnings)
    return text


def _warnings_by_step(warnings: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for w in warnings:
        step = w.split(":", 1)[0].strip() if ":" in w else "other"
        counts[step] = counts.get(step, 0) + 1
    return counts
