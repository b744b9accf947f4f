"""The memory of the service: one SQLite row per raw file and fingerprint.

Why a ledger at all: the incumbent was driven by one UDP datagram per file and
kept nothing, so a lost datagram or a restart lost the file for good, and two
requests for one file could process it twice at once.  Here every decision about
a raw file is written down before it is acted on:

- ``queued``      the gate found the file complete and stable; waiting for a worker
- ``processing``  a worker has it (exactly one: the dispatcher hands out a row only
                  when no other row of the same path is being processed)
- ``waiting``     processed, but a destination refused it (full disk, NFS away):
                  tried again at ``retry_at``, for as long as the raw file is unchanged
                  (a changed file makes a new row and this one ``superseded``)
- ``delivered``   ``Pipeline.process`` returned ok; never marked before that
- ``failed``      the core said why it could not deliver, or workers kept dying on it
                  (never for a destination that refuses: that is ``waiting``)
- ``incomplete``  the file stayed structurally incomplete past ``watch.incomplete_timeout``
- ``superseded``  a newer fingerprint of the same path arrived before this one started

A fingerprint is (size, mtime, ctime, inode): a new one (azcam's second pass, a
``touch``) makes a new row, which is how a changed file is processed again and an
unchanged one is not.  A new ctime alone (``chmod``) is not new content: see
``_content_states``.  Only the newest row of a path is ``current``; ``status``
reports current rows, older ones are history.

On start-up a ``processing`` row means the previous run died while a worker had
the file: it goes back to ``queued`` and is redone (publishing is an atomic rename
of the same name, so redoing is safe).  The service's main process is the only
writer of file rows; ``replay`` run beside a live service only adds rows to the
``requests`` table, which the service takes up.

What the gate holds (files incomplete so far, waiting for CONPARS, found
impossible) lives in the gate's memory; the service copies it into the ``held``
table every heartbeat, so ``status`` sees it without asking the service.

Schema changes come with a migration (``_MIGRATIONS``) that keeps every row:
an upgrade must not lose a file.

SQLite in WAL mode so ``status`` can read while the service writes;
``synchronous=NORMAL``: a power cut can lose the last transitions, which only
means a file is looked at or processed again, never lost.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from modsingest.names import channel_of_name, night_of
from modsingest.nightlog import Entry, order

FILENAME = "ledger.sqlite3"
SERVICE_LOCK = "service.lock"
SCHEMA_VERSION = 3

QUEUED = "queued"
PROCESSING = "processing"
WAITING = "waiting"
DELIVERED = "delivered"
FAILED = "failed"
INCOMPLETE = "incomplete"
SUPERSEDED = "superseded"
STATES = (QUEUED, PROCESSING, WAITING, DELIVERED, FAILED, INCOMPLETE, SUPERSEDED)
#: a fingerprint in one of these states needs no new look: it is done or under way
SETTLED = (QUEUED, PROCESSING, WAITING, DELIVERED, FAILED, INCOMPLETE)

#: tables added after version 1: written once, used by the schema and by the migration
#: that adds them, so a new ledger and a migrated one cannot differ
_HELD_TABLE = """
CREATE TABLE IF NOT EXISTS held (
    path     TEXT PRIMARY KEY,
    state    TEXT NOT NULL,
    since    REAL,
    reason   TEXT,
    updated  REAL NOT NULL
);
"""
_NIGHTLOG_TABLE = """
CREATE TABLE IF NOT EXISTS nightlog (
    night    TEXT NOT NULL,
    name     TEXT NOT NULL,
    date_obs TEXT NOT NULL,
    entry    TEXT NOT NULL,
    updated  REAL NOT NULL,
    PRIMARY KEY (night, name)
);
"""

_SCHEMA = (
    """
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
    retry_at     REAL,
    waiting_since REAL,
    deaths       INTEGER NOT NULL DEFAULT 0,
    date_obs     TEXT,
    UNIQUE (path, size, mtime_ns, ctime_ns, inode)
);
CREATE INDEX IF NOT EXISTS files_path ON files (path, current);
CREATE INDEX IF NOT EXISTS files_state ON files (state, current);
CREATE INDEX IF NOT EXISTS files_night ON files (night, current);
CREATE TABLE IF NOT EXISTS service (
    key   TEXT PRIMARY KEY,
    value TEXT
);
"""
    + _NIGHTLOG_TABLE
    + """CREATE TABLE IF NOT EXISTS requests (
    id       INTEGER PRIMARY KEY,
    path     TEXT NOT NULL,
    created  REAL NOT NULL
);
"""
    + _HELD_TABLE
)

#: user_version -> the SQL that brings a ledger of that version to the next one.
#: Version 2 (destinations retried without end): rows that version 1 gave up on
#: after 8 publish attempts ("cannot publish") were lost until someone replayed
#: them; they become ``waiting`` and are tried again at once.
_MIGRATIONS = {
    1: """
ALTER TABLE files ADD COLUMN retry_at REAL;
ALTER TABLE files ADD COLUMN waiting_since REAL;
ALTER TABLE files ADD COLUMN deaths INTEGER NOT NULL DEFAULT 0;
ALTER TABLE files ADD COLUMN date_obs TEXT;
"""
    + _HELD_TABLE
    + """UPDATE files SET state='waiting', retry_at=0, waiting_since=finished_at
    WHERE state='failed' AND current=1 AND reason LIKE '%: cannot publish: %';
""",
    # Version 3: the night log's line of each delivered file (docs/formats.md).
    2: _NIGHTLOG_TABLE,
}


class Fingerprint(NamedTuple):
    """What says a raw file is the same file with the same content as before."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int

    @classmethod
    def of(cls, st: os.stat_result) -> Fingerprint:
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


@dataclass(frozen=True)
class Row:
    id: int
    path: str
    name: str
    night: str
    fingerprint: Fingerprint
    state: str
    current: bool
    attempts: int
    reason: str | None
    warnings: list[str]
    outputs: list[str]
    delivered_as: str | None
    channel: str | None
    conpars: bool | None
    sources: list[str]
    seen_at: float | None
    queued_at: float | None
    started_at: float | None
    finished_at: float | None
    seconds: float | None
    retry_at: float | None = None
    waiting_since: float | None = None
    deaths: int = 0
    date_obs: str | None = None

    @property
    def latency(self) -> float | None:
        """Detection to delivery, in seconds."""
        if self.state == DELIVERED and self.seen_at and self.finished_at:
            return self.finished_at - self.seen_at
        return None

    @classmethod
    def from_sql(cls, r: sqlite3.Row) -> Row:
        return cls(
            id=r["id"],
            path=r["path"],
            name=r["name"],
            night=r["night"],
            fingerprint=Fingerprint(r["size"], r["mtime_ns"], r["ctime_ns"], r["inode"]),
            state=r["state"],
            current=bool(r["current"]),
            attempts=r["attempts"],
            reason=r["reason"],
            warnings=json.loads(r["warnings"] or "[]"),
            outputs=json.loads(r["outputs"] or "[]"),
            delivered_as=r["delivered_as"],
            channel=r["channel"],
            conpars=None if r["conpars"] is None else bool(r["conpars"]),
            sources=r["sources"].split(",") if r["sources"] else [],
            seen_at=r["seen_at"],
            queued_at=r["queued_at"],
            started_at=r["started_at"],
            finished_at=r["finished_at"],
            seconds=r["seconds"],
            retry_at=r["retry_at"],
            waiting_since=r["waiting_since"],
            deaths=r["deaths"],
            date_obs=r["date_obs"],
        )


def path_of(directory: os.PathLike | str) -> Path:
    return Path(directory) / FILENAME


#: the ledger's files: owner read-write, the service's group read (operators run ``status``)
FILE_MODE = 0o640


def _share_with_group(db: Path) -> None:
    """Create the ledger 0640 whatever the umask, and give group read to its files.

    SQLite creates ``-wal`` and ``-shm`` with the database file's mode, so setting
    it on the database before SQLite first opens it is enough for new files; older
    ones made under a tight umask get group read added.  Only our own files are
    touched (``status`` run by an operator changes nothing).
    """
    try:
        fd = os.open(db, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        os.fchmod(fd, FILE_MODE)
        os.close(fd)
    except OSError:  # there already, or not ours to create (SQLite says why, if it matters)
        pass
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        try:
            st = os.stat(path)
            if st.st_uid == os.geteuid() and st.st_mode & FILE_MODE != FILE_MODE:
                os.chmod(path, (st.st_mode & 0o777) | FILE_MODE)
        except OSError:
            pass


class Ledger:
    """Thread-safe access to the ledger database (one connection, one lock).

    The service's threads (gate, dispatcher, UDP listener) share one instance;
    every method is one short transaction.
    """

    def __init__(self, state_dir: os.PathLike | str, *, clock=time.time, migrate: bool = True):
        self.path = path_of(state_dir)
        self._clock = clock
        self._lock = threading.RLock()
        _share_with_group(self.path)
        self._db = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            self._db.close()
            raise RuntimeError(
                f"{self.path}: ledger schema {version} is newer than this modsingest "
                f"({SCHEMA_VERSION}); refusing to touch it"
            )
        if version < SCHEMA_VERSION:
            if not migrate and version > 0:
                # a reader (status, replay's lookups) must not migrate the ledger under
                # a service that still runs the old code (between install and restart)
                self._db.close()
                raise RuntimeError(
                    f"{self.path}: ledger schema {version} is older than this modsingest "
                    f"({SCHEMA_VERSION}); the service migrates it when it starts "
                    "(systemctl restart modsingest)"
                )
            self._upgrade(version)

    def _upgrade(self, version: int) -> None:
        """Create the schema (a new ledger) or migrate an older one, in one transaction."""
        script = ["BEGIN IMMEDIATE;"]
        has_files = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='files'"
        ).fetchone()
        if version == 0 and not has_files:
            script.append(_SCHEMA)
        else:
            for v in range(max(version, 1), SCHEMA_VERSION):
                script.append(_MIGRATIONS[v])
        script.append(f"PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
        try:
            self._db.executescript("\n".join(script))
        except sqlite3.Error:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ plumbing
    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE) under the lock."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @staticmethod
    def _find_in(db: sqlite3.Connection, path: str, fp: Fingerprint) -> sqlite3.Row | None:
        return db.execute(
            "SELECT * FROM files WHERE path=? AND size=? AND mtime_ns=? AND ctime_ns=? AND inode=?",
            (path, *fp),
        ).fetchone()

    def _query(self, sql: str, args: Iterable = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, tuple(args)).fetchall()

    # ------------------------------------------------------------------ lookups
    def current(self, path: os.PathLike | str) -> Row | None:
        """The newest row of ``path``, or None if the ledger has never seen it."""
        rows = self._query("SELECT * FROM files WHERE path=? AND current=1", (str(path),))
        return Row.from_sql(rows[0]) if rows else None

    def row(self, row_id: int) -> Row | None:
        rows = self._query("SELECT * FROM files WHERE id=?", (row_id,))
        return Row.from_sql(rows[0]) if rows else None

    def find(self, path: os.PathLike | str, fp: Fingerprint) -> Row | None:
        with self._lock:
            r = self._find_in(self._db, str(path), fp)
        return Row.from_sql(r) if r is not None else None

    def _content_states(self, path: os.PathLike | str, fp: Fingerprint) -> set[str]:
        """States of the rows holding this file content: same path, size, mtime and inode.

        A change of ctime alone is a change of metadata (``chmod``, ``chown``),
        not of content, so it is no reason to deliver again.  Why it matters:
        astropy's second pass copies the old file's mode onto the new one just
        after renaming it into place, and an admin's ``chmod -R`` over a raw
        directory would otherwise re-deliver every recent file.  A ``touch``
        changes mtime: still a replay.
        """
        size, mtime_ns, _ctime_ns, inode = fp
        rows = self._query(
            "SELECT state FROM files WHERE path=? AND size=? AND mtime_ns=? AND inode=?",
            (str(path), size, mtime_ns, inode),
        )
        return {r["state"] for r in rows}

    def is_settled(self, path: os.PathLike | str, fp: Fingerprint) -> bool:
        """True when this very file content is done, under way, or reported incomplete."""
        return bool(self._content_states(path, fp) & set(SETTLED))

    def is_delivered(self, path: os.PathLike | str, fp: Fingerprint) -> bool:
        """True when this very file content (``_content_states``) was delivered."""
        return DELIVERED in self._content_states(path, fp)

    def rows(
        self, *, night: str | None = None, since: float | None = None, current_only: bool = True
    ) -> list[Row]:
        """Rows of one night (by the name's date tag), or touched since a time."""
        sql = "SELECT * FROM files WHERE 1=1"
        args: list = []
        if current_only:
            sql += " AND current=1"
        if night:
            sql += " AND night=?"
            args.append(night)
        if since is not None:
            sql += " AND COALESCE(finished_at, started_at, queued_at, seen_at) >= ?"
            args.append(since)
        return [Row.from_sql(r) for r in self._query(sql + " ORDER BY id", args)]

    def problems_before(self, when: float) -> int:
        """Failed or incomplete files last touched before ``when`` (still unresolved)."""
        return self._query(
            "SELECT COUNT(*) FROM files WHERE current=1 AND state IN (?, ?) "
            "AND COALESCE(finished_at, seen_at) < ?",
            (FAILED, INCOMPLETE, when),
        )[0][0]

    def queued_count(self) -> int:
        return self._query("SELECT COUNT(*) FROM files WHERE state=? AND current=1", (QUEUED,))[0][0]

    # ------------------------------------------------------------------ transitions
    def enqueue(
        self,
        path: os.PathLike | str,
        fp: Fingerprint,
        *,
        seen_at: float,
        conpars: bool,
        sources: Iterable[str] = (),
        force: bool = False,
    ) -> int | None:
        """Record that the gate passed this file: state ``queued``; returns the row id.

        None when nothing is to be done: the same fingerprint is already queued or
        being processed, or (unless ``force``, a replay) already delivered or failed.
        Any older row of the path stops being current, and an older row that was
        still only queued is ``superseded`` (its content is gone from the disk).
        """
        path = str(path)
        now = self._clock()
        name = os.path.basename(path)
        with self._tx() as db:
            found = self._find_in(db, path, fp)
            if found is not None:
                if found["state"] in (QUEUED, PROCESSING):
                    return None
                if found["state"] in (DELIVERED, FAILED, WAITING) and not force:
                    return None
            self._retire_others(db, path, keep=found["id"] if found else None)
            db.execute("DELETE FROM held WHERE path=?", (path,))
            values = dict(
                state=QUEUED,
                current=1,
                reason=None,
                retry_at=None,
                conpars=int(conpars),
                sources=",".join(sorted(set(sources))),
                seen_at=seen_at,
                queued_at=now,
                started_at=None,
                finished_at=None,
            )
            if found is not None:
                sets = ", ".join(f"{k}=?" for k in values)
                db.execute(f"UPDATE files SET {sets} WHERE id=?", (*values.values(), found["id"]))
                return found["id"]
            values.update(
                path=path,
                name=name,
                night=night_of(name, seen_at),
                size=fp.size,
                mtime_ns=fp.mtime_ns,
                ctime_ns=fp.ctime_ns,
                inode=fp.inode,
                channel=channel_of_name(name),
            )
            cols = ", ".join(values)
            marks = ", ".join("?" for _ in values)
            cur = db.execute(f"INSERT INTO files ({cols}) VALUES ({marks})", tuple(values.values()))
            return cur.lastrowid

    def mark_incomplete(
        self, path: os.PathLike | str, fp: Fingerprint, reason: str, *, seen_at: float
    ) -> int:
        """The file stayed incomplete past the timeout: report it, keep it visible."""
        path = str(path)
        name = os.path.basename(path)
        now = self._clock()
        with self._tx() as db:
            found = self._find_in(db, path, fp)
            self._retire_others(db, path, keep=found["id"] if found else None)
            db.execute("DELETE FROM held WHERE path=?", (path,))
            if found is not None:
                db.execute(
                    "UPDATE files SET state=?, current=1, reason=?, finished_at=? WHERE id=?",
                    (INCOMPLETE, reason, now, found["id"]),
                )
                return found["id"]
            cur = db.execute(
                "INSERT INTO files (path, name, night, size, mtime_ns, ctime_ns, inode, state, "
                "current, reason, channel, seen_at, finished_at) VALUES (?,?,?,?,?,?,?,?,1,?,?,?,?)",
                (
                    path,
                    name,
                    night_of(name, seen_at),
                    *fp,
                    INCOMPLETE,
                    reason,
                    channel_of_name(name),
                    seen_at,
                    now,
                ),
            )
            assert cur.lastrowid is not None  # set by the INSERT above
            return cur.lastrowid

    @staticmethod
    def _retire_others(db: sqlite3.Connection, path: str, keep: int | None) -> None:
        db.execute(
            "UPDATE files SET state=?, reason=?, retry_at=NULL WHERE path=? AND state IN (?, ?) AND id IS NOT ?",
            (
                SUPERSEDED,
                "a newer version of the file arrived before it was processed",
                path,
                QUEUED,
                WAITING,
                keep,
            ),
        )
        db.execute("UPDATE files SET current=0 WHERE path=? AND id IS NOT ?", (path, keep))

    def claim(self, busy_paths: Iterable[str], limit: int, only: set[int] | None = None) -> list[Row]:
        """Hand out up to ``limit`` queued rows, oldest first, none of ``busy_paths``.

        The rows become ``processing`` with one more attempt.  The caller (the one
        dispatcher) adds their paths to its busy set, which is what keeps a file
        with one worker at a time.  ``only``: restrict to these row ids (a replay
        run without the service processes its own files and leaves the rest).
        """
        if limit <= 0:
            return []
        busy = set(map(str, busy_paths))
        now = self._clock()
        out: list[Row] = []
        with self._tx() as db:
            for r in db.execute(
                "SELECT * FROM files WHERE state=? AND current=1 ORDER BY queued_at, id", (QUEUED,)
            ).fetchall():
                if r["path"] in busy or (only is not None and r["id"] not in only):
                    continue
                busy.add(r["path"])
                db.execute(
                    "UPDATE files SET state=?, attempts=attempts+1, started_at=? WHERE id=?",
                    (PROCESSING, now, r["id"]),
                )
                out.append(Row.from_sql(r))
                if len(out) >= limit:
                    break
        return [self.row(r.id) for r in out]  # type: ignore[misc]

    def delivered(
        self,
        row_id: int,
        *,
        name: str | None,
        outputs: Iterable[os.PathLike | str],
        channel: str | None,
        warnings: Iterable[str],
        seconds: float,
        date_obs: str | None = None,
    ) -> Row:
        """``Pipeline.process`` returned ok for this row."""
        now = self._clock()
        with self._tx() as db:
            db.execute(
                "UPDATE files SET state=?, reason=NULL, delivered_as=?, outputs=?, "
                "channel=COALESCE(?, channel), warnings=?, seconds=?, finished_at=?, "
                "retry_at=NULL, date_obs=COALESCE(?, date_obs) WHERE id=?",
                (
                    DELIVERED,
                    name,
                    json.dumps([str(p) for p in outputs]),
                    channel,
                    json.dumps(list(warnings)),
                    seconds,
                    now,
                    date_obs,
                    row_id,
                ),
            )
        return self.row(row_id)  # type: ignore[return-value]

    # ------------------------------------------------------------------ night log
    def record_log(self, entry: Entry) -> None:
        """The night-log line of a delivered file; a later delivery of the same name replaces it."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO nightlog (night, name, date_obs, entry, updated) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (night, name) DO UPDATE SET date_obs=excluded.date_obs, "
                "entry=excluded.entry, updated=excluded.updated",
                (entry.night, entry.name, entry.date_obs, json.dumps(entry.to_dict()), self._clock()),
            )

    def log_entries(self, nights: Iterable[str]) -> list[Entry]:
        """The night-log lines of ``nights``, in DATE-OBS order."""
        out: list[Entry] = []
        for night in nights:
            rows = self._query("SELECT entry FROM nightlog WHERE night=? ORDER BY date_obs, name", (night,))
            out += [Entry.from_dict(json.loads(r["entry"])) for r in rows]
        return order(out)

    def failed(
        self, row_id: int, reason: str, *, seconds: float | None = None, warnings: Iterable[str] = ()
    ) -> Row:
        """The core could not deliver this row's file; ``reason`` says why."""
        now = self._clock()
        with self._tx() as db:
            db.execute(
                "UPDATE files SET state=?, reason=?, seconds=?, warnings=?, finished_at=? WHERE id=?",
                (FAILED, reason, seconds, json.dumps(list(warnings)), now, row_id),
            )
        return self.row(row_id)  # type: ignore[return-value]

    def retry_or_fail(self, row_id: int, reason: str, max_attempts: int) -> Row:
        """A worker died with this row: queue it again, unless it has had its chances.

        Counted in ``deaths``, not ``attempts``: the tries a waiting destination
        costs must not use up a file's chances against a crashing worker.
        """
        with self._tx() as db:
            r = db.execute("SELECT deaths, current FROM files WHERE id=?", (row_id,)).fetchone()
            if r is None:
                raise KeyError(row_id)
            deaths = r["deaths"] + 1
            if deaths >= max_attempts:
                db.execute(
                    "UPDATE files SET state=?, reason=?, deaths=?, finished_at=? WHERE id=?",
                    (FAILED, f"{reason} (after {deaths} attempts)", deaths, self._clock(), row_id),
                )
            else:
                state = QUEUED if r["current"] else SUPERSEDED
                db.execute(
                    "UPDATE files SET state=?, reason=?, deaths=?, started_at=NULL WHERE id=?",
                    (state, reason, deaths, row_id),
                )
        return self.row(row_id)  # type: ignore[return-value]

    def requeue(self, row_id: int, reason: str) -> Row:
        """Queue a row again for another try (attempts kept, not a worker's death)."""
        with self._tx() as db:
            db.execute(
                "UPDATE files SET state=CASE current WHEN 1 THEN ? ELSE ? END, reason=?, started_at=NULL "
                "WHERE id=?",
                (QUEUED, SUPERSEDED, reason, row_id),
            )
        return self.row(row_id)  # type: ignore[return-value]

    # ------------------------------------------------------------------ destinations that refuse
    def wait_for_destination(self, row_id: int, reason: str, retry_at: float) -> Row:
        """A destination refused this row's file (full, away, read-only): try again at ``retry_at``.

        Never ``failed`` for that: the file is tried again for as long as it is
        the current content of its path.  ``status`` and the metrics show it.
        """
        now = self._clock()
        with self._tx() as db:
            db.execute(
                "UPDATE files SET state=CASE current WHEN 1 THEN ? ELSE ? END, reason=?, retry_at=?, "
                "waiting_since=COALESCE(waiting_since, ?), started_at=NULL, finished_at=? WHERE id=?",
                (WAITING, SUPERSEDED, reason, retry_at, now, now, row_id),
            )
        return self.row(row_id)  # type: ignore[return-value]

    def requeue_waiting(self, *, due_by: float | None = None) -> int:
        """Waiting rows whose retry time has come (all of them when ``due_by`` is None) go back
        to the queue; returns how many."""
        sql = "FROM files WHERE state=? AND current=1" + ("" if due_by is None else " AND retry_at<=?")
        args: tuple = (WAITING,) if due_by is None else (WAITING, due_by)
        if not self._query("SELECT 1 " + sql + " LIMIT 1", args):
            return 0  # the usual answer, without taking the write lock
        with self._tx() as db:
            cur = db.execute(
                "UPDATE files SET state=?, queued_at=? WHERE id IN (SELECT id " + sql + ")",
                (QUEUED, self._clock(), *args),
            )
            return cur.rowcount

    def waiting(self) -> list[Row]:
        """Every file waiting for a destination, longest waiting first."""
        return [
            Row.from_sql(r)
            for r in self._query(
                "SELECT * FROM files WHERE state=? AND current=1 ORDER BY waiting_since, id", (WAITING,)
            )
        ]

    def newest_exposures(self) -> dict[str, Row]:
        """Per channel, the delivered file with the latest DATE-OBS (not the latest delivery:
        after an outage the last file delivered can be an old exposure)."""
        rows = self._query(
            "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY channel "
            "ORDER BY date_obs IS NULL, date_obs DESC, finished_at DESC, id DESC) AS rank "
            "FROM files WHERE state=? AND current=1 AND channel IS NOT NULL) WHERE rank=1",
            (DELIVERED,),
        )
        return {r["channel"]: Row.from_sql(r) for r in rows}

    # ------------------------------------------------------------------ what the gate holds
    def record_held(
        self, path: os.PathLike | str, state: str | None, since: float | None, reason: str | None
    ) -> None:
        """The gate holds ``path`` in ``state`` since Unix time ``since``; None: no longer held."""
        with self._tx() as db:
            if state is None:
                db.execute("DELETE FROM held WHERE path=?", (str(path),))
            else:
                db.execute(
                    "INSERT INTO held (path, state, since, reason, updated) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT(path) DO UPDATE SET state=excluded.state, since=excluded.since, "
                    "reason=excluded.reason, updated=excluded.updated",
                    (str(path), state, since, reason, self._clock()),
                )

    def replace_held(self, entries: Iterable[tuple[str, str, float | None, str | None]]) -> None:
        """Everything the gate holds now, as (path, state, since, reason): the table becomes this."""
        now = self._clock()
        with self._tx() as db:
            db.execute("DELETE FROM held")
            db.executemany(
                "INSERT OR REPLACE INTO held (path, state, since, reason, updated) VALUES (?, ?, ?, ?, ?)",
                [(str(p), st, since, reason, now) for p, st, since, reason in entries],
            )

    def held(self) -> list[dict[str, object]]:
        """What the gate held at its last report: path, state, since, reason, updated."""
        return [dict(r) for r in self._query("SELECT * FROM held ORDER BY since, path")]

    def release(self, row_id: int) -> None:
        """Give an unfinished row back (shutdown): queued again, the attempt not counted."""
        with self._tx() as db:
            db.execute(
                "UPDATE files SET state=CASE current WHEN 1 THEN ? ELSE ? END, "
                "attempts=MAX(attempts-1, 0), started_at=NULL WHERE id=? AND state=?",
                (QUEUED, SUPERSEDED, row_id, PROCESSING),
            )

    def recover(self) -> list[Row]:
        """Start-up: rows left ``processing`` by a dead run are queued again."""
        with self._tx() as db:
            rows = [
                Row.from_sql(r)
                for r in db.execute("SELECT * FROM files WHERE state=?", (PROCESSING,)).fetchall()
            ]
            db.execute(
                "UPDATE files SET state=CASE current WHEN 1 THEN ? ELSE ? END, started_at=NULL WHERE state=?",
                (QUEUED, SUPERSEDED, PROCESSING),
            )
            # a restart is a good moment to try the destinations again
            db.execute("UPDATE files SET retry_at=? WHERE state=?", (self._clock(), WAITING))
            # the gate's memory is gone with the run that wrote it; the start-up scan
            # finds those files again
            db.execute("DELETE FROM held")
        return rows

    # ------------------------------------------------------------------ service facts
    def set_info(self, **values: object) -> None:
        """Facts about the running service for ``status`` (JSON values)."""
        with self._tx() as db:
            for key, value in values.items():
                db.execute(
                    "INSERT INTO service (key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (key, json.dumps(value)),
                )

    def info(self) -> dict[str, object]:
        return {r["key"]: json.loads(r["value"]) for r in self._query("SELECT key, value FROM service")}

    # ------------------------------------------------------------------ replay requests
    def request(self, paths: Iterable[os.PathLike | str]) -> float:
        """Ask a running service to process ``paths`` again; returns the request time."""
        now = self._clock()
        with self._tx() as db:
            db.executemany(
                "INSERT INTO requests (path, created) VALUES (?, ?)",
                [(str(p), now) for p in paths],
            )
        return now

    def take_requests(self) -> list[str]:
        """The service takes the paths ``replay`` asked for (each once; the rows go)."""
        if not self._query("SELECT 1 FROM requests LIMIT 1"):
            return []  # the usual answer, without taking the write lock every second
        with self._tx() as db:
            rows = db.execute("SELECT id, path FROM requests ORDER BY id").fetchall()
            db.execute("DELETE FROM requests WHERE id <= ?", (rows[-1]["id"],))
        return [r["path"] for r in rows]


def open_existing(state_dir: os.PathLike | str) -> Ledger | None:
    """The ledger if one exists (``status`` must not create one), else None.

    Never migrated here: RuntimeError when its schema is older (or newer) than this code's.
    """
    return Ledger(state_dir, migrate=False) if path_of(state_dir).exists() else None


class AlreadyRunning(RuntimeError):
    pass


def lock_service(state: Path) -> int:
    """Hold ``<state>/service.lock`` for the life of the process; AlreadyRunning if taken.

    One service per ledger: the single writer of file rows, and the only one
    handing files to workers.
    """
    fd = os.open(state / SERVICE_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AlreadyRunning(f"another modsingest service is using {state}") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def service_running(state: Path) -> bool:
    """True when a service holds the state directory's lock (used by ``replay``)."""
    path = state / SERVICE_LOCK
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
