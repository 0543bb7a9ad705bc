"""``raytha-nb`` against a bare store file and against a running server: every
command, ``--json``, id prefixes, exit codes, ``-o FILE`` and the live progress line."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd
import pytest

import raytha_nb as rnb
from raytha_nb._live import LiveTask
from raytha_nb.cli import EXIT_CODES
from raytha_nb.model import TaskStatus
from raytha_nb.protocol import Batch
from raytha_nb.store import Store

from ._script_helpers import cli, script_env, server_for_scripts
from ._server_helpers import JupyterServer


def _frame(rows: int) -> pd.DataFrame:
    print("making the frame")
    rnb.log("half way")
    return pd.DataFrame({"x": list(range(rows)), "y": [f"r{i}" for i in range(rows)]})


def _fails() -> None:
    raise ValueError("bad input file")


def _forever() -> None:
    while True:
        rnb.check_cancelled()
        time.sleep(0.01)


@pytest.fixture
def store_tasks(mgr: rnb.TaskManager, db_path: Path) -> dict[str, str]:
    """A bare store file (no process holds it) with one task of each ending."""
    ids = {
        "frame": mgr.enqueue(_frame, {"rows": 3}),
        "error": mgr.enqueue(_fails),
        "json": mgr.submit(lambda ctx: {"total": 42}, name="sum", task="tests.sum"),
        "cancelled": mgr.enqueue(_forever),
    }
    time.sleep(0.2)
    mgr.cancel(ids["cancelled"])
    for job_id in ids.values():
        mgr.wait(job_id, timeout=30)
    mgr.shutdown()
    # Two tasks whose ids share a start, to show an ambiguous prefix.
    twins = [
        LiveTask(
            f"abcd0000-0000-4000-8000-00000000000{i}",
            f"twin{i}",
            "tests.twin",
            None,
            kernel_id=None,
            notebook=None,
            pid=os.getpid(),
        )
        for i in (1, 2)
    ]
    for live in twins:
        live.transition(TaskStatus.PROCESSING)
        live.transition(TaskStatus.COMPLETE, result=None, result_kind="json")
    store = Store(db_path)
    try:
        store.apply(Batch(tasks=[t.row(time.time()) for t in twins]))
    finally:
        store.close()
    return ids


@pytest.fixture
def env(tmp_path: Path, db_path: Path) -> dict[str, str]:
    return script_env(tmp_path / "home", RAYTHA_NB_DB=str(db_path))


def test_list_and_show(store_tasks: dict[str, str], env: dict[str, str]) -> None:
    done = cli("list", env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "DONE", "NAME", "STARTED", "TOOK", "INFO"]
    assert any(store_tasks["error"][:8] in line and "error" in line for line in lines)
    listed = json.loads(cli("list", "--json", "-s", "complete", env=env).stdout)
    assert {t["id"] for t in listed} >= {store_tasks["frame"], store_tasks["json"]}
    assert {t["status"] for t in listed} == {"complete"}
    shown = cli("show", store_tasks["error"][:6], env=env)
    assert shown.returncode == 0, shown.stderr
    assert "error:     ValueError: bad input file" in shown.stdout
    assert "Traceback" in shown.stdout
    record = json.loads(cli("show", store_tasks["json"], "--json", env=env).stdout)
    assert record["result"] == {"total": 42} and record["status"] == "complete"


def test_ids_not_found_and_ambiguous(store_tasks: dict[str, str], env: dict[str, str]) -> None:
    ambiguous = cli("show", "abcd", env=env)
    assert ambiguous.returncode == 3
    assert "'abcd' is the start of 2 task ids" in ambiguous.stderr
    assert "give more characters" in ambiguous.stderr
    assert cli("show", "abcd0000-0000-4000-8000-000000000002", env=env).returncode == 0
    missing = cli("show", "ffffffff", env=env)
    assert missing.returncode == 3 and "no task id starts with 'ffffffff'" in missing.stderr
    nonsense = cli("show", "my-job", env=env)
    assert nonsense.returncode == 3 and "raytha-nb list --name NAME" in nonsense.stderr
    assert "Traceback" not in ambiguous.stderr + missing.stderr + nonsense.stderr


def test_logs(store_tasks: dict[str, str], env: dict[str, str]) -> None:
    done = cli("logs", store_tasks["frame"][:8], env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["making the frame", "half way"]
    as_json = [
        json.loads(line)
        for line in cli("logs", store_tasks["frame"], "--json", env=env).stdout.splitlines()
    ]
    assert [line["seq"] for line in as_json] == [1, 2]
    assert as_json[0]["text"] == "making the frame"


def test_wait_exit_codes(store_tasks: dict[str, str], env: dict[str, str]) -> None:
    assert cli("wait", store_tasks["frame"], env=env).returncode == 0
    assert cli("wait", store_tasks["error"], env=env).returncode == 1
    cancelled = cli("wait", store_tasks["cancelled"], "--json", env=env)
    assert cancelled.returncode == 4
    assert json.loads(cancelled.stdout)["status"] == "cancelled"
    assert cli("logs", "-f", store_tasks["error"], env=env).returncode == 1


def test_result_and_output_files(
    store_tasks: dict[str, str], env: dict[str, str], tmp_path: Path
) -> None:
    shown = cli("result", store_tasks["json"], env=env)
    assert shown.returncode == 0 and json.loads(shown.stdout) == {"total": 42}
    frame = cli("result", store_tasks["frame"], env=env)
    assert frame.returncode == 0 and "r2" in frame.stdout
    for suffix in ("parquet", "csv", "json"):
        target = tmp_path / f"out.{suffix}"
        done = cli("result", store_tasks["frame"][:8], "-o", str(target), env=env)
        assert done.returncode == 0, done.stderr
        read = {"parquet": "read_parquet", "csv": "read_csv", "json": "read_json"}[suffix]
        rows = duckdb.sql(f"SELECT x, y FROM {read}('{target}') ORDER BY x").fetchall()
        assert rows == [(0, "r0"), (1, "r1"), (2, "r2")]
    (tmp_path / "out.json").unlink()
    assert (
        cli("result", store_tasks["json"], "-o", str(tmp_path / "out.json"), env=env).returncode
        == 0
    )
    assert json.loads((tmp_path / "out.json").read_text()) == {"total": 42}
    odd = cli("result", store_tasks["frame"], "-o", str(tmp_path / "out.xlsx"), env=env)
    assert odd.returncode == 2 and "end the file name in .parquet, .csv or .json" in odd.stderr
    failed = cli("result", store_tasks["error"], env=env)
    assert failed.returncode == 1 and "ValueError: bad input file" in failed.stderr
    assert cli("result", store_tasks["cancelled"], env=env).returncode == 4


def test_cancel_a_finished_task_and_usage(store_tasks: dict[str, str], env: dict[str, str]) -> None:
    done = cli("cancel", store_tasks["json"], "--json", env=env)
    assert done.returncode == 0
    assert json.loads(done.stdout) == {"id": store_tasks["json"], "cancel_requested": False}
    assert cli("frobnicate", env=env).returncode == 2
    assert cli("show", env=env).returncode == 2
    helped = cli("--help", env=env)
    assert helped.returncode == 0 and "exit codes:" in helped.stdout
    for code, meaning in EXIT_CODES.items():
        assert f"{code:>3}  {meaning}" in helped.stdout


HOLD = "import sys, raytha_nb as rnb; rnb.list_tasks(); print('ok', flush=True); sys.stdin.read()"


def test_a_store_held_by_a_script_is_explained(db_path: Path, env: dict[str, str]) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ok\n"
        done = cli("list", env=env)
    finally:
        holder.communicate("", timeout=30)
    assert done.returncode == 6
    assert f"in use by another process (PID {holder.pid})" in done.stderr
    assert "Traceback" not in done.stderr


# -- against a running server -------------------------------------------------------------
SCRIPT = textwrap.dedent(
    """
    import time, raytha_nb as rnb

    def slow():
        for i in range(10):
            print(f"step {i}")
            rnb.progress((i + 1) * 10, info=f"chunk {i}")
            time.sleep(0.3)
        return 10

    def forever():
        while True:
            rnb.check_cancelled()
            time.sleep(0.02)

    print(rnb.enqueue(slow), rnb.enqueue(forever), flush=True)
    """
)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[JupyterServer, dict[str, str], list[str]]]:
    server = server_for_scripts(tmp_path / "home")
    env = script_env(server.home)
    script = subprocess.Popen(
        [sys.executable, "-c", SCRIPT],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert script.stdout is not None
    ids = script.stdout.readline().split()
    for job_id in ids:  # stored with the script's next flush (0.2 s)
        server.wait_for(job_id, {"enqueued", "processing"}, timeout=30)
    try:
        yield server, env, ids
    finally:
        script.kill()
        script.communicate(timeout=30)
        server.stop()


def test_against_a_server(served: tuple[JupyterServer, dict[str, str], list[str]]) -> None:
    server, env, (slow, forever) = served
    followed = cli("logs", "-f", slow[:8], env=env)
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.splitlines() == [f"step {i}" for i in range(10)]
    waited = cli("wait", slow[:8], env=env)
    assert waited.returncode == 0, waited.stderr
    assert "slow [complete]" in waited.stdout and "100%" in waited.stdout
    assert cli("result", slow, env=env).stdout.strip() == "10"
    listed = json.loads(cli("list", "--json", env=env).stdout)
    assert {t["id"] for t in listed} == {slow, forever}
    running = cli("wait", forever, "--timeout", "0.5", env=env)
    assert running.returncode == 5 and "still processing after 0.5s" in running.stderr
    assert cli("result", forever, env=env).returncode == 5
    asked = cli("cancel", forever[:8], env=env)
    assert asked.returncode == 0 and "asked forever" in asked.stdout
    assert cli("wait", forever, env=env).returncode == 4
    assert server.task(forever)["status"] == "cancelled"


def test_wait_draws_a_live_line_on_a_terminal(
    served: tuple[JupyterServer, dict[str, str], list[str]],
) -> None:
    """On a pty, ``wait`` redraws one line in place. The task never ends by itself, so
    the line is live however late the command starts on a loaded machine."""
    _, env, (_, forever) = served
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "raytha_nb.cli", "wait", forever, "--timeout", "2"],
        env={**env, "COLUMNS": "120"}, stdin=follower, stdout=follower, stderr=follower,
    )  # fmt: skip
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed: the command ended
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert proc.wait(30) == 5  # NOT_DONE: still running after --timeout
    text = seen.decode(errors="replace")
    assert text.count("\r\x1b[2K") >= 3  # redrawn in place
    assert "forever [processing]" in text and "░" in text and "elapsed" in text
    assert "is still processing after 2s" in text
