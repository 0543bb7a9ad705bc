"""The server's task service: the one owner of the DuckDB store, and the rules around it.

Kernels publish batches here (committed at once, so reads never wait for a flush);
users read, cancel and delete. Cancel requests for another kernel's task wait here
until that kernel's next heartbeat collects them. A task already finished in the store
(e.g. marked ``interrupted`` by the reaper) is never overwritten by a late batch.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .._identity import pid_alive
from .._version import __version__
from ..errors import NotTaskOwner, StoreClosed, TaskStateError
from ..model import TERMINAL, LogLine, TaskQuery, TaskRecord, stored_utc, utc
from ..protocol import Batch, HistoryRow, Publish, TaskRow
from ..store import Store
from .events import EventHub

_FINISHED = frozenset(s.value for s in TERMINAL)


@dataclass
class KernelSession:
    """One kernel's publisher as the server last heard from it."""

    session: str
    kernel_id: str | None
    pid: int | None
    last_seen: float
    active: set[str] = field(default_factory=set)
    #: For a server worker (``executor="server"``): the task the server gave it, which it
    #: may write although the server created it.
    job: str | None = None
    #: (task id, ts, status) of every history row in its last batch. A batch carries all
    #: of the kernel's unacknowledged rows, so after a lost reply these come again.
    last_history: set[tuple[str, float, str]] = field(default_factory=set)


class TaskService:
    """Store + heartbeats + pending cancels, shared by the user and kernel handlers.

    Every method is blocking (DuckDB) and thread-safe; handlers call them on a worker
    thread. ``clock`` is monotonic seconds (replaceable in tests).
    """

    def __init__(
        self,
        store: Store,
        hub: EventHub,
        heartbeat_timeout: float,
        clock: Callable[[], float] = time.monotonic,
        alive: Callable[[int], bool] = pid_alive,
        notebook_root: str | None = None,
    ) -> None:
        self.store = store
        self.hub = hub
        self.heartbeat_timeout = heartbeat_timeout
        self._clock = clock
        self._alive = alive
        #: Set when the server stops: requests get 503 from then on.
        self.closed = False
        #: Called with (task id, force) after each cancel request (server workers).
        self.cancel_hooks: list[Callable[[str, bool], None]] = []
        self._lock = threading.RLock()
        self.sessions: dict[str, KernelSession] = {}
        # Active tasks as last stored: GET tasks/{id} reads these without a query.
        self._active: dict[str, TaskRecord] = {}
        # The highest stored log seq of those active tasks that have logged: a kernel's
        # next lines are checked against it without a query.
        self._log_seq: dict[str, int] = {}
        # Tasks someone asked to cancel: all of them get cancel_requested forced on in
        # stored rows until they finish; ``_undelivered`` are not yet sent to their kernel.
        self._cancelling: set[str] = set()
        self._undelivered: set[str] = set()
        # Of those, the ones to force at once (``cancel(force=True)``).
        self._forcing: set[str] = set()
        # Tasks left active by an earlier server run: deadline for a kernel to claim them.
        self._unclaimed: dict[str, float] = {}
        # Tasks interrupted only because their kernel went silent (presumed dead, not
        # seen to end): the same kernel process may speak again and take them back.
        self._presumed_dead: set[str] = set()
        #: The contents root: kernels report their notebook as an absolute path
        #: (JPY_SESSION_NAME), stored relative to it, as the contents API names files.
        self.notebook_root = notebook_root
        # Each kernel's notebook as the server's sessions last said (kernel id -> path),
        # kept after its session ends: a kernel that outlives it still names the old path.
        self._notebooks: dict[str, str] = {}
        deadline = clock() + heartbeat_timeout
        for job_id in store.active_ids():
            self._unclaimed[job_id] = deadline

    # -- kernels ---------------------------------------------------------------------
    def publish(
        self, message: Publish, worker_job: str | None = None
    ) -> tuple[list[str], list[str]]:
        """Commit a kernel's batch and heartbeat; return the ids it must cancel, and
        those of them to force at once. ``worker_job``: the caller is the server worker
        running that task."""
        if self.closed:
            raise StoreClosed(f"the task store {self.store.path} is closed")
        batch = message.batch
        with self._lock:
            known = self.sessions.get(message.session)
            if known is None:
                known = self.sessions[message.session] = KernelSession(
                    message.session, message.kernel_id, message.pid, 0.0, job=worker_job
                )
            known.last_seen = self._clock()
            known.active = set(message.active)
            for job_id in known.active:
                self._unclaimed.pop(job_id, None)
            stored = self._check_owner(batch, known)
            received = {(row.task_id, row.ts, row.status) for row in batch.history}
            finished = self._drop_finished(batch, known, stored)
            batch.history = [
                row
                for row in batch.history
                if (row.task_id, row.ts, row.status) not in known.last_history
            ]
            batch.tasks = [
                row._replace(
                    cancel_requested=row.cancel_requested or row.id in self._cancelling,
                    notebook=self._notebook(row.kernel_id, row.notebook),
                )
                for row in batch.tasks
            ]
            self.store.apply(batch)
            known.last_history = received
            self._forget({row.id for row in batch.tasks if row.status in _FINISHED})
            # A task finished here (e.g. interrupted) but still alive in the kernel: stop it.
            cancels = (self._undelivered & (known.active | {r.id for r in batch.tasks})) | (
                finished & known.active
            )
            self._undelivered -= cancels
            forced = cancels & self._forcing
            self._forcing -= forced
            # Under the lock, so a concurrent reap cannot leave a stale live copy. Whole
            # rows are what was just stored; only progress rows of tasks not held in
            # memory (e.g. after a server restart) need reading back.
            now = time.time()
            self._show([row.record(now) for row in batch.tasks])
            self._announce(self._merge_progress(batch, now))
            for row in batch.logs:  # only lines above the stored max are left
                if row.task_id in self._active:
                    self._log_seq[row.task_id] = max(row.seq, self._log_seq.get(row.task_id, 0))
        return sorted(cancels), sorted(forced)

    def _drop_finished(
        self, batch: Batch, known: KernelSession, stored: dict[str, TaskRecord]
    ) -> set[str]:
        """Remove rows and history of tasks already finished in the store, and log lines
        already stored (a batch re-sent after a lost reply); return the finished ids.

        A task marked ``interrupted`` only because its kernel was silent (not one whose
        kernel was seen to shut down or restart), which that same kernel process still
        reports running, is revived instead: the kernel was busy,
        not dead, and its task's real end is still to come.

        ``stored``: the stored rows of the batch's tasks not held in memory (active
        tasks are, and are kept current under the lock: the common progress-only
        publish needs no query)."""
        finished = {job_id for job_id, record in stored.items() if record.finished}
        revived = {
            job_id
            for job_id in finished & known.active & self._presumed_dead
            if known.pid is not None
            and stored[job_id].status.value == "interrupted"
            and (stored[job_id].kernel_id, stored[job_id].pid) == (known.kernel_id, known.pid)
        }
        if revived:
            self.store.revive(sorted(revived), "its kernel spoke again: still running")
            self._presumed_dead -= revived
            finished -= revived
        if finished:
            batch.tasks = [row for row in batch.tasks if row.id not in finished]
            batch.progress = [row for row in batch.progress if row.id not in finished]
            batch.history = [row for row in batch.history if row.task_id not in finished]
        if batch.logs:
            logged = {row.task_id for row in batch.logs}
            unknown = sorted(logged - self._log_seq.keys())
            last = {job_id: self._log_seq[job_id] for job_id in logged - set(unknown)}
            last.update(self.store.last_log_seqs(unknown))
            batch.logs = [row for row in batch.logs if row.seq > last.get(row.task_id, 0)]
        return finished

    def _check_owner(self, batch: Batch, known: KernelSession) -> dict[str, TaskRecord]:
        """Refuse the whole batch if it touches a task another kernel created: a kernel
        session creates tasks only in its own name (kernel id, PID) and writes only
        those. Active tasks are checked in memory; others (finished, or from before a
        server restart) against their stored row, which it returns by id."""
        me = (known.kernel_id, known.pid)
        for row in batch.tasks:
            if (row.kernel_id, row.pid) != me:
                raise NotTaskOwner(
                    f"task {row.id} names {_who(row.kernel_id, row.pid)} as its owner, but "
                    f"this publisher is {_who(*me)}"
                )
        ids = {row.id for row in batch.tasks} | {row.id for row in batch.progress}
        ids |= {row.task_id for row in batch.history} | {row.task_id for row in batch.logs}
        held = {i: self._active[i] for i in ids if i in self._active}
        stored = {r.id: r for r in self.store.get_many(sorted(ids - held.keys()))}
        for record in [*held.values(), *stored.values()]:
            if (record.kernel_id, record.pid) != me and record.id != known.job:
                raise NotTaskOwner(
                    f"task {record.name} ({record.id}) belongs to "
                    f"{_who(record.kernel_id, record.pid)}; {_who(*me)} may read and "
                    "cancel it, but only its own process changes its state"
                )
        return stored

    def _notebook(self, kernel_id: str | None, reported: str | None) -> str | None:
        """A task's notebook as the contents API names it: the kernel's session path
        if the server knows it (it follows renames), else the kernel's own word."""
        if kernel_id is not None and kernel_id in self._notebooks:
            return self._notebooks[kernel_id]
        return contents_path(reported, self.notebook_root)

    # -- notebooks -----------------------------------------------------------------------
    def follow_sessions(self, paths: dict[str, str]) -> list[str]:
        """The server's notebook sessions now say kernel id -> notebook path: the tasks
        of each kernel whose path is new or changed follow it; returns their ids."""
        moved: list[str] = []
        with self._lock:
            for kernel_id, path in paths.items():
                if self._notebooks.get(kernel_id) != path:
                    moved += self.store.move_kernel_notebooks(kernel_id, path)
                    self._notebooks[kernel_id] = path
            self._announce(set(moved))
        return moved

    def notebook_renamed(self, old: str, new: str) -> list[str]:
        """A notebook or folder was renamed through Jupyter: its tasks follow, whether
        their kernel still runs or not; returns their ids."""
        with self._lock:
            moved = self.store.rename_notebooks(old, new)
            for kernel_id, path in self._notebooks.items():
                if path == old or path.startswith(f"{old}/"):
                    self._notebooks[kernel_id] = new + path[len(old) :]
            self._announce(set(moved))
        return moved

    def notebook_deleted(self, path: str) -> list[str]:
        """A notebook or folder was deleted through Jupyter: its tasks have no notebook
        to open any more, even when a new file later takes its name."""
        with self._lock:
            return self.store.mark_notebooks_gone(path)

    def notebook_gone(self, job_id: str) -> bool:
        return self.store.notebook_gone(job_id)

    # -- users -------------------------------------------------------------------------
    def live(self, job_id: str) -> TaskRecord | None:
        """The latest state of an active task, from memory (no query, no thread hop)."""
        return self._active.get(job_id)

    def get(self, job_id: str) -> TaskRecord | None:
        return self._active.get(job_id) or self.store.get(job_id)

    def list_tasks(self, query: TaskQuery) -> tuple[list[TaskRecord], int]:
        """One page of tasks and the total the query selects."""
        return self.store.list_tasks(query), self.store.count_tasks(query)

    def logs(self, job_id: str, since: int, limit: int) -> list[LogLine]:
        return self.store.logs(job_id, since, limit)

    def history(self, job_id: str) -> list[dict[str, Any]]:
        return self.store.history(job_id)

    def cancel(self, job_id: str, force: bool = False) -> tuple[bool, TaskRecord | None]:
        """Ask the task's kernel to cancel it; (False, task) if it already finished.
        ``force``: its kernel forces it at once (a process task's worker is killed), as
        is a server-run task's worker, instead of after the grace period."""
        with self._lock:
            record = self.store.get(job_id)
            if record is None or record.finished:
                return False, record
            self.store.request_cancel(job_id)
            self._cancelling.add(job_id)
            self._undelivered.add(job_id)
            if force:
                self._forcing.add(job_id)
            self._announce({job_id})
        for hook in self.cancel_hooks:
            hook(job_id, force)
        return True, self.get(job_id)

    # -- tasks the server runs ---------------------------------------------------------
    def create(self, row: TaskRow) -> TaskRecord:
        """Store a new task the server itself queued (``executor="server"``), with its
        first history row (``enqueued``, or ``scheduled``/``awaiting`` for one the server
        holds); nobody owns it until a worker publishes it."""
        with self._lock:
            if self.store.get(row.id) is not None:
                raise TaskStateError(f"a task with id {row.id} exists already")
            row = row._replace(notebook=self._notebook(None, row.notebook))
            first = HistoryRow(row.id, row.created_at, row.status, 0, 0.0)
            self.store.apply(Batch(tasks=[row], history=[first]))
            record = row.record(time.time())
            self._show([record])
        return record

    def claim(self, ids: Sequence[str]) -> None:
        """Tasks of an earlier server run that this server starts itself (server tasks
        still waiting): the reaper must not wait for a kernel to reconnect them."""
        with self._lock:
            for job_id in ids:
                self._unclaimed.pop(job_id, None)

    def release(self, job_id: str, reason: str) -> None:
        """A server task held until due or until its parents ended waits for a worker now."""
        with self._lock:
            self.store.release([job_id], reason)
            self._announce({job_id})

    def end(
        self, job_id: str, status: str, reason: str, error: tuple[str, str] | None = None
    ) -> bool:
        """End a still active task from here (its server worker died or was killed)."""
        with self._lock:
            error_type, message = error or (None, None)
            done = self.store.end([job_id], status, reason, error_type, message)
            self._forget(set(done))
            self._announce(set(done))
        return bool(done)

    def delete(self, job_id: str, kernel: tuple[str | None, int | None] | None = None) -> bool:
        """Forget a finished task; False if unknown, TaskStateError if still active.
        ``kernel``: the (kernel id, PID) of a kernel asking, which may delete only the
        tasks it created (in any of its runs: the kernel id survives restarts)."""
        with self._lock:
            record = self.store.get(job_id)
            if record is None:
                return False
            if kernel is not None and not _same_kernel(record, kernel):
                raise NotTaskOwner(
                    f"task {record.name} ({job_id}) was created by "
                    f"{_who(record.kernel_id, record.pid)}: a kernel deletes only its own "
                    "tasks; delete it from the Background Tasks panel or DELETE "
                    "/raytha-nb/api/tasks/{id}"
                )
            if not record.finished:
                raise TaskStateError(
                    f"task {record.name} ({job_id}) is {record.status.value}; cancel it and "
                    "wait for it to finish before deleting it"
                )
            self.store.delete(job_id)
            self._active.pop(job_id, None)
        self.hub.deleted(job_id)
        return True

    def delete_finished(self, older_than: float | None = None) -> int:
        """Delete every finished task (completed more than ``older_than`` seconds ago)."""
        ids = self.store.finished_before(None if older_than is None else time.time() - older_than)
        deleted = 0
        for job_id in ids:
            with self._lock:
                if self.store.delete(job_id):
                    deleted += 1
            self.hub.deleted(job_id)
        return deleted

    def status(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "tasks": {
                s: self.store.count_tasks(TaskQuery.of(s)) for s in ("processing", "enqueued")
            },
            "db": str(self.store.path),
        }

    @property
    def results_dir(self) -> Path:
        return self.store.results_dir

    def snapshot(self) -> Path:
        """Copy the store's tables to Parquet in a fresh folder of the results dir; the
        kernel that asked loads them and removes the folder."""
        target = self.store.results_dir / "snapshots" / uuid.uuid4().hex
        # Not under the service lock: one read transaction is consistent on its own, and
        # copying every log line must not hold up the kernels' publishes.
        self.store.snapshot(target)
        return target

    # -- orphans -----------------------------------------------------------------------
    def reap(self) -> list[str]:
        """Interrupt tasks of kernels silent for longer than the heartbeat timeout, and
        tasks of an earlier server run that no kernel claimed in time."""
        now = self._clock()
        interrupted: list[str] = []
        with self._lock:
            for key, known in list(self.sessions.items()):
                if now - known.last_seen <= self.heartbeat_timeout:
                    continue
                if known.pid is not None and self._alive(known.pid):
                    # Silent but alive: busy (a long call holding the GIL), not dead.
                    continue
                del self.sessions[key]
                who = f"kernel {known.kernel_id}" if known.kernel_id else "its process"
                silent = self._interrupt(
                    known.active,
                    f"{who} (PID {{pid}}) sent no heartbeat for over "
                    f"{self.heartbeat_timeout:g} s: it died or lost contact with the server",
                )
                self._presumed_dead.update(silent)
                interrupted += silent
            owned = set().union(*(s.active for s in self.sessions.values()))
            due = [i for i, t in self._unclaimed.items() if t < now and i not in owned]
            alive = {r.id for r in self.store.get_many(due) if r.pid and self._alive(r.pid)}
            stale = [job_id for job_id in due if job_id not in alive]
            for job_id in stale:
                del self._unclaimed[job_id]
            unclaimed = self._interrupt(
                stale,
                "the Jupyter server restarted and the kernel that ran it (PID {pid}) did "
                f"not reconnect within {self.heartbeat_timeout:g} s",
            )
            self._presumed_dead.update(unclaimed)
            interrupted += unclaimed
        return interrupted

    def kernel_gone(self, kernel_id: str, why: str) -> list[str]:
        """Interrupt the active tasks of a kernel the server shut down or restarted (seen
        to end: never revived)."""
        with self._lock:
            for key in [k for k, s in self.sessions.items() if s.kernel_id == kernel_id]:
                del self.sessions[key]
            ids = self.store.active_ids(kernel_id)
            return self._interrupt(ids, f"kernel {kernel_id} (PID {{pid}}) {why}")

    def interrupt_kernels(self, kernel_ids: Sequence[str], why: str) -> list[str]:
        out: list[str] = []
        for kernel_id in kernel_ids:
            out += self.kernel_gone(kernel_id, why)
        return out

    def _interrupt(self, ids: Any, reason: str) -> list[str]:
        ids = sorted(ids)
        if not ids:
            return []
        done = self.store.interrupt(ids, reason)
        self._forget(set(done))
        self._announce(set(done))
        return done

    def _forget(self, ids: set[str]) -> None:
        self._cancelling -= ids
        self._undelivered -= ids
        self._forcing -= ids
        for job_id in ids:
            self._unclaimed.pop(job_id, None)

    def _merge_progress(self, batch: Batch, now: float) -> set[str]:
        """Apply the batch's progress-only rows to the live copies they update, and tell
        the event stream; return the ids of tasks not held, whose rows must be read back.

        Progress rows are most publishes (every 0.2 s per kernel while tasks run), and
        reading them back cost a third or more of such a publish (bench_publish.py); a
        live copy plus these columns is the stored row (``updated_at`` aside: stamped
        here, not at the commit)."""
        stale: set[str] = set()
        stamped = utc(now)
        for row in batch.progress:
            record = self._active.get(row.id)
            if record is None:
                stale.add(row.id)
                continue
            record = self._active[row.id] = replace(
                record,
                task_step=row.task_step,
                status_info=row.status_info,
                percent_complete=row.percent_complete,
                heartbeat_at=stored_utc(row.heartbeat_at),
                updated_at=stamped,
            )
            self.hub.progress(record)
        return stale

    def _announce(self, ids: set[str]) -> None:
        """Refresh the live copies of changed tasks and tell the event stream."""
        if ids:
            self._show(self.store.get_many(sorted(ids)))

    def _show(self, records: list[TaskRecord]) -> None:
        """Hold the active ones of these just-stored records; tell the event stream."""
        for record in records:
            if record.finished:
                self._active.pop(record.id, None)
                self._log_seq.pop(record.id, None)
            else:
                self._active[record.id] = record
            self.hub.task(record)

    def close(self) -> None:
        self.closed = True
        self.hub.close()
        with self._lock:
            self.store.close()


def contents_path(path: str | None, root: str | None) -> str | None:
    """``path`` relative to the contents root (``/``-separated, as the contents API
    and the front end name files) when it is an absolute path under ``root``; other
    paths as they are (an absolute path outside the root has no contents path)."""
    if not path or not root or not os.path.isabs(path):
        return path
    try:
        relative = Path(os.path.normpath(path)).relative_to(Path(os.path.normpath(root)))
    except ValueError:
        return path
    return relative.as_posix()


def _same_kernel(record: TaskRecord, kernel: tuple[str | None, int | None]) -> bool:
    kernel_id, pid = kernel
    if record.kernel_id is not None or kernel_id is not None:
        return record.kernel_id == kernel_id
    return record.pid == pid


def _who(kernel_id: str | None, pid: int | None) -> str:
    """A publisher as messages name it: a kernel, or a script (no kernel id)."""
    return f"kernel {kernel_id} (PID {pid})" if kernel_id else f"the script with PID {pid}"
