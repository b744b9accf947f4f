"""Command line: argument parsing and dispatch only; the work lives in the modules.

(For developers: this docstring is not what ``--help`` shows; ``DESCRIPTION`` is.)

Every subcommand returns an exit status: 0 on success, non-zero with a one-line
reason on standard error otherwise.  Each subcommand module exposes
``configure(parser)`` to declare its arguments and ``command(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from modsingest.version import version_text

#: what ``modsingest --help`` says first: for the people who run it
DESCRIPTION = (
    "modsingest delivers raw MODS exposures: it waits until azcam has finished writing a "
    "file, fixes its headers, adds the MERGED image and publishes it into newdata and the "
    "processed night directory. Run 'modsingest COMMAND --help' for a command's options; "
    "installing and running the service: docs/install.md."
)

#: subcommand -> (module, one-line help)
SUBCOMMANDS = {
    "process": ("modsingest.commands.process", "process and publish raw files once"),
    "watch": ("modsingest.commands.watch", "run the ingest service (what systemd starts)"),
    "replay": ("modsingest.commands.replay", "re-process a night or files through the service's path"),
    "status": ("modsingest.commands.status", "what the service has seen, delivered and failed"),
    "check-config": (
        "modsingest.commands.check_config",
        "check a configuration as 'watch' would at start, without starting",
    ),
    "export": (
        "modsingest.commands.export",
        "write files in the pre-Archon single-image format (PypeIt, modsCCDRed)",
    ),
    "nightlog": (
        "modsingest.commands.nightlog",
        "print a night's log (the observers' columns) from the ledger",
    ),
    "simulate": ("modsingest.commands.simulate", "write azcam-like raw files (for tests and the demo)"),
    "check": (
        "modsingest.commands.check",
        "report what in FITS files does not conform to the keyword dictionary",
    ),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; only the chosen subcommand's module is imported (fast start)."""
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if a in SUBCOMMANDS), None)
    parser = argparse.ArgumentParser(prog="modsingest", description=DESCRIPTION)
    parser.add_argument(
        "--version",
        action="version",
        version=version_text(),
        help="print the version and the git commit it was installed from, and exit",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.configure(p)
            p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return int(args._module.command(args) or 0)
    except KeyboardInterrupt:
        print("modsingest: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
