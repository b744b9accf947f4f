"""``modsingest status``: arguments and printing of the service's state."""

from __future__ import annotations

import argparse
import json

from modsingest.commands import CONFIG_ERROR, load_settings, night_arg
from modsingest.service.status import gather, render


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML configuration file")
    parser.add_argument(
        "--night",
        metavar="CCYYMMDD",
        type=night_arg,
        help="this observing night, by the files' date tag (default: the last 24 hours)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def command(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if settings is None:
        return CONFIG_ERROR
    report = gather(settings, args.night)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(render(report))
    return 0
