"""``modsingest status``: arguments and printing of the service's state.

It must work during the outage it is used to look into, so the configuration is
loaded without requiring its directories (``config.load(require_dirs=False)``);
each missing or unusable directory is a problem in the report.
"""

from __future__ import annotations

import argparse
import json
import sys

from modsingest.commands import CONFIG_ERROR, night_arg
from modsingest.config import ConfigError, check_directories, load
from modsingest.service.status import CRITICAL, LEVELS, check, gather, render


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML configuration file")
    parser.add_argument(
        "--night",
        metavar="CCYYMMDD",
        type=night_arg,
        help="this observing night, by the files' date tag (default: the last 24 hours)",
    )
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="machine-readable output")
    out.add_argument(
        "--check",
        action="store_true",
        help="for monitoring (Nagios/Icinga): one line, exit 0 OK, 1 WARNING, 2 CRITICAL",
    )


def command(args: argparse.Namespace) -> int:
    try:
        settings = load(args.config, require_dirs=False)
    except ConfigError as exc:
        if getattr(args, "check", False):
            print(f"MODSINGEST {LEVELS[CRITICAL]} - configuration: {exc}")
            return CRITICAL
        print(f"modsingest: {exc}", file=sys.stderr)
        return CONFIG_ERROR
    report = gather(settings, args.night, directory_problems=check_directories(settings))
    if getattr(args, "check", False):
        level, line = check(report)
        print(line)
        return level
    if args.json:
        level, line = check(report)
        report["check"] = {"level": level, "line": line}  # what --check would say
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(render(report))
    return 0
