"""A task's cell output as data: the raytha_nb mime bundle, its HTML fallback, a table preview.

The JupyterLab extension renders ``MIME`` itself (live from the server's event stream,
so the cell stays truthful across kernel restarts); other front ends get the HTML. Both
carry the last state the kernel knew, so a saved notebook shows how its tasks ended.
"""

from __future__ import annotations

import json
import re
import time
from contextlib import closing
from typing import Any

import duckdb

from . import _text
from ._sql import literal
from .model import TaskRecord, TaskStatus, iso, utc

#: The mime type the lab extension renders (ranked above the ipywidget's).
MIME = "application/vnd.raytha-nb.task+json"
#: Rows and columns of a table result shown in its preview.
PREVIEW_ROWS = 10
PREVIEW_COLUMNS = 20
#: Longest cell text in a preview, and longest JSON result carried in the bundle.
_CELL_CHARS = 80
_RESULT_CHARS = 2000


def table_preview(record: TaskRecord) -> dict[str, Any] | None:
    """The first rows of a completed task's Parquet result (a frame), or None.

    Read from the stored file with DuckDB, so it costs ``PREVIEW_ROWS`` rows, not the frame.
    """
    stored = record.result
    if record.status is not TaskStatus.COMPLETE or record.result_kind != "parquet":
        return None
    if not isinstance(stored, dict) or not stored.get("path"):
        return None
    source = f"read_parquet({literal(str(stored['path']))})"
    try:
        with closing(duckdb.connect()) as con:
            cur = con.execute(f"SELECT * FROM {source} LIMIT {PREVIEW_ROWS}")
            names = [d[0] for d in cur.description or []]
            rows = [[_cell(v) for v in row[:PREVIEW_COLUMNS]] for row in cur.fetchall()]
            total = stored.get("rows")
            if not isinstance(total, int):
                total = con.execute(f"SELECT count(*) FROM {source}").fetchone()[0]  # type: ignore[index]
    except (duckdb.Error, OSError):
        return None  # the file is gone or unreadable: the bundle says no more than the record
    return {
        "columns": names[:PREVIEW_COLUMNS],
        "rows": rows,
        "total_rows": total,
        "total_columns": len(names),
        "library": stored.get("library"),
    }


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= _CELL_CHARS else text[: _CELL_CHARS - 1] + "…"


def payload(
    record: TaskRecord, *, preview: dict[str, Any] | None, result_url: str | None
) -> dict[str, Any]:
    """What ``MIME`` carries: the job id and the last state this kernel knew of it."""
    task = record.to_json()
    task.pop("args", None)  # may be large, and the cell's source says it
    if task.get("result") is not None and len(json.dumps(task["result"], default=str)) > (
        _RESULT_CHARS
    ):
        task["result"] = None  # result_text describes it
    return {
        "version": 1,
        "job_id": record.id,
        "task": task,
        "result_text": _text.result_preview(record),
        "preview": preview,
        "result_url": result_url,
        "saved_at": iso(utc(time.time())),
    }


def html(record: TaskRecord, preview: dict[str, Any] | None, result_url: str | None) -> str:
    """The task's state as static HTML (theme-aware colours), for front ends without the
    extension or widgets: the final state once the task ended."""
    colour = _text.STATUS_COLOURS[record.status]
    pct = max(0.0, min(record.percent_complete, 100.0))
    parts = [
        '<div class="raytha-nb-state" style="font-family:var(--jp-ui-font-family,sans-serif);'
        'color:var(--jp-content-font-color1,inherit)">',
        f"<div><b>{_text.esc(record.name)}</b> "
        f'<span style="color:{colour};font-weight:600">{record.status.value}</span> '
        f'<span style="opacity:.6;font-size:85%">{record.id}</span></div>',
        '<div style="display:flex;align-items:center;gap:.6em">'
        '<div style="flex:1 1 auto;max-width:30em;height:.7em;border-radius:2px;'
        'background:var(--jp-layout-color3,#e0e0e0)">'
        f'<div style="width:{pct:.1f}%;height:100%;background:{colour};border-radius:2px">'
        f"</div></div><span><b>{pct:.0f}%</b> {_text.esc(_text.timing(record))}</span></div>",
    ]
    details = [f"step {record.task_step}"] if record.task_step else []
    if record.status_info:
        details.append(record.status_info)
    if details:
        parts.append(f"<div>{_text.esc(' · '.join(details))}</div>")
    parts.append(outcome_html(record, preview, result_url))
    parts.append("</div>")
    return "".join(parts)


def outcome_html(record: TaskRecord, preview: dict[str, Any] | None, result_url: str | None) -> str:
    """A finished task's error (with traceback) or result (with table preview, download)."""
    if record.status is TaskStatus.ERROR:
        text = record.traceback or f"{record.error_type}: {record.error_message}"
        return f'<pre class="raytha-nb-traceback" style="{TRACEBACK_STYLE}">{_text.esc(text)}</pre>'
    if record.status is not TaskStatus.COMPLETE:
        return ""
    out = ""
    if preview is not None:
        out += preview_html(preview)
    else:
        said = _text.result_preview(record)
        out += f"<b>result</b>: <code>{_text.esc(said)}</code>" if said else ""
    if result_url:
        out += download_html(record, result_url)
    return out


#: The traceback block: the theme's error background and text colour (legible in dark
#: themes, where a fixed light pink was not), with the light theme's look as fallback.
TRACEBACK_STYLE = (
    "color:var(--jp-content-font-color1,#212121);"
    "background:var(--jp-rendermime-error-background,var(--jp-layout-color2,#fdecea));"
    "border-left:3px solid var(--jp-error-color1,#f44336);"
    "padding:4px 6px;margin:2px 0;white-space:pre-wrap;"
    "font-family:var(--jp-code-font-family,monospace);font-size:var(--jp-code-font-size,90%)"
)


def preview_html(preview: dict[str, Any]) -> str:
    """The first rows of a table result as an HTML table, with its size."""
    cell = "padding:1px 8px;border-bottom:1px solid var(--jp-border-color2,#e0e0e0);text-align:left"
    head = "".join(f'<th style="{cell}">{_text.esc(c)}</th>' for c in preview["columns"])
    body = "".join(
        "<tr>" + "".join(f'<td style="{cell}">{_text.esc(v)}</td>' for v in row) + "</tr>"
        for row in preview["rows"]
    )
    return (
        f'<div style="margin:2px 0"><b>result</b>: {_text.esc(preview_caption(preview))}</div>'
        '<table class="raytha-nb-preview" style="border-collapse:collapse;font-size:90%;'
        f'font-family:var(--jp-code-font-family,monospace)"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def preview_caption(preview: dict[str, Any]) -> str:
    """``pandas frame, 500 rows, 2 columns (first 10 shown)``."""
    total = preview.get("total_rows")
    width = preview.get("total_columns") or len(preview["columns"])
    what = f"{preview.get('library') or 'table'} frame"
    rows = _text.count(total, "row") if isinstance(total, int) else "rows"
    shown = len(preview["rows"])
    more = f" (first {shown} shown)" if isinstance(total, int) and total > shown else ""
    return f"{what}, {rows}, {_text.count(width, 'column')}{more}"


def download_html(record: TaskRecord, url: str) -> str:
    name = download_name(record)
    return (
        f' <a href="{_text.esc(url)}" download="{_text.esc(name)}" target="_blank"'
        ' style="color:var(--jp-content-link-color,#1976d2);'
        f'text-decoration:underline">⬇ Download {_text.esc(name)}</a>'
    )


def download_name(record: TaskRecord) -> str:
    """The file name a result downloads as: its own, else the task's name and kind."""
    stored = record.result
    if isinstance(stored, dict) and stored.get("filename"):
        return str(stored["filename"])
    stem = re.sub(r"[^\w.-]+", "-", record.name).strip("-") or "result"
    return f"{stem}.{record.result_kind}"
