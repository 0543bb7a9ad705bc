"""Notebook jobs: a whole notebook run as an ``executor="server"`` task.

The task body is :func:`run_notebook`, importable (so it pickles by reference and
``rnb.retry`` finds it by its ``ref``): a fresh kernel of the notebook's kernelspec
(nbclient), papermill's parameter injection, progress per code cell, the kernel's
output in the task's log, and the executed notebook (plus an HTML copy) written
beside the notebook as the result. :func:`check_notebook` refuses a bad path before
anything is stored; :func:`notebook_server_task` is what REST and the scheduler submit.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cloudpickle

from ._jsonable import to_jsonable
from ._options import TaskOptions
from .context import TaskContext, current
from .errors import NotebookCellError, NotebookNotFound, TaskCancelled
from .protocol import ServerTask

#: ``module:qualname`` of the body: a re-run (``rnb.retry``) imports it by this.
REF = "raytha_nb._notebook_job:run_notebook"
SUFFIX = ".ipynb"
#: Options a notebook job may be given over REST or by a schedule.
OPTIONS = ("retries", "retry_delay", "timeout", "limit")
MAX_RETRIES = 1000
#: Seconds between looks at the cancel flag while a cell runs.
_WATCH = 0.05
_INSTALL = "pip install 'raytha-nb[notebook-jobs]'"
#: Set by the server for a spare worker once notebook jobs run there: see preload().
PRELOAD_ENV = "RAYTHA_NB_PRELOAD_NOTEBOOK_JOBS"


@dataclass(frozen=True)
class NotebookInfo:
    """A notebook found and readable, with the kernel it names."""

    path: Path  # absolute
    kernel: str
    notebook: Any  # nbformat.NotebookNode, as read


def is_notebook_path(task: Any) -> bool:
    """Whether ``enqueue``'s ``task`` names a notebook (a str ending in .ipynb)."""
    return isinstance(task, str) and task.lower().endswith(SUFFIX)


def check_notebook(
    path: Any, *, root_dir: str | os.PathLike[str] | None = None, field: str = "task"
) -> NotebookInfo:
    """The notebook at ``path`` (relative to ``root_dir``, and kept inside it, when
    given; else to the current directory), or ``ValueError`` naming ``field``."""
    if not isinstance(path, str) or not path.strip():
        raise ValueError(
            f"{field}: give the notebook's path as a string ending in .ipynb, not {path!r}"
        )
    if not is_notebook_path(path):
        raise ValueError(
            f"{field}: {path} is not a notebook: a notebook job's path ends in .ipynb "
            "(for a function, enqueue the function itself)"
        )
    base = Path(root_dir) if root_dir is not None else Path.cwd()
    try:
        full = (base / path).resolve()
        found = full.is_file()
    except (OSError, ValueError) as exc:  # a NUL byte, a name too long
        raise ValueError(f"{field}: {path!r} is not a usable file path: {exc}") from None
    if root_dir is not None and not full.is_relative_to(base.resolve()):
        raise NotebookNotFound(
            f"{field}: {path} is outside the Jupyter server's root directory; give a path "
            "relative to it, as the file browser shows it"
        )
    if not found:
        where = "the server root" if root_dir is not None else f"this directory ({base})"
        raise NotebookNotFound(
            f"{field}: {path} does not exist (looked for {full}); give the notebook's path "
            f"relative to {where}"
        )
    import nbformat  # here: importing it costs a kernel's start a second

    try:
        notebook = nbformat.read(full, as_version=4)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same bad input
        raise ValueError(f"{field}: {path} is not a readable notebook: {exc}") from None
    spec = notebook.metadata.get("kernelspec") or {}
    kernel = spec.get("name") if isinstance(spec, Mapping) else None
    if not isinstance(kernel, str) or not kernel:
        raise ValueError(
            f"{field}: {path} has no kernelspec (metadata.kernelspec.name): open it in "
            "Jupyter, choose its kernel and save it"
        )
    _check_kernel(kernel, path, field)
    return NotebookInfo(full, kernel, notebook)


def _check_kernel(kernel: str, path: str, field: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(kernel)
    except NoSuchKernel:
        known = ", ".join(sorted(KernelSpecManager().find_kernel_specs())) or "none"
        raise ValueError(
            f"{field}: {path} runs on kernel {kernel!r}, which is not installed here "
            f"(installed: {known}); install it or choose another kernel in the notebook"
        ) from None


def check_parameters(parameters: Any) -> dict[str, Any]:
    """The parameters as JSON (a dict of name -> value), or ``ValueError`` saying why."""
    if parameters is None:
        return {}
    if not isinstance(parameters, Mapping) or not all(isinstance(k, str) for k in parameters):
        raise ValueError(
            f"parameters: give an object of parameter name -> value, not {parameters!r}"
        )
    for key in parameters:
        if not key.isidentifier():
            raise ValueError(f"parameters: {key!r} is not a valid parameter (variable) name")
    plain: dict[str, Any] = to_jsonable(dict(parameters))
    return plain


def task_options(options: Any, schedule_id: str | None = None) -> TaskOptions:
    """A notebook job's run options (``retries``, ``retry_delay``, ``timeout``,
    ``limit``), checked; ``ValueError`` naming the bad one."""
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise ValueError(f"options: give an object such as {{'retries': 1}}, not {options!r}")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(
            f"options: unknown option {unknown[0]!r}; a notebook job takes {', '.join(OPTIONS)}"
        )
    retries = options.get("retries")
    if isinstance(retries, int) and retries > MAX_RETRIES:
        raise ValueError(f"options: retries must be at most {MAX_RETRIES}, not {retries}")
    try:
        return TaskOptions().merged(executor="server", ref=REF, schedule_id=schedule_id, **options)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"options: {exc}") from None


def notebook_server_task(
    path: Any,
    parameters: Any = None,
    *,
    name: Any = None,
    options: Any = None,
    root_dir: str | os.PathLike[str],
    python: str = sys.executable,
    schedule_id: str | None = None,
) -> tuple[ServerTask, bytes]:
    """The server task that runs the notebook at ``path`` (a contents path under
    ``root_dir``) and its body, for ``ServerWorkers.submit`` (a run of ``schedule_id``,
    if given); ``ValueError`` naming the field (``path``, ``parameters``, ``name``,
    ``options``) before anything exists."""
    info = check_notebook(path, root_dir=root_dir, field="path")
    params = check_parameters(parameters)
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ValueError(f"name: give a non-empty string, not {name!r}")
    checked = task_options(options, schedule_id)
    contents = info.path.relative_to(Path(root_dir).resolve()).as_posix()
    spec = ServerTask(
        str(uuid.uuid4()), name or info.path.stem, contents,
        {"path": str(info.path), "parameters": params}, python, str(info.path.parent),
        (), contents, time.time(), {}, checked.to_json(everything=True),
    )  # fmt: skip
    return spec, body_payload()


@functools.cache
def body_payload() -> bytes:
    """The pickled body every notebook job shares (by reference: it is importable)."""
    payload: bytes = cloudpickle.dumps(notebook_body)
    return payload


def notebook_body(ctx: TaskContext) -> dict[str, Any]:
    """The body a server worker calls: :func:`run_notebook` with the task's args."""
    return run_notebook(**ctx.args)


def as_contents_task(spec: ServerTask, root: str | None) -> ServerTask:
    """A notebook job a kernel handed over names its notebook by absolute path (the
    kernel does not know the server's root): the server names it as the contents API
    does, so the job's ``task`` and result paths open in Lab."""
    if not root or not os.path.isabs(spec.task) or not is_notebook_path(spec.task):
        return spec
    try:
        relative = Path(os.path.normpath(spec.task)).relative_to(Path(os.path.normpath(root)))
    except ValueError:
        return spec
    return replace(spec, task=relative.as_posix())


def notebook_parameters(info: NotebookInfo) -> list[dict[str, Any]]:
    """The parameters of the notebook's ``parameters`` cell, as papermill infers them:
    ``[{"name", "default" (source text), "type" (or None), "help"}]``."""
    inspection = _papermill("inspection")
    found = inspection.inspect_notebook(str(info.path))
    return [
        {
            "name": p["name"],
            "default": p["default"],
            "type": None if p["inferred_type_name"] in ("None", None) else p["inferred_type_name"],
            "help": p["help"] or "",
        }
        for p in found.values()
    ]


def _papermill(module: str) -> Any:
    """A papermill module, or a clear error naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(f"papermill.{module}")
    except ImportError as exc:
        raise RuntimeError(
            f"notebook jobs need papermill and nbclient ({exc}): {_INSTALL}"
        ) from None


def parameterized(info: NotebookInfo, parameters: dict[str, Any]) -> Any:
    """The notebook as papermill loads it (its metadata added) with ``parameters``
    injected after its ``parameters`` cell as papermill does it (a cell tagged
    ``injected-parameters``; none when there are no parameters, as in papermill)."""
    notebook = _papermill("iorw").load_notebook_node(str(info.path))
    if not parameters:
        return notebook
    language = (notebook.metadata.get("kernelspec") or {}).get("language")
    return _papermill("parameterize").parameterize_notebook(
        notebook, parameters, kernel_name=info.kernel, language=language
    )


def run_notebook(path: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """Execute the notebook at ``path`` with ``parameters`` in a fresh kernel; return
    ``{"notebook", "html", "cells"}`` (the executed copy and its HTML, beside it)."""
    ctx = current()
    info = check_notebook(path)  # again here: the file may have changed since enqueue
    notebook = parameterized(info, parameters or {})
    job = _Job(info, notebook, ctx)
    try:
        job.run()
    except NotebookCellError as exc:
        written = job.write()
        exc.add_note(f"The executed notebook: {written['notebook']}")
        raise
    return {**job.write(), "cells": job.total}


class _Job:
    """One run of a notebook: its kernel, its progress, its output files."""

    def __init__(self, info: NotebookInfo, notebook: Any, ctx: TaskContext | None) -> None:
        self.info = info
        self.notebook = notebook
        self.ctx = ctx
        self.code = [i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
        self.total = len(self.code)
        self._done = threading.Event()
        self._pgid: int | None = None
        self._process: Any = None  # the kernel's Popen

    def run(self) -> None:
        nbclient = _nbclient()
        client = _client_class(nbclient)(
            self.notebook, kernel_name=self.info.kernel, timeout=None,
            resources={"metadata": {"path": str(self.info.path.parent)}},
        )  # fmt: skip
        client.job = self
        watcher = threading.Thread(target=self._watch, name="raytha-nb-notebook", daemon=True)
        try:
            with client.setup_kernel():
                self._process = getattr(client.km.provisioner, "process", None)
                self._pgid = getattr(client.km.provisioner, "pgid", None)
                watcher.start()
                try:
                    for number, index in enumerate(self.code, 1):
                        self._cell(client, nbclient, number, index)
                except BaseException:
                    if self._cancelled():  # stopped, or forced: no kernel left behind
                        self._kill()
                    raise
        except BaseException:
            # Cancelled (or timed out): whatever nbclient raised on the way out (a dead
            # kernel, a loop the forced exception left running) is that cancel.
            if self._cancelled():
                raise TaskCancelled(self._id()) from None
            raise
        finally:
            self._done.set()
            self._kill()  # a cancel forced mid-call may have skipped nbclient's cleanup
        self._report(100.0, f"{self.total} cells run", self.total)

    def _cell(self, client: Any, nbclient: Any, number: int, index: int) -> None:
        cell = self.notebook.cells[index]
        if self._cancelled():
            raise TaskCancelled(self._id())
        first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
        self._report(
            100.0 * (number - 1) / self.total,
            f"cell {number} of {self.total}: {first}"[:200],
            number,
        )
        try:
            client.execute_cell(cell, index)
        except nbclient.exceptions.CellExecutionError as exc:
            if self._cancelled():
                raise TaskCancelled(self._id()) from None
            error = NotebookCellError(
                f"cell {number} of {self.total} failed: {exc.ename}: {exc.evalue}"
            )
            error.add_note(_strip_ansi(exc.traceback))
            raise error from None
        finally:
            client.job_flush()

    def _watch(self) -> None:
        """Interrupt the kernel when the task is asked to stop (its thread is forced
        after the grace period, and the kernel killed then, in ``run``'s cleanup)."""
        while not self._done.wait(_WATCH):
            if self._cancelled():
                self._signal(signal.SIGINT)
                return

    def _signal(self, signum: int) -> None:
        # Only while the kernel runs (not yet reaped): its group id cannot be reused.
        if self._pgid is not None and self._process is not None and self._process.poll() is None:
            try:
                os.killpg(self._pgid, signum)
            except (ProcessLookupError, PermissionError):
                pass

    def _kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _cancelled(self) -> bool:
        return self.ctx is not None and self.ctx.cancelled

    def _id(self) -> str:
        return "" if self.ctx is None else self.ctx.job_id

    def _report(self, percent: float, info: str, step: int) -> None:
        if self.ctx is not None:
            self.ctx.report(percent, info, step)

    def log(self, stream: str, text: str) -> None:
        if self.ctx is None:
            print(text, file=sys.stderr if stream == "stderr" else sys.stdout)
        else:
            self.ctx.log(text, stream)

    def write(self) -> dict[str, str]:
        """Write the executed notebook and its HTML beside the notebook (in
        ``<stem>.runs/``); their paths as the contents API names them when the task
        names the notebook by its contents path, else absolute."""
        folder = self.info.path.parent / f"{self.info.path.stem}.runs"
        folder.mkdir(exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        base = folder / f"{stamp}-{self._id()[:8] or uuid.uuid4().hex[:8]}"
        ipynb, html = base.with_suffix(SUFFIX), base.with_suffix(".html")
        import nbformat

        nbformat.write(self.notebook, ipynb)
        body, _ = _exporter().from_notebook_node(self.notebook)
        html.write_text(body, encoding="utf-8")
        return {"notebook": self._shown(ipynb), "html": self._shown(html)}

    def _shown(self, path: Path) -> str:
        task = None if self.ctx is None else self.ctx.task
        if task and not os.path.isabs(task):
            parts = Path(task).parts
            if self.info.path.parts[-len(parts) :] == parts:
                root = Path(*self.info.path.parts[: -len(parts)])
                return path.relative_to(root).as_posix()
        return str(path)


def _nbclient() -> Any:
    try:
        import nbclient
        import nbclient.exceptions
    except ImportError as exc:
        raise RuntimeError(f"notebook jobs need nbclient ({exc}): {_INSTALL}") from None
    return nbclient


@functools.cache
def _client_class(nbclient: Any) -> Any:
    """nbclient's client, with the kernel's output going to the task's log as it comes
    (each output message), not only when its cell ends."""

    class Client(nbclient.NotebookClient):  # type: ignore[misc, name-defined]
        job: _Job
        _partial: dict[str, str]

        def output(self, outs: Any, msg: dict[str, Any], display_id: Any, cell_index: int) -> Any:
            out = super().output(outs, msg, display_id, cell_index)
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                self._stream(content.get("name", "stdout"), content.get("text", ""))
            elif kind == "error":
                self.job.log("stderr", _strip_ansi("\n".join(content.get("traceback", []))))
            elif kind in ("execute_result", "display_data"):
                text = content.get("data", {}).get("text/plain")
                if text:
                    self.job.log("stdout", text)
            return out

        def _stream(self, name: str, text: str) -> None:
            if not hasattr(self, "_partial"):
                self._partial = {}
            *lines, rest = (self._partial.pop(name, "") + text).split("\n")
            for line in lines:
                self.job.log(name, line)
            if rest:
                self._partial[name] = rest

        def job_flush(self) -> None:
            """A cell's last, unfinished line of output goes to the log as it ends."""
            for name, rest in getattr(self, "_partial", {}).items():
                self.job.log(name, rest)
            self._partial = {}

    return Client


def preload() -> None:
    """Import (and warm) what a notebook job needs, in a spare server worker before its
    task comes: nbformat's schema checks alone can take seconds to import."""
    try:
        import nbformat

        _nbclient()
        _papermill("iorw")
        _papermill("parameterize")
        _exporter().from_notebook_node(nbformat.v4.new_notebook())  # compiles templates
    except (ImportError, RuntimeError):
        pass  # not installed: a notebook job will say so


@functools.cache
def _exporter() -> Any:
    """One HTML exporter per process (its templates are compiled on first use)."""
    from nbconvert import HTMLExporter

    return HTMLExporter()


def _strip_ansi(text: str) -> str:
    from nbconvert.filters import strip_ansi

    return str(strip_ansi(text))
