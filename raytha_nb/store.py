"""The DuckDB task store: schema, migrations, bulk writes and queries.

One ``Store`` owns one DuckDB file: the kernel in embedded mode, the jupyter server
otherwise. Writes arrive as a :class:`Batch` and are committed in one transaction of
bulk statements (DuckDB does ~1,000 single-row statements a second but tens of
thousands of rows a second in one statement). Reads use a cursor per thread.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from ._sql import literal
from .model import LogLine, StoreClosed, StoreLockedError, TaskRecord, TaskStatus

#: Column order of task rows in a Batch (times are epoch seconds).
TASK_COLUMNS = (
    "id", "name", "task", "args", "status", "task_step", "status_info", "percent_complete",
    "error_type", "error_message", "traceback", "result", "result_kind", "created_at",
    "started_at", "completed_at", "heartbeat_at", "kernel_id", "notebook", "pid",
    "cancel_requested",
)  # fmt: skip
#: A running task's progress only: the cheap update most flushes need.
PROGRESS_COLUMNS = ("id", "task_step", "status_info", "percent_complete", "heartbeat_at")
EVENT_COLUMNS = ("task_id", "ts", "status", "task_step", "percent_complete", "status_info")
LOG_COLUMNS = ("task_id", "seq", "ts", "stream", "text")
_TIME_COLUMNS = {"created_at", "started_at", "completed_at", "heartbeat_at", "ts"}

_ARROW_TYPES: dict[str, pa.DataType] = {
    "task_step": pa.int32(),
    "percent_complete": pa.float64(),
    "pid": pa.int64(),
    "seq": pa.int64(),
    "cancel_requested": pa.bool_(),
    **{name: pa.float64() for name in _TIME_COLUMNS},
}


@dataclass
class Batch:
    """State changes to commit together: full task rows (latest wins), progress-only rows
    of tasks already stored, history rows, log lines."""

    tasks: list[tuple[Any, ...]] = field(default_factory=list)
    progress: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    logs: list[tuple[Any, ...]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.tasks or self.progress or self.events or self.logs)

    def to_json(self) -> dict[str, Any]:
        return {
            "tasks": self.tasks,
            "progress": self.progress,
            "events": self.events,
            "logs": self.logs,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Batch:
        return cls(
            tasks=[tuple(row) for row in data.get("tasks", [])],
            progress=[tuple(row) for row in data.get("progress", [])],
            events=[tuple(row) for row in data.get("events", [])],
            logs=[tuple(row) for row in data.get("logs", [])],
        )


def _ts(column: str) -> str:
    return f"make_timestamp(CAST({column} * 1000000 AS BIGINT)) AS {column}"


def _select(columns: Sequence[str]) -> str:
    return ", ".join(_ts(c) if c in _TIME_COLUMNS else c for c in columns)


def _arrow(columns: Sequence[str], rows: list[tuple[Any, ...]]) -> pa.Table:
    arrays = list(zip(*rows)) if rows else [()] * len(columns)
    return pa.table(
        {
            # list(): pyarrow converts a tuple of str ~500x slower than a list.
            name: pa.array(list(values), type=_ARROW_TYPES.get(name, pa.string()))
            for name, values in zip(columns, arrays)
        }
    )


class Store:
    """Task rows, their history and their logs in one DuckDB file."""

    #: Forward-only migrations; the schema version is the number applied.
    MIGRATIONS: tuple[str, ...] = (
        """
        CREATE TABLE raytha_meta (key VARCHAR PRIMARY KEY, value VARCHAR);
        CREATE TABLE tasks (
            id VARCHAR PRIMARY KEY,
            name VARCHAR NOT NULL,
            task VARCHAR NOT NULL,
            args VARCHAR,               -- JSON
            status VARCHAR NOT NULL,
            task_step INTEGER NOT NULL DEFAULT 0,
            status_info VARCHAR,
            percent_complete DOUBLE NOT NULL DEFAULT 0,
            error_type VARCHAR,
            error_message VARCHAR,
            traceback VARCHAR,
            result VARCHAR,             -- JSON: the value, or a file descriptor
            result_kind VARCHAR,        -- json | parquet | pickle | file | repr
            created_at TIMESTAMP NOT NULL,   -- all times are UTC
            started_at TIMESTAMP,
            completed_at TIMESTAMP,
            heartbeat_at TIMESTAMP,
            kernel_id VARCHAR,
            notebook VARCHAR,
            pid BIGINT,
            cancel_requested BOOLEAN NOT NULL DEFAULT false,
            updated_at TIMESTAMP NOT NULL
        );
        CREATE TABLE task_events (      -- status changes and progress samples
            task_id VARCHAR NOT NULL,
            ts TIMESTAMP NOT NULL,
            status VARCHAR NOT NULL,
            task_step INTEGER,
            percent_complete DOUBLE,
            status_info VARCHAR
        );
        CREATE TABLE task_logs (
            task_id VARCHAR NOT NULL,
            seq BIGINT NOT NULL,
            ts TIMESTAMP NOT NULL,
            stream VARCHAR NOT NULL,    -- stdout | stderr | log
            text VARCHAR NOT NULL
        );
        """,
    )

    UPSERT_TASKS = (
        f"INSERT OR REPLACE INTO tasks ({', '.join(TASK_COLUMNS)}, updated_at) "
        f"SELECT {_select(TASK_COLUMNS)}, make_timestamp(?) FROM batch_tasks"
    )
    # A narrow UPDATE costs DuckDB ~1 ms where rewriting the 22-column row costs ~6 ms.
    UPDATE_PROGRESS = (
        "UPDATE tasks SET task_step = b.task_step, status_info = b.status_info, "
        "percent_complete = b.percent_complete, heartbeat_at = b.heartbeat_at, "
        f"updated_at = make_timestamp(?) FROM (SELECT {_select(PROGRESS_COLUMNS)} "
        "FROM batch_progress) AS b WHERE tasks.id = b.id"
    )
    INSERT_EVENTS = (
        f"INSERT INTO task_events ({', '.join(EVENT_COLUMNS)}) "
        f"SELECT {_select(EVENT_COLUMNS)} FROM batch_events"
    )
    INSERT_LOGS = (
        f"INSERT INTO task_logs ({', '.join(LOG_COLUMNS)}) "
        f"SELECT {_select(LOG_COLUMNS)} FROM batch_logs"
    )
    RECOVER_EVENTS = """
        INSERT INTO task_events
        SELECT id, make_timestamp($now), 'interrupted', task_step, percent_complete,
               replace($reason, '{pid}', coalesce(CAST(pid AS VARCHAR), 'unknown'))
        FROM tasks WHERE id IN (SELECT unnest($ids))
    """
    RECOVER_TASKS = """
        UPDATE tasks SET status = 'interrupted', cancel_requested = false,
               status_info = replace($reason, '{pid}', coalesce(CAST(pid AS VARCHAR), 'unknown')),
               completed_at = make_timestamp($now), updated_at = make_timestamp($now)
        WHERE id IN (SELECT unnest($ids))
    """
    SELECT_TASKS = f"SELECT {', '.join(TASK_COLUMNS)}, updated_at FROM tasks"
    SELECT_LOGS = """
        SELECT task_id, seq, ts, stream, text FROM task_logs
        WHERE task_id = ? AND seq > ? ORDER BY seq LIMIT ?
    """
    SELECT_HISTORY = """
        SELECT ts, status, task_step, percent_complete, status_info FROM task_events
        WHERE task_id = ? ORDER BY ts, rowid
    """

    def __init__(self, path: str | Path, *, recover: bool = True) -> None:
        self.path = Path(path).expanduser().resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.results_dir = self.path.parent / f"{self.path.stem}-results"
        try:
            self._con = duckdb.connect(str(self.path))
        except duckdb.IOException as exc:
            raise _locked_error(self.path, exc) from None
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._closed = False
        self._migrate()
        if recover:
            self.interrupt_active("the process that ran it (PID {pid}) ended before it finished")

    # -- plumbing ----------------------------------------------------------------
    def _cursor(self) -> duckdb.DuckDBPyConnection:
        if self._closed:
            raise StoreClosed(f"the task store {self.path} is closed")
        cur = getattr(self._local, "cur", None)
        if cur is None:
            cur = self._con.cursor()
            self._local.cur = cur
        return cur

    @property
    def schema_version(self) -> int:
        row = (
            self._cursor()
            .execute("SELECT value FROM raytha_meta WHERE key = 'schema_version'")
            .fetchone()
        )
        return int(row[0]) if row else 0

    def _migrate(self) -> None:
        cur = self._cursor()
        exists = cur.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'raytha_meta'"
        ).fetchone()
        current = self.schema_version if exists and exists[0] else 0
        if current > len(self.MIGRATIONS):
            raise RuntimeError(
                f"The task store {self.path} has schema version {current}, newer than this "
                f"raytha_nb understands ({len(self.MIGRATIONS)}): upgrade raytha_nb."
            )
        with self._write_lock:
            for version in range(current + 1, len(self.MIGRATIONS) + 1):
                cur.execute("BEGIN")
                cur.execute(self.MIGRATIONS[version - 1])
                cur.execute(
                    "INSERT OR REPLACE INTO raytha_meta VALUES ('schema_version', ?)",
                    [str(version)],
                )
                cur.execute("COMMIT")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._con.close()

    # -- writes -----------------------------------------------------------------
    def apply(self, batch: Batch) -> None:
        """Commit a batch in one transaction; raises (and commits nothing) on failure."""
        if not batch:
            return
        cur = self._cursor()
        with self._write_lock:
            cur.execute("BEGIN")
            try:
                for name, columns, rows, sql in (
                    ("batch_tasks", TASK_COLUMNS, batch.tasks, self.UPSERT_TASKS),
                    ("batch_progress", PROGRESS_COLUMNS, batch.progress, self.UPDATE_PROGRESS),
                    ("batch_events", EVENT_COLUMNS, batch.events, self.INSERT_EVENTS),
                    ("batch_logs", LOG_COLUMNS, batch.logs, self.INSERT_LOGS),
                ):
                    if rows:
                        cur.register(name, _arrow(columns, rows))
                        cur.execute(sql, [_micros()] if "?" in sql else [])
                        cur.unregister(name)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                # Only now: unregistering inside the failed transaction would raise and
                # hide the real error.
                for name in ("batch_tasks", "batch_progress", "batch_events", "batch_logs"):
                    with contextlib.suppress(duckdb.Error):
                        cur.unregister(name)
                raise

    def publish(self, batch: Batch) -> set[str]:
        """The embedded backend's publish: commit; nobody else can ask for cancels."""
        self.apply(batch)
        return set()

    def interrupt_active(
        self, reason: str, where: str = "true", params: Sequence[Any] = ()
    ) -> list[str]:
        """Mark enqueued/processing tasks matching ``where`` interrupted; returns their ids.

        ``reason`` becomes the status_info; ``{pid}`` in it is filled from each task's pid.
        """
        cur = self._cursor()
        with self._write_lock:
            ids = [
                row[0]
                for row in cur.execute(
                    "SELECT id FROM tasks WHERE status IN ('enqueued', 'processing') "
                    f"AND ({where})",
                    list(params),
                ).fetchall()
            ]
            if not ids:
                return []
            values = {"ids": ids, "reason": reason, "now": _micros()}
            cur.execute("BEGIN")
            try:
                cur.execute(self.RECOVER_EVENTS, values)
                cur.execute(self.RECOVER_TASKS, values)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return ids

    def request_cancel(self, job_id: str) -> None:
        with self._write_lock:
            self._cursor().execute(
                "UPDATE tasks SET cancel_requested = true WHERE id = ?", [job_id]
            )

    def delete(self, job_id: str) -> bool:
        """Remove a task with its history, logs and result file; False if unknown."""
        record = self.get(job_id)
        if record is None:
            return False
        cur = self._cursor()
        with self._write_lock:
            cur.execute("BEGIN")
            for table, key in (
                ("tasks", "id"),
                ("task_events", "task_id"),
                ("task_logs", "task_id"),
            ):
                cur.execute(f"DELETE FROM {table} WHERE {key} = ?", [job_id])
            cur.execute("COMMIT")
        if isinstance(record.result, dict) and "path" in record.result:
            path = Path(record.result["path"])
            if path.parent == self.results_dir:  # ours; a user's export file stays
                path.unlink(missing_ok=True)
        return True

    # -- reads ------------------------------------------------------------------
    def get(self, job_id: str) -> TaskRecord | None:
        row = self._cursor().execute(f"{self.SELECT_TASKS} WHERE id = ?", [job_id]).fetchone()
        return _record(row) if row else None

    def list_tasks(
        self,
        *,
        status: str | Sequence[str] | None = None,
        name: str | None = None,
        kernel_id: str | None = None,
        notebook: str | None = None,
        limit: int | None = 100,
        offset: int = 0,
        q: str | None = None,
    ) -> list[TaskRecord]:
        """Tasks newest first, filtered by exact status(es), name, kernel or notebook, and
        ``q``: a case-insensitive substring of name, task, notebook or status_info."""
        where, params = _filters(status, name, kernel_id, notebook, q)
        sql = f"{self.SELECT_TASKS} WHERE {where} ORDER BY created_at DESC, id"
        if limit is not None:
            sql += f" LIMIT {int(limit)} OFFSET {int(offset)}"
        return [_record(row) for row in self._cursor().execute(sql, params).fetchall()]

    def count_tasks(
        self,
        *,
        status: str | Sequence[str] | None = None,
        name: str | None = None,
        kernel_id: str | None = None,
        notebook: str | None = None,
        q: str | None = None,
    ) -> int:
        """How many tasks :meth:`list_tasks` with these filters and no limit would return."""
        where, params = _filters(status, name, kernel_id, notebook, q)
        row = self._cursor().execute(f"SELECT count(*) FROM tasks WHERE {where}", params).fetchone()
        return int(row[0]) if row else 0

    def get_many(self, ids: Sequence[str]) -> list[TaskRecord]:
        """The stored rows of ``ids`` (unknown ids are left out), in no particular order."""
        if not ids:
            return []
        rows = (
            self._cursor()
            .execute(f"{self.SELECT_TASKS} WHERE id IN (SELECT unnest(?))", [list(ids)])
            .fetchall()
        )
        return [_record(row) for row in rows]

    def logs(self, job_id: str, since: int = 0, limit: int = 10_000) -> list[LogLine]:
        rows = self._cursor().execute(self.SELECT_LOGS, [job_id, since, limit]).fetchall()
        return [LogLine(r[0], r[1], _aware(r[2]), r[3], r[4]) for r in rows]  # type: ignore[arg-type]

    def history(self, job_id: str) -> list[dict[str, Any]]:
        rows = self._cursor().execute(self.SELECT_HISTORY, [job_id]).fetchall()
        keys = ("ts", "status", "task_step", "percent_complete", "status_info")
        return [dict(zip(keys, (_aware(r[0]), *r[1:]))) for r in rows]

    #: The tables users query (``rnb.task_store()``) and a snapshot copies.
    TABLES = ("tasks", "task_events", "task_logs")

    def sql(self, query: str, params: Sequence[Any] = ()) -> duckdb.DuckDBPyConnection:
        """Run read-only SQL over the store (tasks, task_events, task_logs)."""
        return self._cursor().execute(query, list(params))

    def result_url(self, job_id: str) -> str | None:
        """No server, no download URL: the result file's path is all there is."""
        return None

    def connection(self) -> duckdb.DuckDBPyConnection:
        """A cursor on the store itself, for reading its tables with any DuckDB API."""
        return self._con.cursor()

    def snapshot(self, target: Path) -> list[Path]:
        """Copy the user-facing tables to Parquet files in ``target`` (one transaction,
        so they agree with each other); for processes that cannot open the file."""
        target.mkdir(parents=True, exist_ok=True)
        files = [target / f"{table}.parquet" for table in self.TABLES]
        cur = self._con.cursor()
        cur.execute("BEGIN")
        try:
            for table, path in zip(self.TABLES, files):
                cur.execute(f"COPY {table} TO {literal(path)} (FORMAT parquet)")
        finally:
            cur.execute("COMMIT")
        return files


def _filters(
    status: str | Sequence[str] | None,
    name: str | None,
    kernel_id: str | None,
    notebook: str | None,
    q: str | None,
) -> tuple[str, list[Any]]:
    """The WHERE clause (and its parameters) shared by list_tasks and count_tasks."""
    where: list[str] = ["true"]
    params: list[Any] = []
    if status is not None:
        statuses = [status] if isinstance(status, str) else list(status)
        where.append(f"status IN ({', '.join('?' * len(statuses))})")
        params.extend(TaskStatus(s).value for s in statuses)
    for column, value in (("name", name), ("kernel_id", kernel_id), ("notebook", notebook)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if q:
        where.append(
            "contains(lower(concat_ws(chr(10), name, task, notebook, status_info)), lower(?))"
        )
        params.append(q)
    return " AND ".join(where), params


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=timezone.utc)


def _record(row: tuple[Any, ...]) -> TaskRecord:
    values = dict(zip((*TASK_COLUMNS, "updated_at"), row))
    for key in ("created_at", "started_at", "completed_at", "heartbeat_at", "updated_at"):
        values[key] = _aware(values[key])
    for key in ("args", "result"):
        values[key] = None if values[key] is None else json.loads(values[key])
    values["status"] = TaskStatus(values["status"])
    return TaskRecord(**values)


_PID = re.compile(r"\(PID (\d+)\)")


def _locked_error(path: Path, exc: Exception) -> Exception:
    message = str(exc)
    if "lock" not in message.lower():
        return exc
    match = _PID.search(message)
    return StoreLockedError(str(path), int(match.group(1)) if match else None, message)


def _micros() -> int:
    """Now as UTC epoch microseconds (DuckDB's now() would be in the session time zone)."""
    return int(time.time() * 1_000_000)
