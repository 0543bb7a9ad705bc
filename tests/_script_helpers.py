"""Helpers for tests of scripts, terminals and the CLI: real processes next to a real
jupyter server whose store is the user's default store (no ``RAYTHA_NB_DB``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ._server_helpers import JupyterServer


def default_store(home: Path) -> Path:
    """The store a process with this home's ``JUPYTER_DATA_DIR`` uses by default."""
    return home / "data" / "raytha_nb" / "tasks.duckdb"


def server_for_scripts(home: Path) -> JupyterServer:
    """A started server holding ``default_store(home)``."""
    home.mkdir(parents=True, exist_ok=True)
    return JupyterServer(home, default_store(home), heartbeat_timeout=30.0).start()


def script_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a terminal of the same user: same Jupyter dirs, no server
    variables and no ``RAYTHA_NB_DB`` (so the default store, shared with the server)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAYTHA_NB_")}
    env.update(
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_CONFIG_DIR=str(home / "config"),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def run_python(
    code: str, env: dict[str, str], timeout: float = 60, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """``python -c code`` to the end; its output as text."""
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )


def cli(
    *args: str, env: dict[str, str], timeout: float = 60, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """``raytha-nb args...`` (as ``python -m raytha_nb.cli``, the console script's code)."""
    return subprocess.run(
        [sys.executable, "-m", "raytha_nb.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )
