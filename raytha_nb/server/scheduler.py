"""The server's own timer: schedules fire into the server's workers, no kernel needed.

One thread sleeps on a condition until the earliest schedule is due (a heap of due
times; a change wakes it at once), then starts the run: an ordinary ``executor="server"``
task (:meth:`ServerWorkers.submit`) carrying its ``schedule_id``. A function schedule's
body was pickled once, by the kernel that made it (or, for ``module:function``, is a
call that imports it in the worker), and lies beside the store as ``<id>.pickle``; a
notebook schedule's runs are notebook jobs. Overlaps follow ``overlap`` ("skip":
recorded as skipped; "queue": runs of the schedule wait for each other; "allow"),
runs missed while the server was down follow ``misfire`` ("once", "skip", "all").
Every state change is stored in DuckDB at once, so schedules survive restarts.
"""

from __future__ import annotations

import functools
import heapq
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cloudpickle

from .. import _notebook_job, _retry
from .._schedule import MAX_CATCH_UP, ScheduleSpec, check_ref, run_ref, to_json
from ..errors import ProtocolError
from ..model import TaskRecord
from ..protocol import ServerTask
from .service import TaskService
from .workers import ServerWorkers

#: Longest sleep between looks at the heap: a wall-clock jump is noticed within it.
_MAX_SLEEP = 30.0
#: Seconds past due after which a due time that was not fired counts as missed
#: (``misfire`` applies), rather than firing late.
LATE = 60.0


@dataclass
class _Entry:
    """One schedule in memory: its definition, its state (as stored), its run template."""

    spec: ScheduleSpec
    state: dict[str, Any]
    #: A function schedule's ServerTask JSON (interpreter, directory, sys.path, sources).
    template: dict[str, Any] | None


class Scheduler:
    """The schedules of this server's store and the thread that fires them."""

    def __init__(
        self,
        service: TaskService,
        workers: ServerWorkers,
        folder: Path,
        root_dir: str,
        log: logging.Logger,
    ) -> None:
        self.service = service
        self.store = service.store
        self.workers = workers
        self.folder = folder
        self.root_dir = root_dir
        self.log = log
        self._cond = threading.Condition(threading.RLock())
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[float, str]] = []
        self._stopping = False
        self._thread: threading.Thread | None = None
        # Runs handed to the launcher and not yet stored, per schedule (overlap="skip").
        self._inflight: defaultdict[str, int] = defaultdict(int)
        self._launcher = ThreadPoolExecutor(1, thread_name_prefix="raytha-nb-schedule-runs")
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    # -- life --------------------------------------------------------------------------
    def start(self) -> None:
        """Load the stored schedules, apply ``misfire`` to runs missed while the server
        was down, and start the timer thread."""
        with self._cond:
            for row in self.store.schedules():
                entry = _entry(row)
                self._entries[entry.state["id"]] = entry
            now = time.time()
            for entry in list(self._entries.values()):
                due = entry.state["next_run"]
                if not entry.state["paused"] and due is not None and due <= now:
                    self._missed(entry, due, now)
                self._push(entry)
        self._thread = threading.Thread(target=self._run, name="raytha-nb-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(5)
        self._launcher.shutdown(wait=True)  # runs already due are stored, then started

    def _run(self) -> None:
        with self._cond:
            while not self._stopping:
                now = time.time()
                while self._heap and self._heap[0][0] <= now:
                    due, schedule_id = heapq.heappop(self._heap)
                    entry = self._entries.get(schedule_id)
                    if entry is None or entry.state["paused"] or entry.state["next_run"] != due:
                        continue  # deleted, paused or moved since it was pushed
                    try:
                        self._fire(entry, due)
                    except Exception:  # the timer goes on for the other schedules
                        self.log.exception("raytha_nb: schedule %s could not fire", schedule_id)
                        self._advance(entry, time.time())
                        self._push(entry)
                wait = _MAX_SLEEP if not self._heap else self._heap[0][0] - time.time()
                if wait > 0:
                    self._cond.wait(min(wait, _MAX_SLEEP))

    def _push(self, entry: _Entry) -> None:
        due = entry.state["next_run"]
        if due is not None and not entry.state["paused"]:
            heapq.heappush(self._heap, (due, entry.state["id"]))
            self._cond.notify_all()

    # -- firing ------------------------------------------------------------------------
    def _fire(self, entry: _Entry, due: float) -> None:
        """A due time came: start a run (or skip it, as ``overlap`` says), then set the
        next due time. One that is already past (a slow start of the run) fires at once;
        one more than LATE past (the machine slept) counts as missed, as after a stop."""
        sid = entry.state["id"]
        if entry.spec.overlap == "skip" and self._busy(sid):
            self._skip(entry, due, "skipped: the previous run was still running")
        else:
            self._start_run(entry, due, "due")
        following = entry.spec.rule.next_after(due, entry.state["created_at"])
        entry.state["next_run"] = following
        now = time.time()
        if following is not None and following < now - LATE:
            self._missed(entry, following, now)
        else:
            self._save(entry)
        self._push(entry)

    def _missed(self, entry: _Entry, first: float, now: float) -> None:
        """Runs fell due while the server was down: ``misfire`` says what to do."""
        dues = entry.spec.rule.due_between(first, now, entry.state["created_at"])
        what = f"{len(dues)}{'+' if len(dues) >= MAX_CATCH_UP else ''} run(s) fell due while "
        what += "the server was down"
        misfire = entry.spec.misfire
        try:
            if misfire == "skip" or not dues:
                reason = f"missed: {what} (misfire='skip')"
                self._skip(entry, first, reason, event="missed", count=len(dues))
            elif misfire == "once":
                if entry.spec.overlap == "skip" and self._busy(entry.state["id"]):
                    self._skip(entry, dues[-1], f"missed: {what}; the previous run still runs")
                else:
                    self._start_run(entry, dues[-1], f"catch-up: {what} (misfire='once')")
            else:
                for due in dues:
                    self._start_run(entry, due, f"catch-up: {what} (misfire='all')")
        except Exception:
            self.log.exception("raytha_nb: schedule %s: catch-up failed", entry.state["id"])
        self._advance(entry, now)
        self._save(entry)

    def _skip(
        self,
        entry: _Entry,
        due: float | None,
        reason: str,
        event: str = "skipped",
        count: int = 1,
    ) -> None:
        entry.state["skipped"] += count
        self.store.add_schedule_event(entry.state["id"], due, event, None, reason)

    def _start_run(self, entry: _Entry, due: float | None, reason: str) -> None:
        """Hand one run to the launcher thread: starting its worker process (a fork of
        this server, 0.1 to 1 s on a loaded machine) takes the timer no time."""
        self._inflight[entry.state["id"]] += 1
        self._launcher.submit(self._launch, entry, due, reason, time.time(), True)

    def _launch(
        self, entry: _Entry, due: float | None, reason: str, fired: float, background: bool
    ) -> TaskRecord | None:
        """Submit one run to the server's workers (not under the lock) and record it
        (``ts``: when it fired). In the background a run that cannot start (its
        interpreter or notebook is gone) is recorded as skipped, saying why."""
        sid = entry.state["id"]
        task: ServerTask | None = None
        try:
            task, payload = self._server_task(entry)
            record = self.workers.submit(task, payload)
        except Exception as exc:
            if task is not None:  # its stored body, for a retry that cannot come
                _retry.body_path(self.service.results_dir, task.id).unlink(missing_ok=True)
            with self._cond:
                self._inflight[sid] -= 1
                if not background:
                    raise
                self.log.warning("raytha_nb: schedule %s: its run could not start: %s", sid, exc)
                if sid in self._entries:
                    self._skip(entry, due, f"skipped: the run could not start: {exc}")
                    self._save(entry)
            return None
        with self._cond:
            self._inflight[sid] -= 1
            entry.state["runs"] += 1
            entry.state["last_task_id"] = record.id
            entry.state["last_run_at"] = fired
            self.store.add_schedule_event(sid, due, "run", record.id, reason, fired)
            if sid in self._entries:
                self._save(entry)
        return record

    def _busy(self, schedule_id: str) -> bool:
        """Whether a run of the schedule is being started, waits or runs."""
        return bool(self._inflight[schedule_id] or self.store.active_runs(schedule_id))

    def _server_task(self, entry: _Entry) -> tuple[ServerTask, bytes]:
        """The next run's task and body."""
        spec, sid = entry.spec, entry.state["id"]
        options = dict(spec.options)
        if spec.overlap == "queue":
            options["limit"] = 1  # runs of one schedule share its name: one at a time
        if spec.kind == "notebook":
            given = {k: v for k, v in options.items() if k in _notebook_job.OPTIONS}
            task, payload = _notebook_job.notebook_server_task(
                spec.task, spec.args, name=spec.name, options=given, root_dir=self.root_dir,
                schedule_id=sid,
            )  # fmt: skip
        else:
            assert entry.template is not None
            task = replace(
                ServerTask.from_json(entry.template), id=str(uuid.uuid4()),
                created_at=time.time(), options={**options, "schedule_id": sid},
            )  # fmt: skip
            payload = self._body(sid).read_bytes()
        stored = _retry.StoredBody(payload, task.python, task.cwd, task.sys_path)
        _retry.write_body(self.service.results_dir, task.id, stored)  # rnb.retry(run) works
        return task, payload

    def _advance(self, entry: _Entry, now: float) -> None:
        entry.state["next_run"] = entry.spec.rule.next_after(now, entry.state["created_at"])

    def _save(self, entry: _Entry) -> None:
        keys = ("id", "paused", "next_run", "runs", "skipped", "last_task_id", "last_run_at")
        self.store.save_schedule_state({k: entry.state[k] for k in keys})
        self.service.hub.schedule(self._json(entry))

    def _json(self, entry: _Entry) -> dict[str, Any]:
        last = entry.state["last_task_id"]
        record = None if last is None else self.service.get(last)
        return to_json(entry.spec, entry.state, None if record is None else record.status.value)

    def _body(self, schedule_id: str) -> Path:
        return self.folder / f"{schedule_id}.pickle"

    # -- what handlers call (blocking: on the store's threads) -------------------------
    def create(
        self, spec: ScheduleSpec, template: Any = None, payload: bytes | None = None
    ) -> dict[str, Any]:
        """Store a new schedule and set its timer. A function schedule from a kernel
        brings its run template (a ServerTask's JSON) and pickled body; a
        ``module:function`` one from REST gets a body that imports it in the worker.
        ``ValueError`` naming the field when something is wrong; nothing is stored then."""
        sid = str(uuid.uuid4())
        if spec.kind == "notebook":
            info = _notebook_job.check_notebook(spec.task, root_dir=self.root_dir, field="task")
            _notebook_job.check_parameters(spec.args)
            contents = info.path.relative_to(Path(self.root_dir).resolve()).as_posix()
            spec = replace(spec, task=contents)
            template_json = None
        else:
            if template is None:
                check_ref(spec.task)
                payload = cloudpickle.dumps(functools.partial(run_ref, spec.task))
                template_json = ServerTask(
                    sid, spec.name, spec.task, spec.args, sys.executable, self.root_dir,
                    (self.root_dir,), None, 0.0, {}, {},
                ).to_json()  # fmt: skip
            else:
                try:
                    task = ServerTask.from_json(template)
                except ProtocolError as exc:
                    raise ValueError(f"task: {exc}") from None
                _check_runnable(task)
                template_json = replace(task, id=sid, options={}).to_json()
            assert payload is not None
            _write(self._body(sid), payload)
        # Whole microseconds, as the store keeps times: what is read back after a
        # restart is then exactly what was shown before it.
        now = round(time.time() * 1_000_000) / 1_000_000
        state = {
            "id": sid, "paused": False, "created_at": now,
            "next_run": spec.rule.next_after(now, now), "runs": 0, "skipped": 0,
            "last_task_id": None, "last_run_at": None,
        }  # fmt: skip
        entry = _Entry(spec, state, template_json)
        row = {**spec.to_json(), **state}
        row.update(
            start_at=spec.start_at, end_at=spec.end_at, args=json.dumps(spec.args),
            options=json.dumps(spec.options),
            spec=None if template_json is None else json.dumps(template_json),
        )  # fmt: skip
        try:
            self.store.add_schedule(row)
        except BaseException:
            self._body(sid).unlink(missing_ok=True)
            raise
        with self._cond:
            self._entries[sid] = entry
            self._push(entry)
        data = self._json(entry)
        self.service.hub.schedule(data)
        return data

    def list_schedules(self) -> list[dict[str, Any]]:
        with self._cond:
            entries = list(self._entries.values())
        return [self._json(entry) for entry in entries]

    def get(self, schedule_id: str) -> dict[str, Any] | None:
        entry = self._entries.get(schedule_id)
        return None if entry is None else self._json(entry)

    def pause(self, schedule_id: str) -> dict[str, Any] | None:
        with self._cond:
            entry = self._entries.get(schedule_id)
            if entry is None:
                return None
            if not entry.state["paused"]:
                entry.state["paused"] = True
                self._save(entry)
            return self._json(entry)

    def resume(self, schedule_id: str) -> dict[str, Any] | None:
        """Fire again from now on (no catch-up for the time it was paused)."""
        with self._cond:
            entry = self._entries.get(schedule_id)
            if entry is None:
                return None
            if entry.state["paused"]:
                entry.state["paused"] = False
                self._advance(entry, time.time())
                self._save(entry)
                self._push(entry)
            return self._json(entry)

    def trigger(self, schedule_id: str) -> tuple[dict[str, Any], TaskRecord] | None:
        """Run now (also when paused or ended); its timer stays as it was."""
        with self._cond:
            entry = self._entries.get(schedule_id)
            if entry is None:
                return None
            self._inflight[schedule_id] += 1
        record = self._launch(entry, None, "triggered by hand", time.time(), False)
        assert record is not None  # not in the background: a failure raised
        return self._json(entry), record

    def delete(self, schedule_id: str) -> bool:
        """Remove the schedule (its runs stay, as tasks)."""
        with self._cond:
            if self._entries.pop(schedule_id, None) is None:
                return False
            self.store.delete_schedule(schedule_id)
            self._body(schedule_id).unlink(missing_ok=True)
        self.service.hub.schedule_deleted(schedule_id)
        return True

    def events(self, schedule_id: str, limit: int = 100) -> list[dict[str, Any]] | None:
        """The schedule's latest firings (runs, skips), newest first; None if unknown."""
        if schedule_id not in self._entries:
            return None
        return self.store.schedule_events(schedule_id, limit)


def _entry(row: dict[str, Any]) -> _Entry:
    """A stored schedule row as an entry (the definition was checked when stored)."""
    spec = ScheduleSpec(
        row["name"], row["task"], row["kind"], row["args"], row["cron"], row["every"],
        row["tz"], row["start_at"], row["end_at"], row["overlap"], row["misfire"],
        row["options"] or {},
    )  # fmt: skip
    keys = ("id", "paused", "created_at", "next_run", "runs", "skipped", "last_task_id",
            "last_run_at")  # fmt: skip
    return _Entry(spec, {key: row[key] for key in keys}, row["spec"])


def _check_runnable(task: ServerTask) -> None:
    """The interpreter and directory the runs need exist here (as workers.submit checks
    each run), so a schedule never stored fails at its every run."""
    python = task.python
    if not os.path.isabs(python) or not os.path.isfile(python) or not os.access(python, os.X_OK):
        raise ValueError(f"task.python must be an executable file's path, not {python!r}")
    if not os.path.isdir(task.cwd):
        raise ValueError(f"task.cwd {task.cwd!r} is not a directory on the server")


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
