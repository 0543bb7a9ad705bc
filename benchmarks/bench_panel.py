"""Background Tasks panel in real JupyterLab + headless Chromium.

1. Latency from ``report()`` in a notebook kernel to the panel's DOM showing the new
   percent (p50/p95 over N updates), beside the peer path "kernel -> server REST"
   measured in the same run (the page polls GET tasks/{id} every 10 ms).
2. The panel with 1,000 tasks in the store vs an empty store, same run: time to load
   the list (the model's performance measure), time from pressing the panel's tab to
   the frame showing its rows (first render), JS heap and DOM nodes (CDP
   Performance.getMetrics), rows in the DOM (virtualised), and frame times while
   scrolling the whole list.

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
from tests.browser._ui import (  # noqa: E402
    PANEL,
    TAB,
    open_notebook,
    open_panel,
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


def panel_load(browser: Any, n: int) -> dict[str, Any]:
    """Open Lab with n tasks in the store; time until the panel lists them all."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-panel-"))
    lab_dir = tmp / "lab"
    lab_dir.mkdir()
    if n:
        seed(lab_dir / "tasks.duckdb", n)
    lab = _lab.start_lab(lab_dir)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
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
    opts = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=_lab.CHROMIUM, headless=True, args=_lab.CHROMIUM_ARGS
        )
        t0 = time.monotonic()
        lat = latency(browser, opts.updates, opts.gap)
        empty = panel_load(browser, 0)
        full = panel_load(browser, opts.tasks)
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
    print(f"   total bench time {time.monotonic() - t0:.0f} s")
    print(json.dumps({"latency": lat, "empty": empty, "full": full}))


if __name__ == "__main__":
    main()
