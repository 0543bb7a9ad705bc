"""Terminal IPython (prompt_toolkit, no kernel) driven through a real pseudo-terminal.

A live bar redrawn with ``\\r`` while ``%jobs wait`` waits, a line when a background
task fails, task prints kept in the task's log, and Ctrl+C that stops only the waiting.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

pytestmark = pytest.mark.timeout(120)

SETUP = """
import time
import raytha_nb as rnb

def slow(n):
    for i in rnb.track(range(n), info="counting"):
        time.sleep(0.05)
    return n

def boom():
    time.sleep(0.3)
    raise ValueError("oops " + "it broke")

def chatty():
    time.sleep(0.5)  # the cell has returned: the prompt is showing when it prints
    print("hello" + "-from-task")
    print("err" + "-from-task", file=sys.stderr)
    time.sleep(0.3)
"""


class Terminal:
    """IPython on a pty; ``seen`` is everything it drew, escape sequences included."""

    def __init__(self, child: pexpect.spawn) -> None:
        self.child = child
        self.mark = 0

    @property
    def seen(self) -> str:
        return str(self.child.logfile_read.getvalue())

    def since_mark(self) -> str:
        return self.seen[self.mark :]

    def cell(self, *lines: str) -> None:
        """Type a cell as a user does; a cell magic ends with a blank line."""
        self.mark = len(self.seen)
        for line in lines:
            self.child.send(line + "\r")
            time.sleep(0.15)
        if lines[0].startswith("%%"):
            self.child.send("\r")
            time.sleep(0.15)
            self.child.send("\r")

    def expect(self, pattern: str, timeout: float = 30) -> None:
        self.child.expect(pattern, timeout=timeout)


@pytest.fixture
def term(tmp_path: Path) -> Iterator[Terminal]:
    import io

    setup = tmp_path / "setup_ipy.py"
    setup.write_text("import sys\n" + SETUP)
    env = dict(
        os.environ,
        IPYTHONDIR=str(tmp_path / "ipython"),
        RAYTHA_NB_DB=str(tmp_path / "tasks.duckdb"),
        TERM="xterm",
        PROMPT_TOOLKIT_NO_CPR="1",  # nobody answers cursor-position requests here
    )
    args = ["-m", "IPython", "--no-banner", "--colors=nocolor", "-i", str(setup)]
    args.insert(3, "--TerminalInteractiveShell.autosuggestions_provider=None")
    child = pexpect.spawn(
        sys.executable, args, env=env, encoding="utf-8", dimensions=(40, 160), timeout=30
    )
    child.logfile_read = io.StringIO()
    t = Terminal(child)
    try:
        t.expect(r"In \[1\]")
        yield t
    finally:
        child.send("exit\r")
        try:
            child.expect(pexpect.EOF, timeout=30)
        finally:
            child.close(force=True)


def test_wait_draws_a_live_bar_and_ends_with_one_line(term: Terminal) -> None:
    term.cell("%%background --name slow", "slow(40)")
    term.expect(r"slow \[enqueued\]")
    term.cell("%jobs wait slow")
    term.expect(r"took 0:0\d\r?\n")
    out = term.since_mark()
    # Redrawn in place: several different percentages, each after a carriage return.
    frames = re.findall(r"\rslow \[processing\][^\r]*?(\d+)%", out)
    assert len(set(frames)) >= 4, out[-2000:]
    assert [int(f) for f in frames] == sorted(int(f) for f in frames)
    assert "slow [complete]" in out and "\x1b[K" in out
    # %jobs wait printed the end; the watcher must not print it a second time.
    time.sleep(0.5)
    assert term.seen.count("slow [complete]") == out.count("slow [complete]")


def test_a_failed_background_task_is_announced_above_the_prompt(term: Terminal) -> None:
    term.cell("%%background --name bad", "boom()")
    term.expect(r"bad \[error\]")  # nothing typed: the task's end is announced
    term.expect("ValueError: oops it broke")
    term.expect(r"In \[2\]")  # the prompt is drawn again below the line
    assert "Traceback" not in term.seen
    term.cell("%jobs wait --traceback bad")
    term.expect(r"raise ValueError\(")
    assert 'File "' in term.since_mark()


def test_task_prints_go_to_its_log_not_the_terminal(term: Terminal) -> None:
    term.cell("%%background --name chat", "chatty()")
    term.expect(r"chat \[complete\]")
    term.cell("print([l.text.upper() for l in rnb.logs(rnb.list_tasks(name='chat')[0].id)])")
    term.expect("HELLO-FROM-TASK', 'ERR-FROM-TASK")
    assert "hello-from-task" not in term.seen
    assert "err-from-task" not in term.seen


def test_ctrl_c_during_wait_stops_the_waiting_in_one_line(term: Terminal) -> None:
    term.cell("%%background --name long", "slow(400)")
    term.expect(r"long \[enqueued\]")
    term.cell("%jobs wait long")
    term.expect(r"long \[processing\][^\r]*counting")
    term.child.sendintr()
    term.expect("stopped waiting; the task keeps running")
    term.expect(r"In \[\d+\]")
    out = term.since_mark()
    assert "Traceback" not in out and "KeyboardInterrupt" not in out
    term.cell("print(rnb.list_tasks(name='long')[0].status.value.upper())")
    term.expect("PROCESSING")


def test_a_failed_enqueued_task_is_announced_and_a_good_one_is_quiet(term: Terminal) -> None:
    term.cell("good = rnb.enqueue(slow, {'n': 2}, name='quiet-one')")
    term.cell("bad = rnb.enqueue(boom, name='loud-one')")
    term.expect(r"loud-one \[error\]")
    term.expect("ValueError: oops it broke")
    time.sleep(0.5)
    assert "quiet-one [" not in term.seen  # only failures of such tasks get a line


def test_plain_cells_open_no_task_store(term: Terminal) -> None:
    term.cell("1 + 1")
    term.expect(r"Out\[1\]: (\x1b\[[0-9;]*m)*2")
    term.cell("print('STORE', rnb._manager.existing_manager())")
    term.expect("STORE None")
