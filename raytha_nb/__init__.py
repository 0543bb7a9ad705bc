"""raytha_nb: a background task manager for Jupyter, shaped like Raytha's.

job_id = raytha_nb.enqueue(MyTask, {"rows": 10})
raytha_nb.get_task(job_id).percent_complete

Importing patches nothing; inside IPython it adds the ``%%background`` and ``%jobs``
magics (and the tqdm bridge with them). A process's first task thread routes task
threads' output to their logs.
"""

from __future__ import annotations

from ._manager import TaskManager, configure, manager
from ._manager import ipython_shell as _ipython_shell
from ._results import ResultFile
from ._version import __version__
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
    retry,
    submit,
    task_store,
    wait,
    wait_all,
)
from .context import TaskContext, bind, check_cancelled, current, log, progress, track
from .errors import (
    CannotRetry,
    ExecutorUnavailable,
    NotebookCellError,
    NotebookNotFound,
    NotJsonable,
    NotPicklable,
    NotTaskOwner,
    ProtocolError,
    ResultUnavailable,
    ScheduleNotFound,
    ServerError,
    ServerRequired,
    StoreClosed,
    StoreDamaged,
    StoreLockedError,
    StoreUnusable,
    StoreWriteError,
    TaskCancelled,
    TaskFailed,
    TaskNotFound,
    TaskStateError,
    UnknownTask,
)
from .groups import as_completed, map
from .magics import load_ipython_extension
from .model import LogLine, TaskQuery, TaskRecord, TaskStatus
from .registry import BackgroundTask, register, registered, task
from .schedules import (
    delete_schedule,
    get_schedule,
    list_schedules,
    pause_schedule,
    resume_schedule,
    schedule,
    trigger_schedule,
)
from .store import Store
from .tasks import export, import_csv, sql
from .widgets import TaskProgress, show


def _jupyter_server_extension_points() -> list[dict[str, object]]:
    """The jupyter-server extension. Imported only when a server asks for it, so that
    kernels never import jupyter_server's application machinery."""
    from .server import _jupyter_server_extension_points as points

    return points()


__all__ = [
    "BackgroundTask",
    "CannotRetry",
    "LogLine",
    "ExecutorUnavailable",
    "NotebookCellError",
    "NotebookNotFound",
    "NotJsonable",
    "NotPicklable",
    "NotTaskOwner",
    "ProtocolError",
    "ResultFile",
    "ResultUnavailable",
    "ScheduleNotFound",
    "ServerError",
    "ServerRequired",
    "Store",
    "StoreClosed",
    "StoreDamaged",
    "StoreLockedError",
    "StoreUnusable",
    "StoreWriteError",
    "TaskCancelled",
    "TaskContext",
    "TaskFailed",
    "TaskManager",
    "TaskNotFound",
    "TaskProgress",
    "TaskQuery",
    "TaskRecord",
    "TaskStateError",
    "TaskStatus",
    "UnknownTask",
    "__version__",
    "bind",
    "as_completed",
    "cancel",
    "check_cancelled",
    "configure",
    "current",
    "delete",
    "delete_schedule",
    "enqueue",
    "export",
    "get_background_task_by_id",
    "get_schedule",
    "get_task",
    "history",
    "import_csv",
    "list_schedules",
    "list_tasks",
    "load_ipython_extension",
    "log",
    "logs",
    "map",
    "manager",
    "pause_schedule",
    "progress",
    "register",
    "task",
    "registered",
    "result",
    "resume_schedule",
    "retry",
    "schedule",
    "show",
    "sql",
    "submit",
    "task_store",
    "track",
    "trigger_schedule",
    "wait",
    "wait_all",
]


if _ipython_shell() is not None:
    load_ipython_extension(_ipython_shell())
