"""Coder support bundles (`coder support bundle` zips): read them safely, turn them into inputs.

`expand_bundles()` puts, after every support bundle among the discovered sources, the files
inside it in the forms the rest of the pipeline already reads (reference §4):

- the server's JSON (`agent/agent.json`, `workspace/workspace.json`, optionally
  `deployment/workspaces.json`) becomes CSV table files (workspace_agents, workspace_builds,
  provisioner_jobs, ...), loaded by the same loader as database exports, so their rows are
  counted and rejected the same way;
- `agent/logs.txt` (the running agent's coder-agent.log) is an agent log; `logs.txt` and
  `cli_logs.txt` (the support run's own logs) are plain slog logs;
- `agent/manifest.json` (the running process's in-memory manifest) becomes one `fetched
  manifest` line at the collection time, in agent/logs.txt's log stream: the model then knows
  which agent row the process served when the bundle was taken;
- `agent/startup_logs.txt` becomes workspace_agent_logs rows.

Reading is bounded and writes only under the directory it is given: member names are never
used as paths, members that would escape (`..`, absolute paths, symlinks) are refused, and
every member is decompressed as a stream with a cap on its size, on the bundle's total and on
its compression ratio, whatever its header declares.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import stat
import uuid
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from forensics.discover import LOG_KINDS, Source, classify, support_bundle_prefix

# Bounds on what one bundle may expand to. A real bundle is a few MiB: agent/logs.txt is at
# most the 10 MiB the agent's debug endpoint serves, the JSON files are small.
MAX_MEMBERS = 10_000
MAX_MEMBER_BYTES = 256 * 1024 * 1024
MAX_TOTAL_BYTES = 1024 * 1024 * 1024
# Deflate cannot exceed about 1030:1; text compresses 2-25:1 (a log repeating one error every
# second for a day: 22:1). Only members past RATIO_FLOOR are held to the ratio.
MAX_RATIO = 100
RATIO_FLOOR = 1024 * 1024
CHUNK = 1024 * 1024

AGENT_JSON = ("agent/agent.json", "workspace/agent.json")  # the latter before 2024
STARTUP_LOGS = ("agent/startup_logs.txt", "workspace/agent_startup_logs.txt")
WORKSPACE_JSON = "workspace/workspace.json"
WORKSPACES_JSON = "deployment/workspaces.json"
MANIFEST_JSON = "agent/manifest.json"
AGENT_LOG = "agent/logs.txt"
SUPPORT_LOGS = ("logs.txt", "cli_logs.txt")
BUILDINFO = "deployment/buildinfo.json"
READ = {
    *AGENT_JSON,
    *STARTUP_LOGS,
    WORKSPACE_JSON,
    WORKSPACES_JSON,
    MANIFEST_JSON,
    AGENT_LOG,
    *SUPPORT_LOGS,
    BUILDINFO,
}
# Why the other members are not read, by path prefix.
NOT_READ = (
    ("pprof/", "profiling data"),
    ("network/", "network diagnostics"),
    ("agent/listening_ports", "network diagnostics"),
    ("agent/peer_diagnostics", "network diagnostics"),
    ("agent/ping_result", "network diagnostics"),
    ("agent/", "agent debug page"),
    ("workspace/build_logs", "the latest build's provisioner log"),
    ("workspace/", "template and build parameters"),
    ("templates/", "template and build parameters"),
    ("deployment/", "deployment settings and health"),
)

SLOG_TS = re.compile(rb"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) \[")
STARTUP_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})[ \t]+\[([a-z]+)\]( *)\t?(.*)$")
COLLECTED_NAME = re.compile(r"coder-support-(\d{9,11})(?:\D|$)")
FOUND_AGENT = re.compile(rb"found workspace agent .*?agent_id=([0-9a-f-]{36})")


# A bad CRC, a cut-off stream, an encrypted member, an unknown compression method.
UNREADABLE = (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError)


class Refused(Exception):
    """A member that is not read, and why."""


@dataclass
class Member:
    """One file inside the bundle: where its bytes went and what became of it."""

    name: str  # path inside the bundle, top-level folder (if any) removed
    display: str  # bundle.zip!path as the user sees it
    size: int  # uncompressed size the zip declares
    sha256: str = ""
    path: Path | None = None  # its bytes on disk, for the members that are read
    kind: str = "skipped"
    note: str = ""

    def fail(self, note: str, kind: str = "error") -> None:
        self.kind, self.note = kind, note


@dataclass
class _Budget:
    left: int = field(default_factory=lambda: MAX_TOTAL_BYTES)


@dataclass
class _Bundle:
    """What one bundle has given so far."""

    src: Source
    dest: Path
    members: dict[str, Member] = field(default_factory=dict)
    others: list[Member] = field(default_factory=list)  # refused, duplicate and unused members
    sources: dict[str, list[Source]] = field(default_factory=dict)  # by member name
    seen: dict[str, set[tuple[Any, ...]]] = field(default_factory=dict)  # keys written, by table
    agent: dict[str, Any] | None = None
    workspace: dict[str, Any] | None = None
    stamps: list[datetime] = field(default_factory=list)  # members' modification times
    collected_at: datetime | None = None
    collected_how: str = ""

    def read(self, *names: str) -> Member | None:
        """The first of `names` that the bundle has and that was read."""
        for name in names:
            m = self.members.get(name)
            if m is not None and m.path is not None:
                return m
        return None


def expand_bundles(sources: list[Source], work: Path) -> list[Source]:
    """`sources` with the files of every support bundle inserted after the bundle itself.

    Everything read or converted is written under `work`, which the caller removes.
    """
    out: list[Source] = []
    for n, src in enumerate(sources):
        out.append(src)
        if src.kind == "bundle":
            out += read_bundle(src, work / f"bundle-{n}")
    return out


def read_bundle(src: Source, dest: Path) -> list[Source]:
    """The files of one support bundle as sources; `src.note` is set to the bundle's summary."""
    dest.mkdir(parents=True)
    bundle = _Bundle(src, dest)
    try:
        with zipfile.ZipFile(src.path) as zf:
            _unpack(bundle, zf)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        src.kind, src.note = "error", f"support bundle that cannot be read: {exc}"
        return []
    _find_collection_time(bundle)
    _convert(bundle)
    _summarise(bundle)
    out: list[Source] = []
    for m in sorted([*bundle.members.values(), *bundle.others], key=lambda m: m.display):
        made = bundle.sources.get(m.name) if bundle.members.get(m.name) is m else None
        out += made or [_plain(bundle, m)]
    return out


# --------------------------------------------------------------------------------------
# Reading the archive


def _unpack(bundle: _Bundle, zf: zipfile.ZipFile) -> None:
    """Read the members we use onto disk and hash the rest, within the bounds."""
    infos = [i for i in zf.infolist() if not i.is_dir()]
    if len(infos) > MAX_MEMBERS:
        raise zipfile.BadZipFile(f"{len(infos)} members, more than the {MAX_MEMBERS} allowed")
    prefix = support_bundle_prefix([i.filename for i in infos]) or ""
    budget = _Budget()
    for k, info in enumerate(infos):
        raw = info.filename
        name = raw[len(prefix) :] if raw.startswith(prefix) else raw
        m = Member(name=name, display=f"{bundle.src.display}!{raw}", size=info.file_size)
        if info.date_time[0] > 1980:  # Go's zip writer leaves it unset: 1980-00-00
            with contextlib.suppress(ValueError):
                bundle.stamps.append(datetime(*info.date_time, tzinfo=UTC))
        problem = _unsafe(info)
        if problem:
            m.fail(f"refused: {problem}; not read")
            bundle.others.append(m)
            continue
        if name in bundle.members:
            m.fail("a second member with the same name; ignored (the first one is read)")
            bundle.others.append(m)
            continue
        keep = name in READ
        target = bundle.dest / f"{k:04d}-{_safe_name(name)}" if keep else None
        try:
            m.sha256 = _read_member(zf, info, budget, target)
        except Refused as exc:
            m.fail(f"refused: {exc}; not read")
        except UNREADABLE as exc:
            m.fail(f"cannot be read: {exc}")
        if m.kind == "error":
            if target is not None:
                target.unlink(missing_ok=True)
            bundle.others.append(m)
            continue
        if keep:
            m.path = target
            bundle.members[name] = m
        else:
            m.note = _why_not_read(name, zf, info)
            bundle.others.append(m)


def _unsafe(info: zipfile.ZipInfo) -> str:
    """Why a member must not be read: a name that would escape, or a symbolic link."""
    name = info.filename
    if "\x00" in name:
        return "its name holds a NUL byte"
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        return "an absolute path"
    if ".." in norm.split("/"):
        return "a path that climbs out of the archive (..)"
    if info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link"
    return ""


def _safe_name(name: str) -> str:
    """A file name for a member's copy: its base name, reduced to harmless characters."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9._-]", "_", base)[-80:] or "member"


def _read_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget, target: Path | None
) -> str:
    """Decompress one member as a stream (to `target` if given) within the bounds; its sha256.

    The declared sizes are checked first, then the bytes actually produced: a header may lie.
    """
    declared, packed = info.file_size, max(info.compress_size, 1)
    if declared > MAX_MEMBER_BYTES:
        raise Refused(
            f"declares {declared:,} bytes uncompressed, over the {_mib(MAX_MEMBER_BYTES)}"
        )
    if declared > budget.left:
        raise Refused(f"declares {declared:,} bytes, past the bundle's {_mib(MAX_TOTAL_BYTES)}")
    if declared > RATIO_FLOOR and declared > MAX_RATIO * packed:
        raise Refused(f"declares a compression ratio of {declared // packed}:1 (a zip bomb?)")
    digest, produced = hashlib.sha256(), 0
    out = target.open("wb") if target is not None else None
    try:
        with zf.open(info) as f:
            while chunk := f.read(CHUNK):
                produced += len(chunk)
                budget.left -= len(chunk)
                if produced > MAX_MEMBER_BYTES:
                    raise Refused(f"expands past the {_mib(MAX_MEMBER_BYTES)}")
                if budget.left < 0:
                    raise Refused(f"the bundle expands past its {_mib(MAX_TOTAL_BYTES)}")
                if produced > RATIO_FLOOR and produced > MAX_RATIO * packed:
                    raise Refused(
                        f"expands more than {MAX_RATIO}:1 ({packed:,} bytes compressed; "
                        "a zip bomb?)"
                    )
                digest.update(chunk)
                if out is not None:
                    out.write(chunk)
    finally:
        if out is not None:
            out.close()
    return digest.hexdigest()


def _mib(n: int) -> str:
    return f"{n // (1024 * 1024):,} MiB limit"


def _why_not_read(name: str, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> str:
    if name.lower().endswith((".zip", ".jar")) or _is_zip(zf, info):
        return "an archive inside the bundle (template source): not expanded"
    for prefix, what in NOT_READ:
        if name.startswith(prefix):
            return f"{what}: not read"
    return "not read: nothing in it that the analysis uses"


def _is_zip(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bool:
    try:
        with zf.open(info) as f:
            return f.read(4) == b"PK\x03\x04"
    except UNREADABLE:
        return False


# --------------------------------------------------------------------------------------
# The collection time


def _find_collection_time(bundle: _Bundle) -> None:
    """When the bundle was taken: from the file name `coder-support-<unix seconds>.zip`, else
    from the members' times (a re-packed bundle; `coder support bundle` leaves them unset),
    else from the last line of the support run's own logs, else of agent/logs.txt."""
    m = COLLECTED_NAME.search(bundle.src.path.name)
    if m:
        bundle.collected_at = datetime.fromtimestamp(int(m.group(1)), UTC)
        bundle.collected_how = "from the file name"
        return
    if bundle.stamps:
        bundle.collected_at = max(bundle.stamps)
        bundle.collected_how = "from the zip members' times, taken as UTC"
        return
    for name in ("cli_logs.txt", "logs.txt", AGENT_LOG):
        member = bundle.read(name)
        last = _last_slog_time(member.path) if member and member.path else None
        if last is not None:
            bundle.collected_at = last
            bundle.collected_how = f"from the last line of {name}"
            return


def _last_slog_time(path: Path) -> datetime | None:
    last = None
    with path.open("rb") as f:
        for line in f:
            m = SLOG_TS.match(line)
            if m:
                last = m.group(1)
    if last is None:
        return None
    return datetime.strptime(last.decode(), "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)


# --------------------------------------------------------------------------------------
# Converting the members


def _convert(bundle: _Bundle) -> None:
    agent_m = bundle.read(*AGENT_JSON)
    if agent_m is not None:
        agent = _load_json(
            agent_m, dict, "codersdk.WorkspaceAgent (the server's view of the agent)"
        )
        if agent is not None and not _is_uuid(agent.get("id")):
            agent_m.fail("not a codersdk.WorkspaceAgent: no agent id")
            agent = None
        if agent is not None:
            bundle.agent = agent
            _write_tables(bundle, agent_m, _agent_tables(agent), _agent_note(agent))
    ws_m = bundle.read(WORKSPACE_JSON)
    if ws_m is not None:
        ws = _load_json(ws_m, dict, "codersdk.Workspace with its latest_build")
        if ws is not None and not isinstance(ws.get("latest_build"), dict):
            ws_m.fail("not a codersdk.Workspace: no latest_build object")
            ws = None
        if ws is not None:
            bundle.workspace = ws
            _write_tables(bundle, ws_m, _workspace_tables(ws), _workspace_note(ws))
    all_m = bundle.read(WORKSPACES_JSON)
    if all_m is not None:
        listing = _load_json(all_m, dict, "codersdk.WorkspacesResponse ({workspaces: [...]})")
        if listing is not None:
            tables: dict[str, list[dict[str, Any]]] = {}
            items = _list(listing.get("workspaces"))
            good = [
                w for w in items if isinstance(w, dict) and isinstance(w.get("latest_build"), dict)
            ]
            for w in good:
                for table, rows in _workspace_tables(w).items():
                    tables.setdefault(table, []).extend(rows)
            about = f"the deployment's workspace list ({len(items)} of "
            about += f"{listing.get('count', '?')} workspaces, latest builds only)"
            if len(good) < len(items):
                about += f"; {len(items) - len(good)} entries without a latest_build skipped"
            _write_tables(bundle, all_m, tables, about)
    _convert_startup_logs(bundle)
    _convert_manifest(bundle)
    _convert_logs(bundle)
    info = bundle.read(BUILDINFO)
    if info is not None:
        build = _load_json(info, dict, "codersdk.BuildInfoResponse")
        if build is not None:
            info.kind = "info"
            info.note = f"Coder server {build.get('version') or 'version unknown'}"


def _load_json(m: Member, want: type, expected: str) -> Any:
    """The member's JSON, or None with the member marked as an error (or empty)."""
    assert m.path is not None
    try:
        value = json.loads(m.path.read_bytes())
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        m.fail(f"not valid JSON ({exc}); expected {expected}")
        return None
    if value is None:
        m.fail(f"JSON null: the support run could not fetch {expected}", kind="empty")
        return None
    if not isinstance(value, want):
        m.fail(f"JSON {type(value).__name__} where {expected} was expected")
        return None
    return value


def _is_uuid(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    try:
        uuid.UUID(v)
    except ValueError:
        return False
    return True


def _same(names: str) -> dict[str, str]:
    """Columns whose JSON key has the same name."""
    return {n: n for n in names.split()}


# Canonical column -> JSON key (codersdk names). Keys with `omitempty` in Go are absent when
# empty; those columns are written anyway (NULL or '') so absence is not taken for an older
# Coder that lacks the column.
AGENT_KEYS = _same(
    "id parent_id created_at updated_at name first_connected_at last_connected_at "
    "disconnected_at started_at ready_at resource_id architecture operating_system directory "
    "expanded_directory version api_version connection_timeout_seconds troubleshooting_url "
    "lifecycle_state logs_length logs_overflowed subsystems display_apps display_order "
    "api_key_scope"
) | {"auth_instance_id": "instance_id"}
AGENT_LEGACY = {
    "logs_length": "startup_logs_length",
    "logs_overflowed": "startup_logs_overflowed",
    "subsystems": "subsystem",
}
AGENT_OMITEMPTY = {
    "first_connected_at": None,
    "last_connected_at": None,
    "disconnected_at": None,
    "started_at": None,
    "ready_at": None,
    "auth_instance_id": None,
    "directory": "",
    "expanded_directory": "",
}


WORKSPACE_KEYS = _same(
    "id created_at updated_at owner_id organization_id template_id name autostart_schedule "
    "last_used_at dormant_at deleting_at automatic_updates"
)
BUILD_KEYS = _same(
    "id created_at updated_at workspace_id template_version_id build_number transition "
    "initiator_id reason deadline max_deadline daily_cost template_version_preset_id"
)
JOB_KEYS = _same(
    "id created_at started_at completed_at canceled_at error error_code organization_id "
    "initiator_id worker_id file_id tags type"
) | {"job_status": "status"}
JOB_OMITEMPTY = dict.fromkeys(
    ("started_at", "completed_at", "canceled_at", "error", "error_code", "worker_id")
)
RESOURCE_KEYS = _same("id created_at job_id type name hide icon daily_cost") | {
    "transition": "workspace_transition"
}
SCRIPT_KEYS = _same(
    "id log_source_id log_path cron start_blocks_login run_on_start run_on_stop display_name"
)


def _pick(
    obj: dict[str, Any], keys: dict[str, str], omitempty: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The row of `obj`'s values by column; `omitempty` columns get their Go zero value."""
    row: dict[str, Any] = {}
    for col, key in keys.items():
        if key in obj:
            row[col] = obj[key]
        elif omitempty is not None and col in omitempty:
            row[col] = omitempty[col]
    return row


def _list(v: Any) -> list[Any]:
    """A JSON array, or nothing when the bundle holds something else there."""
    return v if isinstance(v, list) else []


def _agent_tables(agent: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """A codersdk.WorkspaceAgent as a workspace_agents row and its workspace_agent_scripts."""
    row = _pick(agent, AGENT_KEYS, AGENT_OMITEMPTY)
    for col, legacy in AGENT_LEGACY.items():
        if col not in row and legacy in agent:
            value = agent[legacy]
            row[col] = ([value] if value else []) if col == "subsystems" else value
    scripts = []
    for s in _list(agent.get("scripts")):
        s = s if isinstance(s, dict) else {}  # not an object: a row the loader rejects
        script = _pick(s, SCRIPT_KEYS)
        script["workspace_agent_id"] = agent.get("id")
        if isinstance(s.get("timeout"), int):  # a Go time.Duration: nanoseconds
            script["timeout_seconds"] = s["timeout"] // 1_000_000_000
        elif "timeout_seconds" in s:
            script["timeout_seconds"] = s["timeout_seconds"]
        scripts.append(script)
    return {"workspace_agents": [row], "workspace_agent_scripts": scripts}


def _workspace_tables(ws: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """A codersdk.Workspace as rows: the workspace, its owner and template, its latest build
    with the build's job, resources and agents."""
    build = ws["latest_build"]
    job = build.get("job") if isinstance(build.get("job"), dict) else {}
    workspace = _pick(ws, WORKSPACE_KEYS, {"autostart_schedule": None})
    ttl_ms = ws.get("ttl_ms")
    workspace["ttl"] = ttl_ms * 1_000_000 if isinstance(ttl_ms, int) else None  # ns in the DB
    users = [{"id": ws.get("owner_id"), "username": ws.get("owner_name")}]
    if build.get("initiator_id") and build.get("initiator_name"):
        users.append({"id": build["initiator_id"], "username": build["initiator_name"]})
    template = {
        "id": ws.get("template_id"),
        "name": ws.get("template_name"),
        "display_name": ws.get("template_display_name"),
        "active_version_id": ws.get("template_active_version_id"),
        "organization_id": ws.get("organization_id"),
    }
    build_row = _pick(build, BUILD_KEYS)
    build_row["job_id"] = job.get("id")
    tables: dict[str, list[dict[str, Any]]] = {
        "workspaces": [workspace],
        "users": [u for u in users if u["id"] and u["username"]],
        "templates": [template] if template["id"] and template["name"] else [],
        "workspace_builds": [build_row],
        "provisioner_jobs": [_pick(job, JOB_KEYS, JOB_OMITEMPTY)] if job else [],
        "workspace_resources": [],
        "workspace_agents": [],
        "workspace_agent_scripts": [],
    }
    for res in _list(build.get("resources")):
        res = res if isinstance(res, dict) else {}  # not an object: a row the loader rejects
        tables["workspace_resources"].append(_pick(res, RESOURCE_KEYS))
        for agent in _list(res.get("agents")):
            for table, rows in _agent_tables(agent if isinstance(agent, dict) else {}).items():
                tables[table] += rows
    return tables


KEYS = {"workspace_agent_scripts": ("workspace_agent_id", "id")}


def _write_tables(
    bundle: _Bundle, m: Member, tables: dict[str, list[dict[str, Any]]], about: str
) -> None:
    """Write each table's rows to a CSV file and classify it as discover would.

    A row whose key an earlier member of this bundle already gave is left out: agent.json
    (read first) wins over the same agent in workspace.json, which wins over workspaces.json.
    """
    made: list[Source] = []
    for table in sorted(tables):
        key_cols = KEYS.get(table, ("id",))
        rows, seen = [], bundle.seen.setdefault(table, set())
        for row in tables[table]:
            key = tuple(row.get(c) for c in key_cols)
            if None not in key and key in seen:
                continue
            seen.add(key)
            rows.append(row or {"id": None})  # an empty object: a row the loader rejects
        if not rows:
            continue
        path = bundle.dest / f"{_safe_name(m.name)}.{len(made)}.{table}.csv"
        path.write_text(_csv(rows), encoding="utf-8")
        note = f"{about}; {len(rows)} row(s) converted from JSON to CSV"
        made.append(_derived(bundle, m, path, note, table))
    if made:
        bundle.sources[m.name] = made
    elif m.kind != "error":
        m.note = f"{about}; nothing new in it (every row came from an earlier file)"


def _csv(rows: list[dict[str, Any]]) -> str:
    """CSV as psql writes it: NULL is an empty field, every value (even '') is quoted."""
    header: dict[str, None] = {}
    for row in rows:
        header.update(dict.fromkeys(row))
    lines = [",".join(header)]
    for row in rows:
        lines.append(",".join(_csv_value(row.get(c)) for c in header))
    return "\n".join(lines) + "\n"


def _csv_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        text = "true" if v else "false"
    elif isinstance(v, list | dict):
        text = json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    else:
        text = str(v)
    return '"' + text.replace('"', '""') + '"'


def _derived(bundle: _Bundle, m: Member, path: Path, note: str, table: str | None = None) -> Source:
    """A source for a file written from member `m`, shown as the member (its size and hash).

    A table file is the `table` it was written for even when classify cannot tell (rows
    lacking required columns): the loader then rejects those rows and says why.
    """
    src = classify(path, m.display)
    src.size, src.sha256, src.note = m.size, m.sha256, note
    src.archive = bundle.src.display
    if table is not None:
        src.kind, src.table, src.format = "table", table, "csv"
    return src


def _plain(bundle: _Bundle, m: Member) -> Source:
    """A source for a member that was not turned into anything (with the reason)."""
    if not m.note and m.name in READ:
        m.note = "not used (the bundle has another copy of the same information)"
    return Source(
        path=m.path or bundle.dest,
        display=m.display,
        size=m.size,
        sha256=m.sha256,
        kind=m.kind,
        note=m.note,
        archive=bundle.src.display,
    )


def _agent_note(agent: dict[str, Any]) -> str:
    return (
        f"the server's view of agent {agent.get('name', '?')} ({agent.get('id')}): "
        f"status {agent.get('status', '?')}, lifecycle {agent.get('lifecycle_state', '?')}"
    )


def _workspace_note(ws: dict[str, Any], short: bool = False) -> str:
    b = ws["latest_build"]
    note = (
        f"workspace {ws.get('name', '?')}, latest build #{b.get('build_number', '?')} "
        f"({b.get('transition', '?')}, {b.get('status', '?')})"
    )
    return note if short else note + "; earlier builds are not in a bundle"


def _convert_startup_logs(bundle: _Bundle) -> None:
    """agent/startup_logs.txt (`created_at [level] output`, tab-aligned, UTC) as
    workspace_agent_logs rows of the bundle's agent. The lines carry no database id: they are
    numbered -1, -2, ... so they never collide with exported rows."""
    m = bundle.read(*STARTUP_LOGS)
    if m is None or m.path is None:
        return
    agent_id = (bundle.agent or {}).get("id") or _cli_agent_id(bundle)
    if not agent_id:
        m.fail("startup log lines, but neither agent.json nor cli_logs.txt says whose")
        return
    lines = m.path.read_bytes().decode("utf-8", errors="replace").splitlines()
    width = max((len(g.group(2)) for g in map(STARTUP_LINE.match, lines) if g), default=0) + 3
    rows = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        g = STARTUP_LINE.match(line)
        if g is None:
            # Kept as a row whose time cannot be read: the loader rejects and counts it.
            rows.append({"agent_id": agent_id, "created_at": line[:60], "id": -n})
            continue
        ts, level, pad, output = g.groups()
        # tabwriter pads the level column to its widest cell plus one space; more is output.
        extra = len(pad) - (width - len(level) - 2)
        output = " " * max(extra, 0) + output
        row = {"agent_id": agent_id, "created_at": ts + "+00", "output": output}
        rows.append(row | {"level": level, "id": -n})
    if not rows:
        m.fail(f"no startup log lines for agent {agent_id}", kind="empty")
        return
    path = bundle.dest / f"{_safe_name(m.name)}.workspace_agent_logs.csv"
    path.write_text(_csv(rows), encoding="utf-8")
    note = (
        f"startup script output of agent {agent_id} (times taken as UTC); "
        f"{len(rows)} line(s), numbered -1, -2, ... as they have no database id"
    )
    bundle.sources[m.name] = [_derived(bundle, m, path, note, "workspace_agent_logs")]


def _cli_agent_id(bundle: _Bundle) -> str | None:
    m = bundle.read("cli_logs.txt")
    if m is None or m.path is None:
        return None
    found = FOUND_AGENT.search(m.path.read_bytes())
    return found.group(1).decode() if found else None


def _convert_manifest(bundle: _Bundle) -> None:
    """The running process's manifest as one `fetched manifest` line at the collection time,
    in agent/logs.txt's stream. Only the ids are written: the manifest also holds the
    workspace's environment variables, which are never read."""
    m = bundle.read(MANIFEST_JSON)
    if m is None:
        return
    manifest = _load_json(m, dict, "agentsdk.Manifest (the agent process's manifest)")
    if manifest is None:
        return
    agent_id, workspace_id = manifest.get("agent_id"), manifest.get("workspace_id")
    if not _is_uuid(agent_id):
        m.fail("not an agentsdk.Manifest: no agent_id")
        return
    if bundle.collected_at is None:
        m.fail(
            f"agent id {agent_id}, but the collection time is unknown (no coder-support-<time> "
            "file name, member times or log lines), so it cannot be placed in the timeline",
            kind="skipped",
        )
        return
    ids = {"agent_id": str(uuid.UUID(agent_id))}  # as the log model reads them: 8-4-4-4-12
    if _is_uuid(workspace_id):
        ids["workspace_id"] = str(uuid.UUID(workspace_id))
    t = bundle.collected_at
    line = (
        f"{t:%Y-%m-%d %H:%M:%S}.{t.microsecond // 1000:03d} [info]  fetched manifest  "
        f"manifest={json.dumps(ids, separators=(',', ':'))}\n"
    )
    path = bundle.dest / "manifest.fetched-manifest.log"
    path.write_text(line, encoding="utf-8")
    src = _derived(
        bundle,
        m,
        path,
        f"the running agent process's manifest: agent id {agent_id}; read as one 'fetched "
        f"manifest' line at the collection time ({t:%Y-%m-%d %H:%M:%S} UTC, "
        f"{bundle.collected_how}) in the stream of {AGENT_LOG}; its environment variables "
        "were not read",
    )
    src.stream = _stream(bundle, AGENT_LOG)
    bundle.sources[m.name] = [src]


LOG_NOTES = {
    AGENT_LOG: "the running agent's coder-agent.log as its debug endpoint served it (the "
    "current file only, not rotated backups; newer Coder sends only its last 24 hours)",
    "logs.txt": "the support run's own log",
    "cli_logs.txt": "the coder CLI's log of the support run",
}


def _convert_logs(bundle: _Bundle) -> None:
    for name, note in LOG_NOTES.items():
        m = bundle.read(name)
        if m is None or m.path is None:
            continue
        src = _derived(bundle, m, m.path, note)
        src.stream = _stream(bundle, name)
        if src.kind in LOG_KINDS:
            src.kind = "agent_log" if name == AGENT_LOG else "log"
        elif src.kind == "empty":
            src.note = f"{note}: empty"
        else:
            src.kind, src.note = "error", f"{note}, but not a cdr.dev/slog log: not read"
        bundle.sources[name] = [src]


def _stream(bundle: _Bundle, name: str) -> str:
    """The log stream of a bundle's log: `<bundle>.zip/agent/logs.txt`, so the bundle's name
    is the host the log is said to come from (ingest.logs.host_of skips `agent`)."""
    return f"{bundle.src.display}/{name}"


def _summarise(bundle: _Bundle) -> None:
    """The bundle's own line in the coverage: when, what, how much was read."""
    src = bundle.src
    parts = ["coder support bundle"]
    if bundle.collected_at:
        parts.append(
            f"collected {bundle.collected_at:%Y-%m-%d %H:%M:%S} UTC ({bundle.collected_how})"
        )
    else:
        parts.append("collection time unknown")
    info = bundle.members.get(BUILDINFO)
    if info is not None and info.kind == "info":
        parts.append(info.note)
    if bundle.workspace:
        parts.append(_workspace_note(bundle.workspace, short=True))
    members = [*bundle.members.values(), *bundle.others]
    used = sum(1 for m in bundle.members.values() if m.kind != "error" and m.name in READ)
    bad = sum(1 for m in members if m.kind == "error")
    counts = f"{len(members)} files inside, {used} read" + (
        f", {bad} refused or bad" if bad else ""
    )
    parts.append(counts)
    src.note = "; ".join(parts)
