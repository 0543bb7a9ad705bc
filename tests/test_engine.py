"""The core engine through the public API, on a real DuckDB file."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import raytha_nb as rnb
from raytha_nb.model import TaskStatus


def poll(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


class ExportContentItems(rnb.BackgroundTask):
    """Raytha's seed example, with gates so the test sees every step."""

    gates: dict[str, threading.Event] = {}

    def execute(self, job_id: str, args: Any, ctx: rnb.TaskContext) -> Any:
        ctx.report(step=1, info="Pulling content item...", percent=0)
        self.gates["step1"].wait(5)
        item_id = args["ContentItemId"]
        ctx.report(step=2, info=f"Exporting {item_id}", percent=50)
        self.gates["step2"].wait(5)
        ctx.check_cancelled()
        ctx.report(step=3, percent=100, info=json.dumps({"ok": True, "item": item_id}))
        return {"rows": 1234}


def test_raytha_example_steps_and_percent(mgr: rnb.TaskManager) -> None:
    ExportContentItems.gates = {"step1": threading.Event(), "step2": threading.Event()}
    job_id = rnb.enqueue(ExportContentItems, {"ContentItemId": "abc"})
    assert isinstance(job_id, str) and len(job_id) == 36

    poll(lambda: rnb.get_task(job_id).task_step == 1)
    task = rnb.get_background_task_by_id(job_id)
    assert (task.status, task.percent_complete) == (TaskStatus.PROCESSING, 0)
    assert task.status_info == "Pulling content item..."
    ExportContentItems.gates["step1"].set()

    poll(lambda: rnb.get_task(job_id).task_step == 2)
    assert rnb.get_task(job_id).percent_complete == 50
    assert rnb.get_task(job_id).status_info == "Exporting abc"
    ExportContentItems.gates["step2"].set()

    final = rnb.wait(job_id, timeout=10)
    assert final.status is TaskStatus.COMPLETE
    assert (final.task_step, final.percent_complete) == (3, 100)
    assert json.loads(final.status_info or "") == {"ok": True, "item": "abc"}
    assert final.result == {"rows": 1234} and rnb.result(job_id) == {"rows": 1234}
    assert final.args == {"ContentItemId": "abc"} and final.task == "ExportContentItems"
    assert final.started_at and final.completed_at and final.created_at
    assert final.created_at <= final.started_at <= final.completed_at

    # The committed history holds each step in order.
    steps = [e["task_step"] for e in rnb.history(job_id)]
    assert steps[0] == 0 and steps[-1] == 3 and steps == sorted(steps)
    assert [e["status"] for e in rnb.history(job_id)][-1] == "complete"


def test_error_keeps_type_message_traceback_and_progress(mgr: rnb.TaskManager) -> None:
    def explode(n: int) -> None:
        rnb.progress(40, "half way", step=2)
        raise ValueError(f"bad row {n}")

    job_id = rnb.enqueue(explode, {"n": 7})
    task = rnb.wait(job_id, timeout=10)
    assert task.status is TaskStatus.ERROR
    assert task.error_type == "ValueError" and task.error_message == "bad row 7"
    assert task.traceback and 'raise ValueError(f"bad row {n}")' in task.traceback
    # It starts at the user's code, not at the worker that called it.
    assert task.traceback.splitlines()[1].strip().startswith(f'File "{__file__}"')
    assert "raytha_nb/queue.py" not in task.traceback
    assert (task.percent_complete, task.status_info, task.task_step) == (40, "half way", 2)
    with pytest.raises(rnb.TaskFailed, match="bad row 7"):
        rnb.result(job_id)
    # The stored error is never overwritten, e.g. by a late cancel.
    assert rnb.cancel(job_id) is False
    assert rnb.get_task(job_id).status is TaskStatus.ERROR


def test_cancel_cooperative(mgr: rnb.TaskManager) -> None:
    started = threading.Event()

    def loop() -> None:
        started.set()
        while True:
            rnb.check_cancelled()
            time.sleep(0.001)

    job_id = rnb.enqueue(loop)
    started.wait(5)
    assert rnb.cancel(job_id) is True
    task = rnb.wait(job_id, timeout=5)
    assert task.status is TaskStatus.CANCELLED and task.error_message is None


def test_cancel_forced_for_task_that_never_checks(mgr: rnb.TaskManager) -> None:
    started = threading.Event()

    def busy() -> int:
        started.set()
        total = 0
        while True:  # pure Python, never checks: the worker must force it
            total += 1

    job_id = rnb.enqueue(busy)
    started.wait(5)
    t0 = time.monotonic()
    rnb.cancel(job_id)
    task = rnb.wait(job_id, timeout=10)
    assert task.status is TaskStatus.CANCELLED
    assert time.monotonic() - t0 < 5
    # The worker survived and runs the next task normally.
    assert rnb.wait(rnb.enqueue(lambda: "next"), timeout=10).status is TaskStatus.COMPLETE


def test_cancel_enqueued_removes_it_from_the_queue(db_path: Path) -> None:
    manager = rnb.TaskManager(db_path, workers=1, flush_interval=0.05)
    try:
        gate = threading.Event()
        ran: list[str] = []
        first = manager.enqueue(lambda: gate.wait(5))
        second = manager.enqueue(lambda: ran.append("second"))
        assert manager.get_task(second).status is TaskStatus.ENQUEUED
        assert manager.cancel(second) is True
        assert manager.get_task(second).status is TaskStatus.CANCELLED
        gate.set()
        manager.wait(first, timeout=10)
        assert manager.wait(second, timeout=10).status is TaskStatus.CANCELLED
        time.sleep(0.1)
        assert ran == []
    finally:
        manager.shutdown()


def test_fifo_order_with_one_worker(db_path: Path) -> None:
    manager = rnb.TaskManager(db_path, workers=1, flush_interval=0.05)
    try:
        order: list[int] = []
        ids = [manager.enqueue(order.append, [i]) for i in range(20)]
        for job in ids:
            manager.wait(job, timeout=10)
        assert order == list(range(20))
    finally:
        manager.shutdown()


def test_plain_functions_and_helpers(mgr: rnb.TaskManager) -> None:
    def add(a: int, b: int) -> int:
        for _ in rnb.track(range(1000), info="adding"):
            pass
        rnb.log("summed")
        return a + b

    assert rnb.result(rnb.enqueue(add, {"a": 1, "b": 2}), timeout=10) == 3
    assert rnb.result(rnb.enqueue(add, [5, 6]), timeout=10) == 11
    # Outside a task the helpers do nothing (progress) or pass through (track).
    rnb.progress(50)
    rnb.check_cancelled()
    assert list(rnb.track([1, 2, 3])) == [1, 2, 3]
    assert rnb.current() is None


def test_wrong_arguments_fail_at_enqueue(mgr: rnb.TaskManager) -> None:
    def two(a: int, b: int) -> int:
        return a + b

    with pytest.raises(TypeError, match="cannot be called with args"):
        rnb.enqueue(two, {"a": 1})


def test_registry_by_name(mgr: rnb.TaskManager) -> None:
    @rnb.register(name="double-it")
    def double(x: int) -> int:
        return 2 * x

    @rnb.register
    class Greeter(rnb.BackgroundTask):
        def execute(self, job_id: str, args: Any, ctx: rnb.TaskContext) -> str:
            return f"hello {args['who']}"

    assert rnb.result(rnb.enqueue("double-it", {"x": 4}), timeout=10) == 8
    job = rnb.enqueue("Greeter", {"who": "raytha"})
    assert rnb.result(job, timeout=10) == "hello raytha"
    assert rnb.get_task(job).task == "Greeter"
    with pytest.raises(rnb.UnknownTask, match="no task registered as 'nope'.*double-it"):
        rnb.enqueue("nope")


def test_fresh_instance_per_run(mgr: rnb.TaskManager) -> None:
    class Counter(rnb.BackgroundTask):
        def __init__(self) -> None:
            self.calls = 0

        def execute(self, job_id: str, args: Any, ctx: rnb.TaskContext) -> int:
            self.calls += 1
            return self.calls

    assert [rnb.result(rnb.enqueue(Counter), timeout=10) for _ in range(3)] == [1, 1, 1]


def test_non_serialisable_args_name_the_key_path(mgr: rnb.TaskManager) -> None:
    with pytest.raises(TypeError) as info:
        rnb.enqueue(print, {"rows": [1, 2, {"lock": threading.Lock()}]})
    message = str(info.value)
    assert "args['rows'][2]['lock']" in message and "lock" in message.lower()
    assert isinstance(info.value, rnb.NotJsonable)
    with pytest.raises(TypeError, match=r"args\['x'\].*nan"):
        rnb.enqueue(print, {"x": float("nan")})
    assert rnb.list_tasks() == []  # nothing was stored


def test_convertible_args(mgr: rnb.TaskManager) -> None:
    import dataclasses
    import datetime as dt
    import uuid

    import pydantic

    @dataclasses.dataclass
    class Window:
        start: dt.date
        tags: tuple[str, ...]

    class Req(pydantic.BaseModel):
        id: uuid.UUID
        limit: int

    uid = uuid.UUID(int=5)
    job = rnb.enqueue(
        lambda **kw: kw,
        {"w": Window(dt.date(2026, 1, 2), ("a",)), "req": Req(id=uid, limit=3), "u": uid},
    )
    expected = {
        "w": {"start": "2026-01-02", "tags": ["a"]},
        "req": {"id": str(uid), "limit": 3},
        "u": str(uid),
    }
    assert rnb.result(job, timeout=10) == expected
    assert rnb.get_task(job).args == expected


@pytest.mark.parametrize("call", ["get_task", "cancel", "wait", "result", "logs", "delete"])
def test_unknown_ids(mgr: rnb.TaskManager, call: str) -> None:
    with pytest.raises(rnb.TaskNotFound) as info:
        getattr(rnb, call)("no-such-id")
    assert isinstance(info.value, KeyError)
    assert "no-such-id" in str(info.value)


def test_results_round_trip(mgr: rnb.TaskManager) -> None:
    import pandas as pd
    import polars as pl
    import pyarrow as pa

    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    indexed = frame.set_index("b")
    # Index names survive as they were: one named, one not, one that looks generated.
    multi = pd.DataFrame({"k": [1, 2], "j": ["p", "q"], "level_0": [5, 6], "v": [0.5, 1.5]})
    multi = multi.set_index(["k", "j", "level_0"])
    multi.index.names = ["k", None, "level_0"]
    cases = {
        "pandas": frame,
        "indexed": indexed,
        "multi": multi,
        "polars": pl.DataFrame({"a": [1, 2]}),
        "arrow": pa.table({"a": [1.5]}),
    }
    ids = {key: rnb.enqueue(lambda v=value: v, name=key) for key, value in cases.items()}
    for job in ids.values():
        assert rnb.wait(job, timeout=10).result_kind == "parquet"
    # Drop the in-memory copies so result() reads the Parquet files back.
    mgr.values.clear()
    pd.testing.assert_frame_equal(rnb.result(ids["pandas"]), frame)
    pd.testing.assert_frame_equal(rnb.result(ids["indexed"]), indexed)
    pd.testing.assert_frame_equal(rnb.result(ids["multi"]), multi)
    assert rnb.result(ids["polars"]).equals(cases["polars"])
    assert rnb.result(ids["arrow"]).equals(cases["arrow"])
    record = rnb.get_task(ids["pandas"])
    assert record.result["rows"] == 3 and Path(record.result["path"]).exists()


def test_unpicklable_result_keeps_repr(mgr: rnb.TaskManager) -> None:
    job = rnb.enqueue(lambda: threading.Lock())
    task = rnb.wait(job, timeout=10)
    assert task.status is TaskStatus.COMPLETE and task.result_kind == "repr"
    mgr.values.clear()
    with pytest.raises(rnb.ResultUnavailable, match="could not be stored"):
        rnb.result(job)


def test_result_of_unfinished_task(mgr: rnb.TaskManager) -> None:
    gate = threading.Event()
    job = rnb.enqueue(lambda: gate.wait(5))
    with pytest.raises(rnb.ResultUnavailable, match="timeout=None"):
        rnb.result(job)
    gate.set()
    assert rnb.result(job, timeout=None) is True


def test_wait_timeout(mgr: rnb.TaskManager) -> None:
    gate = threading.Event()
    job = rnb.enqueue(lambda: gate.wait(5))
    with pytest.raises(TimeoutError, match="still"):
        rnb.wait(job, timeout=0.1)
    gate.set()
    rnb.wait(job, timeout=10)


def test_terminal_state_is_committed_before_wait_returns(mgr: rnb.TaskManager) -> None:
    for _ in range(20):
        job = rnb.enqueue(lambda: 1)
        rnb.wait(job, timeout=10)
        row = mgr.backend.store.sql("SELECT status FROM tasks WHERE id = ?", [job]).fetchone()  # type: ignore[attr-defined]
        assert row == ("complete",)


def test_output_goes_to_the_task_log(
    mgr: rnb.TaskManager, capfd: pytest.CaptureFixture[str]
) -> None:
    import sys

    def chatty() -> None:
        for i in range(5):
            print(f"line {i}")
        print("partial", end="")
        sys.stderr.write("oops\n")

    job = rnb.enqueue(chatty)
    rnb.wait(job, timeout=10)
    lines = rnb.logs(job)
    assert [(line.stream, line.text) for line in lines] == [
        *(("stdout", f"line {i}") for i in range(5)),
        ("stderr", "oops"),
        ("stdout", "partial"),
    ] or [(line.stream, line.text) for line in lines] == [
        *(("stdout", f"line {i}") for i in range(5)),
        ("stdout", "partial"),
        ("stderr", "oops"),
    ]
    assert [line.seq for line in lines] == list(range(1, 8))
    assert rnb.logs(job, since=5)[0].seq == 6
    out, err = capfd.readouterr()
    assert "line 0" not in out and "oops" not in err
    print("foreground still prints")
    assert "foreground still prints" in capfd.readouterr().out


def test_track_reports_rising_percent_and_is_a_cancel_point(mgr: rnb.TaskManager) -> None:
    seen: list[float] = []
    gate = threading.Event()

    def work() -> None:
        for i in rnb.track(range(200), info="rows"):
            time.sleep(0.002)
            if i == 100:
                gate.set()

    job = rnb.enqueue(work)
    while not rnb.get_task(job).finished:
        seen.append(rnb.get_task(job).percent_complete)
        time.sleep(0.01)
    assert rnb.get_task(job).percent_complete == 100
    assert seen == sorted(seen) and len(set(seen)) > 3
    assert rnb.get_task(job).status_info == "rows 200/200"

    def endless() -> None:
        for _ in rnb.track(iter(int, 1)):  # unsized and infinite
            pass

    job = rnb.enqueue(endless)
    poll(lambda: rnb.get_task(job).status is TaskStatus.PROCESSING)
    rnb.cancel(job)
    assert rnb.wait(job, timeout=5).status is TaskStatus.CANCELLED


def test_list_tasks_filters_and_order(mgr: rnb.TaskManager) -> None:
    ids = [rnb.enqueue(lambda: None, name=f"job{i % 2}") for i in range(6)]
    for job in ids:
        rnb.wait(job, timeout=10)
    listed = rnb.list_tasks()
    assert [t.id for t in listed] == ids[::-1]
    assert {t.id for t in rnb.list_tasks(name="job0")} == set(ids[0::2])
    assert len(rnb.list_tasks(status="complete", limit=2)) == 2
    assert rnb.list_tasks(status=["error", "cancelled"]) == []


def test_delete_only_finished(mgr: rnb.TaskManager) -> None:
    gate = threading.Event()
    job = rnb.enqueue(lambda: gate.wait(5))
    with pytest.raises(rnb.TaskStateError, match="cancel it"):
        rnb.delete(job)
    gate.set()
    rnb.wait(job, timeout=10)
    rnb.delete(job)
    with pytest.raises(rnb.TaskNotFound):
        rnb.get_task(job)


def test_list_tasks_never_misses_a_task_that_finishes_meanwhile(
    mgr: rnb.TaskManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task finishes, is committed and leaves memory while the store is queried."""
    gate = threading.Event()
    job = rnb.enqueue(gate.wait, [5])
    query = mgr.backend.list_tasks

    def racing_query(q: rnb.TaskQuery) -> list[rnb.TaskRecord]:
        rows = query(q)  # the store does not have the task yet...
        gate.set()
        poll(lambda: rnb.get_task(job).finished)
        mgr.flush()  # ...and now it is committed and gone from memory
        assert mgr.live(job) is None
        return rows

    monkeypatch.setattr(mgr.backend, "list_tasks", racing_query)
    assert job in {t.id for t in rnb.list_tasks(limit=None)}


def test_task_store_connection_reads_the_tables(mgr: rnb.TaskManager) -> None:
    job = rnb.enqueue(lambda: print("hi"), name="sql-me")
    rnb.wait(job, timeout=10)
    con = rnb.task_store()
    assert con.execute("SELECT name, status FROM tasks WHERE id = ?", [job]).fetchall() == [
        ("sql-me", "complete")
    ]
    assert con.execute("SELECT text FROM task_logs WHERE task_id = ?", [job]).fetchall() == [
        ("hi",)
    ]
    statuses = con.execute("SELECT status FROM task_events WHERE task_id = ?", [job]).fetchall()
    assert [s for (s,) in statuses] == ["enqueued", "processing", "complete"]


def test_logs_of_an_unpublished_task_come_from_memory_only(db_path: Path) -> None:
    """Until its first publish a task has nothing in the store, so logs() must not ask
    it (through a server that is a 404 round trip per widget of every fresh task)."""
    from raytha_nb.backend import EmbeddedBackend
    from raytha_nb.store import Store

    class HeldStore(EmbeddedBackend):
        """The real store, with publishing held until released and logs() counted."""

        def __init__(self, path: Path) -> None:
            super().__init__(Store(path))
            self.release = threading.Event()
            self.log_queries = 0

        def publish(self, batch: Any, active: list[str]) -> dict[str, bool]:
            self.release.wait(10)
            return super().publish(batch, active)

        def logs(self, job_id: str, since: int = 0, limit: int = 10_000) -> list[Any]:
            self.log_queries += 1
            return super().logs(job_id, since, limit)

    store = HeldStore(db_path)
    manager = rnb.TaskManager(backend=store, workers=1, flush_interval=0.05)
    try:
        printed = threading.Event()

        def chatty() -> None:
            print("hello")
            printed.set()

        job = manager.enqueue(chatty)
        assert printed.wait(10)
        assert [line.text for line in manager.logs(job)] == ["hello"]
        assert store.log_queries == 0
        store.release.set()
        manager.wait(job, timeout=10)
        assert [line.text for line in manager.logs(job)] == ["hello"]  # now from the store
        assert store.log_queries >= 1
    finally:
        store.release.set()
        manager.shutdown()


def test_shutdown_gives_up_at_once_when_the_store_is_closed(db_path: Path) -> None:
    """A kernel stopping with its server finds the store closed: no retrying for the
    whole flush timeout (the server marks its unfinished tasks interrupted itself)."""
    from raytha_nb.backend import EmbeddedBackend
    from raytha_nb.store import Store

    store = Store(db_path)
    manager = rnb.TaskManager(backend=EmbeddedBackend(store), workers=1, flush_interval=0.05)
    gate = threading.Event()
    job = manager.enqueue(lambda: gate.wait(10))
    poll(lambda: manager.get_task(job).status == "processing")
    store.close()
    gate.set()
    started = time.monotonic()
    manager.shutdown()
    # Retrying would take publisher.stop's full 5 s; giving up takes milliseconds.
    assert time.monotonic() - started < 2.5


def test_threads_a_task_starts_join_it_through_bind(
    mgr: rnb.TaskManager, capfd: pytest.CaptureFixture[str]
) -> None:
    """A pool inside a task: bound workers print whole lines into the task's log (none
    spliced with another thread's) and report progress; nothing reaches the terminal."""
    from concurrent.futures import ThreadPoolExecutor

    def part(i: int) -> int:
        for j in range(200):
            print(f"part {i}", "line", j)  # six writes: room for other threads in between
        rnb.progress(25 * (i + 1), info=f"part {i}")
        return i

    def fan_out() -> list[int]:
        with ThreadPoolExecutor(4) as pool:
            return list(pool.map(rnb.bind(part), range(4)))

    import sys

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, as a loaded machine would
    try:
        job = rnb.enqueue(fan_out)
        assert rnb.wait(job, timeout=30).status == "complete"
    finally:
        sys.setswitchinterval(interval)
    assert rnb.result(job) == [0, 1, 2, 3]
    texts = [line.text for line in rnb.logs(job)]
    assert sorted(texts) == sorted(f"part {i} line {j}" for i in range(4) for j in range(200))
    assert rnb.get_task(job).status_info.startswith("part ")
    assert "part 0 line" not in capfd.readouterr().out
    assert rnb.bind(part) is part  # outside a task: unchanged


def test_a_bound_worker_sees_the_cancel(mgr: rnb.TaskManager) -> None:
    from concurrent.futures import ThreadPoolExecutor

    started = threading.Event()

    def spin() -> None:
        started.set()
        while True:
            rnb.check_cancelled()
            time.sleep(0.01)

    def fan_out() -> None:
        with ThreadPoolExecutor(2) as pool:
            pool.submit(rnb.bind(spin)).result()

    job = rnb.enqueue(fan_out)
    assert started.wait(10)
    rnb.cancel(job)
    assert rnb.wait(job, timeout=10).status == "cancelled"


def test_bind_on_the_tasks_own_thread_leaves_a_half_printed_line_alone(
    mgr: rnb.TaskManager,
) -> None:
    def work() -> None:
        print("start ", end="")
        rnb.bind(lambda: None)()  # e.g. a pool that happens to run it inline
        print("end")

    job = rnb.enqueue(work)
    rnb.wait(job, timeout=10)
    assert [line.text for line in rnb.logs(job)] == ["start end"]


def test_cancelling_a_task_a_worker_just_started_requests_a_real_cancel() -> None:
    """cancel() saw it queued, a worker started it meanwhile: marking it cancelled now
    would leave it running unasked. The check happens under the task's lock."""
    from raytha_nb._live import LiveTask

    live = LiveTask("0" * 32, "job", "t", None, kernel_id=None, notebook=None, pid=1)
    live.transition(TaskStatus.PROCESSING)  # the worker won the race
    assert not live.transition(TaskStatus.CANCELLED, only_from=TaskStatus.ENQUEUED)
    assert live.status is TaskStatus.PROCESSING


def test_odd_progress_values_are_stored_sanely_and_never_stall_the_store(
    mgr: rnb.TaskManager,
) -> None:
    """report() takes what it is given (it must stay cheap); what is stored and shown is
    made sane, so one odd value cannot make every flush of the kernel fail."""
    gate = threading.Event()

    def odd(value: Any, info: Any, step: Any) -> None:
        rnb.progress(value, info=info, step=step)
        gate.wait(10)

    jobs = [
        rnb.enqueue(odd, {"value": "40", "info": 7, "step": "2"}),
        rnb.enqueue(odd, {"value": "lots", "info": None, "step": None}),
    ]
    nan = rnb.enqueue(lambda: (rnb.progress(float("nan"), info=["a"]), gate.wait(10)))
    poll(lambda: all(rnb.get_task(j).status == "processing" for j in [*jobs, nan]))
    seen = [rnb.get_task(j) for j in [*jobs, nan]]
    assert [(r.percent_complete, r.status_info, r.task_step) for r in seen] == [
        (40.0, "7", 2),
        (0.0, None, 0),
        (0.0, "['a']", 0),
    ]
    gate.set()
    for job in [*jobs, nan]:
        assert rnb.wait(job, timeout=10).status == "complete"
    stored = mgr.backend.store.sql(  # type: ignore[attr-defined]
        "SELECT count(*) FROM tasks WHERE status = 'complete' AND isfinite(percent_complete)"
    ).fetchone()
    assert stored == (3,)


def test_a_task_thread_reporting_after_its_task_ended_changes_nothing() -> None:
    """A task thread still running after its task was interrupted (a kernel restart)
    or cancelled must not overwrite the final state's reason."""
    from raytha_nb._live import LiveTask

    live = LiveTask(
        "00000000-0000-0000-0000-000000000001", "t", "t", None, kernel_id=None, notebook=None, pid=1
    )
    live.transition(rnb.TaskStatus.PROCESSING)
    live.report(10.0, "row 11 of 400", 1)
    live.transition(rnb.TaskStatus.INTERRUPTED, status_info="the Python process exited")
    live.report(12.0, "row 12 of 400", 2)
    record = live.snapshot()
    assert (record.status_info, record.percent_complete, record.task_step) == (
        "the Python process exited",
        10.0,
        1,
    )


@pytest.mark.parametrize("read", ["row", "snapshot"])
def test_a_row_is_one_state_even_if_the_task_ends_while_it_is_read(read: str) -> None:
    """The publisher reads a task's row while its thread runs on. A thread switch in the
    middle of the read let a fast task report 100 % and end meanwhile: the row said
    ``complete`` at 0 %, and a server keeps the first final row it stores (seen as one
    such task in 800 in test_server_concurrency). Here the task ends in that gap."""
    from raytha_nb._live import LiveTask

    ended = threading.Event()

    class SwitchAfterProgress(LiveTask):
        """Lets the task's thread run to its end right after a read of the progress."""

        switch = False

        def reported(self) -> tuple[int, float, str | None]:
            progress = super().reported()
            if self.switch:
                self.switch = False
                threading.Thread(target=finish, daemon=True).start()
                ended.wait(0.5)  # the task ends here unless the read holds it off
            return progress

    live = SwitchAfterProgress("0" * 32, "t", "t", None, kernel_id=None, notebook=None, pid=1)
    live.transition(TaskStatus.PROCESSING)

    def finish() -> None:  # the task's own thread: its last report, then its end
        live.report(100.0, "done", 5)
        live.transition(TaskStatus.COMPLETE)
        ended.set()

    live.switch = True
    first = live.row(time.time()) if read == "row" else live.snapshot()
    assert ended.wait(5)
    assert (TaskStatus(first.status), first.percent_complete) == (TaskStatus.PROCESSING, 0.0)
    last = live.row(time.time())
    assert (last.status, last.percent_complete, last.task_step) == ("complete", 100.0, 5)
