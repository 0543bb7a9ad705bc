"""The process executor: a pool of worker processes this kernel owns runs tasks FIFO.

Each worker is a ``forkserver`` child (never a fork of the kernel, which has threads)
with one duplex ``multiprocessing`` Pipe to a *slot thread* here that feeds it tasks and
turns its messages into the task's live state. Bodies travel as cloudpickle bytes, so
notebook functions, lambdas and classes work. Cancel sends a flag the worker's
``check_cancelled`` sees, then kills the process after the grace period (at once with
``force``); a killed or dead worker is replaced by a fresh one for the next task.
"""

from __future__ import annotations

import atexit
import io
import logging
import multiprocessing
import os
import pickle
import selectors
import signal
import threading
import time
import types
import weakref
from collections import ChainMap, deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import cloudpickle

from . import _worker
from ._live import LiveTask
from ._results import ValueCache
from .context import TaskContext
from .errors import NotPicklable
from .executor import Body, Executor
from .model import TaskStatus
from .threads import _cancel_info

log = logging.getLogger("raytha_nb")


#: Worker exit codes that mean it was stopped from outside, and what the task says then:
#: SIGTERM, and 255, which multiprocessing reports when the forkserver (the workers'
#: parent) was stopped, as it cannot learn the worker's own code any more.
_STOPPED = {
    -signal.SIGTERM: "its worker process was stopped (SIGTERM), e.g. by the kernel's shutdown",
    255: "its worker processes were stopped (SIGTERM), e.g. by the kernel's shutdown",
}


class Shipped:
    """A body pickled at enqueue (so that an unpicklable one fails there, not later)."""

    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def __call__(self, ctx: TaskContext) -> Any:
        return cloudpickle.loads(self.payload)(ctx)


def _code_reduce(code: types.CodeType) -> Any:
    """cloudpickle's reduction of a code object, keeping its file name (cloudpickle
    writes ``<dynamic-code>``): tracebacks from workers then name the notebook cell."""
    ctor, args = cloudpickle.cloudpickle._code_reduce(code)
    return ctor, tuple(code.co_filename if a == "<dynamic-code>" else a for a in args)


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
    dispatch_table = ChainMap({types.CodeType: _code_reduce}, cloudpickle.Pickler.dispatch_table)


def dumps(value: Any) -> bytes:
    """``value`` pickled by value where needed (cloudpickle), file names kept."""
    out = io.BytesIO()
    _Pickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return out.getvalue()


def ship(body: Any, what: str) -> Shipped:
    """``body`` as cloudpickle bytes; ``NotPicklable`` naming the part that cannot be."""
    try:
        return Shipped(dumps(body))
    except Exception as exc:  # noqa: BLE001 - any pickling failure is the same answer
        where, value = culprit(body, what)
        raise NotPicklable(where, value, f"{type(exc).__name__}: {exc}") from None


def _picklable(value: Any) -> bool:
    try:
        dumps(value)
    except Exception:  # noqa: BLE001
        return False
    return True


def culprit(value: Any, where: str, depth: int = 4) -> tuple[str, Any]:
    """The innermost part of ``value`` that cannot be pickled, and where it sits: a
    closure variable, a global the function reads, a default, an argument."""
    if depth == 0:
        return where, value
    parts: list[tuple[str, Any]] = []
    if hasattr(value, "func") and hasattr(value, "args"):  # functools.partial
        parts += [(where, value.func)] + [(where, a) for a in value.args]
    code = getattr(value, "__code__", None)
    if code is not None:
        label = getattr(value, "__qualname__", where)
        cells = getattr(value, "__closure__", None) or ()
        for name, cell in zip(code.co_freevars, cells):
            try:
                parts.append((f"{label}: variable {name!r}", cell.cell_contents))
            except ValueError:
                continue
        globs = getattr(value, "__globals__", {})
        for name in _names(code):
            if name in globs:
                parts.append((f"{label}: global {name!r}", globs[name]))
        parts += [(f"{label}: a default", d) for d in getattr(value, "__defaults__", None) or ()]
    elif isinstance(value, dict):
        parts += [(f"{where}[{k!r}]", v) for k, v in value.items()]
    elif isinstance(value, list | tuple):
        parts += [(f"{where}[{i}]", v) for i, v in enumerate(value)]
    for inner_where, inner in parts:
        if inner is not value and not _picklable(inner):
            return culprit(inner, inner_where, depth - 1)
    return where, value


def _names(code: Any) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _names(const)
    return names


class _Slot:
    """One worker process and the kernel thread that feeds it."""

    __slots__ = (
        "conn", "flag", "handed", "job", "killed", "lock", "number", "process", "selector",
        "state", "thread", "wake",
    )  # fmt: skip

    def __init__(self, number: int, lock: threading.Lock) -> None:
        self.number = number
        #: Under the executor's lock: "busy", "idle" (its thread waits for work),
        #: "reserved" (a submit is sending it a task), "handed" (sent: watch it).
        self.state = "busy"
        self.handed: tuple[LiveTask, bool] | None = None  # the task submit sent, and if it did
        self.wake = threading.Condition(lock)
        self.process: BaseProcess | None = None
        self.conn: Connection | None = None
        #: Waits on the connection and the process sentinel: made once per process
        #: (``multiprocessing.connection.wait`` builds a selector per call).
        self.selector: selectors.BaseSelector | None = None
        self.flag: Any = None  # the running task's cancel flag, shared with the worker
        self.job: LiveTask | None = None
        self.killed: LiveTask | None = None  # the task whose cancel killed the process
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None


class ProcessExecutor(Executor):
    """A FIFO of tasks and up to ``workers`` worker processes, started lazily, reused."""

    def __init__(
        self,
        workers: int | None,
        results_dir: Callable[[], Path],
        grace: float = 1.0,
        values: ValueCache | None = None,
    ) -> None:
        workers = workers or os.cpu_count() or 1
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.size = workers
        self.grace = grace
        self._results_dir = results_dir
        self._values = values
        self._pending: deque[tuple[LiveTask, Shipped]] = deque()
        self._lock = threading.Lock()  # the queue, the slots' states; their conditions'
        self._results: str | None = None  # the results folder, once known
        self._slots: list[_Slot] = []
        self._stopping = False
        self._context = multiprocessing.get_context("forkserver")
        # The fork server imports raytha_nb once; each worker is then a cheap fork of it.
        self._context.set_forkserver_preload(["raytha_nb._worker"])
        self._atexit = False

    # -- submitting and cancelling ---------------------------------------------
    def ship(self, body: Body, what: str = "the task") -> Shipped:
        return body if isinstance(body, Shipped) else ship(body, what)

    def submit(self, live: LiveTask, body: Body) -> None:
        """Queue it; or, when a worker is idle and nothing waits, send it there from
        this thread (the slot thread's wake-up is then off the task's path)."""
        shipped = self.ship(body, live.task)
        with self._lock:
            if self._stopping:
                raise RuntimeError("the task queue is shut down")
            idle = [slot for slot in self._slots if slot.state == "idle"]
            direct = next((slot for slot in idle if self._ready(slot)), None)
            if direct is None or self._pending:
                self._pending.append((live, shipped))
                if idle:
                    idle[0].wake.notify()
                if len(self._slots) < self.size:
                    self._start_slot()
                return
            direct.state = "reserved"
        sent = False
        try:
            sent = self._dispatch(direct, live, shipped)
        finally:
            with self._lock:
                direct.handed, direct.state = (live, sent), "handed"
                direct.wake.notify()

    def _ready(self, slot: _Slot) -> bool:
        """Whether a task can be sent to this slot's worker as it is (no spawn needed)."""
        return self._results is not None and _alive(slot)

    def _start_slot(self) -> None:
        if not self._atexit:
            # Registered after multiprocessing's own exit hook, so it runs first and
            # the workers are gone before that hook joins them.
            atexit.register(_shutdown_at_exit, weakref.ref(self))
            self._atexit = True
        slot = _Slot(len(self._slots) + 1, self._lock)
        slot.thread = threading.Thread(
            target=self._loop, args=(slot,), name=f"raytha-nb-process-{slot.number}", daemon=True
        )
        self._slots.append(slot)
        slot.thread.start()

    def cancel(self, live: LiveTask, force: bool = False) -> None:
        """Tell the worker (its ``check_cancelled`` sees it); kill it after the grace
        period, or now with ``force``."""
        for slot in self._slots:
            with slot.lock:
                if slot.job is live and slot.flag is not None:
                    slot.flag.value = 1
        if force:
            self._kill(live)
            return
        timer = threading.Timer(self.grace, self._kill, args=(live,))
        timer.daemon = True
        timer.start()

    def _kill(self, live: LiveTask) -> None:
        for slot in self._slots:
            with slot.lock:
                if slot.job is live and slot.process is not None:
                    slot.killed = live
                    slot.process.kill()

    # -- the slot loop -------------------------------------------------------------
    def _loop(self, slot: _Slot) -> None:
        while True:
            with self._lock:
                slot.state = "idle"
                while slot.state != "handed" and not (
                    slot.state == "idle" and (self._pending or self._stopping)
                ):
                    slot.wake.wait()
                handed, slot.handed = slot.handed, None
                if handed is None and not self._pending:
                    return  # stopping
                if handed is None:
                    live, shipped = self._pending.popleft()
                slot.state = "busy"
            try:
                if handed is None:
                    self._run(slot, live, shipped)
                else:
                    live, sent = handed
                    if sent:
                        self._watch(slot, live)
            except BaseException:
                log.exception("raytha_nb process slot failed while running task %s", live.id)
                self._reap(slot)

    def _spawn(self, slot: _Slot) -> None:
        if _alive(slot):
            return
        self._reap(slot)
        ours, theirs = self._context.Pipe(duplex=True)
        flag = self._context.RawValue("b", 0)
        process = self._context.Process(
            target=_worker.main,
            args=(theirs, flag, os.getpid()),
            name=f"raytha-nb-worker-{slot.number}",
        )
        process.start()
        theirs.close()
        selector = selectors.DefaultSelector()
        selector.register(ours, selectors.EVENT_READ)
        selector.register(process.sentinel, selectors.EVENT_READ)
        slot.process, slot.conn, slot.flag, slot.selector = process, ours, flag, selector

    def _reap(self, slot: _Slot) -> None:
        """Forget the slot's process (killing it if it lives) and its connection."""
        process, conn, selector = slot.process, slot.conn, slot.selector
        slot.process = slot.conn = slot.selector = None
        if selector is not None:
            selector.close()
        if process is not None:
            if process.is_alive():
                process.kill()
            process.join(5)
        if conn is not None:
            conn.close()

    def _run(self, slot: _Slot, live: LiveTask, shipped: Shipped) -> None:
        if live.status is not TaskStatus.ENQUEUED:
            return  # cancelled while it waited
        self._spawn(slot)
        if self._results is None:
            self._results = str(self._results_dir())
        if self._dispatch(slot, live, shipped):
            self._watch(slot, live)

    def _dispatch(self, slot: _Slot, live: LiveTask, shipped: Shipped) -> bool:
        """Mark it processing and send it to the slot's worker; False if it was
        cancelled meanwhile. A worker that died as it was sent is ``_watch``'s to see."""
        assert slot.process is not None and slot.conn is not None
        with slot.lock:
            slot.job, slot.killed = live, None
            slot.flag.value = 0
        live.worker = f"pid {slot.process.pid}"
        live.on_cancel = self.cancel
        if not live.transition(TaskStatus.PROCESSING):
            slot.job = None
            return False
        message = (
            "run", live.id, live.task, live.args, shipped.payload, self._results,
            (live.attempt, live.resume),
        )  # fmt: skip
        try:
            with slot.lock:
                _worker.send(slot.conn, message)
        except (OSError, ValueError):
            pass  # it died as we sent: _watch reports it
        return True

    def _watch(self, slot: _Slot, live: LiveTask) -> None:
        """Apply the worker's messages to ``live`` until its task ends or the worker dies."""
        conn, process, selector = slot.conn, slot.process, slot.selector
        assert conn is not None and process is not None and selector is not None
        while True:
            ready = [key.fileobj for key, _ in selector.select()]
            if conn in ready:
                try:
                    message = _worker.receive(conn)
                except (EOFError, OSError):
                    break
                if self._apply(slot, live, message):
                    return
            elif not conn.poll():
                break
        self._died(slot, live)

    def _apply(self, slot: _Slot, live: LiveTask, message: tuple[Any, ...]) -> bool:
        """One worker message; True once the task ended."""
        kind = message[0]
        if message[1] != live.id:
            return False  # cannot happen (one task at a time); never apply it to another
        if kind == "progress":
            _, _, step, percent, info, logs, checkpoint = message
            for stream, text in logs:
                live.add_log(stream, text)
            live.report(percent, info, step)
            if checkpoint is not None:
                live.set_checkpoint(checkpoint[1])
            return False
        with slot.lock:
            slot.job = None
        if kind == "done":
            stored, result_kind, exact = message[2], message[3], message[4]
            if exact is not None and self._values is not None:
                self._values.put(live.id, _load(exact))
            live.transition(
                TaskStatus.COMPLETE, result=stored, result_kind=result_kind,
                percent_complete=100.0,
            )  # fmt: skip
        elif kind == "cancelled":
            live.transition(TaskStatus.CANCELLED, status_info=_cancel_info(live))
        else:
            _worker.end_failed(live, message[2:])
        return True

    def _died(self, slot: _Slot, live: LiveTask) -> None:
        """The worker ended mid-task: killed for a cancel, or it crashed."""
        process = slot.process
        assert process is not None
        process.join(5)
        with slot.lock:
            slot.job = None
            killed = slot.killed is live
        code = process.exitcode
        self._reap(slot)
        if self._stopping:  # shut down under it: the manager marks it interrupted
            live.transition(TaskStatus.INTERRUPTED, status_info="the kernel stopped while it ran")
            return
        if killed:
            info = f"{_cancel_info(live)} (worker process stopped)"
            live.transition(TaskStatus.CANCELLED, status_info=info)
            return
        if code in _STOPPED:
            # Stopped from outside, not the task's failure: ipykernel's shutdown sends
            # SIGTERM to all its child processes before this kernel's own exit begins.
            live.transition(TaskStatus.INTERRUPTED, status_info=_STOPPED[code])
            return
        reason = "worker process died: " + (
            f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        )
        live.transition(
            TaskStatus.ERROR,
            error_type="raytha_nb.WorkerDied",
            error_message=reason,
            status_info=reason,
        )

    # -- lifecycle -----------------------------------------------------------------
    def drop_pending(self) -> list[LiveTask]:
        with self._lock:
            items = [live for live, _ in self._pending]
            self._pending.clear()
            return items

    def running(self) -> list[LiveTask]:
        return [slot.job for slot in self._slots if slot.job is not None]

    def shutdown(self, wait: float = 0) -> None:
        with self._lock:
            if self._stopping and not self._slots:
                return
            self._stopping = True
            for slot in self._slots:
                slot.wake.notify()
        deadline = time.monotonic() + wait
        for slot in self._slots:
            if slot.conn is not None and slot.job is None:
                try:
                    _worker.send(slot.conn, ("stop",))
                except (OSError, ValueError):
                    pass
        for slot in list(self._slots):
            process = slot.process
            if process is not None:
                process.join(max(0.0, deadline - time.monotonic()))
                if process.is_alive():
                    process.kill()
                    process.join(1)


def _alive(slot: _Slot) -> bool:
    """Whether the slot's worker process lives: its sentinel is not readable (one
    ``epoll_wait`` on the slot's selector; ``is_alive()`` builds a selector per call)."""
    process, selector = slot.process, slot.selector
    if process is None or selector is None:
        return False
    return all(key.fileobj != process.sentinel for key, _ in selector.select(0))


def _load(payload: bytes) -> Any:
    """A value the worker pickled; a class of the notebook's loads as the class itself."""
    try:
        return pickle.loads(payload)  # noqa: S301 - from our own worker process
    except Exception:  # its JSON form is stored anyway
        log.debug("raytha_nb: a result sent by a worker did not load", exc_info=True)
        return None


def _shutdown_at_exit(ref: weakref.ref[ProcessExecutor]) -> None:
    executor = ref()
    if executor is not None:
        executor.shutdown()
