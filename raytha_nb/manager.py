"""TaskManager: enqueue, cancel, read and wait, over live state plus a backend.

Reads answer from the in-memory live state for tasks this process runs (so a status
read never waits for a flush) and from the backend for everything else.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import _results
from ._jsonable import to_jsonable
from ._live import LiveTask
from .backend import TaskBackend, backend_from_env
from .model import ACTIVE, LogLine, TaskNotFound, TaskRecord, TaskStatus
from .publisher import Publisher
from .queue import Body, TaskQueue
from .task import check_signature, make_runner, resolve, task_label

log = logging.getLogger("raytha_nb")

#: Results of this process's tasks kept in memory for result() (older ones reload from disk).
_RESULT_CACHE = 32
#: Final records of this process's recently finished tasks, so reads skip DuckDB.
_RECENT = 2_000


class TaskStateError(RuntimeError):
    """The task is in the wrong state for this operation (e.g. deleting a running task)."""


class TaskFailed(RuntimeError):
    """``result()`` of a task that ended in ``error``; carries the task's traceback."""

    def __init__(self, record: TaskRecord) -> None:
        super().__init__(
            f"task {record.name} ({record.id}) failed with {record.error_type}: "
            f"{record.error_message}\n\n{record.traceback or ''}".rstrip()
        )
        self.record = record


class TaskManager:
    """Runs tasks on worker threads and keeps their state in a backend."""

    def __init__(
        self,
        db: str | Path | None = None,
        *,
        workers: int | None = None,
        flush_interval: float = 0.2,
        cancel_grace: float = 1.0,
        backend: TaskBackend | None = None,
    ) -> None:
        self.backend = backend if backend is not None else backend_from_env(db)
        self._live: dict[str, LiveTask] = {}
        self._dirty: set[str] = set()
        self._values: OrderedDict[str, Any] = OrderedDict()
        self._recent: OrderedDict[str, LiveTask] = OrderedDict()
        self._kernel_id, self._notebook = _kernel_identity()
        size = workers or _env_workers()
        self.queue = TaskQueue(
            size, lambda: self.backend.results_dir, self._finished, grace=cancel_grace
        )
        self.publisher = Publisher(
            self._live,
            self._dirty,
            self.queue.running,
            self.backend,
            self._cancel_requested,
            self._committed,
            interval=flush_interval,
        )
        self._closed = False

    # -- starting tasks ------------------------------------------------------------
    def enqueue(self, task: Any, args: Any = None, *, name: str | None = None) -> str:
        """Queue ``task`` (class, function or registered name) with JSON ``args``; return its id."""
        target = resolve(task)
        plain = to_jsonable(args)
        check_signature(target, plain)
        label = task if isinstance(task, str) else task_label(target)
        return self._submit(lambda ctx: make_runner(target, ctx)(), name or label, label, plain)

    def submit(self, body: Body, *, name: str, task: str, args: Any = None) -> str:
        """Queue ``body(ctx)`` directly: for magics and data jobs whose inputs (a cell's
        code, a DataFrame) live in memory rather than in JSON ``args``."""
        return self._submit(body, name, task, to_jsonable(args))

    def _submit(self, body: Body, name: str, task: str, args: Any) -> str:
        if self._closed:
            raise RuntimeError(
                "this TaskManager is shut down; use raytha_nb.configure() for a new one"
            )
        job_id = str(uuid.uuid4())
        live = LiveTask(
            job_id, name, task, args,
            kernel_id=self._kernel_id, notebook=self._notebook, pid=os.getpid(),
            dirty=self._dirty,
        )  # fmt: skip
        self._live[job_id] = live
        live.mark()  # after it is in _live, where the publisher looks flagged ids up
        self.queue.submit(live, body)
        return job_id

    def _finished(self, live: LiveTask) -> None:
        if live.value is not None:
            self._values[live.id] = live.value
            live.value = None
            while len(self._values) > _RESULT_CACHE:
                self._values.popitem(last=False)
        self.publisher.wake()

    @property
    def kernel_id(self) -> str | None:
        """The Jupyter kernel this process is, when it is one."""
        return self._kernel_id

    def live(self, job_id: str) -> LiveTask | None:
        """The in-memory state of a task this process is running, else None."""
        return self._live.get(job_id)

    def _committed(self, live: LiveTask) -> None:
        self._recent[live.id] = live  # final: snapshot it when someone reads it
        while len(self._recent) > _RECENT:
            self._recent.popitem(last=False)

    # -- reading ---------------------------------------------------------------------
    def get_task(self, job_id: str) -> TaskRecord:
        live = self._live.get(job_id)
        if live is not None:
            return live.snapshot()
        recent = self._recent.get(job_id)
        if recent is not None:
            return recent.snapshot()
        record = self.backend.get(_check_id(job_id))
        if record is None:
            raise TaskNotFound(job_id)
        return record

    def list_tasks(
        self,
        status: str | Sequence[str] | None = None,
        name: str | None = None,
        limit: int | None = 100,
        *,
        kernel_id: str | None = None,
        notebook: str | None = None,
        offset: int = 0,
    ) -> list[TaskRecord]:
        """Newest first; live state overrides what the store has not caught up with."""
        statuses = (
            None
            if status is None
            else {TaskStatus(s) for s in ([status] if isinstance(status, str) else status)}
        )
        # Live state first: a task missing from it was committed before it left, so the
        # store query that follows sees it (the other order could miss a task entirely).
        snapshots = [live.snapshot() for live in list(self._live.values())]
        stored = self.backend.list_tasks(
            status=None if statuses is None else [s.value for s in statuses],
            name=name, kernel_id=kernel_id, notebook=notebook, limit=limit, offset=offset,
        )  # fmt: skip
        merged = {r.id: r for r in stored}
        for record in snapshots:
            known = merged.get(record.id)
            if known is not None and known.finished and not record.finished:
                continue  # it finished after the snapshot: the store is newer
            matches = (
                (statuses is None or record.status in statuses)
                and (name is None or record.name == name)
                and (kernel_id is None or record.kernel_id == kernel_id)
                and (notebook is None or record.notebook == notebook)
            )
            if matches:
                merged[record.id] = record
            else:
                merged.pop(record.id, None)
        records = sorted(merged.values(), key=lambda r: (r.created_at, r.id), reverse=True)
        return records if limit is None else records[:limit]

    def logs(self, job_id: str, since: int = 0) -> list[LogLine]:
        """Log lines with ``seq > since``, oldest first."""
        self.get_task(job_id)
        live = self._live.get(job_id)
        # A task not yet published has nothing in the store: asking would cost a query
        # (a 404 round trip through the server) for every widget of a fresh task.
        unpublished = live is not None and live.flushed_version == 0
        lines = [] if unpublished else self.backend.logs(job_id, since)
        if live is not None:
            after = lines[-1].seq if lines else since
            lines.extend(live.log_tail(after))
        return lines

    def history(self, job_id: str) -> list[dict[str, Any]]:
        """Status changes and progress samples (committed ones)."""
        self.get_task(job_id)
        return self.backend.history(job_id)

    def wait(self, job_id: str, timeout: float | None = None) -> TaskRecord:
        """Block until the task's final state is stored; ``TimeoutError`` after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        live = self._live.get(job_id)
        if live is not None:
            if not live.wait_committed(timeout):
                raise TimeoutError(
                    f"task {live.name} ({job_id}) is still {live.status.value} "
                    f"({live.percent_complete:.0f}%) after {timeout}s"
                )
            return live.snapshot()  # final and committed; no need to read it back
        while True:
            record = self.get_task(job_id)
            if record.finished:
                return record
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"task {record.name} ({job_id}) is still {record.status.value} "
                    f"({record.percent_complete:.0f}%) after {timeout}s"
                )
            time.sleep(0.05)

    def result(self, job_id: str, timeout: float | None = 0) -> Any:
        """The task's return value: JSON data, a DataFrame/Table, or an unpickled object.

        By default does not wait: ``timeout=None`` waits for the task to finish.
        """
        record = self.get_task(job_id) if timeout == 0 else self.wait(job_id, timeout)
        if record.status is TaskStatus.ERROR:
            raise TaskFailed(record)
        if record.status is not TaskStatus.COMPLETE:
            hint = " (pass timeout=None to wait for it)" if record.status in ACTIVE else ""
            raise _results.ResultUnavailable(
                f"task {record.name} ({job_id}) is {record.status.value}, so it has no result{hint}"
            )
        if job_id in self._values:
            return self._values[job_id]
        live = self._live.get(job_id)
        if live is not None and live.value is not None:
            return live.value
        return _results.decode(job_id, record.result, record.result_kind)

    # -- changing tasks ------------------------------------------------------------------
    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running task; False if it had already finished."""
        live = self._live.get(job_id)
        if live is None:
            record = self.get_task(job_id)
            if record.finished:
                return False
            self.backend.request_cancel(job_id)
            return True
        # Still queued: the worker skips it, so this removes it from the queue. Checked
        # under the task's lock: a worker may be starting it right now.
        if live.transition(
            TaskStatus.CANCELLED,
            only_from=TaskStatus.ENQUEUED,
            status_info="cancelled before it started",
        ):
            self.publisher.wake()
            return True
        if live.status is TaskStatus.PROCESSING:
            self.queue.cancel(live)
            return True
        return False

    def delete(self, job_id: str) -> None:
        """Forget a finished task: its row, history, logs and result file."""
        record = self.get_task(job_id)
        if not record.finished:
            raise TaskStateError(
                f"task {record.name} ({job_id}) is {record.status.value}; cancel it and "
                "wait for it to finish before deleting it"
            )
        self._values.pop(job_id, None)
        self._recent.pop(job_id, None)
        self.backend.delete(job_id)

    def _cancel_requested(self, ids: set[str]) -> None:
        for job_id in ids:
            if job_id in self._live:
                self.cancel(job_id)

    # -- lifecycle -------------------------------------------------------------------
    def flush(self) -> None:
        """Write all pending state now (normally done every ``flush_interval``)."""
        self.publisher.flush()

    def shutdown(self, reason: str = "the Python process exited while it ran") -> None:
        """Mark unfinished tasks interrupted, flush, and close the store."""
        if self._closed:
            return
        self._closed = True
        for live in self.queue.drop_pending() + self.queue.running():
            live.transition(TaskStatus.INTERRUPTED, status_info=reason)
        for live in list(self._live.values()):
            live.transition(TaskStatus.INTERRUPTED, status_info=reason)
        self.queue.shutdown()
        self.publisher.stop(flush=True)
        self.backend.close()


def _env_workers() -> int:
    text = os.environ.get("RAYTHA_NB_WORKERS", "4")
    try:
        return int(text)
    except ValueError:
        raise ValueError(
            f"RAYTHA_NB_WORKERS={text!r} is not a whole number: set it to the number of "
            "worker threads (default 4), or unset it"
        ) from None


def _check_id(job_id: Any) -> str:
    if not isinstance(job_id, str):
        raise TypeError(f"a job id is a string (a UUID), not {type(job_id).__name__}: {job_id!r}")
    try:
        uuid.UUID(job_id)
    except ValueError:
        # The same answer embedded and under the server (which would refuse it as a 400).
        raise TaskNotFound(
            job_id,
            "task ids are UUIDs, as enqueue() returns them; to find a task by name use "
            "rnb.list_tasks(name=...)",
        ) from None
    return job_id


def _kernel_identity() -> tuple[str | None, str | None]:
    """This kernel's id (from its connection file) and its notebook's path, when known."""
    kernel_id = None
    try:
        from ipykernel.connect import get_connection_file

        name = Path(get_connection_file()).stem
        kernel_id = name.removeprefix("kernel-") if name.startswith("kernel-") else None
    except Exception:  # noqa: BLE001 - not running in a kernel
        pass
    return kernel_id, os.environ.get("JPY_SESSION_NAME") or None


_default: TaskManager | None = None
_default_lock = threading.Lock()


def manager() -> TaskManager:
    """The process-wide manager, created on first use from the environment."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = TaskManager()
    return _default


def configure(
    db: str | Path | None = None,
    *,
    workers: int | None = None,
    flush_interval: float = 0.2,
    cancel_grace: float = 1.0,
) -> TaskManager:
    """Replace the process-wide manager (e.g. another store file or worker count)."""
    global _default
    with _default_lock:
        old = _default
        if old is not None:
            busy = [t for t in old._live.values() if not t.status.finished]
            if busy:
                raise TaskStateError(
                    f"{len(busy)} task(s) still running; wait for or cancel them before configure()"
                )
            old.shutdown()
        _default = TaskManager(
            db, workers=workers, flush_interval=flush_interval, cancel_grace=cancel_grace
        )
        return _default


@atexit.register
def _shutdown_default() -> None:
    if _default is not None:
        _default.shutdown()
