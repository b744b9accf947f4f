"""What the service needs of its metrics and of systemd, as typed protocols.

Why protocols: the service, the dispatcher and ``replay`` take these as
optional collaborators (``None``: not wanted), the tests pass recording fakes,
and mypy checks every call against the method it names.  The real ones are
``service.metrics.Metrics`` and ``service.notify.Notifier``.

Neither may stop a delivery: callers guard metric calls (``record_metric``)
and the notifier never raises.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("modsingest.metrics")


class Metrics(Protocol):
    """The events the service counts (``service.metrics.Metrics``)."""

    def delivered(self, channel: str, latency: float, seconds: float) -> None: ...
    def failed(self, channel: str, stage: str = ..., seconds: float | None = ...) -> None: ...
    def incomplete(self, channel: str) -> None: ...
    def warned(self, step: str, count: int = ...) -> None: ...
    def found_by_rescan(self, count: int = ...) -> None: ...
    def set_inotify_blind(self, blind: bool) -> None: ...
    def set_queue_depth(self, n: int) -> None: ...
    def set_workers_busy(self, n: int) -> None: ...
    def publish_retry(self, channel: str) -> None: ...
    def set_waiting(self, n: int, oldest_seconds: float = ...) -> None: ...
    def set_gate_held(self, counts: dict[str, int]) -> None: ...
    def write_textfile(self) -> bool: ...


class Notifier(Protocol):
    """systemd's notification protocol as the service uses it (``service.notify.Notifier``)."""

    def ready(self, status: str | None = ...) -> bool: ...
    def status(self, text: str) -> bool: ...
    def watchdog(self) -> bool: ...
    def stopping(self) -> bool: ...
    def watchdog_interval(self) -> float | None: ...


def record_metric(metrics: Metrics | None, event: Callable[[Metrics], object]) -> None:
    """Call ``event(metrics)`` unless there are none; a failure is logged, never raised.

    Metrics must never be the reason a file is not delivered.
    """
    if metrics is None:
        return
    try:
        event(metrics)
    except Exception as exc:
        log.debug("metrics failed: %s", exc)
