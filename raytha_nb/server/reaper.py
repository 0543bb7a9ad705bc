"""Orphan recovery: nothing stays ``processing`` forever.

Two signals: a kernel that stops heartbeating for longer than the timeout (it died,
was killed, or lost contact), and the server's own ``kernel_actions`` events (a
kernel it shut down or restarted; an automatic restart after a crash is a restart
too). Either marks that kernel's active tasks ``interrupted`` with the reason.

The same tick lets the store checkpoint when it has been idle, so a quiet server's
history is in the DuckDB file itself and not only in its write-ahead log.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from typing import Any

from jupyter_events import EventLogger
from jupyter_events.schema_registry import SchemaRegistryException
from jupyter_server import DEFAULT_EVENTS_SCHEMA_PATH
from tornado.ioloop import PeriodicCallback

from .service import TaskService

KERNEL_ACTIONS = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"
_WHY = {
    "shutdown": "was shut down while it ran",
    "restart": "was restarted while it ran (by the user, or after it died)",
}


class Reaper:
    """Runs :meth:`TaskService.reap` and :meth:`Store.checkpoint_if_idle` every
    ``interval`` seconds, and listens to kernels."""

    def __init__(
        self,
        service: TaskService,
        executor: Executor,
        interval: float,
        log: logging.Logger,
        *,
        checkpoint_idle: float | None = None,
    ) -> None:
        self.service = service
        self.executor = executor
        self.log = log
        #: Seconds without writes after which the store checkpoints (None: its default).
        self.checkpoint_idle = checkpoint_idle
        self._periodic = PeriodicCallback(self._tick, interval * 1000)

    def start(self, event_logger: EventLogger | None) -> None:
        self._periodic.start()
        if event_logger is not None:
            try:
                event_logger.register_event_schema(
                    DEFAULT_EVENTS_SCHEMA_PATH / "kernel_actions" / "v1.yaml"
                )
            except SchemaRegistryException:
                pass  # already registered by the server
            event_logger.add_listener(schema_id=KERNEL_ACTIONS, listener=self._kernel_action)

    def stop(self) -> None:
        self._periodic.stop()

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            ids = await loop.run_in_executor(self.executor, self.service.reap)
        except Exception:
            self.log.exception("raytha_nb: orphan sweep failed")
        else:
            if ids:
                self.log.warning("raytha_nb: marked %d orphaned task(s) interrupted", len(ids))
        try:
            # Costs a clock read and a stat unless the store is idle with unsaved writes;
            # a failed checkpoint is logged by the store and retried there.
            await loop.run_in_executor(
                self.executor, self.service.store.checkpoint_if_idle, self.checkpoint_idle
            )
        except Exception:  # e.g. the store closed during server shutdown
            self.log.debug("raytha_nb: idle checkpoint skipped", exc_info=True)

    async def _kernel_action(self, logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        why = _WHY.get(str(data.get("action")))
        kernel_id = data.get("kernel_id")
        if why is None or not kernel_id or data.get("status") != "success":
            return
        try:
            ids = await asyncio.get_running_loop().run_in_executor(
                self.executor, self.service.kernel_gone, kernel_id, why
            )
        except Exception:  # noqa: BLE001 - e.g. the store closed during server shutdown
            self.log.debug("raytha_nb: could not handle %s of %s", data.get("action"), kernel_id)
            return
        if ids:
            self.log.info(
                "raytha_nb: kernel %s %s: %d task(s) interrupted", kernel_id, why, len(ids)
            )
