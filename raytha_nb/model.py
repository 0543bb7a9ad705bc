"""The task model users see: statuses, the task record, log lines, the list query,
and the one time codec (epoch seconds, aware UTC datetimes, ISO 8601 text)."""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from json.encoder import encode_basestring
from typing import Any


class TaskStatus(str, enum.Enum):
    """Lifecycle of a task; Raytha's four states plus ``cancelled`` and ``interrupted``,
    and the two waits: ``scheduled`` (for a time: a delayed task, or between retry
    attempts) and ``awaiting`` (for other tasks to end)."""

    SCHEDULED = "scheduled"
    AWAITING = "awaiting"
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
ACTIVE = frozenset(
    {TaskStatus.SCHEDULED, TaskStatus.AWAITING, TaskStatus.ENQUEUED, TaskStatus.PROCESSING}
)


def utc(ts: float | None) -> datetime | None:
    """Epoch seconds to an aware UTC datetime (the store keeps naive UTC)."""
    return None if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc)


def stored_utc(ts: float | None) -> datetime | None:
    """Epoch seconds as the store keeps them: whole microseconds of ``ts * 1e6``
    rounded half to even, as DuckDB's ``CAST(ts * 1000000 AS BIGINT)`` does."""
    return None if ts is None else _EPOCH + timedelta(microseconds=round(ts * 1_000_000))


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def iso(value: datetime | None) -> str | None:
    """The wire form of a time: ISO 8601 in UTC with a ``Z``."""
    return (
        None if value is None else value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    )


def parse_iso(value: str) -> datetime:
    """Inverse of :func:`iso`."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


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
    #: Where it runs: the executor ("thread", "process") and the worker in it
    #: ("thread raytha-nb-worker-2", "pid 1234"); None for tasks of older kernels.
    executor: str | None = None
    worker: str | None = None
    #: Retries: this is attempt ``attempt`` (from 1) of at most ``max_attempts``.
    attempt: int = 1
    max_attempts: int = 1
    #: When a ``scheduled`` task (delayed, or between attempts) is due.
    scheduled_for: datetime | None = None
    #: The tasks it waits for (``after=``), its fan-out group, the task it re-runs.
    depends_on: list[str] | None = None
    group_id: str | None = None
    retry_of: str | None = None
    #: The last ``ctx.checkpoint(state)``; a retry or re-run resumes from it.
    checkpoint: Any = None
    #: The options it was enqueued with (retries, timeout, limit...), for re-runs.
    options: dict[str, Any] | None = None
    #: The schedule that started it (``rnb.schedule``), if one did.
    schedule_id: str | None = None

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
        for key in _TIMES:
            out[key] = iso(out[key])
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskRecord:
        """Inverse of :meth:`to_json` (used by the kernel's HTTP client)."""
        values = dict(data)
        values["status"] = TaskStatus(values["status"])
        for key in _TIMES:
            if values.get(key):
                values[key] = parse_iso(values[key])
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in values.items() if k in known})

    def _repr_json_(self) -> dict[str, Any]:
        return self.to_json()

    def __str__(self) -> str:
        pct = f"{self.percent_complete:.0f}%"
        info = f" - {self.status_info}" if self.status_info else ""
        step = f" step {self.task_step}" if self.task_step else ""
        return f"{self.name} [{self.status.value}]{step} {pct}{info}"


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
            "ts": iso(self.ts),
            "stream": self.stream,
            "text": self.text,
        }


#: One encoder for dumps(): json.dumps() with options builds a new one per call (~2 us,
#: the most of a small value's cost; a map's children call it several times each).
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def dumps(value: Any) -> str:
    """Compact JSON used for every stored JSON column. Strings that are not valid
    Unicode (a file name's raw bytes, as ``os.listdir`` decodes them) come out as
    ``\\udcxx`` escapes rather than text no store or socket can encode."""
    kind = type(value)
    if value is None:
        return "null"
    if kind is int:  # a map's items and results are often plain numbers and names
        return int.__repr__(value)
    text = encode_basestring(value) if kind is str else _COMPACT.encode(value)
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            return json.dumps(value, separators=(",", ":"), allow_nan=False)
    return text


def clean_text(text: str) -> str:
    """``text`` as valid UTF-8: lone surrogates (undecodable bytes from the file system
    or a terminal) become visible escapes such as ``\\xe9``; anything else is kept."""
    if text.isascii():
        return text
    try:
        text.encode()
        return text
    except UnicodeEncodeError:
        pass
    try:  # surrogateescape'd bytes: show the byte they stand for
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


#: The times of a task record.
_TIMES = (
    "created_at", "started_at", "completed_at", "heartbeat_at", "updated_at", "scheduled_for",
)  # fmt: skip
#: DuckDB's BIGINT: the largest limit or offset a query may carry.
BIGINT = 2**63 - 1


@dataclass(frozen=True)
class TaskQuery:
    """Which tasks to list: every filter of ``list_tasks``, checked once, here.

    Filters combine with AND: ``status`` is any of the given statuses; ``name``,
    ``kernel_id``, ``notebook``, ``group_id`` (a map's children) and ``schedule_id`` (a
    schedule's runs) match exactly;
    ``grouped=False`` leaves a map's children out (its group task stays), ``True`` lists
    only children; ``q`` is a case-insensitive substring of name, task, notebook or
    status_info. Newest first, ``limit`` rows after ``offset``.
    """

    status: tuple[TaskStatus, ...] | None = None
    name: str | None = None
    kernel_id: str | None = None
    notebook: str | None = None
    q: str | None = None
    limit: int | None = 100
    offset: int = 0
    group_id: str | None = None
    grouped: bool | None = None
    schedule_id: str | None = None

    @classmethod
    def of(
        cls,
        status: str | TaskStatus | Sequence[str | TaskStatus] | None = None,
        name: str | None = None,
        limit: int | None = 100,
        **filters: Any,
    ) -> TaskQuery:
        """Build and check a query from ``list_tasks``' arguments; ``ValueError`` or
        ``TypeError`` says which one is wrong."""
        known = {"kernel_id", "notebook", "q", "offset", "group_id", "grouped", "schedule_id"}
        unknown = sorted(set(filters) - known)
        if unknown:
            raise TypeError(
                f"list_tasks() got unknown filter(s) {', '.join(unknown)}: use status, "
                "name, kernel_id, notebook, group_id, grouped, schedule_id, q, limit or offset"
            )
        grouped = filters.get("grouped")
        if grouped is not None and not isinstance(grouped, bool):
            raise TypeError(f"grouped must be True, False or None, not {grouped!r}")
        if status is None:
            statuses = None
        else:
            given = [status] if isinstance(status, str) else list(status)
            statuses = tuple(_status(s) for s in given)
        offset = filters.get("offset", 0)
        for key, value in (("limit", limit), ("offset", offset)):
            if value is None and key == "limit":
                continue
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{key} must be a whole number, not {value!r}")
            low = 1 if key == "limit" else 0
            if not low <= value <= BIGINT:
                raise ValueError(f"{key}={value} must be between {low} and {BIGINT}")
        keys = ("kernel_id", "notebook", "q", "group_id", "schedule_id")
        texts = {"name": name, **{k: filters.get(k) for k in keys}}
        for key, value in texts.items():
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{key} must be a string, not {value!r}")
        return cls(statuses, limit=limit, offset=offset, grouped=grouped, **texts)  # type: ignore[arg-type]

    @classmethod
    def from_params(cls, get: Callable[[str], list[str]], max_limit: int) -> TaskQuery:
        """The query of an HTTP request (``get(name)`` lists a parameter's values; status
        may repeat and be comma-separated); ``ValueError`` names a bad parameter."""

        def text(key: str) -> str | None:
            values = get(key)
            return values[-1] if values and values[-1] else None

        def number(key: str, default: int, high: int) -> int:
            values = get(key)
            low = 1 if key == "limit" else 0
            return default if not values else int_param(key, values[-1], low, high)

        statuses = [s.strip() for arg in get("status") for s in arg.split(",") if s.strip()]
        given = get("grouped")
        flag = given[-1] if given else None  # an empty value too is neither true nor false
        if flag not in (None, "true", "false"):
            raise ValueError(f"grouped must be true or false, not {flag!r}")
        return cls.of(
            statuses or None,
            text("name"),
            number("limit", 100, max_limit),
            kernel_id=text("kernel_id"),
            notebook=text("notebook"),
            q=text("q"),
            offset=number("offset", 0, BIGINT),
            group_id=text("group_id"),
            grouped=None if flag is None else flag == "true",
            schedule_id=text("schedule_id"),
        )

    def params(self) -> dict[str, str]:
        """The HTTP query parameters of this query (inverse of :meth:`from_params`)."""
        out = {
            "status": None if self.status is None else ",".join(s.value for s in self.status),
            "name": self.name,
            "kernel_id": self.kernel_id,
            "notebook": self.notebook,
            "q": self.q,
            "limit": None if self.limit is None else str(self.limit),
            "offset": str(self.offset) if self.offset else None,
            "group_id": self.group_id,
            "grouped": None if self.grouped is None else str(self.grouped).lower(),
            "schedule_id": self.schedule_id,
        }
        return {k: v for k, v in out.items() if v is not None}

    def page(self, limit: int | None, offset: int) -> TaskQuery:
        """The same filters, another page."""
        return replace(self, limit=limit, offset=offset)

    def matches(self, record: TaskRecord) -> bool:
        """Whether ``record`` passes the filters (for live state the store lags behind)."""
        if self.status is not None and record.status not in self.status:
            return False
        for key in ("name", "kernel_id", "notebook", "group_id", "schedule_id"):
            wanted = getattr(self, key)
            if wanted is not None and getattr(record, key) != wanted:
                return False
        if self.grouped is not None and (record.group_id is not None) != self.grouped:
            return False
        if self.q:
            haystack = "\n".join(
                v for v in (record.name, record.task, record.notebook, record.status_info) if v
            )
            return self.q.lower() in haystack.lower()
        return True


def int_param(name: str, raw: str, low: int, high: int) -> int:
    """A whole-number query parameter, or ``ValueError`` saying what is wrong with it."""
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"query parameter {name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise ValueError(f"query parameter {name}={value} must be between {low} and {high}")
    return value


def _status(value: str | TaskStatus) -> TaskStatus:
    try:
        return TaskStatus(value)
    except ValueError:
        known = ", ".join(s.value for s in TaskStatus)
        raise ValueError(f"unknown status {value!r}: use one of {known}") from None
