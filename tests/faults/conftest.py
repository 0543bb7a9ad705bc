"""Shared by the fault tests: real jupyter servers on 127.0.0.1, stopped afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .._server_helpers import JupyterServer


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[[float], JupyterServer]]:
    """``start_server(heartbeat_timeout)``: a started server with its own store."""
    started: list[JupyterServer] = []

    def start(heartbeat_timeout: float = 30.0) -> JupyterServer:
        home = tmp_path / f"server-{len(started)}"
        home.mkdir()
        server = JupyterServer(
            home, home / "db" / "tasks.duckdb", heartbeat_timeout=heartbeat_timeout
        )
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
