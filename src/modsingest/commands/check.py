"""``modsingest check FILE... [--json] [--config CFG | --dictionary YAML]``.

Reports, per file, every header value that does not conform to the keyword
dictionary (the shipped one, the configuration's ``archive.dictionary``, or the
file given with ``--dictionary``): raw or processed files, any number.  A file
that cannot be read is reported and the others are still checked.  Exit status
0 when every file conforms, 1 when any does not, 2 for a configuration or
dictionary problem.
"""

from __future__ import annotations

import argparse
import json
import sys

from modsingest.commands import CONFIG_ERROR, load_settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="FITS files, raw or processed")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", help="use the configuration's archive.dictionary")
    source.add_argument("--dictionary", help="a keyword dictionary YAML file")
    parser.add_argument("--json", action="store_true", help="one JSON document on standard output")


def command(args: argparse.Namespace) -> int:
    from modsingest import keywords

    kd = keywords.shipped()
    if args.config:
        settings = load_settings(args.config)
        if settings is None:
            return CONFIG_ERROR
        kd = settings.keywords or kd
    elif args.dictionary:
        try:
            kd = keywords.load(args.dictionary)
        except keywords.DictionaryError as exc:
            print(f"modsingest: {exc}", file=sys.stderr)
            return CONFIG_ERROR
    from modsingest.processing.conformance import check_file

    reports = [check_file(name, kd) for name in args.files]
    bad = sum(not r.ok for r in reports)
    if args.json:
        doc = {"dictionary": str(kd.source), "files": [r.as_dict() for r in reports], "nonconforming": bad}
        print(json.dumps(doc, indent=2))
    else:
        for report in reports:
            if report.ok:
                print(f"{report.path}: conforms")
                continue
            print(f"{report.path}: {len(report.problems)} problem(s)")
            for problem in report.problems:
                print(f"  {problem.line()}")
        if bad:
            print(
                f"modsingest: {bad} of {len(reports)} file(s) do not conform to {kd.source}", file=sys.stderr
            )
    return 1 if bad else 0
