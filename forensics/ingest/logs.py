"""Parse cdr.dev/slog agent logs into `log_events`, accounting for every line.

Three renderings are read, line by line, so a file that spans an agent upgrade is read whole:
- format B, sloghuman since mid-2023: `2026-05-14 13:00:00.123 [info]  message  key=value`;
- format A, sloghuman before: `2023-03-10 11:08:25.030 [INFO]\t<f.go:194>\tfunc\tmessage\t{json}`;
- the JSON sink (slogjson): `{"ts": ..., "level": ..., "msg": ..., "fields": {...}}`.
Fields of formats A and JSON are rendered as format B writes them, so one model reads all three.

DuckDB reads the files' lines and classifies them in one streaming query per batch of files,
which also splits the format B entries that may matter into their parts; the few entries of the
other two renderings are parsed in Python. Every line is one of: an entry (starts with a
timestamp and a level), a continuation of the entry above (the trailing field block slog writes
for multi-line values), blank, or unparsed.
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import json
import os
import re
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import duckdb
import polars as pl

from forensics.db import cursor, sql_text
from forensics.discover import Source
from forensics.errors import InputError
from forensics.ingest.slog import go_unquote, manifest_ids

BLOCK_BYTES = 8 * 1024 * 1024
MAX_SAMPLES = 10
# Format B's level codes, as they appear between the brackets.
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
# The kinds slog_kind gives besides these: by a pattern of the message, or by the fields.
OTHER_KINDS = ("script failure", "connection error")
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


# Most lines are read by DuckDB straight from the file: split on "\n" only, one column, no
# quoting. A file DuckDB will not read that way (invalid UTF-8, a carriage return or a 0x01
# byte, a truncated gzip stream) is first copied into the run's work directory with those
# bytes made readable, and the copy is read instead.
# The read buffer is set to twice the longest line: DuckDB's default is 16 times it (512 MiB),
# which it reserves up front for a gzip'd file, so two gzip'd batches side by side filled the
# memory limit, pushed everything else to disk and ran three times slower.
MAX_LINE_BYTES = 32 * 1024 * 1024
READ_OPTIONS = (
    "columns = {'text': 'VARCHAR'}, header = false, auto_detect = false, delim = chr(1), "
    f"quote = '', escape = '', new_line = '\\n', max_line_size = {MAX_LINE_BYTES}, "
    f"buffer_size = {2 * MAX_LINE_BYTES}"
)
# The trailing block of a multi-line field: indented (format B, and format A in a file sink)
# or, in format A, starting with the quoted field name.
INDENTED = r'^(?:\s|"[A-Za-z0-9_. -]+": )'
# Format B after the level: `logger.name: message  key=value  key=value`; the message ends
# where the first `  key=value` field begins.
HUMAN_REST = r"^(?:([A-Za-z0-9_.\-]+): )?(.*?)(?:  ([A-Za-z0-9_.\-]+=.*))?$"
# Format B entries whose message may give them a kind: only these are split (HUMAN_REST).
# (What follows the level; 'startup script' and 'unexpected status code' are looked for anywhere.)
KEYED = r"^(?:[A-Za-z0-9_.\-]+: )?(?:" + "|".join(KINDS) + r")(?:  | \.\.\.$|$)"
# Line classes in `log_lines.cls`: entries by rendering, and the rest.
ENTRY_CLASSES = {"B": HUMAN, "A": HUMAN_V1, "J": JSON}
IS_ENTRY = f"cls IN ({', '.join(sql_text(c) for c in ENTRY_CLASSES)})"


def _macros() -> str:
    """SQL macros shared by the reading query and the fix-ups: an entry's kind, level and
    parts, and redaction."""
    kinds = " ".join(f"WHEN {sql_text(m)} THEN {sql_text(k)}" for m, k in KINDS.items())
    process_start, reinit = sql_text(KINDS[START_MESSAGES[0]]), sql_text(KINDS[REINIT_MESSAGE])
    return f"""
    CREATE OR REPLACE MACRO slog_kind(message, fields) AS CASE
        WHEN (CASE message {kinds} END) IS NOT NULL THEN (CASE message {kinds} END)
        WHEN regexp_matches(message, '^startup script.*failed$') THEN {sql_text(OTHER_KINDS[0])}
        WHEN contains(fields, 'unexpected status code') THEN {sql_text(OTHER_KINDS[1])} END;
    -- A new agent process (a start line), and a new agent in the same process (a prebuild
    -- claim), by the entry's kind.
    CREATE OR REPLACE MACRO slog_starts(kind) AS coalesce(kind = {process_start}, false);
    CREATE OR REPLACE MACRO slog_reinits(kind) AS coalesce(kind = {reinit}, false);
    -- A format B line's logger, message and fields (after the 32 characters of time and level,
    -- without the ` ...` that announces a field block).
    CREATE OR REPLACE MACRO slog_split(text) AS regexp_extract(
        CASE WHEN suffix(text, ' ...') AND length(text) >= 36
             THEN substring(text, 33, length(text) - 36) ELSE substring(text, 33) END,
        {sql_text(HUMAN_REST)}, ['logger', 'message', 'fields']);
    CREATE OR REPLACE MACRO slog_redact(text) AS
        regexp_replace(text, {sql_text(SECRET)}, '\\1<redacted>', 'g');
    """


def _lines_sql(files: list[tuple[int, str]], compressed: bool) -> str:
    """Classify every line of a batch of files and parse their format B entries, in one
    streaming pass (DuckDB reads the files in the order given, each from its first line).

    Lines are numbered through the batch; `entry_line` is the number of the last entry line up
    to and including the line, so a continuation line carries the line of the entry it belongs
    to; `starts` and `instances` count process starts (and prebuild-claim reinitializations) up
    to the line.
    `log_bases` later turns these into numbers within each file.

    Most entries are noise no rule reads (tailnet, SSH, stats): they keep their time, level and
    a hash of their text (what copies of a log are compared by), not the text. An entry is
    split into logger, message and fields only when its message may give it a kind (an
    anchored pattern of the kind messages, KEYED) or its line ends in ` ...`, which slog writes
    when a multi-line field block follows (such a block can make it a connection error).
    """
    # (a CASE over the nine characters after the time: an IN list would become a join, which
    # loses the file's order the running counts below need)
    heads = " ".join(
        f"WHEN {sql_text(f' [{code}]  ')} THEN {sql_text(level)}" for code, level in LEVELS.items()
    )
    compression = "gzip" if compressed else "none"
    paths = ", ".join(sql_text(p) for _, p in files)
    ids = ", ".join(f"({sql_text(p)}, {file_id})" for file_id, p in files)
    return f"""
    INSERT INTO log_lines
    WITH raw AS (
        SELECT row_number() OVER () AS line, filename,
               CASE WHEN text IS NULL THEN ''
                    WHEN contains(text, chr(27))
                    THEN regexp_replace(text, {sql_text(ANSI)}, '', 'g')
                    ELSE text END AS text
        FROM read_csv([{paths}], {READ_OPTIONS}, compression = '{compression}',
                      filename = true)
    ),
    timed AS (
        -- format B's fixed head, `2026-05-14 13:00:00.123 [info]  `, checked by position
        -- (cheaper than a pattern); the time is then read by a cast, which fails on anything else.
        -- Log times are UTC: `make_timestamptz` of the microseconds says so without a time zone
        -- lookup, which a cast to TIMESTAMPTZ makes for every line (a tenth of the parse).
        SELECT line, filename, text, level,
               CASE WHEN level IS NOT NULL THEN TRY_CAST(left(text, 23) AS TIMESTAMP) END AS ts
        FROM (SELECT *, CASE substring(text, 24, 9) {heads} END AS level FROM raw)
    ),
    classified AS (
        SELECT line, filename, text, make_timestamptz(epoch_us(ts)) AS ts,
            CASE WHEN ts IS NOT NULL THEN level END AS level,
            CASE WHEN ts IS NOT NULL THEN 'B'
                 WHEN regexp_matches(text, {sql_text(ENTRY_V1)}) THEN 'A'
                 WHEN regexp_matches(text, {sql_text(ENTRY_JSON)}) THEN 'J'
                 WHEN regexp_matches(text, '^\\s*$') THEN 'blank'
                 WHEN regexp_matches(text, {sql_text(INDENTED)}) THEN 'indented'
                 ELSE 'bad' END AS cls
        FROM timed
    ),
    split AS (
        SELECT *, CASE WHEN cls = 'B' AND (
                           suffix(text, ' ...')
                           OR regexp_matches(substring(text, 33), {sql_text(KEYED)})
                           OR contains(text, 'startup script')
                           OR contains(text, 'unexpected status code'))
                       THEN slog_split(text) END AS p
        FROM classified
    ),
    entries AS (
        SELECT line, filename, text, cls, ts, p IS NOT NULL AS keyed, level,
               nullif(p.logger, '') AS logger, p.message AS message, p.fields AS fields,
               CASE WHEN cls = 'B' THEN hash(text) END AS h
        FROM split
    ),
    marked AS (
        SELECT *, slog_starts(kind) AS is_start, slog_reinits(kind) AS is_reinit
        FROM (SELECT *, slog_kind(message, fields) AS kind FROM entries)
    ),
    counted AS (
        SELECT *,
            max(CASE WHEN {IS_ENTRY} THEN line END) OVER upto AS entry_line,
            sum(CAST(is_start AS INTEGER)) OVER upto AS starts,
            sum(CAST(is_start OR is_reinit AS INTEGER)) OVER upto AS instances
        FROM marked
        WINDOW upto AS (ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
    )
    SELECT f.file_id, line, cls, entry_line, ts, level, kind, starts,
           instances, h,
           CASE WHEN keyed OR cls IN ('A', 'J', 'indented') THEN text
                WHEN cls = 'bad' THEN left(text, 300) END AS text
    FROM counted JOIN (VALUES {ids}) f(filename, file_id) USING (filename)
    """


# Every line read, numbered through its batch (`log_bases` holds each file's offsets). Only
# the few lines that need it keep their text: entries that may have a kind (`keyed`), the other
# renderings, continuation lines and unparsed lines (the first 300 characters). Whether a line
# starts a process or an agent is read from its kind (`slog_starts`, `slog_reinits`).
LOG_TYPES = (
    "CREATE TYPE log_class AS ENUM ('B', 'A', 'J', 'blank', 'indented', 'bad')",
    "CREATE TYPE log_level AS ENUM "
    "('debug', 'info', 'warn', 'error', 'critical', 'fatal', 'unknown')",
    # (a byte per line where a string takes sixteen: `log_lines` spills at a few GB of logs)
    "CREATE TYPE log_kind AS ENUM "
    f"({', '.join(sql_text(k) for k in sorted({*KINDS.values(), *OTHER_KINDS}))})",
)
LOG_LINES = """CREATE OR REPLACE TABLE log_lines (
    file_id INTEGER, line INTEGER, cls log_class, entry_line INTEGER, ts TIMESTAMPTZ,
    level log_level, kind log_kind, starts INTEGER, instances INTEGER, h UBIGINT, text VARCHAR)"""
# A file's lines counted by class, its time range and process starts: what `LogLoad` reports.
LINE_COUNTS = {
    "lines": "count(*)",
    "indented": "count(*) FILTER (cls = 'indented')",
    "blank": "count(*) FILTER (cls = 'blank')",
    "bad": "count(*) FILTER (cls = 'bad')",
    "first_ts": "strftime(min(ts), '%Y-%m-%d %H:%M:%S.%g')",
    "last_ts": "strftime(max(ts), '%Y-%m-%d %H:%M:%S.%g')",
    "starts": "count(*) FILTER (slog_starts(kind))",
    "reinits": "count(*) FILTER (slog_reinits(kind))",
    **{cls: f"count(*) FILTER (cls = '{cls}')" for cls in ENTRY_CLASSES},
}
# Each file's numbers just before its first line (`log_bases`): subtracted, they number
# within the file.
BASES = """min(line) - 1 AS line0,
    min(starts - CAST(slog_starts(kind) AS INTEGER)) AS starts0,
    min(instances - CAST(slog_starts(kind) OR slog_reinits(kind) AS INTEGER)) AS instances0"""
# The format A and JSON entries' parts, parsed in Python (`_parse_other_renderings`).
LOG_OTHER = """CREATE OR REPLACE TABLE log_other (file_id INTEGER, line INTEGER, logger VARCHAR,
    message VARCHAR, fields VARCHAR)"""
# Indented lines: a continuation of the entry before them, or, before a file's first entry
# (when the entry line is in the file before it in the batch, or there is none), unparsed.
CONTINUED = "coalesce(entry_line > line0, false)"
LOG_INDENTED = f"""CREATE OR REPLACE TEMP TABLE log_indented AS
SELECT file_id, line, entry_line, text, {CONTINUED} AS continued
FROM log_lines JOIN log_bases USING (file_id)
WHERE cls = 'indented'"""
# The entries with their text (split into logger, message and fields), trailing block and kind.
LOG_TEXTS = f"""CREATE OR REPLACE TABLE log_texts AS
WITH blocks AS (
    SELECT file_id, entry_line AS line, string_agg(text, chr(10) ORDER BY line) AS block
    FROM log_indented WHERE continued GROUP BY ALL
),
kept AS MATERIALIZED (
    -- (format A and JSON entries keep no text once parsed: their parts are in log_other)
    SELECT file_id, line, cls, text, kind FROM log_lines
    WHERE cls IN ('A', 'J') OR (cls = 'B' AND text IS NOT NULL)
),
-- The entries whose text was kept, and those with only a block (found from the block: its
-- entry's line is known, so the lines need no second look)
texts AS (
    SELECT k.*, b.block FROM kept k LEFT JOIN blocks b USING (file_id, line)
    UNION ALL
    SELECT b.file_id, b.line, 'B', NULL, NULL, b.block
    FROM blocks b ANTI JOIN kept k USING (file_id, line)
),
split AS (
    SELECT *, CASE WHEN cls = 'B' AND text IS NOT NULL THEN slog_split(text) END AS p
    FROM texts
)
SELECT s.file_id, s.line,
       coalesce(o.logger, nullif(s.p.logger, '')) AS logger,
       coalesce(o.message, s.p.message) AS message, coalesce(o.fields, s.p.fields) AS fields,
       s.block,
       -- a multi-line HTTP error under another message is a connection error too
       coalesce(s.kind, CASE WHEN s.block LIKE '%unexpected status code%'
                             THEN {sql_text(OTHER_KINDS[1])} END) AS kind
FROM split s LEFT JOIN log_other o USING (file_id, line)"""
# Entries as the model reads them: numbered within their file, with their text when kept.
EVENT_COLUMNS = """l.file_id, l.line - b.line0 AS line, l.ts, CAST(l.level AS VARCHAR) AS level,
       t.logger, t.message, t.fields, t.block, slog_starts(l.kind) AS is_start,
       slog_reinits(l.kind) AS is_reinit,
       l.starts - b.starts0 AS starts, l.instances - b.instances0 AS instances,
       coalesce(t.kind, l.kind) AS kind, hash(l.h, t.block) AS h"""
LOG_EVENTS = f"""CREATE OR REPLACE VIEW log_events AS
SELECT {EVENT_COLUMNS}
FROM log_lines l
JOIN log_bases b ON b.file_id = l.file_id
LEFT JOIN log_texts t ON t.file_id = l.file_id AND t.line = l.line
WHERE l.{IS_ENTRY}"""
# The same for the entries with a kind, found from their texts (every entry with a kind has
# one): reading them from `log_events` would join every line to `log_texts` first. (A block's
# entry may have turned out unparsed, a JSON line that is no entry: IS_ENTRY leaves it out.)
LOG_KEY_EVENTS = f"""CREATE OR REPLACE VIEW log_key_events AS
SELECT {EVENT_COLUMNS}
FROM log_texts t
JOIN log_lines l ON l.file_id = t.file_id AND l.line = t.line
JOIN log_bases b ON b.file_id = l.file_id
WHERE t.kind IS NOT NULL AND l.{IS_ENTRY}"""


def parse_logs(
    con: duckdb.DuckDBPyConnection, work: Path, logs: list[tuple[int, Source]]
) -> list[LogLoad]:
    """Parse the agent log files into `log_events`, accounting for every line of each.

    Files are read in batches, side by side, each batch by one query on its own cursor, into
    `log_lines`; `log_texts` holds the few entries' text and `log_events` is a view of both.
    Returns each file's line accounting, in the order given.
    """
    con.execute(_macros())
    for statement in LOG_TYPES:
        with contextlib.suppress(duckdb.CatalogException):  # created by an earlier call
            con.execute(statement)
    con.execute(LOG_LINES)
    loads = {file_id: LogLoad(path=src.display, stream=stream_of(src)) for file_id, src in logs}
    cores = os.cpu_count() or 1
    batches = _batches(logs, cores)
    workers = max(1, min(len(batches), cores))

    def read(batch: list[tuple[int, Source]]) -> None:
        cur = cursor(con)
        try:
            _read_batch(cur, batch, work, loads)
        finally:
            cur.close()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(read, batches))
    # Every line of `log_lines` is scanned three times from here on (it may be on disk by now):
    # once for each file's numbers and counts, once for the continuation lines, once for the
    # entries that keep their text. The other renderings and the samples of unparsed lines are
    # looked for only when the counts say there are some.
    counts = _count_lines(con)
    con.execute(LOG_OTHER)
    if any(c["A"] or c["J"] for c in counts.values()):
        recounted = _parse_other_renderings(con)
        counts.update(_count_lines(con, recounted))
    con.execute(LOG_INDENTED)
    con.execute(LOG_TEXTS)
    con.execute("DROP TABLE log_other")
    _redact_manifests(con, loads)
    con.execute("UPDATE log_texts SET fields = slog_redact(fields), block = slog_redact(block)")
    _account(con, loads, counts)
    con.execute("DROP TABLE log_indented")
    con.execute(LOG_EVENTS)
    con.execute(LOG_KEY_EVENTS)
    return [loads[file_id] for file_id, _ in logs]


# A batch is read by one query: fewer, larger queries cost less than one per file. Batches
# are cut by uncompressed size, so that each takes about as long as another, and small enough
# that every worker gets several (otherwise a worker whose batch is done waits for the other).
BATCH_BYTES = 64 * 1024 * 1024
MIN_BATCH_BYTES = 4 * 1024 * 1024
BATCHES_PER_WORKER = 4
BATCH_FILES = 256


def _batches(logs: list[tuple[int, Source]], workers: int) -> list[list[tuple[int, Source]]]:
    """Files grouped for reading: gzip'd and plain apart, up to BATCH_BYTES (uncompressed; less
    when the logs are small, BATCHES_PER_WORKER for each of `workers`) or BATCH_FILES. gzip'd
    batches come first: one query decompresses on one thread, so they are the slowest, and the
    plain ones fill in around them."""
    sizes = {file_id: _uncompressed_size(src) for file_id, src in logs}
    limit = sum(sizes.values()) // (workers * BATCHES_PER_WORKER)
    limit = max(MIN_BATCH_BYTES, min(BATCH_BYTES, limit))
    batches: list[list[tuple[int, Source]]] = []
    for compressed in (True, False):
        batch: list[tuple[int, Source]] = []
        size = 0
        for file_id, src in logs:
            if src.compressed != compressed:
                continue
            if batch and (size + sizes[file_id] > limit or len(batch) >= BATCH_FILES):
                batches.append(batch)
                batch, size = [], 0
            batch.append((file_id, src))
            size += sizes[file_id]
        if batch:
            batches.append(batch)
    return batches


def _uncompressed_size(src: Source) -> int:
    """A file's size once decompressed: for gzip, what its trailer says (the size modulo 4 GiB
    of its last member), or four times the file when that is less."""
    if not src.compressed:
        return src.size
    try:
        with src.path.open("rb") as f:
            f.seek(-4, os.SEEK_END)
            trailer = int.from_bytes(f.read(4), "little")
    except OSError:
        trailer = 0
    return max(trailer, 4 * src.size)


def _read_batch(
    cur: duckdb.DuckDBPyConnection,
    batch: list[tuple[int, Source]],
    work: Path,
    loads: dict[int, LogLoad],
) -> None:
    """Insert a batch's lines into `log_lines`; when DuckDB balks at one of its files, each
    file is read on its own, and a file it balks at is read from a readable copy."""
    direct = []
    for file_id, src in batch:
        if _starts_with_cr(src):
            _read_copy(cur, file_id, src, work, loads[file_id])
        else:
            direct.append((file_id, src))
    batch = direct
    if len(batch) > 1:
        try:
            cur.execute(
                _lines_sql([(n, str(src.path)) for n, src in batch], batch[0][1].compressed)
            )
            return
        except duckdb.Error:
            pass  # the statement inserted nothing; read the files one by one
    for file_id, src in batch:
        try:
            cur.execute(_lines_sql([(file_id, str(src.path))], src.compressed))
            continue
        except duckdb.Error:
            pass
        _read_copy(cur, file_id, src, work, loads[file_id])


def _read_copy(
    cur: duckdb.DuckDBPyConnection, file_id: int, src: Source, work: Path, load: LogLoad
) -> None:
    """Insert a file's lines into `log_lines` from a cleaned copy (`_clean_copy`)."""
    copy = work / f"clean-{file_id}.log"
    _clean_copy(src, copy, load)
    try:
        cur.execute(_lines_sql([(file_id, str(copy))], False))
    except duckdb.Error as exc:
        raise InputError(f"{src.display}: cannot read this log file: {exc}") from exc
    finally:
        copy.unlink(missing_ok=True)


def _starts_with_cr(src: Source) -> bool:
    """True for a file whose first byte is a carriage return, which DuckDB's reader takes for a
    line break without complaint (anywhere else, a carriage return makes it fail)."""
    try:
        with gzip.open(src.path, "rb") if src.compressed else src.path.open("rb") as f:
            return f.read(1) == b"\r"
    except (OSError, EOFError, zlib.error):
        return True  # unreadable from the start: the copy records why


def _clean_copy(src: Source, dest: Path, load: LogLoad) -> None:
    """Copy a log with what DuckDB cannot read made readable, line for line.

    Invalid UTF-8 becomes U+FFFD; carriage returns at line ends are dropped (CRLF files) and
    other carriage returns, NUL and 0x01 bytes become U+FFFD; a line is cut after a quarter of
    MAX_LINE_BYTES characters (so that it fits in MAX_LINE_BYTES of UTF-8). A gzip stream cut
    short yields what could be decompressed, and the problem is recorded in `load.problem`.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    carry = ""
    with dest.open("w", encoding="utf-8", newline="") as out:

        def emit(text: str) -> None:
            text = re.sub(r"\r+(?=\n)", "", text)
            text = re.sub(r"[\r\x00\x01]", "\ufffd", text)
            if len(text) > MAX_LINE_BYTES // 4:
                text = "\n".join(line[: MAX_LINE_BYTES // 4] for line in text.split("\n"))
            out.write(text)

        for block in _blocks(src.path, src.compressed, load):
            text = carry + decoder.decode(block)
            cut = text.rfind("\n")
            if cut < 0:
                carry = text
                continue
            emit(text[: cut + 1])
            carry = text[cut + 1 :]
        rest = carry + decoder.decode(b"", final=True)
        if rest:  # a last line without its newline: still a line
            emit(rest.rstrip("\r") + "\n")


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


# What `_human_v1` and `_json_lines` give for each line (`ts` null for a line that is not an
# entry after all).
ENTRY_COLUMNS = {
    "line": pl.Int64,
    "ts": pl.String,
    "level": pl.String,
    "logger": pl.String,
    "message": pl.String,
    "fields": pl.String,
}


def _human_v1(df: pl.DataFrame) -> pl.DataFrame:
    """Format A (slog before mid-2023), tab-separated:
    `TS [INFO]\t(logger.names)\t<./path/file.go:12>\tfunc\tmessage\t{"key": "value"}`.

    Copies pasted from a browser have spaces for tabs; both are read. The logger names, the
    function and the JSON fields are each optional.
    """
    rows = []
    for line, text in df.select("line", "text").iter_rows():
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
        rows.append((line, ts, LEVELS_V1.get(lvl, "unknown"), logger, message, fields))
    return pl.DataFrame(rows, schema=ENTRY_COLUMNS, orient="row")


def _json_lines(df: pl.DataFrame) -> pl.DataFrame:
    """The JSON sink (slogjson): one object per line with ts, level, msg, logger_names, fields.

    A line that is not such an object keeps a null `ts` and is counted as unparsed.
    """
    rows = []
    for line, text in df.select("line", "text").iter_rows():
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
        rows.append((line, ts, level, logger, message, fields))
    return pl.DataFrame(rows, schema=ENTRY_COLUMNS, orient="row")


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


def _parse_other_renderings(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Parse the format A and JSON entries, which vary too much for SQL, in Python.

    They keep their text in `log_lines` when read; here they get their time, level and kind,
    and their logger, message and fields go to `log_other` (for `log_texts`). A JSON line that
    is not a log entry becomes unparsed. The process counts of the files that had any are then
    counted again; returns those files.
    """
    rows = pl.DataFrame(
        con.execute(
            "SELECT file_id, CAST(cls AS VARCHAR), line, text FROM log_lines "
            "WHERE cls IN ('A', 'J') ORDER BY file_id, line"
        ).fetchall(),
        schema={"file_id": pl.Int32, "cls": pl.String, "line": pl.Int64, "text": pl.String},
        orient="row",
    )
    if rows.height == 0:
        return []
    parsed = []
    for (file_id, cls), part in rows.group_by(["file_id", "cls"], maintain_order=True):
        frame = _human_v1(part) if cls == "A" else _json_lines(part)
        parsed.append(frame.with_columns(file_id=pl.lit(file_id, dtype=pl.Int32)))
    entries = pl.concat(parsed)
    con.execute(
        """CREATE OR REPLACE TEMP TABLE __other AS
           SELECT unnest($file_id::INTEGER[]) AS file_id, unnest($line::INTEGER[]) AS line,
                  CAST(unnest($ts::VARCHAR[]) AS TIMESTAMPTZ) AS ts,
                  unnest($level::VARCHAR[]) AS level, unnest($logger::VARCHAR[]) AS logger,
                  unnest($message::VARCHAR[]) AS message, unnest($fields::VARCHAR[]) AS fields""",
        {c: entries[c].to_list() for c in ("file_id", *ENTRY_COLUMNS)},
    )
    con.execute(
        """UPDATE log_lines SET
               cls = CASE WHEN e.ts IS NULL THEN 'bad' ELSE log_lines.cls END,
               text = CASE WHEN e.ts IS NULL THEN left(log_lines.text, 300) END,
               ts = e.ts, level = CASE WHEN e.ts IS NOT NULL THEN e.level END,
               kind = CASE WHEN e.ts IS NOT NULL THEN slog_kind(e.message, e.fields) END,
               h = CASE WHEN e.ts IS NOT NULL
                        THEN hash(e.ts, e.level, e.logger, e.message, e.fields) END
           FROM __other e
           WHERE log_lines.file_id = e.file_id AND log_lines.line = e.line"""
    )
    con.execute(
        "INSERT INTO log_other SELECT file_id, line, logger, message, fields FROM __other "
        "WHERE ts IS NOT NULL; DROP TABLE __other"
    )
    # Counted again within each file, so those files' counts need no base.
    recounted = sorted({int(f) for f in rows["file_id"].unique()})
    _recount(con, recounted)
    return recounted


def _recount(con: duckdb.DuckDBPyConnection, file_ids: list[int]) -> None:
    """Count again, within each of these files, the process starts (and instances) up to each
    line; their counts then need no base."""
    con.execute(
        """UPDATE log_lines SET starts = w.starts, instances = w.instances FROM (
               SELECT file_id, line,
                      sum(CAST(slog_starts(kind) AS INTEGER)) OVER f AS starts,
                      sum(CAST(slog_starts(kind) OR slog_reinits(kind) AS INTEGER)) OVER f
                          AS instances
               FROM log_lines WHERE file_id IN (SELECT unnest(?::INTEGER[]))
               WINDOW f AS (PARTITION BY file_id ORDER BY line)
           ) w
           WHERE log_lines.file_id = w.file_id AND log_lines.line = w.line""",
        [file_ids],
    )
    con.execute(
        "UPDATE log_bases SET starts0 = 0, instances0 = 0 "
        "WHERE file_id IN (SELECT unnest(?::INTEGER[]))",
        [file_ids],
    )


def _redact_manifests(con: duckdb.DuckDBPyConnection, loads: dict[int, LogLoad]) -> None:
    """Replace each manifest's fields with the ids it carries: the rest holds env secrets."""
    rows = con.execute(
        "SELECT file_id, line, fields FROM log_texts WHERE kind = 'manifest'"
    ).fetchall()
    if not rows:
        return
    replaced = []
    for file_id, line, fields in rows:
        load = loads[file_id]
        agent_id, workspace_id, rendering = manifest_ids(fields or "")
        load.manifests += 1
        if rendering in ("json", "prototext"):
            load.renderings.add(rendering)
        if agent_id is None:
            load.undecoded_manifests += 1
        replaced.append(
            (
                file_id,
                line,
                f"agent_id={agent_id or '<undecoded>'}  "
                f"workspace_id={workspace_id or '<undecoded>'}  rendering={rendering}  "
                "manifest=<redacted>",
            )
        )
    con.execute(
        """UPDATE log_texts SET fields = n.fields
           FROM (SELECT unnest(?::INTEGER[]) AS file_id, unnest(?::INTEGER[]) AS line,
                        unnest(?::VARCHAR[]) AS fields) n
           WHERE log_texts.file_id = n.file_id AND log_texts.line = n.line""",
        [list(column) for column in zip(*replaced, strict=True)],
    )


def _count_lines(
    con: duckdb.DuckDBPyConnection, file_ids: list[int] | None = None
) -> dict[int, dict[str, Any]]:
    """Each file's LINE_COUNTS; for every file, in the same pass, `log_bases` is made too. With
    `file_ids`, those files are counted again (after their entries were parsed in Python)."""
    counts = ", ".join(f"{sql} AS {name}" for name, sql in LINE_COUNTS.items())
    if file_ids is None:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE file_counts AS SELECT file_id, {BASES}, {counts} "
            "FROM log_lines GROUP BY file_id"
        )
        con.execute(
            "CREATE OR REPLACE TABLE log_bases AS "
            "SELECT file_id, line0, starts0, instances0 FROM file_counts"
        )
        rows = con.execute(f"SELECT file_id, {', '.join(LINE_COUNTS)} FROM file_counts")
    else:
        rows = con.execute(
            f"SELECT file_id, {counts} FROM log_lines "
            "WHERE file_id IN (SELECT unnest(?::INTEGER[])) GROUP BY file_id",
            [file_ids],
        )
    found = {row[0]: dict(zip(LINE_COUNTS, row[1:], strict=True)) for row in rows.fetchall()}
    con.execute("DROP TABLE IF EXISTS file_counts")
    return found


def _account(
    con: duckdb.DuckDBPyConnection, loads: dict[int, LogLoad], counts: dict[int, dict[str, Any]]
) -> None:
    """Fill each file's line accounting: its counts, its continuation lines (indented lines
    before its first entry are unparsed), samples of unparsed lines, agent versions."""
    orphans: dict[int, int] = {}
    for file_id, n_orphans, merged in con.execute(
        "SELECT file_id, count(*) FILTER (NOT continued), "
        "count(DISTINCT entry_line) FILTER (continued) "
        "FROM log_indented GROUP BY file_id"
    ).fetchall():
        orphans[file_id] = n_orphans
        loads[file_id].merged = merged
    for file_id, c in counts.items():
        load = loads[file_id]
        load.lines, load.blank = c["lines"], c["blank"]
        load.entries = sum(c[cls] for cls in ENTRY_CLASSES)
        load.continuation = c["indented"] - orphans.get(file_id, 0)
        load.unparsed = c["bad"] + orphans.get(file_id, 0)
        load.first_ts, load.last_ts = c["first_ts"], c["last_ts"]
        load.starts, load.reinits = c["starts"], c["reinits"]
        load.formats = {name: c[cls] for cls, name in ENTRY_CLASSES.items() if c[cls]}
    if any(load.unparsed for load in loads.values()):
        for file_id, line, text in con.execute(
            f"""SELECT file_id, line - line0, text FROM log_lines JOIN log_bases USING (file_id)
                WHERE cls = 'bad' OR (cls = 'indented' AND NOT {CONTINUED})
                QUALIFY row_number() OVER (PARTITION BY file_id ORDER BY line) <= {MAX_SAMPLES}
                ORDER BY file_id, line"""
        ).fetchall():
            loads[file_id].samples.append(
                (line, re.sub(SECRET, r"\1<redacted>", (text or "")[:300]))
            )
    for file_id, fields in con.execute(
        "SELECT file_id, fields FROM log_texts WHERE kind = 'process start'"
    ).fetchall():
        m = re.search(r"(?:^|  )version=\"?(v?\d+\.\d+\.\d+[^\s\"]*)", fields or "")
        if m:
            loads[file_id].versions.add(m.group(1))


def host_of(stream: str) -> str:
    """The host a log stream came from: the directory it was collected into, by convention
    named after the host (`logs/ml-train-vm/coder-agent.log` -> `ml-train-vm`)."""
    parent = PurePosixPath(stream).parent
    for part in reversed(parent.parts):
        if part.lower() not in GENERIC_DIRS:
            return part
    return str(parent) if str(parent) != "." else "(top level)"


def load_logs(
    con: duckdb.DuckDBPyConnection, files: list[tuple[int, Source, LogLoad]]
) -> list[str]:
    """Create `log_files` and read copies of one agent log once.

    Files that share a `fetched manifest` line (the same host's log collected twice, from two
    places) become one stream, and within a stream an entry already read from another file is
    dropped from `log_events` and counted in `LogLoad.duplicates`. Returns notes saying what
    was joined.
    """
    con.execute(
        """CREATE TABLE log_files (file_id INTEGER, source VARCHAR, stream VARCHAR,
           host VARCHAR, first_ts TIMESTAMPTZ, last_ts TIMESTAMPTZ)"""
    )
    if not files:
        return []
    con.executemany(
        "INSERT INTO log_files VALUES (?, ?, ?, ?, ?::TIMESTAMPTZ, ?::TIMESTAMPTZ)",
        [
            [file_id, src.display, load.stream, host_of(load.stream), load.first_ts, load.last_ts]
            for file_id, src, load in files
        ],
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
               SELECT f.stream, e.ts, e.fields
               FROM log_key_events e JOIN log_files f USING (file_id)
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
    match (compared by their hash, `h`, taken before redaction) and it is the same occurrence
    (first, second, ...) of that text in its file; the copy in the stream's earliest file is
    kept. Files that do not overlap in time are not compared.
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
            SELECT e.file_id, e.line, f.stream, f.first_ts, f.source, e.h,
                   row_number() OVER (PARTITION BY e.file_id, e.h ORDER BY e.line) AS occurrence
            FROM log_events e JOIN log_files f USING (file_id)
            WHERE e.file_id IN (SELECT unnest(?::INTEGER[]))
        ),
        ranked AS (
            SELECT file_id, line,
                   row_number() OVER (PARTITION BY stream, h, occurrence
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
        """DELETE FROM log_lines l USING duplicate_entries d, log_bases b
           WHERE l.file_id = d.file_id AND b.file_id = d.file_id AND l.line = d.line + b.line0"""
    )
    _recount(con, list(counts))  # the files that lost entries
    for file_id, _, load in files:
        load.duplicates = counts.get(file_id, 0)
