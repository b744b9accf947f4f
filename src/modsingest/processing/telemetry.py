"""Reading telemetry sources (guider, WFS, weather) for the ``telemetry`` step.

Steps do no I/O, so the files are read here, in the worker, before the steps
run: ``TelemetryReader.read(primary, name)`` works out the exposure's time
window from the raw header, reads each configured source of that night, keeps
the rows inside the window, and returns plain data (``Telemetry``: one
``Table`` of numpy columns per source, plus the problems met).  The pipeline
hands it to the step in ``StepContext.telemetry``; the step only turns tables
into BINTABLE extensions.  Nothing here raises for a source's problem: a
missing, unreadable or short source is a line in ``Telemetry.problems``, which
the step returns as warnings (log and HISTORY), and the file is delivered.

Cost on the hot path: a night's file is parsed once per worker and kept; when
it has grown (telemetry is appended during the night) only the new complete
lines are parsed (CSV, JSON lines), or the dataset is read again (HDF5, one
bulk read).  Selecting the window is a binary search in the sorted times.
With no source configured the pipeline never builds a reader.

Waiting: a source not yet written up to the end of the window is read again
until it is, or until ``telemetry.wait`` seconds (default 0: never wait) have
passed for the file as a whole; then what is there is attached with a
warning.  Data that arrives later is attached by ``modsingest replay``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from modsingest import names
from modsingest.config import TelemetrySettings, TelemetrySource
from modsingest.processing.headerval import start_of_exposure

MJD_UNIX_EPOCH = 40587.0  # MJD of 1970-01-01T00:00:00 UTC
#: seconds between looks at a source not yet written to the end of the window
POLL = 0.25
#: longest line read from a text source; a longer one is a problem, not a hang
MAX_LINE = 1 << 16


@dataclass(frozen=True)
class Table:
    """The rows of one source inside the window: columns in order, time column first."""

    name: str  # EXTNAME: GUIDER, WFS, WEATHER...
    source: str  # the file read
    columns: tuple[tuple[str, np.ndarray, str], ...]  # (name, values, unit)

    @property
    def rows(self) -> int:
        return len(self.columns[0][1]) if self.columns else 0


@dataclass(frozen=True)
class Telemetry:
    """What the telemetry step gets: tables and problems, no I/O left to do."""

    window: tuple[float, float] | None  # Unix seconds, margins included
    tables: tuple[Table, ...] = ()
    problems: tuple[str, ...] = ()


def exposure_window(primary, margin: float) -> tuple[float, float] | str:
    """(start - margin, start + EXPTIME + margin) in Unix seconds, or why there is none.

    The start is the header's own (DATE-OBS with UTC-OBS/TIME-OBS/UT in a raw
    file, the ISO DATE-OBS of a processed one), read by the same rule as the
    archive step's UNIQNAME.
    """
    start, problem = start_of_exposure(primary)
    if start is None:
        return f"no exposure start ({problem})"
    exptime = primary.get("EXPTIME")
    if isinstance(exptime, bool) or not isinstance(exptime, (int, float)) or not math.isfinite(exptime):
        return f"EXPTIME = {exptime!r} is not a number of seconds"
    t0 = start.replace(tzinfo=UTC).timestamp()
    return t0 - margin, t0 + max(0.0, float(exptime)) + margin


def parse_times(values: list, kind: str) -> np.ndarray:
    """Times as Unix seconds (float64); an unreadable one is NaN."""
    out = np.full(len(values), np.nan)
    for i, value in enumerate(values):
        try:
            if kind == "iso":
                stamp = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
                if stamp.tzinfo is None:
                    stamp = stamp.replace(tzinfo=UTC)
                out[i] = stamp.timestamp()
            elif kind == "unix":
                out[i] = float(value)
            else:  # mjd
                out[i] = (float(value) - MJD_UNIX_EPOCH) * 86400.0
        except (TypeError, ValueError):
            pass
    return out


def iso(unix: float) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=unix)).strftime("%Y-%m-%dT%H:%M:%S")


@dataclass
class _Loaded:
    """A source file as read so far (kept per worker between files)."""

    ident: tuple[int, int, int]  # (inode, size, mtime_ns) when last read
    offset: int = 0  # bytes parsed (text sources: up to the last complete line)
    header: list[str] | None = None  # CSV column names
    times: list[float] = field(default_factory=list)
    cells: dict[str, list] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    sorted_times: np.ndarray | None = None  # ``times`` as an array, rows in time order (cached)


class TelemetryReader:
    """Reads the configured sources for one file at a time; keeps parsed nights."""

    def __init__(
        self,
        settings: TelemetrySettings,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.settings = settings
        self.clock = clock
        self.sleep = sleep
        self._cache: dict[str, _Loaded] = {}

    def read(self, primary, name: str) -> Telemetry:
        window = exposure_window(primary, self.settings.margin)
        if isinstance(window, str):
            return Telemetry(None, (), (f"no telemetry attached: {window}",))
        night = names.night_of(name, window[0] + self.settings.margin)
        deadline = self.clock() + self.settings.wait
        tables, problems = [], []
        for source in self.settings.sources:
            table, problem = self._source(source, night, window, deadline)
            if table is not None:
                tables.append(table)
            if problem:
                problems.append(f"{source.name}: {problem}")
        return Telemetry(window, tuple(tables), tuple(problems))

    def preload(self, night: str) -> int:
        """Parse the sources of ``night`` that exist now, so the first file does not wait on it.

        A worker starting mid-night would otherwise make its first file pay for
        parsing the whole night so far.  Missing or unreadable sources are left
        for ``read`` to report; returns how many were loaded.
        """
        loaded = 0
        for source in self.settings.sources:
            got, _ = self._load(source, source.path.replace("{night}", night))
            loaded += got is not None
        return loaded

    def _source(self, source: TelemetrySource, night: str, window, deadline: float):
        path = source.path.replace("{night}", night)
        # bounded twice: by the clock, and by a count of looks (a clock that stalls cannot hang a worker)
        polls = int(math.ceil(self.settings.wait / POLL)) + 1
        for poll in range(polls):
            loaded, problem = self._load(source, path)
            final = poll == polls - 1 or self.clock() >= deadline
            if loaded is not None:
                times = _sorted_times(loaded)
                last = float(times[-1]) if len(times) else -math.inf
                if last >= window[1] or final:
                    break
            elif final:
                return None, problem
            self.sleep(min(POLL, max(0.0, deadline - self.clock())))
        if loaded is None:  # the last look either broke out with data or returned
            return None, problem
        lo, hi = np.searchsorted(times, window[0], "left"), np.searchsorted(times, window[1], "right")
        # only the rows in the window become arrays: a night's file is long, an exposure short
        unit = _TIME_UNITS[source.time_format]
        cols = [(source.time_column, _column(loaded.cells[source.time_column][lo:hi]), unit)]
        wanted = source.columns or tuple((c, "") for c in loaded.cells if c != source.time_column)
        notes = list(loaded.problems)
        for column, unit in wanted:
            if column not in loaded.cells:
                notes.append(f"no column {column!r} in {path}")
                continue
            cols.append((column, _column(loaded.cells[column][lo:hi]), unit))
        if last < window[1]:
            upto = iso(last) if math.isfinite(last) else "nothing yet"
            notes.append(
                f"{path} written up to {upto}, the exposure window ends {iso(window[1])}: attached what is there"
            )
        if hi == lo:
            notes.append(f"no rows between {iso(window[0])} and {iso(window[1])} in {path}")
        return Table(source.name, path, tuple(cols)), "; ".join(notes) or None

    def _load(self, source: TelemetrySource, path: str) -> tuple[_Loaded | None, str | None]:
        """The file as parsed up to now (reading only what is new), or (None, why not)."""
        try:
            st = os.stat(path)
        except OSError as exc:
            return None, f"{path}: {exc.strerror or exc}: not attached"
        ident = (st.st_ino, st.st_size, st.st_mtime_ns)
        cached = self._cache.get(path)
        if cached is not None and cached.ident == ident:
            return cached, None
        try:
            if source.format == "hdf5":
                loaded = _read_hdf5(source, path, ident)
            else:
                same_file = (
                    cached is not None and cached.ident[0] == st.st_ino and st.st_size >= cached.offset
                )
                loaded = cached if cached is not None and same_file else _Loaded(ident)
                _read_text(source, path, loaded)
                loaded.ident = ident
        except Exception as exc:  # an unreadable source is a warning, never a failure
            self._cache.pop(path, None)
            return None, f"{path} unreadable: {type(exc).__name__}: {exc}: not attached"
        if source.time_column not in loaded.cells:
            return None, f"{path} has no time column {source.time_column!r}: not attached"
        self._cache[path] = loaded
        return loaded, None


def _sorted_times(loaded: _Loaded) -> np.ndarray:
    """The times as an array, rows in time order.

    Telemetry is appended in time order, so the array made for the previous
    file is extended by the new rows (a copy of 8 bytes a row, not a new array
    from 50 000 Python floats); rows written out of order are sorted once.
    """
    have = 0 if loaded.sorted_times is None else len(loaded.sorted_times)
    if loaded.sorted_times is not None and have == len(loaded.times):
        return loaded.sorted_times
    new = np.asarray(loaded.times[have:], dtype=np.float64)
    times = new if have == 0 else np.concatenate([loaded.sorted_times, new])
    if len(times) > 1 and np.any(np.diff(times[max(0, have - 1) :]) < 0):
        order = np.argsort(times, kind="stable")
        times = times[order]
        for key, values in loaded.cells.items():
            loaded.cells[key] = [values[i] for i in order]
        loaded.times = times.tolist()
    loaded.sorted_times = times
    return times


_TIME_UNITS = {"iso": "", "unix": "s", "mjd": "d"}


def _column(values: list) -> np.ndarray:
    """Numbers as float64, anything else as fixed-width ASCII bytes."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.float64)
    numbers = []
    for v in values:
        try:
            numbers.append(float(v))
        except (TypeError, ValueError):
            break
    else:
        return np.asarray(numbers, dtype=np.float64)
    return np.asarray([str(v).encode("ascii", "replace") for v in values], dtype=bytes)


def _read_text(source: TelemetrySource, path: str, loaded: _Loaded) -> None:
    """Parse the complete lines after ``loaded.offset`` (CSV with a header row, or JSON lines)."""
    with open(path, "rb") as fh:
        fh.seek(loaded.offset)
        chunk = fh.read()
    end = chunk.rfind(b"\n") + 1  # a line being written is left for next time
    if end == 0:
        return
    text = chunk[:end].decode("utf-8", "replace")
    lines = text.splitlines()
    if source.format == "csv":
        rows = csv.reader(io.StringIO(text))
        if loaded.header is None:
            loaded.header = [h.strip() for h in next(rows, [])]
            loaded.cells = {h: [] for h in loaded.header}
        new: list[tuple[list[str] | None, dict | None]] = [(row, None) for row in rows if row]
    else:
        new = []
        for number, line in enumerate(lines):
            if not line.strip():
                continue
            if len(line) > MAX_LINE:
                loaded.problems.append(f"line longer than {MAX_LINE} bytes skipped")
                continue
            try:
                record = json.loads(line)
            except ValueError:
                loaded.problems.append(f"line {number + 1} after byte {loaded.offset} is not JSON: skipped")
                continue
            if isinstance(record, dict):
                new.append((None, record))
    _append(source, loaded, new)
    loaded.offset += end


def _append(source: TelemetrySource, loaded: _Loaded, new: list) -> None:
    if not new:
        return
    keys = list(loaded.cells)
    if loaded.header is None:  # JSON lines: the first record's keys are the columns
        for _, record in new:
            for key in record:
                if key not in loaded.cells:
                    loaded.cells[key] = [None] * len(loaded.times)
        keys = list(loaded.cells)
    raw_times = []
    for row, record in new:
        if row is not None:
            values = dict(zip(loaded.header or [], row))
        else:
            values = record
        for key in keys:
            loaded.cells[key].append(_cell(values.get(key)))
        raw_times.append(values.get(source.time_column))
    times = parse_times(raw_times, source.time_format)
    loaded.times.extend(times.tolist())
    bad = int(np.isnan(times).sum())
    if bad:
        loaded.problems.append(f"{bad} row(s) with an unreadable time left out")
        keep = [i for i, t in enumerate(loaded.times) if not math.isnan(t)]
        loaded.times = [loaded.times[i] for i in keep]
        for key in keys:
            loaded.cells[key] = [loaded.cells[key][i] for i in keep]


def _cell(value):
    """A CSV or JSON value: a number when it reads as one, else the text."""
    if value is None:
        return math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        return text


def _read_hdf5(source: TelemetrySource, path: str, ident: tuple[int, int, int]) -> _Loaded:
    """A dataset of records (compound type), read in one piece."""
    import h5py  # an optional dependency; config.py refuses an hdf5 source without it

    with h5py.File(path, "r") as f:
        data = f[source.dataset or "/"][()]
    if data.dtype.names is None:
        raise ValueError(f"dataset {source.dataset!r} is not a table of records")
    loaded = _Loaded(ident)
    for key in data.dtype.names:
        column = data[key]
        if column.dtype.kind in "SUO":
            values = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in column]
        else:
            values = column.astype(np.float64).tolist()
        loaded.cells[key] = values
    if source.time_column in loaded.cells:
        times = parse_times(loaded.cells[source.time_column], source.time_format)
        keep = ~np.isnan(times)
        if not keep.all():
            loaded.problems.append(f"{int((~keep).sum())} row(s) with an unreadable time left out")
            for key in loaded.cells:
                loaded.cells[key] = [v for v, k in zip(loaded.cells[key], keep) if k]
        loaded.times = times[keep].tolist()
    return loaded
