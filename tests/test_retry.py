"""``rnb.retry``, ``POST tasks/{id}/retry`` and the widget's Retry button, with real
kernels, stores and a jupyter server: a retried task resumes from its checkpoint, keeps
its options, points back with ``retry_of``, and runs wherever its code can be found."""

from __future__ import annotations

import ast
import json
import os
import signal
import stat
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

import raytha_nb as rnb
from raytha_nb import _retry

from ._kernel import Kernel, running_kernel
from ._server_helpers import JupyterServer, run, running_server, started_kernel

pytestmark = pytest.mark.timeout(240)

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "checkpoints.ipynb"

#: An importable module of tasks (its directory goes on the kernels' PYTHONPATH).
CHUNKS = """
import time
import raytha_nb as rnb

def work(chunks, seconds):
    ctx = rnb.current()
    start = ctx.resume["chunk"] + 1 if ctx.resume else 0
    for chunk in range(start, chunks):
        time.sleep(seconds)
        ctx.checkpoint({"chunk": chunk})
    return start
"""

#: For kernels of the server: a notebook-defined chunked job, failing once at chunk 20
#: unless resumed, and a registered task.
SETUP = """
import time
import raytha_nb as rnb

def chunked(chunks, seconds, fail_at=None):
    ctx = rnb.current()
    start = ctx.resume["chunk"] + 1 if ctx.resume else 0
    for chunk in range(start, chunks):
        time.sleep(seconds)
        ctx.checkpoint({"chunk": chunk})
        if chunk == fail_at and ctx.resume is None:
            raise RuntimeError(f"failed at chunk {chunk}")
    return start
"""


def value(client: Any, expr: str) -> Any:
    return ast.literal_eval(run(client, f"print(repr({expr}))"))


def kernel_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "mods").mkdir(exist_ok=True)
    (tmp_path / "mods" / "chunks.py").write_text(CHUNKS)
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path / "mods"), os.environ["PYTHONPATH"]])}


def wait_checkpoint(kernel: Kernel, job: str, least: int, timeout: float = 60) -> None:
    kernel.execute(
        f"import time\nend = time.monotonic() + {timeout}\n"
        f"while (rnb.get_task({job!r}).checkpoint or {{}}).get('chunk', -1) < {least}:\n"
        "    assert time.monotonic() < end, rnb.get_task(" + repr(job) + ")\n"
        "    time.sleep(0.05)"
    )


# -- in kernels of their own (embedded store) -------------------------------------------
def test_retry_of_a_task_whose_kernel_was_killed_resumes_from_its_checkpoint(
    tmp_path: Path,
) -> None:
    db = tmp_path / "tasks.duckdb"
    env = kernel_env(tmp_path)
    with running_kernel(db, env) as first:
        first.execute(
            "import raytha_nb as rnb, chunks\n"
            "job = rnb.enqueue(chunks.work, {'chunks': 2000, 'seconds': 0.005}, "
            "retries=2, timeout=900, limit=3)"
        )
        job = first.value("job")
        wait_checkpoint(first, job, 200)
        time.sleep(1.5)  # a checkpoint is stored at most once a second
        os.kill(first.km.provisioner.pid, signal.SIGKILL)
        first.km.provisioner.process.wait(10)
    with running_kernel(db, env) as second:
        second.execute("import raytha_nb as rnb")
        old = second.value(
            f"(lambda r: (r.status.value, r.checkpoint, r.status_info))(rnb.get_task({job!r}))"
        )
        assert old[0] == "interrupted" and "ended before it finished" in old[2], old
        assert old[1]["chunk"] > 0
        second.execute(f"new = rnb.retry({job!r})\nresumed = rnb.result(new, timeout=120)")
        assert second.value("resumed") == old[1]["chunk"] + 1
        record = second.value(
            "(lambda r: (r.status.value, r.retry_of, r.max_attempts, r.options, r.executor))"
            "(rnb.get_task(new))"
        )
        assert record[:3] == ("complete", job, 3)
        assert record[3]["retries"] == 2 and record[3]["timeout"] == 900
        assert record[3]["limit"] == 3 and record[3]["ref"] == "chunks:work"
        assert record[4] == "thread"


def test_checkpoints_notebook_resumes_after_a_real_kernel_restart(tmp_path: Path) -> None:
    """The notebook's cells in a real kernel, restarted (killed) where the notebook says
    to restart it; the stand-in cell then finds no job and the new kernel's retry
    resumes where the killed one got to."""
    cells = [c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code"]
    restart_at = next(i for i, source in enumerate(cells) if "Stand-in" in source)
    with running_kernel(tmp_path / "tasks.duckdb") as kernel:
        for source in cells[:restart_at]:
            kernel.execute(source)
        job = kernel.value("job")
        before = kernel.value(f"rnb.get_task({job!r}).checkpoint['chunk']")
        assert 300 <= before < 999  # mid-job
        time.sleep(1.2)  # let the latest checkpoint be stored
        kernel.km.restart_kernel(now=True)
        kernel.kc.wait_for_ready(timeout=60)
        outputs = [kernel.execute(source).text for source in cells[restart_at:]]
    assert "interrupted at chunk" in outputs[1], outputs
    stored = int(outputs[1].split("interrupted at chunk ")[1].split(":")[0])
    assert stored >= before - 1
    assert f"resumed at chunk {stored + 1}, not 0" in outputs[2]


def test_a_notebook_function_on_a_thread_cannot_be_retried_and_says_why(
    tmp_path: Path,
) -> None:
    with running_kernel(tmp_path / "tasks.duckdb") as kernel:
        kernel.execute(
            "import raytha_nb as rnb, time\n"
            "def local(x):\n    return x\n"
            "def slow():\n    time.sleep(30)\n"
            "done = rnb.enqueue(local, {'x': 1}); rnb.wait(done)\n"
            "busy = rnb.enqueue(slow)\n"
            "def why(job):\n"
            "    try:\n        rnb.retry(job)\n"
            "    except Exception as exc:\n        return type(exc).__name__, str(exc)\n"
        )
        name, message = kernel.value("why(done)")
        assert name == "CannotRetry"
        assert "'local'" in message and "defined in a notebook" in message
        assert "ran on a thread: its code is not stored" in message
        assert "executor='process'" in message and "@rnb.task" in message
        name, message = kernel.value("why(busy)")
        assert name == "TaskStateError" and "is processing" in message
        assert "before retrying it" in message
        assert kernel.value("len(rnb.list_tasks())") == 2  # nothing was queued
        kernel.execute("rnb.cancel(busy, force=True)")


def test_the_widget_of_a_finished_task_retries_it_with_a_click(tmp_path: Path) -> None:
    with running_kernel(tmp_path / "tasks.duckdb") as kernel:
        kernel.execute(
            "import raytha_nb as rnb, threading\n"
            "from raytha_nb.widgets import progress_widget\n"
            "gate = threading.Event()\n"
            "@rnb.task(name='flaky', timeout=300)\n"
            "def flaky():\n"
            "    ctx = rnb.current()\n"
            "    ctx.checkpoint({'chunk': 7})\n"
            "    if ctx.resume is None:\n"
            "        gate.wait(30)\n"
            "        raise ValueError('first run fails')\n"
            "    return ctx.resume['chunk']\n"
            "job = rnb.enqueue('flaky')\n"
            "w = progress_widget(job)"
        )
        assert kernel.value("w._retry.layout.display") == "none"  # not while it runs
        kernel.execute("gate.set(); rnb.wait(job); w.refresh()")
        assert kernel.value("w._retry.layout.display") != "none"
        button = kernel.value("w._retry.model_id")
        kernel.click(button)
        kernel.execute(
            "import time\nend = time.monotonic() + 30\n"
            "while not w._retried.children:\n"
            "    assert time.monotonic() < end\n    time.sleep(0.05)\n"
            "new = w._retried.children[0].job_id\nresumed = rnb.result(new, timeout=60)"
        )
        assert kernel.value("resumed") == 7
        assert kernel.value("rnb.get_task(new).retry_of == job")
        assert kernel.value("rnb.get_task(new).options['timeout']") == 300


def test_a_stored_body_is_private_and_goes_with_its_task(mgr: rnb.TaskManager) -> None:
    job = mgr.enqueue(json.dumps, {"obj": [1, 2]}, executor="process")
    mgr.wait(job, timeout=60)
    _retry._writer.flush()  # written off the enqueue path
    path = _retry.body_path(mgr.backend.results_dir, job)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = mgr.retry(job)
    assert mgr.result(again, timeout=60) == "[1, 2]"
    assert _retry.body_path(mgr.backend.results_dir, again).exists()  # retryable too
    mgr.delete(job)
    assert not path.exists()


def _counted(chunks: int) -> int:
    ctx = rnb.current()
    start = ctx.resume["chunk"] + 1 if ctx.resume else 0
    for chunk in range(start, chunks):
        ctx.checkpoint({"chunk": chunk})
    return start


def test_a_complete_tasks_rerun_starts_afresh(mgr: rnb.TaskManager) -> None:
    """A complete task's last checkpoint is its end: resuming there would do nothing
    (the tests above show the other statuses resume)."""
    rnb.register(_counted, name="counted")
    done = mgr.enqueue("counted", {"chunks": 5})
    assert mgr.result(done, timeout=30) == 0
    assert mgr.get_task(done).checkpoint == {"chunk": 4}
    again = mgr.retry(done)
    assert mgr.result(again, timeout=30) == 0
    assert mgr.get_task(again).retry_of == done


# -- under a jupyter server ---------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    home = tmp_path_factory.mktemp("retry-server")
    with running_server(home) as srv:
        yield srv


def retry(server: JupyterServer, job: str) -> tuple[int, Any]:
    status, body, _ = server.request("POST", f"raytha-nb/api/tasks/{job}/retry", {})
    return status, body


def test_a_registered_task_is_retried_from_another_kernel(server: JupyterServer) -> None:
    with started_kernel(server, SETUP) as (a_id, a), started_kernel(server, SETUP) as (b_id, b):
        run(a, "@rnb.task(name='tally', retries=1, timeout=120)\ndef tally(n):\n    return n")
        job = value(a, "rnb.enqueue('tally', {'n': 5}, limit=2)")
        assert value(a, f"rnb.result({job!r}, timeout=60)") == 5
        # Kernel B registers its own 'tally' (as running the same cell in it would).
        run(b, "@rnb.task(name='tally', retries=1, timeout=120)\ndef tally(n):\n    return n * 10")
        new = value(b, f"rnb.retry({job!r})")
        assert value(b, f"rnb.result({new!r}, timeout=60)") == 50
        record = server.wait_for(new, {"complete"}, 30)
    assert record["retry_of"] == job and record["kernel_id"] == b_id != a_id
    assert record["max_attempts"] == 2
    assert record["options"]["timeout"] == 120 and record["options"]["limit"] == 2


def test_rest_retry_runs_in_the_tasks_kernel_while_it_is_alive(server: JupyterServer) -> None:
    with started_kernel(server, SETUP) as (kernel_id, client):
        run(client, "rnb.register(chunked)")
        job = value(
            client, "rnb.enqueue('chunked', {'chunks': 50, 'seconds': 0.01, 'fail_at': 20})"
        )
        server.wait_for(job, {"error"}, 60)
        busy = value(client, "rnb.enqueue('chunked', {'chunks': 10**6, 'seconds': 0.01})")
        server.wait_for(busy, {"processing"}, 30)
        local = value(client, "rnb.enqueue(lambda: 1, name='lam')")
        server.wait_for(local, {"complete"}, 30)

        status, body = retry(server, job)
        assert status == 202, body
        assert body["ran_in"] == "kernel" and body["kernel_id"] == kernel_id
        assert body["retry_of"] == job and body["queued"] is False
        record = server.wait_for(body["id"], {"complete", "error"}, 60)
        assert record["status"] == "complete" and record["retry_of"] == job
        assert record["kernel_id"] == kernel_id
        assert value(client, f"rnb.result({body['id']!r})") == 21  # resumed after chunk 20

        status, body = retry(server, busy)
        assert status == 409 and "is processing" in body["message"], body
        status, body = retry(server, local)  # the kernel cannot re-run a lambda on a thread
        assert status == 409 and "its code is not stored" in body["message"], body
        status, body = retry(server, "0" * 8 + "-0000-4000-8000-" + "0" * 12)
        assert status == 404, body
        run(client, f"rnb.cancel({busy!r}, force=True)")
        # Jupyter auth is required: no token, no retry.
        request = urllib.request.Request(
            f"{server.url}raytha-nb/api/tasks/{job}/retry", data=b"{}", method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code in (401, 403)
        assert len(server.get("raytha-nb/api/tasks?name=chunked&limit=100")["tasks"]) == 3


def test_rest_retry_of_a_gone_kernels_process_task_runs_it_as_a_server_task(
    server: JupyterServer,
) -> None:
    with started_kernel(server, SETUP) as (_, client):
        job = value(
            client,
            "rnb.enqueue(chunked, {'chunks': 2000, 'seconds': 0.005}, executor='process')",
        )
        thread_job = value(client, "rnb.enqueue(lambda: 1, name='lam')")
        server.wait_for(thread_job, {"complete"}, 30)
        deadline = time.monotonic() + 60
        while (server.task(job).get("checkpoint") or {}).get("chunk", -1) < 100:
            assert time.monotonic() < deadline, server.task(job)
            time.sleep(0.1)
    # started_kernel shut the kernel down, which ends its process task `interrupted`, not
    # `error`: the shutdown's SIGINT and SIGTERM to its worker stop it from outside.
    old = server.wait_for(job, {"interrupted", "error"}, 30)
    assert old["status"] == "interrupted", old
    assert old["checkpoint"]["chunk"] >= 100

    status, body = retry(server, job)
    assert status == 202, body
    assert body["ran_in"] == "server" and body["retry_of"] == job and body["kernel_id"] is None
    record = server.wait_for(body["id"], {"complete", "error"}, 60)
    assert record["status"] == "complete", record
    assert record["executor"] == "server" and record["retry_of"] == job
    assert record["result"] == old["checkpoint"]["chunk"] + 1

    status, body = retry(server, thread_job)  # its kernel is gone and its code was not stored
    assert status == 409, body
    assert "is not running on this Jupyter server" in body["message"]
    assert "its code was not stored" in body["message"]


def test_a_failed_server_task_is_retried_as_a_server_task(server: JupyterServer) -> None:
    with started_kernel(server, SETUP) as (_, client):
        job = value(
            client,
            "rnb.enqueue(chunked, {'chunks': 40, 'seconds': 0.01, 'fail_at': 20}, "
            "executor='server')",
        )
        failed = server.wait_for(job, {"error"}, 60)
        assert failed["checkpoint"] == {"chunk": 20}
        status, body = retry(server, job)
        assert status == 202 and body["ran_in"] == "server", body
        record = server.wait_for(body["id"], {"complete", "error"}, 60)
        assert record["status"] == "complete" and record["result"] == 21, record
        assert record["retry_of"] == job and record["executor"] == "server"
        # And from the kernel: rnb.retry of the retried task runs it on the server too,
        # afresh since it completed (so it fails at chunk 20 again, unresumed).
        again = value(client, f"rnb.retry({body['id']!r})")
        rerun = server.wait_for(again, {"complete", "error"}, 60)
        assert rerun["status"] == "error" and "failed at chunk 20" in rerun["error_message"]
        assert rerun["retry_of"] == body["id"] and rerun["executor"] == "server"
