"""The Background Tasks panel against a real server: live list, actions, details, status
bar and notifications. Task state comes in through the server's kernel API (see _feed)."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any

from raytha_nb._live import LiveTask
from raytha_nb.model import TaskStatus

from .._server_helpers import FAKE_PID
from ._feed import Feed
from ._lab import Lab
from ._ui import PANEL, open_panel, percent, row, wait_lab, wait_until, widen_sidebar
from .conftest import shot

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "<cell>", line 3, in load\n'
    "    1 / 0\n"
    "ZeroDivisionError: division by zero\n"
)


def open_lab(lab: Lab, page: Any) -> Any:
    page.goto(lab.page("lab"))
    wait_lab(page)
    panel = open_panel(page)
    wait_until(lambda: panel.get_attribute("data-state") == "ready", 30, "panel ready")
    return panel


def test_running_task_shows_live_with_moving_bar_and_status_count(lab: Lab, page: Any) -> None:
    open_lab(lab, page)
    feed = Feed(lab)
    live = feed.start("export-rows", {"rows": 5000}, percent=10, info="row 500 of 5000")
    r = row(page, "export-rows")
    r.wait_for(timeout=10_000)
    wait_until(lambda: percent(r) == 10, 5, "10%")
    assert r.get_attribute("data-status") == "processing"
    width_before = r.locator(".jp-RaythaTask-fill").evaluate("e => e.style.width")

    # A new report reaches the row without any reload.
    started = time.monotonic()
    live.report(42, "row 2100 of 5000", 2)
    feed.publish()
    wait_until(lambda: percent(r) == 42, 5, "42% in the row")
    took = time.monotonic() - started
    assert r.locator(".jp-RaythaTask-fill").evaluate("e => e.style.width") == "42%" != width_before
    info = r.locator(".jp-RaythaTask-info").inner_text()
    assert "step 2" in info and "row 2100 of 5000" in info and "feed.ipynb" in info
    assert r.locator("[data-action='cancel']").is_visible()

    # Status bar counts it; clicking it opens the panel.
    status = page.locator(".jp-RaythaStatus")
    wait_until(lambda: status.is_visible() and status.inner_text() == "⟳ 1 task", 5, "status bar")
    second = feed.start("second-job", percent=0)
    wait_until(lambda: status.inner_text() == "⟳ 2 tasks", 5, "status bar counts 2")
    page.locator(".jp-SideBar.jp-mod-left li[data-id='filebrowser']").click()
    page.locator(PANEL).wait_for(state="hidden")
    status.click()
    page.locator(PANEL).wait_for(state="visible")
    live.report(64, "row 3200 of 5000", 2)
    feed.publish()
    wait_until(lambda: percent(r) == 64, 5, "64%")
    widen_sidebar(page)
    shot(page, "panel-running.png")
    print(f"report -> row update took {took:.2f}s")
    for t in (live, second):
        t.transition(TaskStatus.COMPLETE, percent_complete=100.0, result={"rows": 5000})
    feed.publish()
    wait_until(lambda: not status.is_visible(), 5, "status bar item hidden when idle")
    wait_until(lambda: r.get_attribute("data-status") == "complete", 5, "row complete")


def test_cancel_from_the_panel_reaches_the_kernel(lab: Lab, page: Any) -> None:
    open_lab(lab, page)
    feed = Feed(lab, kernel_id="kernel-cancel")
    live = feed.start("cancel-me", percent=30)
    r = row(page, "cancel-me")
    r.wait_for(timeout=10_000)
    # Progress redraws the row, not its buttons: a button replaced mid-click loses it.
    button = r.locator("[data-action='cancel']").element_handle()
    live.report(31, "moving")
    feed.publish()
    wait_until(lambda: percent(r) == 31, 5, "31%")
    assert button.evaluate("b => b.isConnected")
    r.locator("[data-action='cancel']").click()
    # The kernel learns it from the reply to its next publish, and stops.
    asked = wait_until(lambda: feed.publish(), 10, "the cancel request in the publish reply")
    assert asked == [live.id]
    live.transition(TaskStatus.CANCELLED, status_info="cancelled by user")
    feed.publish()
    wait_until(lambda: r.get_attribute("data-status") == "cancelled", 5, "cancelled row")
    assert r.locator("[data-action='delete']").is_visible()
    r.locator("[data-action='delete']").click()
    page.locator(".jp-Dialog").get_by_role("button", name="Delete").click()  # it asks first
    wait_until(lambda: r.count() == 0, 5, "row gone after delete")
    assert all(t["id"] != live.id for t in lab.api("tasks?limit=500")["tasks"])


def test_failure_notifies_and_details_show_traceback_args_and_log(lab: Lab, page: Any) -> None:
    open_lab(lab, page)
    feed = Feed(lab, kernel_id="kernel-fail")
    live = feed.start("flaky-load", {"path": "data/big.csv", "chunks": 40}, percent=5)
    live.add_log("stdout", "reading data/big.csv")
    feed.publish()
    r = row(page, "flaky-load")
    r.wait_for(timeout=10_000)
    live.add_log("stderr", "chunk 3 looks odd")
    live.transition(
        TaskStatus.ERROR,
        error_type="ZeroDivisionError",
        error_message="division by zero",
        traceback=TRACEBACK,
    )
    feed.publish()
    toast = page.locator(".Toastify__toast", has_text='Task "flaky-load" failed')
    toast.wait_for(timeout=10_000)
    assert "ZeroDivisionError" in toast.inner_text()
    toast.get_by_role("button", name="Show task").click()
    details = page.locator(f"{PANEL} .jp-RaythaDetails")
    details.wait_for(state="visible")
    assert details.get_attribute("data-task-id") == live.id
    traceback = details.locator(".jp-RaythaDetails-traceback")
    wait_until(lambda: "ZeroDivisionError: division by zero" in traceback.inner_text(), 5, "tb")
    assert '"path": "data/big.csv"' in details.locator(".jp-RaythaDetails-args").inner_text()
    log = details.locator(".jp-RaythaDetails-log")
    wait_until(lambda: "chunk 3 looks odd" in log.inner_text(), 5, "log lines")
    assert "reading data/big.csv" in log.inner_text()
    shot(page, "panel-details-error.png")
    details.locator(".jp-RaythaDetails-back").click()
    r.wait_for(state="visible")


def test_details_log_tails_live(lab: Lab, page: Any) -> None:
    open_lab(lab, page)
    feed = Feed(lab, kernel_id="kernel-log")
    live = feed.start("chatty", percent=1)
    r = row(page, "chatty")
    r.wait_for(timeout=10_000)
    r.locator(".jp-RaythaTask-name").click()
    log = page.locator(f"{PANEL} .jp-RaythaDetails-log")
    for i in range(1, 4):
        live.add_log("stdout", f"step {i} done")
        live.report(i * 30)
        feed.publish()
        wait_until(lambda i=i: f"step {i} done" in log.inner_text(), 5, f"log line {i}")
    live.transition(
        TaskStatus.COMPLETE, percent_complete=100.0, result={"ok": True}, result_kind="json"
    )
    feed.publish()
    details = page.locator(f"{PANEL} .jp-RaythaDetails")
    wait_until(lambda: details.get_attribute("data-status") == "complete", 5, "complete")
    assert '"ok": true' in details.locator(".jp-RaythaDetails-result").inner_text()


def test_reload_lists_the_running_task_again_and_it_stays_live(lab: Lab, page: Any) -> None:
    open_lab(lab, page)
    feed = Feed(lab, kernel_id="kernel-reload")
    live = feed.start("survives-reload", percent=20)
    row(page, "survives-reload").wait_for(timeout=10_000)
    page.reload()
    wait_lab(page)
    open_panel(page)  # the restored layout may or may not show the sidebar: make sure
    r = row(page, "survives-reload")
    r.wait_for(timeout=15_000)
    assert percent(r) == 20
    live.report(55)
    feed.publish()
    wait_until(lambda: percent(r) == 55, 5, "update after reload")
    live.transition(TaskStatus.COMPLETE, percent_complete=100.0)
    feed.publish()


def test_filters_clear_finished_and_a_second_kernel(lab: Lab, page: Any) -> None:
    panel = open_lab(lab, page)
    a, b = Feed(lab, "kernel-a", "a.ipynb"), Feed(lab, "kernel-b", "sub/b.ipynb")
    keep = a.start("filter-running", percent=50)
    done = a.start("filter-done")
    done.transition(TaskStatus.COMPLETE, percent_complete=100.0)
    a.publish()
    other = b.start("filter-other-notebook", percent=10)
    for name in ("filter-running", "filter-done", "filter-other-notebook"):
        row(page, name).wait_for(timeout=10_000)
    assert "b.ipynb" in row(page, "filter-other-notebook").inner_text()

    panel.locator(".jp-RaythaPanel-textFilter").fill("filter-")
    names = lambda: set(panel.locator(".jp-RaythaTask-name").all_inner_texts())  # noqa: E731
    wait_until(lambda: len(names()) == 3, 5, "three filtered rows")
    panel.locator(".jp-RaythaPanel-statusFilter").select_option("finished")
    wait_until(lambda: names() == {"filter-done"}, 5, "only finished")
    panel.locator(".jp-RaythaPanel-statusFilter").select_option("active")
    wait_until(lambda: names() == {"filter-running", "filter-other-notebook"}, 5, "active")
    panel.locator(".jp-RaythaPanel-textFilter").fill("sub/b")
    wait_until(lambda: names() == {"filter-other-notebook"}, 5, "by notebook")

    panel.locator(".jp-RaythaPanel-statusFilter").select_option("")
    panel.locator(".jp-RaythaPanel-textFilter").fill("")
    panel.locator(".jp-RaythaPanel-clear").click()
    page.locator(".jp-Dialog .jp-mod-accept").click()  # it asks first
    wait_until(lambda: row(page, "filter-done").count() == 0, 5, "finished cleared")
    assert row(page, "filter-running").count() == 1
    statuses = {t["status"] for t in lab.api("tasks?limit=500")["tasks"]}
    assert statuses <= {"enqueued", "processing"}
    for feed, live in ((a, keep), (b, other)):
        live.transition(TaskStatus.COMPLETE, percent_complete=100.0)
        feed.publish()


def test_a_thousand_tasks_render_only_the_rows_in_view(lab: Lab, page: Any) -> None:
    feed = Feed(lab, kernel_id="kernel-many")
    base = time.time() - 3600
    feed.publish(*(_finished(feed, f"bulk-{i:04d}", base + i) for i in range(1000)))
    panel = open_lab(lab, page)
    panel.locator(".jp-RaythaPanel-textFilter").fill("bulk-")
    summary = panel.locator(".jp-RaythaPanel-summary")
    wait_until(lambda: summary.inner_text().startswith("1000 of"), 15, "1000 rows filtered")
    rows = panel.locator(".jp-RaythaTask")
    assert 5 < rows.count() < 60  # virtualised: only what is in view, plus a margin
    assert rows.first.locator(".jp-RaythaTask-name").inner_text() == "bulk-0999"
    panel.locator(".jp-RaythaPanel-list").evaluate("e => { e.scrollTop = e.scrollHeight; }")
    wait_until(lambda: row(page, "bulk-0000").count() == 1, 5, "oldest row after scrolling")
    assert rows.count() < 60


def _finished(feed: Feed, name: str, created: float) -> Any:
    """A task that ran and completed, created at ``created`` (so the order is known)."""
    live = LiveTask(str(uuid.uuid4()), name, "tests.bulk", {}, kernel_id=feed.kernel_id,
                    notebook=feed.notebook, pid=FAKE_PID)  # fmt: skip
    live.created_at = created
    live.transition(TaskStatus.PROCESSING)
    live.transition(TaskStatus.COMPLETE, percent_complete=100.0)
    return live


def test_download_a_file_result(lab: Lab, page: Any) -> None:
    open_lab(lab, page)
    export = lab.root / "orders export.csv"
    export.write_text("id,total\n1,9.5\n2,12.0\n")
    feed = Feed(lab, kernel_id="kernel-file")
    live = feed.start("export-orders", percent=90)
    r = row(page, "export-orders")
    r.wait_for(timeout=10_000)
    assert r.locator("[data-action='download']").count() == 0  # nothing to fetch yet
    live.transition(
        TaskStatus.COMPLETE,
        percent_complete=100.0,
        result_kind="file",
        result={"path": str(export), "filename": export.name, "rows": 2, "media_type": "text/csv"},
    )
    feed.publish()
    button = r.locator("[data-action='download']")
    button.wait_for(timeout=5_000)
    with page.expect_download() as info:
        button.click()
    download = info.value
    assert download.suggested_filename == "orders export.csv"
    assert Path(download.path()).read_text() == "id,total\n1,9.5\n2,12.0\n"


def test_completion_notified_only_for_tasks_longer_than_the_setting(lab: Lab, page: Any) -> None:
    """Default setting: completions of tasks shorter than 5 s make no notification."""
    open_lab(lab, page)
    feed = Feed(lab, kernel_id="kernel-notify")
    quick = feed.start("quick-one", percent=50)
    slow = feed.start("slow-one", percent=50)
    slow.started_at = time.time() - 12  # it has been running for 12 s
    feed.publish()
    row(page, "slow-one").wait_for(timeout=10_000)
    quick.transition(TaskStatus.COMPLETE, percent_complete=100.0)
    feed.publish()
    slow.transition(TaskStatus.COMPLETE, percent_complete=100.0)
    feed.publish()
    toast = page.locator(".Toastify__toast", has_text='Task "slow-one" completed after')
    toast.wait_for(timeout=10_000)
    wait_until(lambda: row(page, "quick-one").get_attribute("data-status") == "complete", 5)
    assert page.locator(".Toastify__toast", has_text='"quick-one"').count() == 0


# Counts the events stream's messages by type, so a test knows which path it exercised.
COUNT_EVENTS = """(() => {
  const counts = window.__rnbEvents = {};
  const add = EventSource.prototype.addEventListener;
  EventSource.prototype.addEventListener = function (type, listener, options) {
    return add.call(this, type, function (ev) {
      counts[type] = (counts[type] || 0) + 1;
      return listener.call(this, ev);
    }, options);
  };
})()"""


def _field(details: Any, name: str) -> str:
    """The value of one row of the details view's fields (Progress, Info, ...)."""
    dt = details.locator(".jp-RaythaDetails-fields dt", has_text=re.compile(f"^{name}$"))
    return str(dt.evaluate("e => e.nextElementSibling.textContent"))


def test_progress_events_update_row_details_and_status_bar_in_place(lab: Lab, page: Any) -> None:
    """Progress-only publishes reach the browser as ``event: progress`` deltas: the row,
    the open details and the status bar follow them; the filtered list keeps its rows
    unless a change moves a task in or out of the filter."""
    page.add_init_script(COUNT_EVENTS)
    panel = open_lab(lab, page)
    counts = lab.api("status")["tasks"]
    base = counts["processing"] + counts["enqueued"]  # anything earlier tests left running
    feed = Feed(lab, kernel_id="kernel-progress")
    live = feed.start("progress-live", {"rows": 9000}, percent=5, info="phase-a row 450 of 9000")
    other = feed.start("progress-other", percent=50, info="phase-b")
    r = row(page, "progress-live")
    r.wait_for(timeout=10_000)
    status = page.locator(".jp-RaythaStatus")
    summary = panel.locator(".jp-RaythaPanel-summary")
    wait_until(lambda: status.inner_text() == f"⟳ {base + 2} tasks", 5, "status bar counts 2")
    assert summary.inner_text().endswith(f"· {base + 2} running")
    progress_events = lambda: page.evaluate("() => window.__rnbEvents.progress || 0")  # noqa: E731
    before = progress_events()

    # Row: percent, bar, step and info move; the row element and its buttons stay.
    node = r.element_handle()
    button = r.locator("[data-action='cancel']").element_handle()
    live.report(42, "phase-a row 3780 of 9000", 2)
    feed.publish()
    wait_until(lambda: percent(r) == 42, 5, "42% in the row")
    assert r.locator(".jp-RaythaTask-fill").evaluate("e => e.style.width") == "42%"
    info = r.locator(".jp-RaythaTask-info").inner_text()
    assert "step 2" in info and "phase-a row 3780 of 9000" in info and "feed.ipynb" in info
    assert node.evaluate("n => n.isConnected") and button.evaluate("b => b.isConnected")
    # _feed posts a progress-only row here, so the server sent a delta, not the record.
    wait_until(lambda: progress_events() > before, 5, "an event: progress")
    assert status.inner_text() == f"⟳ {base + 2} tasks"  # progress moves no count

    # A text filter matching the info: a progress that changes the info moves the task
    # out of the list and back in; others' progress leaves the list alone.
    panel.locator(".jp-RaythaPanel-textFilter").fill("phase-a")
    names = lambda: panel.locator(".jp-RaythaTask-name").all_inner_texts()  # noqa: E731
    wait_until(lambda: names() == ["progress-live"], 5, "only the phase-a task")
    other.report(60, "phase-b still")
    live.report(50, "phase-b row 4500 of 9000", 3)
    feed.publish()
    wait_until(lambda: names() == [], 5, "the task left the filter")
    assert "No task matches the filter." in panel.locator(".jp-RaythaPanel-empty").inner_text()
    live.report(55, "phase-a again", 3)
    feed.publish()
    wait_until(lambda: names() == ["progress-live"], 5, "the task back in the filter")
    wait_until(lambda: percent(r) == 55, 5, "55% in the filtered row")
    panel.locator(".jp-RaythaPanel-textFilter").fill("")
    wait_until(lambda: len(names()) >= 2, 5, "the whole list again")
    widen_sidebar(page)
    shot(page, "panel-progress.png")

    # Details: percent, step, info and bar follow progress in place.
    r.locator(".jp-RaythaTask-name").click()
    details = panel.locator(".jp-RaythaDetails")
    details.wait_for(state="visible")
    assert details.get_attribute("data-task-id") == live.id
    wait_until(lambda: _field(details, "Progress") == "55% · step 3", 5, "details 55%")
    head = details.locator(".jp-RaythaDetails-name").element_handle()
    live.report(77, "phase-a row 6930 of 9000", 4)
    feed.publish()
    wait_until(lambda: _field(details, "Progress") == "77% · step 4", 5, "details 77%")
    assert _field(details, "Info") == "phase-a row 6930 of 9000"
    bar = details.locator(".jp-RaythaTask-fill")
    assert bar.evaluate("e => e.style.width") == "77%"
    assert head.evaluate("e => e.isConnected")  # redrawn in place, not rebuilt
    assert '"rows": 9000' in details.locator(".jp-RaythaDetails-args").inner_text()

    # The status bar across a task finishing, progress of the other still coming.
    other.transition(TaskStatus.COMPLETE, percent_complete=100.0, result={"ok": True})
    live.report(88, "phase-a row 7920 of 9000", 4)
    feed.publish()
    wait_until(lambda: status.inner_text() == f"⟳ {base + 1} task" + ("s" if base else ""), 5,
               "status bar counts 1 after a task finished")  # fmt: skip
    wait_until(lambda: _field(details, "Progress") == "88% · step 4", 5, "details 88%")
    live.report(95, "phase-a row 8550 of 9000", 5)
    feed.publish()
    wait_until(lambda: _field(details, "Progress") == "95% · step 5", 5, "details 95%")
    assert status.inner_text() == f"⟳ {base + 1} task" + ("s" if base else "")
    live.transition(TaskStatus.COMPLETE, percent_complete=100.0, result={"rows": 9000})
    feed.publish()
    wait_until(lambda: details.get_attribute("data-status") == "complete", 5, "details complete")
    assert _field(details, "Progress") == "100% · step 5"
    if base == 0:
        wait_until(lambda: not status.is_visible(), 5, "status bar item hidden when idle")
    details.locator(".jp-RaythaDetails-back").click()
    wait_until(lambda: r.get_attribute("data-status") == "complete", 5, "row complete")
    assert summary.inner_text().endswith(f"· {base} running")
