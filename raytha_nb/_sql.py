"""SQL literals for the DuckDB statements that take no parameters (COPY ... TO, options)."""

from __future__ import annotations

import os
from typing import Any


def literal(value: Any) -> str:
    """``value`` as a DuckDB SQL literal (strings quoted, lists, dicts as structs)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"cannot pass {value!r} to DuckDB as an option; give a finite number")
        return repr(value)
    if isinstance(value, (str, os.PathLike)):
        return "'" + os.fspath(value).replace("'", "''") + "'"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(str(k))}: {literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(
        f"cannot pass a {type(value).__name__} ({value!r}) to DuckDB as an option; "
        "use a string, number, bool, list or dict"
    )
