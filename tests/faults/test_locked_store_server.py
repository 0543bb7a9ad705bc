"""A second Jupyter server on a task store another process holds.

DuckDB lets one process open a file. The server that cannot open its store must say
so on every user route (503: which PID holds it, what to set instead) rather than
look uninstalled (404), and must still stop on SIGTERM like any Jupyter server.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis

from .._server_helpers import ROOT, JupyterServer

SCHEMA = schemathesis.openapi.from_path(str(ROOT / "docs" / "rest-api.yaml"))
HOLD = (
    "import duckdb, sys, time\n"
    "con = duckdb.connect(sys.argv[1])\n"
    "print('held', flush=True)\n"
    "time.sleep(600)\n"
)


class AnyAnswer(JupyterServer):
    """Started once it answers at all: its status is a 503 here, not a 200."""

    def get(self, path: str) -> Any:
        return self.request("GET", path)[1]


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """A process that opened the store file read-write and sleeps."""
    db = (tmp_path / "tasks.duckdb").resolve()
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield proc, db
    finally:
        proc.kill()
        proc.wait(10)


def test_server_on_a_held_store_says_why_and_stops_on_sigterm(
    tmp_path: Path, holder: tuple[subprocess.Popen[str], Path]
) -> None:
    proc, db = holder
    server = AnyAnswer(tmp_path, db, heartbeat_timeout=30)
    try:
        server.start()

        def call(method: str, path: str, **kwargs: Any) -> requests.Response:
            return requests.request(
                method,
                f"{server.url}raytha-nb/api{path}",
                headers={"Authorization": f"token {server.token}"},
                timeout=10,
                **kwargs,
            )

        status = call("GET", "/status")
        assert status.status_code == 503, (status.status_code, status.text)
        message = status.json()["message"]
        for needed in (f"PID {proc.pid}", str(db), "c.RaythaNbApp.db_path", "RAYTHA_NB_DB"):
            assert needed in message, (needed, message)
        SCHEMA["/status"]["GET"].validate_response(status)

        job = uuid.uuid4()
        for template, method, path, params in [
            ("/tasks", "GET", "/tasks", {}),
            ("/tasks", "DELETE", "/tasks", {"finished": "true"}),
            ("/tasks/{id}", "GET", f"/tasks/{job}", {}),
            ("/tasks/{id}", "DELETE", f"/tasks/{job}", {}),
            ("/tasks/{id}/cancel", "POST", f"/tasks/{job}/cancel", {}),
            ("/tasks/{id}/logs", "GET", f"/tasks/{job}/logs", {}),
            ("/tasks/{id}/history", "GET", f"/tasks/{job}/history", {}),
            ("/tasks/{id}/result", "GET", f"/tasks/{job}/result", {}),
            ("/events", "GET", "/events", {}),
        ]:
            response = call(method, path, params=params)
            assert (response.status_code, response.json()["message"]) == (503, message), path
            SCHEMA[template][method].validate_response(response)
        # Jupyter's authentication still comes first; methods a resource lacks stay 405.
        assert requests.get(f"{server.url}raytha-nb/api/status", timeout=10).status_code == 403
        assert call("POST", "/status").status_code == 405

        server.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            server.proc.wait(8)
        except subprocess.TimeoutExpired:
            pytest.fail("the server ignored SIGTERM:\n" + server.log_text())
        assert time.monotonic() - started < 8
        assert "Traceback" not in server.log_text(), server.log_text()
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(10)
