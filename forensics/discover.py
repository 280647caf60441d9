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
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from forensics.errors import InputError
from forensics.ingest.schema import SIGNATURE_COLUMNS, TABLE_ALIASES, TABLES

SNIFF_BYTES = 64 * 1024
# cdr.dev/slog human format B "2026-05-14 13:00:00.123 [info]  message", and format A (before
# mid-2023) "2023-03-10 11:08:25.030 [INFO]\t<./agent/agent.go:199>\t..."
SLOG_LINE = re.compile(
    rb"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} "
    rb"(\[(debu|info|warn|erro|crit|fata)\]  |\[(DEBUG|INFO|WARN|ERROR|CRITICAL|FATAL)\]\s)"
)
SLOG_JSON_KEYS = {"ts", "level", "msg"}  # the JSON sink, slogjson
# coder-script-<script id>.log: a startup/shutdown script's own output, not slog
SCRIPT_LOG = re.compile(
    r"^coder-(?:script-([0-9a-f-]{36})|startup-script|shutdown-script)(?:-[\dT.-]+)?\.log(\.gz)?$"
)
AGENT_MARKERS = (
    b"agent is starting now",
    b"starting agent",
    b"fetched manifest",
    b"connecting to coderd",
)
LOG_KINDS = ("agent_log", "log")  # kinds of Source that are parsed as slog logs
# Files by which a zip is recognised as a `coder support bundle` (two of them suffice).
BUNDLE_MEMBERS = frozenset(
    {
        "agent/agent.json",
        "agent/manifest.json",
        "agent/logs.txt",
        "agent/startup_logs.txt",
        "workspace/agent.json",
        "workspace/workspace.json",
        "deployment/buildinfo.json",
        "cli_logs.txt",
    }
)
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
    # table | agent_log | log | script_log | manifest | unrecognised | empty; for support
    # bundles: bundle (the zip), info, skipped (not needed), error (refused or unreadable)
    kind: str
    table: str | None = None
    format: str | None = None  # csv | ndjson | parquet | slog
    compressed: bool = False
    note: str = ""
    archive: str | None = None  # the support bundle (its display) this file was read from
    stream: str | None = None  # log stream, when not the file's own (see ingest.logs.stream_of)


def discover(paths: list[Path]) -> list[Source]:
    """Walk the given files and directories and classify every file found, sorted by path."""
    for root in paths:
        if not root.exists():
            raise InputError(f"{root}: no such file or directory")
    # Paths are shown relative to the inputs' common parent, so they stay unique (and
    # rotated files of one host stay apart from another host's) however the inputs are given.
    base = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
    found: list[Path] = []
    for root in paths:
        if root.is_file():
            found.append(root)
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if name.startswith(".") or not path.is_file():
                    continue
                found.append(path)
    # Classifying reads every byte (its sha256): files are hashed side by side, hashlib works
    # outside the GIL.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        sources = list(
            pool.map(lambda p: classify(p, os.path.relpath(os.path.abspath(p), base)), found)
        )
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
    if magic[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _as_zip(src)
    if _is_tar(head):
        src.note = "tar archive: unpack it and pass the directory"
        return src
    if path.name == "manifest.json" and b'"collected_with": "forensics collect"' in head:
        src.kind, src.format = "manifest", "json"
        src.note = "written by forensics collect: export time, Coder migration, row counts"
        return src
    first = next((ln for ln in head.splitlines() if ln.strip()), b"")
    first_keys = _json_keys(first) if first.lstrip().startswith(b"{") else None
    is_json_log = first_keys is not None and first_keys >= SLOG_JSON_KEYS
    if (
        is_json_log
        or SLOG_LINE.match(first)
        or any(SLOG_LINE.match(ln) for ln in head.splitlines()[:50])
    ):
        return _as_log(src, head, json_sink=is_json_log)
    if SCRIPT_LOG.match(path.name):
        script = SCRIPT_LOG.match(path.name)
        src.kind, src.format = "script_log", "text"
        src.note = f"a workspace script's own output, {_count_lines(path, src.compressed)} lines "
        src.note += "(no timestamps: listed, not parsed)"
        if script and script.group(1):
            src.note += f"; script id {script.group(1)}"
        return src
    if first_keys is not None:
        return _as_table(src, "ndjson", first_keys)
    header = _csv_header(first)
    if header is not None:
        return _as_table(src, "csv", header)
    src.note = "neither a table export (CSV/NDJSON/Parquet) nor a cdr.dev/slog log"
    return src


def _as_log(src: Source, head: bytes, json_sink: bool) -> Source:
    src.format = "slog JSON" if json_sink else "slog"
    name = src.path.name
    is_agent = any(m in head for m in AGENT_MARKERS) or "coder-agent" in name
    src.kind = "agent_log" if is_agent else "log"
    if name.startswith("coder-agent-init"):
        src.note = "agent init log: the PID 1 process reaper that starts the agent"
    elif not is_agent:
        src.note = "slog log without agent messages in its first 64 KiB; parsed anyway"
    return src


def _as_zip(src: Source) -> Source:
    """A `coder support bundle` zip (read by ingest.bundle), or another zip (not read)."""
    try:
        with zipfile.ZipFile(src.path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        hint = " (named like a coder support bundle)" if "coder-support" in src.path.name else ""
        src.note = f"zip archive that cannot be read{hint}: {exc}; truncated or corrupt?"
        return src
    if support_bundle_prefix(names) is None:
        src.note = "zip archive, not a coder support bundle: unpack it and pass the directory"
        return src
    src.kind, src.format, src.note = "bundle", "zip", "coder support bundle"
    return src


def support_bundle_prefix(names: list[str]) -> str | None:
    """The folder a support bundle's files sit in inside a zip ("" at the top), or None when
    the names are not those of a `coder support bundle` (reference §4)."""
    found: dict[str, set[str]] = {}
    for name in names:
        top, _, rest = name.partition("/")
        if name in BUNDLE_MEMBERS:
            found.setdefault("", set()).add(name)
        elif rest in BUNDLE_MEMBERS:  # the bundle's files zipped again inside one folder
            found.setdefault(top + "/", set()).add(rest)
    for prefix, members in sorted(found.items()):
        if len(members) >= 2:
            return prefix
    return None


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


def _count_lines(path: Path, compressed: bool) -> int:
    lines, last = 0, b"\n"
    with path.open("rb") as f:
        inflate = zlib.decompressobj(wbits=47) if compressed else None
        for block in iter(lambda: f.read(1 << 20), b""):
            try:
                data = inflate.decompress(block) if inflate else block
            except zlib.error:
                break
            if data:
                lines += data.count(b"\n")
                last = data[-1:]
    return lines + (last != b"\n")


def _is_tar(head: bytes) -> bool:
    return len(head) > 262 and head[257:262] == b"ustar"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
