"""Turn task arguments and results into plain JSON values, naming what cannot be."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import math
import pathlib
import uuid
from collections.abc import Mapping
from typing import Any

from .errors import NotJsonable

_SCALARS = (str, int, bool, type(None))


def to_jsonable(value: Any, path: str = "args") -> Any:
    """Return ``value`` as JSON-compatible data; raise :class:`NotJsonable` naming the key path."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        raise NotJsonable(path, value, f"equal to {value!r}, which JSON cannot hold")
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise NotJsonable(f"{path} key {key!r}", key, "and JSON object keys are strings")
            out[key if isinstance(key, str) else str(key)] = to_jsonable(item, f"{path}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        items = [to_jsonable(item, f"{path}[{i}]") for i, item in enumerate(value)]
        return sorted(items, key=repr)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value, path)
    if isinstance(value, (uuid.UUID, decimal.Decimal, pathlib.PurePath)):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return to_jsonable(fields, path)
    model_dump = getattr(value, "model_dump", None)  # pydantic v2
    if callable(model_dump) and not isinstance(value, type):
        return to_jsonable(model_dump(mode="json"), path)
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and getattr(value, "shape", None) == ():
        return to_jsonable(item(), path)
    raise NotJsonable(path, value)
