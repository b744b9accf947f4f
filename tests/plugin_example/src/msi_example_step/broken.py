"""A plugin module that cannot be imported (a missing dependency, as in real life)."""

import msi_example_step_dependency_that_is_not_installed  # noqa: F401


def run(frame, ctx):  # pragma: no cover - never importable
    return []
