"""IPython magics: ``%%background`` runs a cell as a task, ``%jobs`` lists and controls tasks.

``%load_ext raytha_nb`` registers them; so does ``import raytha_nb`` inside IPython.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import inspect
import keyword
import os
import shlex
import sys
from types import CodeType
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display

from . import _cell_process, _kernel_io, _terminal, _text, _tqdm
from ._manager import manager
from .api import cancel, get_task, list_tasks, submit, wait
from .context import TaskContext
from .errors import TaskFailed, TaskNotFound
from .model import ACTIVE, TaskRecord, TaskStatus
from .widgets import show

#: GIL switch interval in kernels (s): keeps cells responsive next to CPU-bound tasks.
_SWITCH_INTERVAL = 0.001

#: At most this many end lines after ``%jobs wait --all`` (the newest tasks).
_WAIT_LINES = 20

#: Task name users see for an unnamed cell: its first line, cut to this length.
_NAME_CHARS = 48


@magics_class
class BackgroundMagics(Magics):  # type: ignore[misc]
    """``%%background`` and ``%jobs``."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        #: identity (name or cell id) -> job id of the last task started for it.
        self._started: dict[str, str] = {}

    @magic_arguments()
    @argument("--name", help="the task's name and identity (default: the notebook cell)")
    @argument(
        "--replace", action="store_true", help="cancel a running task of this cell and restart"
    )
    @argument("--result", metavar="VAR", help="also assign the last expression's value to VAR")
    @argument("--no-widget", action="store_true", help="print one line instead of the widget")
    @argument(
        "--executor",
        default="thread",
        help="'thread' (default: in this namespace), 'process', 'dask' or 'server' (a "
        "worker process, Dask worker or server worker: the names the cell reads are copied "
        "in, those it assigns copied back when it ends)",
    )
    @cell_magic
    def background(self, line: str, cell: str) -> None:
        """Run the cell as a background task in this notebook's namespace.

        The cell returns at once and shows a live progress widget; the last expression
        is the task's result. Re-running the cell while its task runs shows that task
        again instead of starting a duplicate (``--replace`` restarts it).
        """
        opts = parse_argstring(self.background, line)
        result_var = opts.result
        if result_var is not None and (
            not result_var.isidentifier() or keyword.iskeyword(result_var)
        ):
            raise UsageError(f"--result needs a Python variable name, not {result_var!r}")
        if not cell.strip():
            raise UsageError("%%background needs code in the cell body below the magic line")
        code = _compile_cell(self.shell, cell, f"%%background {line}".rstrip())
        cell_id = _kernel_io.current_cell_id(self.shell)
        name = opts.name or _default_name(cell)
        identity = opts.name or (
            f"cell:{cell_id}" if cell_id else "code:" + hashlib.sha256(cell.encode()).hexdigest()
        )
        running = self._running(identity)
        if running is not None:
            if not opts.replace:
                print(
                    f"{running.name!r} is still running (job {running.id}), so it was not "
                    "started again; showing it. Use %%background --replace to restart it."
                )
                self._show(running.id, opts.no_widget)
                return
            cancel(running.id)
        shell: Any = self.shell
        args = {"code": cell, "cell_id": cell_id}
        if opts.executor == "thread":
            body = _body(shell.user_ns, code, result_var)
            job_id = submit(body, name=name, task="%%background", args=args)
        else:
            job_id = _cell_process.submit_cell(
                shell, (code.body, code.last, code.tree), _run, result_var, opts.executor,
                name=name, args=args,
            )  # fmt: skip
        self._started[identity] = job_id
        self._show(job_id, opts.no_widget)

    def _running(self, identity: str) -> TaskRecord | None:
        job_id = self._started.get(identity)
        if job_id is None:
            return None
        try:
            record = get_task(job_id)
        except TaskNotFound:
            return None
        return record if record.status in ACTIVE else None

    def _show(self, job_id: str, no_widget: bool) -> None:
        if no_widget and not _terminal.in_terminal(self.shell):
            print(_text.summary(get_task(job_id)))
            return
        show(job_id)  # in terminal IPython: a line now and one when it ends

    @line_magic
    def jobs(self, line: str) -> None:
        """``%jobs [--all] [--limit N]`` lists tasks (this kernel's by default);
        ``%jobs cancel ID|NAME`` cancels one; ``%jobs show ID|NAME`` shows its widget;
        ``%jobs wait [--traceback] ID|NAME`` blocks until it ends and says how;
        ``%jobs wait --all [--timeout S]`` waits for all of this kernel's tasks and fails
        the cell (``TaskFailed``) if any failed. The notebook's stop button or Ctrl+C
        stops the waiting, not the task."""
        __tracebackhide__ = True  # a failed wait shows TaskFailed, not this frame
        try:
            words = shlex.split(line)
        except ValueError as exc:  # e.g. an unbalanced quote
            raise UsageError(f"%jobs could not read {line!r}: {exc}") from None
        if words and words[0] == "wait":
            _wait(words[1:])
            return
        if words and words[0] in ("cancel", "show"):
            if len(words) != 2:
                raise UsageError(f"usage: %jobs {words[0]} ID|NAME (one task)")
            record = _find(words[1])
            if words[0] == "show":
                self._show(record.id, no_widget=False)
            elif cancel(record.id):
                print(f"cancel requested for {record.name!r} (job {record.id})")
            else:
                print(f"{record.name!r} (job {record.id}) already ended: {record.status.value}")
            return
        everything, limit = _list_options(words)
        display(JobsTable(_listed(everything, limit), everything))


_WAIT_USAGE = "usage: %jobs wait [--traceback] ID|NAME, or %jobs wait --all [--timeout S]"


def _wait(words: list[str]) -> None:
    """``%jobs wait``: a live bar on a terminal, then how the task(s) ended."""
    __tracebackhide__ = True
    everything, traceback, timeout, keys = False, False, None, []
    rest = iter(words)
    for word in rest:
        if word == "--all":
            everything = True
        elif word == "--traceback":
            traceback = True
        elif word == "--timeout":
            value = next(rest, "")
            try:
                timeout = float(value)
            except ValueError:
                raise UsageError(f"--timeout needs a number of seconds, not {value!r}") from None
        elif word.startswith("--"):
            raise UsageError(f"%jobs wait does not understand {word!r}; {_WAIT_USAGE}")
        else:
            keys.append(word)
    if everything == bool(keys) or len(keys) > 1:
        raise UsageError(_WAIT_USAGE)
    if everything:
        _wait_all(timeout, traceback)
        return
    record = _find(keys[0])
    try:
        with _terminal.bar(lambda: [get_task(record.id)]):
            done = wait(record.id, timeout)
    except KeyboardInterrupt:
        print(f"stopped waiting; the task keeps running (%jobs cancel {record.id[:8]} stops it)")
        return
    _terminal.watcher.claim(record.id)
    print(_terminal.outcome(done, traceback))


def _wait_all(timeout: float | None, traceback: bool) -> None:
    """``%jobs wait --all``: ``wait_all()`` with a bar, then each task's end line."""
    __tracebackhide__ = True
    mgr = manager()

    def unfinished() -> list[TaskRecord]:
        return [t.snapshot() for t in mgr.unwaited() if not t.status.finished]

    try:
        with _terminal.bar(unfinished):
            records = mgr.wait_all(timeout)
    except KeyboardInterrupt:
        print("stopped waiting; the tasks keep running (%jobs lists them)")
        return
    except TaskFailed as exc:
        for r in exc.records:
            _terminal.watcher.claim(r.id)
        raise
    if not records:
        print("nothing to wait for: no task started since the last %jobs wait --all")
        return
    for r in records:
        _terminal.watcher.claim(r.id)
    shown = records[-_WAIT_LINES:]
    if len(records) > len(shown):
        print(f"... {len(records) - len(shown)} earlier tasks")
    for r in shown:
        print(_terminal.outcome(r, traceback))


def _list_options(words: list[str]) -> tuple[bool, int]:
    everything, limit = False, 50
    rest = iter(words)
    for word in rest:
        if word == "--all":
            everything = True
        elif word == "--limit":
            value = next(rest, "")
            if not value.isdigit() or int(value) < 1:
                raise UsageError(f"--limit needs a positive whole number, not {value!r}")
            limit = int(value)
        else:
            raise UsageError(
                f"%jobs does not understand {word!r}; use %jobs [--all] [--limit N], "
                "%jobs cancel|show|wait ID|NAME"
            )
    return everything, limit


def _listed(everything: bool, limit: int | None) -> list[TaskRecord]:
    """The tasks ``%jobs`` lists: a map's group once, not each of its children."""
    if everything:
        return list_tasks(limit=limit, grouped=False)
    kernel_id = manager().kernel_id
    if kernel_id is not None:
        return list_tasks(limit=limit, kernel_id=kernel_id, grouped=False)
    pid = os.getpid()  # not a Jupyter kernel: this process's tasks
    return [r for r in list_tasks(limit=None, grouped=False) if r.pid == pid][:limit]


def _find(key: str) -> TaskRecord:
    """A task by name (the newest, live first), id, or id prefix (as ``%jobs`` shows it).

    Names first: a name that happens to look like the start of an id still means the
    task the user named."""
    by_name = list_tasks(name=key, limit=None)
    if by_name:
        live = [r for r in by_name if r.status in ACTIVE]
        return (live or by_name)[0]
    try:
        return get_task(key)
    except TaskNotFound:
        pass
    by_prefix = [r for r in list_tasks(limit=None) if r.id.startswith(key)]
    if len(by_prefix) == 1:
        return by_prefix[0]
    if len(by_prefix) > 1:
        raise UsageError(f"{key!r} starts {len(by_prefix)} task ids; give more of the id")
    raise UsageError(f"no task has the id or name {key!r}; %jobs --all lists every task")


def _info(record: TaskRecord) -> str:
    """The info column: what the task said, or for a failed one its error."""
    if record.status is TaskStatus.ERROR and record.error_type:
        error = f"{record.error_type}: {record.error_message or ''}".rstrip(": ")
        return f"{record.status_info} - {error}" if record.status_info else error
    return record.status_info or ""


class JobsTable:
    """What ``%jobs`` shows: an HTML table with bars, and a text form."""

    def __init__(self, records: list[TaskRecord], everything: bool = False) -> None:
        self.records = records
        self.scope = "all tasks in the store" if everything else "this kernel's tasks"

    def _rows(self) -> list[tuple[str, ...]]:
        return [
            (
                r.id[:8], r.name, r.status.value, f"{r.percent_complete:.0f}%",
                str(r.task_step or ""), _info(r), _text.started(r),
                _text.duration(r.duration),
            )
            for r in self.records
        ]  # fmt: skip

    def __repr__(self) -> str:
        if not self.records:
            return f"no tasks ({self.scope}; %jobs --all for every task)"
        head = ("id", "name", "status", "done", "step", "info", "started", "duration")
        rows = [head, *self._rows()]
        widths = [min(max(len(row[i]) for row in rows), 40) for i in range(len(head))]
        lines = ["  ".join(cell[:40].ljust(w) for cell, w in zip(row, widths)) for row in rows]
        return "\n".join(line.rstrip() for line in lines)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))

    def _repr_html_(self) -> str:
        if not self.records:
            return f"<i>{_text.esc(repr(self))}</i>"
        cells = []
        for r, row in zip(self.records, self._rows()):
            colour = _text.STATUS_COLOURS[r.status]
            bar = (
                '<div style="width:8em;height:.8em;background:#e0e0e0;display:inline-block;'
                f'vertical-align:middle"><div style="width:{r.percent_complete:.1f}%;'
                f'height:100%;background:{colour}"></div></div> {row[3]}'
            )
            status = f'<span style="color:{colour};font-weight:600">{row[2]}</span>'
            values = [f"<code>{row[0]}</code>", _text.esc(row[1]), status, bar]
            values += [_text.esc(v) for v in row[4:]]
            cells.append("<tr>" + "".join(f"<td>{v}</td>" for v in values) + "</tr>")
        head = "".join(
            f"<th>{h}</th>"
            for h in ("id", "name", "status", "progress", "step", "info", "started", "duration")
        )
        return (
            f'<table class="raytha-nb-jobs"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(cells)}</tbody></table>"
            f'<div style="opacity:.6;font-size:85%">{_text.esc(self.scope)}</div>'
        )


# -- running a cell --------------------------------------------------------------------


class _Code:
    """A cell compiled in the foreground: statements, the last expression if any, and
    its syntax tree (which names it reads and assigns, for a worker process)."""

    __slots__ = ("body", "last", "tree")

    def __init__(self, body: CodeType, last: CodeType | None, tree: ast.Module) -> None:
        self.body = body
        self.last = last
        self.tree = tree


def _compile_cell(shell: Any, cell: str, magic_line: str = "%%background") -> _Code:
    """Compile with IPython's machinery (magics, ``!cmd``, tracebacks showing the source).

    Line numbers are the editor's: the magic line is line 1, the body starts at line 2.
    A syntax error stops the cell here, in the foreground, before any task starts.
    """
    source = shell.transform_cell(cell)
    # transform_cell drops leading blank lines; put them back with the magic line.
    skip = 1 + _leading_blank(cell) - _leading_blank(source)
    numbered = "\n" * skip + source
    filename = shell.compile.cache(
        magic_line + "\n" * skip + source,
        shell.execution_count,
        raw_code=f"{magic_line}\n{cell}",
    )
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    try:
        tree = ast.parse(numbered, filename=filename)
        statements = ast.Module(body=list(tree.body), type_ignores=[])
        last = None
        tail_stmt = statements.body[-1] if statements.body else None
        if isinstance(tail_stmt, ast.Expr):
            statements.body.pop()
            last = ast.Expression(tail_stmt.value)
        body = compile(statements, filename, "exec", flags=flags, dont_inherit=True)
        tail = None if last is None else compile(last, filename, "eval", flags=flags)
    except SyntaxError as exc:
        where = f"line {exc.lineno}: " if exc.lineno else ""
        raise UsageError(
            f"the cell was not started: syntax error at {where}{exc.msg}\n    {exc.text or ''}"
        ) from None
    return _Code(body, tail, tree)


def _leading_blank(text: str) -> int:
    lines = text.splitlines()
    return next((i for i, line in enumerate(lines) if line.strip()), len(lines))


def _run(code: CodeType, namespace: dict[str, Any]) -> Any:
    value = eval(code, namespace)  # noqa: S307 - the user's own cell, as a normal cell runs it
    if code.co_flags & inspect.CO_COROUTINE:
        value = asyncio.run(value)  # a cell using top-level await gets its own event loop
    return value


def _body(namespace: dict[str, Any], code: _Code, result_var: str | None) -> Any:
    def body(ctx: TaskContext) -> Any:
        _run(code.body, namespace)
        value = None if code.last is None else _run(code.last, namespace)
        if result_var is not None:
            namespace[result_var] = value
        return value

    return body


def _default_name(cell: str) -> str:
    """A readable task name: the cell's first line (a leading comment reads well)."""
    for line in cell.splitlines():
        text = line.strip().lstrip("#").strip()
        if text:
            return text if len(text) <= _NAME_CHARS else text[: _NAME_CHARS - 1] + "…"
    return "background cell"


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext raytha_nb``: register the magics, keep task output out of cells, and
    make tqdm bars inside tasks report to them."""
    _kernel_io.install(ipython)
    if _terminal.in_terminal(ipython):
        _terminal.install(ipython)
    _tqdm.install()
    # A cell waits for the GIL at each of several thread hand-offs in ipykernel; with a
    # CPU-bound task running, each costs up to the switch interval (5 ms by default).
    if sys.getswitchinterval() > _SWITCH_INTERVAL:
        sys.setswitchinterval(_SWITCH_INTERVAL)
    if "background" not in ipython.magics_manager.magics["cell"]:
        ipython.register_magics(BackgroundMagics)
