"""raytha_nb: a background task manager for Jupyter, shaped like Raytha's.

job_id = raytha_nb.enqueue(MyTask, {"rows": 10})
raytha_nb.get_task(job_id).percent_complete
"""

from __future__ import annotations

import sys
from typing import Any

from . import _tqdm
from ._jsonable import NotJsonable
from ._results import ResultFile, ResultUnavailable
from .api import (
    cancel,
    delete,
    enqueue,
    get_background_task_by_id,
    get_task,
    history,
    list_tasks,
    logs,
    result,
    submit,
    task_store,
    wait,
)
from .context import TaskContext, bind, check_cancelled, current, log, progress, track
from .manager import TaskFailed, TaskManager, TaskStateError, configure, manager
from .model import (
    LogLine,
    StoreClosed,
    StoreLockedError,
    TaskCancelled,
    TaskNotFound,
    TaskRecord,
    TaskStatus,
    UnknownTask,
)
from .store import Store
from .task import BackgroundTask, register, registered
from .tasks import export, import_csv, sql

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict[str, object]]:
    """The jupyter-server extension (imported only by a server, never by a kernel)."""
    from .server import _jupyter_server_extension_points as points

    return points()


__all__ = [
    "BackgroundTask",
    "LogLine",
    "NotJsonable",
    "ResultFile",
    "ResultUnavailable",
    "Store",
    "StoreClosed",
    "StoreLockedError",
    "TaskCancelled",
    "TaskContext",
    "TaskFailed",
    "TaskManager",
    "TaskNotFound",
    "TaskRecord",
    "TaskStateError",
    "TaskStatus",
    "UnknownTask",
    "__version__",
    "bind",
    "cancel",
    "check_cancelled",
    "configure",
    "current",
    "delete",
    "enqueue",
    "export",
    "get_background_task_by_id",
    "get_task",
    "history",
    "import_csv",
    "list_tasks",
    "log",
    "logs",
    "manager",
    "progress",
    "register",
    "registered",
    "result",
    "sql",
    "submit",
    "task_store",
    "track",
    "wait",
    "show",
    "TaskProgress",
    "load_ipython_extension",
]


def __getattr__(name: str) -> Any:
    # The widget imports ipywidgets: load it only when asked for.
    if name in ("show", "TaskProgress"):
        from . import widgets

        return getattr(widgets, name)
    raise AttributeError(f"module 'raytha_nb' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext raytha_nb``: the ``%%background`` and ``%jobs`` magics."""
    from .magics import load_ipython_extension as load

    load(ipython)


# tqdm bars inside tasks report to their task; in IPython the magics come with the import.
_tqdm.install()
if "IPython" in sys.modules:
    from IPython import get_ipython as _get_ipython

    if _get_ipython() is not None:
        load_ipython_extension(_get_ipython())
