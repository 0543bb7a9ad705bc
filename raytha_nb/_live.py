"""In-memory live state of one task this process runs; the publisher flushes it in bulk.

Progress calls only assign attributes and bump ``version`` (no lock: the GIL makes
each assignment atomic), so ``report()`` never waits for the store. Status changes
are rare and take the task's lock so that a terminal state is never overwritten.

A ``LiveTask`` holds the task's state and nothing about where it is sent: the
publisher keeps its own flush cursors. Two hooks let the others hear of changes
without the task knowing them: ``on_change`` (the publisher: something to flush) and
``on_cancel`` (the executor running it: a cancel to enforce); ``on_status`` (the flow:
a status change, e.g. an end that lets its continuations and the next of its name go).

Retries and timeouts are decided in :meth:`LiveTask.transition`, under the lock: a
failed attempt with attempts left becomes ``scheduled`` (the failure kept in its
history) instead of ``error``, so no reader ever sees it end; a task cancelled because
its timeout passed ends ``error`` with ``TaskTimeout`` (and may be retried).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ._options import TaskOptions
from .model import TERMINAL, LogLine, TaskRecord, TaskStatus, clean_text, dumps, utc
from .protocol import HistoryRow, ProgressRow, TaskRow

#: Log lines kept in memory per task for live readers; older ones are in the store.
LOG_TAIL = 2_000
#: Unsent log lines a task may hold before a line it prints waits for the publisher
#: (backpressure: a task printing as fast as it can runs at the store's pace, and the
#: kernel's memory stays bounded, ~100 bytes a line, instead of lines being dropped).
LOG_OUTBOX = 100_000
#: Seconds a printing thread waits for room before the oldest unsent lines are dropped
#: (only when the store takes no writes at all: e.g. a server gone for that long).
LOG_WAIT = 30.0


#: Where a task waits before it runs: a cancel there ends it at once.
_WAITING = frozenset({TaskStatus.SCHEDULED, TaskStatus.AWAITING, TaskStatus.ENQUEUED})


#: Every task's log tail and outbox until its first line (_open_log): shared, and never
#: written (a deque of length 0 drops what is appended).
_NO_TAIL: deque[tuple[int, float, str, str]] = deque(maxlen=0)
_NO_LINES: list[tuple[int, float, str, str]] = []


def _json(value: Any) -> str | None:
    return None if value is None else dumps(value)


class LiveTask:
    """The mutable state of one task owned by this process."""

    #: History rows for its end only (and failed attempts), not each status change: a
    #: map's children, whose row has their status and whose group counts them.
    ENDS_ONLY = False

    __slots__ = (
        "args", "args_json", "attempt", "cancel_requested", "checkpoint", "checkpoint_version",
        "committed",
        "completed_at", "created_at", "depends_on", "error_message", "error_type", "executor",
        "group_id", "history", "id", "kernel_id", "lock", "log_seq", "logs", "logs_dropped",
        "name", "notebook", "on_cancel", "on_change", "on_status", "options", "outbox",
        "percent_complete", "pid", "resume", "retry_of", "room", "result", "result_kind",
        "row_version", "schedule_id", "scheduled_for", "started_at", "status", "status_info",
        "task", "task_step", "timed_out", "traceback", "version", "waiter", "worker",
    )  # fmt: skip

    def __init__(
        self,
        job_id: str,
        name: str,
        task: str,
        args: Any,
        *,
        kernel_id: str | None,
        notebook: str | None,
        pid: int,
        executor: str = "thread",
        options: TaskOptions | None = None,
    ) -> None:
        self.id = job_id
        self.name = name
        self.task = task
        self.args = args
        self.args_json = dumps(args)
        self.status = TaskStatus.ENQUEUED
        self.task_step = 0
        self.status_info: str | None = None
        self.percent_complete = 0.0
        self.error_type: str | None = None
        self.error_message: str | None = None
        self.traceback: str | None = None
        self.result: Any = None  # the stored form: a JSON value or a file descriptor
        self.result_kind: str | None = None
        self.created_at = time.time()
        self.started_at: float | None = None
        self.completed_at: float | None = None
        self.kernel_id = kernel_id
        self.notebook = notebook
        self.pid = pid
        self.cancel_requested = False
        self.executor = executor
        #: The worker running it, once one does ("thread raytha-nb-worker-2", "pid 1234").
        self.worker: str | None = None
        self.options = options or TaskOptions()
        self.attempt = 1
        self.scheduled_for: float | None = self.options.not_before
        self.depends_on = list(self.options.after) or None
        self.group_id = self.options.group_id
        self.retry_of = self.options.retry_of
        self.schedule_id = self.options.schedule_id
        #: The last checkpoint (stored), and what the running attempt resumes from.
        self.checkpoint: Any = None
        self.checkpoint_version = 0  # bumped by each checkpoint(); the publisher sends 1/s
        self.resume: Any = self.options.resume
        #: Set when the timeout cancelled it: its end is a TaskTimeout error.
        self.timed_out = False
        #: Called (outside the lock) after each status change, with the task.
        self.on_status: Callable[[LiveTask], None] | None = None
        # Bumped by every change; progress reports bump only this (the publisher scans
        # running tasks), to keep report() to attribute assignments.
        self.version = 1
        # Bumped by changes that need the whole row written (new task, status, cancel);
        # otherwise a flush sends only the narrow progress columns.
        self.row_version = 1
        #: Called (outside the lock) after a change that is more than progress.
        self.on_change: Callable[[LiveTask], None] | None = None
        #: Called when a running task is asked to cancel (once, and again with
        #: ``force=True``): its executor enforces it.
        self.on_cancel: Callable[[LiveTask, bool], None] | None = None
        self.lock = threading.Lock()
        # True once the terminal state is committed: wait() returns only then. The
        # Event is made only when someone waits (most tasks are never waited on).
        self.committed = False
        self.waiter: threading.Event | None = None
        # Status changes, in order (a handful per task; progress samples are the
        # publisher's): history rows it has not yet sent are those past its cursor.
        first = self.waiting()
        self.status = first
        self.history: list[HistoryRow] = (
            [] if self.ENDS_ONLY else [HistoryRow(job_id, self.created_at, first.value, 0, 0.0)]
        )
        # The last LOG_TAIL lines, for live readers; and the lines not yet handed to the
        # publisher, which takes them (take_logs) and owns them until they are stored.
        # All three made by the first add_log() (_open_log): most tasks never log, and
        # a map's 100,000 children would hold 300,000 more objects for the GC to walk.
        self.logs: deque[tuple[int, float, str, str]] = _NO_TAIL
        self.outbox: list[tuple[int, float, str, str]] = _NO_LINES
        self.room: threading.Condition | None = None
        self.logs_dropped = 0
        self.log_seq = 0

    # -- progress: the hot path ------------------------------------------------
    def report(
        self, percent: float | None = None, info: str | None = None, step: int | None = None
    ) -> None:
        if self.status in TERMINAL:
            # A task thread still running after its task ended (interrupted at exit,
            # forced cancel pending) must not overwrite the final state's info.
            return
        if percent is not None:
            self.percent_complete = percent
        if info is not None:
            self.status_info = info
        if step is not None:
            self.task_step = step
        self.version += 1

    def set_checkpoint(self, state: Any) -> None:
        """Keep ``state`` (JSON-able) as the task's checkpoint; stored within a second."""
        self.checkpoint = state
        self.checkpoint_version += 1
        self.version += 1
        hook = self.on_change
        if hook is not None:
            hook(self)

    def mark(self, row: bool = True) -> None:
        """Flag a change the publisher must send even if the task is not running;
        ``row``: the change is more than progress, so write the whole row."""
        if row:
            self.row_version += 1
        self.version += 1
        hook = self.on_change
        if hook is not None:
            hook(self)

    # -- status changes ----------------------------------------------------------
    def waiting(self) -> TaskStatus:
        """What it waits for before it may run: other tasks, a time, or nothing."""
        if self.depends_on:
            return TaskStatus.AWAITING
        if self.scheduled_for is not None and self.scheduled_for > time.time():
            return TaskStatus.SCHEDULED
        return TaskStatus.ENQUEUED

    def transition(
        self,
        status: TaskStatus,
        *,
        only_from: TaskStatus | frozenset[TaskStatus] | None = None,
        error_mro: list[str] | None = None,
        **fields: Any,
    ) -> bool:
        """Move to ``status`` unless already finished (or, with ``only_from``, unless in
        another state: checked under the lock); False if the change was refused.
        ``error_mro``: with ``ERROR``, the exception's classes, for ``retry_on``."""
        allowed = (only_from,) if isinstance(only_from, TaskStatus) else only_from
        with self.lock:
            if self.status in TERMINAL or (allowed is not None and self.status not in allowed):
                return False
            now = time.time()
            if status is TaskStatus.CANCELLED and self.timed_out:
                status, fields = TaskStatus.ERROR, self._timeout_error()
                error_mro = ["raytha_nb.errors.TaskTimeout", "Exception", "BaseException", "object"]
            if status is TaskStatus.PROCESSING:
                self.started_at = now
                if self.attempt > 1:  # a new attempt: the last one's failure is history
                    self.error_type = self.error_message = self.traceback = None
                    self.status_info = None
            elif status is TaskStatus.ERROR and self._retry(now, error_mro or [], fields):
                status = TaskStatus.SCHEDULED
            elif status in TERMINAL:
                self.completed_at = now
            for key, value in fields.items():
                setattr(self, key, value)
            self.status = status
            if status in TERMINAL or not self.ENDS_ONLY:
                self.history.append(HistoryRow(self.id, now, status.value, *self.reported()))
            self.row_version += 1
            self.version += 1
        hook = self.on_change
        if hook is not None:
            hook(self)
        follow = self.on_status
        if follow is not None:
            follow(self)
        return True

    def _timeout_error(self) -> dict[str, Any]:
        seconds = self.options.timeout or 0
        message = f"ran longer than {seconds:g} s (timeout={seconds:g})"
        return {
            "error_type": "raytha_nb.TaskTimeout",
            "error_message": message,
            "traceback": f"raytha_nb.TaskTimeout: {message}\n",
            "status_info": message,
        }

    def _retry(self, now: float, mro: list[str], fields: dict[str, Any]) -> bool:
        """Under the lock, for a failed attempt: if attempts are left and the error is
        one to retry (never a cancel), record the failure in the history and schedule
        the next attempt; False to end the task ``error``."""
        options = self.options
        if self.attempt >= options.max_attempts or (self.cancel_requested and not self.timed_out):
            return False
        if not options.retries_for(mro, fields.get("error_type")):
            return False
        delay = options.delay_for(self.attempt)
        error = {
            "attempt": self.attempt,
            "error_type": fields.get("error_type"),
            "error_message": fields.get("error_message"),
            "traceback": fields.get("traceback"),
        }
        what = f"{error['error_type']}: {error['error_message']}"
        self.history.append(
            HistoryRow(self.id, now, "error", *self.reported()[:2], what, dumps(error))
        )
        self.attempt += 1
        self.resume = self.checkpoint  # the next attempt starts where this one got to
        self.scheduled_for = now + delay
        self.cancel_requested = self.timed_out = False
        self.started_at = None
        fields.clear()
        fields["status_info"] = (
            f"attempt {self.attempt - 1} failed ({what:.200}); attempt {self.attempt} of "
            f"{options.max_attempts} in {delay:.3g} s"
        )
        fields["percent_complete"] = 0.0
        fields["task_step"] = 0
        return True

    def request_cancel(self, force: bool = False) -> bool:
        """Cancel this task: a queued one ends at once, a running one is asked to stop
        (``on_cancel`` lets its executor force it later, or at once with ``force``);
        False if it already finished."""
        if self.transition(
            TaskStatus.CANCELLED,
            only_from=_WAITING,
            status_info="cancelled before it started",
        ):
            return True
        with self.lock:
            if self.status is not TaskStatus.PROCESSING:
                return False
            first = not self.cancel_requested
            self.cancel_requested = True
        self.mark()
        hook = self.on_cancel
        if (first or force) and hook is not None:
            hook(self, force)
        return True

    def ended_at(self, version: int) -> bool:
        """Whether this task has ended and ``version`` is still its latest, read together
        under the lock: a transition sets the status before it bumps the version, so
        unlocked reads can pair the new status with the old version (the row sent for
        that version is not the final one)."""
        with self.lock:
            return self.status in TERMINAL and self.version == version

    def set_committed(self) -> None:
        with self.lock:
            self.committed = True
            if self.waiter is not None:
                self.waiter.set()

    def wait_committed(self, timeout: float | None) -> bool:
        with self.lock:
            if self.committed:
                return True
            if self.waiter is None:
                self.waiter = threading.Event()
            waiter = self.waiter
        return waiter.wait(timeout)

    def add_log(self, stream: str, text: str) -> int:
        """Append a line; waits while LOG_OUTBOX lines are unsent (see LOG_WAIT)."""
        text = clean_text(text)
        with self.lock:
            room = self.room or self._open_log()
            if len(self.outbox) >= LOG_OUTBOX and not room.wait_for(
                lambda: len(self.outbox) < LOG_OUTBOX, LOG_WAIT
            ):
                self._drop_unsent()
            self.log_seq += 1
            line = (self.log_seq, time.time(), stream, text)
            self.logs.append(line)
            self.outbox.append(line)
            seq = self.log_seq
        self.mark(row=False)
        return seq

    def _drop_unsent(self) -> None:
        """The store took nothing for LOG_WAIT seconds: drop the older half of the
        unsent lines and say so in the task's own log and status (under the lock)."""
        dropped = self.outbox[: LOG_OUTBOX // 2]
        del self.outbox[: LOG_OUTBOX // 2]
        self.logs_dropped += len(dropped)
        first, last = dropped[0][0], dropped[-1][0]
        note = (
            f"[raytha_nb] log lines {first}-{last} were dropped: the task store took no "
            f"writes for {LOG_WAIT:g} s ({self.logs_dropped:,} lines lost so far)"
        )
        self.status_info = note
        self.log_seq += 1
        line = (self.log_seq, time.time(), "log", note)
        self.logs.append(line)
        self.outbox.append(line)

    def _open_log(self) -> threading.Condition:
        """The first line (under the lock): the tail, the outbox and their Condition."""
        self.logs = deque(maxlen=LOG_TAIL)
        self.outbox = []
        self.room = threading.Condition(self.lock)
        return self.room

    def take_logs(self, limit: int) -> list[tuple[int, float, str, str]]:
        """Hand up to ``limit`` unsent lines to the publisher, oldest first."""
        if not self.outbox:
            return []
        with self.lock:
            taken = self.outbox[:limit]
            del self.outbox[:limit]
            if self.room is not None:
                self.room.notify_all()
        return taken

    def log_tail(self, since: int = 0) -> list[LogLine]:
        with self.lock:
            lines = [line for line in self.logs if line[0] > since]
        return [LogLine(self.id, seq, utc(ts), stream, text) for seq, ts, stream, text in lines]  # type: ignore[arg-type]

    def row(self, now: float) -> TaskRow:
        """The whole task as the wire protocol carries it (``_make``: a third of what
        the 32 arguments of ``TaskRow(...)`` cost, once per task a flush sends).

        Read under the lock, so the row is one state: unlocked, a thread switch between
        reading the progress and the status let a fast task end meanwhile, and the row
        said ``complete`` at 0 %; a server keeps the first final row it stores."""
        with self.lock:
            step, pct, info = self.reported()
            return TaskRow._make((
                self.id, clean_text(self.name), clean_text(self.task), self.args_json,
                self.status.value, step, info, pct, _text(self.error_type),
                _text(self.error_message), _text(self.traceback),
                None if self.result_kind is None else dumps(self.result),
                self.result_kind, self.created_at, self.started_at, self.completed_at,
                now if self.status is TaskStatus.PROCESSING else None,
                self.kernel_id, _text(self.notebook), self.pid, self.cancel_requested,
                self.executor, self.worker, self.attempt, self.options.max_attempts,
                self.scheduled_for, _json(self.depends_on), self.group_id, self.retry_of,
                _json(self.checkpoint), self.options.stored, self.schedule_id,
            ))  # fmt: skip

    def reported(self) -> tuple[int, float, str | None]:
        """(task_step, percent_complete, status_info) as stored and shown, whatever
        report() was handed: report() stays a few attribute stores, so a bad value (a
        str or NaN percent, a number as info) is made sane here, where a flush reads
        it, instead of failing every flush of this kernel."""
        return _step(self.task_step), _percent(self.percent_complete), _info(self.status_info)

    def progress_row(self, now: float) -> ProgressRow:
        """Just the progress."""
        step, pct, info = self.reported()
        return ProgressRow(self.id, step, info, pct, now)

    def snapshot(self) -> TaskRecord:
        """The task as readers see it, read under the lock as :meth:`row` is."""
        with self.lock:
            step, pct, info = self.reported()
            now = utc(time.time())
            return TaskRecord(
                id=self.id,
                name=self.name,
                task=self.task,
                args=self.args,
                status=self.status,
                task_step=step,
                status_info=info,
                percent_complete=pct,
                error_type=self.error_type,
                error_message=self.error_message,
                traceback=self.traceback,
                result=self.result,
                result_kind=self.result_kind,
                created_at=utc(self.created_at),
                started_at=utc(self.started_at),
                completed_at=utc(self.completed_at),
                heartbeat_at=now,
                updated_at=now,
                kernel_id=self.kernel_id,
                notebook=self.notebook,
                pid=self.pid,
                cancel_requested=self.cancel_requested,
                executor=self.executor,
                worker=self.worker,
                attempt=self.attempt,
                max_attempts=self.options.max_attempts,
                scheduled_for=utc(self.scheduled_for),
                depends_on=self.depends_on,
                group_id=self.group_id,
                retry_of=self.retry_of,
                checkpoint=self.checkpoint,
                options=self.options.public(),
                schedule_id=self.schedule_id,
            )


def run_columns(lives: Sequence[LiveTask]) -> dict[str, list[Any]]:
    """:data:`~raytha_nb.protocol.RUN_COLUMNS` of many finished tasks, as
    :meth:`LiveTask.row` has them, a list per column (a map's ended children: no
    tuple per task for the cyclic GC to count). Read without the tasks' locks: a
    finished task's state no longer changes. ``tests/test_groups.py`` checks that
    the two agree."""
    reported = [live.reported() for live in lives]
    return {
        "status": [live.status.value for live in lives],
        "task_step": [r[0] for r in reported],
        "status_info": [r[2] for r in reported],
        "percent_complete": [r[1] for r in reported],
        "error_type": [_text(live.error_type) for live in lives],
        "error_message": [_text(live.error_message) for live in lives],
        "traceback": [_text(live.traceback) for live in lives],
        "result": [None if live.result_kind is None else dumps(live.result) for live in lives],
        "result_kind": [live.result_kind for live in lives],
        "started_at": [live.started_at for live in lives],
        "completed_at": [live.completed_at for live in lives],
        "heartbeat_at": [None] * len(lives),  # (written for running tasks only)
        "cancel_requested": [live.cancel_requested for live in lives],
        "worker": [live.worker for live in lives],
        "attempt": [live.attempt for live in lives],
        "scheduled_for": [live.scheduled_for for live in lives],
        "checkpoint": [_json(live.checkpoint) for live in lives],
    }


def _percent(value: Any) -> float:
    try:
        pct = float(value)
    except (TypeError, ValueError):
        return 0.0
    return min(max(pct, 0.0), 100.0) if pct == pct else 0.0  # NaN != NaN


def _step(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return 0


def _info(value: Any) -> str | None:
    return None if value is None else clean_text(str(value))


def _text(value: str | None) -> str | None:
    return None if value is None else clean_text(value)
