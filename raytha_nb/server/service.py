"""The server's task service: the one owner of the DuckDB store, and the rules around it.

Kernels publish batches here (committed at once, so reads never wait for a flush);
users read, cancel and delete. Cancel requests for another kernel's task wait here
until that kernel's next heartbeat collects them. A task already finished in the store
(e.g. marked ``interrupted`` by the reaper) is never overwritten by a late batch.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..model import TERMINAL, LogLine, TaskRecord, utc
from ..store import TASK_COLUMNS, Batch, Store
from .events import EventHub

_STATUS = TASK_COLUMNS.index("status")
_CANCEL = TASK_COLUMNS.index("cancel_requested")
_FINISHED = tuple(s.value for s in TERMINAL)


class TaskStateConflict(RuntimeError):
    """The task is in the wrong state for the request (HTTP 409)."""


@dataclass
class KernelSession:
    """One kernel's publisher as the server last heard from it."""

    session: str
    kernel_id: str | None
    pid: int | None
    last_seen: float
    active: set[str] = field(default_factory=set)
    #: (task id, ts, status) of every history row in its last batch. A batch carries all
    #: of the kernel's unacknowledged rows, so after a lost reply these come again.
    last_events: set[tuple[Any, ...]] = field(default_factory=set)


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
    ) -> None:
        self.store = store
        self.hub = hub
        self.heartbeat_timeout = heartbeat_timeout
        self._clock = clock
        #: Set when the server stops: requests get 503 from then on.
        self.closed = False
        self._lock = threading.RLock()
        self.sessions: dict[str, KernelSession] = {}
        # Active tasks as last stored: GET tasks/{id} reads these without a query.
        self._live: dict[str, TaskRecord] = {}
        # The highest stored log seq of those active tasks that have logged: a kernel's
        # next lines are checked against it without a query.
        self._log_seq: dict[str, int] = {}
        # Tasks someone asked to cancel: all of them get cancel_requested forced on in
        # stored rows until they finish; ``_undelivered`` are not yet sent to their kernel.
        self._cancelling: set[str] = set()
        self._undelivered: set[str] = set()
        # Tasks left active by an earlier server run: deadline for a kernel to claim them.
        self._unclaimed: dict[str, float] = {}
        deadline = clock() + heartbeat_timeout
        for record in store.list_tasks(status=["enqueued", "processing"], limit=None):
            self._unclaimed[record.id] = deadline

    # -- kernels ---------------------------------------------------------------------
    def publish(
        self,
        batch: Batch,
        *,
        session: str,
        kernel_id: str | None,
        pid: int | None,
        active: Sequence[str],
    ) -> list[str]:
        """Commit a kernel's batch and heartbeat; return the ids it must cancel."""
        with self._lock:
            known = self.sessions.get(session)
            if known is None:
                known = self.sessions[session] = KernelSession(session, kernel_id, pid, 0.0)
            known.last_seen = self._clock()
            known.active = set(active)
            for job_id in known.active:
                self._unclaimed.pop(job_id, None)
            finished = self._drop_finished(batch)
            received = {tuple(row[:3]) for row in batch.events}
            batch.events = [row for row in batch.events if tuple(row[:3]) not in known.last_events]
            batch.tasks = [
                (*row[:_CANCEL], True, *row[_CANCEL + 1 :]) if row[0] in self._cancelling else row
                for row in batch.tasks
            ]
            self.store.apply(batch)
            known.last_events = received
            done = {row[0] for row in batch.tasks if row[_STATUS] in _FINISHED}
            self._forget(done)
            # A task finished here (e.g. interrupted) but still alive in the kernel: stop it.
            cancels = (self._undelivered & (known.active | {r[0] for r in batch.tasks})) | (
                finished & known.active
            )
            self._undelivered -= cancels
            # Under the lock, so a concurrent reap cannot leave a stale live copy.
            self._announce(self._merge_progress(batch))
            for job_id, seq, *_ in batch.logs:  # only lines above the stored max are left
                if job_id in self._live:
                    self._log_seq[job_id] = max(seq, self._log_seq.get(job_id, 0))
        return sorted(cancels)

    def _drop_finished(self, batch: Batch) -> set[str]:
        """Remove rows and history of tasks already finished in the store, and log lines
        already stored (a batch re-sent after a lost reply); return the finished ids."""
        ids = sorted(
            {row[0] for rows in (batch.tasks, batch.progress, batch.logs) for row in rows}
            # Active in the store (kept current under the lock): no query needed, which
            # spares the common progress-only publish a round trip to DuckDB.
            - self._live.keys()
        )
        finished = (
            set()
            if not ids
            else {
                row[0]
                for row in self.store.sql(
                    "SELECT id FROM tasks WHERE id IN (SELECT unnest(?)) AND status IN "
                    f"({', '.join('?' * len(_FINISHED))})",
                    [ids, *_FINISHED],
                ).fetchall()
            }
        )
        if finished:
            batch.tasks = [row for row in batch.tasks if row[0] not in finished]
            batch.progress = [row for row in batch.progress if row[0] not in finished]
            batch.events = [row for row in batch.events if row[0] not in finished]
        if batch.logs:
            logged = {row[0] for row in batch.logs}
            unknown = sorted(logged - self._log_seq.keys())
            last = {job_id: self._log_seq[job_id] for job_id in logged - set(unknown)}
            if unknown:
                last.update(
                    self.store.sql(
                        "SELECT task_id, max(seq) FROM task_logs "
                        "WHERE task_id IN (SELECT unnest(?)) GROUP BY task_id",
                        [unknown],
                    ).fetchall()
                )
            batch.logs = [row for row in batch.logs if row[1] > last.get(row[0], 0)]
        return finished

    # -- users -------------------------------------------------------------------------
    def live(self, job_id: str) -> TaskRecord | None:
        """The latest state of an active task, from memory (no query, no thread hop)."""
        return self._live.get(job_id)

    def get(self, job_id: str) -> TaskRecord | None:
        return self._live.get(job_id) or self.store.get(job_id)

    def list_tasks(self, **filters: Any) -> tuple[list[TaskRecord], int]:
        """One page of tasks and the total matching the filters."""
        page = self.store.list_tasks(**filters)
        counted = {k: v for k, v in filters.items() if k not in ("limit", "offset")}
        return page, self.store.count_tasks(**counted)

    def logs(self, job_id: str, since: int, limit: int) -> list[LogLine]:
        return self.store.logs(job_id, since, limit)

    def history(self, job_id: str) -> list[dict[str, Any]]:
        return self.store.history(job_id)

    def cancel(self, job_id: str) -> tuple[bool, TaskRecord | None]:
        """Ask the task's kernel to cancel it; (False, task) if it already finished."""
        with self._lock:
            record = self.store.get(job_id)
            if record is None or record.finished:
                return False, record
            self.store.request_cancel(job_id)
            self._cancelling.add(job_id)
            self._undelivered.add(job_id)
            self._announce({job_id})
        return True, self.get(job_id)

    def delete(self, job_id: str) -> bool:
        """Forget a finished task; False if unknown, TaskStateConflict if still active."""
        with self._lock:
            record = self.store.get(job_id)
            if record is None:
                return False
            if not record.finished:
                raise TaskStateConflict(
                    f"task {record.name} ({job_id}) is {record.status.value}; cancel it and "
                    "wait for it to finish before deleting it"
                )
            self.store.delete(job_id)
            self._live.pop(job_id, None)
        self.hub.deleted(job_id)
        return True

    def delete_finished(self, older_than: float | None = None) -> int:
        """Delete every finished task (completed more than ``older_than`` seconds ago)."""
        where = f"status IN ({', '.join('?' * len(_FINISHED))})"
        params: list[Any] = list(_FINISHED)
        if older_than is not None:
            where += " AND completed_at < make_timestamp(CAST(? AS BIGINT))"
            params.append(int((time.time() - older_than) * 1_000_000))
        ids = [
            row[0]
            for row in self.store.sql(f"SELECT id FROM tasks WHERE {where}", params).fetchall()
        ]
        deleted = 0
        for job_id in ids:
            with self._lock:
                if self.store.delete(job_id):
                    deleted += 1
            self.hub.deleted(job_id)
        return deleted

    def status(self) -> dict[str, Any]:
        from .. import __version__

        return {
            "version": __version__,
            "tasks": {s: self.store.count_tasks(status=s) for s in ("processing", "enqueued")},
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
                del self.sessions[key]
                who = f"kernel {known.kernel_id}" if known.kernel_id else "its process"
                interrupted += self._interrupt(
                    known.active,
                    f"{who} (PID {{pid}}) sent no heartbeat for over "
                    f"{self.heartbeat_timeout:g} s: it died or lost contact with the server",
                )
            owned = set().union(*(s.active for s in self.sessions.values()))
            stale = [i for i, t in self._unclaimed.items() if t < now and i not in owned]
            for job_id in stale:
                del self._unclaimed[job_id]
            interrupted += self._interrupt(
                stale,
                "the Jupyter server restarted and the kernel that ran it (PID {pid}) did "
                f"not reconnect within {self.heartbeat_timeout:g} s",
            )
        return interrupted

    def kernel_gone(self, kernel_id: str, why: str) -> list[str]:
        """Interrupt the active tasks of a kernel the server shut down or restarted."""
        with self._lock:
            for key in [k for k, s in self.sessions.items() if s.kernel_id == kernel_id]:
                del self.sessions[key]
            ids = [
                r.id
                for r in self.store.list_tasks(
                    status=["enqueued", "processing"], kernel_id=kernel_id, limit=None
                )
            ]
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
        done = self.store.interrupt_active(reason, "id IN (SELECT unnest(?))", [ids])
        self._forget(set(done))
        self._announce(set(done))
        return done

    def _forget(self, ids: set[str]) -> None:
        self._cancelling -= ids
        self._undelivered -= ids
        for job_id in ids:
            self._unclaimed.pop(job_id, None)

    def _merge_progress(self, batch: Batch) -> set[str]:
        """Apply the batch's progress-only rows to the live copies they update, and tell
        the event stream; return the ids whose stored row must be read back.

        Progress rows are most publishes (every 0.2 s per kernel while tasks run), and
        reading them back cost a third or more of such a publish (bench_publish.py); a
        live copy plus these columns is the stored row (``updated_at`` aside: stamped
        here, not at the commit)."""
        stale = {row[0] for row in batch.tasks}
        now = utc(time.time())
        for job_id, step, info, percent, heartbeat in batch.progress:
            record = self._live.get(job_id)
            if record is None or job_id in stale:
                stale.add(job_id)
                continue
            record = self._live[job_id] = replace(
                record,
                task_step=step,
                status_info=info,
                percent_complete=percent,
                heartbeat_at=utc(heartbeat),
                updated_at=now,
            )
            if self.hub.listening:
                self.hub.task(record.to_json())
        return stale

    def _announce(self, ids: set[str]) -> None:
        """Refresh the live copies of changed tasks and tell the event stream."""
        if not ids:
            return
        for record in self.store.get_many(sorted(ids)):
            if record.finished:
                self._live.pop(record.id, None)
                self._log_seq.pop(record.id, None)
            else:
                self._live[record.id] = record
            if self.hub.listening:
                self.hub.task(record.to_json())

    def close(self) -> None:
        self.closed = True
        self.hub.close()
        with self._lock:
            self.store.close()
