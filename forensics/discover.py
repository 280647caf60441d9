"""Find and classify inputs: table exports, agent logs, and everything else (with the reason).

Files are recognised by content first and name second: a CSV whose header has Coder's
`workspace_agents` columns is that table whatever it is called, and a file is an agent log
because its lines are cdr.dev/slog lines, not because of its name or directory.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from forensics.errors import InputError
from forensics.ingest.schema import SIGNATURE_COLUMNS, TABLE_ALIASES, TABLES

SNIFF_BYTES = 64 * 1024
# cdr.dev/slog human format B: "2026-05-14 13:00:00.123 [info]  message"
SLOG_LINE = re.compile(
    rb"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \[(debu|info|warn|erro|crit|fata)\]  "
)
AGENT_MARKERS = (
    b"agent is starting now",
    b"starting agent",
    b"fetched manifest",
    b"connecting to coderd",
)
LOG_KINDS = ("agent_log", "log")  # kinds of Source that are parsed as slog logs
TABLE_EXTENSIONS = {
    ".csv": "csv",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".json": "ndjson",
    ".parquet": "parquet",
}


@dataclass
class Source:
    """One input file and what it was taken for."""

    path: Path
    display: str  # path as shown to the user, relative to the input it was found under
    size: int
    sha256: str
    kind: str  # table | agent_log | log | manifest | unrecognised | empty
    table: str | None = None
    format: str | None = None  # csv | ndjson | parquet | slog
    compressed: bool = False
    note: str = ""


def discover(paths: list[Path]) -> list[Source]:
    """Walk the given files and directories and classify every file found, sorted by path."""
    sources: list[Source] = []
    for root in paths:
        if not root.exists():
            raise InputError(f"{root}: no such file or directory")
    # Paths are shown relative to the inputs' common parent, so they stay unique (and
    # rotated files of one host stay apart from another host's) however the inputs are given.
    base = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
    for root in paths:
        if root.is_file():
            sources.append(classify(root, os.path.relpath(os.path.abspath(root), base)))
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if name.startswith(".") or not path.is_file():
                    continue
                sources.append(classify(path, os.path.relpath(os.path.abspath(path), base)))
    return sources


def classify(path: Path, display: str) -> Source:
    """Recognise one file by its content (and, for tables, its name)."""
    size = path.stat().st_size
    src = Source(path=path, display=display, size=size, sha256=_sha256(path), kind="unrecognised")
    if size == 0:
        src.kind, src.note = "empty", "empty file"
        return src
    with path.open("rb") as f:
        magic = f.read(4)
    src.compressed = magic[:2] == b"\x1f\x8b"
    try:
        head = _head(path, src.compressed)
    except zlib.error as exc:
        src.note = f"cannot decompress: {exc}"
        return src
    if head[:4] == b"PAR1":
        return _as_table(src, "parquet", None)
    if magic[:4] == b"PK\x03\x04" or _is_tar(head):
        src.note = "archive (zip/tar): unpack it and pass the directory"
        return src
    if path.name == "manifest.json" and b'"collected_with": "forensics collect"' in head:
        src.kind, src.format = "manifest", "json"
        src.note = "written by forensics collect: export time, Coder migration, row counts"
        return src
    first = next((ln for ln in head.splitlines() if ln.strip()), b"")
    if SLOG_LINE.match(first) or any(SLOG_LINE.match(ln) for ln in head.splitlines()[:50]):
        src.format = "slog"
        is_agent = any(m in head for m in AGENT_MARKERS) or "coder-agent" in path.name
        src.kind = "agent_log" if is_agent else "log"
        if not is_agent:
            src.note = "slog log without agent messages in its first 64 KiB; parsed anyway"
        return src
    if first.startswith(b"{"):
        keys = _json_keys(first)
        if keys is not None:
            return _as_table(src, "ndjson", keys)
    header = _csv_header(first)
    if header is not None:
        return _as_table(src, "csv", header)
    src.note = "neither a table export (CSV/NDJSON/Parquet) nor a cdr.dev/slog log"
    return src


def _as_table(src: Source, fmt: str, columns: set[str] | None) -> Source:
    src.format = fmt
    by_name = _table_from_name(src.path.name)
    by_content = _table_from_columns(columns) if columns is not None else None
    table = by_name or by_content
    if columns is not None and by_name and not set(TABLES[by_name].required) <= columns:
        # A file named like one table but shaped like another (or like none).
        table = by_content
    if table is None:
        src.note = f"{fmt} file that matches no Coder table we read"
        return src
    src.kind, src.table = "table", table
    if by_name and table != by_name:
        src.note = f"named like {by_name} but its columns are those of {table}"
    return src


def _table_from_name(name: str) -> str | None:
    stem = name.lower()
    if stem.endswith(".gz"):
        stem = stem[:-3]
    for ext in TABLE_EXTENSIONS:
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
            break
    names = sorted([*TABLES, *TABLE_ALIASES], key=len, reverse=True)
    for table in names:
        # "workspace_agents", "public.workspace_agents", "2026-05-20_workspace_agents"
        if re.search(rf"(^|[^a-z_]){re.escape(table)}$", stem):
            return TABLE_ALIASES.get(table, table)
    return None


def _table_from_columns(columns: set[str]) -> str | None:
    best, score = None, 0.0
    for table, signature in SIGNATURE_COLUMNS.items():
        if not set(TABLES[table].required) <= columns:
            continue
        s = len(signature & columns) / len(signature)
        if s > score:
            best, score = table, s
    return best if score >= 0.75 else None


def _json_keys(line: bytes) -> set[str] | None:
    text = line.decode("utf-8", errors="replace")
    for candidate in (text, text.replace("\\\\", "\\")):
        try:
            obj = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(obj, dict):
            return {k.lower() for k in obj}
    return None


def _csv_header(line: bytes) -> set[str] | None:
    try:
        fields = next(csv.reader(io.StringIO(line.decode("utf-8"))))
    except (UnicodeDecodeError, StopIteration, csv.Error):
        return None
    if len(fields) < 2 or not all(re.fullmatch(r"[a-z_][a-z0-9_]*", f.strip()) for f in fields):
        return None
    return {f.strip() for f in fields}


def _head(path: Path, compressed: bool) -> bytes:
    """The first bytes of the (decompressed) content; a truncated gzip still gives its start."""
    with path.open("rb") as f:
        raw = f.read(SNIFF_BYTES)
    if not compressed:
        return raw
    return zlib.decompressobj(wbits=47).decompress(raw, SNIFF_BYTES)


def _is_tar(head: bytes) -> bool:
    return len(head) > 262 and head[257:262] == b"ustar"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
