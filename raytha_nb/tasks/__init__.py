"""Built-in data jobs on DuckDB: background SQL, export to files, import from CSV."""

from __future__ import annotations

from ._export import export
from ._import_csv import import_csv
from ._query import sql

__all__ = ["export", "import_csv", "sql"]
