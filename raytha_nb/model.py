"""The task model users see: statuses, the task record, log lines and errors."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


class TaskStatus(str, enum.Enum):
    """Lifecycle of a task; Raytha's four states plus ``cancelled`` and ``interrupted``."""

    ENQUEUED = "enqueued"
    PROCESSING = "processing"
    COMPLETE = "complete"
    ERROR = "error"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    def __str__(self) -> str:
        return self.value

    @property
    def finished(self) -> bool:
        """True for the terminal states, which are never overwritten."""
        return self in TERMINAL


TERMINAL = frozenset(
    {TaskStatus.COMPLETE, TaskStatus.ERROR, TaskStatus.CANCELLED, TaskStatus.INTERRUPTED}
)
ACTIVE = frozenset({TaskStatus.ENQUEUED, TaskStatus.PROCESSING})


class TaskNotFound(KeyError):
    """No task with this id exists in the store."""

    def __init__(self, job_id: str, hint: str | None = None) -> None:
        super().__init__(job_id)
        self.job_id = job_id
        self.hint = hint

    def __str__(self) -> str:
        text = f"no task with id {self.job_id!r} in the task store"
        return text if self.hint is None else f"{text}: {self.hint}"


class TaskCancelled(Exception):
    """Raised inside a task when it has been cancelled."""


class UnknownTask(LookupError):
    """A task was enqueued by a name that nobody registered."""


class StoreClosed(RuntimeError):
    """The task store was closed (its process, e.g. the Jupyter server, is stopping):
    state sent now cannot be kept, so retrying is pointless."""


class StoreLockedError(RuntimeError):
    """The DuckDB file is held by another process."""

    #: What a notebook or script should do about it (the server says its own).
    ADVICE = (
        "Run your notebooks under the Jupyter server with the raytha_nb extension enabled "
        "(its kernels share the server's store), or give this process its own store: set "
        "RAYTHA_NB_DB=/path/to/other.duckdb or call raytha_nb.configure(db=...)."
    )

    def __init__(self, path: str, pid: int | None, detail: str, advice: str = ADVICE) -> None:
        holder = f" (PID {pid})" if pid is not None else ""
        super().__init__(
            f"The task store {path} is in use by another process{holder}. DuckDB lets only "
            f"one process open a database file. {advice} DuckDB said: {detail}"
        )
        self.path = path
        self.pid = pid
        self.detail = detail


def utc(ts: float | None) -> datetime | None:
    """Epoch seconds to an aware UTC datetime (the store keeps naive UTC)."""
    return None if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc)


@dataclass(frozen=True)
class TaskRecord:
    """A task's state at one moment, as ``get_task`` returns it (Raytha's BackgroundTask DTO)."""

    id: str
    name: str
    task: str
    args: Any = None
    status: TaskStatus = TaskStatus.ENQUEUED
    task_step: int = 0
    status_info: str | None = None
    percent_complete: float = 0.0
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    result: Any = None
    result_kind: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    heartbeat_at: datetime | None = None
    updated_at: datetime | None = None
    kernel_id: str | None = None
    notebook: str | None = None
    pid: int | None = None
    cancel_requested: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status.finished

    @property
    def duration(self) -> float | None:
        """Seconds between start and end (or now, while it runs)."""
        if self.started_at is None:
            return None
        end = self.completed_at or datetime.now(timezone.utc)
        return (end - self.started_at).total_seconds()

    def to_json(self) -> dict[str, Any]:
        """The REST shape: field names as here, times in ISO 8601 UTC."""
        # Shallow (not dataclasses.asdict): no nested dataclasses here, and asdict's deep
        # copy of args/result took most of the time of a REST page of 100 tasks.
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["status"] = self.status.value
        for key, value in out.items():
            if isinstance(value, datetime):
                out[key] = value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskRecord:
        """Inverse of :meth:`to_json` (used by the kernel's HTTP client)."""
        values = dict(data)
        values["status"] = TaskStatus(values["status"])
        for key in ("created_at", "started_at", "completed_at", "heartbeat_at", "updated_at"):
            if values.get(key):
                values[key] = datetime.fromisoformat(values[key].replace("Z", "+00:00"))
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in values.items() if k in known})

    def _repr_json_(self) -> dict[str, Any]:
        return self.to_json()

    def __str__(self) -> str:
        pct = f"{self.percent_complete:.0f}%"
        info = f" - {self.status_info}" if self.status_info else ""
        return f"{self.name} [{self.status.value}] step {self.task_step} {pct}{info}"


@dataclass(frozen=True)
class LogLine:
    """One line a task printed or logged; ``seq`` orders a task's lines from 1."""

    task_id: str
    seq: int
    ts: datetime
    stream: str
    text: str

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "seq": self.seq,
            "ts": self.ts.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"),
            "stream": self.stream,
            "text": self.text,
        }


def dumps(value: Any) -> str:
    """Compact JSON used for every stored JSON column."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
