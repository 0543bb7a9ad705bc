"""TaskManager: enqueue, cancel, read and wait, over live state plus a backend.

The manager owns this process's tasks (``LiveTask``s, active and recently finished),
hands each to an executor to run and to the publisher to store, and answers reads
from that live state for its own tasks (so a status read never waits for a flush) and
from the backend for everything else. Calls go one way: manager -> executor,
publisher, backend; they report back only through the tasks' state.
"""

from __future__ import annotations

import atexit
import copy
import functools
import linecache
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence

# pyarrow imports pandas, and pandas concurrent.futures.thread, at a process's first
# store write; that import fails once exit has begun ("can't register atexit after
# shutdown"), which is when a short script's first write happens.
from concurrent.futures import thread as _futures_thread  # noqa: F401
from pathlib import Path
from typing import Any

from . import _dask, _group, _notebook_job, _results, _retry, processes
from ._client import RemoteBackend
from ._flow import Flow
from ._identity import default_db_path, discover, find_server, kernel_identity
from ._jsonable import to_jsonable
from ._live import LiveTask
from ._options import TaskOptions, defaults
from .backend import EmbeddedBackend, TaskBackend
from .context import TaskContext
from .errors import (
    ExecutorUnavailable,
    ResultUnavailable,
    StoreDamaged,
    StoreLockedError,
    StoreWriteError,
    TaskFailed,
    TaskNotFound,
    TaskStateError,
)
from .executor import Body, Executor
from .model import ACTIVE, LogLine, TaskQuery, TaskRecord, TaskStatus
from .processes import ProcessExecutor
from .protocol import ServerTask
from .publisher import Publisher
from .registry import check_signature, make_runner, resolve, task_label
from .store import Store
from .threads import ThreadExecutor

#: Where tasks can run: ``enqueue(..., executor=...)``.
EXECUTORS = ("thread", "process", "dask", "server")

log = logging.getLogger("raytha_nb")

#: Final records of this process's recently finished tasks kept in memory, so reads
#: skip the store.
_RECENT = 2_000


class TaskManager:
    """Runs tasks on worker threads (or worker processes, ``executor="process"``) and
    keeps their state in a backend."""

    def __init__(
        self,
        db: str | Path | None = None,
        *,
        workers: int | None = None,
        flush_interval: float = 0.2,
        cancel_grace: float = 1.0,
        backend: TaskBackend | None = None,
        result_cache_mb: float = 256,
        executor: str = "thread",
        process_workers: int | None = None,
        dask: Any = None,
    ) -> None:
        check_executor(executor)
        if executor == "dask" or dask is not None:
            _dask.require_distributed()
        self._dask_cluster = dask
        self._dask: Executor | None = None
        #: Where enqueue() runs a task unless told: "thread" or "process".
        self.default_executor = executor
        self._process_workers = process_workers
        self._cancel_grace = cancel_grace
        self._process: Executor | None = None
        self.backend = backend if backend is not None else open_backend(db)
        # This process's tasks, oldest first: the active ones and up to _RECENT finished.
        self._tasks: OrderedDict[str, LiveTask] = OrderedDict()
        self._tasks_lock = threading.Lock()  # for changes; reads take a list() copy
        #: Returned objects of this process's tasks, for result() without a reload.
        self.values = _results.ValueCache(int(result_cache_mb * 2**20))
        self._kernel_id, self._notebook = kernel_identity()
        self.executor: Executor = ThreadExecutor(
            workers or _env_workers(),
            lambda: self.backend.results_dir,
            self.values,
            grace=cancel_grace,
        )
        self.publisher = Publisher(self.backend, interval=flush_interval)
        #: Delays, retries, continuations, limits and timeouts of this process's tasks.
        self.flow = Flow(self._read, self._tasks.get)
        self._closed = False
        #: Tasks an earlier wait_all() already waited for (and reported).
        self._waited_all: set[str] = set()
        # Tasks this process handed to the server (executor="server"), oldest first.
        self._handed: dict[str, None] = {}
        #: Groups rnb.map() started here, for as_completed().
        self._groups = _group.Groups()

    # -- starting tasks ------------------------------------------------------------
    def enqueue(
        self, task: Any, args: Any = None, *, name: str | None = None, **options: Any
    ) -> str:
        """Queue ``task`` (class, function or registered name) with JSON ``args``; return
        its id. ``options``: ``executor``, ``retries``, ``retry_delay``, ``retry_on``,
        ``timeout``, ``limit``, ``at``/``delay``, ``after``/``when`` (see ``rnb.enqueue``);
        they override those ``@rnb.task`` gave the function. A str ending in .ipynb is
        a notebook job (``executor="server"`` only; ``args``: its parameters)."""
        if _notebook_job.is_notebook_path(task):
            return self._enqueue_notebook(task, args, name, options)
        target = resolve(task)
        plain = to_jsonable(args)
        check_signature(target, plain)
        label = task if isinstance(task, str) else task_label(target)
        body = functools.partial(_run_task, target)
        merged = defaults(target).merged(ref=_retry.reference(target), **options)
        return self._submit(body, name or label, label, plain, merged)

    def _enqueue_notebook(
        self, path: str, parameters: Any, name: str | None, options: dict[str, Any]
    ) -> str:
        """Hand the notebook at ``path`` (relative to this process's directory) to the
        server as a notebook job; ``ValueError`` naming the field before anything exists."""
        where = options.get("executor") or self.default_executor
        if where != "server":
            raise ValueError(
                f"executor: a notebook ({path}) runs as a notebook job in the Jupyter server, "
                f"not on {where!r}: pass executor='server'"
            )
        info = _notebook_job.check_notebook(path)
        params = _notebook_job.check_parameters(parameters)
        merged = TaskOptions().merged(ref=_notebook_job.REF, **options)
        args = {"path": str(info.path), "parameters": params}
        return self._to_server(
            _notebook_job.notebook_body, name or info.path.stem, str(info.path), args, merged,
            cwd=str(info.path.parent), notebook=str(info.path),
        )  # fmt: skip

    def retry(self, job_id: str) -> str:
        """Run a finished task again as a new task (same task, args and options,
        ``retry_of`` it, ``ctx.resume`` its last checkpoint); return the new id."""
        record = self.get_task(job_id)
        plan = _retry.plan(record, self.backend.results_dir)
        if plan.body is not None:
            body: Body = processes.Shipped(plan.body.payload)
        else:
            check_signature(plan.target, record.args)
            body = functools.partial(_run_task, plan.target)
        return self._submit(body, record.name, record.task, record.args, plan.options)

    def submit(self, body: Body, *, name: str, task: str, args: Any = None, **options: Any) -> str:
        """Queue ``body(ctx)`` directly: for magics and data jobs whose inputs (a cell's
        code, a DataFrame) live in memory rather than in JSON ``args``."""
        return self._submit(body, name, task, to_jsonable(args), TaskOptions().merged(**options))

    def _submit(self, body: Body, name: str, task: str, args: Any, options: TaskOptions) -> str:
        if self._closed:
            raise RuntimeError(
                "this TaskManager is shut down; use raytha_nb.configure() for a new one"
            )
        for parent in options.after:  # each must exist: an unknown id is an error now
            if self._read(parent) is None:
                raise TaskNotFound(parent, "after= names tasks to wait for, by their ids")
        where = options.executor or self.default_executor
        if where == "server":
            return self._to_server(body, name, task, args, options)
        runner = self._executor(where)
        body = runner.ship(body, f"task {task}")  # fails here, before a task exists
        job_id = str(uuid.uuid4())
        if isinstance(body, processes.Shipped):  # kept, so that retry() can run it again
            _retry.store_body(self.backend.results_dir, job_id, body.payload)
        live = LiveTask(
            job_id, name, task, args, kernel_id=self._kernel_id, notebook=self._notebook,
            pid=os.getpid(), executor=where, options=options,
        )  # fmt: skip
        self._start(live, runner, body)
        return job_id

    def map(self, fn: Any, items: Any, *, name: str | None = None, **options: Any) -> str:
        """One child task per item (``fn(item)``) and a group task over them; the
        group's id (see ``rnb.map``)."""
        if self._closed:
            raise RuntimeError(
                "this TaskManager is shut down; use raytha_nb.configure() for a new one"
            )
        return _group.start_map(self, fn, items, name, options, self._track)

    def as_completed(
        self, group_id: str, timeout: float | None = None, return_exceptions: bool = False
    ) -> Any:
        """``(child_id, result)`` of each child of a group as it ends (``rnb.as_completed``)."""
        return _group.as_completed(self, group_id, timeout, return_exceptions)

    def _track(self, live: LiveTask) -> None:
        """Keep and publish ``live`` without running it (a group's own task)."""
        with self._tasks_lock:
            self._tasks[live.id] = live
        self.publisher.track(live)

    def _start(self, live: LiveTask, runner: Executor, body: Body) -> None:
        with self._tasks_lock:
            self._tasks[live.id] = live
            self._forget_old()
        self.publisher.track(live)
        self.flow.start(live, runner, body)

    def _start_group(self, group: _group.Group, runner: Executor, body: Body) -> None:
        """:meth:`_start` for a map's children: published through their group, and
        started a slice at a time (the first runs while the next is handed over)."""
        children = group.children
        with self._tasks_lock:
            for live in children:
                self._tasks[live.id] = live
            self._forget_old(len(children))
        self.publisher.track_group(group)
        for i in range(0, len(children), _group.SLICE):
            self.flow.start_many(children[i : i + _group.SLICE], runner, body)

    def _read(self, job_id: str) -> TaskRecord | None:
        """A task's record, or None if there is none (for the flow's parents)."""
        try:
            return self.get_task(job_id)
        except TaskNotFound:
            return None

    def _to_server(
        self,
        body: Body,
        name: str,
        task: str,
        args: Any,
        options: TaskOptions,
        cwd: str | None = None,
        notebook: str | None = None,
    ) -> str:
        """Hand the task to the Jupyter server, which runs it in a worker process of its
        own (it outlives this kernel); this process only reads its state. ``cwd`` and
        ``notebook`` (default: this process's) are a notebook job's own."""
        if not isinstance(self.backend, RemoteBackend):
            raise ExecutorUnavailable(
                "executor='server' runs tasks in the Jupyter server, and this process uses "
                "no server (its store is embedded): run the notebook under Jupyter with the "
                "raytha_nb extension, or use executor='process' (a worker process of this "
                "kernel) or 'thread'"
            )
        spec, payload = self.server_task(body, name, task, args, options, cwd, notebook)
        self.backend.run_on_server(spec, payload)
        _retry.store_body(self.backend.results_dir, spec.id, payload)  # for retry()
        self._handed[spec.id] = None
        return spec.id

    def server_task(
        self,
        body: Body,
        name: str,
        task: str,
        args: Any,
        options: TaskOptions,
        cwd: str | None = None,
        notebook: str | None = None,
    ) -> tuple[ServerTask, bytes]:
        """``body`` pickled (``NotPicklable`` naming the culprit, before anything exists)
        and the server task that runs it with this process's interpreter, directory,
        ``sys.path`` and cell sources: what ``executor="server"`` and ``rnb.schedule``
        hand the server."""
        shipped = processes.ship(body, f"task {task}")
        spec = ServerTask(
            str(uuid.uuid4()), name, task, args, sys.executable, cwd or os.getcwd(),
            tuple(sys.path), notebook or self._notebook, time.time(), _cell_sources(),
            options.to_json(everything=True),
        )  # fmt: skip
        return spec, shipped.payload

    def on_server(self, job_id: str) -> bool:
        """Whether this process handed ``job_id`` to the server to run."""
        return job_id in self._handed

    def adopt(self, spec: ServerTask, body: Body) -> LiveTask:
        """Run a task the server created on a thread here: this process is the server
        worker it started for that task."""
        live = LiveTask(
            spec.id, spec.name, spec.task, spec.args, kernel_id=None, notebook=self._notebook,
            pid=os.getpid(), executor="server", options=TaskOptions.from_json(spec.options),
        )  # fmt: skip
        live.created_at = spec.created_at
        live.history.clear()  # the server stored its "enqueued" row
        live.worker = f"pid {os.getpid()}"
        self._start(live, self.executor, body)
        return live

    def _executor(self, name: str) -> Executor:
        """The executor called ``name``, started on first use."""
        check_executor(name)
        if name == "thread":
            return self.executor
        if name == "dask":
            if self._dask is None:
                self._dask = _dask.DaskExecutor(
                    self._dask_cluster,
                    lambda: self.backend.results_dir,
                    grace=self._cancel_grace,
                    say=lambda line: _say(line),
                )
            return self._dask
        if self._process is None:
            self._process = ProcessExecutor(
                self._process_workers,
                lambda: self.backend.results_dir,
                grace=self._cancel_grace,
                values=self.values,
            )
        return self._process

    def _executors(self) -> list[Executor]:
        others = [self._process, self._dask]
        return [self.executor] + [runner for runner in others if runner is not None]

    def _forget_old(self, budget: int = 4) -> None:
        """Keep about _RECENT finished tasks in memory (their state is stored); called
        under ``_tasks_lock`` on each submit. It looks at a few of the oldest tasks only
        (``budget``; a still active one goes to the back), so a submit stays O(1)
        however many tasks are queued."""
        for _ in range(min(len(self._tasks) - _RECENT, budget)):
            job_id, oldest = next(iter(self._tasks.items()))
            if oldest.committed:
                del self._tasks[job_id]
            else:
                self._tasks.move_to_end(job_id)

    @property
    def kernel_id(self) -> str | None:
        """The Jupyter kernel this process is, when it is one."""
        return self._kernel_id

    def live(self, job_id: str) -> LiveTask | None:
        """The in-memory state of a task this process runs whose final state is not yet
        stored, else None."""
        live = self._tasks.get(job_id)
        return None if live is None or live.committed else live

    # -- reading ---------------------------------------------------------------------
    def get_task(self, job_id: str) -> TaskRecord:
        live = self._tasks.get(job_id)
        if live is not None:
            return live.snapshot()
        record = self.backend.get(_check_id(job_id))
        if record is None:
            raise TaskNotFound(job_id)
        return record

    def list_tasks(
        self,
        status: str | Sequence[str] | None = None,
        name: str | None = None,
        limit: int | None = 100,
        **filters: Any,
    ) -> list[TaskRecord]:
        """Newest first, filtered as :class:`~raytha_nb.model.TaskQuery` says."""
        return self.query(TaskQuery.of(status, name, limit, **filters))

    def query(self, query: TaskQuery) -> list[TaskRecord]:
        """The tasks ``query`` selects; live state overrides what the store has not
        caught up with."""
        # Live state first: a task missing from it was committed before it left, so the
        # store query that follows sees it (the other order could miss a task entirely).
        snapshots = [t.snapshot() for t in list(self._tasks.values()) if not t.committed]
        merged = {r.id: r for r in self.backend.list_tasks(query)}
        for record in snapshots:
            known = merged.get(record.id)
            if known is not None and known.finished and not record.finished:
                continue  # it finished after the snapshot: the store is newer
            if query.matches(record):
                merged[record.id] = record
            else:
                merged.pop(record.id, None)
        records = sorted(merged.values(), key=lambda r: (r.created_at, r.id), reverse=True)
        return records if query.limit is None else records[: query.limit]

    def logs(self, job_id: str, since: int = 0) -> list[LogLine]:
        """Log lines with ``seq > since``, oldest first."""
        self.get_task(job_id)
        live = self._tasks.get(job_id)
        # A task not yet published has nothing in the store: asking would cost a query
        # (a 404 round trip through the server) for every widget of a fresh task.
        unpublished = live is not None and not self.publisher.stored(job_id)
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
        """Block until the task's final state is stored; ``TimeoutError`` after ``timeout``.

        While the store refuses this process's writes, the store's error instead: at
        once for a damaged store (waiting cannot mend it), at the deadline for one that
        cannot write (a full disk: writes resume by themselves, so it waits until then).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        live = self._tasks.get(job_id)
        if live is not None:
            while not live.wait_committed(_slice(deadline)):
                error = self.publisher.last_error
                late = deadline is not None and time.monotonic() >= deadline
                if isinstance(error, StoreDamaged) or (late and isinstance(error, StoreWriteError)):
                    # A copy: the publisher's exception is shared with its thread.
                    raise copy.copy(error) from error.__cause__
                if late:
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

    def unwaited(self) -> list[LiveTask]:
        """This process's tasks that no ``wait_all()`` has waited for yet, oldest first."""
        return [t for t in list(self._tasks.values()) if t.id not in self._waited_all]

    def wait_all(self, timeout: float | None = None) -> list[TaskRecord]:
        """Wait until every task this process started since the last ``wait_all()`` has
        ended and is stored (including tasks started meanwhile); return their records
        (a map's group's, not each of its children's: the group fails if one did).

        Raises ``TaskFailed`` naming each that ended ``error`` or ``interrupted`` (a
        cancelled task was asked to stop, so it is not a failure); ``TimeoutError``
        naming the unfinished ones after ``timeout`` s.
        """
        __tracebackhide__ = True  # IPython shows the TaskFailed, not this frame
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            tasks = self.unwaited()
            pending = [t for t in tasks if not t.committed]
            if not pending:
                break
            # Each in turn (most are committed by the time they are reached): one pass
            # over a map's 100,000 children, not one per commit.
            for task in pending:
                while not task.committed:
                    late = deadline is not None and time.monotonic() >= deadline
                    error = self._store_error(late)
                    if error is not None:
                        raise error
                    if late:
                        unfinished = [t for t in pending if not t.committed]
                        names = ", ".join(
                            f"{t.name} ({t.id}, {t.status.value} {t.percent_complete:.0f}%)"
                            for t in unfinished
                        )
                        raise TimeoutError(
                            f"{len(unfinished)} task(s) still unfinished after {timeout}s: {names}"
                        )
                    task.wait_committed(_slice(deadline))
        # A map's children were waited for (each is stored); its group's record stands
        # for them, as in %jobs (100,000 records would cost more than running them).
        records = [t.snapshot() for t in tasks if t.group_id is None]
        self._waited_all.update(t.id for t in tasks)
        for job_id in [j for j in self._handed if j not in self._waited_all]:
            # Run by the server: waited for here, though this process's exit does not.
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            records.append(self.wait(job_id, left))
            self._waited_all.add(job_id)
        self._waited_all.intersection_update([*self._tasks, *self._handed])  # forgotten
        failed = [r for r in records if r.status in (TaskStatus.ERROR, TaskStatus.INTERRUPTED)]
        if failed:
            raise TaskFailed(*failed)
        return records

    def _store_error(self, late: bool) -> Exception | None:
        """The store's refusal to wait for: a damaged store at once, a failing write at
        the deadline (writes resume by themselves). A copy: the publisher's is shared."""
        error = self.publisher.last_error
        if isinstance(error, StoreDamaged) or (late and isinstance(error, StoreWriteError)):
            found = copy.copy(error)
            found.__cause__ = error.__cause__
            return found
        return None

    def result(self, job_id: str, timeout: float | None = 0) -> Any:
        """The task's return value: JSON data, a DataFrame/Table, or an unpickled object.

        By default does not wait: ``timeout=None`` waits for the task to finish.
        """
        record = self.get_task(job_id) if timeout == 0 else self.wait(job_id, timeout)
        if record.status is TaskStatus.ERROR:
            raise TaskFailed(record)
        if record.status is not TaskStatus.COMPLETE:
            hint = " (pass timeout=None to wait for it)" if record.status in ACTIVE else ""
            raise ResultUnavailable(
                f"task {record.name} ({job_id}) is {record.status.value}, so it has no result{hint}"
            )
        if job_id in self.values:
            return self.values.get(job_id)
        if record.result_kind == _group.GROUP_KIND:
            return _group.results(self, record)
        return _results.decode(job_id, record.result, record.result_kind)

    # -- changing tasks ------------------------------------------------------------------
    def cancel(self, job_id: str, force: bool = False) -> bool:
        """Cancel a queued or running task; False if it had already finished.

        Cooperative first (``check_cancelled`` raises), forced after the grace period;
        ``force=True`` forces it at once (a process task's worker is killed), for a task
        of another kernel or the server too (the request carries it)."""
        live = self._tasks.get(job_id)
        if live is not None:
            return live.request_cancel(force)
        record = self.get_task(job_id)
        if record.finished:
            return False
        self.backend.request_cancel(job_id, force)
        return True

    def delete(self, job_id: str) -> None:
        """Forget a finished task: its row, history, logs and result file."""
        record = self.get_task(job_id)
        if not record.finished:
            raise TaskStateError(
                f"task {record.name} ({job_id}) is {record.status.value}; cancel it and "
                "wait for it to finish before deleting it"
            )
        self.values.pop(job_id)
        with self._tasks_lock:
            self._tasks.pop(job_id, None)
        self.backend.delete(job_id)

    # -- lifecycle -------------------------------------------------------------------
    def flush(self) -> None:
        """Write all pending state now (normally done every ``flush_interval``)."""
        self.publisher.flush()

    def shutdown(self, reason: str = "the Python process exited while it ran") -> None:
        """Mark unfinished tasks interrupted, flush, and close the store."""
        if self._closed:
            return
        self._closed = True
        for runner in self._executors():
            for live in runner.drop_pending() + runner.running():
                live.transition(TaskStatus.INTERRUPTED, status_info=reason)
        for live in list(self._tasks.values()):
            live.transition(TaskStatus.INTERRUPTED, status_info=reason)
        self.flow.stop()
        for runner in self._executors():
            runner.shutdown()
        self.publisher.stop(flush=True)
        self.backend.close()


def _run_task(target: Any, ctx: TaskContext) -> Any:
    """One job of an enqueued task (module level, so it pickles by reference)."""
    return make_runner(target, ctx)()


def _cell_sources() -> dict[str, str]:
    """The notebook cells in this process's line cache (those not on disk)."""
    return {
        name: "".join(entry[2])
        for name, entry in list(linecache.cache.items())
        if len(entry) == 4 and entry[1] is None and not os.path.exists(name)
    }


def check_executor(name: Any) -> None:
    """``ValueError`` for an unknown executor name."""
    if name not in EXECUTORS:
        raise ValueError(
            f"unknown executor {name!r}: choose one of {', '.join(map(repr, EXECUTORS))}"
        )


def _slice(deadline: float | None, step: float = 0.25) -> float:
    """Seconds to block before looking again: ``step``, or less before ``deadline``."""
    return step if deadline is None else max(0.0, min(step, deadline - time.monotonic()))


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


def open_backend(db: str | Path | None = None) -> TaskBackend:
    """The server's store when a server started this process or (for scripts, terminals
    and papermill) a running server holds this user's store, else an embedded store.

    An explicit ``db`` (``configure(db=...)``) or ``RAYTHA_NB_DB`` means embedded mode.
    """
    if db is None:
        address = discover()
        if address is not None:
            backend = RemoteBackend(address)
            # A server found by its runtime file, not our parent: check it still serves.
            if address.pid is None or backend.ping():
                return backend
            backend.close()
    path = db or default_db_path()
    try:
        return EmbeddedBackend(Store(path))
    except StoreLockedError as exc:
        server = find_server(path)
        if server is None:
            raise
        raise StoreLockedError(
            exc.path,
            exc.pid,
            exc.detail,
            f"A Jupyter server (PID {server.pid}) holds this store and shares it: unset "
            "RAYTHA_NB_DB (and call configure() without db=) so this process uses it "
            "through that server.",
        ) from None


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


def existing_manager() -> TaskManager | None:
    """The process-wide manager if one was made, without making one (opening a store)."""
    return _default


def configure(
    db: str | Path | None = None,
    *,
    workers: int | None = None,
    flush_interval: float = 0.2,
    cancel_grace: float = 1.0,
    result_cache_mb: float = 256,
    executor: str = "thread",
    process_workers: int | None = None,
    dask: Any = None,
) -> TaskManager:
    """Replace the process-wide manager (e.g. another store file or worker count;
    ``result_cache_mb``: how much of its tasks' returned objects it keeps in memory;
    ``executor``: where tasks run unless enqueue() says; ``process_workers``: the
    process pool's size, by default the number of cores; ``dask``: a scheduler address or
    ``distributed.Client`` for ``executor="dask"``, else a LocalCluster is started)."""
    check_executor(executor)
    global _default
    with _default_lock:
        old = _default
        if old is not None:
            busy = [t for t in list(old._tasks.values()) if not t.status.finished]
            if busy:
                raise TaskStateError(
                    f"{len(busy)} task(s) still running; wait for or cancel them before configure()"
                )
            old.shutdown()
        _default = TaskManager(
            db,
            workers=workers,
            flush_interval=flush_interval,
            cancel_grace=cancel_grace,
            result_cache_mb=result_cache_mb,
            executor=executor,
            process_workers=process_workers,
            dask=dask,
        )
        return _default


#: Set when Ctrl+C stopped the wait at exit: the process then ends by SIGINT.
_stopped_by_ctrl_c = False


def _wait_at_exit() -> None:
    """At exit, before threads are joined (where concurrent.futures waits too, and the
    publisher can still write): a script waits for its unfinished tasks, saying so on
    stderr; Ctrl+C stops them. IPython (a kernel or a terminal) only says how many the
    exit interrupts: a kernel's shutdown or restart must stay prompt."""
    global _stopped_by_ctrl_c
    current = _default
    if current is None or current._closed:
        return
    busy = [t for t in list(current._tasks.values()) if not t.status.finished]
    if not busy:
        return
    tasks = f"{len(busy)} running task{'s' if len(busy) > 1 else ''}"
    if ipython_shell() is not None:
        names = ", ".join(sorted({t.name for t in busy}))
        _say(f"raytha_nb: exiting interrupts {tasks} ({names})")
        return
    try:  # from the line on, Ctrl+C stops the tasks
        _say(f"raytha_nb: waiting for {tasks} to finish (Ctrl+C to stop them)")
        for live in busy:
            while not live.status.finished:
                live.wait_committed(0.1)
    except KeyboardInterrupt:
        _stopped_by_ctrl_c = True
        current.shutdown("the process exited: Ctrl+C stopped it while the script waited")


def ipython_shell() -> Any:
    """The running IPython shell (a kernel's or a terminal's), else None; never imports
    IPython itself."""
    ipython = sys.modules.get("IPython")
    return None if ipython is None else ipython.get_ipython()


def _say(line: str) -> None:
    """One line on the process's real stderr (a kernel's goes to the server's log)."""
    stream = sys.__stderr__
    if stream is not None:
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass


if hasattr(threading, "_register_atexit"):  # CPython >= 3.9
    threading._register_atexit(_wait_at_exit)


@atexit.register
def _shutdown_default() -> None:
    if _default is not None:
        _default.shutdown()
    if _stopped_by_ctrl_c:
        # What Python does when Ctrl+C ends a script: die by SIGINT (a shell sees 130).
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):
                pass
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
