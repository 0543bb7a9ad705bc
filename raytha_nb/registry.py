"""What can be enqueued: ``BackgroundTask`` subclasses, plain functions, and a registry by name."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

from ._options import TaskOptions
from .context import TaskContext
from .errors import UnknownTask

F = TypeVar("F", bound=Callable[..., Any])


class BackgroundTask:
    """Subclass and implement ``execute`` (Raytha's ``IExecuteBackgroundTask``).

    A fresh instance runs each job, so instance attributes never leak between runs.
    """

    #: Name shown in lists; defaults to the class name.
    name: str | None = None

    def execute(self, job_id: str, args: Any, ctx: TaskContext) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.execute(job_id, args, ctx)")


_registry: dict[str, Callable[..., Any] | type[BackgroundTask]] = {}


@overload
def register(target: F, *, name: str | None = None) -> F: ...
@overload
def register(target: None = None, *, name: str | None = None) -> Callable[[F], F]: ...


def register(target: Any = None, *, name: str | None = None) -> Any:
    """Register a task class or function so it can be enqueued by name.

    Use as ``@register``, ``@register(name="export")`` or ``register(cls, name=...)``.
    """

    def add(obj: Any) -> Any:
        _registry[name or task_label(obj)] = obj
        return obj

    return add if target is None else add(target)


def task(
    target: Any = None,
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay: Any = None,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
    timeout: float | None = None,
    executor: str | None = None,
    limit: int | None = None,
) -> Any:
    """Register a function under ``name`` (default: its qualified name) with default run
    options, as Celery's and Huey's ``@app.task`` do; ``enqueue(...)`` may override
    each. Use as ``@rnb.task`` or ``@rnb.task(retries=3, timeout=600)``."""
    if isinstance(retry_on, type):
        retry_on = (retry_on,)
    options = TaskOptions(
        retries=retries, retry_delay=retry_delay, retry_on=tuple(retry_on), timeout=timeout,
        executor=executor, limit=limit,
    ).checked()  # fmt: skip

    def add(fn: Any) -> Any:
        if not callable(fn) or isinstance(fn, type):
            raise TypeError(f"@rnb.task decorates a function, not {fn!r}")
        fn.__raytha_nb_options__ = options
        _registry[name or fn.__qualname__] = fn
        return fn

    return add if target is None else add(target)


def registered() -> dict[str, Any]:
    """A copy of the registry: name -> task class or function."""
    return dict(_registry)


def resolve(task: Any) -> Any:
    """The class or function for ``task``, which may be a registered name."""
    if isinstance(task, str):
        try:
            return _registry[task]
        except KeyError:
            known = ", ".join(sorted(_registry)) or "none yet"
            raise UnknownTask(
                f"no task registered as {task!r} (registered: {known}); decorate the class "
                "or function with @raytha_nb.register, or pass it to enqueue() directly"
            ) from None
    if isinstance(task, type) and issubclass(task, BackgroundTask):
        return task
    if callable(task):
        return task
    raise TypeError(
        f"cannot enqueue {task!r}: pass a BackgroundTask subclass, a function, "
        "or the name of a registered task"
    )


def task_label(task: Any) -> str:
    """A readable name: the class's ``name`` attribute, else its ``__name__``."""
    explicit = getattr(task, "name", None) if isinstance(task, type) else None
    if isinstance(explicit, str) and explicit:
        return explicit
    return str(getattr(task, "__name__", None) or type(task).__name__)


def make_runner(task: Any, ctx: TaskContext) -> Callable[[], Any]:
    """A zero-argument callable that runs one job of ``task``: ``execute`` on a fresh
    instance, or the function called with the args spread as keywords/positionals."""
    args = ctx.args
    if isinstance(task, type) and issubclass(task, BackgroundTask):
        return lambda: task().execute(ctx.job_id, args, ctx)
    if args is None:
        return task  # type: ignore[no-any-return]
    if isinstance(args, dict):
        return lambda: task(**args)
    if isinstance(args, list):
        return lambda: task(*args)
    return lambda: task(args)


@functools.lru_cache(maxsize=512)
def _signature(task: Any) -> inspect.Signature | None:
    try:
        return inspect.signature(task)
    except (TypeError, ValueError):
        return None


def check_signature(task: Any, args: Any) -> None:
    """Fail at enqueue, not in the worker, when a function cannot take ``args``."""
    if isinstance(task, type):
        return
    signature = _signature(task)
    if signature is None:
        return
    try:
        if args is None:
            signature.bind()
        elif isinstance(args, dict):
            signature.bind(**args)
        elif isinstance(args, list):
            signature.bind(*args)
        else:
            signature.bind(args)
    except TypeError as exc:
        raise TypeError(
            f"{task_label(task)}{signature} cannot be called with args {args!r}: {exc}"
        ) from None
