"""Who this process is and where its task store lives: kernel identity and discovery.

Imports nothing of raytha_nb, so every other module may use it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from jupyter_core.paths import jupyter_data_dir, jupyter_runtime_dir

#: Environment variables every kernel a raytha_nb server starts inherits.
ENV_URL, ENV_TOKEN, ENV_RESULTS = "RAYTHA_NB_URL", "RAYTHA_NB_TOKEN", "RAYTHA_NB_RESULTS"


@dataclass(frozen=True)
class ServerAddress:
    """Where a kernel finds its server's kernel API."""

    url: str
    token: str
    results_dir: str | None = None


def discover() -> ServerAddress | None:
    """The server that started this kernel, from the environment or its runtime file."""
    url, token = os.environ.get(ENV_URL), os.environ.get(ENV_TOKEN)
    if url and token:
        return ServerAddress(url, token, os.environ.get(ENV_RESULTS) or None)
    try:
        data = json.loads(runtime_file(os.getppid()).read_text())
        return ServerAddress(data[ENV_URL], data[ENV_TOKEN], data[ENV_RESULTS])
    except (OSError, ValueError, KeyError):
        return None


def runtime_file(server_pid: int) -> Path:
    """The file in which the server with this PID advertises its kernel API."""
    return Path(jupyter_runtime_dir()) / f"raytha_nb-{server_pid}.json"


def default_db_path() -> Path:
    """``$RAYTHA_NB_DB``, else ``<jupyter data dir>/raytha_nb/tasks.duckdb``."""
    override = os.environ.get("RAYTHA_NB_DB")
    if override:
        return Path(override).expanduser()
    return Path(jupyter_data_dir()) / "raytha_nb" / "tasks.duckdb"


def kernel_identity() -> tuple[str | None, str | None]:
    """This kernel's id (from its connection file) and its notebook's path, when known."""
    kernel_id = None
    try:
        from ipykernel.connect import get_connection_file  # only inside a kernel

        name = Path(get_connection_file()).stem
        kernel_id = name.removeprefix("kernel-") if name.startswith("kernel-") else None
    except Exception:  # noqa: BLE001 - not running in a kernel
        pass
    return kernel_id, os.environ.get("JPY_SESSION_NAME") or None


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID runs on this machine (a zombie, killed but not
    yet reaped by its parent, does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    except OverflowError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): kill(0) is all there is
    # The state follows the command name, which is in parentheses and may hold spaces.
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")
