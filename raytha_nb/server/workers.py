"""Tasks the server runs (``executor="server"``) in worker processes it supervises.

A kernel hands over a task (``POST kernel-api/server-tasks``: a :class:`ServerTask`
and the body as cloudpickle bytes). The server stores it ``enqueued``, keeps the spec
and body in files beside the store, and starts ``python -m raytha_nb._server_worker``
with the kernel's interpreter in the notebook's directory, at most ``size`` at once
(the rest wait, FIFO). The worker publishes like a kernel, with a secret of its own
(:func:`~raytha_nb._identity.worker_token`), so the task outlives the kernel that
started it. Each worker runs in a session of its own, so a server stopping (or a
Ctrl+C in its terminal) does not stop it: it reconnects to the restarted server,
which also starts the tasks still waiting.

Here a thread per worker waits for its process: one that ends while its task is still
active died (a crash, an out-of-memory kill) and leaves the task ``error`` with the
reason and the worker's last output. A cancel reaches the worker cooperatively (its
next heartbeat, every 0.1 s), the worker forces it in the task's thread after
``grace``, and its process group is killed ``KILL_MARGIN`` later (at once with
``force``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections import defaultdict, deque
from pathlib import Path

from .. import _notebook_job
from .._identity import ENV_DB, ENV_TOKEN, ENV_WORKER, worker_token
from ..errors import ProtocolError
from ..model import TaskRecord, TaskStatus
from ..protocol import ServerTask, TaskRow
from .service import TaskService

#: Bytes of a dead worker's own output quoted in its task's error.
_TAIL = 2000
#: Seconds after the grace period before a cancelled task's worker is killed: the
#: worker first raises TaskCancelled in the task's thread itself at the grace period
#: (a clean end, logs kept); only a task stuck in a C call needs the kill.
KILL_MARGIN = 0.5


#: Statuses of a server task that has not started: held here, or waiting for a worker.
_WAITING = (TaskStatus.SCHEDULED, TaskStatus.AWAITING, TaskStatus.ENQUEUED)
#: Seconds between looks at held tasks' parents, and the longest sleep while holding.
_PARENT_POLL = 0.25
_HOLD_SLEEP = 30.0


def _hold(spec: ServerTask) -> tuple[float | None, list[str]] | None:
    """What a task waits for before a worker should start it: its due time (``at``,
    ``delay``) if still to come, and the tasks it runs ``after``; None if nothing."""
    due = spec.options.get("not_before")
    if not isinstance(due, (int, float)) or due <= time.time():
        due = None
    parents = [str(parent) for parent in spec.options.get("after") or ()]
    return None if due is None and not parents else (due, parents)


class ServerWorkers:
    """The queue of server-run tasks and the worker processes running them."""

    def __init__(
        self,
        service: TaskService,
        folder: Path,
        secret: str,
        size: int,
        grace: float,
        log: logging.Logger,
    ) -> None:
        self.service = service
        self.folder = folder
        self.size = size
        self.grace = grace
        self.log = log
        self._secret = secret
        self._lock = threading.Lock()
        self._pending: deque[str] = deque()
        # Each queued or running task's (name, limit), and running tasks per name.
        self._limits: dict[str, tuple[str, int | None]] = {}
        self._per_name: defaultdict[str, int] = defaultdict(int)
        self._running: dict[str, subprocess.Popen[bytes]] = {}
        # Tasks held until (due time, parents ended): no worker process waits for them.
        self._held: dict[str, tuple[float | None, list[str]]] = {}
        self._wake = threading.Condition(self._lock)
        self._holder: threading.Thread | None = None
        self._killed: set[str] = set()
        # One idle worker per interpreter, imports done, waiting for its task.
        self._spares: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        self._spare_count = 0
        # Once a notebook job ran here, spares also import what notebook jobs need.
        self._notebook_jobs = False
        self._stopping = False
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        service.cancel_hooks.append(self.cancel)

    # -- files -------------------------------------------------------------------------
    def _spec_file(self, job_id: str) -> Path:
        return self.folder / f"{job_id}.json"

    def _files(self, job_id: str) -> list[Path]:
        return [self.folder / f"{job_id}{ext}" for ext in (".json", ".pickle", ".log", ".pid")]

    def _write(self, path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)

    # -- queueing ----------------------------------------------------------------------
    def submit(self, spec: ServerTask, payload: bytes) -> TaskRecord:
        """Store the task ``enqueued`` and start it when a worker slot is free."""
        python = spec.python
        if (
            not os.path.isabs(python)
            or not os.path.isfile(python)
            or not os.access(python, os.X_OK)
        ):
            raise ProtocolError(f"'python' must be an executable file's path, not {spec.python!r}")
        if not os.path.isdir(spec.cwd):
            raise ProtocolError(f"'cwd' {spec.cwd!r} is not a directory on the server")
        self._write(self.folder / f"{spec.id}.pickle", payload)
        data = {**spec.to_json(), "store": str(self.service.store.path), "grace": self.grace}
        self._write(self._spec_file(spec.id), json.dumps(data).encode())
        hold = _hold(spec)
        status = "enqueued" if hold is None else "awaiting" if hold[1] else "scheduled"
        row = TaskRow(
            spec.id, spec.name, spec.task, json.dumps(spec.args), status=status,
            created_at=spec.created_at, notebook=spec.notebook, executor="server",
            scheduled_for=None if hold is None else hold[0],
            depends_on=json.dumps(hold[1]) if hold and hold[1] else None,
            schedule_id=spec.options.get("schedule_id"),
        )  # fmt: skip
        try:
            record = self.service.create(row)
        except BaseException:
            self._remove(spec.id)
            raise
        with self._lock:
            self._limits[spec.id] = (spec.name, spec.options.get("limit"))
            self._queue(spec.id, hold)
        self._start_next()
        return record

    def _queue(self, job_id: str, hold: tuple[float | None, list[str]] | None) -> None:
        """Under the lock: a task waits for a worker, or first (held here, not in a
        worker that would sit idle) for its time or its parents."""
        if hold is None:
            self._pending.append(job_id)
            return
        self._held[job_id] = hold
        if self._holder is None:
            self._holder = threading.Thread(
                target=self._hold_loop, name="raytha-nb-server-holds", daemon=True
            )
            self._holder.start()
        self._wake.notify_all()

    def _hold_loop(self) -> None:
        """Release held tasks when due and their parents (tasks anywhere in the store)
        have ended; the worker's own flow then decides on ``when`` and runs or cancels
        it, as in a kernel."""
        while True:
            with self._lock:
                if self._stopping:
                    return
                held = dict(self._held)
            now = time.time()
            parents = {parent for _, waits in held.values() for parent in waits}
            ended = {
                parent
                for parent in parents
                if (record := self.service.get(parent)) is None or record.finished
            }
            ready = [
                job_id
                for job_id, (due, waits) in held.items()
                if (due is None or due <= now) and ended.issuperset(waits)
            ]
            for job_id in ready:
                with self._lock:
                    if self._held.pop(job_id, None) is None:
                        continue  # cancelled meanwhile
                self.service.release(job_id, "waiting for a server worker")
                with self._lock:
                    self._pending.append(job_id)
            if ready:
                self._start_next()
            with self._lock:
                times = [due for due, waits in self._held.values() if due and not waits]
                sleep = min(times, default=now + _HOLD_SLEEP) - time.time()
                if any(waits for _, waits in self._held.values()):
                    sleep = min(sleep, _PARENT_POLL)  # parents end in other processes
                if self._held and sleep > 0 and not self._stopping:
                    self._wake.wait(sleep)
                elif not self._held and not self._stopping:
                    self._wake.wait()

    def recover(self) -> list[str]:
        """At start: queue again the server tasks an earlier run left waiting (their
        files are here); returns their ids. Running ones reconnect by themselves."""
        waiting = [
            record.id
            for record in self.service.store.get_many(self.service.store.active_ids())
            if record.executor == "server"
            and record.status in _WAITING
            and self._spec_file(record.id).is_file()
        ]
        self.service.claim(waiting)
        with self._lock:
            for job_id in waiting:
                spec = ServerTask.from_json(json.loads(self._spec_file(job_id).read_text()))
                self._limits[job_id] = (spec.name, spec.options.get("limit"))
                self._queue(job_id, _hold(spec))
        self._start_next()
        return waiting

    def cancel(self, job_id: str, force: bool = False) -> None:
        """A cancel request (after the service stored it): a waiting task ends now; a
        running one's worker is killed after the grace period, or now with ``force``."""
        with self._lock:
            waiting = job_id in self._pending or job_id in self._held
            if waiting:
                if self._held.pop(job_id, None) is None:
                    self._pending.remove(job_id)
                self._limits.pop(job_id, None)
            running = job_id in self._running
        if waiting:
            self.service.end(job_id, "cancelled", "cancelled before it started")
            self._remove(job_id)
        elif running:
            if force:
                self._kill(job_id)
            else:
                timer = threading.Timer(self.grace + KILL_MARGIN, self._kill, args=(job_id,))
                timer.daemon = True
                timer.start()

    def _kill(self, job_id: str) -> None:
        with self._lock:
            process = self._running.get(job_id)
            if process is None:
                return
            self._killed.add(job_id)
        try:
            os.killpg(process.pid, signal.SIGKILL)  # its own group: the task's children too
        except ProcessLookupError:
            pass

    # -- running -----------------------------------------------------------------------
    def _start_next(self) -> None:
        while True:
            with self._lock:
                if self._stopping or len(self._running) >= self.size:
                    return
                job_id = self._next()
                if job_id is None:
                    return
                process: subprocess.Popen[bytes] | None = None
                try:
                    process = self._spawn(job_id)
                except Exception as exc:  # noqa: BLE001 - any failure to start is the task's error
                    failure = f"{type(exc).__name__}: {exc}"
                    self._limits.pop(job_id, None)
                else:
                    self._running[job_id] = process
                    self._per_name[self._limits[job_id][0]] += 1
            if process is None:
                self.service.end(
                    job_id, "error", f"its server worker could not start: {failure}",
                    ("raytha_nb.WorkerDied", failure),
                )  # fmt: skip
                self._remove(job_id)
                continue
            threading.Thread(
                target=self._watch, args=(job_id, process), name="raytha-nb-server-worker",
                daemon=True,
            ).start()  # fmt: skip

    def _next(self) -> str | None:
        """Under the lock: the first waiting task whose name is under its ``limit``
        (server-wide for server tasks), taken off the queue."""
        for job_id in self._pending:
            name, limit = self._limits.get(job_id, ("", None))
            if limit is None or self._per_name[name] < limit:
                self._pending.remove(job_id)
                return job_id
        return None

    def _spawn(self, job_id: str) -> subprocess.Popen[bytes]:
        """The task's worker: the warm spare of its interpreter if there is one (its
        imports done), else a new process; then a new spare for the next task."""
        spec = ServerTask.from_json(json.loads(self._spec_file(job_id).read_text()))
        env = {ENV_TOKEN: worker_token(self._secret, job_id), ENV_WORKER: job_id}
        if spec.notebook:
            env["JPY_SESSION_NAME"] = spec.notebook
        spare = self._spares.pop(spec.python, None)
        process = None if spare is None else self._assign(*spare, job_id, env, spec.cwd)
        if process is None:
            with open(self.folder / f"{job_id}.log", "wb") as output:
                process = subprocess.Popen(
                    [spec.python, "-m", "raytha_nb._server_worker", str(self._spec_file(job_id))],
                    cwd=spec.cwd, env={**self._base_env(), **env}, stdin=subprocess.DEVNULL,
                    stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
        self._notebook_jobs |= spec.options.get("ref") == _notebook_job.REF
        # Which process runs it, for whoever must find it after this server is gone.
        self._write(self.folder / f"{job_id}.pid", str(process.pid).encode())
        self._start_spare(spec.python)
        return process

    def _base_env(self) -> dict[str, str]:
        """The server's environment as every worker gets it, before its task's part."""
        env = {k: v for k, v in os.environ.items() if k not in (ENV_DB, "JPY_SESSION_NAME")}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _start_spare(self, python: str) -> None:
        """A worker of ``python`` that imports raytha_nb now and waits for a task on its
        stdin: the next task of that interpreter starts without the import time."""
        if self._stopping or python in self._spares:
            return
        self._spare_count += 1
        log = self.folder / f"spare-{self._spare_count}.log"
        try:
            with open(log, "wb") as output:
                spare = subprocess.Popen(
                    [python, "-m", "raytha_nb._server_worker", "--spare"],
                    cwd=self.folder, env={**self._base_env(), **self._spare_env()},
                    stdin=subprocess.PIPE,
                    stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
            self._spares[python] = (spare, log)
        except OSError as exc:  # the task's own start says why, if it fails too
            self.log.debug("raytha_nb: no spare server worker for %s: %s", python, exc)

    def _spare_env(self) -> dict[str, str]:
        return {_notebook_job.PRELOAD_ENV: "1"} if self._notebook_jobs else {}

    def _assign(
        self,
        spare: subprocess.Popen[bytes],
        log: Path,
        job_id: str,
        env: dict[str, str],
        cwd: str,
    ) -> subprocess.Popen[bytes] | None:
        """Hand the task to a waiting spare; None if it is gone."""
        if spare.poll() is not None or spare.stdin is None:
            log.unlink(missing_ok=True)
            return None
        try:
            # Renamed while it is open: the spare's output goes on into the task's log.
            log.replace(self.folder / f"{job_id}.log")
            line = {"spec": str(self._spec_file(job_id)), "env": env, "cwd": cwd}
            spare.stdin.write(json.dumps(line).encode() + b"\n")
            spare.stdin.close()
        except OSError:
            spare.kill()
            return None
        return spare

    def _watch(self, job_id: str, process: subprocess.Popen[bytes]) -> None:
        """Wait for the worker; end its task if it died without ending it."""
        code = process.wait()
        with self._lock:
            self._running.pop(job_id, None)
            name, _ = self._limits.pop(job_id, ("", None))
            self._per_name[name] -= 1
            killed = job_id in self._killed
            self._killed.discard(job_id)
        try:
            record = self.service.get(job_id)
            if record is not None and not record.finished:
                if killed:
                    self.service.end(
                        job_id, "cancelled", "cancelled (its server worker was stopped)"
                    )
                else:
                    self._died(job_id, code)
        except Exception:  # e.g. the store closed as the server stops
            self.log.debug(
                "raytha_nb: could not record the end of worker %s", job_id, exc_info=True
            )
        finally:
            if not self._stopping:
                self._remove(job_id)
                self._start_next()

    def _died(self, job_id: str, code: int) -> None:
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        reason = f"server worker process died: {how}"
        tail = self._tail(job_id)
        message = f"{reason}; its last output:\n{tail}" if tail else reason
        self.service.end(job_id, "error", reason, ("raytha_nb.WorkerDied", message))
        self.log.warning("raytha_nb: server task %s: %s", job_id, reason)

    def _tail(self, job_id: str) -> str:
        try:
            with open(self.folder / f"{job_id}.log", "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - _TAIL))
                return handle.read().decode(errors="replace").strip()
        except OSError:
            return ""

    def _remove(self, job_id: str) -> None:
        for path in self._files(job_id):
            path.unlink(missing_ok=True)

    def running(self) -> list[str]:
        with self._lock:
            return list(self._running)

    def stop(self) -> None:
        """The server stops: start nothing more; running workers carry on, idle spares
        end."""
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
            spares, self._spares = list(self._spares.values()), {}
        for spare, log in spares:
            spare.kill()
            spare.wait(5)
            log.unlink(missing_ok=True)
