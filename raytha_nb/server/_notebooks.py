"""Keep each task's notebook path current: renames, moves and deletes through Jupyter.

Two sources: the server's sessions (kernel id -> notebook path; a rename in Lab or
Notebook 7 updates the session of the open notebook), read every second, and the
contents manager's events (``rename`` old -> new, ``delete``), which also reach tasks
whose kernel is gone. What happens to files outside Jupyter (a terminal's ``mv``) is
seen by neither: such a task keeps its path, and *Open* then says the file is gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from jupyter_events import EventLogger
from jupyter_events.schema_registry import SchemaRegistryException
from jupyter_server import DEFAULT_EVENTS_SCHEMA_PATH
from tornado.ioloop import PeriodicCallback

from .service import TaskService

CONTENTS = "https://events.jupyter.org/jupyter_server/contents_service/v1"
#: Seconds between reads of the server's sessions.
SESSIONS_INTERVAL = 1.0


class NotebookTracker:
    """Tells :class:`TaskService` where notebooks went."""

    def __init__(
        self,
        service: TaskService,
        executor: Executor,
        sessions: Callable[[], Any],
        log: logging.Logger,
        interval: float = SESSIONS_INTERVAL,
    ) -> None:
        self.service = service
        self.executor = executor
        #: ``session_manager.list_sessions``: an awaitable list of session models.
        self._sessions = sessions
        self.log = log
        self._last: dict[str, str] | None = None
        self._periodic = PeriodicCallback(self.sync_sessions, interval * 1000)

    def start(self, event_logger: EventLogger | None) -> None:
        self._periodic.start()
        if event_logger is not None:
            try:
                event_logger.register_event_schema(
                    DEFAULT_EVENTS_SCHEMA_PATH / "contents_service" / "v1.yaml"
                )
            except SchemaRegistryException:
                pass  # already registered by the server
            event_logger.add_listener(schema_id=CONTENTS, listener=self._contents_event)

    def stop(self) -> None:
        self._periodic.stop()

    async def sync_sessions(self) -> None:
        """Read the notebook sessions; hand them to the service when they changed."""
        try:
            models = await self._sessions()
        except Exception:  # e.g. during server shutdown
            self.log.debug("raytha_nb: could not list sessions", exc_info=True)
            return
        paths = notebook_paths(models)
        if paths == self._last:
            return
        try:
            await self._run(self.service.follow_sessions, paths)
        except Exception:  # retried on the next tick
            self.log.debug("raytha_nb: could not follow sessions", exc_info=True)
            return
        self._last = paths

    async def _contents_event(self, logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        action, path, source = data.get("action"), data.get("path"), data.get("source_path")
        try:
            if action == "rename" and source and path:
                await self._run(self.service.notebook_renamed, source.strip("/"), path.strip("/"))
                self._last = None  # the sessions are about to follow: compare afresh
            elif action == "delete" and path:
                await self._run(self.service.notebook_deleted, path.strip("/"))
        except Exception:  # e.g. the store closed at shutdown
            self.log.warning(
                "raytha_nb: could not record the %s of %s", action, path, exc_info=True
            )

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)


def notebook_paths(models: list[dict[str, Any]]) -> dict[str, str]:
    """kernel id -> notebook path of the notebook sessions (not consoles or files)."""
    paths: dict[str, str] = {}
    for model in models:
        kernel = model.get("kernel") or {}
        path = model.get("path")
        if model.get("type") == "notebook" and kernel.get("id") and path:
            paths.setdefault(kernel["id"], str(path).strip("/"))
    return paths
