"""``modsingest export --format legacy|legacy-proc --out DIR FILE...``.

Turns delivered (or raw, or archive-downloaded) MODS files into the pre-Archon
single-image format that PypeIt, modsCCDRed and modsIDL read (docs/formats.md).
Every file is attempted; one that cannot be exported gets one line on standard
error naming it and the reason.  Exit status 0 when all were exported, 1 when
any was not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

FORMATS = ("legacy", "legacy-proc")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format", required=True, choices=FORMATS, help="legacy: raw counts; legacy-proc: bias-subtracted"
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="directory for the exported files (same base names)"
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="MODS FITS files, raw or processed")
    parser.add_argument("-q", "--quiet", action="store_true", help="print failures only")


def command(args: argparse.Namespace) -> int:
    if not args.out.is_dir():
        print(f"modsingest: --out {args.out}: not a directory", file=sys.stderr)
        return 2
    from modsingest.logsetup import setup_logging
    from modsingest.processing.export import ExportError, export_file

    setup_logging("error")  # the steps' warnings are printed below, once per file
    failed = 0
    for name in args.files:
        try:
            done = export_file(name, args.format, args.out)
        except ExportError as exc:
            failed += 1
            print(f"modsingest: {exc}", file=sys.stderr)
            continue
        if not args.quiet:
            warn = f" ({len(done.warnings)} warning(s): {' | '.join(done.warnings)})" if done.warnings else ""
            print(f"exported {done.source} as {done.output}{warn}")
    if failed:
        print(f"modsingest: {failed} of {len(args.files)} file(s) not exported", file=sys.stderr)
        return 1
    return 0
