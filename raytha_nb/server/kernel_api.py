"""The kernel API under ``<base_url>/raytha-nb/kernel-api/``: only the kernel secret opens it.

Kernels started by the server inherit ``RAYTHA_NB_TOKEN`` (the secret) and send it as
``Authorization: token <secret>``. It is not a Jupyter token, so it opens none of the
user endpoints, and Jupyter's own token opens none of these. Jupyter's authentication
is switched off here (``allow_unauthenticated``) only to be replaced by this check;
XSRF does not apply because a browser cannot add the header cross-site.
"""

from __future__ import annotations

import hmac
from typing import Any

import duckdb
from jupyter_server.auth.decorator import allow_unauthenticated
from tornado import web

from ..model import TaskStatus
from ..store import EVENT_COLUMNS, LOG_COLUMNS, PROGRESS_COLUMNS, TASK_COLUMNS, Batch
from ._endpoints import (
    JOB_ID,
    Base,
    CancelEndpoint,
    HistoryEndpoint,
    LogsEndpoint,
    TaskEndpoint,
    TasksEndpoint,
    bad_request,
)


class KernelAuth(Base):
    """Accepts only ``Authorization: token <kernel secret>``."""

    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()
        secret: str = self.settings["raytha_nb_kernel_secret"]
        header = self.request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "token" or not hmac.compare_digest(given.strip(), secret):
            raise web.HTTPError(
                403,
                "the raytha_nb kernel API needs the kernel secret (RAYTHA_NB_TOKEN of a kernel "
                "the server started); use /raytha-nb/api/ with your Jupyter token instead",
                reason="Forbidden",
            )

    def check_xsrf_cookie(self) -> None:
        """Authenticated by a header, never by a cookie: nothing to forge."""


_REQUIRED = ("name", "task", "status", "created_at")
_BAD_VALUES = (
    TypeError,
    ValueError,
    OverflowError,
    duckdb.ConstraintException,
    duckdb.ConversionException,
    duckdb.OutOfRangeException,
    duckdb.InvalidInputException,
)


class PublishHandler(KernelAuth):
    """A kernel's batch of state changes and its heartbeat; replies with cancel requests."""

    @allow_unauthenticated
    async def post(self) -> None:
        body = self.json_body()
        if not isinstance(body, dict):
            raise bad_request("the body must be a JSON object with 'session' and 'batch'")
        session = body.get("session")
        if not isinstance(session, str) or not session:
            raise bad_request("'session' must be a non-empty string naming the publisher")
        kernel_id = body.get("kernel_id")
        pid = body.get("pid")
        active = body.get("active", [])
        if kernel_id is not None and not isinstance(kernel_id, str):
            raise bad_request("'kernel_id' must be a string or null")
        if pid is not None and (not isinstance(pid, int) or isinstance(pid, bool)):
            raise bad_request("'pid' must be an integer or null")
        if not isinstance(active, list) or not all(isinstance(i, str) for i in active):
            raise bad_request("'active' must be a list of task ids")
        batch = _batch(body.get("batch", {}))
        try:
            cancels = await self.call(
                self.service.publish,
                batch,
                session=session,
                kernel_id=kernel_id,
                pid=pid,
                active=active,
            )
        except _BAD_VALUES as exc:  # Arrow or DuckDB refused a value in the batch
            raise bad_request(f"the batch has a value of the wrong type: {exc}") from None
        self.reply({"cancel": cancels})


def _batch(data: Any) -> Batch:
    if not isinstance(data, dict):
        raise bad_request(
            "'batch' must be an object with 'tasks', 'progress', 'events' and 'logs' lists"
        )
    for key, columns in (
        ("tasks", TASK_COLUMNS),
        ("progress", PROGRESS_COLUMNS),
        ("events", EVENT_COLUMNS),
        ("logs", LOG_COLUMNS),
    ):
        rows = data.get(key, [])
        if not isinstance(rows, list) or not all(
            isinstance(r, list) and len(r) == len(columns) and isinstance(r[0], str) for r in rows
        ):
            raise bad_request(
                f"'batch.{key}' must be a list of rows of {len(columns)} values: "
                f"{', '.join(columns)}"
            )
    statuses = {s.value for s in TaskStatus}
    status_at = TASK_COLUMNS.index("status")
    for row in data.get("tasks", []):
        if row[status_at] not in statuses:
            raise bad_request(f"task {row[0]} has unknown status {row[status_at]!r}")
        for column in _REQUIRED:
            if row[TASK_COLUMNS.index(column)] is None:
                raise bad_request(f"task {row[0]} has no {column!r}: it is required")
    return Batch.from_json(data)


class InfoHandler(KernelAuth):
    """What a kernel needs to know: where result files go, and the server's version."""

    @allow_unauthenticated
    async def get(self) -> None:
        status = await self.call(self.service.status)
        self.reply({**status, "results_dir": str(self.service.results_dir)})


class SnapshotHandler(KernelAuth):
    """Parquet copies of the store's tables, for ``rnb.task_store()`` in a kernel (which
    cannot open the DuckDB file the server holds)."""

    @allow_unauthenticated
    async def post(self) -> None:
        target = await self.call(self.service.snapshot)
        self.reply({"dir": str(target)})


class KernelTasksHandler(KernelAuth, TasksEndpoint):
    @allow_unauthenticated
    async def get(self) -> None:
        await self.list_tasks()


class KernelTaskHandler(KernelAuth, TaskEndpoint):
    @allow_unauthenticated
    async def get(self, job_id: str) -> None:
        await self.get_task(job_id)

    @allow_unauthenticated
    async def delete(self, job_id: str) -> None:
        await self.delete_task(job_id)


class KernelCancelHandler(KernelAuth, CancelEndpoint):
    @allow_unauthenticated
    async def post(self, job_id: str) -> None:
        await self.cancel_task(job_id)


class KernelLogsHandler(KernelAuth, LogsEndpoint):
    @allow_unauthenticated
    async def get(self, job_id: str) -> None:
        await self.get_logs(job_id)


class KernelHistoryHandler(KernelAuth, HistoryEndpoint):
    @allow_unauthenticated
    async def get(self, job_id: str) -> None:
        await self.get_history(job_id)


KERNEL_API = "/raytha-nb/kernel-api"

handlers: list[tuple[str, type[Base]]] = [
    (f"{KERNEL_API}/publish", PublishHandler),
    (f"{KERNEL_API}/info", InfoHandler),
    (f"{KERNEL_API}/snapshot", SnapshotHandler),
    (f"{KERNEL_API}/tasks", KernelTasksHandler),
    (f"{KERNEL_API}/tasks/{JOB_ID}", KernelTaskHandler),
    (f"{KERNEL_API}/tasks/{JOB_ID}/cancel", KernelCancelHandler),
    (f"{KERNEL_API}/tasks/{JOB_ID}/logs", KernelLogsHandler),
    (f"{KERNEL_API}/tasks/{JOB_ID}/history", KernelHistoryHandler),
]
