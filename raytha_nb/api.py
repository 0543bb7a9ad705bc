"""The module-level API (``raytha_nb.enqueue`` ...), acting on the process-wide manager."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import duckdb

from ._manager import manager
from .executor import Body
from .model import LogLine, TaskRecord


def enqueue(
    task: Any,
    args: Any = None,
    *,
    name: str | None = None,
    executor: str | None = None,
    retries: int | None = None,
    retry_delay: float | Sequence[float] | Callable[[int], float] | None = None,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] | None = None,
    timeout: float | timedelta | None = None,
    limit: int | None = None,
    at: datetime | None = None,
    delay: float | timedelta | None = None,
    after: str | Sequence[str] | None = None,
    when: str | None = None,
) -> str:
    """Queue a task (Raytha's ``EnqueueAsync<T>``) and return its job id (a UUID string).

    ``task`` is a :class:`BackgroundTask` subclass, a function (called as ``fn(**args)``)
    or a registered name; ``args`` must be JSON-serialisable. ``executor``: "thread" (a
    worker thread of this kernel), "process", "dask" or "server"; default as
    ``configure(executor=...)`` set it, else "thread". Each option below overrides what
    ``@rnb.task`` gave the function:

    * ``retries``: more attempts after a failure raising one of ``retry_on`` (default
      ``Exception``), never after a cancel; ``retry_delay``: seconds, a list of seconds
      (one per retry) or ``fn(attempt) -> seconds`` (default 1, 2, 4 ... s +/- 25 %);
    * ``timeout``: seconds; a longer run ends ``error`` with ``TaskTimeout``;
    * ``at`` (a datetime) or ``delay`` (seconds): ``scheduled`` until then;
    * ``after``: task id(s) to wait for (``awaiting``); ``when="success"`` (default)
      runs it only if they all completed, else it ends ``cancelled``; ``"finished"``
      runs it however they ended;
    * ``limit``: at most this many tasks of its name run at once in this kernel.
    """
    return manager().enqueue(
        task, args, name=name, executor=executor, retries=retries, retry_delay=retry_delay,
        retry_on=retry_on, timeout=timeout, limit=limit, at=at, delay=delay, after=after,
        when=when,
    )  # fmt: skip


def retry(job_id: str) -> str:
    """Run a finished task (error, cancelled, interrupted or complete) again as a new
    task with the same task, args and options; return its id. Its ``retry_of`` is
    ``job_id`` and its ``ctx.resume`` the old task's last ``ctx.checkpoint()``. Works from
    any kernel for a registered task, an importable function, or a process, Dask or
    server task (their code is stored); else ``CannotRetry`` says why."""
    return manager().retry(job_id)


def submit(body: Body, *, name: str, task: str, args: Any = None, **options: Any) -> str:
    """Queue ``body(ctx)``, a callable that takes the task's context (``options`` as
    for :func:`enqueue`; for "process" the body and what it holds must pickle)."""
    return manager().submit(body, name=name, task=task, args=args, **options)


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
    ``notebook``, ``group_id``, ``grouped``, ``schedule_id`` (a schedule's runs), ``q``
    (a substring of name, task, notebook or info) and ``offset``."""
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
