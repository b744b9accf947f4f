"""The ledger: states, fingerprints, one worker per file, restart recovery."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from modsingest.service.ledger import (
    DELIVERED,
    FAILED,
    INCOMPLETE,
    PROCESSING,
    QUEUED,
    SCHEMA_VERSION,
    SUPERSEDED,
    AlreadyRunning,
    Fingerprint,
    Ledger,
    lock_service,
    open_existing,
    path_of,
    service_running,
)


@pytest.fixture
def ledger(tmp_path):
    led = Ledger(tmp_path)
    yield led
    led.close()


FP1 = Fingerprint(1000, 1, 1, 10)
FP2 = Fingerprint(2000, 2, 2, 11)
RAW = "/data/mods1b/mods1b.20260102.0001.fits"


def queue(led, path=RAW, fp=FP1, **kw):
    return led.enqueue(
        path,
        fp,
        seen_at=kw.pop("seen_at", 100.0),
        conpars=kw.pop("conpars", True),
        sources=kw.pop("sources", {"event"}),
        **kw,
    )


def deliver(led, row_id, name="x.fits"):
    return led.delivered(
        row_id, name=name, outputs=["/p/x", "/n/x"], channel="MODS1B", warnings=["geometry: w"], seconds=0.5
    )


def test_wal_mode_and_schema_version(ledger, tmp_path):
    db = sqlite3.connect(path_of(tmp_path))
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


def test_refuses_a_newer_schema(tmp_path):
    db = sqlite3.connect(path_of(tmp_path))
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(RuntimeError, match="newer"):
        Ledger(tmp_path)


def test_reopen_keeps_rows(tmp_path):
    led = Ledger(tmp_path)
    rid = queue(led)
    led.close()
    led = Ledger(tmp_path)
    assert led.row(rid).state == QUEUED
    led.close()


def test_enqueue_records_the_file(ledger):
    rid = queue(ledger, sources={"rescan", "event"})
    row = ledger.row(rid)
    assert row.state == QUEUED and row.current
    assert row.fingerprint == FP1
    assert row.name == "mods1b.20260102.0001.fits"
    assert row.night == "20260102"
    assert row.channel == "MODS1B"
    assert row.sources == ["event", "rescan"]
    assert row.attempts == 0


def test_same_fingerprint_is_not_queued_twice(ledger):
    assert queue(ledger) is not None
    assert queue(ledger) is None
    assert len(ledger.rows()) == 1


def test_delivered_content_is_not_queued_again_unless_forced(ledger):
    rid = queue(ledger)
    ledger.claim(set(), 1)
    deliver(ledger, rid)
    assert ledger.is_delivered(RAW, FP1)
    assert queue(ledger) is None
    assert ledger.row(rid).state == DELIVERED
    again = queue(ledger, force=True, seen_at=200.0)
    assert again == rid  # one row per fingerprint: the replay reuses it
    row = ledger.row(rid)
    assert row.state == QUEUED and row.seen_at == 200.0


def test_failed_content_waits_for_a_change(ledger):
    rid = queue(ledger)
    ledger.claim(set(), 1)
    ledger.failed(rid, "x: cannot read", seconds=0.1)
    assert ledger.is_settled(RAW, FP1)
    assert queue(ledger) is None
    new = queue(ledger, fp=FP2)
    assert new != rid and ledger.current(RAW).id == new


def test_new_fingerprint_supersedes_a_queued_row(ledger):
    old = queue(ledger)
    new = queue(ledger, fp=FP2)
    assert ledger.row(old).state == SUPERSEDED and not ledger.row(old).current
    assert ledger.row(new).state == QUEUED and ledger.row(new).current
    assert [r.id for r in ledger.rows()] == [new]
    assert len(ledger.rows(current_only=False)) == 2


def test_new_fingerprint_keeps_delivered_history(ledger):
    old = queue(ledger)
    ledger.claim(set(), 1)
    deliver(ledger, old)
    new = queue(ledger, fp=FP2)  # e.g. touch: replay
    assert ledger.row(old).state == DELIVERED and not ledger.row(old).current
    assert ledger.current(RAW).id == new


def test_claim_hands_out_one_row_per_path(ledger):
    a = queue(ledger, fp=FP1)
    ledger.claim(set(), 1)  # a is processing
    queue(ledger, fp=FP2)  # the file changed meanwhile
    assert ledger.claim({RAW}, 5) == []  # busy path: not handed out
    deliver(ledger, a)
    got = ledger.claim(set(), 5)
    assert [r.fingerprint for r in got] == [FP2]
    assert got[0].state == PROCESSING and got[0].attempts == 1


def test_claim_oldest_first_and_limit(ledger):
    ids = [queue(ledger, path=f"/r/m.2026010{i}.0001.fits") for i in range(1, 6)]
    got = ledger.claim(set(), 3)
    assert [r.id for r in got] == ids[:3]
    assert [r.id for r in ledger.claim(set(), 10, only={ids[4]})] == [ids[4]]
    assert [r.id for r in ledger.claim(set(), 10)] == [ids[3]]


def test_concurrent_claims_never_give_a_row_twice(tmp_path):
    setup = Ledger(tmp_path)
    ids = {queue(setup, path=f"/r/f{i:03d}.fits") for i in range(200)}
    setup.close()
    got: list[int] = []
    lock = threading.Lock()

    def worker():
        led = Ledger(tmp_path)  # its own connection, as another process would have
        while True:
            rows = led.claim(set(), 3)
            if not rows:
                break
            with lock:
                got.extend(r.id for r in rows)
        led.close()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == sorted(ids)


def test_recover_requeues_interrupted_work(ledger):
    a = queue(ledger, path="/r/a.fits")
    b = queue(ledger, path="/r/b.fits")
    ledger.claim(set(), 2)
    queue(ledger, path="/r/b.fits", fp=FP2)  # b changed while being processed
    recovered = ledger.recover()
    assert {r.id for r in recovered} == {a, b}
    assert ledger.row(a).state == QUEUED
    assert ledger.row(b).state == SUPERSEDED  # its newer version is queued instead
    assert ledger.current("/r/b.fits").fingerprint == FP2
    assert ledger.row(a).attempts == 1


def test_retry_then_fail_when_workers_keep_dying(ledger):
    rid = queue(ledger)
    for attempt in (1, 2):
        ledger.claim(set(), 1)
        row = ledger.retry_or_fail(rid, "worker died (signal 9)", max_attempts=3)
        assert row.state == QUEUED and row.attempts == attempt
    ledger.claim(set(), 1)
    row = ledger.retry_or_fail(rid, "worker died (signal 9)", max_attempts=3)
    assert row.state == FAILED
    assert "after 3 attempts" in row.reason


def test_release_does_not_count_the_attempt(ledger):
    rid = queue(ledger)
    ledger.claim(set(), 1)
    ledger.release(rid)
    row = ledger.row(rid)
    assert row.state == QUEUED and row.attempts == 0 and row.started_at is None


def test_incomplete_is_reported_and_settled(ledger):
    rid = ledger.mark_incomplete(RAW, FP1, f"{RAW}: file is empty", seen_at=100.0)
    row = ledger.row(rid)
    assert row.state == INCOMPLETE and "empty" in row.reason and row.finished_at
    assert ledger.is_settled(RAW, FP1)
    # the file completes later: a new fingerprint, queued, and current
    new = queue(ledger, fp=FP2)
    assert ledger.current(RAW).id == new
    assert not ledger.row(rid).current


def test_a_new_ctime_alone_is_not_new_content(ledger):
    """chmod/chown (and astropy's mode copy after its rename) change only ctime."""
    rid = queue(ledger, fp=FP1)
    ledger.claim(set(), 1)
    deliver(ledger, rid)
    size, mtime, ctime, inode = FP1
    assert ledger.is_settled(RAW, Fingerprint(size, mtime, ctime + 5, inode))
    assert ledger.is_delivered(RAW, Fingerprint(size, mtime, ctime + 5, inode))
    assert not ledger.is_settled(RAW, Fingerprint(size, mtime + 5, ctime + 5, inode))  # a touch
    assert not ledger.is_settled(RAW, Fingerprint(size, mtime, ctime, inode + 1))  # a new file
    assert not ledger.is_settled(RAW + ".other", FP1)


def test_delivered_records_outputs_warnings_and_latency(ledger):
    clock = iter([150.0, 151.0, 152.5])
    led = ledger
    led._clock = lambda: next(clock)
    rid = queue(led, seen_at=149.0)
    led.claim(set(), 1)
    row = deliver(led, rid, name="mods1b.x.fits")
    assert row.outputs == ["/p/x", "/n/x"]
    assert row.warnings == ["geometry: w"]
    assert row.delivered_as == "mods1b.x.fits"
    assert row.latency == pytest.approx(3.5)
    assert row.seconds == 0.5


def test_service_info_and_requests(ledger):
    ledger.set_info(pid=12, inotify_blind={"since": 1.0})
    ledger.set_info(pid=13)
    assert ledger.info() == {"pid": 13, "inotify_blind": {"since": 1.0}}
    ledger.request(["/r/a.fits", "/r/b.fits"])
    assert ledger.take_requests() == ["/r/a.fits", "/r/b.fits"]
    assert ledger.take_requests() == []


def test_one_service_per_state_directory(tmp_path):
    assert not service_running(tmp_path)
    fd = lock_service(tmp_path)
    try:
        assert service_running(tmp_path)
        with pytest.raises(AlreadyRunning):
            lock_service(tmp_path)
    finally:
        import os

        os.close(fd)
    assert not service_running(tmp_path)


def test_open_existing_does_not_create(tmp_path):
    assert open_existing(tmp_path) is None
    assert not path_of(tmp_path).exists()


def test_an_older_ledger_made_under_a_tight_umask_becomes_group_readable(tmp_path):
    db = tmp_path / "ledger.sqlite3"
    db.touch(mode=0o600)
    db.chmod(0o600)
    Ledger(tmp_path).close()
    assert oct(db.stat().st_mode & 0o777) == "0o640"


# --------------------------------------------------------------------------- schema 2 (issue 10)
#: the schema of version 1, as modsingest 0.1.0 created it (kept here verbatim: the
#: migration must turn exactly this into the current schema without losing a row)
V1_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id           INTEGER PRIMARY KEY,
    path         TEXT NOT NULL,
    name         TEXT NOT NULL,
    night        TEXT NOT NULL,
    size         INTEGER NOT NULL,
    mtime_ns     INTEGER NOT NULL,
    ctime_ns     INTEGER NOT NULL,
    inode        INTEGER NOT NULL,
    state        TEXT NOT NULL,
    current      INTEGER NOT NULL DEFAULT 1,
    attempts     INTEGER NOT NULL DEFAULT 0,
    reason       TEXT,
    warnings     TEXT,
    outputs      TEXT,
    delivered_as TEXT,
    channel      TEXT,
    conpars      INTEGER,
    sources      TEXT,
    seen_at      REAL,
    queued_at    REAL,
    started_at   REAL,
    finished_at  REAL,
    seconds      REAL,
    UNIQUE (path, size, mtime_ns, ctime_ns, inode)
);
CREATE INDEX IF NOT EXISTS files_path ON files (path, current);
CREATE INDEX IF NOT EXISTS files_state ON files (state, current);
CREATE INDEX IF NOT EXISTS files_night ON files (night, current);
CREATE TABLE IF NOT EXISTS service (
    key   TEXT PRIMARY KEY,
    value TEXT
);
CREATE TABLE IF NOT EXISTS requests (
    id       INTEGER PRIMARY KEY,
    path     TEXT NOT NULL,
    created  REAL NOT NULL
);
"""


def test_a_version_1_ledger_is_migrated_without_losing_a_row(tmp_path):
    db = sqlite3.connect(path_of(tmp_path))
    db.executescript(V1_SCHEMA + "PRAGMA user_version=1;")
    rows = [
        ("/r/a.fits", "delivered", None, 1),
        ("/r/b.fits", "failed", "/r/b.fits: cannot publish: No space left on device", 1),
        ("/r/c.fits", "failed", "/r/c.fits: not a FITS file", 1),
        ("/r/d.fits", "queued", None, 1),
        ("/r/e.fits", "failed", "/r/e.fits: cannot publish: Read-only file system", 0),
    ]
    for i, (path, state, reason, current) in enumerate(rows):
        db.execute(
            "INSERT INTO files (path, name, night, size, mtime_ns, ctime_ns, inode, state, current, reason, "
            "attempts, finished_at) VALUES (?, ?, '20260102', ?, 1, 1, 1, ?, ?, ?, 8, 500.0)",
            (path, path.rsplit("/", 1)[1], i, state, current, reason),
        )
    db.execute("INSERT INTO service (key, value) VALUES ('pid', '42')")
    db.commit()
    db.close()
    led = Ledger(tmp_path)
    try:
        got = {
            r.path: (r.state, r.reason, r.attempts, r.deaths, r.retry_at, r.waiting_since)
            for r in led.rows(current_only=False)
        }
        assert got == {
            "/r/a.fits": ("delivered", None, 8, 0, None, None),
            # given up by the old policy: waiting again, tried at once
            "/r/b.fits": ("waiting", "/r/b.fits: cannot publish: No space left on device", 8, 0, 0.0, 500.0),
            "/r/c.fits": ("failed", "/r/c.fits: not a FITS file", 8, 0, None, None),
            "/r/d.fits": ("queued", None, 8, 0, None, None),
            # history (not current) stays as it was
            "/r/e.fits": ("failed", "/r/e.fits: cannot publish: Read-only file system", 8, 0, None, None),
        }
        assert [r.path for r in led.waiting()] == ["/r/b.fits"]
        assert led.info() == {"pid": 42}
        assert led.held() == []
        assert led.log_entries(["20260102"]) == []  # version 3's night-log table is there
    finally:
        led.close()
    db = sqlite3.connect(path_of(tmp_path))
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    db.close()


def test_a_new_fingerprint_supersedes_a_waiting_row(ledger):
    """Never give up while the raw file is unchanged; a changed file is a new row."""
    rid = queue(ledger)
    ledger.claim(set(), 1)
    ledger.wait_for_destination(rid, "cannot publish: No space left on device", 1e12)
    assert ledger.is_settled(RAW, FP1)  # under way: the gate has nothing to do
    assert queue(ledger) is None  # the same content is not queued twice
    new = queue(ledger, fp=FP2)
    assert ledger.row(rid).state == SUPERSEDED and ledger.row(rid).retry_at is None
    assert ledger.row(new).state == QUEUED and ledger.waiting() == []


def test_a_replay_of_a_waiting_file_queues_it_at_once(ledger):
    rid = queue(ledger)
    ledger.claim(set(), 1)
    ledger.wait_for_destination(rid, "cannot publish: No space left on device", 1e12)
    assert queue(ledger, force=True) == rid
    assert ledger.row(rid).state == QUEUED


def test_what_the_gate_holds_is_kept_until_the_file_is_queued(ledger):
    ledger.record_held(RAW, "incomplete", 100.0, "IM3 data cut short")
    ledger.record_held("/r/b.fits", "waiting for CONPARS", 90.0, None)
    assert [(h["path"], h["state"], h["since"], h["reason"]) for h in ledger.held()] == [
        ("/r/b.fits", "waiting for CONPARS", 90.0, None),
        (RAW, "incomplete", 100.0, "IM3 data cut short"),
    ]
    queue(ledger)  # the gate passed it
    assert [h["path"] for h in ledger.held()] == ["/r/b.fits"]
    ledger.record_held("/r/b.fits", None, None, None)
    assert ledger.held() == []
    ledger.replace_held([("/r/c.fits", "impossible", 5.0, "first card is not SIMPLE = T")])
    assert [(h["path"], h["state"]) for h in ledger.held()] == [("/r/c.fits", "impossible")]
    ledger.recover()  # a new run: the gate's memory is gone, its scan finds them again
    assert ledger.held() == []


def test_newest_exposure_is_by_date_obs_not_by_delivery(ledger):
    """After an outage the last file delivered can be an old exposure (issue 10 item 8)."""
    for n, date_obs in ((338, "2026-01-03T02:10:11.1"), (317, "2026-01-03T01:00:00.0")):
        path = f"/data/mods1b/mods1b.20260102.0{n}.fits"
        rid = queue(ledger, path=path)
        ledger.claim(set(), 1)
        ledger.delivered(
            rid,
            name=path.rsplit("/", 1)[1],
            outputs=[],
            channel="MODS1B",
            warnings=[],
            seconds=0.1,
            date_obs=date_obs,
        )
    newest = ledger.newest_exposures()
    assert list(newest) == ["MODS1B"]
    assert newest["MODS1B"].name == "mods1b.20260102.0338.fits"
    assert newest["MODS1B"].date_obs == "2026-01-03T02:10:11.1"


def test_worker_deaths_fail_a_file_after_max_attempts(ledger):
    rid = queue(ledger)
    for _ in (1, 2):
        ledger.claim(set(), 1)
        assert ledger.retry_or_fail(rid, "worker died", 3).state == QUEUED
    ledger.claim(set(), 1)
    row = ledger.retry_or_fail(rid, "worker died", 3)
    assert row.state == FAILED and row.reason == "worker died (after 3 attempts)" and row.deaths == 3


def test_readers_do_not_migrate_an_older_ledger(tmp_path):
    """status between an install and the restart must not migrate under the old service."""
    db = sqlite3.connect(path_of(tmp_path))
    db.executescript(V1_SCHEMA + "PRAGMA user_version=1;")
    db.close()
    with pytest.raises(
        RuntimeError, match=r"ledger schema 1 is older than this modsingest .*migrates it when it starts"
    ):
        open_existing(tmp_path)
    db = sqlite3.connect(path_of(tmp_path))
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    db.close()
    Ledger(tmp_path).close()  # the service migrates it
    open_existing(tmp_path).close()
