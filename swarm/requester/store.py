"""The requester's job store: jobs, executions and their event log in SQLite.

One file, ``<home>/jobs.db``, in WAL mode with ``synchronous=NORMAL``: a committed
transaction is in the WAL before ``commit`` returns, so it survives the process being
killed (``kill -9``); only a power cut can lose the last few. Every method runs in one
transaction on a single connection (guarded by a lock, so a caller may use
``trio.to_thread``): an explicit one, or for a read that is one SELECT, the statement's
own (a SELECT sees one consistent snapshot; BEGIN and COMMIT around it cost more than it).
State changes go through the tables in ``swarm.lifecycle`` and record an event in the
same transaction, so the log and the state never disagree.

The store is the database's only writer, so it keeps the records it last wrote or read
of the ``_CACHED`` most recently used jobs, and their executions, in memory: a job's
record is read a few times on its way for every write (measured under load: ~6 reads
of the job and ~4.5 of its executions per job, ~0.6 ms of the requester's loop), and a
record held here is the committed one, updated only after its transaction commits.

The schema version is ``PRAGMA user_version``; a database from a newer swarm is refused.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from swarm.errors import ConfigError, NotFound, StorageError
from swarm.jobspec import JobSpec
from swarm.lifecycle import (
    ExecutionState,
    JobState,
    check_execution_transition,
    check_job_transition,
)

JOBS_DB = "jobs.db"
SCHEMA_VERSION = 1
MIN_PREFIX = 4
_CACHED = 4096  # jobs whose record and executions are kept in memory
_PREFIX = re.compile(r"[0-9a-f-]+")

_SCHEMA = """
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX jobs_by_created ON jobs (created);
CREATE INDEX jobs_by_state ON jobs (state);
CREATE TABLE executions (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs (id),
    node_id TEXT NOT NULL,
    state TEXT NOT NULL,
    exit_code INTEGER,
    status TEXT,
    message TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX executions_by_job ON executions (job_id);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs (id),
    execution_id TEXT,
    at REAL NOT NULL,
    node_id TEXT,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX events_by_job ON events (job_id, id);
"""


@dataclass(frozen=True)
class JobRecord:
    id: str
    name: str
    spec: JobSpec
    state: JobState
    reason: str  # why it is in this state, for the user ("no node accepted: ...")
    created: float  # unix time
    updated: float


@dataclass(frozen=True)
class ExecutionRecord:
    id: str
    job_id: str
    node_id: str
    state: ExecutionState
    exit_code: int | None
    status: str | None  # the sandbox's RunStatus, once known
    message: str
    created: float
    updated: float


@dataclass(frozen=True)
class EventRecord:
    id: int
    job_id: str
    execution_id: str | None
    at: float
    node_id: str | None
    kind: str  # "created", "state", "execution", "bid", "decline", ...
    message: str


class JobStore:
    """Jobs, executions and events in ``path`` (usually ``<home>/jobs.db``)."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, JobRecord] = OrderedDict()
        self._runs: OrderedDict[str, list[ExecutionRecord]] = OrderedDict()  # by job id
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the job store {path}: {exc}") from exc

    def _migrate(self) -> None:
        with self._transaction() as db:
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version > SCHEMA_VERSION:
                raise StorageError(
                    f"{self.path} was written by a newer swarm (schema {version}, this one "
                    f"knows {SCHEMA_VERSION}): upgrade swarm or use another --home"
                )
            if version == 0:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction; a reading one takes no write lock (a consistent snapshot)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StorageError(f"job store {self.path} failed: {exc}") from exc

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """For one SELECT: a statement is its own consistent snapshot, no BEGIN needed."""
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise StorageError(f"job store {self.path} failed: {exc}") from exc

    # Jobs

    def create_job(self, spec: JobSpec) -> JobRecord:
        """Persist a new pending job; it is committed when this returns."""
        now = self._clock()
        job = JobRecord(str(uuid.uuid4()), spec.name, spec, JobState.PENDING, "", now, now)
        with self._transaction() as db:
            db.execute(
                "INSERT INTO jobs (id, name, spec, state, reason, created, updated)"
                " VALUES (?, ?, ?, ?, '', ?, ?)",
                (job.id, job.name, json.dumps(spec.to_dict()), job.state, now, now),
            )
            _insert_event(db, job.id, now, "created", f"job {spec.name} submitted")
        with self._lock:
            _keep(self._runs, job.id, [])
            return _keep(self._jobs, job.id, job)

    def get_job(self, id_or_prefix: str) -> JobRecord:
        """A job by its id or a unique prefix of it (at least 4 characters)."""
        if len(id_or_prefix) == _ID_LENGTH:  # a whole id, as the requester itself asks
            with self._read() as db:
                job = self._jobs.get(id_or_prefix)
                if job is not None:
                    self._jobs.move_to_end(job.id)
                    return job
                row = db.execute(f"{_JOB_SELECT} WHERE id = ?", (id_or_prefix,)).fetchone()
                if row is not None:
                    return _keep(self._jobs, id_or_prefix, _job(row))
        with self._transaction(write=False) as db:
            job_id = _resolve(db, "jobs", "job", id_or_prefix)
            return _job(db.execute(f"{_JOB_SELECT} WHERE id = ?", (job_id,)).fetchone())

    def list_jobs(
        self, state: JobState | Iterable[JobState] | None = None, limit: int = 100
    ) -> list[JobRecord]:
        """Jobs newest first, optionally only those in ``state`` (one or several)."""
        where, args = "", []
        if state is not None:
            states = [state] if isinstance(state, JobState) else list(state)
            where = f"WHERE state IN ({', '.join('?' * len(states))})"
            args = [str(s) for s in states]
        query = f"{_JOB_SELECT} {where} ORDER BY created DESC, rowid DESC LIMIT ?"
        with self._read() as db:
            return [_job(row) for row in db.execute(query, (*args, limit))]

    def jobs_in_states(self, states: Iterable[JobState]) -> list[JobRecord]:
        """Every job in one of ``states``, oldest first: what to resume after a restart."""
        states = [str(s) for s in states]
        query = (
            f"{_JOB_SELECT} WHERE state IN ({', '.join('?' * len(states))}) ORDER BY created, rowid"
        )
        with self._read() as db:
            return [_job(row) for row in db.execute(query, states)]

    def set_job_state(self, job_id: str, new: JobState, reason: str = "") -> JobRecord:
        """Move a job to ``new`` if the lifecycle allows it, and log why."""
        now = self._clock()
        with self._transaction() as db:
            row = db.execute(f"{_JOB_SELECT} WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise NotFound(f"no job {job_id}")
            old = JobState(row[3])
            check_job_transition(old, new, subject=f"job {job_id[:8]}")
            db.execute(
                "UPDATE jobs SET state = ?, reason = ?, updated = ? WHERE id = ?",
                (new, reason, now, job_id),
            )
            message = f"{old} → {new}" + (f": {reason}" if reason else "")
            _insert_event(db, job_id, now, "state", message)
        job = replace(_job(row), state=new, reason=reason, updated=now)
        with self._lock:
            return _keep(self._jobs, job_id, job)

    # Executions

    def add_execution(
        self, job_id: str, node_id: str, state: ExecutionState = ExecutionState.BIDDING
    ) -> ExecutionRecord:
        """A new execution of ``job_id`` on ``node_id``, logged as an event."""
        now = self._clock()
        execution_id = str(uuid.uuid4())
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None:
                raise NotFound(f"no job {job_id}")
            db.execute(
                "INSERT INTO executions (id, job_id, node_id, state, created, updated)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (execution_id, job_id, node_id, state, now, now),
            )
            _insert_event(db, job_id, now, "execution", f"execution {state}", execution_id, node_id)
        execution = ExecutionRecord(execution_id, job_id, node_id, state, None, None, "", now, now)
        with self._lock:
            runs = self._runs.get(job_id)
            if runs is not None:
                runs.append(execution)
        return execution

    def get_execution(self, id_or_prefix: str) -> ExecutionRecord:
        """An execution by its id or a unique prefix of it."""
        with self._transaction(write=False) as db:
            execution_id = _resolve(db, "executions", "execution", id_or_prefix)
            return _execution(_select_execution(db, execution_id))

    def set_execution_state(
        self,
        execution_id: str,
        new: ExecutionState,
        *,
        exit_code: int | None = None,
        status: str | None = None,
        message: str | None = None,
        also_log: tuple[str, str] | None = None,
    ) -> ExecutionRecord:
        """Move an execution to ``new`` if allowed; given fields are updated with it.
        ``also_log``: a further event (kind, message) about the execution, logged after the
        change in the same transaction (a run's end and its result: one commit, not two)."""
        now = self._clock()
        with self._transaction() as db:
            row = _select_execution(db, execution_id)
            if row is None:
                raise NotFound(f"no execution {execution_id}")
            old = _execution(row)
            check_execution_transition(old.state, new, subject=f"execution {execution_id[:8]}")
            execution = replace(
                old,
                state=new,
                exit_code=old.exit_code if exit_code is None else exit_code,
                status=old.status if status is None else status,
                message=old.message if message is None else message,
                updated=now,
            )
            db.execute(
                "UPDATE executions SET state = ?, exit_code = ?, status = ?, message = ?,"
                " updated = ? WHERE id = ?",
                (
                    new,
                    execution.exit_code,
                    execution.status,
                    execution.message,
                    now,
                    execution_id,
                ),
            )
            text = f"{old.state} → {new}"
            if exit_code is not None:
                text += f", exit code {exit_code}"
            if message:
                text += f": {message}"
            _insert_event(db, old.job_id, now, "execution", text, execution_id, old.node_id)
            if also_log is not None:
                kind, detail = also_log
                _insert_event(db, old.job_id, now, kind, detail, execution_id, old.node_id)
        with self._lock:
            runs = self._runs.get(old.job_id)
            if runs is not None:
                runs[:] = [execution if e.id == execution_id else e for e in runs]
        return execution

    def executions(self, job_id: str) -> list[ExecutionRecord]:
        """A job's executions, oldest first."""
        with self._read() as db:
            runs = self._runs.get(job_id)
            if runs is not None:
                self._runs.move_to_end(job_id)
                return list(runs)
            rows = db.execute(
                f"{_EXECUTION_SELECT} WHERE job_id = ? ORDER BY created, rowid", (job_id,)
            )
            runs = [_execution(row) for row in rows]
            if runs or self._jobs.get(job_id) is not None:  # (an unknown id is not kept)
                _keep(self._runs, job_id, runs)
            return list(runs)

    # Events

    def add_event(
        self,
        job_id: str,
        kind: str,
        message: str,
        *,
        execution_id: str | None = None,
        node_id: str | None = None,
    ) -> EventRecord:
        """Log something that happened to a job (a bid, a decline, a retry...)."""
        now = self._clock()
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None:
                raise NotFound(f"no job {job_id}")
            event_id = _insert_event(db, job_id, now, kind, message, execution_id, node_id)
            return EventRecord(event_id, job_id, execution_id, now, node_id, kind, message)

    def retried(self, job_id: str) -> set[str]:
        """Executions of the job that were placed again (a ``retry`` event names each)."""
        with self._read() as db:
            rows = db.execute(
                "SELECT execution_id FROM events WHERE job_id = ? AND kind = 'retry'", (job_id,)
            )
            return {row[0] for row in rows if row[0]}

    def events(self, job_id: str) -> list[EventRecord]:
        """A job's event log in the order it happened."""
        with self._read() as db:
            rows = db.execute(
                "SELECT id, job_id, execution_id, at, node_id, kind, message"
                " FROM events WHERE job_id = ? ORDER BY id",
                (job_id,),
            )
            return [EventRecord(*row) for row in rows]

    # Summaries: one query each however many jobs, for pages that poll (the web UI)

    def executions_of(self, job_ids: Iterable[str]) -> dict[str, list[ExecutionRecord]]:
        """The executions of several jobs at once, oldest first, keyed by job id."""
        ids = list(dict.fromkeys(job_ids))
        found: dict[str, list[ExecutionRecord]] = {job_id: [] for job_id in ids}
        with self._transaction(write=False) as db:
            for start in range(0, len(ids), 500):  # stay under SQLite's bound-parameter cap
                chunk = ids[start : start + 500]
                rows = db.execute(
                    f"{_EXECUTION_SELECT} WHERE job_id IN ({', '.join('?' * len(chunk))})"
                    " ORDER BY created, rowid",
                    chunk,
                )
                for row in rows:
                    found[row[1]].append(_execution(row))
        return found

    def ended_since(self, since: float) -> list[tuple[JobState, float, float]]:
        """``(state, created, updated)`` of every job that ended at or after ``since``."""
        states = [str(s) for s in JobState if s.is_terminal]
        query = (
            f"SELECT state, created, updated FROM jobs WHERE state IN"
            f" ({', '.join('?' * len(states))}) AND updated >= ? ORDER BY updated"
        )
        with self._read() as db:
            return [(JobState(s), c, u) for s, c, u in db.execute(query, (*states, since))]

    def count_by_state(self) -> dict[JobState, int]:
        """How many jobs are in each state (states with none are absent)."""
        with self._read() as db:
            rows = db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state")
            return {JobState(state): count for state, count in rows}


_ID_LENGTH = 36  # str(uuid.uuid4())
_JOB_SELECT = "SELECT id, name, spec, state, reason, created, updated FROM jobs"
_EXECUTION_SELECT = (
    "SELECT id, job_id, node_id, state, exit_code, status, message, created, updated"
    " FROM executions"
)


def _keep(cache: OrderedDict, key: str, value):
    """Put ``value`` in ``cache`` as its most recently used entry, evicting the oldest."""
    cache[key] = value
    cache.move_to_end(key)
    if len(cache) > _CACHED:
        cache.popitem(last=False)
    return value


def _job(row: tuple) -> JobRecord:
    job_id, name, spec, state, reason, created, updated = row
    return JobRecord(job_id, name, _spec(spec), JobState(state), reason, created, updated)


@lru_cache(maxsize=4096)
def _spec(text: str) -> JobSpec:
    """A stored spec, validated once: a job's spec never changes, and it is read for
    every state change (specs are frozen, so sharing one object is safe)."""
    return JobSpec.from_dict(json.loads(text))


def _execution(row: tuple) -> ExecutionRecord:
    values = list(row)
    values[3] = ExecutionState(values[3])
    return ExecutionRecord(*values)


def _select_execution(db: sqlite3.Connection, execution_id: str) -> tuple | None:
    return db.execute(f"{_EXECUTION_SELECT} WHERE id = ?", (execution_id,)).fetchone()


def _insert_event(
    db: sqlite3.Connection,
    job_id: str,
    at: float,
    kind: str,
    message: str,
    execution_id: str | None = None,
    node_id: str | None = None,
) -> int:
    cursor = db.execute(
        "INSERT INTO events (job_id, execution_id, at, node_id, kind, message)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (job_id, execution_id, at, node_id, kind, message),
    )
    return cursor.lastrowid


def _resolve(db: sqlite3.Connection, table: str, noun: str, text: str) -> str:
    """The one id in ``table`` that starts with ``text``, or NotFound / ConfigError."""
    prefix = text.strip().lower()
    if not _PREFIX.fullmatch(prefix):
        raise NotFound(f"no {noun} {text!r}: ids are made of hex digits and dashes")
    if len(prefix) < MIN_PREFIX:
        raise ConfigError(f"{noun} id {text!r} is too short: give at least {MIN_PREFIX} characters")
    # Ids hold only [0-9a-f-], all below '\x7f': a range scan on the primary key finds them.
    rows = db.execute(
        f"SELECT id FROM {table} WHERE id >= ? AND id < ? ORDER BY id LIMIT 6",
        (prefix, prefix + "\x7f"),
    ).fetchall()
    if not rows:
        raise NotFound(f"no {noun} {text!r} on this requester: check the id")
    if len(rows) > 1:
        shown = ", ".join(row[0][: len(prefix) + 4] + "…" for row in rows[:5])
        raise ConfigError(f"{noun} id {text!r} matches several ({shown}): give more characters")
    return rows[0][0]
