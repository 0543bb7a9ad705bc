"""Tasks in terminal IPython (no kernel, no widgets): a tqdm-like bar and end-of-task lines.

A bar is redrawn with ``\\r`` on a TTY while the prompt waits (``%jobs wait``); a task
shown by ``%%background`` gets one line when it starts and one when it ends, printed
above the prompt. prompt_toolkit swaps ``sys.stdout`` for its proxy while the prompt is
shown, so task output is routed over that proxy too (:func:`install`).
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from . import _text
from ._manager import existing_manager
from .context import install_output_capture
from .model import TaskRecord, TaskStatus

#: Seconds between redraws of the bar, and between looks at watched tasks.
_TICK = 0.1

#: One writer at a time: the bar and the end-of-task lines share the terminal line.
_lock = threading.Lock()
#: Whether a bar is drawn on the current line (an end line must clear it first).
_drawn = {"bar": False}


def in_terminal(shell: Any) -> bool:
    """True in an IPython shell that is not a Jupyter kernel (terminal IPython)."""
    return shell is not None and getattr(shell, "kernel", None) is None


def install(shell: Any) -> None:
    """Keep task output in task logs while prompt_toolkit's prompt is shown (idempotent).

    IPython's ``prompt_for_code`` runs the prompt inside ``patch_stdout``, which replaces
    ``sys.stdout``/``sys.stderr`` with a proxy that draws above the prompt; a task's
    print would go there. The prompt call is wrapped so the proxy gets a ``TaskOutput``
    in front of it, and the streams are put back when the prompt returns.
    """
    if _announce_failures not in shell.events.callbacks["post_run_cell"]:
        shell.events.register("post_run_cell", _announce_failures)
    app = getattr(shell, "pt_app", None)
    if app is None or getattr(app, "_raytha_nb_wrapped", False):
        return
    prompt, prompt_async = app.prompt, app.prompt_async

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with _capturing():
            return prompt(*args, **kwargs)

    async def wrapped_async(*args: Any, **kwargs: Any) -> Any:
        with _capturing():
            return await prompt_async(*args, **kwargs)

    app.prompt, app.prompt_async = wrapped, wrapped_async
    app._raytha_nb_wrapped = True


def _announce_failures(_result: Any = None) -> None:
    """After each cell: tasks it started some other way (``rnb.enqueue``, ``rnb.sql``)
    get a line if they fail; a ``%%background`` task is already watched for any end."""
    mgr = existing_manager()  # no tasks yet: do not open a store for nothing
    for live in [] if mgr is None else mgr.unwaited():
        if not live.status.finished:
            watcher.watch(live.id, live.snapshot, failures_only=True)


@contextmanager
def _capturing() -> Iterator[None]:
    saved = sys.stdout, sys.stderr
    install_output_capture()
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def _write(stream: TextIO, text: str) -> None:
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):  # a closed terminal: nothing to tell
        pass


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False


def say(line: str) -> None:
    """Print one line, first clearing a bar drawn on the current line."""
    stream = sys.stdout
    with _lock:
        clear = "\r\x1b[K" if _drawn["bar"] and _is_tty(stream) else ""
        _drawn["bar"] = False
        _write(stream, clear + line + "\n")


def outcome(record: TaskRecord, traceback: bool = False) -> str:
    """The task's summary line, plus its error (and traceback if asked) when it failed."""
    line = _text.summary(record)
    if record.status is TaskStatus.ERROR:
        line += f"\n  {record.error_type}: {record.error_message}"
        if traceback and record.traceback:
            line += "\n" + record.traceback.rstrip()
        elif record.traceback:
            line += f"  (%jobs wait --traceback {record.id[:8]} shows the traceback)"
    return line


@contextmanager
def bar(records: Callable[[], list[TaskRecord]]) -> Iterator[None]:
    """While the body waits, redraw a one-line bar of ``records()`` on a TTY (a thread,
    so Ctrl+C reaches the waiting main thread at once); the line is cleared after."""
    stream = sys.stdout
    if not _is_tty(stream):
        yield
        return
    stop = threading.Event()

    def draw() -> None:
        while not stop.wait(_TICK):
            try:
                shown = records()
            except Exception:  # noqa: BLE001 - a bar must never break the wait
                shown = []
            if not shown:
                continue
            line = _text.summary(shown[0])
            if len(shown) > 1:
                line += f"  (+{len(shown) - 1} more)"
            width = shutil.get_terminal_size().columns - 1
            with _lock:
                _drawn["bar"] = True
                _write(stream, "\r" + line[:width] + "\x1b[K")

    thread = threading.Thread(target=draw, name="raytha-nb-bar", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        with _lock:
            if _drawn["bar"]:
                _write(stream, "\r\x1b[K")
            _drawn["bar"] = False


class _Watcher:
    """Prints one line when a watched task ends; one daemon thread while any is watched."""

    def __init__(self) -> None:
        #: job id -> (how to read it, whether only a failure is worth a line)
        self._jobs: dict[str, tuple[Callable[[], TaskRecord], bool]] = {}
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(
        self, job_id: str, read: Callable[[], TaskRecord], *, failures_only: bool = False
    ) -> None:
        with self._guard:
            if failures_only and job_id in self._jobs:
                return  # already watched for any end
            self._jobs[job_id] = (read, failures_only)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="raytha-nb-terminal", daemon=True
                )
                self._thread.start()

    def claim(self, job_id: str) -> None:
        """Someone else (``%jobs wait``) prints this task's end: do not print it twice."""
        with self._guard:
            self._jobs.pop(job_id, None)

    def _run(self) -> None:
        while True:
            time.sleep(_TICK)
            with self._guard:
                if not self._jobs:
                    self._thread = None
                    return
                watched = list(self._jobs.items())
            for job_id, (read, failures_only) in watched:
                try:
                    record = read()
                except Exception:  # noqa: BLE001 - a forgotten task: stop watching it
                    self.claim(job_id)
                    continue
                if record.finished:
                    with self._guard:
                        if self._jobs.pop(job_id, None) is None:
                            continue  # claimed meanwhile
                    if not failures_only or record.status is TaskStatus.ERROR:
                        say(outcome(record))


watcher = _Watcher()


def show(job_id: str, read: Callable[[], TaskRecord]) -> None:
    """A task in the terminal: its line now, and one more when it ends."""
    record = read()
    if record.finished:
        say(outcome(record))
        return
    say(_text.summary(record))
    watcher.watch(job_id, read)
