"""The panel's Schedules view (real JupyterLab, kernel, server timer, Chromium): a schedule
made in a kernel appears live with its rule and a ticking next run; Pause shows the badge
and drops the next run, Resume brings it back; Run now starts a run that appears live in
the task list, linked both ways (the schedule's last run, the run's "Schedule"); the
schedule's runs filter the list; Delete asks first."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ._lab import Lab, notebook
from ._ui import PANEL, open_notebook, open_panel, run_cell, wait_lab, wait_until
from .conftest import shot

SHOTS = Path("/tmp/shots/panel-schedules")
ROW = f"{PANEL} .jp-RaythaSchedule"
DETAILS = f"{PANEL} .jp-RaythaDetails"

#: The contrast ratio (WCAG) of an element's text against the background it shows on.
CONTRAST = """e => {
  const rgb = c => c.match(/[\\d.]+/g).map(Number);
  const lum = c => {
    const [r, g, b] = rgb(c).slice(0, 3).map(v => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  let n = e;
  let bg = getComputedStyle(n).backgroundColor;
  while (n && (bg === 'transparent' || rgb(bg)[3] === 0)) {
    n = n.parentElement;
    bg = n ? getComputedStyle(n).backgroundColor : 'rgb(255, 255, 255)';
  }
  const [a, b] = [lum(getComputedStyle(e).color), lum(bg)].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}"""

SETUP = "import time\nimport raytha_nb as rnb"
SCHEDULE = (
    "def ping(seconds):\n"
    "    time.sleep(seconds)\n"
    "    return 'pong'\n"
    "sid = rnb.schedule(ping, {'seconds': 1.5}, name='ping-hourly', every=3600)\n"
    "other = rnb.enqueue(ping, {'seconds': 0}, name='not-a-run')"
)


def tab(page: Any, view: str) -> None:
    page.locator(f"{PANEL} .jp-RaythaPanel-tab[data-view='{view}']").click()


def schedule_row(page: Any, schedule_id: str) -> Any:
    return page.locator(f"{ROW}[data-schedule-id='{schedule_id}']")


def task_row(page: Any, task_id: str) -> Any:
    return page.locator(f"{PANEL} .jp-RaythaTask[data-task-id='{task_id}']")


def names_shown(page: Any) -> list[str]:
    return page.locator(f"{PANEL} .jp-RaythaTask .jp-RaythaTask-name").all_inner_texts()


def the_schedule(lab: Lab, name: str) -> dict[str, Any] | None:
    return next((s for s in lab.api("schedules")["schedules"] if s["name"] == name), None)


def test_schedule_from_a_kernel_pause_run_now_runs_and_delete(lab: Lab, page: Any) -> None:
    notebook(lab.root / "schedules.ipynb", SETUP, SCHEDULE)
    open_notebook(page, lab.page("lab/tree/schedules.ipynb?reset"))
    panel = open_panel(page)
    wait_until(lambda: panel.get_attribute("data-state") == "ready", 30, "panel ready")
    tab(page, "schedules")
    empty = page.locator(f"{PANEL} .jp-RaythaSchedules-empty")
    wait_until(lambda: "No schedules yet" in empty.inner_text(), 10, "the empty view")

    # Made in the kernel while the view is open: it arrives by the event stream.
    run_cell(page, 1)
    made = wait_until(lambda: the_schedule(lab, "ping-hourly"), 30, "the schedule stored")
    row = schedule_row(page, made["id"])
    row.wait_for(timeout=15_000)
    assert row.locator(".jp-RaythaSchedule-name").inner_text() == "ping-hourly"
    assert row.locator(".jp-RaythaSchedule-rule").inner_text() == made["rule"]
    assert row.locator(".jp-RaythaSchedule-paused").is_hidden()
    assert page.locator(f"{PANEL} .jp-RaythaPanel-tabCount").inner_text() == "1"
    nxt = row.locator(".jp-RaythaSchedule-next")
    assert nxt.get_attribute("data-next-run") == made["next_run"]
    # An hour ahead: "Next in 59:58 · <clock>" (less by the time it shows), ticking down.
    first = wait_until(lambda: re.match(r"Next in (\d+:\d\d(?::\d\d)?) · ", nxt.inner_text()), 5)
    wait_until(lambda: not nxt.inner_text().startswith(first.group(0)), 5, "the next run to tick")
    assert "Not run yet · 0 runs" in row.locator(".jp-RaythaSchedule-last").inner_text()
    shot(page, "schedule-light.png", SHOTS)

    # Pause: the badge, no next run (the server agrees); Resume: a next run again.
    row.locator("[data-action='pause']").click()
    badge = row.locator(".jp-RaythaSchedule-paused")
    badge.wait_for(state="visible", timeout=10_000)
    assert badge.evaluate(CONTRAST) >= 4.5
    assert nxt.get_attribute("data-next-run") == ""
    assert "no runs until resumed" in nxt.inner_text()
    assert lab.api(f"schedules/{made['id']}")["paused"] is True
    assert lab.api(f"schedules/{made['id']}")["next_run"] is None
    shot(page, "paused-light.png", SHOTS)
    row.locator("[data-action='resume']").click()
    badge.wait_for(state="hidden", timeout=10_000)
    wait_until(lambda: nxt.get_attribute("data-next-run"), 10, "a next run again")
    assert lab.api(f"schedules/{made['id']}")["paused"] is False
    assert nxt.inner_text().startswith("Next in ")

    # Run now: the run shows live in the task list and its schedule's last run links to it.
    row.locator("[data-action='trigger']").click()
    runs = wait_until(lambda: lab.api(f"tasks?schedule_id={made['id']}")["tasks"], 20, "a run")
    assert len(runs) == 1
    run = runs[0]
    last = row.locator(".jp-RaythaSchedule-lastRun")
    last.wait_for(timeout=10_000)
    assert last.get_attribute("data-task-id") == run["id"]
    wait_until(lambda: "1 run" in row.locator(".jp-RaythaSchedule-last").inner_text(), 10, "1 run")
    tab(page, "tasks")
    run_row = task_row(page, run["id"])
    run_row.wait_for(timeout=10_000)
    wait_until(lambda: run_row.get_attribute("data-status") == "complete", 30, "the run done")
    shot(page, "run-in-list-light.png", SHOTS)
    tab(page, "schedules")
    wait_until(lambda: last.get_attribute("data-status") == "complete", 10, "last run complete")
    shot(page, "last-run-light.png", SHOTS)

    # The schedule's runs: a filtered list with a chip; clearing it shows every task.
    wait_until(
        lambda: any(t["name"] == "not-a-run" for t in lab.api("tasks")["tasks"]), 20, "other task"
    )
    row.locator(".jp-RaythaSchedule-rule").click()
    chip = page.locator(f"{PANEL} .jp-RaythaPanel-chip")
    chip.wait_for(state="visible")
    assert chip.locator(".jp-RaythaPanel-chipText").inner_text() == "Runs of ping-hourly"
    wait_until(lambda: names_shown(page) == [run["name"]], 10, "only its run")
    shot(page, "runs-filter-light.png", SHOTS)
    chip.locator(".jp-RaythaPanel-chipClear").click()
    chip.wait_for(state="hidden")
    wait_until(lambda: "not-a-run" in names_shown(page), 10, "every task again")

    # A run's details name its schedule; the link filters to its runs again.
    run_row.locator(".jp-RaythaTask-name").click()
    field = page.locator(f"{DETAILS} dd[data-field='Schedule']")
    field.wait_for()
    assert field.inner_text() == "ping-hourly"
    shot(page, "run-details-light.png", SHOTS)
    field.locator("a").click()
    chip.wait_for(state="visible")
    chip.locator(".jp-RaythaPanel-chipClear").click()

    # The last run's link opens that task.
    tab(page, "schedules")
    last.click()
    wait_until(
        lambda: page.locator(DETAILS).get_attribute("data-task-id") == run["id"], 10, "the run"
    )

    # Delete asks first: Cancel keeps it, Delete removes it (its run stays).
    tab(page, "schedules")
    row.locator("[data-action='delete']").click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for()
    assert "ping-hourly" in dialog.inner_text() and "1 run stay" in dialog.inner_text()
    shot(page, "delete-dialog-light.png", SHOTS)
    dialog.locator(".jp-mod-reject").click()
    dialog.wait_for(state="detached")
    assert row.count() == 1 and the_schedule(lab, "ping-hourly") is not None
    row.locator("[data-action='delete']").click()
    page.locator(".jp-Dialog .jp-mod-accept").click()
    row.wait_for(state="detached", timeout=10_000)
    assert the_schedule(lab, "ping-hourly") is None
    assert lab.api(f"tasks?schedule_id={made['id']}")["tasks"][0]["id"] == run["id"]
    wait_until(lambda: "No schedules yet" in empty.inner_text(), 10, "the empty view again")


def test_skips_show_live_with_their_history_in_the_dark_theme(dark_lab: Lab, page: Any) -> None:
    """A "module:function" schedule (REST) that fires every second while its 2.5 s run
    still runs: the skips show live and its firings say why; paused, the badge reads."""
    (dark_lab.root / "jobs.py").write_text("import time\n\n\ndef nap():\n    time.sleep(2.5)\n")
    page.goto(dark_lab.page("lab?reset"))
    wait_lab(page)
    open_panel(page)
    tab(page, "schedules")
    made = dark_lab.api("schedules", "POST", {"task": "jobs:nap", "name": "overlap", "every": 1})
    row = schedule_row(page, made["id"])
    row.wait_for()
    assert row.locator(".jp-RaythaSchedule-rule").inner_text() == made["rule"]
    tally = row.locator(".jp-RaythaSchedule-history")
    wait_until(lambda: re.search(r"\d+ skipped", tally.inner_text()), 20, "a skip, live")
    dark_lab.api(f"schedules/{made['id']}/pause", "POST", {})
    badge = row.locator(".jp-RaythaSchedule-paused")
    badge.wait_for(state="visible", timeout=10_000)
    assert badge.evaluate(CONTRAST) >= 4.5  # WCAG AA for its small text
    shot(page, "skips-dark.png", SHOTS)

    tally.click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for()
    skipped = dialog.locator("tr[data-event='skipped']")
    wait_until(lambda: skipped.count() >= 1, 5, "the skips listed")
    stored = dark_lab.api(f"schedules/{made['id']}/events?limit=50")["events"]
    assert skipped.count() == sum(e["event"] == "skipped" for e in stored)
    reason = next(e["reason"] for e in stored if e["event"] == "skipped")
    assert reason and reason in skipped.first.inner_text()
    first_run = next(e["task_id"] for e in stored if e["event"] == "run")
    shot(page, "history-dark.png", SHOTS)
    dialog.locator(f"tr[data-event='run'] a[data-task-id='{first_run}']").click()
    dialog.wait_for(state="detached")
    wait_until(
        lambda: page.locator(DETAILS).get_attribute("data-task-id") == first_run, 10, "its run"
    )
    # Its runs end before the server stops (a worker mid-run would outlive it).
    wait_until(
        lambda: all(
            t["status"] in ("complete", "error", "cancelled", "interrupted")
            for t in dark_lab.api(f"tasks?schedule_id={made['id']}")["tasks"]
        ),
        30,
        "its runs to end",
    )


def test_schedules_are_read_again_when_the_stream_connects(dark_lab: Lab, page: Any) -> None:
    """Changes made while the events stream is down reach the view once it connects."""
    kept = dark_lab.api("schedules", "POST", {"task": "jobs:nap", "name": "kept", "every": 600})
    gone = dark_lab.api("schedules", "POST", {"task": "jobs:nap", "name": "gone", "every": 600})
    page.route(re.compile(r"/raytha-nb/api/events"), lambda route: route.abort())
    page.goto(dark_lab.page("lab?reset"))
    wait_lab(page)
    open_panel(page)
    tab(page, "schedules")
    schedule_row(page, gone["id"]).wait_for()
    dark_lab.api(f"schedules/{gone['id']}", "DELETE")
    new = dark_lab.api("schedules", "POST", {"task": "jobs:nap", "name": "new", "every": 600})
    page.wait_for_timeout(500)
    assert schedule_row(page, gone["id"]).count() == 1  # no stream: not seen yet
    assert schedule_row(page, new["id"]).count() == 0
    page.unroute(re.compile(r"/raytha-nb/api/events"))
    # The browser retries the stream by itself; once open, the view reads the list again.
    schedule_row(page, new["id"]).wait_for(timeout=20_000)
    schedule_row(page, gone["id"]).wait_for(state="detached", timeout=10_000)
    assert schedule_row(page, kept["id"]).count() == 1
