"""Schedules on a real Jupyter server: its own timer fires runs into its workers (no
kernel needed), overlap and misfire rules, restarts, the REST and kernel APIs, bad
input and auth; the cron rule across daylight-saving changes as a pure function."""

from __future__ import annotations

import ast
import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import nbformat
import pytest
import requests

from raytha_nb._schedule import Rule, ScheduleSpec
from raytha_nb.model import TaskQuery, parse_iso
from raytha_nb.protocol import Batch, TaskRow
from raytha_nb.store import Store

from ._server_helpers import JupyterServer, kernel_address, run, started_kernel

pytestmark = pytest.mark.timeout(240)

API = "raytha-nb/api"
#: Functions the REST schedules run (``module:function``), in the server's root.
JOBS = """
import time

def tick(n):
    return n

def slow(seconds):
    time.sleep(seconds)
    return seconds
"""


def _server(home: Path) -> JupyterServer:
    server = JupyterServer(
        home, home / "db" / "tasks.duckdb", heartbeat_timeout=10.0,
        options=("--RaythaNbApp.max_server_workers=3",),
    )  # fmt: skip
    (home / "notebooks" / "jobs.py").write_text(JOBS)
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    srv = _server(tmp_path_factory.mktemp("schedules")).start()
    yield srv
    srv.stop()


def create(server: JupyterServer, body: dict[str, Any]) -> dict[str, Any]:
    status, data, _ = server.request("POST", f"{API}/schedules", body)
    assert status == 201, data
    return dict(data)


def schedule(server: JupyterServer, sid: str) -> dict[str, Any]:
    return dict(server.get(f"{API}/schedules/{sid}"))


def runs(server: JupyterServer, sid: str) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = server.get(f"{API}/tasks?schedule_id={sid}&limit=1000")["tasks"]
    return sorted(tasks, key=lambda t: t["created_at"])


def events(server: JupyterServer, sid: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = server.get(f"{API}/schedules/{sid}/events")["events"]
    return found[::-1]  # oldest first


def wait_until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def finished(server: JupyterServer, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    final = {"complete", "error", "cancelled", "interrupted"}
    return [server.wait_for(t["id"], final, 60) for t in tasks]


def iso_in(seconds: float) -> str:
    return datetime.fromtimestamp(time.time() + seconds, timezone.utc).isoformat()


def epoch(text: str) -> float:
    return parse_iso(text).timestamp()


# -- the timer -----------------------------------------------------------------------
def test_every_2_s_fires_each_due_time_within_a_second(server: JupyterServer) -> None:
    start = time.time() + 2
    start_at = datetime.fromtimestamp(start, timezone.utc).isoformat()
    end_at = datetime.fromtimestamp(start + 5, timezone.utc).isoformat()
    made = create(
        server,
        # overlap="allow": on a loaded machine a worker may take over 2 s to start, and
        # the default "skip" would then (rightly) skip the next due time.
        {"task": "jobs:tick", "args": {"n": 7}, "every": 2, "name": "every two",
         "start_at": start_at, "end_at": end_at, "overlap": "allow"},
    )  # fmt: skip
    assert made["rule"].startswith("every 2 s, from ") and made["next_run"] is not None
    assert abs(epoch(made["next_run"]) - start) < 1e-3
    sid = made["id"]
    # Due at start, +2, +4; then it has ended (+6 is past end_at).
    wait_until(lambda: schedule(server, sid)["next_run"] is None, 30, "the schedule never ended")
    wait_until(lambda: schedule(server, sid)["runs"] == 3, 30, "not all of its runs started")
    time.sleep(1.0)  # nothing more fires after its end
    fired = [e for e in events(server, sid) if e["event"] == "run"]
    assert [round(epoch(e["due"]) - start, 3) for e in fired] == [0.0, 2.0, 4.0]
    # The server's own timer, not a poll: it fired each within a second of its due time
    # (jupyter-scheduler polls every 10 s); benchmarks/bench_schedules.py measures due
    # time -> run processing.
    assert all(0 <= epoch(e["ts"]) - epoch(e["due"]) < 1.0 for e in fired), fired
    done = finished(server, runs(server, sid))
    assert [t["id"] for t in done] == [e["task_id"] for e in fired]
    assert all(t["status"] == "complete" and t["result"] == 7 for t in done)
    assert all(t["schedule_id"] == sid and t["executor"] == "server" for t in done)
    final = schedule(server, sid)
    assert final["runs"] == 3 and final["skipped"] == 0
    assert final["last_run"] == {
        "task_id": done[-1]["id"], "status": "complete", "at": final["last_run"]["at"]
    }  # fmt: skip


def test_overlap_skip_records_the_runs_due_while_one_still_runs(server: JupyterServer) -> None:
    start = time.time() + 1
    made = create(
        server,
        {"task": "jobs:slow", "args": {"seconds": 4}, "every": 1, "name": "slow skip",
         "start_at": iso_in(1), "end_at": iso_in(4.5)},
    )  # fmt: skip
    sid = made["id"]
    assert made["overlap"] == "skip"
    wait_until(lambda: schedule(server, sid)["next_run"] is None, 30, "never ended")
    # Due at +0 (runs 4 s), +1, +2, +3: the last three find it running.
    got = schedule(server, sid)
    assert (got["runs"], got["skipped"]) == (1, 3), got
    kinds = [e["event"] for e in events(server, sid)]
    assert kinds == ["run", "skipped", "skipped", "skipped"]
    skips = [e for e in events(server, sid) if e["event"] == "skipped"]
    assert all("still running" in e["reason"] and e["task_id"] is None for e in skips)
    assert all(epoch(e["due"]) > start for e in skips)
    (only,) = finished(server, runs(server, sid))
    assert only["status"] == "complete"


def test_overlap_queue_runs_one_after_another(server: JupyterServer) -> None:
    made = create(
        server,
        {"task": "jobs:slow", "args": {"seconds": 1.5}, "every": 1, "name": "slow queue",
         "overlap": "queue", "start_at": iso_in(1), "end_at": iso_in(2.5)},
    )  # fmt: skip
    sid = made["id"]
    wait_until(lambda: schedule(server, sid)["next_run"] is None, 30, "never ended")
    wait_until(lambda: len(runs(server, sid)) == 2, 30, "the second run never came")
    done = finished(server, runs(server, sid))
    assert len(done) == 2 and schedule(server, sid)["skipped"] == 0
    assert all(t["status"] == "complete" for t in done)
    first, second = sorted(done, key=lambda t: t["started_at"])
    assert epoch(second["started_at"]) >= epoch(first["completed_at"]) - 0.05


# -- restarts --------------------------------------------------------------------------
def test_misfire_rules_and_state_survive_a_server_restart(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    srv = _server(tmp_path_factory.mktemp("schedules-restart")).start()
    # Two due times (+8 s, +9 s) that fall while the server is down.
    window = {"every": 1, "start_at": iso_in(8), "end_at": iso_in(9.5)}
    ids = {
        rule: create(srv, {"task": "jobs:tick", "args": {"n": 1}, "name": f"misfire {rule}",
                           "misfire": rule, **window})["id"]
        for rule in ("once", "skip", "all")
    }  # fmt: skip
    kept = create(srv, {"task": "jobs:tick", "args": {"n": 2}, "cron": "0 6 * * *",
                        "tz": "Europe/Berlin", "name": "kept"})  # fmt: skip
    paused = srv.request("POST", f"{API}/schedules/{kept['id']}/pause")[1]
    ongoing = create(srv, {"task": "jobs:tick", "args": {"n": 3}, "every": 1, "name": "ongoing",
                           "misfire": "skip"})  # fmt: skip
    srv.stop()
    down_at = time.time()
    con = duckdb.connect(str(srv.db), read_only=True)
    stored = dict(con.execute("SELECT id, runs FROM schedules").fetchall())
    con.close()
    assert [stored[ids[rule]] for rule in ("once", "skip", "all")] == [0, 0, 0]
    time.sleep(max(0.0, epoch(window["end_at"]) + 0.5 - time.time()))
    srv.start()
    try:
        # The catch-up runs start (in the background) as the server starts.
        def counts() -> list[int]:
            return [schedule(srv, ids[r])["runs"] for r in ("once", "skip", "all")]

        wait_until(lambda: counts() == [1, 0, 2], 30, "catch-up runs")
        time.sleep(1.0)
        got = {rule: schedule(srv, sid) for rule, sid in ids.items()}
        assert [got[r]["runs"] for r in ("once", "skip", "all")] == [1, 0, 2], got
        assert got["skip"]["skipped"] == 2
        assert all(s["next_run"] is None for s in got.values())  # all ended
        once = [e for e in events(srv, ids["once"]) if e["event"] == "run"]
        assert len(once) == 1 and "catch-up: 2 run(s) fell due" in once[0]["reason"]
        (missed,) = events(srv, ids["skip"])
        assert missed["event"] == "missed" and "misfire='skip'" in missed["reason"]
        for sid in ids.values():
            finished(srv, runs(srv, sid))
        # The paused cron schedule came back as it was.
        back = schedule(srv, kept["id"])
        assert back == {**paused, "last_run": None}
        assert back["rule"] == "every day at 06:00, Europe/Berlin" and back["paused"]
        # A schedule without end fires on after the restart (its missed runs skipped).
        before = stored[ongoing["id"]]
        wait_until(lambda: schedule(srv, ongoing["id"])["runs"] >= before + 2, 20, "no runs")
        after = [e for e in events(srv, ongoing["id"]) if e["event"] == "run"]
        assert all(epoch(e["due"]) > down_at for e in after[before:])
    finally:
        srv.stop()


# -- the REST API ------------------------------------------------------------------------
def test_pause_resume_trigger_delete_through_rest(server: JupyterServer) -> None:
    with requests.get(
        f"{server.url}{API}/events", params={"token": server.token}, stream=True, timeout=30
    ) as stream:
        lines = stream.iter_lines(decode_unicode=True)
        made = create(server, {"task": "jobs:tick", "args": {"n": 5}, "every": 3600})
        sid = made["id"]
        assert made["name"] == "tick" and made["rule"] == "every hour"
        assert abs(epoch(made["next_run"]) - epoch(made["created_at"]) - 3600) < 1e-3
        seen = _next_event(lines, "schedule")
        assert seen["id"] == sid and seen["runs"] == 0

        status, paused, _ = server.request("POST", f"{API}/schedules/{sid}/pause")
        assert status == 200 and paused["paused"] and paused["next_run"] is None
        assert _next_event(lines, "schedule")["paused"] is True

        status, fired, _ = server.request("POST", f"{API}/schedules/{sid}/trigger")
        assert status == 200 and fired["schedule"]["runs"] == 1  # also while paused
        task = server.wait_for(fired["task"]["id"], {"complete"}, 60)
        assert task["schedule_id"] == sid and task["result"] == 5
        assert [t["id"] for t in runs(server, sid)] == [task["id"]]
        (event,) = events(server, sid)
        assert event["reason"] == "triggered by hand" and event["due"] is None
        # A run is an ordinary server task: its stored body lets Retry run it again.
        status, again, _ = server.request("POST", f"{API}/tasks/{task['id']}/retry")
        assert status == 202 and again["ran_in"] == "server", again
        retried = server.wait_for(again["id"], {"complete", "error"}, 60)
        assert retried["result"] == 5 and retried["retry_of"] == task["id"]

        status, resumed, _ = server.request("POST", f"{API}/schedules/{sid}/resume")
        assert status == 200 and not resumed["paused"]
        assert resumed["next_run"] == made["next_run"]  # every hour from its creation
        assert resumed["last_run"]["task_id"] == task["id"]
        assert resumed["last_run"]["status"] == "complete"
        assert any(s["id"] == sid for s in server.get(f"{API}/schedules")["schedules"])

        assert server.request("DELETE", f"{API}/schedules/{sid}")[0] == 204
        assert _next_event(lines, "schedule-deleted") == {"id": sid}
    for method, path in (
        ("GET", sid), ("DELETE", sid), ("POST", f"{sid}/pause"), ("POST", f"{sid}/trigger"),
        ("GET", f"{sid}/events"),
    ):  # fmt: skip
        status, error, _ = server.request(method, f"{API}/schedules/{path}")
        assert status == 404 and sid in error["message"], (method, path, error)
    status, error, _ = server.request("GET", f"{API}/schedules/not-an-id")
    assert status == 400 and "not a schedule id" in error["message"]
    assert server.task(task["id"])["schedule_id"] == sid  # its runs stay


def _next_event(lines: Iterator[str], kind: str) -> Any:
    """The data of the next SSE event of ``kind`` (others are skipped)."""
    current = None
    for line in lines:
        if line.startswith("event: "):
            current = line[len("event: ") :]
        elif line.startswith("data: ") and current == kind:
            return json.loads(line[len("data: ") :])
    raise AssertionError(f"the stream ended before a {kind!r} event")


def test_a_notebook_schedule_runs_a_notebook_job(server: JupyterServer) -> None:
    folder = server.home / "notebooks" / "reports"
    folder.mkdir(exist_ok=True)
    book = nbformat.v4.new_notebook()
    book.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    params = nbformat.v4.new_code_cell('day = "2026-01-01"')
    params.metadata["tags"] = ["parameters"]
    book.cells = [params, nbformat.v4.new_code_cell("print('report for', day)")]
    nbformat.write(book, folder / "nightly.ipynb")
    made = create(
        server,
        {"task": "reports/nightly.ipynb", "args": {"day": "2026-12-02"}, "cron": "0 3 * * *",
         "tz": "Europe/Berlin"},
    )  # fmt: skip
    assert made["kind"] == "notebook" and made["name"] == "nightly"
    assert made["rule"] == "every day at 03:00, Europe/Berlin"
    next_run = parse_iso(made["next_run"]).astimezone(ZoneInfo("Europe/Berlin"))
    assert (next_run.hour, next_run.minute) == (3, 0)
    status, fired, _ = server.request("POST", f"{API}/schedules/{made['id']}/trigger")
    assert status == 200
    task = server.wait_for(fired["task"]["id"], {"complete", "error"}, 120)
    assert task["status"] == "complete", (task["error_message"], task["traceback"])
    assert task["schedule_id"] == made["id"] and task["task"] == "reports/nightly.ipynb"
    logs = server.get(f"{API}/tasks/{task['id']}/logs")["lines"]
    assert any("report for 2026-12-02" in line["text"] for line in logs)


BAD = [
    ({"task": "jobs:tick", "every": 2, "cron": "* * * * *"}, "exactly one of cron"),
    ({"task": "jobs:tick"}, "neither was given"),
    ({"task": "jobs:tick", "every": 0.5}, "every must be at least 1 s"),
    ({"task": "jobs:tick", "every": "2"}, "every must be a number"),
    ({"task": "jobs:tick", "cron": "61 * * * *"}, "cron '61 * * * *' is not a valid cron"),
    ({"task": "jobs:tick", "cron": "0 6 * *"}, "is not a valid cron"),
    ({"task": "jobs:tick", "cron": "0 6 * * *", "tz": "Mars/Olympus"}, "tz 'Mars/Olympus'"),
    ({"task": "jobs:tick", "every": 5, "start_at": "yesterday"}, "start_at must be an ISO"),
    (
        {
            "task": "jobs:tick",
            "every": 5,
            "start_at": "2030-01-02T00:00:00Z",
            "end_at": "2030-01-01T00:00:00Z",
        },
        "end_at",
    ),
    ({"task": "jobs:tick", "every": 5, "overlap": "never"}, "overlap must be one of"),
    ({"task": "jobs:tick", "every": 5, "misfire": "twice"}, "misfire must be one of"),
    ({"task": "jobs:tick", "every": 5, "options": {"retries": -1}}, "options: retries"),
    ({"task": "jobs:tick", "every": 5, "options": {"after": ["x"]}}, "options: unknown"),
    ({"task": "jobs:tick", "every": 5, "hourly": True}, "unknown field(s) hourly"),
    ({"task": "tick it", "every": 5}, "task 'tick it' is neither a notebook"),
    ({"task": "missing.ipynb", "every": 5}, "task: missing.ipynb does not exist"),
    ({"task": "bare.ipynb", "every": 5}, "task: bare.ipynb has no kernelspec"),
    ({"task": "../outside.ipynb", "every": 5}, "outside the Jupyter server's root"),
    ([1, 2], "must be a JSON object"),
]


def test_bad_input_is_refused_naming_the_field_and_nothing_is_stored(
    server: JupyterServer,
) -> None:
    nbformat.write(nbformat.v4.new_notebook(), server.home / "notebooks" / "bare.ipynb")
    bodies = server.db.parent / "tasks-schedules"
    before = server.get(f"{API}/schedules")["schedules"]
    files = sorted(bodies.glob("*"))
    for body, said in BAD:
        status, error, _ = server.request("POST", f"{API}/schedules", body)
        assert status == 400 and said in error["message"], (body, error)
    assert server.get(f"{API}/schedules")["schedules"] == before
    assert sorted(bodies.glob("*")) == files


def test_every_route_needs_jupyter_auth_and_the_kernel_api_its_secret(
    server: JupyterServer,
) -> None:
    base = f"{server.url}{API}/schedules"
    for method, url in (("GET", base), ("POST", base), ("POST", f"{base}/{'0' * 8}/trigger")):
        response = requests.request(method, url, json={}, timeout=10)
        assert response.status_code == 403, (method, url, response.text)
    kernel_api = f"{server.url}raytha-nb/kernel-api/schedules"
    jupyter = {"Authorization": f"token {server.token}"}
    assert requests.get(kernel_api, headers=jupyter, timeout=10).status_code == 403
    secret = {"Authorization": f"token {kernel_address(server).token}"}
    assert requests.get(kernel_api, headers=secret, timeout=10).status_code == 200


# -- the kernel API ----------------------------------------------------------------------
KERNEL_SETUP = """
import threading
import raytha_nb as rnb

factor = 2

def double(x):
    return factor * x
"""

FROM_KERNEL = """
sid = rnb.schedule(double, {"x": 21}, name="double", every=3600, retries=1)
made = rnb.get_schedule(sid)
tid = rnb.trigger_schedule(sid)
record = rnb.wait(tid, 60)
out = {
    "rule": made["rule"], "kind": made["kind"], "task": made["task"],
    "retries": made["options"]["retries"], "status": record.status.value,
    "result": rnb.result(tid), "linked": record.schedule_id == sid,
    "runs": [t.id for t in rnb.list_tasks(schedule_id=sid)] == [tid],
    "paused": rnb.pause_schedule(sid)["paused"],
    "resumed": rnb.resume_schedule(sid)["next_run"] is not None,
    "listed": sid in [s["id"] for s in rnb.list_schedules()],
}
rnb.delete_schedule(sid)
try:
    rnb.get_schedule(sid)
except rnb.ScheduleNotFound as exc:
    out["gone"] = str(exc)
out
"""

KERNEL_BAD = """
lock = threading.Lock()
said = {}
for key, call in {
    "neither": lambda: rnb.schedule(double, {"x": 1}, name="n"),
    "short": lambda: rnb.schedule(double, {"x": 1}, name="s", every=0.2),
    "tz": lambda: rnb.schedule(double, {"x": 1}, name="t", cron="0 6 * * *", tz="Nowhere/Town"),
    "args": lambda: rnb.schedule(double, {"y": 1}, name="a", every=5),
    "unpicklable": lambda: rnb.schedule(lambda: lock.locked(), name="u", every=5),
    "notebook": lambda: rnb.schedule("nope.ipynb", name="nb", every=5),
    "executor": lambda: rnb.schedule(double, {"x": 1}, name="e", every=5, executor="thread"),
}.items():
    try:
        call()
    except Exception as exc:
        said[key] = f"{type(exc).__name__}: {exc}"
said["stored"] = len(rnb.list_schedules())
said
"""


def test_schedules_from_a_kernel(server: JupyterServer) -> None:
    with started_kernel(server, KERNEL_SETUP) as (_, client):
        out = ast.literal_eval(run(client, FROM_KERNEL, timeout=120))
        stored_before = len(server.get(f"{API}/schedules")["schedules"])
        said = ast.literal_eval(run(client, KERNEL_BAD))
    assert out.pop("gone").startswith("no schedule with id")
    assert out == {
        "rule": "every hour", "kind": "function", "task": "double", "retries": 1,
        "status": "complete", "result": 42, "linked": True, "runs": True, "paused": True,
        "resumed": True, "listed": True,
    }  # fmt: skip
    assert "ValueError: give exactly one of cron" in said["neither"]
    assert "ValueError: every must be at least 1 s" in said["short"]
    assert "ValueError: tz 'Nowhere/Town'" in said["tz"]
    assert "TypeError" in said["args"] and "'y'" in said["args"]
    assert said["unpicklable"].startswith("NotPicklable") and "lock" in said["unpicklable"]
    assert "nope.ipynb does not exist" in said["notebook"]
    assert "executor" in said["executor"] and "'thread'" in said["executor"]
    assert said["stored"] == stored_before


NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "schedules.ipynb"


def test_the_schedules_notebook_runs_in_a_server_kernel(server: JupyterServer) -> None:
    """notebooks/schedules.ipynb, cell by cell, in a kernel of a real server (it needs
    one, so tests/test_notebooks.py leaves it to this test)."""
    cells = [c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code"]
    # In the server's root, as Lab runs it (its export goes there, not into the repo).
    setup = f"import os; os.chdir({str(server.home / 'notebooks')!r})"
    with started_kernel(server, setup) as (_, client):
        outputs = [run(client, source, timeout=180) for source in cells]
    text = "\n".join(outputs)
    assert "every day at 02:00, Europe/Berlin" in text
    assert "complete 1000 rows in orders-" in text
    assert "paused: True" in text and "resumed, next run: 20" in text
    assert outputs[-1] == "0 schedules left of it"
    (task,) = server.get(f"{API}/tasks?name=nightly%20export")["tasks"]
    assert task["status"] == "complete" and task["schedule_id"] is not None
    export = Path(task["result"]["path"])
    assert export.parent == server.home / "notebooks" / "exports"
    assert len(export.read_text().splitlines()) == 1001


def test_schedules_need_the_server_in_embedded_mode(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import raytha_nb as rnb\n"
        f"rnb.configure(db={str(tmp_path / 't.duckdb')!r})\n"
        "try:\n    rnb.schedule(print, name='p', every=5)\n"
        "except rnb.ServerRequired as exc:\n    print('refused:', exc)\n"
        "try:\n    rnb.list_schedules()\n"
        "except rnb.ServerRequired:\n    print('list refused')\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("RAYTHA_NB_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    env["JUPYTER_RUNTIME_DIR"] = str(tmp_path / "runtime")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "refused: schedules need the Jupyter server" in out.stdout
    assert "list refused" in out.stdout


def test_a_store_of_schema_4_gains_schedules(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    store = Store(path)
    store.apply(Batch(tasks=[TaskRow(str(uuid.uuid4()), "old", "f", created_at=time.time())]))
    with store._transaction() as cur:  # back to schema 4, as an older raytha_nb left it
        for sql in ("DROP TABLE schedules", "DROP TABLE schedule_events",
                    "ALTER TABLE tasks DROP COLUMN schedule_id"):  # fmt: skip
            cur.execute(sql)
        cur.execute("UPDATE raytha_meta SET value = '4' WHERE key = 'schema_version'")
    store.close()
    store = Store(path)
    try:
        assert store.schema_version == 5 and store.schedules() == []
        (old,) = store.list_tasks(TaskQuery())
        assert old.name == "old" and old.schedule_id is None
    finally:
        store.close()


# -- the rule, as a pure function --------------------------------------------------------
BERLIN = ZoneInfo("Europe/Berlin")


def _fires(rule: Rule, after: datetime, n: int) -> list[datetime]:
    out, ts = [], after.timestamp()
    for _ in range(n):
        due = rule.next_after(ts, 0.0)
        assert due is not None
        out.append(datetime.fromtimestamp(due, BERLIN))
        ts = due
    return out


def test_cron_next_times_across_the_spring_daylight_saving_change() -> None:
    rule = ScheduleSpec("r", "m:f", cron="30 2 * * *", tz="Europe/Berlin").checked().rule
    fires = _fires(rule, datetime(2026, 3, 27, 12, tzinfo=BERLIN), 3)
    # 29 March 2026: clocks go from 02:00 to 03:00, so 02:30 does not exist that day:
    # it runs at 03:00 (cronsim's rule), then at 02:30 again.
    assert [f.isoformat() for f in fires] == [
        "2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00",
    ]  # fmt: skip
    daily = ScheduleSpec("r", "m:f", cron="0 6 * * *", tz="Europe/Berlin").checked().rule
    mornings = _fires(daily, datetime(2026, 3, 27, 12, tzinfo=BERLIN), 2)
    assert [(f.hour, f.minute) for f in mornings] == [(6, 0), (6, 0)]
    assert [f.astimezone(timezone.utc).hour for f in mornings] == [5, 4]  # 06:00 CET, CEST
    assert mornings[1].timestamp() - mornings[0].timestamp() == 23 * 3600


def test_cron_next_times_across_the_autumn_daylight_saving_change() -> None:
    rule = ScheduleSpec("r", "m:f", cron="30 2 * * *", tz="Europe/Berlin").checked().rule
    fires = _fires(rule, datetime(2026, 10, 23, 12, tzinfo=BERLIN), 3)
    # 25 October 2026: 02:00-03:00 happens twice; 02:30 runs once, at the first.
    assert [f.isoformat() for f in fires] == [
        "2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00",
    ]  # fmt: skip
    assert fires[2].timestamp() - fires[1].timestamp() == 25 * 3600
    assert rule.words() == "every day at 02:30, Europe/Berlin"


def test_every_counts_from_its_start_and_stops_at_its_end() -> None:
    rule = Rule(None, 2.0, start_at=100.0, end_at=105.0)
    assert rule.next_after(50.0, 0.0) == 100.0
    assert rule.next_after(100.0, 0.0) == 102.0
    assert rule.next_after(103.9, 0.0) == 104.0
    assert rule.next_after(104.0, 0.0) is None
    assert rule.due_between(100.0, 104.5, 0.0) == [100.0, 102.0, 104.0]
    assert Rule(None, 2.0).next_after(10.0, 10.0) == 12.0  # one interval after creation
    assert Rule(None, 90.0).words() == "every 90 s"
    assert Rule(None, 86400.0).words() == "every day"
    assert Rule("*/15 * * * *", None).words() == "every 15th minute of every hour, UTC"
    assert Rule("0 9 * * 1-5", None, "America/New_York").words() == (
        "at 09:00 on Monday through Friday, America/New_York"
    )


def test_times_without_an_offset_are_in_the_schedules_zone() -> None:
    spec = ScheduleSpec.from_json(
        {"task": "m:f", "cron": "0 6 * * *", "tz": "Europe/Berlin",
         "start_at": "2026-07-01T06:00:00"},
    )  # fmt: skip
    assert spec.start_at == datetime(2026, 7, 1, 4, tzinfo=timezone.utc).timestamp()
    assert spec.name == "f" and spec.kind == "function"
    assert spec.rule.next_after(0.0, 0.0) == spec.start_at  # 06:00 that day is its first
