"""``%%background --executor process``: a cell run in a worker process.

The names the cell reads from the notebook namespace are pickled in; the names it
assigns are written by the worker beside its result and copied back into the
namespace when the task completes. What cannot be pickled is refused before the task
starts, naming the variable.
"""

from __future__ import annotations

import ast
import builtins
import functools
import threading
from collections.abc import Callable
from pathlib import Path
from types import CodeType
from typing import Any

from IPython.core.error import UsageError

from ._manager import manager
from .api import submit
from .context import TaskContext
from .errors import NotPicklable
from .processes import _picklable, culprit, dumps


def cell_names(tree: ast.Module) -> tuple[set[str], set[str]]:
    """(names read, names assigned at the cell's top level) of a parsed cell."""
    read: set[str] = set()
    assigned: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            read.add(node.id)
    for node in _top_level(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            assigned.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            assigned.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                assigned.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.Global):
            assigned.update(node.names)
    return read, assigned


def _top_level(tree: ast.AST) -> list[ast.AST]:
    """The nodes of the module's own scope (not inside functions, lambdas, classes)."""
    out: list[ast.AST] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if node is not tree and isinstance(
            node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda
        ):
            continue  # its name is assigned here; its body is another scope
        todo.extend(ast.iter_child_nodes(node))
    return out


def submit_cell(
    shell: Any,
    code: tuple[CodeType, CodeType | None, ast.Module],
    run: Callable[[CodeType, dict[str, Any]], Any],
    result_var: str | None,
    executor: str,
    *,
    name: str,
    args: Any,
) -> str:
    """Queue the cell (its statements, last expression and tree) in a worker process,
    where ``run`` runs each part; copy its assigned names back when it ends."""
    statements, last, tree = code
    read, assigned = cell_names(tree)
    if result_var is not None:
        assigned.add(result_var)
    namespace = shell.user_ns
    inputs = {n: namespace[n] for n in sorted(read) if n in namespace and not hasattr(builtins, n)}
    for key, value in inputs.items():
        if not _picklable(value):
            where, bad = culprit(value, f"variable {key!r}")
            kind = f"{type(bad).__module__}.{type(bad).__qualname__}".removeprefix("builtins.")
            raise UsageError(
                f"the cell was not started: {where} is a {kind}, which cannot be sent to a "
                f"worker process (the cell reads {key!r}). Create it inside the cell, or "
                "run the cell without --executor process"
            )
    out = Path(manager().backend.results_dir)
    body = functools.partial(
        _cell_body, run, statements, last, inputs, sorted(assigned), result_var, str(out)
    )
    job_id = submit(body, name=name, task="%%background", args=args, executor=executor)
    threading.Thread(
        target=_copy_back, args=(job_id, namespace, out), name="raytha-nb-cell-copy", daemon=True
    ).start()
    return job_id


def _cell_body(
    run: Callable[[CodeType, dict[str, Any]], Any],
    body: CodeType,
    last: CodeType | None,
    inputs: dict[str, Any],
    assigned: list[str],
    result_var: str | None,
    out: str,
    ctx: TaskContext,
) -> Any:
    """Runs in the worker: the cell over a namespace of its inputs; what it assigned is
    pickled to ``<job>.names.pickle`` (each name checked, so a failure names it)."""
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins, **inputs}
    run(body, namespace)
    value = None if last is None else run(last, namespace)
    if result_var is not None:
        namespace[result_var] = value
    names = {n: namespace[n] for n in assigned if n in namespace}
    for key, item in names.items():
        if not _picklable(item):
            where, bad = culprit(item, f"variable {key!r}")
            raise NotPicklable(f"the cell assigned {where}", bad, "so it cannot be copied back")
    target = Path(out) / f"{ctx.job_id}.names.pickle"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(dumps(names))
    return value


def _copy_back(job_id: str, namespace: dict[str, Any], out: Path) -> None:
    """In the kernel: once the task completes, its assigned names join the namespace."""
    import pickle

    record = manager().wait(job_id)
    path = out / f"{job_id}.names.pickle"
    try:
        if record.status.value == "complete" and path.exists():
            namespace.update(pickle.loads(path.read_bytes()))  # noqa: S301 - our worker wrote it
    finally:
        path.unlink(missing_ok=True)
