"""Where a task runs, in the panel and the cell output (real JupyterLab, kernels, Chromium):
a badge in the list for tasks off the kernel's threads, a "Runs on" row in the details,
the widget's "process pid N" in the cell, and nothing for records that do not say."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from raytha_nb._live import LiveTask
from raytha_nb.model import TaskRecord, TaskStatus
from raytha_nb.widgets import _where

from .._server_helpers import FAKE_PID
from ._feed import Feed
from ._lab import Lab, notebook
from ._ui import (
    NOTEBOOK,
    PANEL,
    open_notebook,
    open_panel,
    row,
    run_cell,
    wait_lab,
    wait_until,
)
from .conftest import shot

SHOTS = Path("/tmp/shots/panel-executor")
BADGE = ".jp-RaythaTask-executor"
DETAILS = f"{PANEL} .jp-RaythaDetails"

SETUP = "import os\nimport time\nimport raytha_nb as rnb"
# The result is the pid the task ran in: what the record's worker must name.
ENQUEUE = (
    "def where_am_i(seconds):\n"
    "    for i in range(10):\n"
    "        rnb.progress(10 * (i + 1), info=f'part {i + 1} of 10')\n"
    "        time.sleep(seconds / 10)\n"
    "    return os.getpid()\n"
    "thread_job = rnb.enqueue(where_am_i, {'seconds': 1}, name='on-a-thread')\n"
    "process_job = rnb.enqueue(where_am_i, {'seconds': 1}, name='in-a-process',"
    " executor='process')"
)


def record(lab: Lab, name: str) -> dict[str, Any] | None:
    """The one task of this name as REST has it (None: not published yet)."""
    tasks = lab.api(f"tasks?q={name}")["tasks"]
    assert len(tasks) <= 1, tasks
    return dict(tasks[0]) if tasks else None


def status(lab: Lab, name: str) -> str | None:
    task = record(lab, name)
    return None if task is None else str(task["status"])


def runs_on(page: Any) -> str | None:
    """The details' "Runs on" value, or None when the row is absent."""
    dt = page.locator(f"{DETAILS} .jp-RaythaDetails-fields dt", has_text=re.compile("^Runs on$"))
    return str(dt.evaluate("e => e.nextElementSibling.textContent")) if dt.count() else None


def cell_where(page: Any, name: str) -> str | None:
    """Where the task's cell output says it runs (None: it says nothing)."""
    where = page.locator(f"{NOTEBOOK} .jp-RaythaCell", has_text=name).locator(
        ".jp-RaythaCell-where"
    )
    return str(where.inner_text()) if where.count() == 1 else None


def open_details(page: Any, name: str) -> None:
    back = page.locator(f"{DETAILS} .jp-RaythaDetails-back")
    if back.is_visible():
        back.click()
    row(page, name).locator(".jp-RaythaTask-name").click()
    page.locator(f"{DETAILS} .jp-RaythaDetails-name", has_text=name).wait_for()


def badge_fits(page: Any, name: str) -> dict[str, Any]:
    """The badge's geometry in its row: whole (not cut), and clear of name and time."""
    return dict(
        row(page, name)
        .locator(BADGE)
        .evaluate(
            """b => {
          const r = b.getBoundingClientRect();
          const name = b.parentElement.querySelector('.jp-RaythaTask-name').getBoundingClientRect();
          const time = b.parentElement.querySelector('.jp-RaythaTask-time').getBoundingClientRect();
          const rowBox = b.closest('.jp-RaythaTask').getBoundingClientRect();
          return { whole: b.scrollWidth <= b.clientWidth + 1 && r.width > 0,
                   clear: r.left >= name.right - 0.5 && r.right <= time.left + 0.5,
                   inside: r.right <= rowBox.right, name_width: name.width,
                   middle_gap: Math.abs((r.top + r.bottom) / 2 - (name.top + name.bottom) / 2) };
        }"""
        )
    )


def test_thread_and_process_tasks_show_where_they_run(lab: Lab, page: Any) -> None:
    notebook(
        lab.root / "executors.ipynb",
        SETUP,
        ENQUEUE,
        "rnb.show(process_job)",
        "rnb.show(thread_job)",
    )
    open_notebook(page, lab.page("lab/tree/executors.ipynb?reset"))
    for index in (1, 2, 3):
        run_cell(page, index)
    for name in ("on-a-thread", "in-a-process"):
        wait_until(lambda n=name: status(lab, n) == "complete", 60, f"{name} complete")
    proc, thread = record(lab, "in-a-process"), record(lab, "on-a-thread")
    assert proc is not None and thread is not None
    # REST: each record names the worker it really ran in (the task returned its pid).
    assert proc["executor"] == "process" and proc["worker"] == f"pid {proc['result']}"
    assert proc["result"] != proc["pid"]  # not the kernel's own process
    assert thread["executor"] == "thread" and thread["worker"].startswith("thread ")
    assert thread["result"] == thread["pid"]

    open_panel(page)
    row(page, "in-a-process").wait_for()
    wait_until(lambda: row(page, "in-a-process").get_attribute("data-status") == "complete", 10)
    # The list: a badge on the process task only, whole at the panel's default width.
    badge = row(page, "in-a-process").locator(BADGE)
    assert badge.is_visible() and badge.inner_text() == "process"
    assert badge.get_attribute("title") == f"Runs on process · pid {proc['result']}"
    assert not row(page, "on-a-thread").locator(BADGE).is_visible()
    fits = badge_fits(page, "in-a-process")
    assert fits["whole"] and fits["clear"] and fits["inside"], fits
    assert fits["name_width"] > 40 and fits["middle_gap"] < 2, fits
    shot(page, "list-light.png", SHOTS)

    # The details: "Runs on" with the executor and the worker the record names.
    open_details(page, "in-a-process")
    assert runs_on(page) == f"process · pid {proc['result']}"
    shot(page, "details-process-light.png", SHOTS)
    open_details(page, "on-a-thread")
    assert runs_on(page) == f"thread · {thread['worker'].removeprefix('thread ')}"

    # The cell output says it as the widget does (widgets._where): "process pid 1234".
    assert _where(TaskRecord.from_json(proc)) == f"process pid {proc['result']}"
    for name, rec in (("in-a-process", proc), ("on-a-thread", thread)):
        said = _where(TaskRecord.from_json(rec))
        wait_until(lambda n=name, w=said: cell_where(page, n) == w, 15, f"{name}: {said}")
    page.locator(f"{NOTEBOOK} .jp-RaythaCell", has_text="in-a-process").scroll_into_view_if_needed()
    shot(page, "cell-output-light.png", SHOTS)


def _fed(feed: Feed, name: str, executor: str | None, worker: str | None, pct: float) -> LiveTask:
    """A running task whose record says it runs on ``executor`` (None: an older kernel's)."""
    live = LiveTask(
        str(uuid.uuid4()), name, "tests.browser.feed", {"n": 1},
        kernel_id=feed.kernel_id, notebook=feed.notebook, pid=FAKE_PID,
    )  # fmt: skip
    live.executor = executor  # type: ignore[assignment]
    live.worker = worker
    live.transition(TaskStatus.PROCESSING)
    live.report(pct, f"{pct:.0f} of 100 chunks", 1)
    feed.publish(live)
    return live


KINDS: list[tuple[str, str | None, str | None, str, str | None]] = [
    # name, executor, worker, badge, "Runs on"
    ("threaded-load", "thread", "thread raytha-nb-worker-1", "", "thread · raytha-nb-worker-1"),
    ("pooled-crunch", "process", "pid 1234", "process", "process · pid 1234"),
    ("cluster-train", "dask", "tcp://127.0.0.1:40123", "dask", "dask · tcp://127.0.0.1:40123"),
    ("outlives-kernel", "server", "pid 4321", "server", "server · pid 4321"),
    ("queued-on-dask", "dask", None, "dask", "dask"),
    ("from-an-old-store", None, None, "", None),
    # The name gives way at the panel's default width, the badge does not.
    ("monthly-warehouse-reconciliation-for-every-region", "server", "pid 99", "server",
     "server · pid 99"),
]  # fmt: skip


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_executor_and_none(lab: Lab, dark_lab: Lab, page: Any, theme: str) -> None:
    server = dark_lab if theme == "dark" else lab
    feed = Feed(server, kernel_id=f"kernel-kinds-{theme}", notebook="kinds.ipynb")
    for i, (name, executor, worker, _, _) in enumerate(KINDS):
        _fed(feed, name, executor, worker, 12.0 * (i + 1))
    page.goto(server.page("lab"))
    wait_lab(page)
    open_panel(page)
    for name, _, _, badge, _ in KINDS:
        row(page, name).wait_for(timeout=15_000)
        shown = row(page, name).locator(BADGE)
        assert (shown.inner_text() if shown.is_visible() else "") == badge, name
        if badge:
            fits = badge_fits(page, name)
            assert fits["whole"] and fits["clear"] and fits["inside"], (name, fits)
    shot(page, f"list-kinds-{theme}.png", SHOTS)
    for name, _, _, _, where in KINDS:
        open_details(page, name)
        assert runs_on(page) == where, name
        if name == "cluster-train":
            shot(page, f"details-dask-{theme}.png", SHOTS)
    # The filter finds tasks by where they run.
    page.locator(f"{DETAILS} .jp-RaythaDetails-back").click()
    page.locator(f"{PANEL} .jp-RaythaPanel-textFilter").fill("dask")
    wait_until(
        lambda: page.locator(f"{PANEL} .jp-RaythaTask").count() == 2, 5, "only the dask tasks"
    )
