"""Deterministic synthetic Coder deployments: database rows and agent log files.

`ScenarioBuilder` records users, templates, workspaces, builds, agents and agent log files
(every id comes from one seeded `random.Random`), `build_scenario()` turns them into rows of
the nine tables an analyzer reads (columns exactly as in coderd/database/dump.sql) plus the
agent logs, and `write_dump()` writes them the way real exports look:

* CSV as ``\\copy (SELECT * FROM t) TO 't.csv' WITH (FORMAT csv, HEADER)`` writes it;
* NDJSON as ``\\copy (SELECT row_to_json(t) FROM t) TO 't.ndjson'`` writes it (COPY text
  escaping applied on top of the JSON);
* Parquet through DuckDB with real column types;
* agent logs in cdr.dev/slog's human format, the way the agent writes ``coder-agent.log``
  (lumberjack-rotated backups included).

`sample_scenario()` is the deployment committed under ``sample_data/``. Nothing here prints.
"""

from __future__ import annotations

import gzip as _gzip
import json
import random
import unicodedata
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

__all__ = [
    "GO_ZERO",
    "PREBUILDS_USER_ID",
    "SCHEMA",
    "TABLES",
    "AgentLogFile",
    "Scenario",
    "ScenarioBuilder",
    "export_commands",
    "go_quote",
    "prototext_bytes",
    "sample_scenario",
    "slog_quote",
    "write_dump",
]

GO_ZERO = datetime(1, 1, 1, tzinfo=UTC)  # Go's zero time.Time, as PostgreSQL stores it
GO_ZERO_NAIVE = datetime(1, 1, 1)  # the same in a `timestamp without time zone` column
PREBUILDS_USER_ID = "c42fdf75-3097-471c-8c33-fb52454d81c0"
ACCESS_URL = "https://coder.example.com"
AUTO: Any = object()  # "derive this value" marker for keyword arguments where None means NULL

# --------------------------------------------------------------------------------------
# Schema: the nine tables, columns in dump.sql order. Types: uuid, tstz (timestamp with
# time zone), ts (timestamp without time zone), text (also enums and varchar), bool,
# int2/int4/int8, jsonb, bytea, text[] (also enum arrays).

_SCHEMA_SRC = {
    "users": """id uuid, email text, username text, hashed_password bytea, created_at tstz,
        updated_at tstz, status text, rbac_roles text[], login_type text, avatar_url text,
        deleted bool, last_seen_at ts, quiet_hours_schedule text, name text,
        github_com_user_id int8, hashed_one_time_passcode bytea,
        one_time_passcode_expires_at tstz, is_system bool, is_service_account bool,
        chat_spend_limit_micros int8""",
    "templates": """id uuid, created_at tstz, updated_at tstz, organization_id uuid, deleted bool,
        name text, provisioner text, active_version_id uuid, description text, default_ttl int8,
        created_by uuid, icon text, user_acl jsonb, group_acl jsonb, display_name text,
        allow_user_cancel_workspace_jobs bool, allow_user_autostart bool,
        allow_user_autostop bool, failure_ttl int8, time_til_dormant int8,
        time_til_dormant_autodelete int8, autostop_requirement_days_of_week int2,
        autostop_requirement_weeks int8, autostart_block_days_of_week int2,
        require_active_version bool, deprecated text, activity_bump int8,
        max_port_sharing_level text, use_classic_parameter_flow bool, cors_behavior text,
        disable_module_cache bool""",
    "template_versions": """id uuid, template_id uuid, organization_id uuid, created_at tstz,
        updated_at tstz, name text, readme text, job_id uuid, created_by uuid,
        external_auth_providers jsonb, message text, archived bool, source_example_id text,
        has_ai_task bool, has_external_agent bool""",
    "provisioner_jobs": """id uuid, created_at tstz, updated_at tstz, started_at tstz,
        canceled_at tstz, completed_at tstz, error text, organization_id uuid,
        initiator_id uuid, provisioner text, storage_method text, type text, input jsonb,
        worker_id uuid, file_id uuid, tags jsonb, error_code text, trace_metadata jsonb,
        job_status text, logs_length int4, logs_overflowed bool""",
    "workspaces": """id uuid, created_at tstz, updated_at tstz, owner_id uuid,
        organization_id uuid, template_id uuid, deleted bool, name text,
        autostart_schedule text, ttl int8, last_used_at tstz, dormant_at tstz,
        deleting_at tstz, automatic_updates text, favorite bool, next_start_at tstz,
        group_acl jsonb, user_acl jsonb""",
    "workspace_builds": """id uuid, created_at tstz, updated_at tstz, workspace_id uuid,
        template_version_id uuid, build_number int4, transition text, initiator_id uuid,
        provisioner_state bytea, job_id uuid, deadline tstz, reason text, daily_cost int4,
        max_deadline tstz, template_version_preset_id uuid, has_ai_task bool,
        has_external_agent bool""",
    "workspace_resources": """id uuid, created_at tstz, job_id uuid, transition text, type text,
        name text, hide bool, icon text, instance_type text, daily_cost int4,
        module_path text""",
    "workspace_agents": """id uuid, created_at tstz, updated_at tstz, name text,
        first_connected_at tstz, last_connected_at tstz, disconnected_at tstz,
        resource_id uuid, auth_token uuid, auth_instance_id text, architecture text,
        environment_variables jsonb, operating_system text, instance_metadata jsonb,
        resource_metadata jsonb, directory text, version text,
        last_connected_replica_id uuid, connection_timeout_seconds int4,
        troubleshooting_url text, motd_file text, lifecycle_state text,
        expanded_directory text, logs_length int4, logs_overflowed bool, started_at tstz,
        ready_at tstz, subsystems text[], display_apps text[], api_version text,
        display_order int4, parent_id uuid, api_key_scope text, deleted bool""",
    "workspace_agent_logs": """agent_id uuid, created_at tstz, output text, id int8, level text,
        log_source_id uuid""",
}

SCHEMA: dict[str, tuple[tuple[str, str], ...]] = {
    table: tuple(tuple(col.split()) for col in src.replace("\n", " ").split(","))  # type: ignore[misc]
    for table, src in _SCHEMA_SRC.items()
}
TABLES: tuple[str, ...] = tuple(SCHEMA)

# --------------------------------------------------------------------------------------
# Go / slog / protobuf text encoders


def _go_isprint(ch: str) -> bool:
    """strconv.IsPrint: letters, marks, numbers, punctuation, symbols and ASCII space."""
    return ch == " " or unicodedata.category(ch)[0] in "LMNPS"


_GO_SPACE = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | frozenset(
    chr(c) for c in range(0x2000, 0x200B)
)  # unicode.IsSpace
_GO_CTRL = {"\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n", "\r": r"\r", "\t": r"\t"}
_GO_CTRL["\v"] = r"\v"


def go_quote(s: str) -> str:
    """Go's strconv.Quote."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif _go_isprint(ch):
            out.append(ch)
        elif ch in _GO_CTRL:
            out.append(_GO_CTRL[ch])
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


def slog_quote(s: str) -> str:
    """How cdr.dev/slog's human sink writes a string value: quoted only when it must be."""
    if s == "":
        return '""'
    quoted = go_quote(s)
    if not any(ch in _GO_SPACE for ch in s) and quoted[1:-1] == s:
        return s
    return quoted


def go_json(value: Any) -> str:
    """Go's json.Marshal: compact, non-ASCII kept, <, >, & and U+2028/9 escaped."""
    s = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for a, b in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        s = s.replace(a, b)
    return s.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _decode_rune(data: bytes, i: int) -> tuple[str | None, int]:
    """utf8.DecodeRune: (rune, width); (None, 1) for a byte that is not valid UTF-8."""
    b = data[i]
    if b < 0x80:
        return chr(b), 1
    n = 2 if 0xC2 <= b <= 0xDF else 3 if 0xE0 <= b <= 0xEF else 4 if 0xF0 <= b <= 0xF4 else 0
    if n and i + n <= len(data):
        try:
            ch = data[i : i + n].decode("utf-8")
        except UnicodeDecodeError:
            return None, 1
        if len(ch) == 1:
            return ch, n
    return None, 1


_PT_ESC = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def prototext_bytes(data: bytes) -> str:
    """A string/bytes value as protobuf-go's text encoder writes it (quotes included)."""
    out, i = ['"'], 0
    while i < len(data):
        ch, n = _decode_rune(data, i)
        if ch is None:
            out.append(f"\\x{data[i]:02x}")
        elif ch in _PT_ESC:
            out.append(_PT_ESC[ch])
        elif ch < " " or ch == "\x7f":
            out.append(f"\\x{ord(ch):02x}")
        elif 0x80 <= ord(ch) <= 0x9F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
        i += n
    out.append('"')
    return "".join(out)


class _Enum(str):
    """A protobuf enum value (written bare)."""


class _Msg(list):
    """A protobuf message: a list of (field name, value); always written, even empty."""


def prototext(fields: list[tuple[str, Any]], sep: str = " ") -> str:
    """Single-line prototext of a message, default-valued scalars left out.

    `sep` is " " or "  ": protobuf-go adds the extra space (detrand) depending on a hash of
    the running binary, so one agent build always uses one of the two.
    """
    parts = []
    for name, v in fields:
        if isinstance(v, _Msg):
            parts.append(f"{name}:{{{prototext(v, sep)}}}")
        elif v is None or v is False or (not isinstance(v, bool) and v in ("", b"", 0)):
            continue
        elif v is True:
            parts.append(f"{name}:true")
        elif isinstance(v, _Enum):
            parts.append(f"{name}:{v}")
        elif isinstance(v, bytes):
            parts.append(f"{name}:{prototext_bytes(v)}")
        elif isinstance(v, str):
            parts.append(f"{name}:{prototext_bytes(v.encode())}")
        else:
            parts.append(f"{name}:{v}")
    return sep.join(parts)


def go_time(dt: datetime) -> str:
    """time.Time as encoding/json writes it (RFC 3339, trailing zeros trimmed), in UTC."""
    dt = dt.astimezone(UTC)
    s = f"{dt.year:04d}-{dt:%m-%dT%H:%M:%S}"
    if dt.microsecond:
        s += "." + f"{dt.microsecond:06d}".rstrip("0")
    return s + "Z"


class _Raw(str):
    """A field value written as-is (already formatted)."""


_LEVELS = {"debug": "debu", "info": "info", "warn": "warn", "error": "erro", "critical": "crit"}
_LEVELS.update({v: v for v in list(_LEVELS.values())})


def slog_line(
    at: datetime, level: str, msg: str, fields: list[tuple[str, Any]] = (), logger: str = ""
) -> str:
    """One entry as cdr.dev/slog's human sink writes it to a file (may span several lines).

    Values: str -> quoted when needed; bool/int plain; dict/list -> Go JSON (structs, maps);
    _Raw -> as is. A string containing a newline (an error) goes to the trailing block.
    """
    at = at.astimezone(UTC)
    head = f"{at:%Y-%m-%d %H:%M:%S}.{at.microsecond // 1000:03d} [{_LEVELS[level]}]  "
    if logger:
        head += ".".join(slog_quote(n.replace(" ", "_")) for n in logger.split(".")) + ": "
    ml_key = ml_val = None
    msg = msg.strip()
    if "\n" in msg:
        ml_key, ml_val, msg = "msg", msg, "..."
    parts = [head + msg]
    for key, v in fields:
        if ml_val is None and isinstance(v, str) and "\n" in v.strip():
            ml_key, ml_val = key, v.strip()
            continue
        if isinstance(v, _Raw):
            val = str(v)
        elif isinstance(v, bool):
            val = "true" if v else "false"
        elif isinstance(v, int):
            val = str(v)
        elif isinstance(v, dict | list):
            val = go_json(v)
        elif v is None:
            val = "<nil>"
        else:
            val = slog_quote(str(v))
        parts.append(f"  {slog_quote(key.replace(' ', '_'))}={val}")
    text = "".join(parts)
    if ml_val is not None:
        if msg != "...":
            text += " ..."
        first, *rest = ml_val.split("\n")
        text += f"\n    {ml_key}= {first}"
        pad = " " * (4 + len(ml_key) + 2)
        text += "".join("\n" + (pad + ln if ln else "") for ln in rest)
    return text


# --------------------------------------------------------------------------------------
# Model


@dataclass(eq=False)
class User:
    id: str
    username: str
    email: str
    name: str
    created_at: datetime
    hashed_password: bytes
    roles: list[str] = field(default_factory=list)
    login_type: str = "password"
    is_system: bool = False
    last_seen_at: datetime | None = None
    avatar_url: str = ""
    github_id: int | None = None
    quiet_hours: str = ""


@dataclass(eq=False)
class Job:
    id: str
    type: str
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    initiator_id: str
    input: dict
    file_id: str
    worker_id: str | None
    canceled_at: datetime | None = None
    error: str | None = None
    logs_length: int = 0

    @property
    def status(self) -> str:  # the generated column's expression
        if self.completed_at is not None:
            if self.error:
                return "failed"
            return "canceled" if self.canceled_at else "succeeded"
        if self.error:
            return "failed"
        if self.canceled_at:
            return "canceling"
        return "pending" if self.started_at is None else "running"


@dataclass(eq=False)
class Resource:
    id: str
    job: Job
    transition: str
    type: str
    name: str
    created_at: datetime
    instance_type: str | None = None
    icon: str = ""
    host: bool = False  # the resource agents hang off


@dataclass(eq=False)
class TemplateVersion:
    id: str
    name: str
    job: Job
    created_at: datetime
    readme: str
    message: str
    file_id: str


@dataclass(eq=False)
class Template:
    id: str
    name: str
    kind: str  # "vm" (google_compute_instance, kept across builds) or "pod" (kubernetes_pod)
    auth: str  # agent auth: google-instance-identity | token
    created_at: datetime
    created_by: User
    display_name: str
    description: str
    icon: str
    env: dict[str, str]
    version: TemplateVersion | None = None
    resources: list[Resource] = field(default_factory=list)


@dataclass(eq=False)
class Workspace:
    id: str
    name: str
    owner: User
    template: Template
    created_at: datetime
    deleted: bool
    ttl_ns: int | None
    autostart_schedule: str | None
    last_used_at: datetime
    instance_id: str | None
    env: dict[str, str]
    next_start_at: datetime | None = None
    favorite: bool = False
    builds: list[Build] = field(default_factory=list)


@dataclass(eq=False)
class Build:
    id: str
    workspace: Workspace
    number: int
    transition: str
    reason: str
    initiator: User
    job: Job
    version: TemplateVersion
    created_at: datetime
    deadline: datetime
    max_deadline: datetime = GO_ZERO
    preset_id: str | None = None
    resources: list[Resource] = field(default_factory=list)

    @property
    def host(self) -> Resource | None:
        return next((r for r in self.resources if r.host), None)


@dataclass(eq=False)
class Agent:
    id: str
    name: str
    resource: Resource
    build: Build | None  # None for agents of template import jobs
    created_at: datetime
    updated_at: datetime
    auth_token: str
    auth_instance_id: str | None
    env: dict[str, str]
    instance_metadata: dict | None
    resource_metadata: dict | None
    lifecycle_state: str
    first_connected_at: datetime | None
    last_connected_at: datetime | None
    disconnected_at: datetime | None
    started_at: datetime | None
    ready_at: datetime | None
    version: str
    api_version: str
    directory: str
    expanded_directory: str
    replica_id: str | None
    deleted: bool
    log_source_id: str
    script_id: str
    app_id: str
    logs: list[tuple[datetime, str, str]] = field(default_factory=list)

    @property
    def uuid(self) -> uuid.UUID:
        return uuid.UUID(self.id)


@dataclass
class Scenario:
    """Rows per table (Python values, columns in dump.sql order) and agent log files.

    `logs` maps a path relative to the dump root to the file's physical lines; paths ending
    in ``.gz`` are written gzip'd.
    """

    tables: dict[str, list[dict[str, Any]]]
    logs: dict[str, list[str]]
    agents: dict[tuple[str, int, str], str] = field(default_factory=dict)
    workspaces: dict[str, str] = field(default_factory=dict)
    builds: dict[tuple[str, int], str] = field(default_factory=dict)
    secrets: set[str] = field(default_factory=set)
    meta: dict[str, Any] = field(default_factory=dict)

    def agent_id(self, workspace: str, build_number: int, name: str = "main") -> str:
        """The workspace_agents.id of the agent `name` in build `build_number`."""
        return self.agents[(workspace, build_number, name)]

    def workspace_id(self, workspace: str) -> str:
        return self.workspaces[workspace]

    def build_id(self, workspace: str, build_number: int) -> str:
        return self.builds[(workspace, build_number)]

    def secret_values(self) -> set[str]:
        """Every secret planted: tokens, env var values, metadata secrets, and the hex of
        secret bytea values (hashed passwords, provisioner state) as they appear in dumps."""
        return set(self.secrets)


# --------------------------------------------------------------------------------------
# Agent log files

_CHATTER = [
    ("debug", "net.tailnet", "wgengine: Reconfig: configuring router", ()),
    ("debug", "net.tailnet", "wgengine: Reconfig done", ()),
    ("debug", "net.tailnet.net.wgengine", "magicsock: derp-999 connected; connGen=1", ()),
    (
        "debug",
        "net.tailnet",
        "netcheck: report: udp=true v6=false v6os=false mapvarydest=false hair= portmap= "
        "v4a={ip}:41641 derp=999 derpdist=999v4:{ms}ms",
        (),
    ),
    ("debug", "net.tailnet.net.wgengine", "wg: [v2] [{peer}] - Received handshake initiation", ()),
    ("debug", "net.tailnet.net.wgengine", "wg: [v2] [{peer}] - Sending handshake response", ()),
    (
        "debug",
        "net.tailnet.net.wgengine",
        "magicsock: disco: node [{peer}] d:{disco} now using {ip}:41641 mtu=1360",
        (),
    ),
    ("info", "ssh-server", "ssh connection", (("remote_addr", "{addr}"), ("session", "{sid}"))),
    ("debug", "ssh-server", "ssh session ended", (("session", "{sid}"), ("exit_code", 0))),
    ("debug", "reconnecting-pty", "reconnecting pty attached", (("id", "{sid}"),)),
    ("debug", "net.tailnet", "updating network map", ()),
    ("debug", "", "sent agent stats", (("connections", "{n}"), ("rx_bytes", "{rx}"))),
]


@dataclass(eq=False)
class AgentLogFile:
    """One ``coder-agent.log`` as an agent process (or several over time) writes it.

    Methods take `at` as a datetime or a timedelta from the builder's start. Entries are
    sorted by time (stably) when the scenario is built; `rotate()` splits the file the way
    lumberjack does (older lines into ``coder-agent-<time>.log[.gz]``).
    """

    path: str
    builder: ScenarioBuilder
    url: str = ACCESS_URL
    style: str = "proto"
    extra_space: bool | None = None
    entries: list[tuple[datetime | None, int, str]] = field(default_factory=list)
    rotations: list[tuple[datetime, bool]] = field(default_factory=list)
    _lifecycle: list[tuple[str, datetime]] = field(default_factory=list)
    _api_version: str = "2.4"

    def _t(self, at: datetime | timedelta) -> datetime:
        return self.builder.t(at)

    def _host(self, t: datetime) -> datetime:
        """`t` on the host's clock, which may be off the server's (`builder.log_clock`)."""
        return t + self.builder.log_clock

    def _sep(self) -> str:
        return "  " if self.extra_space else " "

    def line(
        self, at, level: str, msg: str, fields: list[tuple[str, Any]] = (), logger: str = ""
    ) -> AgentLogFile:
        """Append one slog entry."""
        t = self._host(self._t(at))
        self.entries.append((t, len(self.entries), slog_line(t, level, msg, list(fields), logger)))
        return self

    def raw(self, text: str, at=None) -> AgentLogFile:
        """Append raw text (no newline needed); without `at` it stays after the entry before."""
        t = self._host(self._t(at)) if at is not None else None
        self.entries.append((t, len(self.entries), text))
        return self

    def start(self, at, version: str = "v2.31.11", auth: str = "token") -> AgentLogFile:
        """A new agent process: the start marker and the debug lines after it."""
        t = self._t(at)
        self.style = "proto" if _version_tuple(version) >= (2, 10) else "json"
        self._api_version = "2.4" if self.style == "proto" else "2.0"
        if self.extra_space is None:
            self.extra_space = zlib.crc32(version.encode()) % 2 == 1
        self._lifecycle = [("created", GO_ZERO)]
        ms = timedelta(milliseconds=1)
        fields = [("url", self.url), ("auth", auth), ("version", version)]
        self.line(t, "info", "agent is starting now", fields)
        self.line(
            t + ms,
            "info",
            "process priority management not enabled (linux-only) ",
            [("env_var", "CODER_PROC_PRIO_MGMT"), ("enabled", False), ("os", "linux")],
        )
        for i, (port, name) in enumerate(((6060, "pprof"), (2112, "prometheus"), (2113, "debug"))):
            self.line(
                t + (3 + i) * ms,
                "debug",
                "http server listening",
                [("addr", f"127.0.0.1:{port}"), ("name", name)],
            )
        return self

    def connecting(self, at) -> AgentLogFile:
        return self.line(at, "info", "connecting to coderd")

    def disconnected(self, at) -> AgentLogFile:
        return self.line(at, "info", "disconnected from coderd")

    def run_error(self, at, status: int | str = 403, instance_id: str = "") -> AgentLogFile:
        """``run exited with error``: 401/403 (multi-line), 409 (one line), "network", or a
        literal error text."""
        rpc = f"GET {self.url}/api/v2/workspaceagents/me/rpc?version={self._api_version}"
        texts = {
            401: f"{rpc}: unexpected status code 401: Workspace agent not authorized.\n"
            "\tError: The agent cannot authenticate until the workspace provision job has been "
            "completed. If the job is no longer running, this agent is invalid.",
            403: f"{rpc}: unexpected status code 403: Agent trying to connect from non-latest "
            "build.\n\tError: build is outdated",
            409: f"exchange token: POST {self.url}/api/v2/workspaceagents/"
            "google-instance-identity: unexpected status code 409: Multiple agents found with "
            f'instance ID "{instance_id}". Set CODER_AGENT_NAME to one of: main, main',
            "network": "failed to WebSocket dial: failed to send handshake request: Get "
            f'"{rpc[4:]}": dial tcp 34.120.18.11:443: connect: network is unreachable',
        }
        text = texts.get(status, status)
        return self.line(at, "warn", "run exited with error", [("error", str(text))])

    def manifest(
        self,
        at,
        agent: Agent,
        style: str | None = None,
        owner_name: str | None = None,
        workspace_name: str | None = None,
    ) -> AgentLogFile:
        """``fetched manifest`` for `agent` (proto: quoted prototext; json: Go JSON)."""
        ws = agent.build.workspace if agent.build else None
        owner = owner_name or (ws.owner.username if ws else "")
        ws_name = workspace_name or (ws.name if ws else "")
        ws_id = uuid.UUID(ws.id) if ws else uuid.UUID(int=0)
        if (style or self.style) == "json":
            value: Any = _Raw(go_json(_manifest_json(agent, owner, ws_id, ws_name, self.url)))
        else:
            fields = _manifest_proto(agent, owner, ws_id, ws_name, self.url)
            value = prototext(fields, self._sep())
        return self.line(at, "info", "fetched manifest", [("manifest", value)])

    def lifecycle(self, at, state: str, last: str | None = None) -> AgentLogFile:
        """``set lifecycle state`` plus the ``reporting lifecycle state`` that follows.

        The timestamp of `at` (microseconds kept) is the state's changed_at, which the server
        stores as started_at/ready_at. `last` defaults to the process's previous state.
        """
        t = self._t(at)
        hist = self._lifecycle or [("created", GO_ZERO)]
        prev = hist[-1]
        if last is not None and last != prev[0]:
            prev = next((h for h in reversed(hist) if h[0] == last), (last, GO_ZERO))
        host_t = self._host(t)  # changed_at is the agent's clock
        hist.append((state, host_t))
        self._lifecycle = hist
        current = {"state": state, "changed_at": go_time(host_t)}
        last_js = {"state": prev[0], "changed_at": go_time(prev[1])}
        self.line(t, "debug", "set lifecycle state", [("current", current), ("last", last_js)])
        if self.style == "json":
            payload: Any = current
        else:
            secs = (host_t - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(seconds=1)
            when = _Msg([("seconds", secs), ("nanos", host_t.microsecond * 1000)])
            lc = _Msg([("state", _Enum(state.upper())), ("changed_at", when)])
            payload = prototext([("lifecycle", lc)], self._sep())
        return self.line(
            t + timedelta(milliseconds=2),
            "debug",
            "reporting lifecycle state",
            [("payload", payload)],
        )

    def reinit(self, at, workspace_id: str, with_shutdown: bool = False) -> AgentLogFile:
        """A prebuild claim: the process gets a new agent instance (lifecycle starts over)."""
        t = self._t(at)
        self.line(
            t,
            "info",
            "agent received instruction to reinitialize",
            [("workspace_id", workspace_id), ("reason", "prebuild_claimed")],
        )
        if with_shutdown:
            self.shutdown(t + timedelta(milliseconds=3), final_reported=False)
        self.line(
            t + timedelta(milliseconds=(5200 if with_shutdown else 4)),
            "info",
            "agent reinitializing",
        )
        self._lifecycle = [("created", GO_ZERO)]
        return self

    def shutdown(self, at, final_reported: bool = True) -> AgentLogFile:
        """``shutting down agent`` and the shutting_down/off lifecycle lines."""
        t = self._t(at)
        self.line(t, "info", "shutting down agent")
        self.lifecycle(t + timedelta(milliseconds=1), "shutting_down")
        self.lifecycle(t + timedelta(milliseconds=1187, microseconds=311), "off")
        if final_reported:
            return self.line(
                t + timedelta(milliseconds=1230), "debug", "reported final lifecycle state"
            )
        return self.line(t + timedelta(seconds=5), "warn", "failed to report final lifecycle state")

    def chatter(self, start, end, n: int) -> AgentLogFile:
        """`n` realistic noise lines (tailnet, ssh, pty, stats) spread between two times."""
        rng = self.builder.rng
        t0, t1 = self._t(start), self._t(end)
        span = max((t1 - t0).total_seconds(), 0.001)
        times = sorted(rng.uniform(0, span) for _ in range(n))
        peers = [
            "".join(
                rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789")
                for _ in range(5)
            )
            for _ in range(2)
        ]
        for off in times:
            level, logger, msg, fields = rng.choice(_CHATTER)
            vals = {
                "ip": f"35.{rng.randint(180, 240)}.{rng.randint(1, 254)}.{rng.randint(1, 254)}",
                "ms": rng.randint(1, 9),
                "peer": rng.choice(peers),
                "disco": f"{rng.getrandbits(64):016x}",
                "addr": "[fd7a:115c:a1e0:{:x}:{:x}:{:x}:{:x}:{:x}]:{}".format(
                    *(rng.getrandbits(16) for _ in range(5)), rng.randint(40000, 60000)
                ),
                "sid": str(self.builder.uuid()),
                "n": rng.randint(0, 3),
                "rx": rng.randint(1000, 900000),
            }
            fs = [(k, v.format(**vals) if isinstance(v, str) else v) for k, v in fields]
            self.line(t0 + timedelta(seconds=off), level, msg.format(**vals), fs, logger)
        return self

    def rotate(self, at, compress: bool = True) -> AgentLogFile:
        """Lumberjack rotation at `at`: lines before it go to a timestamped backup."""
        self.rotations.append((self._host(self._t(at)), compress))
        return self

    def files(self) -> dict[str, list[str]]:
        """Path -> physical lines, rotated backups included."""
        ordered, last = [], GO_ZERO
        for t, seq, text in self.entries:
            last = t if t is not None else last
            ordered.append((last, seq, text))
        ordered.sort(key=lambda e: (e[0], e[1]))
        directory, _, base = self.path.rpartition("/")
        stem = base.removesuffix(".log")
        out: dict[str, list[str]] = {}
        cuts = sorted(self.rotations)
        segments: list[list[str]] = [[] for _ in range(len(cuts) + 1)]
        for t, _, text in ordered:
            idx = sum(1 for c, _ in cuts if t >= c)
            segments[idx].extend(text.split("\n"))
        for (cut, compress), lines in zip(cuts, segments, strict=False):
            name = f"{stem}-{cut:%Y-%m-%dT%H-%M-%S}.{cut.microsecond // 1000:03d}.log"
            out[f"{directory}/{name}{'.gz' if compress else ''}".lstrip("/")] = lines
        out[self.path] = segments[-1]
        return out


def _version_tuple(version: str) -> tuple[int, ...]:
    core = version.lstrip("v").split("+")[0].split("-")[0]
    return tuple(int(p) for p in core.split(".") if p.isdigit())


_SCRIPT = (
    "#!/usr/bin/env bash\nset -euo pipefail\n\n# install and start code-server\n"
    "curl -fsSL https://code-server.dev/install.sh | sh -s -- --method=standalone "
    "--prefix=/tmp/code-server\n/tmp/code-server/bin/code-server --auth none --port 13337 "
    ">/tmp/code-server.log 2>&1 &\n"
)


def _proxy_uri(agent: Agent, owner: str, ws_name: str, url: str) -> str:
    host = url.split("://", 1)[-1]
    return f"https://{{{{port}}}}--{agent.name}--{ws_name}--{owner}.apps.{host}"


def _manifest_proto(agent: Agent, owner: str, ws_id: uuid.UUID, ws_name: str, url: str) -> list:
    host = url.split("://", 1)[-1]
    node = _Msg(
        [
            ("name", "999b"),
            ("region_id", 999),
            ("host_name", host),
            ("stun_port", -1),
            ("derp_port", 443),
        ]
    )
    region = _Msg(
        [
            ("region_id", 999),
            ("embedded_relay", True),
            ("region_code", "coder"),
            ("region_name", "Coder Embedded Relay"),
            ("nodes", node),
        ]
    )
    derp = _Msg([("home_params", _Msg()), ("regions", _Msg([("key", 999), ("value", region)]))])
    script = _Msg(
        [
            ("log_source_id", uuid.UUID(agent.log_source_id).bytes),
            ("script", _SCRIPT),
            ("run_on_start", True),
            ("start_blocks_login", True),
            ("timeout", _Msg([("seconds", 300)])),
            ("display_name", "Startup Script"),
            ("id", uuid.UUID(agent.script_id).bytes),
        ]
    )
    app = _Msg(
        [
            ("id", uuid.UUID(agent.app_id).bytes),
            ("url", f"http://localhost:13337/?folder={agent.directory}"),
            ("slug", "code-server"),
            ("display_name", "code-server"),
            ("icon", "/icon/code.svg"),
            ("sharing_level", _Enum("OWNER")),
            (
                "healthcheck",
                _Msg(
                    [
                        ("url", "http://localhost:13337/healthz"),
                        ("interval", _Msg([("seconds", 5)])),
                        ("threshold", 6),
                    ]
                ),
            ),
            ("health", _Enum("INITIALIZING")),
        ]
    )
    return [
        ("agent_id", agent.uuid.bytes),
        ("agent_name", agent.name),
        ("owner_username", owner),
        ("workspace_id", ws_id.bytes),
        ("workspace_name", ws_name),
        *[
            ("environment_variables", _Msg([("key", k), ("value", v)]))
            for k, v in sorted(agent.env.items())
        ],
        ("directory", agent.directory),
        ("vs_code_port_proxy_uri", _proxy_uri(agent, owner, ws_name, url)),
        ("motd_path", "/etc/motd"),
        ("derp_map", derp),
        ("scripts", script),
        ("apps", app),
    ]


def _manifest_json(agent: Agent, owner: str, ws_id: uuid.UUID, ws_name: str, url: str) -> dict:
    host = url.split("://", 1)[-1]
    node = {"Name": "999b", "RegionID": 999, "HostName": host, "STUNPort": -1, "DERPPort": 443}
    region = {
        "EmbeddedRelay": True,
        "RegionID": 999,
        "RegionCode": "coder",
        "RegionName": "Coder Embedded Relay",
        "Nodes": [node],
    }
    return {
        "agent_id": agent.id,
        "agent_name": agent.name,
        "owner_name": owner,
        "workspace_id": str(ws_id),
        "workspace_name": ws_name,
        "git_auth_configs": 0,
        "vscode_port_proxy_uri": _proxy_uri(agent, owner, ws_name, url),
        "apps": [
            {
                "id": agent.app_id,
                "url": f"http://localhost:13337/?folder={agent.directory}",
                "external": False,
                "slug": "code-server",
                "display_name": "code-server",
                "icon": "/icon/code.svg",
                "subdomain": False,
                "sharing_level": "owner",
                "healthcheck": {
                    "url": "http://localhost:13337/healthz",
                    "interval": 5,
                    "threshold": 6,
                },
                "health": "initializing",
            }
        ],
        "derpmap": {"HomeParams": {}, "Regions": {"999": region}},
        "derp_force_websockets": False,
        "environment_variables": dict(sorted(agent.env.items())),
        "directory": agent.directory,
        "motd_file": "/etc/motd",
        "disable_direct_connections": False,
        "metadata": [],
        "scripts": [
            {
                "log_source_id": agent.log_source_id,
                "log_path": "",
                "script": _SCRIPT,
                "cron": "",
                "run_on_start": True,
                "run_on_stop": False,
                "start_blocks_login": True,
                "timeout": 300000000000,
                "display_name": "Startup Script",
            }
        ],
    }


# --------------------------------------------------------------------------------------
# Builder

_ADJ = ["admiring", "eloquent", "festive", "hopeful", "quirky", "serene", "vibrant", "zealous"]
_NAMES = ["hopper", "lovelace", "turing", "noether", "ritchie", "hamilton", "kare", "liskov"]
_B64 = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_HOUR_NS = 3_600_000_000_000


class ScenarioBuilder:
    """Records a Coder deployment; see the module docstring and `sample_scenario()`."""

    def __init__(
        self,
        seed: int = 1,
        start: datetime = datetime(2026, 5, 14, 9, 0, tzinfo=UTC),
        access_url: str = ACCESS_URL,
    ) -> None:
        self.rng = random.Random(seed)
        self.start = start.astimezone(UTC)
        self.access_url = access_url
        self.org_id = str(self.uuid())
        self.worker_id = str(self.uuid())  # the provisioner daemon
        self.replicas = [str(self.uuid()), str(self.uuid())]  # coderd replicas
        self.users: list[User] = []
        self.templates: list[Template] = []
        self.workspaces: list[Workspace] = []
        self.jobs: list[Job] = []
        self.agents: list[Agent] = []
        self.log_files: list[AgentLogFile] = []
        # How far every agent host's clock is ahead of the server's: log lines are written
        # with it; database times are not (to test clock-skew handling).
        self.log_clock = timedelta(0)
        self.secrets: set[str] = set()
        self._admin: User | None = None

    # -- helpers
    def uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def t(self, at: datetime | timedelta | None) -> datetime | None:
        """A datetime (made UTC) or an offset from `start`."""
        if at is None:
            return None
        if isinstance(at, timedelta):
            return self.start + at
        if at.tzinfo is None:
            raise ValueError(f"naive datetime {at!r}: give a timezone")
        return at.astimezone(UTC)

    def _secret(self, value: str) -> str:
        self.secrets.add(value)
        return value

    def _token(self, prefix: str, n: int) -> str:
        return self._secret(prefix + "".join(self.rng.choice(_ALNUM) for _ in range(n)))

    # -- entities
    def user(
        self,
        username: str,
        *,
        at=None,
        email: str | None = None,
        name: str | None = None,
        roles: tuple[str, ...] | list[str] = (),
        login_type: str = "password",
        user_id: str | None = None,
        is_system: bool = False,
        last_seen_at=None,
    ) -> User:
        created = self.t(at) or self.start
        if is_system:
            hashed = b"none"
        else:
            hashed = ("$2a$10$" + "".join(self.rng.choice(_B64) for _ in range(53))).encode()
            self._secret(hashed.decode())
            self._secret(hashed.hex())
        u = User(
            id=user_id or str(self.uuid()),
            username=username,
            email=email or f"{username}@example.com",
            name=name if name is not None else username.capitalize(),
            created_at=created,
            hashed_password=hashed,
            roles=list(roles),
            login_type=login_type,
            is_system=is_system,
            last_seen_at=self.t(last_seen_at),
        )
        self.users.append(u)
        if self._admin is None and not is_system:
            self._admin = u
        return u

    def template(
        self,
        name: str,
        *,
        at=None,
        kind: str | None = None,
        auth: str | None = None,
        created_by: User | None = None,
        display_name: str = "",
        description: str = "",
        readme: str = "",
        message: str = "",
    ) -> Template:
        """A template with an active version, its import job (succeeded), and the import
        job's resources with an agent each (never connected), as real databases have."""
        at = self.t(at) or self.start
        kind = kind or ("pod" if ("k8s" in name or "pod" in name) else "vm")
        creator = created_by or self._admin or self.user("admin", roles=["owner"])
        env_key = ("DD_API_KEY", "dd") if kind == "vm" else ("NPM_TOKEN", "npm_")
        tpl = Template(
            id=str(self.uuid()),
            name=name,
            kind=kind,
            auth=auth or ("google-instance-identity" if kind == "vm" else "token"),
            created_at=at + timedelta(seconds=31),
            created_by=creator,
            display_name=display_name,
            description=description,
            icon="/icon/gcp.png" if kind == "vm" else "/icon/k8s.png",
            env={env_key[0]: self._token(env_key[1], 32)},
        )
        tv_id, file_id = str(self.uuid()), str(self.uuid())
        var_name = "gcp_credentials_json" if kind == "vm" else "kube_bearer_token"
        job = self._job(
            "template_version_import",
            at,
            creator,
            {
                "template_version_id": tv_id,
                "user_variable_values": [
                    {"name": var_name, "value": self._token("sk-", 40), "sensitive": True}
                ],
            },
            file_id,
            duration=timedelta(seconds=24, microseconds=318207),
        )
        vname = f"{self.rng.choice(_ADJ)}_{self.rng.choice(_NAMES)}{self.rng.randint(1, 9)}"
        tpl.version = TemplateVersion(tv_id, vname, job, at, readme, message, file_id)
        for transition in ("start", "stop"):
            for res in self._resources(tpl, job, transition, f"coder-{name}"):
                tpl.resources.append(res)
                if res.host:
                    self._new_agent(
                        res,
                        None,
                        name="main",
                        env=dict(tpl.env),
                        instance_id=None,
                        is_vm=kind == "vm",
                    )
        self.templates.append(tpl)
        return tpl

    def workspace(
        self,
        name: str,
        owner: User,
        template: Template,
        *,
        at=None,
        deleted: bool = False,
        ttl_hours: float | None = 8,
        autostart_schedule: str | None = None,
        last_used_at=None,
        next_start_at=None,
        favorite: bool = False,
    ) -> Workspace:
        ws = Workspace(
            id=str(self.uuid()),
            name=name,
            owner=owner,
            template=template,
            created_at=self.t(at) or self.start,
            deleted=deleted,
            ttl_ns=int(ttl_hours * _HOUR_NS) if ttl_hours else None,
            autostart_schedule=autostart_schedule,
            last_used_at=self.t(last_used_at) or GO_ZERO,
            instance_id=str(self.rng.randint(10**18, 9 * 10**18))
            if template.kind == "vm"
            else None,
            env={"GIT_TOKEN": self._token("ghp_", 36), **template.env},
            next_start_at=self.t(next_start_at),
            favorite=favorite,
        )
        self.workspaces.append(ws)
        return ws

    def build(
        self,
        ws: Workspace,
        transition: str,
        *,
        at=None,
        reason: str = "initiator",
        job_status: str = "succeeded",
        initiator: User | None = None,
        error: str | None = None,
        deadline=AUTO,
        preset_id: str | None = None,
        prebuild_stage: int | None = None,
    ) -> Build:
        """A workspace build and its provisioner job (started at+2s, completed at+40s).

        job_status: succeeded | failed (error text set) | canceled (canceled_at set) |
        running | pending. Succeeded builds get their resources (the VM/pod agents hang off).
        """
        at = self.t(at) or self.start
        initiator = initiator or ws.owner
        build_id = str(self.uuid())
        job_input: dict[str, Any] = {"dry_run": False, "workspace_build_id": build_id}
        if prebuild_stage:
            job_input["prebuilt_workspace_stage"] = prebuild_stage
        job = self._job("workspace_build", at, initiator, job_input, ws.template.version.file_id)
        if job_status in ("pending",):
            job.started_at = job.completed_at = None
        elif job_status in ("running",):
            job.completed_at = None
        elif job_status == "failed":
            job.error = error or (
                "terraform apply failed:\nError: googleapi: Error 503: The zone "
                "'projects/acme-dev/zones/us-central1-a' does not have enough resources "
                "available to fulfill the request, resourceExhausted, code 3"
            )
        elif job_status == "canceled":
            job.canceled_at = at + timedelta(seconds=9, microseconds=441205)
            job.completed_at = job.canceled_at + timedelta(seconds=1)
        elif job_status != "succeeded":
            raise ValueError(f"unknown job_status {job_status!r}")
        if deadline is AUTO:
            deadline = (
                job.completed_at + timedelta(microseconds=ws.ttl_ns // 1000)
                if transition == "start" and ws.ttl_ns and job_status == "succeeded"
                else GO_ZERO
            )
        b = Build(
            id=build_id,
            workspace=ws,
            number=len(ws.builds) + 1,
            transition=transition,
            reason=reason,
            initiator=initiator,
            job=job,
            version=ws.template.version,
            created_at=at,
            deadline=self.t(deadline),
            preset_id=preset_id,
        )
        if job_status == "succeeded":
            hostname = f"coder-{ws.owner.username}-{ws.name}"
            b.resources = self._resources(ws.template, job, transition, hostname)
        ws.builds.append(b)
        return b

    def agent(
        self,
        build: Build,
        *,
        name: str = "main",
        lifecycle_state: str = "created",
        first_connected_at=None,
        last_connected_at=None,
        disconnected_at=None,
        started_at=None,
        ready_at=None,
        version: str | None = None,
        api_version: str | None = None,
        auth_instance_id: Any = AUTO,
        deleted: bool = False,
        expanded_directory: str | None = None,
        directory: str = "/home/coder",
        id: uuid.UUID | str | None = None,
        auth_token: str | None = None,
        updated_at=None,
    ) -> Agent:
        """A workspace_agents row on the build's VM/pod resource, created when the job
        completed. Connection and lifecycle fields default to NULL / 'created'; version,
        api_version and expanded_directory default to '' unless the agent connected."""
        host = build.host
        if host is None:
            raise ValueError(f"build #{build.number} of {build.workspace.name} has no agent host")
        ws = build.workspace
        iid = ws.instance_id if auth_instance_id is AUTO else auth_instance_id
        ag = self._new_agent(
            host,
            build,
            name=name,
            env=dict(ws.env),
            instance_id=iid,
            is_vm=ws.template.kind == "vm",
            agent_id=id,
            auth_token=auth_token,
        )
        first = self.t(first_connected_at)
        connected = first is not None
        ag.lifecycle_state = lifecycle_state
        ag.first_connected_at = first
        ag.last_connected_at = self.t(last_connected_at) or first
        ag.disconnected_at = self.t(disconnected_at)
        ag.started_at, ag.ready_at = self.t(started_at), self.t(ready_at)
        ag.version = version if version is not None else ("v2.31.11" if connected else "")
        ag.api_version = api_version if api_version is not None else ("2.4" if connected else "")
        ag.directory = directory
        if expanded_directory is None:
            expanded_directory = directory if connected else ""
        ag.expanded_directory = expanded_directory
        ag.replica_id = self.rng.choice(self.replicas) if connected else None
        ag.deleted = deleted
        stamps = [ag.created_at, ag.last_connected_at, ag.disconnected_at]
        ag.updated_at = self.t(updated_at) or max(s for s in stamps if s is not None)
        return ag

    def agent_logs(self, agent: Agent, lines: list[tuple[Any, str, str]]) -> None:
        """workspace_agent_logs rows: (at, level, output) of the agent's startup script."""
        agent.logs.extend((self.t(at), level, output) for at, level, output in lines)

    def log(self, path: str, *, url: str | None = None, extra_space: bool | None = None):
        """An agent log file in the dump, path relative to the dump root."""
        lf = AgentLogFile(
            path=path, builder=self, url=url or self.access_url, extra_space=extra_space
        )
        self.log_files.append(lf)
        return lf

    # -- internals
    def _job(self, type_, at, initiator, input_, file_id, duration=timedelta(seconds=40)) -> Job:
        job = Job(
            id=str(self.uuid()),
            type=type_,
            created_at=at,
            started_at=at + timedelta(seconds=2),
            completed_at=at + duration,
            initiator_id=initiator.id,
            input=input_,
            file_id=file_id,
            worker_id=self.worker_id,
            logs_length=self.rng.randint(4000, 30000),
        )
        self.jobs.append(job)
        return job

    def _resources(self, tpl: Template, job: Job, transition: str, host: str) -> list[Resource]:
        at = job.completed_at
        specs: list[tuple[str, str, str | None, str, bool]] = []
        if tpl.kind == "vm" and transition in ("start", "stop"):
            specs.append(
                ("google_compute_instance", "dev", "e2-standard-4", "/icon/memory.svg", True)
            )
        elif tpl.kind == "pod" and transition in ("start", "stop"):
            specs.append(("kubernetes_persistent_volume_claim", "home", None, "", False))
            if transition == "start":
                specs.append(("kubernetes_pod", "main", None, "/icon/k8s.png", True))
        return [
            Resource(str(self.uuid()), job, transition, typ, name, at, itype, icon, is_host)
            for typ, name, itype, icon, is_host in specs
        ]

    def _new_agent(
        self, res, build, *, name, env, instance_id, is_vm, agent_id=None, auth_token=None
    ) -> Agent:
        token = auth_token or str(self.uuid())
        self._secret(token)
        for v in env.values():
            self._secret(v)
        inst_meta = None
        if is_vm:
            inst_meta = {"zone": "us-central1-a", "access_token": self._token("ya29.", 48)}
        res_meta = {"node_pool": "general", "db_password": self._token("", 24)}
        ag = Agent(
            id=str(agent_id if agent_id is not None else self.uuid()),
            name=name,
            resource=res,
            build=build,
            created_at=res.created_at,
            updated_at=res.created_at,
            auth_token=token,
            auth_instance_id=instance_id,
            env=env,
            instance_metadata=inst_meta,
            resource_metadata=res_meta,
            lifecycle_state="created",
            first_connected_at=None,
            last_connected_at=None,
            disconnected_at=None,
            started_at=None,
            ready_at=None,
            version="",
            api_version="",
            directory="/home/coder",
            expanded_directory="",
            replica_id=None,
            deleted=False,
            log_source_id=str(self.uuid()),
            script_id=str(self.uuid()),
            app_id=str(self.uuid()),
        )
        self.agents.append(ag)
        return ag

    # -- output
    def build_scenario(self, *, exported_at=None) -> Scenario:
        """Materialize every row and log file."""
        exported = self.t(exported_at) or self.start + timedelta(days=1)
        t: dict[str, list[dict[str, Any]]] = {name: [] for name in TABLES}
        for u in self.users:
            t["users"].append(self._user_row(u))
        for tpl in self.templates:
            t["templates"].append(self._template_row(tpl))
            tv = tpl.version
            t["template_versions"].append(
                {
                    "id": tv.id,
                    "template_id": tpl.id,
                    "organization_id": self.org_id,
                    "created_at": tv.created_at,
                    "updated_at": tpl.created_at,
                    "name": tv.name,
                    "readme": tv.readme,
                    "job_id": tv.job.id,
                    "created_by": tpl.created_by.id,
                    "external_auth_providers": [],
                    "message": tv.message,
                    "archived": False,
                    "source_example_id": None,
                    "has_ai_task": False,
                    "has_external_agent": False,
                }
            )
        for job in self.jobs:
            t["provisioner_jobs"].append(self._job_row(job))
        for ws in self.workspaces:
            t["workspaces"].append(self._workspace_row(ws))
            for b in ws.builds:
                t["workspace_builds"].append(self._build_row(b))
        for res in self._all_resources():
            t["workspace_resources"].append(
                {
                    "id": res.id,
                    "created_at": res.created_at,
                    "job_id": res.job.id,
                    "transition": res.transition,
                    "type": res.type,
                    "name": res.name,
                    "hide": False,
                    "icon": res.icon,
                    "instance_type": res.instance_type,
                    "daily_cost": 0,
                    "module_path": "",
                }
            )
        all_logs = sorted(
            (
                (at, i, ag, level, out)
                for ag in self.agents
                for i, (at, level, out) in enumerate(ag.logs)
            ),
            key=lambda e: (e[0], self.agents.index(e[2]), e[1]),
        )
        for n, (at, _, ag, level, out) in enumerate(all_logs, start=1):
            t["workspace_agent_logs"].append(
                {
                    "agent_id": ag.id,
                    "created_at": at,
                    "output": out,
                    "id": n,
                    "level": level,
                    "log_source_id": ag.log_source_id,
                }
            )
        for ag in self.agents:
            t["workspace_agents"].append(self._agent_row(ag))
        logs: dict[str, list[str]] = {}
        for lf in self.log_files:
            logs.update(lf.files())
        scn = Scenario(tables=t, logs=dict(sorted(logs.items())), secrets=set(self.secrets))
        for ws in self.workspaces:
            scn.workspaces.setdefault(ws.name, ws.id)
            for b in ws.builds:
                scn.builds[(ws.name, b.number)] = b.id
        for ag in self.agents:
            if ag.build is not None:
                scn.agents[(ag.build.workspace.name, ag.build.number, ag.name)] = ag.id
        for row in t["workspace_builds"]:
            if row["provisioner_state"] is not None:
                scn.secrets.add(row["provisioner_state"].hex())
        scn.meta["exported_at"] = exported
        return scn

    def _all_resources(self) -> list[Resource]:
        out = [r for tpl in self.templates for r in tpl.resources]
        out += [r for ws in self.workspaces for b in ws.builds for r in b.resources]
        return sorted(out, key=lambda r: (r.created_at, out.index(r)))

    def _user_row(self, u: User) -> dict[str, Any]:
        seen = u.last_seen_at
        return {
            "id": u.id,
            "email": u.email,
            "username": u.username,
            "hashed_password": u.hashed_password,
            "created_at": u.created_at,
            "updated_at": seen or u.created_at,
            "status": "active",
            "rbac_roles": u.roles,
            "login_type": u.login_type,
            "avatar_url": u.avatar_url,
            "deleted": False,
            "last_seen_at": seen.replace(tzinfo=None) if seen else GO_ZERO_NAIVE,
            "quiet_hours_schedule": u.quiet_hours,
            "name": u.name,
            "github_com_user_id": u.github_id,
            "hashed_one_time_passcode": None,
            "one_time_passcode_expires_at": None,
            "is_system": u.is_system,
            "is_service_account": False,
            "chat_spend_limit_micros": None,
        }

    def _template_row(self, tpl: Template) -> dict[str, Any]:
        return {
            "id": tpl.id,
            "created_at": tpl.created_at,
            "updated_at": tpl.created_at,
            "organization_id": self.org_id,
            "deleted": False,
            "name": tpl.name,
            "provisioner": "terraform",
            "active_version_id": tpl.version.id,
            "description": tpl.description,
            "default_ttl": 8 * _HOUR_NS,
            "created_by": tpl.created_by.id,
            "icon": tpl.icon,
            "user_acl": {},
            "group_acl": {self.org_id: ["use"]},
            "display_name": tpl.display_name,
            "allow_user_cancel_workspace_jobs": True,
            "allow_user_autostart": True,
            "allow_user_autostop": True,
            "failure_ttl": 0,
            "time_til_dormant": 0,
            "time_til_dormant_autodelete": 0,
            "autostop_requirement_days_of_week": 0,
            "autostop_requirement_weeks": 1,
            "autostart_block_days_of_week": 0,
            "require_active_version": False,
            "deprecated": "",
            "activity_bump": _HOUR_NS,
            "max_port_sharing_level": "owner",
            "use_classic_parameter_flow": False,
            "cors_behavior": "simple",
            "disable_module_cache": False,
        }

    def _job_row(self, job: Job) -> dict[str, Any]:
        return {
            "id": job.id,
            "created_at": job.created_at,
            "updated_at": job.completed_at or job.started_at or job.created_at,
            "started_at": job.started_at,
            "canceled_at": job.canceled_at,
            "completed_at": job.completed_at,
            "error": job.error,
            "organization_id": self.org_id,
            "initiator_id": job.initiator_id,
            "provisioner": "terraform",
            "storage_method": "file",
            "type": job.type,
            "input": job.input,
            "worker_id": job.worker_id if job.started_at else None,
            "file_id": job.file_id,
            "tags": {"owner": "", "scope": "organization"},
            "error_code": None,
            "trace_metadata": {},
            "job_status": job.status,
            "logs_length": job.logs_length,
            "logs_overflowed": False,
        }

    def _workspace_row(self, ws: Workspace) -> dict[str, Any]:
        updated = max([ws.created_at] + [b.created_at for b in ws.builds])
        return {
            "id": ws.id,
            "created_at": ws.created_at,
            "updated_at": updated,
            "owner_id": ws.owner.id,
            "organization_id": self.org_id,
            "template_id": ws.template.id,
            "deleted": ws.deleted,
            "name": ws.name,
            "autostart_schedule": ws.autostart_schedule,
            "ttl": ws.ttl_ns,
            "last_used_at": ws.last_used_at,
            "dormant_at": None,
            "deleting_at": None,
            "automatic_updates": "never",
            "favorite": ws.favorite,
            "next_start_at": ws.next_start_at,
            "group_acl": {},
            "user_acl": {},
        }

    def _build_row(self, b: Build) -> dict[str, Any]:
        return {
            "id": b.id,
            "created_at": b.created_at,
            "updated_at": b.job.completed_at or b.created_at,
            "workspace_id": b.workspace.id,
            "template_version_id": b.version.id,
            "build_number": b.number,
            "transition": b.transition,
            "initiator_id": b.initiator.id,
            "provisioner_state": self._tf_state(b),
            "job_id": b.job.id,
            "deadline": b.deadline,
            "reason": b.reason,
            "daily_cost": 0,
            "max_deadline": b.max_deadline,
            "template_version_preset_id": b.preset_id,
            "has_ai_task": False,
            "has_external_agent": False,
        }

    def _tf_state(self, b: Build) -> bytes | None:
        """A small Terraform state: the agent tokens and the VM/pod."""
        if b.job.status != "succeeded":
            return None
        ws, resources = b.workspace, []
        if b.transition != "delete":
            tokens = [a.auth_token for a in self.agents if a.build is b]
            token = tokens[0] if tokens else self._secret(str(self.uuid()))
            resources.append(
                {
                    "mode": "managed",
                    "type": "coder_agent",
                    "name": "main",
                    "instances": [
                        {
                            "attributes": {
                                "id": str(self.uuid()),
                                "token": token,
                                "auth": ws.template.auth,
                            }
                        }
                    ],
                }
            )
            for r in b.resources:
                attrs: dict[str, Any] = {"name": f"coder-{ws.owner.username}-{ws.name}"}
                if r.type == "google_compute_instance":
                    attrs["instance_id"] = ws.instance_id
                    attrs["desired_status"] = "RUNNING" if b.transition == "start" else "SUSPENDED"
                resources.append(
                    {
                        "mode": "managed",
                        "type": r.type,
                        "name": r.name,
                        "instances": [{"attributes": attrs}],
                    }
                )
        state = {
            "version": 4,
            "terraform_version": "1.11.4",
            "serial": b.number * 3,
            "lineage": ws.id,
            "resources": resources,
        }
        return json.dumps(state, separators=(",", ":")).encode()

    def _agent_row(self, ag: Agent) -> dict[str, Any]:
        logs_length = sum(len(out.encode()) for _, _, out in ag.logs)
        return {
            "id": ag.id,
            "created_at": ag.created_at,
            "updated_at": ag.updated_at,
            "name": ag.name,
            "first_connected_at": ag.first_connected_at,
            "last_connected_at": ag.last_connected_at,
            "disconnected_at": ag.disconnected_at,
            "resource_id": ag.resource.id,
            "auth_token": ag.auth_token,
            "auth_instance_id": ag.auth_instance_id,
            "architecture": "amd64",
            "environment_variables": ag.env,
            "operating_system": "linux",
            "instance_metadata": ag.instance_metadata,
            "resource_metadata": ag.resource_metadata,
            "directory": ag.directory,
            "version": ag.version,
            "last_connected_replica_id": ag.replica_id,
            "connection_timeout_seconds": 120,
            "troubleshooting_url": "https://coder.com/docs/admin/templates/troubleshooting",
            "motd_file": "/etc/motd",
            "lifecycle_state": ag.lifecycle_state,
            "expanded_directory": ag.expanded_directory,
            "logs_length": logs_length,
            "logs_overflowed": False,
            "started_at": ag.started_at,
            "ready_at": ag.ready_at,
            "subsystems": [],
            "display_apps": [
                "vscode",
                "vscode_insiders",
                "web_terminal",
                "ssh_helper",
                "port_forwarding_helper",
            ],
            "api_version": ag.api_version,
            "display_order": 0,
            "parent_id": None,
            "api_key_scope": "all",
            "deleted": ag.deleted,
        }


# --------------------------------------------------------------------------------------
# PostgreSQL value formatting


def _tz_offset_seconds(spec: str) -> int | None:
    """ "-04", "+05:30", "+00", "UTC" -> seconds east of UTC; None for a zone name."""
    if spec.upper() in ("UTC", "Z"):
        return 0
    if spec[:1] in "+-" and spec[1:].replace(":", "").isdigit():
        parts = [int(p) for p in spec[1:].split(":")] + [0, 0]
        secs = parts[0] * 3600 + parts[1] * 60 + parts[2]
        return secs if spec[0] == "+" else -secs
    return None


def _local(dt: datetime, tz: str) -> tuple[tuple[int, ...], int]:
    """Local wall-clock fields (astronomical year) and UTC offset of `dt` in session `tz`.

    Works for year 1 (Go's zero time) by shifting 400 years, which keeps the calendar; a
    zone name uses the zone's rules then (its LMT offset, as PostgreSQL does).
    """
    dt = dt.astimezone(UTC)
    shift = 400 if dt.year < 1000 else 0
    shifted = dt.replace(year=dt.year + shift)
    fixed = _tz_offset_seconds(tz)
    if fixed is None:
        off = int(shifted.astimezone(ZoneInfo(tz)).utcoffset().total_seconds())
    else:
        off = fixed
    loc = shifted + timedelta(seconds=off)
    fields = (loc.year - shift, loc.month, loc.day, loc.hour, loc.minute, loc.second)
    return fields + (loc.microsecond,), off


def _pg_offset(off: int, xsd: bool) -> str:
    sign = "+" if off >= 0 else "-"
    h, rem = divmod(abs(off), 3600)
    m, s = divmod(rem, 60)
    if s:
        return f"{sign}{h:02d}:{m:02d}:{s:02d}"
    if m or xsd:
        return f"{sign}{h:02d}:{m:02d}"
    return f"{sign}{h:02d}"


def pg_timestamp(dt: datetime, tz: str | None, xsd: bool = False) -> str:
    """timestamptz (tz given) or timestamp (tz None, naive dt) as PostgreSQL prints it:
    ISO DateStyle for text/CSV, XSD style (T separator, ±HH:MM) inside row_to_json."""
    if tz is None:
        (y, mo, d, h, mi, s, us), off = (
            (dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, dt.microsecond),
            None,
        )
    else:
        (y, mo, d, h, mi, s, us), off = _local(dt, tz)
    bc = y <= 0
    text = (
        f"{(1 - y) if bc else y:04d}-{mo:02d}-{d:02d}{'T' if xsd else ' '}{h:02d}:{mi:02d}:{s:02d}"
    )
    if us:
        text += "." + f"{us:06d}".rstrip("0")
    if off is not None:
        text += _pg_offset(off, xsd)
    return text + (" BC" if bc else "")


def pg_json_string(s: str) -> str:
    """PostgreSQL's escape_json."""
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\b\f\n\r\t":
            out.append({"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif ch < " ":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def jsonb_text(v: Any) -> str:
    """A jsonb value as PostgreSQL prints it: keys ordered by (length, bytes), ': ' and ', '."""
    if isinstance(v, dict):
        keys = sorted(v, key=lambda k: (len(k.encode()), k.encode()))
        return "{" + ", ".join(f"{pg_json_string(k)}: {jsonb_text(v[k])}" for k in keys) + "}"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(jsonb_text(x) for x in v) + "]"
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return pg_json_string(str(v))


def _pg_array_elem(s: str | None) -> str:
    if s is None:
        return "NULL"
    if s == "" or s.upper() == "NULL" or any(c in s for c in '{}," \\\t\n\r\v\f'):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return s


def pg_text(v: Any, typ: str, tz: str) -> str | None:
    """A value as PostgreSQL's output function writes it (None for NULL)."""
    if v is None:
        return None
    if typ == "tstz":
        return pg_timestamp(v, tz)
    if typ == "ts":
        return pg_timestamp(v, None)
    if typ == "bool":
        return "t" if v else "f"
    if typ == "jsonb":
        return jsonb_text(v)
    if typ == "bytea":
        return "\\x" + bytes(v).hex()
    if typ == "text[]":
        return "{" + ",".join(_pg_array_elem(x) for x in v) + "}"
    return str(v)


def _csv_field(s: str | None) -> str:
    if s is None:
        return ""
    if s == "" or any(c in s for c in ',"\n\r') or s == "\\.":
        return '"' + s.replace('"', '""') + '"'
    return s


def csv_table(table: str, rows: list[dict[str, Any]], tz: str) -> str:
    """`\\copy (SELECT * FROM t) TO 't.csv' WITH (FORMAT csv, HEADER)` output."""
    cols = SCHEMA[table]
    lines = [",".join(_csv_field(c) for c, _ in cols)]
    for row in rows:
        lines.append(",".join(_csv_field(pg_text(row[c], typ, tz)) for c, typ in cols))
    return "\n".join(lines) + "\n"


def _json_value(v: Any, typ: str, tz: str) -> str:
    if v is None:
        return "null"
    if typ in ("tstz", "ts"):
        return pg_json_string(pg_timestamp(v, tz if typ == "tstz" else None, xsd=True))
    if typ == "bool":
        return "true" if v else "false"
    if typ in ("int2", "int4", "int8"):
        return str(v)
    if typ == "jsonb":
        return jsonb_text(v)
    if typ == "bytea":
        return pg_json_string("\\x" + bytes(v).hex())
    if typ == "text[]":
        return "[" + ",".join("null" if x is None else pg_json_string(x) for x in v) + "]"
    return pg_json_string(str(v))


_COPY_ESC = {"\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_COPY_ESC["\v"] = "\\v"


def ndjson_table(table: str, rows: list[dict[str, Any]], tz: str) -> str:
    """`\\copy (SELECT row_to_json(t) FROM t) TO 't.ndjson'` output (COPY text escaping)."""
    out = []
    for row in rows:
        obj = (
            "{"
            + ",".join(
                f"{pg_json_string(c)}:{_json_value(row[c], typ, tz)}" for c, typ in SCHEMA[table]
            )
            + "}"
        )
        out.append("".join(_COPY_ESC.get(ch, ch) for ch in obj))
    return "".join(line + "\n" for line in out)


_DUCK = {
    "uuid": "VARCHAR",
    "tstz": "TIMESTAMPTZ",
    "ts": "TIMESTAMP",
    "text": "VARCHAR",
    "bool": "BOOLEAN",
    "int2": "SMALLINT",
    "int4": "INTEGER",
    "int8": "BIGINT",
    "jsonb": "VARCHAR",
    "bytea": "BLOB",
    "text[]": "VARCHAR[]",
}


def _parquet_table(table: str, rows: list[dict[str, Any]], path: Path) -> None:
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        cols = SCHEMA[table]
        con.execute(f"CREATE TABLE t ({', '.join(f'{c} {_DUCK[typ]}' for c, typ in cols)})")
        values = [
            tuple(
                jsonb_text(r[c]) if typ == "jsonb" and r[c] is not None else r[c] for c, typ in cols
            )
            for r in rows
        ]
        if values:
            con.executemany(f"INSERT INTO t VALUES ({', '.join('?' for _ in cols)})", values)
        target = str(path).replace("'", "''")
        con.execute(f"COPY t TO '{target}' (FORMAT parquet)")
    finally:
        con.close()


def _write(path: Path, data: bytes, gz: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        data = _gzip.compress(data, compresslevel=9, mtime=0)
    path.write_bytes(data)
    return path


def write_dump(
    scn: Scenario,
    out_dir: str | Path,
    fmt: str = "csv",
    gzip: bool = False,
    tz_offset: str = "-04",
    logs_gzip: bool = False,
    db_dir: str = "db",
) -> list[Path]:
    """Write the tables (into `out_dir/db_dir/`) and the agent logs (at their paths under
    `out_dir`). Returns the files written, sorted.

    fmt: csv | ndjson | parquet. tz_offset is the psql session's TimeZone: a fixed offset
    ("-04", "+05:30", "UTC") or a zone name ("America/New_York", whose LMT offset then
    shows in Go-zero sentinels, exactly as PostgreSQL prints them).
    """
    out = Path(out_dir)
    db = out / db_dir if db_dir else out
    written = []
    for table in TABLES:
        rows = scn.tables[table]
        suffix = {"csv": ".csv", "ndjson": ".ndjson", "parquet": ".parquet"}[fmt]
        path = db / f"{table}{suffix}{'.gz' if gzip else ''}"
        if fmt == "parquet":
            path.parent.mkdir(parents=True, exist_ok=True)
            plain = path.with_suffix("") if gzip else path
            _parquet_table(table, rows, plain)
            if gzip:
                _write(path, plain.read_bytes(), True)
                plain.unlink()
        else:
            text = (csv_table if fmt == "csv" else ndjson_table)(table, rows, tz_offset)
            _write(path, text.encode(), gzip)
        written.append(path)
    for rel, lines in scn.logs.items():
        gz = rel.endswith(".gz") or logs_gzip
        target = out / (rel if rel.endswith(".gz") or not logs_gzip else rel + ".gz")
        written.append(_write(target, "".join(ln + "\n" for ln in lines).encode(), gz))
    return sorted(written)


def export_commands(fmt: str = "csv", tz_offset: str = "America/New_York") -> str:
    """The psql session that produces what write_dump writes (for EXPORTED_WITH.txt)."""
    fixed = _tz_offset_seconds(tz_offset)
    if fixed is None:
        set_tz = f"SET TIME ZONE '{tz_offset}';"
    else:
        set_tz = f"SET TIME ZONE INTERVAL '{_pg_offset(fixed, True)}' HOUR TO MINUTE;"
    lines = [set_tz]
    for t in TABLES:
        if fmt == "ndjson":
            lines.append(f"\\copy (SELECT row_to_json(t) FROM {t} t) TO '{t}.ndjson'")
        else:
            lines.append(f"\\copy (SELECT * FROM {t}) TO '{t}.csv' WITH (FORMAT csv, HEADER)")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# The committed sample deployment


def _startup_lines(at: datetime, kind: str, ws_name: str) -> list[tuple[datetime, str, str]]:
    steps = [
        (0.0, "info", "==> Running startup script"),
        (0.4, "info", "Installing code-server 4.99.4, this can take a minute..."),
        (21.7, "info", "code-server has been installed in /tmp/code-server"),
        (22.1, "info", "Starting code-server on port 13337..."),
        (23.0, "info", 'Set "workbench.colorTheme" to "Default Dark Modern"'),
    ]
    if kind == "vm":
        steps.insert(1, (0.2, "warn", "WARNING: apt does not have a stable CLI interface."))
        steps.append((24.5, "info", f"Cloning into '/home/coder/{ws_name}'..."))
        steps.append((24.6, "info", r"PS1 set to '\u@\h:\w\$ '"))
    else:
        steps.append((24.5, "warn", "npm WARN deprecated\tinflight@1.0.6: leaks memory"))
    return [(at + timedelta(seconds=off), level, text) for off, level, text in steps]


def _healthy_agent(
    b: ScenarioBuilder,
    build: Build,
    *,
    booted: datetime,
    version="v2.31.11",
    api_version="2.4",
    **kw,
) -> tuple[Agent, dict[str, datetime]]:
    """An agent that connected `booted`, went starting -> ready, with its startup logs."""
    first = booted + timedelta(seconds=1, microseconds=182_093)
    started = first + timedelta(milliseconds=214, microseconds=87)
    ready = started + timedelta(seconds=26, microseconds=530_113)
    kw.setdefault("lifecycle_state", "ready")
    ag = b.agent(
        build,
        first_connected_at=first,
        started_at=started,
        ready_at=ready,
        version=version,
        api_version=api_version,
        **kw,
    )
    b.agent_logs(
        ag,
        _startup_lines(
            started + timedelta(milliseconds=300),
            build.workspace.template.kind,
            build.workspace.name,
        ),
    )
    return ag, {"first": first, "started": started, "ready": ready}


def _boot_log(
    lf: AgentLogFile,
    ag: Agent,
    times: dict[str, datetime],
    *,
    booted,
    version,
    auth,
    style=None,
    **manifest_kw,
) -> None:
    """A fresh process: start, connect, manifest, starting -> ready."""
    lf.start(booted, version=version, auth=auth)
    lf.connecting(booted + timedelta(milliseconds=212))
    lf.manifest(times["first"] + timedelta(milliseconds=41), ag, style=style, **manifest_kw)
    lf.lifecycle(times["started"], "starting")
    lf.lifecycle(times["ready"], "ready")


# Crafted agent ids whose 16 bytes exercise every prototext/strconv.Quote escape:
# '"', '\\', printable ASCII, U+00E9, DEL, U+0085 (C1 -> \u0085), U+20AC, U+1F600 ...
INCIDENT_AGENT_ID = uuid.UUID("225c41c3-a97f-4ec2-85e2-82acf09f9880")
# ... and \n, \t, \r, NUL, "'", "=", " ", a lone continuation byte, "}", ":", U+0416,
# NBSP (kept by prototext, \u00a0 after strconv.Quote), 0xff.
WEB_AGENT_ID = uuid.UUID("0a090d00-273d-4020-bf7d-3ad096c2a0ff")

SAMPLE_EXPORTED_AT = datetime(2026, 5, 15, 14, 0, tzinfo=UTC)


def sample_scenario() -> Scenario:
    """The deployment committed under sample_data/ (see sample_data/README.md)."""
    d = lambda *a: datetime(*a, tzinfo=UTC)  # noqa: E731
    sec = lambda s: timedelta(seconds=s)  # noqa: E731
    b = ScenarioBuilder(seed=18571, start=d(2026, 3, 2, 14, 0))
    admin = b.user(
        "coderadmin",
        at=d(2026, 3, 2, 14, 0),
        name="Coder Admin",
        roles=["owner"],
        last_seen_at=d(2026, 5, 15, 13, 41, 7, 331_208),
    )
    rwyrick = b.user(
        "rwyrick",
        at=d(2026, 3, 3, 15, 12, 44, 120_331),
        login_type="github",
        name="R. Wyrick",
        last_seen_at=d(2026, 5, 15, 13, 58, 2, 90_112),
    )
    rwyrick.avatar_url, rwyrick.github_id = (
        "https://avatars.githubusercontent.com/u/4821937?v=4",
        4821937,
    )
    alice = b.user(
        "alice",
        at=d(2026, 3, 4, 13, 2, 9, 554_000),
        login_type="oidc",
        name="Alice Ng",
        last_seen_at=d(2026, 5, 15, 13, 12, 40, 5),
    )
    alice.quiet_hours = "CRON_TZ=America/New_York 0 2 * * *"
    mchen = b.user(
        "mchen",
        at=d(2026, 3, 9, 16, 45, 0, 17_400),
        name="Mei Chen",
        last_seen_at=d(2026, 5, 15, 12, 20, 3, 400_000),
    )
    jdoe = b.user(
        "jdoe",
        at=d(2026, 4, 1, 12, 0, 30, 250_000),
        name="Jordan Doe, Jr.",
        last_seen_at=d(2026, 5, 15, 10, 31, 55, 18),
    )
    prebuilds = b.user(
        "prebuilds",
        at=d(2026, 4, 2, 9, 0),
        user_id=PREBUILDS_USER_ID,
        email="prebuilds@system",
        name="Prebuilds Owner",
        login_type="none",
        is_system=True,
    )

    gce = b.template(
        "gce-vm",
        at=d(2026, 4, 20, 15, 0),
        created_by=admin,
        display_name="GCE VM",
        description="Long-lived GCE VMs, suspended on stop",
        readme="---\ndisplay_name: GCE VM\nicon: /icon/gcp.png\n---\n\n# GCE VM\n\n"
        "A Compute Engine VM per workspace. Stopping a workspace *suspends* the VM, so RAM,\n"
        "running processes and the agent survive until the next start.\n",
        message='Suspend on stop (desired_status = "SUSPENDED"), keep RAM',
    )
    k8s = b.template(
        "k8s-pod",
        at=d(2026, 4, 22, 15, 30),
        created_by=admin,
        display_name="Kubernetes Pod",
        description="Ephemeral pods, persistent home volume",
        readme="# Kubernetes Pod\n\nOne pod per workspace start; /home/coder is a PVC.\n",
    )
    vm_auth, pod_auth = "google-instance-identity", "token"
    meta: dict[str, Any] = {"logs": {}}

    # 3. api: one long-lived VM agent that reconnects twice to the same row.
    api = b.workspace(
        "api",
        alice,
        gce,
        at=d(2026, 5, 6, 12, 58),
        ttl_hours=None,
        last_used_at=d(2026, 5, 15, 13, 12, 30, 2_000),
    )
    bld = b.build(api, "start", at=d(2026, 5, 6, 13, 0))
    boot = d(2026, 5, 6, 13, 0, 51, 630_000)
    ag, tm = _healthy_agent(
        b,
        bld,
        booted=boot,
        version="v2.30.4",
        last_connected_at=d(2026, 5, 15, 13, 59, 48, 712_004),
        disconnected_at=d(2026, 5, 13, 18, 40, 11, 84_223),
    )
    lf = b.log("logs/api-vm/coder-agent.log")
    _boot_log(lf, ag, tm, booted=boot, version="v2.30.4", auth=vm_auth)
    lf.chatter(tm["ready"], d(2026, 5, 9, 3, 12), 14)
    lf.disconnected(d(2026, 5, 9, 3, 12, 5, 4_100))  # coderd rolling restart
    lf.connecting(d(2026, 5, 9, 3, 12, 6, 11_000))
    lf.manifest(d(2026, 5, 9, 3, 12, 9, 310_500), ag)
    lf.chatter(d(2026, 5, 9, 3, 13), d(2026, 5, 13, 18, 40), 14)
    lf.run_error(d(2026, 5, 13, 18, 40, 11, 83_000), "network")
    lf.connecting(d(2026, 5, 13, 18, 40, 13, 90_000))
    lf.manifest(d(2026, 5, 13, 18, 40, 19, 455_020), ag)
    lf.chatter(d(2026, 5, 13, 18, 41), d(2026, 5, 15, 13, 59), 10)
    meta["logs"]["api"] = lf.path

    # 6. old-proj: deleted pod workspace; start (ready, then off at stop), stop, delete.
    old = b.workspace(
        "old-proj",
        mchen,
        k8s,
        at=d(2026, 5, 4, 13, 55),
        deleted=True,
        last_used_at=d(2026, 5, 4, 21, 40, 12, 5_000),
    )
    bld = b.build(old, "start", at=d(2026, 5, 4, 14, 0))
    boot = bld.job.completed_at + sec(6.27)
    ag, tm = _healthy_agent(
        b, bld, booted=boot, deleted=True, disconnected_at=d(2026, 5, 4, 22, 0, 9, 150_000)
    )
    ag.lifecycle_state = "off"
    ag.last_connected_at = d(2026, 5, 4, 22, 0, 8, 901_200)
    ag.updated_at = ag.disconnected_at
    lf = b.log("logs/old-proj-pod/coder-agent.log")
    _boot_log(lf, ag, tm, booted=boot, version="v2.31.11", auth=pod_auth)
    lf.chatter(tm["ready"], d(2026, 5, 4, 21, 59), 12)
    b.build(old, "stop", at=d(2026, 5, 4, 22, 0))
    lf.shutdown(d(2026, 5, 4, 22, 0, 7, 402_300))
    b.build(old, "delete", at=d(2026, 5, 11, 16, 0))
    meta["logs"]["old-proj"] = lf.path

    # 1. THE INCIDENT: ml-train on a suspend-on-stop VM; one agent process across 3 builds.
    ml = b.workspace(
        "ml-train",
        rwyrick,
        gce,
        at=d(2026, 5, 12, 13, 18, 2, 500_000),
        ttl_hours=None,
        autostart_schedule="CRON_TZ=America/New_York 30 8 * * 1-5",
        next_start_at=d(2026, 5, 18, 12, 30),
        last_used_at=d(2026, 5, 15, 13, 57, 10, 441_002),
    )
    b1 = b.build(ml, "start", at=d(2026, 5, 12, 13, 20), reason="cli")
    boot = d(2026, 5, 12, 13, 20, 58, 214_379)
    suspend = d(2026, 5, 12, 20, 5, 31, 770_401)
    row_a, tm = _healthy_agent(
        b,
        b1,
        booted=boot,
        last_connected_at=suspend - sec(10),
        disconnected_at=suspend + sec(0.0124),
    )
    b2 = b.build(ml, "stop", at=d(2026, 5, 12, 20, 5), reason="cli")
    b.agent(b2)  # the coder_agent resource exists in every transition; never connects
    b3 = b.build(ml, "start", at=d(2026, 5, 13, 23, 9, 40), reason="cli")
    resume = d(2026, 5, 13, 23, 10, 0, 0)
    first_b = d(2026, 5, 13, 23, 10, 22, 61_880)
    row_b = b.agent(
        b3,
        id=INCIDENT_AGENT_ID,
        first_connected_at=first_b,
        last_connected_at=d(2026, 5, 15, 13, 59, 51, 270_019),
    )
    lf = b.log("logs/ml-train-vm/coder-agent.log")
    _boot_log(lf, row_a, tm, booted=boot, version="v2.31.11", auth=vm_auth)
    lf.chatter(tm["ready"], suspend - sec(60), 30)
    lf.disconnected(suspend)
    lf.rotate(resume)  # -> coder-agent-2026-05-13T23-10-00.000.log.gz
    lf.connecting(resume + timedelta(microseconds=312))
    lf.run_error(resume + sec(0.4127), 401)
    lf.connecting(d(2026, 5, 13, 23, 10, 21, 300_115))
    lf.manifest(first_b + sec(0.0402), row_b)
    lf.chatter(first_b + sec(2), d(2026, 5, 15, 13, 59), 24)
    meta["logs"]["ml-train"] = lf.path

    # 2. web: ephemeral pods; each start build has its own fresh agent process.
    web = b.workspace(
        "web",
        alice,
        k8s,
        at=d(2026, 5, 14, 12, 59, 1, 4),
        last_used_at=d(2026, 5, 15, 13, 11, 59, 880_000),
    )
    bld = b.build(web, "start", at=d(2026, 5, 14, 13, 0))
    boot = bld.job.completed_at + sec(4.881)
    stop_at = d(2026, 5, 14, 20, 15)
    ag, tm = _healthy_agent(
        b,
        bld,
        booted=boot,
        version="v2.9.4",
        api_version="2.0",
        last_connected_at=stop_at + sec(3.2),
        disconnected_at=stop_at + sec(14.52),
    )
    lf = b.log("logs/web-pod-1/coder-agent.log")
    _boot_log(lf, ag, tm, booted=boot, version="v2.9.4", auth=pod_auth)
    lf.chatter(tm["ready"], stop_at + sec(12), 12)  # pod killed at stop: the log just ends
    meta["logs"]["web#1"] = lf.path
    b.build(web, "stop", at=stop_at)
    bld = b.build(web, "start", at=d(2026, 5, 15, 8, 30))
    boot = bld.job.completed_at + sec(5.604)
    ag, tm = _healthy_agent(
        b, bld, booted=boot, id=WEB_AGENT_ID, last_connected_at=d(2026, 5, 15, 13, 59, 40, 2_201)
    )
    lf = b.log("logs/web-pod-2/coder-agent.log")
    _boot_log(lf, ag, tm, booted=boot, version="v2.31.11", auth=pod_auth)
    lf.chatter(tm["ready"], d(2026, 5, 15, 13, 59), 14)
    meta["logs"]["web#3"] = lf.path

    # 4. prebuild-claimed: one process, reinitialized by the claim; rows P and Q share a token.
    pre = b.workspace(
        "prebuild-claimed",
        jdoe,
        k8s,
        at=d(2026, 5, 15, 6, 0),
        last_used_at=d(2026, 5, 15, 10, 58, 3, 3),
    )
    preset = str(b.uuid())
    b1 = b.build(
        pre,
        "start",
        at=d(2026, 5, 15, 6, 0, 0, 117_000),
        initiator=prebuilds,
        preset_id=preset,
        prebuild_stage=1,
    )
    boot = b1.job.completed_at + sec(7.12)
    claim_done = d(2026, 5, 15, 10, 30, 40)
    row_p, tm = _healthy_agent(
        b,
        b1,
        booted=boot,
        last_connected_at=claim_done + sec(0.5),
        disconnected_at=claim_done + sec(0.744),
    )
    b2 = b.build(
        pre, "start", at=claim_done - sec(40), initiator=jdoe, preset_id=preset, prebuild_stage=2
    )
    reinit = claim_done + sec(0.6031)
    row_q, tm_q = _healthy_agent(
        b,
        b2,
        booted=reinit,
        auth_token=row_p.auth_token,
        last_connected_at=d(2026, 5, 15, 13, 59, 44, 90),
    )
    lf = b.log("logs/prebuild-claimed-pod/coder-agent.log")
    _boot_log(
        lf,
        row_p,
        tm,
        booted=boot,
        version="v2.31.11",
        auth=pod_auth,
        owner_name="prebuilds",
        workspace_name="k8s-pod-pb-7f3a9",
    )
    lf.chatter(tm["ready"], claim_done - sec(30), 8)
    lf.reinit(reinit, pre.id)
    lf.connecting(reinit + sec(0.011))
    lf.manifest(tm_q["first"] + sec(0.041), row_q)
    lf.lifecycle(tm_q["started"], "starting")
    lf.lifecycle(tm_q["ready"], "ready")
    lf.chatter(tm_q["ready"], d(2026, 5, 15, 13, 59), 8)
    meta["logs"]["prebuild-claimed"] = lf.path

    # 7. data-pipe: a failed start build (no resources, no agents), then a good one.
    dp = b.workspace(
        "data-pipe",
        jdoe,
        k8s,
        at=d(2026, 5, 15, 8, 59, 30),
        last_used_at=d(2026, 5, 15, 9, 40, 1, 1),
    )
    b.build(
        dp,
        "start",
        at=d(2026, 5, 15, 9, 0),
        job_status="failed",
        error=(
            'terraform apply failed:\nError: creating pod: pods "coder-jdoe-data-pipe" is '
            "forbidden: exceeded quota: compute-resources, requested: limits.cpu=4, used: "
            "limits.cpu=14, limited: limits.cpu=16, code 3"
        ),
    )
    bld = b.build(dp, "start", at=d(2026, 5, 15, 9, 4, 12))
    _healthy_agent(
        b,
        bld,
        booted=bld.job.completed_at + sec(6.9),
        last_connected_at=d(2026, 5, 15, 13, 59, 39, 4),
    )

    # 5. broken-boot: the VM never ran the agent.
    bb = b.workspace("broken-boot", mchen, gce, at=d(2026, 5, 15, 12, 9, 40))
    bld = b.build(bb, "start", at=d(2026, 5, 15, 12, 10))
    b.agent(bld)

    scn = b.build_scenario(exported_at=SAMPLE_EXPORTED_AT)
    scn.meta.update(meta)
    scn.meta["expected_flags"] = {
        ("ml-train", 3, "main"): [
            "survived-build-boundary",
            "lifecycle-stuck-created",
            "instance-identity-rebinding",
        ],
        ("ml-train", 1, "main"): ["previous-agent-not-shut-down"],
    }
    return scn
