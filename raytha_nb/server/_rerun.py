"""Re-running a finished task in the kernel that ran it: only that kernel holds the
registered task (or the cell's namespace), so the server asks it, never runs code itself.

The request is one silent ``execute_request`` whose work is a user expression: nothing
is added to the notebook's history or namespace, and a failure comes back as the
exception's own words.
"""

from __future__ import annotations

import json
import shlex
from queue import Empty
from typing import Any

from ..model import TaskRecord

#: Tasks started by the built-in data jobs: their inputs (frames, connections) lived in
#: the kernel's memory, and ``args`` only describes them.
DATA_JOBS = frozenset({"export", "sql", "import_csv"})
#: Seconds to wait for the kernel's answer; a busy kernel runs the request later.
REPLY_TIMEOUT = 10.0


class CannotRerun(Exception):
    """The task cannot be re-run; the message says why and what to do instead."""


def expression(record: TaskRecord) -> str:
    """The Python expression that starts the task again in its kernel (its value: the
    new task's id, or None for a ``%%background`` cell, whose magic returns nothing)."""
    if record.task == "%%background":
        args = record.args if isinstance(record.args, dict) else {}
        code = args.get("code")
        if not isinstance(code, str) or not code.strip():
            raise CannotRerun(
                f"task {record.name} ({record.id}) is a %%background cell whose source was "
                "not stored; run the cell again in its notebook"
            )
        line = f"--no-widget --name {shlex.quote(record.name)}"
        return f"get_ipython().run_cell_magic('background', {line!r}, {code!r})"
    if record.task in DATA_JOBS:
        raise CannotRerun(
            f"task {record.name} ({record.id}) was started by raytha_nb.{record.task}(), "
            "whose inputs lived in its kernel's memory; run that cell again in its notebook"
        )
    text = json.dumps(record.args)
    return (
        f"__import__('raytha_nb').enqueue({record.task!r}, "
        f"__import__('json').loads({text!r}), name={record.name!r})"
    )


def kernel_alive(kernel_manager: Any, record: TaskRecord) -> bool:
    """Whether the kernel that ran ``record`` is running on this server."""
    return bool(record.kernel_id) and record.kernel_id in kernel_manager


async def retry_in_kernel(kernel_manager: Any, record: TaskRecord) -> dict[str, Any]:
    """``rnb.retry(id)`` in the task's kernel (alive on this server): the new task,
    ``retry_of`` it, resuming from its checkpoint; as :func:`rerun_in_kernel` answers."""
    return await rerun_in_kernel(
        kernel_manager, record, f"__import__('raytha_nb').retry({record.id!r})"
    )


async def rerun_in_kernel(
    kernel_manager: Any, record: TaskRecord, what: str | None = None
) -> dict[str, Any]:
    """Ask the task's kernel, if this server runs it, to start the task again (by
    ``what``, a Python expression; default: :func:`expression`); return ``{"id",
    "kernel_id", "queued"}`` (``queued``: the kernel is busy and will start it when its
    current cell ends). Raises CannotRerun saying why not."""
    what = expression(record) if what is None else what
    kernel_id = record.kernel_id
    if not kernel_alive(kernel_manager, record):
        where = f"kernel {kernel_id}" if kernel_id else "the process that ran it"
        raise CannotRerun(
            f"task {record.name} ({record.id}) can only be re-run in its own kernel, and "
            f"{where} is not running on this Jupyter server; open its notebook "
            f"({record.notebook or 'unknown'}) and run it there"
        )
    client = kernel_manager.get_kernel(kernel_id).client()
    # Only the shell channel: the reply carries the answer (noqa: a kernel, not a shell).
    client.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)  # noqa: S604
    try:
        msg_id = client.execute(
            "",
            silent=True,
            store_history=False,
            user_expressions={"rerun": what},
            allow_stdin=False,
        )
        while True:
            try:
                reply = await client.get_shell_msg(timeout=REPLY_TIMEOUT)
            except Empty:  # the kernel is busy: the request stays queued and runs later
                return {"id": None, "kernel_id": kernel_id, "queued": True}
            if reply.get("parent_header", {}).get("msg_id") == msg_id:
                break
    finally:
        client.stop_channels()
    value = reply["content"].get("user_expressions", {}).get("rerun", {})
    if value.get("status") != "ok":
        raise CannotRerun(
            f"the kernel could not re-run task {record.name} ({record.id}): "
            f"{value.get('ename', 'Error')}: {value.get('evalue', 'no answer')}"
        )
    text = value.get("data", {}).get("text/plain", "None")
    new_id = text.strip("'\"") if text != "None" else None
    return {"id": new_id, "kernel_id": kernel_id, "queued": False}
