"""Keep a background task's output out of notebook cells, inside IPython/ipykernel.

ipykernel 7 sends output written by any thread to the latest cell. ``print`` from a
task thread is already routed to the task's log by :class:`~raytha_nb.context.TaskOutput`
(installed here, and re-installed before each cell in case something replaced
``sys.stdout``); ``display()`` goes through the shell's display publisher instead, so
its calls from a task thread are turned into log lines here too.
"""

from __future__ import annotations

import sys
from typing import Any

from ._refresher import refresher
from .context import TaskOutput, current, install_output_capture

#: The id of the notebook cell being executed (IPython passes it to ``run_cell``).
_cell: dict[str, str | None] = {"id": None}


def install(shell: Any) -> None:
    """Route task threads' stdout/stderr/display to their logs in ``shell`` (idempotent)."""
    install_output_capture()
    _wrap_display_pub(shell)
    events = shell.events
    if _before_cell not in events.callbacks["pre_run_cell"]:
        events.register("pre_run_cell", _before_cell)
    if _after_cell not in events.callbacks["post_execute"]:
        events.register("post_execute", _after_cell)


def current_cell_id(shell: Any) -> str | None:
    """The executing cell's id: from ``run_cell(cell_id=...)``, else the request metadata."""
    if _cell["id"]:
        return _cell["id"]
    get_parent = getattr(shell, "get_parent", None)
    parent = get_parent() if callable(get_parent) else None
    metadata = (parent or {}).get("metadata") or {}
    cell_id = metadata.get("cellId") or metadata.get("cell_id")
    return str(cell_id) if cell_id else None


def _before_cell(info: Any) -> None:
    _cell["id"] = getattr(info, "cell_id", None)
    if not (isinstance(sys.stdout, TaskOutput) and isinstance(sys.stderr, TaskOutput)):
        install_output_capture()


def _after_cell() -> None:
    refresher().flush()


def _wrap_display_pub(shell: Any) -> None:
    pub = shell.display_pub
    if getattr(pub, "_raytha_nb_wrapped", False):
        return
    publish, clear_output = pub.publish, pub.clear_output

    def task_publish(data: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        ctx = current()
        if ctx is None:
            publish(data, *args, **kwargs)
            return
        text = data.get("text/plain")
        if text is None:
            kinds = ", ".join(sorted(data)) or "nothing"
            text = f"[display of {kinds}: shown only in a foreground cell]"
        ctx.log(str(text), stream="stdout")

    def task_clear_output(*args: Any, **kwargs: Any) -> None:
        if current() is None:
            clear_output(*args, **kwargs)

    pub.publish = task_publish
    pub.clear_output = task_clear_output
    pub._raytha_nb_wrapped = True
