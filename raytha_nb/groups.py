"""Fan-out in the module-level API: ``rnb.map`` and ``rnb.as_completed`` (a module of
their own: ``map`` shows the group's widget, and widgets import the rest of the API)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from ._manager import manager
from .widgets import show_in_notebook


def map(  # rnb.map, like Dask's client.map; inside raytha_nb use builtins.map
    fn: Any,
    items: Iterable[Any],
    *,
    executor: str | None = None,
    name: str | None = None,
    limit: int | None = None,
    show: bool = True,
    **options: Any,
) -> str:
    """Run ``fn(item)`` as one task per item, plus a group task over them; return the
    group's id. Items must be JSON-serialisable (else ``NotJsonable`` naming the index).

    The group's percent is its children's aggregate and its status info counts them
    ("812 done, 3 failed, 4 running"); ``rnb.result(group_id)`` is the list of the
    children's results in input order. It ends ``complete`` when every child did,
    ``error`` if any failed, ``cancelled`` if cancelled (which cancels its children).
    ``limit``: at most this many of them (tasks of ``name``) run at once; ``options``
    (``retries``, ``timeout``, ``delay`` ... as for :func:`enqueue`) apply to each child.
    In a notebook it shows the group's widget (one bar), unless ``show=False``.
    """
    group_id = manager().map(fn, items, name=name, executor=executor, limit=limit, **options)
    if show:
        show_in_notebook(group_id)
    return group_id


def as_completed(
    group_id: str, timeout: float | None = None, *, return_exceptions: bool = False
) -> Iterator[tuple[str, Any]]:
    """Yield ``(child_id, result)`` for each child of a :func:`map` group as it ends,
    each once. A child that failed raises its ``TaskFailed`` (a cancelled one
    ``ResultUnavailable``) from the loop, as ``future.result()`` would; with
    ``return_exceptions=True`` that exception is yielded as the result instead and the
    loop goes on. ``TimeoutError`` if children are still unfinished after ``timeout`` s."""
    return manager().as_completed(group_id, timeout, return_exceptions)  # type: ignore[no-any-return]
