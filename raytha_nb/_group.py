"""Fan-out: ``rnb.map(fn, items)`` as one group task and a child task per item.

The children are ordinary tasks (``group_id`` set, options applied to each) that go
through the manager's flow and executors. A child is a :class:`GroupChild`, whose
``transition`` tells its :class:`Group` of each status change: the group keeps counters
(O(1) per change, no scan) and ends when the last child ends. The group's own task is a
:class:`GroupTask` whose progress and status text are computed from those counters when
read (``reported``), so a child's end costs a few integer updates.

Child ids are derived from the group's: the group's UUID with its last 12 hex digits
replaced by the child's index (the group's own are ``f``\\ s), so any reader can name
a group's children from its id and size without a list of 100,000 ids being stored.
"""

from __future__ import annotations

import functools
import gc
import os
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ._jsonable import to_jsonable
from ._live import LiveTask
from ._options import TaskOptions, defaults
from .errors import ResultUnavailable, TaskFailed, TaskNotFound
from .model import TERMINAL, TaskRecord, TaskStatus
from .registry import BackgroundTask, resolve, task_label

if TYPE_CHECKING:
    from ._manager import TaskManager

#: The ``task`` of a group's own record: how readers (the widget, %jobs) know it.
GROUP_TASK = "raytha_nb.map"
#: ``result_kind`` of a group whose children's results are not all JSON: ``result()``
#: loads them from the children.
GROUP_KIND = "group"

# A child's state as the group counts it.
_WAITING, _RUNNING, _DONE, _FAILED, _CANCELLED = range(5)
_CATEGORY = {
    TaskStatus.ENQUEUED: _WAITING,
    TaskStatus.SCHEDULED: _WAITING,
    TaskStatus.AWAITING: _WAITING,
    TaskStatus.PROCESSING: _RUNNING,
    TaskStatus.COMPLETE: _DONE,
    TaskStatus.ERROR: _FAILED,
    TaskStatus.INTERRUPTED: _FAILED,
    TaskStatus.CANCELLED: _CANCELLED,
}
#: Groups a manager remembers for ``as_completed`` after they left its live tasks.
_KEEP = 64
#: Children started at once (one lock of the flow, one hand-over to the executor);
#: the first slice runs while the next is started.
SLICE = 1024


def group_id() -> str:
    """A new group id: a UUID4 whose last 12 hex digits are ``f`` (no child's index)."""
    return str(uuid.uuid4())[:24] + "ffffffffffff"


def child_id(group: str, index: int) -> str:
    """The id of child ``index`` of ``group``."""
    return f"{group[:24]}{index:012x}"


def parent(job_id: str) -> tuple[str, int] | None:
    """The group id and child index a child's id names (None: not a child's id)."""
    index = job_id[24:]
    if len(job_id) != 36 or index == "f" * 12:
        return None
    try:
        return job_id[:24] + "f" * 12, int(index, 16)
    except ValueError:
        return None


def is_group(record: TaskRecord) -> bool:
    """Whether ``record`` is a group made by ``rnb.map``."""
    return record.task == GROUP_TASK and isinstance(record.args, dict)


def size(record: TaskRecord) -> int:
    """How many children the group ``record`` has."""
    return int(record.args.get("items", 0)) if is_group(record) else 0


def call_item(target: Any, ctx: Any) -> Any:
    """One child's body: ``target(item)`` (module level, so it pickles by reference)."""
    if isinstance(target, type) and issubclass(target, BackgroundTask):
        return target().execute(ctx.job_id, ctx.args, ctx)
    return target(ctx.args)


def items_json(items: Iterable[Any]) -> list[Any]:
    """The items as JSON data; ``NotJsonable`` naming the first bad one's index."""
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise TypeError(
            f"rnb.map() takes an iterable of items (a list, range, ...), not "
            f"{type(items).__name__}: each item becomes one task's argument"
        )
    return [to_jsonable(item, f"items[{i}]") for i, item in enumerate(items)]


class GroupChild(LiveTask):
    """A child task: each status change is counted by its group; its history holds
    its end (and each failed attempt), not every step of 100,000 children."""

    __slots__ = ("group", "index")
    ENDS_ONLY = True

    def __init__(self, group: Group, index: int, *args: Any, **kwargs: Any) -> None:
        self.group = group
        self.index = index
        super().__init__(*args, **kwargs)

    def transition(
        self,
        status: TaskStatus,
        *,
        only_from: TaskStatus | frozenset[TaskStatus] | None = None,
        error_mro: list[str] | None = None,
        **fields: Any,
    ) -> bool:
        changed = super().transition(status, only_from=only_from, error_mro=error_mro, **fields)
        if changed:
            self.group.changed(self)
        return changed


class GroupTask(LiveTask):
    """The group's own task: progress and counts come from its children's counters."""

    __slots__ = ("group",)
    group: Group

    def reported(self) -> tuple[int, float, str | None]:
        group: Group | None = getattr(self, "group", None)
        if group is None or self.status is not TaskStatus.PROCESSING:
            return super().reported()
        return group.ended, group.percent(), group.counts_text()


class Group:
    """The counters, order of ends and outcome of one ``rnb.map``."""

    def __init__(self, live: GroupTask, size: int) -> None:
        self.live = live
        self.size = size
        self.children: list[GroupChild] = []
        self.counts = [size, 0, 0, 0, 0]  # by _WAITING ... _CANCELLED
        self.ended = 0
        self._states = bytearray(size)  # each child's category (0: waiting)
        self._running: set[GroupChild] = set()
        #: Child indices in the order they ended: as_completed's feed.
        self.order: list[int] = []
        self.first_failure: GroupChild | None = None
        #: Children whose status changed, not yet counted; ``_counting`` is held by the
        #: one thread counting them (the others leave theirs queued and go on).
        self._changes: deque[GroupChild] = deque()
        self._counting = threading.Lock()
        self._cond = threading.Condition()
        self._waiters = 0
        live.group = self

    # -- counting: from the children's threads ------------------------------------
    def changed(self, child: GroupChild) -> None:
        """``child`` changed status: queue it to be counted, and count what is queued
        unless another thread already is (it then counts this one too)."""
        self._changes.append(child)  # atomic: no lock for the many workers to queue on
        while self._changes and self._counting.acquire(blocking=False):
            try:
                last = self._count()
            finally:
                self._counting.release()
            # (A change queued while this thread held the lock is seen by the loop's
            # test: the thread that queued it found the lock taken and left it here.)
            if last:
                self.finish()

    def _count(self) -> bool:
        """Under ``_counting``: move each queued child between counters by its current
        status (so changes counted out of order still converge); True when the last
        child's end was counted."""
        ended = self.ended
        changes, states, counts = self._changes, self._states, self.counts
        while changes:
            child = changes.popleft()
            new = _CATEGORY[child.status]
            i = child.index
            old = states[i]
            if old >= _DONE or new == old:
                continue
            states[i] = new
            counts[old] -= 1
            counts[new] += 1
            if new == _RUNNING:
                self._running.add(child)
            elif old == _RUNNING:
                self._running.discard(child)
            if new >= _DONE:
                self.ended += 1
                self.order.append(i)
                if new == _FAILED and self.first_failure is None:
                    self.first_failure = child
        self.live.version += 1  # the publisher sends the group's progress
        if self.ended != ended and self._waiters:
            with self._cond:
                self._cond.notify_all()
        return self.ended == self.size and ended != self.size

    def running(self) -> list[GroupChild]:
        """The children counted as running."""
        return list(self._running)  # (one C call: atomic under the GIL)

    def percent(self) -> float:
        """Ended children count 100 %, running ones what they reported."""
        if not self.size:
            return 100.0
        partial = sum(c.percent_complete for c in self.running())
        return min(100.0, (self.ended * 100.0 + partial) / self.size)

    def counts_text(self) -> str:
        """ "812 done, 3 failed, 4 running, 181 waiting" (zero counts left out)."""
        waiting, running, done, failed, cancelled = self.counts
        parts = [f"{done} done"]
        for count, what in (
            (failed, "failed"),
            (cancelled, "cancelled"),
            (running, "running"),
            (waiting, "waiting"),
        ):
            if count:
                parts.append(f"{count} {what}")
        return ", ".join(parts) + f" of {self.size}"

    # -- the end ---------------------------------------------------------------------
    def finish(self) -> None:
        """Every child ended: the group ends cancelled (if asked to, or a child was),
        error (if any failed) or complete with the children's results in input order."""
        live = self.live
        failed, cancelled = self.counts[_FAILED], self.counts[_CANCELLED]
        info = self.counts_text()
        children, self.children = self.children, []
        if live.cancel_requested:
            live.transition(TaskStatus.CANCELLED, status_info=f"cancelled: {info}")
        elif failed:
            first = self.first_failure
            why = "" if first is None else f"; the first: {_failure(first)}"
            message = f"{failed} of {self.size} tasks failed{why}"
            live.transition(
                TaskStatus.ERROR,
                error_type="raytha_nb.GroupFailed",
                error_message=message,
                traceback=None if first is None else first.traceback,
                status_info=info,
                percent_complete=100.0 * self.ended / max(self.size, 1),
            )
        elif cancelled:
            live.transition(TaskStatus.CANCELLED, status_info=f"children cancelled: {info}")
        else:
            kinds = {c.result_kind for c in children}
            stored: Any
            if kinds <= {None, "json"}:
                stored, kind = [c.result for c in children], "json"
            else:
                stored, kind = {"children": self.size}, GROUP_KIND
            live.transition(
                TaskStatus.COMPLETE,
                result=stored,
                result_kind=kind,
                status_info=info,
                percent_complete=100.0,
            )

    def cancel(self, _live: LiveTask, force: bool) -> None:
        """The group was asked to cancel (its ``on_cancel``): cancel every child."""
        for child in list(self.children):
            if child.status not in TERMINAL:
                child.request_cancel(force)

    # -- as_completed --------------------------------------------------------------------
    def ended_after(self, seen: int, deadline: float | None) -> list[int]:
        """Indices of children that ended after the first ``seen``; waits until there is
        one (or ``deadline``: then an empty list)."""
        with self._cond:
            self._waiters += 1
            try:
                while len(self.order) <= seen:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return []
                    self._cond.wait(left)
                return self.order[seen:]
            finally:
                self._waiters -= 1


def _failure(child: LiveTask) -> str:
    return f"{child.name} ({child.id}) {child.error_type}: {child.error_message}"


class Groups:
    """The groups a manager started, for ``as_completed`` (a bounded memory)."""

    def __init__(self) -> None:
        self._groups: OrderedDict[str, Group] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, group: Group) -> None:
        with self._lock:
            self._groups[group.live.id] = group
            while len(self._groups) > _KEEP:
                self._groups.popitem(last=False)

    def get(self, gid: str) -> Group | None:
        return self._groups.get(gid)


# -- the manager's side ----------------------------------------------------------------
def start_map(
    manager: TaskManager,
    fn: Any,
    items: Iterable[Any],
    name: str | None,
    options: dict[str, Any],
    track: Callable[[LiveTask], None],
) -> str:
    """Create the group and its children and start them; the group's id.
    ``track``: registers a task with the manager and publisher without running it."""
    target = resolve(fn)
    label = fn if isinstance(fn, str) else task_label(target)
    if isinstance(target, type) and not issubclass(target, BackgroundTask):
        raise TypeError(f"rnb.map() takes a function or a BackgroundTask, not the class {label}")
    plain = items_json(items)
    merged = _merged(target, options)
    where = merged.executor or manager.default_executor
    if where == "server":
        raise ValueError(
            "rnb.map() runs its tasks in this kernel: executor='thread', 'process' or "
            "'dask' (for server tasks, enqueue them one by one with executor='server')"
        )
    runner = manager._executor(where)
    body = runner.ship(_bound(target), f"task {label}")  # shipped once for all children
    gid = group_id()
    head = GroupTask(
        gid, name or label, GROUP_TASK, {"task": label, "items": len(plain)},
        kernel_id=manager.kernel_id, notebook=manager._notebook, pid=_pid(),
        executor=where,
    )  # fmt: skip
    group = Group(head, len(plain))
    head.on_cancel = group.cancel
    child_options = replace(merged, group_id=gid)
    kernel, notebook, pid = manager.kernel_id, manager._notebook, _pid()
    children = group.children
    # The cyclic GC would walk every task made so far on each collection: off while the
    # children are made (they are all kept), which makes that loop ~3x faster.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for i, item in enumerate(plain):
            children.append(
                GroupChild(
                    group, i, child_id(gid, i), name or label, label, item, kernel_id=kernel,
                    notebook=notebook, pid=pid, executor=where, options=child_options,
                )
            )  # fmt: skip
        manager._groups.add(group)
        head.transition(TaskStatus.PROCESSING)  # before it is known: a cancel finds it so
        track(head)
        if not children:
            group.finish()
            return gid
        manager._start_group(group, runner, body)
    finally:
        if collecting:
            gc.enable()
    return gid


def _merged(target: Any, options: dict[str, Any]) -> TaskOptions:
    if options.get("after") is not None:
        raise ValueError(
            "rnb.map() takes no after=: to wait for other tasks, enqueue a continuation "
            "with after=<the group's id>"
        )
    return defaults(target).merged(**options)


def _bound(target: Any) -> Any:
    return functools.partial(call_item, target)


def _pid() -> int:
    return os.getpid()


def as_completed(
    manager: TaskManager,
    gid: str,
    timeout: float | None = None,
    return_exceptions: bool = False,
) -> Iterator[tuple[str, Any]]:
    """``(child_id, result)`` for each child of group ``gid`` as it ends (see
    ``rnb.as_completed``)."""
    record = manager.get_task(gid)
    if not is_group(record):
        raise ValueError(
            f"task {record.name} ({gid}) is not a group: as_completed() takes the id that "
            "rnb.map() returned"
        )
    deadline = None if timeout is None else time.monotonic() + timeout
    group = manager._groups.get(gid)
    if group is not None:
        ends = _local_ends(group, deadline)
    else:
        ends = _polled_ends(manager, record, deadline)
    total = size(record)
    seen = 0
    for index in ends:
        seen += 1
        cid = child_id(gid, index)
        try:
            value = manager.result(cid)
        except (TaskFailed, ResultUnavailable) as exc:
            if not return_exceptions:
                raise
            value = exc
        yield cid, value
    if seen < total:
        raise TimeoutError(
            f"{total - seen} of {total} tasks of group {record.name} ({gid}) still "
            f"unfinished after {timeout}s"
        )


def _local_ends(group: Group, deadline: float | None) -> Iterator[int]:
    seen = 0
    while seen < group.size:
        new = group.ended_after(seen, deadline)
        if not new:
            return
        seen += len(new)
        yield from new


def _polled_ends(manager: TaskManager, record: TaskRecord, deadline: float | None) -> Iterator[int]:
    """A group of another process: look at the unfinished children a few times a second."""
    left = set(range(size(record)))
    while left:
        for index in sorted(left):
            try:
                child = manager.get_task(child_id(record.id, index))
            except TaskNotFound:
                continue  # not stored yet
            if child.finished:
                left.discard(index)
                yield index
        if left:
            if deadline is not None and time.monotonic() >= deadline:
                return
            time.sleep(0.25)


def results(manager: TaskManager, record: TaskRecord) -> list[Any]:
    """A complete group's results in input order, loaded from its children."""
    return [manager.result(child_id(record.id, i)) for i in range(size(record))]
