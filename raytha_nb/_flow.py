"""When a queued task may run: its time (delays, retry back-off), its parents
(continuations), its name's limit; and its timeout once it runs.

The manager hands every new task to :meth:`Flow.start` instead of to its executor.
One thread sleeps until the next due time (a heap of times: a delayed or retried
task's start, a running task's timeout, a deferred checkpoint write) and polls the
state of parents other processes run. A task's ``on_status`` hook tells the flow of
each status change: a retry's ``scheduled`` goes back on the heap, ``processing`` arms
the timeout, an end frees its name's slot and lets its continuations go.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._live import LiveTask
from .executor import Body, Executor
from .model import TERMINAL, TaskRecord, TaskStatus

log = logging.getLogger("raytha_nb")

#: Seconds between looks at parents run by other processes (read from the backend).
REMOTE_POLL = 0.25


@dataclass
class _Held:
    """A task the flow holds until it may go to its executor."""

    live: LiveTask
    runner: Executor
    body: Body
    #: Parents not yet ended (a continuation's; None for the rest: a map has 100,000).
    waiting_for: set[str] | None = None
    counted: bool = False  # holds one of its name's ``limit`` slots


class Flow:
    """Times, continuations and limits of one manager's tasks."""

    def __init__(self, read: Callable[[str], TaskRecord | None], live: Callable[[str], Any]):
        self._read = read  # a task's record from the backend (other processes' tasks)
        self._local = live  # this process's live task by id, or None
        self._lock = threading.Condition()
        self._heap: list[tuple[float, int, str, _Held]] = []
        self._seq = itertools.count()
        self._held: dict[str, _Held] = {}
        self._children: dict[str, set[str]] = defaultdict(set)  # parent -> waiting ids
        self._remote: set[str] = set()  # parents to poll
        self._ready: list[_Held] = []  # waited for parents that had all ended
        self._running: dict[str, int] = defaultdict(int)  # name -> slots taken
        self._queued: dict[str, deque[_Held]] = defaultdict(deque)  # name -> over the limit
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="raytha-nb-flow", daemon=True)
        self._thread.start()

    # -- entry ---------------------------------------------------------------------------
    def start(self, live: LiveTask, runner: Executor, body: Body) -> None:
        """Take a new task: run it now, when due, or when its parents end."""
        held = _Held(live, runner, body)
        live.on_status = self._status
        with self._lock:
            self._held[live.id] = held
            if live.status is TaskStatus.AWAITING:
                self._await(held)
                return
            if live.status is TaskStatus.SCHEDULED:
                self._push(live.scheduled_for or 0.0, "start", held)
                return
        self._release(held)

    def start_many(self, lives: Sequence[LiveTask], runner: Executor, body: Body) -> None:
        """Take many new tasks with one executor and body (a map's children): one lock
        for all, and those that may run now go to the executor in one ``submit_many``."""
        now: list[tuple[LiveTask, Body]] = []
        hook = self._status  # one bound method for all of them
        with self._lock:
            for live in lives:
                if live.status in TERMINAL:  # cancelled with its group before it started
                    continue
                held = _Held(live, runner, body)
                live.on_status = hook
                self._held[live.id] = held
                if live.status is TaskStatus.AWAITING:
                    self._await(held)
                elif live.status is TaskStatus.SCHEDULED:
                    self._push(live.scheduled_for or 0.0, "start", held)
                elif live.status is TaskStatus.ENQUEUED and self._slot(held):
                    now.append((live, body))
        runner.submit_many(now)

    def checkpoint_later(self, live: LiveTask, at: float) -> None:
        """Write ``live``'s row (its latest checkpoint) at ``at`` (epoch seconds)."""
        held = self._held.get(live.id)
        if held is not None:
            with self._lock:
                self._push(at, "checkpoint", held)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._lock.notify()

    def held(self) -> list[LiveTask]:
        """Tasks waiting here (for a time, parents or a slot), not in an executor."""
        with self._lock:  # list(): ends of plain tasks leave _held without the lock
            held = list(self._held.values())
        return [h.live for h in held if not h.counted and not _gone(h.live)]

    # -- continuations -------------------------------------------------------------------
    def _await(self, held: _Held) -> None:
        """Under the lock: wait for the parents that have not ended yet."""
        held.waiting_for = set()
        for parent in held.live.depends_on or ():
            local = self._local(parent)
            if local is not None:
                # Named as its child before its status is read: a plain task's end takes
                # no lock (_status), and looks for children after its status is final.
                self._children[parent].add(held.live.id)
                if local.status not in TERMINAL:
                    held.waiting_for.add(parent)
                    continue
                self._children[parent].discard(held.live.id)
            record = self._read(parent)
            if record is None or not record.finished:
                held.waiting_for.add(parent)
                self._children[parent].add(held.live.id)
                self._remote.add(parent)
        if not held.waiting_for:  # every parent ended already: decide on the flow thread
            self._ready.append(held)
        self._lock.notify()  # the flow thread may be asleep with nothing to poll

    def _parent_ended(self, parent: str) -> list[_Held]:
        """Under the lock: the waiting tasks that no longer wait for anything."""
        ready = []
        for child in self._children.pop(parent, set()):
            held = self._held.get(child)
            if held is None or held.waiting_for is None:
                continue
            held.waiting_for.discard(parent)
            if not held.waiting_for:
                ready.append(held)
        self._remote.discard(parent)
        return ready

    def _go_or_cancel(self, held: _Held) -> None:
        """All parents ended: run (now or when due), or with ``when="success"`` end
        cancelled if one did not complete, naming it."""
        live = held.live
        if live.options.when == "success":
            for parent in live.depends_on or ():
                record = self._read(parent)
                if record is None or record.status is not TaskStatus.COMPLETE:
                    what = "is gone" if record is None else f"ended {record.status.value}"
                    name = parent if record is None else f"{record.name} ({parent})"
                    live.transition(
                        TaskStatus.CANCELLED,
                        only_from=TaskStatus.AWAITING,
                        status_info=f"not run: the task it waits for, {name}, {what}",
                    )
                    return
        due = live.scheduled_for
        if due is not None and due > time.time():
            if live.transition(TaskStatus.SCHEDULED, only_from=TaskStatus.AWAITING):
                with self._lock:
                    self._push(due, "start", held)
            return
        if live.transition(TaskStatus.ENQUEUED, only_from=TaskStatus.AWAITING):
            self._release(held)

    # -- limits and the executor ---------------------------------------------------------
    def _release(self, held: _Held) -> None:
        """To the executor, unless its name's ``limit`` is reached (it then waits here,
        ``enqueued``, for a slot)."""
        with self._lock:
            if not self._slot(held):
                return
        held.runner.submit(held.live, held.body)

    def _slot(self, held: _Held) -> bool:
        """Under the lock: take a slot of its name's ``limit`` for ``held`` (True), or
        queue it for one."""
        live = held.live
        limit = live.options.limit
        if limit is not None:
            if self._running[live.name] >= limit:
                self._queued[live.name].append(held)
                return False
            self._running[live.name] += 1
        held.counted = True
        return True

    def _free(self, held: _Held) -> _Held | None:
        """Under the lock: ``held`` gave its slot back; the next of its name, if any."""
        if not held.counted:
            return None
        held.counted = False
        live = held.live
        if live.options.limit is None:
            return None
        self._running[live.name] -= 1
        queue = self._queued[live.name]
        while queue:
            nxt = queue.popleft()
            if nxt.live.status is TaskStatus.ENQUEUED:
                self._running[live.name] += 1
                nxt.counted = True
                return nxt
        return None

    # -- status changes (from any thread) ------------------------------------------------
    def _status(self, live: LiveTask) -> None:
        held = self._held.get(live.id)
        status = live.status
        if held is None or (status is TaskStatus.PROCESSING and live.options.timeout is None):
            return  # nothing to do: no lock (a map's children pass here by the thousand)
        if (
            status in TERMINAL
            and held.waiting_for is None
            and live.options.limit is None
            and live.id not in self._children
        ):
            # A plain task's end (no limit slot, no parents, no continuation waiting for
            # it): forgotten without the lock, which 4 workers ending 100,000 children
            # would otherwise queue on (_await names a continuation before it reads
            # this task's status, so one is never missed).
            self._held.pop(live.id, None)
            return
        ready: list[_Held] = []
        nxt = None
        with self._lock:
            if status is TaskStatus.PROCESSING and live.options.timeout is not None:
                self._push(time.time() + live.options.timeout, f"timeout {live.attempt}", held)
            elif status is TaskStatus.SCHEDULED and held.counted:  # a retry's wait
                nxt = self._free(held)
                self._push(live.scheduled_for or 0.0, "start", held)
            elif status in TERMINAL:
                nxt = self._free(held)
                del self._held[live.id]
                ready = self._parent_ended(live.id)
                for parent in list(held.waiting_for or ()):  # cancelled while waiting
                    self._children.get(parent, set()).discard(live.id)
        if nxt is not None:
            nxt.runner.submit(nxt.live, nxt.body)
        for child in ready:
            self._go_or_cancel(child)

    # -- the thread ------------------------------------------------------------------------
    def _push(self, at: float, what: str, held: _Held) -> None:
        heapq.heappush(self._heap, (at, next(self._seq), what, held))
        self._lock.notify()

    def _loop(self) -> None:
        next_poll = 0.0
        while True:
            due: list[tuple[str, _Held]] = []
            with self._lock:
                while not self._stopped:
                    now = time.time()
                    if self._ready or (self._heap and self._heap[0][0] <= now):
                        break
                    if self._remote and now >= next_poll:
                        break
                    wait = self._heap[0][0] - now if self._heap else None
                    if self._remote:
                        wait = min(wait or REMOTE_POLL, max(0.0, next_poll - now))
                    self._lock.wait(wait)
                if self._stopped:
                    return
                now = time.time()
                while self._heap and self._heap[0][0] <= now:
                    _, _, what, held = heapq.heappop(self._heap)
                    due.append((what, held))
                remote = set(self._remote) if now >= next_poll else set()
                ready, self._ready = self._ready, []
            for what, held in due:
                try:
                    self._due(what, held)
                except Exception:  # one task's trouble must not stop the flow
                    log.exception("raytha_nb: flow step %s of %s failed", what, held.live.id)
            if remote:
                next_poll = time.time() + REMOTE_POLL
                ready += self._poll(remote)
            for waiting in ready:
                self._go_or_cancel(waiting)

    def _due(self, what: str, held: _Held) -> None:
        live = held.live
        if what == "start":
            if live.transition(TaskStatus.ENQUEUED, only_from=TaskStatus.SCHEDULED):
                self._release(held)
        elif what == "checkpoint":
            live.mark()
        elif what == f"timeout {live.attempt}" and live.status is TaskStatus.PROCESSING:
            live.timed_out = True
            live.request_cancel(force=True)

    def _poll(self, remote: set[str]) -> list[_Held]:
        """Parents other processes run: the children of those that ended, now free."""
        ready: list[_Held] = []
        for parent in remote:
            record = self._read(parent)
            if record is None or record.finished:
                with self._lock:
                    ready += self._parent_ended(parent)
        return ready


def _gone(live: LiveTask) -> bool:
    return live.status in TERMINAL
