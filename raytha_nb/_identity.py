"""Who this process is and where its task store lives: kernel identity and discovery.

Imports nothing of raytha_nb, so every other module may use it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path

from jupyter_core.paths import jupyter_data_dir, jupyter_runtime_dir

#: Environment variables every kernel a raytha_nb server starts inherits.
ENV_URL, ENV_TOKEN, ENV_RESULTS = "RAYTHA_NB_URL", "RAYTHA_NB_TOKEN", "RAYTHA_NB_RESULTS"
#: An explicit store file: this process embeds it and looks for no server.
ENV_DB = "RAYTHA_NB_DB"
#: The runtime file's key for the store the server holds. Only in the file: kernels must
#: not inherit it as ``RAYTHA_NB_DB``, which would mean "embed this file".
STORE_KEY = "store"
#: Set for a server worker (``executor="server"``): the id of the task it runs.
ENV_WORKER = "RAYTHA_NB_WORKER"


@dataclass(frozen=True)
class ServerAddress:
    """Where a kernel finds its server's kernel API."""

    url: str
    token: str
    results_dir: str | None = None
    #: The server's PID, when found by :func:`find_server` (not for a kernel it started).
    pid: int | None = None


def worker_token(secret: str, job_id: str) -> str:
    """A server worker's own secret: it opens the kernel API as that task's process
    (publishing only that task and those it starts), and a restarted server (same
    kernel secret) still knows it, so the worker reconnects."""
    return hmac.new(secret.encode(), f"worker:{job_id}".encode(), hashlib.sha256).hexdigest()


def discover() -> ServerAddress | None:
    """The server that started this kernel (environment, else its runtime file); for
    any other process (a script, terminal IPython, papermill's kernel) a running server
    that holds this user's store, unless ``RAYTHA_NB_DB`` names a store to embed."""
    url, token = os.environ.get(ENV_URL), os.environ.get(ENV_TOKEN)
    if url and token:
        return ServerAddress(url, token, os.environ.get(ENV_RESULTS) or None)
    try:
        data = json.loads(runtime_file(os.getppid()).read_text())
        return ServerAddress(data[ENV_URL], data[ENV_TOKEN], data[ENV_RESULTS])
    except (OSError, ValueError, KeyError):
        pass
    if os.environ.get(ENV_DB):
        return None
    return find_server(default_db_path())


def find_server(store: str | Path) -> ServerAddress | None:
    """A running raytha_nb server on this machine that holds ``store``, from its runtime
    file. Only files this user owns and nobody else may read count: they hold the kernel
    secret, so a file another user could write or read is not trusted."""
    target = _resolved(store)
    try:
        files = sorted(Path(jupyter_runtime_dir()).glob("raytha_nb-*.json"))
    except OSError:
        return None
    for file in files:
        pid_text = file.stem.removeprefix("raytha_nb-")
        if not pid_text.isdigit() or not pid_alive(int(pid_text)):
            continue  # left behind by a server that died
        data = _private_json(file)
        try:
            if data is None or _resolved(data[STORE_KEY]) != target:
                continue
            return ServerAddress(data[ENV_URL], data[ENV_TOKEN], data[ENV_RESULTS], int(pid_text))
        except (KeyError, TypeError, OSError):
            continue  # a server of an older raytha_nb names no store
    return None


def _private_json(file: Path) -> dict[str, str] | None:
    """The JSON object in ``file`` if this user owns it and only this user may read or
    write it (opened without following a symlink), else None."""
    try:
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd) as handle:
        info = os.fstat(handle.fileno())
        if info.st_uid != os.getuid() or info.st_mode & 0o077:
            return None
        try:
            data = json.loads(handle.read())
        except ValueError:
            return None
    return data if isinstance(data, dict) else None


def _resolved(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


def runtime_file(server_pid: int) -> Path:
    """The file in which the server with this PID advertises its kernel API."""
    return Path(jupyter_runtime_dir()) / f"raytha_nb-{server_pid}.json"


def default_db_path() -> Path:
    """``$RAYTHA_NB_DB``, else ``<jupyter data dir>/raytha_nb/tasks.duckdb``."""
    override = os.environ.get(ENV_DB)
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
