"""``modsingest replay``: arguments and the choice between the running service and a local pool."""

from __future__ import annotations

import argparse
import sys

from modsingest.commands import CONFIG_ERROR, load_settings, log_steps, night_arg
from modsingest.service import ledger
from modsingest.service.replay import dry_run, select, via_service, without_service


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML configuration file")
    parser.add_argument(
        "--night", metavar="CCYYMMDD", type=night_arg, help="every raw file of this observing night"
    )
    parser.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="raw files (paths, or base names looked up in the raw directories)",
    )
    parser.add_argument("--dry-run", action="store_true", help="only list what would be processed")


def command(args: argparse.Namespace) -> int:
    if bool(args.night) == bool(args.files):
        print("modsingest replay: give either --night CCYYMMDD or FILE... (not both)", file=sys.stderr)
        return 2
    # raw directories may be away (an NFS outage): replay what can be reached and
    # name the rest; the destinations and the state directory must be there
    settings = load_settings(args.config, require_dirs=False)
    if settings is None:
        return CONFIG_ERROR
    from modsingest.config import check_directories

    fatal = [p for p in check_directories(settings) if ": paths.raw" not in p]
    for problem in fatal:
        print(f"modsingest: {problem}", file=sys.stderr)
    if fatal:
        return CONFIG_ERROR
    from modsingest.logsetup import setup_logging
    from modsingest.service.agent import quiet_libraries

    setup_logging(settings.log_level)
    quiet_libraries()
    log_steps(settings, "modsingest.replay")
    paths, missing = select(settings, args.night, list(args.files))
    for m in missing:
        print(f"modsingest replay: {m}", file=sys.stderr)
    if not paths:
        print("modsingest replay: no raw files to process", file=sys.stderr)
        return 1 if missing or args.files else 0
    if args.dry_run:
        return dry_run(settings, paths)
    if ledger.service_running(settings.paths.state):
        status = via_service(settings, paths)
    else:
        status = without_service(settings, paths)
    return status if status else (1 if missing else 0)
