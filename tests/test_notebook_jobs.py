"""Notebook jobs on a real jupyter server: a notebook run in a server worker with a fresh
kernel (nbclient), papermill's parameters, live progress per cell, the executed notebook
as its result; failing cells, cancel, retries, enqueue from a kernel, bad input, auth."""

from __future__ import annotations

import ast
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import nbformat
import pytest

from raytha_nb._identity import pid_alive

from ._server_helpers import JupyterServer, run, running_server, started_kernel

pytestmark = pytest.mark.timeout(240)

GRACE = 0.5
#: Seconds: a notebook job's timeout, long enough for its kernel to start on a busy box.
TIMEOUT = 8
PYTHON3 = {"name": "python3", "display_name": "Python 3", "language": "python"}
PARAMETERS = 'day: str = "2026-01-01"  # the day to report\nrepeat = 1\n'


def write_notebook(
    folder: Path, name: str, cells: list[str], *, parameters: str | None = None,
    kernelspec: dict[str, str] | None = PYTHON3,
) -> Path:  # fmt: skip
    """A notebook of code cells (the first tagged ``parameters`` if given)."""
    notebook = nbformat.v4.new_notebook()
    if kernelspec is not None:
        notebook.metadata["kernelspec"] = kernelspec
    if parameters is not None:
        cell = nbformat.v4.new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        notebook.cells.append(cell)
    notebook.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    home = tmp_path_factory.mktemp("notebook-jobs")
    options = (f"--RaythaNbApp.server_cancel_grace={GRACE}", "--RaythaNbApp.max_server_workers=2")
    with running_server(home, *options) as srv:
        yield srv


@pytest.fixture(scope="module")
def root(server: JupyterServer) -> Path:
    return server.home / "notebooks"


def start_job(server: JupyterServer, body: dict[str, Any]) -> dict[str, Any]:
    status, record, _ = server.request("POST", "raytha-nb/api/notebook-jobs", body)
    assert status == 201, record
    result: dict[str, Any] = record
    return result


def finished(server: JupyterServer, job: str, timeout: float = 90) -> dict[str, Any]:
    return server.wait_for(job, {"complete", "error", "cancelled", "interrupted"}, timeout)


def log_lines(server: JupyterServer, job: str) -> list[str]:
    return [line["text"] for line in server.get(f"raytha-nb/api/tasks/{job}/logs")["lines"]]


def test_a_parameterised_notebook_job_runs_with_live_progress_and_its_executed_copy(
    server: JupyterServer, root: Path
) -> None:
    cells = [
        'print(f"day={day} repeat={repeat}")',
        *["import time; time.sleep(0.3)"] * 6,
        "for i in range(repeat):\n    print(f'row {i}')",
        "{'total': repeat * 2}",
    ]
    write_notebook(root, "reports/daily.ipynb", cells, parameters=PARAMETERS)
    record = start_job(
        server, {"path": "reports/daily.ipynb", "parameters": {"day": "2026-12-01", "repeat": 3}}
    )
    assert (record["status"], record["name"], record["task"]) == (
        "enqueued",
        "daily",
        "reports/daily.ipynb",
    )
    assert record["executor"] == "server" and record["notebook"] == "reports/daily.ipynb"
    job = record["id"]
    percents: set[float] = set()
    infos: set[str] = set()
    while (record := server.task(job))["status"] in ("enqueued", "processing"):
        percents.add(record["percent_complete"])
        infos.add(record["status_info"] or "")
        time.sleep(0.05)
    assert record["status"] == "complete", (record["error_message"], record["traceback"])
    assert record["percent_complete"] == 100.0
    # 11 code cells: the parameters cell, papermill's injected one, and the 9 above.
    assert len({p for p in percents if 0 < p < 100}) >= 3, percents
    assert "cell 5 of 11: import time; time.sleep(0.3)" in infos, infos
    lines = log_lines(server, job)
    assert "day=2026-12-01 repeat=3" in lines
    assert lines[-4:] == ["row 0", "row 1", "row 2", "{'total': 6}"]
    result = server.get(f"raytha-nb/api/tasks/{job}/result")["value"]
    assert result["cells"] == 11
    assert result["notebook"].startswith("reports/daily.runs/") and result["notebook"].endswith(
        job[:8] + ".ipynb"
    )
    assert result["html"] == result["notebook"].removesuffix(".ipynb") + ".html"
    contents = server.get(f"api/contents/{quote(result['notebook'])}")
    assert contents["type"] == "notebook"
    executed = contents["content"]["cells"]
    assert executed[0]["metadata"]["tags"] == ["parameters"]
    assert executed[1]["metadata"]["tags"] == ["injected-parameters"]
    assert 'day = "2026-12-01"' in executed[1]["source"] and "repeat = 3" in executed[1]["source"]
    assert executed[2]["outputs"][0]["text"] == "day=2026-12-01 repeat=3\n"
    assert contents["content"]["metadata"]["papermill"]["parameters"] == {
        "day": "2026-12-01",
        "repeat": 3,
    }
    html = (root / result["html"]).read_text()
    assert "<html" in html and "day=2026-12-01 repeat=3" in html
    # The source notebook is untouched.
    assert len(nbformat.read(root / "reports/daily.ipynb", as_version=4).cells) == 10


def test_a_failing_cell_ends_the_job_error_naming_the_cell(
    server: JupyterServer, root: Path
) -> None:
    write_notebook(root, "fails.ipynb", ["x = 1", "y = x + 1", "1 / 0", "print('never')"])
    job = start_job(server, {"path": "fails.ipynb"})["id"]
    record = finished(server, job)
    assert record["status"] == "error", record
    assert record["error_type"] == "raytha_nb.errors.NotebookCellError"
    assert record["error_message"] == "cell 3 of 4 failed: ZeroDivisionError: division by zero"
    traceback = record["traceback"]
    assert "ZeroDivisionError" in traceback and "1 / 0" in traceback and "\x1b[" not in traceback
    assert "never" not in log_lines(server, job)
    # The executed notebook, with the error in it, is kept for a look.
    written = traceback.rsplit("The executed notebook: ", 1)[1].strip()
    assert written.startswith("fails.runs/")
    cells = nbformat.read(root / written, as_version=4).cells
    assert cells[2].outputs[0].ename == "ZeroDivisionError" and cells[3].outputs == []
    # Retry (the panel's button) runs it again on the server, from its stored body.
    status, reply, _ = server.request("POST", f"raytha-nb/api/tasks/{job}/retry", {})
    assert status == 202 and reply["ran_in"] == "server", reply
    again = finished(server, reply["id"])
    assert (again["status"], again["retry_of"], again["task"]) == ("error", job, "fails.ipynb")
    assert again["error_message"] == record["error_message"]


def kernel_pid(server: JupyterServer, job: str, timeout: float = 60) -> int:
    """The notebook kernel's PID, which its first cell prints (through the live log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log_lines(server, job):
            if line.startswith("kernel pid "):
                return int(line.removeprefix("kernel pid "))
        time.sleep(0.05)
    raise AssertionError(server.task(job))


@pytest.mark.parametrize("how", ["interrupted", "killed-after-grace", "timeout"])
def test_cancel_stops_a_long_cell_and_leaves_no_kernel(
    server: JupyterServer, root: Path, how: str
) -> None:
    stubborn = how != "interrupted"
    ignore = "signal.signal(signal.SIGINT, signal.SIG_IGN)\n" if stubborn else ""
    cell = (
        f"import os, signal, time\n{ignore}"
        "print(f'kernel pid {os.getpid()}', flush=True)\ntime.sleep(120)"
    )
    write_notebook(root, f"long-{how}.ipynb", ["x = 1", cell, "print('after')"])
    options = {"timeout": TIMEOUT} if how == "timeout" else {}
    job = start_job(server, {"path": f"long-{how}.ipynb", "options": options})["id"]
    pid = kernel_pid(server, job)  # printed while its cell still runs: output is live
    record = server.task(job)
    if how == "timeout":
        record = server.wait_for(job, {"error"}, TIMEOUT + 30)
        assert record["error_type"] == "raytha_nb.TaskTimeout", record
        assert record["error_message"] == f"ran longer than {TIMEOUT} s (timeout={TIMEOUT})"
    else:
        assert record["status"] == "processing"
        assert record["status_info"].startswith("cell 2 of 3: import os"), record
        assert pid_alive(pid)
        started = time.monotonic()
        status, _, _ = server.request("POST", f"raytha-nb/api/tasks/{job}/cancel", {})
        assert status == 200
        server.wait_for(job, {"cancelled"}, 15)
        assert time.monotonic() - started < GRACE + 10
    deadline = time.monotonic() + 10
    while pid_alive(pid):
        assert time.monotonic() < deadline, f"kernel {pid} still runs after the cancel"
        time.sleep(0.05)
    assert "after" not in log_lines(server, job)


def test_retries_apply_to_a_notebook_job(server: JupyterServer, root: Path) -> None:
    marker = root / "flaky.marker"
    cell = (
        f"import os\nif not os.path.exists({str(marker)!r}):\n"
        f"    open({str(marker)!r}, 'w').close()\n    raise RuntimeError('first attempt fails')"
    )
    write_notebook(root, "flaky.ipynb", [cell, "print('done')"])
    job = start_job(server, {"path": "flaky.ipynb", "options": {"retries": 1, "retry_delay": 0}})[
        "id"
    ]
    record = finished(server, job)
    assert record["status"] == "complete", (record["error_message"], record["traceback"])
    assert record["attempt"] == 2
    history = server.get(f"raytha-nb/api/tasks/{job}/history")
    text = json.dumps(history)
    assert "cell 1 of 2 failed: RuntimeError: first attempt fails" in text


def test_enqueue_a_notebook_from_a_kernel(server: JupyterServer, root: Path) -> None:
    write_notebook(root, "kernel/params.ipynb", ["print(f'day is {day}')"], parameters=PARAMETERS)
    write_notebook(root, "kernel/plain.ipynb", ["1"], kernelspec=None)
    setup = f"import os, raytha_nb as rnb; os.chdir({str(root)!r})"
    with started_kernel(server, setup) as (_, client):
        job = ast.literal_eval(
            run(client, "rnb.enqueue('kernel/params.ipynb', {'day': 'monday'}, executor='server')")
        )
        record = finished(server, job)
        assert record["status"] == "complete", (record["error_message"], record["traceback"])
        assert (record["task"], record["name"]) == ("kernel/params.ipynb", "params")
        result = ast.literal_eval(run(client, f"rnb.result({job!r})"))
        assert result["notebook"].startswith("kernel/params.runs/") and result["cells"] == 3
        assert "day is monday" in log_lines(server, job)
        errors = run(
            client,
            "for call in (lambda: rnb.enqueue('kernel/params.ipynb', {}, executor='thread'),\n"
            "             lambda: rnb.enqueue('kernel/nope.ipynb', executor='server'),\n"
            "             lambda: rnb.enqueue('kernel/plain.ipynb', executor='server'),\n"
            "             lambda: rnb.enqueue('kernel/params.ipynb', [1], executor='server')):\n"
            "    try:\n        call()\n    except ValueError as exc:\n        print(exc)",
        ).splitlines()
    assert errors[0].startswith("executor: a notebook (kernel/params.ipynb) runs as a notebook job")
    assert "pass executor='server'" in errors[0]
    assert errors[1].startswith("task: kernel/nope.ipynb does not exist")
    assert errors[2].startswith("task: kernel/plain.ipynb has no kernelspec")
    assert errors[3].startswith("parameters: give an object of parameter name -> value")


def test_bad_input_is_refused_before_anything_is_stored(server: JupyterServer, root: Path) -> None:
    write_notebook(root, "nokernel.ipynb", ["1"], kernelspec=None)
    write_notebook(
        root, "alien.ipynb", ["1"], kernelspec={"name": "no-such-kernel", "display_name": "x"}
    )
    write_notebook(root, "ok.ipynb", ["1"])
    (root / "notes.txt").write_text("not a notebook")
    before = server.get("raytha-nb/api/tasks?limit=1000")["total"]
    cases = [
        ({"path": "missing.ipynb"}, "path: missing.ipynb does not exist", 404),
        ({"path": "nokernel.ipynb"}, "path: nokernel.ipynb has no kernelspec"),
        (
            {"path": "alien.ipynb"},
            "path: alien.ipynb runs on kernel 'no-such-kernel', which is not installed",
        ),
        ({"path": "notes.txt"}, "path: notes.txt is not a notebook"),
        (
            {"path": "../outside.ipynb"},
            "path: ../outside.ipynb is outside the Jupyter server's root",
            404,
        ),
        ({}, "path: give the notebook's path"),
        ({"path": "ok.ipynb", "parameters": [1, 2]}, "parameters: give an object"),
        (
            {"path": "ok.ipynb", "parameters": {"not a name": 1}},
            "parameters: 'not a name' is not a valid",
        ),
        (
            {"path": "ok.ipynb", "options": {"executor": "thread"}},
            "options: unknown option 'executor'",
        ),
        (
            {"path": "ok.ipynb", "options": {"retries": -1}},
            "options: retries must be a whole number",
        ),
        ({"path": "ok.ipynb", "options": {"timeout": 0}}, "options: timeout must be"),
        ({"path": "ok.ipynb", "name": ""}, "name: give a non-empty string"),
        ({"path": "ok.ipynb", "kernel": "x"}, "kernel: unknown field"),
        ([1], "the body must be an object"),
    ]
    for body, message, *code in cases:
        status, error, _ = server.request("POST", "raytha-nb/api/notebook-jobs", body)
        assert status == (code[0] if code else 400), (body, error)
        assert error["message"].startswith(message), (body, error["message"])
    assert server.get("raytha-nb/api/tasks?limit=1000")["total"] == before


def test_the_parameters_of_a_notebook(server: JupyterServer, root: Path) -> None:
    write_notebook(root, "form.ipynb", ["print(day)"], parameters=PARAMETERS)
    write_notebook(root, "bare.ipynb", ["1"])
    found = server.get("raytha-nb/api/notebook-jobs/parameters?path=form.ipynb")
    assert found == {
        "path": "form.ipynb",
        "kernel": "python3",
        "parameters": [
            {"name": "day", "default": '"2026-01-01"', "type": "str", "help": "the day to report"},
            {"name": "repeat", "default": "1", "type": None, "help": ""},  # no annotation
        ],
    }
    assert server.get("raytha-nb/api/notebook-jobs/parameters?path=bare.ipynb")["parameters"] == []
    for query, message, code in [
        ("", "path: give", 400),
        ("?path=gone.ipynb", "path: gone.ipynb does not exist", 404),
    ]:
        status, error, _ = server.request("GET", f"raytha-nb/api/notebook-jobs/parameters{query}")
        assert status == code and error["message"].startswith(message), error


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "raytha-nb/api/notebook-jobs"),
        ("GET", "raytha-nb/api/notebook-jobs/parameters?path=ok.ipynb"),
    ],
)
def test_notebook_jobs_need_jupyter_auth(server: JupyterServer, method: str, path: str) -> None:
    data = b'{"path": "ok.ipynb"}' if method == "POST" else None
    request = urllib.request.Request(server.url + path, data=data, method=method)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code in (401, 403)
