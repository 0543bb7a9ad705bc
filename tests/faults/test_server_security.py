"""Result downloads and store file modes, on a real server with a real kernel.

A task's result path is whatever its code returned, and ``GET tasks/{id}/result``
answers anyone allowed to read raytha_nb: only files under the store's results
directory or the server's root directory may go out, judged after resolving
symlinks. The store itself (tasks, arguments, logs, results) is private to the user.
"""

from __future__ import annotations

import ast
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import schemathesis

from raytha_nb.protocol import Batch
from raytha_nb.store import Store

from .._server_helpers import ROOT, JupyterServer, live_task, run

SCHEMA = schemathesis.openapi.from_path(str(ROOT / "docs" / "rest-api.yaml"))
#: A file no task result should expose (/etc/shadow when this user may read it).
SECRET = Path("/etc/shadow") if os.access("/etc/shadow", os.R_OK) else Path("/etc/passwd")
#: Task -> the real file its result path leads to, outside both allowed directories.
REFUSED = {
    "passwd": "/etc/passwd",
    "outer_link": "/etc/passwd",
    "shadow_link": str(SECRET),
    "swapped": str(SECRET),
}
SERVED = ("report", "inner_link", "in_results")

TASKS = """
import raytha_nb as rnb

def give(path):
    return rnb.ResultFile(path)

jobs = {{key: rnb.enqueue(give, {{"path": path}}, name=key) for key, path in {paths!r}.items()}}
for job in jobs.values():
    rnb.wait(job, 30)
jobs
"""


@dataclass
class Setup:
    server: JupyterServer
    jobs: dict[str, str]
    paths: dict[str, str]
    root: Path
    results: Path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """Tasks returning ResultFiles inside and outside the allowed directories."""
    home = tmp_path_factory.mktemp("security")
    server = JupyterServer(home, home / "tasks.duckdb", heartbeat_timeout=60).start()
    root = (home / "notebooks").resolve()
    results = (home / "tasks-results").resolve()
    results.mkdir(exist_ok=True)
    (root / "report.csv").write_text("a,b\n1,2\n")
    (root / "inner-link.csv").symlink_to(root / "report.csv")
    (root / "outer-link.txt").symlink_to("/etc/passwd")
    (root / "swapped.csv").write_text("x\n")
    (results / "made.txt").write_text("made here\n")
    (results / "shadow.txt").symlink_to(SECRET)
    paths = {
        "passwd": "/etc/passwd",
        "outer_link": str(root / "outer-link.txt"),
        "shadow_link": str(results / "shadow.txt"),
        "swapped": str(root / "swapped.csv"),
        "report": str(root / "report.csv"),
        "inner_link": str(root / "inner-link.csv"),
        "in_results": str(results / "made.txt"),
    }
    kernel_id, client = server.start_kernel()
    try:
        jobs: dict[str, str] = ast.literal_eval(run(client, TASKS.format(paths=paths)))
        # Replaced after the task stored its path: only the server's own check sees it.
        (root / "swapped.csv").unlink()
        (root / "swapped.csv").symlink_to(SECRET)
        yield Setup(server, jobs, paths, root, results)
    finally:
        client.stop_channels()
        server.request("DELETE", f"api/kernels/{kernel_id}")
        server.stop()


def result(setup: Setup, key: str) -> requests.Response:
    return requests.get(
        f"{setup.server.url}raytha-nb/api/tasks/{setup.jobs[key]}/result",
        headers={"Authorization": f"token {setup.server.token}"},
        timeout=10,
    )


@pytest.mark.parametrize("key", REFUSED)
def test_result_files_outside_the_allowed_directories_are_refused(setup: Setup, key: str) -> None:
    task = setup.server.task(setup.jobs[key])
    assert task["status"] == "complete", task
    response = result(setup, key)
    assert response.status_code == 403, (response.status_code, response.content[:200])
    message = response.json()["message"]
    for needed in (task["result"]["path"], REFUSED[key], str(setup.results), str(setup.root)):
        assert needed in message, (needed, message)
    SCHEMA["/tasks/{id}/result"]["GET"].validate_response(response)


@pytest.mark.parametrize("key", SERVED)
def test_result_files_inside_are_served(setup: Setup, key: str) -> None:
    response = result(setup, key)
    assert response.status_code == 200, (response.status_code, response.text)
    assert response.content == Path(setup.paths[key]).read_bytes()
    assert response.headers["Content-Length"] == str(len(response.content))
    SCHEMA["/tasks/{id}/result"]["GET"].validate_response(response)


def test_store_files_are_private_to_the_user(setup: Setup) -> None:
    db = setup.server.db
    assert mode(db) == 0o600
    wal = db.with_name(db.name + ".wal")
    assert wal.exists()  # the tasks above wrote to it
    assert mode(wal) == 0o600
    assert mode(setup.results) == 0o700
    assert mode(db.with_name(f".{db.stem}.kernel-secret")) == 0o600


def test_an_existing_store_is_made_private_when_opened(tmp_path: Path) -> None:
    db = tmp_path / "tasks.duckdb"
    Store(db).close()
    db.chmod(0o644)
    (tmp_path / "tasks-results").chmod(0o755)
    Store(db).close()
    assert mode(db) == 0o600
    assert mode(tmp_path / "tasks-results") == 0o700


def test_a_new_store_folder_is_private(tmp_path: Path) -> None:
    Store(tmp_path / "new" / "tasks.duckdb").close()
    assert mode(tmp_path / "new") == 0o700


def test_the_wal_stays_private_after_a_checkpoint(tmp_path: Path) -> None:
    """DuckDB deletes its WAL at every checkpoint and makes a new one with the umask's
    mode at the next commit: the store makes it private again."""
    store = Store(tmp_path / "tasks.duckdb")
    try:
        store.apply(Batch(tasks=[live_task("before").row(time.time())]))
        assert store.checkpoint_if_idle(idle_seconds=0)
        store.apply(Batch(tasks=[live_task("after").row(time.time())]))  # a new WAL
        wal = store.path.with_name(store.path.name + ".wal")
        assert wal.exists() and mode(wal) == 0o600
    finally:
        store.close()
