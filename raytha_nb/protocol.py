"""The kernel-to-server wire format: named rows, a protocol version, one validator.

A kernel's publisher sends a :class:`Batch` of state changes; the embedded store
commits one directly, the server's kernel API receives one as JSON and checks every
value here before anything is stored. On the wire each section is columnar with its
column names (``{"columns": [...], "rows": [[...], ...]}``), so kernels and servers
of nearby versions can talk: a column the receiver does not know is ignored, an
optional column the sender did not send takes its default, and a required one that is
missing is a 400 naming it. Kernels often run in other environments than the server,
so their raytha_nb versions differ; the rule is in :func:`check_version`.

No DuckDB here: this module is what both sides agree on, nothing more.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from ._version import __version__
from .errors import ProtocolError
from .model import TaskRecord, TaskStatus, stored_utc, utc

#: (major, minor). A server accepts kernels of the same major version whose minor
#: version is at most one away; a change that breaks that bumps the major version.
PROTOCOL = (1, 2)


class TaskRow(NamedTuple):
    """A task's whole row (times are epoch seconds; ``args``/``result`` JSON text)."""

    id: str
    name: str
    task: str
    args: str | None = None
    status: str = "enqueued"
    task_step: int = 0
    status_info: str | None = None
    percent_complete: float = 0.0
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    result: str | None = None
    result_kind: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    completed_at: float | None = None
    heartbeat_at: float | None = None
    kernel_id: str | None = None
    notebook: str | None = None
    pid: int | None = None
    cancel_requested: bool = False
    #: Since protocol 1.1 (optional: 1.0 kernels do not send them).
    executor: str | None = None
    worker: str | None = None
    #: Since protocol 1.2 (optional): retries, waits, groups, checkpoints.
    attempt: int = 1
    max_attempts: int = 1
    scheduled_for: float | None = None
    depends_on: str | None = None  # JSON list of ids
    group_id: str | None = None
    retry_of: str | None = None
    checkpoint: str | None = None  # JSON
    options: str | None = None  # JSON
    #: Optional (a receiver that does not know it ignores it): the schedule of a run.
    schedule_id: str | None = None

    def record(self, updated_at: float) -> TaskRecord:
        """The task as readers see it once this row is stored (what the store would
        read back, without reading it back)."""
        return TaskRecord(
            id=self.id,
            name=self.name,
            task=self.task,
            args=None if self.args is None else json.loads(self.args),
            status=TaskStatus(self.status),
            task_step=self.task_step,
            status_info=self.status_info,
            percent_complete=self.percent_complete,
            error_type=self.error_type,
            error_message=self.error_message,
            traceback=self.traceback,
            result=None if self.result is None else json.loads(self.result),
            result_kind=self.result_kind,
            created_at=stored_utc(self.created_at),
            started_at=stored_utc(self.started_at),
            completed_at=stored_utc(self.completed_at),
            heartbeat_at=stored_utc(self.heartbeat_at),
            updated_at=utc(updated_at),
            kernel_id=self.kernel_id,
            notebook=self.notebook,
            pid=self.pid,
            cancel_requested=self.cancel_requested,
            executor=self.executor,
            worker=self.worker,
            attempt=self.attempt,
            max_attempts=self.max_attempts,
            scheduled_for=stored_utc(self.scheduled_for),
            depends_on=_loads(self.depends_on),
            group_id=self.group_id,
            retry_of=self.retry_of,
            checkpoint=_loads(self.checkpoint),
            options=_loads(self.options),
            schedule_id=self.schedule_id,
        )


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class ProgressRow(NamedTuple):
    """A running task's progress only: the cheap update most flushes need."""

    id: str
    task_step: int = 0
    status_info: str | None = None
    percent_complete: float = 0.0
    heartbeat_at: float | None = None


class HistoryRow(NamedTuple):
    """One status change or progress sample of a task's history."""

    task_id: str
    ts: float
    status: str
    task_step: int | None = None
    percent_complete: float | None = None
    status_info: str | None = None
    #: Since protocol 1.2: JSON with what this event adds (a failed attempt's error).
    detail: str | None = None


class LogRow(NamedTuple):
    """One line a task printed or logged; ``seq`` orders a task's lines from 1."""

    task_id: str
    seq: int
    ts: float
    stream: str = "stdout"
    text: str = ""


Row = TypeVar("Row", TaskRow, ProgressRow, HistoryRow, LogRow)


#: The columns a task's run and end change; the others keep what it was queued with.
RUN_COLUMNS = (
    "status", "task_step", "status_info", "percent_complete", "error_type",
    "error_message", "traceback", "result", "result_kind", "started_at", "completed_at",
    "heartbeat_at", "cancel_requested", "worker", "attempt", "scheduled_for", "checkpoint",
)  # fmt: skip


@dataclass
class TaskBlock:
    """Whole task rows as columns: ``columns`` each row's own values, ``same`` one
    value for every row (a map's queued children differ in four columns of 32; a
    TaskRow each cost the publisher more than running them).

    ``queued_stored``: every row is stored as it was queued, so only its
    :data:`RUN_COLUMNS` changed (the embedded store then updates just those: 70x
    less DuckDB time than rewriting 100,000 ended children's rows)."""

    columns: dict[str, list[Any]]
    same: dict[str, Any]
    queued_stored: bool = False

    def __len__(self) -> int:
        return len(self.columns["id"])

    def rows(self) -> list[TaskRow]:
        """The block as rows (the wire form)."""
        n = len(self)
        columns = [
            self.columns[name] if name in self.columns else [self.same[name]] * n
            for name in TaskRow._fields
        ]
        return [TaskRow._make(values) for values in zip(*columns)]


@dataclass
class Batch:
    """State changes to commit together: whole task rows (latest wins; in ``tasks``
    or, as columns, in ``blocks``: a task is in one of them), progress rows of tasks
    already stored, history rows, log lines."""

    tasks: list[TaskRow] = field(default_factory=list)
    progress: list[ProgressRow] = field(default_factory=list)
    history: list[HistoryRow] = field(default_factory=list)
    logs: list[LogRow] = field(default_factory=list)
    blocks: list[TaskBlock] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.tasks or self.progress or self.history or self.logs or self.blocks)

    def to_json(self) -> dict[str, Any]:
        """The wire form: each section columnar, with its column names (blocks as rows
        of ``tasks``: the wire has one form of a row)."""
        sections = {name: getattr(self, name) for name in SECTIONS}
        if self.blocks:
            sections["tasks"] = [*self.tasks, *(r for b in self.blocks for r in b.rows())]
        return {
            name: {"columns": list(SECTIONS[name]._fields), "rows": rows}
            for name, rows in sections.items()
            if rows
        }

    @classmethod
    def from_json(cls, data: Any) -> Batch:
        """Read and check a batch; ``ProtocolError`` names the first bad value."""
        if not isinstance(data, dict):
            raise ProtocolError(
                "'batch' must be an object of sections "
                f"({', '.join(SECTIONS)}), each {{'columns': [...], 'rows': [[...]]}}"
            )
        batch = cls(
            **{name: _section(name, kind, data.get(name)) for name, kind in SECTIONS.items()}
        )
        for name in ("tasks", "progress"):  # one row per task: latest wins in the sender
            rows = getattr(batch, name)
            if len({row.id for row in rows}) != len(rows):
                raise ProtocolError(f"'batch.{name}' has two rows for one task id")
        return batch


SECTIONS: dict[str, type[Any]] = {
    "tasks": TaskRow,
    "progress": ProgressRow,
    "history": HistoryRow,
    "logs": LogRow,
}

# -- what a valid value is, per column ----------------------------------------------
#: Epoch seconds DuckDB's TIMESTAMP holds and a person means: 1970 up to year 9999.
_LAST_TIME = 253_402_300_799.0
_INT32 = 2**31 - 1
_INT64 = 2**63 - 1
_STATUSES = frozenset(s.value for s in TaskStatus)
_STREAMS = frozenset({"stdout", "stderr", "log"})
#: Longest text value accepted (a traceback or a log line longer than this is a bug).
_MAX_TEXT = 16 * 1024 * 1024


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        if len(value) > _MAX_TEXT:
            return f"is {len(value):,} characters long (at most {_MAX_TEXT:,})"
        try:
            value.encode()
        except UnicodeEncodeError:
            return "is not valid Unicode (a lone surrogate)"
        return None
    return f"must be a string, not {_kind(value)}"


def _id(value: Any) -> str | None:
    """Task ids are UUIDs in their canonical form, as the REST routes require."""
    try:
        if isinstance(value, str) and str(uuid.UUID(value)) == value:
            return None
    except ValueError:
        pass
    return f"must be a task id (a UUID in lower-case hex with dashes), not {value!r:.60}"


def _json_text(value: Any) -> str | None:
    problem = _text(value)
    if problem is not None:
        return problem
    try:
        json.loads(value)
    except (ValueError, RecursionError):
        return "must be JSON text"
    return None


def _time(value: Any) -> str | None:
    if not _is_number(value) or not 0 <= value <= _LAST_TIME:
        return f"must be a time in epoch seconds between 1970 and 9999, not {value!r}"
    return None


def _percent(value: Any) -> str | None:
    if not _is_number(value) or not 0 <= value <= 100:
        return f"must be a number from 0 to 100, not {value!r}"
    return None


def _integer(high: int, low: int = -_INT64 - 1) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            return f"must be a whole number from {low} to {high}, not {value!r}"
        return None

    return check


def _one_of(allowed: frozenset[str]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not isinstance(value, str) or value not in allowed:
            return f"must be one of {', '.join(sorted(allowed))}, not {value!r}"
        return None

    return check


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, not {value!r}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "id": _id,
    "task_id": _id,
    "name": _text,
    "task": _text,
    "args": _json_text,
    "result": _json_text,
    "status": _one_of(_STATUSES),
    "task_step": _integer(_INT32, -_INT32 - 1),
    "percent_complete": _percent,
    "created_at": _time,
    "started_at": _time,
    "completed_at": _time,
    "heartbeat_at": _time,
    "ts": _time,
    "pid": _integer(_INT64),
    "seq": _integer(_INT64, 1),
    "stream": _one_of(_STREAMS),
    "cancel_requested": _boolean,
    "attempt": _integer(_INT32, 1),
    "max_attempts": _integer(_INT32, 1),
    "scheduled_for": _time,
    "depends_on": _json_text,
    "group_id": _id,
    "retry_of": _id,
    "schedule_id": _id,
    "checkpoint": _json_text,
    "options": _json_text,
    "detail": _json_text,
}
#: Columns whose value may be null (every text column not listed here may be too).
_NOT_NULL = frozenset(
    {"id", "task_id", "name", "task", "status", "created_at", "ts", "seq", "stream", "text"}
    | {"task_step", "percent_complete", "cancel_requested", "attempt", "max_attempts"}
)
#: Columns a sender must send (the others have defaults in the row types).
_REQUIRED = {
    "tasks": ("id", "name", "task", "status", "created_at"),
    "progress": ("id",),
    "history": ("task_id", "ts", "status"),
    "logs": ("task_id", "seq", "ts"),
}
#: In history rows progress columns may be null (a status change carries what it had).
_NULLABLE_IN = {"history": frozenset({"task_step", "percent_complete"})}


def _section(name: str, kind: type[Row], data: Any) -> list[Row]:
    if data is None:
        return []
    where = f"batch.{name}"
    if not isinstance(data, dict) or not isinstance(data.get("columns"), list):
        raise ProtocolError(f"'{where}' must be an object {{'columns': [...], 'rows': [[...]]}}")
    columns, rows = data["columns"], data.get("rows", [])
    if not all(isinstance(c, str) for c in columns) or len(set(columns)) != len(columns):
        raise ProtocolError(f"'{where}.columns' must be distinct column names")
    if not isinstance(rows, list):
        raise ProtocolError(f"'{where}.rows' must be a list of rows")
    missing = [c for c in _REQUIRED[name] if c not in columns]
    if missing:
        raise ProtocolError(f"'{where}' has no column {', '.join(map(repr, missing))}: required")
    known = [(i, c) for i, c in enumerate(columns) if c in kind._fields]  # others: ignored
    nullable = _NULLABLE_IN.get(name, frozenset())
    out: list[Row] = []
    for n, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(columns):
            raise ProtocolError(
                f"'{where}.rows[{n}]' must be a list of {len(columns)} values, one per column"
            )
        values: dict[str, Any] = {}
        for i, column in known:
            value = row[i]
            if value is None:
                if column in _NOT_NULL and column not in nullable:
                    raise ProtocolError(f"{where}[{n}].{column} must not be null")
            else:
                if column == "percent_complete" and isinstance(value, int):
                    value = float(value)
                problem = _CHECKS.get(column, _text)(value)
                if problem is not None:
                    raise ProtocolError(f"{where}[{n}].{column} {problem}")
            values[column] = value
        out.append(kind(**values))
    return out


# -- the publish message ------------------------------------------------------------
@dataclass(frozen=True)
class Publish:
    """One publish: a kernel session's heartbeat, the tasks it still runs, its batch."""

    session: str
    batch: Batch
    kernel_id: str | None = None
    pid: int | None = None
    active: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": f"{PROTOCOL[0]}.{PROTOCOL[1]}",
            "version": __version__,
            "session": self.session,
            "kernel_id": self.kernel_id,
            "pid": self.pid,
            "active": list(self.active),
            "batch": self.batch.to_json(),
        }

    @classmethod
    def from_json(cls, body: Any) -> Publish:
        """Read and check a publish request; ``ProtocolError`` says what is wrong."""
        if not isinstance(body, dict):
            raise ProtocolError("the body must be a JSON object with 'session' and 'batch'")
        check_version(body.get("protocol"), body.get("version"))
        session = body.get("session")
        if not isinstance(session, str) or not session:
            raise ProtocolError("'session' must be a non-empty string naming the publisher")
        kernel_id, pid, active = body.get("kernel_id"), body.get("pid"), body.get("active", [])
        if kernel_id is not None and not isinstance(kernel_id, str):
            raise ProtocolError("'kernel_id' must be a string or null")
        if pid is not None and _integer(_INT64, 0)(pid) is not None:
            raise ProtocolError("'pid' must be a whole number or null")
        if not isinstance(active, list) or not all(isinstance(i, str) for i in active):
            raise ProtocolError("'active' must be a list of task ids")
        return cls(session, Batch.from_json(body.get("batch", {})), kernel_id, pid, tuple(active))


def check_version(protocol: Any, version: Any) -> None:
    """Accept a sender of the same major protocol version within one minor version;
    otherwise ``ProtocolError`` naming both raytha_nb versions and the fix."""
    theirs = f"raytha_nb {version}" if isinstance(version, str) else "an older raytha_nb"
    ours = f"raytha_nb {__version__}"
    fix = (
        f"install the server's version in the kernel's environment (pip install "
        f"raytha-nb=={__version__}) and restart the kernel"
    )
    if not isinstance(protocol, str):
        raise ProtocolError(
            f"this kernel runs {theirs}, which speaks no versioned task protocol; the server "
            f"runs {ours} (protocol {PROTOCOL[0]}.{PROTOCOL[1]}): {fix}"
        )
    try:
        major, minor = (int(part) for part in protocol.split("."))
    except ValueError:
        raise ProtocolError(f"'protocol' must be 'major.minor', not {protocol!r}") from None
    if major != PROTOCOL[0] or abs(minor - PROTOCOL[1]) > 1:
        raise ProtocolError(
            f"this kernel runs {theirs} (task protocol {protocol}), the server {ours} "
            f"(protocol {PROTOCOL[0]}.{PROTOCOL[1]}); they cannot talk: {fix}"
        )


# -- a task the server runs (executor="server") --------------------------------------
@dataclass(frozen=True)
class ServerTask:
    """What a kernel hands the server to run in a worker process: the task's row
    fields, the interpreter and directory to run it with, and its ``sys.path`` (so
    modules the notebook could import, import there too). The body travels beside it
    as cloudpickle bytes."""

    id: str
    name: str
    task: str
    args: Any
    python: str
    cwd: str
    sys_path: tuple[str, ...] = ()
    notebook: str | None = None
    created_at: float = 0.0
    #: Source of the notebook cells the kernel ran (file name -> text): they exist only
    #: in the kernel's line cache, and the worker's tracebacks show their lines.
    sources: dict[str, str] = field(default_factory=dict)
    #: Its run options (``TaskOptions.to_json(everything=True)``): the worker applies them.
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": f"{PROTOCOL[0]}.{PROTOCOL[1]}",
            "version": __version__,
            **{name: getattr(self, name) for name in self.__dataclass_fields__},
            "sys_path": list(self.sys_path),
        }

    @classmethod
    def from_json(cls, body: Any) -> ServerTask:
        """Read and check a server task; ``ProtocolError`` names the bad field."""
        if not isinstance(body, dict):
            raise ProtocolError("'task' must be an object with id, name, task, python and cwd")
        check_version(body.get("protocol"), body.get("version"))
        try:
            job_id = str(uuid.UUID(str(body.get("id"))))
        except ValueError:
            raise ProtocolError("'id' must be a task id (a UUID)") from None
        for key in ("name", "task", "python", "cwd"):
            if not isinstance(body.get(key), str) or not body[key]:
                raise ProtocolError(f"{key!r} must be a non-empty string")
        sys_path, notebook = body.get("sys_path", []), body.get("notebook")
        if not isinstance(sys_path, list) or not all(isinstance(p, str) for p in sys_path):
            raise ProtocolError("'sys_path' must be a list of strings")
        if notebook is not None and not isinstance(notebook, str):
            raise ProtocolError("'notebook' must be a string or null")
        sources = body.get("sources", {})
        if not isinstance(sources, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in sources.items()
        ):
            raise ProtocolError("'sources' must be an object of file name -> source text")
        options = body.get("options", {})
        if not isinstance(options, dict):
            raise ProtocolError("'options' must be an object")
        created = body.get("created_at", 0.0)
        if not isinstance(created, int | float) or not 0 <= created <= _LAST_TIME:
            raise ProtocolError("'created_at' must be epoch seconds")
        return cls(
            job_id, body["name"], body["task"], body.get("args"), body["python"], body["cwd"],
            tuple(sys_path), notebook, float(created), sources, options,
        )  # fmt: skip
