"""Tasks started from notebooks in real kernels under JupyterLab: the %%background cell's
widget, the panel and the status bar agree, and stay live across actions and reloads."""

from __future__ import annotations

import re
from typing import Any

from . import _ui
from ._lab import Lab, notebook
from ._ui import (
    PANEL,
    open_panel,
    percent,
    row,
    run_cell,
    wait_lab,
    wait_until,
    widen_sidebar,
)
from .conftest import shot

SETUP = "import time\nimport raytha_nb as rnb"


def slow_cell(name: str, steps: int = 150, gap: float = 0.1) -> str:
    return (
        f"%%background --name {name}\n"
        f"for i in range({steps}):\n"
        f"    rnb.progress(100 * (i + 1) / {steps}, info=f'row {{i + 1}} of {steps}', step=1)\n"
        f"    rnb.check_cancelled()\n"
        f"    time.sleep({gap})\n"
        f"'done'"
    )


FAILING = "%%background --name exploding-cell\ntime.sleep(0.3)\n{'a': 1}['missing-key']"

WIDGET = ".jp-NotebookPanel:not(.lm-mod-hidden) .raytha-nb-task"


def widget_percent(page: Any, name: str) -> float:
    widget = page.locator(WIDGET, has_text=name)
    text = widget.locator(".jp-RaythaCell-percent").first.inner_text()  # renderer.ts
    return float(text.rstrip("%"))


def open_notebook(lab: Lab, page: Any, path: str) -> None:
    """Open ``path`` and run its setup cell; ?reset: only this notebook, not the ones an
    earlier test left in the workspace."""
    _ui.open_notebook(page, lab.page(f"lab/tree/{path}?reset"))


def test_background_cell_live_in_widget_panel_and_status_bar(lab: Lab, page: Any) -> None:
    notebook(lab.root / "live.ipynb", SETUP, slow_cell("crunch-numbers"), FAILING)
    open_notebook(lab, page, "live.ipynb")
    run_cell(page, 1)
    widget = page.locator(WIDGET, has_text="crunch-numbers")
    widget.wait_for(timeout=30_000)
    bar = widget.locator(".jp-RaythaCell-bar")
    assert bar.count() == 1
    first = wait_until(lambda: widget_percent(page, "crunch-numbers"), 20, "widget moves")
    wait_until(lambda: widget_percent(page, "crunch-numbers") > first, 10, "widget progresses")

    panel = open_panel(page)
    r = row(page, "crunch-numbers")
    r.wait_for(timeout=15_000)
    p1 = wait_until(lambda: percent(r), 10, "row percent")
    p2 = wait_until(lambda: percent(r) > p1 and percent(r), 10, "row bar moves")
    assert p2 > p1
    assert "live.ipynb" in r.locator(".jp-RaythaTask-info").inner_text()
    summary = panel.locator(".jp-RaythaPanel-summary").inner_text()
    assert re.fullmatch(r"(1 task|([02-9]|\d\d+) tasks) · [1-9]\d* running", summary), summary
    status = page.locator(".jp-RaythaStatus")
    wait_until(lambda: re.fullmatch(r"⟳ [1-9]\d* tasks?", status.inner_text()), 10, "count")
    assert panel.is_visible()
    widen_sidebar(page)
    shot(page, "notebook-running.png")

    # Cancel from the panel: the cell's widget shows it.
    r.locator("[data-action='cancel']").click()
    wait_until(lambda: r.get_attribute("data-status") == "cancelled", 15, "row cancelled")
    wait_until(lambda: "cancelled" in widget.inner_text(), 15, "widget shows cancelled")

    # A failing task: a notification, and its traceback in the details view.
    run_cell(page, 2)
    toast = page.locator(".Toastify__toast", has_text='Task "exploding-cell" failed')
    toast.wait_for(timeout=20_000)
    toast.get_by_role("button", name="Show task").click()
    details = page.locator(f"{PANEL} .jp-RaythaDetails")
    details.wait_for(state="visible")
    tb = details.locator(".jp-RaythaDetails-traceback")
    wait_until(lambda: "KeyError" in tb.inner_text(), 10, "traceback in details")
    assert "missing-key" in tb.inner_text()
    shot(page, "notebook-failed-details.png")
    details.locator(".jp-RaythaDetails-back").click()
    row(page, "exploding-cell").wait_for()
    widen_sidebar(page)
    shot(page, "panel-after-cancel-and-failure.png")


def test_reload_mid_task_restores_panel_row_and_live_widget(lab: Lab, page: Any) -> None:
    notebook(lab.root / "reload.ipynb", SETUP, slow_cell("survive-reload", steps=250))
    open_notebook(lab, page, "reload.ipynb")
    run_cell(page, 1)
    page.locator(WIDGET, has_text="survive-reload").wait_for(timeout=30_000)
    wait_until(lambda: widget_percent(page, "survive-reload") > 0, 20, "started")
    page.keyboard.press("Control+s")
    page.wait_for_timeout(500)

    page.reload()
    wait_lab(page)
    open_panel(page)
    r = row(page, "survive-reload")
    r.wait_for(timeout=20_000)
    p1 = percent(r)
    wait_until(lambda: percent(r) > p1, 10, "row still live after reload")
    widget = page.locator(WIDGET, has_text="survive-reload")
    widget.wait_for(timeout=30_000)
    w1 = wait_until(lambda: widget_percent(page, "survive-reload"), 10, "restored widget")
    wait_until(lambda: widget_percent(page, "survive-reload") > w1, 10, "restored widget live")
    r.locator("[data-action='cancel']").click()
    wait_until(lambda: r.get_attribute("data-status") == "cancelled", 15, "cancelled")


def test_task_from_a_second_notebook_in_the_same_panel(lab: Lab, page: Any) -> None:
    # Long enough to outlast the test on a loaded machine (two kernels, two notebooks
    # opened): it ends by cancelling both, which a finished task no longer offers.
    notebook(lab.root / "first.ipynb", SETUP, slow_cell("from-first", steps=3000))
    notebook(lab.root / "second.ipynb", SETUP, slow_cell("from-second", steps=3000))
    open_notebook(lab, page, "first.ipynb")
    run_cell(page, 1)
    page.locator(WIDGET, has_text="from-first").wait_for(timeout=30_000)  # it started
    open_notebook(lab, page, "second.ipynb")
    run_cell(page, 1)
    open_panel(page)
    first, second = row(page, "from-first"), row(page, "from-second")
    first.wait_for(timeout=20_000)
    second.wait_for(timeout=20_000)
    assert "first.ipynb" in first.inner_text() and "second.ipynb" in second.inner_text()
    kernels = {t["kernel_id"] for t in lab.api("tasks?q=from-")["tasks"]}
    assert len(kernels) == 2
    widen_sidebar(page)
    shot(page, "panel-two-notebooks.png")
    # "Open" brings up the notebook that started the task (second.ipynb is the one shown).
    first.locator("[data-action='open']").click()
    current = page.locator(".jp-MainAreaWidget.jp-NotebookPanel:not(.lm-mod-hidden)")
    wait_until(lambda: current.count() == 1 and "from-first" in current.inner_text(), 15, "open")
    for r in (first, second):
        r.locator("[data-action='cancel']").click()
    for r in (first, second):
        wait_until(lambda r=r: r.get_attribute("data-status") == "cancelled", 15, "cancelled")


def test_widget_downloads_a_file_result(lab: Lab, page: Any) -> None:
    """A %%background cell returning a DataFrame: its widget links the stored Parquet file,
    and the browser downloads it with Jupyter's login cookie."""
    import pyarrow.parquet as pq

    frame_cell = (
        "%%background --name make-frame\n"
        "import pandas as pd\n"
        "pd.DataFrame({'n': range(500), 'sq': [i * i for i in range(500)]})"
    )
    notebook(lab.root / "download.ipynb", SETUP, frame_cell)
    open_notebook(lab, page, "download.ipynb")
    run_cell(page, 1)
    widget = page.locator(WIDGET, has_text="make-frame")
    link = widget.locator("a", has_text="Download")
    link.wait_for(timeout=30_000)
    shot(page, "widget-download.png")
    with page.expect_download() as info:
        link.click()
    download = info.value
    assert download.suggested_filename.endswith(".parquet")
    table = pq.read_table(download.path())
    assert table.num_rows == 500 and table.column_names == ["n", "sq"]
