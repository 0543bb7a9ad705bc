"""The live stream of task changes: a hub fed from worker threads, read by SSE clients."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

from ..model import TaskRecord, iso

#: The fields of a ``progress`` event besides ``id``: what a progress-only publish moves.
PROGRESS_FIELDS = ("task_step", "status_info", "percent_complete", "heartbeat_at", "updated_at")
#: Changes buffered per slow client before it is dropped (it reconnects and re-reads).
QUEUE_SIZE = 10_000


class EventHub:
    """Fan-out of ``(event, data)`` pairs to every subscribed asyncio queue.

    ``task``/``deleted`` may be called from any thread; delivery happens on the loop.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queues: set[asyncio.Queue[tuple[str, str] | None]] = set()

    def subscribe(self) -> asyncio.Queue[tuple[str, str] | None]:
        queue: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue(QUEUE_SIZE)
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[tuple[str, str] | None]) -> None:
        self._queues.discard(queue)

    def task(self, record: TaskRecord) -> None:
        """A task appeared or its row changed (status, cancel, result): the whole record."""
        if self._queues:
            self._send("task", record.to_json())

    def progress(self, record: TaskRecord) -> None:
        """Only a running task's progress moved: ``id`` and the fields in PROGRESS_FIELDS."""
        if self._queues:
            delta: dict[str, Any] = {"id": record.id}
            for name in PROGRESS_FIELDS:
                value = getattr(record, name)
                delta[name] = iso(value) if isinstance(value, datetime) else value
            self._send("progress", delta)

    def deleted(self, job_id: str) -> None:
        self._send("deleted", {"id": job_id})

    def schedule(self, data: dict[str, Any]) -> None:
        """A schedule was created or changed (paused, resumed, fired, skipped): its JSON."""
        self._send("schedule", data)

    def schedule_deleted(self, schedule_id: str) -> None:
        self._send("schedule-deleted", {"id": schedule_id})

    def _send(self, event: str, data: Any) -> None:
        if self._queues and not self._loop.is_closed():
            text = json.dumps(data, separators=(",", ":"))
            self._loop.call_soon_threadsafe(self._deliver, (event, text))

    def _deliver(self, item: tuple[str, str] | None) -> None:
        for queue in list(self._queues):
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:  # a stalled client: end its stream, it reconnects
                self._end(queue)

    def close(self) -> None:
        """End every stream (server shutdown)."""
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._close)

    def _close(self) -> None:
        for queue in list(self._queues):
            self._end(queue)

    def _end(self, queue: asyncio.Queue[tuple[str, str] | None]) -> None:
        self._queues.discard(queue)
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)


def sse(event: str, data: str) -> bytes:
    """One Server-Sent Events message."""
    return f"event: {event}\ndata: {data}\n\n".encode()
