"""A task's cell output without its kernel: a notebook run headlessly (nbclient, a real
kernel) is saved showing each task's final state in every form (the raytha_nb mime type,
HTML, text), data jobs show their widget in the cell, and a plain script shows nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from raytha_nb._task_view import MIME

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"

pytestmark = pytest.mark.timeout(180)

CELLS = [
    "import raytha_nb as rnb",
    "%%background --name saved-final\nimport time\nfor i in range(4):\n"
    "    rnb.progress(25 * (i + 1), info=f'part {i + 1}')\n    time.sleep(0.3)\n'done'",
    "%%background --name saved-error\nimport time\ntime.sleep(0.3)\n{'a': 1}['missing-key']",
    "frame_job = rnb.sql('SELECT range AS n, range * range AS sq FROM range(500)',"
    " name='saved-frame')",
    "export_job = rnb.export('SELECT 7 AS x', 'seven.csv')",
    "quiet_job = rnb.sql('SELECT 1 AS one', name='no-widget', widget=False)",
    # The last cell waits (what rnb.wait_all() does): the saved notebook then shows the end.
    "for t in rnb.list_tasks():\n    rnb.wait(t.id)",
]


def run_notebook(tmp_path: Path) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    env_db = os.environ.get("RAYTHA_NB_DB")
    os.environ["RAYTHA_NB_DB"] = str(tmp_path / "tasks.duckdb")
    try:
        NotebookClient(
            nb,
            timeout=120,
            kernel_name="python3",
            resources={"metadata": {"path": str(tmp_path)}},
            store_widget_state=True,
        ).execute()
    finally:
        if env_db is None:
            os.environ.pop("RAYTHA_NB_DB", None)
        else:
            os.environ["RAYTHA_NB_DB"] = env_db
    saved = tmp_path / "run.ipynb"
    nbformat.write(nb, saved)
    return nbformat.read(saved, as_version=4)


def task_output(cell: Any) -> dict[str, Any]:
    (output,) = [o for o in cell.outputs if MIME in o.get("data", {})]
    return dict(output["data"])


def test_saved_notebook_shows_each_tasks_final_state(tmp_path: Path) -> None:
    nb = run_notebook(tmp_path)
    errors = [o for c in nb.cells for o in c.outputs if o.output_type == "error"]
    assert errors == []

    done = task_output(nb.cells[1])
    assert done[MIME]["task"]["status"] == "complete"
    assert done[MIME]["task"]["name"] == "saved-final"
    assert done[MIME]["job_id"] == done[MIME]["task"]["id"]
    assert done[MIME]["task"]["percent_complete"] == 100
    assert "saved-final [complete]" in done["text/plain"] and "100%" in done["text/plain"]
    assert ">complete<" in done["text/html"] and "processing" not in done["text/html"]
    assert WIDGET_MIME in done  # other front ends with widgets keep the widget

    failed = task_output(nb.cells[2])
    assert failed[MIME]["task"]["status"] == "error"
    assert "KeyError" in failed[MIME]["task"]["traceback"]
    assert "missing-key" in failed["text/html"] and "raytha-nb-traceback" in failed["text/html"]
    assert "--jp-error-color1" in failed["text/html"]  # theme colours, not a fixed pink
    assert "[error]" in failed["text/plain"]

    frame = task_output(nb.cells[3])  # a data job shows its widget in the cell
    assert frame[MIME]["task"]["status"] == "complete"
    preview = frame[MIME]["preview"]
    assert preview["columns"] == ["n", "sq"]
    assert preview["rows"][:3] == [["0", "0"], ["1", "1"], ["2", "4"]]
    assert len(preview["rows"]) == 10 and preview["total_rows"] == 500
    assert (
        "<table" in frame["text/html"]
        and "500 rows, 2 columns (first 10 shown)" in (frame["text/html"])
    )
    assert "/root/" not in frame["text/html"]  # a preview, not the file's path

    exported = task_output(nb.cells[4])
    assert exported[MIME]["task"]["status"] == "complete"
    assert exported[MIME]["task"]["name"] == "export seven.csv"
    assert (tmp_path / "seven.csv").read_text() == "x\n7\n"

    assert nb.cells[5].outputs == []  # widget=False


def test_data_job_in_a_plain_script_displays_nothing(tmp_path: Path) -> None:
    script = (
        "import raytha_nb as rnb\n"
        "job = rnb.sql('SELECT 42 AS answer')\n"
        "print('status', rnb.wait(job).status.value)\n"
    )
    env = dict(os.environ, RAYTHA_NB_DB=str(tmp_path / "tasks.duckdb"))
    env.pop("RAYTHA_NB_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "status complete\n"


def test_a_widget_never_displayed_prints_nothing_after_its_task_ends(tmp_path: Path) -> None:
    # The refresher thread may see the end first; the main thread's refresh after it must
    # not re-send a display the widget never had (outside IPython that prints the bundle).
    script = (
        "import raytha_nb as rnb\n"
        "from raytha_nb.widgets import TaskProgress\n"
        "job = rnb.enqueue(lambda: 42)\n"
        "rnb.wait(job)\n"
        "widget = TaskProgress(job)\n"
        "for _ in range(3):\n"
        "    widget.refresh()\n"
        "assert widget.done, 'the final state is shown'\n"
        "print('status', widget.record.status.value)\n"
    )
    env = dict(os.environ, RAYTHA_NB_DB=str(tmp_path / "tasks.duckdb"))
    env.pop("RAYTHA_NB_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "status complete\n"
