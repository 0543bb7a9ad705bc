"""Shared fixtures: every test gets its own real DuckDB file in a temp dir."""

from __future__ import annotations

import os
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
