"""Shared fixtures: every test gets its own real DuckDB file in a temp dir."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

import raytha_nb as rnb
from raytha_nb import _manager

ROOT = Path(__file__).resolve().parents[1]
# Kernels and subprocesses started by tests import this checkout.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
)


@pytest.fixture(scope="session", autouse=True)
def _no_server_worker_left(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Server workers outlive a stopped server by design (they wait to reconnect): at
    the end, stop those the tests' servers started, found by their pid files."""
    yield
    for pid_file in tmp_path_factory.getbasetemp().glob("**/*-server-tasks/*.pid"):
        try:
            pid = int(pid_file.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            continue  # it ended
        if b"raytha_nb._server_worker" in cmdline and os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def db_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "tasks.duckdb"
    monkeypatch.setenv("RAYTHA_NB_DB", str(path))
    return path


@pytest.fixture
def mgr(db_path: Path) -> Iterator[rnb.TaskManager]:
    """The process-wide manager, on a fresh store, flushing fast."""
    manager = rnb.configure(db_path, workers=4, flush_interval=0.05, cancel_grace=0.3)
    yield manager
    manager.shutdown()
    _manager._default = None  # the next test's first rnb call makes a fresh manager
