"""The panel's REST endpoints on a real ``jupyter server`` with a real kernel: re-run in
the task's own kernel, the preview of a table result, and a result file streamed."""

from __future__ import annotations

import ast
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from ._server_helpers import JupyterServer, run

SETUP = """
import pandas as pd
import raytha_nb as rnb

@rnb.register(name="make-frame")
def make_frame(n):
    return pd.DataFrame({"i": list(range(n)), "label": [f"row {k}" for k in range(n)]})

def unregistered():
    return 1

jobs = {"frame": rnb.enqueue("make-frame", {"n": 50}, name="frame of 50"),
        "plain": rnb.enqueue(unregistered), "json": rnb.enqueue(lambda: {"a": 1}, name="js")}
for job in jobs.values():
    rnb.wait(job, 30)
jobs
"""

CELL = "%%background --name cell-work --no-widget\nx = 21\nx * 2\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    home = tmp_path_factory.mktemp("panel-api")
    srv = JupyterServer(home, home / "tasks.duckdb", heartbeat_timeout=60).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def kernel(server: JupyterServer) -> Iterator[tuple[str, Any, dict[str, str]]]:
    kernel_id, client = server.start_kernel()
    jobs: dict[str, str] = ast.literal_eval(run(client, SETUP))
    yield kernel_id, client, jobs
    client.stop_channels()


def call(server: JupyterServer, method: str, path: str, **kw: Any) -> requests.Response:
    return requests.request(
        method,
        f"{server.url}raytha-nb/api/{path}",
        headers={"Authorization": f"token {server.token}"},
        timeout=30,
        **kw,
    )


def new_task(server: JupyterServer, name: str, old: set[str], timeout: float = 30) -> dict:
    """The task named ``name`` not among ``old``, once it completed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = call(server, "GET", "tasks", params={"name": name}).json()["tasks"]
        fresh = [t for t in tasks if t["id"] not in old and t["status"] == "complete"]
        if fresh:
            return dict(fresh[0])
        time.sleep(0.1)
    raise AssertionError(f"no new complete task {name!r} within {timeout}s")


def test_rerun_a_registered_task_in_its_kernel(server: JupyterServer, kernel: Any) -> None:
    kernel_id, _, jobs = kernel
    reply = call(server, "POST", f"tasks/{jobs['frame']}/rerun")
    assert reply.status_code == 202, reply.text
    body = reply.json()
    assert body["rerun_of"] == jobs["frame"] and body["kernel_id"] == kernel_id
    assert body["queued"] is False and body["id"] not in (None, jobs["frame"])
    again = server.wait_for(body["id"], {"complete"}, 30)
    assert (again["name"], again["task"], again["args"]) == ("frame of 50", "make-frame", {"n": 50})
    assert again["kernel_id"] == kernel_id and again["result_kind"] == "parquet"


def test_rerun_a_background_cell_runs_its_source_again(server: JupyterServer, kernel: Any) -> None:
    _, client, _ = kernel
    run(client, CELL)
    first = new_task(server, "cell-work", set())
    assert first["result"] == 42 and first["args"]["code"].startswith("x = 21")
    reply = call(server, "POST", f"tasks/{first['id']}/rerun")
    assert reply.status_code == 202, reply.text
    assert reply.json()["id"] is None  # the magic returns nothing: the task comes by events
    second = new_task(server, "cell-work", {first["id"]})
    assert second["result"] == 42 and second["args"]["code"] == first["args"]["code"]


def test_rerun_refusals_say_why(server: JupyterServer, kernel: Any) -> None:
    _, _, jobs = kernel
    plain = call(server, "POST", f"tasks/{jobs['plain']}/rerun")
    assert plain.status_code == 409
    assert "no task registered as 'unregistered'" in plain.json()["message"]
    unknown = call(server, "POST", f"tasks/{uuid.uuid4()}/rerun")
    assert unknown.status_code == 404 and "no task with id" in unknown.json()["message"]
    assert call(server, "POST", "tasks/not-an-id/rerun").status_code == 400
    anonymous = requests.post(f"{server.url}raytha-nb/api/tasks/{jobs['frame']}/rerun", timeout=10)
    assert anonymous.status_code == 403


def test_rerun_after_its_kernel_stopped_is_refused(server: JupyterServer) -> None:
    kernel_id, client = server.start_kernel()
    job = ast.literal_eval(
        run(client, "import raytha_nb as rnb\nj = rnb.enqueue(abs, -1)\nrnb.wait(j, 30)\nj")
    )
    client.stop_channels()
    status, _, _ = server.request("DELETE", f"api/kernels/{kernel_id}")
    assert status == 204
    reply = call(server, "POST", f"tasks/{job}/rerun")
    assert reply.status_code == 409
    message = reply.json()["message"]
    assert f"kernel {kernel_id} is not running on this Jupyter server" in message


def test_preview_of_a_frame_result(server: JupyterServer, kernel: Any) -> None:
    _, _, jobs = kernel
    reply = call(server, "GET", f"tasks/{jobs['frame']}/result/preview", params={"rows": 20})
    assert reply.status_code == 200, reply.text
    table = reply.json()
    assert [c["name"] for c in table["columns"]] == ["i", "label"]
    assert table["total_rows"] == 50 and table["shown"] == 20 and len(table["rows"]) == 20
    assert table["rows"][0] == [0, "row 0"] and table["rows"][19] == [19, "row 19"]
    default = call(server, "GET", f"tasks/{jobs['frame']}/result/preview").json()
    assert default["shown"] == 20


def test_preview_refusals_say_why(server: JupyterServer, kernel: Any) -> None:
    _, _, jobs = kernel
    not_table = call(server, "GET", f"tasks/{jobs['json']}/result/preview")
    assert not_table.status_code == 409
    assert "not a table" in not_table.json()["message"]
    bad = call(server, "GET", f"tasks/{jobs['frame']}/result/preview", params={"rows": "x"})
    assert bad.status_code == 400 and "rows" in bad.json()["message"]
    unknown = call(server, "GET", f"tasks/{uuid.uuid4()}/result/preview")
    assert unknown.status_code == 404 and "no task with id" in unknown.json()["message"]
    url = f"{server.url}raytha-nb/api/tasks/{jobs['frame']}/result/preview"
    assert requests.get(url, timeout=10).status_code == 403


def _peak_rss(pid: int) -> int:
    """The process's peak resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def test_a_large_result_streams_without_being_held_in_memory(
    server: JupyterServer, kernel: Any
) -> None:
    """A 256 MiB result goes out in chunks as it is read: the server's peak memory grows
    by far less than the file, and the token (or cookie) is still required."""
    _, client, _ = kernel
    big = server.home / "notebooks" / "big.bin"
    with big.open("wb") as f:
        f.truncate(256 << 20)
    code = f"j = rnb.enqueue(lambda: rnb.ResultFile({str(big)!r}), name='big')\nrnb.wait(j, 30)\nj"
    job = ast.literal_eval(run(client, code))
    url = f"{server.url}raytha-nb/api/tasks/{job}/result"
    assert requests.get(url, timeout=10).status_code == 403
    before = _peak_rss(server.proc.pid)
    size = 0
    with requests.get(url, params={"token": server.token}, stream=True, timeout=60) as reply:
        assert reply.status_code == 200
        assert reply.headers["Content-Length"] == str(256 << 20)
        assert reply.headers["Content-Disposition"] == 'attachment; filename="big.bin"'
        for chunk in reply.iter_content(1 << 20):
            size += len(chunk)
    assert size == 256 << 20
    grew = _peak_rss(server.proc.pid) - before
    assert grew < 64 << 20, f"the server's peak memory grew by {grew >> 20} MiB"
