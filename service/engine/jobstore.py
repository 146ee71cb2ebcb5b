"""Job persistence: one SQLite table (stdlib ``sqlite3``) plus result files on disk.

Blocking: call every method off the event loop (``asyncio.to_thread``). One connection guarded by a lock; WAL
journal so readers never wait on the writer. Layout under ``data_dir``::

    jobs.sqlite3
    jobs/<id>/result.json     the sampling response (docs/api.md), samples included
    jobs/<id>/result.npz      samples, z, logit_final and meta.json
"""

from __future__ import annotations

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
COLUMNS = ("id", "state", "request", "created_at", "finished_at", "steps_done", "steps_total", "error")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    request TEXT NOT NULL,
    created_at TEXT NOT NULL,
    finished_at TEXT,
    steps_done INTEGER NOT NULL DEFAULT 0,
    steps_total INTEGER NOT NULL,
    error TEXT
)
"""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create(self, job_id: str, request: dict[str, Any], steps_total: int) -> dict[str, Any]:
        with self._lock:
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
        if row is None:
            return None
        job = dict(row)
        job["request"] = json.loads(job["request"])
        return job

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

    def recover(self) -> list[str]:
        """At startup: jobs that were running are ``interrupted``; returns the queued ones, oldest first."""
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET state = 'interrupted', finished_at = ?, "
                "error = 'the server stopped while the job was running' WHERE state = 'running'",
                (now_iso(),),
            )
            rows = self._db.execute("SELECT id FROM jobs WHERE state = 'queued' ORDER BY created_at").fetchall()
        return [r["id"] for r in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) AS c FROM jobs GROUP BY state").fetchall()
        return {r["state"]: int(r["c"]) for r in rows}

    def delete(self, job_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        shutil.rmtree(self.result_dir(job_id), ignore_errors=True)

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
        return (self.result_dir(job_id) / (RESULT_NPZ if npz else RESULT_JSON)).read_bytes()
