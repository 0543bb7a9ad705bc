"""A task's notebook is its contents path and follows renames, moves and deletes made
through Jupyter: a real ``jupyter server``, real notebook sessions and kernels."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from raytha_nb.server.service import contents_path

from ._server_helpers import JupyterServer, run, running_server

API = "raytha-nb/api"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    home = tmp_path_factory.mktemp("paths")
    with running_server(home, heartbeat_timeout=30) as srv:
        yield srv


def new_notebook(server: JupyterServer, folder: str = "") -> str:
    """A new untitled notebook, as Lab's *New Notebook* makes it; returns its path."""
    status, model, _ = server.request("POST", f"api/contents/{folder}", {"type": "notebook"})
    assert status == 201, model
    return str(model["path"])


def open_session(server: JupyterServer, path: str) -> tuple[str, str, Any]:
    """A notebook session with a new kernel, as a front end opens one; returns the
    session id, kernel id and a client connected to the kernel."""
    from jupyter_client import BlockingKernelClient

    body = {
        "path": path,
        "name": Path(path).name,
        "type": "notebook",
        "kernel": {"name": "python3"},
    }
    status, session, _ = server.request("POST", "api/sessions", body)
    assert status == 201, session
    kernel_id = session["kernel"]["id"]
    client = BlockingKernelClient(
        connection_file=str(server.home / "runtime" / f"kernel-{kernel_id}.json")
    )
    client.load_connection_file()
    client.start_channels(hb=False)
    client.wait_for_ready(timeout=60)
    return session["id"], kernel_id, client


def close_session(server: JupyterServer, session_id: str, client: Any) -> None:
    client.stop_channels()
    server.request("DELETE", f"api/sessions/{session_id}")


def rename(server: JupyterServer, old: str, new: str, session_id: str | None = None) -> None:
    """Rename as JupyterLab does: the file through the contents API, then the session."""
    status, model, _ = server.request("PATCH", f"api/contents/{old}", {"path": new})
    assert status == 200, model
    if session_id is not None:
        body = {"path": new, "name": Path(new).name}
        status, model, _ = server.request("PATCH", f"api/sessions/{session_id}", body)
        assert status == 200, model


def finished_task(server: JupyterServer, client: Any, name: str) -> str:
    job_id = run(client, f"import raytha_nb as rnb\nprint(rnb.enqueue(lambda: 1, name={name!r}))")
    job_id = job_id.strip()
    server.wait_for(job_id, {"complete"}, 30)
    return job_id


def notebook_of(server: JupyterServer, job_id: str, expect: str, timeout: float = 10) -> None:
    """Wait until the task's stored notebook is ``expect`` (the service follows
    sessions once a second)."""
    deadline = time.monotonic() + timeout
    while (seen := server.task(job_id)["notebook"]) != expect:
        assert time.monotonic() < deadline, f"notebook is {seen!r}, expected {expect!r}"
        time.sleep(0.1)


def test_contents_path_is_relative_to_the_root() -> None:
    assert contents_path("/srv/nb/a/b.ipynb", "/srv/nb") == "a/b.ipynb"
    assert contents_path("/srv/nb/../nb/b.ipynb", "/srv/nb/") == "b.ipynb"
    assert contents_path("/elsewhere/b.ipynb", "/srv/nb") == "/elsewhere/b.ipynb"
    assert contents_path("already/relative.ipynb", "/srv/nb") == "already/relative.ipynb"
    assert contents_path(None, "/srv/nb") is None


def test_task_follows_rename_and_says_when_deleted(server: JupyterServer) -> None:
    path = new_notebook(server)
    assert path == "Untitled.ipynb"
    session_id, _, client = open_session(server, path)
    try:
        # The kernel says /abs/root/Untitled.ipynb (JPY_SESSION_NAME): stored relative.
        assert run(client, "import os; os.environ['JPY_SESSION_NAME']").strip("'").startswith("/")
        before = finished_task(server, client, "before-rename")
        assert server.task(before)["notebook"] == "Untitled.ipynb"
        assert server.get(f"{API}/tasks/{before}/notebook")["path"] == "Untitled.ipynb"

        rename(server, path, "analysis.ipynb", session_id)
        notebook_of(server, before, "analysis.ipynb")
        # A task started after the rename: the kernel still says Untitled.ipynb.
        after = finished_task(server, client, "after-rename")
        assert server.task(after)["notebook"] == "analysis.ipynb"
        # Listing by notebook finds both under the new name.
        listed = server.get(f"{API}/tasks?notebook=analysis.ipynb")["tasks"]
        assert {t["id"] for t in listed} >= {before, after}

        # A new Untitled.ipynb is another notebook: the old tasks do not point at it.
        other = new_notebook(server)
        assert other == "Untitled.ipynb"
        assert server.get(f"{API}/tasks/{before}/notebook")["path"] == "analysis.ipynb"
    finally:
        close_session(server, session_id, client)

    # Moved into a folder after its kernel is gone: the contents event moves its tasks.
    server.request("PUT", "api/contents/done", {"type": "directory"})
    rename(server, "analysis.ipynb", "done/analysis.ipynb")
    notebook_of(server, before, "done/analysis.ipynb", timeout=5)
    rename(server, "done", "archive")  # a folder's rename moves the notebooks in it
    notebook_of(server, after, "archive/analysis.ipynb", timeout=5)

    status, _, _ = server.request("DELETE", "api/contents/archive/analysis.ipynb")
    assert status == 204
    status, body, _ = server.request("GET", f"{API}/tasks/{before}/notebook")
    assert status == 410
    assert (
        "the notebook archive/analysis.ipynb was deleted or moved outside Jupyter"
        in (body["message"])
    )


def test_reused_name_never_opens_another_notebook(server: JupyterServer) -> None:
    server.request("PUT", "api/contents/reuse", {"type": "directory"})
    path = new_notebook(server, "reuse")
    session_id, _, client = open_session(server, path)
    try:
        old = finished_task(server, client, "in-the-first-untitled")
    finally:
        close_session(server, session_id, client)
    assert server.task(old)["notebook"] == "reuse/Untitled.ipynb"
    status, _, _ = server.request("DELETE", f"api/contents/{path}")
    assert status == 204
    again = new_notebook(server, "reuse")
    assert again == path  # the same name, another notebook
    status, body, _ = server.request("GET", f"{API}/tasks/{old}/notebook")
    assert status == 410, body
    assert f"the notebook {path} was deleted" in body["message"]
    # Renaming the new file does not carry the old task along.
    rename(server, again, "reuse/second.ipynb")
    time.sleep(0.5)
    assert server.task(old)["notebook"] == path

    # A new task in the new file with the same name is found.
    session_id, _, client = open_session(server, "reuse/second.ipynb")
    try:
        new = finished_task(server, client, "in-the-second")
    finally:
        close_session(server, session_id, client)
    assert server.get(f"{API}/tasks/{new}/notebook")["path"] == "reuse/second.ipynb"


def test_deleted_outside_jupyter_and_bad_requests(server: JupyterServer) -> None:
    path = new_notebook(server)
    session_id, _, client = open_session(server, path)
    try:
        job = finished_task(server, client, "outside")
    finally:
        close_session(server, session_id, client)
    (server.home / "notebooks" / path).unlink()  # a terminal's rm: no event
    status, body, _ = server.request("GET", f"{API}/tasks/{job}/notebook")
    assert status == 410
    assert f"the notebook {path} was deleted or moved outside Jupyter" in body["message"]

    # Jupyter's auth, like every user route: no token, no answer.
    unauthenticated = urllib.request.Request(f"{server.url}{API}/tasks/{job}/notebook")
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(unauthenticated, timeout=10)
    assert denied.value.code == 403

    status, body, _ = server.request("GET", f"{API}/tasks/not-a-uuid/notebook")
    assert status == 400 and "is not a task id" in body["message"]
    status, body, _ = server.request(
        "GET", f"{API}/tasks/0f8fad5b-d9cb-469f-a165-70867728950e/notebook"
    )
    assert status == 404 and "no task with id" in body["message"]
