"""The panel's everyday actions in Chromium against a real JupyterLab: deleting asks
first, the panel reads at its default width, details show a cell as code, the kernel
by notebook, a table result's first rows, a download as a plain streamed link, and a
re-run in the task's own (real) kernel."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

from raytha_nb import _results
from raytha_nb._live import LiveTask
from raytha_nb.model import TaskStatus

from .._server_helpers import FAKE_PID
from ._feed import Feed
from ._lab import Lab, notebook
from ._ui import PANEL, open_notebook, open_panel, row, run_cell, wait_lab, wait_until
from .conftest import shot

SHOTS = Path("/tmp/shots/panel")
CELL = "%%background --name load-orders\nimport time\nrows = [{'id': i} for i in range(45)]\nrows"
DIALOG = ".jp-Dialog"


def open_lab(lab: Lab, page: Any, path: str = "lab") -> Any:
    page.goto(lab.page(path))
    wait_lab(page)
    panel = open_panel(page)
    wait_until(lambda: panel.get_attribute("data-state") == "ready", 30, "panel ready")
    return panel


def finished(feed: Feed, name: str, status: TaskStatus, **fields: Any) -> LiveTask:
    live = feed.start(name, percent=60, info="working")
    live.transition(status, **fields)
    feed.publish()
    return live


def ids(lab: Lab) -> set[str]:
    return {t["id"] for t in lab.api("tasks?limit=1000")["tasks"]}


def test_delete_and_clear_finished_ask_first_and_cancel_deletes_nothing(
    lab: Lab, page: Any
) -> None:
    panel = open_lab(lab, page)
    a, b = Feed(lab, "kernel-del-a", "/work/a.ipynb"), Feed(lab, "kernel-del-b", "/work/b.ipynb")
    one = finished(a, "delete-me", TaskStatus.COMPLETE, result={"n": 1}, result_kind="json")
    two = finished(a, "clear-me-a", TaskStatus.ERROR, error_type="ValueError")
    three = finished(b, "clear-me-b", TaskStatus.CANCELLED)
    running = a.start("keep-running", percent=10)
    for name in ("delete-me", "clear-me-a", "clear-me-b", "keep-running"):
        row(page, name).wait_for(timeout=10_000)

    # Delete: the dialog names the task; Cancel deletes nothing.
    row(page, "delete-me").locator("[data-action='delete']").click()
    dialog = page.locator(DIALOG)
    dialog.wait_for()
    assert "delete-me" in dialog.inner_text() and "cannot be undone" in dialog.inner_text()
    shot(page, "dialog-delete.png", SHOTS)
    dialog.get_by_role("button", name="Cancel").click()
    dialog.wait_for(state="detached")
    time.sleep(0.5)
    assert one.id in ids(lab) and row(page, "delete-me").count() == 1
    row(page, "delete-me").locator("[data-action='delete']").click()
    page.locator(DIALOG).get_by_role("button", name="Delete").click()
    wait_until(lambda: row(page, "delete-me").count() == 0, 5, "row gone after delete")
    assert one.id not in ids(lab)

    # Clear finished: says how many, of how many notebooks, and that results go too.
    finished_count = sum(t["status"] not in ("enqueued", "processing")
                         for t in lab.api("tasks?limit=1000")["tasks"])  # fmt: skip
    panel.locator(".jp-RaythaPanel-clear").click()
    dialog = page.locator(DIALOG)
    dialog.wait_for()
    text = dialog.inner_text()
    assert f"{finished_count} finished task" in text and "results" in text, text
    assert "notebooks" in text  # two notebooks' tasks go
    shot(page, "dialog-clear-finished.png", SHOTS)
    dialog.get_by_role("button", name="Cancel").click()
    dialog.wait_for(state="detached")
    time.sleep(0.5)
    assert {two.id, three.id} <= ids(lab)
    panel.locator(".jp-RaythaPanel-clear").click()
    page.locator(DIALOG).get_by_role("button", name=f"Delete {finished_count}").click()
    wait_until(lambda: row(page, "clear-me-b").count() == 0, 5, "finished rows cleared")
    left = ids(lab)
    assert two.id not in left and three.id not in left and running.id in left
    assert row(page, "keep-running").count() == 1
    running.transition(TaskStatus.COMPLETE, percent_complete=100.0)
    a.publish()


MEASURE = """panel => {
  const out = {};
  const header = panel.querySelector('.jp-RaythaPanel-header');
  const title = panel.querySelector('.jp-RaythaPanel-title');
  const summary = panel.querySelector('.jp-RaythaPanel-summary');
  out.panelWidth = panel.getBoundingClientRect().width;
  out.headerHeight = header.getBoundingClientRect().height;
  out.titleTop = title.getBoundingClientRect().top;
  out.summaryTop = summary.getBoundingClientRect().top;
  out.lineHeight = parseFloat(getComputedStyle(title).lineHeight)
    || title.getBoundingClientRect().height;
  out.titleCut = title.scrollWidth > title.clientWidth;
  const input = panel.querySelector('.jp-RaythaPanel-textFilter');
  const style = getComputedStyle(input);
  const ctx = document.createElement('canvas').getContext('2d');
  ctx.font = `${style.fontSize} ${style.fontFamily}`;
  out.placeholderWidth = ctx.measureText(input.placeholder).width;
  out.inputRoom = input.clientWidth - parseFloat(style.paddingLeft)
    - parseFloat(style.paddingRight);
  out.states = [...panel.querySelectorAll('.jp-RaythaTask')].map(r => {
    const s = r.querySelector('.jp-RaythaTask-state');
    return {status: r.dataset.status, text: s.textContent, cut: s.scrollWidth > s.clientWidth,
            width: s.getBoundingClientRect().width};
  });
  return out;
}"""


def test_panel_at_default_width_reads_in_full(lab: Lab, page: Any) -> None:
    """No sidebar dragging: the width JupyterLab gives a new sidebar."""
    panel = open_lab(lab, page)
    feed = Feed(lab, "kernel-width", "/home/user/projects/quarterly-report.ipynb")
    queued = LiveTask(str(uuid.uuid4()), "width-queued", "tests.feed", {},
                      kernel_id=feed.kernel_id, notebook=feed.notebook, pid=FAKE_PID)  # fmt: skip
    feed.publish(queued)
    feed.start("width-running", percent=35, info="row 3,500 of 10,000")
    finished(feed, "width-complete", TaskStatus.COMPLETE, percent_complete=100.0)
    finished(feed, "width-error", TaskStatus.ERROR, error_type="KeyError", error_message="'x'")
    finished(feed, "width-cancelled", TaskStatus.CANCELLED, status_info="cancelled by user")
    interrupted = feed.start("width-interrupted", percent=80)
    interrupted.transition(TaskStatus.INTERRUPTED, status_info="kernel restarted")
    feed.publish()
    panel.locator(".jp-RaythaPanel-textFilter").fill("width-")
    wait_until(lambda: panel.locator(".jp-RaythaTask").count() == 6, 10, "six rows")
    m = panel.evaluate(MEASURE)
    assert m["panelWidth"] < 400, m  # really the default, narrow sidebar
    assert abs(m["titleTop"] - m["summaryTop"]) < 4, m  # header on one line
    assert m["headerHeight"] < 2 * m["lineHeight"] + 14, m
    assert not m["titleCut"], m
    assert m["placeholderWidth"] <= m["inputRoom"], m
    states = {s["status"]: s for s in m["states"]}
    assert set(states) == {"enqueued", "processing", "complete", "error", "cancelled",
                           "interrupted"}  # fmt: skip
    for status, s in states.items():
        assert s["text"] == status and not s["cut"], s
    print(f"default panel width {m['panelWidth']:.0f}px")
    panel.locator(".jp-RaythaPanel-textFilter").fill("")
    panel.locator(".jp-RaythaPanel-textFilter").fill("width-")
    shot(page.locator(PANEL), "panel-default-width.png", SHOTS)
    for live in list(feed.tasks.values()):
        live.transition(TaskStatus.COMPLETE, percent_complete=100.0)
    feed.publish()


def _frame_result(lab: Lab, job_id: str, n: int) -> dict[str, Any]:
    frame = pd.DataFrame({"order_id": range(1, n + 1), "total": [9.5 + i for i in range(n)]})
    stored, kind = _results.encode(frame, job_id, lab.db.parent / f"{lab.db.stem}-results")
    assert kind == "parquet"
    return dict(stored)


def test_details_cell_as_code_kernel_by_notebook_preview_and_streamed_download(
    lab: Lab, page: Any
) -> None:
    panel = open_lab(lab, page)
    kernel_id = str(uuid.uuid4())
    feed = Feed(lab, kernel_id, "/home/user/sales/analysis.ipynb")
    live = LiveTask(str(uuid.uuid4()), "load-orders", "%%background",
                    {"code": CELL.split("\n", 1)[1], "cell_id": "c-1"},
                    kernel_id=kernel_id, notebook=feed.notebook, pid=FAKE_PID)  # fmt: skip
    live.transition(TaskStatus.PROCESSING)
    live.transition(TaskStatus.COMPLETE, percent_complete=100.0,
                    result=_frame_result(lab, live.id, 45), result_kind="parquet")  # fmt: skip
    feed.publish(live)
    r = row(page, "load-orders")
    r.wait_for(timeout=10_000)
    r.locator(".jp-RaythaTask-name").click()
    details = panel.locator(".jp-RaythaDetails")
    details.wait_for(state="visible")

    # The cell as code: its source verbatim, not a JSON string with \n escapes.
    args = details.locator(".jp-RaythaDetails-args")
    assert args.evaluate("e => e.tagName") == "PRE"
    assert "jp-mod-code" in (args.get_attribute("class") or "")
    assert args.inner_text() == CELL.split("\n", 1)[1]
    assert details.locator("h3", has_text="Cell").count() == 1
    # The kernel: its notebook and a short id (the full id as the tooltip).
    kernel = details.locator(".jp-RaythaDetails-fields dt", has_text="Kernel")
    assert kernel.evaluate("e => e.nextElementSibling.textContent") == (
        f"analysis.ipynb · {kernel_id[:8]}"
    )
    assert kernel.evaluate("e => e.nextElementSibling.title") == kernel_id

    # The preview: the first 20 of 45 rows, with the columns.
    table = details.locator(".jp-RaythaDetails-table")
    table.wait_for(timeout=10_000)
    assert table.locator("th").all_inner_texts() == ["order_id", "total"]
    assert table.locator("tbody tr").count() == 20
    assert table.locator("tbody tr").first.locator("td").all_inner_texts() == ["1", "9.5"]
    note = details.locator(".jp-RaythaDetails-previewNote").inner_text()
    assert note == "First 20 of 45 rows · 2 columns"

    # Download: a plain link to the authenticated result URL (the browser streams it).
    link = details.locator("[data-action='download']")
    assert link.evaluate("e => e.tagName") == "A"
    assert link.get_attribute("download") == ""
    href = link.evaluate("e => e.href")
    assert href.split("?")[0] == f"{lab.url}raytha-nb/api/tasks/{live.id}/result"
    with page.expect_download() as info:
        link.click()
    saved = Path(info.value.path())
    assert saved.read_bytes() == Path(live.result["path"]).read_bytes()  # type: ignore[index]
    assert info.value.suggested_filename == f"{live.id}.parquet"
    # Without Jupyter's cookie or token the same URL is refused.
    try:
        urllib.request.urlopen(href.split("?")[0], timeout=10)
        raise AssertionError("the result URL answered without authentication")
    except urllib.error.HTTPError as exc:
        assert exc.code == 403
    shot(page.locator(PANEL), "details-preview.png", SHOTS)


def test_rerun_in_its_own_kernel_and_disabled_when_the_kernel_is_gone(lab: Lab, page: Any) -> None:
    notebook(
        lab.root / "rerun.ipynb",
        "import raytha_nb as rnb",
        "%%background --name double-21\nanswer = 2 * 21",
    )
    open_notebook(page, lab.page("lab/tree/rerun.ipynb?reset"))
    run_cell(page, 1)
    panel = open_panel(page)
    wait_until(lambda: panel.get_attribute("data-state") == "ready", 30, "panel ready")
    r = row(page, "double-21")
    wait_until(lambda: r.count() == 1 and r.get_attribute("data-status") == "complete", 30)
    button = r.locator("[data-action='rerun']")
    wait_until(lambda: button.get_attribute("aria-disabled") is None, 15, "re-run enabled")
    button.click()
    wait_until(lambda: r.count() == 2, 20, "a second double-21 row")
    wait_until(lambda: all(x.get_attribute("data-status") == "complete" for x in r.all()), 20)
    runs = lab.api("tasks?name=double-21")["tasks"]
    assert len(runs) == 2 and {t["task"] for t in runs} == {"%%background"}
    assert {t["args"]["code"].strip() for t in runs} == {"answer = 2 * 21"}
    # A cell is re-run (its code is the cell); a function task is retried instead.
    assert not r.locator("[data-action='retry']").count()

    # A task of a kernel this server does not run: the button says why it is unavailable.
    feed = Feed(lab, "kernel-elsewhere", "elsewhere.ipynb")
    cell = LiveTask(
        str(uuid.uuid4()), "from-elsewhere", "%%background", {"code": "x = 1"},
        kernel_id=feed.kernel_id, notebook=feed.notebook, pid=FAKE_PID,
    )  # fmt: skip
    cell.transition(TaskStatus.PROCESSING)
    cell.transition(TaskStatus.COMPLETE, percent_complete=100.0)
    feed.publish(cell)
    gone = row(page, "from-elsewhere").locator("[data-action='rerun']")
    gone.wait_for(timeout=10_000)
    assert gone.get_attribute("aria-disabled") == "true"
    assert "kernel is not running on this server" in (gone.get_attribute("title") or "")
    before = len(lab.api("tasks?name=from-elsewhere")["tasks"])
    gone.click(force=True)  # aria-disabled: Playwright would not click it otherwise
    time.sleep(0.5)
    assert len(lab.api("tasks?name=from-elsewhere")["tasks"]) == before
