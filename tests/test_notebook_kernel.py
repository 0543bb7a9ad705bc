"""%%background, the progress widget, %jobs and tqdm, through a real ipykernel."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._kernel import OUTPUT_TYPES, Kernel, running_kernel

pytestmark = pytest.mark.timeout(120)

# A cell body that runs for about `n * 0.05` seconds, reporting through rnb.track.
LOOP = """%%background {opts}
total = 0
for i in rnb.track(range({n}), info="counting"):
    time.sleep(0.05)
    total += i
total
"""


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    db = tmp_path_factory.mktemp("kernel") / "tasks.duckdb"
    with running_kernel(db) as k:
        k.execute("import time\nimport raytha_nb as rnb")
        yield k


def job_of(kernel: Kernel, name: str) -> str:
    """The newest job id with this name."""
    return str(kernel.value(f"rnb.list_tasks(name={name!r})[0].id"))


def wait_done(kernel: Kernel, job: str, timeout: float = 30) -> str:
    return str(kernel.value(f"rnb.wait({job!r}, timeout={timeout}).status.value"))


def model_id(kernel: Kernel, job: str, part: str) -> str:
    return str(kernel.value(f"rnb.widgets._open[{job!r}].{part}.model_id"))


def test_background_returns_at_once_and_widget_percent_rises(kernel: Kernel) -> None:
    run = kernel.execute(LOOP.format(opts="--name count --result answer", n=30), cell_id="c-1")
    job = job_of(kernel, "count")
    # The cell came back while its task still runs.
    assert kernel.value(f"rnb.get_task({job!r}).status.value") in ("enqueued", "processing")
    assert run.reply["status"] == "ok"
    assert len(run.widget_ids()) == 1
    # The text form for front ends without widgets is a tqdm-like line, not HBox(...).
    text = run.text
    assert text.startswith("count [") and "%" in text and "children" not in text
    bar = model_id(kernel, job, "_bar")
    assert wait_done(kernel, job) == "complete"
    kernel.wait_for(lambda: any(u.get("value") == 100.0 for u in kernel.comm_updates(bar)))
    values = [u["value"] for u in kernel.comm_updates(bar) if "value" in u]
    assert values == sorted(values)
    assert len(set(values)) >= 3 and values[-1] == 100.0
    # Names the body assigned exist afterwards, and --result binds the last expression.
    assert kernel.value("(total, answer, i)") == (435, 435, 29)
    assert kernel.value(f"rnb.result({job!r})") == 435
    # The bar turned green.
    assert kernel.value(f"rnb.widgets._open[{job!r}]._bar.style.bar_color") == "#4caf50"


def test_rerun_while_running_shows_the_same_task_and_replace_restarts(kernel: Kernel) -> None:
    cell = LOOP.format(opts="", n=60)
    first = kernel.execute(cell, cell_id="c-rerun")
    again = kernel.execute(cell, cell_id="c-rerun")
    assert "is still running" in again.text and "--replace" in again.text
    assert again.widget_ids() == first.widget_ids()  # the same widget model, shown again
    tasks = kernel.value("[t.id for t in rnb.list_tasks(name='total = 0')]")
    assert len(tasks) == 1
    old = tasks[0]
    kernel.execute(LOOP.format(opts="--replace", n=10), cell_id="c-rerun")
    tasks = kernel.value("[t.id for t in rnb.list_tasks(name='total = 0')]")
    assert len(tasks) == 2 and old in tasks
    new = next(t for t in tasks if t != old)
    assert wait_done(kernel, old) == "cancelled"
    assert wait_done(kernel, new) == "complete"
    # A finished task's cell simply runs again.
    kernel.execute(LOOP.format(opts="", n=2), cell_id="c-rerun")
    assert kernel.value("len(rnb.list_tasks(name='total = 0'))") == 3


def test_task_output_stays_out_of_other_cells(kernel: Kernel) -> None:
    kernel.execute(
        """%%background --name printer
import sys
from IPython.display import display
for n in range(40):
    print(f"task-line {n}")
    if n % 10 == 0:
        print(f"task-err {n}", file=sys.stderr)
        display(f"task-display {n}")
    time.sleep(0.03)
""",
        cell_id="c-print",
    )
    job = job_of(kernel, "printer")
    others = [kernel.execute(f"time.sleep(0.1); print('fg {k}')") for k in range(8)]
    assert wait_done(kernel, job) == "complete"
    for k, run in enumerate(others):
        assert run.text == f"fg {k}\n"
    # Nothing the task wrote reached the front end in any message at all.
    leaked = [
        m for m in kernel.messages if m["msg_type"] in OUTPUT_TYPES and "task-" in str(m["content"])
    ]
    assert leaked == []
    lines = kernel.value(f"[(l.stream, l.text) for l in rnb.logs({job!r})]")
    stdout = [t for s, t in lines if s == "stdout" and t.startswith("task-line")]
    assert stdout == [f"task-line {n}" for n in range(40)]
    assert [t for s, t in lines if s == "stderr"] == [f"task-err {n}" for n in range(0, 40, 10)]
    assert [t for _, t in lines if "task-display" in t] == [
        f"'task-display {n}'" for n in range(0, 40, 10)
    ]
    # The widget's log area shows them too.
    log_html = kernel.value(f"rnb.widgets._open[{job!r}]._log_view.value")
    assert "task-line 39" in log_html and "task-err 30" in log_html


def test_a_pool_bound_to_the_task_logs_into_it_not_into_cells(kernel: Kernel) -> None:
    kernel.execute(
        """%%background --name pooled
from concurrent.futures import ThreadPoolExecutor
def fetch(n):
    time.sleep(0.05)
    print(f"pool-line {n}")
    rnb.progress(50, info=f"fetched {n}")
    return n
with ThreadPoolExecutor(4) as pool:
    got = list(pool.map(rnb.bind(fetch), range(12)))
sum(got)
""",
        cell_id="c-pool",
    )
    job = job_of(kernel, "pooled")
    others = [kernel.execute(f"time.sleep(0.05); print('fg {k}')") for k in range(5)]
    assert wait_done(kernel, job) == "complete"
    assert [run.text for run in others] == [f"fg {k}\n" for k in range(5)]
    leaked = [
        m for m in kernel.messages if m["msg_type"] in OUTPUT_TYPES and "pool-" in str(m["content"])
    ]
    assert leaked == []
    lines = kernel.value(f"sorted(l.text for l in rnb.logs({job!r}))")
    assert lines == sorted(f"pool-line {n}" for n in range(12))
    assert kernel.value(f"rnb.result({job!r})") == sum(range(12))


def test_cancel_button_click_cancels_the_task(kernel: Kernel) -> None:
    kernel.execute(LOOP.format(opts="--name to-cancel", n=400), cell_id="c-cancel")
    job = job_of(kernel, "to-cancel")
    button = model_id(kernel, job, "_cancel")
    kernel.click(button)
    assert wait_done(kernel, job) == "cancelled"
    widget = f"rnb.widgets._open[{job!r}]"
    kernel.wait_for(lambda: kernel.value(f"{widget}._bar.style.bar_color") == "#9e9e9e", 10)
    assert kernel.value(f"{widget}._cancel.layout.display") == "none"


def test_a_failed_cancel_click_says_so_on_the_button_and_re_arms_it(kernel: Kernel) -> None:
    kernel.execute(LOOP.format(opts="--name cancel-fails", n=400), cell_id="c-cancel-fails")
    job = job_of(kernel, "cancel-fails")
    widget = f"rnb.widgets._open[{job!r}]"
    # Stands in for a server that stopped answering (the click's only way to fail).
    kernel.execute(
        "def _unreachable(job_id):\n"
        "    raise rnb.StoreClosed('the raytha_nb server is not serving its store')\n"
        "_real_cancel, rnb.widgets.cancel = rnb.widgets.cancel, _unreachable"
    )
    try:
        kernel.click(model_id(kernel, job, "_cancel"))
        kernel.wait_for(
            lambda: kernel.value(f"{widget}._cancel.description") == "Cancel failed: retry", 10
        )
        assert kernel.value(f"{widget}._cancel.disabled") is False
        assert "not serving its store" in kernel.value(f"{widget}._cancel.tooltip")
    finally:
        kernel.execute("rnb.widgets.cancel = _real_cancel")
    kernel.click(model_id(kernel, job, "_cancel"))
    assert wait_done(kernel, job) == "cancelled"


def test_error_shows_traceback_and_status(kernel: Kernel) -> None:
    kernel.execute(
        "%%background --name failing\nx = 1\nraise ValueError('bad input: row 7')\n",
        cell_id="c-err",
    )
    job = job_of(kernel, "failing")
    assert wait_done(kernel, job) == "error"
    widget = f"rnb.widgets._open[{job!r}]"
    kernel.wait_for(lambda: "ValueError" in kernel.value(f"{widget}._outcome.value"), 10)
    outcome = kernel.value(f"{widget}._outcome.value")
    assert "ValueError: bad input: row 7" in outcome
    assert "raise ValueError" in outcome  # the cell's own source line
    assert "raytha_nb/queue.py" not in outcome  # the worker's frames are left out
    assert kernel.value(f"{widget}._bar.style.bar_color") == "#f44336"
    assert "error" in kernel.value(f"{widget}._title.value")


def test_syntax_error_is_reported_in_the_cell_and_starts_nothing(kernel: Kernel) -> None:
    before = kernel.value("len(rnb.list_tasks(limit=None))")
    run = kernel.execute("%%background --name broken\nfor x in\n", check=False)
    assert run.reply["status"] == "error"
    assert "syntax error at line 2" in run.text  # the editor's line: magic line is 1
    assert kernel.value("len(rnb.list_tasks(limit=None))") == before
    run = kernel.execute("%%background --result 2x\n1\n", check=False)
    assert "--result needs a Python variable name" in run.text


@pytest.mark.parametrize("module", ["tqdm", "tqdm.auto", "tqdm.notebook"])
def test_tqdm_inside_a_task_drives_its_percent(kernel: Kernel, module: str) -> None:
    name = f"tq-{module}"
    run = kernel.execute(
        f"""%%background --name {name}
from {module} import tqdm
for _ in tqdm(range(25), desc="rows", mininterval=0):
    time.sleep(0.04)
""",
        cell_id=f"c-{module}",
    )
    job = job_of(kernel, name)
    bar = model_id(kernel, job, "_bar")
    assert wait_done(kernel, job) == "complete"
    kernel.wait_for(lambda: any(u.get("value") == 100.0 for u in kernel.comm_updates(bar)))
    values = [u["value"] for u in kernel.comm_updates(bar) if "value" in u]
    assert len(set(values)) >= 3 and values == sorted(values)
    assert kernel.value(f"rnb.get_task({job!r}).status_info") == "rows: 25/25"
    # tqdm drew no bar of its own: the cell shows only our widget, the task logged nothing.
    assert len(run.widget_ids()) == 1
    assert kernel.value(f"rnb.logs({job!r})") == []
    opened = [m for m in kernel.messages if m["msg_type"] == "comm_open"]
    assert not any("TqdmHBox" in str(m["content"]) for m in opened)


def test_stop_button_interrupts_only_the_foreground_cell(kernel: Kernel) -> None:
    kernel.execute(LOOP.format(opts="--name survives", n=40), cell_id="c-int")
    job = job_of(kernel, "survives")
    # The interrupt's SIGINT goes to the kernel's whole process group, worker processes
    # included: a process task must go on as a thread task does.
    kernel.execute(
        "def steps():\n    for _ in rnb.track(range(40)):\n        time.sleep(0.05)\n"
        "    return 'went on'\n"
        "in_process = rnb.enqueue(steps, executor='process')"
    )
    in_process = str(kernel.value("in_process"))
    kernel.wait_for(
        lambda: kernel.value(f"rnb.get_task({in_process!r}).status.value") == "processing"
    )
    # Not stop_on_error: after an error ipykernel aborts the requests that reach it before
    # it has finished aborting, and under load the next cell here can be one of them.
    msg_id = kernel.kc.execute("time.sleep(30)", stop_on_error=False)
    time.sleep(0.5)
    kernel.km.interrupt_kernel()
    reply = kernel.kc.get_shell_msg(timeout=20)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert wait_done(kernel, job) == "complete"
    assert wait_done(kernel, in_process) == "complete"
    assert kernel.value(f"rnb.result({in_process!r})") == "went on"


def test_jobs_lists_shows_and_cancels(kernel: Kernel) -> None:
    kernel.execute(LOOP.format(opts="--name listed", n=400), cell_id="c-jobs")
    job = job_of(kernel, "listed")
    table = kernel.execute("%jobs")
    # The table, not an update of an earlier cell's widget that arrived meanwhile.
    html = str(table.shown[-1]["content"]["data"]["text/html"])
    assert "listed" in html and "processing" in html and job[:8] in html
    assert "listed" in table.text and "processing" in table.text
    shown = kernel.execute(f"%jobs show {job[:8]}")
    assert shown.widget_ids() == [kernel.value(f"rnb.widgets._open[{job!r}].model_id")]
    cancelled = kernel.execute("%jobs cancel listed")
    assert f"cancel requested for 'listed' (job {job})" in cancelled.text
    assert wait_done(kernel, job) == "cancelled"
    everything = kernel.execute("%jobs --all --limit 500").text
    assert "cancelled" in everything
    # A name wins over an id prefix that happens to match it.
    namesake = kernel.value(f"rnb.wait(rnb.enqueue(lambda: 1, name={job[:4]!r}), 10).id")
    shown = kernel.execute(f"%jobs show {job[:4]}")
    assert shown.widget_ids() == [kernel.value(f"rnb.widgets._open[{namesake!r}].model_id")]
    bad = kernel.execute("%jobs cancel 'unbalanced", check=False)
    assert "%jobs could not read" in bad.text
    bad = kernel.execute("%jobs show no-such-task", check=False)
    assert "no task has the id or name 'no-such-task'" in bad.text
    bad = kernel.execute("%jobs --everything", check=False)
    assert "%jobs does not understand '--everything'" in bad.text


def test_show_renders_a_task_from_an_earlier_cell(kernel: Kernel) -> None:
    kernel.execute(
        "job = rnb.enqueue(lambda: 6 * 7, name='plain enqueue')\nrnb.wait(job, 10)", cell_id="e"
    )
    run = kernel.execute("rnb.show(job)")
    assert len(run.widget_ids()) == 1 and "plain enqueue [complete]" in run.text
    job = kernel.value("job")
    kernel.wait_for(
        lambda: "42" in kernel.value(f"rnb.widgets._open[{job!r}]._outcome.value"), timeout=10
    )
    missing = kernel.execute("rnb.show('00000000-0000-0000-0000-000000000000')", check=False)
    assert "no task with id" in missing.text


def test_load_ext_in_a_fresh_kernel_and_no_widget_mode(tmp_path: Path) -> None:
    with running_kernel(tmp_path / "t.duckdb") as k:
        k.execute("%load_ext raytha_nb")
        run = k.execute("%%background --no-widget --name quiet\n21 * 2", cell_id="q")
        assert run.widget_ids() == [] and run.text.startswith("quiet [")
        k.execute("import raytha_nb as rnb")
        job = job_of(k, "quiet")
        assert k.value(f"rnb.result({job!r}, timeout=10)") == 42


def test_widget_updates_are_throttled_however_often_the_task_reports(kernel: Kernel) -> None:
    kernel.execute(
        "%%background --name flood\n"
        "t0 = time.perf_counter()\n"
        "while time.perf_counter() - t0 < 1.5:\n"
        "    for n in range(10_000):\n"
        "        rnb.progress(n / 100)\n"
        "time.perf_counter() - t0",
        cell_id="c-flood",
    )
    job = job_of(kernel, "flood")
    bar = model_id(kernel, job, "_bar")
    assert wait_done(kernel, job) == "complete"
    kernel.execute("time.sleep(0.3)")
    seconds = kernel.value(f"rnb.result({job!r})")
    updates = [u for u in kernel.comm_updates(bar) if "value" in u]
    # One refresher pulls at 10 Hz (+ one flush at the end of each cell we ran meanwhile).
    assert 5 <= len(updates) <= seconds * 10 + 8


def test_output_routing_comes_back_when_a_cell_replaces_sys_stdout(kernel: Kernel) -> None:
    # Something (a library, a user) puts ipykernel's own stream back in place...
    kernel.execute("import sys\nsys.stdout = sys.stdout._stream\nsys.stderr = sys.stderr._stream")
    # ...the next cell re-installs the routing before it runs.
    kernel.execute(
        "%%background --name reinstalled\nfor n in range(5):\n    print('routed-line', n)\n",
        cell_id="c-reinstall",
    )
    job = job_of(kernel, "reinstalled")
    others = [kernel.execute("time.sleep(0.05); print('fg')") for _ in range(3)]
    assert wait_done(kernel, job) == "complete"
    assert all(run.text == "fg\n" for run in others)
    assert kernel.value(f"[l.text for l in rnb.logs({job!r})]") == [
        f"routed-line {n}" for n in range(5)
    ]
    assert kernel.value("type(sys.stdout).__name__") == "TaskOutput"
