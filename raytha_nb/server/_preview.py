"""The first rows of a Parquet result as JSON, read from the file's footer and first
row groups only, so a preview of a large result costs what its first rows cost."""

from __future__ import annotations

import math
from typing import Any, BinaryIO

import pyarrow.parquet as pq

#: Longest text shown in one cell; the rest is cut with an ellipsis.
MAX_TEXT = 200


def preview(handle: BinaryIO, rows: int) -> dict[str, Any]:
    """``{"columns": [{name, type}], "rows": [[...]], "total_rows", "shown"}`` for
    the first ``rows`` rows of the Parquet file open as ``handle``."""
    parquet = pq.ParquetFile(handle)
    schema = parquet.schema_arrow
    first: list[list[Any]] = []
    if rows and parquet.metadata.num_rows:
        batch = next(parquet.iter_batches(batch_size=rows), None)
        if batch is not None:
            columns = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
            first = [[_cell(col[r]) for col in columns] for r in range(batch.num_rows)]
    return {
        "columns": [{"name": f.name, "type": str(f.type)} for f in schema],
        "rows": first,
        "total_rows": parquet.metadata.num_rows,
        "shown": len(first),
    }


def _cell(value: Any) -> Any:
    """A value JSON (and a browser's JSON.parse) can hold: NaN and infinities, dates,
    decimals and nested values become text."""
    if value is None or isinstance(value, bool | int | str):
        return value if not isinstance(value, str) or len(value) <= MAX_TEXT else _cut(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes):
        return _cut(value.hex())
    return _cut(str(value))


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"
