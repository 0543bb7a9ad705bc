"""The executors' contract, on threads, worker processes and Dask workers: progress,
logs, results, errors, cancel; then what only processes do (parallel CPU, killing a blocked call,
surviving a dying worker), the record's executor/worker fields and the store migration."""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from tqdm import tqdm

import raytha_nb as rnb
from raytha_nb import _manager
from raytha_nb._client import RemoteBackend
from raytha_nb.errors import ProtocolError
from raytha_nb.protocol import Batch, check_version
from raytha_nb.store import Store

from ._server_helpers import JupyterServer, kernel_address

pytestmark = pytest.mark.timeout(60)

GRACE = 0.3
#: The server's grace: a cancel travels kernel -> server -> the worker's next publish,
#: and the end back: ~3 s on a loaded two-core box (the suite runs two tests at once),
#: so a cooperative stop is told from a forced one only with a grace well above that.
SERVER_GRACE = 5.0
try:
    import distributed
except ImportError:  # the dask extra is not installed: the contract on the other two
    distributed = None
EXECUTORS = ["thread", "process"] + (["dask"] if distributed is not None else []) + ["server"]
WORKER_PREFIX = {"thread": "thread raytha-nb-", "process": "pid ", "dask": "tcp://"}
WORKER_PREFIX["server"] = "pid "


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[rnb.TaskManager]:
    """One manager for the module, its two worker processes started once."""
    db = tmp_path_factory.mktemp("executors") / "tasks.duckdb"
    cluster = None
    if distributed is not None:  # two Dask worker processes, given by address
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=2, processes=True, dashboard_address=":0"
        )
    address = None if cluster is None else cluster.scheduler_address
    manager = rnb.configure(db, workers=4, flush_interval=0.05, cancel_grace=GRACE,
                            process_workers=2, dask=address)  # fmt: skip
    pools = [name for name in EXECUTORS if name in ("process", "dask")]
    warm = [rnb.enqueue(_noop, executor=name) for name in pools for _ in range(2)]
    for job in warm:
        rnb.wait(job, 30)
    yield manager
    manager.shutdown()
    _manager._default = None
    if cluster is not None:
        cluster.close()


@pytest.fixture(scope="module")
def on_server(
    pool: rnb.TaskManager, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[rnb.TaskManager]:
    """A manager publishing to a real jupyter server, for ``executor="server"``: this
    process is a script using the server, whose workers run the tasks."""
    home = tmp_path_factory.mktemp("server-executor")
    options = (f"--RaythaNbApp.server_cancel_grace={SERVER_GRACE}",)
    server = JupyterServer(home, home / "tasks.duckdb", heartbeat_timeout=10, options=options)
    server.start()
    manager = rnb.TaskManager(backend=RemoteBackend(kernel_address(server)), flush_interval=0.05)
    yield manager
    manager.shutdown()
    server.stop()


@pytest.fixture(autouse=True)
def _server_manager(request: pytest.FixtureRequest) -> Iterator[None]:
    """The ``server`` runs of the contract use ``on_server`` as the default manager."""
    params = getattr(request.node, "callspec", None)
    if params is None or params.params.get("executor") != "server":
        yield
        return
    request.getfixturevalue("pool")
    old, _manager._default = _manager._default, request.getfixturevalue("on_server")
    try:
        yield
    finally:
        _manager._default = old


def _grace(executor: str) -> float:
    return SERVER_GRACE if executor == "server" else GRACE


def _noop() -> None:
    return None


def _chatty(n: int) -> dict[str, Any]:
    rnb.progress(10.0, "starting", step=1)
    print("printed line")
    rnb.log("logged line")
    total = 0
    for i in tqdm(range(n), desc="items"):
        total += i
    for _ in rnb.track(range(3)):
        pass
    return {"total": total}


def _cooperative() -> None:
    while True:
        rnb.check_cancelled()
        time.sleep(0.01)


def _spin() -> None:
    x = 0
    while True:
        x += 1


def _fails() -> None:
    value = {"a": 1}
    value["missing"]  # the line the traceback must show


def _frame(rows: int) -> pd.DataFrame:
    return pd.DataFrame({"x": range(rows), "y": [f"r{i}" for i in range(rows)]})


def _done(job: str, timeout: float = 10) -> rnb.TaskRecord:
    return rnb.wait(job, timeout)


def _started(job: str) -> None:
    deadline = time.monotonic() + 10
    while rnb.get_task(job).status is rnb.TaskStatus.ENQUEUED:
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.01)
    time.sleep(0.05)


# -- the contract, on both executors ---------------------------------------------------
@pytest.mark.parametrize("executor", EXECUTORS)
def test_progress_logs_prints_tqdm_and_json_result(pool: Any, executor: str) -> None:
    job = rnb.enqueue(_chatty, {"n": 1000}, executor=executor)
    record = _done(job)
    assert record.status is rnb.TaskStatus.COMPLETE, record.traceback
    assert rnb.result(job) == {"total": sum(range(1000))}
    assert record.percent_complete == 100.0
    assert record.executor == executor
    assert record.worker is not None
    assert record.worker.startswith(WORKER_PREFIX[executor])
    texts = [(line.stream, line.text) for line in rnb.logs(job)]
    assert ("stdout", "printed line") in texts
    assert ("log", "logged line") in texts


@pytest.mark.parametrize("executor", EXECUTORS)
def test_dataframe_result_comes_back_as_a_frame(pool: Any, executor: str) -> None:
    job = rnb.enqueue(_frame, {"rows": 50}, executor=executor)
    assert _done(job).result_kind == "parquet"
    rnb.manager().values.pop(job)  # read it back from the Parquet file, as a new kernel would
    pd.testing.assert_frame_equal(rnb.result(job), _frame(50))


@pytest.mark.parametrize("executor", EXECUTORS)
def test_error_traceback_names_the_users_function_and_line(pool: Any, executor: str) -> None:
    record = _done(rnb.enqueue(_fails, executor=executor))
    assert record.status is rnb.TaskStatus.ERROR
    assert record.error_type == "KeyError"
    assert record.traceback is not None
    assert "in _fails" in record.traceback
    assert 'value["missing"]  # the line the traceback must show' in record.traceback
    assert "raytha_nb" not in record.traceback


@pytest.mark.parametrize("executor", EXECUTORS)
def test_cooperative_cancel(pool: Any, executor: str) -> None:
    job = rnb.enqueue(_cooperative, executor=executor)
    _started(job)
    start = time.monotonic()
    assert rnb.cancel(job)
    record = _done(job)
    assert record.status is rnb.TaskStatus.CANCELLED
    assert time.monotonic() - start < _grace(executor) * 0.9  # it stopped itself: not forced
    assert record.status_info == "cancelled at 0%"


@pytest.mark.parametrize("executor", EXECUTORS)
def test_forced_cancel_after_the_grace_period(pool: Any, executor: str) -> None:
    job = rnb.enqueue(_spin, executor=executor)
    _started(job)
    start = time.monotonic()
    rnb.cancel(job)
    assert _done(job).status is rnb.TaskStatus.CANCELLED
    # Upper bound: about the grace (a loaded box adds a second), far from a hang.
    assert _grace(executor) * 0.9 <= time.monotonic() - start < _grace(executor) + 1.5


@pytest.mark.parametrize("executor", EXECUTORS)
def test_force_true_stops_at_once(pool: Any, executor: str) -> None:
    job = rnb.enqueue(_spin, executor=executor)
    _started(job)
    start = time.monotonic()
    rnb.cancel(job, force=True)
    assert _done(job).status is rnb.TaskStatus.CANCELLED
    assert time.monotonic() - start < _grace(executor) * 0.9


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("bad", [threading.Lock(), (i for i in range(3))], ids=["lock", "gen"])
def test_unpicklable_args_fail_at_enqueue(pool: Any, executor: str, bad: Any) -> None:
    before = len(rnb.list_tasks(limit=None))
    with pytest.raises(TypeError, match=r"args\['data'\] is a "):
        rnb.enqueue(_noop, {"data": bad}, executor=executor)
    assert len(rnb.list_tasks(limit=None)) == before


# -- processes only ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("bad", "kind"), [(threading.Lock(), "_thread.lock"), ((i for i in range(3)), "generator")]
)
def test_a_task_holding_something_unpicklable_fails_at_enqueue(
    pool: Any, bad: Any, kind: str
) -> None:
    def uses_it() -> Any:
        return bad

    with pytest.raises(rnb.NotPicklable, match=rf"uses_it: variable 'bad' is a {kind}, "):
        rnb.enqueue(uses_it, executor="process")
    with pytest.raises(rnb.NotPicklable, match="variable 'bad'"):
        rnb.submit(lambda ctx: bad, name="x", task="x", executor="process")


def test_notebook_functions_lambdas_classes_and_registered_tasks_run(pool: Any) -> None:
    scale = 3

    class Double(rnb.BackgroundTask):
        def execute(self, job_id: str, args: Any, ctx: rnb.TaskContext) -> Any:
            ctx.report(50, "half")
            return args["x"] * 2 * scale

    @rnb.register(name="tests.triple")
    def triple(x: int) -> int:
        return x * scale

    jobs = [
        rnb.enqueue(Double, {"x": 2}, executor="process"),
        rnb.enqueue("tests.triple", {"x": 2}, executor="process"),
        rnb.enqueue(lambda x: x + scale, [1], executor="process"),
        rnb.submit(lambda ctx: ctx.job_id, name="body", task="body", executor="process"),
    ]
    assert [rnb.result(j, timeout=10) for j in jobs] == [12, 6, 4, jobs[3]]


def test_objects_of_notebook_classes_come_back_as_themselves(pool: Any) -> None:
    """A class defined in the notebook reaches the worker by value; its instance (and any
    other object that is neither JSON nor a table) comes back as that object."""

    class Point:
        def __init__(self, x: int, y: int) -> None:
            self.x, self.y = x, y

        def norm1(self) -> int:
            return abs(self.x) + abs(self.y)

    offset = 10
    point = rnb.enqueue(lambda: Point(3, -4), executor="process")
    shifted = rnb.enqueue(lambda: lambda v: v + offset, executor="process")
    pair = rnb.enqueue(lambda: {1, 2}, executor="process")
    value = rnb.result(point, timeout=10)
    assert type(value) is Point  # the notebook's own class, not a copy of it
    assert (value.x, value.y, value.norm1()) == (3, -4, 7)
    assert rnb.get_task(point).result_kind == "pickle"
    rnb.manager().values.pop(point)  # loaded from the worker's pickle file, as elsewhere
    assert type(rnb.result(point)) is Point
    assert rnb.result(shifted, timeout=10)(1) == 11
    assert rnb.result(pair, timeout=10) == {1, 2}  # JSON stores [1, 2]; this process has the set
    assert rnb.get_task(pair).result == [1, 2]


def test_progress_is_coalesced_and_logging_reaches_the_log(pool: Any) -> None:
    def hammer() -> None:
        logging.getLogger("user.code").info("from logging")
        end = time.monotonic() + 0.5
        n = 0
        while time.monotonic() < end:
            n += 1
            rnb.progress(n % 100, f"item {n}")

    job = rnb.enqueue(hammer, executor="process")
    live = rnb.manager().live(job)
    assert live is not None
    start = live.version
    record = _done(job)
    assert record.status is rnb.TaskStatus.COMPLETE, record.traceback
    # ~0.5 s at one message per 50 ms, however many thousands of report() calls.
    assert live.version - start < 60
    assert any("from logging" in line.text for line in rnb.logs(job))


def _burn(seconds: float) -> int:
    end, n = time.process_time() + seconds, 0
    while time.process_time() < end:
        n += 1
    return n


def _burn_timed(seconds: float) -> dict[str, Any]:
    """Burn ``seconds`` of CPU; say where (pid) and when (wall clock) it ran."""
    start = time.time()
    _burn(seconds)
    return {"pid": os.getpid(), "start": start, "end": time.time()}


def test_cpu_bound_tasks_run_in_parallel(pool: Any) -> None:
    """Two CPU-bound tasks run at the same time, in two processes (so no GIL is shared).

    Measured inside the tasks (overlapping wall-clock intervals), not by total elapsed
    time: on a loaded machine the cores others use slow both, but cannot serialise them.
    """
    jobs = [rnb.enqueue(_burn_timed, [0.6], executor="process") for _ in range(2)]
    first, second = (rnb.result(job, timeout=20) for job in jobs)
    assert first["pid"] != second["pid"]
    overlap = min(first["end"], second["end"]) - max(first["start"], second["start"])
    shorter = min(first["end"] - first["start"], second["end"] - second["start"])
    # Serial runs would not overlap at all; a slow worker start (a loaded machine) may
    # delay the second one's start by a good part of a second.
    assert overlap > 0.25 * shorter, (first, second)


def test_a_blocking_c_call_is_stopped_within_the_grace_period(pool: Any) -> None:
    job = rnb.enqueue(time.sleep, [60], executor="process")
    _started(job)
    start = time.monotonic()
    rnb.cancel(job)
    record = _done(job)
    assert record.status is rnb.TaskStatus.CANCELLED
    # About the grace (a loaded box adds a second), far from the 60 s the call would take.
    assert time.monotonic() - start < GRACE + 1.5
    assert "worker process stopped" in (record.status_info or "")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (lambda: ctypes.string_at(0), "worker process died: signal 11"),
        (lambda: os._exit(3), "worker process died: exit code 3"),
        (lambda: os.kill(os.getpid(), 9), "worker process died: signal 9"),
    ],
    ids=["segfault", "exit", "kill-9"],
)
def test_a_dying_worker_ends_its_task_only(pool: Any, body: Any, reason: str) -> None:
    other = rnb.enqueue(_burn, [0.4], executor="process")
    record = _done(rnb.enqueue(body, executor="process"))
    assert record.status is rnb.TaskStatus.ERROR
    assert record.error_message == reason
    assert _done(other).status is rnb.TaskStatus.COMPLETE
    assert rnb.result(rnb.enqueue(lambda: "next", executor="process"), timeout=10) == "next"


def test_executor_names_and_the_default(pool: Any) -> None:
    with pytest.raises(ValueError, match="unknown executor 'gpu': choose one of 'thread'"):
        rnb.enqueue(_noop, executor="gpu")
    with pytest.raises(rnb.ExecutorUnavailable, match="use executor='process'"):
        rnb.enqueue(_noop, executor="server")  # embedded: no server to run it
    with pytest.raises(ValueError, match="not possible for data jobs"):
        rnb.sql("SELECT 1", executor="process")


def test_configure_sets_the_default_executor(tmp_path: Path) -> None:
    old = _manager._default
    _manager._default = None
    try:
        manager = rnb.configure(tmp_path / "t.duckdb", executor="process", process_workers=1)
        assert _done(rnb.enqueue(_noop), 30).executor == "process"
        manager.shutdown()
    finally:
        _manager._default = old


# -- the record's new fields: wire, store ---------------------------------------------
def test_a_batch_of_an_older_protocol_without_the_new_columns_is_accepted() -> None:
    check_version("1.1", "0.1.0")  # one minor version back: columns it lacks take defaults
    columns = ["id", "name", "task", "status", "created_at"]
    row = ["0b6e3c1e-3a6f-4e2a-9d5c-2f1d3c4b5a69", "old", "old", "enqueued", 1.0]
    batch = Batch.from_json({"tasks": {"columns": columns, "rows": [row]}})
    assert batch.tasks[0].executor is None and batch.tasks[0].worker is None
    assert (batch.tasks[0].attempt, batch.tasks[0].max_attempts) == (1, 1)
    with pytest.raises(ProtocolError, match="cannot talk"):
        check_version("1.0", "0.1.0")  # two back


def test_a_store_of_schema_1_opens_and_gains_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(Store.MIGRATIONS[0])
    con.execute("INSERT INTO raytha_meta VALUES ('schema_version', '1')")
    con.execute(
        "INSERT INTO tasks (id, name, task, status, created_at, updated_at) VALUES "
        "('0b6e3c1e-3a6f-4e2a-9d5c-2f1d3c4b5a69', 'old', 'old', 'complete', now(), now())"
    )
    con.close()
    store = Store(path)
    try:
        assert store.schema_version == len(Store.MIGRATIONS)
        old = store.get("0b6e3c1e-3a6f-4e2a-9d5c-2f1d3c4b5a69")
        assert old is not None and old.executor is None and old.worker is None
        assert old.to_json()["executor"] is None
    finally:
        store.close()


# -- %%background --executor process, in a real kernel --------------------------------
def test_background_cell_in_a_process_copies_names_in_and_out(tmp_path: Path) -> None:
    from ._kernel import running_kernel

    with running_kernel(tmp_path / "k.duckdb") as k:
        k.execute("import os, threading, raytha_nb as rnb\nx = 21\nlock = threading.Lock()")
        k.execute(
            "%%background --executor process --no-widget --name in-process\n"
            "y = x * 2\nworker_pid = os.getpid()\ndef helper(): return y\nprint('hi')\ny + 1"
        )
        job = str(k.value("rnb.list_tasks(name='in-process')[0].id"))
        assert k.value(f"rnb.result({job!r}, timeout=20)") == 43
        deadline = time.monotonic() + 10  # names come back once the final state is stored
        while not k.value("'helper' in globals()"):
            assert time.monotonic() < deadline, "the assigned names never came back"
            time.sleep(0.05)
        assert k.value("(y, helper(), worker_pid != os.getpid())") == (42, 42, True)
        assert k.value(f"rnb.get_task({job!r}).executor") == "process"
        refused = k.execute(
            "%%background --executor process --no-widget\nwith lock:\n    pass", check=False
        )
        assert "variable 'lock' is a _thread.lock" in refused.text


def test_workers_end_when_their_kernel_is_killed(tmp_path: Path) -> None:
    """A worker whose kernel died (kill -9: no clean shutdown) stops its task and exits."""
    import subprocess
    import sys

    from raytha_nb._identity import pid_alive

    script = (
        "import os, time, raytha_nb as rnb\n"
        "if __name__ == '__main__':\n"
        f"    rnb.configure({str(tmp_path / 'k.duckdb')!r}, process_workers=1)\n"
        "    job = rnb.enqueue(time.sleep, [60], executor='process')\n"
        "    while rnb.get_task(job).worker is None: time.sleep(0.01)\n"
        "    print(rnb.get_task(job).worker.split()[1], flush=True)\n"
        "    os.kill(os.getpid(), 9)\n"
    )
    path = tmp_path / "kernel.py"
    path.write_text(script)
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=30)
    worker = int(out.stdout.strip())
    deadline = time.monotonic() + 5
    while pid_alive(worker):
        assert time.monotonic() < deadline, "the orphaned worker ran on"
        time.sleep(0.05)
