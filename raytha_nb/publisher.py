"""The publisher thread: flushes dirty live tasks to the backend in bulk, latest wins.

Every ``interval`` seconds (sooner when a task finishes) it collects the tasks whose
``version`` moved, their new history rows and log lines, and hands them to the backend
as one :class:`~raytha_nb.store.Batch`. Only after the backend accepts a batch is a
task marked flushed; a terminal state is acknowledged (``committed`` set, the task
evicted from memory) only once it is stored. A failed publish keeps everything
dirty and is retried with backoff, so nothing is dropped while the backend is away;
memory is bounded by ``LOG_TAIL`` lines per task (older unsent lines are dropped
first, and the loss is logged).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ._live import LiveTask
from .backend import TaskBackend
from .model import TERMINAL, StoreClosed, TaskStatus
from .store import Batch

log = logging.getLogger("raytha_nb")

#: After a wake-up for a finished task, wait this long to batch more finishes with it.
_COALESCE = 0.01
#: Seconds between two progress samples in a task's history (a new step always samples).
_SAMPLE_EVERY = 1.0


@dataclass
class _Sent:
    live: LiveTask
    version: int
    row_version: int
    events: int
    log_seq: int
    sample: tuple[int, float, str | None]
    sampled_at: float


class Publisher:
    """Owns the flush loop for one manager's live tasks."""

    def __init__(
        self,
        live: dict[str, LiveTask],
        dirty: set[str],
        running: Callable[[], list[LiveTask]],
        backend: TaskBackend,
        on_cancel_requests: Callable[[set[str]], None],
        on_committed: Callable[[LiveTask], None],
        interval: float = 0.2,
        heartbeat: float = 1.0,
    ) -> None:
        self.interval = interval
        self.heartbeat = heartbeat
        self._live = live
        self._dirty = dirty
        self._running = running
        self._backend = backend
        self._on_cancel_requests = on_cancel_requests
        self._on_committed = on_committed
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._flush_lock = threading.Lock()
        self._failures = 0
        self._last_publish = 0.0
        self._thread = threading.Thread(target=self._loop, name="raytha-nb-publisher", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            delay = self.interval if not self._failures else min(5.0, 0.25 * 2**self._failures)
            if self._wake.wait(delay):
                time.sleep(_COALESCE)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - logged in flush; never kill the loop
                pass

    def flush(self) -> bool:
        """Publish everything dirty now; True if the backend accepted it."""
        with self._flush_lock:
            now = time.time()
            batch, sent = self._collect(now)
            # While tasks run, check in every flush: the reply carries cancel requests
            # from other kernels and REST, so they land within ~interval, not ~heartbeat.
            every = self.interval if self._running() else self.heartbeat
            due = now - self._last_publish >= every
            if not batch and not due:
                return True
            try:
                cancels = self._backend.publish(batch)
            except Exception as exc:
                self._dirty.update(item.live.id for item in sent)  # retry them next round
                self._failures += 1
                level = (
                    logging.WARNING
                    if self._failures in (1, 10) or self._failures % 100 == 0
                    else logging.DEBUG
                )
                log.log(
                    level,
                    "raytha_nb: could not store task state (try %d, will retry): %s",
                    self._failures,
                    exc,
                )
                raise
            if self._failures:
                log.warning(
                    "raytha_nb: task store reachable again after %d failed tries", self._failures
                )
            self._failures = 0
            self._last_publish = now
            self._acknowledge(sent)
            if cancels:
                self._on_cancel_requests(cancels)
            return True

    def _collect(self, now: float) -> tuple[Batch, list[_Sent]]:
        # Changed tasks: those flagged dirty plus the running ones (whose progress
        # reports only bump their version). pop() is atomic, so a task flagged again
        # meanwhile stays flagged for the next round.
        candidates: dict[str, LiveTask] = {t.id: t for t in self._running()}
        while self._dirty:
            job_id = self._dirty.pop()
            task = self._live.get(job_id)
            if task is not None:
                candidates[job_id] = task
        batch, sent = Batch(), []
        for live in candidates.values():
            version, row_version = live.version, live.row_version
            if version == live.flushed_version:
                continue
            if row_version != live.flushed_row_version:
                batch.tasks.append(live.row(now))
            else:
                batch.progress.append(live.progress_row(now))
            events = list(live.events)
            batch.events.extend((live.id, *event) for event in events)
            sample = live.reported()
            sampled_at = live.sampled_at
            # History: a progress sample when the step changes, else at most once a second.
            if (
                live.status is TaskStatus.PROCESSING
                and sample != live.sampled
                and (sample[0] != live.sampled[0] or now - sampled_at >= _SAMPLE_EVERY)
            ):
                batch.events.append((live.id, now, "processing", *sample))
                sampled_at = now
            else:
                sample = live.sampled
            logs = live.unflushed_logs()
            if logs and logs[0][0] > live.log_flushed + 1:
                log.warning(
                    "raytha_nb: task %s printed faster than it could be stored; "
                    "log lines %d-%d were dropped",
                    live.id, live.log_flushed + 1, logs[0][0] - 1,
                )  # fmt: skip
            batch.logs.extend((live.id, *line) for line in logs)
            last_seq = logs[-1][0] if logs else live.log_flushed
            sent.append(
                _Sent(live, version, row_version, len(events), last_seq, sample, sampled_at)
            )
        return batch, sent

    def _acknowledge(self, sent: list[_Sent]) -> None:
        for item in sent:
            live = item.live
            for _ in range(item.events):
                live.events.popleft()
            live.log_flushed = item.log_seq
            live.sampled = item.sample
            live.sampled_at = item.sampled_at
            live.flushed_row_version = item.row_version
            live.flushed_version = item.version
            if live.status in TERMINAL and live.version == item.version:
                self._on_committed(live)
                live.set_committed()
                self._live.pop(live.id, None)

    def stop(self, flush: bool = True, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        if flush:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    self.flush()
                    if not any(v.version != v.flushed_version for v in list(self._live.values())):
                        return
                except StoreClosed:
                    # The server is stopping too: it marks this kernel's unfinished tasks
                    # interrupted itself, and no retry within the timeout can succeed.
                    return
                except Exception:  # noqa: BLE001
                    time.sleep(0.1)
