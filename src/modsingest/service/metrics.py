"""Prometheus metrics: what the service delivered, how fast, and whether it can see.

Two ways out, both optional for the reader:
- ``<state>/modsingest.prom``, rewritten atomically by ``write_textfile()``, for
  node_exporter's textfile collector (no extra port to open on the instrument server);
- an HTTP endpoint on ``metrics.host:metrics.port`` (127.0.0.1 by default) when the
  port is non-zero.

A private ``CollectorRegistry`` is used, not prometheus_client's global one, so tests
and several instances in one process do not collide, and nothing imported by chance
(e.g. process metrics of a library) ends up in the file.

The metrics live in the service's main process: worker processes report back to it,
and the main process calls the methods here.  None of the methods raise on bad
input from the caller's bookkeeping (negative latency, unknown channel): metrics must
never be the reason a file is not delivered.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import start_http_server

from modsingest import fsutil, names

log = logging.getLogger("modsingest.metrics")

TEXTFILE_NAME = "modsingest.prom"

#: the label of any channel that is not one of ``names.ROOTS``, so user-chosen roots
#: (``m1bTest.0001.fits``) cannot create unbounded label values
OTHER_CHANNEL = "other"

#: detection to delivery: a few seconds normally; minutes mean waiting for CONPARS,
#: a backlog, or a file found only by a slow rescan
LATENCY_BUCKETS = (1, 2, 3, 5, 8, 13, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1800, 3600)
#: read, steps, write and publish of one file (a full frame is the slowest case)
PROCESSING_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60, 120)


#: the gate states status shows as "held" (label values; any other state counts as "other")
GATE_STATES = ("incomplete", "waiting_for_conpars", "impossible")


def state_label(state: str) -> str:
    """A gate state's name as a label value: ``waiting for CONPARS`` -> ``waiting_for_conpars``."""
    value = "_".join(str(state).lower().split())
    return value if value in GATE_STATES else "other"


def channel_label(channel: str) -> str:
    """``MODS1B``, ``mods1b`` or a file name's root -> the label value."""
    known = names.channel(str(channel))
    return known.lower() if known else OTHER_CHANNEL


class Metrics:
    """The service's metrics; small named methods, one per event the service knows."""

    def __init__(self, state_dir: str | os.PathLike, port: int = 0, host: str = "127.0.0.1"):
        self.textfile = Path(state_dir) / TEXTFILE_NAME
        self.port = port
        self.host = host
        self.registry = CollectorRegistry(auto_describe=True)
        self._write_lock = threading.Lock()
        self._write_failing = False
        self._http: WSGIServer | None = None
        self._http_thread: threading.Thread | None = None
        self._define()
        self._start_with_zeros()

    def _define(self) -> None:
        r = self.registry
        self._delivered = Counter(
            "modsingest_files_delivered",
            "Files delivered to newdata and processed",
            ["channel"],
            registry=r,
        )
        self._failed = Counter(
            "modsingest_files_failed",
            "Files that could not be delivered, by failing stage",
            ["channel", "stage"],
            registry=r,
        )
        self._incomplete = Counter(
            "modsingest_files_incomplete",
            "Raw files that stayed incomplete past the timeout",
            ["channel"],
            registry=r,
        )
        self._warnings = Counter(
            "modsingest_step_warnings",
            "Warnings raised by processing steps (file still delivered)",
            ["step"],
            registry=r,
        )
        self._found_by_rescan = Counter(
            "modsingest_files_found_by_rescan",
            "Files that only the periodic rescan found (no event, poll hit or UDP request)",
            registry=r,
        )
        self._latency = Histogram(
            "modsingest_delivery_latency_seconds",
            "Time from first detection to delivery",
            ["channel"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._processing = Histogram(
            "modsingest_processing_seconds",
            "Time to read, process, write and publish one file",
            buckets=PROCESSING_BUCKETS,
            registry=r,
        )
        self._last_delivery = Gauge(
            "modsingest_last_delivery_timestamp_seconds",
            "Unix time of the last delivery",
            ["channel"],
            registry=r,
        )
        self._inotify_blind = Gauge(
            "modsingest_inotify_blind",
            "1 when inotify has missed files that polling or rescans found (e.g. on NFS)",
            registry=r,
        )
        self._queue_depth = Gauge("modsingest_queue_depth", "Complete files waiting for a worker", registry=r)
        self._workers_busy = Gauge(
            "modsingest_workers_busy", "Workers processing a file right now", registry=r
        )
        self._start_time = Gauge("modsingest_start_time_seconds", "Unix time the service started", registry=r)
        # the same counts `modsingest status` shows (issue 10): what waits, and why
        self._waiting = Gauge(
            "modsingest_files_waiting_for_destination",
            "Processed files a destination refused (full, away, read-only), tried again until delivered",
            registry=r,
        )
        self._oldest_waiting = Gauge(
            "modsingest_oldest_waiting_for_destination_seconds",
            "How long the longest-waiting file has waited for a destination (0: none waits)",
            registry=r,
        )
        self._publish_retries = Counter(
            "modsingest_publish_retries",
            "Times a destination refused a processed file (each is tried again)",
            ["channel"],
            registry=r,
        )
        self._gate_held = Gauge(
            "modsingest_gate_files",
            "Raw files the gate holds, by why: incomplete so far, waiting for CONPARS, impossible",
            ["state"],
            registry=r,
        )

    def _start_with_zeros(self) -> None:
        """Create every per-channel series at 0, so rates and absence alerts work from
        the first scrape instead of after the first file of each channel."""
        for state in (*GATE_STATES, "other"):
            self._gate_held.labels(state)
        for channel in names.ROOTS:
            self._publish_retries.labels(channel)
            self._delivered.labels(channel)
            self._incomplete.labels(channel)
            self._latency.labels(channel)
        self._start_time.set(time.time())

    # -- events -------------------------------------------------------------

    def delivered(self, channel: str, latency: float, seconds: float) -> None:
        """A file was delivered: ``latency`` since detection, ``seconds`` of processing."""
        label = channel_label(channel)
        self._delivered.labels(label).inc()
        self._latency.labels(label).observe(max(0.0, float(latency)))
        self._processing.observe(max(0.0, float(seconds)))
        self._last_delivery.labels(label).set(time.time())

    def failed(self, channel: str, stage: str = "unknown", seconds: float | None = None) -> None:
        """A file could not be delivered; ``stage`` is where (read, write, publish, ...)."""
        self._failed.labels(channel_label(channel), str(stage) or "unknown").inc()
        if seconds is not None:
            self._processing.observe(max(0.0, float(seconds)))

    def incomplete(self, channel: str) -> None:
        """A raw file stayed incomplete past ``watch.incomplete_timeout``."""
        self._incomplete.labels(channel_label(channel)).inc()

    def warned(self, step: str, count: int = 1) -> None:
        """A step raised ``count`` warnings on a file that was still delivered."""
        if count > 0:
            self._warnings.labels(str(step)).inc(count)

    def found_by_rescan(self, count: int = 1) -> None:
        """The periodic rescan found ``count`` files nothing else had reported."""
        if count > 0:
            self._found_by_rescan.inc(count)

    def set_inotify_blind(self, blind: bool) -> None:
        self._inotify_blind.set(1 if blind else 0)

    def set_queue_depth(self, n: int) -> None:
        self._queue_depth.set(max(0, n))

    def set_workers_busy(self, n: int) -> None:
        self._workers_busy.set(max(0, n))

    def publish_retry(self, channel: str) -> None:
        """A destination refused a processed file; it waits and is tried again."""
        self._publish_retries.labels(channel_label(channel)).inc()

    def set_waiting(self, n: int, oldest_seconds: float = 0.0) -> None:
        """Files waiting for a destination, and how long the first of them has waited."""
        self._waiting.set(max(0, n))
        self._oldest_waiting.set(max(0.0, float(oldest_seconds)) if n else 0.0)

    def set_gate_held(self, counts: dict[str, int]) -> None:
        """What the gate holds, by state ("waiting for CONPARS" -> waiting_for_conpars)."""
        seen = {label: 0 for label in (*GATE_STATES, "other")}
        for state, n in counts.items():
            label = state_label(state)
            seen[label] = seen.get(label, 0) + max(0, int(n))
        for label, n in seen.items():
            self._gate_held.labels(label).set(n)

    # -- output -------------------------------------------------------------

    def exposition(self) -> bytes:
        """The current values in the Prometheus text format."""
        return generate_latest(self.registry)

    def write_textfile(self) -> bool:
        """Replace ``<state>/modsingest.prom`` atomically; False (logged) on failure.

        ``fsutil.atomic_write``, so the textfile collector never reads a half-written
        file (its hidden temporary does not end in ``.prom``); mode 0644 so
        node_exporter, running as another user, can read it.  Not fsynced: it is
        rewritten after every file, and losing it in a power cut loses nothing.
        """
        data = self.exposition()
        with self._write_lock:
            try:
                fsutil.atomic_write(self.textfile.parent, self.textfile.name, [data], durable=False)
            except OSError as exc:
                self._report_write_failure(exc)
                return False
        if self._write_failing:
            log.info("metrics: %s written again", self.textfile)
            self._write_failing = False
        return True

    def _report_write_failure(self, exc: OSError) -> None:
        """Warn on the first failure of a streak only (this runs after every file)."""
        level = logging.DEBUG if self._write_failing else logging.WARNING
        self._write_failing = True
        log.log(level, "metrics: cannot write %s: %s", self.textfile, exc)

    def start_http(self) -> tuple[str, int] | None:
        """Serve ``/metrics`` when ``port`` is non-zero; returns the bound address.

        Raises ``OSError`` when the port cannot be bound, so a configuration mistake
        is seen at start-up.
        """
        if not self.port or self._http is not None:
            return self.http_address
        self._http, self._http_thread = start_http_server(self.port, addr=self.host, registry=self.registry)
        address = self.http_address
        assert address is not None
        log.info("metrics: serving on http://%s:%d/metrics", *address)
        return address

    @property
    def http_address(self) -> tuple[str, int] | None:
        if self._http is None:
            return None
        return str(self._http.server_address[0]), self._http.server_address[1]

    def stop(self) -> None:
        """Stop the HTTP endpoint (if any); the text file stays for the collector."""
        server, thread = self._http, self._http_thread
        self._http = self._http_thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(5.0)
