"""The text forms of task state: durations, ETA, the tqdm-like line, tracebacks, %jobs."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

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
        "pandas (1,200 rows, 2.0 KiB) at /r/x.parquet"
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


SIZES = [0, 1, 1023, 1024, 1280, 1536, 10_240, 1_048_524, 1_048_576, 641_046_123]
SIZES += [1_073_741_823, 10**12, 2**50, 2**60]
COUNTS = [0, 1, 2, 1_000, 1_234_567]


def test_words_and_units() -> None:
    assert _text.count(1, "line") == "1 line"
    assert _text.count(2, "line") == "2 lines"
    assert _text.count(0, "row") == "0 rows"
    assert _text.count(1_234, "entry", "entries") == "1,234 entries"
    assert _text.byte_size(1023) == "1023 B"
    assert _text.byte_size(1024) == "1.0 KiB"
    assert _text.byte_size(641_046_123) == "611.3 MiB"  # MiB, not "MB"
    assert _text.byte_size(1_073_741_823) == "1.0 GiB"  # never "1024.0 MiB"
    assert _text.log_title(1, finished=False) == "Log (1 line)"
    assert _text.log_title(0, finished=False) == "Log (no lines yet)"
    assert _text.log_title(0, finished=True) == "Log (empty)"


def test_str_of_a_task_has_no_step_zero() -> None:
    assert "step" not in str(record())
    assert "step 2" in str(record(task_step=2))
    assert "step" not in _text.summary(record())


def test_python_and_typescript_give_the_same_text() -> None:
    """The built lib/format.js, run by node, against _text for one table of values."""
    lib = Path(__file__).resolve().parents[1] / "labextension" / "lib" / "format.js"
    with tempfile.TemporaryDirectory() as tmp:
        module = Path(tmp) / "format.mjs"  # an ES module; .mjs whatever package.json says
        shutil.copy(lib, module)
        script = (
            f"import * as f from {json.dumps(module.as_uri())};"
            f"const sizes = {json.dumps(SIZES)}, counts = {json.dumps(COUNTS)};"
            "console.log(JSON.stringify({"
            "sizes: sizes.map(f.byteSize),"
            "counts: counts.map(n => f.count(n, 'line')),"
            "titles: counts.flatMap(n => [f.logTitle(n, false), f.logTitle(n, true)])}));"
        )
        done = subprocess.run(
            ["node", "--input-type=module", "-e", script],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "sizes": [_text.byte_size(n) for n in SIZES],
        "counts": [_text.count(n, "line") for n in COUNTS],
        "titles": [_text.log_title(n, f) for n in COUNTS for f in (False, True)],
    }


def _waits(now: datetime) -> list[TaskRecord]:
    """Waiting and retried tasks, times relative to ``now`` (off whole seconds)."""
    s = timedelta(seconds=1)
    scheduled, awaiting = TaskStatus.SCHEDULED, TaskStatus.AWAITING
    return [
        record(status=scheduled, started_at=None, scheduled_for=now + 11.5 * s),
        record(status=scheduled, started_at=None, scheduled_for=now + 125.5 * s),
        record(status=scheduled, started_at=None, scheduled_for=now - 2 * s),
        record(status=scheduled, started_at=None, scheduled_for=None),
        record(
            status=scheduled,
            attempt=2,
            max_attempts=4,
            started_at=None,
            scheduled_for=now + 13.5 * s,
        ),
        record(status=awaiting, started_at=None, depends_on=["a"]),
        record(status=awaiting, started_at=None, depends_on=["a", "b"]),
        record(status=TaskStatus.ENQUEUED, started_at=None),
        record(attempt=3, max_attempts=4, started_at=now - 12.5 * s),
        record(attempt=1, max_attempts=4, started_at=now - 3725.5 * s, percent_complete=0.0),
        record(
            status=TaskStatus.COMPLETE,
            attempt=2,
            max_attempts=2,
            started_at=now - 80 * s,
            completed_at=now - 5 * s,
        ),
    ]


def test_waits_in_words() -> None:
    now = datetime.now(timezone.utc)
    texts = [_text.timing(r) for r in _waits(now)]
    assert texts[0] == "starts in 12 s" and texts[1] == "starts in 2:05"
    assert texts[2] == texts[3] == "starts now"
    assert texts[4] == "attempt 2 of 4, next in 14 s"
    assert texts[5:8] == ["waiting for 1 task", "waiting for 2 tasks", "waiting for a worker"]
    assert texts[8] == "attempt 3 of 4, 0:12 elapsed, ~0:18 left"
    assert texts[9] == "1:02:05 elapsed" and texts[10] == "took 1:15"


def test_python_and_typescript_say_the_same_waits() -> None:
    """format.js `waiting`/`timing`/`duration` against _text for the same records and now."""
    lib = Path(__file__).resolve().parents[1] / "labextension" / "lib" / "format.js"
    now = datetime.now(timezone.utc)
    records = _waits(now)
    expected = {  # right away: _text reads the clock itself, within milliseconds of now
        "timing": [_text.timing(r) for r in records],
        "waiting": [_text.waiting(r) for r in records],
        "durations": [_text.duration(x) for x in (None, -1, 0, 7.9, 59.99, 723, 3723, 360000)],
    }
    tasks = [r.to_json() for r in records]
    with tempfile.TemporaryDirectory() as tmp:
        module = Path(tmp) / "format.mjs"
        shutil.copy(lib, module)
        script = (
            f"import * as f from {json.dumps(module.as_uri())};"
            f"const tasks = {json.dumps(tasks, default=str)}, now = {now.timestamp() * 1000};"
            "console.log(JSON.stringify({"
            "timing: tasks.map(t => f.timing(t, now)),"
            "waiting: tasks.map(t => f.waiting(t, now)),"
            "durations: [null, -1, 0, 7.9, 59.99, 723, 3723, 360000].map(f.duration)}));"
        )
        done = subprocess.run(
            ["node", "--input-type=module", "-e", script],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == expected
