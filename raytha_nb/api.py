"""The module-level API (``raytha_nb.enqueue`` ...), acting on the process-wide manager."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb

from ._manager import manager
from .executor import Body
from .model import LogLine, TaskRecord


def enqueue(
    task: Any, args: Any = None, *, name: str | None = None, executor: str | None = None
) -> str:
    """Queue a task (Raytha's ``EnqueueAsync<T>``) and return its job id (a UUID string).

    ``task`` is a :class:`BackgroundTask` subclass, a function (called as ``fn(**args)``)
    or a registered name; ``args`` must be JSON-serialisable. ``executor``: "thread" (a
    worker thread of this kernel) or "process" (a worker process this kernel owns);
    default as ``configure(executor=...)`` set it, else "thread".
    """
    return manager().enqueue(task, args, name=name, executor=executor)


def submit(
    body: Body, *, name: str, task: str, args: Any = None, executor: str | None = None
) -> str:
    """Queue ``body(ctx)``, a callable that takes the task's context (``executor`` as
    for :func:`enqueue`; for "process" the body and what it holds must pickle)."""
    return manager().submit(body, name=name, task=task, args=args, executor=executor)


def get_task(job_id: str) -> TaskRecord:
    """The task's state now (Raytha's ``GetBackgroundTaskById``); ``TaskNotFound`` if unknown."""
    return manager().get_task(job_id)


get_background_task_by_id = get_task


def list_tasks(
    status: str | Sequence[str] | None = None,
    name: str | None = None,
    limit: int | None = 100,
    **filters: Any,
) -> list[TaskRecord]:
    """Tasks newest first, optionally filtered by status, name, ``kernel_id``,
    ``notebook``, ``q`` (a substring of name, task, notebook or info) and ``offset``."""
    return manager().list_tasks(status, name, limit, **filters)


def cancel(job_id: str, force: bool = False) -> bool:
    """Cancel a queued or running task; False if it had already finished.

    Cooperative first, forced after the grace period; ``force=True`` stops it at once
    (kills a process task's worker; raises in a thread task between bytecodes)."""
    return manager().cancel(job_id, force)


def wait(job_id: str, timeout: float | None = None) -> TaskRecord:
    """Block until the task's final state is stored; ``TimeoutError`` after ``timeout`` s."""
    return manager().wait(job_id, timeout)


def wait_all(timeout: float | None = None) -> list[TaskRecord]:
    """Wait for every task this kernel (process) started since the last ``wait_all()``;
    ``TaskFailed`` naming each that ended in error or interrupted. For headless runs."""
    __tracebackhide__ = True  # IPython shows the error, not this frame
    return manager().wait_all(timeout)


def result(job_id: str, timeout: float | None = 0) -> Any:
    """The task's return value (``timeout=None`` waits for it to finish)."""
    return manager().result(job_id, timeout)


def logs(job_id: str, since: int = 0) -> list[LogLine]:
    """The task's log lines after sequence number ``since``."""
    return manager().logs(job_id, since)


def history(job_id: str) -> list[dict[str, Any]]:
    """The task's status changes and progress samples over time."""
    return manager().history(job_id)


def delete(job_id: str) -> None:
    """Forget a finished task, its logs and its result file."""
    manager().delete(job_id)


def task_store() -> duckdb.DuckDBPyConnection:
    """DuckDB over the task store's tables (``tasks``, ``task_events``, ``task_logs``) for
    your own SQL: the store itself in a plain kernel, a fresh snapshot of the server's
    store under Jupyter (call again for newer data). Read it; don't write to it."""
    return manager().backend.connection()
