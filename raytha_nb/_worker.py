"""What runs inside a worker process of the process executor.

The worker's main thread reads the kernel's messages and runs one task at a time with
the whole task API (a ``LiveTask`` and ``TaskContext`` of its own, output capture, the
tqdm bridge); a sender thread ships the task's progress and log lines, coalesced,
every ``SEND_INTERVAL``. A cancel is a byte of shared memory the kernel sets, read by
``check_cancelled`` (no message to wait for while the task runs).

Messages (tuples over one duplex ``multiprocessing`` connection):
kernel -> worker ``("run", job_id, name, args, body_pickle, results_dir, (attempt,
resume))`` and
``("stop",)``; worker -> kernel ``("progress", job_id, step, percent, info, logs)``
and then one of ``("done", job_id, stored, kind, exact)`` (``exact``: the value
pickled when its JSON form differs from it, else None), ``("error", job_id, type,
message, text, tb)``, ``("cancelled", job_id)``.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import cloudpickle

from . import _results, _tqdm
from ._identity import pid_alive
from ._live import LiveTask
from ._options import mro_names
from .context import TaskContext, _enter, flush_task_output, install_output_capture
from .errors import TaskCancelled
from .model import TaskStatus
from .threads import _PACKAGE, _user_traceback

#: Seconds between progress messages while a task runs (latest wins in between).
SEND_INTERVAL = 0.05
#: Log lines per progress message at most.
LOG_BATCH = 5_000


def send(conn: Connection, message: tuple[Any, ...]) -> None:
    """One message of plain data (str, bytes, JSON values): stdlib pickle, not
    ``Connection.send``'s ForkingPickler, which copies its dispatch table per message."""
    conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def receive(conn: Connection) -> Any:
    """The next message ``send`` sent; EOFError once the other end is gone."""
    return pickle.loads(conn.recv_bytes())  # noqa: S301 - our own processes' messages


class _Worker:
    """The worker process's state: its connection, the task running now."""

    def __init__(self, conn: Connection, flag: Any, kernel: int) -> None:
        self.conn = conn
        self.flag = flag
        self.kernel = kernel
        self.send_lock = threading.Lock()
        self.live: LiveTask | None = None  # the task running now
        self.sent = 0  # its version at the last progress message
        self.sent_checkpoint = 0

    def ship(self) -> None:
        """The sender thread: progress and logs of the running task, coalesced; and the
        end of this worker if its kernel died (its task would otherwise run on)."""
        turns = 0
        while True:
            time.sleep(SEND_INTERVAL)
            turns += 1
            if turns % 20 == 0 and not pid_alive(self.kernel):
                os._exit(1)
            live = self.live
            if live is not None:
                try:
                    self.flush(live)
                except (OSError, ValueError):
                    return

    def flush(self, live: LiveTask) -> None:
        """Send ``live``'s progress and unsent log lines if anything changed."""
        with self.send_lock:  # one flusher at a time keeps the lines in order
            if self.live is not live:
                return  # it ended meanwhile: its last flush was sent with its outcome
            version = live.version
            if version == self.sent and not live.outbox:
                return
            logs = [(stream, text) for _, _, stream, text in live.take_logs(LOG_BATCH)]
            step, pct, info = live.reported()
            checkpoint = None  # (its version, the state) when it changed
            if live.checkpoint_version != self.sent_checkpoint:
                checkpoint = (live.checkpoint_version, live.checkpoint)
                self.sent_checkpoint = live.checkpoint_version
            self.sent = version
            send(self.conn, ("progress", live.id, step, pct, info, logs, checkpoint))

    def run(
        self,
        job_id: str,
        name: str,
        args: Any,
        payload: bytes,
        results_dir: str,
        attempt: tuple[int, Any],
    ) -> None:
        live = _Task(self.flag, job_id, name, name, args, kernel_id=None, notebook=None,
                     pid=os.getpid())  # fmt: skip
        live.attempt, live.resume = attempt  # which attempt, and its checkpoint to resume
        with self.send_lock:
            self.live, self.sent, self.sent_checkpoint = live, live.version, 0
        outcome: tuple[Any, ...]
        try:
            try:
                body = cloudpickle.loads(payload)
                ctx = TaskContext(live, args)
                _enter(ctx)
                value = body(ctx)
            finally:
                flush_task_output()
                _enter(None)
            stored, kind = _results.encode(value, job_id, Path(results_dir))
            outcome = ("done", job_id, stored, kind, _exact(value, stored, kind))
        except TaskCancelled:
            outcome = ("cancelled", job_id)
        except BaseException as exc:  # noqa: BLE001 - the task's failure is its outcome
            outcome = ("error", job_id, *failure(exc))
        self.flush(live)
        with self.send_lock:
            self.live = None
            send(self.conn, outcome)


def _exact(value: Any, stored: Any, kind: str | None) -> bytes | None:
    """``value`` pickled when its JSON form is not the same object (a tuple, a set, a
    NumPy array): the kernel caches it, so ``result()`` there returns what the task
    returned, as for a thread task. None when the JSON form is exact."""
    if kind != "json":
        return None
    try:
        if type(stored) is type(value) and bool(stored == value):
            return None
        return _results.dumps(value)
    except Exception:  # noqa: BLE001 - a value that cannot say: the JSON form only
        return None


class _Task(LiveTask):
    """The worker's live task: ``cancel_requested`` is the flag the kernel sets in
    shared memory, so ``check_cancelled`` sees a cancel at once, with no reader."""

    __slots__ = ("_flag",)

    def __init__(self, flag: Any, *args: Any, **kwargs: Any) -> None:
        self._flag = flag
        super().__init__(*args, **kwargs)

    @property  # type: ignore[override]
    def cancel_requested(self) -> bool:
        return bool(self._flag.value)

    @cancel_requested.setter
    def cancel_requested(self, value: bool) -> None:
        pass  # only the kernel sets it


def failure(exc: BaseException) -> tuple[str, str, str, dict[str, Any] | None, list[str]]:
    """A task's exception as plain data for the kernel: its type's name, message,
    traceback text, the user's frames (tblib) and its classes (for ``retry_on``)."""
    kind = f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins.")
    return kind, str(exc), _user_traceback(exc), _tb_dict(exc), mro_names(exc)


def end_failed(live: LiveTask, sent: Sequence[Any]) -> None:
    """End ``live`` ``error`` with what :func:`failure` made of its exception."""
    error_type, error_message, text, tb, mro = sent
    live.transition(
        TaskStatus.ERROR,
        error_type=error_type,
        error_message=error_message,
        traceback=format_traceback(text, tb),
        error_mro=mro,
    )


def _tb_dict(exc: BaseException) -> dict[str, Any] | None:
    """The user's frames as plain data (tblib), for the kernel to format against its
    own source cache (notebook cells); None for chained errors (the text keeps those)."""
    if exc.__cause__ is not None or (exc.__context__ is not None and not exc.__suppress_context__):
        return None
    only = "".join(traceback.format_exception_only(type(exc), exc))
    try:
        from tblib import Traceback

        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE + os.sep):
            tb = tb.tb_next
        return None if tb is None else {"tb": Traceback(tb).as_dict(), "only": only}
    except Exception:  # noqa: BLE001 - the text form is there anyway
        return None


def format_traceback(text: str, tb: dict[str, Any] | None) -> str:
    """The traceback as the kernel shows it: ``tb``'s frames formatted here, where the
    notebook's cells are in the line cache, with the worker's last (exception) line."""
    if tb is None:
        return text
    try:
        frames, node = [], tb["tb"]
        while node is not None:
            code = node["tb_frame"]["f_code"]
            frames.append((code["co_filename"], node["tb_lineno"], code["co_name"], None))
            node = node["tb_next"]
        # line=None: each frame's source line is looked up here, in the kernel's cache.
        shown = traceback.StackSummary.from_list(frames).format()
    except (KeyError, TypeError):
        return text
    return "Traceback (most recent call last):\n" + "".join(shown) + str(tb["only"])


def main(conn: Connection, flag: Any, kernel: int) -> None:
    """The worker process's entry point: run tasks until the kernel stops it."""
    # The kernel's interrupt (its stop button, and its shutdown) signals its whole process
    # group: it stops the foreground cell, never a background task, here as on threads.
    # A cancel comes as the flag, then a kill.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    install_output_capture()
    _tqdm.install()
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    worker = _Worker(conn, flag, kernel)
    threading.Thread(target=worker.ship, name="raytha-nb-sender", daemon=True).start()
    while True:
        try:
            message = receive(conn)
        except (EOFError, OSError):
            return  # the kernel went away
        if message[0] != "run":
            return
        _, job_id, name, args, payload, results_dir, attempt = message
        worker.run(job_id, name, args, payload, results_dir, attempt)
