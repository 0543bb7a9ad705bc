"""The text forms of task state: durations, ETA, the tqdm-like line, tracebacks, %jobs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from raytha_nb import _text
from raytha_nb.magics import JobsTable
from raytha_nb.model import TaskRecord, TaskStatus


def record(**fields: object) -> TaskRecord:
    now = datetime.now(timezone.utc)
    base: dict[str, object] = {
        "id": "0123456789abcdef",
        "name": "export",
        "task": "t",
        "status": TaskStatus.PROCESSING,
        "percent_complete": 40.0,
        "started_at": now - timedelta(seconds=12),
        "created_at": now - timedelta(seconds=13),
        "status_info": "rows 4,000/10,000",
    }
    base.update(fields)
    return TaskRecord(**base)  # type: ignore[arg-type]


def test_durations() -> None:
    assert _text.duration(7.9) == "0:07"
    assert _text.duration(723) == "12:03"
    assert _text.duration(3723) == "1:02:03"
    assert _text.duration(None) == ""


def test_summary_line_has_bar_percent_info_and_eta() -> None:
    line = _text.summary(record())
    assert line.startswith("export [processing]  |████████░░░░░░░░░░░░|  40%")
    assert "rows 4,000/10,000" in line
    assert "0:12 elapsed, ~0:18 left" in line


def test_finished_task_shows_its_duration_and_no_eta() -> None:
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    done = record(
        status=TaskStatus.COMPLETE,
        percent_complete=100.0,
        started_at=start,
        completed_at=start + timedelta(seconds=75),
    )
    assert _text.timing(done) == "took 1:15"
    assert _text.eta(done) is None
    assert _text.timing(record(status=TaskStatus.ENQUEUED, started_at=None)) == (
        "waiting for a worker"
    )


def test_result_previews() -> None:
    done = {"status": TaskStatus.COMPLETE}
    assert _text.result_preview(record(**done, result={"a": 1}, result_kind="json")) == '{"a": 1}'
    parquet = {"library": "pandas", "rows": 1200, "bytes": 2048, "path": "/r/x.parquet"}
    assert _text.result_preview(record(**done, result=parquet, result_kind="parquet")) == (
        "pandas (1,200 rows, 2,048 bytes) at /r/x.parquet"
    )
    pickled = {"type": "m.Model", "repr": "Model(k=3)", "path": "/r/x.pickle"}
    assert _text.result_preview(record(**done, result=pickled, result_kind="pickle")) == (
        "Model(k=3)"
    )
    assert _text.result_preview(record()) == ""


def test_jobs_table_text_and_html() -> None:
    table = JobsTable([record(), record(id="fedcba9876543210", name="<b>x</b>")])
    text = repr(table).splitlines()
    assert text[0].split() == [
        "id",
        "name",
        "status",
        "done",
        "step",
        "info",
        "started",
        "duration",
    ]
    assert text[1].startswith("01234567  export")
    html = table._repr_html_()
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "width:40.0%" in html
    assert "no tasks" in repr(JobsTable([]))
