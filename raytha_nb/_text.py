"""Task state as short text for people: durations, ETA, a text bar, a result preview.

Shared by the progress widget, its plain-text form and the ``%jobs`` table.
"""

from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from typing import Any

from ._results import _short_repr
from .model import TaskRecord, TaskStatus

#: Bar colours by status (the widget's bar and the %jobs table's bars).
STATUS_COLOURS = {
    TaskStatus.ENQUEUED: "#9e9e9e",
    TaskStatus.PROCESSING: "#2196f3",
    TaskStatus.COMPLETE: "#4caf50",
    TaskStatus.ERROR: "#f44336",
    TaskStatus.CANCELLED: "#9e9e9e",
    TaskStatus.INTERRUPTED: "#9e9e9e",
}


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
    """``0:12 elapsed, ~0:05 left`` (or ``took 0:17`` once finished)."""
    elapsed = duration(record.duration)
    if not elapsed:
        return "waiting for a worker" if record.status is TaskStatus.ENQUEUED else ""
    if record.finished:
        return f"took {elapsed}"
    left = eta(record)
    return f"{elapsed} elapsed" + (f", ~{duration(left)} left" if left is not None else "")


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
        size = f"{rows:,} rows, " if isinstance(rows, int) else ""
        return f"{what} ({size}{stored.get('bytes', 0):,} bytes) at {stored.get('path')}"
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
