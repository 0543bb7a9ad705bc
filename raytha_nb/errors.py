"""Every exception raytha_nb raises, in one place (re-exported by ``raytha_nb``).

Each message says what is wrong and what to do about it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model import TaskRecord


class TaskNotFound(KeyError):
    """No task with this id exists in the store."""

    def __init__(self, job_id: str, hint: str | None = None) -> None:
        super().__init__(job_id)
        self.job_id = job_id
        self.hint = hint

    def __str__(self) -> str:
        text = f"no task with id {self.job_id!r} in the task store"
        return text if self.hint is None else f"{text}: {self.hint}"


class TaskCancelled(Exception):
    """Raised inside a task when it has been cancelled."""


class TaskStateError(RuntimeError):
    """The task is in the wrong state for this operation (e.g. deleting a running task);
    the REST API answers it with 409."""


class TaskFailed(RuntimeError):
    """``result()`` of a task that ended in ``error``, or ``wait_all()`` when tasks ended in
    ``error``/``interrupted``; names each failed task and carries its traceback."""

    def __init__(self, record: TaskRecord, *more: TaskRecord) -> None:
        self.records = [record, *more]
        self.record = record
        if not more:
            super().__init__(f"{_failure(record)}\n\n{record.traceback or ''}".rstrip())
            return
        heads = "\n".join(f"  {_failure(r)}" for r in self.records)
        tracebacks = "\n\n".join(
            f"{r.name} ({r.id}):\n{r.traceback}" for r in self.records if r.traceback
        )
        super().__init__(f"{len(self.records)} tasks failed:\n{heads}\n\n{tracebacks}".rstrip())

    def __reduce__(self) -> tuple[Any, ...]:  # copy and pickle with the records
        return (type(self), tuple(self.records))


def _failure(record: TaskRecord) -> str:
    """``task NAME (ID) failed with Type: message`` (or how it was interrupted)."""
    if record.error_type is None:
        why = f": {record.status_info}" if record.status_info else ""
        return f"task {record.name} ({record.id}) ended {record.status.value}{why}"
    error = f"{record.error_type}: {record.error_message}"
    return f"task {record.name} ({record.id}) failed with {error}"


class UnknownTask(LookupError):
    """A task was enqueued by a name that nobody registered."""


class CannotRetry(UnknownTask):
    """``retry()`` of a task whose code is not known here (neither registered, importable
    nor stored); the message says why and how to make it re-runnable."""


class NotJsonable(TypeError):
    """A value has no JSON form; ``path`` says where it sits (``args['rows'][3]``)."""

    def __init__(self, path: str, value: Any, why: str = "") -> None:
        kind = f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins.")
        reason = why or "which has no JSON form"
        super().__init__(
            f"{path} is a {kind}, {reason}. Task arguments are stored as JSON so that the "
            "task can be listed, retried and started from elsewhere: pass plain values "
            "(str, int, float, bool, None, lists, dicts, dates, UUIDs, dataclasses or "
            "pydantic models), and keep big objects such as DataFrames in a closure or a file."
        )
        self.path = path


class NotPicklable(TypeError):
    """A task bound for a worker process holds something that cannot be pickled;
    ``where`` names it (a closure variable, a global, an argument)."""

    def __init__(self, where: str, value: Any, why: str = "") -> None:
        kind = f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins.")
        super().__init__(
            f"{where} is a {kind}, which cannot be sent to a worker process ({why}). "
            "Create it inside the task instead, pass something picklable (a path, a "
            "number), or run the task with executor='thread'."
        )
        self.where = where


class ExecutorUnavailable(RuntimeError):
    """The executor asked for cannot run here (``executor="server"`` without a Jupyter
    server); the message says what to use instead."""


class NotebookNotFound(ValueError):
    """A notebook job's notebook does not exist (or is outside the server's root);
    the REST API answers it with 404."""


class NotebookCellError(RuntimeError):
    """A notebook job's cell raised: the message names the cell (``cell 3 of 10``) and
    its error; the cell's own traceback follows in the task's traceback."""


class ServerRequired(RuntimeError):
    """This needs the Jupyter server (schedules run in it) and the process has none (its
    store is embedded); the message says how to get one."""


class ScheduleNotFound(KeyError):
    """No schedule with this id (deleted, or never made on this server)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "no such schedule"


class ResultUnavailable(LookupError):
    """The task has no loadable result (not finished, failed, or not storable)."""


class StoreClosed(RuntimeError):
    """The task store was closed (its process, e.g. the Jupyter server, is stopping):
    state sent now cannot be kept, so retrying is pointless."""


class StoreLockedError(RuntimeError):
    """The DuckDB file is held by another process."""

    #: What a notebook or script should do about it (the server says its own).
    ADVICE = (
        "Run your notebooks under the Jupyter server with the raytha_nb extension enabled "
        "(its kernels share the server's store), or give this process its own store: set "
        "RAYTHA_NB_DB=/path/to/other.duckdb or call raytha_nb.configure(db=...)."
    )

    def __init__(self, path: str, pid: int | None, detail: str, advice: str = ADVICE) -> None:
        holder = f" (PID {pid})" if pid is not None else ""
        super().__init__(
            f"The task store {path} is in use by another process{holder}. DuckDB lets only "
            f"one process open a database file. {advice} DuckDB said: {detail}"
        )
        self.path = path
        self.pid = pid
        self.detail = detail


class StoreDamaged(RuntimeError):
    """The DuckDB file (or its write-ahead log) is damaged or is no DuckDB database.

    raytha_nb stops instead of writing on: what a damaged file accepts is not kept.
    ``fix`` says what to do, with the shell command that moves the damage aside.
    """

    def __init__(self, path: str, problem: str, fix: str, detail: str) -> None:
        super().__init__(
            f"The task store {path} is damaged: {problem}. {fix} DuckDB said: {detail}"
        )
        self.path = path
        self.problem = problem
        self.fix = fix
        self.detail = detail

    def __reduce__(self) -> tuple[Any, ...]:  # copy and pickle with these arguments
        return type(self), (self.path, self.problem, self.fix, self.detail)


class StoreUnusable(RuntimeError):
    """The task store's path cannot hold a store: a directory, or a file or folder this
    process may not write."""

    def __init__(self, path: str, problem: str, fix: str, detail: str = "") -> None:
        said = f" ({detail})" if detail else ""
        super().__init__(f"The task store {path} cannot be used: {problem}{said}. {fix}")
        self.path = path
        self.problem = problem
        self.fix = fix
        self.detail = detail

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.path, self.problem, self.fix, self.detail)


class StoreWriteError(RuntimeError):
    """A write to the task store failed (a full disk, a file-size limit, lost permission).

    ``detail`` is DuckDB's own message. Nothing was committed by the failed write and
    nothing committed before is lost; the writer keeps its unsaved state and retries.
    """

    def __init__(self, path: str, detail: str, fix: str) -> None:
        super().__init__(f"The task store {path} could not be written: {detail}. {fix}")
        self.path = path
        self.detail = detail
        self.fix = fix

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.path, self.detail, self.fix)


class ServerError(RuntimeError):
    """The raytha_nb server refused a request or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotTaskOwner(PermissionError):
    """A kernel tried to change a task another kernel created (the server answers 403):
    each kernel writes only its own tasks' state; others may read and cancel them."""


class ProtocolError(ValueError):
    """A kernel-API message does not follow the wire protocol (the server answers 400,
    naming the field); also raised for a kernel and server whose versions cannot talk."""
