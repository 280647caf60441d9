"""Small helpers around a DuckDB connection, shared by ingest and the engine."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import duckdb

# DuckDB's share of memory. The rest of a run (Python, the few log entries parsed with Polars,
# the report) needs a few hundred MB more, so the whole run stays under 2 GB whatever the input
# size; what does not fit is spilled to the run's temporary directory.
MEMORY_LIMIT = os.environ.get("FORENSICS_MEMORY_LIMIT", "1GB")


def connect(spill_dir: Path | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory database that works in UTC and spills to `spill_dir` when memory runs short."""
    config: dict[str, str | bool | int | float | list[str]] = {"memory_limit": MEMORY_LIMIT}
    if spill_dir:
        config["temp_directory"] = str(spill_dir)
    con = duckdb.connect(config=config)
    _session(con)
    return con


def cursor(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Another connection to the same database (for a thread), set up like `connect()`'s: a
    cursor starts with DuckDB's defaults, such as the machine's time zone."""
    cur = con.cursor()
    _session(cur)
    return cur


def _session(con: duckdb.DuckDBPyConnection) -> None:
    # UTC, so timestamps without an offset (log lines) are read as UTC on any machine; and no
    # progress bar, which DuckDB would draw on stdout, where the verdict goes.
    con.execute("SET TimeZone = 'UTC'; SET enable_progress_bar = false")


def sql_text(value: str) -> str:
    """A string as an SQL literal (for the few places a value cannot be a parameter)."""
    return "'" + value.replace("'", "''") + "'"


def one(con: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> tuple[Any, ...]:
    """The single row of a query that always returns one (aggregates)."""
    row = con.execute(sql, params).fetchone()
    if row is None:
        raise RuntimeError(f"query returned no row: {sql[:80]}")
    return row


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> Any:
    """The first column of `one()`."""
    return one(con, sql, params)[0]
