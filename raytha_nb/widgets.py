"""The live progress widget of a task, built from standard ipywidgets 8 widgets.

Its state lives in the kernel-side models, so a reloaded page gets it back from a live
kernel like any ipywidget. It never polls by itself: one refresher thread
(:mod:`raytha_nb._refresher`) pulls the task's live state and updates every open widget.
Front ends without widgets get a one-line text form, like tqdm's. While this process
cannot store its tasks' state (a full disk, a damaged store), a widget of its own task
says so in one line instead of looking merely stuck.

Its display carries more than the widget: the raytha_nb mime type (which the lab
extension renders live from the server, truthful across kernel restarts) and an HTML
form, both re-sent under the display's id when the task ends, so a saved notebook shows
how each task ended rather than a widget that needs its kernel.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import ipywidgets as w
from IPython import get_ipython
from IPython.display import display, update_display

from . import _group, _task_view, _terminal, _text
from ._live import LiveTask
from ._manager import manager
from ._refresher import refresher
from .api import cancel, get_task, logs, retry
from .model import LogLine, TaskRecord, TaskStatus

#: Log lines a widget keeps for display (the store keeps them all).
LOG_LINES = 500


class TaskProgress(w.VBox):  # type: ignore[misc]
    """Live view of one task: bar, percent, step, info, timing, Cancel, log, outcome."""

    def __init__(self, job_id: str, **kwargs: Any) -> None:
        record = get_task(job_id)  # TaskNotFound for an unknown id, before any widget exists
        self.job_id = job_id
        self.record = record
        self._log: deque[tuple[str, str]] = deque(maxlen=LOG_LINES)
        self._log_seq = 0
        self._log_count = 0
        self._done = False
        self._next_remote_poll = 0.0
        self._was_live = True
        #: The display id of every output showing this task (updated when it ends).
        self.display_id = f"raytha-nb-{job_id}"
        self._displayed = False
        self._shown_status: TaskStatus | None = None
        self._final_on_main = False
        self._preview: dict[str, Any] | None = None
        self._previewed = False
        self._title = w.HTML()
        self._bar = w.FloatProgress(
            min=0.0, max=100.0, layout=w.Layout(flex="1 1 auto", min_width="8em")
        )
        self._numbers = w.HTML(layout=w.Layout(min_width="16em"))
        self._cancel = w.Button(
            description="Cancel",
            icon="stop",
            tooltip="Cancel this background task",
            layout=w.Layout(width="auto"),
        )
        self._cancel.on_click(self._on_cancel)
        self._retry = w.Button(
            description="Retry",
            icon="redo",
            tooltip="Run this task again as a new task (resuming from its last checkpoint)",
            layout=w.Layout(width="auto", display="none"),
        )
        self._retry.on_click(self._on_retry)
        #: The widget of the task a Retry click started, below this one.
        self._retried = w.VBox()
        self._info = w.HTML()
        self._warning = w.HTML(layout=w.Layout(display="none"))
        self._outcome = w.HTML(layout=w.Layout(display="none"))
        self._log_view = w.HTML()
        self._log_box = w.Accordion(children=[self._log_view], selected_index=None)
        self._log_box.set_title(0, _text.log_title(0, finished=False))
        super().__init__(
            children=[
                self._title,
                w.HBox(
                    [self._bar, self._numbers, self._cancel, self._retry],
                    layout=w.Layout(align_items="center"),
                ),
                self._info,
                self._warning,
                self._outcome,
                self._log_box,
                self._retried,
            ],
            **kwargs,
        )
        self.add_class("raytha-nb-task")
        if _group.is_group(record):
            # One bar for the whole rnb.map (its info counts the children); the children
            # log on their own, so the group has no log of its own to show.
            self.add_class("raytha-nb-group")
            self._log_box.layout.display = "none"
        self.refresh(force_logs=True)
        refresher().add(self)

    # -- updating: called by the refresher thread ------------------------------------
    @property
    def done(self) -> bool:
        """True once the final state is shown (and, for a displayed widget, re-sent from
        the main thread at a cell's end); the refresher then stops polling it."""
        return self._done and (self._final_on_main or not self._displayed)

    def refresh(self, *, force_logs: bool = False, now: float = 0.0) -> None:
        """Pull the task's state and log and update the models that changed."""
        if self._done:
            # Re-sent on the main thread (post_execute): a thread's message carries the
            # latest cell's parent, which a headless runner may no longer listen to.
            if self._displayed and threading.current_thread() is threading.main_thread():
                self._update_display()
            return
        live = manager().live(self.job_id)
        if live is None and not (force_logs or self._was_live) and now < self._next_remote_poll:
            return  # a task of another process: its state comes from the store, 1/s
        # A task this kernel handed to the server is watched closely; others at 1/s.
        self._next_remote_poll = now + (0.25 if manager().on_server(self.job_id) else 1.0)
        self._was_live = live is not None
        record = get_task(self.job_id)
        if live is None or force_logs:
            self._add_log(None)  # from the store (plus the live tail)
        elif live.log_seq != self._log_seq:
            self._add_log(live.log_tail(self._log_seq))  # in memory: no query
        self.record = record
        if record.status is TaskStatus.COMPLETE and not self._previewed:
            self._preview = _task_view.table_preview(record)
            self._previewed = True
        self._render(record)
        self._show_store_warning(live)
        if record.finished and live is None:
            self._done = True  # stored final state and every log line are shown
        if self._displayed and (self._done or record.status is not self._shown_status):
            self._update_display()

    def _update_display(self) -> None:
        """Re-send every output of this task with its current state (the saved bundle)."""
        self._shown_status = self.record.status
        update_display(self._bundle(), raw=True, display_id=self.display_id)
        if self._done and threading.current_thread() is threading.main_thread():
            self._final_on_main = True

    def _result_url(self, record: TaskRecord) -> str | None:
        stored = record.result
        if isinstance(stored, dict) and stored.get("path"):
            return manager().backend.result_url(record.id)
        return None

    def _bundle(self) -> dict[str, Any]:
        """The widget's own mime bundle plus the raytha_nb mime type and an HTML form."""
        bundle: dict[str, Any] = super()._repr_mimebundle_() or {}
        record = self.record
        url = self._result_url(record)
        bundle["text/plain"] = _text.summary(record)
        bundle["text/html"] = _task_view.html(record, self._preview, url)
        bundle[_task_view.MIME] = _task_view.payload(record, preview=self._preview, result_url=url)
        return bundle

    def _add_log(self, lines: list[LogLine] | None) -> None:
        if lines is None:
            lines = logs(self.job_id, self._log_seq)
        if not lines:
            return
        for line in lines:
            self._log.append((line.stream, line.text))
        self._log_seq = lines[-1].seq
        self._log_count += len(lines)
        shown = "".join(_log_line(stream, text) for stream, text in self._log)
        more = self._log_count - len(self._log)
        head = f"<i>… {_text.count(more, 'earlier line')} in rnb.logs()</i>\n" if more > 0 else ""
        self._log_view.value = (
            f'<pre style="max-height:20em;overflow:auto;margin:0;font-size:90%">{head}{shown}</pre>'
        )
        self._log_box.set_title(0, _text.log_title(self._log_count, finished=False))

    def _render(self, record: TaskRecord) -> None:
        status = record.status
        colour = _text.STATUS_COLOURS[status]
        self._title.value = (
            f"<b>{_text.esc(record.name)}</b> "
            f'<span style="color:{colour};font-weight:600">{status.value}</span>'
            f' <span style="opacity:.6;font-size:85%">{record.id}</span>'
        )
        self._bar.value = round(record.percent_complete, 1)
        if self._bar.style.bar_color != colour:
            self._bar.style.bar_color = colour
        if record.finished and record.status is not TaskStatus.COMPLETE:
            # Visible even when the task ended at 0%.
            self._bar.layout.border = f"1px solid {colour}"
        timing = _text.timing(record)
        self._numbers.value = f"<b>{record.percent_complete:.0f}%</b>" + (
            f" &nbsp;{_text.esc(timing)}" if timing else ""
        )
        details = []
        if record.task_step:
            details.append(f"step {record.task_step}")
        if record.status_info:
            details.append(_text.esc(record.status_info))
        where = _where(record)
        if where:
            details.append(f'<span style="opacity:.6">{_text.esc(where)}</span>')
        self._info.value = " · ".join(details)
        if record.finished:
            self._cancel.layout.display = "none"
            if self._retry.layout.display == "none":
                self._retry.layout.display = "inline-flex"
            if not self._log_count:
                self._log_box.set_title(0, _text.log_title(0, finished=True))
            self._show_outcome(record)
        elif record.cancel_requested:
            self._cancel.description = "Cancelling…"
            self._cancel.disabled = True

    def _show_store_warning(self, live: LiveTask | None) -> None:
        """One line while the publisher cannot store this process's task (the task runs
        on, its state kept in memory): the store's error, e.g. a full disk, in full in
        the tooltip. Tasks of other processes are not this process's to report."""
        error = None if live is None else manager().publisher.last_error
        if error is None:
            if self._warning.layout.display != "none":
                self._warning.layout.display = "none"
            return
        said = str(error).strip().splitlines()
        line = f"⚠ Task state not stored yet ({type(error).__name__}): {said[0] if said else ''}"
        self._warning.value = (
            f'<div title="{_text.esc(str(error))}" style="color:var(--jp-warn-color0,#b26a00);'
            "white-space:nowrap;"
            f'overflow:hidden;text-overflow:ellipsis">{_text.esc(line)}</div>'
        )
        if self._warning.layout.display != "block":
            self._warning.layout.display = "block"

    def _show_outcome(self, record: TaskRecord) -> None:
        value = _task_view.outcome_html(record, self._preview, self._result_url(record))
        self._outcome.value = value
        self._outcome.layout.display = "block" if value else "none"

    def _on_cancel(self, _button: Any) -> None:
        self._cancel.description = "Cancelling…"
        self._cancel.disabled = True
        try:
            cancel(self.job_id)
        except Exception as exc:  # noqa: BLE001 - a click has nowhere else to report to
            # Say so on the button the user clicked (a comm handler's traceback is never
            # seen, and the info line is redrawn from the task's state), and re-arm it.
            self._cancel.description = "Cancel failed: retry"
            self._cancel.tooltip = f"could not cancel: {exc}"
            self._cancel.disabled = False

    def _on_retry(self, _button: Any) -> None:
        """Start the task again (``rnb.retry``) and show the new task's widget below."""
        self._retry.disabled = True
        try:
            new_id = retry(self.job_id)
        except Exception as exc:  # noqa: BLE001 - a click has nowhere else to report to
            # Said below the task (a comm handler's traceback is never seen).
            self._retry.disabled = False
            said = w.HTML(
                f'<div style="color:var(--jp-error-color1,#c62828)">Retry failed: '
                f"{_text.esc(f'{type(exc).__name__}: {exc}')}</div>"
            )
            self._retried.children = (*self._retried.children, said)
            return
        self._retry.description = "Retry"
        self._retry.tooltip = f"retried as {new_id}; click to run it once more"
        self._retry.disabled = False
        self._retried.children = (*self._retried.children, progress_widget(new_id))

    # -- text forms ----------------------------------------------------------------------
    def __repr__(self) -> str:
        return _text.summary(self.record)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(_text.summary(self.record))

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        if super()._repr_mimebundle_(**kwargs) is None:
            return None  # a closed widget
        return self._bundle()

    def close(self) -> None:
        refresher().discard(self)
        _open.pop(self.job_id, None)
        super().close()


def _log_line(stream: str, text: str) -> str:
    escaped = _text.esc(text)
    if stream == "stderr":
        return f'<span style="color:var(--jp-error-color1,#c62828)">{escaped}</span>\n'
    return escaped + "\n"


#: The open widget of each task, so that showing a task twice shows one model twice.
_open: dict[str, TaskProgress] = {}


def progress_widget(job_id: str) -> TaskProgress:
    """The live widget of ``job_id`` (the same one if it is already open)."""
    widget = _open.get(job_id)
    if widget is None or widget.comm is None:
        widget = _open[job_id] = TaskProgress(job_id)
    return widget


def show(job_id: str) -> None:
    """Display the live progress widget of any task in the store, e.g. from an earlier cell."""
    if _terminal.in_terminal(get_ipython()):  # no widgets: a line now, one when it ends
        _terminal.show(job_id, lambda: get_task(job_id))
        return
    widget = progress_widget(job_id)
    widget._shown_status = widget.record.status
    display(widget, display_id=widget.display_id)
    widget._displayed = True
    widget._final_on_main = widget._done  # what was just displayed is the final state


def show_in_notebook(job_id: str) -> None:
    """Show the task's widget when running in a notebook kernel; nothing in a script."""
    shell = get_ipython()
    if shell is not None and getattr(shell, "kernel", None) is not None:
        show(job_id)


def _where(record: TaskRecord) -> str | None:
    """Where the task runs, for its details: "thread raytha-nb-worker-2", "process pid 42"."""
    worker, executor = record.worker, record.executor
    if worker is None:
        return executor
    return worker if executor is None or worker.startswith(executor) else f"{executor} {worker}"
