"""What a running task sees: its context, and the thread-aware progress helpers.

``progress``, ``track``, ``check_cancelled`` and ``log`` act on the task running on the
calling thread and do nothing outside a task, so the same code runs in the foreground.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any, TextIO, TypeVar

from ._jsonable import to_jsonable
from ._live import LiveTask
from .errors import TaskCancelled

T = TypeVar("T")
R = TypeVar("R")

_local = threading.local()
_END = object()

#: track() reports about this often (seconds); chunk sizes adapt to hit it.
_TRACK_INTERVAL = 0.05


class TaskContext:
    """Handed to ``execute(job_id, args, ctx)``: report progress, check for cancel, log."""

    __slots__ = ("_live", "args", "report")

    def __init__(self, live: LiveTask, args: Any) -> None:
        self._live = live
        self.args = args
        #: ``report(percent=None, info=None, step=None)``: set percent (0-100),
        #: status_info and task_step. Bound straight to the live state so a call per
        #: row costs one Python call and no lock.
        self.report = live.report

    @property
    def job_id(self) -> str:
        return self._live.id

    @property
    def name(self) -> str:
        return self._live.name

    @property
    def task(self) -> str:
        """What the task runs, as stored: a function's label, a notebook job's path."""
        return self._live.task

    @property
    def cancelled(self) -> bool:
        return self._live.cancel_requested

    def check_cancelled(self) -> None:
        """Raise :class:`TaskCancelled` if someone asked to cancel this task."""
        if self._live.cancel_requested:
            raise TaskCancelled(self._live.id)

    @property
    def resume(self) -> Any:
        """The last ``checkpoint()`` of an earlier attempt of this task, or of the task
        it re-runs (``rnb.retry``); None when it starts from scratch."""
        return self._live.resume

    @property
    def attempt(self) -> int:
        """Which attempt this is, from 1 (``retries=`` allows more)."""
        return self._live.attempt

    def checkpoint(self, state: Any) -> None:
        """Store ``state`` (small, JSON-serialisable) with the task, durably: a retry
        or re-run finds it in ``resume``. Call it as often as you like: the latest wins,
        and the store is written at most once a second."""
        self._live.set_checkpoint(to_jsonable(state))

    def log(self, text: str, stream: str = "log") -> None:
        """Add a line to the task's stored log."""
        for line in str(text).splitlines() or [""]:
            self._live.add_log(stream, line)

    def track(
        self, iterable: Iterable[T], total: int | None = None, info: str | None = None
    ) -> Iterator[T]:
        return _tracked(self._live, iterable, _total(iterable, total), info)

    def bind(self, fn: Callable[..., R]) -> Callable[..., R]:
        """``fn`` made part of this task on whatever thread calls it (a pool the task
        starts): its prints go to this task's log and ``progress``/``track``/
        ``check_cancelled`` act on this task."""

        @functools.wraps(fn)
        def bound(*args: Any, **kwargs: Any) -> R:
            outer = getattr(_local, "ctx", None)
            if outer is self:  # called on the task's own thread: nothing to set or flush
                return fn(*args, **kwargs)
            _local.ctx = self
            try:
                return fn(*args, **kwargs)
            finally:
                flush_task_output()
                _local.ctx = outer

        return bound

    def __repr__(self) -> str:
        return f"<TaskContext {self._live.name} {self._live.id}>"


def current() -> TaskContext | None:
    """The context of the task running on this thread, or None."""
    return getattr(_local, "ctx", None)


def _enter(ctx: TaskContext | None) -> None:
    _local.ctx = ctx


def bind(fn: Callable[..., R]) -> Callable[..., R]:
    """``fn`` bound to the task running on this thread (unchanged outside a task), so
    threads the task starts report and print as part of it::

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(rnb.bind(fetch), urls))
    """
    ctx = getattr(_local, "ctx", None)
    return fn if ctx is None else ctx.bind(fn)


def progress(
    percent: float | None = None, info: str | None = None, step: int | None = None
) -> None:
    """Report progress for the current task (no-op outside a task)."""
    ctx = getattr(_local, "ctx", None)
    if ctx is not None:
        ctx._live.report(percent, info, step)


def check_cancelled() -> None:
    """Raise :class:`TaskCancelled` if the current task was cancelled (no-op outside a task)."""
    ctx = getattr(_local, "ctx", None)
    if ctx is not None and ctx._live.cancel_requested:
        raise TaskCancelled(ctx._live.id)


def log(text: str) -> None:
    """Log a line to the current task (printed normally outside a task)."""
    ctx = getattr(_local, "ctx", None)
    if ctx is None:
        print(text)
    else:
        ctx.log(text)


def track(iterable: Iterable[T], total: int | None = None, info: str | None = None) -> Iterator[T]:
    """Iterate and report percent as you go, like tqdm; also a cancellation point."""
    ctx = getattr(_local, "ctx", None)
    if ctx is None:
        return iter(iterable)
    return _tracked(ctx._live, iterable, _total(iterable, total), info)


def _total(iterable: Iterable[Any], total: int | None) -> int | None:
    if total is not None:
        return total
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None


def _tracked(
    live: LiveTask, iterable: Iterable[T], total: int | None, info: str | None
) -> Iterator[T]:
    """Yield items in chunks through C-level ``islice``; report and check cancel per chunk.

    Per-item work would cost more than tqdm; chunk sizes double or halve so that a
    report happens about every ``_TRACK_INTERVAL`` seconds.
    """
    if total is None:
        yield from _tracked_unsized(live, iterable, info)
        return
    it = iter(iterable)
    done, chunk, last = 0, 1, time.monotonic()
    label = f"{info} " if info else ""
    live.report(0.0, f"{label}0/{total:,}" if info else None)
    while True:
        yield from islice(it, chunk)
        done += chunk
        item = next(it, _END)
        if item is _END:
            break
        if live.cancel_requested:
            raise TaskCancelled(live.id)
        shown = min(done, total)
        live.report(
            shown * 100.0 / total if total else 100.0,
            f"{label}{shown:,}/{total:,}" if info else None,
        )
        chunk, last = _adapt(chunk, last)
        yield item  # type: ignore[misc]
        done += 1
    live.report(100.0, f"{label}{total:,}/{total:,}" if info else None)


def _tracked_unsized(live: LiveTask, iterable: Iterable[T], info: str | None) -> Iterator[T]:
    label = f"{info}: " if info else ""
    done, check, chunk, last = 0, 1, 1, time.monotonic()
    for item in iterable:
        yield item
        done += 1
        if done == check:
            if live.cancel_requested:
                raise TaskCancelled(live.id)
            live.report(None, f"{label}{done:,} items")
            chunk, last = _adapt(chunk, last)
            check = done + chunk
    live.report(None, f"{label}{done:,} items")


def _adapt(chunk: int, last: float) -> tuple[int, float]:
    now = time.monotonic()
    elapsed = now - last
    if elapsed < _TRACK_INTERVAL / 2:
        chunk = min(chunk * 2, 1 << 20)
    elif elapsed > _TRACK_INTERVAL * 2:
        chunk = max(chunk // 2, 1)
    return chunk, now


class TaskOutput:
    """Stands in for sys.stdout/stderr: a task thread's writes go to that task's log.

    Every other thread writes through to the stream it replaced, so output printed by
    a background task never lands in whatever notebook cell happens to be running.
    """

    def __init__(self, stream: TextIO, name: str) -> None:
        self._stream = stream
        self._name = name
        self._partial: dict[int, str] = {}

    def write(self, text: str) -> int:
        ctx = getattr(_local, "ctx", None)
        if ctx is None:
            return self._stream.write(text)
        live = ctx._live
        # Per thread: print() writes the text and the newline separately, and threads
        # bound to one task must not splice their lines together.
        key = threading.get_ident()
        buffered = self._partial.pop(key, "") + text
        *lines, rest = buffered.split("\n")
        for line in lines:
            live.add_log(self._name, line)
        if rest:
            self._partial[key] = rest
        return len(text)

    def flush(self) -> None:
        ctx = getattr(_local, "ctx", None)
        if ctx is None:
            self._stream.flush()
            return
        rest = self._partial.pop(threading.get_ident(), "")
        if rest:
            ctx._live.add_log(self._name, rest)

    def writable(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def install_output_capture() -> None:
    """Route task threads' stdout/stderr to their logs (idempotent)."""
    if not isinstance(sys.stdout, TaskOutput):
        sys.stdout = TaskOutput(sys.stdout, "stdout")  # type: ignore[assignment]
    if not isinstance(sys.stderr, TaskOutput):
        sys.stderr = TaskOutput(sys.stderr, "stderr")  # type: ignore[assignment]


def flush_task_output() -> None:
    """Flush a half-written last line of the current task into its log."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, TaskOutput):
            stream.flush()
