"""Re-running a finished task (``rnb.retry``): find its code here, and keep bodies for it.

A task is re-runnable wherever its code can be found again: a registered name, an
importable function (``TaskOptions.ref``, ``module:qualname``), or the cloudpickled body
that process, Dask and server tasks are shipped as, stored at enqueue beside the results
(``<id>.task.pickle``, 0600; deleted with the task). The new task has the old one's
args and options, ``retry_of`` pointing back, and resumes from its last checkpoint.
"""

from __future__ import annotations

import atexit
import importlib
import os
import pickle
import sys
import threading
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ._options import TaskOptions
from .errors import CannotRetry, TaskStateError
from .model import TaskRecord, TaskStatus
from .registry import registered

#: The stored body of a task: ``<id>.task.pickle`` in the results dir.
SUFFIX = ".task.pickle"
#: Started by the built-in data jobs: their inputs (frames, connections) lived in memory.
DATA_JOBS = frozenset({"export", "sql", "import_csv"})


@dataclass(frozen=True)
class StoredBody:
    """A task's cloudpickled body and where it ran (interpreter, directory, sys.path),
    so that a server worker can run it again after its kernel is gone."""

    payload: bytes
    python: str
    cwd: str
    sys_path: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """How to run a task again: its target (class or function) or its stored body, and
    the new task's options."""

    options: TaskOptions
    target: Any = None
    body: StoredBody | None = None


def reference(target: Any) -> str | None:
    """``module:qualname`` of a function or class importable by that name, else None
    (defined in ``__main__`` (a notebook), or inside a function)."""
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        return None
    return f"{module}:{qualname}"


def body_path(results_dir: Path, job_id: str) -> Path:
    return Path(results_dir) / f"{job_id}{SUFFIX}"


def store_body(results_dir: Path, job_id: str, payload: bytes) -> None:
    """Keep ``payload`` (the task's cloudpickled body) for a later retry, with this
    process's interpreter, directory and ``sys.path``; private to the user (0600).

    Written by a thread of its own, within milliseconds: creating a file costs 0.1 to
    1 ms on a loaded disk, more than the rest of an enqueue."""
    stored = StoredBody(payload, sys.executable, os.getcwd(), tuple(sys.path))
    _writer.put(Path(results_dir), job_id, stored)


class _Writer:
    """Writes stored bodies off the enqueue path, oldest first."""

    def __init__(self) -> None:
        self._queue: deque[tuple[Path, str, StoredBody]] = deque()
        self._wake = threading.Condition()
        self._busy = 0  # queued or being written
        self._thread: threading.Thread | None = None

    def put(self, results_dir: Path, job_id: str, stored: StoredBody) -> None:
        with self._wake:
            self._queue.append((results_dir, job_id, stored))
            self._busy += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="raytha-nb-bodies", daemon=True
                )
                self._thread.start()
            self._wake.notify_all()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every body queued so far is written (at most ``timeout`` s)."""
        with self._wake:
            self._wake.wait_for(lambda: self._busy == 0, timeout)

    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: bool(self._queue))
                results_dir, job_id, stored = self._queue.popleft()
            try:
                write_body(results_dir, job_id, stored)
            except OSError:
                pass  # no body: a retry then says its code was not stored
            finally:
                with self._wake:
                    self._busy -= 1
                    self._wake.notify_all()


_writer = _Writer()


def flush_bodies(timeout: float = 5.0) -> None:
    """Wait until the bodies queued so far are written: at exit, or before a hard one."""
    _writer.flush(timeout)


atexit.register(flush_bodies)


def write_body(results_dir: Path, job_id: str, stored: StoredBody) -> None:
    data = pickle.dumps(
        {"payload": stored.payload, "python": stored.python, "cwd": stored.cwd,
         "sys_path": list(stored.sys_path)},
        protocol=pickle.HIGHEST_PROTOCOL,
    )  # fmt: skip
    path = body_path(results_dir, job_id)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def load_body(results_dir: Path, job_id: str) -> StoredBody | None:
    """The stored body of ``job_id``, or None if none was stored (or it is unreadable)."""
    _writer.flush()  # one this process is still writing
    try:
        raw = body_path(results_dir, job_id).read_bytes()
        data = pickle.loads(raw)  # noqa: S301 - our own file, private to the user
        return StoredBody(
            bytes(data["payload"]), str(data["python"]), str(data["cwd"]),
            tuple(data["sys_path"]),
        )  # fmt: skip
    except (OSError, pickle.UnpicklingError, KeyError, TypeError, EOFError):
        return None


def check_finished(record: TaskRecord) -> None:
    """``TaskStateError`` for a task still active: only a finished one is re-run."""
    if not record.finished:
        raise TaskStateError(
            f"task {record.name} ({record.id}) is {record.status.value}: wait for it to "
            "finish (or cancel it) before retrying it"
        )


def new_options(record: TaskRecord) -> TaskOptions:
    """The old task's options for its re-run: ``retry_of`` it, on the executor it ran
    on, resuming from its last checkpoint unless it completed (that checkpoint is its
    end, so a re-run of a complete task starts afresh)."""
    stored = dict(record.options or {})
    options = TaskOptions.from_json(stored)
    return replace(
        options,
        retry_of=record.id,
        resume=None if record.status is TaskStatus.COMPLETE else record.checkpoint,
        executor=stored.get("executor") or record.executor,
    )


def plan(record: TaskRecord, results_dir: Path | None) -> Plan:
    """How to re-run ``record`` in this process; ``CannotRetry`` saying why not and
    what to do, ``TaskStateError`` for a task still active."""
    check_finished(record)
    options = new_options(record)
    target = registered().get(record.task)
    if target is not None and record.task not in DATA_JOBS:
        return Plan(options, target=target)
    failed = None
    if options.ref:
        try:
            return Plan(options, target=_import(options.ref))
        except (ImportError, AttributeError) as exc:
            failed = f"{type(exc).__name__}: {exc}"
    stored = None if results_dir is None else load_body(results_dir, record.id)
    if stored is not None:
        return Plan(options, body=stored)
    raise CannotRetry(why_not(record, failed))


def why_not(record: TaskRecord, import_error: str | None = None) -> str:
    """Why ``record`` cannot be re-run here, and what to do instead."""
    what = f"task {record.name!r} ({record.id})"
    if import_error is not None:
        ref = (record.options or {}).get("ref")
        return (
            f"{what} ran {ref}, which cannot be imported here ({import_error}), and its "
            "code was not stored; import its module in this kernel (or run it from its "
            "notebook's directory)"
        )
    if record.task == "%%background":
        return (
            f"{what} is a %%background cell that ran on a thread; run the cell again in its "
            "notebook (or POST tasks/{id}/rerun while its kernel runs)"
        )
    if record.task in DATA_JOBS:
        return (
            f"{what} was started by raytha_nb.{record.task}(), whose inputs lived in its "
            "kernel's memory; run that cell again in its notebook"
        )
    where = record.executor or "thread"
    return (
        f"{what} was a function defined in a notebook (or a name not registered here) "
        f"and ran on a {where}: its code is not stored; run it with executor='process' "
        "(its code is then stored) or register it with @rnb.task and run that cell in "
        "this kernel"
    )


def _import(ref: str) -> Any:
    module, _, qualname = ref.partition(":")
    value: Any = importlib.import_module(module)
    for part in qualname.split("."):
        value = getattr(value, part)
    return value
