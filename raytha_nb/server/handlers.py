"""The REST resources, one handler each, and the two route tables that serve them.

``/raytha-nb/api/`` is the user API (Jupyter auth); ``/raytha-nb/kernel-api/`` is the
kernel API (the kernel secret): see :mod:`._base` for the schemes. Errors are JSON
``{"message", "reason"}``.
"""

from __future__ import annotations

import asyncio
import base64
import mimetypes
import os
import stat
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import quote

from jupyter_core.utils import ensure_async
from tornado import iostream, web

from .. import _notebook_job, _retry
from .._schedule import ScheduleSpec, check_ref
from ..errors import NotebookNotFound, ProtocolError, TaskStateError
from ..model import BIGINT, TaskQuery, TaskRecord, iso
from ..protocol import Publish, ServerTask
from ._base import JOB_ID, KERNEL, USER, Base, bad_request, check_id, guarded, not_found
from ._preview import preview
from ._rerun import CannotRerun, kernel_alive, rerun_in_kernel, retry_in_kernel
from .events import sse
from .scheduler import Scheduler
from .service import contents_path
from .workers import ServerWorkers

#: Largest page a list request may ask for.
MAX_LIMIT = 1000
#: Seconds between keep-alive comments on the event stream.
KEEPALIVE = 15.0
#: Media types of stored results by kind, when the descriptor names none.
_MEDIA = {"parquet": "application/vnd.apache.parquet", "pickle": "application/octet-stream"}
_CHUNK = 1 << 20
#: Most rows a result preview may ask for.
MAX_PREVIEW = 1000


class TasksHandler(Base):
    """``tasks``: list with filters and paging; delete all finished."""

    @guarded
    async def get(self) -> None:
        try:
            query = TaskQuery.from_params(self.get_query_arguments, MAX_LIMIT)
        except (TypeError, ValueError) as exc:
            raise bad_request(str(exc)) from None
        page, total = await self.call(self.service.list_tasks, query)
        following = query.offset + len(page)
        self.reply(
            {
                "tasks": [r.to_json() for r in page],
                "total": total,
                "offset": query.offset,
                "limit": query.limit,
                "next_offset": following if following < total else None,
            }
        )

    @guarded
    async def delete(self) -> None:
        if self.get_query_argument("finished", None) != "true":
            raise bad_request(
                "DELETE tasks needs ?finished=true (it deletes every finished task); "
                "to delete one task use DELETE tasks/{id}"
            )
        self.reply({"deleted": await self.call(self.service.delete_finished)})


class TaskHandler(Base):
    """``tasks/{id}``: one task; delete a finished one."""

    @guarded
    async def get(self, job_id: str) -> None:
        self.reply((await self.record(job_id)).to_json())

    @guarded
    async def delete(self, job_id: str) -> None:
        job_id = check_id(job_id)
        if not await self.call(self.service.delete, job_id, self.kernel()):
            raise not_found(job_id)
        self.set_status(204)
        self.finish()


class CancelHandler(Base):
    """``tasks/{id}/cancel``: ask the task's kernel to cancel it; ``{"force": true}``
    stops a server-run task's worker at once."""

    @guarded
    async def post(self, job_id: str) -> None:
        job_id = check_id(job_id)
        body = self.json_body()
        if body is None:
            body = {}
        if not isinstance(body, dict) or not isinstance(body.get("force", False), bool):
            raise bad_request('the body must be empty or {"force": true|false}')
        requested, record = await self.call(self.service.cancel, job_id, body.get("force", False))
        if record is None:
            raise not_found(job_id)
        self.reply({"cancel_requested": requested, "task": record.to_json()})


class LogsHandler(Base):
    """``tasks/{id}/logs?since=N``: what the task printed after line N."""

    @guarded
    async def get(self, job_id: str) -> None:
        since = self.int_arg("since", 0, 0, BIGINT)
        limit = self.int_arg("limit", 10_000, 1, 100_000)
        record = await self.record(job_id)
        lines = await self.call(self.service.logs, record.id, since, limit)
        self.reply(
            {
                "lines": [line.to_json() for line in lines],
                "last_seq": lines[-1].seq if lines else since,
            }
        )


class HistoryHandler(Base):
    """``tasks/{id}/history``: status changes and progress samples."""

    @guarded
    async def get(self, job_id: str) -> None:
        record = await self.record(job_id)
        rows = await self.call(self.service.history, record.id)
        self.reply({"events": [{**row, "ts": iso(row["ts"])} for row in rows]})


class ResultHandler(Base):
    """``tasks/{id}/result``: JSON inline, or the stored file as a download."""

    @guarded
    async def get(self, job_id: str) -> None:
        record = _completed(await self.record(job_id))
        kind = record.result_kind
        if kind in (None, "json", "repr"):
            self.reply({"kind": kind or "json", "value": record.result})
            return
        stored: Any = record.result
        path = Path(stored["path"]) if isinstance(stored, dict) and stored.get("path") else None
        if path is None:
            raise _gone(record, record.result)
        media = stored.get("media_type") or _MEDIA.get(kind) or mimetypes.guess_type(path.name)[0]
        filename = stored.get("filename") or path.name
        with self._open(record, path) as handle:
            self.set_header("Content-Type", media or "application/octet-stream")
            self.set_header("Content-Disposition", _attachment(filename))
            self.set_header("Content-Length", str(os.fstat(handle.fileno()).st_size))
            while chunk := await self.call(handle.read, _CHUNK):
                self.write(chunk)
                await self.flush()
        self.finish()

    def _open(self, record: TaskRecord, path: Path) -> BinaryIO:
        """The task's result file, opened, if it lies under the store's results directory
        or the server's root directory once symlinks are resolved; else a 403 saying why.

        A result path is whatever the task's code returned (``ResultFile('/etc/passwd')``,
        a symlink to ``/etc/shadow``), and this route answers anyone allowed to read
        raytha_nb: unchecked, it would hand out any file the server can read."""
        try:
            real = path.resolve()
        except (OSError, RuntimeError):  # a symlink loop: no file there
            raise _gone(record, path) from None
        results = self.service.results_dir.resolve()
        root = Path(self.serverapp.root_dir).resolve()
        if not (real.is_relative_to(results) or real.is_relative_to(root)):
            resolved = f" (which resolves to {real})" if real != path else ""
            raise web.HTTPError(
                403,
                f"refused to send {path}{resolved}, the result file of task {record.name} "
                f"({record.id}): result files are sent only from the task store's results "
                f"directory {results} or this Jupyter server's root directory {root}, and "
                "this file is in neither. Have the task write its file under one of them.",
                reason="Forbidden",
            )
        try:
            # Not a symlink swapped in since resolve(), and no wait on a FIFO.
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            raise _gone(record, path) from None
        handle = os.fdopen(fd, "rb")
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            handle.close()
            raise _gone(record, path)
        return handle


class PreviewHandler(ResultHandler):
    """``tasks/{id}/result/preview?rows=N``: the first rows of a table result (Parquet),
    read from the file's first row groups, never the whole file."""

    @guarded
    async def get(self, job_id: str) -> None:  # type: ignore[override]
        rows = self.int_arg("rows", 20, 0, MAX_PREVIEW)
        record = _completed(await self.record(job_id))
        stored: Any = record.result
        path = stored.get("path") if isinstance(stored, dict) else None
        if not path or not _is_table(record.result_kind, stored):
            raise web.HTTPError(
                409,
                f"task {record.name} ({record.id}) returned a {record.result_kind or 'json'} "
                "result, not a table: only DataFrame (Parquet) results have a preview; "
                "GET tasks/{id}/result returns this one",
                reason="Conflict",
            )
        with self._open(record, Path(path)) as handle:
            try:
                table = await self.call(preview, handle, rows)
            except (OSError, ValueError) as exc:  # pyarrow: not Parquet, truncated
                raise web.HTTPError(
                    422,
                    f"the result file of task {record.id} ({path}) cannot be read as "
                    f"Parquet: {exc}",
                    reason="Unprocessable Entity",
                ) from None
        self.reply(table)


class RerunHandler(Base):
    """``tasks/{id}/rerun``: start a finished task again, in the kernel that ran it."""

    @guarded
    async def post(self, job_id: str) -> None:
        record = await self.record(job_id)
        if not record.finished:
            raise web.HTTPError(
                409,
                f"task {record.name} ({record.id}) is {record.status.value}: wait for it to "
                "finish (or cancel it) before re-running it",
                reason="Conflict",
            )
        try:
            started = await rerun_in_kernel(self.serverapp.kernel_manager, record)
        except CannotRerun as exc:
            raise web.HTTPError(409, str(exc), reason="Conflict") from None
        self.reply({"rerun_of": record.id, **started}, status=202)


class RetryHandler(Base):
    """``tasks/{id}/retry``: run a finished task again as a new task (``retry_of`` it,
    resuming from its last checkpoint): ``rnb.retry(id)`` in its kernel while that runs
    here, else a server task from its stored body. The server never runs task code."""

    @guarded
    async def post(self, job_id: str) -> None:
        record = await self.record(job_id)
        try:
            _retry.check_finished(record)
        except TaskStateError as exc:
            raise web.HTTPError(409, str(exc), reason="Conflict") from None
        kernels = self.serverapp.kernel_manager
        if record.executor != "server" and kernel_alive(kernels, record):
            try:
                started = await retry_in_kernel(kernels, record)
            except CannotRerun as exc:
                raise web.HTTPError(409, str(exc), reason="Conflict") from None
            self.reply({"retry_of": record.id, "ran_in": "kernel", **started}, status=202)
            return
        new = await self.call(self._on_server, record)
        self.reply(
            {"retry_of": record.id, "ran_in": "server", "id": new.id, "kernel_id": None,
             "queued": False, "task": new.to_json()},
            status=202,
        )  # fmt: skip

    def _on_server(self, record: TaskRecord) -> TaskRecord:
        """Start ``record`` again as a server task from its stored body (its kernel is
        gone); 409 saying why when no body was stored."""
        results = self.service.results_dir
        stored = _retry.load_body(results, record.id)
        if stored is None:
            where = f"kernel {record.kernel_id}" if record.kernel_id else "the process that ran it"
            raise web.HTTPError(
                409,
                f"task {record.name} ({record.id}) cannot be retried here: {where} is not "
                "running on this Jupyter server, and its code was not stored (only "
                "process, Dask and server tasks store it); open its notebook and call "
                f"rnb.retry({record.id!r}) in a kernel that has the task registered or "
                "can import it",
                reason="Conflict",
            )
        options = _retry.new_options(record).to_json(everything=True)
        options["executor"] = "server"
        spec = ServerTask(
            str(uuid.uuid4()), record.name, record.task, record.args, stored.python,
            stored.cwd, stored.sys_path, record.notebook, time.time(), {}, options,
        )  # fmt: skip
        workers: ServerWorkers = self.settings["raytha_nb_workers"]
        _retry.write_body(results, spec.id, stored)  # so that the new task can be retried too
        try:
            return workers.submit(spec, stored.payload)
        except ProtocolError as exc:  # its interpreter or directory is gone
            _retry.body_path(results, spec.id).unlink(missing_ok=True)
            raise web.HTTPError(
                409, f"task {record.name} ({record.id}) cannot run again: {exc}",
                reason="Conflict",
            ) from None  # fmt: skip


class NotebookHandler(Base):
    """``tasks/{id}/notebook``: the notebook to open for a task (its contents path), or
    why there is none: a renamed notebook is followed, a deleted one is never replaced
    by a new file that took its name."""

    @guarded
    async def get(self, job_id: str) -> None:
        record = await self.record(job_id)
        # Tasks stored before paths were kept relative hold the kernel's absolute one.
        path = contents_path(record.notebook, self.service.notebook_root)
        if not path:
            raise web.HTTPError(
                404,
                f"task {record.name} ({record.id}) was not started from a notebook "
                "(a script, a terminal or a console), so there is none to open",
                reason="Not Found",
            )
        gone = web.HTTPError(
            410,
            # Short: the panel shows it in a toast. Only renames made in Jupyter are seen.
            f"the notebook {path} was deleted or moved outside Jupyter",
            reason="Gone",
        )
        if os.path.isabs(path):
            root = self.service.notebook_root
            raise web.HTTPError(
                404,
                f"the notebook {path} is outside this Jupyter server's root directory "
                f"{root}, so it cannot be opened here",
                reason="Not Found",
            )
        if await self.call(self.service.notebook_gone, record.id):
            raise gone
        try:
            contents: Any = self.serverapp.contents_manager
            exists = await ensure_async(contents.file_exists(path))
        except web.HTTPError:  # e.g. a path the contents manager refuses (hidden, outside)
            exists = False
        if not exists:
            raise gone
        self.reply({"id": record.id, "path": path, "kernel_id": record.kernel_id})


def _completed(record: TaskRecord) -> TaskRecord:
    """The record if the task completed (so has a result); else a 409 saying why not."""
    if record.status.value != "complete":
        raise web.HTTPError(
            409,
            f"task {record.name} ({record.id}) is {record.status.value}, so it has no "
            "result" + (" yet" if not record.finished else ""),
            reason="Conflict",
        )
    return record


def _is_table(kind: str | None, stored: dict[str, Any]) -> bool:
    """Whether a stored result is a Parquet table (a frame, or a file that is Parquet)."""
    if kind == "parquet":
        return True
    name = str(stored.get("filename") or stored.get("path") or "")
    return kind == "file" and (
        stored.get("media_type") == _MEDIA["parquet"] or name.endswith(".parquet")
    )


def _gone(record: TaskRecord, what: Any) -> web.HTTPError:
    return web.HTTPError(
        404,
        f"the result file of task {record.id} is gone: {what} (deleted by hand or by retention)",
        reason="Not Found",
    )


class StatusHandler(Base):
    """``status``: version, active counts, database path (kernels also get results_dir)."""

    @guarded
    async def get(self) -> None:
        status = await self.call(self.service.status)
        if self.scheme == KERNEL:
            status["results_dir"] = str(self.service.results_dir)
        self.reply(status)


class EventsHandler(Base):
    """``events``: Server-Sent Events (``task``, ``progress``, ``deleted``), a keep-alive."""

    @guarded
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


class PublishHandler(Base):
    """``publish`` (kernels only): a batch of state changes and a heartbeat; the reply
    carries the cancel requests for that kernel's tasks."""

    @guarded
    async def post(self) -> None:
        try:
            message = Publish.from_json(self.json_body())
        except ProtocolError as exc:
            raise bad_request(str(exc)) from None
        cancels, forced = await self.call(self.service.publish, message, self.worker_job)
        self.reply({"cancel": cancels, "force": forced})


class ServerTasksHandler(Base):
    """``server-tasks`` (kernels only): run a task in a worker process the server
    supervises (``executor="server"``); the body is ``{"task": ServerTask, "payload":
    base64 of the cloudpickled body}``."""

    @guarded
    async def post(self) -> None:
        body = self.json_body()
        if not isinstance(body, dict) or not isinstance(body.get("payload"), str):
            raise bad_request("the body must be {'task': {...}, 'payload': '<base64>'}")
        try:
            spec = ServerTask.from_json(body.get("task"))
            spec = _notebook_job.as_contents_task(spec, self.service.notebook_root)
            payload = base64.b64decode(body["payload"], validate=True)
        except ProtocolError as exc:
            raise bad_request(str(exc)) from None
        except ValueError:
            raise bad_request("'payload' is not base64") from None
        workers: ServerWorkers = self.settings["raytha_nb_workers"]
        record = await self.call(workers.submit, spec, payload)
        self.reply({"task": record.to_json()}, status=201)


class NotebookJobsHandler(Base):
    """``notebook-jobs``: run a notebook in a server worker (a notebook job), with
    papermill-style parameters; ``{"path", "parameters"?, "name"?, "options"?}``."""

    FIELDS = ("path", "parameters", "name", "options")

    @guarded
    async def post(self) -> None:
        body = self.json_body()
        if not isinstance(body, dict):
            raise bad_request(
                "the body must be an object such as {'path': 'reports/daily.ipynb', "
                "'parameters': {'day': '2026-12-01'}}"
            )
        unknown = sorted(set(body) - set(self.FIELDS))
        if unknown:
            raise bad_request(
                f"{unknown[0]}: unknown field; a notebook job takes {', '.join(self.FIELDS)}"
            )
        try:
            spec, payload = await self.call(
                _notebook_job.notebook_server_task, body.get("path"), body.get("parameters"),
                name=body.get("name"), options=body.get("options"), root_dir=_root(self),
            )  # fmt: skip
        except NotebookNotFound as exc:
            raise web.HTTPError(404, str(exc), reason="Not Found") from None
        except (ValueError, TypeError) as exc:
            raise bad_request(str(exc)) from None
        workers: ServerWorkers = self.settings["raytha_nb_workers"]
        record = await self.call(workers.submit, spec, payload)
        _retry.store_body(self.service.results_dir, spec.id, payload)  # for Retry
        self.reply(record.to_json(), status=201)


def _root(handler: Base) -> str:
    """The directory contents paths are relative to (the server's root)."""
    return handler.service.notebook_root or os.getcwd()


class NotebookParametersHandler(Base):
    """``notebook-jobs/parameters?path=``: a notebook's kernel and the parameters of its
    ``parameters`` cell, as papermill infers them (for the *Run as job…* form)."""

    @guarded
    async def get(self) -> None:
        path = self.get_query_argument("path", None)
        if not path:
            raise bad_request("path: give the notebook's contents path, e.g. ?path=a/b.ipynb")
        try:
            info = await self.call(_notebook_job.check_notebook, path, root_dir=_root(self),
                                   field="path")  # fmt: skip
            found = await self.call(_notebook_job.notebook_parameters, info)
        except NotebookNotFound as exc:
            raise web.HTTPError(404, str(exc), reason="Not Found") from None
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        except RuntimeError as exc:  # papermill is not installed here: the message says so
            raise web.HTTPError(501, str(exc), reason="Not Implemented") from None
        self.reply({"path": path, "kernel": info.kernel, "parameters": found})


class SnapshotHandler(Base):
    """``snapshot`` (kernels only): Parquet copies of the store's tables, for
    ``rnb.task_store()`` in a kernel, which cannot open the file the server holds."""

    @guarded
    async def post(self) -> None:
        target = await self.call(self.service.snapshot)
        self.reply({"dir": str(target)})


#: The ``{id}`` part of a schedule URL.
SCHEDULE_ID = r"(?P<schedule_id>[^/]+)"


T = TypeVar("T")


def _schedule_id(value: str) -> str:
    """A schedule id is a UUID; anything else is a 400 that says so."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise bad_request(
            f"{value!r} is not a schedule id: ids are UUIDs, as POST schedules returns them"
        ) from None


class _ScheduleBase(Base):
    """What the schedule handlers share: the scheduler and a schedule's 404."""

    @property
    def scheduler(self) -> Scheduler:
        scheduler: Scheduler = self.settings["raytha_nb_scheduler"]
        return scheduler

    def found(self, schedule_id: str, value: T | None) -> T:
        if value is None:
            raise web.HTTPError(
                404, f"no schedule with id {schedule_id!r}", reason="Not Found"
            )  # fmt: skip
        return value


class SchedulesHandler(_ScheduleBase):
    """``schedules``: list them; create one (REST: a notebook path or ``module:function``;
    a kernel also sends a pickled function as ``{"schedule", "task", "payload"}``)."""

    @guarded
    async def get(self) -> None:
        self.reply({"schedules": await self.call(self.scheduler.list_schedules)})

    @guarded
    async def post(self) -> None:
        body = self.json_body()
        template: Any = None
        payload: bytes | None = None
        if self.scheme == KERNEL and isinstance(body, dict) and "schedule" in body:
            template = body.get("task")
            if template is not None:
                if not isinstance(body.get("payload"), str):
                    raise bad_request("'payload' must be the body's cloudpickle bytes, base64")
                try:
                    payload = base64.b64decode(body["payload"], validate=True)
                except ValueError:
                    raise bad_request("'payload' is not base64") from None
            body = body["schedule"]
        try:
            spec = ScheduleSpec.from_json(body)
            if template is None and spec.kind == "function":
                check_ref(spec.task)
            created = await self.call(self.scheduler.create, spec, template, payload)
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        self.reply(created, status=201)


class ScheduleHandler(_ScheduleBase):
    """``schedules/{id}``: one schedule; delete it (its runs stay)."""

    @guarded
    async def get(self, schedule_id: str) -> None:
        sid = _schedule_id(schedule_id)
        self.reply(self.found(sid, await self.call(self.scheduler.get, sid)))

    @guarded
    async def delete(self, schedule_id: str) -> None:
        sid = _schedule_id(schedule_id)
        if not await self.call(self.scheduler.delete, sid):
            self.found(sid, None)
        self.set_status(204)
        self.finish()


class ScheduleActionHandler(_ScheduleBase):
    """``schedules/{id}/pause|resume|trigger``: stop and restart its timer, or run it now."""

    action = "trigger"

    @guarded
    async def post(self, schedule_id: str) -> None:
        sid = _schedule_id(schedule_id)
        action = self.action
        if action == "trigger":
            try:
                data, record = self.found(sid, await self.call(self.scheduler.trigger, sid))
            except ValueError as exc:  # its notebook or interpreter is gone
                raise web.HTTPError(
                    409, f"schedule {sid} cannot run: {exc}", reason="Conflict"
                ) from None
            self.reply({"schedule": data, "task": record.to_json()})
            return
        method = self.scheduler.pause if action == "pause" else self.scheduler.resume
        self.reply(self.found(sid, await self.call(method, sid)))


class PauseScheduleHandler(ScheduleActionHandler):
    action = "pause"


class ResumeScheduleHandler(ScheduleActionHandler):
    action = "resume"


class ScheduleEventsHandler(_ScheduleBase):
    """``schedules/{id}/events``: its latest firings, newest first: each run started
    (and why: due, catch-up, by hand) and each skip (and why)."""

    @guarded
    async def get(self, schedule_id: str) -> None:
        sid = _schedule_id(schedule_id)
        limit = self.int_arg("limit", 100, 1, MAX_LIMIT)
        events = self.found(sid, await self.call(self.scheduler.events, sid, limit))
        self.reply(
            {"events": [
                {**e, "ts": _iso_epoch(e["ts"]), "due": _iso_epoch(e["due"])} for e in events
            ]}
        )  # fmt: skip


def _iso_epoch(ts: float | None) -> str | None:
    return None if ts is None else iso(datetime.fromtimestamp(ts, timezone.utc))


def _attachment(name: str) -> str:
    """``Content-Disposition`` for a download: a plain ASCII name, plus the UTF-8 name
    (RFC 6266 ``filename*``) when it has other characters."""
    plain = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)
    header = f'attachment; filename="{plain}"'
    if plain != name and not name.isascii():
        header += f"; filename*=UTF-8''{quote(name, safe='')}"
    return header


API = "/raytha-nb/api"
KERNEL_API = "/raytha-nb/kernel-api"
_AS_USER: dict[str, Any] = {"scheme": USER}

#: The user API (documented in docs/rest-api.yaml).
handlers: list[tuple[str, type[Base], dict[str, Any]]] = [
    (f"{API}/tasks", TasksHandler, _AS_USER),
    (f"{API}/tasks/{JOB_ID}", TaskHandler, _AS_USER),
    (f"{API}/tasks/{JOB_ID}/cancel", CancelHandler, _AS_USER),
    (f"{API}/tasks/{JOB_ID}/logs", LogsHandler, _AS_USER),
    (f"{API}/tasks/{JOB_ID}/history", HistoryHandler, _AS_USER),
    (f"{API}/tasks/{JOB_ID}/result", ResultHandler, _AS_USER),
    (f"{API}/tasks/{JOB_ID}/result/preview", PreviewHandler, _AS_USER),
    (f"{API}/tasks/{JOB_ID}/rerun", RerunHandler, _AS_USER),
    (f"{API}/tasks/{JOB_ID}/retry", RetryHandler, _AS_USER),
    (f"{API}/tasks/{JOB_ID}/notebook", NotebookHandler, _AS_USER),
    (f"{API}/notebook-jobs", NotebookJobsHandler, _AS_USER),
    (f"{API}/notebook-jobs/parameters", NotebookParametersHandler, _AS_USER),
    (f"{API}/schedules", SchedulesHandler, _AS_USER),
    (f"{API}/schedules/{SCHEDULE_ID}", ScheduleHandler, _AS_USER),
    (f"{API}/schedules/{SCHEDULE_ID}/pause", PauseScheduleHandler, _AS_USER),
    (f"{API}/schedules/{SCHEDULE_ID}/resume", ResumeScheduleHandler, _AS_USER),
    (f"{API}/schedules/{SCHEDULE_ID}/trigger", ScheduleActionHandler, _AS_USER),
    (f"{API}/schedules/{SCHEDULE_ID}/events", ScheduleEventsHandler, _AS_USER),
    (f"{API}/events", EventsHandler, _AS_USER),
    (f"{API}/status", StatusHandler, _AS_USER),
]


def _as_kernel(*methods: str) -> dict[str, Any]:
    return {"scheme": KERNEL, "methods": methods}


#: The kernel API: what a kernel's RemoteBackend calls.
kernel_handlers: list[tuple[str, type[Base], dict[str, Any]]] = [
    (f"{KERNEL_API}/publish", PublishHandler, _as_kernel("POST")),
    (f"{KERNEL_API}/info", StatusHandler, _as_kernel("GET")),
    (f"{KERNEL_API}/snapshot", SnapshotHandler, _as_kernel("POST")),
    (f"{KERNEL_API}/server-tasks", ServerTasksHandler, _as_kernel("POST")),
    (f"{KERNEL_API}/tasks", TasksHandler, _as_kernel("GET")),
    (f"{KERNEL_API}/tasks/{JOB_ID}", TaskHandler, _as_kernel("GET", "DELETE")),
    (f"{KERNEL_API}/tasks/{JOB_ID}/cancel", CancelHandler, _as_kernel("POST")),
    (f"{KERNEL_API}/tasks/{JOB_ID}/logs", LogsHandler, _as_kernel("GET")),
    (f"{KERNEL_API}/tasks/{JOB_ID}/history", HistoryHandler, _as_kernel("GET")),
    (f"{KERNEL_API}/schedules", SchedulesHandler, _as_kernel("GET", "POST")),
    (f"{KERNEL_API}/schedules/{SCHEDULE_ID}", ScheduleHandler, _as_kernel("GET", "DELETE")),
    (f"{KERNEL_API}/schedules/{SCHEDULE_ID}/pause", PauseScheduleHandler, _as_kernel("POST")),
    (f"{KERNEL_API}/schedules/{SCHEDULE_ID}/resume", ResumeScheduleHandler, _as_kernel("POST")),
    (f"{KERNEL_API}/schedules/{SCHEDULE_ID}/trigger", ScheduleActionHandler, _as_kernel("POST")),
]
