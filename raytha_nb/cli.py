"""``raytha-nb``: list, inspect, follow, cancel and fetch tasks from a terminal.

It uses the running Jupyter server that holds your task store (as scripts do), else
opens the store file itself for the moment one command takes. Exit codes are in
:data:`EXIT_CODES` and ``raytha-nb --help``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import _results
from ._follow import ProgressLine, follow, print_line
from ._manager import open_backend
from ._sql import literal
from ._text import duration, result_preview, started, text_bar, timing
from .backend import TaskBackend
from .errors import (
    ResultUnavailable,
    ServerError,
    StoreClosed,
    StoreDamaged,
    StoreLockedError,
    StoreUnusable,
    StoreWriteError,
    TaskNotFound,
)
from .model import TaskQuery, TaskRecord, TaskStatus

OK, FAILED, USAGE, NOT_FOUND, STOPPED, NOT_DONE, UNAVAILABLE, CTRL_C = 0, 1, 2, 3, 4, 5, 6, 130
#: What each exit code means (also in ``--help``).
EXIT_CODES = {
    OK: "success (for wait/logs -f/result: the task completed)",
    FAILED: "the task failed (status error)",
    USAGE: "bad command line",
    NOT_FOUND: "no task has that id, or the id prefix matches several tasks",
    STOPPED: "the task was cancelled or interrupted",
    NOT_DONE: "the task has not finished (wait --timeout ran out; result of a running task)",
    UNAVAILABLE: "the task store or server cannot be used (the message says why)",
    CTRL_C: "stopped by Ctrl+C",
}
_BY_STATUS = {TaskStatus.COMPLETE: OK, TaskStatus.ERROR: FAILED}
_SHORT = 8  # characters of an id shown in lists; any unique prefix is accepted


class CliError(Exception):
    """A message for the user and the exit code that goes with it."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code (the console script exits with it)."""
    args = _parser().parse_args(argv)
    try:
        backend = open_backend(args.db)
    except (StoreLockedError, StoreDamaged, StoreUnusable, StoreWriteError, ServerError) as exc:
        return _fail(UNAVAILABLE, str(exc))
    try:
        command: Callable[[TaskBackend, argparse.Namespace], int] = args.run
        return command(backend, args)
    except CliError as exc:
        return _fail(exc.code, str(exc))
    except TaskNotFound as exc:
        return _fail(NOT_FOUND, str(exc))
    except ResultUnavailable as exc:
        return _fail(NOT_DONE, str(exc))
    except (ServerError, StoreClosed, StoreDamaged, StoreWriteError) as exc:
        return _fail(UNAVAILABLE, str(exc))
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return CTRL_C
    except BrokenPipeError:  # `raytha-nb logs ID | head`
        return OK
    finally:
        backend.close()


def _fail(code: int, message: str) -> int:
    sys.stderr.write(f"raytha-nb: {message}\n")
    return code


# -- commands -----------------------------------------------------------------------------
def _list(backend: TaskBackend, args: argparse.Namespace) -> int:
    try:
        query = TaskQuery.of(args.status, args.name, args.limit, q=args.search)
    except (TypeError, ValueError) as exc:
        raise CliError(USAGE, str(exc)) from None
    records = backend.list_tasks(query)
    if args.json:
        _print_json([r.to_json() for r in records])
        return OK
    if not records:
        print("no tasks" + (" match" if args.status or args.name or args.search else ""))
        return OK
    rows = [
        (
            r.id[:_SHORT],
            r.status.value,
            f"{r.percent_complete:3.0f}%",
            r.name,
            started(r),
            duration(r.duration),
            r.status_info or r.error_message or "",
        )
        for r in records
    ]
    _table(("ID", "STATUS", "DONE", "NAME", "STARTED", "TOOK", "INFO"), rows)
    return OK


def _show(backend: TaskBackend, args: argparse.Namespace) -> int:
    record = _find(backend, args.id)
    if args.json:
        _print_json(record.to_json())
        return OK
    fields = [
        ("id", record.id),
        ("name", record.name),
        ("task", record.task),
        ("status", f"{record.status.value}  {timing(record)}".rstrip()),
        ("progress", _progress(record)),
        ("args", json.dumps(record.args, ensure_ascii=False)),
        ("created", _when(record.created_at)),
        ("started", _when(record.started_at)),
        ("completed", _when(record.completed_at)),
        ("notebook", record.notebook or ""),
        ("kernel", record.kernel_id or ""),
        ("pid", "" if record.pid is None else str(record.pid)),
        ("result", result_preview(record)),
    ]
    if record.cancel_requested and not record.finished:
        fields.append(("cancel", "requested"))
    if record.status is TaskStatus.ERROR:
        fields.append(("error", f"{record.error_type}: {record.error_message}"))
    for key, value in fields:
        if value:
            print(f"{key + ':':<11}{value}")
    if record.status is TaskStatus.ERROR and record.traceback:
        print("\n" + record.traceback.rstrip())
    return OK


def _logs(backend: TaskBackend, args: argparse.Namespace) -> int:
    record = _find(backend, args.id)
    if args.follow:
        record, _ = follow(backend, record, logs=True, as_json=args.json)
        return _status_code(record)
    seq = 0
    while True:  # the backend answers in pages
        lines = backend.logs(record.id, seq)
        for line in lines:
            print_line(line, args.json)
        if not lines:
            return OK
        seq = lines[-1].seq


def _wait(backend: TaskBackend, args: argparse.Namespace) -> int:
    record = _find(backend, args.id)
    record, done = follow(backend, record, logs=False, timeout=args.timeout)
    if args.json:
        _print_json(record.to_json())
    else:
        ProgressLine(sys.stdout).show(record)
        if sys.stdout.isatty():
            sys.stdout.write("\n")
    if not done:
        raise CliError(
            NOT_DONE, f"task {record.name} ({record.id}) is still {record.status.value} "
            f"after {args.timeout:g}s",
        )  # fmt: skip
    return _status_code(record)


def _cancel(backend: TaskBackend, args: argparse.Namespace) -> int:
    record = _find(backend, args.id)
    if not record.finished:
        backend.request_cancel(record.id)
    if args.json:
        _print_json({"id": record.id, "cancel_requested": not record.finished})
    elif record.finished:
        print(f"{record.name} ({record.id}) had already finished: {record.status.value}")
    else:
        print(
            f"asked {record.name} ({record.id}) to stop; `raytha-nb wait {record.id[:_SHORT]}` "
            "shows when it has"
        )
    return OK


def _result(backend: TaskBackend, args: argparse.Namespace) -> int:
    record = _find(backend, args.id)
    if record.status is not TaskStatus.COMPLETE:
        if record.status is TaskStatus.ERROR:
            raise CliError(
                FAILED, f"task {record.name} ({record.id}) failed with {record.error_type}: "
                f"{record.error_message} (`raytha-nb show {record.id[:_SHORT]}` has the traceback)",
            )  # fmt: skip
        code = NOT_DONE if not record.finished else STOPPED
        hint = f"; `raytha-nb wait {record.id[:_SHORT]}` first" if code == NOT_DONE else ""
        raise CliError(
            code,
            f"task {record.name} ({record.id}) is {record.status.value}, so it has no result{hint}",
        )
    if args.output:
        _write_result(record, Path(args.output))
        return OK
    value = _results.decode(record.id, record.result, record.result_kind)
    if record.result_kind in (None, "json"):
        _print_json(value)
    else:
        print(value)
    return OK


# -- helpers ------------------------------------------------------------------------------
def _find(backend: TaskBackend, text: str) -> TaskRecord:
    """The task whose id is ``text`` or starts with it (like git's short hashes)."""
    wanted = text.strip().lower()
    try:
        full = str(uuid.UUID(wanted))
    except ValueError:
        full = None
    if full is not None:
        record = backend.get(full)
        if record is None:
            raise CliError(NOT_FOUND, f"no task with id {full}; `raytha-nb list` shows the tasks")
        return record
    if not wanted or any(c not in "0123456789abcdef-" for c in wanted):
        raise CliError(
            NOT_FOUND,
            f"{text!r} is not a task id: ids are hexadecimal UUIDs (any unique start of one "
            "works, as `raytha-nb list` shows them); to find a task by name use "
            "`raytha-nb list --name NAME`",
        )
    matches = [r for r in backend.list_tasks(TaskQuery.of(limit=None)) if r.id.startswith(wanted)]
    if not matches:
        raise CliError(NOT_FOUND, f"no task id starts with {wanted!r}; `raytha-nb list` shows them")
    if len(matches) > 1:
        some = ", ".join(f"{r.id} ({r.name})" for r in matches[:5])
        raise CliError(
            NOT_FOUND,
            f"{wanted!r} is the start of {len(matches)} task ids: {some}; give more characters",
        )
    return matches[0]


def _progress(record: TaskRecord) -> str:
    step = f"  step {record.task_step}" if record.task_step else ""
    info = f"  {record.status_info}" if record.status_info else ""
    return f"|{text_bar(record.percent_complete)}| {record.percent_complete:.0f}%{step}{info}"


def _status_code(record: TaskRecord) -> int:
    return _BY_STATUS.get(record.status, STOPPED)


def _write_result(record: TaskRecord, target: Path) -> None:
    """Save a completed task's result: JSON as JSON; a frame as Parquet, CSV or JSON
    lines (by the file's suffix); a file or pickled object as a copy of its file."""
    stored, kind = record.result, record.result_kind
    if kind in (None, "json"):
        target.write_text(json.dumps(stored, ensure_ascii=False, indent=2) + "\n")
    elif kind == "parquet":
        source = Path(stored["path"])
        if not source.exists():
            raise ResultUnavailable(f"the result file of task {record.id} is gone: {source}")
        suffix = target.suffix.lower()
        if suffix == ".parquet":
            shutil.copyfile(source, target)
        elif suffix in (".csv", ".json", ".jsonl", ".ndjson"):
            import duckdb  # only here: the CLI's other commands need no DuckDB of their own

            form = "(FORMAT csv, HEADER)" if suffix == ".csv" else "(FORMAT json)"
            with duckdb.connect() as con:
                con.execute(
                    f"COPY (SELECT * FROM read_parquet({literal(source)})) "
                    f"TO {literal(target)} {form}"
                )
        else:
            raise CliError(
                USAGE,
                f"cannot tell how to write a table to {target.name!r}: end the file name "
                "in .parquet, .csv or .json",
            )
    elif kind in ("file", "pickle"):
        source = _results.decode(record.id, stored, "file")
        shutil.copyfile(source, target)
    else:
        _results.decode(record.id, stored, kind)  # raises ResultUnavailable saying why
    print(f"wrote the result of {record.name} ({record.id[:_SHORT]}) to {target}")


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2, default=str) + "\n")


def _when(value: Any) -> str:
    return "" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())


# -- the command line ---------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    codes = "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES.items())
    parser = argparse.ArgumentParser(
        prog="raytha-nb",
        description="Look at and control raytha_nb background tasks from a terminal. It "
        "talks to the running Jupyter server that holds your task store, or opens the "
        "store file itself when no server does. A task ID can be shortened to any unique "
        "start, as `raytha-nb list` shows it.",
        epilog=f"exit codes:\n{codes}\n\nexample: raytha-nb wait 3f2a && raytha-nb result "
        "3f2a -o out.parquet",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON instead of text")
    common.add_argument(
        "--db",
        metavar="PATH",
        default=None,
        help="use this task store file directly (default: the server's store, else "
        "$RAYTHA_NB_DB, else <jupyter data dir>/raytha_nb/tasks.duckdb)",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def add(name: str, run: Callable[..., int], text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=text, description=text)
        sub.set_defaults(run=run)
        return sub

    sub = add("list", _list, "list tasks, newest first")
    sub.add_argument(
        "-s", "--status", action="append", metavar="STATUS",
        help="only this status (enqueued, processing, complete, error, cancelled, "
        "interrupted); repeat for several",
    )  # fmt: skip
    sub.add_argument("--name", help="only tasks with exactly this name")
    sub.add_argument(
        "-q", "--search", metavar="TEXT", help="name, task, notebook or info contains TEXT"
    )
    sub.add_argument("-n", "--limit", type=int, default=20, help="at most this many (default 20)")
    sub = add("show", _show, "everything about one task (with its traceback if it failed)")
    sub.add_argument("id", help="task id or a unique start of it")
    sub = add("logs", _logs, "print what a task printed or logged")
    sub.add_argument("id", help="task id or a unique start of it")
    sub.add_argument(
        "-f", "--follow", action="store_true",
        help="keep printing new lines (with a progress line) until the task ends; the exit "
        "code then says how it ended",
    )  # fmt: skip
    sub = add(
        "wait",
        _wait,
        "wait for a task to end, showing its progress; the exit code says how it ended",
    )
    sub.add_argument("id", help="task id or a unique start of it")
    sub.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="give up after this long (exit 5)"
    )
    sub = add("cancel", _cancel, "ask a queued or running task to stop")
    sub.add_argument("id", help="task id or a unique start of it")
    sub = add("result", _result, "print a completed task's result, or save it with -o")
    sub.add_argument("id", help="task id or a unique start of it")
    sub.add_argument(
        "-o", "--output", metavar="FILE",
        help="write the result to FILE: a table as .parquet, .csv or .json; JSON data as JSON",
    )  # fmt: skip
    return parser


if __name__ == "__main__":
    sys.exit(main())
