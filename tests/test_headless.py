"""Headless runs wait for their tasks and fail when one failed: ``rnb.wait_all()`` and
``%jobs wait --all``, in-process and through real kernels (nbclient, papermill)."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import papermill
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

import raytha_nb as rnb
from raytha_nb import _manager

pytestmark = pytest.mark.timeout(180)


def _sleepy(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _fails(message: str) -> None:
    raise ValueError(message)


def test_wait_all_waits_for_every_task_and_returns_them(mgr: rnb.TaskManager) -> None:
    ids = [rnb.enqueue(_sleepy, {"seconds": 0.3}, name=f"s{i}") for i in range(3)]
    start = time.monotonic()
    records = rnb.wait_all()
    assert time.monotonic() - start >= 0.25
    assert [r.id for r in records] == ids
    assert {r.status for r in records} == {rnb.TaskStatus.COMPLETE}
    # Each task is waited for once: a second call has nothing left to wait for.
    assert rnb.wait_all(timeout=1) == []


def test_wait_all_names_every_failed_task_and_its_error(mgr: rnb.TaskManager) -> None:
    rnb.enqueue(_fails, {"message": "first went wrong"}, name="one")
    rnb.enqueue(_sleepy, {"seconds": 0.1}, name="fine")
    rnb.enqueue(_fails, {"message": "second went wrong"}, name="two")
    with pytest.raises(rnb.TaskFailed) as caught:
        rnb.wait_all()
    text = str(caught.value)
    assert text.startswith("2 tasks failed:")
    assert "task one (" in text and "ValueError: first went wrong" in text
    assert "task two (" in text and "ValueError: second went wrong" in text
    assert "fine" not in text
    assert "raise ValueError(message)" in text  # each failed task's traceback
    assert [r.name for r in caught.value.records] == ["one", "two"]
    # Reported once: the next wait_all does not raise for them again.
    assert rnb.wait_all() == []


def test_one_failed_task_reads_like_result(mgr: rnb.TaskManager) -> None:
    rnb.enqueue(_fails, {"message": "only this"}, name="solo")
    with pytest.raises(
        rnb.TaskFailed, match=r"^task solo \(.*\) failed with ValueError: only this"
    ):
        rnb.wait_all()


def test_a_cancelled_task_is_not_a_failure(mgr: rnb.TaskManager) -> None:
    job = rnb.enqueue(_sleepy, {"seconds": 5}, name="stopped")
    while rnb.get_task(job).status is rnb.TaskStatus.ENQUEUED:
        time.sleep(0.01)
    rnb.cancel(job)
    (record,) = rnb.wait_all(timeout=30)
    assert record.status is rnb.TaskStatus.CANCELLED


def test_wait_all_includes_tasks_started_while_it_waits(mgr: rnb.TaskManager) -> None:
    rnb.enqueue(_sleepy, {"seconds": 0.2}, name="first")
    late: list[str] = []
    timer = threading.Timer(0.1, lambda: late.append(rnb.enqueue(_fails, {"message": "late"})))
    timer.start()
    with pytest.raises(rnb.TaskFailed, match="ValueError: late"):
        rnb.wait_all(timeout=30)
    timer.join()


def test_wait_all_timeout_names_the_unfinished_tasks(mgr: rnb.TaskManager) -> None:
    rnb.enqueue(_sleepy, {"seconds": 3}, name="too-slow")
    with pytest.raises(TimeoutError, match=r"1 task\(s\) still unfinished after 0.3s: too-slow"):
        rnb.wait_all(timeout=0.3)
    assert [r.name for r in rnb.wait_all(timeout=30)] == ["too-slow"]


# -- real kernels ------------------------------------------------------------------------

SLOW_CELL = """%%background --name five
for i in rnb.track(range(20), info="slow"):
    time.sleep(0.1)
"done"
"""


def _notebook(*cells: str) -> nbformat.NotebookNode:
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nb


def _texts(nb: nbformat.NotebookNode) -> str:
    out = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            out.append(str(output.get("text", "")))
            out.append(str(output.get("data", {}).get("text/plain", "")))
            out.append(str(output.get("evalue", "")))
    return "\n".join(out)


def _stored(db: Path, name: str) -> rnb.TaskRecord:
    """The task as the store has it, read after the kernel has exited."""
    manager = rnb.configure(db)
    try:
        return manager.list_tasks(name=name)[0]
    finally:
        manager.shutdown()
        _manager._default = None


def test_nbclient_run_ending_with_jobs_wait_all_lets_the_task_finish(db_path: Path) -> None:
    nb = _notebook("import time\nimport raytha_nb as rnb", SLOW_CELL, "%jobs wait --all")
    start = time.monotonic()
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    assert time.monotonic() - start >= 2.0  # the run lasted as long as the task
    assert "five [complete]" in _texts(nb) and "100%" in _texts(nb)
    record = _stored(db_path, "five")
    assert record.status is rnb.TaskStatus.COMPLETE
    assert record.percent_complete == 100


def test_papermill_run_ending_with_wait_all_lets_the_task_finish(
    db_path: Path, tmp_path: Path
) -> None:
    source, output = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(
        _notebook("import time\nimport raytha_nb as rnb", SLOW_CELL, "rnb.wait_all()"), source
    )
    papermill.execute_notebook(str(source), str(output), kernel_name="python3", progress_bar=False)
    assert _stored(db_path, "five").status is rnb.TaskStatus.COMPLETE


def test_papermill_fails_the_run_when_a_task_failed(db_path: Path, tmp_path: Path) -> None:
    failing = (
        '%%background --name loader\ntime.sleep(0.5)\nraise ValueError("bad row 7 in input.csv")'
    )
    source, output = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(
        _notebook("import time\nimport raytha_nb as rnb", failing, "%jobs wait --all"), source
    )
    with pytest.raises(papermill.PapermillExecutionError) as caught:
        papermill.execute_notebook(
            str(source), str(output), kernel_name="python3", progress_bar=False
        )
    error = caught.value
    assert error.ename == "TaskFailed"
    assert "task loader (" in error.evalue
    assert "failed with ValueError: bad row 7 in input.csv" in error.evalue
    assert _stored(db_path, "loader").status is rnb.TaskStatus.ERROR


def test_nbconvert_execute_exits_non_zero_when_a_task_failed(db_path: Path, tmp_path: Path) -> None:
    failing = '%%background --name etl\ntime.sleep(0.5)\nraise RuntimeError("source table missing")'
    source = tmp_path / "in.ipynb"
    nbformat.write(
        _notebook("import time\nimport raytha_nb as rnb", failing, "%jobs wait --all"), source
    )
    done = subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
         str(source), "--output", "out.ipynb"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode != 0
    err = re.sub(r"\x1b\[[0-9;]*m", "", done.stderr)  # the traceback's colours
    assert "TaskFailed: task etl (" in err
    assert "failed with RuntimeError: source table missing" in err
