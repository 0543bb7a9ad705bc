"""tqdm bars created inside a task report to the task instead of drawing.

Existing code that loops with ``tqdm`` (std, ``tqdm.auto`` or ``tqdm.notebook``) thus
shows its progress in the task's widget and store, and draws no second bar into some
random cell. Outside a task, tqdm is untouched. Each refresh tqdm would draw (at most
every ``mininterval``) becomes one ``report()``; each item and ``update()`` is a
cancellation point (checked after tqdm released its lock: raising inside its drawing
would leave tqdm's process-wide lock held).
"""

from __future__ import annotations

import sys
from typing import Any

from ._live import LiveTask
from .context import current
from .errors import TaskCancelled


class _Sink:
    """A file that discards what the bar would have drawn."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def _report(bar: Any, live: LiveTask) -> Any:
    def display(*_args: Any, **_kwargs: Any) -> None:
        if "total" not in bar.__dict__:
            return  # still inside tqdm's __init__
        n, total = bar.n, bar.total
        label = f"{bar.desc.rstrip(': ')}: " if bar.desc else ""
        if total:
            live.report(min(n * 100.0 / total, 100.0), f"{label}{n:,}/{total:,}")
        else:
            live.report(None, f"{label}{n:,} items")

    return display


def _bound(init: Any, obj: Any) -> Any:
    # tqdm's own __init__ is a functools.partialmethod (its env-var defaults): bind it.
    return init.__get__(obj, type(obj))


def _task_init(init: Any, std_init: Any) -> Any:
    """Wrap a tqdm class's ``__init__``: inside a task, a silent bar that reports."""

    def task_init(self: Any, *args: Any, **kwargs: Any) -> None:
        ctx = current()
        if ctx is None:
            _bound(init, self)(*args, **kwargs)
            return
        kwargs = {k: v for k, v in kwargs.items() if k not in ("display", "colour", "gui")}
        kwargs["file"] = _Sink()
        self._raytha_nb_live = ctx._live
        reporter = _report(self, ctx._live)
        self.display = self.disp = reporter  # before __init__, which draws once
        _bound(std_init, self)(*args, **kwargs)  # skip tqdm.notebook's widget and display()
        if not self.disable:
            reporter()

    task_init._raytha_nb = True  # type: ignore[attr-defined]
    return task_init


def _patch(cls: Any, std_init: Any) -> None:
    if getattr(cls.__dict__.get("__init__"), "_raytha_nb", False):
        return
    cls.__init__ = _task_init(cls.__dict__["__init__"], std_init)


def _cancellable(std: Any) -> None:
    """Make iterating and ``update()`` of a task's bar raise when the task is cancelled."""
    iterate, update = std.__iter__, std.update

    def task_iter(self: Any) -> Any:
        live = self.__dict__.get("_raytha_nb_live")
        if live is None:
            yield from iterate(self)
            return
        for item in iterate(self):
            yield item
            if live.cancel_requested:
                raise TaskCancelled(live.id)

    def task_update(self: Any, n: float = 1) -> Any:
        done = update(self, n)
        live = self.__dict__.get("_raytha_nb_live")
        if live is not None and live.cancel_requested:
            raise TaskCancelled(live.id)
        return done

    std.__iter__, std.update = task_iter, task_update


_installed: list[bool] = []


def install() -> bool:
    """Patch tqdm if it is installed (idempotent); False when it is not."""
    try:
        from tqdm import std
    except ImportError:
        return False
    if _installed:
        return True
    _installed.append(True)
    std_init = std.tqdm.__dict__["__init__"]
    _cancellable(std.tqdm)
    _patch(std.tqdm, std_init)
    original_new = std.tqdm.__dict__["__new__"]

    def task_new(cls: Any, *args: Any, **kwargs: Any) -> Any:
        # tqdm.notebook may be imported after us: patch it the first time it is used.
        notebook = sys.modules.get("tqdm.notebook")
        if notebook is not None and current() is not None:
            _patch(notebook.tqdm_notebook, std_init)
        return original_new(cls, *args, **kwargs)

    std.tqdm.__new__ = staticmethod(task_new)  # type: ignore[method-assign]
    return True
