"""``modsingest process --config CFG FILE...``: process and publish once.

Every file is attempted: a file that is truncated, empty or not FITS gets one
line on standard error naming it and the problem, and the others in the same
call are still delivered.  Exit status 0 when all were delivered, 1 when any
was not, 2 for a configuration problem.

Output: one line per delivered file on standard output, with its warnings (each
warning once, here and nowhere else); failures on standard error.  ``-q``: the
failures only, nothing else (no log lines either).
"""

from __future__ import annotations

import argparse
import sys

from modsingest.commands import CONFIG_ERROR, load_settings, log_steps
from modsingest.logsetup import setup_logging


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML configuration file")
    parser.add_argument("files", nargs="+", metavar="FILE", help="raw MODS FITS files")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="print failures only (no delivered lines, no warnings)"
    )


def command(args: argparse.Namespace) -> int:
    from modsingest.config import ConfigError

    settings = load_settings(args.config)
    if settings is None:
        return CONFIG_ERROR
    setup_logging("error" if args.quiet else settings.log_level)
    log_steps(settings, "modsingest.process")
    from modsingest.processing.pipeline import Pipeline

    try:
        pipeline = Pipeline(settings)
    except ConfigError as exc:
        print(f"modsingest: {exc}", file=sys.stderr)
        return 2
    failed = 0
    ledger = None
    for name in args.files:
        result = pipeline.process(name)
        if result.ok:
            ledger = _night_log(settings, ledger, result)
            if not args.quiet:
                print(result.summary())
        else:
            failed += 1
            print(f"modsingest: {result.error}", file=sys.stderr)
    if ledger is not None:
        ledger.close()
    if failed:
        print(f"modsingest: {failed} of {len(args.files)} file(s) not delivered", file=sys.stderr)
        return 1
    return 0


def _night_log(settings, ledger, result):
    """The delivered file's night-log line into the ledger and the night's log file.

    ``process`` writes no file rows (the service owns them) but keeps the night
    log as the service does.  A problem here is a warning: the file is delivered.
    """
    from modsingest import nightlog

    if result.log is None:
        return ledger
    try:
        if ledger is None:
            from modsingest.service.ledger import Ledger

            ledger = Ledger(settings.paths.state)
        nightlog.update(ledger, settings.paths.nightlog, result.log)
    except Exception as exc:
        print(
            f"modsingest: {result.name}: night log not updated: {type(exc).__name__}: {exc}", file=sys.stderr
        )
    return ledger
