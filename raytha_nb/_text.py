"""Task state as short text for people: counts, byte sizes, durations, ETA, a text bar.

The one place for these words in Python (widget, plain text, ``%jobs``, CLI, data jobs);
``labextension/src/format.ts`` mirrors ``count``, ``byte_size``, ``log_title``,
``duration``, ``waiting`` and ``timing`` and must give the same text for the same values
(``tests/test_text_forms.py`` checks both).
"""

from __future__ import annotations

import html
import json
import math
from datetime import datetime, timezone
from typing import Any

from ._results import _short_repr
from .model import TaskRecord, TaskStatus

#: Bar colours by status (the widget's bar and the %jobs table's bars).
STATUS_COLOURS = {
    TaskStatus.SCHEDULED: "#9e9e9e",
    TaskStatus.AWAITING: "#9e9e9e",
    TaskStatus.ENQUEUED: "#9e9e9e",
    TaskStatus.PROCESSING: "#2196f3",
    TaskStatus.COMPLETE: "#4caf50",
    TaskStatus.ERROR: "#f44336",
    TaskStatus.CANCELLED: "#9e9e9e",
    TaskStatus.INTERRUPTED: "#9e9e9e",
}


_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def count(n: int, singular: str, plural: str | None = None) -> str:
    """``1 line``, ``2 lines``, ``1,234 rows``: a number with its noun, plural when not 1."""
    word = singular if n == 1 else (plural or singular + "s")
    return f"{n:,} {word}"


def byte_size(n: int | float) -> str:
    """A size in binary units, labelled as such: ``512 B``, ``1.0 KiB``, ``611.3 MiB``."""
    if n < 1024:
        return f"{int(n)} B"
    value = float(n)
    for unit in _UNITS:
        value /= 1024
        # Half up on tenths with the same float steps as format.ts (toFixed rounds ties
        # up, Python's format to even: 1280 B would be "1.2" here and "1.3" there).
        tenths = math.floor(value * 10 + 0.5)
        if tenths < 10240 or unit == _UNITS[-1]:
            return f"{tenths // 10}.{tenths % 10} {unit}"
    raise AssertionError("unreachable")


def log_title(lines: int, finished: bool) -> str:
    """The log's heading: ``Log (3 lines)``; with none, ``Log (empty)`` once the task ended."""
    if lines:
        return f"Log ({count(lines, 'line')})"
    return "Log (empty)" if finished else "Log (no lines yet)"


def duration(seconds: float | None) -> str:
    """``0:07``, ``12:03``, ``1:02:03``; empty for unknown."""
    if seconds is None or seconds < 0:
        return ""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def eta(record: TaskRecord) -> float | None:
    """Seconds left, extrapolated from elapsed time and percent; None when unknowable."""
    elapsed = record.duration
    pct = record.percent_complete
    if record.finished or elapsed is None or pct <= 0 or pct >= 100:
        return None
    return elapsed * (100.0 - pct) / pct


def timing(record: TaskRecord) -> str:
    """``0:12 elapsed, ~0:05 left`` (or ``took 0:17`` once finished); what a waiting
    task waits for (``attempt 2 of 4, next in 14 s``, ``waiting for 2 tasks``)."""
    waits = waiting(record)
    if waits:
        return waits
    elapsed = duration(record.duration)
    if not elapsed:
        return ""
    if record.finished:
        return f"took {elapsed}"
    left = eta(record)
    text = f"{elapsed} elapsed" + (f", ~{duration(left)} left" if left is not None else "")
    if record.attempt > 1:
        text = f"attempt {record.attempt} of {record.max_attempts}, {text}"
    return text


def waiting(record: TaskRecord) -> str:
    """What a task that has not started waits for; empty for the others."""
    status = record.status
    if status is TaskStatus.SCHEDULED:
        due = record.scheduled_for
        left = 0.0 if due is None else (due - datetime.now(timezone.utc)).total_seconds()
        when = _in(left)
        if record.attempt > 1:
            return f"attempt {record.attempt} of {record.max_attempts}, next {when}"
        return f"starts {when}"
    if status is TaskStatus.AWAITING:
        return f"waiting for {count(len(record.depends_on or ()), 'task')}"
    if status is TaskStatus.ENQUEUED:
        return "waiting for a worker"
    return ""


def _in(seconds: float) -> str:
    """``in 14 s`` (whole seconds, rounded up), ``in 2:03``, ``now``."""
    if seconds <= 0:
        return "now"
    return f"in {math.ceil(seconds)} s" if seconds < 60 else f"in {duration(seconds)}"


def text_bar(percent: float, width: int = 20) -> str:
    filled = round(max(0.0, min(percent, 100.0)) * width / 100)
    return "█" * filled + "░" * (width - filled)


def summary(record: TaskRecord) -> str:
    """One line, like tqdm's: name, status, bar, percent, step, info, timing."""
    parts = [
        f"{record.name} [{record.status.value}]",
        f"|{text_bar(record.percent_complete)}| {record.percent_complete:3.0f}%",
    ]
    if record.task_step:
        parts.append(f"step {record.task_step}")
    if record.status_info:
        parts.append(record.status_info)
    when = timing(record)
    if when:
        parts.append(when)
    return "  ".join(parts)


def result_preview(record: TaskRecord, limit: int = 200) -> str:
    """A short description of a completed task's result, from its stored descriptor."""
    if record.status is not TaskStatus.COMPLETE or record.result_kind is None:
        return ""
    stored: Any = record.result
    kind = record.result_kind
    if kind == "json":
        text = json.dumps(stored, ensure_ascii=False, default=str)
        return text if len(text) <= limit else text[: limit - 1] + "…"
    if kind in ("parquet", "file") and isinstance(stored, dict):
        rows = stored.get("rows")
        what = stored.get("library") or stored.get("media_type") or kind
        size = f"{count(rows, 'row')}, " if isinstance(rows, int) else ""
        return f"{what} ({size}{byte_size(stored.get('bytes', 0))}) at {stored.get('path')}"
    if isinstance(stored, dict) and "repr" in stored:
        return str(stored["repr"])[:limit]
    return _short_repr(stored, limit)


def started(record: TaskRecord) -> str:
    """Local wall-clock start time, ``HH:MM:SS`` today or ``YYYY-MM-DD HH:MM``."""
    when = record.started_at or record.created_at
    if when is None:
        return ""
    local = when.astimezone()
    if local.date() == datetime.now(timezone.utc).astimezone().date():
        return local.strftime("%H:%M:%S")
    return local.strftime("%Y-%m-%d %H:%M")


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)
