"""modsingest: the data ingest agent for the LBT MODS spectrographs.

A raw Archon file is noticed, gated until complete, read into a frame model,
passed through configurable processing steps and published atomically.
See ``docs/architecture.md`` for the flow.
"""

__version__ = "0.1.0"
