"""The seam between the manager and where tasks run.

An executor takes a :class:`~raytha_nb._live.LiveTask` and a body and runs it
somewhere, moving the task through ``processing`` to its final state; the manager
and the publisher see only the task's live state. Today's executor runs tasks on the
kernel's threads (:class:`~raytha_nb.threads.ThreadExecutor`); processes or a Dask
cluster plug in here without touching the manager's other duties.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from ._live import LiveTask
from .context import TaskContext

#: A job body: called where the task runs, with the task's context.
Body = Callable[[TaskContext], Any]


class Executor(ABC):
    """Runs queued tasks; stops them when asked."""

    def ship(self, body: Body, what: str = "the task") -> Body:
        """``body`` as ``submit`` will take it, checked at enqueue before any task exists
        (the process executor pickles it here, so an unpicklable one fails now)."""
        return body

    @abstractmethod
    def submit(self, live: LiveTask, body: Body) -> None:
        """Queue ``live`` to run ``body``; the executor moves it to its final state."""

    def submit_many(self, jobs: list[tuple[LiveTask, Body]]) -> None:
        """Queue many tasks at once (a map's children); executors that can hand them
        out in bulk (fewer locks and wake-ups per task) override this."""
        for live, body in jobs:
            self.submit(live, body)

    @abstractmethod
    def cancel(self, live: LiveTask, force: bool = False) -> None:
        """``live`` (running here) was asked to cancel: make sure it stops, by force
        once a grace period has passed (at once with ``force``)."""

    @abstractmethod
    def running(self) -> list[LiveTask]:
        """The tasks running now."""

    @abstractmethod
    def drop_pending(self) -> list[LiveTask]:
        """Remove and return the tasks still waiting to run."""

    @abstractmethod
    def shutdown(self, wait: float = 0) -> None:
        """Stop taking tasks; wait up to ``wait`` seconds for running ones."""
