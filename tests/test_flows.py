"""Retries, timeouts, delayed starts, continuations and limits (issue #13's engine) on a
real store, on threads and worker processes, and a continuation across two kernels of a
real jupyter server."""

from __future__ import annotations

import ast
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import raytha_nb as rnb
from raytha_nb import _group, _text
from raytha_nb.store import Store

from ._server_helpers import JupyterServer, run

pytestmark = pytest.mark.timeout(120)

COUNTS: dict[str, int] = {}


def flaky(key: str, failures: int) -> int:
    """Fails ``failures`` times (per key), then returns its attempt."""
    COUNTS[key] = COUNTS.get(key, 0) + 1
    if COUNTS[key] <= failures:
        raise ValueError(f"{key} failure {COUNTS[key]}")
    ctx = rnb.current()
    assert ctx is not None
    return ctx.attempt


def wrong_type() -> None:
    raise KeyError("not retried")


def chunks(n: int, crash_at: int, pause: float = 0.0) -> list[int]:
    """Checkpoints each chunk; the first attempt fails at ``crash_at``; returns where the
    attempt that finished started and its number."""
    ctx = rnb.current()
    assert ctx is not None
    start = ctx.resume or 0
    for i in range(start, n):
        ctx.checkpoint(i)
        time.sleep(pause)
        if i == crash_at and ctx.attempt == 1:
            raise RuntimeError(f"crashed at chunk {crash_at}")
    return [start, ctx.attempt]


def resumes(_: int = 0) -> list[Any]:
    """The first attempt checkpoints lists and fails; the next returns what it resumed."""
    ctx = rnb.current()
    assert ctx is not None
    if ctx.attempt == 1:
        ctx.checkpoint({"done": [1, 2]})
        raise RuntimeError("first attempt")
    return [type(ctx.resume["done"]).__name__, ctx.resume]


def spin() -> None:
    while True:
        pass


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_a_task_failing_twice_then_succeeding_ends_complete_at_attempt_3(
    mgr: rnb.TaskManager,
) -> None:
    job = rnb.enqueue(flaky, {"key": "twice", "failures": 2}, retries=3, retry_delay=0.05)
    record = rnb.wait(job, 10)
    assert record.status is rnb.TaskStatus.COMPLETE
    assert (record.attempt, record.max_attempts) == (3, 4)
    assert rnb.result(job) == 3
    history = rnb.history(job)
    failures = [event for event in history if event["status"] == "error"]
    assert [f["detail"]["attempt"] for f in failures] == [1, 2]
    assert failures[0]["detail"]["error_message"] == "twice failure 1"
    assert "raise ValueError" in failures[1]["detail"]["traceback"]
    statuses = [event["status"] for event in history]
    assert statuses.count("scheduled") == 2 and statuses[-1] == "complete"
    # The stored row agrees (read back from the store, not the live task).
    mgr.flush()
    stored = mgr.backend.get(job)
    assert stored is not None and stored.attempt == 3 and stored.options["retries"] == 3


def test_retry_delays_are_kept_and_the_task_is_scheduled_meanwhile(mgr: rnb.TaskManager) -> None:
    job = rnb.enqueue(flaky, {"key": "delays", "failures": 2}, retries=2, retry_delay=[0.4, 0.8])
    deadline = time.monotonic() + 5
    while rnb.get_task(job).status is not rnb.TaskStatus.SCHEDULED:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    record = rnb.get_task(job)
    assert record.scheduled_for is not None
    assert _text.timing(record).startswith("attempt 2 of 3, next in ")
    rnb.wait(job, 10)
    events = rnb.history(job)
    errors = [e["ts"] for e in events if e["status"] == "error"]
    starts = [e["ts"] for e in events if e["status"] == "processing"]
    gaps = [(start - error).total_seconds() for error, start in zip(errors, starts[1:])]
    assert 0.38 <= gaps[0] < 1.4 and 0.78 <= gaps[1] < 1.8, gaps


def test_retry_on_filters_and_a_cancel_is_never_retried(mgr: rnb.TaskManager) -> None:
    job = rnb.enqueue(wrong_type, retries=3, retry_delay=0, retry_on=ValueError)
    record = rnb.wait(job, 5)
    assert record.status is rnb.TaskStatus.ERROR and record.attempt == 1
    job = rnb.enqueue(spin, retries=3, retry_delay=0)
    deadline = time.monotonic() + 5
    while rnb.get_task(job).status is not rnb.TaskStatus.PROCESSING:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    rnb.cancel(job)
    record = rnb.wait(job, 5)
    assert record.status is rnb.TaskStatus.CANCELLED and record.attempt == 1


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_a_timeout_ends_the_task_error_and_counts_for_retries(
    mgr: rnb.TaskManager, executor: str
) -> None:
    body = spin if executor == "thread" else nap
    args = None if executor == "thread" else {"seconds": 60}
    started = time.monotonic()
    job = rnb.enqueue(body, args, timeout=0.5, executor=executor, retries=1, retry_delay=0)
    record = rnb.wait(job, 30)
    assert record.status is rnb.TaskStatus.ERROR, record
    assert record.error_type == "raytha_nb.TaskTimeout"
    assert record.error_message == "ran longer than 0.5 s (timeout=0.5)"
    assert record.attempt == 2  # the first timeout was retried
    assert time.monotonic() - started < 20


def test_a_delayed_task_does_not_start_before_it_is_due_and_can_be_cancelled(
    mgr: rnb.TaskManager,
) -> None:
    due = datetime.now(timezone.utc) + timedelta(seconds=0.6)
    job = rnb.enqueue(nap, {"seconds": 0}, at=due)
    assert rnb.get_task(job).status is rnb.TaskStatus.SCHEDULED
    record = rnb.wait(job, 5)
    assert record.started_at is not None and record.started_at >= due
    assert (record.started_at - due).total_seconds() < 0.5
    later = rnb.enqueue(nap, {"seconds": 0}, delay=timedelta(seconds=30))
    assert _text.timing(rnb.get_task(later)).startswith("starts in ")
    assert rnb.cancel(later)
    record = rnb.wait(later, 5)
    assert record.status is rnb.TaskStatus.CANCELLED and record.started_at is None


def test_continuations_wait_for_their_parents_and_a_failed_parent_cancels_them(
    mgr: rnb.TaskManager,
) -> None:
    first = rnb.enqueue(nap, {"seconds": 0.3})
    second = rnb.enqueue(lambda: rnb.result(first) * 2, after=first)
    assert rnb.get_task(second).status is rnb.TaskStatus.AWAITING
    assert rnb.get_task(second).depends_on == [first]
    assert rnb.result(second, timeout=10) == 0.6
    failing = rnb.enqueue(wrong_type)
    doomed = rnb.enqueue(nap, {"seconds": 0}, after=[first, failing])
    record = rnb.wait(doomed, 10)
    assert record.status is rnb.TaskStatus.CANCELLED
    assert record.status_info == (
        f"not run: the task it waits for, wrong_type ({failing}), ended error"
    )
    anyway = rnb.enqueue(nap, {"seconds": 0}, after=failing, when="finished")
    assert rnb.wait(anyway, 10).status is rnb.TaskStatus.COMPLETE


def test_continuations_of_tasks_ending_as_they_are_enqueued_all_run(
    mgr: rnb.TaskManager,
) -> None:
    # A plain task's end takes no lock: a continuation enqueued while its parent ends
    # must still hear of that end (the parents are a map's children: they end by the
    # hundred while the continuations are enqueued).
    group = rnb.map(nap, [0.0] * 400, show=False)
    parents = [_group.child_id(group, i) for i in range(400)]
    followers = [rnb.enqueue(nap, {"seconds": 0}, after=p, name="follower") for p in parents]
    for follower in followers:
        assert rnb.wait(follower, 30).status is rnb.TaskStatus.COMPLETE
    assert rnb.wait(group, 30).status is rnb.TaskStatus.COMPLETE


def test_limit_never_runs_two_of_a_name_at_once(mgr: rnb.TaskManager) -> None:
    running: list[int] = []
    peak = [0]
    lock = threading.Lock()

    def guarded(i: int) -> int:
        with lock:
            running.append(i)
            peak[0] = max(peak[0], len(running))
        time.sleep(0.02)
        with lock:
            running.remove(i)
        return i

    jobs = [rnb.enqueue(guarded, {"i": i}, name="one-export", limit=1) for i in range(12)]
    queued = [rnb.get_task(j).status for j in jobs]
    assert queued.count(rnb.TaskStatus.ENQUEUED) >= 10  # waiting for the slot
    assert [rnb.result(j, timeout=10) for j in jobs] == list(range(12))
    assert peak[0] == 1


@rnb.task(retries=2, retry_delay=0, name="flows.decorated")
def decorated(key: str) -> int:
    return flaky(key, 2)


def test_the_decorator_gives_defaults_and_enqueue_overrides_them(mgr: rnb.TaskManager) -> None:
    assert rnb.result(rnb.enqueue(decorated, {"key": "deco"}), timeout=10) == 3
    assert rnb.result(rnb.enqueue("flows.decorated", {"key": "deco-name"}), timeout=10) == 3
    record = rnb.wait(rnb.enqueue(decorated, {"key": "deco-no"}, retries=0), 10)
    assert record.status is rnb.TaskStatus.ERROR and record.max_attempts == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retries": -1}, "retries must be a whole number of 0 or more, not -1"),
        ({"at": datetime(2000, 1, 1, tzinfo=timezone.utc)}, "is in the past"),
        ({"after": "0f8fad5b-d9cb-469f-a165-70867728950e"}, "after= names tasks to wait for"),
        ({"timeout": 0}, "timeout must be more than 0 s"),
        ({"limit": 0}, "limit must be a whole number of 1 or more"),
        ({"when": "maybe"}, "when must be 'success' or 'finished'"),
        ({"delay": 1, "at": datetime(2100, 1, 1)}, "give at= or delay=, not both"),
        ({"retry_delay": "soon"}, "retry_delay must be seconds"),
    ],
)
def test_bad_options_are_refused_before_anything_is_queued(
    mgr: rnb.TaskManager, options: dict[str, Any], message: str
) -> None:
    before = len(rnb.list_tasks(limit=None))
    with pytest.raises((ValueError, TypeError, KeyError)) as caught:
        rnb.enqueue(nap, {"seconds": 0}, **options)
    assert message in str(caught.value)
    assert len(rnb.list_tasks(limit=None)) == before


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_checkpoints_are_stored_and_the_next_attempt_resumes(
    mgr: rnb.TaskManager, executor: str
) -> None:
    job = rnb.enqueue(
        chunks, {"n": 100, "crash_at": 40}, retries=1, retry_delay=0, executor=executor
    )
    assert rnb.result(job, timeout=30) == [40, 2]
    mgr.flush()
    stored = mgr.backend.get(job)
    assert stored is not None and stored.checkpoint == 99


def test_a_store_of_schema_3_gains_the_flow_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    store = Store(path)
    with store._transaction() as cur:  # back to schema 3, as an older raytha_nb left it
        for column in ("attempt", "max_attempts", "scheduled_for", "depends_on", "group_id",
                       "retry_of", "checkpoint", "options"):  # fmt: skip
            cur.execute(f"ALTER TABLE tasks DROP COLUMN {column}")
        cur.execute("ALTER TABLE task_events DROP COLUMN detail")
        for later in ("DROP TABLE schedules", "DROP TABLE schedule_events",
                      "ALTER TABLE tasks DROP COLUMN schedule_id"):  # fmt: skip
            cur.execute(later)  # schema 5 (schedules), also after 3
        cur.execute("UPDATE raytha_meta SET value = '3' WHERE key = 'schema_version'")
    store.close()
    store = Store(path)
    try:
        assert store.schema_version == len(Store.MIGRATIONS) == 5
    finally:
        store.close()


def test_a_continuation_in_one_kernel_waits_for_a_task_of_another(tmp_path: Path) -> None:
    server = JupyterServer(tmp_path, tmp_path / "db" / "tasks.duckdb", heartbeat_timeout=10)
    server.start()
    try:
        a_id, a = server.start_kernel()
        b_id, b = server.start_kernel()
        run(a, "import time, raytha_nb as rnb\ndef slow():\n    time.sleep(4)\n    return 21")
        run(b, "import raytha_nb as rnb")
        parent = ast.literal_eval(run(a, "rnb.enqueue(slow)"))
        server.wait_for(parent, {"processing", "complete"}, 30)
        child = ast.literal_eval(
            run(b, f"rnb.enqueue(lambda: rnb.result({parent!r}) * 2, after={parent!r})")
        )
        assert server.wait_for(child, {"awaiting", "complete"}, 10)["status"] == "awaiting"
        record = server.wait_for(child, {"complete", "cancelled", "error"}, 30)
        assert record["status"] == "complete" and record["result"] == 42
        assert record["depends_on"] == [parent]
        for kernel_id, client in ((a_id, a), (b_id, b)):
            client.stop_channels()
            server.request("DELETE", f"api/kernels/{kernel_id}")
    finally:
        server.stop()


def test_retries_timeouts_and_checkpoints_on_dask(mgr: rnb.TaskManager, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    try:
        rnb.configure(tmp_path / "dask.duckdb", flush_interval=0.05, dask=cluster.scheduler_address)
        job = rnb.enqueue(
            chunks, {"n": 30, "crash_at": 20, "pause": 0.02}, executor="dask", retries=1,
            retry_delay=0,
        )  # fmt: skip
        assert rnb.result(job, timeout=60) == [20, 2]
        # JSON values come back as JSON's types (lists, not tuples), however they came:
        # the checkpoint in an event, the result in an event or by fetching the future.
        jobs = [
            rnb.enqueue(resumes, [i], executor="dask", retries=1, retry_delay=0) for i in range(4)
        ]
        for each in jobs:
            result = rnb.result(each, timeout=60)
            assert result == ["list", {"done": [1, 2]}] and type(result) is list, result
        record = rnb.wait(
            rnb.enqueue(wrong_type, executor="dask", retries=2, retry_on=ValueError), 60
        )
        assert (
            record.status is rnb.TaskStatus.ERROR and record.attempt == 1
        )  # KeyError: not retried
    finally:
        rnb.manager().shutdown()
        cluster.close()
