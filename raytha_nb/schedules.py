"""Schedules from a kernel: ``rnb.schedule`` and the functions that read and steer them.

The Jupyter server keeps and fires schedules (its own timer, its own workers), so they
need it: in embedded mode (no server) each of these raises :class:`ServerRequired`.
A function schedule's body is pickled here, once, and handed over with the
interpreter, directory and ``sys.path`` of this kernel, as ``executor="server"`` does;
every run is a server task of its own (``TaskRecord.schedule_id``), so
``rnb.list_tasks(schedule_id=...)`` lists them.
"""

from __future__ import annotations

import base64
import functools
import uuid
from typing import Any

from . import _notebook_job, _retry
from ._client import RemoteBackend
from ._jsonable import to_jsonable
from ._manager import _run_task, manager
from ._options import defaults
from ._schedule import ScheduleSpec, epoch
from .errors import ScheduleNotFound, ServerRequired
from .registry import check_signature, resolve, task_label

__all__ = [
    "delete_schedule",
    "get_schedule",
    "list_schedules",
    "pause_schedule",
    "resume_schedule",
    "schedule",
    "trigger_schedule",
]


def schedule(
    task: Any,
    args: Any = None,
    *,
    name: str,
    cron: str | None = None,
    every: Any = None,
    tz: str | None = None,
    start_at: Any = None,
    end_at: Any = None,
    overlap: str = "skip",
    misfire: str = "once",
    **task_options: Any,
) -> str:
    """Run ``task`` (a function, a registered name, or a notebook's path ending in
    .ipynb) on a schedule in the Jupyter server; return the schedule's id.

    Exactly one of ``cron`` (5 fields, in ``tz``, an IANA zone, default UTC) and
    ``every`` (seconds or a timedelta, at least 1 s). ``start_at``/``end_at`` bound it
    (datetimes; a naive one is in ``tz``, else local time). ``overlap``: "skip" (a run
    due while the previous one runs is skipped and recorded), "queue", "allow";
    ``misfire``, for runs that fell due while the server was down: "once" (one
    catch-up run), "skip", "all". ``task_options`` are ``rnb.enqueue``'s (retries,
    retry_delay, retry_on, timeout, limit). Nothing is stored when a value is wrong:
    ``ValueError``/``TypeError`` names it, ``NotPicklable`` the part of a function that
    cannot be pickled."""
    backend = _server()
    window = {"start_at": epoch(start_at, "start_at", tz), "end_at": epoch(end_at, "end_at", tz)}
    if _notebook_job.is_notebook_path(task):
        info = _notebook_job.check_notebook(task)
        options = dict(task_options)
        if options.pop("executor", "server") != "server":
            raise ValueError("executor: a schedule's runs run in the Jupyter server ('server')")
        spec = ScheduleSpec(
            name, str(info.path), "notebook", _notebook_job.check_parameters(args), cron, every,
            tz, overlap=overlap, misfire=misfire, options=options, **window,
        ).checked()  # fmt: skip
        return _created(backend, {"schedule": spec.to_json()})
    target = resolve(task)
    plain = to_jsonable(args)
    check_signature(target, plain)
    label = task if isinstance(task, str) else task_label(target)
    merged = defaults(target).merged(ref=_retry.reference(target), **task_options)
    if (merged.executor or "server") != "server":
        raise ValueError(
            f"executor: a schedule's runs run in the Jupyter server, not on {merged.executor!r}"
        )
    spec = ScheduleSpec(
        name, label, "function", plain, cron, every, tz, overlap=overlap, misfire=misfire,
        options=merged.to_json(), **window,
    ).checked()  # fmt: skip
    run, payload = manager().server_task(
        functools.partial(_run_task, target), spec.name, label, plain, merged
    )
    body = {
        "schedule": spec.to_json(),
        "task": run.to_json(),
        "payload": base64.b64encode(payload).decode(),
    }
    return _created(backend, body)


def list_schedules() -> list[dict[str, Any]]:
    """Every schedule of the server, oldest first, as REST shows them (``rule`` in words,
    ``next_run``, ``last_run``, ``runs``, ``skipped``...)."""
    _, data = _server().schedules("GET")
    schedules: list[dict[str, Any]] = data["schedules"]
    return schedules


def get_schedule(schedule_id: str) -> dict[str, Any]:
    """One schedule; ``ScheduleNotFound`` if there is none with that id."""
    return _one(schedule_id, "GET", "")


def pause_schedule(schedule_id: str) -> dict[str, Any]:
    """Stop firing it (runs already started go on) until ``resume_schedule``."""
    return _one(schedule_id, "POST", "/pause")


def resume_schedule(schedule_id: str) -> dict[str, Any]:
    """Fire it again from now on (runs missed while paused are not made up)."""
    return _one(schedule_id, "POST", "/resume")


def trigger_schedule(schedule_id: str) -> str:
    """Run it now (also when paused), whatever its next due time; the new task's id."""
    data = _one(schedule_id, "POST", "/trigger")
    job_id: str = data["task"]["id"]
    return job_id


def delete_schedule(schedule_id: str) -> None:
    """Remove it; its runs stay, as tasks."""
    _one(schedule_id, "DELETE", "")


def _server() -> RemoteBackend:
    backend = manager().backend
    if not isinstance(backend, RemoteBackend):
        raise ServerRequired(
            "schedules need the Jupyter server: it keeps them and runs them (also while no "
            "kernel runs), and this process has no server (its task store is embedded). Run "
            "this in a notebook under Jupyter with the raytha_nb extension enabled"
        )
    return backend


def _created(backend: RemoteBackend, body: dict[str, Any]) -> str:
    _, data = backend.schedules("POST", body=body)
    schedule_id: str = data["id"]
    return schedule_id


def _one(schedule_id: Any, method: str, action: str) -> dict[str, Any]:
    if not isinstance(schedule_id, str):
        raise TypeError(f"a schedule id is a string (a UUID), not {schedule_id!r}")
    missing = ScheduleNotFound(
        f"no schedule with id {schedule_id!r}: rnb.list_schedules() lists them, and "
        "rnb.schedule() returns a new one's id"
    )
    try:
        uuid.UUID(schedule_id)
    except ValueError:
        raise missing from None
    status, data = _server().schedules(method, f"{schedule_id}{action}")
    if status == 404:
        raise missing
    return data if isinstance(data, dict) else {}
