"""Light and dark themes: the panel takes its colours from JupyterLab's CSS variables."""

from __future__ import annotations

from typing import Any

import pytest

from raytha_nb.model import TaskStatus

from ._feed import Feed
from ._lab import Lab
from ._ui import PANEL, open_panel, row, wait_lab, wait_until, widen_sidebar
from .conftest import shot


def colours(page: Any) -> dict[str, str]:
    return page.evaluate(
        """(sel) => {
      const probe = (v) => { const d = document.createElement('div');
        d.style.color = `var(${v})`; document.body.append(d);
        const c = getComputedStyle(d).color; d.remove(); return c; };
      const panel = document.querySelector(sel);
      const fill = panel.querySelector('[data-status="processing"] .jp-RaythaTask-fill');
      const err = panel.querySelector('[data-status="error"] .jp-RaythaTask-glyph');
      return {
        panel_bg: getComputedStyle(panel).backgroundColor,
        panel_fg: getComputedStyle(panel).color,
        layout1: probe('--jp-layout-color1'), font1: probe('--jp-ui-font-color1'),
        brand1: probe('--jp-brand-color1'), error1: probe('--jp-error-color1'),
        fill: getComputedStyle(fill).backgroundColor, err: getComputedStyle(err).color,
      };
    }""",
        PANEL,
    )


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_panel_follows_the_theme(lab: Lab, dark_lab: Lab, page: Any, theme: str) -> None:
    server = dark_lab if theme == "dark" else lab
    feed = Feed(server, kernel_id=f"kernel-{theme}", notebook="reports/monthly.ipynb")
    running = feed.start("monthly-report", {"month": "2026-10"}, percent=62, info="region 5/8")
    failed = feed.start("load-warehouse", percent=12)
    failed.transition(TaskStatus.ERROR, error_type="IOError", error_message="disk full")
    feed.publish()
    page.goto(server.page("lab"))
    wait_lab(page)
    open_panel(page)
    row(page, "monthly-report").wait_for(timeout=15_000)
    row(page, "load-warehouse").wait_for(timeout=15_000)
    c = colours(page)
    assert c["panel_bg"] == c["layout1"] and c["panel_fg"] == c["font1"]
    assert c["fill"] == c["brand1"] and c["err"] == c["error1"]
    light_bg = c["panel_bg"] in ("rgb(255, 255, 255)",)
    assert light_bg == (theme == "light"), c
    widen_sidebar(page)
    shot(page, f"panel-{theme}.png")
    running.transition(TaskStatus.COMPLETE, percent_complete=100.0)
    feed.publish()
    wait_until(lambda: row(page, "monthly-report").get_attribute("data-status") == "complete", 5)
