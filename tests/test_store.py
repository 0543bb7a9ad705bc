"""The DuckDB store across real processes: locking, orphan recovery, persistence, schema."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import raytha_nb as rnb
from raytha_nb.backend import EmbeddedBackend
from raytha_nb.model import TaskQuery, TaskStatus
from raytha_nb.protocol import Batch, TaskRow
from raytha_nb.store import Store

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str, db: Path, **kwargs: object) -> subprocess.Popen[str]:
    env = {**os.environ, "RAYTHA_NB_DB": str(db), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[arg-type]
    )


def test_second_process_gets_a_clear_error(db_path: Path) -> None:
    store = Store(db_path)
    try:
        proc = run_python(
            """
            import raytha_nb as rnb
            try:
                rnb.get_task("x")
            except rnb.StoreLockedError as exc:
                print("PID", exc.pid)
                print(exc)
            """,
            db_path,
        )
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert f"PID {os.getpid()}" in out
        assert str(db_path) in out and "RAYTHA_NB_DB" in out and "in use by another process" in out
    finally:
        store.close()


def test_killed_process_leaves_tasks_interrupted(db_path: Path) -> None:
    proc = run_python(
        """
        import time, raytha_nb as rnb
        rnb.configure(workers=1, flush_interval=0.05)
        def slow():
            for i in rnb.track(range(1000), info="rows"):
                time.sleep(0.01)
        running = rnb.enqueue(slow, name="running")
        queued = rnb.enqueue(slow, name="queued")
        while rnb.get_task(running).percent_complete < 5:
            time.sleep(0.01)
        rnb.manager().flush()
        print(running, queued, flush=True)
        time.sleep(60)
        """,
        db_path,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    running, queued = line.split()
    pid = proc.pid
    os.kill(pid, signal.SIGKILL)
    proc.wait(30)

    store = Store(db_path)  # opening it recovers the orphans
    try:
        for job in (running, queued):
            task = store.get(job)
            assert task is not None and task.status is TaskStatus.INTERRUPTED
            assert task.status_info and f"PID {pid}" in task.status_info
            assert task.completed_at is not None
        assert store.get(running).percent_complete >= 5  # type: ignore[union-attr]
        assert [e["status"] for e in store.history(running)][-1] == "interrupted"
    finally:
        store.close()


def test_results_and_logs_survive_the_process(db_path: Path) -> None:
    proc = run_python(
        """
        import pandas as pd, raytha_nb as rnb
        def make():
            print("building")
            return pd.DataFrame({"n": range(5)})
        job = rnb.enqueue(make)
        rnb.wait(job, timeout=30)
        print(job)
        """,
        db_path,
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    job = out.strip()
    manager = rnb.TaskManager(db_path)
    try:
        frame = manager.result(job)
        assert list(frame["n"]) == [0, 1, 2, 3, 4]
        assert [line.text for line in manager.logs(job)] == ["building"]
        assert manager.get_task(job).status is TaskStatus.COMPLETE
    finally:
        manager.shutdown()


def test_clean_exit_marks_running_tasks_interrupted(db_path: Path) -> None:
    proc = run_python(
        """
        import threading, raytha_nb as rnb
        started = threading.Event()
        def hang():
            started.set()
            threading.Event().wait()
        job = rnb.enqueue(hang)
        started.wait()
        print(job)
        rnb.manager().shutdown()  # a plain exit would wait for the task (test_exit.py)
        """,
        db_path,
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    store = Store(db_path, recover=False)
    try:
        task = store.get(out.strip())
        assert task is not None and task.status is TaskStatus.INTERRUPTED
        assert task.status_info == "the Python process exited while it ran"
    finally:
        store.close()


def test_schema_version_and_newer_schema_refused(db_path: Path) -> None:
    store = Store(db_path)
    assert store.schema_version == len(Store.MIGRATIONS)
    store.sql("UPDATE raytha_meta SET value = '99' WHERE key = 'schema_version'")
    store.close()
    with pytest.raises(RuntimeError, match="schema version 99.*upgrade raytha_nb"):
        Store(db_path)


def test_concurrent_enqueue_and_progress(db_path: Path) -> None:
    """8 threads enqueue 5,000 tasks that each report progress 100 times."""
    manager = rnb.TaskManager(db_path, workers=4, flush_interval=0.1)
    per_thread = 625
    ids: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(ctx: rnb.TaskContext) -> int:
        for i in range(100):
            ctx.report(percent=i + 1, info=f"step {i}")
        return 1

    def producer() -> None:
        try:
            mine = [manager.submit(work, name="concurrent", task="work") for _ in range(per_thread)]
            # Read while others write.
            for job in mine[::50]:
                manager.get_task(job)
            with lock:
                ids.extend(mine)
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=producer) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert len(ids) == len(set(ids)) == 5_000
        for job in ids:
            manager.wait(job, timeout=120)
        backend = manager.backend
        assert isinstance(backend, EmbeddedBackend)
        store = backend.store
        assert store.count_tasks(TaskQuery.of("complete")) == 5_000
        rows = store.sql(
            "SELECT count(DISTINCT task_id), count(*) FILTER (status = 'complete') FROM task_events"
        ).fetchone()
        assert rows == (5_000, 5_000)
        done = store.sql("SELECT min(percent_complete), max(task_step) FROM tasks").fetchone()
        assert done == (100.0, 0)
    finally:
        manager.shutdown()


def test_enqueue_from_a_thread_while_reading(mgr: rnb.TaskManager) -> None:
    gate = threading.Event()
    job = rnb.enqueue(lambda: gate.wait(5))
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        assert rnb.get_task(job).status in (TaskStatus.ENQUEUED, TaskStatus.PROCESSING)
        assert any(t.id == job for t in rnb.list_tasks())
    gate.set()
    assert rnb.wait(job, timeout=10).status is TaskStatus.COMPLETE


def _batch(rows: list[tuple[str, str]]) -> Batch:
    return Batch(tasks=[TaskRow(i, "n", "t", "1", status, created_at=1.0) for i, status in rows])


def test_rewritten_rows_replace_the_stored_ones(db_path: Path) -> None:
    """A batch of rows mostly stored already (a map's children, stored queued, then
    ended) replaces them, one row per id, whichever statements rewrite them."""
    ids = [f"00000000-0000-4000-8000-{i:012x}" for i in range(300)]
    store = Store(db_path)
    try:
        assert store._rewrite  # DELETE + INSERT: every tasks column is a TaskRow's
        store.apply(_batch([(i, "enqueued") for i in ids[:200]]))
        store._checkpoint()
        store.apply(_batch([(i, "complete") for i in ids[100:]]))  # 100 stored, 100 new
        rows = store.sql("SELECT status, count(*), count(DISTINCT id) FROM tasks GROUP BY 1")
        assert sorted(rows.fetchall()) == [("complete", 200, 200), ("enqueued", 100, 100)]
        # A column no TaskRow carries (another statement's) must survive a rewrite.
        store.sql("ALTER TABLE tasks ADD COLUMN note VARCHAR")
        store.sql("UPDATE tasks SET note = 'kept'")
        store._rewrite = store._whole_rows()
        assert not store._rewrite
        store.apply(_batch([(i, "error") for i in ids[:10]]))
        kept = store.sql("SELECT count(*) FROM tasks WHERE status = 'error' AND note = 'kept'")
        assert kept.fetchall() == [(10,)]
    finally:
        store.close()
