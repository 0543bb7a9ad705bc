"""rnb.map / rnb.as_completed: a group task over one child task per item, on a real
DuckDB store (and one real kernel for the group's single widget)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import raytha_nb as rnb
from raytha_nb import _group, publisher
from raytha_nb._live import LiveTask, run_columns
from raytha_nb._results import ValueCache
from raytha_nb.backend import EmbeddedBackend
from raytha_nb.model import TaskStatus
from raytha_nb.protocol import RUN_COLUMNS, Batch, TaskBlock, TaskRow
from raytha_nb.store import Store
from raytha_nb.threads import ThreadExecutor


def _square(x: int) -> int:
    return x * x


def _wait_until(check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_map_10000_items_returns_results_in_input_order(mgr: rnb.TaskManager) -> None:
    group = rnb.map(_square, range(10_000), show=False)
    assert rnb.result(group, timeout=120) == [i * i for i in range(10_000)]
    record = rnb.wait(group, 30)
    assert record.status is TaskStatus.COMPLETE
    assert record.status_info == "10000 done of 10000"
    assert record.percent_complete == 100.0
    assert _group.is_group(record) and _group.size(record) == 10_000
    child = rnb.get_task(_group.child_id(group, 7))
    assert (child.group_id, child.args, child.name) == (group, 7, "_square")
    rnb.wait_all(60)
    stored = rnb.task_store().sql(
        f"SELECT count(*), min(status), max(status) FROM tasks WHERE group_id = '{group}'"
    )
    assert stored.fetchall() == [(10_000, "complete", "complete")]


def test_counts_and_percent_aggregate_the_children(mgr: rnb.TaskManager) -> None:
    gates = [threading.Event() for _ in range(6)]

    def step(i: int) -> int:
        rnb.progress(50.0)
        assert gates[i].wait(30)
        return i

    group = rnb.map(step, range(6), show=False)  # 4 workers: 4 run, 2 wait
    _wait_until(lambda: rnb.get_task(group).status_info == "0 done, 4 running, 2 waiting of 6")
    gates[0].set()
    gates[1].set()
    _wait_until(lambda: rnb.get_task(group).status_info == "2 done, 4 running of 6")
    # Ended children count 100 %, running ones the 50 % they reported: (200 + 200) / 6.
    _wait_until(lambda: abs(rnb.get_task(group).percent_complete - 400 / 6) < 0.1)
    assert rnb.get_task(group).status is TaskStatus.PROCESSING
    for gate in gates:
        gate.set()
    assert rnb.result(group, timeout=30) == list(range(6))


def test_a_failing_child_makes_the_group_error_with_the_count(mgr: rnb.TaskManager) -> None:
    def picky(x: int) -> int:
        if x == 3:
            raise ValueError("three is right out")
        return x

    group = rnb.map(picky, range(5), show=False)
    record = rnb.wait(group, 30)
    assert record.status is TaskStatus.ERROR
    assert record.status_info == "4 done, 1 failed of 5"
    assert record.error_message is not None
    assert record.error_message.startswith("1 of 5 tasks failed; the first: picky (")
    assert "ValueError: three is right out" in record.error_message
    with pytest.raises(rnb.TaskFailed, match="1 of 5 tasks failed"):
        rnb.result(group)


def test_options_apply_to_each_child(mgr: rnb.TaskManager) -> None:
    def flaky(x: int) -> int:
        ctx = rnb.current()
        assert ctx is not None
        if x % 2 and ctx.attempt == 1:
            raise ConnectionError("first try of an odd one")
        return x

    group = rnb.map(flaky, range(6), retries=1, retry_delay=0, show=False)
    assert rnb.result(group, timeout=30) == list(range(6))
    attempts = [rnb.get_task(_group.child_id(group, i)).attempt for i in range(6)]
    assert attempts == [1, 2, 1, 2, 1, 2]


def test_cancelling_the_group_cancels_its_children(mgr: rnb.TaskManager) -> None:
    started = threading.Semaphore(0)

    def forever(x: int) -> None:
        started.release()
        while True:
            rnb.check_cancelled()
            time.sleep(0.01)

    group = rnb.map(forever, range(8), show=False)
    for _ in range(4):  # four run, four wait for a worker
        assert started.acquire(timeout=30)
    assert rnb.cancel(group)
    record = rnb.wait(group, 30)
    assert record.status is TaskStatus.CANCELLED
    assert record.status_info == "cancelled: 0 done, 8 cancelled of 8"
    children = [rnb.wait(_group.child_id(group, i), 30) for i in range(8)]
    assert {c.status for c in children} == {TaskStatus.CANCELLED}


def test_as_completed_yields_every_child_once(mgr: rnb.TaskManager) -> None:
    def slow(x: int) -> int:
        time.sleep(0.001 * ((x * 7) % 5))
        return x + 100

    group = rnb.map(slow, range(50), show=False)
    seen = list(rnb.as_completed(group, timeout=60))
    assert sorted(seen) == [(_group.child_id(group, i), i + 100) for i in range(50)]
    assert list(rnb.as_completed(group)) == seen  # again, after the end: the same order


def test_as_completed_failures_raise_or_are_yielded(mgr: rnb.TaskManager) -> None:
    def picky(x: int) -> int:
        if x == 1:
            raise KeyError("one")
        return x

    group = rnb.map(picky, range(3), show=False)
    rnb.wait(group, 30)
    with pytest.raises(rnb.TaskFailed, match="KeyError"):
        list(rnb.as_completed(group))
    got = dict(rnb.as_completed(group, return_exceptions=True))
    assert got[_group.child_id(group, 0)] == 0 and got[_group.child_id(group, 2)] == 2
    assert isinstance(got[_group.child_id(group, 1)], rnb.TaskFailed)


def test_as_completed_times_out_naming_what_is_left(mgr: rnb.TaskManager) -> None:
    gate = threading.Event()
    group = rnb.map(lambda x: gate.wait(30), range(2), show=False)
    with pytest.raises(TimeoutError, match="2 of 2 tasks of group"):
        list(rnb.as_completed(group, timeout=0.2))
    gate.set()
    assert rnb.result(group, timeout=30) == [True, True]


def _overlap(limit: int | None, n: int) -> int:
    """The most children running at once, sampled inside them."""
    lock = threading.Lock()
    now = [0]
    most = [0]

    def sample(x: int) -> None:
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        time.sleep(0.02)
        with lock:
            now[0] -= 1

    rnb.result(rnb.map(sample, range(n), limit=limit, name=f"limited-{limit}", show=False), 60)
    return most[0]


def test_limit_never_runs_two_at_once(mgr: rnb.TaskManager) -> None:
    assert _overlap(None, 8) >= 2  # without it they do overlap on the 4 workers
    assert _overlap(1, 20) == 1


def test_map_on_process_workers(mgr: rnb.TaskManager) -> None:
    group = rnb.map(_square, range(20), executor="process", show=False)
    assert rnb.result(group, timeout=120) == [i * i for i in range(20)]
    assert rnb.get_task(_group.child_id(group, 3)).executor == "process"


def test_bad_input_is_a_clear_error_before_anything_is_queued(mgr: rnb.TaskManager) -> None:
    with pytest.raises(rnb.NotJsonable, match=r"items\[2\]"):
        rnb.map(_square, [1, 2, object()], show=False)
    with pytest.raises(TypeError, match="iterable of items"):
        rnb.map(_square, 5, show=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retries must be"):
        rnb.map(_square, [1], retries=-1, show=False)
    with pytest.raises(ValueError, match="executor='thread', 'process' or 'dask'"):
        rnb.map(_square, [1], executor="server", show=False)
    assert rnb.list_tasks() == []
    with pytest.raises(ValueError, match="not a group"):
        list(rnb.as_completed(rnb.enqueue(_square, [2])))


def test_an_empty_map_completes_with_no_results(mgr: rnb.TaskManager) -> None:
    group = rnb.map(_square, [], show=False)
    assert rnb.result(group, timeout=10) == []
    assert list(rnb.as_completed(group)) == []


def test_map_in_a_notebook_shows_one_widget(tmp_path: Path) -> None:
    from ._kernel import running_kernel

    with running_kernel(tmp_path / "k.duckdb") as k:
        k.execute("import raytha_nb as rnb")
        cell = k.execute("group = rnb.map(lambda x: x * 2, range(500))")
        assert len(cell.widget_ids()) == 1
        assert k.value("rnb.result(group, timeout=60)[-3:]") == [994, 996, 998]
        assert k.value("rnb.get_task(group).status_info") == "500 done of 500"


def test_listing_folds_a_maps_children_under_its_group(mgr: rnb.TaskManager) -> None:
    """``grouped=False`` (what %jobs lists) shows the group once; ``group_id`` its children."""
    loose = rnb.enqueue(lambda: 1)
    gid = rnb.map(lambda x: x, range(5), show=False)
    rnb.wait_all(30)
    mgr.flush()
    top = [r.id for r in rnb.list_tasks(limit=None, grouped=False)]
    assert gid in top and loose in top and len(top) == 2
    children = rnb.list_tasks(limit=None, group_id=gid)
    assert len(children) == 5 and all(r.group_id == gid for r in children)
    assert len(rnb.list_tasks(limit=None, grouped=True)) == 5
    with pytest.raises(TypeError, match="grouped must be True, False or None"):
        rnb.list_tasks(grouped="no")


# -- the bulk path: children started in slices, run in chunks on the worker threads ------
def _children(group: str) -> dict[str, int]:
    """Stored children of ``group`` by status."""
    rows = rnb.task_store().execute(
        "SELECT status, count(*) FROM tasks WHERE group_id = ? GROUP BY status", [group]
    )
    return dict(rows.fetchall())


def test_children_keep_one_history_row_and_wait_all_returns_the_group(
    mgr: rnb.TaskManager,
) -> None:
    """Each child's history is its end (its row has its status); wait_all() waits for
    every child to be stored and returns the group's record, as %jobs lists it."""
    loose = rnb.enqueue(_square, [3])
    group = rnb.map(_square, range(3_000), show=False)
    records = rnb.wait_all(60)
    assert sorted(r.id for r in records) == sorted([loose, group])
    assert _children(group) == {"complete": 3_000}  # stored before wait_all returned
    events = rnb.task_store().execute(
        "SELECT status, count(*), count(DISTINCT task_id) FROM task_events "
        "WHERE task_id LIKE ? AND task_id <> ? GROUP BY status",
        [group[:24] + "%", group],
    )
    assert events.fetchall() == [("complete", 3_000, 3_000)]
    assert [e["status"] for e in rnb.history(loose)] == ["enqueued", "processing", "complete"]


def test_children_failing_and_retrying_inside_a_chunk(mgr: rnb.TaskManager) -> None:
    """Every 7th child fails its first attempt (retried, with that error in its
    history); one fails with an error not to retry; the others in its chunk go on."""

    def flaky(x: int) -> int:
        ctx = rnb.current()
        assert ctx is not None
        if x == 500:
            raise ValueError("never works")
        if x % 7 == 0 and ctx.attempt == 1:
            raise ConnectionError(f"first try of {x}")
        return x

    group = rnb.map(
        flaky, range(1_000), retries=1, retry_delay=0, retry_on=ConnectionError, show=False
    )
    record = rnb.wait(group, 60)
    assert record.status is TaskStatus.ERROR
    assert record.status_info == "999 done, 1 failed of 1000"
    assert record.error_message is not None
    assert record.error_message.startswith("1 of 1000 tasks failed; the first: flaky")
    retried = rnb.wait(_group.child_id(group, 14), 10)
    assert (retried.status, retried.attempt, retried.max_attempts) == (TaskStatus.COMPLETE, 2, 2)
    assert [e["status"] for e in rnb.history(retried.id)] == ["error", "complete"]
    failed = rnb.wait(_group.child_id(group, 500), 10)
    assert (failed.status, failed.attempt, failed.error_type) == (TaskStatus.ERROR, 1, "ValueError")
    assert rnb.get_task(_group.child_id(group, 501)).status is TaskStatus.COMPLETE
    with pytest.raises(rnb.TaskFailed):
        rnb.wait_all(30)
    assert _children(group) == {"complete": 999, "error": 1}


def test_cancelling_a_group_mid_chunk_skips_the_rest_and_stores_every_child(
    mgr: rnb.TaskManager,
) -> None:
    ran: list[int] = []
    twenty = threading.Event()

    def slow(x: int) -> int:
        ran.append(x)
        if len(ran) >= 20:
            twenty.set()
        time.sleep(0.005)
        rnb.check_cancelled()
        return x

    group = rnb.map(slow, range(2_000), show=False)
    assert twenty.wait(30)
    assert rnb.cancel(group)
    assert rnb.wait(group, 30).status is TaskStatus.CANCELLED
    rnb.wait_all(30)  # cancelled children are no failure
    stored = _children(group)
    assert set(stored) <= {"complete", "cancelled"} and sum(stored.values()) == 2_000
    assert stored["cancelled"] > 1_000
    # The rest of each chunk was skipped (only those started while the cancel went
    # through the children ran, and were cancelled in turn).
    assert len(ran) < 1_000


def test_drop_pending_takes_the_unstarted_rest_of_a_running_chunk(tmp_path: Path) -> None:
    runner = ThreadExecutor(1, lambda: tmp_path, ValueCache(2**20))
    started, gate = threading.Event(), threading.Event()

    def body(ctx: Any) -> None:
        started.set()
        gate.wait(10)

    lives = [
        LiveTask(str(uuid.uuid4()), "t", "t", i, kernel_id=None, notebook=None, pid=1)
        for i in range(10)
    ]
    runner.submit_many([(live, body) for live in lives])  # chunks of 2 for one worker
    assert started.wait(10)
    dropped = runner.drop_pending()
    gate.set()
    runner.shutdown(10)
    assert sorted(live.args for live in dropped) == list(range(1, 10))
    assert lives[0].status is TaskStatus.COMPLETE
    assert {live.status for live in lives[1:]} == {TaskStatus.ENQUEUED}  # none ran


def test_children_that_print_are_stored_with_their_lines(mgr: rnb.TaskManager) -> None:
    # New tasks share one publisher cursor until their first flush: a child's lines
    # must go to a cursor of its own, never into that shared one.
    def loud(i: int) -> int:
        print(f"line of {i}")
        return i

    group = rnb.map(loud, range(50), show=False)
    assert rnb.result(group, timeout=30) == list(range(50))
    rnb.wait_all(30)
    for i in (0, 17, 49):
        lines = [line.text for line in rnb.logs(_group.child_id(group, i))]
        assert lines == [f"line of {i}"]
    assert publisher._NEW == publisher._Cursor()


class _PausedEnd(LiveTask):
    """A task whose end pauses after its status is set and before its version moves
    (where a thread switch can put it): the history row is built in between."""

    __slots__ = ("inside", "go")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.inside, self.go = threading.Event(), threading.Event()
        super().__init__(*args, **kwargs)

    def reported(self) -> tuple[int, float, str | None]:
        if self.status is TaskStatus.CANCELLED and not self.go.is_set():
            self.inside.set()
            self.go.wait(10)
        return super().reported()


class _SlowBackend(EmbeddedBackend):
    """The real store, with a write that waits for ``go`` once ``armed`` (a slow
    DuckDB commit on a loaded machine)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.armed, self.writing, self.go = False, threading.Event(), threading.Event()

    def publish(self, batch: Any, active: list[str]) -> dict[str, bool]:
        if self.armed:
            self.writing.set()
            self.go.wait(10)
        return super().publish(batch, active)


def test_an_end_during_a_flush_does_not_count_the_queued_row_as_final(tmp_path: Path) -> None:
    """Seen under load on a map's cancel: a flush wrote a child's queued row, its
    acknowledgement read the new status with the old version (the end was half done),
    counted the child as stored, and its end was never written."""
    store = Store(tmp_path / "tasks.db")
    backend = _SlowBackend(store)
    pub = publisher.Publisher(backend, interval=60)  # flushed by hand
    try:
        first = LiveTask(str(uuid.uuid4()), "t", "t", None, kernel_id=None, notebook=None, pid=1)
        pub.track(first)
        assert pub.flush()  # (the first write imports what writes need: not in the window)
        live = _PausedEnd(str(uuid.uuid4()), "t", "t", None, kernel_id=None, notebook=None, pid=1)
        pub.track(live)
        backend.armed = True
        flushing = threading.Thread(target=pub.flush)
        flushing.start()  # takes the queued row, then waits in the write
        assert backend.writing.wait(10)
        ending = threading.Thread(target=live.request_cancel)
        ending.start()  # status set, version not yet moved
        assert live.inside.wait(10)
        backend.armed = False
        backend.go.set()  # the queued row is stored; its acknowledgement waits for the end
        flushing.join(0.5)
        live.go.set()
        ending.join(10)
        flushing.join(10)
        assert store.get(live.id).status is TaskStatus.ENQUEUED
        assert not live.committed  # the row stored is not the end
        assert pub.flush() and live.committed
        assert store.get(live.id).status is TaskStatus.CANCELLED
        assert [e["status"] for e in store.history(live.id)] == ["enqueued", "cancelled"]
    finally:
        pub.stop()
        store.close()


def test_a_change_queued_while_another_thread_counts_is_counted() -> None:
    """Children's threads do not queue on the group's lock: a change that finds another
    thread counting is left for it. Here the last child ends while the first child's
    thread has counted what was queued but still holds the lock; the group must still
    see both and end once."""
    kw: dict[str, Any] = {"kernel_id": None, "notebook": None, "pid": 1}
    gid = _group.group_id()
    head = _group.GroupTask(gid, "g", _group.GROUP_TASK, {"task": "t", "items": 2}, **kw)
    group = _group.Group(head, 2)
    for i in range(2):
        group.children.append(
            _group.GroupChild(group, i, _group.child_id(gid, i), "t", "t", i, **kw)
        )
    head.transition(TaskStatus.PROCESSING)
    counting, resume = threading.Event(), threading.Event()
    count = group._count

    def slow_count() -> bool:
        last = count()
        if not counting.is_set():  # counted what was queued; not yet let go of the lock
            counting.set()
            assert resume.wait(10)
        return last

    group._count = slow_count  # type: ignore[method-assign]
    first = threading.Thread(target=group.children[0].transition, args=(TaskStatus.COMPLETE,))
    first.start()
    assert counting.wait(10)
    assert group.children[1].transition(TaskStatus.COMPLETE)  # returns: left queued
    assert group.ended < 2 and head.status is TaskStatus.PROCESSING
    resume.set()
    first.join(10)
    assert group.ended == 2 and group.order == [0, 1]
    assert head.status is TaskStatus.COMPLETE
    assert [row.status for row in head.history].count("complete") == 1


# -- the feed: a map's children published as blocks -------------------------------------
def _finished_tasks() -> list[LiveTask]:
    """Tasks that ended each way a child can: a result, an error, a cancel, a checkpoint."""
    made = []
    for status, fields in [
        (TaskStatus.COMPLETE, {"result": [1, "two"], "result_kind": "json"}),
        (
            TaskStatus.ERROR,
            {"error_type": "ValueError", "error_message": "bad\x00", "traceback": "tb"},
        ),
        (TaskStatus.CANCELLED, {"status_info": "cancelled before it started"}),
    ]:
        live = LiveTask(str(uuid.uuid4()), "t", "t", {"a": 1}, kernel_id="k", notebook=None, pid=1)
        live.worker = "thread w"
        live.transition(TaskStatus.PROCESSING)
        live.report(percent=float("nan"), info=12, step="x")  # made sane as row() does
        live.set_checkpoint({"at": 3})
        live.transition(status, **fields)
        made.append(live)
    return made


def test_run_columns_are_what_row_has_for_finished_tasks() -> None:
    """The feed writes ended children from run_columns(), the per-task path from row():
    one task's stored row must not depend on which of them wrote it."""
    lives = _finished_tasks()
    columns = run_columns(lives)
    assert set(columns) == set(RUN_COLUMNS)
    for i, live in enumerate(lives):
        row = live.row(time.time())._asdict()
        assert {name: values[i] for name, values in columns.items()} == {
            name: row[name] for name in RUN_COLUMNS
        }


def test_a_block_of_ends_whose_queued_rows_are_missing_is_written_whole(tmp_path: Path) -> None:
    """The store updates an ended child's run columns only; a row that is not there
    (deleted, or never stored) is inserted whole instead of its end being lost."""
    store = Store(tmp_path / "tasks.db")
    try:
        lives = _finished_tasks()
        rows = [live.row(time.time()) for live in lives]
        queued = TaskBlock(
            {"id": [rows[0].id]}, {k: v for k, v in rows[0]._asdict().items() if k != "id"}
        )
        store.apply(Batch(blocks=[queued]))
        assert store.get(rows[0].id).status is TaskStatus.COMPLETE  # (a whole row, as given)
        ends = TaskBlock(
            {name: list(values) for name, values in zip(TaskRow._fields, zip(*rows))}, {}, True
        )
        store.apply(Batch(blocks=[ends]))
        assert [store.get(row.id).status.value for row in rows] == [row.status for row in rows]
        assert store.get(rows[1].id).error_message == rows[1].error_message == "bad\x00"
        assert store.get(rows[2].id).checkpoint == {"at": 3}
    finally:
        store.close()


def test_a_batch_with_blocks_goes_over_the_wire_as_rows() -> None:
    """A server takes rows: a kernel's blocks are expanded for it, nothing else changes."""
    rows = [live.row(time.time()) for live in _finished_tasks()]
    block = TaskBlock(
        {"id": [r.id for r in rows], "status": [r.status for r in rows]},
        {k: v for k, v in rows[0]._asdict().items() if k not in ("id", "status")},
    )
    back = Batch.from_json(json.loads(json.dumps(Batch(blocks=[block]).to_json())))
    assert back.tasks == block.rows()
    assert [r.id for r in back.tasks] == [r.id for r in rows] and not back.blocks


class _FailingBackend(EmbeddedBackend):
    """The real store, refusing the first ``failures`` writes (a full disk, a server
    restarting) after the first one."""

    def __init__(self, store: Store, failures: int) -> None:
        super().__init__(store)
        self.calls, self.failures = 0, failures

    def publish(self, batch: Any, active: list[str]) -> dict[str, bool]:
        self.calls += 1
        if 1 < self.calls <= 1 + self.failures and batch:
            raise OSError("no room (a test)")
        return super().publish(batch, active)


def test_a_map_whose_writes_fail_for_a_while_stores_each_child_once(tmp_path: Path) -> None:
    """The feed moves only on an accepted write: refused writes lose no child's queued
    row or end, and none is stored twice (each child: one history row, its end)."""
    store = Store(tmp_path / "tasks.db")
    backend = _FailingBackend(store, failures=4)
    manager = rnb.TaskManager(backend=backend, workers=4, flush_interval=0.05)
    try:
        group = manager.map(_square, range(5_000))
        assert manager.result(group, timeout=60) == [x * x for x in range(5_000)]
        manager.wait_all(60)
        assert backend.calls > 5
        counts = store.sql(
            "SELECT status, count(*) FROM tasks WHERE group_id = ? GROUP BY status", [group]
        ).fetchall()
        assert counts == [("complete", 5_000)]
        events = store.sql(
            "SELECT count(*), count(DISTINCT task_id) FROM task_events WHERE task_id LIKE ? "
            "AND task_id <> ?",
            [group[:24] + "%", group],
        ).fetchall()
        assert events == [(5_000, 5_000)]
    finally:
        manager.shutdown()


def test_a_child_running_across_flushes_is_stored_running(mgr: rnb.TaskManager) -> None:
    """A child still running at a flush goes on the per-task path: its row says
    processing, with its progress, before it ends."""
    go = threading.Event()

    def slow(i: int) -> int:
        if i == 3:
            rnb.progress(40, info="part 2")
            go.wait(30)
        return i

    group = rnb.map(slow, range(10), show=False)
    child = _group.child_id(group, 3)
    store = rnb.task_store()

    def stored_running() -> bool:
        rows = store.execute(
            "SELECT status, percent_complete, status_info FROM tasks WHERE id = ?", [child]
        ).fetchall()
        return rows == [("processing", 40.0, "part 2")]

    _wait_until(stored_running)
    go.set()
    assert rnb.result(group, timeout=30) == list(range(10))
    rnb.wait_all(30)
    assert _children(group) == {"complete": 10}


def test_a_child_counts_as_stored_once_its_groups_rows_are(tmp_path: Path) -> None:
    """Reads skip the store for a task it has nothing of yet (e.g. a widget's logs)."""
    go = threading.Event()
    manager = rnb.TaskManager(tmp_path / "tasks.db", workers=2, flush_interval=60)
    try:
        group = manager.map(lambda i: go.wait(30), range(10))
        child = _group.child_id(group, 9)
        assert not manager.publisher.stored(child)
        manager.flush()
        assert manager.publisher.stored(child)
        assert manager.backend.get(child) is not None
        go.set()
        assert manager.result(group, timeout=30) == [True] * 10
    finally:
        go.set()
        manager.shutdown()
