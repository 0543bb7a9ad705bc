"""The data-job notebooks run top to bottom in a real kernel (nbclient + ipykernel)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run_notebook(name: str, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("TMPDIR", str(cwd))  # the notebook's data files land in the test's tmp
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()  # raises CellExecutionError, with the cell's traceback, on any error
    return nb


def outputs(nb: Any, kind: str) -> list[Any]:
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if kind == "text" and out.get("output_type") == "stream":
                found.append(out["text"])
            elif kind in out.get("data", {}):
                found.append(out["data"][kind])
    return found


@pytest.mark.timeout(300)
def test_export_notebook_runs(
    db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nb = run_notebook("export-to-csv.ipynb", tmp_path, monkeypatch)
    text = "".join(outputs(nb, "text"))
    assert "refused before starting: export: the SQL does not parse" in text
    assert "complete: wrote 2,000,000 rows" in text
    assert "complete: wrote 1,500,000 rows" in text
    assert "of 2,000,000 rows" in text  # live progress with row counts was shown
    assert "cancelled after" in text
    assert "orders-x50" not in text.split("files left:")[-1]
    assert db_path.exists()  # the kernel used the store the test gave it
    assert [p.name for p in tmp_path.glob("rnb-export-demo-*/orders*")] != []


@pytest.mark.timeout(300)
def test_task_history_notebook_runs(
    db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nb = run_notebook("task-history.ipynb", tmp_path, monkeypatch)
    images = outputs(nb, "image/png")
    assert len(images) == 2, "expected the progress plot and the timeline"
    tables = "".join(outputs(nb, "text/html"))
    for expected in ("avg_s", "failure_pct", "bad record at step 5", "avg_percent"):
        assert expected in tables
