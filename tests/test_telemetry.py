"""Telemetry tables: the reader (sources, time forms, window, growth, waiting), the step, the config."""

import json
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from conftest import assert_fitsverify_ok
from modsingest.config import ConfigError, TelemetrySettings, TelemetrySource, loads
from modsingest.fits.frame import Frame
from modsingest.processing import telemetry as tm
from modsingest.processing.steps import StepContext
from modsingest.processing.steps import telemetry as step
from modsingest.sim import telemetry as simtel

NIGHT = "20260102"
START = datetime(2026, 1, 2, 4, 0, 0, tzinfo=UTC)  # 04:00:00 UTC, the night of 20260102


def primary(**cards):
    h = fits.Header()
    h["DATE-OBS"] = "2026-01-02"
    h["UTC-OBS"] = "04:00:00.000"
    h["EXPTIME"] = 60.0
    for k, v in cards.items():
        h[k.replace("_", "-")] = v
    return h


@pytest.fixture
def night(tmp_path):
    simtel.write_night(
        tmp_path, NIGHT, datetime(2026, 1, 2, 1, tzinfo=UTC), datetime(2026, 1, 2, 13, tzinfo=UTC)
    )
    return tmp_path


def settings_for(directory, margin=5.0, wait=0.0, sources=tuple(simtel.SOURCES)):
    text = "paths: {raw: [r], newdata: n, processed: p, state: s}\n" + simtel.config_text(
        directory, sources, margin
    )
    parsed = loads(text, Path(directory) / "x.yaml", require_dirs=False).telemetry
    return TelemetrySettings(parsed.sources, margin, wait)


def read(settings, header=None, name=f"mods1b.{NIGHT}.0001.fits", **kw):
    return tm.TelemetryReader(settings, **kw).read(header if header is not None else primary(), name)


def test_each_source_gives_the_rows_of_the_exposure_window(night):
    tel = read(settings_for(night))
    assert tel.problems == ()
    assert tel.window == (START.timestamp() - 5, START.timestamp() + 65)
    by_name = {t.name: t for t in tel.tables}
    assert list(by_name) == ["WEATHER", "GUIDER", "WFS"]
    # weather every 10 s (ISO): 04:00:00 .. 04:01:00; guider every 1 s (Unix): 03:59:55 .. 04:01:05;
    # WFS every 30 s (MJD): 04:00:00, 04:00:30, 04:01:00
    assert [t.rows for t in tel.tables] == [7, 71, 3]
    weather = by_name["WEATHER"]
    assert [(c, u) for c, _, u in weather.columns] == [
        ("time", ""),
        ("temperature", "degC"),
        ("humidity", "%"),
        ("wind_speed", "m/s"),
    ]
    assert (
        weather.columns[0][1][0] == b"2026-01-02T04:00:00"
        and weather.columns[0][1][-1] == b"2026-01-02T04:01:00"
    )
    assert weather.source == str(night / f"weather.{NIGHT}.csv")
    guider_t = by_name["GUIDER"].columns[0][1]
    assert guider_t[0] == START.timestamp() - 5 and guider_t[-1] == START.timestamp() + 65
    mjd = by_name["WFS"].columns[0][1]
    assert np.allclose((mjd - 40587.0) * 86400.0, [START.timestamp() + s for s in (0, 30, 60)], atol=1e-4)
    assert by_name["WFS"].columns[1][2] == "nm"


def test_a_processed_header_gives_the_same_window(night):
    raw = read(settings_for(night))
    processed = read(settings_for(night), primary(DATE_OBS="2026-01-02T04:00:00.000"))
    assert processed.window == raw.window and [t.rows for t in processed.tables] == [7, 71, 3]


def test_times_are_read_in_every_form():
    unix = START.timestamp()
    assert tm.parse_times(["2026-01-02T04:00:00", "2026-01-02T04:00:00Z", "junk"], "iso")[:2].tolist() == [
        unix,
        unix,
    ]
    assert np.isnan(tm.parse_times(["junk"], "iso")[0])
    assert tm.parse_times([unix, str(unix)], "unix").tolist() == [unix, unix]
    assert tm.parse_times([61042.0 + 4 / 24], "mjd")[0] == pytest.approx(unix, abs=1e-4)


def test_missing_and_unreadable_sources_are_problems_not_failures(night):
    (night / f"guider.{NIGHT}.jsonl").unlink()
    (night / f"wfs.{NIGHT}.h5").write_bytes(b"not hdf5")
    tel = read(settings_for(night))
    assert [t.name for t in tel.tables] == ["WEATHER"]
    assert tel.problems[0] == f"GUIDER: {night}/guider.{NIGHT}.jsonl: No such file or directory: not attached"
    assert tel.problems[1].startswith(f"WFS: {night}/wfs.{NIGHT}.h5 unreadable: ")
    assert tel.problems[1].endswith(": not attached")


def test_no_usable_start_attaches_nothing_and_says_why(night):
    tel = read(settings_for(night), primary(EXPTIME="long"))
    assert tel.tables == () and tel.problems == (
        "no telemetry attached: EXPTIME = 'long' is not a number of seconds",
    )


def cut_weather(night, last="04:00:30"):
    path = night / f"weather.{NIGHT}.csv"
    lines = path.read_text().splitlines(keepends=True)
    keep = [line for line in lines if line[11:19] <= last or line.startswith("time")]
    rest = lines[len(keep) :]
    path.write_text("".join(keep))
    return path, rest


def test_a_source_not_written_to_the_end_is_attached_as_far_as_it_goes(night):
    cut_weather(night)
    tel = read(settings_for(night, sources=("WEATHER",)))
    assert [t.rows for t in tel.tables] == [4]
    assert tel.problems == (
        f"WEATHER: {night}/weather.{NIGHT}.csv written up to 2026-01-02T04:00:30, the exposure window "
        "ends 2026-01-02T04:01:05: attached what is there",
    )


def test_waiting_for_a_late_source_is_bounded_and_picks_up_what_arrives(night):
    path, rest = cut_weather(night)
    clock = {"now": 0.0}
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        clock["now"] += seconds
        if len(slept) == 3:  # the rest of the night arrives while we wait
            with open(path, "a") as fh:
                fh.writelines(rest)

    tel = read(settings_for(night, wait=2.0, sources=("WEATHER",)), clock=lambda: clock["now"], sleep=sleep)
    assert tel.problems == () and [t.rows for t in tel.tables] == [7]
    assert slept == [0.25, 0.25, 0.25]

    cut_weather(night)
    clock["now"], slept[:] = 0.0, []
    tel = read(
        settings_for(night, wait=1.0, sources=("WEATHER",)), clock=lambda: clock["now"], sleep=slept.append
    )
    assert [t.rows for t in tel.tables] == [4] and "attached what is there" in tel.problems[0]
    assert slept == [0.25] * 4  # the clock stood still: the count of looks bounds it (wait / 0.25)
    clock["now"] = 0.0

    def tick(seconds):
        slept.append(seconds)
        clock["now"] += seconds

    slept[:] = []
    read(settings_for(night, wait=1.0, sources=("WEATHER",)), clock=lambda: clock["now"], sleep=tick)
    assert sum(slept) == pytest.approx(1.0) and len(slept) == 4


def test_default_wait_is_zero_so_delivery_is_never_delayed(night):
    cut_weather(night)
    slept = []
    tel = read(settings_for(night, sources=("WEATHER",)), sleep=slept.append)
    assert slept == [] and [t.rows for t in tel.tables] == [4]


def test_a_growing_file_is_read_incrementally_and_a_partial_line_waits(night):
    path, rest = cut_weather(night)
    reader = tm.TelemetryReader(settings_for(night, sources=("WEATHER",)))
    assert [t.rows for t in reader.read(primary(), f"mods1b.{NIGHT}.0001.fits").tables] == [4]
    offset = reader._cache[str(path)].offset
    assert offset == path.stat().st_size
    with open(path, "a") as fh:
        fh.write(rest[0] + rest[1][:10])  # one full line and a line being written
    assert [t.rows for t in reader.read(primary(), f"mods1b.{NIGHT}.0001.fits").tables] == [5]
    assert reader._cache[str(path)].offset == offset + len(rest[0])
    with open(path, "a") as fh:
        fh.write(rest[1][10:] + "".join(rest[2:]))
    tel = reader.read(primary(), f"mods1b.{NIGHT}.0001.fits")
    assert [t.rows for t in tel.tables] == [7] and tel.problems == ()


def test_preload_parses_tonights_sources_once_for_the_first_file(night):
    (night / f"wfs.{NIGHT}.h5").unlink()
    reader = tm.TelemetryReader(settings_for(night))
    assert reader.preload(NIGHT) == 2 and reader.preload("20260103") == 0
    weather = reader._cache[str(night / f"weather.{NIGHT}.csv")]
    tel = reader.read(primary(), f"mods1b.{NIGHT}.0001.fits")
    assert reader._cache[str(night / f"weather.{NIGHT}.csv")] is weather  # not read again
    assert [t.rows for t in tel.tables] == [7, 71] and tel.problems[0].startswith("WFS: ")


def test_rows_out_of_order_and_bad_times_are_handled(tmp_path):
    path = tmp_path / f"g.{NIGHT}.jsonl"
    t0 = START.timestamp()
    records = [{"t": t0 + 20, "v": 2}, {"t": t0 + 10, "v": 1}, {"t": "never", "v": 9}, {"t": t0 + 30, "v": 3}]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\nnot json\n")
    source = TelemetrySource("G", "jsonl", str(tmp_path / "g.{night}.jsonl"), "t", "unix", (("v", "V"),))
    tel = read(TelemetrySettings((source,), 0.0, 0.0))
    (table,) = tel.tables
    assert table.columns[0][1].tolist() == [t0 + 10, t0 + 20, t0 + 30]
    assert table.columns[1][1].tolist() == [1.0, 2.0, 3.0] and table.columns[1][2] == "V"
    assert tel.problems == (
        "G: line 5 after byte 0 is not JSON: skipped; 1 row(s) with an unreadable time left out; "
        f"{path} written up to 2026-01-02T04:00:30, the exposure window ends 2026-01-02T04:01:00: "
        "attached what is there",
    )


# --------------------------------------------------------------------------- the step
def frame():
    return Frame(path=Path(f"mods1b.{NIGHT}.0001.fits"), primary=primary(), amps=[])


def test_the_step_lays_tables_out_as_bintables_with_units_and_source(night):
    f = frame()
    tel = read(settings_for(night))
    assert step.run(f, StepContext(f.name, telemetry=tel)) == []
    assert f.primary["TELTABS"] == "WEATHER(7),GUIDER(71),WFS(3)"
    assert [t.header["EXTNAME"] for t in f.tables] == ["WEATHER", "GUIDER", "WFS"]
    weather = f.tables[0].header
    assert [weather[f"TFORM{i}"] for i in range(1, 5)] == ["19A", "D", "D", "D"]
    assert [weather.get(f"TUNIT{i}") for i in range(1, 5)] == [None, "degC", "%", "m/s"]
    assert weather["NAXIS1"] == 19 + 3 * 8 and weather["NAXIS2"] == 7
    assert weather["TELSRC"] == str(night / f"weather.{NIGHT}.csv")
    assert (weather["TELBEG"], weather["TELEND"]) == ("2026-01-02T03:59:55", "2026-01-02T04:01:05")
    # astropy reads the same rows back
    assert len(bytes(f.tables[0].block)) % 2880 == 0
    hdu = fits.BinTableHDU.fromstring(weather.tostring().encode() + bytes(f.tables[0].block))
    assert hdu.data["time"].tolist()[0] == "2026-01-02T04:00:00"
    assert hdu.data["temperature"].tolist() == tel.tables[0].columns[1][1].tolist()
    # run again (a replay): replaced, not appended
    step.run(f, StepContext(f.name, telemetry=tel))
    assert [t.header["EXTNAME"] for t in f.tables] == ["WEATHER", "GUIDER", "WFS"]


def test_the_step_returns_the_readers_problems_and_says_when_nothing_is_configured(night):
    (night / f"guider.{NIGHT}.jsonl").unlink()
    f = frame()
    tel = read(settings_for(night, sources=("GUIDER",)))
    warnings_ = step.run(f, StepContext(f.name, telemetry=tel))
    assert warnings_ == [f"GUIDER: {night}/guider.{NIGHT}.jsonl: No such file or directory: not attached"]
    assert f.primary["TELTABS"] == "none" and f.tables == []
    assert step.run(frame(), StepContext(f.name)) == ["no telemetry source configured: nothing attached"]


# --------------------------------------------------------------------------- end to end
def configure(layout, night, margin=5.0, sources=tuple(simtel.SOURCES), steps="{telemetry: yes}"):
    config = layout["config"]
    config.write_text(config.read_text() + f"steps: {steps}\n" + simtel.config_text(night, sources, margin))
    return config


def test_processed_file_has_the_tables_after_merged_and_replays_the_same(layout, night):
    from modsingest.cli import main
    from modsingest.sim import ExposureSpec, write

    (night / f"guider.{NIGHT}.jsonl").unlink()
    raw = write(ExposureSpec(channel="mods1b", date=NIGHT, roi="1k", exptime=60.0), layout["raw"])
    config = configure(layout, night)
    assert main(["process", "--config", str(config), str(raw)]) == 0
    out = layout["newdata"] / raw.name
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with fits.open(out, checksum=True) as hdul:
            hdul.verify("exception")
            assert [h.name for h in hdul] == [
                "PRIMARY", "IM1", "IM2", "IM3", "IM4", "CONPARS", "MERGED", "WEATHER", "WFS",
            ]  # fmt: skip
            primary_ = hdul[0].header
            assert primary_["TELTABS"] == "WEATHER(7),WFS(3)"
            assert primary_["MSISTEPS"].endswith(",merged,telemetry")
            history = "".join(str(v).removeprefix("modsingest+ ") for v in primary_["HISTORY"])
            assert f"telemetry: GUIDER: {night}/guider.{NIGHT}.jsonl: No such file" in history
            assert hdul["WEATHER"].data["wind_speed"].shape == (7,)
            assert hdul["WEATHER"].columns["wind_speed"].unit == "m/s"
    assert_fitsverify_ok(out)
    # processing the processed file again: the same tables, not twice
    again = layout["raw"] / "again" / raw.name
    again.parent.mkdir()
    again.write_bytes(out.read_bytes())
    first = [(h.name, h.header.get("NAXIS2")) for h in fits.open(out)]
    assert main(["process", "--config", str(config), str(again)]) == 0
    assert [(h.name, h.header.get("NAXIS2")) for h in fits.open(out)] == first


def test_without_the_step_or_sources_nothing_changes(layout, night):
    from modsingest.processing.pipeline import Pipeline

    config = configure(layout, night, steps="{temperatures: yes}")
    from modsingest.config import load

    pipeline = Pipeline(load(config), warm=False)
    assert pipeline.telemetry is None  # sources configured, step off: nothing is read


# --------------------------------------------------------------------------- configuration
BASE = "paths: {raw: [r], newdata: n, processed: p, state: s}\n"


def config_error(text):
    with pytest.raises(ConfigError) as err:
        loads(BASE + text, "/etc/m.yaml", require_dirs=False)
    return str(err.value)


def test_configuration_of_sources_and_its_errors(monkeypatch):
    parsed = loads(
        BASE
        + "telemetry:\n  margin: 30\n  sources:\n    - {name: weather, format: csv, path: '/t/w.{night}.csv'}\n",
        "/etc/m.yaml",
        require_dirs=False,
    ).telemetry
    assert parsed == TelemetrySettings(
        (TelemetrySource("WEATHER", "csv", "/t/w.{night}.csv", "time", "iso", (), None),), 30.0, 0.0
    )
    assert config_error("telemetry:\n  sources:\n    - {name: W, format: xml, path: /x}\n") == (
        "/etc/m.yaml:4: telemetry.sources[0].format: 'xml' is not one of csv, jsonl, hdf5"
    )
    assert config_error("telemetry:\n  sources:\n    - {name: W, format: csv, path: /x, unit: s}\n") == (
        "/etc/m.yaml:4: telemetry.sources[0].unit: unknown key "
        "(known: name, format, path, time, time_format, columns, dataset)"
    )
    assert config_error("telemetry:\n  sources:\n    - {name: W, format: hdf5, path: /x}\n") == (
        "/etc/m.yaml:4: telemetry.sources[0].dataset: missing (an hdf5 source names its dataset)"
    )
    assert config_error("telemetry:\n  sources:\n    - {name: MERGED, format: csv, path: /x}\n") == (
        "/etc/m.yaml:4: telemetry.sources[0].name: 'MERGED' cannot be an EXTNAME here"
    )
    assert config_error(
        "telemetry:\n  sources:\n    - {name: W, format: csv, path: /x}\n    - {name: w, format: csv, path: /y}\n"
    ) == ("/etc/m.yaml:5: telemetry.sources[1].name: 'W' listed twice")
    assert config_error("telemetry:\n  wait: 9999\n") == (
        "/etc/m.yaml:3: telemetry.wait: 9999 is more than the largest sensible value, 600 s"
    )
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "h5py" else real(name, *a)
    )
    assert config_error("telemetry:\n  sources:\n    - {name: W, format: hdf5, path: /x, dataset: w}\n") == (
        "/etc/m.yaml:4: telemetry.sources[0].format: hdf5 needs h5py, which is not installed "
        "(pip install 'modsingest[hdf5]')"
    )


def test_simulate_writes_the_nights_telemetry_matching_its_exposures(layout, tmp_path):
    from modsingest.cli import main

    tel = tmp_path / "tel"
    tel.mkdir()
    args = ["simulate", "--out", str(layout["raw"]), "--date", NIGHT, "--roi", "1k", "--exptime", "60"]
    assert main([*args, "--count", "2", "--telemetry", str(tel)]) == 0
    assert sorted(p.name for p in tel.iterdir()) == [
        f"guider.{NIGHT}.jsonl",
        f"weather.{NIGHT}.csv",
        f"wfs.{NIGHT}.h5",
    ]
    config = configure(layout, tel, margin=0)
    raws = sorted(layout["raw"].glob("*.fits"))
    assert main(["process", "--config", str(config), *map(str, raws)]) == 0
    # the first starts on the minute (rows at both ends of its 60 s), the second after a readout
    tables = [fits.getheader(layout["newdata"] / raw.name)["TELTABS"] for raw in raws]
    assert tables == ["WEATHER(7),GUIDER(61),WFS(3)", "WEATHER(6),GUIDER(60),WFS(2)"]
