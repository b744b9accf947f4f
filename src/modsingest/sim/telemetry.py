"""Simulated telemetry for a simulated night: weather (CSV), guider (JSON lines), WFS (HDF5).

Files are named ``<source>.<CCYYMMDD>.<ext>`` after the observing night, as
the ``{night}`` pattern of ``telemetry.sources[].path`` expects, and cover the
given UTC interval at a fixed cadence with deterministic values (seeded by
the night), so a test knows exactly which rows an exposure gets.  The three
sources use the three time forms a source may use: ISO strings (weather),
Unix seconds (guider) and MJD (WFS).  ``config_text`` is the matching
``telemetry:`` section.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

MJD_UNIX_EPOCH = 40587.0

#: source -> (file pattern, cadence in seconds, format, time column, time form, columns with units)
SOURCES = {
    "WEATHER": ("weather.{night}.csv", 10.0, "csv", "time", "iso",
                (("temperature", "degC"), ("humidity", "%"), ("wind_speed", "m/s"))),
    "GUIDER": ("guider.{night}.jsonl", 1.0, "jsonl", "t", "unix",
               (("fwhm", "arcsec"), ("dx", "arcsec"), ("dy", "arcsec"))),
    "WFS": ("wfs.{night}.h5", 30.0, "hdf5", "mjd", "mjd",
            (("z4", "nm"), ("z5", "nm"), ("z6", "nm"))),
}  # fmt: skip


def _times(start: datetime, end: datetime, cadence: float) -> np.ndarray:
    t0, t1 = start.astimezone(UTC).timestamp(), end.astimezone(UTC).timestamp()
    return np.arange(np.ceil(t0 / cadence) * cadence, t1 + cadence / 2, cadence)


def write_night(
    directory: str | Path,
    night: str,
    start: datetime,
    end: datetime,
    sources: tuple[str, ...] = tuple(SOURCES),
) -> dict[str, Path]:
    """Write the sources' files for ``night`` covering ``start``..``end`` (UTC); {source: path}.

    An HDF5 source is skipped when h5py is not installed (it is optional).
    """
    directory = Path(directory)
    rng = np.random.default_rng(int(night))
    written = {}
    for name in sources:
        pattern, cadence, fmt, time_column, _, columns = SOURCES[name]
        path = directory / pattern.format(night=night)
        t = _times(start, end, cadence)
        values = {c: np.round(rng.normal(1.0 + i, 0.1, len(t)), 4) for i, (c, _) in enumerate(columns)}
        if fmt == "csv":
            lines = [",".join([time_column, *values])]
            for i, ti in enumerate(t):
                stamp = datetime.fromtimestamp(ti, UTC).strftime("%Y-%m-%dT%H:%M:%S")
                lines.append(",".join([stamp, *(f"{values[c][i]:g}" for c in values)]))
            path.write_text("\n".join(lines) + "\n")
        elif fmt == "jsonl":
            with open(path, "w") as fh:
                for i, ti in enumerate(t):
                    fh.write(
                        json.dumps({time_column: float(ti), **{c: float(values[c][i]) for c in values}})
                        + "\n"
                    )
        else:
            try:
                import h5py
            except ImportError:
                continue
            dtype = np.dtype([(time_column, "<f8")] + [(c, "<f4") for c in values])
            records = np.zeros(len(t), dtype=dtype)
            records[time_column] = t / 86400.0 + MJD_UNIX_EPOCH
            for c in values:
                records[c] = values[c]
            with h5py.File(path, "w") as f:
                f.create_dataset(name.lower(), data=records)
        written[name] = path
    return written


def config_text(directory: str | Path, sources: tuple[str, ...] = tuple(SOURCES), margin: float = 0.0) -> str:
    """The ``telemetry:`` configuration section reading what ``write_night`` writes."""
    out = ["telemetry:", f"  margin: {margin:g}", "  sources:"]
    for name in sources:
        pattern, _, fmt, time_column, form, columns = SOURCES[name]
        out += [
            f"    - name: {name}",
            f"      format: {fmt}",
            f"      path: {Path(directory) / pattern}",
            f"      time: {time_column}",
            f"      time_format: {form}",
            "      columns: {" + ", ".join(f"{c}: {json.dumps(u)}" for c, u in columns) + "}",
        ]
        if fmt == "hdf5":
            out.append(f"      dataset: {name.lower()}")
    return "\n".join(out) + "\n"
