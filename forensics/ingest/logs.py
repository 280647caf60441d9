"""Parse cdr.dev/slog human-format agent logs into `log_events`, accounting for every line.

A file is read in blocks (never whole), each block's lines are parsed with vectorised regular
expressions in Polars, and the results are written to Parquet for DuckDB. Every line is one
of: an entry (starts with a timestamp and a level), a continuation of the entry above (the
indented trailing field block slog writes for multi-line values), blank, or unparsed.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from forensics.discover import Source
from forensics.ingest.slog import manifest_ids

BLOCK_BYTES = 8 * 1024 * 1024
MAX_SAMPLES = 10

ENTRY = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) \[(debu|info|warn|erro|crit|fata)\]  (.*)$"
LEVELS = {
    "debu": "debug",
    "info": "info",
    "warn": "warn",
    "erro": "error",
    "crit": "critical",
    "fata": "fatal",
}
ANSI = r"\x1b\[[0-9;]*[A-Za-z]"
# Values that must never reach an output even from raw log text.
SECRET = (
    r"(?i)((?:token|secret|password|passwd|authorization|api[_-]?key)[\"']?\s*[=:]\s*\"?)"
    r"[^\s\"',}]+"
)
# lumberjack backups: coder-agent-2026-05-13T23-10-00.000.log
ROTATED = re.compile(r"-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d(\.\d{3})?(?=\.log)")


@dataclass
class LogLoad:
    """Line accounting for one log file."""

    path: str
    stream: str
    lines: int = 0
    entries: int = 0
    continuation: int = 0
    blank: int = 0
    unparsed: int = 0
    samples: list[tuple[int, str]] = field(default_factory=list)
    first_ts: str | None = None
    last_ts: str | None = None
    manifests: int = 0
    undecoded_manifests: int = 0
    problem: str = ""  # e.g. a gzip stream cut short: lines up to there were still read


def stream_of(src: Source) -> str:
    """Files of one log stream: same directory, same name once the rotation stamp is removed."""
    name = src.path.name
    if name.endswith(".gz"):
        name = name[:-3]
    name = ROTATED.sub("", name)
    parent = str(Path(src.display).parent)
    return f"{parent}/{name}" if parent != "." else name


def parse_log(src: Source, file_id: int, out_dir: Path) -> LogLoad:
    """Parse one log file into Parquet parts under `out_dir` and return its line accounting."""
    load = LogLoad(path=src.display, stream=stream_of(src))
    line_no, entry_no, part = 0, 0, 0
    carry = b""
    blocks = _blocks(src.path, src.compressed, load)
    while True:
        block = next(blocks, b"")
        data = carry + block
        if not block:
            if not data:
                break
            carry, chunk = b"", data  # last line without a newline still counts
        else:
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                continue
            carry, chunk = data[cut + 1 :], data[: cut + 1]
        lines = chunk.decode("utf-8", errors="replace").split("\n")
        if chunk.endswith(b"\n"):
            lines.pop()
        entry_no = _parse_block(lines, line_no, entry_no, file_id, load, out_dir, part)
        line_no += len(lines)
        part += 1
        if not block:
            break
    load.lines = line_no
    return load


def _blocks(path: Path, compressed: bool, load: LogLoad) -> Iterator[bytes]:
    """The file's bytes in blocks, decompressed when gzip'd (several members allowed).

    A gzip stream cut short (a rotated file copied while being written) yields what could be
    decompressed and records the problem instead of failing the file.
    """
    with path.open("rb") as f:
        if not compressed:
            yield from iter(lambda: f.read(BLOCK_BYTES), b"")
            return
        inflater = zlib.decompressobj(wbits=47)
        fed = False  # has the current member received any bytes?
        for raw in iter(lambda: f.read(BLOCK_BYTES), b""):
            while raw:
                fed = True
                try:
                    out = inflater.decompress(raw)
                except zlib.error as exc:
                    load.problem = f"stopped reading: corrupt gzip data ({exc})"
                    return
                if out:
                    yield out
                if inflater.eof:  # next gzip member, if any
                    raw = inflater.unused_data
                    inflater = zlib.decompressobj(wbits=47)
                    fed = False
                else:
                    raw = b""
        tail = inflater.flush()
        if tail:
            yield tail
        if fed and not inflater.eof:
            load.problem = "stopped reading: gzip stream ends early (file truncated?)"


def _parse_block(
    lines: list[str],
    first_line: int,
    entry_no: int,
    file_id: int,
    load: LogLoad,
    out_dir: Path,
    part: int,
) -> int:
    """Classify and parse one block of lines; returns the running entry count."""
    df = pl.DataFrame({"text": lines}, schema={"text": pl.String}).with_columns(
        line=pl.int_range(first_line + 1, first_line + 1 + len(lines), dtype=pl.Int64),
        text=pl.col("text").str.strip_chars_end("\r").str.replace_all(ANSI, ""),
    )
    df = df.with_columns(
        is_entry=pl.col("text").str.contains(ENTRY),
        is_blank=pl.col("text").str.strip_chars() == "",
        indented=pl.col("text").str.contains(r"^\s"),
    ).with_columns(entry=pl.col("is_entry").cum_sum().cast(pl.Int64) + entry_no)
    cont = df.filter(
        ~pl.col("is_entry") & ~pl.col("is_blank") & pl.col("indented") & (pl.col("entry") > 0)
    )
    bad = df.filter(
        ~pl.col("is_entry") & ~pl.col("is_blank") & ~(pl.col("indented") & (pl.col("entry") > 0))
    )
    entries = (
        df.filter(pl.col("is_entry"))
        .with_columns(
            pl.col("text").str.extract_groups(ENTRY).struct.rename_fields(["ts", "lvl", "rest"])
        )
        .unnest("text")
        .with_columns(pl.col("rest").str.replace(r" \.\.\.$", ""))
        .with_columns(
            logger=pl.col("rest").str.extract(r"^([A-Za-z0-9_.\-]+): ", 1),
            body=pl.col("rest").str.replace(r"^[A-Za-z0-9_.\-]+: ", ""),
        )
        .with_columns(
            message=pl.col("body").str.extract(r"^(.*?)(?:  [A-Za-z0-9_.\-]+=.*)?$", 1),
            fields=pl.col("body").str.extract(r"^.*?  ([A-Za-z0-9_.\-]+=.*)$", 1).fill_null(""),
            level=pl.col("lvl").replace_strict(LEVELS, default="unknown"),
        )
    )
    entries = _redact_manifests(entries, load).with_columns(
        pl.col("fields").str.replace_all(SECRET, "${1}<redacted>"),
    )
    load.entries += entries.height
    load.continuation += cont.height
    load.blank += int(df["is_blank"].sum())
    load.unparsed += bad.height
    for line, text in bad.select("line", "text").head(MAX_SAMPLES - len(load.samples)).iter_rows():
        load.samples.append((line, re.sub(SECRET, r"\1<redacted>", text[:300])))
    if entries.height:
        first, last = entries["ts"].min(), entries["ts"].max()
        load.first_ts = min(filter(None, [load.first_ts, first]))
        load.last_ts = max(filter(None, [load.last_ts, last]))
    entries.select(
        pl.lit(file_id, dtype=pl.Int32).alias("file_id"),
        "line",
        "entry",
        "ts",
        "level",
        "logger",
        "message",
        "fields",
    ).write_parquet(out_dir / f"entries_{file_id}_{part}.parquet")
    cont.select(
        pl.lit(file_id, dtype=pl.Int32).alias("file_id"),
        "line",
        "entry",
        pl.col("text").str.replace_all(SECRET, "${1}<redacted>"),
    ).write_parquet(out_dir / f"cont_{file_id}_{part}.parquet")
    return entry_no + entries.height


def _redact_manifests(entries: pl.DataFrame, load: LogLoad) -> pl.DataFrame:
    """Replace each manifest's fields with the ids it carries: the rest holds env secrets."""
    is_manifest = pl.col("message").is_in(["fetched manifest", "fetched metadata"])
    rows = entries.filter(is_manifest).select("line", "fields")
    if rows.height == 0:
        return entries
    replaced = {}
    for line, fields in rows.iter_rows():
        agent_id, workspace_id, rendering = manifest_ids(fields)
        load.manifests += 1
        if agent_id is None:
            load.undecoded_manifests += 1
        replaced[line] = (
            f"agent_id={agent_id or '<undecoded>'}  workspace_id={workspace_id or '<undecoded>'}"
            f"  rendering={rendering}  manifest=<redacted>"
        )
    new = pl.DataFrame(
        {"line": list(replaced), "new_fields": list(replaced.values())},
        schema={"line": pl.Int64, "new_fields": pl.String},
    )
    return (
        entries.join(new, on="line", how="left")
        .with_columns(fields=pl.coalesce("new_fields", "fields"))
        .drop("new_fields")
    )


def load_logs(
    con: duckdb.DuckDBPyConnection, work: Path, files: list[tuple[int, Source, LogLoad]]
) -> None:
    """Create `log_files` and `log_events` from the Parquet parts written by `parse_log`."""
    con.execute(
        """CREATE TABLE log_files (file_id INTEGER, source VARCHAR, stream VARCHAR,
           first_ts TIMESTAMPTZ, last_ts TIMESTAMPTZ)"""
    )
    for file_id, src, load in files:
        con.execute(
            "INSERT INTO log_files VALUES (?, ?, ?, ?::TIMESTAMPTZ, ?::TIMESTAMPTZ)",
            [file_id, src.display, load.stream, load.first_ts, load.last_ts],
        )
    entries = str(work / "entries_*.parquet").replace("'", "''")
    cont = str(work / "cont_*.parquet").replace("'", "''")
    has_parts = bool(files) and any(work.glob("entries_*.parquet"))
    if not has_parts:
        con.execute(
            """CREATE TABLE log_events (file_id INTEGER, line BIGINT, ts TIMESTAMPTZ,
               level VARCHAR, logger VARCHAR, message VARCHAR, fields VARCHAR, block VARCHAR)"""
        )
        return
    con.execute(
        f"""CREATE TABLE log_events AS
        WITH blocks AS (
            SELECT file_id, entry, string_agg(text, chr(10) ORDER BY line) AS block
            FROM read_parquet('{cont}') GROUP BY ALL
        )
        SELECT e.file_id, e.line, CAST(e.ts AS TIMESTAMPTZ) AS ts, e.level, e.logger,
               e.message, e.fields, b.block
        FROM read_parquet('{entries}') e
        LEFT JOIN blocks b USING (file_id, entry)
        ORDER BY e.file_id, e.line"""
    )
