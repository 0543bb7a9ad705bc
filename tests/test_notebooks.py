"""Execute the example notebooks end to end with nbclient, as CI and a first-time user do."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

#: Example notebooks that need the Jupyter server run in a server's kernel elsewhere:
#: schedules.ipynb in tests/test_schedules.py.
SERVER_ONLY = {"schedules.ipynb"}
NOTEBOOKS = sorted(
    path
    for path in (Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb")
    if path.name not in SERVER_ONLY
)
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"

pytestmark = pytest.mark.timeout(240)

_executed: dict[Path, Any] = {}


def executed(path: Path, tmp: pytest.TempPathFactory) -> Any:
    """The notebook after running it once in a fresh kernel on its own task store."""
    if path not in _executed:
        workdir = tmp.mktemp(path.stem)
        nb = nbformat.read(path, as_version=4)
        old = os.environ.get("RAYTHA_NB_DB")
        os.environ["RAYTHA_NB_DB"] = str(workdir / "tasks.duckdb")
        try:
            NotebookClient(
                nb,
                timeout=120,
                kernel_name="python3",
                resources={"metadata": {"path": str(workdir)}},
                store_widget_state=True,
            ).execute()
        finally:
            if old is None:
                os.environ.pop("RAYTHA_NB_DB", None)
            else:
                os.environ["RAYTHA_NB_DB"] = old
        _executed[path] = nb
    return _executed[path]


def texts(cell: Any) -> str:
    out = []
    for output in cell.get("outputs", []):
        out.append(output.get("text", ""))
        out.append(str(output.get("data", {}).get("text/plain", "")))
    return "".join(out)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_without_errors(path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    nb = executed(path, tmp_path_factory)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert errors == []


def test_quickstart_shows_widgets_and_outcomes(tmp_path_factory: pytest.TempPathFactory) -> None:
    nb = executed(next(p for p in NOTEBOOKS if p.name == "quickstart.ipynb"), tmp_path_factory)
    code = [c for c in nb.cells if c.cell_type == "code"]

    def out(prefix: str) -> str:
        return texts(next(c for c in code if c.source.startswith(prefix)))

    assert "squares [complete]" in out("%jobs wait squares")
    assert "20540 40" in out("%jobs wait squares")  # names the task assigned exist
    cancelled = out("# Wait until it has visibly moved")
    assert "slow [cancelled]" in cancelled
    # Cancelled after it visibly moved, even under Run All (not at 0 %).
    percent = re.search(r"slow \[cancelled\]  \|[█░]+\| +(\d+)%", cancelled)
    assert percent is not None and 30 <= int(percent.group(1)) < 100, cancelled
    assert "oops [error]" in out("%jobs wait oops")
    assert "{'exported': 500}" in out("record = rnb.wait(job")
    assert "extract: started" in out('etl = rnb.list_tasks(name="etl")[0]')
    assert "still responsive: 42" in out('print("still responsive:", 6 * ')
    # Every %%background cell shows one widget; the saved widget state holds the outcomes.
    background = [c for c in code if c.source.startswith("%%background")]
    assert len(background) == 5
    for cell in background:
        assert len([o for o in cell.outputs if WIDGET_MIME in o.get("data", {})]) == 1
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    models = list(state.values())
    bars = [m["state"] for m in models if m["model_name"] == "FloatProgressModel"]
    assert any(b["value"] == 100.0 for b in bars)
    colours = {
        m["state"].get("bar_color") for m in models if m["model_name"] == "ProgressStyleModel"
    }
    assert {"#4caf50", "#f44336", "#9e9e9e"} <= colours  # complete, error, cancelled
    html = " ".join(str(m["state"].get("value", "")) for m in models)
    assert "ZeroDivisionError: division by zero" in html  # the traceback in the widget


def test_task_history_timeline_shows_recent_jobs_on_their_own_axis(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    nb = executed(next(p for p in NOTEBOOKS if p.name == "task-history.ipynb"), tmp_path_factory)
    cell = next(c for c in nb.cells if c.source.startswith("# The 20 most recent jobs"))
    assert any("image/png" in o.get("data", {}) for o in cell.outputs)
    assert "LIMIT 20" in cell.source and "min(started_at) OVER ()" in cell.source
