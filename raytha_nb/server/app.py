"""The jupyter-server extension: owns the task store, serves the APIs, reaps orphans.

Configure it in ``jupyter_server_config.py``, e.g.
``c.RaythaNbApp.heartbeat_timeout = 60``.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from tornado import web
from tornado.ioloop import IOLoop, PeriodicCallback
from traitlets import Float, Int, Unicode

from .._identity import (
    ENV_RESULTS,
    ENV_TOKEN,
    ENV_URL,
    STORE_KEY,
    default_db_path,
    runtime_file,
)
from ..errors import StoreLockedError
from ..store import Store
from . import handlers
from ._base import Base, guarded, offered
from ._notebooks import NotebookTracker
from .events import EventHub
from .reaper import Reaper
from .scheduler import Scheduler
from .service import TaskService
from .workers import ServerWorkers


class RaythaNbApp(ExtensionApp):
    """raytha_nb: the shared task store and its REST API."""

    name = "raytha_nb"
    load_other_extensions = True

    db_path = Unicode(
        "",
        help="The DuckDB task store. Default: $RAYTHA_NB_DB, else "
        "<jupyter data dir>/raytha_nb/tasks.duckdb.",
    ).tag(config=True)
    heartbeat_timeout = Float(
        30.0,
        help="Seconds without a heartbeat after which a kernel's running tasks become "
        "'interrupted'. Also how long tasks left running by an earlier server run wait "
        "for their kernel to reconnect.",
    ).tag(config=True)
    reap_interval = Float(
        0.0, help="Seconds between orphan sweeps; 0 means a quarter of the heartbeat timeout."
    ).tag(config=True)
    retention_days = Float(
        30.0,
        help="Delete finished tasks (with logs and result files) older than this; 0 keeps all.",
    ).tag(config=True)
    kernel_secret_file = Unicode(
        "",
        help="File holding the secret kernels use for the kernel API (created 0600 if "
        "missing). Default: beside the database, so kernels that outlive a server restart "
        "can reconnect.",
    ).tag(config=True)
    store_threads = Int(4, help="Worker threads running store queries.").tag(config=True)
    max_server_workers = Int(
        0,
        help="How many executor='server' tasks run at once (each in a worker process); "
        "the rest wait 'enqueued'. 0 means the number of cores.",
    ).tag(config=True)
    server_cancel_grace = Float(
        3.0,
        help="Seconds a cancelled executor='server' task has to stop by itself before its "
        "worker process is killed (rnb.cancel(id, force=True) kills it at once).",
    ).tag(config=True)

    #: Why raytha_nb is off on this server (its store could not be opened), else None.
    unavailable: str | None = None

    def initialize_settings(self) -> None:
        path = Path(self.db_path).expanduser() if self.db_path else default_db_path()
        try:
            self.store = Store(path, recover=False)
        except Exception as exc:  # noqa: BLE001 - any reason is served as the 503's message
            self._switch_off(path, exc)
            return
        loop = IOLoop.current().asyncio_loop  # type: ignore[attr-defined]
        server: Any = self.serverapp
        self.service = TaskService(
            self.store,
            EventHub(loop),
            self.heartbeat_timeout,
            notebook_root=server.contents_manager.root_dir if server else None,
        )
        self.executor = ThreadPoolExecutor(self.store_threads, thread_name_prefix="raytha-nb")
        secret = self._kernel_secret(path)
        self.settings.update(
            raytha_nb_service=self.service,
            raytha_nb_executor=self.executor,
            raytha_nb_kernel_secret=secret,
        )
        self._advertise(secret)
        self.workers = ServerWorkers(
            self.service,
            path.parent / f"{path.stem}-server-tasks",
            secret,
            self.max_server_workers or os.cpu_count() or 1,
            self.server_cancel_grace,
            self.log,
        )
        self.settings.update(raytha_nb_workers=self.workers)
        resumed = self.workers.recover()
        if resumed:
            self.log.info(
                "raytha_nb: %d server task(s) left waiting were queued again", len(resumed)
            )
        self.scheduler = Scheduler(
            self.service,
            self.workers,
            path.parent / f"{path.stem}-schedules",
            self.service.notebook_root or os.getcwd(),
            self.log,
        )
        self.settings.update(raytha_nb_scheduler=self.scheduler)
        self.scheduler.start()  # after recover(): catch-up runs queue behind those
        interval = self.reap_interval or max(0.2, self.heartbeat_timeout / 4)
        self.reaper = Reaper(self.service, self.executor, interval, self.log)
        self.reaper.start(getattr(self.serverapp, "event_logger", None))
        self.notebooks = NotebookTracker(
            self.service, self.executor, server.session_manager.list_sessions, self.log
        )
        self.notebooks.start(getattr(server, "event_logger", None))
        self._retention = PeriodicCallback(self._expire, 3600 * 1000)
        if self.retention_days > 0:
            self._retention.start()
            IOLoop.current().add_callback(self._expire)
        self.log.info(
            "raytha_nb: task store %s, kernel API at %s (heartbeat timeout %gs)",
            self.store.path,
            os.environ[ENV_URL],
            self.heartbeat_timeout,
        )

    def initialize_handlers(self) -> None:
        if self.unavailable is not None:
            # No kernel API: this server advertised none, so no kernel calls it.
            self.handlers.extend(off_handlers(handlers.handlers))
            return
        self.handlers.extend(handlers.handlers)
        self.handlers.extend(handlers.kernel_handlers)

    def _switch_off(self, path: Path, exc: Exception) -> None:
        """Serve on without raytha_nb, but let every user route say why (503): a
        missing extension would look uninstalled (404) to the panel and to scripts."""
        where = (
            "give this server its own store: c.RaythaNbApp.db_path = '/path/to/other.duckdb' "
            "in jupyter_server_config.py, or RAYTHA_NB_DB=/path/to/other.duckdb"
        )
        if isinstance(exc, StoreLockedError):
            holder = f"process {exc.pid}" if exc.pid is not None else "the process holding it"
            why = str(
                StoreLockedError(
                    exc.path,
                    exc.pid,
                    exc.detail,
                    f"Stop {holder} (another Jupyter server, or a notebook or script using "
                    f"raytha_nb without a server) and restart this server, or {where}.",
                )
            )
            self.log.error("raytha_nb is off on this server: %s", why)
        else:
            why = (
                f"The task store {path} could not be opened: {type(exc).__name__}: {exc}. "
                f"Fix that and restart this server, or {where}."
            )
            self.log.exception("raytha_nb is off on this server: %s", why)
        self.unavailable = f"raytha_nb is off on this server. {why}"
        self.settings.update(raytha_nb_unavailable=self.unavailable)

    def _kernel_secret(self, db: Path) -> str:
        """Read or create the kernel secret; stable across restarts of the server."""
        file = Path(self.kernel_secret_file or db.parent / f".{db.stem}.kernel-secret")
        if file.is_file():
            text = file.read_text().strip()
            if text:
                return text
        text = secrets.token_urlsafe(32)
        file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        return text

    def _advertise(self, secret: str) -> None:
        """Tell kernels where the store is: environment (inherited by every kernel the
        server starts) and a runtime file named after this process (the fallback)."""
        server = self.serverapp
        assert server is not None
        url = kernel_url(server.ip, server.port, server.base_url)
        values = {ENV_URL: url, ENV_TOKEN: secret, ENV_RESULTS: str(self.store.results_dir)}
        os.environ.update(values)
        self._advertised = values
        self._runtime_file = runtime_file(os.getpid())
        self._runtime_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._runtime_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            # The store path lets scripts and terminals of this user find this server.
            json.dump({**values, STORE_KEY: str(self.store.path)}, handle)

    async def _expire(self) -> None:
        try:
            deleted = await asyncio.get_running_loop().run_in_executor(
                self.executor, self.service.delete_finished, self.retention_days * 86400
            )
        except Exception:
            self.log.exception("raytha_nb: retention sweep failed")
            return
        if deleted:
            self.log.info(
                "raytha_nb: deleted %d task(s) finished over %g days ago",
                deleted,
                self.retention_days,
            )

    async def stop_extension(self) -> None:
        """The server is stopping: its kernels stop with it, so their tasks end now.

        Never raises: jupyter_server stops its event loop only after every extension
        stopped, so an error here would keep the server running past SIGTERM."""
        if self.unavailable is not None:
            return  # the store never opened: nothing was started
        try:
            await self._shut_down()
        except Exception:
            self.log.exception("raytha_nb: error while stopping (the server stops anyway)")

    async def _shut_down(self) -> None:
        self.scheduler.stop()  # its state is stored: a restart fires on (see misfire)
        self.workers.stop()  # running server tasks carry on and reconnect on restart
        self.reaper.stop()
        self.notebooks.stop()
        self._retention.stop()
        server: Any = self.serverapp
        kernel_ids = list(server.kernel_manager.list_kernel_ids()) if server else []
        try:
            await asyncio.get_running_loop().run_in_executor(
                self.executor,
                self.service.interrupt_kernels,
                kernel_ids,
                "was stopped with the Jupyter server while it ran",
            )
        finally:
            self.service.closed = True  # requests arriving from now on get a 503
            self.executor.shutdown(wait=True)
            self.service.close()
            self._runtime_file.unlink(missing_ok=True)
            for key, value in self._advertised.items():
                if os.environ.get(key) == value:
                    del os.environ[key]


class OffHandler(Base):
    """Any user route while raytha_nb is off on this server: 503 saying why."""

    @guarded
    async def get(self, *args: str, **kwargs: str) -> None:
        raise web.HTTPError(
            503, self.settings["raytha_nb_unavailable"], reason="Service Unavailable"
        )

    post = delete = get


def off_handlers(
    routes: list[tuple[str, type[Base], dict[str, Any]]],
) -> list[tuple[str, type[Base], dict[str, Any]]]:
    """``routes`` served by :class:`OffHandler`, each offering its own resource's
    methods, so that other methods stay a 405."""
    return [
        (pattern, OffHandler, {"methods": offered(resource), **kwargs})
        for pattern, resource, kwargs in routes
    ]


def kernel_url(ip: str, port: int, base_url: str) -> str:
    """The URL kernels on this machine reach the server at: a wildcard or localhost
    server by loopback, an IPv6 address in brackets."""
    local = ("", "0.0.0.0", "localhost", "127.0.0.1")  # noqa: S104 - not a bind
    host = "127.0.0.1" if ip in local else "::1" if ip == "::" else ip
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}{base_url}"
