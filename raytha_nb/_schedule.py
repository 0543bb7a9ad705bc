"""What a schedule is: its definition, checked once, its fire times and its rule in words.

Both sides use it: a kernel's ``rnb.schedule`` checks what it was given before it
sends anything, and the server's REST and kernel API check the JSON again before
anything is stored. A bad value is a ``ValueError`` that names the field. Cron
expressions are cronsim's (5 fields, daylight-saving days as cronsim handles them: a
time that does not exist that day runs at the next one that does, a time that
happens twice runs once); time zones are IANA names (zoneinfo).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from ._options import TaskOptions
from ._retry import _import
from .context import TaskContext
from .model import clean_text, iso, parse_iso
from .registry import make_runner

OVERLAP = ("skip", "queue", "allow")
MISFIRE = ("once", "skip", "all")
#: The shortest ``every``: a timer that fires within 1 s of due has no use for less.
MIN_EVERY = 1.0
#: The longest ``every`` (about 30 years): its times must stay within year 9999.
MAX_EVERY = 1e9
#: The last time a schedule may name (epoch seconds): DuckDB's and datetime's year 9999.
LAST_TIME = 253_402_300_799.0
#: Most catch-up runs ``misfire="all"`` starts at once after a long stop.
MAX_CATCH_UP = 1000
#: The task options a schedule's runs may carry (as ``rnb.enqueue`` takes them).
RUN_OPTIONS = (
    "retries", "retry_delay", "retry_on", "timeout", "limit", "executor", "ref", "when",
)  # fmt: skip
_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_FIELDS = (
    "name", "task", "kind", "args", "cron", "every", "tz", "start_at", "end_at", "overlap",
    "misfire", "options",
)  # fmt: skip


@dataclass(frozen=True)
class ScheduleSpec:
    """What a user defines: the task (a notebook's contents path or ``module:function``,
    or a kernel's pickled function), its args, one rule (``cron`` or ``every``), the
    window (``start_at``/``end_at``, epoch seconds), and what to do about overlaps and
    runs missed while the server was down."""

    name: str
    task: str
    kind: str = "function"
    args: Any = None
    cron: str | None = None
    every: float | None = None
    tz: str | None = None
    start_at: float | None = None
    end_at: float | None = None
    overlap: str = "skip"
    misfire: str = "once"
    options: dict[str, Any] = field(default_factory=dict)

    def checked(self) -> ScheduleSpec:
        """``self`` with its values normalised, or ``ValueError`` naming the bad field."""
        for key in ("name", "task"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value.strip() or len(value) > 4096:
                raise ValueError(f"{key} must be a non-empty string (at most 4096), not {value!r}")
            if clean_text(value) != value:
                raise ValueError(f"{key} {value!r} is not valid Unicode (a lone surrogate)")
        if self.kind not in ("function", "notebook"):
            raise ValueError(f"kind must be 'function' or 'notebook', not {self.kind!r}")
        if self.kind == "function" and self.task.endswith(".ipynb"):
            raise ValueError(f"task {self.task!r} is a notebook: its kind is 'notebook'")
        if (self.cron is None) == (self.every is None):
            given = "both were" if self.cron is not None else "neither was"
            raise ValueError(
                f"give exactly one of cron (e.g. cron='0 6 * * *') and every (seconds, e.g. "
                f"every=3600): {given} given"
            )
        zone = check_tz(self.tz)
        cron = None if self.cron is None else check_cron(self.cron, zone)
        every = None if self.every is None else check_every(self.every)
        if self.tz is not None and every is not None:
            raise ValueError("tz applies to cron schedules only: every= counts seconds")
        for name, value in (("start_at", self.start_at), ("end_at", self.end_at)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float))
                or not 0 <= value <= LAST_TIME - MAX_EVERY
            ):  # fmt: skip
                raise ValueError(f"{name} must be a time between 1970 and 9967, not {value!r}")
        if self.start_at is not None and self.end_at is not None and self.end_at <= self.start_at:
            raise ValueError(
                f"end_at ({_shown(self.end_at)}) must come after start_at ({_shown(self.start_at)})"
            )
        if self.overlap not in OVERLAP:
            raise ValueError(f"overlap must be one of {', '.join(OVERLAP)}, not {self.overlap!r}")
        if self.misfire not in MISFIRE:
            raise ValueError(f"misfire must be one of {', '.join(MISFIRE)}, not {self.misfire!r}")
        return replace(
            self,
            name=self.name.strip(),
            cron=cron,
            every=every,
            options=check_options(self.options),
        )

    @property
    def rule(self) -> Rule:
        return Rule(self.cron, self.every, self.tz, self.start_at, self.end_at)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in _FIELDS}
        out["start_at"] = _iso(self.start_at)
        out["end_at"] = _iso(self.end_at)
        return out

    @classmethod
    def from_json(cls, data: Any) -> ScheduleSpec:
        """Read and check a schedule's JSON (REST, kernel API); ``ValueError`` names the
        field. Times are ISO 8601; one without an offset is in ``tz`` (else UTC)."""
        if not isinstance(data, dict):
            raise ValueError("the schedule must be a JSON object with task, name and cron or every")
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            raise ValueError(
                f"unknown field(s) {', '.join(unknown)}: a schedule takes {', '.join(_FIELDS)}"
            )
        task = data.get("task")
        if not isinstance(task, str) or not task:
            raise ValueError("task must be a notebook's path or 'module:function'")
        kind = data.get("kind") or ("notebook" if task.endswith(".ipynb") else "function")
        tz = data.get("tz")
        zone = check_tz(tz)
        values = {k: v for k, v in data.items() if k in _FIELDS and v is not None}
        values["kind"] = kind
        values.setdefault("name", default_name(task))
        for key in ("start_at", "end_at"):
            if key in values:
                values[key] = _epoch(values[key], key, zone)
        if not isinstance(values.get("options", {}), dict):
            raise ValueError("options must be an object of task options (retries, timeout ...)")
        return cls(**values).checked()


@dataclass(frozen=True)
class Rule:
    """When a schedule fires: cron (in ``tz``) or every ``every`` seconds, from
    ``start_at`` to ``end_at`` (epoch seconds; None: no bound)."""

    cron: str | None
    every: float | None
    tz: str | None = None
    start_at: float | None = None
    end_at: float | None = None

    def next_after(self, after: float, created_at: float) -> float | None:
        """The first fire time strictly after ``after`` (epoch seconds), or None once the
        schedule has ended. An ``every`` schedule counts from ``start_at``, else from
        ``created_at`` (its first run one interval after it was made)."""
        if self.every is not None:
            anchor = self.start_at if self.start_at is not None else created_at + self.every
            if after < anchor:
                due = anchor
            else:
                due = anchor + (math.floor((after - anchor) / self.every) + 1) * self.every
        else:
            assert self.cron is not None
            zone = zone_of(self.tz)
            since = after if self.start_at is None else max(after, self.start_at - 1e-6)
            start = datetime.fromtimestamp(since, zone)
            try:
                due = next(iter(CronSim(self.cron, start))).timestamp()
            except (StopIteration, OverflowError, ValueError):  # past year 9999
                return None
        if (self.end_at is not None and due > self.end_at) or due > LAST_TIME:
            return None
        return due

    def due_between(self, first: float, now: float, created_at: float) -> list[float]:
        """The fire times from ``first`` (a fire time) to ``now``, at most MAX_CATCH_UP."""
        out: list[float] = []
        due: float | None = first
        while due is not None and due <= now and len(out) < MAX_CATCH_UP:
            out.append(due)
            due = self.next_after(due, created_at)
        return out

    def words(self) -> str:
        """The rule as a person says it: "every day at 06:00, Europe/Berlin", "every 2 s"."""
        if self.every is not None:
            text = f"every {_duration(self.every)}"
        else:
            assert self.cron is not None
            text = cron_words(self.cron) + f", {self.tz or 'UTC'}"
        if self.start_at is not None:
            text += f", from {_shown(self.start_at)}"
        if self.end_at is not None:
            text += f" until {_shown(self.end_at)}"
        return text


def cron_words(cron: str) -> str:
    """A cron expression in words (cronsim's, reordered for the commonest shape)."""
    text = CronSim(cron, datetime.now(timezone.utc)).explain()
    daily = re.fullmatch(r"At (\d\d:\d\d) every day", text)
    if daily:
        return f"every day at {daily.group(1)}"
    return text[:1].lower() + text[1:]


def check_cron(cron: Any, zone: ZoneInfo | None = None) -> str:
    if not isinstance(cron, str):
        raise ValueError(f"cron must be a string such as '0 6 * * *', not {cron!r}")
    text = " ".join(cron.split())
    try:
        CronSim(text, datetime.now(zone or timezone.utc))
    except (CronSimError, ValueError, IndexError) as exc:
        raise ValueError(
            f"cron {cron!r} is not a valid cron expression ({exc}): give 5 fields, minute "
            "hour day-of-month month day-of-week, e.g. '0 6 * * *' for every day at 06:00"
        ) from None
    return text


def check_every(every: Any) -> float:
    if isinstance(every, timedelta):
        every = every.total_seconds()
    if isinstance(every, bool) or not isinstance(every, (int, float)) or not math.isfinite(every):
        raise ValueError(f"every must be a number of seconds or a timedelta, not {every!r}")
    if not MIN_EVERY <= every <= MAX_EVERY:
        raise ValueError(
            f"every must be at least {MIN_EVERY:g} s and at most {MAX_EVERY:g} s (about 30 "
            f"years), not {every:g} s"
        )
    return float(every)


def check_tz(tz: Any) -> ZoneInfo | None:
    if tz is None:
        return None
    if not isinstance(tz, str) or not tz:
        raise ValueError(f"tz must be an IANA time zone name such as 'Europe/Berlin', not {tz!r}")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # "Europe" is a directory
        raise ValueError(
            f"tz {tz!r} is not a known time zone: give an IANA name such as 'Europe/Berlin', "
            "'America/New_York' or 'UTC'"
        ) from None


def zone_of(tz: str | None) -> ZoneInfo:
    return ZoneInfo(tz or "UTC")


def check_options(options: Any) -> dict[str, Any]:
    """A run's task options as ``rnb.enqueue`` checks them (TaskOptions), as JSON;
    ``ValueError`` naming the option."""
    if not isinstance(options, dict):
        raise ValueError("options must be an object of task options (retries, timeout ...)")
    unknown = sorted(set(options) - set(RUN_OPTIONS))
    if unknown:
        raise ValueError(
            f"options: unknown task option(s) {', '.join(unknown)}: a schedule's runs take "
            f"{', '.join(RUN_OPTIONS[:5])}"
        )
    retry_on = options.get("retry_on", [])
    if not isinstance(retry_on, list) or not all(isinstance(name, str) for name in retry_on):
        raise ValueError(
            f"options.retry_on must be a list of exception class names, not {retry_on!r}"
        )
    if options.get("executor", "server") != "server":
        raise ValueError(
            f"options.executor must be 'server' (schedules run in the server's workers), "
            f"not {options['executor']!r}"
        )
    try:
        checked = TaskOptions.from_json(options).checked()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"options: {exc}") from None
    return {**checked.to_json(), "executor": "server"}


def default_name(task: str) -> str:
    """A schedule's name when none is given: the notebook's stem or the function's name."""
    if task.endswith(".ipynb"):
        return task.rsplit("/", 1)[-1].removesuffix(".ipynb")
    return task.rpartition(":")[2] or task


def check_ref(task: str) -> str:
    """An importable function named ``module:function`` (the server never imports it)."""
    if not _REF.match(task):
        raise ValueError(
            f"task {task!r} is neither a notebook path (ending in .ipynb) nor an importable "
            "function 'module:function' (e.g. 'reports.jobs:nightly')"
        )
    return task


def run_ref(ref: str, ctx: TaskContext) -> Any:
    """The body of a run of a ``module:function`` schedule: imported in the worker (the
    server pickles only this call, never the user's code)."""
    return make_runner(_import(ref), ctx)()


def to_json(
    spec: ScheduleSpec,
    state: dict[str, Any],
    last_status: str | None,
) -> dict[str, Any]:
    """A schedule as REST serves it (S in docs/rest-api.yaml): its definition, its state
    (id, paused, created_at, next_run, runs, skipped, last run) and its rule in words."""
    out = spec.to_json()
    out.update(
        id=state["id"], paused=state["paused"], created_at=_iso(state["created_at"]),
        next_run=None if state["paused"] else _iso(state["next_run"]), rule=spec.rule.words(),
        runs=state["runs"], skipped=state["skipped"],
        last_run=None if state["last_task_id"] is None else {
            "task_id": state["last_task_id"], "status": last_status,
            "at": _iso(state["last_run_at"]),
        },
    )  # fmt: skip
    return out


def _epoch(value: Any, name: str, zone: ZoneInfo | None) -> float:
    """A time given as an ISO string, a datetime or epoch seconds, as epoch seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            value = parse_iso(value)
        except ValueError:
            raise ValueError(
                f"{name} must be an ISO 8601 time such as '2026-12-01T06:00:00Z', not {value!r}"
            ) from None
    if not isinstance(value, datetime):
        raise ValueError(f"{name} must be a time (a datetime or ISO 8601 text), not {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone or timezone.utc)
    return float(value.timestamp())


def epoch(value: Any, name: str, tz: str | None) -> float | None:
    """``start_at``/``end_at`` as the kernel API takes them (a naive datetime is in
    ``tz``, else this machine's local time) in epoch seconds."""
    if value is None:
        return None
    if isinstance(value, datetime) and value.tzinfo is None:
        zone = check_tz(tz)
        return value.replace(tzinfo=zone).timestamp() if zone else value.astimezone().timestamp()
    return _epoch(value, name, check_tz(tz))


def _iso(ts: float | None) -> str | None:
    return None if ts is None else iso(datetime.fromtimestamp(ts, timezone.utc))


def _shown(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def _duration(seconds: float) -> str:
    for one, unit, size in (("day", "days", 86400), ("hour", "h", 3600), ("minute", "min", 60)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return one if n == 1 else f"{n} {unit}"
    return f"{seconds:g} s"
