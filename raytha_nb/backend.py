"""Where task state goes: the interface, and the choice between embedded and server mode.

Embedded mode: this process owns the DuckDB file (:class:`~raytha_nb.store.Store`).
Server mode: a jupyter server with the raytha_nb extension owns it, and the kernel
talks to it over HTTP. The server puts ``RAYTHA_NB_URL`` and ``RAYTHA_NB_TOKEN`` into
the environment of the kernels it starts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import duckdb

from .model import LogLine, TaskRecord
from .store import Batch


class TaskBackend(Protocol):
    """What the manager needs from a task store, local or remote."""

    @property
    def results_dir(self) -> Path: ...

    def publish(self, batch: Batch) -> set[str]:
        """Commit ``batch``; return ids of this process's tasks that others asked to cancel."""
        ...

    def get(self, job_id: str) -> TaskRecord | None: ...

    def list_tasks(
        self,
        *,
        status: str | Sequence[str] | None = None,
        name: str | None = None,
        kernel_id: str | None = None,
        notebook: str | None = None,
        limit: int | None = 100,
        offset: int = 0,
    ) -> list[TaskRecord]: ...

    def logs(self, job_id: str, since: int = 0, limit: int = 10_000) -> list[LogLine]: ...

    def history(self, job_id: str) -> list[dict[str, Any]]: ...

    def request_cancel(self, job_id: str) -> None:
        """Ask whichever process runs ``job_id`` to cancel it."""
        ...

    def delete(self, job_id: str) -> bool: ...

    def result_url(self, job_id: str) -> str | None:
        """The URL path of the task's result download, when a server offers one."""
        ...

    def connection(self) -> duckdb.DuckDBPyConnection:
        """DuckDB over the store's tables ``tasks``, ``task_events``, ``task_logs``."""
        ...

    def close(self) -> None: ...


def default_db_path() -> Path:
    """``$RAYTHA_NB_DB``, else ``<jupyter data dir>/raytha_nb/tasks.duckdb``."""
    override = os.environ.get("RAYTHA_NB_DB")
    if override:
        return Path(override).expanduser()
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "raytha_nb" / "tasks.duckdb"


def backend_from_env(db: str | Path | None = None) -> TaskBackend:
    """The server's store when this kernel was started by one, else an embedded store.

    An explicit ``db`` (``configure(db=...)``) always means embedded mode.
    """
    from .store import Store

    if db is None:
        from ._client import RemoteBackend, discover

        address = discover()
        if address is not None:
            return RemoteBackend(address)
    return Store(db or default_db_path())
