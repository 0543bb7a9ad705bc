"""The DuckDB task store: schema, migrations, bulk writes and queries.

One ``Store`` owns one DuckDB file: the kernel in embedded mode, the jupyter server
otherwise. Writes arrive as a :class:`~raytha_nb.protocol.Batch` and are committed in
one transaction of bulk statements (DuckDB does ~1,000 single-row statements a second
but tens of thousands of rows a second in one statement). Reads use a cursor per
thread. All of raytha_nb's SQL is here, as class-level strings.

A store refuses a damaged file at open (cut short, failing checksums, not DuckDB at
all, a corrupt write-ahead log) and stops at the first write that finds damage, each
time with :class:`~raytha_nb.errors.StoreDamaged` naming the file and how to move it
aside; a write the disk refuses raises :class:`~raytha_nb.errors.StoreWriteError`
with DuckDB's own message. It checkpoints by itself (the WAL past a size or an age,
and when idle) so recent history does not live in the WAL alone: DuckDB drops a WAL
from its first bad byte on.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import re
import shlex
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from ._sql import literal
from .errors import StoreClosed, StoreDamaged, StoreLockedError, StoreUnusable, StoreWriteError
from .model import TERMINAL, LogLine, TaskQuery, TaskRecord, TaskStatus
from .protocol import RUN_COLUMNS, Batch, HistoryRow, LogRow, ProgressRow, TaskBlock, TaskRow

TASK_COLUMNS = TaskRow._fields
PROGRESS_COLUMNS = ProgressRow._fields
HISTORY_COLUMNS = HistoryRow._fields
LOG_COLUMNS = LogRow._fields
_TIME_COLUMNS = {"created_at", "started_at", "completed_at", "heartbeat_at", "ts", "scheduled_for"}

_ARROW_TYPES: dict[str, pa.DataType] = {
    "task_step": pa.int32(),
    "percent_complete": pa.float64(),
    "pid": pa.int64(),
    "attempt": pa.int32(),
    "max_attempts": pa.int32(),
    "seq": pa.int64(),
    "cancel_requested": pa.bool_(),
    **{name: pa.float64() for name in _TIME_COLUMNS},
}
_FINISHED = tuple(s.value for s in TERMINAL)

log = logging.getLogger("raytha_nb")

#: DuckDB's file header: a main header and two database headers of 4 KiB each.
_HEADER_BYTES = 3 * 4096
#: Words in DuckDB's messages for a file whose bytes are wrong.
_DAMAGE = (
    "corrupt database file",
    "checksum",
    "could not read enough bytes",
    "corrupt wal",
    "replaying wal",
)
#: ... for a write the file system refused (a full disk, a size limit, permissions).
_IO = (
    "could not write",
    "cannot open file",
    "no space left",
    "file too large",
    "disk quota",
    "read-only file system",
    "permission denied",
)
_NO_ROOM = ("no space left", "file too large", "disk quota", "not enough space")
_NOT_ALLOWED = ("permission denied", "read-only file system")
#: DuckDB's message for a commit that stuck although its automatic checkpoint failed.
_DURABLE = "commit succeeded and is durable"
_INVALIDATED = "database has been invalidated"


#: DuckDB's version, (major, minor).
_DUCKDB = tuple(int(part) for part in duckdb.__version__.split(".")[:2])


def _timestamp(value: str) -> str:
    """SQL for epoch seconds ``value`` (how times travel) as a TIMESTAMP."""
    return f"make_timestamp(CAST({value} * 1000000 AS BIGINT))"


def _ts(column: str) -> str:
    return f"{_timestamp(column)} AS {column}"


def _one_value(values: Sequence[Any]) -> bool:
    """Whether a column holds one value in every row (then made once, not per row)."""
    return len(values) > 16 and values.count(values[0]) == len(values)


def _select(columns: Sequence[str]) -> str:
    return ", ".join(_ts(c) if c in _TIME_COLUMNS else c for c in columns)


def _arrow(columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> pa.Table:
    arrays = list(zip(*rows)) if rows else [()] * len(columns)
    kinds = [_ARROW_TYPES.get(name, pa.string()) for name in columns]
    return pa.table({name: _column(v, k) for name, v, k in zip(columns, arrays, kinds)})


_DUCKDB_TYPES = {pa.string(): "VARCHAR", pa.int32(): "INTEGER", pa.int64(): "BIGINT",
                 pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN"}  # fmt: skip


def _block_parts(block: TaskBlock, columns: Sequence[str]) -> tuple[pa.Table, dict[str, Any]]:
    """``columns`` of a block of task rows: those whose values differ as Arrow, and
    those with one value for every row as named parameters (a map's children share
    most: each Arrow column is a C call that gives the GIL to the task threads)."""
    table: dict[str, pa.Array] = {}
    same: dict[str, Any] = {}
    for name in columns:
        values = block.columns.get(name)
        if values is None:
            same[name] = block.same[name]
        elif name != "id" and _one_value(values):
            same[name] = values[0]
        else:
            table[name] = pa.array(values, type=_ARROW_TYPES.get(name, pa.string()))
    return pa.table(table), same


def _block_value(name: str, same: dict[str, Any]) -> str:
    """A column of ``batch_block`` (alias ``b``) or its parameter, as stored."""
    if name in same:
        kind = _DUCKDB_TYPES[_ARROW_TYPES.get(name, pa.string())]
        source = f"CAST(${name} AS {kind})"
    else:
        source = f"b.{name}"
    return _timestamp(source) if name in _TIME_COLUMNS else source


def _block_insert(same: dict[str, Any], replace: bool) -> str:
    values = ", ".join(_block_value(name, same) for name in TASK_COLUMNS)
    return (
        f"INSERT {'OR REPLACE ' if replace else ''}INTO tasks ({', '.join(TASK_COLUMNS)}, "
        f"updated_at) SELECT {values}, make_timestamp($now) FROM batch_block AS b"
    )


def _block_update(same: dict[str, Any]) -> str:
    sets = ", ".join(f"{name} = {_block_value(name, same)}" for name in RUN_COLUMNS)
    return (
        f"UPDATE tasks SET {sets}, updated_at = make_timestamp($now) FROM batch_block AS b "
        "WHERE tasks.id = b.id"
    )


def _column(values: Sequence[Any], kind: pa.DataType) -> pa.Array:
    """One column; one value repeated (a map's children share most of theirs: name,
    kernel, options, ...) is made in C instead of converted value by value."""
    if _one_value(values):
        return pa.repeat(pa.scalar(values[0], type=kind), len(values))
    return pa.array(list(values), type=kind)  # list(): a tuple of str is ~500x slower


#: A schedule's columns (raytha_nb/server/scheduler.py owns them), and its times.
SCHEDULE_COLUMNS = (
    "id", "name", "task", "kind", "args", "cron", "every", "tz", "start_at", "end_at",
    "overlap", "misfire", "options", "spec", "paused", "created_at", "next_run", "runs",
    "skipped", "last_task_id", "last_run_at",
)  # fmt: skip
_SCHEDULE_TIMES = frozenset({"start_at", "end_at", "created_at", "next_run", "last_run_at"})


def _schedule_param(column: str) -> str:
    """A schedule column's named parameter; times travel as epoch seconds."""
    if column in _SCHEDULE_TIMES:
        return f"make_timestamp(CAST(${column} * 1000000 AS BIGINT))"
    return f"${column}"


def _schedule_column(column: str) -> str:
    """A schedule column as read back; times as epoch seconds."""
    return f"epoch_us(s.{column}) / 1e6" if column in _SCHEDULE_TIMES else f"s.{column}"


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
        # 2: tasks whose notebook was deleted through Jupyter: a new file of the same name
        # is another notebook, so their path must no longer open it (nor follow it).
        """
        CREATE TABLE notebooks_gone (
            task_id VARCHAR PRIMARY KEY,
            notebook VARCHAR NOT NULL,
            gone_at TIMESTAMP NOT NULL
        );
        """,
        # 3: where a task runs (protocol 1.1); older rows keep nulls.
        """
        ALTER TABLE tasks ADD COLUMN executor VARCHAR;
        ALTER TABLE tasks ADD COLUMN worker VARCHAR;
        """,
        # 4: retries, waits, groups, checkpoints (protocol 1.2); a failed attempt's
        # error in its history event.
        """
        ALTER TABLE tasks ADD COLUMN attempt INTEGER DEFAULT 1;
        ALTER TABLE tasks ADD COLUMN max_attempts INTEGER DEFAULT 1;
        ALTER TABLE tasks ADD COLUMN scheduled_for TIMESTAMP;
        ALTER TABLE tasks ADD COLUMN depends_on VARCHAR;    -- JSON list of ids
        ALTER TABLE tasks ADD COLUMN group_id VARCHAR;
        ALTER TABLE tasks ADD COLUMN retry_of VARCHAR;
        ALTER TABLE tasks ADD COLUMN checkpoint VARCHAR;    -- JSON
        ALTER TABLE tasks ADD COLUMN options VARCHAR;       -- JSON
        ALTER TABLE task_events ADD COLUMN detail VARCHAR;  -- JSON
        """,
        # 5: schedules (the server's timer); a run is a task with its schedule_id. A
        # function schedule's body is a file beside the store, as server tasks' are.
        """
        ALTER TABLE tasks ADD COLUMN schedule_id VARCHAR;
        CREATE TABLE schedules (
            id VARCHAR PRIMARY KEY,
            name VARCHAR NOT NULL,
            task VARCHAR NOT NULL,          -- a notebook's contents path or module:function
            kind VARCHAR NOT NULL,          -- function | notebook
            args VARCHAR,                   -- JSON
            cron VARCHAR,
            every DOUBLE,                   -- seconds
            tz VARCHAR,
            start_at TIMESTAMP,
            end_at TIMESTAMP,
            overlap VARCHAR NOT NULL,       -- skip | queue | allow
            misfire VARCHAR NOT NULL,       -- once | skip | all
            options VARCHAR,                -- JSON: the runs' task options
            spec VARCHAR,                   -- JSON: interpreter, directory, sys.path, notebook
            paused BOOLEAN NOT NULL DEFAULT false,
            created_at TIMESTAMP NOT NULL,
            updated_at TIMESTAMP NOT NULL,
            next_run TIMESTAMP,             -- null: no run to come (ended)
            runs INTEGER NOT NULL DEFAULT 0,
            skipped INTEGER NOT NULL DEFAULT 0,
            last_task_id VARCHAR,
            last_run_at TIMESTAMP
        );
        CREATE TABLE schedule_events (      -- each firing: a run started, or skipped and why
            schedule_id VARCHAR NOT NULL,
            ts TIMESTAMP NOT NULL,
            due TIMESTAMP,
            event VARCHAR NOT NULL,         -- run | skipped | missed
            task_id VARCHAR,
            reason VARCHAR
        );
        """,
    )

    UPSERT_TASKS = (
        f"INSERT OR REPLACE INTO tasks ({', '.join(TASK_COLUMNS)}, updated_at) "
        f"SELECT {_select(TASK_COLUMNS)}, make_timestamp(?) FROM batch_tasks"
    )
    # Rows already stored, rewritten: DELETE then INSERT takes DuckDB a fraction of
    # what INSERT OR REPLACE does once most rows of a big batch exist (a map's children
    # stored queued, then ended: 94,000 such rows 0.8 s instead of 6.5 s). Only where a
    # row is the whole row (TASK_COLUMNS and updated_at: a column another statement
    # writes would be lost) and DuckDB re-inserts a key deleted in the same transaction
    # (1.2 on); else UPSERT_TASKS.
    DELETE_TASKS = "DELETE FROM tasks WHERE id IN (SELECT id FROM batch_tasks)"
    INSERT_TASKS = (
        f"INSERT INTO tasks ({', '.join(TASK_COLUMNS)}, updated_at) "
        f"SELECT {_select(TASK_COLUMNS)}, make_timestamp(?) FROM batch_tasks"
    )
    DELETE_BLOCK = "DELETE FROM tasks WHERE id IN (SELECT id FROM batch_block)"
    TASK_TABLE_COLUMNS = (
        "SELECT column_name FROM duckdb_columns() "
        "WHERE database_name = current_database() AND table_name = 'tasks'"
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
    SELECT_ACTIVE = (
        "SELECT id FROM tasks WHERE status IN ('scheduled', 'awaiting', 'enqueued', 'processing')"
    )
    # Ending tasks from outside their process (a reaper, a server worker that died):
    # ``{pid}`` in the reason is filled from each task's pid.
    END_HISTORY = """
        INSERT INTO task_events (task_id, ts, status, task_step, percent_complete, status_info)
        SELECT id, make_timestamp($now), $status, task_step, percent_complete,
               replace($reason, '{pid}', coalesce(CAST(pid AS VARCHAR), 'unknown'))
        FROM tasks WHERE id IN (SELECT unnest($ids))
    """
    END_TASKS = """
        UPDATE tasks SET status = $status, cancel_requested = false,
               status_info = replace($reason, '{pid}', coalesce(CAST(pid AS VARCHAR), 'unknown')),
               error_type = coalesce($error_type, error_type),
               error_message = coalesce($error_message, error_message),
               completed_at = make_timestamp($now), updated_at = make_timestamp($now)
        WHERE id IN (SELECT unnest($ids))
    """
    REVIVE_HISTORY = """
        INSERT INTO task_events (task_id, ts, status, task_step, percent_complete, status_info)
        SELECT id, make_timestamp($now), 'processing', task_step, percent_complete, $reason
        FROM tasks WHERE id IN (SELECT unnest($ids)) AND status = 'interrupted'
    """
    REVIVE_TASKS = """
        UPDATE tasks SET status = 'processing', completed_at = NULL, status_info = $reason,
               updated_at = make_timestamp($now)
        WHERE id IN (SELECT unnest($ids)) AND status = 'interrupted'
    """
    # A server task the server held until due, or until its parents ended, may run now.
    RELEASE_HISTORY = """
        INSERT INTO task_events (task_id, ts, status, task_step, percent_complete, status_info)
        SELECT id, make_timestamp($now), 'enqueued', task_step, percent_complete, $reason
        FROM tasks WHERE id IN (SELECT unnest($ids)) AND status IN ('scheduled', 'awaiting')
    """
    RELEASE_TASKS = """
        UPDATE tasks SET status = 'enqueued', status_info = $reason,
               updated_at = make_timestamp($now)
        WHERE id IN (SELECT unnest($ids)) AND status IN ('scheduled', 'awaiting')
    """
    # Notebook paths (contents-relative) follow renames and moves; a directory's rename
    # moves every notebook under it. Tasks whose notebook was deleted stay where they were.
    _NOT_GONE = "id NOT IN (SELECT task_id FROM notebooks_gone)"
    RENAME_NOTEBOOKS = f"""
        UPDATE tasks SET notebook = $new || substr(notebook, length($old) + 1),
               updated_at = make_timestamp($now)
        WHERE (notebook = $old OR starts_with(notebook, $old || '/')) AND {_NOT_GONE}
        RETURNING id
    """
    MOVE_KERNEL_NOTEBOOKS = f"""
        UPDATE tasks SET notebook = $path, updated_at = make_timestamp($now)
        WHERE kernel_id = $kernel AND notebook IS DISTINCT FROM $path AND {_NOT_GONE}
        RETURNING id
    """
    MARK_NOTEBOOKS_GONE = f"""
        INSERT INTO notebooks_gone
        SELECT id, notebook, make_timestamp($now) FROM tasks
        WHERE (notebook = $path OR starts_with(notebook, $path || '/')) AND {_NOT_GONE}
        RETURNING task_id
    """
    SELECT_NOTEBOOK_GONE = "SELECT gone_at FROM notebooks_gone WHERE task_id = ?"
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
        SELECT ts, status, task_step, percent_complete, status_info, detail FROM task_events
        WHERE task_id = ? ORDER BY ts, rowid
    """

    #: Checkpoint after a commit that leaves the WAL bigger than this (bytes) ...
    WAL_CHECKPOINT_BYTES = 8 * 2**20
    #: ... or whose oldest unsaved change is older than this (seconds): a store that is
    #: never idle and writes little would otherwise keep hours of history in the WAL.
    CHECKPOINT_AGE = 300.0
    #: ``checkpoint_if_idle``: no writes for this long counts as idle (seconds).
    IDLE_CHECKPOINT_SECONDS = 5.0
    #: After a failed checkpoint (a full disk), wait this long before trying again.
    CHECKPOINT_RETRY = 30.0
    #: At open, read every table whole (verifying every block's checksum) when the file
    #: is at most this big: ~0.2 s for 128 MiB here. Bigger files get the size check
    #: only, and damage elsewhere is found by the first write or read that meets it.
    VERIFY_MAX_BYTES = 128 * 2**20

    # The store checkpoints by itself (see _after_commit): DuckDB's own automatic
    # checkpoint runs inside COMMIT, and when it fails the commit reports an error
    # although it is durable, so a writer would retry it and store its rows twice.
    OWN_CHECKPOINTS = "SET checkpoint_threshold = '1TB'"
    CHECKPOINT = "CHECKPOINT"
    DATABASE_SIZE = (
        "SELECT block_size, used_blocks FROM pragma_database_size() "
        "WHERE database_name = current_database()"
    )
    USER_TABLES = "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
    # hash() of every column reads every block of the table, so DuckDB checks every
    # checksum; count(*) would read only the metadata.
    VERIFY_TABLE = 'SELECT bit_xor(hash(COLUMNS(*))) FROM "{table}"'

    def __init__(self, path: str | Path, *, recover: bool = True) -> None:
        self.path = Path(path).expanduser().resolve()
        self.wal = self.path.with_name(f"{self.path.name}.wal")
        self._check_path()
        self.results_dir = self.path.parent / f"{self.path.stem}-results"
        self._write_lock = threading.RLock()  # reentrant: a write may reopen (see _cursor)
        self._local = threading.local()
        self._closed = False
        self._generation = 0  # bumped by each reopen: cursors of older ones are closed
        self._invalid = False  # DuckDB invalidated the database: reopen before use
        self._damaged: StoreDamaged | None = None  # set once a write found damage
        self._last_write = time.monotonic()
        self._unsaved_since: float | None = None
        self._retry_checkpoint_at = 0.0
        self._checkpoint_failures = 0
        try:
            self._con = self._connect()
        except duckdb.Error as exc:
            raise self._open_failed(exc) from exc
        try:
            self._check_size()
            self._verify()
            self._migrate()
            self._rewrite = self._whole_rows()
            if recover:
                self.interrupt(
                    self.active_ids(),
                    "the process that ran it (PID {pid}) ended before it finished",
                )
        except BaseException as exc:
            # Let go of the file (DuckDB keeps an open database per path per process).
            with contextlib.suppress(duckdb.Error):
                self._con.close()
            if isinstance(exc, duckdb.Error):
                raise self._open_failed(exc) from exc
            raise
        # Private to the user, like the kernel secret: tasks keep arguments, logs, results.
        self.results_dir.mkdir(mode=0o700, exist_ok=True)
        for private, mode in ((self.path, 0o600), (self.wal, 0o600), (self.results_dir, 0o700)):
            with contextlib.suppress(FileNotFoundError, PermissionError):  # not ours to change
                private.chmod(mode)

    # -- opening ---------------------------------------------------------------------
    def _check_path(self) -> None:
        """Refuse paths DuckDB would fail on with a bare OS error, before it tries."""
        if self.path.is_dir():
            raise StoreUnusable(
                str(self.path),
                "it is a directory, not a DuckDB file",
                f"Point RAYTHA_NB_DB (or raytha_nb.configure(db=...)) at a file, e.g. "
                f"{self.path / 'tasks.duckdb'}, or move the directory away.",
            )
        folder = self.path.parent
        elsewhere = (
            "or keep the store in a folder you can write: set RAYTHA_NB_DB=/path/to/"
            "tasks.duckdb or call raytha_nb.configure(db=...)."
        )
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StoreUnusable(
                str(self.path),
                f"its folder {folder} cannot be created",
                f"Create it by hand, {elsewhere}",
                str(exc),
            ) from None
        if not os.access(folder, os.W_OK | os.X_OK):
            raise StoreUnusable(
                str(self.path),
                f"its folder {folder} is read-only for this user, and DuckDB writes its "
                f"write-ahead log {self.wal.name} (and a new store) there",
                f"Make the folder writable (chmod u+w {shlex.quote(str(folder))}) {elsewhere}",
            )
        if self.path.exists() and not os.access(self.path, os.R_OK | os.W_OK):
            raise StoreUnusable(
                str(self.path),
                "the file is read-only for this user",
                f"Make it writable (chmod u+rw {shlex.quote(str(self.path))}) {elsewhere}",
            )

    def _connect(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(str(self.path))
        try:
            con.execute(self.OWN_CHECKPOINTS)
        except BaseException:
            con.close()
            raise
        return con

    def _check_size(self) -> None:
        """A file too short for the blocks its header says are in use was cut short (a
        copy or download that stopped, a full disk): DuckDB opens it and fails only on
        reading a missing block, so check here, at the cost of one stat. (Used, not
        total, blocks: DuckDB cuts free blocks off the end but still counts them.)"""
        row = self._con.execute(self.DATABASE_SIZE).fetchone()
        if row is None:
            return
        block_size, blocks = int(row[0]), int(row[1])
        expected, actual = _HEADER_BYTES + blocks * block_size, self.path.stat().st_size
        if actual < expected:
            raise self._damage(
                f"it was cut short: it has {actual:,} bytes, too few for the {blocks} "
                f"blocks in use its header counts ({expected:,} bytes; a copy or "
                "download that stopped, or a full disk)",
                f"PRAGMA database_size: {blocks} blocks of {block_size} bytes in use",
            )

    def _verify(self) -> None:
        """Read every table whole once, so a block with a bad checksum stops the store
        now rather than losing the first write that meets it."""
        if self.path.stat().st_size > self.VERIFY_MAX_BYTES:
            return
        for (table,) in self._con.execute(self.USER_TABLES).fetchall():
            self._con.execute(self.VERIFY_TABLE.format(table=table.replace('"', '""'))).fetchall()

    def _open_failed(self, exc: duckdb.Error) -> Exception:
        """DuckDB's error at open as what it means for the store, or itself if unknown."""
        message = str(exc)
        lowered = message.lower()
        locked = _locked_error(self.path, exc)
        if locked is not exc:
            return locked
        if "not a valid duckdb database" in lowered:
            other = (
                " If it is a file of yours, point RAYTHA_NB_DB (or raytha_nb.configure(db=...)) "
                "at another path instead."
            )
            return self._damage(self._not_duckdb(), message, other)
        if any(word in lowered for word in _DAMAGE):
            return self._damage_from(message)
        if "is a directory" in lowered:
            return StoreUnusable(
                str(self.path), "it is a directory", "Point RAYTHA_NB_DB at a file.", message
            )
        if any(word in lowered for word in _NOT_ALLOWED):
            return StoreUnusable(
                str(self.path),
                "this user may not write it or its folder",
                "Make both writable (chmod u+w), or use another store (RAYTHA_NB_DB).",
                message,
            )
        if any(word in lowered for word in _IO):
            return StoreWriteError(str(self.path), message, self._write_fix(message))
        return exc

    def _not_duckdb(self) -> str:
        try:
            with self.path.open("rb") as f:
                head = f.read(48)
        except OSError:
            head = b""
        if not head:
            return "it is empty (0 bytes), not a DuckDB database"
        text = head.decode("utf-8", errors="replace").splitlines()[0] if head.strip() else ""
        shown = f"; it begins {text!r}" if text.isprintable() and text else ""
        return f"it is not a DuckDB database{shown}"

    def _damage_from(self, message: str) -> StoreDamaged:
        """StoreDamaged for one of DuckDB's damage messages (see _DAMAGE)."""
        lowered = message.lower()
        if "replaying wal" in lowered or "corrupt wal" in lowered:
            wal = shlex.quote(str(self.wal))
            return StoreDamaged(
                str(self.path),
                f"its write-ahead log {self.wal} is corrupt",
                f"Move the log aside: mv {wal} {shlex.quote(f'{self.wal}.damaged')}; the "
                "store then opens as it was at its last checkpoint (only the changes "
                "recorded in the log since then are lost).",
                message,
            )
        if "could not read enough bytes" in lowered:
            return self._damage("it was cut short: a block it uses lies past its end", message)
        return self._damage("some of its blocks do not match their checksums", message)

    def _damage(self, problem: str, detail: str, also: str = "") -> StoreDamaged:
        """StoreDamaged saying how to move the file (and its WAL) aside."""
        moves = [self.path] + ([self.wal] if self.wal.exists() else [])
        command = " && ".join(
            f"mv {shlex.quote(str(p))} {shlex.quote(f'{p}.damaged')}" for p in moves
        )
        return StoreDamaged(
            str(self.path),
            problem,
            "raytha_nb does not write to a damaged store. Move it aside and raytha_nb "
            f"starts a fresh, empty store at the same path: {command} (DuckDB may still "
            f"read parts of the old file).{also}",
            detail,
        )

    # -- plumbing ----------------------------------------------------------------
    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor; reopens the database first if DuckDB invalidated it."""
        if self._closed:
            raise StoreClosed(f"the task store {self.path} is closed")
        if self._invalid:
            with self._write_lock:
                if self._invalid:
                    self._reopen()
        cur = getattr(self._local, "cur", None)
        if cur is None or self._local.generation != self._generation:
            cur = self._con.cursor()
            self._local.cur, self._local.generation = cur, self._generation
        return cur

    def _reopen(self) -> None:
        """After a fatal write error (e.g. a checkpoint the disk refused) DuckDB answers
        every query with "database has been invalidated" until the database is opened
        again; a fresh open replays the WAL, so nothing committed is lost."""
        with contextlib.suppress(duckdb.Error):
            self._con.close()  # closes every cursor of it too
        try:
            self._con = self._connect()
        except duckdb.Error as exc:
            error = self._write_failed(exc)
            if error is None:
                raise
            raise error from exc
        self._generation += 1
        self._invalid = False
        log.warning("raytha_nb: reopened the task store %s after a failed write", self.path)

    def _whole_rows(self) -> bool:
        """Whether a batch's task rows may be rewritten as DELETE + INSERT (see
        DELETE_TASKS)."""
        names = {row[0] for row in self._cursor().execute(self.TASK_TABLE_COLUMNS).fetchall()}
        return names == {*TASK_COLUMNS, "updated_at"} and _DUCKDB >= (1, 2)

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
        for version in range(current + 1, len(self.MIGRATIONS) + 1):
            with self._transaction() as cur:
                cur.execute(self.MIGRATIONS[version - 1])
                cur.execute(
                    "INSERT OR REPLACE INTO raytha_meta VALUES ('schema_version', ?)",
                    [str(version)],
                )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._con.close()  # DuckDB checkpoints here
            except duckdb.Error as exc:  # e.g. no room for that checkpoint: the WAL has it all
                log.warning("raytha_nb: closing the task store %s: %s", self.path, exc)

    # -- transactions ------------------------------------------------------------------
    @contextlib.contextmanager
    def _transaction(self, views: Sequence[str] = ()) -> Iterator[duckdb.DuckDBPyConnection]:
        """BEGIN ... COMMIT on this thread's cursor under the write lock.

        On failure: ROLLBACK (whose own failure, e.g. after a COMMIT the disk refused,
        must not replace the real error), unregister ``views`` (only then: inside the
        failed transaction that raises too), and raise StoreDamaged / StoreWriteError
        when the file or the disk is the cause, with DuckDB's message.
        """
        with self._write_lock:
            if self._damaged is not None:  # a fresh exception per write: they cross threads
                raise copy.copy(self._damaged)
            cur = self._cursor()
            try:
                cur.execute("BEGIN")
                yield cur
                cur.execute("COMMIT")
            except BaseException as exc:
                if not (isinstance(exc, duckdb.Error) and _DURABLE in str(exc).lower()):
                    with contextlib.suppress(duckdb.Error):
                        cur.execute("ROLLBACK")  # none is left after a failed COMMIT
                    for name in views:
                        with contextlib.suppress(duckdb.Error):
                            cur.unregister(name)
                    error = self._write_failed(exc) if isinstance(exc, duckdb.Error) else None
                    if error is None:
                        raise
                    raise error from exc
                # The commit stuck; only DuckDB's checkpoint after it failed (and
                # invalidated the database): count it as written, reopen before next use.
                self._invalid = True
            self._after_commit()

    def _write_failed(self, exc: duckdb.Error) -> Exception | None:
        """What a failed write means: StoreDamaged (the store then stops taking writes),
        StoreWriteError (the disk refused; DuckDB's message kept), or None (not the
        file's fault: the error stands as it is)."""
        message = str(exc)
        lowered = message.lower()
        if _INVALIDATED in lowered or isinstance(exc, duckdb.FatalException):
            self._invalid = True
        # An invalidated database repeats the error that invalidated it: show that one.
        head, _, original = message.partition('Original error: "')
        original = original[:-1] if original.endswith('"') else original or head
        if any(word in lowered for word in _DAMAGE):
            self._damaged = self._damage_from(original)
            return self._damaged
        if self._invalid or isinstance(exc, duckdb.IOException) or any(w in lowered for w in _IO):
            return StoreWriteError(str(self.path), original, self._write_fix(original))
        return None

    def _write_fix(self, detail: str) -> str:
        lowered = detail.lower()
        folder = shlex.quote(str(self.path.parent))
        if any(word in lowered for word in _NO_ROOM):
            fix = f"Free disk space on the disk holding {folder} (or raise its quota or limit)."
        elif any(word in lowered for word in _NOT_ALLOWED):
            fix = (
                f"Make {folder} and the store's files writable again (DuckDB writes its "
                f"log {self.wal.name} beside the store)."
            )
        else:
            fix = f"Check the disk holding {folder}."
        return (
            f"{fix} Nothing already stored is lost, and task state not yet stored stays "
            "in memory and is retried: writes resume by themselves once the store can "
            "be written again."
        )

    # -- checkpoints ---------------------------------------------------------------------
    def _after_commit(self) -> None:
        """Bookkeeping after each commit (under the write lock), and a checkpoint when
        the WAL has grown past WAL_CHECKPOINT_BYTES or holds a change older than
        CHECKPOINT_AGE. Cheap: a clock read and a stat."""
        now = time.monotonic()
        self._last_write = now
        if self._unsaved_since is None:
            self._unsaved_since = now
            # The first commit since a checkpoint: DuckDB made a new WAL, with the
            # umask's mode. Private, like the file it belongs to.
            with contextlib.suppress(FileNotFoundError, PermissionError):
                self.path.with_name(f"{self.path.name}.wal").chmod(0o600)
        if now < self._retry_checkpoint_at:
            return
        if (
            self._wal_bytes() >= self.WAL_CHECKPOINT_BYTES
            or now - self._unsaved_since >= self.CHECKPOINT_AGE
        ):
            self._checkpoint()

    def checkpoint_if_idle(self, idle_seconds: float | None = None) -> bool:
        """Checkpoint if something was written since the last checkpoint and nothing for
        ``idle_seconds`` (default IDLE_CHECKPOINT_SECONDS); True if it did.

        DuckDB keeps every commit in the WAL until a checkpoint copies it into the file,
        and on reopen it drops a WAL from its first bad byte on (a WAL one byte short
        can bring back none of it). Call this from a periodic tick: it costs a clock
        read and a stat when there is nothing to do.
        """
        idle = self.IDLE_CHECKPOINT_SECONDS if idle_seconds is None else idle_seconds
        now = time.monotonic()
        if self._closed or now - self._last_write < idle or now < self._retry_checkpoint_at:
            return False
        if self._unsaved_since is None and self._wal_bytes() == 0:
            return False
        with self._write_lock:
            if self._closed or self._damaged is not None:
                return False
            return self._checkpoint()

    def _checkpoint(self) -> bool:
        """CHECKPOINT now (under the write lock). A failure is logged, never raised: the
        commits are durable in the WAL, and the next try comes CHECKPOINT_RETRY later."""
        try:
            self._cursor().execute(self.CHECKPOINT)
        except (duckdb.Error, StoreWriteError, StoreDamaged) as exc:
            if isinstance(exc, duckdb.Error):
                self._write_failed(exc)  # marks the database invalid or damaged
            self._retry_checkpoint_at = time.monotonic() + self.CHECKPOINT_RETRY
            self._checkpoint_failures += 1
            log.log(
                logging.WARNING if self._checkpoint_failures == 1 else logging.DEBUG,
                "raytha_nb: could not checkpoint the task store %s (will retry; its WAL "
                "keeps every commit meanwhile): %s",
                self.path,
                exc,
            )
            return False
        self._unsaved_since = None
        self._retry_checkpoint_at = 0.0
        self._checkpoint_failures = 0
        return True

    def _wal_bytes(self) -> int:
        try:
            return self.wal.stat().st_size
        except OSError:
            return 0

    # -- writes -----------------------------------------------------------------
    def apply(self, batch: Batch) -> None:
        """Commit a batch in one transaction; raises (and commits nothing) on failure:
        StoreWriteError when the disk refused it, StoreDamaged when the file is damaged."""
        if not batch:
            return
        views = ["batch_tasks", "batch_block", "batch_progress", "batch_history", "batch_logs"]
        with self._transaction(views=views) as cur:
            for block in batch.blocks:
                self._write_block(cur, block)
            for name, table, statements in self._tables(batch):
                cur.register(name, table)
                for sql in statements:
                    cur.execute(sql, [_micros()] if "?" in sql else [])
                cur.unregister(name)

    def _write_block(self, cur: duckdb.DuckDBPyConnection, block: TaskBlock) -> None:
        """A block's rows: only their run columns if they are stored queued (if one is
        not after all, e.g. deleted meanwhile, all of them whole), else whole."""
        if block.queued_stored:
            table, same = _block_parts(block, ("id", *RUN_COLUMNS))
            cur.register("batch_block", table)
            params = {**same, "now": _micros()}
            updated = cur.execute(_block_update(same), params).fetchall()[0][0]
            cur.unregister("batch_block")
            if updated == len(block):
                return
        table, same = _block_parts(block, TASK_COLUMNS)
        cur.register("batch_block", table)
        params = {**same, "now": _micros()}
        if self._rewrite:
            cur.execute(self.DELETE_BLOCK)
        cur.execute(_block_insert(same, replace=not self._rewrite), params)
        cur.unregister("batch_block")

    def _tables(self, batch: Batch) -> Iterator[tuple[str, pa.Table, tuple[str, ...]]]:
        """Each non-empty section of ``batch`` but its blocks as Arrow, with the
        statements it feeds."""
        tasks = (self.DELETE_TASKS, self.INSERT_TASKS) if self._rewrite else (self.UPSERT_TASKS,)
        if batch.tasks:
            yield "batch_tasks", _arrow(TASK_COLUMNS, batch.tasks), tasks
        if batch.progress:
            yield (
                "batch_progress",
                _arrow(PROGRESS_COLUMNS, batch.progress),
                (self.UPDATE_PROGRESS,),
            )
        if batch.history:
            yield "batch_history", _arrow(HISTORY_COLUMNS, batch.history), (self.INSERT_HISTORY,)
        if batch.logs:
            yield "batch_logs", _arrow(LOG_COLUMNS, batch.logs), (self.INSERT_LOGS,)

    def interrupt(self, ids: Sequence[str], reason: str) -> list[str]:
        """Mark those of ``ids`` still enqueued or processing ``interrupted``; returns them.

        ``reason`` becomes the status_info; ``{pid}`` in it is filled from each task's pid.
        """
        return self.end(ids, "interrupted", reason)

    def end(
        self,
        ids: Sequence[str],
        status: str,
        reason: str,
        error_type: str | None = None,
        error_message: str | None = None,
    ) -> list[str]:
        """End those of ``ids`` still enqueued or processing with ``status`` (a final
        one) and ``reason`` as status_info; returns them."""
        if not ids:
            return []
        with self._write_lock:
            active = [
                row[0]
                for row in self._cursor()
                .execute(f"{self.SELECT_ACTIVE} AND id IN (SELECT unnest(?))", [list(ids)])
                .fetchall()
            ]
            if not active:
                return []
            values = {"ids": active, "status": status, "reason": reason, "now": _micros()}
            error = {"error_type": error_type, "error_message": error_message}
            with self._transaction() as cur:
                cur.execute(self.END_HISTORY, values)
                cur.execute(self.END_TASKS, {**values, **error})
        return active

    def rename_notebooks(self, old: str, new: str) -> list[str]:
        """A notebook (or a folder of them) was renamed from ``old`` to ``new``: its tasks
        follow; returns their ids."""
        return self._returning(self.RENAME_NOTEBOOKS, {"old": old, "new": new})

    def move_kernel_notebooks(self, kernel_id: str, path: str) -> list[str]:
        """Kernel ``kernel_id``'s notebook is now ``path``: all of its tasks (finished ones
        too) say so; returns the ids of those that changed."""
        return self._returning(self.MOVE_KERNEL_NOTEBOOKS, {"kernel": kernel_id, "path": path})

    def mark_notebooks_gone(self, path: str) -> list[str]:
        """The notebook ``path`` (or a folder) was deleted: its tasks no longer have one
        to open, even once a new file takes the name; returns their ids."""
        return self._returning(self.MARK_NOTEBOOKS_GONE, {"path": path})

    def notebook_gone(self, job_id: str) -> bool:
        """Whether the task's notebook was deleted through Jupyter."""
        return self._cursor().execute(self.SELECT_NOTEBOOK_GONE, [job_id]).fetchone() is not None

    def _returning(self, sql: str, values: dict[str, Any]) -> list[str]:
        with self._transaction() as cur:
            return [row[0] for row in cur.execute(sql, {**values, "now": _micros()}).fetchall()]

    def revive(self, ids: Sequence[str], reason: str) -> None:
        """Put ``interrupted`` tasks back to ``processing``: their process was presumed
        dead but spoke again, so it still runs them."""
        if not ids:
            return
        values = {"ids": list(ids), "reason": reason, "now": _micros()}
        with self._transaction() as cur:
            cur.execute(self.REVIVE_HISTORY, values)
            cur.execute(self.REVIVE_TASKS, values)

    def release(self, ids: Sequence[str], reason: str) -> None:
        """Put ``scheduled``/``awaiting`` tasks (server tasks the server held) back to
        ``enqueued``: they wait only for a worker now."""
        if not ids:
            return
        values = {"ids": list(ids), "reason": reason, "now": _micros()}
        with self._transaction() as cur:
            cur.execute(self.RELEASE_HISTORY, values)
            cur.execute(self.RELEASE_TASKS, values)

    def request_cancel(self, job_id: str) -> None:
        with self._transaction() as cur:
            cur.execute("UPDATE tasks SET cancel_requested = true WHERE id = ?", [job_id])

    def delete(self, job_id: str) -> bool:
        """Remove a task with its history, logs and result file; False if unknown."""
        record = self.get(job_id)
        if record is None:
            return False
        with self._transaction() as cur:
            for table, key in (
                ("tasks", "id"),
                ("task_events", "task_id"),
                ("task_logs", "task_id"),
                ("notebooks_gone", "task_id"),
            ):
                cur.execute(f"DELETE FROM {table} WHERE {key} = ?", [job_id])
        (self.results_dir / f"{job_id}.task.pickle").unlink(missing_ok=True)  # its stored body
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
        keys = ("ts", "status", "task_step", "percent_complete", "status_info", "detail")
        out = [dict(zip(keys, (_aware(r[0]), *r[1:]))) for r in rows]
        for event in out:
            event["detail"] = None if event["detail"] is None else json.loads(event["detail"])
        return out

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

    # -- schedules (the server's timer: raytha_nb/server/scheduler.py) ---------------
    INSERT_SCHEDULE = f"""
        INSERT INTO schedules ({", ".join(SCHEDULE_COLUMNS)}, updated_at)
        VALUES ({", ".join(map(_schedule_param, SCHEDULE_COLUMNS))}, make_timestamp($now))
    """
    SELECT_SCHEDULES = f"""
        SELECT {", ".join(map(_schedule_column, SCHEDULE_COLUMNS))}, t.status
        FROM schedules s LEFT JOIN tasks t ON t.id = s.last_task_id
    """
    # A schedule's state after it fired, skipped, paused or resumed.
    UPDATE_SCHEDULE_STATE = """
        UPDATE schedules SET paused = $paused,
               next_run = make_timestamp(CAST($next_run * 1000000 AS BIGINT)),
               runs = $runs, skipped = $skipped, last_task_id = $last_task_id,
               last_run_at = make_timestamp(CAST($last_run_at * 1000000 AS BIGINT)),
               updated_at = make_timestamp($now)
        WHERE id = $id
    """
    DELETE_SCHEDULE = "DELETE FROM schedules WHERE id = ? RETURNING id"
    DELETE_SCHEDULE_EVENTS = "DELETE FROM schedule_events WHERE schedule_id = ?"
    INSERT_SCHEDULE_EVENT = """
        INSERT INTO schedule_events VALUES (?, make_timestamp(?),
               make_timestamp(CAST(? * 1000000 AS BIGINT)), ?, ?, ?)
    """
    SELECT_SCHEDULE_EVENTS = """
        SELECT epoch_us(ts) / 1e6, epoch_us(due) / 1e6, event, task_id, reason
        FROM schedule_events WHERE schedule_id = ? ORDER BY ts DESC, rowid DESC LIMIT ?
    """
    # Runs of a schedule still waiting or running: what overlap="skip" looks at.
    COUNT_ACTIVE_RUNS = f"SELECT count(*) FROM ({SELECT_ACTIVE} AND schedule_id = ?)"

    def add_schedule(self, values: dict[str, Any]) -> None:
        """Store a new schedule (``values``: every one of SCHEDULE_COLUMNS; times in
        epoch seconds, JSON columns as text)."""
        with self._transaction() as cur:
            cur.execute(self.INSERT_SCHEDULE, {**values, "now": _micros()})

    def schedules(self, schedule_id: str | None = None) -> list[dict[str, Any]]:
        """Every schedule (or one) as a dict of SCHEDULE_COLUMNS (times in epoch
        seconds, JSON decoded) plus ``last_status``, its last run's status."""
        sql, params = self.SELECT_SCHEDULES, []
        if schedule_id is not None:
            sql, params = f"{sql} WHERE s.id = ?", [schedule_id]
        rows = self._cursor().execute(f"{sql} ORDER BY s.created_at, s.id", params).fetchall()
        out = []
        for row in rows:
            values = dict(zip((*SCHEDULE_COLUMNS, "last_status"), row))
            for key in ("args", "options", "spec"):
                values[key] = None if values[key] is None else json.loads(values[key])
            out.append(values)
        return out

    def save_schedule_state(self, values: dict[str, Any]) -> None:
        """Write a schedule's state: id, paused, next_run, runs, skipped, last_task_id,
        last_run_at (times in epoch seconds)."""
        with self._transaction() as cur:
            cur.execute(self.UPDATE_SCHEDULE_STATE, {**values, "now": _micros()})

    def add_schedule_event(
        self,
        schedule_id: str,
        due: float | None,
        event: str,
        task_id: str | None,
        reason: str,
        ts: float | None = None,
    ) -> None:
        """Record one firing of a schedule (at ``ts``, default now): a run, or a skip and
        why."""
        micros = _micros() if ts is None else int(ts * 1_000_000)
        with self._transaction() as cur:
            cur.execute(
                self.INSERT_SCHEDULE_EVENT, [schedule_id, micros, due, event, task_id, reason]
            )

    def schedule_events(self, schedule_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """A schedule's latest firings, newest first (times in epoch seconds)."""
        rows = self._cursor().execute(self.SELECT_SCHEDULE_EVENTS, [schedule_id, limit])
        keys = ("ts", "due", "event", "task_id", "reason")
        return [dict(zip(keys, row)) for row in rows.fetchall()]

    def delete_schedule(self, schedule_id: str) -> bool:
        """Remove a schedule and its firings (its runs stay, as tasks); False if unknown."""
        with self._transaction() as cur:
            found = cur.execute(self.DELETE_SCHEDULE, [schedule_id]).fetchall()
            cur.execute(self.DELETE_SCHEDULE_EVENTS, [schedule_id])
        return bool(found)

    def active_runs(self, schedule_id: str) -> int:
        """How many runs of a schedule are waiting or running."""
        row = self._cursor().execute(self.COUNT_ACTIVE_RUNS, [schedule_id]).fetchone()
        return int(row[0]) if row else 0


def _where(query: TaskQuery) -> tuple[str, list[Any]]:
    """The WHERE clause (and its parameters) of a task query."""
    where: list[str] = ["true"]
    params: list[Any] = []
    if query.status is not None:
        where.append(f"status IN ({', '.join('?' * len(query.status))})")
        params.extend(s.value for s in query.status)
    for column in ("name", "kernel_id", "notebook", "group_id", "schedule_id"):
        value = getattr(query, column)
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if query.grouped is not None:
        where.append("group_id IS NOT NULL" if query.grouped else "group_id IS NULL")
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
    for key in (*_TIME_COLUMNS - {"ts"}, "updated_at"):
        values[key] = _aware(values[key])
    for key in ("args", "result", "depends_on", "checkpoint", "options"):
        values[key] = None if values[key] is None else json.loads(values[key])
    values["status"] = TaskStatus(values["status"])
    return TaskRecord(**values)


_PID = re.compile(r"\(PID (\d+)\)")


def _locked_error(path: Path, exc: Exception) -> Exception:
    message = str(exc)
    # Not just "lock": DuckDB's checksum errors say "block".
    if not re.search(r"\block\b", message, re.IGNORECASE):
        return exc
    match = _PID.search(message)
    return StoreLockedError(str(path), int(match.group(1)) if match else None, message)


def _micros() -> int:
    """Now as UTC epoch microseconds (DuckDB's now() would be in the session time zone)."""
    return int(time.time() * 1_000_000)
