"""``executor="server"`` with real processes: a jupyter server on 127.0.0.1 runs tasks in
worker processes it supervises; they outlive the kernel that started them (restart,
shutdown), a server restart, and a dying worker ends only its own task."""

from __future__ import annotations

import ast
import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from raytha_nb._identity import pid_alive, worker_token

from ._server_helpers import (
    JupyterServer,
    free_port,
    kernel_address,
    run,
    running_server,
    started_kernel,
)

pytestmark = pytest.mark.timeout(180)

GRACE = 0.5

SETUP = """
import os, time
import raytha_nb as rnb

def spin(steps, delay):
    for i in range(steps):
        rnb.check_cancelled()
        rnb.progress(100 * (i + 1) / steps, info=f"step {i + 1}")
        print(f"line {i + 1}")
        time.sleep(delay)
    return {"steps": steps, "pid": os.getpid()}

def nap(seconds):
    time.sleep(seconds)  # one blocking C call: no cancel check until it returns
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    home = tmp_path_factory.mktemp("server-executor")
    options = (f"--RaythaNbApp.server_cancel_grace={GRACE}", "--RaythaNbApp.max_server_workers=2")
    with running_server(home, *options) as srv:
        yield srv


@pytest.fixture
def kernel(server: JupyterServer) -> Iterator[tuple[str, Any]]:
    with started_kernel(server, SETUP) as started:
        yield started


def value(client: Any, expr: str) -> Any:
    return ast.literal_eval(run(client, expr))


def test_a_server_task_outlives_its_kernels_restart_and_loads_in_a_new_kernel(
    server: JupyterServer, kernel: tuple[str, Any]
) -> None:
    kernel_id, client = kernel
    job = value(client, "rnb.enqueue(spin, {'steps': 30, 'delay': 0.1}, executor='server')")
    record = server.wait_for(job, {"processing"}, 30)
    kernel_pid = value(client, "os.getpid()")
    assert record["executor"] == "server" and record["kernel_id"] is None
    assert record["worker"] == f"pid {record['pid']}" and record["pid"] != kernel_pid
    status, _, _ = server.request("POST", f"api/kernels/{kernel_id}/restart", {})
    assert status == 200
    seen: set[float] = set()
    while (record := server.task(job))["status"] == "processing":
        seen.add(record["percent_complete"])
        time.sleep(0.05)
    assert record["status"] == "complete", record
    assert len(seen) >= 3  # live progress through REST while the kernel restarted
    lines = server.get(f"raytha-nb/api/tasks/{job}/logs")["lines"]
    assert [line["text"] for line in lines] == [f"line {i}" for i in range(1, 31)]
    with started_kernel(server, "import raytha_nb as rnb") as (_, other):
        assert value(other, f"rnb.result({job!r})") == {"steps": 30, "pid": record["pid"]}


def test_a_server_task_survives_its_kernel_being_shut_down(
    server: JupyterServer, kernel: tuple[str, Any]
) -> None:
    kernel_id, client = kernel
    job = value(client, "rnb.enqueue(spin, {'steps': 15, 'delay': 0.1}, executor='server')")
    server.wait_for(job, {"processing"}, 30)
    assert server.request("DELETE", f"api/kernels/{kernel_id}")[0] == 204
    record = server.wait_for(job, {"complete", "error", "interrupted"}, 30)
    assert record["status"] == "complete", record
    assert server.get(f"raytha-nb/api/tasks/{job}/result")  # downloadable JSON


def test_a_worker_ends_with_its_task_even_if_the_task_left_a_thread_running(
    server: JupyterServer, kernel: tuple[str, Any]
) -> None:
    _, client = kernel
    run(
        client,
        "import threading\n"
        "def leaves_a_thread():\n"
        "    threading.Thread(target=time.sleep, args=(3600,), daemon=False).start()\n"
        "    return os.getpid()",
    )
    job = value(client, "rnb.enqueue(leaves_a_thread, executor='server')")
    record = server.wait_for(job, {"complete", "error"}, 30)
    assert record["status"] == "complete", record
    pid = record["result"]
    deadline = time.monotonic() + 20
    while pid_alive(pid):  # the server reaps its ended workers: no zombie stays
        assert time.monotonic() < deadline, f"worker {pid} still runs after its task ended"
        time.sleep(0.1)


def test_cancel_cooperative_forced_after_grace_and_force_true(
    server: JupyterServer, kernel: tuple[str, Any]
) -> None:
    _, client = kernel
    polite = value(client, "rnb.enqueue(spin, {'steps': 1000, 'delay': 0.05}, executor='server')")
    blocked = value(client, "rnb.enqueue(nap, {'seconds': 60}, executor='server')")
    for job in (polite, blocked):
        server.wait_for(job, {"processing"}, 30)
    started = time.monotonic()
    run(client, f"rnb.cancel({polite!r}); rnb.cancel({blocked!r})")
    record = server.wait_for(polite, {"cancelled"}, 10)
    assert "worker was stopped" not in (record["status_info"] or "")  # it stopped by itself
    record = server.wait_for(blocked, {"cancelled"}, 10)
    assert record["status_info"] == "cancelled (its server worker was stopped)"
    assert time.monotonic() - started < GRACE + 3
    forced = value(client, "rnb.enqueue(nap, {'seconds': 60}, executor='server')")
    server.wait_for(forced, {"processing"}, 30)
    started = time.monotonic()
    status, reply, _ = server.request(
        "POST", f"raytha-nb/api/tasks/{forced}/cancel", {"force": True}
    )
    assert status == 200 and reply["cancel_requested"] is True
    server.wait_for(forced, {"cancelled"}, 10)
    assert time.monotonic() - started < GRACE  # killed at once, not after the grace
    status, reply, _ = server.request("POST", f"raytha-nb/api/tasks/{forced}/cancel", {"force": 1})
    assert status == 400 and "force" in reply["message"]


def test_a_dying_worker_ends_its_task_error_and_the_next_task_runs(
    server: JupyterServer, kernel: tuple[str, Any]
) -> None:
    _, client = kernel
    run(client, "import ctypes\ndef crash():\n    print('about to crash')\n    ctypes.string_at(0)")
    job = value(client, "rnb.enqueue(crash, executor='server')")
    record = server.wait_for(job, {"error"}, 30)
    assert record["status_info"] == "server worker process died: signal 11"
    assert record["error_type"] == "raytha_nb.WorkerDied"
    after = value(client, "rnb.enqueue(spin, {'steps': 2, 'delay': 0}, executor='server')")
    assert server.wait_for(after, {"complete"}, 30)["result"]["steps"] == 2


def test_errors_keep_the_users_frames_and_unpicklable_input_fails_at_enqueue(
    server: JupyterServer, kernel: tuple[str, Any]
) -> None:
    _, client = kernel
    run(client, "def boom(x):\n    y = x + 1\n    raise ValueError(f'bad {y}')")
    job = value(client, "rnb.enqueue(boom, {'x': 1}, executor='server')")
    record = server.wait_for(job, {"error"}, 30)
    assert record["error_type"] == "ValueError" and record["error_message"] == "bad 2"
    assert "in boom" in record["traceback"] and "raise ValueError" in record["traceback"]
    text = run(
        client,
        "import threading\nlock = threading.Lock()\ntry:\n"
        "    rnb.enqueue(lambda: lock.acquire(), executor='server')\n"
        "except rnb.NotPicklable as exc:\n    print(exc)",
    )
    assert "global 'lock' is a _thread.lock, which cannot be sent" in text


def test_limit_of_workers_keeps_the_rest_enqueued(
    server: JupyterServer, kernel: tuple[str, Any]
) -> None:
    _, client = kernel
    jobs = [
        # 8 s each: the two must still run when the third is cancelled, however slowly
        # the second one's worker starts on a loaded machine.
        value(client, "rnb.enqueue(spin, {'steps': 80, 'delay': 0.1}, executor='server')")
        for _ in range(3)
    ]
    for job in jobs[:2]:
        server.wait_for(job, {"processing"}, 30)
    assert server.task(jobs[2])["status"] == "enqueued"  # max_server_workers=2
    run(client, f"rnb.cancel({jobs[2]!r})")
    record = server.wait_for(jobs[2], {"cancelled"}, 5)
    assert record["status_info"] == "cancelled before it started"
    for job in jobs[:2]:
        assert server.wait_for(job, {"complete"}, 30)["status"] == "complete"


def test_a_worker_secret_publishes_only_its_own_task(
    server: JupyterServer, kernel: tuple[str, Any]
) -> None:
    _, client = kernel
    job = value(client, "rnb.enqueue(spin, {'steps': 40, 'delay': 0.05}, executor='server')")
    other = value(client, "rnb.enqueue(spin, {'steps': 1, 'delay': 0}, executor='thread')")
    server.wait_for(other, {"complete"}, 30)
    address = kernel_address(server)

    def publish(token: str, worker: str, task_id: str) -> tuple[int, Any]:
        body = {
            "protocol": "1.1", "version": "0", "session": "intruder", "pid": 1, "active": [],
            "batch": {"progress": {"columns": ["id", "percent_complete"], "rows": [[task_id, 5]]}},
        }  # fmt: skip
        request = urllib.request.Request(
            server.url + "raytha-nb/kernel-api/publish", data=json.dumps(body).encode(),
            method="POST", headers={"Authorization": f"token {token}",
                                    "X-Raytha-Nb-Worker": worker},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    mine = worker_token(address.token, job)
    assert publish(mine, other, other)[0] == 403  # a token made for another task
    status, reply = publish(mine, job, other)
    assert status == 403 and "belongs to" in reply["message"]
    server.wait_for(job, {"complete"}, 30)


def test_server_tasks_carry_on_through_a_server_restart(tmp_path: Path) -> None:
    """Workers run in sessions of their own: a stopped server does not stop them, and
    they reconnect to the restarted one, on another port too; a task still waiting
    starts after the restart."""
    srv = JupyterServer(
        tmp_path, tmp_path / "db" / "tasks.duckdb", heartbeat_timeout=15,
        options=("--RaythaNbApp.max_server_workers=1",),
    ).start()  # fmt: skip
    kernel_id, client = srv.start_kernel()
    worker_pid = None
    try:
        run(client, SETUP)
        job = value(client, "rnb.enqueue(spin, {'steps': 60, 'delay': 0.1}, executor='server')")
        waiting = value(client, "rnb.enqueue(spin, {'steps': 3, 'delay': 0}, executor='server')")
        record = srv.wait_for(job, {"processing"}, 30)
        assert srv.task(waiting)["status"] == "enqueued"
        worker_pid = record["pid"]
        client.stop_channels()
        srv.stop()
        os.kill(worker_pid, 0)  # still running while the server is down
        time.sleep(1)
        srv.port = free_port()  # and it finds the server on its new port (its runtime file)
        srv.start()
        record = srv.wait_for(job, {"complete", "interrupted", "error"}, 60)
        assert record["status"] == "complete", record
        lines = srv.get(f"raytha-nb/api/tasks/{job}/logs")["lines"]
        assert [line["text"] for line in lines] == [f"line {i}" for i in range(1, 61)]
        assert srv.wait_for(waiting, {"complete"}, 60)["result"]["steps"] == 3
    finally:
        srv.request("DELETE", f"api/kernels/{kernel_id}")
        srv.stop()
        if worker_pid is not None and pid_alive(worker_pid):
            os.kill(worker_pid, signal.SIGKILL)  # the worker this test's server started
    assert "Traceback" not in srv.log_text(), srv.log_text()


def test_background_cell_on_the_server_copies_names_in_and_out(
    server: JupyterServer, kernel: tuple[str, Any]
) -> None:
    _, client = kernel
    run(client, "%load_ext raytha_nb\ndata = [1, 2, 3]")
    run(
        client,
        "%%background --executor server --no-widget --name on-server\ntotal = sum(data)\ntotal * 2",
    )
    job = value(client, "rnb.list_tasks(name='on-server')[0].id")
    record = server.wait_for(job, {"complete", "error"}, 60)
    assert record["status"] == "complete" and record["executor"] == "server", record
    assert record["result"] == 12
    deadline = time.monotonic() + 10
    while run(client, "print('total' in globals())") != "True":
        assert time.monotonic() < deadline, "the cell's names were not copied back"
        time.sleep(0.1)
    assert value(client, "total") == 6


def test_wait_all_waits_for_the_server_tasks_this_kernel_started(
    server: JupyterServer, kernel: tuple[str, Any]
) -> None:
    _, client = kernel
    job = value(client, "rnb.enqueue(spin, {'steps': 10, 'delay': 0.1}, executor='server')")
    assert value(client, "[(r.id, r.status.value) for r in rnb.wait_all(60)]") == [
        (job, "complete")
    ]
    run(client, "def fail():\n    raise RuntimeError('from the server')")
    failing = value(client, "rnb.enqueue(fail, executor='server')")
    text = run(client, "try:\n    rnb.wait_all(60)\nexcept rnb.TaskFailed as exc:\n    print(exc)")
    assert failing in text and "from the server" in text


def test_force_true_from_another_kernel_kills_a_process_task_at_once(
    server: JupyterServer, kernel: tuple[str, Any]
) -> None:
    """The force travels with the cancel request: the owner kills its worker process
    now rather than after its (here 10 s) grace period."""
    _, client = kernel
    run(client, "rnb.configure(cancel_grace=10)\n" + SETUP)
    job = value(client, "rnb.enqueue(nap, {'seconds': 60}, executor='process')")
    server.wait_for(job, {"processing"}, 30)
    with started_kernel(server, "import raytha_nb as rnb") as (_, other):
        started = time.monotonic()
        assert value(other, f"rnb.cancel({job!r}, force=True)") is True
        record = server.wait_for(job, {"cancelled"}, 10)
        assert time.monotonic() - started < 5, "forced only after the grace period"
        assert "worker process stopped" in record["status_info"]


def test_workers_run_in_the_kernels_directory_whether_warm_spares_or_not(
    server: JupyterServer, kernel: tuple[str, Any]
) -> None:
    """The first task of an interpreter starts a worker of its own; later ones get the
    spare the server keeps warm (imports done), moved into the task's directory."""
    _, client = kernel
    run(client, "os.makedirs('sub', exist_ok=True)\nos.chdir('sub')\nimport sys")
    where = value(client, "(os.getcwd(), sys.executable)")
    run(client, "def here():\n    import sys\n    return [os.getcwd(), sys.executable]")
    for _ in range(3):
        job = value(client, "rnb.enqueue(here, executor='server')")
        assert tuple(server.wait_for(job, {"complete"}, 30)["result"]) == where
        time.sleep(1.5)  # time for the next spare to finish its imports


def test_a_limit_on_server_tasks_holds_server_wide(server: JupyterServer) -> None:
    """limit=1 across two kernels: the server runs one task of that name at a time."""
    with started_kernel(server, SETUP) as (_, a), started_kernel(server, SETUP) as (_, b):
        enqueue = (
            "rnb.enqueue(spin, {'steps': 8, 'delay': 0.1}, name='one-export', limit=1, "
            "executor='server')"
        )
        jobs = [value(client, enqueue) for client in (a, b, a)]
        peak = 0
        deadline = time.monotonic() + 90
        while True:
            statuses = [server.task(job)["status"] for job in jobs]
            peak = max(peak, statuses.count("processing"))
            if all(s == "complete" for s in statuses):
                break
            assert time.monotonic() < deadline, statuses
            time.sleep(0.05)
        assert peak == 1


def test_delayed_and_waiting_server_tasks_are_held_by_the_server_not_a_worker(
    server: JupyterServer, kernel: tuple[str, Any]
) -> None:
    """With both worker slots taken by held tasks a third task still runs at once: the
    server keeps them ``scheduled``/``awaiting`` until due or their parents end."""
    _, client = kernel
    parent = value(client, "rnb.enqueue(spin, {'steps': 30, 'delay': 0.1}, executor='server')")
    later = value(client, "rnb.enqueue(spin, {'steps': 1, 'delay': 0}, executor='server', delay=4)")
    after = value(
        client,
        f"rnb.enqueue(spin, {{'steps': 1, 'delay': 0}}, executor='server', after={parent!r})",
    )
    assert server.task(later)["status"] == "scheduled"
    assert server.task(after)["status"] == "awaiting"
    now = value(client, "rnb.enqueue(spin, {'steps': 1, 'delay': 0}, executor='server')")
    assert server.wait_for(now, {"complete"}, 30)  # the second slot was free
    assert server.task(later)["status"] == "scheduled"
    assert server.task(after)["status"] == "awaiting"
    done = server.wait_for(later, {"complete"}, 30)
    assert _at(done["started_at"]) >= _at(done["scheduled_for"])
    first = server.wait_for(parent, {"complete"}, 30)
    record = server.wait_for(after, {"complete"}, 30)
    assert _at(record["started_at"]) >= _at(first["completed_at"])
    events = server.get(f"raytha-nb/api/tasks/{after}/history")["events"]
    statuses = [event["status"] for event in events]
    assert statuses[0] == "awaiting" and statuses[-2:] == ["processing", "complete"], statuses
    assert set(statuses[1:-2]) == {"enqueued"}, statuses  # released, then waited for a worker
    # Held ones are cancelled by the server itself, at once.
    held = value(client, "rnb.enqueue(spin, {'steps': 1, 'delay': 0}, executor='server', delay=60)")
    assert server.request("POST", f"raytha-nb/api/tasks/{held}/cancel", {})[0] == 200
    assert server.wait_for(held, {"cancelled"}, 10)["status"] == "cancelled"


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
