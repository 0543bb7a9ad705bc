"""What the task endpoints do, shared by the user API and the kernel API.

Each ``*Endpoint`` mixin holds the request handling (argument checks, a call into the
:class:`~raytha_nb.server.service.TaskService` on a worker thread, the JSON reply);
``handlers.py`` and ``kernel_api.py`` add authentication on top.
"""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web

from ..model import TaskRecord, TaskStatus
from .service import TaskService, TaskStateConflict

T = TypeVar("T")

#: Largest page a list request may ask for.
MAX_LIMIT = 1000
#: DuckDB's BIGINT, the default bound of integer query parameters: DuckDB refuses more.
_BIGINT = 2**63 - 1
#: The ``{id}`` part of a task URL, in both route tables.
JOB_ID = r"(?P<job_id>[^/]+)"


def bad_request(message: str) -> web.HTTPError:
    return web.HTTPError(400, message, reason="Bad Request")


def not_found(job_id: str) -> web.HTTPError:
    return web.HTTPError(404, f"no task with id {job_id!r}", reason="Not Found")


def conflict(message: str) -> web.HTTPError:
    return web.HTTPError(409, message, reason="Conflict")


def check_id(job_id: str) -> str:
    """A task id is a UUID; anything else is a 400 that says so."""
    try:
        return str(uuid.UUID(job_id))
    except ValueError:
        raise bad_request(
            f"{job_id!r} is not a task id: ids are UUIDs such as "
            "'0f8fad5b-d9cb-469f-a165-70867728950e'"
        ) from None


class Base(ExtensionHandlerMixin, APIHandler):
    """Access to the service and its worker threads; JSON replies."""

    @property
    def service(self) -> TaskService:
        service: TaskService = self.settings["raytha_nb_service"]
        return service

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking service call on the store's worker threads."""
        executor: Executor = self.settings["raytha_nb_executor"]
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(executor, functools.partial(fn, *args, **kwargs))
        except RuntimeError:
            if not self.service.closed:
                raise
        # The server is stopping: the store is closed (a kernel retries, a browser reloads).
        raise web.HTTPError(
            503,
            "the raytha_nb task store is closed: the server is shutting down",
            reason="Service Unavailable",
        )

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 405:  # RFC 9110: say which methods this URL supports
            allowed = [
                m
                for m in ("GET", "POST", "DELETE")
                if getattr(type(self), m.lower()) is not getattr(web.RequestHandler, m.lower())
            ]
            self.set_header("Allow", ", ".join(allowed))
        super().write_error(status_code, **kwargs)

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, separators=(",", ":")))

    def int_arg(self, name: str, default: int, low: int, high: int = _BIGINT) -> int:
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise bad_request(f"query parameter {name}={raw!r} is not an integer") from None
        if not low <= value <= high:
            raise bad_request(f"query parameter {name}={value} must be between {low} and {high}")
        return value

    def text_arg(self, name: str) -> str | None:
        value = self.get_query_argument(name, None)
        return value if value else None

    def statuses(self) -> list[str] | None:
        """``status`` may repeat and/or be comma-separated."""
        raw = [s.strip() for arg in self.get_query_arguments("status") for s in arg.split(",")]
        raw = [s for s in raw if s]
        if not raw:
            return None
        known = [s.value for s in TaskStatus]
        for value in raw:
            if value not in known:
                raise bad_request(f"unknown status {value!r}: use one of {', '.join(known)}")
        return raw

    async def record(self, job_id: str) -> TaskRecord:
        job_id = check_id(job_id)
        record = self.service.live(job_id) or await self.call(self.service.get, job_id)
        if record is None:
            raise not_found(job_id)
        return record

    def json_body(self) -> Any:
        try:
            return json.loads(self.request.body or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad_request(f"the request body is not valid JSON: {exc}") from None


class TasksEndpoint(Base):
    """``tasks``: list with filters and paging; delete all finished."""

    async def list_tasks(self) -> None:
        limit = self.int_arg("limit", 100, 1, MAX_LIMIT)
        offset = self.int_arg("offset", 0, 0)
        filters = {
            "status": self.statuses(),
            "name": self.text_arg("name"),
            "kernel_id": self.text_arg("kernel_id"),
            "notebook": self.text_arg("notebook"),
            "q": self.text_arg("q"),
        }
        page, total = await self.call(
            self.service.list_tasks, limit=limit, offset=offset, **filters
        )
        following = offset + len(page)
        self.reply(
            {
                "tasks": [r.to_json() for r in page],
                "total": total,
                "offset": offset,
                "limit": limit,
                "next_offset": following if following < total else None,
            }
        )

    async def delete_finished(self) -> None:
        if self.get_query_argument("finished", None) != "true":
            raise bad_request(
                "DELETE tasks needs ?finished=true (it deletes every finished task); "
                "to delete one task use DELETE tasks/{id}"
            )
        self.reply({"deleted": await self.call(self.service.delete_finished)})


class TaskEndpoint(Base):
    """``tasks/{id}``: one task; delete a finished one."""

    async def get_task(self, job_id: str) -> None:
        self.reply((await self.record(job_id)).to_json())

    async def delete_task(self, job_id: str) -> None:
        job_id = check_id(job_id)
        try:
            found = await self.call(self.service.delete, job_id)
        except TaskStateConflict as exc:
            raise conflict(str(exc)) from None
        if not found:
            raise not_found(job_id)
        self.set_status(204)
        self.finish()


class CancelEndpoint(Base):
    async def cancel_task(self, job_id: str) -> None:
        job_id = check_id(job_id)
        requested, record = await self.call(self.service.cancel, job_id)
        if record is None:
            raise not_found(job_id)
        self.reply({"cancel_requested": requested, "task": record.to_json()})


class LogsEndpoint(Base):
    async def get_logs(self, job_id: str) -> None:
        since = self.int_arg("since", 0, 0)
        limit = self.int_arg("limit", 10_000, 1, 100_000)
        record = await self.record(job_id)
        lines = await self.call(self.service.logs, record.id, since, limit)
        self.reply(
            {
                "lines": [line.to_json() for line in lines],
                "last_seq": lines[-1].seq if lines else since,
            }
        )


class HistoryEndpoint(Base):
    async def get_history(self, job_id: str) -> None:
        record = await self.record(job_id)
        events = await self.call(self.service.history, record.id)
        for event in events:
            event["ts"] = event["ts"].isoformat().replace("+00:00", "Z")
        self.reply({"events": events})
