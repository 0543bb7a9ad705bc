"""The thread executor: worker threads of this process run queued tasks FIFO, with
cooperative and forced cancel."""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import traceback
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import _results, _tqdm
from ._live import LiveTask
from ._options import mro_names
from .context import TaskContext, _enter, flush_task_output, install_output_capture
from .errors import TaskCancelled
from .executor import Body, Executor
from .model import TaskStatus

log = logging.getLogger("raytha_nb")

#: Most tasks of one ``submit_many`` a worker takes at a time: a map's children run in
#: chunks, one queue lock and one wake-up per chunk instead of per task.
CHUNK = 64


class _Worker:
    __slots__ = ("forced", "job", "label", "lock", "rest", "thread")

    def __init__(self, thread: threading.Thread) -> None:
        self.thread = thread
        self.label = f"thread {thread.name}"
        self.job: LiveTask | None = None
        #: Guards ``job`` and ``forced`` against a forced cancel (one per worker: the
        #: workers never wait for each other).
        self.lock = threading.Lock()
        #: A forced cancel was raised in it for its job (and may be undelivered).
        self.forced = False
        #: The rest of the chunk it is running (drop_pending takes them too).
        self.rest: deque[tuple[LiveTask, Body]] = deque()


class ThreadExecutor(Executor):
    """A FIFO of tasks (in chunks: one, or up to ``CHUNK`` of a ``submit_many``) and
    ``workers`` threads running them.

    A task that never checks for cancellation gets ``TaskCancelled`` raised inside its
    thread after ``grace`` seconds (``PyThreadState_SetAsyncExc``). That lands between
    Python bytecodes, so a blocking C call (a socket read, a long NumPy or DuckDB call)
    finishes before the task stops.
    """

    def __init__(
        self,
        workers: int,
        results_dir: Callable[[], Path],
        values: _results.ValueCache,
        grace: float = 1.0,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.size = workers
        self.grace = grace
        self._results_dir = results_dir
        self._values = values
        self._pending: deque[list[tuple[LiveTask, Body]]] = deque()
        self._cond = threading.Condition()
        self._workers: list[_Worker] = []
        self._stopping = False
        self._on_cancel = self.cancel  # one bound method for every task (not one each)

    # -- submitting and cancelling ---------------------------------------------
    def submit(self, live: LiveTask, body: Body) -> None:
        with self._cond:
            if self._stopping:
                raise RuntimeError("the task queue is shut down")
            self._pending.append([(live, body)])
            if len(self._workers) < self.size:
                self._start_worker()
            self._cond.notify()

    def submit_many(self, jobs: list[tuple[LiveTask, Body]]) -> None:
        """Queue ``jobs`` in chunks (small enough that every worker gets some)."""
        if not jobs:
            return
        size = max(1, min(CHUNK, len(jobs) // (self.size * 4)))
        chunks = [jobs[i : i + size] for i in range(0, len(jobs), size)]
        with self._cond:
            if self._stopping:
                raise RuntimeError("the task queue is shut down")
            self._pending.extend(chunks)
            while len(self._workers) < min(self.size, len(chunks)):
                self._start_worker()
            self._cond.notify(len(chunks))

    def _start_worker(self) -> None:
        # Only now, in a process that runs tasks: task threads' prints go to their
        # logs and their tqdm bars report to them; other threads are untouched.
        install_output_capture()
        _tqdm.install()
        thread = threading.Thread(
            target=self._loop, name=f"raytha-nb-worker-{len(self._workers) + 1}", daemon=True
        )
        worker = _Worker(thread)
        self._workers.append(worker)
        thread.start()

    def cancel(self, live: LiveTask, force: bool = False) -> None:
        """A running task was asked to stop: force it after the grace period (now with
        ``force``)."""
        if force:
            self._force(live)
            return
        timer = threading.Timer(self.grace, self._force, args=(live,))
        timer.daemon = True
        timer.start()

    def _force(self, live: LiveTask) -> None:
        for worker in list(self._workers):
            with worker.lock:
                if worker.job is live and worker.thread.ident is not None:
                    worker.forced = True
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(
                        ctypes.c_ulong(worker.thread.ident), ctypes.py_object(TaskCancelled)
                    )

    def _leave(self, worker: _Worker) -> None:
        with worker.lock:
            worker.job = None
            if worker.forced and worker.thread.ident is not None:
                # Drop a forced cancel that was raised but not yet delivered (a ctypes
                # call costs more than a no-op task: only when one was raised).
                worker.forced = False
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(worker.thread.ident), None
                )

    # -- the worker loop ----------------------------------------------------------
    def _loop(self) -> None:
        me = next(w for w in self._workers if w.thread is threading.current_thread())
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if not self._pending:
                    return
                me.rest.extend(self._pending.popleft())
            while True:
                try:  # popleft is atomic: a job goes to this loop or drop_pending, once
                    live, body = me.rest.popleft()
                except IndexError:
                    break
                try:
                    self._run(me, live, body)
                except BaseException:
                    log.exception("raytha_nb worker failed while finishing task %s", live.id)

    def _run(self, worker: _Worker, live: LiveTask, body: Body) -> None:
        if live.status is not TaskStatus.ENQUEUED:
            return  # cancelled while it waited
        with worker.lock:
            worker.job = live
        live.worker = live.worker or worker.label
        live.on_cancel = self._on_cancel  # before it runs: a cancel may come at once
        if not live.transition(TaskStatus.PROCESSING):
            self._leave(worker)
            return
        ctx = TaskContext(live, live.args)
        try:
            try:
                _enter(ctx)
                value = body(ctx)
            finally:
                self._leave(worker)
                flush_task_output()
                _enter(None)
        except TaskCancelled:
            live.transition(TaskStatus.CANCELLED, status_info=_cancel_info(live))
            return
        except BaseException as exc:  # noqa: BLE001 - the task's failure is its status
            live.transition(
                TaskStatus.ERROR,
                error_type=f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix(
                    "builtins."
                ),
                error_message=str(exc),
                traceback=_user_traceback(exc),
                error_mro=mro_names(exc),
            )
            return
        self._finish(live, value)

    def _finish(self, live: LiveTask, value: Any) -> None:
        try:
            stored, kind = (None, None)
            if value is not None:  # (no results folder looked up for a no-op's None)
                stored, kind = _results.encode(value, live.id, self._results_dir())
        except Exception as exc:  # noqa: BLE001
            live.transition(
                TaskStatus.ERROR,
                error_type="raytha_nb.ResultNotStored",
                error_message=f"the task finished but its result could not be stored: {exc}",
                traceback="".join(traceback.format_exception(exc)),
            )
            return
        # A ResultFile loads back through decode() (a frame, or the path), not as itself.
        if not isinstance(value, _results.ResultFile):
            self._values.put(live.id, value)
        live.transition(
            TaskStatus.COMPLETE, result=stored, result_kind=kind, percent_complete=100.0
        )

    # -- lifecycle -----------------------------------------------------------------
    def drop_pending(self) -> list[LiveTask]:
        """Remove and return the tasks still waiting for a worker."""
        with self._cond:
            items = [live for chunk in self._pending for live, _ in chunk]
            self._pending.clear()
            for worker in self._workers:
                while worker.rest:
                    try:
                        items.append(worker.rest.popleft()[0])
                    except IndexError:
                        break
            return items

    def running(self) -> list[LiveTask]:
        return [w.job for w in self._workers if w.job is not None]

    def shutdown(self, wait: float = 0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for worker in list(self._workers):
            worker.thread.join(wait)


_PACKAGE = str(Path(__file__).resolve().parent)


def _user_traceback(exc: BaseException) -> str:
    """The traceback from the first frame outside raytha_nb: users see their own code,
    not the worker that called it. A failure wholly inside raytha_nb keeps every frame."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE + os.sep):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))


def _cancel_info(live: LiveTask) -> str:
    return f"cancelled at {live.percent_complete:.0f}%"
