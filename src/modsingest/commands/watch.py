"""``modsingest watch``: the service, as systemd starts it.

Only argument parsing, signal wiring and the metrics endpoint live here; the
service itself is :mod:`modsingest.service.agent`.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from modsingest.commands import load_for_service, log_steps
from modsingest.service.agent import Service, quiet_libraries


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML configuration file")


def command(args: argparse.Namespace) -> int:
    settings = load_for_service(args.config)
    if isinstance(settings, int):
        return settings  # 78: a configuration that cannot work; 2: a directory is missing
    from modsingest.logsetup import setup_logging
    from modsingest.service.metrics import Metrics
    from modsingest.service.notify import Notifier

    setup_logging(settings.log_level)
    quiet_libraries()
    log_steps(settings, "modsingest.service")
    metrics = Metrics(settings.paths.state, port=settings.metrics.port, host=settings.metrics.host)
    try:
        metrics.start_http()
    except OSError as exc:
        print(
            f"modsingest: metrics: cannot serve on {settings.metrics.host}:{settings.metrics.port}: {exc}",
            file=sys.stderr,
        )
        return 2
    service = Service(settings, notifier=Notifier(), metrics=metrics)

    def on_signal(signum: int, _frame: Any) -> None:
        service.request_stop(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        return service.run()
    finally:
        metrics.stop()
