"""Following one task from a terminal: a live progress line on a TTY, plain lines when
not, and its new log lines as they arrive (for ``raytha-nb wait`` and ``logs -f``)."""

from __future__ import annotations

import json
import shutil
import sys
import time
from typing import TextIO

from ._text import summary
from .backend import TaskBackend
from .model import LogLine, TaskRecord


class ProgressLine:
    """One task's summary: redrawn in place on a terminal, else a plain line each time
    its status, step, info or tens of percent change."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._shown = False
        self._last: tuple[object, ...] | None = None

    def show(self, record: TaskRecord) -> None:
        text = summary(record)
        if self.tty:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            self.stream.write("\r\x1b[2K" + text[:width])
            self._shown = True
        else:
            key = (
                record.status,
                record.task_step,
                record.status_info,
                int(record.percent_complete // 10),
            )
            if key == self._last:
                return
            self._last = key
            self.stream.write(text + "\n")
        self.stream.flush()

    def clear(self) -> None:
        """Take the in-place line away (before printing a log line, or at the end)."""
        if self.tty and self._shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._shown = False


def print_line(line: LogLine, as_json: bool) -> None:
    """A log line: its text on stdout (stderr lines on stderr), or one JSON object."""
    if as_json:
        sys.stdout.write(json.dumps(line.to_json(), ensure_ascii=False) + "\n")
        sys.stdout.flush()
        return
    stream = sys.stderr if line.stream == "stderr" else sys.stdout
    stream.write(line.text + "\n")
    stream.flush()


def follow(
    backend: TaskBackend,
    record: TaskRecord,
    *,
    logs: bool,
    as_json: bool = False,
    timeout: float | None = None,
    interval: float = 0.2,
) -> tuple[TaskRecord, bool]:
    """Poll ``record``'s task until it finishes (or ``timeout``), drawing its progress
    on stderr and, with ``logs``, printing its new lines; return its last state and
    whether it finished."""
    bar = ProgressLine(sys.stderr)
    deadline = None if timeout is None else time.monotonic() + timeout
    seq = 0
    try:
        while True:
            if logs:
                lines = backend.logs(record.id, seq)
                if lines:
                    bar.clear()
                    for line in lines:
                        print_line(line, as_json)
                    seq = lines[-1].seq
            if record.finished:
                if logs and backend.logs(record.id, seq):
                    continue  # lines stored with the final state: print them first
                return record, True
            bar.show(record)
            if deadline is not None and time.monotonic() >= deadline:
                return record, False
            time.sleep(interval)
            record = backend.get(record.id) or record
    finally:
        bar.clear()
