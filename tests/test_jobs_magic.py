"""``%jobs`` and ``%%background`` through a real ipykernel: how a failed task is shown
(error type and message, ``--traceback``), and tracebacks numbered as the editor numbers
the cell (the ``%%background`` line is line 1)."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

import pytest

from ._kernel import Kernel, running_kernel

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    db = tmp_path_factory.mktemp("jobs") / "tasks.duckdb"
    with running_kernel(db) as k:
        k.execute("import time\nimport raytha_nb as rnb")
        yield k


def _job(kernel: Kernel, name: str) -> str:
    return str(kernel.value(f"rnb.list_tasks(name={name!r})[0].id"))


def _traceback(kernel: Kernel, name: str) -> str:
    job = _job(kernel, name)
    kernel.execute(f"rnb.wait({job!r}, timeout=30)")
    # Marked: the cell's output may also hold a display update of the task's widget.
    out = kernel.execute(f"print('@@' + repr(rnb.get_task({job!r}).traceback))").text
    (line,) = [x for x in out.splitlines() if x.startswith("@@")]
    return str(ast.literal_eval(line[2:]))


def test_jobs_wait_of_a_failed_task_shows_its_error(kernel: Kernel) -> None:
    kernel.execute('%%background --name oops\nraise KeyError("no column named price")')
    text = kernel.execute("%jobs wait oops").text
    assert any(line.startswith("oops [error]") for line in text.splitlines())
    assert "KeyError: 'no column named price'" in text
    assert "--traceback" in text  # says how to see the rest
    assert "Traceback" not in text


def test_jobs_wait_traceback_shows_the_full_traceback(kernel: Kernel) -> None:
    kernel.execute('%%background --name oops2\nx = 1\nraise ValueError("deep " + "trouble")')
    text = kernel.execute("%jobs wait --traceback oops2").text
    assert "ValueError: deep trouble" in text
    assert "Traceback (most recent call last)" in text
    assert 'raise ValueError("deep " + "trouble")' in text


def test_jobs_table_info_column_shows_the_error(kernel: Kernel) -> None:
    kernel.execute('%%background --name broke\nraise RuntimeError("disk on fire")')
    kernel.execute("%jobs wait broke")
    run = kernel.execute("%jobs")
    plain = run.text
    (row,) = [line for line in plain.splitlines() if " broke " in line]
    assert "RuntimeError: disk on fire" in row
    html = "".join(
        str(m["content"]["data"].get("text/html", ""))
        for m in run.outputs
        if "data" in m["content"]
    )
    assert "<td>RuntimeError: disk on fire</td>" in html


def test_jobs_wait_usage_errors_say_what_to_type(kernel: Kernel) -> None:
    run = kernel.execute("%jobs wait", check=False)
    assert "usage: %jobs wait [--traceback] ID|NAME, or %jobs wait --all" in run.text
    run = kernel.execute("%jobs wait --all --timeout soon", check=False)
    assert "--timeout needs a number of seconds, not 'soon'" in run.text
    assert "Traceback" not in run.text


def test_jobs_wait_all_fails_the_cell_naming_the_failed_task(kernel: Kernel) -> None:
    # Earlier tests' failed tasks are reported by this first wait; then only new ones.
    kernel.execute("try:\n    rnb.wait_all(timeout=60)\nexcept rnb.TaskFailed:\n    pass")
    kernel.execute('%%background --name late-fail\ntime.sleep(0.3)\nraise OSError("gone")')
    kernel.execute("%%background --name fine\n41 + 1")
    run = kernel.execute("%jobs wait --all", check=False)
    assert run.reply["status"] == "error"
    assert run.reply["ename"] == "TaskFailed"
    assert "late-fail" in run.reply["evalue"] and "OSError: gone" in run.reply["evalue"]
    assert "fine" not in run.reply["evalue"]
    kernel.execute("%%background --name fine2\n1\n")
    text = kernel.execute("%jobs wait --all").text
    assert "fine2 [complete]" in text


@pytest.mark.parametrize(
    ("cell", "line"),
    [
        # The %%background line is line 1, so the raise is on line 4.
        ('%%background --name numbered\nx = 1\ny = 2\nraise ValueError("line four")', 4),
        # Blank lines right after the magic line count too.
        ('%%background --name blanks\n\n\nraise ValueError("line four")', 4),
        # An IPython magic inside the cell keeps the numbering.
        ('%%background --name magic\n%time z = 1\n\n\n\nraise ValueError("line six")', 6),
    ],
    ids=["plain", "leading-blank-lines", "magic-inside"],
)
def test_traceback_line_numbers_match_the_editor(kernel: Kernel, cell: str, line: int) -> None:
    name = re.search(r"--name (\S+)", cell).group(1)  # type: ignore[union-attr]
    kernel.execute(cell)
    tb = _traceback(kernel, name)
    frames = re.findall(r'File "[^"]*", line (\d+), in <module>\n\s+(.*)', tb)
    assert frames, tb
    number, source = frames[-1]
    assert int(number) == line, tb
    assert source.startswith("raise ValueError("), tb  # the line shown is the one raised


def test_syntax_error_names_the_editor_line(kernel: Kernel) -> None:
    run = kernel.execute("%%background --name bad-syntax\nx = 1\nif x\n", check=False)
    assert "syntax error at line 3" in run.text
