"""Pieces every subcommand shares: loading the configuration, common argument types.

Every subcommand reports a configuration problem the same way: one line on
standard error (``modsingest: file:line: key: problem``) and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from modsingest.config import ConfigError, Settings, load

CONFIG_ERROR = 2


def load_settings(path: str) -> Settings | None:
    """The configuration at ``path``, or None once the one-line reason is printed."""
    try:
        return load(path)
    except ConfigError as exc:
        print(f"modsingest: {exc}", file=sys.stderr)
        return None


def night_arg(text: str) -> str:
    """argparse type for an observing night CCYYMMDD."""
    try:
        datetime.strptime(text, "%Y%m%d")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a night CCYYMMDD") from None
    return text
