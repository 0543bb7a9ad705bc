"""tqdm inside tasks run by enqueue() (no kernel): reports to the task, draws nothing."""

from __future__ import annotations

import io

import pytest
from tqdm import tqdm

import raytha_nb as rnb


def test_tqdm_in_a_task_reports_and_draws_nothing(
    mgr: rnb.TaskManager, capsys: pytest.CaptureFixture[str]
) -> None:
    def job() -> int:
        return sum(1 for _ in tqdm(range(1000), desc="items", mininterval=0))

    job_id = rnb.enqueue(job)
    record = rnb.wait(job_id, timeout=10)
    assert record.status is rnb.TaskStatus.COMPLETE
    assert record.status_info == "items: 1,000/1,000"
    assert record.percent_complete == 100.0
    assert rnb.logs(job_id) == []  # tqdm's \r-redrawn bar did not flood the log
    assert capsys.readouterr().err == ""


def test_tqdm_without_total_reports_a_count(mgr: rnb.TaskManager) -> None:
    job_id = rnb.enqueue(lambda: sum(1 for _ in tqdm(iter(range(50)), mininterval=0)))
    assert rnb.wait(job_id, timeout=10).status_info == "50 items"


def test_tqdm_loop_is_a_cancellation_point(mgr: rnb.TaskManager) -> None:
    import threading

    started = threading.Event()

    def forever() -> None:
        bar = tqdm(total=10**9, mininterval=0)
        started.set()
        while True:
            bar.update(1)

    job_id = rnb.enqueue(forever)
    assert started.wait(10)
    rnb.cancel(job_id)
    record = rnb.wait(job_id, timeout=10)
    assert record.status is rnb.TaskStatus.CANCELLED


def test_tqdm_outside_a_task_is_untouched() -> None:
    out = io.StringIO()
    for _ in tqdm(range(3), file=out, mininterval=0, ascii=True):
        pass
    assert "3/3" in out.getvalue()
