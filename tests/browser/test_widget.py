"""A task's cell output in JupyterLab (the extension's renderer of the raytha_nb mime type,
ahead of the ipywidget): it completes with its result and log, shows a failing cell's
traceback, and %jobs renders its table (screenshots in test-output/)."""

from __future__ import annotations

from typing import Any

from ._lab import Lab, notebook
from ._ui import run_cell, wait_until
from .conftest import shot
from .test_notebook_tasks import WIDGET, open_notebook

CELLS = [
    "import time\nimport raytha_nb as rnb",
    "%%background --name browser-demo --result answer\n"
    "for i in rnb.track(range(60), info='rows'):\n"
    "    print('row', i)\n"
    "    time.sleep(0.05)\n"
    "42",
    "%%background --name broken\nrows = [3, 0]\n[1 / r for r in rows]",
    "%jobs",
]


def test_widget_result_log_error_and_jobs_table(lab: Lab, page: Any) -> None:
    notebook(lab.root / "widget.ipynb", *CELLS)
    open_notebook(lab, page, "widget.ipynb")
    for index in (1, 2):  # cell 0 ran when it opened
        run_cell(page, index)

    demo = page.locator(WIDGET, has_text="browser-demo")
    wait_until(lambda: "result: 42" in demo.inner_text(), 60, "the task completes")
    text = demo.inner_text()
    assert "complete" in text and "100%" in text and "took" in text
    demo.locator("summary", has_text="Log").click()
    demo.get_by_text("Log (60 lines)").wait_for()
    demo.get_by_text("row 59").wait_for()
    shot(page, "widget-complete.png")

    broken = page.locator(WIDGET, has_text="broken")
    wait_until(lambda: "ZeroDivisionError" in broken.inner_text(), 30, "the traceback")
    assert "error" in broken.inner_text() and "1 / r for r in rows" in broken.inner_text()
    assert "raytha_nb/queue.py" not in broken.inner_text()  # the user's frames only

    run_cell(page, 3)  # %jobs, once both tasks have ended
    table = page.locator("table.raytha-nb-jobs")
    table.wait_for(timeout=30_000)
    assert "browser-demo" in table.inner_text() and "broken" in table.inner_text()
    shot(page, "widget-error-and-jobs.png")
