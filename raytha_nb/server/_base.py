"""What every raytha_nb handler shares: the auth scheme of its route, JSON in and out,
argument checks, and blocking service calls on the store's worker threads.

A resource has one handler class; each route that serves it names its auth scheme
(as jupyter_server_terminals passes per-route ``initialize`` arguments):

* ``user`` (``/raytha-nb/api/...``): Jupyter's authentication, and ``@authorized``
  on the ``raytha_nb`` resource (GET reads, POST/DELETE writes), so a Jupyter
  authorizer can grant or deny the whole API.
* ``kernel`` (``/raytha-nb/kernel-api/...``): only the kernel secret the server gave
  its kernels (``Authorization: token <secret>``). It is not a Jupyter token, so it
  opens none of the user routes, and Jupyter's own token opens none of these. XSRF
  does not apply: a browser cannot add that header cross-site.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import uuid
from collections.abc import Awaitable, Callable, Collection
from concurrent.futures import Executor
from typing import Any, TypeVar

from jupyter_server.auth.decorator import allow_unauthenticated, authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web

from .._identity import worker_token
from ..errors import NotTaskOwner, ProtocolError, StoreDamaged, StoreWriteError, TaskStateError
from ..model import TaskRecord, int_param
from .service import TaskService

T = TypeVar("T")
H = TypeVar("H", bound="Base")

USER, KERNEL = "user", "kernel"
#: The header a server worker names its task with (its secret is made for that task).
WORKER_HEADER = "X-Raytha-Nb-Worker"
#: The ``{id}`` part of a task URL, in every route table.
JOB_ID = r"(?P<job_id>[^/]+)"


def bad_request(message: str) -> web.HTTPError:
    return web.HTTPError(400, message, reason="Bad Request")


def not_found(job_id: str) -> web.HTTPError:
    return web.HTTPError(404, f"no task with id {job_id!r}", reason="Not Found")


def check_id(job_id: str) -> str:
    """A task id is a UUID; anything else is a 400 that says so."""
    try:
        return str(uuid.UUID(job_id))
    except ValueError:
        raise bad_request(
            f"{job_id!r} is not a task id: ids are UUIDs such as "
            "'0f8fad5b-d9cb-469f-a165-70867728950e'"
        ) from None


def offered(handler: type[web.RequestHandler]) -> list[str]:
    """The HTTP methods a handler class serves: those it defines."""
    plain = web.RequestHandler
    return [
        m
        for m in ("GET", "POST", "DELETE")
        if getattr(handler, m.lower()) is not getattr(plain, m.lower())
    ]


def guarded(method: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Apply the route's auth scheme to an HTTP method (see the module docstring)."""
    as_user = web.authenticated(authorized(method))

    # Jupyter's blanket "must be logged in" check is replaced by the scheme's own.
    @allow_unauthenticated
    @functools.wraps(method)
    async def handle(self: Base, *args: Any, **kwargs: Any) -> None:
        if self.scheme == KERNEL:
            await method(self, *args, **kwargs)  # prepare() checked the secret
        else:
            await as_user(self, *args, **kwargs)  # type: ignore[misc]

    return handle


class Base(ExtensionHandlerMixin, APIHandler):
    """One resource; its route chooses the auth scheme and the methods it offers."""

    auth_resource = "raytha_nb"

    def initialize(  # type: ignore[override]
        self, name: str, scheme: str = USER, methods: Collection[str] | None = None
    ) -> None:
        super().initialize(name)
        self.scheme = scheme
        self.methods = None if methods is None else frozenset(methods)

    async def prepare(self) -> None:  # type: ignore[override]
        if self.methods is not None and self.request.method not in self.methods:
            raise web.HTTPError(405)
        await super().prepare()
        #: On kernel routes, the task whose server worker is calling (its own secret).
        self.worker_job: str | None = None
        if self.scheme == KERNEL:
            secret: str = self.settings["raytha_nb_kernel_secret"]
            header = self.request.headers.get("Authorization", "")
            scheme, _, given = header.partition(" ")
            job = self.request.headers.get(WORKER_HEADER)
            if job:  # a server worker: its secret is derived from the task's id
                secret = worker_token(secret, job)
                self.worker_job = job
            if scheme.lower() != "token" or not hmac.compare_digest(given.strip(), secret):
                raise web.HTTPError(
                    403,
                    "the raytha_nb kernel API needs the kernel secret (RAYTHA_NB_TOKEN of a "
                    "kernel the server started); use /raytha-nb/api/ with your Jupyter token "
                    "instead",
                    reason="Forbidden",
                )

    def check_xsrf_cookie(self) -> None:
        if getattr(self, "scheme", USER) == USER:
            super().check_xsrf_cookie()
        # kernel routes: authenticated by a header, never by a cookie: nothing to forge

    @property
    def service(self) -> TaskService:
        service: TaskService = self.settings["raytha_nb_service"]
        return service

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking service call on the store's worker threads; the library's
        errors become the HTTP answers they mean."""
        executor: Executor = self.settings["raytha_nb_executor"]
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(executor, functools.partial(fn, *args, **kwargs))
        except ProtocolError as exc:
            raise bad_request(str(exc)) from None
        except TaskStateError as exc:
            raise web.HTTPError(409, str(exc), reason="Conflict") from None
        except NotTaskOwner as exc:
            raise web.HTTPError(403, str(exc), reason="Forbidden") from None
        except StoreWriteError as exc:  # e.g. a full disk: the kernel keeps its state
            raise web.HTTPError(507, str(exc), reason="Insufficient Storage") from None
        except StoreDamaged as exc:
            raise web.HTTPError(503, str(exc), reason="Service Unavailable") from None
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
            allowed = [m for m in offered(type(self)) if self.methods is None or m in self.methods]
            self.set_header("Allow", ", ".join(allowed))
        super().write_error(status_code, **kwargs)

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, separators=(",", ":")))

    def int_arg(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        try:
            return int_param(name, raw, low, high)
        except ValueError as exc:
            raise bad_request(str(exc)) from None

    def kernel(self) -> tuple[str | None, int | None] | None:
        """On kernel routes, the calling kernel as its client names itself (kernel id,
        PID); None on user routes."""
        if self.scheme != KERNEL:
            return None
        pid = self.request.headers.get("X-Raytha-Nb-Pid", "")
        return self.request.headers.get("X-Raytha-Nb-Kernel") or None, (
            int(pid) if pid.isdigit() else None
        )

    async def record(self, job_id: str) -> TaskRecord:
        job_id = check_id(job_id)
        record = self.service.live(job_id) or await self.call(self.service.get, job_id)
        if record is None:
            raise not_found(job_id)
        return record

    def json_body(self) -> Any:
        try:
            return json.loads(self.request.body or b"null", parse_constant=_no_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad_request(f"the request body is not valid JSON: {exc}") from None
        except RecursionError:
            raise bad_request("the request body is nested too deeply") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")
