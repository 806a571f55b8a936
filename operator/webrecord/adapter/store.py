"""The local backend's task table in SQLite: one row per task, surviving restarts.

Queries are primary-key lookups or one indexed range scan, each well under a millisecond, so
they run on the event loop directly (a thread hop would cost more than the query). WAL mode lets
a second process (e.g. `sqlite3` for inspection) read while the server writes.
"""

from __future__ import annotations

import enum
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from webrecord.api.models import Phase, RecorderStatus, RecordingSpec
from webrecord.metrics import ADAPTER_RECORDINGS, QUEUE_WAIT, RecordingBook

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id   TEXT PRIMARY KEY,
    owner     TEXT NOT NULL,
    spec      TEXT NOT NULL,      -- RecordingSpec JSON (camelCase)
    status    TEXT NOT NULL,      -- RecorderStatus JSON (camelCase)
    state     TEXT NOT NULL,      -- queued | running | done (who holds the task)
    created   INTEGER NOT NULL,   -- unix seconds
    seq       INTEGER NOT NULL DEFAULT 0,  -- last control sequence number sent to the recorder
    pid       INTEGER,            -- recorder process id while running
    queue_pos INTEGER             -- FIFO order among queued tasks
);
CREATE INDEX IF NOT EXISTS tasks_owner_created ON tasks (owner, created DESC, task_id);
CREATE INDEX IF NOT EXISTS tasks_state ON tasks (state, queue_pos);
"""


class RunState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"


@dataclass
class TaskRow:
    task_id: str
    owner: str
    spec: RecordingSpec
    status: RecorderStatus
    state: RunState
    created: int
    seq: int
    pid: int | None


class TaskStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Specs may hold an EncryptKey: the file is created 0600 (SQLite gives its -wal and
        # -shm files the database file's mode).
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        self.path = path
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        # Every status change of a task passes through here: the place to count them.
        self.book = RecordingBook(ADAPTER_RECORDINGS)

    def close(self) -> None:
        self._db.close()

    def insert(self, task_id: str, owner: str, spec: RecordingSpec, status: RecorderStatus,
               created: int) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            (pos,) = self._db.execute("SELECT COALESCE(MAX(queue_pos), 0) + 1 FROM tasks").fetchone()
            self._db.execute(
                "INSERT INTO tasks (task_id, owner, spec, status, state, created, queue_pos) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (task_id, owner, spec.model_dump_json(by_alias=True, exclude_none=True),
                 status.model_dump_json(by_alias=True, exclude_none=True), RunState.QUEUED.value,
                 created, pos),
            )
        self.book.observe(task_id, status, False)

    def get(self, task_id: str) -> TaskRow | None:
        row = self._db.execute(
            "SELECT task_id, owner, spec, status, state, created, seq, pid FROM tasks "
            "WHERE task_id = ?", (task_id,),
        ).fetchone()
        return _row(row) if row else None

    def get_status(self, task_id: str) -> tuple[str, RecorderStatus] | None:
        """(owner, status) without parsing the spec: the Describe fast path."""
        row = self._db.execute(
            "SELECT owner, status FROM tasks WHERE task_id = ?", (task_id,)
        ).fetchone()
        if not row:
            return None
        return row[0], RecorderStatus.model_validate_json(row[1])

    def set_status(self, task_id: str, status: RecorderStatus, state: RunState | None = None) -> None:
        payload = status.model_dump_json(by_alias=True, exclude_none=True)
        if state is None:
            self._db.execute("UPDATE tasks SET status = ? WHERE task_id = ?", (payload, task_id))
        else:
            self._db.execute(
                "UPDATE tasks SET status = ?, state = ? WHERE task_id = ?",
                (payload, state.value, task_id),
            )
        has_callback = status.status is Phase.FINISHED and self._db.execute(
            "SELECT json_extract(spec, '$.callbackUrl') IS NOT NULL FROM tasks WHERE task_id = ?",
            (task_id,)).fetchone() == (1,)
        self.book.observe(task_id, status, has_callback)

    def set_running(self, task_id: str, pid: int) -> None:
        row = self._db.execute("SELECT state, created FROM tasks WHERE task_id = ?",
                               (task_id,)).fetchone()
        if row and row[0] == RunState.QUEUED.value:
            QUEUE_WAIT.observe(max(0.0, time.time() - row[1]))
        self._db.execute(
            "UPDATE tasks SET state = ?, pid = ? WHERE task_id = ?",
            (RunState.RUNNING.value, pid, task_id),
        )

    def next_seq(self, task_id: str) -> int:
        """Reserve the next control sequence number (persisted before it is sent)."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("UPDATE tasks SET seq = seq + 1 WHERE task_id = ?", (task_id,))
            (seq,) = self._db.execute("SELECT seq FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
        return int(seq)

    def in_state(self, state: RunState) -> list[TaskRow]:
        rows = self._db.execute(
            "SELECT task_id, owner, spec, status, state, created, seq, pid FROM tasks "
            "WHERE state = ? ORDER BY queue_pos", (state.value,),
        ).fetchall()
        return [_row(r) for r in rows]

    def count(self, state: RunState) -> int:
        (n,) = self._db.execute("SELECT COUNT(*) FROM tasks WHERE state = ?", (state.value,)).fetchone()
        return int(n)

    def by_phase(self) -> list[tuple[str, int]]:
        """(status, tasks) of the tasks not done, for the webrecord_recordings gauge."""
        rows = self._db.execute(
            "SELECT json_extract(status, '$.status'), COUNT(*) FROM tasks WHERE state != ? "
            "GROUP BY 1", (RunState.DONE.value,)).fetchall()
        return [(str(phase), int(n)) for phase, n in rows]

    def finished_before(self, before: int) -> list[str]:
        """Tasks finished (row done and status finished) before unix time `before`."""
        rows = self._db.execute(
            "SELECT task_id FROM tasks WHERE state = ? "
            "AND json_extract(status, '$.status') = 'finished' "
            "AND COALESCE(json_extract(status, '$.finishTime'), created) < ?",
            (RunState.DONE.value, before),
        ).fetchall()
        return [r[0] for r in rows]

    def delete_finished(self, task_id: str) -> bool:
        """Remove a finished task's row; never one that is queued or running."""
        cur = self._db.execute(
            "DELETE FROM tasks WHERE task_id = ? AND state = ?", (task_id, RunState.DONE.value))
        return cur.rowcount > 0

    def page(self, owner: str | None, offset: int, limit: int) -> tuple[list[RecorderStatus], int]:
        """Newest first. owner None = every task (auth off)."""
        where, args = ("WHERE owner = ?", [owner]) if owner is not None else ("", [])
        (total,) = self._db.execute(f"SELECT COUNT(*) FROM tasks {where}", args).fetchone()
        rows = self._db.execute(
            f"SELECT status FROM tasks {where} ORDER BY created DESC, queue_pos DESC "
            "LIMIT ? OFFSET ?", [*args, limit, offset],
        ).fetchall()
        return [RecorderStatus.model_validate_json(r[0]) for r in rows], int(total)


def _row(row: tuple) -> TaskRow:
    return TaskRow(
        task_id=row[0],
        owner=row[1],
        spec=RecordingSpec.model_validate_json(row[2]),
        status=RecorderStatus.model_validate_json(row[3]),
        state=RunState(row[4]),
        created=int(row[5]),
        seq=int(row[6]),
        pid=row[7],
    )
