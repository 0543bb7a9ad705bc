"""Where a process's task state goes: the backend interface and its embedded form.

Embedded mode: this process owns the DuckDB file (:class:`EmbeddedBackend` over a
:class:`~raytha_nb.store.Store`). Server mode: a jupyter server with the raytha_nb
extension owns it and the kernel talks to it over HTTP
(:class:`~raytha_nb._client.RemoteBackend`). The manager sees only this interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import duckdb

from .model import LogLine, TaskQuery, TaskRecord
from .protocol import Batch
from .store import Store


class TaskBackend(ABC):
    """What the manager needs from a task store, local or remote."""

    #: Whether ``publish`` reads its ``active`` list (a server reaps the tasks of a
    #: silent kernel by it); a process owning its store has nobody to tell.
    reads_active = True

    @property
    @abstractmethod
    def results_dir(self) -> Path:
        """Where result files of this process's tasks are written."""

    @abstractmethod
    def publish(self, batch: Batch, active: list[str]) -> dict[str, bool]:
        """Commit ``batch`` (``active``: this process's unfinished task ids, its
        heartbeat); return ids of its tasks that others asked to cancel, each with
        whether to force it at once."""

    @abstractmethod
    def get(self, job_id: str) -> TaskRecord | None: ...

    @abstractmethod
    def list_tasks(self, query: TaskQuery) -> list[TaskRecord]: ...

    @abstractmethod
    def logs(self, job_id: str, since: int = 0, limit: int = 10_000) -> list[LogLine]: ...

    @abstractmethod
    def history(self, job_id: str) -> list[dict[str, Any]]: ...

    @abstractmethod
    def request_cancel(self, job_id: str, force: bool = False) -> None:
        """Ask whichever process runs ``job_id`` to cancel it (``force``: a server-run
        task's worker is killed at once)."""

    @abstractmethod
    def delete(self, job_id: str) -> bool: ...

    def idle(self) -> None:  # noqa: B027 - optional: most backends have nothing to do
        """The publisher had nothing to send: a moment for housekeeping. Cheap; never
        raises for what it cannot do now."""

    def result_url(self, job_id: str) -> str | None:
        """The URL path of the task's result download, when a server offers one."""
        return None

    @abstractmethod
    def connection(self) -> duckdb.DuckDBPyConnection:
        """DuckDB over the store's tables ``tasks``, ``task_events``, ``task_logs``."""

    @abstractmethod
    def close(self) -> None: ...


class EmbeddedBackend(TaskBackend):
    """This process owns the store file: every call goes straight to DuckDB."""

    reads_active = False

    def __init__(self, store: Store) -> None:
        self.store = store

    @property
    def results_dir(self) -> Path:
        return self.store.results_dir

    def publish(self, batch: Batch, active: list[str]) -> dict[str, bool]:
        # Nobody else can open the file, so nobody else can ask for a cancel.
        self.store.apply(batch)
        return {}

    def idle(self) -> None:
        # A quiet kernel's history goes from the WAL into the file (Store.checkpoint_if_idle).
        self.store.checkpoint_if_idle()

    def get(self, job_id: str) -> TaskRecord | None:
        return self.store.get(job_id)

    def list_tasks(self, query: TaskQuery) -> list[TaskRecord]:
        return self.store.list_tasks(query)

    def logs(self, job_id: str, since: int = 0, limit: int = 10_000) -> list[LogLine]:
        return self.store.logs(job_id, since, limit)

    def history(self, job_id: str) -> list[dict[str, Any]]:
        return self.store.history(job_id)

    def request_cancel(self, job_id: str, force: bool = False) -> None:
        self.store.request_cancel(job_id)

    def delete(self, job_id: str) -> bool:
        return self.store.delete(job_id)

    def connection(self) -> duckdb.DuckDBPyConnection:
        return self.store.connection()

    def close(self) -> None:
        self.store.close()
