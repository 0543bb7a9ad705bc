"""The DuckDB task store: schema, migrations, bulk writes and queries.

One ``Store`` owns one DuckDB file: the kernel in embedded mode, the jupyter server
otherwise. Writes arrive as a :class:`~raytha_nb.protocol.Batch` and are committed in
one transaction of bulk statements (DuckDB does ~1,000 single-row statements a second
but tens of thousands of rows a second in one statement). Reads use a cursor per
thread. All of raytha_nb's SQL is here, as class-level strings.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from ._sql import literal
from .errors import StoreClosed, StoreLockedError
from .model import TERMINAL, LogLine, TaskQuery, TaskRecord, TaskStatus
from .protocol import Batch, HistoryRow, LogRow, ProgressRow, TaskRow

TASK_COLUMNS = TaskRow._fields
PROGRESS_COLUMNS = ProgressRow._fields
HISTORY_COLUMNS = HistoryRow._fields
LOG_COLUMNS = LogRow._fields
_TIME_COLUMNS = {"created_at", "started_at", "completed_at", "heartbeat_at", "ts"}

_ARROW_TYPES: dict[str, pa.DataType] = {
    "task_step": pa.int32(),
    "percent_complete": pa.float64(),
    "pid": pa.int64(),
    "seq": pa.int64(),
    "cancel_requested": pa.bool_(),
    **{name: pa.float64() for name in _TIME_COLUMNS},
}
_FINISHED = tuple(s.value for s in TERMINAL)


def _ts(column: str) -> str:
    return f"make_timestamp(CAST({column} * 1000000 AS BIGINT)) AS {column}"


def _select(columns: Sequence[str]) -> str:
    return ", ".join(_ts(c) if c in _TIME_COLUMNS else c for c in columns)


def _arrow(columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> pa.Table:
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
    # The history table keeps its first name, task_events: users' SQL reads it.
    INSERT_HISTORY = (
        f"INSERT INTO task_events ({', '.join(HISTORY_COLUMNS)}) "
        f"SELECT {_select(HISTORY_COLUMNS)} FROM batch_history"
    )
    INSERT_LOGS = (
        f"INSERT INTO task_logs ({', '.join(LOG_COLUMNS)}) "
        f"SELECT {_select(LOG_COLUMNS)} FROM batch_logs"
    )
    SELECT_ACTIVE = "SELECT id FROM tasks WHERE status IN ('enqueued', 'processing')"
    INTERRUPT_HISTORY = """
        INSERT INTO task_events
        SELECT id, make_timestamp($now), 'interrupted', task_step, percent_complete,
               replace($reason, '{pid}', coalesce(CAST(pid AS VARCHAR), 'unknown'))
        FROM tasks WHERE id IN (SELECT unnest($ids))
    """
    INTERRUPT_TASKS = """
        UPDATE tasks SET status = 'interrupted', cancel_requested = false,
               status_info = replace($reason, '{pid}', coalesce(CAST(pid AS VARCHAR), 'unknown')),
               completed_at = make_timestamp($now), updated_at = make_timestamp($now)
        WHERE id IN (SELECT unnest($ids))
    """
    REVIVE_HISTORY = """
        INSERT INTO task_events
        SELECT id, make_timestamp($now), 'processing', task_step, percent_complete, $reason
        FROM tasks WHERE id IN (SELECT unnest($ids)) AND status = 'interrupted'
    """
    REVIVE_TASKS = """
        UPDATE tasks SET status = 'processing', completed_at = NULL, status_info = $reason,
               updated_at = make_timestamp($now)
        WHERE id IN (SELECT unnest($ids)) AND status = 'interrupted'
    """
    SELECT_FINISHED = (
        f"SELECT id FROM tasks WHERE id IN (SELECT unnest(?)) AND status IN {tuple(_FINISHED)!r}"
    )
    SELECT_FINISHED_BEFORE = (
        f"SELECT id FROM tasks WHERE status IN {tuple(_FINISHED)!r} "
        "AND (CAST(? AS BIGINT) IS NULL OR completed_at < make_timestamp(CAST(? AS BIGINT)))"
    )
    SELECT_LAST_LOG_SEQ = """
        SELECT task_id, max(seq) FROM task_logs
        WHERE task_id IN (SELECT unnest(?)) GROUP BY task_id
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
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
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
            self.interrupt(
                self.active_ids(), "the process that ran it (PID {pid}) ended before it finished"
            )
        # Private to the user, like the kernel secret: tasks keep arguments, logs, results.
        self.results_dir.mkdir(mode=0o700, exist_ok=True)
        wal = self.path.with_name(f"{self.path.name}.wal")
        for private, mode in ((self.path, 0o600), (wal, 0o600), (self.results_dir, 0o700)):
            with contextlib.suppress(FileNotFoundError, PermissionError):  # not ours to change
                private.chmod(mode)

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
                    ("batch_history", HISTORY_COLUMNS, batch.history, self.INSERT_HISTORY),
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
                for name in ("batch_tasks", "batch_progress", "batch_history", "batch_logs"):
                    with contextlib.suppress(duckdb.Error):
                        cur.unregister(name)
                raise

    def interrupt(self, ids: Sequence[str], reason: str) -> list[str]:
        """Mark those of ``ids`` still enqueued or processing ``interrupted``; returns them.

        ``reason`` becomes the status_info; ``{pid}`` in it is filled from each task's pid.
        """
        if not ids:
            return []
        cur = self._cursor()
        with self._write_lock:
            active = [
                row[0]
                for row in cur.execute(
                    f"{self.SELECT_ACTIVE} AND id IN (SELECT unnest(?))", [list(ids)]
                ).fetchall()
            ]
            if not active:
                return []
            values = {"ids": active, "reason": reason, "now": _micros()}
            cur.execute("BEGIN")
            try:
                cur.execute(self.INTERRUPT_HISTORY, values)
                cur.execute(self.INTERRUPT_TASKS, values)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return active

    def revive(self, ids: Sequence[str], reason: str) -> None:
        """Put ``interrupted`` tasks back to ``processing``: their process was presumed
        dead but spoke again, so it still runs them."""
        if not ids:
            return
        cur = self._cursor()
        values = {"ids": list(ids), "reason": reason, "now": _micros()}
        with self._write_lock:
            cur.execute("BEGIN")
            try:
                cur.execute(self.REVIVE_HISTORY, values)
                cur.execute(self.REVIVE_TASKS, values)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

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

    def list_tasks(self, query: TaskQuery) -> list[TaskRecord]:
        """One page of the tasks ``query`` selects, newest first."""
        where, params = _where(query)
        sql = f"{self.SELECT_TASKS} WHERE {where} ORDER BY created_at DESC, id"
        if query.limit is not None:
            sql += f" LIMIT {int(query.limit)} OFFSET {int(query.offset)}"
        return [_record(row) for row in self._cursor().execute(sql, params).fetchall()]

    def count_tasks(self, query: TaskQuery) -> int:
        """How many tasks ``query`` selects, whatever its page."""
        where, params = _where(query)
        row = self._cursor().execute(f"SELECT count(*) FROM tasks WHERE {where}", params).fetchone()
        return int(row[0]) if row else 0

    def active_ids(self, kernel_id: str | None = None) -> list[str]:
        """Ids of enqueued and processing tasks (of one kernel, if given)."""
        sql, params = self.SELECT_ACTIVE, []
        if kernel_id is not None:
            sql, params = f"{sql} AND kernel_id = ?", [kernel_id]
        return [row[0] for row in self._cursor().execute(sql, params).fetchall()]

    def finished_ids(self, ids: Sequence[str]) -> set[str]:
        """Those of ``ids`` whose stored status is final."""
        if not ids:
            return set()
        rows = self._cursor().execute(self.SELECT_FINISHED, [list(ids)]).fetchall()
        return {row[0] for row in rows}

    def finished_before(self, ts: float | None) -> list[str]:
        """Ids of finished tasks (that finished before epoch second ``ts``, if given)."""
        micros = None if ts is None else int(ts * 1_000_000)
        rows = self._cursor().execute(self.SELECT_FINISHED_BEFORE, [micros, micros])
        return [row[0] for row in rows.fetchall()]

    def last_log_seqs(self, ids: Sequence[str]) -> dict[str, int]:
        """The highest stored log ``seq`` of each of ``ids`` that has logged."""
        if not ids:
            return {}
        rows = self._cursor().execute(self.SELECT_LAST_LOG_SEQ, [list(ids)]).fetchall()
        return {task_id: int(seq) for task_id, seq in rows}

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


def _where(query: TaskQuery) -> tuple[str, list[Any]]:
    """The WHERE clause (and its parameters) of a task query."""
    where: list[str] = ["true"]
    params: list[Any] = []
    if query.status is not None:
        where.append(f"status IN ({', '.join('?' * len(query.status))})")
        params.extend(s.value for s in query.status)
    for column in ("name", "kernel_id", "notebook"):
        value = getattr(query, column)
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if query.q:
        where.append(
            "contains(lower(concat_ws(chr(10), name, task, notebook, status_info)), lower(?))"
        )
        params.append(query.q)
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
