"""The REST API and the kernel API on a real jupyter server (pytest-jupyter, in process)."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pytest
from tornado.httpclient import HTTPClientError, HTTPResponse

from raytha_nb import __version__
from raytha_nb._live import LiveTask
from raytha_nb.model import TaskStatus
from raytha_nb.protocol import Batch, ProgressRow, Publish
from raytha_nb.server.events import PROGRESS_FIELDS
from raytha_nb.server.service import TaskService

from ._server_helpers import FAKE_PID, live_task, publish_body

pytest_plugins = ("pytest_jupyter.jupyter_server",)


@pytest.fixture
def jp_server_config(tmp_path: Path) -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"raytha_nb": True}},
        "RaythaNbApp": {
            "db_path": str(tmp_path / "server" / "tasks.duckdb"),
            "heartbeat_timeout": 5.0,
            "reap_interval": 0.2,
            "retention_days": 0,
        },
    }


@pytest.fixture
def service(jp_serverapp: Any) -> TaskService:
    svc: TaskService = jp_serverapp.web_app.settings["raytha_nb_service"]
    return svc


@pytest.fixture
def secret(jp_serverapp: Any) -> str:
    value: str = jp_serverapp.web_app.settings["raytha_nb_kernel_secret"]
    return value


async def api(jp_fetch: Any, *parts: str, expect: int = 200, **kwargs: Any) -> HTTPResponse:
    """Call the user API and check the status code; errors must be JSON with a message."""
    try:
        response: HTTPResponse = await jp_fetch("raytha-nb", "api", *parts, **kwargs)
    except HTTPClientError as exc:
        assert exc.response is not None
        response = exc.response
    assert response.code == expect, (response.code, response.body)
    if response.code >= 400:
        error = json.loads(response.body)
        assert error["message"], error
    return response


async def kernel(
    jp_fetch: Any,
    secret: str,
    *parts: str,
    expect: int = 200,
    as_kernel: str = "kernel-a",
    **kw: Any,
) -> Any:
    """Call the kernel API with the kernel secret, as a kernel's client does (naming
    itself, for the ownership rules)."""
    headers = {
        "Authorization": f"token {secret}",
        "X-Raytha-Nb-Kernel": as_kernel,
        "X-Raytha-Nb-Pid": str(FAKE_PID),
    }
    try:
        response = await jp_fetch("raytha-nb", "kernel-api", *parts, headers=headers, **kw)
    except HTTPClientError as exc:
        assert exc.response is not None
        response = exc.response
    assert response.code == expect, (response.code, response.body)
    return json.loads(response.body) if response.body else None


async def publish(jp_fetch: Any, secret: str, tasks: list[Any], **kw: Any) -> list[str]:
    reply = await kernel(jp_fetch, secret, "publish", method="POST", body=publish_body(tasks, **kw))
    cancels: list[str] = reply["cancel"]
    return cancels


def body(response: HTTPResponse) -> Any:
    return json.loads(response.body)


async def test_extension_is_loaded_and_status(jp_fetch: Any, service: TaskService) -> None:
    status = body(await api(jp_fetch, "status"))
    assert status["db"] == str(service.store.path)
    assert status["tasks"] == {"processing": 0, "enqueued": 0}
    assert status["version"]


async def test_publish_then_read_every_endpoint(jp_fetch: Any, secret: str) -> None:
    done = live_task(
        "export", status=TaskStatus.COMPLETE, logs=3, result={"rows": 3}, result_kind="json"
    )
    running = live_task("train", status=TaskStatus.PROCESSING, logs=2, info="epoch 2")
    assert await publish(jp_fetch, secret, [done, running]) == []

    task = body(await api(jp_fetch, "tasks", done.id))
    assert task["status"] == "complete" and task["name"] == "export"
    assert task["created_at"].endswith("Z") and task["percent_complete"] == 100.0

    logs = body(await api(jp_fetch, "tasks", done.id, "logs"))
    assert [line["text"] for line in logs["lines"]] == ["line 1", "line 2", "line 3"]
    assert logs["last_seq"] == 3
    later = body(await api(jp_fetch, "tasks", done.id, "logs", params={"since": 2}))
    assert [line["seq"] for line in later["lines"]] == [3]
    none = body(await api(jp_fetch, "tasks", done.id, "logs", params={"since": 3}))
    assert none == {"lines": [], "last_seq": 3}

    history = body(await api(jp_fetch, "tasks", done.id, "history"))["events"]
    assert [e["status"] for e in history] == ["enqueued", "processing", "complete"]
    assert history[0]["ts"].endswith("Z")

    result = body(await api(jp_fetch, "tasks", done.id, "result"))
    assert result == {"kind": "json", "value": {"rows": 3}}
    await api(jp_fetch, "tasks", running.id, "result", expect=409)

    status = body(await api(jp_fetch, "status"))
    assert status["tasks"] == {"processing": 1, "enqueued": 0}


async def test_list_filters_paging_and_search(jp_fetch: Any, secret: str) -> None:
    tasks = [live_task(f"job-{i}", status=TaskStatus.COMPLETE) for i in range(5)]
    tasks += [
        live_task(
            "loader",
            status=TaskStatus.PROCESSING,
            kernel_id="kernel-b",
            notebook="b.ipynb",
            info="Reading Parquet",
        )
    ]
    tasks += [live_task("queued", kernel_id="kernel-b", notebook="b.ipynb")]
    await publish(jp_fetch, secret, tasks[:5])
    await publish(jp_fetch, secret, tasks[5:], session="s-b", kernel_id="kernel-b")

    everything = body(await api(jp_fetch, "tasks"))
    assert everything["total"] == 7 and everything["next_offset"] is None
    created = [t["created_at"] for t in everything["tasks"]]
    assert created == sorted(created, reverse=True)  # newest first

    page = body(await api(jp_fetch, "tasks", params={"limit": 3, "offset": 0}))
    assert len(page["tasks"]) == 3 and page["next_offset"] == 3 and page["total"] == 7
    rest = body(await api(jp_fetch, "tasks", params={"limit": 3, "offset": 6}))
    assert len(rest["tasks"]) == 1 and rest["next_offset"] is None
    seen = {t["id"] for t in page["tasks"]} | {t["id"] for t in rest["tasks"]}
    middle = body(await api(jp_fetch, "tasks", params={"limit": 3, "offset": 3}))
    seen |= {t["id"] for t in middle["tasks"]}
    assert seen == {t.id for t in tasks}

    def ids(response: HTTPResponse) -> set[str]:
        return {t["id"] for t in body(response)["tasks"]}

    active = {tasks[5].id, tasks[6].id}
    assert ids(await api(jp_fetch, "tasks", params={"status": "processing,enqueued"})) == active
    both = await api(jp_fetch, "tasks", params=[("status", "processing"), ("status", "enqueued")])
    assert ids(both) == active
    assert ids(await api(jp_fetch, "tasks", params={"kernel_id": "kernel-b"})) == active
    assert ids(await api(jp_fetch, "tasks", params={"notebook": "a.ipynb"})) == {
        t.id for t in tasks[:5]
    }
    assert ids(await api(jp_fetch, "tasks", params={"name": "job-3"})) == {tasks[3].id}
    assert ids(await api(jp_fetch, "tasks", params={"q": "PARQUET"})) == {tasks[5].id}
    assert ids(await api(jp_fetch, "tasks", params={"q": "B.IPYNB"})) == active
    assert body(await api(jp_fetch, "tasks", params={"q": "nothing-like-this"}))["total"] == 0


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "ten"},
        {"limit": "0"},
        {"limit": "100000"},
        {"offset": "-1"},
        {"offset": str(2**63)},  # past DuckDB's BIGINT: was a 500
        {"status": "running"},
        {"status": "complete,bogus"},
        {"grouped": "maybe"},
        {"grouped": ""},  # empty is neither true nor false (the fuzzer found it accepted)
    ],
)
async def test_bad_queries_are_400(jp_fetch: Any, params: dict[str, str]) -> None:
    response = await api(jp_fetch, "tasks", params=params, expect=400)
    assert body(response)["reason"] == "Bad Request"


async def test_bad_and_unknown_ids(jp_fetch: Any) -> None:
    for suffix in ((), ("logs",), ("history",), ("result",)):
        error = body(await api(jp_fetch, "tasks", "not-a-uuid", *suffix, expect=400))
        assert "not a task id" in error["message"]
        await api(jp_fetch, "tasks", str(uuid.uuid4()), *suffix, expect=404)
    await api(jp_fetch, "tasks", "nope", "cancel", method="POST", body="", expect=400)
    await api(jp_fetch, "tasks", str(uuid.uuid4()), "cancel", method="POST", body="", expect=404)
    await api(jp_fetch, "tasks", "nope", method="DELETE", expect=400)
    await api(jp_fetch, "tasks", str(uuid.uuid4()), method="DELETE", expect=404)
    await api(jp_fetch, "tasks", str(uuid.uuid4()), "logs", params={"since": "x"}, expect=400)


async def test_delete_one_and_all_finished(
    jp_fetch: Any, secret: str, service: TaskService
) -> None:
    results = service.store.results_dir
    done = live_task("done", status=TaskStatus.COMPLETE, logs=2)
    from ._server_helpers import write_parquet

    stored = write_parquet(results / f"{done.id}.parquet")
    done.result, done.result_kind = stored, "parquet"
    failed = live_task("failed", status=TaskStatus.ERROR)
    running = live_task("running", status=TaskStatus.PROCESSING)
    await publish(jp_fetch, secret, [done, failed, running])

    conflict = body(await api(jp_fetch, "tasks", running.id, method="DELETE", expect=409))
    assert "cancel it" in conflict["message"]
    await api(jp_fetch, "tasks", done.id, method="DELETE", expect=204)
    await api(jp_fetch, "tasks", done.id, expect=404)
    assert not Path(stored["path"]).exists()

    await api(jp_fetch, "tasks", method="DELETE", expect=400)
    reply = body(await api(jp_fetch, "tasks", method="DELETE", params={"finished": "true"}))
    assert reply == {"deleted": 1}
    assert {t["id"] for t in body(await api(jp_fetch, "tasks"))["tasks"]} == {running.id}


async def test_result_file_download(
    jp_fetch: Any, secret: str, service: TaskService, jp_root_dir: Path
) -> None:
    from ._server_helpers import write_parquet

    frame_task = live_task("frame", status=TaskStatus.COMPLETE)
    frame_task.result = write_parquet(service.store.results_dir / f"{frame_task.id}.parquet")
    frame_task.result_kind = "parquet"
    export = jp_root_dir / 'my "export".csv'
    export.write_text("a,b\n1,2\n")
    file_task = live_task("export", status=TaskStatus.COMPLETE)
    file_task.result = {
        "path": str(export),
        "filename": export.name,
        "bytes": 8,
        "rows": 1,
        "media_type": "text/csv",
    }
    file_task.result_kind = "file"
    unicode = jp_root_dir / "résumé.csv"
    unicode.write_text("x\n")
    accented = live_task("accented", status=TaskStatus.COMPLETE)
    accented.result = {"path": str(unicode), "filename": unicode.name, "media_type": "text/csv"}
    accented.result_kind = "file"
    gone = live_task("gone", status=TaskStatus.COMPLETE)
    gone.result = {"path": str(export.parent / "missing.csv"), "media_type": "text/csv"}
    gone.result_kind = "file"
    await publish(jp_fetch, secret, [frame_task, file_task, gone, accented])

    response = await api(jp_fetch, "tasks", frame_task.id, "result")
    assert response.headers["Content-Type"] == "application/vnd.apache.parquet"
    assert f'filename="{frame_task.id}.parquet"' in response.headers["Content-Disposition"]
    import io

    import pyarrow.parquet as pq

    assert pq.read_table(io.BytesIO(response.body)).num_rows == 3

    response = await api(jp_fetch, "tasks", file_task.id, "result")
    assert response.headers["Content-Type"].startswith("text/csv")
    assert response.headers["Content-Disposition"] == 'attachment; filename="my _export_.csv"'
    assert response.body == b"a,b\n1,2\n"
    assert "gone" in body(await api(jp_fetch, "tasks", gone.id, "result", expect=404))["message"]
    response = await api(jp_fetch, "tasks", accented.id, "result")
    assert response.headers["Content-Disposition"] == (
        "attachment; filename=\"r_sum_.csv\"; filename*=UTF-8''r%C3%A9sum%C3%A9.csv"
    )


async def test_cancel_reaches_the_owning_kernel_only(jp_fetch: Any, secret: str) -> None:
    running = live_task("long", status=TaskStatus.PROCESSING)
    other = live_task("other", status=TaskStatus.PROCESSING, kernel_id="kernel-b")
    await publish(jp_fetch, secret, [running])
    await publish(jp_fetch, secret, [other], session="s-b", kernel_id="kernel-b")

    reply = body(await api(jp_fetch, "tasks", running.id, "cancel", method="POST", body=""))
    assert reply["cancel_requested"] is True and reply["task"]["cancel_requested"] is True
    # Kernel B's heartbeat does not get it; kernel A's next heartbeat (empty batch) does.
    assert (
        await publish(jp_fetch, secret, [], session="s-b", kernel_id="kernel-b", active=[other.id])
        == []
    )
    assert await publish(jp_fetch, secret, [], active=[running.id]) == [running.id]
    assert await publish(jp_fetch, secret, [], active=[running.id]) == []  # delivered once
    # Until the kernel acts on it, a stale row from the kernel keeps the flag on.
    await publish(jp_fetch, secret, [running])
    assert body(await api(jp_fetch, "tasks", running.id))["cancel_requested"] is True

    running.transition(TaskStatus.CANCELLED, status_info="cancelled")
    await publish(jp_fetch, secret, [running])
    assert body(await api(jp_fetch, "tasks", running.id))["status"] == "cancelled"
    again = body(await api(jp_fetch, "tasks", running.id, "cancel", method="POST", body=""))
    assert again["cancel_requested"] is False and again["task"]["status"] == "cancelled"


async def test_resent_batch_adds_no_duplicate_logs_and_finished_is_final(
    jp_fetch: Any, secret: str, service: TaskService
) -> None:
    service.heartbeat_timeout = 0.6
    task = live_task("job", status=TaskStatus.PROCESSING, logs=3)
    await publish(jp_fetch, secret, [task])
    await publish(jp_fetch, secret, [task])  # the reply was lost: the kernel sends it again
    lines = body(await api(jp_fetch, "tasks", task.id, "logs"))["lines"]
    assert [line["seq"] for line in lines] == [1, 2, 3]
    events = body(await api(jp_fetch, "tasks", task.id, "history"))["events"]
    assert [e["status"] for e in events] == ["enqueued", "processing"], events
    task.add_log("stdout", "line 4")  # a new line (checked against the server's memory)
    await publish(jp_fetch, secret, [task])
    lines = body(await api(jp_fetch, "tasks", task.id, "logs"))["lines"]
    assert [line["seq"] for line in lines] == [1, 2, 3, 4]

    await asyncio.sleep(1.0)  # no heartbeat for longer than the 0.6 s timeout
    deadline = asyncio.get_running_loop().time() + 5
    while body(await api(jp_fetch, "tasks", task.id))["status"] != "interrupted":
        assert asyncio.get_running_loop().time() < deadline, "the reaper did not run"
        await asyncio.sleep(0.1)
    record = body(await api(jp_fetch, "tasks", task.id))
    assert (
        "sent no heartbeat" in record["status_info"] and f"PID {FAKE_PID}" in record["status_info"]
    )

    # The same kernel process comes back and still runs the task: it was busy, not
    # dead, so the task is processing again (issue 10: never cancelled for having been
    # presumed dead), its new log lines are kept, and its real end is what is stored.
    task.add_log("stdout", "line 5")
    cancels = await publish(jp_fetch, secret, [task], history_from=2)
    assert cancels == []
    record = body(await api(jp_fetch, "tasks", task.id))
    assert record["status"] == "processing"
    lines = body(await api(jp_fetch, "tasks", task.id, "logs"))["lines"]
    assert [line["seq"] for line in lines] == [1, 2, 3, 4, 5]
    task.transition(TaskStatus.COMPLETE, result=7, result_kind="json")
    assert await publish(jp_fetch, secret, [task], history_from=2) == []
    record = body(await api(jp_fetch, "tasks", task.id))
    assert (record["status"], record["result"]) == ("complete", 7)
    events = body(await api(jp_fetch, "tasks", task.id, "history"))["events"]
    assert [e["status"] for e in events] == [
        "enqueued", "processing", "interrupted", "processing", "complete",
    ]  # fmt: skip
    assert "spoke again" in events[3]["status_info"]


async def test_kernel_shutdown_interrupts_its_tasks(
    jp_fetch: Any, secret: str, jp_serverapp: Any
) -> None:
    km = jp_serverapp.kernel_manager
    kernel_id = await km.start_kernel()
    try:
        task = live_task("job", status=TaskStatus.PROCESSING, kernel_id=kernel_id)
        await publish(jp_fetch, secret, [task], kernel_id=kernel_id)
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")
    finally:
        if kernel_id in km:
            await km.shutdown_kernel(kernel_id, now=True)
    deadline = asyncio.get_running_loop().time() + 5
    while (record := body(await api(jp_fetch, "tasks", task.id)))["status"] != "interrupted":
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    assert (
        record["status_info"] == f"kernel {kernel_id} (PID {FAKE_PID}) was shut down while it ran"
    )


def _with_task_value(good: dict[str, Any], column: str, value: Any) -> dict[str, Any]:
    """``good`` with one column of its first task row replaced."""
    section = good["batch"]["tasks"]
    row = list(section["rows"][0])
    row[section["columns"].index(column)] = value
    return {**good, "batch": {**good["batch"], "tasks": {**section, "rows": [row]}}}


async def test_kernel_api_rejects_bad_batches(
    jp_fetch: Any, secret: str, service: TaskService
) -> None:
    """Every bad field is a 400 that names it, and nothing of such a batch is stored."""
    good = json.loads(publish_body([live_task()]))
    columns = good["batch"]["tasks"]["columns"]
    bad_bodies: list[tuple[Any, str]] = [
        ("not json", "not valid JSON"),
        ([], "JSON object"),
        ({**good, "session": 5}, "session"),
        ({**good, "pid": "x"}, "pid"),
        ({**good, "active": "x"}, "active"),
        ({**good, "batch": {"tasks": [[1, 2]]}}, "batch.tasks"),
        ({**good, "batch": {"tasks": {"columns": columns, "rows": [[1, 2]]}}}, "rows[0]"),
        (_with_task_value(good, "status", "running"), "status"),
        (_with_task_value(good, "task_step", "many"), "task_step"),
        (_with_task_value(good, "name", None), "name"),
        (_with_task_value(good, "args", "{not json"), "args"),
        (_with_task_value(good, "result", "{not json"), "result"),
        (_with_task_value(good, "created_at", -1e12), "created_at"),
        (_with_task_value(good, "started_at", 253_402_300_800 + 86_400 * 400), "started_at"),
        (_with_task_value(good, "percent_complete", 101), "percent_complete"),
        (_with_task_value(good, "pid", 2**70), "pid"),
        ('{"session": "s", "batch": {}, "protocol": "1.0", "pid": NaN}', "NaN"),
        ("[" * 100_000 + "]" * 100_000, "nested"),
    ]
    for bad, field in bad_bodies:
        text = bad if isinstance(bad, str) else json.dumps(bad)
        reply = await kernel(jp_fetch, secret, "publish", method="POST", body=text, expect=400)
        assert field in reply["message"], (field, reply["message"])
    assert service.store.get(good["batch"]["tasks"]["rows"][0][0]) is None
    assert body(await api(jp_fetch, "tasks"))["total"] == 0  # and the list still answers


async def test_kernel_api_accepts_nearby_protocol_versions(jp_fetch: Any, secret: str) -> None:
    """A newer kernel's unknown column is ignored, an older kernel's missing optional
    column defaulted; a kernel of another major version gets one clear message."""
    newer = json.loads(publish_body([live_task("newer", status=TaskStatus.PROCESSING)]))
    section = newer["batch"]["tasks"]
    section["columns"].append("priority")
    section["rows"][0].append(7)
    newer["protocol"] = "1.1"
    newer["batch"]["history"]["columns"].append("attempt")
    for row in newer["batch"]["history"]["rows"]:
        row.append(1)
    await kernel(jp_fetch, secret, "publish", method="POST", body=json.dumps(newer))
    stored = body(await api(jp_fetch, "tasks", section["rows"][0][0]))
    assert stored["name"] == "newer" and stored["status"] == "processing"

    older = json.loads(publish_body([live_task("older", notebook="old.ipynb")]))
    section = older["batch"]["tasks"]
    at = section["columns"].index("notebook")
    del section["columns"][at]
    del section["rows"][0][at]
    await kernel(jp_fetch, secret, "publish", method="POST", body=json.dumps(older))
    stored = body(await api(jp_fetch, "tasks", section["rows"][0][0]))
    assert stored["name"] == "older" and stored["notebook"] is None

    for protocol, version in (("2.0", "9.0.0"), ("1.5", "0.5.0"), (None, None)):
        future = json.loads(publish_body([live_task("future")]))
        future["protocol"], future["version"] = protocol, version
        reply = await kernel(
            jp_fetch, secret, "publish", method="POST", body=json.dumps(future), expect=400
        )
        assert __version__ in reply["message"] and "pip install" in reply["message"]
        if version is not None:
            assert version in reply["message"]


# -- auth -----------------------------------------------------------------------------


async def test_user_api_needs_the_jupyter_token(jp_fetch: Any, secret: str) -> None:
    for headers in ({"Authorization": "token wrong"}, {"Authorization": f"token {secret}"}):
        for method, parts in (
            ("GET", ("tasks",)),
            ("GET", ("status",)),
            ("GET", ("events",)),
            ("POST", ("tasks", str(uuid.uuid4()), "cancel")),
            ("DELETE", ("tasks", str(uuid.uuid4()))),
        ):
            kwargs: dict[str, Any] = {"method": method, "headers": headers}
            if method == "POST":
                kwargs["body"] = ""
            await api(jp_fetch, *parts, expect=403, **kwargs)


async def test_kernel_api_needs_the_kernel_secret(jp_fetch: Any, jp_serverapp: Any) -> None:
    jupyter_token = jp_serverapp.identity_provider.token
    for token in (jupyter_token, "wrong", ""):
        reply = await kernel(jp_fetch, token, "tasks", expect=403)
        assert "kernel secret" in reply["message"]
        await kernel(jp_fetch, token, "publish", method="POST", body=publish_body([]), expect=403)
        await kernel(jp_fetch, token, "snapshot", method="POST", body="{}", expect=403)
    try:  # Jupyter's own header (added by jp_fetch) is not enough either
        await jp_fetch("raytha-nb", "kernel-api", "info")
    except HTTPClientError as exc:
        assert exc.code == 403
    else:
        raise AssertionError("the kernel API accepted the Jupyter token")


async def test_kernel_api_reads(jp_fetch: Any, secret: str, service: TaskService) -> None:
    task = live_task("job", status=TaskStatus.COMPLETE, logs=1)
    await publish(jp_fetch, secret, [task])
    info = await kernel(jp_fetch, secret, "info")
    assert info["results_dir"] == str(service.store.results_dir)
    assert (await kernel(jp_fetch, secret, "tasks", task.id))["status"] == "complete"
    assert (await kernel(jp_fetch, secret, "tasks"))["total"] == 1
    assert (await kernel(jp_fetch, secret, "tasks", task.id, "logs"))["last_seq"] == 1
    assert len((await kernel(jp_fetch, secret, "tasks", task.id, "history"))["events"]) == 3
    snapshot = Path((await kernel(jp_fetch, secret, "snapshot", method="POST", body="{}"))["dir"])
    assert snapshot.parent == service.store.results_dir / "snapshots"
    rows = duckdb.sql(f"SELECT id, status FROM '{snapshot}/tasks.parquet'").fetchall()
    assert rows == [(task.id, "complete")]
    logged = duckdb.sql(f"SELECT text FROM '{snapshot}/task_logs.parquet'").fetchall()
    assert logged == [("line 1",)]
    await kernel(jp_fetch, secret, "tasks", task.id, method="DELETE", expect=204)
    await kernel(jp_fetch, secret, "tasks", task.id, expect=404)


async def test_a_kernel_changes_only_its_own_tasks(jp_fetch: Any, secret: str) -> None:
    """Kernels share one secret, so the server keeps each kernel to its own tasks: a
    forged final state or a delete of another kernel's task is a 403 and changes nothing."""
    running = live_task("a's export", status=TaskStatus.PROCESSING, kernel_id="kernel-a")
    done = live_task("a's report", status=TaskStatus.COMPLETE, kernel_id="kernel-a")
    await publish(jp_fetch, secret, [running, done])

    forged = live_task("a's export", status=TaskStatus.PROCESSING, kernel_id="kernel-b")
    forged.id = running.id
    forged.transition(TaskStatus.COMPLETE, result={"path": "/etc/passwd"}, result_kind="file")
    for tasks, kernel_id in (([forged], "kernel-b"), ([running], "kernel-b")):
        reply = await kernel(
            jp_fetch, secret, "publish", method="POST", expect=403,
            body=publish_body(tasks, session="s-b", kernel_id=kernel_id),
        )  # fmt: skip
        assert "kernel-a" in reply["message"] or "kernel-b" in reply["message"]
    assert body(await api(jp_fetch, "tasks", running.id))["status"] == "processing"

    reply = await kernel(
        jp_fetch, secret, "tasks", done.id, method="DELETE", expect=403, as_kernel="kernel-b"
    )
    assert "deletes only its own tasks" in reply["message"]
    assert body(await api(jp_fetch, "tasks", done.id))["status"] == "complete"
    # Reading and cancelling another kernel's task stay open to every kernel.
    await kernel(jp_fetch, secret, "tasks", running.id, as_kernel="kernel-b")
    await kernel(
        jp_fetch,
        secret,
        "tasks",
        running.id,
        "cancel",
        method="POST",
        body="{}",
        as_kernel="kernel-b",
    )
    await kernel(jp_fetch, secret, "tasks", done.id, method="DELETE", expect=204)


async def test_events_stream(
    jp_fetch: Any, secret: str, jp_serverapp: Any, jp_http_port: int, jp_base_url: str
) -> None:
    from tornado.httpclient import AsyncHTTPClient, HTTPRequest

    chunks: list[bytes] = []
    got_task, got_deleted = asyncio.Event(), asyncio.Event()

    def on_chunk(chunk: bytes) -> None:
        chunks.append(chunk)
        text = b"".join(chunks)
        if b"event: task" in text:
            got_task.set()
        if b"event: deleted" in text:
            got_deleted.set()

    token = jp_serverapp.identity_provider.token
    url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}raytha-nb/api/events?token={token}"
    request = HTTPRequest(url, streaming_callback=on_chunk, request_timeout=30)
    stream = asyncio.ensure_future(AsyncHTTPClient().fetch(request, raise_error=False))
    while not chunks:  # the stream says hello first
        await asyncio.sleep(0.02)
    assert b": connected" in chunks[0]

    task = live_task("watched", status=TaskStatus.COMPLETE)
    await publish(jp_fetch, secret, [task])
    await asyncio.wait_for(got_task.wait(), 5)
    await api(jp_fetch, "tasks", task.id, method="DELETE", expect=204)
    await asyncio.wait_for(got_deleted.wait(), 5)
    stream.cancel()

    messages = [m for m in b"".join(chunks).decode().split("\n\n") if m.startswith("event:")]
    event, data = messages[0].split("\n", 1)
    assert event == "event: task"
    record = json.loads(data.removeprefix("data: "))
    assert record["id"] == task.id and record["status"] == "complete"
    assert messages[-1] == f'event: deleted\ndata: {{"id":"{task.id}"}}'


async def test_retention_deletes_only_old_finished_tasks(
    jp_fetch: Any, secret: str, service: TaskService
) -> None:
    import time

    old = live_task("old", status=TaskStatus.COMPLETE)
    old.completed_at = time.time() - 7200
    fresh = live_task("fresh", status=TaskStatus.COMPLETE)
    running = live_task("running", status=TaskStatus.PROCESSING)
    running.started_at = time.time() - 7200
    await publish(jp_fetch, secret, [old, fresh, running])
    assert service.delete_finished(older_than=3600) == 1
    left = {t["name"] for t in body(await api(jp_fetch, "tasks"))["tasks"]}
    assert left == {"fresh", "running"}


async def test_a_stopping_server_answers_503_and_kernels_stop_retrying(
    jp_fetch: Any, secret: str, service: TaskService, jp_http_port: int, jp_base_url: str
) -> None:
    """Once the store is closed the kernel API says so (503 with a message, not a 500),
    and a kernel's RemoteBackend turns that into StoreClosed, which ends its retries."""
    from raytha_nb import _client
    from raytha_nb.errors import StoreClosed
    from raytha_nb.protocol import Batch

    task = live_task("job", status=TaskStatus.PROCESSING)
    await publish(jp_fetch, secret, [task])
    service.close()
    try:
        reply = await jp_fetch(
            "raytha-nb", "kernel-api", "publish", method="POST",
            headers={"Authorization": f"token {secret}"}, body=publish_body([task]),
            raise_error=False,
        )  # fmt: skip
        assert reply.code == 503
        assert "shutting down" in json.loads(reply.body)["message"]

        url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"
        backend = _client.RemoteBackend(_client.ServerAddress(url, secret, "/unused"))
        loop = asyncio.get_running_loop()
        with pytest.raises(StoreClosed, match="shutting down"):
            batch = Batch(tasks=[task.row(time.time())])
            await loop.run_in_executor(None, backend.publish, batch, [task.id])
    finally:
        service.closed = False  # let the fixture's teardown stop the server normally


async def test_progress_publish_updates_reads_and_stream_like_the_store(
    jp_fetch: Any,
    secret: str,
    service: TaskService,
    jp_serverapp: Any,
    jp_http_port: int,
    jp_base_url: str,
) -> None:
    """A progress-only publish (most of them) is merged into the server's live copy, not
    read back: what REST and the event stream show must equal the stored row."""
    from tornado.httpclient import AsyncHTTPClient, HTTPRequest

    task = live_task("merging", status=TaskStatus.PROCESSING)
    await publish(jp_fetch, secret, [task])

    chunks: list[bytes] = []
    token = jp_serverapp.identity_provider.token
    url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}raytha-nb/api/events?token={token}"
    request = HTTPRequest(url, streaming_callback=chunks.append, request_timeout=30)
    stream = asyncio.ensure_future(AsyncHTTPClient().fetch(request, raise_error=False))
    while not chunks:  # the stream says hello first
        await asyncio.sleep(0.02)

    batch = Batch(progress=[ProgressRow(task.id, 3, "row 9 of 10", 90.0, time.time())])
    progress = Publish("s-a", batch, "kernel-a", FAKE_PID, (task.id,)).to_json()
    await kernel(jp_fetch, secret, "publish", method="POST", body=json.dumps(progress))
    shown = body(await api(jp_fetch, "tasks", task.id))
    stored = service.store.get(task.id)
    assert stored is not None

    def same(record: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in record.items() if k != "updated_at"}  # stamped at commit

    assert (shown["task_step"], shown["status_info"], shown["percent_complete"]) == (
        3, "row 9 of 10", 90.0,
    )  # fmt: skip
    assert same(shown) == same(stored.to_json())
    deadline = asyncio.get_running_loop().time() + 5
    while b"row 9 of 10" not in b"".join(chunks):
        assert asyncio.get_running_loop().time() < deadline, "no event for the progress"
        await asyncio.sleep(0.02)
    stream.cancel()
    text = b"".join(chunks).decode()
    event, data = next(m for m in text.split("\n\n") if "row 9 of 10" in m).split("\n", 1)
    # A delta: only what a progress publish moves, each field as stored.
    assert event == "event: progress"
    delta = json.loads(data.removeprefix("data: "))
    assert set(delta) == {"id", *PROGRESS_FIELDS}
    assert same(delta) == {k: v for k, v in same(stored.to_json()).items() if k in delta}


async def test_a_store_that_cannot_write_is_a_507_that_names_the_cause(
    jp_fetch: Any,
    secret: str,
    service: TaskService,
    jp_http_port: int,
    jp_base_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A full disk on the server reaches the kernel as StoreWriteError with DuckDB's words
    (so its wait() says why), never as a bare 500."""
    from raytha_nb import _client
    from raytha_nb.errors import StoreWriteError

    def full(batch: Any) -> None:
        raise StoreWriteError(
            str(service.store.path), "Could not write file: File too large", "Free space."
        )

    monkeypatch.setattr(service.store, "apply", full)
    task = live_task("job", status=TaskStatus.PROCESSING)
    reply = await kernel(
        jp_fetch, secret, "publish", method="POST", body=publish_body([task]), expect=507
    )
    assert "File too large" in reply["message"]
    backend = _client.RemoteBackend(
        _client.ServerAddress(f"http://127.0.0.1:{jp_http_port}{jp_base_url}", secret, "/unused")
    )
    # This process's own client, with a task of its own (kernel None, this PID).
    own = LiveTask(
        str(uuid.uuid4()), "own", "t", None, kernel_id=None, notebook=None, pid=os.getpid()
    )
    batch = Batch(tasks=[own.row(time.time())])
    with pytest.raises(StoreWriteError, match="File too large"):
        await asyncio.get_running_loop().run_in_executor(None, backend.publish, batch, [own.id])
