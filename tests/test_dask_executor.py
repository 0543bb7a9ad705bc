"""What only the Dask executor does (the shared contract is in test_executors.py): its
own LocalCluster started on first use, a lost worker, a blocking call cancelled, a
cluster given as a Client, results shipped back from a worker without our filesystem,
``%%background --executor dask``, the error without ``distributed``, and a task's
progress seen through a real jupyter server's REST API."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import raytha_nb as rnb
from raytha_nb import _dask, _group, _manager
from raytha_nb._client import RemoteBackend

from ._server_helpers import JupyterServer, kernel_address

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.timeout(60)

GRACE = 0.3


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[rnb.TaskManager, list[str]]]:
    """A manager whose first Dask task starts its LocalCluster; the lines it said."""
    db = tmp_path_factory.mktemp("dask") / "tasks.duckdb"
    said: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_manager, "_say", said.append)
        manager = rnb.configure(db, executor="dask", cancel_grace=GRACE, flush_interval=0.05)
        rnb.wait(rnb.enqueue(_noop), 60)
    yield manager, said
    manager.shutdown()
    _manager._default = None


def _noop() -> None:
    return None


def _executor(manager: rnb.TaskManager) -> _dask.DaskExecutor:
    runner = manager._executor("dask")
    assert isinstance(runner, _dask.DaskExecutor)
    return runner


def test_the_first_task_starts_a_local_cluster_and_says_so(own: Any) -> None:
    _, said = own
    assert len(said) == 1
    assert "started a Dask LocalCluster" in said[0]
    assert "dashboard: http://" in said[0]
    record = rnb.wait(rnb.enqueue(lambda: os.getpid()), 20)
    assert record.executor == "dask"
    assert record.worker is not None and record.worker.startswith("tcp://")
    assert rnb.result(record.id) != os.getpid()  # it ran in a worker process


def test_the_dask_key_is_the_task_id(own: Any) -> None:
    job = rnb.enqueue(time.sleep, [0.5])
    futures = [j.future for j in _executor(own[0])._jobs.values() if j.live.id == job]
    assert [f.key for f in futures] == [job]
    assert rnb.wait(job, 20).status is rnb.TaskStatus.COMPLETE


def test_a_lost_worker_ends_its_task_interrupted_not_retried(own: Any) -> None:
    record = rnb.wait(rnb.enqueue(lambda: os._exit(3)), 30)
    assert record.status is rnb.TaskStatus.INTERRUPTED
    assert "Dask worker running it was lost" in (record.status_info or "")
    assert rnb.result(rnb.enqueue(lambda: "next"), timeout=30) == "next"


def _dies_once(marker: str) -> str:
    if not os.path.exists(marker):
        Path(marker).write_text("ran")
        os._exit(3)
    return "second run"


def test_a_lost_worker_on_a_given_cluster_is_retried_by_dask(tmp_path: Path) -> None:
    """A cluster the user gives keeps Dask's allowed-failures (3): the task runs again
    on another worker, staying processing, and completes."""
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    other = rnb.TaskManager(tmp_path / "t.duckdb", dask=cluster.scheduler_address,
                            flush_interval=0.05)  # fmt: skip
    try:
        job = other.enqueue(_dies_once, [str(tmp_path / "marker")], executor="dask")
        record = other.wait(job, 45)
        assert record.status is rnb.TaskStatus.COMPLETE, record.status_info
        assert other.result(job) == "second run"
        statuses = list(dict.fromkeys(row["status"] for row in other.history(job)))
        assert statuses == ["enqueued", "processing", "complete"]
    finally:
        other.shutdown()
        cluster.close()


def test_a_blocking_call_is_marked_cancelled_and_said_to_run_on(own: Any) -> None:
    job = rnb.enqueue(time.sleep, [2])
    deadline = time.monotonic() + 20
    while rnb.get_task(job).status is not rnb.TaskStatus.PROCESSING:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    start = time.monotonic()
    rnb.cancel(job)
    record = rnb.wait(job, 10)
    assert record.status is rnb.TaskStatus.CANCELLED
    assert time.monotonic() - start < GRACE + 0.6
    assert "may still run on tcp://" in (record.status_info or "")


def _big(n: int) -> list[int]:
    for i in range(3):
        print(f"line {i}")
    return list(range(n))


def test_an_outcome_too_big_for_an_event_is_fetched_after_its_lines(own: Any) -> None:
    """Small outcomes ride the end event; a bigger one (over EVENT_BYTES) comes from
    the future's result, and the lines printed before it are stored all the same."""
    n = _dask.EVENT_BYTES  # msgpack needs >= 1 byte an int: over the bound
    assert _dask._small(["done", "id", 1, "tcp://w", list(range(n)), "json", {}]) is None
    job = rnb.enqueue(_big, [n])
    assert rnb.result(job, timeout=20) == list(range(n))
    assert [line.text for line in rnb.logs(job)] == ["line 0", "line 1", "line 2"]


def test_a_cluster_given_as_a_client(own: Any, tmp_path: Path) -> None:
    client = distributed.Client(_executor(own[0]).client.scheduler.address, set_as_default=False)
    other = rnb.TaskManager(tmp_path / "t.duckdb", dask=client, flush_interval=0.05)
    try:
        job = other.enqueue(lambda x: x * 2, [21], executor="dask")
        assert other.result(job, timeout=20) == 42
    finally:
        other.shutdown()
    assert client.submit(lambda: 1).result() == 1  # ours: still open
    client.close()


def test_results_are_shipped_back_from_a_worker_without_our_filesystem(
    own: Any, tmp_path: Path
) -> None:
    frame = pd.DataFrame({"x": range(5)})
    stored, kind, files = _dask._store(frame, "job-1", tmp_path / "not-on-this-worker")
    assert kind == "parquet" and list(files) == ["job-1.parquet"]
    runner = _executor(own[0])
    stored = runner._store_files("job-1", stored, files)
    assert Path(stored["path"]).parent == runner._results_dir()
    pd.testing.assert_frame_equal(pd.read_parquet(stored["path"]), frame)


def test_without_distributed_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r"pip install 'raytha-nb\[dask\]'"):
        rnb.TaskManager(tmp_path / "t.duckdb", executor="dask")


def test_background_cell_on_dask_copies_names_in_and_out(own: Any, tmp_path: Path) -> None:
    from ._kernel import running_kernel

    address = _executor(own[0]).client.scheduler.address
    with running_kernel(tmp_path / "k.duckdb") as k:
        k.execute(
            "import os, raytha_nb as rnb\n"
            f"rnb.configure(rnb.manager().backend.store.path, dask={address!r})\nx = 21"
        )
        k.execute(
            "%%background --executor dask --no-widget --name on-dask\n"
            "y = x * 2\nworker_pid = os.getpid()\ny + 1"
        )
        job = str(k.value("rnb.list_tasks(name='on-dask')[0].id"))
        assert k.value(f"rnb.result({job!r}, timeout=20)") == 43
        deadline = time.monotonic() + 10
        while not k.value("'worker_pid' in globals()"):
            assert time.monotonic() < deadline, "the assigned names never came back"
            time.sleep(0.05)
        assert k.value("(y, worker_pid != os.getpid())") == (42, True)
        assert k.value(f"rnb.get_task({job!r}).executor") == "dask"
        # A cell's function failing in a Dask worker: its frame names the cell's line.
        k.execute("def parse(text):\n    return int(text)  # the failing line")
        k.execute("failed = rnb.wait(rnb.enqueue(parse, ['x'], executor='dask'), 20)")
        assert k.value("failed.status.value") == "error"
        shown = str(k.value("failed.traceback"))
        assert "in parse" in shown and "return int(text)  # the failing line" in shown, shown
        assert "raytha_nb" not in shown, shown


def _steps(gates: list[str]) -> str:
    """Reports 25, 50, 75 %, each held until the test saw it through REST (its gate, a
    ``distributed.Event``, is set), so no step can be missed between two polls."""
    for i, gate in enumerate(gates, 1):
        rnb.progress(25.0 * i, f"step {i}", step=i)
        if not distributed.Event(gate).wait(timeout=30):
            raise TimeoutError(f"step {i} was never seen through REST")
    return "done"


def _rest_until(server: JupyterServer, job: str, percent: float) -> dict[str, Any]:
    """GET tasks/{id} (with the Jupyter token) until it shows ``percent``."""
    deadline = time.monotonic() + 20
    while True:
        status, record, _ = server.request("GET", f"raytha-nb/api/tasks/{job}")
        assert status in (200, 404), (status, record)
        if status == 200 and record["percent_complete"] == percent:
            return dict(record)
        assert time.monotonic() < deadline, (percent, record, server.log_text())
        time.sleep(0.02)


@pytest.mark.timeout(120)
def test_progress_of_a_dask_task_is_seen_through_rest(tmp_path: Path) -> None:
    """A task on a 2-worker LocalCluster, published to a real jupyter server by this
    process (a RemoteBackend, as a kernel does): REST shows each step, and the worker."""
    home = tmp_path / "server"
    home.mkdir()
    server = JupyterServer(home, home / "tasks.duckdb", heartbeat_timeout=10).start()
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    client = distributed.Client(cluster, set_as_default=False)
    manager = rnb.TaskManager(
        backend=RemoteBackend(kernel_address(server)), dask=client, flush_interval=0.05
    )
    try:
        workers = set(client.scheduler_info()["workers"])
        assert len(workers) == 2
        gates = [f"raytha-nb-test-{uuid.uuid4().hex}-{i}" for i in (1, 2, 3)]
        job = manager.enqueue(_steps, [gates], executor="dask")
        for i, gate in enumerate(gates, 1):
            record = _rest_until(server, job, 25.0 * i)
            assert record["status"] == "processing"
            assert (record["task_step"], record["status_info"]) == (i, f"step {i}")
            assert record["executor"] == "dask"
            assert record["worker"] in workers
            distributed.Event(gate, client=client).set()
        final = server.wait_for(job, {"complete", "error"}, 30)
        assert final["status"] == "complete", final
        assert final["percent_complete"] == 100.0
        assert manager.result(job, timeout=10) == "done"
    finally:
        manager.shutdown()
        client.close()
        cluster.close()
        server.stop()


def _flaky_double(x: int) -> int:
    ctx = rnb.current()
    assert ctx is not None
    if x % 5 == 0 and ctx.attempt == 1:
        raise ConnectionError(f"first try of {x}")
    return 2 * x


def test_a_map_goes_to_dask_in_one_graph_and_retries_each_child(own: Any) -> None:
    """The children are one client.map (keyed by their ids); a failed one is retried
    on its own, under its attempt's key."""
    group = rnb.map(_flaky_double, range(40), executor="dask", retries=1, retry_delay=0, show=False)
    assert rnb.result(group, timeout=60) == [2 * x for x in range(40)]
    children = [rnb.get_task(_group.child_id(group, i)) for i in (0, 1, 5)]
    assert [(c.attempt, c.executor) for c in children] == [(2, "dask"), (1, "dask"), (2, "dask")]
    assert [e["status"] for e in rnb.history(children[0].id)] == ["error", "complete"]
