"""Publish task state to the server's kernel API exactly as a kernel's publisher does.

Real ``LiveTask`` objects, real batches, the server's real kernel secret (read from
the file it keeps beside the store, as a kernel that outlives a restart would). Used
where a test needs exact, timed control of what the panel must show.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from typing import Any

from raytha_nb._live import LiveTask
from raytha_nb.model import TaskStatus
from raytha_nb.protocol import Batch, LogRow, Publish

from .._server_helpers import FAKE_PID
from ._lab import Lab


class Feed:
    """One fake publisher session (one "kernel") posting batches of its tasks."""

    def __init__(self, lab: Lab, kernel_id: str = "kernel-feed", notebook: str = "feed.ipynb"):
        self.lab = lab
        self.kernel_id = kernel_id
        self.notebook = notebook
        self.session = uuid.uuid4().hex
        self.tasks: dict[str, LiveTask] = {}
        self._sent_history: dict[str, int] = {}
        self._sent_rows: dict[str, int] = {}
        self.secret = (lab.db.parent / f".{lab.db.stem}.kernel-secret").read_text().strip()

    def start(self, name: str, args: Any = None, percent: float = 0.0, info: str = "") -> LiveTask:
        live = LiveTask(
            str(uuid.uuid4()), name, "tests.browser.feed", args if args is not None else {"n": 1},
            kernel_id=self.kernel_id, notebook=self.notebook, pid=FAKE_PID,
        )  # fmt: skip
        live.transition(TaskStatus.PROCESSING)
        live.report(percent, info or None, 1)
        self.tasks[live.id] = live
        self.publish()
        return live

    def publish(self, *extra: LiveTask) -> list[str]:
        """Post every task's latest state (its whole row, or only its progress when
        that is all that changed, as a kernel's publisher does), new history and new log
        lines; return the ids the server asks this kernel to cancel."""
        for live in extra:
            self.tasks[live.id] = live
        now = time.time()
        batch = Batch()
        for live in self.tasks.values():
            if self._sent_rows.get(live.id) == live.row_version:
                batch.progress.append(live.progress_row(now))
            else:
                batch.tasks.append(live.row(now))
                self._sent_rows[live.id] = live.row_version
            batch.history += live.history[self._sent_history.get(live.id, 0) :]
            self._sent_history[live.id] = len(live.history)
            batch.logs += [LogRow(live.id, *line) for line in live.take_logs(10_000)]
        active = tuple(t.id for t in self.tasks.values() if not t.status.finished)
        body = Publish(self.session, batch, self.kernel_id, FAKE_PID, active).to_json()
        req = urllib.request.Request(
            f"{self.lab.url}raytha-nb/kernel-api/publish",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Authorization": f"token {self.secret}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            reply = json.loads(resp.read())
        # Finished tasks are evicted after their terminal state is committed, as a kernel does.
        for job_id in [i for i, t in self.tasks.items() if t.status.finished]:
            del self.tasks[job_id]
        return list(reply.get("cancel", []))
