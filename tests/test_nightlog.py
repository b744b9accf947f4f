"""The night log: fixed-width rows as the observers' modsLog writes them, kept up to date on
every delivery (process, replay, the service), and ``modsingest nightlog`` from the ledger."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime

from modsingest import nightlog, sim
from modsingest.cli import main
from modsingest.nightlog import Entry
from modsingest.service.ledger import SCHEMA_VERSION, Ledger

NIGHT = "20260102"

FIELDS = {
    "PROPID": "OSU_SIM-2026A-001-and-more-text",
    "CHANNEL": "BLUE",
    "IMAGETYP": "OBJECT",
    "OBJECT": "NGC 4151",
    "TELRA": "12:10:32.6",
    "TELDEC": "+39:24:21",
    "POSANGLE": 216.17,
    "EXPTIME": 300.0,
    "DATE-OBS": "2026-01-02T03:10:05.123",
    "AIRMASS": 1.5494,
    "MASKNAME": "LS5x60x1.0",
    "DICHNAME": "Dual",
    "GRATNAME": "G400L",
    "FILTNAME": "Clear",
    "FILENAME": "mods1b.20260102.0005.fits",
    "UNIQNAME": "mods1b.20260102.031005.fits",
    "MSIVER": "0.1.0",
}


def test_row_is_fixed_width_with_full_date_obs():
    row = nightlog.row(Entry(NIGHT, "mods1b.20260102.0005.fits", FIELDS))
    expected = (
        "OSU_SIM-2026A-001-an "  # PROPID cut to 20
        "BLUE "
        "OBJECT  "
        + "NGC 4151".ljust(40)
        + " "
        + "12:10:32.6  "
        + "+39:24:21   "
        + " 216.2 "
        + " 300.0 "
        + "2026-01-02T03:10:05.123 "  # all 23 characters: today's log cuts to tenths
        + " 1.55 "
        + "LS5x60x1.0   "
        + "Dual "
        + "G400L "
        + "Clear   "
        + "mods1b.20260102.0005.fits "
    )
    assert row == expected
    assert len(row) == len(nightlog.heading()) == sum(w + 1 for _, _, w, _ in nightlog.COLUMNS)
    assert nightlog.heading().startswith("ProjectID            Chan ImgTyp  Object ")


def test_missing_keys_are_blank_and_numbers_never_overflow():
    fields = {"DATE-OBS": "2026-01-02T03:10:05.123", "EXPTIME": 123456.0, "POSANGLE": "NOCOMM"}
    row = nightlog.row(Entry(NIGHT, "x.fits", fields))
    assert row[:21] == " " * 21  # PROPID absent
    cells = {}
    at = 0
    for _, key, width, _ in nightlog.COLUMNS:
        cells[key] = row[at : at + width]
        assert row[at + width] == " "
        at += width + 1
    assert cells["EXPTIME"] == "123456"
    assert cells["POSANGLE"] == "NOCOMM"
    assert cells["AIRMASS"] == "     "


def test_rows_in_date_obs_order():
    a = Entry(NIGHT, "b.fits", {**FIELDS, "DATE-OBS": "2026-01-02T05:00:00.000", "FILENAME": "b.fits"})
    b = Entry(NIGHT, "a.fits", {**FIELDS, "DATE-OBS": "2026-01-02T04:00:00.000", "FILENAME": "a.fits"})
    c = Entry(NIGHT, "c.fits", {**FIELDS, "DATE-OBS": None, "FILENAME": "c.fits"})
    lines = nightlog.to_txt([c, a, b]).splitlines()
    assert [line.split()[-1] for line in lines[1:]] == ["a.fits", "b.fits", "c.fits"]


def raw(directory, seq, minute, channel="mods1b", **kw):
    when = datetime(2026, 1, 2, 3, minute, 5, 123000, tzinfo=UTC)
    spec = sim.ExposureSpec(channel=channel, seq=seq, roi="1k", date=NIGHT, utc_start=when, **kw)
    return sim.write(spec, directory, two_pass=False)


def with_nightlog(layout, tmp_path):
    logdir = tmp_path / "logs"
    logdir.mkdir()
    cfg = layout["config"]
    cfg.write_text(cfg.read_text() + f"  nightlog: {logdir}\n")
    return cfg, logdir


def test_process_keeps_the_log_in_date_obs_order(layout, tmp_path, capsys):
    cfg, logdir = with_nightlog(layout, tmp_path)
    late = raw(layout["raw"], 2, 30)
    early = raw(layout["raw"], 3, 10, channel="mods1r", imagetype="zero")
    log = logdir / f"{NIGHT}_mods.txt"
    assert main(["process", "-q", "--config", str(cfg), str(late)]) == 0
    assert len(log.read_text().splitlines()) == 2
    assert main(["process", "-q", "--config", str(cfg), str(early)]) == 0
    lines = log.read_text().splitlines()
    assert [line.split()[-1] for line in lines[1:]] == [early.name, late.name]
    assert "2026-01-02T03:10:05.123" in lines[1] and "RED  ZERO" in lines[1]
    # delivering a file again replaces its row
    assert main(["process", "-q", "--config", str(cfg), str(early)]) == 0
    assert log.read_text() == "\n".join(lines) + "\n"
    # the command prints the same from the ledger
    capsys.readouterr()
    assert main(["nightlog", "--config", str(cfg), "--night", NIGHT]) == 0
    assert capsys.readouterr().out == log.read_text()
    assert not list(logdir.glob(".*"))  # no temporary left behind


def test_csv_and_json_carry_size_sha256_uniqname_msiver_warnings(layout, tmp_path, capsys):
    cfg, _ = with_nightlog(layout, tmp_path)
    f = raw(layout["raw"], 4, 20, telescope=False)  # no telescope block: warnings
    assert main(["process", "-q", "--config", str(cfg), str(f)]) == 0
    delivered = (layout["newdata"] / f.name).read_bytes()
    capsys.readouterr()
    assert main(["nightlog", "--config", str(cfg), "--night", NIGHT, "--format", "json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["delivered_as"] == f.name and record["Filename"] == f.name
    assert record["size"] == len(delivered)
    assert record["sha256"] == hashlib.sha256(delivered).hexdigest()
    assert record["UNIQNAME"] == "mods1b.20260102.032005.fits"
    assert record["MSIVER"]
    assert record["warnings"] and any(w.startswith("timestamps: ") for w in record["warnings"])
    assert record["RA"] is None  # no telescope: the log leaves it blank
    assert main(["nightlog", "--config", str(cfg), "--night", NIGHT, "--format", "csv"]) == 0
    (row,) = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert row["sha256"] == record["sha256"] and row["size"] == str(len(delivered))
    assert row["warnings"] == " | ".join(record["warnings"]) and row["RA"] == ""


def test_several_nights_come_out_as_one_table(layout, tmp_path, capsys):
    cfg, logdir = with_nightlog(layout, tmp_path)
    a = raw(layout["raw"], 5, 10)
    spec = sim.ExposureSpec(channel="mods1b", seq=1, roi="1k", date="20260103")
    b = sim.write(spec, layout["raw"], two_pass=False)
    assert main(["process", "-q", "--config", str(cfg), str(b), str(a)]) == 0
    assert sorted(p.name for p in logdir.iterdir()) == ["20260102_mods.txt", "20260103_mods.txt"]
    capsys.readouterr()
    for fmt in ("txt", "csv"):
        args = ["nightlog", "--config", str(cfg), "--night", "20260103", "--night", NIGHT, "--format", fmt]
        assert main(args) == 0
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 3 and lines[1].count(a.name) >= 1 and b.name in lines[2]
    assert main(["nightlog", "--config", str(cfg), "--night", "20260104", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_a_log_that_cannot_be_written_never_loses_the_delivery(layout, tmp_path, capsys):
    cfg, logdir = with_nightlog(layout, tmp_path)
    (logdir / f"{NIGHT}_mods.txt").mkdir()  # a directory where the file should go
    f = raw(layout["raw"], 6, 10)
    assert main(["process", "-q", "--config", str(cfg), str(f)]) == 0
    assert (layout["newdata"] / f.name).exists()
    assert "night log not updated" in capsys.readouterr().err
    # the ledger has the line all the same
    assert main(["nightlog", "--config", str(cfg), "--night", NIGHT]) == 0
    assert f.name in capsys.readouterr().out


def test_replay_writes_the_log_through_the_service_path(layout, tmp_path):
    cfg, logdir = with_nightlog(layout, tmp_path)
    files = [raw(layout["raw"], seq, 40 - seq) for seq in (7, 8)]
    run = subprocess.run(
        [sys.executable, "-m", "modsingest.cli", "replay", "--config", str(cfg), "--night", NIGHT],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr
    lines = (logdir / f"{NIGHT}_mods.txt").read_text().splitlines()
    assert [line.split()[-1] for line in lines[1:]] == [files[1].name, files[0].name]


def test_a_version_2_ledger_gains_the_nightlog_table(tmp_path):
    led = Ledger(tmp_path)
    led.close()
    db = sqlite3.connect(tmp_path / "ledger.sqlite3")
    db.execute("DROP TABLE nightlog")
    db.execute("PRAGMA user_version=2")
    db.commit()
    db.close()
    led = Ledger(tmp_path)
    entry = Entry(NIGHT, "x.fits", dict(FIELDS))
    led.record_log(entry)
    assert led.log_entries([NIGHT]) == [entry]
    led.close()
    db = sqlite3.connect(tmp_path / "ledger.sqlite3")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    db.close()
