"""Load table exports (psql CSV, `row_to_json` NDJSON, Parquet; any of them gzip'd) into DuckDB.

Every file is read with all values as text first, then cast to the canonical types in SQL.
A row that cannot be read is rejected with the file, its line and the reason; the rest loads.
"""

from __future__ import annotations

import csv
import gzip
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from forensics.db import scalar
from forensics.discover import Source
from forensics.ingest.schema import DUCKDB_TYPES, TABLES, Table

MAX_REJECT_SAMPLES = 20

# SQL macros used by the casts below. DuckDB string literals do not process backslashes.
# pg_array splits the usual literal, whose elements needed no quotes and are not NULL, without
# the regular expression (which cost as much as all the other casts of a row together); it
# gives what the regular expression would: no element of such a literal is empty.
MACROS = r"""
CREATE OR REPLACE MACRO pg_zero_ts(v) AS
    v LIKE '% BC' OR v LIKE '0001-01-01%' OR v LIKE '0000-%';
CREATE OR REPLACE MACRO pg_ts(v) AS
    CASE WHEN pg_zero_ts(v) THEN NULL ELSE TRY_CAST(v AS TIMESTAMPTZ) END;
CREATE OR REPLACE MACRO pg_array(v) AS
    CASE
        WHEN v IS NULL THEN NULL
        WHEN v = '{}' THEN []::VARCHAR[]
        WHEN starts_with(v, '{') AND ends_with(v, '}') AND NOT contains(v, '"')
            AND NOT contains(v, 'NULL') AND NOT contains(v, ',,')
            AND NOT starts_with(v, '{,') AND NOT ends_with(v, ',}')
            THEN string_split(substr(v, 2, length(v) - 2), ',')
        WHEN starts_with(v, '[') AND json_valid(v) THEN from_json(v, '["VARCHAR"]')
        WHEN starts_with(v, '{') AND ends_with(v, '}') THEN list_transform(
            regexp_extract_all(v[2:-2], '"(?:[^"\\]|\\.)*"|[^,]+'),
            lambda x: CASE
                WHEN starts_with(x, '"') THEN replace(replace(x[2:-2], '\"', '"'), '\\', '\')
                WHEN x = 'NULL' THEN NULL
                ELSE x END)
        ELSE NULL
    END;
"""


@dataclass
class Reject:
    """One row that could not be loaded."""

    line: int | None  # physical line in the file (CSV, NDJSON)
    reason: str
    row: int | None = None  # data row number, for formats without lines (Parquet)


@dataclass
class TableLoad:
    """What happened when one file was loaded into one canonical table."""

    table: str
    path: str
    format: str
    rows_read: int = 0
    rows_loaded: int = 0
    rejected: int = 0
    samples: list[Reject] = field(default_factory=list)
    missing_columns: list[str] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    secret_columns: list[str] = field(default_factory=list)


def create_tables(
    con: duckdb.DuckDBPyConnection, columns: dict[str, list[str]] | None = None
) -> None:
    """Create every canonical table, empty, plus the macros the loaders use.

    `columns` (`schema.loaded_columns`) chooses which of each table's columns are loaded; the
    files are then read for those only (all of them when not given).
    """
    con.execute(MACROS)
    for table in TABLES.values():
        every = [*table.columns, *(f"{h}_hash" for h in table.hashed)]
        chosen = columns[table.name] if columns is not None else every
        cols = [f'"{c}" {DUCKDB_TYPES[k]}' for c, k in table.columns.items() if c in chosen]
        cols += [f'"{h}_hash" VARCHAR' for h in table.hashed if f"{h}_hash" in chosen]
        cols += ["__file INTEGER", "__line BIGINT"]
        con.execute(f'CREATE TABLE "{table.name}" ({", ".join(cols)})')
    # Which file each row came from: rows carry the file's number (`__file`), not its name,
    # which would take a string per row (a quarter of the tables' memory at 1M builds).
    con.execute("CREATE TABLE table_files (file INTEGER, path VARCHAR)")


def created_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """The columns a canonical table was created with (without `__file` and `__line`)."""
    return [
        r[0]
        for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'main' "
            "AND table_name = ? AND NOT starts_with(column_name, '__') ORDER BY column_index",
            [table],
        ).fetchall()
    ]


def load_table(con: duckdb.DuckDBPyConnection, src: Source, hash_key: str, n: int) -> TableLoad:
    """Load one table export into its canonical table; `n` numbers the file (its rows'
    `__file`, in `table_files`) and makes staging names unique."""
    assert src.table is not None
    table = TABLES[src.table]
    with tempfile.TemporaryDirectory(prefix="forensics-") as tmp:
        stage, source_cols = _stage(con, src, Path(tmp), n)
        load = _insert(con, table, src, stage, source_cols, hash_key, n)
        con.execute(f"DROP VIEW IF EXISTS {stage}; DROP VIEW IF EXISTS {stage}_numbered")
    return load


def _stage(
    con: duckdb.DuckDBPyConnection, src: Source, tmp: Path, n: int
) -> tuple[str, dict[str, str]]:
    """Create a view with the file's columns (as text, or typed for Parquet) plus `__line`.

    Returns the view name and a map of source column name -> DuckDB type.
    """
    stage = f"__stage_{n}"
    path = str(src.path).replace("'", "''")
    compression = "gzip" if src.compressed else "none"
    if src.format == "csv":
        header = _csv_header(src)
        cols = ", ".join(f"'{c.replace(chr(39), chr(39) * 2)}': 'VARCHAR'" for c in header)
        options = f"""header=true, auto_detect=false, columns={{{cols}}}, delim=',',
            quote='"', escape='"', allow_quoted_nulls=false, compression='{compression}',
            new_line='\\n'"""
        con.execute(
            f"""CREATE VIEW {stage} AS SELECT * FROM read_csv('{path}', {options},
                store_rejects=true, rejects_table='__rej_{n}', rejects_scan='__rejscan_{n}')"""
        )
        # Numbered rows, read again only to place rejected rows: the same rows (structurally
        # bad lines are skipped alike), without recording those lines a second time.
        con.execute(
            f"""CREATE VIEW {stage}_numbered AS SELECT *, row_number() OVER () AS __row
            FROM read_csv('{path}', {options}, ignore_errors=true)"""
        )
        return stage, {c: "VARCHAR" for c in header}
    if src.format == "ndjson":
        lines = f"""read_csv('{path}', columns={{'line': 'VARCHAR'}}, header=false,
            delim=chr(1), quote='', escape='', auto_detect=false, compression='{compression}')"""
        con.execute(
            f"CREATE TABLE __lines_{n} AS SELECT row_number() OVER () AS __line, line FROM {lines}"
        )
        # `\copy ... TO` writes COPY text format, which doubles every backslash. A plain
        # NDJSON file has single backslashes (JSON escapes), so an odd-length run tells them apart.
        plain = scalar(
            con,
            rf"""SELECT coalesce(bool_or(regexp_matches(line, '(^|[^\\])(\\\\)*\\[^\\]')), false)
            FROM __lines_{n}""",
        )
        text = "line" if plain else r"replace(line, '\\', '\')"
        con.execute(
            f"""CREATE TABLE __json_{n} AS SELECT __line, line, {text} AS j,
                CASE WHEN json_valid({text}) THEN json_type({text}) = 'OBJECT' ELSE false END AS ok
                FROM __lines_{n}"""
        )
        keys = [
            r[0]
            for r in con.execute(
                f"SELECT DISTINCT unnest(json_keys(j)) FROM __json_{n} WHERE ok ORDER BY 1"
            ).fetchall()
        ]
        sel = ", ".join(
            f"j->>'{k.replace(chr(39), chr(39) * 2)}' AS \"{k}\"" for k in keys if k != "__line"
        )
        con.execute(
            f"CREATE VIEW {stage} AS SELECT {sel + ',' if sel else ''} __line, __line AS __row "
            f"FROM __json_{n} WHERE ok"
        )
        return stage, {k: "VARCHAR" for k in keys}
    if src.format == "parquet":
        if src.compressed:
            plain_path = tmp / "table.parquet"
            with gzip.open(src.path, "rb") as fin, plain_path.open("wb") as fout:
                shutil.copyfileobj(fin, fout)
            path = str(plain_path).replace("'", "''")
        con.execute(f"CREATE VIEW {stage} AS SELECT * FROM read_parquet('{path}')")
        con.execute(
            f"CREATE VIEW {stage}_numbered AS SELECT *, row_number() OVER () AS __row "
            f"FROM read_parquet('{path}')"
        )
        types = {r[0]: r[1] for r in con.execute(f"DESCRIBE {stage}").fetchall()}
        return stage, types
    raise ValueError(f"unknown table format {src.format!r}")


def _csv_header(src: Source) -> list[str]:
    """The header record of a CSV export (psql quotes a header name only when it must)."""
    opener = gzip.open if src.compressed else open
    with opener(src.path, "rt", encoding="utf-8", errors="replace", newline="") as f:
        return next(csv.reader(f), [])


def _cast(kind: str, expr: str, source_type: str) -> str:
    """SQL that turns a source value into the canonical type (NULL when it cannot)."""
    target = DUCKDB_TYPES[kind]
    if source_type != "VARCHAR":
        if kind == "array" and not source_type.endswith("[]"):
            return f"pg_array(CAST({expr} AS VARCHAR))"
        if kind == "ts" and source_type.startswith("TIMESTAMP"):
            return f"CASE WHEN year({expr}) <= 1 THEN NULL ELSE CAST({expr} AS TIMESTAMPTZ) END"
        return f"TRY_CAST({expr} AS {target})"
    if kind == "ts":
        return f"pg_ts({expr})"
    if kind == "array":
        return f"pg_array({expr})"
    if kind in ("text", "json"):
        return expr
    return f"TRY_CAST({expr} AS {target})"


def _unreadable(kind: str, expr: str, cast: str, source_type: str) -> str:
    """SQL that is true when a present value could not be cast.

    The cast is tested first: it is NULL for few rows, so the other tests run on those only.
    (Text and JSON are not cast: they always read.)
    """
    zero = ""
    if kind == "ts":
        zero = (
            f" AND NOT pg_zero_ts({expr})" if source_type == "VARCHAR" else f" AND year({expr}) > 1"
        )
    return f"({cast} IS NULL AND {expr} IS NOT NULL{zero})"


def _insert(
    con: duckdb.DuckDBPyConnection,
    table: Table,
    src: Source,
    stage: str,
    source_cols: dict[str, str],
    hash_key: str,
    n: int,
) -> TableLoad:
    """Insert the rows of `stage` whose values all read; count the others and say why.

    One pass over the file does the work: every row is cast and inserted, a row with a value
    that does not read marked by `__line` -1 (a line number is never negative; a per-row mark in
    a text column would cost a string per row), and the marked rows are then
    counted and deleted. Only when there are some is the file read again, to build the reasons:
    text for every check of every row, kept in a table, cost more than the casts themselves.
    """
    load = TableLoad(table=table.name, path=src.display, format=src.format or "")
    con.execute("INSERT INTO table_files VALUES (?, ?)", [n, src.display])
    by_name = {c.lower(): c for c in source_cols}
    renamed = {canon: legacy for legacy, canon in table.renamed.items() if legacy in by_name}
    # `select` casts the values; `tests` holds what can be wrong with a row: a condition (for
    # the load, which marks the row) and what to say (for the samples). DuckDB computes a cast
    # that `select` and a condition share once.
    select: list[str] = []
    tests: list[tuple[str, str]] = []
    loaded = set(created_columns(con, table.name))
    for col, kind in table.columns.items():
        if col not in loaded:
            continue
        src_col = by_name.get(col) or by_name.get(renamed.get(col, ""))
        if src_col is None:
            load.missing_columns.append(col)
            select.append(f'NULL::{DUCKDB_TYPES[kind]} AS "{col}"')
            continue
        expr, source_type = f'"{src_col}"', source_cols[src_col]
        cast = _cast(kind, expr, source_type)
        select.append(f'{cast} AS "{col}"')
        if kind not in ("text", "json"):  # text always reads
            tests.append(
                (
                    _unreadable(kind, expr, cast, source_type),
                    f"'{col}: cannot read ' || left(CAST({expr} AS VARCHAR), 60) || ' as {kind}'",
                )
            )
        if col in table.required:
            tests.append((f"{expr} IS NULL", f"'{col}: required value is empty'"))
    hashed = [h for h in table.hashed if f"{h}_hash" in loaded]
    for col in hashed:
        if col in by_name:
            # Keyed hash: equal tokens compare equal within one run; the key is never written.
            select.append(
                f'CASE WHEN "{by_name[col]}" IS NULL THEN NULL ELSE '
                f"left(sha256('{hash_key}' || CAST(\"{by_name[col]}\" AS VARCHAR)), 16) END "
                f'AS "{col}_hash"'
            )
        elif f"{col}_hash" in by_name:
            # Hashed at export with a key of its own (`forensics collect`): loaded as is.
            select.append(f'CAST("{by_name[col + "_hash"]}" AS VARCHAR) AS "{col}_hash"')
        else:
            select.append(f'NULL::VARCHAR AS "{col}_hash"')
    for col in table.required:
        if col in load.missing_columns:
            tests.append(("true", f"'{col}: column missing from the export'"))
    # Columns that are not loaded, secrets apart, are ignored: not canonical, or read by no
    # part of this run.
    known = {c for c in table.columns if c in loaded} | {f"{h}_hash" for h in hashed}
    known |= {legacy for legacy, canon in table.renamed.items() if canon in loaded}
    for c in source_cols:
        if c.lower() in table.secret or c.lower() in table.hashed:
            load.secret_columns.append(c)
        elif c.lower() not in known and c not in ("__line",):
            load.ignored_columns.append(c)

    numbered = src.format == "ndjson"  # NDJSON rows carry their line; others are numbered below
    columns = [c for c in table.columns if c in loaded] + [f"{h}_hash" for h in hashed]
    cols = ", ".join(f'"{c}"' for c in columns)

    # Rows land in the table in the order the threads finish them, not in file order: the
    # queries on the canonical tables order rows themselves, and `__line` places NDJSON rows.
    # Keeping file order makes DuckDB buffer each thread's rows and copy them once more, which
    # cost a seventh of the load's time on a large export.
    keep_order = scalar(con, "SELECT current_setting('preserve_insertion_order')")
    con.execute("SET preserve_insertion_order = false")
    try:
        inserted = scalar(
            con,
            f"""INSERT INTO "{table.name}" ({cols}, __file, __line)
            SELECT {", ".join(select)}, {n},
                   CASE WHEN {" OR ".join(c for c, _ in tests) or "false"} THEN -1
                        ELSE {"__line" if numbered else "NULL::BIGINT"} END
            FROM {stage}""",
        )
    finally:
        con.execute(f"SET preserve_insertion_order = {bool(keep_order)}")
    bad = scalar(con, f'SELECT count(*) FROM "{table.name}" WHERE __line = -1')
    if bad:
        con.execute(f'DELETE FROM "{table.name}" WHERE __line = -1')
    load.rows_loaded = inserted - bad
    structural = _structural_rejects(con, src, n)
    checks = ", ".join(f"CASE WHEN {c} THEN {say} END" for c, say in tests)
    reason = f"concat_ws('; ', {checks})" if tests else "''"
    samples: list[tuple[Any, ...]] = []
    if bad:
        row = "__line" if numbered else "__row"
        samples = con.execute(
            f"""SELECT {row}, {"__line" if numbered else "NULL"}, __reason FROM (
                    SELECT {row}, {reason} AS __reason
                    FROM {stage if numbered else stage + "_numbered"})
                WHERE __reason <> '' ORDER BY {row} LIMIT {MAX_REJECT_SAMPLES}"""
        ).fetchall()
    load.rejected = bad + len(structural)
    load.rows_read = load.rows_loaded + load.rejected
    rows_to_lines = _row_lines(src, [r[0] for r in samples], structural)
    load.samples = sorted(
        [
            Reject(
                line=line if line is not None else rows_to_lines.get(row),
                reason=reason,
                row=row if src.format == "parquet" else None,
            )
            for row, line, reason in samples
        ]
        + structural,
        key=lambda r: r.line or 0,
    )[:MAX_REJECT_SAMPLES]
    if src.format == "ndjson":
        load.samples.extend(_json_rejects(con, n, load))
        load.samples = sorted(load.samples, key=lambda r: r.line or 0)[:MAX_REJECT_SAMPLES]
        con.execute(f"DROP TABLE __json_{n}; DROP TABLE __lines_{n}")
    return load


def _structural_rejects(con: duckdb.DuckDBPyConnection, src: Source, n: int) -> list[Reject]:
    """CSV rows DuckDB could not split into the header's columns (wrong count, bad quoting)."""
    if src.format != "csv":
        return []
    try:
        rows = con.execute(
            f"""SELECT min(line_byte_position), any_value(error_type), any_value(error_message)
                FROM __rej_{n} GROUP BY line ORDER BY 1"""
        ).fetchall()
    except duckdb.CatalogException:
        return []
    con.execute(f"DROP TABLE IF EXISTS __rej_{n}; DROP TABLE IF EXISTS __rejscan_{n}")
    # DuckDB numbers rows, not lines; a row's byte offset gives its physical line.
    lines = _lines_at(src, [r[0] for r in rows])
    return [
        Reject(line=lines.get(pos), reason=f"{etype.lower()}: {message}")
        for pos, etype, message in rows
    ]


def _lines_at(src: Source, offsets: list[int]) -> dict[int, int]:
    """1-based line numbers of byte offsets in the (decompressed) file."""
    out: dict[int, int] = {}
    wanted = sorted(set(o for o in offsets if o is not None))
    if not wanted:
        return out
    opener = gzip.open if src.compressed else open
    base, newlines = 0, 0
    with opener(src.path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            while wanted and wanted[0] < base + len(block):
                out[wanted[0]] = newlines + block.count(b"\n", 0, wanted[0] - base) + 1
                wanted.pop(0)
            if not wanted:
                break
            newlines += block.count(b"\n")
            base += len(block)
    return out


def _json_rejects(con: duckdb.DuckDBPyConnection, n: int, load: TableLoad) -> list[Reject]:
    """NDJSON lines that are not JSON objects (blank lines are not counted)."""
    bad, samples = (
        scalar(
            con, f"SELECT count(*) FROM __json_{n} WHERE NOT ok AND trim(coalesce(line, '')) <> ''"
        ),
        con.execute(
            f"SELECT __line FROM __json_{n} WHERE NOT ok AND trim(coalesce(line, '')) <> '' "
            f"ORDER BY __line LIMIT {MAX_REJECT_SAMPLES}"
        ).fetchall(),
    )
    load.rejected += bad
    load.rows_read += bad
    return [Reject(line=r[0], reason="not a JSON object") for r in samples]


def _row_lines(src: Source, rows: list[int], structural: list[Reject]) -> dict[int, int]:
    """Map data-row numbers (1-based, among rows DuckDB accepted) to physical line numbers.

    Only done for the few rejected rows shown as samples; quoted newlines make rows and lines
    differ, so the file is walked with the csv module.
    """
    if src.format != "csv" or not rows:
        return {}
    wanted, skip = set(rows), {r.line for r in structural}
    out: dict[int, int] = {}
    opener = gzip.open if src.compressed else open
    with opener(src.path, "rt", encoding="utf-8", errors="replace", newline="") as f:
        reader = csv.reader(f)
        row, start = 0, 1
        for i, _record in enumerate(reader):
            line, start = start, reader.line_num + 1
            if i == 0 or line in skip:
                continue
            row += 1
            if row in wanted:
                out[row] = line
                if len(out) == len(wanted):
                    break
    return out
