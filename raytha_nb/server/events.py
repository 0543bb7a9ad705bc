"""The live stream of task changes: a hub fed from worker threads, read by SSE clients."""

from __future__ import annotations

import asyncio
import json
from typing import Any

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

    @property
    def listening(self) -> bool:
        return bool(self._queues)

    def subscribe(self) -> asyncio.Queue[tuple[str, str] | None]:
        queue: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue(QUEUE_SIZE)
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[tuple[str, str] | None]) -> None:
        self._queues.discard(queue)

    def task(self, record: dict[str, Any]) -> None:
        """A task appeared or its row changed (status, cancel, result): the whole record."""
        self._send("task", record)

    def progress(self, delta: dict[str, Any]) -> None:
        """Only a running task's progress moved: ``id`` and the fields in PROGRESS_FIELDS."""
        self._send("progress", delta)

    def deleted(self, job_id: str) -> None:
        self._send("deleted", {"id": job_id})

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
