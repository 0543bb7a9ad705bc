"""The Dask executor: tasks run on a ``distributed`` cluster, one Dask task per task.

A task is submitted with its id as the Dask key (``pure=False``) and runs in a Dask
worker with the whole task API (``_worker``'s pieces: cloudpickle bodies, output
capture, tblib tracebacks, results written there). Progress and log lines travel as
Dask events (``Worker.log_event`` -> ``Client.subscribe_topic``), coalesced, latest
progress wins; the last event carries the outcome (the result is fetched only when too
big for one); a cancel is a ``distributed.Event`` per task that the worker watches once
the task has run 50 ms.
Forced cancel raises ``TaskCancelled`` in the task's worker thread, then
``client.cancel(future)``; Dask cannot interrupt a blocking call, which may run on.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import _results, _tqdm, _worker
from ._jsonable import to_jsonable
from ._live import LiveTask
from .context import TaskContext, _enter, flush_task_output, install_output_capture
from .errors import TaskCancelled
from .executor import Body, Executor
from .model import TaskStatus
from .processes import Shipped, ship
from .threads import _cancel_info

log = logging.getLogger("raytha_nb")

#: Seconds between progress events of a running task (latest wins in between).
SEND_INTERVAL = 0.05
#: How long the kernel waits for a task's last events after its result arrived.
EVENT_WAIT = 2.0
#: After a forced cancel, how long the worker has to stop before the future is cancelled.
FORCE_WAIT = 0.2
INSTALL_HINT = "pip install 'raytha-nb[dask]'"


def require_distributed() -> Any:
    """The ``distributed`` module, or an ImportError saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise ImportError(
            "executor='dask' needs Dask's distributed scheduler, which is not installed: "
            + INSTALL_HINT
        ) from None
    return distributed


# -- in the kernel ------------------------------------------------------------------------
class _Job:
    """A submitted task: its live state, its future and the events seen so far."""

    __slots__ = ("ended", "future", "live", "seen", "started")

    def __init__(self, live: LiveTask) -> None:
        self.live = live
        self.future: Any = None
        self.seen = 0  # events applied (the outcome says how many were sent)
        self.started = False
        self.ended = False  # its outcome applied (from its end event or its future)


class DaskExecutor(Executor):
    """Tasks on a Dask cluster: ``cluster`` is a scheduler address, a ``Client``, or
    None for a ``LocalCluster`` started (and closed) by this executor on first use."""

    def __init__(
        self,
        cluster: Any,
        results_dir: Callable[[], Path],
        grace: float = 1.0,
        say: Callable[[str], None] = log.warning,
    ) -> None:
        self._say = say  # where the one line about a started LocalCluster goes
        self._distributed = require_distributed()
        self.grace = grace
        self._results_dir = results_dir
        self._given = cluster
        self._client: Any = None
        self._own_client = False
        self._local: Any = None
        self._topic = f"raytha-nb-{uuid.uuid4().hex}"
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Condition()
        self._stopping = False

    @property
    def client(self) -> Any:
        """The Dask client, connected (or a LocalCluster started) on first use."""
        with self._lock:
            if self._client is None:
                self._client = self._connect()
                self._client.subscribe_topic(self._topic, self._on_event)
            return self._client

    def _connect(self) -> Any:
        dist = self._distributed
        if isinstance(self._given, dist.Client):
            return self._given
        self._own_client = True
        if self._given is not None:
            return dist.Client(self._given, set_as_default=False)
        import dask

        # A worker lost mid-task ends it interrupted here, rather than running it again
        # elsewhere (Dask's default is 3 retries: side effects would repeat).
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            self._local = dist.LocalCluster(processes=True, dashboard_address=":0")
        client = dist.Client(self._local, set_as_default=False)
        self._say(
            f"raytha_nb: started a Dask LocalCluster ({len(self._local.workers)} worker "
            f"processes) for executor='dask'; dashboard: {self._local.dashboard_link}"
        )
        return client

    # -- submitting and cancelling ---------------------------------------------
    def ship(self, body: Body, what: str = "the task") -> Shipped:
        return body if isinstance(body, Shipped) else ship(body, what)

    def submit(self, live: LiveTask, body: Body) -> None:
        shipped = self.ship(body, live.task)
        client = self.client
        job = _Job(live)
        with self._lock:
            if self._stopping:
                raise RuntimeError("the task queue is shut down")
            self._jobs[live.id] = job
        live.on_cancel = self.cancel
        job.future = client.submit(
            run_task, live.id, live.task, live.args, shipped.payload,
            str(self._results_dir()), self._topic, self.grace, (live.attempt, live.resume),
            key=_key(live), pure=False,
        )  # fmt: skip
        job.future.add_done_callback(lambda future: self._finished(job, future))

    def submit_many(self, jobs: list[tuple[LiveTask, Body]]) -> None:
        """Many tasks in one ``client.map`` (one graph sent to the scheduler, not one
        message per task): a map's children."""
        if not jobs:
            return
        client = self.client
        made = [(_Job(live), self.ship(body, live.task)) for live, body in jobs]
        with self._lock:
            if self._stopping:
                raise RuntimeError("the task queue is shut down")
            for job, _ in made:
                self._jobs[job.live.id] = job
        hook = self.cancel
        for live, _ in jobs:
            live.on_cancel = hook
        lives = [job.live for job, _ in made]
        futures = client.map(
            run_task, [live.id for live in lives], [live.task for live in lives],
            [live.args for live in lives], [shipped.payload for _, shipped in made],
            [str(self._results_dir())] * len(made), [self._topic] * len(made),
            [self.grace] * len(made), [(live.attempt, live.resume) for live in lives],
            key=[_key(live) for live in lives], pure=False,
        )  # fmt: skip
        for (job, _), future in zip(made, futures):
            job.future = future
            future.add_done_callback(functools.partial(self._finished, job))

    def cancel(self, live: LiveTask, force: bool = False) -> None:
        """Set the task's cancel Event (``check_cancelled`` sees it; the worker forces
        it after the grace period, at once with ``force``); cancel its future if it
        has not stopped shortly after that."""
        job = self._jobs.get(live.id)
        if job is None:
            return
        wait = FORCE_WAIT if force else self.grace + FORCE_WAIT
        timer = threading.Timer(wait, self._force, args=(job,))
        timer.daemon = True
        timer.start()
        # Not on the caller's thread: cancel() returns without a scheduler round trip.
        threading.Thread(target=self._signal, args=(live.id, force), daemon=True).start()

    def _signal(self, job_id: str, force: bool) -> None:
        dist = self._distributed
        try:
            if force:
                dist.Event(_force_name(job_id), client=self.client).set()
            dist.Event(_cancel_name(job_id), client=self.client).set()
        except Exception:  # the scheduler is gone: the future goes too
            log.debug("raytha_nb: could not set the cancel event of %s", job_id, exc_info=True)

    def _stop(self, job: _Job) -> None:
        """A task cancelled while queued started anyway: cancel its future."""
        try:
            self._distributed.Event(_cancel_name(job.live.id), client=self.client).set()
            self.client.cancel(job.future, force=True)
        except Exception:
            log.debug("raytha_nb: could not stop %s", job.live.id, exc_info=True)

    def _force(self, job: _Job) -> None:
        """The task did not stop: cancel its future (Dask stops waiting for it; a
        function still running in its worker thread runs on) and end it cancelled."""
        if job.future is None or job.future.done() or job.live.status.finished:
            return
        where = job.live.worker or "its Dask worker"
        info = f"{_cancel_info(job.live)} (Dask future cancelled; it may still run on {where})"
        job.live.transition(TaskStatus.CANCELLED, status_info=info)
        try:
            self.client.cancel(job.future, force=True)
        except Exception:
            log.debug("raytha_nb: could not cancel the future of %s", job.live.id, exc_info=True)

    # -- events and outcomes ---------------------------------------------------------
    def _on_event(self, event: tuple[float, Any]) -> None:
        """A worker's event (on the client's event loop): start, progress or end. The
        end event carries the outcome, so a task's result is never fetched from its
        worker unless it was too big for an event or came with files. Events come
        through msgpack, which makes JSON's lists tuples: results and checkpoints are
        made JSON values again, as the fetched outcome's are."""
        msg = event[1]
        with self._lock:
            job = self._jobs.get(msg[1])
            if job is None:
                return
            job.seen += 1
            self._lock.notify_all()
        kind = msg[0]
        if kind == "start":
            self._start(job, msg[2])
        elif kind == "progress":
            self._progress(job, msg[2:7])
        elif kind == "end":  # [end, id, worker, step, pct, info, logs, checkpoint, outcome]
            outcome = msg[8]
            if outcome is not None and outcome[0] == "done":
                outcome = [*outcome[:4], to_jsonable(outcome[4], "result"), *outcome[5:]]
            claimed = outcome is not None and self._claim(job)
            self._start(job, msg[2])
            self._progress(job, msg[3:8])
            if claimed:
                try:
                    self._end(job, outcome)
                except Exception:
                    log.exception("raytha_nb: could not finish Dask task %s", job.live.id)
                    job.live.transition(TaskStatus.INTERRUPTED, status_info="its outcome failed")

    def _start(self, job: _Job, worker: str) -> None:
        live = job.live
        live.worker = worker
        if job.started:
            return
        job.started = True
        if not live.transition(TaskStatus.PROCESSING) and not job.ended:
            # Cancelled before it started, and running there: stop it (not on this loop).
            threading.Thread(target=self._stop, args=(job,), daemon=True).start()

    @staticmethod
    def _progress(job: _Job, fields: list[Any]) -> None:
        step, percent, info, logs, checkpoint = fields
        live = job.live
        if live.status is not TaskStatus.PROCESSING:
            return
        for stream, text in logs:
            live.add_log(stream, text)
        live.report(percent, info, step)
        if checkpoint is not None:  # [its version, the state], when it changed
            live.set_checkpoint(to_jsonable(checkpoint[1], "checkpoint"))

    def _claim(self, job: _Job) -> bool:
        """Whether this caller applies the job's outcome (once, whoever sees it first)."""
        with self._lock:
            if job.ended:
                return False
            job.ended = True
            self._jobs.pop(job.live.id, None)
            return True

    def _finished(self, job: _Job, future: Any) -> None:
        """The future ended (a callback thread): apply its outcome unless its end event
        did already; a failed or cancelled future ends the task here."""
        live = job.live
        try:
            if future.status == "finished":
                # Its end event came first (the same worker stream) and, unless it was
                # too big for an event, ended it: then nothing is fetched.
                if not job.ended:
                    outcome = future.result()
                    with self._lock:  # the events it sent first: its last log lines
                        self._lock.wait_for(lambda: job.seen >= outcome[2], EVENT_WAIT)
                    if self._claim(job):
                        self._end(job, outcome)
            elif self._claim(job):
                self._failed(live, future)
        except BaseException:
            log.exception("raytha_nb: could not finish Dask task %s", live.id)
            live.transition(TaskStatus.INTERRUPTED, status_info="its Dask future failed")
        finally:
            with self._lock:
                job.ended = True
                self._jobs.pop(live.id, None)
            self._clear_events(live)

    def _failed(self, live: LiveTask, future: Any) -> None:
        if future.cancelled():
            live.transition(TaskStatus.CANCELLED, status_info=_cancel_info(live))
            return
        error = future.exception()
        if self._stopping:
            info = "the kernel stopped while it ran"
        elif isinstance(error, self._distributed.KilledWorker):
            info = "the Dask worker running it was lost (KilledWorker)"
        else:
            info = f"Dask failed it: {type(error).__name__}: {error}"
        live.transition(TaskStatus.INTERRUPTED, status_info=info)

    def _end(self, job: _Job, outcome: list[Any]) -> None:
        """Apply a worker's outcome ``[kind, job_id, events_sent, worker_address, ...]``."""
        live = job.live
        self._start(job, outcome[3])
        kind, job_id = outcome[0], outcome[1]
        if kind == "done":
            stored, result_kind, files = outcome[4], outcome[5], outcome[6]
            if files:
                stored = self._store_files(job_id, stored, files)
            live.transition(
                TaskStatus.COMPLETE, result=stored, result_kind=result_kind,
                percent_complete=100.0,
            )  # fmt: skip
        elif kind == "cancelled":
            live.transition(TaskStatus.CANCELLED, status_info=_cancel_info(live))
        else:
            _worker.end_failed(live, outcome[4:])

    def _store_files(self, job_id: str, stored: Any, files: dict[str, bytes]) -> Any:
        """A worker without this kernel's results directory sent its result files'
        bytes: write them here and point the stored result at them."""
        out = self._results_dir()
        out.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            target = out / name
            with _results.staged(target, job_id) as tmp:
                tmp.write_bytes(data)
            if isinstance(stored, dict) and Path(str(stored.get("path", ""))).name == name:
                stored = {**stored, "path": str(target)}
        return stored

    def _clear_events(self, live: LiveTask) -> None:
        """Drop a cancelled task's Events from the scheduler (an Event never set is
        dropped there once its last waiter left)."""
        if self._client is None or self._stopping:
            return
        if not live.cancel_requested and live.status is not TaskStatus.CANCELLED:
            return
        for name in (_cancel_name(live.id), _force_name(live.id)):
            try:
                self._distributed.Event(name, client=self._client).clear()
            except Exception:  # noqa: BLE001
                pass

    # -- lifecycle -----------------------------------------------------------------
    def running(self) -> list[LiveTask]:
        with self._lock:
            return [j.live for j in self._jobs.values() if j.live.status is TaskStatus.PROCESSING]

    def drop_pending(self) -> list[LiveTask]:
        with self._lock:
            waiting = [j for j in self._jobs.values() if j.live.status is TaskStatus.ENQUEUED]
        for job in waiting:
            if job.future is not None:
                job.future.cancel()
        return [j.live for j in waiting]

    def shutdown(self, wait: float = 0) -> None:
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            futures = [j.future for j in self._jobs.values() if j.future is not None]
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if futures:
                client.cancel(futures, force=True)
            client.unsubscribe_topic(self._topic)
        except Exception:  # noqa: BLE001 - the cluster may be gone already
            pass
        if self._own_client:
            client.close()
        if self._local is not None:
            self._local.close()
            self._local = None


def _key(live: LiveTask) -> str:
    """The task's Dask key: its id; a retried attempt is another Dask task (the first
    attempt's key may still be held by the scheduler)."""
    return live.id if live.attempt == 1 else f"{live.id}-attempt-{live.attempt}"


def _cancel_name(job_id: str) -> str:
    return f"raytha-nb-cancel-{job_id}"


def _force_name(job_id: str) -> str:
    return f"raytha-nb-force-{job_id}"


# -- in the Dask worker -------------------------------------------------------------------
#: An outcome larger than this (msgpack bytes) is fetched from the worker, not sent as an
#: event (the scheduler keeps recent events).
EVENT_BYTES = 64 * 1024


class _Running(LiveTask):
    """The worker's live task: its events, its thread (to force a cancel) and the
    cancel flag its watcher thread sets from the task's ``distributed.Event``."""

    __slots__ = (
        "announced", "client", "ended", "final", "flag", "grace", "send_lock", "sent",
        "sent_checkpoint", "seq", "thread_id", "topic",
    )  # fmt: skip

    def __init__(self, topic: str, client: Any, grace: float, *args: Any, **kwargs: Any) -> None:
        self.topic = topic
        self.client = client
        self.grace = grace
        self.flag = threading.Event()
        self.send_lock = threading.Lock()
        self.seq = 0  # events sent
        self.announced = False  # its start event sent (and its cancel watcher started)
        self.ended = False
        self.final: list[Any] | None = None  # what run_task returns, once its end is sent
        self.thread_id = threading.get_ident()
        super().__init__(*args, **kwargs)
        self.sent = self.version  # version at the last progress event
        self.sent_checkpoint = 0

    @property  # type: ignore[override]
    def cancel_requested(self) -> bool:
        return self.flag.is_set()

    @cancel_requested.setter
    def cancel_requested(self, value: bool) -> None:
        pass  # only the kernel sets it (through the Event)

    def send(self, worker: Any, msg: list[Any]) -> None:
        self.seq += 1
        worker.log_event(self.topic, msg)

    def flush(self, worker: Any) -> None:
        """The sender's turn: the start event once, and the cancel watcher (a task
        shorter than ``SEND_INTERVAL`` has neither: its end event says it all), then a
        progress event if anything changed."""
        with self.send_lock:
            if self.ended:
                return
            if not self.announced:
                self.announced = True
                self.send(worker, ["start", self.id, worker.address])
                threading.Thread(
                    target=_watch_cancel, args=(self,), name="raytha-nb-dask-cancel", daemon=True
                ).start()
            if self.version != self.sent or self.outbox:
                self.send(worker, ["progress", self.id, *self._state()])

    def _state(self) -> list[Any]:
        logs = [[stream, text] for _, _, stream, text in self.take_logs(_worker.LOG_BATCH)]
        step, pct, info = self.reported()
        self.sent = self.version
        checkpoint = None
        if self.checkpoint_version != self.sent_checkpoint:
            checkpoint = [self.checkpoint_version, self.checkpoint]
            self.sent_checkpoint = self.checkpoint_version
        return [step, pct, info, logs, checkpoint]

    def end(self, worker: Any, outcome: list[Any]) -> list[Any]:
        """Send the last progress and log lines with the outcome, as one event (unless
        the outcome is too big for one: then the kernel fetches it); returns what the
        Dask task returns ``[kind, job_id, events_sent, worker_address, ...]``."""
        with self.send_lock:
            self.ended = True  # its watcher forces nothing from now on
            if self.final is None:
                while len(self.outbox) > _worker.LOG_BATCH:
                    self.send(worker, ["progress", self.id, *self._state()])
                result = [outcome[0], outcome[1], self.seq + 1, worker.address, *outcome[2:]]
                self.send(worker, ["end", self.id, worker.address, *self._state(), _small(result)])
                self.final = result
            # Drop a forced cancel raised but not yet delivered.
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.thread_id), None)
        return self.final


def _small(outcome: list[Any]) -> list[Any] | None:
    """``outcome`` if an event can carry it (msgpack, small, no files), else None."""
    if outcome[0] == "done" and outcome[6]:
        return None
    try:
        import msgpack

        size = len(msgpack.packb(outcome))
    except Exception:  # noqa: BLE001 - e.g. an int beyond 64 bits: fetched instead
        return None
    return outcome if size <= EVENT_BYTES else None


_running: dict[str, _Running] = {}
_running_lock = threading.Lock()
_sender: threading.Thread | None = None


def _send_loop(worker: Any) -> None:
    """The worker process's sender thread: every running task's progress, coalesced."""
    while True:
        time.sleep(SEND_INTERVAL)
        with _running_lock:
            tasks = list(_running.values())
        for live in tasks:
            try:
                live.flush(worker)
            except Exception:
                log.debug("raytha_nb: progress event failed", exc_info=True)


def _watch_cancel(live: _Running) -> None:
    """Wait for the task's cancel Event; force it after the grace period (at once when
    its force Event is set too: the kernel sets that one first)."""
    cancel = _dist_event(_cancel_name(live.id), live.client)
    force = _dist_event(_force_name(live.id), live.client)
    while not live.ended:
        try:
            if cancel.wait(timeout=0.5):
                break
        except Exception:  # noqa: BLE001 - the scheduler went away
            return
    else:
        return
    live.flag.set()
    try:
        force.wait(timeout=live.grace)
    except Exception:  # noqa: BLE001
        time.sleep(live.grace)
    with live.send_lock:
        if not live.ended:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(live.thread_id), ctypes.py_object(TaskCancelled)
            )


def _dist_event(name: str, client: Any) -> Any:
    return require_distributed().Event(name, client)


def run_task(
    job_id: str,
    name: str,
    args: Any,
    payload: bytes,
    results_dir: str,
    topic: str,
    grace: float,
    attempt: tuple[int, Any] = (1, None),
) -> list[Any]:
    """Runs in a Dask worker: the task, with progress and logs as events, its outcome
    as the last; returns the outcome ``[kind, job_id, events_sent, worker_address, ...]``."""
    global _sender
    dist: Any = require_distributed()
    worker, client = dist.get_worker(), dist.get_client()
    install_output_capture()
    _tqdm.install()
    live = _Running(topic, client, grace, job_id, name, name, args, kernel_id=None,
                    notebook=None, pid=os.getpid())  # fmt: skip
    live.attempt, live.resume = attempt  # which attempt, and its checkpoint to resume
    with _running_lock:
        if _sender is None:
            _sender = threading.Thread(
                target=_send_loop, args=(worker,), name="raytha-nb-dask-sender", daemon=True
            )
            _sender.start()
        _running[job_id] = live
    try:
        outcome = _outcome(live, args, payload, results_dir)
    except TaskCancelled:  # a forced cancel landing after the task's own end
        outcome = ["cancelled", job_id]
    with _running_lock:
        _running.pop(job_id, None)
    try:
        return live.end(worker, outcome)
    except TaskCancelled:  # landed while it sent its end: the outcome stands
        return live.end(worker, outcome)


def _outcome(live: _Running, args: Any, payload: bytes, results_dir: str) -> list[Any]:
    job_id = live.id
    try:
        try:
            import cloudpickle

            body = cloudpickle.loads(payload)
            ctx = TaskContext(live, args)
            _enter(ctx)
            value = body(ctx)
        finally:
            flush_task_output()
            _enter(None)
        stored, kind, files = _store(value, job_id, Path(results_dir))
        return ["done", job_id, stored, kind, files]
    except TaskCancelled:
        return ["cancelled", job_id]
    except BaseException as exc:  # noqa: BLE001 - the task's failure is its outcome
        return ["error", job_id, *_worker.failure(exc)]


def _store(value: Any, job_id: str, results_dir: Path) -> tuple[Any, str | None, dict[str, bytes]]:
    """The result stored where the kernel reads it: written into its results directory
    when this worker sees it (same machine or shared filesystem), else written to a
    scratch directory here and its files' bytes returned for the kernel to write."""
    if results_dir.is_dir():
        stored, kind = _results.encode(value, job_id, results_dir)
        return stored, kind, {}
    scratch = Path(tempfile.mkdtemp(prefix="raytha-nb-"))
    try:
        stored, kind = _results.encode(value, job_id, scratch)
        files = {p.name: p.read_bytes() for p in scratch.iterdir() if p.is_file()}
        return stored, kind, files
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
