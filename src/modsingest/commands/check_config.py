"""``modsingest check-config CFG``: everything ``watch`` checks at start, without starting.

Run it as the service user (``sudo -u modsingest``), since directories are
checked for what that user may do.  It prints each problem as
``file:line: key: problem`` on standard error and a one-line summary on
standard output; exit status 0 when ``watch`` would start, 2 otherwise.  The
state directory may be missing: systemd's ``StateDirectory=`` makes it at the
first start.  While a service runs on the same state directory its ports are its
own, so they are not checked (the summary says so).
"""

from __future__ import annotations

import argparse
import sys

from modsingest.commands import CONFIG_ERROR


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", metavar="CFG", help="YAML configuration file")
    parser.add_argument("--config", dest="config_opt", metavar="CFG", help="the same, as an option")


def command(args: argparse.Namespace) -> int:
    from modsingest.config import check_all

    path = args.config or args.config_opt
    if not path:
        print(
            "modsingest check-config: give the configuration file: modsingest check-config CFG",
            file=sys.stderr,
        )
        return CONFIG_ERROR
    settings, problems = check_all(path, ports=False)
    note = ""
    if settings is not None:
        problems += _plugin_problems(settings)
        from modsingest.config import check_ports
        from modsingest.service.ledger import service_running

        if settings.paths.state.is_dir() and service_running(settings.paths.state):
            # its ports are in use by itself: checked at its next start, not here
            note = "; a service is running on this state directory, so its ports were not checked"
        else:
            problems += check_ports(settings)
    for problem in problems:
        print(f"modsingest: {problem}", file=sys.stderr)
    if problems:
        print(f"{path}: {len(problems)} problem(s); modsingest watch would not start")
        return CONFIG_ERROR
    assert settings is not None
    off = settings.default_steps_off
    raw = len(settings.paths.raw)
    print(
        f"{path}: ok: {raw} raw director{'y' if raw == 1 else 'ies'}, {settings.watch.method}, "
        f"{settings.workers} worker(s), steps {','.join(settings.enabled_steps) or 'none'}"
        + (f" (default step(s) off: {', '.join(off)})" if off else "")
        + note
    )
    return 0


def _plugin_problems(settings) -> list[str]:
    """Each configured step whose plugin cannot be imported (what a worker would meet at start)."""
    from modsingest.processing.steps import BROKEN, discover

    registry = discover()
    problems = []
    for spec in settings.steps:
        if spec.name in BROKEN:
            problems.append(
                f"{settings.where(f'steps.{spec.name}')}: the step cannot be loaded: {BROKEN[spec.name]}"
            )
        elif spec.name not in registry:
            problems.append(f"{settings.where(f'steps.{spec.name}')}: no such step installed")
    return problems
