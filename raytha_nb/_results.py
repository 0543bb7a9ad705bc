"""Store a task's return value so that ``result()`` gets it back, in this process or another.

JSON values go in the task row. Tables (pandas, polars, pyarrow) are written by DuckDB
as Parquet beside the database and load back as the same kind of object. Anything
else is pickled; what cannot even be pickled keeps only its repr.
"""

from __future__ import annotations

import mimetypes
import os
import pickle
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle

from ._jsonable import to_jsonable
from ._sql import literal
from .errors import NotJsonable, ResultUnavailable


@dataclass(frozen=True)
class ResultFile:
    """Return this from a task whose result is a file it wrote (an export, a query result).

    The file stays where it is; the task's result records its path, size and row count,
    and the server offers it as a download. With ``load_as`` ("pandas", "polars" or
    "pyarrow") a Parquet file loads back as that kind of table in ``result()``;
    otherwise ``result()`` returns the path.
    """

    path: str | os.PathLike[str]
    rows: int | None = None
    media_type: str | None = None
    load_as: str | None = None


def frame_library(value: Any) -> str | None:
    """Which table library ``value`` belongs to, without importing any of them."""
    module = type(value).__module__.split(".")[0]
    name = type(value).__name__
    if module == "pandas" and name == "DataFrame":
        return "pandas"
    if module == "polars" and name == "DataFrame":
        return "polars"
    if module == "pyarrow" and name == "Table":
        return "pyarrow"
    return None


@contextmanager
def staged(target: Path, tag: str) -> Iterator[Path]:
    """Yield a temporary name beside ``target``, renamed to it only if the block succeeds.

    A cancelled or failed write thus never leaves a partial file, and readers of
    ``target`` never see a half-written one. The name keeps ``target``'s suffixes so
    that DuckDB infers the same compression from it.
    """
    tmp = target.with_name(f".rnb-{tag[:8]}.{target.name}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def encode(value: Any, job_id: str, results_dir: Path) -> tuple[Any, str | None]:
    """Persist ``value``; return its stored form (JSON-able) and kind."""
    if value is None:
        return None, None
    if isinstance(value, ResultFile):
        return _encode_file(value)
    library = frame_library(value)
    if library is not None:
        return _encode_frame(value, library, results_dir / f"{job_id}.parquet"), "parquet"
    try:
        return to_jsonable(value, "result"), "json"
    except NotJsonable:
        pass
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    text = _short_repr(value)
    path = results_dir / f"{job_id}.pickle"
    try:
        payload = dumps(value)
    except Exception as exc:  # noqa: BLE001 - any pickling failure means "repr only"
        return {"type": kind, "repr": text, "why": f"{type(exc).__name__}: {exc}"}, "repr"
    results_dir.mkdir(parents=True, exist_ok=True)
    with staged(path, job_id) as tmp:
        tmp.write_bytes(payload)
    return {"type": kind, "repr": text, "path": str(path), "bytes": len(payload)}, "pickle"


def dumps(value: Any) -> bytes:
    """A result pickled by value where needed (cloudpickle): a class the notebook
    defined pickles in a worker process, which got it by value and cannot name it,
    and loads in another kernel, which never defined it."""
    payload: bytes = cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return payload


def _encode_frame(value: Any, library: str, path: Path) -> dict[str, Any]:
    import duckdb

    index: list[str] = []
    names: list[Any] = []
    if library == "pandas" and not _default_index(value):
        # DuckDB drops a pandas index; keep a meaningful one as columns and restore it,
        # names included (None where it had none).
        names = [n if n is None or isinstance(n, str | int | float) else str(n)
                 for n in value.index.names]  # fmt: skip
        index = [f"level_{i}" if n is None else str(n) for i, n in enumerate(names)]
        value = value.reset_index(names=index)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    try:
        con.register("result_frame", value)
        with staged(path, path.stem) as tmp:
            row = con.execute(f"COPY result_frame TO {literal(tmp)} (FORMAT parquet)").fetchone()
    finally:
        con.close()
    return {
        "library": library,
        "path": str(path),
        "rows": int(row[0]) if row else 0,
        "bytes": path.stat().st_size,
        "columns": [str(c) for c in value.columns] if library != "pyarrow" else value.column_names,
        "index": index,
        "index_names": names,
    }


def _encode_file(value: ResultFile) -> tuple[dict[str, Any], str]:
    path = Path(value.path).resolve()
    if not path.is_file():
        raise FileNotFoundError(
            f"the task returned ResultFile({str(path)!r}) but no such file exists"
        )
    media_type = value.media_type or mimetypes.guess_type(path.name)[0]
    if media_type is None and path.suffix == ".parquet":
        media_type = "application/vnd.apache.parquet"
    descriptor = {
        "path": str(path),
        "filename": path.name,
        "bytes": path.stat().st_size,
        "rows": value.rows,
        "media_type": media_type or "application/octet-stream",
    }
    if value.load_as is not None:
        descriptor.update(library=value.load_as, index=[])
        return descriptor, "parquet"
    return descriptor, "file"


def _default_index(frame: Any) -> bool:
    import pandas as pd

    index = frame.index
    return (
        isinstance(index, pd.RangeIndex)
        and index.name is None
        and index.start == 0
        and index.step == 1
    )


#: The frame libraries ``load`` returns, by name.
LIBRARIES = ("pandas", "polars", "pyarrow")


def load(rows: Any, library: str) -> Any:
    """DuckDB rows (a relation or an executed connection) as a ``library`` frame."""
    if library == "polars":
        return rows.pl()
    if library == "pyarrow":
        # duckdb 1.4 renamed fetch_arrow_table (deprecated) to to_arrow_table.
        to_arrow = getattr(rows, "to_arrow_table", None) or rows.fetch_arrow_table
        return to_arrow()
    return rows.df()


def decode(job_id: str, stored: Any, kind: str | None) -> Any:
    """Load a stored result back (the inverse of :func:`encode`)."""
    if kind in (None, "json"):
        return stored
    if kind == "parquet":
        path = Path(stored["path"])
        _require(job_id, path)
        import duckdb

        con = duckdb.connect()
        try:
            rel = con.sql(f"SELECT * FROM read_parquet({literal(path)})")
            library = stored.get("library") or "pandas"
            frame = load(rel, library)
            if library == "pandas" and stored.get("index"):
                frame = frame.set_index(stored["index"])
                frame.index.names = stored.get("index_names") or [
                    None if n.startswith("level_") else n for n in stored["index"]
                ]  # results stored before index_names: the old guess
            return frame
        finally:
            con.close()
    if kind == "file":
        path = Path(stored["path"])
        _require(job_id, path)
        return path
    if kind == "pickle":
        path = Path(stored["path"])
        _require(job_id, path)
        return pickle.loads(path.read_bytes())  # noqa: S301 - our own file in the user's data dir
    raise ResultUnavailable(
        f"task {job_id} returned a {stored.get('type')} that could not be stored "
        f"({stored.get('why')}); only its repr was kept: {stored.get('repr')}. Return "
        "JSON data, a DataFrame, or a picklable object to get it back later."
    )


def _require(job_id: str, path: Path) -> None:
    if not path.exists():
        raise ResultUnavailable(
            f"the result file of task {job_id} is gone: {path} (deleted by hand or by retention)"
        )


def _short_repr(value: Any, limit: int = 500) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not fail the task
        text = f"<{type(value).__qualname__} object>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ValueCache:
    """The objects this process's tasks returned, for ``result()`` without a reload:
    newest first, at most ``max_bytes`` of them (by a cheap size estimate); an evicted
    value loads back from its stored form."""

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        self.max_bytes = max_bytes
        self._values: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, job_id: str, value: Any) -> None:
        if value is None:
            return
        size = approx_size(value)
        if size > self.max_bytes:
            return
        with self._lock:
            self._values[job_id] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._values.popitem(last=False)
                self._bytes -= dropped

    def get(self, job_id: str) -> Any:
        """The value, or None if not held."""
        with self._lock:
            held = self._values.get(job_id)
        return None if held is None else held[0]

    def pop(self, job_id: str) -> None:
        with self._lock:
            held = self._values.pop(job_id, None)
            if held is not None:
                self._bytes -= held[1]

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._bytes = 0

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._values


def approx_size(value: Any) -> int:
    """Bytes a value holds, roughly: a table's buffers, else ``sys.getsizeof``."""
    library = frame_library(value)
    try:
        if library == "pandas":
            return int(value.memory_usage(index=True, deep=False).sum())
        if library == "polars":
            return int(value.estimated_size())
        if library == "pyarrow":
            return int(value.nbytes)
        nbytes = getattr(value, "nbytes", None)  # NumPy arrays and the like
        if isinstance(nbytes, int):
            return nbytes
    except Exception:  # noqa: BLE001 - an estimate; never fail a task over it
        pass
    return sys.getsizeof(value)


__all__ = ["ResultFile", "ValueCache", "decode", "encode", "frame_library"]
