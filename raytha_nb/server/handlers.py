"""The user REST API under ``<base_url>/raytha-nb/api/``: Jupyter auth on every method.

Every method is ``@web.authenticated`` and ``@authorized`` on the ``raytha_nb``
resource (GET reads, POST/DELETE writes), so a Jupyter authorizer can grant or deny
the whole API. Errors are JSON ``{"message", "reason"}``.
"""

from __future__ import annotations

import asyncio
import mimetypes
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jupyter_server.auth.decorator import authorized
from tornado import iostream, web

from ._endpoints import (
    JOB_ID,
    Base,
    CancelEndpoint,
    HistoryEndpoint,
    LogsEndpoint,
    TaskEndpoint,
    TasksEndpoint,
    conflict,
)
from .events import sse

#: Seconds between keep-alive comments on the event stream.
KEEPALIVE = 15.0
#: Media types of stored results by kind, when the descriptor names none.
_MEDIA = {"parquet": "application/vnd.apache.parquet", "pickle": "application/octet-stream"}
_CHUNK = 1 << 20


class UserAuth(Base):
    auth_resource = "raytha_nb"


class TasksHandler(UserAuth, TasksEndpoint):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        await self.list_tasks()

    @web.authenticated
    @authorized
    async def delete(self) -> None:
        await self.delete_finished()


class TaskHandler(UserAuth, TaskEndpoint):
    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        await self.get_task(job_id)

    @web.authenticated
    @authorized
    async def delete(self, job_id: str) -> None:
        await self.delete_task(job_id)


class CancelHandler(UserAuth, CancelEndpoint):
    @web.authenticated
    @authorized
    async def post(self, job_id: str) -> None:
        await self.cancel_task(job_id)


class LogsHandler(UserAuth, LogsEndpoint):
    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        await self.get_logs(job_id)


class HistoryHandler(UserAuth, HistoryEndpoint):
    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        await self.get_history(job_id)


class ResultHandler(UserAuth):
    """The result: JSON inline, or the stored file as a download."""

    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        record = await self.record(job_id)
        if record.status.value != "complete":
            raise conflict(
                f"task {record.name} ({record.id}) is {record.status.value}, so it has no "
                "result" + (" yet" if not record.finished else "")
            )
        kind = record.result_kind
        if kind in (None, "json", "repr"):
            self.reply({"kind": kind or "json", "value": record.result})
            return
        stored: Any = record.result
        path = Path(stored["path"]) if isinstance(stored, dict) and stored.get("path") else None
        if path is None or not path.is_file():
            raise web.HTTPError(
                404,
                f"the result file of task {record.id} is gone: {path or record.result} "
                "(deleted by hand or by retention)",
                reason="Not Found",
            )
        media = stored.get("media_type") or _MEDIA.get(kind) or mimetypes.guess_type(path.name)[0]
        filename = stored.get("filename") or path.name
        self.set_header("Content-Type", media or "application/octet-stream")
        self.set_header("Content-Disposition", _attachment(filename))
        self.set_header("Content-Length", str(path.stat().st_size))
        with path.open("rb") as handle:
            while chunk := await self.call(handle.read, _CHUNK):
                self.write(chunk)
                await self.flush()
        self.finish()


class StatusHandler(UserAuth):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await self.call(self.service.status))


class EventsHandler(UserAuth):
    """Server-Sent Events: ``task`` and ``deleted`` events, a keep-alive comment."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        hub = self.service.hub
        queue = hub.subscribe()
        try:
            self.write(b"retry: 2000\n: connected\n\n")
            await self.flush()
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), KEEPALIVE)
                except asyncio.TimeoutError:
                    self.write(b": keepalive\n\n")
                else:
                    if item is None:
                        break
                    self.write(sse(*item))
                await self.flush()
        except iostream.StreamClosedError:
            pass
        finally:
            hub.unsubscribe(queue)
        if not self._finished:
            self.finish()


def _attachment(name: str) -> str:
    """``Content-Disposition`` for a download: a plain ASCII name, plus the UTF-8 name
    (RFC 6266 ``filename*``) when it has other characters."""
    plain = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)
    header = f'attachment; filename="{plain}"'
    if plain != name and not name.isascii():
        header += f"; filename*=UTF-8''{quote(name, safe='')}"
    return header


API = "/raytha-nb/api"

handlers: list[tuple[str, type[Base]]] = [
    (f"{API}/tasks", TasksHandler),
    (f"{API}/tasks/{JOB_ID}", TaskHandler),
    (f"{API}/tasks/{JOB_ID}/cancel", CancelHandler),
    (f"{API}/tasks/{JOB_ID}/logs", LogsHandler),
    (f"{API}/tasks/{JOB_ID}/history", HistoryHandler),
    (f"{API}/tasks/{JOB_ID}/result", ResultHandler),
    (f"{API}/events", EventsHandler),
    (f"{API}/status", StatusHandler),
]
