"""A task's run options (retries, timeout, delay, continuations, limit), checked once.

``@rnb.task(...)`` gives a function its defaults and ``enqueue(...)`` may override each;
the result is one :class:`TaskOptions`, checked here before anything is queued, so a
bad value (negative retries, a time in the past) is an error naming it. The options
are stored with the task (``TaskRecord.options``) as far as they are JSON, so that a
re-run from another kernel runs with the same ones.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import Any

from .model import dumps

#: Exponential back-off between attempts when ``retry_delay`` is not given: 1, 2, 4 ...
#: seconds, +/- 25 %, at most this long.
MAX_DELAY = 600.0
#: Exceptions never retried: the interpreter or the user stopping things.
_NEVER = ("KeyboardInterrupt", "SystemExit", "GeneratorExit")

Delay = float | Sequence[float] | Callable[[int], float] | None


@dataclass(frozen=True)
class TaskOptions:
    """How a task runs beyond its body; every field is checked in :meth:`checked`."""

    retries: int = 0
    retry_delay: Delay = None
    #: Exception classes (or their qualified names, as a re-run elsewhere has them).
    retry_on: tuple[type[BaseException] | str, ...] = (Exception,)
    timeout: float | None = None
    executor: str | None = None
    limit: int | None = None
    #: Epoch seconds before which it must not start (``at=`` / ``delay=``).
    not_before: float | None = None
    after: tuple[str, ...] = ()
    when: str = "success"
    group_id: str | None = None
    retry_of: str | None = None
    #: The checkpoint a re-run starts from (``ctx.resume``).
    resume: Any = None
    #: ``module:qualname`` of an importable task, so a re-run elsewhere can import it.
    ref: str | None = None
    #: The schedule whose run this is (set by the server's scheduler).
    schedule_id: str | None = None

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    @cached_property
    def stored(self) -> str:
        """:meth:`to_json` as the store keeps it, made once: every row write of every
        task with these options (a map's thousands of children share one) uses it."""
        return dumps(self.to_json())

    @cached_property
    def _public(self) -> dict[str, Any]:
        return self.to_json()

    def public(self) -> dict[str, Any]:
        """:meth:`to_json` (a copy of one made once): what each task's record shows."""
        out = dict(self._public)
        out["retry_on"] = list(out["retry_on"])
        return out

    def merged(self, **given: Any) -> TaskOptions:
        """These defaults overridden by the options ``enqueue()`` was given (None: not
        given), checked."""
        values = {k: v for k, v in given.items() if v is not None}
        at, delay = values.pop("at", None), values.pop("delay", None)
        if at is not None and delay is not None:
            raise ValueError("give at= or delay=, not both")
        if at is not None:
            values["not_before"] = _epoch(at, "at")
        elif delay is not None:
            values["not_before"] = datetime.now(timezone.utc).timestamp() + _seconds(delay, "delay")
        if "after" in values:
            after = values["after"]
            values["after"] = (after,) if isinstance(after, str) else tuple(after)
        if isinstance(values.get("timeout"), timedelta):
            values["timeout"] = values["timeout"].total_seconds()
        if "retry_on" in values and isinstance(values["retry_on"], type):
            values["retry_on"] = (values["retry_on"],)
        return replace(self, **values).checked()

    def checked(self) -> TaskOptions:
        """``self`` if every option makes sense, else ``ValueError``/``TypeError`` naming it."""
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"retries must be a whole number of 0 or more, not {self.retries!r}")
        if not isinstance(self.retry_on, tuple) or not all(
            isinstance(kind, str) or (isinstance(kind, type) and issubclass(kind, BaseException))
            for kind in self.retry_on
        ):
            raise TypeError(f"retry_on must be exception classes, not {self.retry_on!r}")
        delay = self.retry_delay
        if delay is not None and not callable(delay):
            if isinstance(delay, (int, float)) and not isinstance(delay, bool):
                _seconds(delay, "retry_delay")
            elif isinstance(delay, Sequence) and delay and not isinstance(delay, str):
                for item in delay:
                    _seconds(item, "retry_delay")
            else:
                raise TypeError(
                    "retry_delay must be seconds, a list of seconds or fn(attempt) -> seconds, "
                    f"not {delay!r}"
                )
        if self.timeout is not None:
            _seconds(self.timeout, "timeout", positive=True)
        if self.limit is not None and (
            isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1
        ):
            raise ValueError(f"limit must be a whole number of 1 or more, not {self.limit!r}")
        if self.when not in ("success", "finished"):
            raise ValueError(f"when must be 'success' or 'finished', not {self.when!r}")
        if self.not_before is not None and self.not_before < _now() - 1.0:
            raise ValueError(
                f"at={_shown(self.not_before)} is in the past (it is {_shown(_now())} now): "
                "give a time to come, or delay=seconds"
            )
        for parent in self.after:
            if not isinstance(parent, str):
                raise TypeError(f"after= takes task ids (strings), not {parent!r}")
        return self

    def delay_for(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1`` after attempt ``attempt`` failed."""
        delay = self.retry_delay
        if callable(delay):
            return _seconds(delay(attempt), "retry_delay(attempt)")
        if isinstance(delay, (int, float)):
            return float(delay)
        if isinstance(delay, Sequence) and delay:
            return float(delay[min(attempt, len(delay)) - 1])
        base = min(MAX_DELAY, 2.0 ** (attempt - 1))
        return base * random.uniform(0.75, 1.25)  # noqa: S311 - jitter, not security

    def retries_for(self, mro: Sequence[str], error_type: str | None) -> bool:
        """Whether an attempt that raised this exception may be retried: by its class's
        MRO (qualified names) when the executor sent it, else by its type's name."""
        if error_type in _NEVER or any(name in _NEVER for name in mro):
            return False
        wanted = {_qualified(kind) for kind in self.retry_on}
        if mro:
            return bool(wanted & set(mro))
        if "Exception" in wanted or "BaseException" in wanted:
            return True
        return error_type in wanted or (error_type or "").rpartition(".")[2] in wanted

    def to_json(self, everything: bool = False) -> dict[str, Any]:
        """What of these options a re-run elsewhere can use (JSON); ``everything``: also
        this run's own (its start time, parents, group, checkpoint to resume)."""
        delay = self.retry_delay
        out: dict[str, Any] = {
            "retries": self.retries,
            "retry_on": [_qualified(kind) for kind in self.retry_on],
            "timeout": self.timeout,
            "limit": self.limit,
            "executor": self.executor,
            "when": self.when,
            "ref": self.ref,
        }
        if delay is not None and not callable(delay):
            out["retry_delay"] = delay if isinstance(delay, (int, float)) else list(delay)
        if everything:
            out.update(
                not_before=self.not_before, after=list(self.after) or None,
                group_id=self.group_id, retry_of=self.retry_of, resume=self.resume,
                schedule_id=self.schedule_id,
            )  # fmt: skip
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskOptions:
        """Inverse of :meth:`to_json` (``retry_on`` as names)."""
        known = {
            "retries", "retry_delay", "timeout", "limit", "executor", "when", "not_before",
            "group_id", "retry_of", "resume", "ref", "schedule_id",
        }  # fmt: skip
        values: dict[str, Any] = {k: v for k, v in data.items() if k in known}
        if isinstance(values.get("retry_delay"), list):
            values["retry_delay"] = tuple(values["retry_delay"])
        values["retry_on"] = tuple(data.get("retry_on", ["Exception"]))
        values["after"] = tuple(data.get("after") or ())
        return cls(**values)


def defaults(target: Any) -> TaskOptions:
    """The options ``@rnb.task`` gave ``target``, else the defaults."""
    options = getattr(target, "__raytha_nb_options__", None)
    return options if isinstance(options, TaskOptions) else TaskOptions()


def mro_names(exc: BaseException) -> list[str]:
    """The qualified names of ``exc``'s classes, for ``retry_on`` checks elsewhere."""
    return [_qualified(kind) for kind in type(exc).__mro__]


def _qualified(kind: type | str) -> str:
    if isinstance(kind, str):
        return kind
    return f"{kind.__module__}.{kind.__qualname__}".removeprefix("builtins.")


def _now() -> float:
    return datetime.now(timezone.utc).timestamp()


def _shown(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def _seconds(value: Any, name: str, positive: bool = False) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{name} must be a number of seconds or a timedelta, not {value!r}")
    if value < 0 or (positive and value == 0):
        least = "more than" if positive else "at least"
        raise ValueError(f"{name} must be {least} 0 s, not {value}")
    return float(value)


def _epoch(at: Any, name: str) -> float:
    if not isinstance(at, datetime):
        raise TypeError(f"{name} must be a datetime, not {at!r}")
    # A naive time is this machine's local time, as datetime.now() gives it.
    when: datetime = at if at.tzinfo is not None else at.astimezone()
    return when.timestamp()
