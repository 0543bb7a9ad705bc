"""Flows in the panel (real JupyterLab, kernels, Chromium): waits in words (a delayed
task's "starts in N s", a retry's "attempt 2 of 3, next in ...", "waiting for 1 task"),
the status filter for the new statuses, the Retry button and "Retry of", and groups
folded under their group row."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from raytha_nb._live import LiveTask
from raytha_nb._options import TaskOptions
from raytha_nb.model import TaskStatus

from .._server_helpers import FAKE_PID
from ._feed import Feed
from ._lab import Lab, notebook
from ._ui import PANEL, open_notebook, open_panel, row, run_cell, wait_lab, wait_until
from .conftest import shot

SHOTS = Path("/tmp/shots/panel-flows")
DETAILS = f"{PANEL} .jp-RaythaDetails"
ROWS = f"{PANEL} .jp-RaythaTask"

SETUP = "import time\nimport raytha_nb as rnb"
TASKS = (
    "@rnb.task(name='flaky', retries=2, retry_delay=[20, 2])\n"
    "def flaky():\n"
    "    attempt = rnb.current().attempt\n"
    "    if attempt < 3:\n"
    "        raise ValueError(f'attempt {attempt} fails')\n"
    "    return attempt\n"
    "@rnb.task(name='always-fails')\n"
    "def always_fails(x):\n"
    "    raise RuntimeError(f'no {x} today')\n"
    "def nap(seconds):\n"
    "    time.sleep(seconds)\n"
    "    return seconds"
)
START = (
    "later = rnb.enqueue(nap, {'seconds': 0.2}, name='later', delay=10)\n"
    "parent = rnb.enqueue(nap, {'seconds': 10}, name='parent')\n"
    "child = rnb.enqueue(nap, {'seconds': 0.1}, name='after-parent', after=parent)\n"
    "flaky_job = rnb.enqueue('flaky', {}, name='flaky')\n"
    "bad = rnb.enqueue('always-fails', {'x': 1}, name='always-fails')"
)


def info(page: Any, name: str) -> str:
    """The row's third line: its state (a wait in words, else the status), step, info."""
    r = row(page, name)
    if not r.count():
        return ""
    line = r.first.locator(".jp-RaythaTask-state, .jp-RaythaTask-info").all_inner_texts()
    return " ".join(line)


def status_of(page: Any, name: str) -> str | None:
    r = row(page, name)
    return r.first.get_attribute("data-status") if r.count() else None


def field(page: Any, label: str) -> Any:
    """The details' value for ``label`` (a locator; count 0 when the row is absent)."""
    return page.locator(f"{DETAILS} dd[data-field='{label}']")


def names_shown(page: Any) -> list[str]:
    """The rows' names, top to bottom (rows are absolutely placed, so sort by y)."""
    found = page.locator(ROWS).evaluate_all(
        "rows => rows.filter(r => r.offsetParent !== null).map(r => "
        "[r.getBoundingClientRect().top, r.querySelector('.jp-RaythaTask-name').textContent])"
    )
    return [name for _, name in sorted(found)]


def test_waits_retries_and_the_retry_button(lab: Lab, page: Any) -> None:
    notebook(lab.root / "flows.ipynb", SETUP, TASKS, START)
    open_notebook(page, lab.page("lab/tree/flows.ipynb?reset"))
    run_cell(page, 1)
    run_cell(page, 2)
    panel = open_panel(page)
    wait_until(lambda: panel.get_attribute("data-state") == "ready", 30, "panel ready")

    # A delayed task counts down, then runs.
    wait_until(lambda: status_of(page, "later") == "scheduled", 20, "later scheduled")
    said = wait_until(lambda: re.search(r"starts in (\d+) s", info(page, "later")), 10, "starts in")
    assert 1 <= int(said.group(1)) <= 10, info(page, "later")
    assert row(page, "later").locator(".jp-RaythaTask-glyph").inner_text() == "◔"
    # A continuation waits for its parent.
    wait_until(lambda: status_of(page, "after-parent") == "awaiting", 20, "awaiting")
    assert "waiting for 1 task" in info(page, "after-parent")
    # A failed attempt with attempts left waits for its next one.
    wait_until(
        lambda: "attempt 2 of 3, next in" in info(page, "flaky"), 20, "attempt 2 of 3, next in"
    )
    assert status_of(page, "flaky") == "scheduled"
    shot(page, "waits-light.png", SHOTS)
    # Counting down: a later second says less.
    first = int(said.group(1))
    wait_until(
        lambda: (
            (m := re.search(r"starts in (\d+) s", info(page, "later"))) is None
            or int(m.group(1)) < first
        ),
        10,
        "the countdown to move",
    )

    wait_until(lambda: status_of(page, "later") == "complete", 30, "later complete")
    wait_until(lambda: status_of(page, "after-parent") == "complete", 40, "continuation ran")

    # Retry of a failed registered task: asks, starts a new task, shows it with "Retry of".
    wait_until(lambda: status_of(page, "always-fails") == "error", 30, "always-fails failed")
    original = lab.api("tasks?name=always-fails")["tasks"][0]["id"]
    button = row(page, "always-fails").locator("[data-action='retry']")
    assert button.get_attribute("aria-disabled") is None
    assert not row(page, "always-fails").locator("[data-action='rerun']").count()
    button.click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for()
    assert "runs again as a new task" in dialog.inner_text()
    shot(page, "retry-dialog-light.png", SHOTS)
    dialog.locator(".jp-mod-accept").click()
    retry_of = field(page, "Retry of")
    retry_of.wait_for(timeout=20_000)
    wait_until(lambda: len(lab.api("tasks?name=always-fails")["tasks"]) == 2, 20, "two runs")
    new = next(t for t in lab.api("tasks?name=always-fails")["tasks"] if t["id"] != original)
    assert new["retry_of"] == original and new["args"] == {"x": 1}
    assert page.locator(f"{DETAILS}").get_attribute("data-task-id") == new["id"]
    link = retry_of.locator(".jp-RaythaDetails-link")
    assert link.get_attribute("data-task-id") == original
    wait_until(lambda: "(error)" in retry_of.inner_text(), 20, "the original's status")
    shot(page, "details-retry-of-light.png", SHOTS)
    link.click()
    wait_until(
        lambda: page.locator(DETAILS).get_attribute("data-task-id") == original, 10, "original"
    )

    # The retried task ends complete on its third attempt.
    wait_until(
        lambda: lab.api("tasks?name=flaky")["tasks"][0]["status"] == "complete", 60, "flaky done"
    )
    flaky = lab.api("tasks?name=flaky")["tasks"][0]
    assert flaky["attempt"] == 3 and flaky["max_attempts"] == 3 and flaky["result"] == 3


def fed(feed: Feed, name: str, status: TaskStatus | None = None, **attrs: Any) -> LiveTask:
    """A task as a kernel publishes it: ``options`` decide its wait; ``attrs`` are set on it."""
    options = attrs.pop("options", None)
    live = LiveTask(
        str(uuid.uuid4()), name, "tests.browser.feed", {"n": 1},
        kernel_id=feed.kernel_id, notebook=feed.notebook, pid=FAKE_PID, options=options,
    )  # fmt: skip
    for key, value in attrs.items():
        setattr(live, key, value)
    if status is not None:
        live.transition(TaskStatus.PROCESSING)
        live.report(40.0, attrs.get("status_info") or "working", 1)
        if status is not TaskStatus.PROCESSING:
            live.transition(status, percent_complete=100.0)
    feed.publish(live)
    return live


def choose(page: Any, status: str) -> None:
    back = page.locator(f"{DETAILS} .jp-RaythaDetails-back")
    if back.is_visible():
        back.click()
    page.locator(f"{PANEL} .jp-RaythaPanel-statusFilter").select_option(status)


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_filter_details_and_groups(lab: Lab, dark_lab: Lab, page: Any, theme: str) -> None:
    server = dark_lab if theme == "dark" else lab
    feed = Feed(server, kernel_id=f"kernel-flows-{theme}", notebook="flows.ipynb")
    soon = time.time() + 600
    parent = fed(feed, f"parent-{theme}", TaskStatus.PROCESSING)
    first = fed(feed, f"first-run-{theme}", TaskStatus.ERROR)
    fed(feed, f"delayed-{theme}", options=TaskOptions(not_before=soon))
    fed(
        feed, f"retrying-{theme}", options=TaskOptions(retries=2, not_before=soon),
        attempt=2, retry_of=first.id, checkpoint={"chunk": 731, "of": 1000},
    )  # fmt: skip
    fed(feed, f"continuation-{theme}", options=TaskOptions(after=(parent.id,)))
    group = fed(feed, f"fan-out-{theme}", TaskStatus.PROCESSING, status_info="2 done, 3 running")
    for i in range(5):
        done = TaskStatus.COMPLETE if i < 2 else TaskStatus.PROCESSING
        fed(feed, f"fan-{i}-{theme}", done, options=TaskOptions(group_id=group.id))
    page.goto(server.page("lab?reset"))  # not the layout test 1 left (panel shown)
    wait_lab(page)
    open_panel(page)
    row(page, f"fan-out-{theme}").wait_for(timeout=15_000)

    # Words for each wait.
    # Ten minutes ahead: less by the time the page shows it, and more than 9 (a loaded box).
    wait_until(lambda: re.search(r"starts in 9:\d\d", info(page, f"delayed-{theme}")), 10, "9:xx")
    assert re.search(r"attempt 2 of 3, next in 9:\d\d", info(page, f"retrying-{theme}"))
    assert "waiting for 1 task" in info(page, f"continuation-{theme}")
    glyph = row(page, f"continuation-{theme}").locator(".jp-RaythaTask-glyph")
    assert glyph.inner_text() == "⊶"
    assert glyph.evaluate("g => getComputedStyle(g).color") == row(
        page, f"delayed-{theme}"
    ).locator(".jp-RaythaTask-glyph").evaluate("g => getComputedStyle(g).color")

    # The group is one row, its children folded under it; open, they follow it, indented.
    assert not row(page, f"fan-0-{theme}").count()
    toggle = row(page, f"fan-out-{theme}").locator(".jp-RaythaTask-toggle")
    assert toggle.inner_text() == "▸ 5" and toggle.get_attribute("aria-expanded") == "false"
    # Folded children still count; the waits are told apart from the running.
    summary = page.locator(f"{PANEL} .jp-RaythaPanel-summary")

    def says() -> bool:
        held = [t["status"] for t in server.api("tasks?limit=1000")["tasks"]]
        running = sum(s in ("enqueued", "processing") for s in held)
        waits = sum(s in ("scheduled", "awaiting") for s in held)
        assert waits >= 3, held
        return summary.inner_text() == f"{len(held)} tasks · {running} running, {waits} waiting"

    wait_until(says, 10, "the summary to count the waits apart")
    shot(page, f"list-folded-{theme}.png", SHOTS)
    toggle.click()
    wait_until(lambda: row(page, f"fan-4-{theme}").count() == 1, 5, "children shown")
    order = names_shown(page)
    at = order.index(f"fan-out-{theme}")
    assert order[at : at + 6] == [f"fan-out-{theme}"] + [f"fan-{i}-{theme}" for i in range(5)]
    child = row(page, f"fan-0-{theme}")
    assert "jp-mod-child" in (child.get_attribute("class") or "")
    assert child.get_attribute("data-status") == "complete"
    shot(page, f"list-expanded-{theme}.png", SHOTS)
    toggle.click()
    wait_until(lambda: row(page, f"fan-0-{theme}").count() == 0, 5, "children folded")

    # The status filter offers every status; "scheduled" lists only the scheduled tasks.
    options = page.locator(f"{PANEL} .jp-RaythaPanel-statusFilter option").evaluate_all(
        "os => os.map(o => o.value)"
    )
    assert {"scheduled", "awaiting", "enqueued", "processing"} <= set(options), options
    choose(page, "scheduled")
    wait_until(
        lambda: sorted(names_shown(page)) == [f"delayed-{theme}", f"retrying-{theme}"],
        5,
        "only the scheduled tasks",
    )
    shot(page, f"filter-scheduled-{theme}.png", SHOTS)
    choose(page, "awaiting")
    wait_until(lambda: names_shown(page) == [f"continuation-{theme}"], 5, "only awaiting")
    choose(page, "active")
    # Wait for the active list itself: the awaiting one already lacked finished tasks.
    wait_until(lambda: f"delayed-{theme}" in names_shown(page), 5, "the active tasks")
    assert f"first-run-{theme}" not in names_shown(page)
    assert f"delayed-{theme}" in names_shown(page)
    choose(page, "")

    # Details: attempt, when, what it waits for, what it retries, its group, its checkpoint.
    row(page, f"retrying-{theme}").locator(".jp-RaythaTask-name").click()
    page.locator(f"{DETAILS} .jp-RaythaDetails-name", has_text=f"retrying-{theme}").wait_for()
    assert field(page, "Attempt").inner_text() == "2 of 3"
    assert field(page, "Scheduled for").count() == 1
    assert re.fullmatch(r"attempt 2 of 3, next in 9:\d\d", field(page, "Waiting").inner_text())
    assert field(page, "Checkpoint").inner_text() == '{"chunk":731,"of":1000}'
    assert field(page, "Retry of").inner_text() == f"first-run-{theme} (error)"
    shot(page, f"details-retrying-{theme}.png", SHOTS)
    field(page, "Retry of").locator("a").click()
    page.locator(f"{DETAILS} .jp-RaythaDetails-name", has_text=f"first-run-{theme}").wait_for()
    assert field(page, "Waiting").is_hidden()  # nothing to wait for once it ran
    choose(page, "")
    row(page, f"continuation-{theme}").locator(".jp-RaythaTask-name").click()
    waits = field(page, "Waits for")
    waits.wait_for()
    assert waits.inner_text() == f"parent-{theme} (processing)"
    waits.locator("a").click()
    page.locator(f"{DETAILS} .jp-RaythaDetails-name", has_text=f"parent-{theme}").wait_for()
    choose(page, "")
    toggle.click()
    row(page, f"fan-3-{theme}").locator(".jp-RaythaTask-name").click()
    assert field(page, "Group").inner_text() == f"fan-out-{theme} (processing)"
    shot(page, f"details-child-{theme}.png", SHOTS)
