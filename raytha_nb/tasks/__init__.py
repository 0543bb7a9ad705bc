"""Built-in data jobs on DuckDB: background SQL, export to files, import from CSV."""

from __future__ import annotations

from .export import export
from .import_csv import import_csv
from .sql import sql

__all__ = ["export", "import_csv", "sql"]
