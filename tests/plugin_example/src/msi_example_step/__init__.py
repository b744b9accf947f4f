"""An example modsingest step from outside the package (see docs/plugins.md)."""


def run(frame, ctx):
    """Write OBSNOTE into the primary header: a visible effect for the test to find."""
    frame.primary["OBSNOTE"] = (f"seen {ctx.source_name}", "written by the example plugin")
    return ["example plugin was here"]


def explode(frame, ctx):
    raise RuntimeError("the example plugin's deliberate failure")
