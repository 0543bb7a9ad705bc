"""End to end with real processes: `jupyter server` with the extension, kernels it
starts (driven with jupyter_client), a kernel killed with SIGKILL, a server restart."""

from __future__ import annotations

import ast
import io
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from raytha_nb.store import Store

from ._server_helpers import ExternalKernel, JupyterServer, run

#: Small, so that a killed kernel's task is reaped quickly in the test.
HEARTBEAT_TIMEOUT = 3.0

SETUP = """
import os, time
import pandas as pd
import raytha_nb as rnb

def spin(steps, delay):
    for i in range(steps):
        rnb.check_cancelled()
        rnb.progress(100 * i / steps, info=f"step {i}")
        print(f"line {i + 1}")
        time.sleep(delay)
    return {"steps": steps}

def frame(n):
    return pd.DataFrame({"x": list(range(n)), "sq": [i * i for i in range(n)]})
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    home = tmp_path_factory.mktemp("e2e")
    srv = JupyterServer(home, home / "db" / "tasks.duckdb", heartbeat_timeout=HEARTBEAT_TIMEOUT)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def kernels(server: JupyterServer) -> Iterator[dict[str, tuple[str, Any]]]:
    started = {name: server.start_kernel() for name in ("a", "b")}
    for _, client in started.values():
        run(client, SETUP)
    yield started
    for kernel_id, client in started.values():
        client.stop_channels()
        server.request("DELETE", f"api/kernels/{kernel_id}")


def value(client: Any, expr: str) -> Any:
    return ast.literal_eval(run(client, expr))


def test_extension_listed_and_kernels_use_the_server(
    server: JupyterServer, kernels: dict[str, tuple[str, Any]]
) -> None:
    status = server.get("raytha-nb/api/status")
    assert status["db"] == str(server.db.resolve())
    _, a = kernels["a"]
    assert run(a, "type(rnb.manager().backend).__name__") == "'RemoteBackend'"
    # The kernel never opened the DuckDB file: the server holds it.
    assert value(a, "os.environ['RAYTHA_NB_URL']") == server.url


def test_cross_notebook_watch_cancel_and_result(
    server: JupyterServer, kernels: dict[str, tuple[str, Any]]
) -> None:
    kernel_a, a = kernels["a"]
    _, b = kernels["b"]
    long_job = value(a, "rnb.enqueue(spin, {'steps': 600, 'delay': 0.05}, name='long')")
    rest_job = value(a, "rnb.enqueue(spin, {'steps': 600, 'delay': 0.05}, name='rest')")
    frame_job = value(a, "rnb.enqueue(frame, {'n': 1000}, name='frame')")

    # B sees A's task, live, with A's kernel id.
    server.wait_for(long_job, {"processing"}, 15)
    seen = value(
        b,
        f"(lambda t: (t.status.value, t.kernel_id, t.name))(rnb.get_task({long_job!r}))",
    )
    assert seen == ("processing", kernel_a, "long")
    listed = value(b, f"[t.id for t in rnb.list_tasks(kernel_id={kernel_a!r})]")
    assert {long_job, rest_job, frame_job} <= set(listed)

    # B shows A's task in a live widget, and %jobs --all lists it.
    run(b, f"rnb.show({long_job!r})")
    assert value(b, f"rnb.widgets._open[{long_job!r}].record.status.value") == "processing"
    jobs = run(
        b,
        "from IPython.utils.capture import capture_output\n"
        "with capture_output() as cap:\n"
        "    get_ipython().run_line_magic('jobs', '--all')\n"
        "cap.outputs[0].data['text/plain']",
    )
    assert "long" in jobs and "processing" in jobs and long_job[:8] in jobs
    # ...and finds it by name and by id prefix (no id check failing through the server).
    for key in ("long", long_job[:8]):
        found = run(b, f"get_ipython().run_line_magic('jobs', 'show {key}')")
        assert "Traceback" not in found
        assert value(b, f"{long_job!r} in rnb.widgets._open") is True
    # A name where an id belongs: TaskNotFound with a hint, as in embedded mode.
    missed = run(b, "try:\n    rnb.get_task('long')\nexcept rnb.TaskNotFound as e:\n    print(e)")
    assert "no task with id 'long'" in missed and "rnb.list_tasks(name=...)" in missed

    # B fetches A's DataFrame result.
    assert value(b, f"rnb.wait({frame_job!r}, 30).status.value") == "complete"
    assert value(b, f"rnb.result({frame_job!r}).shape") == (1000, 2)
    assert value(b, f"int(rnb.result({frame_job!r})['sq'].sum())") == sum(
        i * i for i in range(1000)
    )
    status, body, headers = server.request("GET", f"raytha-nb/api/tasks/{frame_job}/result")
    assert status == 200 and headers["Content-Type"] == "application/vnd.apache.parquet"
    assert pq.read_table(io.BytesIO(body)).num_rows == 1000
    # B's widget of that task links to the same download, on the page's own host.
    run(b, f"rnb.show({frame_job!r})")
    outcome = value(b, f"rnb.widgets._open[{frame_job!r}]._outcome.value")
    assert f'href="/raytha-nb/api/tasks/{frame_job}/result"' in outcome

    # B cancels A's task; A's next heartbeat carries the request.
    started = time.monotonic()
    assert value(b, f"rnb.cancel({long_job!r})") is True
    record = server.wait_for(long_job, {"cancelled"}, 10)
    assert time.monotonic() - started < 5
    assert value(b, f"rnb.wait({long_job!r}, 10).status.value") == "cancelled"
    assert value(a, f"rnb.get_task({long_job!r}).status.value") == "cancelled"
    # B's widget of A's task follows it (it polls tasks of other kernels once a second).
    shown = run(
        b,
        "import time\n"
        f"w = rnb.widgets._open[{long_job!r}]\n"
        "deadline = time.monotonic() + 10\n"
        "while w.record.status.value != 'cancelled' and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n"
        "w.record.status.value",
    )
    assert shown == "'cancelled'"

    # Cancel through REST.
    status, reply, _ = server.request("POST", f"raytha-nb/api/tasks/{rest_job}/cancel", {})
    assert status == 200 and reply["cancel_requested"] is True
    server.wait_for(rest_job, {"cancelled"}, 10)

    # Its log lines arrived, in order, readable from B and over REST.
    lines = server.get(f"raytha-nb/api/tasks/{long_job}/logs")["lines"]
    assert lines and [line["seq"] for line in lines] == list(range(1, len(lines) + 1))
    assert lines[0]["text"] == "line 1"
    assert value(b, f"len(rnb.logs({long_job!r}))") == len(lines)
    assert record["kernel_id"] == kernel_a


def test_killed_kernel_task_becomes_interrupted(
    server: JupyterServer, kernels: dict[str, tuple[str, Any]]
) -> None:
    kernel_id, client = server.start_kernel()
    try:
        run(client, SETUP)
        job = value(client, "rnb.enqueue(spin, {'steps': 10000, 'delay': 0.05}, name='doomed')")
        server.wait_for(job, {"processing"}, 15)
        pid = value(client, "os.getpid()")
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        record = server.wait_for(job, {"interrupted"}, HEARTBEAT_TIMEOUT + 8)
        assert time.monotonic() - killed <= HEARTBEAT_TIMEOUT + 4  # slack: a busy 2-core CI
        # Either signal may come first: the missing heartbeat or the server's auto-restart.
        assert "sent no heartbeat" in record["status_info"] or "restarted" in record["status_info"]
        assert f"PID {pid}" in record["status_info"]
        # B can still read it.
        _, b = kernels["b"]
        assert value(b, f"rnb.get_task({job!r}).status.value") == "interrupted"
    finally:
        client.stop_channels()
        server.request("DELETE", f"api/kernels/{kernel_id}")


def test_silent_kernel_is_reaped_after_the_heartbeat_timeout(server: JupyterServer) -> None:
    """A kernel the server did not start (so no restart event): only heartbeats tell."""
    kernel = ExternalKernel(server)
    try:
        run(kernel.client, SETUP)
        job = value(kernel.client, "rnb.enqueue(spin, {'steps': 10000, 'delay': 0.05})")
        server.wait_for(job, {"processing"}, 15)
        pid = value(kernel.client, "os.getpid()")
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        record = server.wait_for(job, {"interrupted"}, HEARTBEAT_TIMEOUT + 8)
        elapsed = time.monotonic() - killed
        assert HEARTBEAT_TIMEOUT - 1.5 <= elapsed <= HEARTBEAT_TIMEOUT + 4, elapsed
        assert record["status_info"].endswith(
            f"(PID {pid}) sent no heartbeat for over {HEARTBEAT_TIMEOUT:g} s: "
            "it died or lost contact with the server"
        ), record["status_info"]
    finally:
        kernel.close()


def test_server_restart_loses_nothing(tmp_path: Path) -> None:
    """A kernel that outlives a server restart re-sends what the server missed.

    Kernels the server itself started stop with it (Jupyter's parent poller), so this
    kernel is started by the test, attached to the server through the environment.
    """
    db = tmp_path / "db" / "tasks.duckdb"
    server = JupyterServer(tmp_path, db, heartbeat_timeout=15).start()
    kernel = ExternalKernel(server)
    client = kernel.client
    inside_id, inside = server.start_kernel()  # a kernel of the server: stops with it
    try:
        run(inside, SETUP)
        doomed = value(inside, "rnb.enqueue(spin, {'steps': 10000, 'delay': 0.05})")
        run(client, SETUP)
        job = value(client, "rnb.enqueue(spin, {'steps': 80, 'delay': 0.1}, name='survivor')")
        server.wait_for(job, {"processing"}, 15)
        server.wait_for(doomed, {"processing"}, 15)
        while not server.get(f"raytha-nb/api/tasks/{job}/logs")["lines"]:
            time.sleep(0.05)
        server.stop()
        inside.stop_channels()
        # While the server is down the kernel keeps working and keeps its unsent state;
        # the server's own kernel's task was ended when the server stopped.
        store = Store(db, recover=False)
        try:
            stopped = store.get(doomed)
            running = store.get(job)
        finally:
            store.close()
        assert stopped is not None and stopped.status.value == "interrupted"
        assert stopped.status_info == (
            f"kernel {inside_id} (PID {stopped.pid}) was stopped with the Jupyter server "
            "while it ran"
        )
        assert running is not None and running.status.value == "processing"
        server.start()
        record = server.wait_for(job, {"complete"}, 40)
        assert record["result"] == {"steps": 80}
        lines = server.get(f"raytha-nb/api/tasks/{job}/logs")["lines"]
        assert [line["text"] for line in lines] == [f"line {i}" for i in range(1, 81)]
        history = server.get(f"raytha-nb/api/tasks/{job}/history")["events"]
        assert history[0]["status"] == "enqueued" and history[-1]["status"] == "complete"
        assert value(client, f"rnb.wait({job!r}, 5).status.value") == "complete"
    finally:
        kernel.close()
        server.stop()
    log = server.log_text()
    assert "Traceback" not in log, log


def test_monitor_notebook_runs_across_two_kernels(server: JupyterServer) -> None:
    """notebooks/monitor-from-another-notebook.ipynb: its first half in kernel A, the cells
    tagged ``second-notebook`` in kernel B, both started by the server."""
    import nbformat

    from ._server_helpers import ROOT

    notebook = nbformat.read(ROOT / "notebooks" / "monitor-from-another-notebook.ipynb", 4)
    kernels = [server.start_kernel(), server.start_kernel()]
    try:
        outputs = []
        for cell in notebook.cells:
            if cell.cell_type != "code":
                continue
            second = "second-notebook" in cell.metadata.get("tags", [])
            outputs.append(run(kernels[1 if second else 0][1], cell.source, timeout=60))
        assert outputs[0] == "RemoteBackend"
        assert outputs[1].startswith("nightly summary ") and kernels[0][0] in outputs[1]
        assert "nightly summary [complete] 100%" in outputs[2]
        assert "['chunk 0 done', 'chunk 1 done', 'chunk 2 done']" in outputs[3]
        assert "chunk" in outputs[3] and "rows" in outputs[3]
    finally:
        for kernel_id, client in kernels:
            client.stop_channels()
            server.request("DELETE", f"api/kernels/{kernel_id}")


def test_task_history_notebook_runs_under_the_server(server: JupyterServer) -> None:
    """notebooks/task-history.ipynb in a server kernel: ``rnb.task_store()`` is a snapshot
    of the server's store (the kernel cannot open the file), and the snapshot is removed."""
    import nbformat

    from ._server_helpers import ROOT

    notebook = nbformat.read(ROOT / "notebooks" / "task-history.ipynb", 4)
    kernel_id, client = server.start_kernel()
    try:
        run(client, "import matplotlib; matplotlib.use('Agg')")
        for cell in notebook.cells:
            if cell.cell_type == "code":
                run(client, cell.source, timeout=180)
        counts = run(
            client,
            "rnb.task_store().execute(\"SELECT count(*) FILTER (status = 'error'), "
            f"count(*) FILTER (status = 'cancelled') FROM tasks WHERE kernel_id = '{kernel_id}'\""
            ").fetchone()",
        )
        assert counts == "(2, 1)"
        assert run(client, "type(rnb.manager().backend).__name__") == "'RemoteBackend'"
        snapshots = server.db.parent / f"{server.db.stem}-results" / "snapshots"
        assert not snapshots.exists() or not any(snapshots.iterdir())
    finally:
        client.stop_channels()
        server.request("DELETE", f"api/kernels/{kernel_id}")


def test_server_on_a_store_held_elsewhere_says_what_to_do(tmp_path: Path) -> None:
    """The file is held by another process: the server's log names it and the server's
    own fixes (not the advice for notebooks, which is to use this very server)."""
    db = tmp_path / "db" / "tasks.duckdb"
    db.parent.mkdir()
    holder = Store(db)  # this test process holds the file
    server = JupyterServer(tmp_path, db, heartbeat_timeout=HEARTBEAT_TIMEOUT)
    try:
        with pytest.raises(AssertionError):  # its API answers 503 saying why
            server.start(timeout=10)
        log = server.log_text()
        assert f"in use by another process (PID {os.getpid()})" in log, log
        assert "c.RaythaNbApp.db_path" in log and "Run your notebooks under" not in log, log
    finally:
        server.stop()
        holder.close()
