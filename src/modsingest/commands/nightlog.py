"""``modsingest nightlog --config CFG --night CCYYMMDD [--format txt|csv|json]``.

Prints the night log from the ledger: ``txt`` is the file the service keeps in
``paths.nightlog`` (the observers' fixed-width columns, DATE-OBS order); ``csv``
and ``json`` add the delivered name, size, SHA-256, UNIQNAME, MSIVER and the
warnings.  ``--night`` may be given several times: the nights come out as one
table (one heading, rows in DATE-OBS order), so they concatenate cleanly.
Exit status 0, also for a night with no deliveries (just the heading); 2 for a
configuration problem.
"""

from __future__ import annotations

import argparse
import sys

from modsingest.commands import CONFIG_ERROR, load_settings, night_arg
from modsingest.nightlog import FORMATS, render


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML configuration file")
    parser.add_argument(
        "--night", required=True, action="append", metavar="CCYYMMDD", type=night_arg,
        help="the night (the processed directory's date); repeat for several nights",
    )  # fmt: skip
    parser.add_argument("--format", choices=FORMATS, default="txt", help="txt (default), csv or json")


def command(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if settings is None:
        return CONFIG_ERROR
    from modsingest.service.ledger import open_existing

    ledger = open_existing(settings.paths.state)
    entries = []
    if ledger is not None:
        try:
            entries = ledger.log_entries(dict.fromkeys(args.night))
        finally:
            ledger.close()
    sys.stdout.write(render(entries, args.format))
    return 0
