"""Parse cdr.dev/slog agent logs into `log_events`, accounting for every line.

Three renderings are read, line by line, so a file that spans an agent upgrade is read whole:
- format B, sloghuman since mid-2023: `2026-05-14 13:00:00.123 [info]  message  key=value`;
- format A, sloghuman before: `2023-03-10 11:08:25.030 [INFO]\t<f.go:194>\tfunc\tmessage\t{json}`;
- the JSON sink (slogjson): `{"ts": ..., "level": ..., "msg": ..., "fields": {...}}`.
Fields of formats A and JSON are rendered as format B writes them, so one model reads all three.

A file is read in blocks (never whole), each block's lines are classified with vectorised regular
expressions in Polars, and the results are written to Parquet for DuckDB. Every line is one
of: an entry (starts with a timestamp and a level), a continuation of the entry above (the
trailing field block slog writes for multi-line values), blank, or unparsed.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import duckdb
import polars as pl

from forensics.discover import Source
from forensics.ingest.slog import go_unquote, manifest_ids

BLOCK_BYTES = 8 * 1024 * 1024
MAX_SAMPLES = 10

# Only the fixed-width head is matched: the rest of the line is sliced, not scanned.
ENTRY = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \[(?:debu|info|warn|erro|crit|fata)\]  "
LEVELS = {
    "debu": "debug",
    "info": "info",
    "warn": "warn",
    "erro": "error",
    "crit": "critical",
    "fata": "fatal",
}
HUMAN, HUMAN_V1, JSON = "slog human", "slog human (before mid-2023)", "slog JSON"
ENTRY_V1 = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \[(?:DEBUG|INFO|WARN|ERROR|CRITICAL|FATAL)\]\s"
ENTRY_V1_RE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) \[(DEBUG|INFO|WARN|ERROR|CRITICAL|FATAL)\]\s+(.*)$"
)
LEVELS_V1 = {
    "DEBUG": "debug",
    "INFO": "info",
    "WARN": "warn",
    "WARNING": "warn",
    "ERROR": "error",
    "CRITICAL": "critical",
    "FATAL": "fatal",
}
ENTRY_JSON = r"^\s*\{"  # a JSON object that is not a log entry is rejected when parsed
START_MESSAGES = ("agent is starting now", "starting agent")  # a new agent process
REINIT_MESSAGE = "agent reinitializing"  # a prebuild claim: a new agent in the same process
# What an entry says about its process, by message, across versions (reference §3.4). Entries
# with a kind are the few the model and the evidence look at; the rest is noise.
KINDS = {
    **dict.fromkeys(START_MESSAGES, "process start"),
    REINIT_MESSAGE: "reinitialization",
    "fetched manifest": "manifest",
    "fetched metadata": "manifest",
    "set lifecycle state": "lifecycle",
    "reporting lifecycle state": "lifecycle",
    "attempted to set lifecycle state to a previous state": "lifecycle refused",
    "agent received instruction to reinitialize": "reinit instruction",
    "connecting to coderd": "connect",
    "disconnected from coderd": "disconnect",
    "likely disconnected from coder": "disconnect",
    "run exited with error": "connection error",
    "runLoop exited with error": "connection error",
    "connection manager errored": "connection error",
    "failed to exchange session token": "connection error",
    "shutting down agent": "shutdown",
    "agent shutting down": "shutdown",
    "spawning reaper process": "reaper start",
}
ANSI = r"\x1b\[[0-9;]*[A-Za-z]"
# Values that must never reach an output even from raw log text.
SECRET = (
    r"(?i)((?:token|secret|password|passwd|authorization|api[_-]?key)[\"']?\s*[=:]\s*\"?)"
    r"[^\s\"',}]+"
)
# Directories that say nothing about which host a log came from.
GENERIC_DIRS = {"logs", "log", "tmp", "var", "agent", "agents", "coder", "db", "dump", "."}
# lumberjack backups: coder-agent-2026-05-13T23-10-00.000.log
ROTATED = re.compile(r"-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d(\.\d{3})?(?=\.log)")
# Copies made by hand or by other rotators: coder-agent.log.1, coder-agent (1).log, .bak, .old
COPY_MARK = re.compile(r"( \(\d+\)|[-_ ]copy)(?=\.log$)|(?<=\.log)(\.\d+|\.bak|\.old|\.orig)$")


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
    merged: int = 0  # entries that had a multi-line trailing block joined onto them
    manifests: int = 0
    undecoded_manifests: int = 0
    problem: str = ""  # e.g. a gzip stream cut short: lines up to there were still read
    formats: dict[str, int] = field(default_factory=dict)  # entries per rendering
    versions: set[str] = field(default_factory=set)  # agent versions from process start lines
    renderings: set[str] = field(default_factory=set)  # manifest renderings: json / prototext
    duplicates: int = 0  # entries already read from another copy of the same log
    starts: int = 0  # agent process start lines
    reinits: int = 0  # prebuild-claim reinitializations

    @property
    def version_range(self) -> str:
        """The Coder agent versions this file came from, as far as its lines tell."""
        if self.versions:
            ordered = sorted(self.versions, key=_version_key)
            seen = ordered[0] if len(ordered) == 1 else f"{ordered[0]} – {ordered[-1]}"
            return f"{seen} (process start lines)"
        hints = []
        if HUMAN_V1 in self.formats:
            hints.append("before mid-2023 (slog format)")
        if "json" in self.renderings:
            hints.append("≤ v2.9 (JSON manifests)")
        if "prototext" in self.renderings:
            hints.append("≥ v2.10 (prototext manifests)")
        if not hints and HUMAN in self.formats:
            hints.append("mid-2023 or later (slog format)")
        return "; ".join(hints) or "unknown"


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version)[:3])


def stream_of(src: Source) -> str:
    """Files of one log stream: same directory, same name once the rotation stamp is removed."""
    if src.stream:  # set by whoever knows better (a support bundle's manifest)
        return src.stream
    name = src.path.name
    if name.endswith(".gz"):
        name = name[:-3]
    name = COPY_MARK.sub("", ROTATED.sub("", name))
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
        frame = _lines(chunk)
        entry_no = _parse_block(frame, chunk, line_no, entry_no, file_id, load, out_dir, part)
        line_no += frame.height
        part += 1
        if not block:
            break
    load.lines = line_no
    return load


def _lines(chunk: bytes) -> pl.DataFrame:
    """The lines of a block (whole lines; the last may lack its newline) as a `text` column.

    Polars' CSV reader, told that lines have one field and no quoting, splits lines several
    times faster than Python; a block it would read differently (a 0x1F byte, or a line count
    that does not match) is split by Python instead. Invalid UTF-8 becomes U+FFFD either way.
    """
    expected = chunk.count(b"\n") + (0 if chunk.endswith(b"\n") else 1)
    if b"\x1f" not in chunk:
        try:
            df = pl.read_csv(
                io.BytesIO(chunk),
                has_header=False,
                separator="\x1f",
                quote_char=None,
                new_columns=["text"],
                schema={"text": pl.String},
                encoding="utf8-lossy",
            )
            if df.height == expected:
                return df.with_columns(pl.col("text").fill_null("")).rechunk()
        except pl.exceptions.PolarsError:
            pass
    lines = chunk.decode("utf-8", errors="replace").split("\n")
    if chunk.endswith(b"\n"):
        lines.pop()
    return pl.DataFrame({"text": lines}, schema={"text": pl.String})


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
    df: pl.DataFrame,
    raw: bytes,
    first_line: int,
    entry_no: int,
    file_id: int,
    load: LogLoad,
    out_dir: Path,
    part: int,
) -> int:
    """Classify and parse one block of lines; returns the running entry count."""
    text = pl.col("text")
    # Most blocks have no carriage returns, colour codes or NUL bytes: only clean when needed.
    if b"\r" in raw:
        text = text.str.strip_chars_end("\r")
    if b"\x1b" in raw:
        text = text.str.replace_all(ANSI, "")
    if b"\x00" in raw:
        text = text.str.replace_all("\x00", "\ufffd", literal=True)
    height = df.height
    df = (
        df.lazy()
        .with_columns(
            line=pl.int_range(first_line + 1, first_line + 1 + height, dtype=pl.Int64),
            text=text,
        )
        .with_columns(
            fmt=pl.when(pl.col("text").str.contains(ENTRY))
            .then(pl.lit(HUMAN))
            .when(pl.col("text").str.contains(ENTRY_V1))
            .then(pl.lit(HUMAN_V1))
            .when(pl.col("text").str.contains(ENTRY_JSON))
            .then(pl.lit(JSON)),
            is_blank=pl.col("text").str.contains(r"^\s*$"),
            # The trailing block of a multi-line field: indented (format B, and format A in a
            # file sink) or, in format A, starting with the quoted field name.
            indented=pl.col("text").str.contains(r'^(?:\s|"[A-Za-z0-9_. -]+": )'),
        )
        .with_columns(is_entry=pl.col("fmt").is_not_null())
        .with_columns(entry=pl.col("is_entry").cum_sum().cast(pl.Int64) + entry_no)
        .collect()
    )
    cont = df.filter(
        ~pl.col("is_entry") & ~pl.col("is_blank") & pl.col("indented") & (pl.col("entry") > 0)
    )
    bad = df.filter(
        ~pl.col("is_entry") & ~pl.col("is_blank") & ~(pl.col("indented") & (pl.col("entry") > 0))
    )
    counts = dict(df["fmt"].value_counts().iter_rows())
    only_human = counts.get(HUMAN, 0) == height
    parts = [
        _human(df if only_human else df.filter(pl.col("fmt") == HUMAN)),
        _human_v1(df.filter(pl.col("fmt") == HUMAN_V1) if counts.get(HUMAN_V1) else df.clear()),
        _json_lines(df.filter(pl.col("fmt") == JSON) if counts.get(JSON) else df.clear()),
    ]
    present = [p for p in parts if p.height]
    entries = pl.concat(present).sort("line") if present else parts[0]
    # A line that looked like JSON but is not a log object: unparsed, not an entry.
    rejected = entries.filter(pl.col("ts").is_null())
    if rejected.height:
        entries = entries.filter(pl.col("ts").is_not_null())
        bad = pl.concat([bad, df.join(rejected.select("line"), on="line")], how="vertical_relaxed")
        bad = bad.sort("line")
    # Process boundaries, counted here so the model needs no window over every line: an entry's
    # process within the file is the number of start lines up to it (instances: starts and
    # prebuild-claim reinitializations). And each entry's kind, for the model.
    is_start = pl.col("message").is_in(list(START_MESSAGES))
    is_reinit = pl.col("message") == REINIT_MESSAGE
    kind = (
        pl.when(pl.col("message").is_in(list(KINDS)))
        .then(pl.col("message").replace_strict(KINDS, default=None))
        .when(pl.col("message").str.contains(r"^startup script.*failed$"))
        .then(pl.lit("script failure"))
        .when(pl.col("fields").str.contains("unexpected status code", literal=True))
        .then(pl.lit("connection error"))
    )
    entries = (
        _redact_manifests(entries, load)
        .lazy()
        .with_columns(
            pl.col("fields").str.replace_all(SECRET, "${1}<redacted>"),
            is_start=is_start,
            is_reinit=is_reinit,
            kind=kind,
        )
        .with_columns(
            starts=pl.col("is_start").cum_sum().cast(pl.Int64) + load.starts,
            instances=(pl.col("is_start") | pl.col("is_reinit")).cum_sum().cast(pl.Int64)
            + load.starts
            + load.reinits,
        )
        .collect()
    )
    load.entries += entries.height
    load.continuation += cont.height
    load.merged += cont.select(pl.col("entry").n_unique()).item() if cont.height else 0
    load.blank += int(df["is_blank"].sum())
    load.unparsed += bad.height
    for fmt, n in entries.group_by("format").len().iter_rows():
        load.formats[fmt] = load.formats.get(fmt, 0) + n
    starts = entries.filter(pl.col("is_start"))
    for fields in starts["fields"]:
        m = re.search(r"(?:^|  )version=\"?(v?\d+\.\d+\.\d+[^\s\"]*)", fields or "")
        if m:
            load.versions.add(m.group(1))
    for line, text in bad.select("line", "text").head(MAX_SAMPLES - len(load.samples)).iter_rows():
        load.samples.append((line, re.sub(SECRET, r"\1<redacted>", text[:300])))
    if entries.height:
        first, last = entries["ts"].min(), entries["ts"].max()
        load.first_ts = min(filter(None, [load.first_ts, first]))
        load.last_ts = max(filter(None, [load.last_ts, last]))
    load.starts += int(entries["is_start"].sum())
    load.reinits += int(entries["is_reinit"].sum())
    entries.select(
        pl.lit(file_id, dtype=pl.Int32).alias("file_id"),
        "line",
        "entry",
        "ts",
        "level",
        "logger",
        "message",
        "fields",
        "is_start",
        "is_reinit",
        "starts",
        "instances",
        "kind",
    ).write_parquet(out_dir / f"entries_{file_id}_{part}.parquet", compression="uncompressed")
    cont.select(
        pl.lit(file_id, dtype=pl.Int32).alias("file_id"),
        "line",
        "entry",
        pl.col("text").str.replace_all(SECRET, "${1}<redacted>"),
    ).write_parquet(out_dir / f"cont_{file_id}_{part}.parquet", compression="uncompressed")
    return entry_no + int(df["is_entry"].sum())


ENTRY_COLUMNS = {
    "line": pl.Int64,
    "entry": pl.Int64,
    "ts": pl.String,
    "level": pl.String,
    "logger": pl.String,
    "message": pl.String,
    "fields": pl.String,
    "format": pl.String,
}


def _human(df: pl.DataFrame) -> pl.DataFrame:
    """Format B: `TS [info]  logger.name: message  key=value  key=value`."""
    # The layout is fixed: 23 characters of time, " [", 4 of level, "]  ", then the rest.
    rest = pl.col("text").str.slice(32).str.strip_suffix(" ...")
    named = rest.str.extract(r"^([A-Za-z0-9_.\-]+): ", 1)
    body = rest.str.slice(named.str.len_chars().fill_null(-2) + 2)
    return (
        df.lazy()
        .with_columns(
            ts=pl.col("text").str.slice(0, 23),
            level=pl.col("text").str.slice(25, 4).replace_strict(LEVELS, default="unknown"),
            logger=named,
            body=body,
        )
        # The message ends where the first `  key=value` field begins.
        .with_columns(cut=pl.col("body").str.find(r"  [A-Za-z0-9_.\-]+="))
        .with_columns(
            message=pl.when(pl.col("cut").is_null())
            .then(pl.col("body"))
            .otherwise(pl.col("body").str.slice(0, pl.col("cut"))),
            fields=pl.col("body").str.slice(pl.col("cut") + 2).fill_null(""),
            format=pl.lit(HUMAN),
        )
        .select(list(ENTRY_COLUMNS))
        .collect()
    )


def _human_v1(df: pl.DataFrame) -> pl.DataFrame:
    """Format A (slog before mid-2023), tab-separated:
    `TS [INFO]\t(logger.names)\t<./path/file.go:12>\tfunc\tmessage\t{"key": "value"}`.

    Copies pasted from a browser have spaces for tabs; both are read. The logger names, the
    function and the JSON fields are each optional.
    """
    if df.height == 0:
        return _empty_entries()
    rows = []
    for line, entry, text in df.select("line", "entry", "text").iter_rows():
        m = ENTRY_V1_RE.match(text)
        assert m is not None  # the same pattern selected the line
        ts, lvl, rest = m.groups()
        rest = rest.removesuffix(" ...")
        logger = None
        if m2 := re.match(r"\(([^)\t]*)\)\s+", rest):
            logger, rest = m2.group(1), rest[m2.end() :]
        fields = ""
        if m2 := re.search(r'\s(\{".*\})\s*$', rest):
            fields, rest = _json_to_kv(m2.group(1)), rest[: m2.start()]
        if m2 := re.match(r"<[^>\t]*>\s+", rest):
            rest = rest[m2.end() :]
            if "\t" in rest:
                func, _, rest = rest.partition("\t")
            elif m3 := re.match(r"(\(?\*?[A-Za-z_][\w.*()]*[.(][\w.*()]*)\s+", rest):
                rest = rest[m3.end() :]  # a Go function name: has a dot or a parenthesis
        message = rest.strip()
        if message.startswith('"') and message.endswith('"') and len(message) > 1:
            with contextlib.suppress(ValueError, IndexError):
                message = go_unquote(message)
        rows.append((line, entry, ts, LEVELS_V1.get(lvl, "unknown"), logger, message, fields))
    return pl.DataFrame([(*r, HUMAN_V1) for r in rows], schema=ENTRY_COLUMNS, orient="row")


def _json_lines(df: pl.DataFrame) -> pl.DataFrame:
    """The JSON sink (slogjson): one object per line with ts, level, msg, logger_names, fields.

    A line that is not such an object keeps a null `ts` and is counted as unparsed.
    """
    if df.height == 0:
        return _empty_entries()
    rows = []
    for line, entry, text in df.select("line", "entry", "text").iter_rows():
        ts = level = logger = message = None
        fields = ""
        try:
            obj = json.loads(text)
            when = datetime.fromisoformat(str(obj["ts"]).replace("Z", "+00:00"))
            if when.tzinfo is not None:
                when = when.astimezone(UTC)
            ts = when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d}"
            level = LEVELS_V1.get(str(obj.get("level", "")).upper(), "unknown")
            names = obj.get("logger_names") or []
            logger = ".".join(str(n) for n in names) or None
            message = str(obj.get("msg", ""))
            if isinstance(obj.get("fields"), dict):
                fields = _kv(obj["fields"])
        except (ValueError, KeyError, TypeError, AttributeError):
            ts = None
        rows.append((line, entry, ts, level, logger, message, fields, JSON))
    return pl.DataFrame(rows, schema=ENTRY_COLUMNS, orient="row")


def _empty_entries() -> pl.DataFrame:
    return pl.DataFrame(schema=ENTRY_COLUMNS)


def _json_to_kv(text: str) -> str:
    try:
        obj = json.loads(text)
    except ValueError:
        return text
    return _kv(obj) if isinstance(obj, dict) else text


def _kv(fields: dict[str, Any]) -> str:
    """JSON fields rendered the way format B writes them, so one model reads every format:
    `key=value` two spaces apart, strings quoted only when they need it, objects as JSON."""
    out = []
    for key, value in fields.items():
        if isinstance(value, str):
            text = value if re.fullmatch(r"[^\s\"\\=]+", value) else json.dumps(value)
        else:
            text = json.dumps(value, separators=(",", ":"))
        out.append(f"{str(key).replace(' ', '_')}={text}")
    return "  ".join(out)


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
        if rendering in ("json", "prototext"):
            load.renderings.add(rendering)
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


def host_of(stream: str) -> str:
    """The host a log stream came from: the directory it was collected into, by convention
    named after the host (`logs/ml-train-vm/coder-agent.log` -> `ml-train-vm`)."""
    parent = PurePosixPath(stream).parent
    for part in reversed(parent.parts):
        if part.lower() not in GENERIC_DIRS:
            return part
    return str(parent) if str(parent) != "." else "(top level)"


def load_logs(
    con: duckdb.DuckDBPyConnection, work: Path, files: list[tuple[int, Source, LogLoad]]
) -> list[str]:
    """Create `log_files` and `log_events` from the Parquet parts written by `parse_log`.

    Copies of one agent log are read once: files that share a `fetched manifest` line (the
    same host's log collected twice, from two places) become one stream, and within a stream
    an entry already read from another file is dropped and counted in `LogLoad.duplicates`.
    Returns notes saying what was joined.
    """
    con.execute(
        """CREATE TABLE log_files (file_id INTEGER, source VARCHAR, stream VARCHAR,
           host VARCHAR, first_ts TIMESTAMPTZ, last_ts TIMESTAMPTZ)"""
    )
    for file_id, src, load in files:
        con.execute(
            "INSERT INTO log_files VALUES (?, ?, ?, ?, ?::TIMESTAMPTZ, ?::TIMESTAMPTZ)",
            [file_id, src.display, load.stream, host_of(load.stream), load.first_ts, load.last_ts],
        )
    entries = str(work / "entries_*.parquet").replace("'", "''")
    cont = str(work / "cont_*.parquet").replace("'", "''")
    has_parts = bool(files) and any(work.glob("entries_*.parquet"))
    if not has_parts:
        con.execute(
            """CREATE TABLE log_events (file_id INTEGER, line BIGINT, ts TIMESTAMPTZ,
               level VARCHAR, logger VARCHAR, message VARCHAR, fields VARCHAR, block VARCHAR,
               is_start BOOLEAN, is_reinit BOOLEAN, starts BIGINT, instances BIGINT,
               kind VARCHAR)"""
        )
        return []
    con.execute(
        f"""CREATE TABLE log_events AS
        WITH blocks AS (
            SELECT file_id, entry, string_agg(text, chr(10) ORDER BY line) AS block
            FROM read_parquet('{cont}') GROUP BY ALL
        )
        SELECT e.file_id, e.line, CAST(e.ts AS TIMESTAMPTZ) AS ts, e.level, e.logger,
               e.message, e.fields, b.block, e.is_start, e.is_reinit, e.starts, e.instances,
               -- a multi-line HTTP error under another message is a connection error too
               coalesce(e.kind, CASE WHEN b.block LIKE '%unexpected status code%'
                                     THEN 'connection error' END) AS kind
        FROM read_parquet('{entries}') e
        LEFT JOIN blocks b USING (file_id, entry)"""
    )
    notes = _join_copies(con, files)
    _drop_duplicates(con, files)
    return notes


def _join_copies(
    con: duckdb.DuckDBPyConnection, files: list[tuple[int, Source, LogLoad]]
) -> list[str]:
    """Streams that share a decoded `fetched manifest` line are one host's log, collected twice."""
    pairs = con.execute(
        """WITH m AS (
               SELECT f.stream, e.ts, e.fields FROM log_events e JOIN log_files f USING (file_id)
               WHERE e.message = 'fetched manifest' AND e.fields LIKE 'agent_id=%-%'
           )
           SELECT DISTINCT a.stream, b.stream FROM m a JOIN m b
             ON a.ts = b.ts AND a.fields = b.fields AND a.stream < b.stream"""
    ).fetchall()
    if not pairs:
        return []
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[str, list[str]] = {}
    for stream in {s for pair in pairs for s in pair}:
        groups.setdefault(root(stream), []).append(stream)
    for _, _, load in files:
        load.stream = root(load.stream)
    con.execute(
        "UPDATE log_files SET stream = m.canonical, host = m.host FROM "
        "(SELECT unnest(?::VARCHAR[]) AS stream, unnest(?::VARCHAR[]) AS canonical, "
        "unnest(?::VARCHAR[]) AS host) m WHERE log_files.stream = m.stream",
        [list(parent), [root(s) for s in parent], [host_of(root(s)) for s in parent]],
    )
    return [
        f"{', '.join(sorted(members))} hold copies of the same agent log (they share manifest "
        f"lines) and were read as one stream, {canonical}"
        for canonical, members in sorted(groups.items())
    ]


def _drop_duplicates(
    con: duckdb.DuckDBPyConnection, files: list[tuple[int, Source, LogLoad]]
) -> None:
    """Within a stream, keep one copy of each entry when files overlap in time.

    An entry is the same entry when its time, level, logger, message, fields and trailing block
    match and it is the same occurrence (first, second, ...) of that text in its file; the copy
    in the stream's earliest file is kept. Files that do not overlap in time are not compared.
    """
    overlapping = con.execute(
        """SELECT DISTINCT a.file_id FROM log_files a JOIN log_files b
             ON a.stream = b.stream AND a.file_id <> b.file_id
            AND a.first_ts <= b.last_ts AND b.first_ts <= a.last_ts"""
    ).fetchall()
    if not overlapping:
        return
    con.execute(
        """CREATE OR REPLACE TEMP TABLE duplicate_entries AS
        WITH keyed AS (
            SELECT e.file_id, e.line, f.stream, f.first_ts, f.source,
                   hash(e.ts, e.level, e.logger, e.message, e.fields, e.block) AS k,
                   row_number() OVER (
                       PARTITION BY e.file_id, e.ts, e.level, e.logger, e.message, e.fields, e.block
                       ORDER BY e.line) AS occurrence
            FROM log_events e JOIN log_files f USING (file_id)
            WHERE e.file_id IN (SELECT unnest(?::INTEGER[]))
        ),
        ranked AS (
            SELECT file_id, line,
                   row_number() OVER (PARTITION BY stream, k, occurrence
                                      ORDER BY first_ts, source) AS copy
            FROM keyed
        )
        SELECT file_id, line FROM ranked WHERE copy > 1""",
        [[f for (f,) in overlapping]],
    )
    counts = dict(
        con.execute("SELECT file_id, count(*) FROM duplicate_entries GROUP BY ALL").fetchall()
    )
    if not counts:
        return
    con.execute(
        "DELETE FROM log_events e USING duplicate_entries d "
        "WHERE e.file_id = d.file_id AND e.line = d.line"
    )
    # Recount the process boundaries of the files that lost entries.
    con.execute(
        """UPDATE log_events SET starts = w.starts, instances = w.instances FROM (
               SELECT file_id, line,
                      sum(CAST(is_start AS INTEGER)) OVER f AS starts,
                      sum(CAST(is_start OR is_reinit AS INTEGER)) OVER f AS instances
               FROM log_events WHERE file_id IN (SELECT unnest(?::INTEGER[]))
               WINDOW f AS (PARTITION BY file_id ORDER BY line)
           ) w
           WHERE log_events.file_id = w.file_id AND log_events.line = w.line""",
        [list(counts)],
    )
    for file_id, _, load in files:
        load.duplicates = counts.get(file_id, 0)
