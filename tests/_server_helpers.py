"""Helpers for server tests: real task batches, as a kernel's publisher builds them."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from raytha_nb._identity import ServerAddress
from raytha_nb._live import LiveTask
from raytha_nb.model import TaskStatus
from raytha_nb.protocol import Batch, LogRow, Publish

#: The PID fake kernels publish with: above Linux's PID_MAX_LIMIT (2**22), so no such
#: process can exist and the server's liveness check treats their silence as death.
FAKE_PID = 2**22 + 4242


def live_task(
    name: str = "job",
    *,
    status: TaskStatus = TaskStatus.ENQUEUED,
    kernel_id: str = "kernel-a",
    notebook: str | None = "a.ipynb",
    logs: int = 0,
    result: Any = None,
    result_kind: str | None = None,
    info: str | None = None,
) -> LiveTask:
    """A task moved through real LiveTask transitions to ``status``."""
    import uuid

    live = LiveTask(
        str(uuid.uuid4()), name, "tests.task", {"n": 1},
        kernel_id=kernel_id, notebook=notebook, pid=FAKE_PID,
    )  # fmt: skip
    if status is not TaskStatus.ENQUEUED:
        live.transition(TaskStatus.PROCESSING)
        live.report(40.0, info or "working", 2)
    for i in range(logs):
        live.add_log("stdout", f"line {i + 1}")
    if status in (TaskStatus.COMPLETE, TaskStatus.ERROR, TaskStatus.CANCELLED):
        fields: dict[str, Any] = {"percent_complete": 100.0}
        if status is TaskStatus.COMPLETE:
            fields.update(result=result, result_kind=result_kind)
        if status is TaskStatus.ERROR:
            fields.update(error_type="ValueError", error_message="bad", traceback="Traceback")
        live.transition(status, **fields)
    return live


def publish_body(
    tasks: list[LiveTask],
    *,
    session: str = "s-a",
    kernel_id: str = "kernel-a",
    active: Any = None,
    history_from: int = 0,
) -> str:
    """The JSON a kernel's RemoteBackend posts to kernel-api/publish for these tasks
    (with each task's history from entry ``history_from``: a kernel sends each
    acknowledged history row once)."""
    now = time.time()
    batch = Batch(
        tasks=[t.row(now) for t in tasks],
        history=[row for t in tasks for row in t.history[history_from:]],
        logs=[LogRow(t.id, *line) for t in tasks for line in t.logs],
    )
    if active is None:
        active = [t.id for t in tasks if not t.status.finished]
    return json.dumps(Publish(session, batch, kernel_id, FAKE_PID, tuple(active)).to_json())


def write_parquet(path: Path) -> dict[str, Any]:
    import pandas as pd

    from raytha_nb import _results

    frame = pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]})
    stored, _ = _results.encode(frame, path.stem, path.parent)
    return stored


# -- a real `jupyter server` subprocess ------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class JupyterServer:
    """``jupyter server`` on 127.0.0.1 with the extension enabled by the shipped config file."""

    def __init__(
        self,
        home: Path,
        db: Path,
        *,
        heartbeat_timeout: float,
        port: int = 0,
        options: tuple[str, ...] = (),
    ) -> None:
        import secrets
        import shutil

        self.home = home
        self.db = db
        self.port = port or free_port()
        self.token = secrets.token_hex(16)
        self.heartbeat_timeout = heartbeat_timeout
        #: More command-line options, e.g. ``--RaythaNbApp.max_server_workers=1``.
        self.options = options
        config = home / "config"
        if not config.exists():
            shutil.copytree(ROOT / "jupyter-config", config)
        (home / "notebooks").mkdir(exist_ok=True)
        self.proc: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def env(self) -> dict[str, str]:
        import os

        env = dict(os.environ)
        env.pop("RAYTHA_NB_URL", None)
        env.pop("RAYTHA_NB_TOKEN", None)
        env.update(
            JUPYTER_CONFIG_DIR=str(self.home / "config"),
            JUPYTER_RUNTIME_DIR=str(self.home / "runtime"),
            JUPYTER_DATA_DIR=str(self.home / "data"),
            RAYTHA_NB_DB=str(self.db),
            PYTHONPATH=str(ROOT),
        )
        return env

    def start(self, timeout: float = 60) -> JupyterServer:
        import os
        import subprocess
        import sys

        args = [
            sys.executable, "-m", "jupyter_server", "--ip", "127.0.0.1",
            "--port", str(self.port), "--port-retries", "0", "--no-browser",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.home / 'notebooks'}",
            f"--RaythaNbApp.heartbeat_timeout={self.heartbeat_timeout}",
            "--RaythaNbApp.reap_interval=0.25", *self.options,
        ]  # fmt: skip
        if os.getuid() == 0:
            args.append("--allow-root")
        log = (self.home / "server.log").open("ab")
        self.proc = subprocess.Popen(args, env=self.env(), stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, self.log_text()
            try:
                self.get("raytha-nb/api/status")
                return self
            except OSError:
                assert time.monotonic() < deadline, self.log_text()
                time.sleep(0.2)

    def stop(self) -> None:
        import signal

        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except Exception:
                self.proc.kill()
                self.proc.wait(10)

    def log_text(self) -> str:
        path = self.home / "server.log"
        return path.read_text(errors="replace")[-5000:] if path.exists() else ""

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any, Any]:
        import urllib.error
        import urllib.request

        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
                kind = response.headers.get("Content-Type", "")
                status = response.status
                headers = response.headers
        except urllib.error.HTTPError as exc:
            raw, status, headers = exc.read(), exc.code, exc.headers
            kind = exc.headers.get("Content-Type", "")
        value = json.loads(raw) if raw and "json" in kind else raw
        return status, value, headers

    def get(self, path: str) -> Any:
        status, value, _ = self.request("GET", path)
        assert status == 200, (status, value)
        return value

    def task(self, job_id: str) -> dict[str, Any]:
        record: dict[str, Any] = self.get(f"raytha-nb/api/tasks/{job_id}")
        return record

    def wait_for(self, job_id: str, statuses: set[str], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:  # a new task reaches the server with its kernel's next flush
            status, record, _ = self.request("GET", f"raytha-nb/api/tasks/{job_id}")
            assert status in (200, 404), (status, record)
            if status == 200 and record["status"] in statuses:
                result: dict[str, Any] = record
                return result
            assert time.monotonic() < deadline, (record, self.log_text())
            time.sleep(0.05)

    def start_kernel(self) -> tuple[str, Any]:
        """Start a kernel through the REST API; return its id and a connected client."""
        from jupyter_client import BlockingKernelClient

        status, kernel, _ = self.request("POST", "api/kernels", {"name": "python3"})
        assert status == 201, kernel
        client = BlockingKernelClient(
            connection_file=str(self.home / "runtime" / f"kernel-{kernel['id']}.json")
        )
        client.load_connection_file()
        # No heartbeat channel: without a KernelManager parent, wait_for_ready takes a
        # heartbeat not yet received for a dead kernel.
        client.start_channels(hb=False)
        client.wait_for_ready(timeout=60)
        return kernel["id"], client


def run(client: Any, code: str, timeout: float = 60) -> str:
    """Execute ``code`` in a kernel; return what it printed and its value, raise on error."""
    out: list[str] = []
    errors: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            out.append(content["text"])
        elif kind == "execute_result":
            out.append(content["data"].get("text/plain", ""))
        elif kind == "error":
            errors.append("\n".join(content["traceback"]))

    reply = client.execute_interactive(code, output_hook=hook, timeout=timeout)
    if errors or reply["content"]["status"] != "ok":
        raise AssertionError(f"kernel error running {code!r}:\n" + "\n".join(errors))
    return "".join(out).strip()


@contextlib.contextmanager
def running_server(
    home: Path, *options: str, heartbeat_timeout: float = 5.0
) -> Iterator[JupyterServer]:
    """A started server over ``home`` (its store ``home/db/tasks.duckdb``; ``options``
    more command-line options), stopped afterwards: a test module's ``server`` fixture."""
    server = JupyterServer(
        home, home / "db" / "tasks.duckdb", heartbeat_timeout=heartbeat_timeout, options=options
    ).start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def started_kernel(server: JupyterServer, setup: str = "") -> Iterator[tuple[str, Any]]:
    """A kernel of the server with ``setup`` run in it; shut down afterwards."""
    kernel_id, client = server.start_kernel()
    try:
        if setup:
            run(client, setup)
        yield kernel_id, client
    finally:
        client.stop_channels()
        server.request("DELETE", f"api/kernels/{kernel_id}")


def kernel_address(server: JupyterServer) -> ServerAddress:
    """How a process the server did not start reaches its kernel API (its secret file)."""
    secret = (server.db.parent / f".{server.db.stem}.kernel-secret").read_text()
    return ServerAddress(server.url, secret, str(server.db.parent / f"{server.db.stem}-results"))


class ExternalKernel:
    """A kernel started by the test (not by the server) and attached to the server
    through the environment, as a kernel that outlives a server restart would be."""

    def __init__(self, server: JupyterServer) -> None:
        from jupyter_client import KernelManager

        address = kernel_address(server)
        env = {
            **server.env(),
            "RAYTHA_NB_URL": address.url,
            "RAYTHA_NB_TOKEN": address.token,
            "RAYTHA_NB_RESULTS": str(address.results_dir),
        }
        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(env=env)
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def close(self) -> None:
        self.client.stop_channels()
        if self.manager.is_alive():
            self.manager.shutdown_kernel(now=True)
        else:
            self.manager.cleanup_resources()
