"""Pieces every subcommand shares: loading the configuration, common argument types.

Every subcommand reports a configuration problem the same way: one line on
standard error (``modsingest: file:line: key: problem``) and exit status 2.
``watch`` is the exception that systemd needs: a configuration that can never
work (a wrong key, value or step name) exits with ``CONFIG_INVALID`` (78,
EX_CONFIG), which the unit's ``RestartPreventExitStatus=`` keeps from being
restarted every 10 s forever; a missing directory (an NFS mount not there yet)
stays 2, so systemd tries again.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import datetime

from modsingest.config import ConfigError, DirectoryMissing, Settings, load

CONFIG_ERROR = 2
#: sysexits.h EX_CONFIG: the configuration is wrong and a restart cannot help
CONFIG_INVALID = 78


def load_settings(path: str, *, require_dirs: bool = True) -> Settings | None:
    """The configuration at ``path``, or None once the one-line reason is printed."""
    try:
        return load(path, require_dirs=require_dirs)
    except ConfigError as exc:
        print(f"modsingest: {exc}", file=sys.stderr)
        return None


def load_for_service(path: str) -> Settings | int:
    """``watch``'s load: the settings, or the exit status once the reason is printed."""
    try:
        return load(path)
    except DirectoryMissing as exc:
        print(f"modsingest: {exc}", file=sys.stderr)
        return CONFIG_ERROR
    except ConfigError as exc:
        print(f"modsingest: {exc}", file=sys.stderr)
        return CONFIG_INVALID


def log_steps(settings: Settings, logger_name: str = "modsingest") -> None:
    """Say which default steps this run leaves out (every run: process, watch, replay).

    A step switched off by mistake delivers files without timestamps or MERGED
    and without any error, so the run says it, and so does every file's header.
    """
    off = settings.default_steps_off
    log = logging.getLogger(logger_name)
    if off:
        log.warning(
            "default step(s) switched off in %s: %s (steps run: %s)",
            settings.source,
            ", ".join(off),
            ",".join(settings.enabled_steps) or "none",
        )
    else:
        log.info("steps: %s", ",".join(settings.enabled_steps))


def night_arg(text: str) -> str:
    """argparse type for an observing night CCYYMMDD."""
    try:
        datetime.strptime(text, "%Y%m%d")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a night CCYYMMDD") from None
    return text
