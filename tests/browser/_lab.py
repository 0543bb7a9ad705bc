"""Start a real JupyterLab for browser tests: own port, token, config, data and task store."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BUILT = ROOT / "raytha_nb" / "labextension"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
OUTPUT = ROOT / "test-output"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Lab:
    """A running JupyterLab server and where its files live."""

    url: str
    token: str
    root: Path
    db: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def page(self, path: str = "lab") -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.url}{path}{sep}token={self.token}"

    def api(self, path: str, method: str = "GET", body: Any = None) -> Any:
        """Call the raytha_nb REST API (tests use it to check what the page shows, and to
        make what it shows); ``body`` is sent as JSON."""
        req = urllib.request.Request(
            f"{self.url}raytha-nb/api/{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def _write_settings(settings_dir: Path, plugin: str, values: dict[str, Any]) -> None:
    package, _, name = plugin.partition(":")
    path = settings_dir / package / f"{name}.jupyterlab-settings"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))


def start_lab(
    tmp: Path,
    *,
    server_extension: bool = True,
    settings: dict[str, Any] | None = None,
    app: str = "jupyterlab",
) -> Lab:
    """JupyterLab (or Notebook 7: ``app="notebook"``) on 127.0.0.1 with this checkout's
    built labextension and (or not) its server extension; returns once it answers."""
    if not (BUILT / "package.json").exists():
        raise RuntimeError(
            f"The labextension is not built ({BUILT} is missing): run "
            "'cd labextension && jlpm install && jlpm build:prod' (scripts/test.sh does it)."
        )
    root = tmp / "notebooks"
    config = tmp / "config"
    labext = tmp / "jupyter_path" / "labextensions"
    user_settings = tmp / "settings"
    for d in (root, config, labext, user_settings):
        d.mkdir(parents=True, exist_ok=True)
    # JupyterLab finds prebuilt extensions as <dir>/<package name>/package.json.
    (labext / "raytha-nb").symlink_to(BUILT, target_is_directory=True)
    (config / "jupyter_server_config.json").write_text(
        json.dumps(
            {
                "ServerApp": {"jpserver_extensions": {"raytha_nb": server_extension}},
                # Tests' feeds are fake kernels that publish only when told to: on a
                # loaded machine one can stay silent past the default 30 s, and its
                # running tasks would be reaped as interrupted mid-test.
                "RaythaNbApp": {"heartbeat_timeout": 600},
            }
        )
    )
    # No news or update prompts: they would cover the notifications under test.
    _write_settings(
        user_settings,
        "@jupyterlab/apputils-extension:notification",
        {"fetchNews": "false", "checkForUpdates": False},
    )
    # No "Select Kernel" dialog: notebooks start their kernel (python3) by themselves.
    _write_settings(
        user_settings, "@jupyterlab/notebook-extension:tracker", {"autoStartDefaultKernel": True}
    )
    for plugin, values in (settings or {}).items():
        _write_settings(user_settings, plugin, values)

    token = secrets.token_hex(16)
    port = free_port()
    db = tmp / "tasks.duckdb"
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p),
        RAYTHA_NB_DB=str(db),
        JUPYTER_CONFIG_DIR=str(config),
        JUPYTER_DATA_DIR=str(tmp / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
        IPYTHONDIR=str(tmp / "ipython"),
        # Both JupyterLab and Notebook 7 look for prebuilt extensions on JUPYTER_PATH.
        JUPYTER_PATH=os.pathsep.join(
            p for p in (str(labext.parent), env.get("JUPYTER_PATH", "")) if p
        ),
    )
    cls = {"jupyterlab": "LabApp", "notebook": "JupyterNotebookApp"}[app]
    cmd = [
        sys.executable, "-m", app,
        "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--port-retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--{cls}.user_settings_dir={user_settings}",
        f"--{cls}.workspaces_dir={tmp / 'workspaces'}",
    ]  # fmt: skip
    if hasattr(os, "getuid") and os.getuid() == 0:
        cmd.append("--allow-root")
    log = tmp / "lab.log"
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    lab = Lab(f"http://127.0.0.1:{port}/", token, root, db, proc, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited ({proc.returncode}):\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{lab.url}api/status?token={token}", timeout=2):
                return lab
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    lab.stop()
    raise RuntimeError(f"JupyterLab did not start within 60 s:\n{log.read_text()}")


def notebook(path: Path, *cells: str) -> Path:
    """Write a notebook with these code cells and the python3 kernel."""
    nb = {
        "cells": [
            {"cell_type": "code", "id": f"cell-{i}", "metadata": {}, "source": src,
             "outputs": [], "execution_count": None}
            for i, src in enumerate(cells)
        ],
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }  # fmt: skip
    path.write_text(json.dumps(nb))
    return path
