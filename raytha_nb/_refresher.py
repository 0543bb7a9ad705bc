"""The one thread that updates every open progress widget from its task's live state.

Tasks never push to widgets: ``report()`` stays an attribute assignment however often
it is called. Every ``interval`` (0.1 s, so at most 10 updates a second per widget)
this thread pulls each widget's task state; traitlets sends a comm message only for a
value that changed, so an idle widget costs nothing on the wire.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

log = logging.getLogger("raytha_nb")

#: Seconds between two refreshes of a widget.
INTERVAL = 0.1
#: A widget whose refresh fails this many times in a row is dropped (e.g. task deleted).
_MAX_FAILURES = 20


class Refreshable(Protocol):
    @property
    def done(self) -> bool: ...

    def refresh(self, *, force_logs: bool = False, now: float = 0.0) -> None: ...


class Refresher:
    """Owns the set of widgets to refresh and the daemon thread that does it."""

    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self._widgets: dict[int, Refreshable] = {}
        self._failures: dict[int, int] = {}
        self._lock = threading.Lock()
        self._round = threading.Lock()  # one refresh round at a time (thread or flush())
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, widget: Refreshable) -> None:
        if widget.done:
            return
        with self._lock:
            self._widgets[id(widget)] = widget
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="raytha-nb-widgets", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def discard(self, widget: Refreshable) -> None:
        with self._lock:
            self._widgets.pop(id(widget), None)
            self._failures.pop(id(widget), None)

    def flush(self) -> None:
        """Refresh every widget now, on this thread.

        Run at the end of each cell: updates sent while the cell is still busy belong to
        it, so a front end that saves widget state per cell (nbclient) sees them.
        """
        if self._widgets:
            self._run_round()

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._widgets:
                self._run_round()

    def _run_round(self) -> None:
        with self._round:
            with self._lock:
                widgets = list(self._widgets.items())
            now = time.monotonic()
            for key, widget in widgets:
                self._refresh_one(key, widget, now)

    def _refresh_one(self, key: int, widget: Refreshable, now: float) -> None:
        try:
            widget.refresh(now=now)
        except Exception:  # never print: it would land in a random cell
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
            log.debug("refreshing a raytha_nb widget failed", exc_info=True)
            if failures >= _MAX_FAILURES:
                self.discard(widget)
            return
        self._failures.pop(key, None)
        if widget.done:
            self.discard(widget)


_refresher: Refresher | None = None
_refresher_lock = threading.Lock()


def refresher() -> Refresher:
    """The process-wide refresher (its thread starts with the first live widget)."""
    global _refresher
    if _refresher is None:
        with _refresher_lock:
            if _refresher is None:
                _refresher = Refresher()
    return _refresher
