"""Helpers for server tests: real task batches, as a kernel's publisher builds them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from raytha_nb._live import LiveTask
from raytha_nb.model import TaskStatus


def live_task(
    name: str = "job",
    *,
    status: TaskStatus = TaskStatus.ENQUEUED,
    kernel_id: str = "kernel-a",
    notebook: str | None = "a.ipynb",
    logs: int = 0,
    result: Any = None,
    result_kind: str | None = None,
    info: str | None = None,
) -> LiveTask:
    """A task moved through real LiveTask transitions to ``status``."""
    import uuid

    live = LiveTask(
        str(uuid.uuid4()), name, "tests.task", {"n": 1},
        kernel_id=kernel_id, notebook=notebook, pid=4242,
    )  # fmt: skip
    if status is not TaskStatus.ENQUEUED:
        live.transition(TaskStatus.PROCESSING)
        live.report(40.0, info or "working", 2)
    for i in range(logs):
        live.add_log("stdout", f"line {i + 1}")
    if status in (TaskStatus.COMPLETE, TaskStatus.ERROR, TaskStatus.CANCELLED):
        fields: dict[str, Any] = {"percent_complete": 100.0}
        if status is TaskStatus.COMPLETE:
            fields.update(result=result, result_kind=result_kind)
        if status is TaskStatus.ERROR:
            fields.update(error_type="ValueError", error_message="bad", traceback="Traceback")
        live.transition(status, **fields)
    return live


def publish_body(
    tasks: list[LiveTask], *, session: str = "s-a", kernel_id: str = "kernel-a", active: Any = None
) -> str:
    """The JSON a kernel's RemoteBackend posts to kernel-api/publish for these tasks."""
    now = time.time()
    batch = {
        "tasks": [list(t.row(now)) for t in tasks],
        "events": [[t.id, *e] for t in tasks for e in t.events],
        "logs": [[t.id, *line] for t in tasks for line in t.logs],
    }
    if active is None:
        active = [t.id for t in tasks if not t.status.finished]
    return json.dumps(
        {"session": session, "kernel_id": kernel_id, "pid": 4242, "active": active, "batch": batch}
    )


def write_parquet(path: Path) -> dict[str, Any]:
    import pandas as pd

    from raytha_nb import _results

    frame = pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]})
    stored, _ = _results.encode(frame, path.stem, path.parent)
    return stored
