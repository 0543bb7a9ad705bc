"""Scripts and terminals next to a running Jupyter server use its store through it
(no StoreLockedError); with no server they embed the store; only this user's private
runtime file is trusted, and nobody without the secret gets in."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from raytha_nb import _identity
from raytha_nb._client import RemoteBackend
from raytha_nb._manager import open_backend
from raytha_nb.backend import EmbeddedBackend
from raytha_nb.store import Store

from ._script_helpers import default_store, run_python, script_env, server_for_scripts
from ._server_helpers import JupyterServer, free_port

SCRIPT = textwrap.dedent(
    """
    import json, os, raytha_nb as rnb

    def job(n):
        print("working on", n)
        return {"n": n, "pid": os.getpid()}

    job_id = rnb.enqueue(job, {"n": 7})
    record = rnb.wait(job_id, timeout=30)
    listed = [t.id for t in rnb.list_tasks(limit=50)]
    backend = type(rnb.manager().backend).__name__
    print(json.dumps({"id": job_id, "status": record.status.value,
                      "listed": job_id in listed, "backend": backend,
                      "result": rnb.result(job_id)}))
    """
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[JupyterServer]:
    started = server_for_scripts(tmp_path / "home")
    yield started
    started.stop()


def _last_json(stdout: str) -> dict[str, object]:
    value: dict[str, object] = json.loads(stdout.strip().splitlines()[-1])
    return value


def test_a_script_uses_the_running_server(server: JupyterServer) -> None:
    done = run_python(SCRIPT, script_env(server.home))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    out = _last_json(done.stdout)
    assert out["backend"] == "RemoteBackend" and out["status"] == "complete" and out["listed"]
    # The server stored it, under the script's PID and no kernel id.
    record = server.task(str(out["id"]))
    assert record["status"] == "complete" and record["kernel_id"] is None
    assert record["pid"] == out["result"]["pid"]  # type: ignore[index]
    assert record["result"] == {"n": 7, "pid": record["pid"]}
    _, logs, _ = server.request("GET", f"raytha-nb/api/tasks/{out['id']}/logs")
    assert [line["text"] for line in logs["lines"]] == ["working on 7"]


def test_terminal_ipython_lists_through_the_server(server: JupyterServer) -> None:
    first = _last_json(run_python(SCRIPT, script_env(server.home)).stdout)
    code = "import raytha_nb as rnb; print([t.id for t in rnb.list_tasks()])"
    done = subprocess.run(
        [sys.executable, "-m", "IPython", "--quick", "--no-banner", "-c", code],
        env=script_env(server.home),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert str(first["id"]) in done.stdout
    assert "StoreLockedError" not in done.stdout + done.stderr


def test_without_a_server_a_script_embeds(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "runtime").mkdir(parents=True)
    done = run_python(SCRIPT, script_env(home))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    out = _last_json(done.stdout)
    assert out["backend"] == "EmbeddedBackend" and out["status"] == "complete"
    store = Store(default_store(home))
    try:
        stored = store.get(str(out["id"]))
        assert stored is not None and stored.result == out["result"]
    finally:
        store.close()


def test_explicit_db_embeds_and_says_which_server_holds_it(server: JupyterServer) -> None:
    env = script_env(server.home, RAYTHA_NB_DB=str(server.db))
    done = run_python("import raytha_nb as rnb; rnb.list_tasks()", env)
    assert done.returncode == 1
    assert "StoreLockedError" in done.stderr
    assert f"A Jupyter server (PID {server.proc.pid}) holds this store" in done.stderr
    assert "unset RAYTHA_NB_DB" in done.stderr


def test_the_runtime_file_is_private_and_names_the_store(server: JupyterServer) -> None:
    file = server.home / "runtime" / f"raytha_nb-{server.proc.pid}.json"
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    data = json.loads(file.read_text())
    assert Path(data["store"]) == server.db.resolve()
    # Only this one key is new: kernels must not inherit RAYTHA_NB_DB.
    assert set(data) == {"RAYTHA_NB_URL", "RAYTHA_NB_TOKEN", "RAYTHA_NB_RESULTS", "store"}


def _plant(runtime: Path, data: dict[str, str], pid: int, mode: int = 0o600) -> Path:
    runtime.mkdir(parents=True, exist_ok=True)
    file = runtime / f"raytha_nb-{pid}.json"
    file.write_text(json.dumps(data))
    file.chmod(mode)
    return file


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("RAYTHA_NB_URL", "RAYTHA_NB_TOKEN", "RAYTHA_NB_RESULTS", "RAYTHA_NB_DB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "runtime"


def _values(store: Path, url: str = "http://127.0.0.1:9/") -> dict[str, str]:
    return {
        "RAYTHA_NB_URL": url,
        "RAYTHA_NB_TOKEN": "secret",
        "RAYTHA_NB_RESULTS": "/r",
        "store": str(store),
    }


def test_only_private_files_of_live_servers_for_this_store_count(runtime: Path) -> None:
    store = _identity.default_db_path()
    # This test process stands in for a live server PID; PID 1 is alive too.
    live = os.getpid()
    file = _plant(runtime, _values(store), live)
    found = _identity.discover()
    assert found == _identity.ServerAddress("http://127.0.0.1:9/", "secret", "/r", live)
    file.chmod(0o644)  # others could read the secret: not trusted
    assert _identity.discover() is None
    file.chmod(0o600)
    assert _identity.find_server(runtime.parent / "other.duckdb") is None  # another store
    file.unlink()
    _plant(runtime, _values(store), 2**22 + 7)  # no such process: a dead server's file
    assert _identity.discover() is None
    link = runtime / f"raytha_nb-{live}.json"
    target = _plant(runtime.parent / "elsewhere", _values(store), 1)
    link.symlink_to(target)  # a symlink is not followed
    assert _identity.discover() is None
    link.unlink()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to make a file another user owns")
def test_a_file_another_user_owns_is_not_trusted(runtime: Path) -> None:
    file = _plant(runtime, _values(_identity.default_db_path()), os.getpid())
    os.chown(file, 65534, 65534)  # nobody
    assert _identity.discover() is None


def test_a_stale_file_of_a_reused_pid_falls_back_to_embedded(runtime: Path) -> None:
    # A live PID (this process) but nothing listens at the URL: embed instead.
    store = _identity.default_db_path()
    _plant(runtime, _values(store, f"http://127.0.0.1:{free_port()}/"), os.getpid())
    backend = open_backend()
    try:
        assert isinstance(backend, EmbeddedBackend)
    finally:
        backend.close()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run a process as another user")
def test_another_user_finds_nothing_and_is_refused(
    server: JupyterServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The other user shares the runtime dir (as a careless JUPYTER_RUNTIME_DIR=/tmp would).
    runtime = server.home / "runtime"
    mode = stat.S_IMODE(runtime.stat().st_mode)
    runtime.chmod(0o755)
    for name, value in script_env(server.home).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("RAYTHA_NB_DB", raising=False)
    assert _identity.discover() is not None  # this user finds it
    read, write = os.pipe()
    child = os.fork()  # the venv's python is not executable by others: fork and drop root
    if child == 0:
        try:
            os.setgid(65534)
            os.setuid(65534)  # nobody
            os.write(write, b"found" if _identity.discover() is not None else b"none")
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    runtime.chmod(mode)
    assert os.read(read, 100) == b"none"
    os.close(read)
    # Without the secret and without a Jupyter token: both APIs refuse.
    for path in ("raytha-nb/kernel-api/tasks", "raytha-nb/api/tasks"):
        request = urllib.request.Request(server.url + path)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 403, path
    # The Jupyter token does not open the kernel API, nor does a wrong secret.
    for token in (server.token, "not-the-secret"):
        assert not RemoteBackend(_identity.ServerAddress(server.url, token, None)).ping()


HEADLESS = textwrap.dedent(
    """
    import json, nbformat
    from nbclient import NotebookClient

    cell = (
        "import raytha_nb as rnb\\n"
        "job = rnb.enqueue(lambda: 6 * 7)\\n"
        "print(job, rnb.wait(job, timeout=30).status.value, type(rnb.manager().backend).__name__)"
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
    NotebookClient(nb, timeout=60, kernel_name="python3").execute()
    print(json.dumps(nb.cells[0].outputs[0]["text"].split()))
    """
)


def test_a_headless_kernel_uses_the_running_server(server: JupyterServer) -> None:
    # nbclient (as nbconvert and papermill) starts its own kernel: not one of the server's.
    done = run_python(HEADLESS, script_env(server.home), timeout=120)
    assert done.returncode == 0, done.stderr
    job_id, status, backend = json.loads(done.stdout.strip().splitlines()[-1])
    assert (status, backend) == ("complete", "RemoteBackend")
    assert server.task(job_id)["result"] == 42
