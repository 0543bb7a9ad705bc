"""What exiting does to running tasks: a script waits for them (one line on stderr),
Ctrl+C stops them as ``interrupted``; IPython and kernels say so and do not wait."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from raytha_nb.model import TaskStatus
from raytha_nb.store import Store

from ._script_helpers import script_env, server_for_scripts
from ._server_helpers import run

SLOW = textwrap.dedent(
    """
    import sys, time, raytha_nb as rnb

    def slow(seconds):
        for i in range(20):
            time.sleep(seconds / 20)
            rnb.progress((i + 1) * 5)
        return "done"

    print(rnb.enqueue(slow, {"seconds": SECONDS}), flush=True)
    """
)
WAITING = "raytha_nb: waiting for 1 running task to finish (Ctrl+C to stop them)\n"


def _env(tmp_path: Path) -> dict[str, str]:
    return script_env(tmp_path / "home", RAYTHA_NB_DB=str(tmp_path / "tasks.duckdb"))


def _stored(tmp_path: Path, job_id: str) -> tuple[TaskStatus, str | None]:
    store = Store(tmp_path / "tasks.duckdb")
    try:
        record = store.get(job_id)
        assert record is not None
        return record.status, record.status_info
    finally:
        store.close()


def test_a_script_waits_for_its_task_and_says_so_once(tmp_path: Path) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", SLOW.replace("SECONDS", "2")],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert done.stderr == WAITING  # and nothing else: no retry noise
    assert took >= 2.0
    status, _ = _stored(tmp_path, done.stdout.strip())
    assert status is TaskStatus.COMPLETE


def test_ctrl_c_while_waiting_interrupts_the_task_quietly(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW.replace("SECONDS", "30")],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    assert proc.stdout is not None and proc.stderr is not None
    job_id = proc.stdout.readline().strip()
    assert proc.stderr.readline() == WAITING
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl+C sends
    try:
        rest, errors = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGINT, errors  # a shell reports 130
    assert errors == "" and rest == ""  # no traceback, no retry noise
    status, info = _stored(tmp_path, job_id)
    assert status is TaskStatus.INTERRUPTED
    assert info is not None and "the process exited" in info


def test_ipython_says_how_many_tasks_exit_interrupts_and_does_not_wait(tmp_path: Path) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "IPython", "--quick", "--no-banner", "-c",
         SLOW.replace("SECONDS", "30")],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert time.monotonic() - started < 15
    assert done.returncode == 0, done.stderr
    assert "raytha_nb: exiting interrupts 1 running task (slow)" in done.stderr
    assert "waiting" not in done.stderr
    job_id = done.stdout.strip().splitlines()[-1]
    status, _ = _stored(tmp_path, job_id)
    assert status is TaskStatus.INTERRUPTED


def test_a_kernel_shutdown_with_a_running_task_stays_prompt(tmp_path: Path) -> None:
    from jupyter_client import KernelManager

    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=_env(tmp_path))
    client = km.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        job_id = run(client, SLOW.replace("SECONDS", "60")).splitlines()[-1]
    except Exception:
        km.shutdown_kernel(now=True)
        raise
    finally:
        client.stop_channels()
    started = time.monotonic()
    km.shutdown_kernel(now=False)  # a polite shutdown, as a restart does
    assert time.monotonic() - started < 10
    status, _ = _stored(tmp_path, job_id)
    assert status is TaskStatus.INTERRUPTED


def test_several_tasks_are_counted(tmp_path: Path) -> None:
    code = SLOW.replace("SECONDS", "1") + 'print(rnb.enqueue(slow, {"seconds": 1}))\n'
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == WAITING.replace("1 running task", "2 running tasks")
    ids = done.stdout.split()
    assert len(ids) == 2
    for job_id in ids:
        assert _stored(tmp_path, job_id)[0] is TaskStatus.COMPLETE


def test_under_a_server_the_script_waits_and_the_server_stores_the_end(tmp_path: Path) -> None:
    server = server_for_scripts(tmp_path / "home")
    try:
        done = subprocess.run(
            [sys.executable, "-c", SLOW.replace("SECONDS", "2")],
            env=script_env(server.home),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr == WAITING
        record = server.task(done.stdout.strip())
        assert record["status"] == "complete" and record["result"] == "done"
    finally:
        server.stop()
