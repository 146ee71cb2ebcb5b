"""Job persistence: one SQLite table (stdlib ``sqlite3``) plus result files on disk.

Blocking: call every method off the event loop (``asyncio.to_thread``). One connection guarded by a lock; WAL
journal so readers never wait on the writer. Layout under ``data_dir``::

    jobs.sqlite3
    jobs/<id>/result.json     the sampling response (docs/api.md), samples included
    jobs/<id>/result.npz      samples, z, logit_final and meta.json

Deleting is crash-safe: the row goes first (one statement), then the files. A crash in between leaves a result
folder without a row, which :meth:`JobStore.remove_orphans` deletes; a row never outlives the files it points to
through a deletion of ours.
"""

from __future__ import annotations

import base64
import binascii
import json
import shutil
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DB_NAME = "jobs.sqlite3"
RESULT_JSON = "result.json"
RESULT_NPZ = "result.npz"
TERMINAL = frozenset({"succeeded", "failed", "cancelled", "interrupted"})
COLUMNS = ("id", "state", "request", "created_at", "finished_at", "steps_done", "steps_total", "error", "attempts")
NOT_STARTED_AGAIN = "the server stopped while the job was running"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    request TEXT NOT NULL,
    created_at TEXT NOT NULL,
    finished_at TEXT,
    steps_done INTEGER NOT NULL DEFAULT 0,
    steps_total INTEGER NOT NULL,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0
)
"""
# columns added after the first release, each with its definition: a data dir of an older server gains them at open
_ADDED_COLUMNS = {"attempts": "INTEGER NOT NULL DEFAULT 0"}  # runs started that the server did not end itself
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs (created_at)",
    "CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, created_at)",
)


class BadCursor(ValueError):
    """A listing cursor that :meth:`JobStore.list_page` did not hand out."""


def encode_cursor(created_at: str, seq: int) -> str:
    """An opaque listing cursor: the created_at and row number (insertion order, which breaks ties between jobs
    created in the same millisecond) of the last job of a page, base64url-encoded."""
    return base64.urlsafe_b64encode(json.dumps([created_at, seq]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, int]:
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise BadCursor(cursor) from exc
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and type(value[1]) is int):
        raise BadCursor(cursor)
    return value[0], value[1]


def iso(t: datetime) -> str:
    """A UTC time as the store writes it (``2026-01-02T03:04:05.678Z``): such strings sort as the times do."""
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso() -> str:
    return iso(datetime.now(UTC))


class JobStore:
    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.root / DB_NAME, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
            have = {r["name"] for r in self._db.execute("PRAGMA table_info(jobs)")}
            for name, definition in _ADDED_COLUMNS.items():
                if name not in have:
                    self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {definition}")
            for index in _INDEXES:
                self._db.execute(index)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create(self, job_id: str, request: dict[str, Any], steps_total: int) -> dict[str, Any]:
        job = self.create_if_below(job_id, request, steps_total, None)
        assert isinstance(job, dict)
        return job

    def create_if_below(self, job_id: str, request: dict[str, Any], steps_total: int, max_queued: int | None,
                        max_queued_steps: int | None = None) -> dict[str, Any] | tuple[int, int]:
        """Insert a queued job unless ``max_queued`` jobs are queued already, or the queued jobs' chain-steps plus
        ``steps_total`` would pass ``max_queued_steps`` (a job is always taken when none is queued); checked and
        inserted atomically. Returns the job, or (queued jobs, their chain-steps) when it was refused."""
        with self._lock:
            if max_queued is not None or max_queued_steps is not None:
                count, steps = self._db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(steps_total), 0) FROM jobs WHERE state = 'queued'").fetchone()
                full = max_queued is not None and count >= max_queued
                heavy = max_queued_steps is not None and count > 0 and steps + steps_total > max_queued_steps
                if full or heavy:
                    return int(count), int(steps)
            self._db.execute(
                "INSERT INTO jobs (id, state, request, created_at, steps_total) VALUES (?, 'queued', ?, ?, ?)",
                (job_id, json.dumps(request), now_iso(), steps_total),
            )
        job = self.get(job_id)
        assert job is not None
        return job

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(COLUMNS)} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _job(row)

    def list_page(self, states: frozenset[str] | None, limit: int,
                  cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """Jobs newest first (created_at, then insertion order, descending), at most ``limit``, in one of ``states``
        (None: any), after ``cursor``; returns them and the cursor of the next page (None on the last). BadCursor for
        a cursor this method did not return."""
        where: list[str] = []
        args: list[str | int] = []
        if states is not None:
            where.append(f"state IN ({', '.join('?' for _ in states)})")
            args.extend(sorted(states))
        if cursor is not None:
            created, seq = decode_cursor(cursor)
            where.append("(created_at < ? OR (created_at = ? AND rowid < ?))")
            args.extend((created, created, seq))
        sql = (f"SELECT rowid AS seq, {', '.join(COLUMNS)} FROM jobs "
               f"{'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY created_at DESC, rowid DESC LIMIT ?")
        with self._lock:
            rows = self._db.execute(sql, (*args, limit + 1)).fetchall()
        jobs = [_job(r) for r in rows[:limit]]
        last = jobs[-1] if len(rows) > limit else None
        for job in jobs:
            del job["seq"]
        return jobs, None if last is None else encode_cursor(last["created_at"], rows[limit - 1]["seq"])

    def update(self, job_id: str, **fields: Any) -> None:
        """Set columns; a terminal ``state`` also stamps ``finished_at``."""
        if fields.get("state") in TERMINAL:
            fields.setdefault("finished_at", now_iso())
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*fields.values(), job_id))

    def set_state_if(self, job_id: str, expected: tuple[str, ...], state: str, error: str | None = None) -> bool:
        """Atomically move a job from one of ``expected`` states to ``state``; False when it was in another."""
        finished = now_iso() if state in TERMINAL else None
        marks = ", ".join("?" for _ in expected)
        with self._lock:
            cur = self._db.execute(
                f"UPDATE jobs SET state = ?, finished_at = COALESCE(?, finished_at), error = COALESCE(?, error) "
                f"WHERE id = ? AND state IN ({marks})",
                (state, finished, error, job_id, *expected),
            )
            return cur.rowcount == 1

    def start(self, job_id: str) -> bool:
        """Move a queued job to ``running`` and count the attempt, atomically; False when it was not queued."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1 WHERE id = ? AND state = 'queued'",
                (job_id,))
            return cur.rowcount == 1

    def requeue(self, job_id: str) -> bool:
        """Put a running job back in the queue, from its start, without counting the attempt (a shutdown stopped
        it, not the job); False when it was no longer running."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE jobs SET state = 'queued', steps_done = 0, attempts = MAX(attempts - 1, 0) "
                "WHERE id = ? AND state = 'running'", (job_id,))
            return cur.rowcount == 1

    def recover(self, max_attempts: int) -> tuple[list[str], list[str]]:
        """At startup, after a process that died with jobs running (a crash, a kill, the machine): each such job is
        queued again from its start while it has started fewer than ``max_attempts`` times, else ``interrupted``
        (a job that brings the server down must not do so forever). Returns (the queued jobs, oldest first; the
        jobs given up)."""
        with self._lock:
            lost = [r["id"] for r in self._db.execute(
                "SELECT id FROM jobs WHERE state = 'running' AND attempts >= ?", (max_attempts,))]
            self._db.execute(
                "UPDATE jobs SET state = 'interrupted', finished_at = ?, error = ? "
                "WHERE state = 'running' AND attempts >= ?",
                (now_iso(), f"{NOT_STARTED_AGAIN}, {max_attempts} time(s): not started again "
                            f"(job_max_attempts={max_attempts})", max_attempts))
            self._db.execute("UPDATE jobs SET state = 'queued', steps_done = 0 WHERE state = 'running'")
            rows = self._db.execute("SELECT id FROM jobs WHERE state = 'queued' ORDER BY created_at, rowid").fetchall()
        return [r["id"] for r in rows], lost

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) AS c FROM jobs GROUP BY state").fetchall()
        return {r["state"]: int(r["c"]) for r in rows}

    def delete(self, job_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        shutil.rmtree(self.result_dir(job_id), ignore_errors=True)

    def delete_finished_before(self, cutoff: str) -> list[str]:
        """Delete every terminal job that ended before ``cutoff`` (an ISO time as :func:`now_iso` writes it): rows
        first, in one statement that re-checks the state, then their files. Returns the ids deleted."""
        marks = ", ".join("?" for _ in TERMINAL)
        cond = f"state IN ({marks}) AND COALESCE(finished_at, created_at) < ?"
        with self._lock:
            ids = [r["id"] for r in self._db.execute(f"SELECT id FROM jobs WHERE {cond}", (*TERMINAL, cutoff))]
            if ids:
                self._db.execute(f"DELETE FROM jobs WHERE {cond}", (*TERMINAL, cutoff))
        for job_id in ids:
            shutil.rmtree(self.result_dir(job_id), ignore_errors=True)
        return ids

    def remove_orphans(self) -> list[str]:
        """Delete result folders whose job has no row (a deletion interrupted between row and files, or a result
        written after its job was deleted). Safe at any time: a job's row exists before its first file."""
        base = self.root / "jobs"
        if not base.is_dir():
            return []
        removed = []
        for d in base.iterdir():
            if d.is_dir() and self.get(d.name) is None:
                shutil.rmtree(d, ignore_errors=True)
                removed.append(d.name)
        return removed

    # --- result files -----------------------------------------------------------------------------------------

    def result_dir(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id

    def write_result(self, job_id: str, body: dict[str, Any], npz: bytes) -> None:
        d = self.result_dir(job_id)
        d.mkdir(parents=True, exist_ok=True)
        for name, data in ((RESULT_NPZ, npz), (RESULT_JSON, json.dumps(body).encode())):
            tmp = d / (name + ".tmp")
            tmp.write_bytes(data)
            tmp.replace(d / name)  # atomic: a crash never leaves a half-written result

    def read_result(self, job_id: str, npz: bool = False) -> bytes:
        """The result file's bytes; FileNotFoundError when it is missing."""
        return (self.result_dir(job_id) / (RESULT_NPZ if npz else RESULT_JSON)).read_bytes()


def _job(row: sqlite3.Row) -> dict[str, Any]:
    job = dict(row)
    job["request"] = json.loads(job["request"])
    return job
