"""Background Tasks panel in real JupyterLab + headless Chromium.

1. Latency from ``report()`` in a notebook kernel to the panel's DOM showing the new
   percent (p50/p95 over N updates), beside the peer path "kernel -> server REST"
   measured in the same run (the page polls GET tasks/{id} every 10 ms).
2. The panel with 1,000 tasks in the store vs an empty store, same run: time to load
   the list (the model's performance measure), time from pressing the panel's tab to
   the frame showing its rows (first render), JS heap and DOM nodes (CDP
   Performance.getMetrics), rows in the DOM (virtualised), and frame times while
   scrolling the whole list.
3. Per-event cost in the page with those 1,000 tasks held, per progress update of one
   running task (published to the kernel API by tests/browser/_feed.py), with the list
   shown, with the list under a text filter, with the task's details open, and with
   the panel closed (another sidebar tab shown; the status bar still counts): the
   renderer main thread's CPU time (Chrome trace `tdur`, so a shared, busy machine
   does not inflate it as wall-clock durations are), of which style + layout and
   paint + compositing, minus an idle window of the same length; and the (wall-clock)
   script time of the events stream's listeners and of animation-frame callbacks
   (where the panel draws).

Run: /work/main/.venv/bin/python benchmarks/bench_panel.py [--tasks 1000] [--updates 50]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser import _lab  # noqa: E402
from tests.browser._feed import Feed  # noqa: E402
from tests.browser._ui import (  # noqa: E402
    PANEL,
    TAB,
    open_notebook,
    open_panel,
    percent,
    row,
    run_cell,
    wait_lab,
    wait_until,
)

SEED = """
import sys, raytha_nb as rnb
n = int(sys.argv[2])
rnb.configure(sys.argv[1], workers=4)
def work(i):
    if i % 17 == 0:
        raise ValueError(f"row {i} is bad")
    return {"i": i}
ids = [rnb.enqueue(work, {"i": i}, name=f"job-{i:04d}") for i in range(n)]
for job in ids:
    try:
        rnb.wait(job, timeout=120)
    except Exception:
        pass
rnb.manager().shutdown()
"""

REPORTER = """import time, raytha_nb as rnb
def reporter(n, gap):
    stamps = []
    time.sleep(1.0)
    for i in range(1, n + 1):
        stamps.append(time.time())
        rnb.progress(100 * i / n, info=f"update {i}", step=i)
        time.sleep(gap)
    return stamps"""
PROBE = 'rnb.enqueue(reporter, {"n": %d, "gap": %f}, name="latency-probe")'

# Runs in the page: timestamps (ms, wall clock) when the row's percent text changes, and
# when the server's REST answer first shows each percent.
WATCH = """([taskId, apiUrl]) => {
  const seen = {}, rest = {};
  window.__bench = {seen, rest};
  const tick = () => {
    const el = document.querySelector(`[data-task-id="${taskId}"] .jp-RaythaTask-percent`);
    if (el && !(el.textContent in seen)) seen[el.textContent] = Date.now();
  };
  new MutationObserver(tick).observe(document.querySelector('#raytha-nb-tasks'),
    {subtree: true, childList: true, characterData: true});
  const poll = async () => {
    while (!window.__bench.stop) {
      const r = await fetch(apiUrl, {credentials: 'same-origin'});
      if (r.ok) {
        const t = await r.json();
        const key = Math.round(t.percent_complete) + '%';
        if (!(key in rest)) rest[key] = Date.now();
      }
      await new Promise(res => setTimeout(res, 10));
    }
  };
  poll();
}"""

LOAD_MS = "() => performance.getEntriesByName('raytha-nb:load', 'measure').map(e => e.duration)"

# Starts a timer at the tab's pointerdown; resolves at the first frame after the panel is
# visible with its rows (or its empty message) in the DOM.
OPEN_TIMER = """(tab) => {
  window.__openTimer = new Promise(resolve => {
    let t0 = 0;
    document.querySelector(tab).addEventListener('pointerdown',
      () => { t0 = performance.now(); }, {capture: true, once: true});
    const ready = () => {
      const p = document.querySelector('#raytha-nb-tasks');
      return t0 && p && p.offsetParent !== null &&
        (p.querySelector('.jp-RaythaTask') ||
         p.querySelector('.jp-RaythaPanel-empty:not([hidden])'));
    };
    const obs = new MutationObserver(() => {
      if (ready()) {
        obs.disconnect();
        requestAnimationFrame(() => resolve(performance.now() - t0));
      }
    });
    obs.observe(document.body, {subtree: true, childList: true, attributes: true});
  });
}"""

SCROLL = """async () => {
  const list = document.querySelector('#raytha-nb-tasks .jp-RaythaPanel-list');
  const frames = [];
  let last = performance.now();
  const end = list.scrollHeight - list.clientHeight;
  let maxRows = 0;
  await new Promise(resolve => {
    const step = now => {
      frames.push(now - last); last = now;
      list.scrollTop = Math.min(end, list.scrollTop + 120);
      maxRows = Math.max(maxRows, list.querySelectorAll('.jp-RaythaTask').length);
      if (list.scrollTop >= end - 1) resolve(); else requestAnimationFrame(step);
    };
    requestAnimationFrame(step);
  });
  return {frames: frames.slice(1), maxRows, distance: end};
}"""


# Installed before the page loads: times the events stream's listeners and every
# animation-frame callback (where the panel renders) while window.__rnbCost.on is set.
COST_HOOK = """(() => {
  const cost = window.__rnbCost = {on: false, events: 0, listenerMs: 0, rafMs: 0};
  const add = EventSource.prototype.addEventListener;
  EventSource.prototype.addEventListener = function (type, listener, options) {
    if (typeof listener !== 'function') return add.call(this, type, listener, options);
    return add.call(this, type, function (ev) {
      if (!cost.on) return listener.call(this, ev);
      const t0 = performance.now();
      try { return listener.call(this, ev); } finally {
        cost.listenerMs += performance.now() - t0;
        cost.events++;
      }
    }, options);
  };
  const raf = window.requestAnimationFrame.bind(window);
  window.requestAnimationFrame = cb => raf(now => {
    if (!cost.on) return cb(now);
    const t0 = performance.now();
    try { return cb(now); } finally { cost.rafMs += performance.now() - t0; }
  });
})()"""

COST_RESET = "() => Object.assign(window.__rnbCost, {on: true, events: 0, listenerMs: 0, rafMs: 0})"
COST_READ = "() => { const c = window.__rnbCost; c.on = false; return {...c}; }"
#: How the panel shows while progress events come: list, filtered list, details, closed.
VIEWS = ("list", "filtered", "details", "closed")
#: Chrome trace categories with the main thread's tasks (RunTask) and what they did.
TRACE_CATEGORIES = ["devtools.timeline", "disabled-by-default-devtools.timeline"]
#: Trace event names (nested in the main thread's RunTask) summed per kind of work.
WORK = {
    "main": ("RunTask",),
    "layout": ("UpdateLayoutTree", "Layout"),
    "paint": ("PrePaint", "Paint", "Layerize", "Commit"),
}


def traced_cpu(browser: Any, page: Any, body: Any) -> dict[str, float]:
    """Renderer main-thread CPU ms (by kind, see WORK) spent while ``body()`` runs."""
    path = Path(tempfile.mkdtemp(prefix="bench-trace-")) / "trace.json"
    browser.start_tracing(page=page, path=str(path), categories=TRACE_CATEGORIES)
    try:
        body()
    finally:
        browser.stop_tracing()
    data = json.loads(path.read_text())
    path.unlink()
    events = data["traceEvents"] if isinstance(data, dict) else data
    main = {
        (e["pid"], e["tid"])
        for e in events
        if e.get("name") == "thread_name" and e.get("args", {}).get("name") == "CrRendererMain"
    }
    cpu: dict[str, float] = dict.fromkeys(WORK, 0.0)
    for e in events:
        if e.get("ph") == "X" and (e.get("pid"), e.get("tid")) in main and "tdur" in e:
            for kind, names in WORK.items():
                if e["name"] in names:
                    cpu[kind] += e["tdur"] / 1000
    return cpu


def event_cost(browser: Any, page: Any, lab: Any, events: int, gap: float) -> dict[str, Any]:
    """Main-thread ms per progress event of one running task, in three views."""
    feed = Feed(lab, kernel_id="kernel-bench")
    live = feed.start("job-running", {"rows": 10**6}, percent=1, info="starting")
    panel = page.locator(PANEL)
    # The scroll measurement left the list at its end: the newest task is at the top.
    page.evaluate(
        f"() => {{ document.querySelector('{PANEL} .jp-RaythaPanel-list').scrollTop = 0; }}"
    )
    running = row(page, "job-running")
    running.wait_for(timeout=10_000)
    text_filter = panel.locator(".jp-RaythaPanel-textFilter")
    fields = panel.locator(".jp-RaythaDetails-fields")
    page.evaluate(COST_RESET)
    idle_cpu = traced_cpu(browser, page, lambda: page.wait_for_timeout(events * gap * 1000 + 300))
    idle = page.evaluate(COST_READ)
    out: dict[str, Any] = {
        "events": events,
        "gap_s": gap,
        "idle_raf_ms": idle["rafMs"],
        "idle_cpu_ms": idle_cpu["main"],
    }
    step = 0
    for view in VIEWS:
        if view == "filtered":
            text_filter.fill("job-")
            wait_until(lambda: panel.locator(".jp-RaythaTask").count() > 5, 10, "filtered rows")
        if view == "details":
            text_filter.fill("")
            running.locator(".jp-RaythaTask-name").click()
            panel.locator(".jp-RaythaDetails").wait_for(state="visible")
        if view == "closed":
            wait_until(
                lambda w=f"row {step * 1000} of 1000000": w in fields.inner_text(),
                10,
                "the last progress in the details",
            )
            page.locator(f"{PANEL} .jp-RaythaDetails-back").click()
            page.locator(".jp-SideBar.jp-mod-left li[data-id='filebrowser']").click()
            panel.wait_for(state="hidden")
        page.evaluate(COST_RESET)

        def send() -> None:
            nonlocal step
            t0 = time.monotonic()
            for i in range(events):
                step += 1
                live.report(min(99.0, step / 10), f"row {step * 1000} of 1000000", step)
                feed.publish()  # a progress-only row, as a kernel's publisher sends
                time.sleep(max(0.0, t0 + (i + 1) * gap - time.monotonic()))
            page.wait_for_timeout(300)

        cpu = traced_cpu(browser, page, send)
        c = page.evaluate(COST_READ)
        seen = max(1, c["events"])
        per = {k: max(0.0, cpu[k] - idle_cpu[k]) / seen for k in WORK}
        out[view] = {
            "events_seen": c["events"],
            "cpu_ms_per_event": per["main"],
            "layout_ms_per_event": per["layout"],
            "paint_ms_per_event": per["paint"],
            "listener_ms_per_event": c["listenerMs"] / seen,
            "raf_ms_per_event": max(0.0, c["rafMs"] - idle["rafMs"]) / seen,
        }
    page.locator(TAB).click()  # open again: the rows show the last progress
    wait_until(lambda: percent(running) == round(min(99.0, step / 10)), 10, "the last progress")
    return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def metrics(page: Any) -> dict[str, float]:
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")
    page.evaluate("() => new Promise(r => setTimeout(r, 200))")
    cdp.send("HeapProfiler.collectGarbage")
    values = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    cdp.detach()
    return values


def seed(db: Path, n: int) -> None:
    subprocess.run(
        [sys.executable, "-c", SEED, str(db), str(n)],
        check=True,
        env={**_lab.os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )


def panel_load(browser: Any, n: int, events: int = 0, gap: float = 0.05) -> dict[str, Any]:
    """Open Lab with n tasks in the store; time until the panel lists them all."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-panel-"))
    lab_dir = tmp / "lab"
    lab_dir.mkdir()
    if n:
        seed(lab_dir / "tasks.duckdb", n)
    lab = _lab.start_lab(lab_dir)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.add_init_script(COST_HOOK)
        page.goto(lab.page("lab?reset"))
        wait_lab(page)
        # The model loads the list at start-up, panel closed: wait for that load.
        wait_until(
            lambda: page.evaluate(LOAD_MS), 60, "the panel's list load (performance measure)"
        )
        load_ms = page.evaluate(LOAD_MS)[0]
        # Then time from pressing the panel's tab to the frame that shows its rows.
        page.evaluate(OPEN_TIMER, TAB)
        page.locator(TAB).click()
        open_ms = page.evaluate("() => window.__openTimer")
        summary = page.locator(f"{PANEL} .jp-RaythaPanel-summary")
        wait_until(lambda: summary.inner_text().startswith(f"{n} tasks"), 60, f"{n} tasks")
        m = metrics(page)
        out: dict[str, Any] = {
            "tasks": n,
            "list_load_ms": load_ms,
            "open_to_rows_ms": open_ms,
            "js_heap_mb": m["JSHeapUsedSize"] / 2**20,
            "dom_nodes": m["Nodes"],
            "rows_in_dom": page.locator(f"{PANEL} .jp-RaythaTask").count(),
        }
        if n:
            scroll = page.evaluate(SCROLL)
            frames = scroll["frames"]
            out.update(
                scroll_frames=len(frames),
                scroll_frame_p50_ms=pct(frames, 50),
                scroll_frame_p95_ms=pct(frames, 95),
                scroll_frame_max_ms=max(frames),
                scroll_rows_in_dom_max=scroll["maxRows"],
                scroll_px=scroll["distance"],
            )
            _lab.OUTPUT.mkdir(exist_ok=True)
            page.screenshot(path=str(_lab.OUTPUT / f"bench-panel-{n}.png"))
            if events:
                out["event_cost"] = event_cost(browser, page, lab, events, gap)
        page.close()
        return out
    finally:
        lab.stop()


def latency(browser: Any, updates: int, gap: float) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    lab = _lab.start_lab(tmp)
    try:
        _lab.notebook(lab.root / "probe.ipynb", REPORTER, PROBE % (updates, gap))
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        open_notebook(page, lab.page("lab/tree/probe.ipynb"))
        open_panel(page)
        run_cell(page, 1)
        probe = row(page, "latency-probe")
        probe.wait_for(timeout=30_000)
        task_id = probe.get_attribute("data-task-id")
        page.evaluate(WATCH, [task_id, f"{lab.url}raytha-nb/api/tasks/{task_id}"])
        wait_until(
            lambda: lab.api(f"tasks/{task_id}")["status"] == "complete",
            timeout=updates * gap + 60,
            what="probe to finish",
        )
        page.wait_for_timeout(500)
        seen, rest = page.evaluate(
            "() => { const b = window.__bench; b.stop = true; return [b.seen, b.rest]; }"
        )
        stamps = lab.api(f"tasks/{task_id}/result")["value"]
        dom, api = [], []
        for i, t in enumerate(stamps, start=1):
            key = f"{round(100 * i / updates)}%"
            if key in seen:
                dom.append(seen[key] - t * 1000)
            if key in rest:
                api.append(rest[key] - t * 1000)
        page.close()
        return {
            "updates": updates,
            "gap_s": gap,
            "dom_seen": len(dom),
            "dom_p50_ms": pct(dom, 50),
            "dom_p95_ms": pct(dom, 95),
            "dom_max_ms": max(dom),
            "rest_seen": len(api),
            "rest_p50_ms": pct(api, 50) if api else None,
            "rest_p95_ms": pct(api, 95) if api else None,
        }
    finally:
        lab.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--updates", type=int, default=50)
    parser.add_argument("--gap", type=float, default=0.3, help="seconds between report() calls")
    parser.add_argument(
        "--events", type=int, default=200, help="progress events per view for the per-event cost"
    )
    parser.add_argument(
        "--event-gap", type=float, default=0.05, help="seconds between those progress events"
    )
    opts = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=_lab.CHROMIUM, headless=True, args=_lab.CHROMIUM_ARGS
        )
        t0 = time.monotonic()
        lat = latency(browser, opts.updates, opts.gap)
        empty = panel_load(browser, 0)
        full = panel_load(browser, opts.tasks, opts.events, opts.event_gap)
        browser.close()
    print(
        f"== latency: report() in the kernel -> panel DOM ({lat['updates']} updates, "
        f"one every {lat['gap_s']} s)"
    )
    print(
        f"   panel DOM     p50 {lat['dom_p50_ms']:7.1f} ms   p95 {lat['dom_p95_ms']:7.1f} ms   "
        f"max {lat['dom_max_ms']:7.1f} ms   ({lat['dom_seen']} of {lat['updates']} seen)"
    )
    if lat["rest_seen"]:
        print(
            f"   peer: REST    p50 {lat['rest_p50_ms']:7.1f} ms   p95 {lat['rest_p95_ms']:7.1f} ms"
            f"   (GET tasks/{{id}} polled every 10 ms; {lat['rest_seen']} seen)"
        )
        print(f"   DOM / REST p50 ratio: {lat['dom_p50_ms'] / max(lat['rest_p50_ms'], 1e-9):.2f}")
    print(f"== panel with {full['tasks']} tasks vs an empty store (same run)")
    for key in ("list_load_ms", "open_to_rows_ms", "js_heap_mb", "dom_nodes", "rows_in_dom"):
        ratio = full[key] / empty[key] if empty[key] else float("nan")
        print(
            f"   {key:18s} empty {empty[key]:9.1f}   {full['tasks']} tasks {full[key]:9.1f}"
            f"   ratio {ratio:5.2f}"
        )
    print(
        f"   scroll through {full['scroll_px']} px: {full['scroll_frames']} frames, "
        f"frame p50 {full['scroll_frame_p50_ms']:.1f} ms, "
        f"p95 {full['scroll_frame_p95_ms']:.1f} ms, max {full['scroll_frame_max_ms']:.1f} ms; "
        f"at most {full['scroll_rows_in_dom_max']} rows in the DOM"
    )
    cost = full.get("event_cost")
    if cost:
        print(
            f"== per progress event, {full['tasks']} tasks held ({cost['events']} events per "
            f"view, one every {cost['gap_s']} s; idle window: main thread CPU "
            f"{cost['idle_cpu_ms']:.1f} ms, frames {cost['idle_raf_ms']:.1f} ms)"
        )
        for view in VIEWS:
            c = cost[view]
            print(
                f"   {view:9s} main-thread CPU {c['cpu_ms_per_event']:6.3f} ms/event (style+layout "
                f"{c['layout_ms_per_event']:5.3f}, paint {c['paint_ms_per_event']:5.3f}); "
                f"script: listeners {c['listener_ms_per_event']:5.3f}, frames "
                f"{c['raf_ms_per_event']:5.3f}  ({c['events_seen']} events seen)"
            )
    print(f"   total bench time {time.monotonic() - t0:.0f} s")
    print(json.dumps({"latency": lat, "empty": empty, "full": full}))


if __name__ == "__main__":
    main()
