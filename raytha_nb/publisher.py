"""The publisher thread: flushes this process's live tasks to the backend in bulk.

Every ``interval`` seconds (sooner when a task finishes) it collects the tasks whose
``version`` moved since its cursor, their new history rows and log lines, and hands
them to the backend as one :class:`~raytha_nb.protocol.Batch`. It owns all of the
flush bookkeeping (which tasks are dirty, what of each was sent, the log lines it took
from a task until they are stored); tasks only hold state. A cursor moves only after
the backend accepted a batch, and a terminal state is acknowledged
(``LiveTask.set_committed``) only once it is stored. A failed publish keeps everything
and is retried with backoff, so nothing is dropped while the backend is away; a task
that prints faster than the store takes lines waits (``LiveTask.add_log``), which
bounds memory. A finished task stays known for a while (``_RECENT``), so lines its
threads print after it ended are stored too. A map's children are published by their
group instead (:mod:`raytha_nb._feed`) until one needs more than a queued row and an end.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from ._feed import GroupFeed, Handover
from ._feed import Sent as FeedSent
from ._group import parent
from ._live import LiveTask
from .backend import TaskBackend
from .errors import StoreClosed
from .model import TERMINAL, TaskStatus
from .protocol import Batch, HistoryRow, LogRow

if TYPE_CHECKING:
    from ._group import Group

log = logging.getLogger("raytha_nb")

#: After a wake-up for a finished task, wait this long to batch more finishes with it.
_COALESCE = 0.01
#: Seconds between two progress samples in a task's history (a new step always samples).
_SAMPLE_EVERY = 1.0
#: Most log lines of one task in one batch (a loud task's lines go in several).
_LOG_BATCH = 50_000
#: Unsent lines of one task that make the publisher flush before its interval is up.
_LOG_EARLY = 20_000
#: Finished, stored tasks kept so that late log lines of theirs are still stored.
_RECENT = 2_000
#: Seconds between two stored checkpoints of one task (the latest wins meanwhile).
_CHECKPOINT_EVERY = 1.0
#: Finished feeds kept so that late log lines of their children are still stored.
_RECENT_FEEDS = 16
#: A cursor's lines when it holds none.
_NO_LOGS: tuple[tuple[int, float, str, str], ...] = ()


class _Cursor(NamedTuple):
    """What of one task the backend has accepted. A tuple of plain values: cheap to
    make (a flush makes one per task it sends). (The cyclic GC still tracks it: CPython
    untracks only exact tuples of atomic values, not a NamedTuple's.)"""

    version: int = 0
    row_version: int = 0
    history: int = 0  # entries of LiveTask.history sent
    log_seq: int = 0
    sample: tuple[int, float, str | None] = (0, 0.0, None)
    sampled_at: float = 0.0
    #: Lines taken from the task and not yet stored (sent again after a failure).
    logs: tuple[tuple[int, float, str, str], ...] = _NO_LOGS
    checkpoint_version: int = 0
    checkpoint_at: float = 0.0


#: A new task's cursor: nothing accepted yet (shared: a map makes 100,000 new tasks).
_NEW = _Cursor()


class _Sent(NamedTuple):
    """What one flush sends: its tasks and the cursor each moves to if accepted (two
    lists, not a pair per task), and what of each group's feed went."""

    lives: list[LiveTask]
    cursors: list[_Cursor]
    feeds: list[tuple[GroupFeed, FeedSent]]


class Publisher:
    """Owns the flush loop, and the flush state, of one process's live tasks."""

    def __init__(self, backend: TaskBackend, interval: float = 0.2, heartbeat: float = 1.0) -> None:
        self.interval = interval
        self.heartbeat = heartbeat
        self._backend = backend
        self._tasks: dict[str, LiveTask] = {}  # tracked: not yet committed final
        self._cursors: dict[str, _Cursor] = {}
        # Finished and stored: back into _tasks if they log again.
        self._done: OrderedDict[str, tuple[LiveTask, _Cursor]] = OrderedDict()
        self._dirty: set[str] = set()
        self._running: set[str] = set()
        self._active: set[str] = set()  # tracked and not finished: the heartbeat's list
        #: Maps' children, published by their group (raytha_nb/_feed.py), by group id.
        self._feeds: OrderedDict[str, GroupFeed] = OrderedDict()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._flush_lock = threading.Lock()
        self._failures = 0
        #: Why the last publish failed (None once one succeeds): for widgets and status.
        self.last_error: Exception | None = None
        self._last_publish = 0.0
        self._thread = threading.Thread(target=self._loop, name="raytha-nb-publisher", daemon=True)
        self._thread.start()

    # -- tracking -----------------------------------------------------------------
    def track(self, live: LiveTask) -> None:
        """Publish ``live`` from now until its final state is stored."""
        self._cursors[live.id] = _NEW
        self._tasks[live.id] = live
        self._active.add(live.id)
        live.on_change = self._changed
        self._changed(live)

    def track_group(self, group: Group) -> None:
        """Publish a map's children, before any of them starts, through their group."""
        self._feeds[group.live.id] = GroupFeed(group, time.time())

    def _adopt(self, handed: Sequence[Handover]) -> None:
        """Put children a feed hands over on the per-task path, from what is stored."""
        for live, stored in handed:
            self._cursors[live.id] = _NEW if stored is None else _Cursor(*stored)
            self._tasks[live.id] = live
            if live.status not in TERMINAL:
                self._active.add(live.id)
            live.on_change = self._changed
            self._changed(live)

    def _changed(self, live: LiveTask) -> None:
        # Called from the task's threads: set and dict operations are atomic under the GIL.
        if live.status is TaskStatus.PROCESSING:
            self._running.add(live.id)
        elif live.id not in self._tasks:
            done = self._done.pop(live.id, None)  # a finished task logged again
            if done is not None:
                self._cursors[live.id] = done[1]
                self._tasks[live.id] = live
        self._dirty.add(live.id)
        # is_set() first: set() takes the Event's lock, which workers ending a map's
        # children would queue on (the loop clears it before it collects what is dirty).
        if live.status in TERMINAL:
            self._active.discard(live.id)
            if not self._wake.is_set():
                self._wake.set()
        elif len(live.outbox) >= _LOG_EARLY and not self._wake.is_set():
            self._wake.set()

    def stored(self, job_id: str) -> bool:
        """Whether the backend has any state of this task (else asking it is pointless)."""
        cursor = self._cursors.get(job_id)
        if cursor is not None:
            return cursor.version > 0
        child = self._feed_of(job_id)
        return child is None or child[0].queued  # (a map's child: once its group's rows are)

    def pending(self) -> bool:
        """Whether any tracked task has changes or lines the backend has not accepted."""
        if any(feed.pending() for feed in list(self._feeds.values())):
            return True
        for job_id, live in list(self._tasks.items()):
            cursor = self._cursors.get(job_id)
            if cursor is None or live.version != cursor.version or live.outbox or cursor.logs:
                return True
        return False

    # -- the loop -------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            delay = self.interval
            if self._failures:  # back off, with jitter: kernels must not all return at once
                delay = min(5.0, 0.25 * 2**self._failures) * random.uniform(0.75, 1.0)  # noqa: S311
            if self._wake.wait(delay):
                time.sleep(_COALESCE)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - logged in flush; never kill the loop
                pass
            else:
                if not self._running and not self._dirty and not self._feeding():
                    self._idle()

    def _idle(self) -> None:
        """Nothing to publish: let the backend do its housekeeping (the embedded store
        checkpoints once it has been idle a while)."""
        try:
            self._backend.idle()
        except Exception:
            log.debug("raytha_nb: backend housekeeping failed", exc_info=True)

    def flush(self) -> bool:
        """Publish everything dirty now; True if the backend accepted it."""
        with self._flush_lock:
            now = time.time()
            batch, sent = self._collect(now)
            # While tasks run, check in every flush: the reply carries cancel requests
            # from other kernels and REST, so they land within ~interval, not ~heartbeat.
            every = self.interval if self._running or self._feeding() else self.heartbeat
            due = now - self._last_publish >= every
            if not batch and not due:
                return True
            active = self._active_ids() if self._backend.reads_active else []
            try:
                cancels = self._backend.publish(batch, active)
            except Exception as exc:
                self._dirty.update(live.id for live in sent.lives)  # retry them next round
                self._failures += 1
                self.last_error = exc
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
            self.last_error = None
            self._last_publish = now
            self._acknowledge(sent)
            for job_id, force in cancels.items():
                live = self._tasks.get(job_id) or self._child(job_id)
                if live is not None:
                    live.request_cancel(force)
            return True

    def _feed_of(self, job_id: str) -> tuple[GroupFeed, int] | None:
        """The feed publishing the map's child ``job_id``, and its index there."""
        named = parent(job_id)
        feed = None if named is None else self._feeds.get(named[0])
        return None if feed is None or named is None else (feed, named[1])

    def _child(self, job_id: str) -> LiveTask | None:
        """A map's child its group's feed publishes (not on the per-task path)."""
        child = self._feed_of(job_id)
        return None if child is None else child[0].child(child[1])

    def _feeding(self) -> bool:
        """Whether a map's children are still being published by their group."""
        return any(not feed.done for feed in list(self._feeds.values()))

    def _active_ids(self) -> list[str]:
        """This process's unfinished tasks: the tracked ones and the feeds' children."""
        active = set(self._active)
        for feed in list(self._feeds.values()):
            if not feed.done:
                active.update(c.id for c in feed.children if c.status not in TERMINAL)
        return list(active)

    def _collect(self, now: float) -> tuple[Batch, _Sent]:
        batch, sent = Batch(), _Sent([], [], [])
        # Maps' children: those to move to the per-task path first (they are then
        # dirty, so collected below), then their groups' rows.
        for feed in list(self._feeds.values()):
            self._adopt(feed.handovers())
        for feed in list(self._feeds.values()):
            if not feed.done:
                what, handed = feed.collect(batch, now)
                sent.feeds.append((feed, what))
                self._adopt(handed)
        # Changed tasks: those flagged dirty plus the running ones (whose progress
        # reports only bump their version). pop() is atomic, so a task flagged again
        # meanwhile stays flagged for the next round.
        candidates = set(self._running)
        while self._dirty:
            candidates.add(self._dirty.pop())
        lives, cursors, _ = sent
        for job_id in candidates:
            live = self._tasks.get(job_id)
            cursor = self._cursors.get(job_id)
            if live is None or cursor is None:
                self._running.discard(job_id)
                continue
            if live.status is not TaskStatus.PROCESSING:
                self._running.discard(job_id)
            version, row_version = live.version, live.row_version
            pending = live.checkpoint_version != cursor.checkpoint_version
            if version == cursor.version and not live.outbox and not cursor.logs and not pending:
                continue
            # Lines first: taken now, they are the publisher's until stored.
            taken = live.take_logs(_LOG_BATCH - len(cursor.logs))
            if taken:
                cursor = cursor._replace(logs=(*cursor.logs, *taken))
                self._cursors[job_id] = cursor
            if cursor.logs:  # (no generator for the many tasks that print nothing)
                batch.logs.extend(LogRow(live.id, *line) for line in cursor.logs)
            last_seq = cursor.logs[-1][0] if cursor.logs else cursor.log_seq
            if live.committed or (version == cursor.version and not pending):
                # Only log lines are new (a loud task between reports, or lines printed
                # after the task's final state was stored): no row to rewrite.
                lives.append(live)
                cursors.append(cursor._replace(version=version, log_seq=last_seq, logs=_NO_LOGS))
                continue
            # A checkpoint goes with the whole row, at most once a second (latest wins).
            whole = row_version != cursor.row_version or (
                pending and now - cursor.checkpoint_at >= _CHECKPOINT_EVERY
            )
            if whole:
                batch.tasks.append(live.row(now))
            elif version != cursor.version:
                batch.progress.append(live.progress_row(now))
            checkpoint = live.checkpoint_version if whole else cursor.checkpoint_version
            checkpoint_at = now if whole and pending else cursor.checkpoint_at
            history = live.history[cursor.history :]
            batch.history.extend(history)
            sample, sampled_at = live.reported(), cursor.sampled_at
            # History: a progress sample when the step changes, else at most once a second.
            if (
                live.status is TaskStatus.PROCESSING
                and sample != cursor.sample
                and (sample[0] != cursor.sample[0] or now - sampled_at >= _SAMPLE_EVERY)
            ):
                batch.history.append(HistoryRow(live.id, now, "processing", *sample))
                sampled_at = now
            else:
                sample = cursor.sample
            lives.append(live)
            cursors.append(
                _Cursor(
                    version, row_version, cursor.history + len(history), last_seq, sample,
                    sampled_at, checkpoint_version=checkpoint, checkpoint_at=checkpoint_at,
                )
            )  # fmt: skip
        return batch, sent

    def _acknowledge(self, sent: _Sent) -> None:
        for feed, what in sent.feeds:
            self._adopt(feed.accepted(what))
        self._forget_feeds()
        for live, cursor in zip(sent.lives, sent.cursors):
            self._cursors[live.id] = cursor
            # (The unlocked status check first: most acknowledged tasks are still running.)
            if live.status in TERMINAL and not live.outbox and live.ended_at(cursor.version):
                del self._tasks[live.id]
                del self._cursors[live.id]
                self._running.discard(live.id)
                self._done[live.id] = (live, cursor)
                while len(self._done) > _RECENT:
                    self._done.popitem(last=False)
                live.set_committed()
            if live.outbox:  # a loud task: more lines wait; flush again at once
                self._dirty.add(live.id)
                self._wake.set()

    def _forget_feeds(self) -> None:
        """Keep the last _RECENT_FEEDS finished feeds (for their children's late lines)."""
        finished = [gid for gid, feed in list(self._feeds.items()) if feed.done]
        for gid in finished[: max(0, len(finished) - _RECENT_FEEDS)]:
            del self._feeds[gid]

    def stop(self, flush: bool = True, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        if flush:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    self.flush()
                    if not self.pending():
                        return
                except StoreClosed:
                    # The server is stopping too: it marks this kernel's unfinished tasks
                    # interrupted itself, and no retry within the timeout can succeed.
                    return
                except Exception:  # noqa: BLE001
                    time.sleep(0.1)
