"""Generate a Coder export at deployment scale: millions of rows and gigabytes of agent logs.

`forensics.synth` builds small deployments object by object; this module writes large ones in
minutes and in bounded memory, for the benchmarks (benchmarks/run.py) and the scale tests:

* The tables come out of DuckDB: every row is a pure function of its index and the seed
  (`hash(i, seed)` gives each value and each UUID), rendered by `COPY (SELECT ...) TO` as
  `psql \\copy ... WITH (FORMAT csv, HEADER)` writes it, columns as in Coder's schema
  (tests/pg_schema.sql), timestamps with psql's offsets. Nothing is held in Python.
* The agent logs are streamed per host: a few structured lines per agent process (start,
  `fetched manifest`, lifecycle, reconnects, shutdown), rendered by `forensics.synth` exactly as
  the agent writes them, merged into noise (tailnet, magicsock, wireguard, SSH sessions, stats)
  that Polars builds in blocks from a pool of rendered lines. A host's log that outgrows
  `rotate_bytes` leaves gzip'd `coder-agent-<time>.log.gz` backups, as lumberjack does.
* Planted: `incidents` workspaces with the coder/coder#18571 incident (a VM suspended on stop
  and resumed: build #1 start ready, #2 stop, #3 start whose agent row stays `created`, one
  agent process serving #1's then #3's row) and look-alikes that must not be flagged
  (ephemeral pods, one agent row reconnecting). Their rows, ids, names and log files depend
  only on the seed and their number, never on the size, so their findings are identical at
  every size.

`generate()` returns what it wrote and what `forensics analyze` must find (`Generated`), and
also leaves it in `<out_dir>/.generated.json` (a dot file: `analyze` does not read it).
Run `python -m forensics.generate --help` for the command-line entry.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import random
import re
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import duckdb
import polars as pl

from forensics.synth import (
    _CHATTER,
    GO_ZERO,
    PREBUILDS_USER_ID,
    Agent,
    AgentLogFile,
    ScenarioBuilder,
    _manifest_json,
    _manifest_proto,
    _Raw,
    go_json,
    pg_timestamp,
    prototext,
    slog_line,
)

__all__ = ["EXPORTED_AT", "Generated", "Planted", "generate", "parse_count", "parse_size"]

# Bump when what generate() writes for the same parameters changes: cached dumps are redone.
FORMAT_VERSION = 2
EXPORTED_AT = datetime(2026, 5, 20, tzinfo=UTC)  # the export's moment: no row is newer
HISTORY_DAYS = 730  # workspaces were created over the two years before the export
MIB = 1024 * 1024
ACCESS_URL = "https://coder.example.com"
ORG_ID = "5b1e7c52-0a8d-4a63-9c55-8b3e2f0d9a11"
TEMPLATE_KEY = 10**13  # key ranges: templates, then planted workspaces and their owners
PLANTED_KEY = {"incident": 10**12, "pods": 2 * 10**12, "reconnect": 3 * 10**12}
VERSIONS_PER_TEMPLATE = 3
PLANTED_NOISE = 150  # noise lines per process span in a planted host's log (about 16 kB)

# name, kind, agent auth, host resource on start (type, name), on stop, instance type, icon.
# The last one is the incident's: a GCE VM suspended on stop, so its agent process survives.
TEMPLATES = [
    ("gce-vm", "vm", "google-instance-identity", "google_compute_instance", "dev",
     "google_compute_instance", "dev", "e2-standard-4", "/icon/gcp.png"),
    ("aws-ec2", "vm", "aws-instance-identity", "aws_instance", "dev",
     "aws_instance", "dev", "t3.xlarge", "/icon/aws.png"),
    ("azure-vm", "vm", "azure-instance-identity", "azurerm_linux_virtual_machine", "main",
     "azurerm_linux_virtual_machine", "main", "Standard_D4s_v5", "/icon/azure.png"),
    ("k8s-pod", "pod", "token", "kubernetes_pod", "main",
     "kubernetes_persistent_volume_claim", "home", None, "/icon/k8s.png"),
    ("k8s-gpu", "pod", "token", "kubernetes_pod", "main",
     "kubernetes_persistent_volume_claim", "home", None, "/icon/k8s.png"),
    ("docker", "pod", "token", "docker_container", "workspace",
     "docker_volume", "home", None, "/icon/docker.png"),
    ("gce-vm-suspend", "vm", "google-instance-identity", "google_compute_instance", "dev",
     "google_compute_instance", "dev", "n2-standard-8", "/icon/gcp.png"),
]  # fmt: skip
BACKGROUND_TEMPLATES = 6  # the incident template is used by planted workspaces only
INCIDENT_TEMPLATE, PODS_TEMPLATE, RECONNECT_TEMPLATE = 6, 3, 0
# Agent versions in the fleet, newest most common; before v2.10 manifests are logged as JSON.
AGENT_VERSIONS = ["v2.31.11", "v2.31.11", "v2.31.11", "v2.30.4", "v2.30.4", "v2.29.2",
                  "v2.24.1", "v2.9.4"]  # fmt: skip
WORKSPACE_NAMES = ["dev", "api", "web", "ml", "data", "build", "sandbox", "gpu", "docs",
                   "infra", "mobile", "backend"]  # fmt: skip
FIRST_NAMES = ["alice", "bob", "chen", "dana", "emeka", "farah", "goran", "hana", "ivan",
               "jules", "kofi", "lena", "mateo", "nadia", "omar", "priya", "quinn", "rosa",
               "sven", "tariq", "uma", "vera", "wei", "yusuf", "zoe"]  # fmt: skip
STARTUP_OUTPUT = [
    (0.3, "info", "==> Running startup script"),
    (0.7, "info", "Installing code-server 4.99.4, this can take a minute..."),
    (21.9, "info", "code-server has been installed in /tmp/code-server"),
    (22.4, "info", "Starting code-server on port 13337..."),
    (23.1, "warn", "npm WARN deprecated\tinflight@1.0.6: leaks memory"),
    (24.6, "info", "Cloning into '/home/coder/project'..."),
]
# Noise beyond synth's chatter: keepalives, route changes, and an SSH error whose value spans
# lines (slog writes it as a trailing block, which the parser joins back onto its entry).
EXTRA_CHATTER = [
    ("debug", "net.tailnet.net.wgengine", "wg: [v2] [{peer}] - Receiving keepalive packet", ()),
    ("debug", "net.tailnet.net.wgengine", "wg: [v2] [{peer}] - Sending keepalive packet", ()),
    ("debug", "net.tailnet.net.wgengine", "magicsock: endpoints changed: {ip}:41641 (stun)", ()),
    ("debug", "net.tailnet", "wgengine: Reconfig: configuring DNS", ()),
    ("info", "ssh-server", "ssh session ended", (("session", "{sid}"), ("exit_code", 1))),
]
MULTILINE_CHATTER = (
    "warn",
    "ssh-server",
    "ssh session returned",
    (
        ("session", "{sid}"),
        (
            "error",
            "process exited with error: exit status 130\n  signal: interrupt\n"
            "  command: /bin/bash -l",
        ),
    ),
)


def parse_count(text: str | int) -> int:
    """`10k`, `1M`, `2.5m`, `1_000` -> an integer."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([\d_.]+)\s*([kKmMgG]?)\s*", text)
    if not m:
        raise ValueError(f"not a count: {text!r} (e.g. 10k, 1M)")
    scale = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}[m.group(2).lower()]
    return int(float(m.group(1).replace("_", "")) * scale)


def parse_size(text: str | int) -> int:
    """`100MB`, `1GB`, `5GiB`, `512k`, `1000` -> bytes (MB and GB are decimal, MiB binary)."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([\d_.]+)\s*([kKmMgGtT]?)(i?)[bB]?\s*", text)
    if not m:
        raise ValueError(f"not a size: {text!r} (e.g. 100MB, 1GB, 5GiB)")
    base = 1024 if m.group(3) else 1000
    power = " kmgt".index(m.group(2).lower() or " ")
    return int(float(m.group(1).replace("_", "")) * base**power)


@dataclass
class Planted:
    """One planted workspace: what it is, its ids, and the findings it must (not) give."""

    scenario: str  # incident | pods | reconnect
    workspace: str
    workspace_id: str
    agents: dict[int, str]  # build number -> agent id
    hosts: list[str]  # log directories, relative to the dump
    expected: list[tuple[str, str, int, str]]  # (rule, workspace, build number, agent id)


@dataclass
class Generated:
    """What `generate()` wrote."""

    out_dir: str
    params: dict[str, Any]
    tables: dict[str, int] = field(default_factory=dict)  # rows per table file
    table_bytes: int = 0
    workspaces: int = 0
    log_files: int = 0
    gz_log_files: int = 0
    hosts: int = 0
    log_bytes: int = 0  # uncompressed, as parsed
    log_disk_bytes: int = 0
    log_lines: int = 0
    planted: list[Planted] = field(default_factory=list)
    table_seconds: float = 0.0
    log_seconds: float = 0.0

    @property
    def expected(self) -> set[tuple[str, str, int, str]]:
        """(rule, workspace, build number, fingerprint) of every finding analyze must give."""
        return {
            (rule, ws, build, fingerprint(rule, agent))
            for p in self.planted
            for rule, ws, build, agent in p.expected
        }


def fingerprint(rule: str, agent_id: str) -> str:
    """The fingerprint forensics gives a finding (forensics.engine._finding)."""
    return hashlib.sha256(f"{rule}|{agent_id}".encode()).hexdigest()[:16]


def generate(
    out_dir: str | Path,
    builds: int | str = 10_000,
    log_bytes: int | str = 100 * 10**6,
    incidents: int = 5,
    seed: int = 1,
    fmt: str = "csv",
    *,
    lookalikes: int = 3,
    builds_per_workspace: int = 20,
    host_bytes: int = 3 * MIB,
    rotate_bytes: int = 4 * MIB,
    tz: str = "UTC",
    startup_logs: bool = True,
) -> Generated:
    """Write a dump: `out_dir/db/<table>.csv` and `out_dir/logs/<host>/coder-agent*.log*`.

    `builds` workspace builds in all (about `builds_per_workspace` per workspace, start and
    stop alternating), one agent row per successful start or stop build, and agent logs of
    about `log_bytes` bytes uncompressed, from hosts of about `host_bytes` each. `incidents`
    workspaces hold the #18571 incident and `lookalikes` of each look-alike kind are planted;
    their logs (about 40 kB per planted workspace) count towards `log_bytes`.
    fmt: csv | csv.gz. tz: the psql session's time zone the timestamps are written in.
    """
    if fmt not in ("csv", "csv.gz"):
        raise ValueError(f"fmt must be csv or csv.gz, not {fmt!r}")
    if not 0 <= incidents <= 500 or not 0 <= lookalikes <= 500:
        raise ValueError("incidents and lookalikes must be between 0 and 500")
    if not re.fullmatch(r"[A-Za-z0-9_/+:-]+", tz):
        raise ValueError(f"not a time zone: {tz!r}")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty")
    builds, log_bytes = parse_count(builds), parse_size(log_bytes)
    params = {
        "builds": builds,
        "log_bytes": log_bytes,
        "incidents": incidents,
        "seed": seed,
        "fmt": fmt,
        "lookalikes": lookalikes,
        "builds_per_workspace": builds_per_workspace,
        "host_bytes": host_bytes,
        "rotate_bytes": rotate_bytes,
        "tz": tz,
        "startup_logs": startup_logs,
    }
    result = Generated(out_dir=str(out), params=params)
    (out / "db").mkdir(parents=True)
    (out / "logs").mkdir()
    with tempfile.TemporaryDirectory(prefix="forensics-generate-") as tmp:
        con = duckdb.connect(config={"memory_limit": "1GB", "temp_directory": tmp})
        con.execute("SET enable_progress_bar = false")
        try:
            t = time.perf_counter()
            planted_rows = _planted_workspaces(incidents, lookalikes)
            _define(con, builds, seed, builds_per_workspace, planted_rows)
            _write_tables(con, out / "db", fmt, tz, startup_logs, result)
            result.table_seconds = time.perf_counter() - t
            t = time.perf_counter()
            _write_logs(con, out / "logs", seed, log_bytes, host_bytes, rotate_bytes, result)
            result.log_seconds = time.perf_counter() - t
        finally:
            con.close()
    doc = {"format_version": FORMAT_VERSION, **asdict(result)}
    doc["expected_findings"] = sorted(result.expected)
    (out / ".generated.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return result


# --------------------------------------------------------------------------------------
# Tables


def _planted_workspaces(incidents: int, lookalikes: int) -> list[tuple[Any, ...]]:
    """(key, scenario, name, template, first build's time, builds' offsets in seconds)."""
    rows = []
    day, hour = 86_400, 3_600
    for k in range(incidents):  # builds #1 start, #2 stop 5 h later, #3 start the next day
        t0 = EXPORTED_AT - timedelta(days=3, minutes=-2 * k)
        key, name = PLANTED_KEY["incident"] + k, f"incident-vm-{k + 1:03d}"
        rows.append((key, "incident", name, INCIDENT_TEMPLATE, t0, [0, 5 * hour, day]))
    for k in range(lookalikes):
        t0 = EXPORTED_AT - timedelta(days=5, minutes=-2 * k)
        key, name = PLANTED_KEY["pods"] + k, f"lookalike-pods-{k + 1:03d}"
        rows.append((key, "pods", name, PODS_TEMPLATE, t0, [0, 5 * hour, day]))
        key, name = PLANTED_KEY["reconnect"] + k, f"lookalike-reconnect-{k + 1:03d}"
        rows.append((key, "reconnect", name, RECONNECT_TEMPLATE, t0, [0]))
    return rows


def _ts(dt: datetime) -> str:
    return f"TIMESTAMPTZ '{dt.astimezone(UTC):%Y-%m-%d %H:%M:%S.%f}+00'"


def _define(
    con: duckdb.DuckDBPyConnection,
    builds: int,
    seed: int,
    per_workspace: int,
    planted: list[tuple[Any, ...]],
) -> None:
    """Create the relations every table is selected from: `ws` (one row per workspace, small)
    and the views `bld` (one row per build) and `ag` (one row per agent row), computed on the
    fly from `ws` whenever a table is written."""
    con.execute("SET TimeZone = 'UTC'")
    seed = int(seed)
    con.execute(
        f"""
        CREATE MACRO h(a, b, c) AS hash(a, b, c, {seed});
        CREATE MACRO pct(a, b, c) AS CAST(hash(a, b, c, {seed}) % 1000000 AS DOUBLE) / 1e6;
        CREATE MACRO uid(a, b, c) AS CAST(
            ((((hash(a, b, c, {seed})::UHUGEINT) << 64) | hash(c, b, a, {seed} + 1)::UHUGEINT)
             & ~((15::UHUGEINT << 76) | (3::UHUGEINT << 62)))
            | (4::UHUGEINT << 76) | (2::UHUGEINT << 62) AS UUID);
        CREATE MACRO secs(x) AS to_microseconds(CAST(round(x * 1e6) AS BIGINT));
        CREATE MACRO hexof(a, b, c) AS printf('%016x', hash(a, b, c, {seed}));
        """
    )
    planted_builds = sum(len(p[5]) for p in planted)
    background = max(builds - planted_builds, 0)
    per_workspace = max(per_workspace, 1)
    # Builds per workspace are 1 .. 2*per_workspace-1 (mean per_workspace); the workspaces are
    # numbered until their builds add up to exactly `background`.
    count = max(int(background / per_workspace * 1.3) + 64, 64)
    while True:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE bg AS
            WITH raw AS (
                SELECT w AS key, 1 + CAST(h(w, 0, 'n') % {2 * per_workspace - 1} AS BIGINT) AS n0
                FROM range({count}) t(w)
            ), cum AS (SELECT key, n0, sum(n0) OVER (ORDER BY key) AS c FROM raw)
            SELECT key, CAST(least(n0, {background} - (c - n0)) AS BIGINT) AS n, c FROM cum
            WHERE c - n0 < {background}"""
        )
        reached = con.execute("SELECT coalesce(max(c), 0) FROM bg").fetchone()
        if background == 0 or (reached and reached[0] >= background):
            break
        count *= 2
    n_ws = con.execute("SELECT count(*) FROM bg").fetchone()[0]  # type: ignore[index]
    users = max(3, math.ceil(n_ws / 3))
    start = EXPORTED_AT - timedelta(days=HISTORY_DAYS)
    last_created = EXPORTED_AT - timedelta(days=30)
    builds_end = EXPORTED_AT - timedelta(days=1)
    span_us = int((last_created - start) / timedelta(microseconds=1))
    con.execute(
        """CREATE TEMP TABLE planted (key BIGINT, scenario VARCHAR, name VARCHAR, tpl INTEGER,
           t0 TIMESTAMPTZ, offsets BIGINT[])"""
    )
    if planted:
        con.executemany("INSERT INTO planted VALUES (?, ?, ?, ?, ?, ?)", planted)
    names = "[" + ", ".join(f"'{n}'" for n in WORKSPACE_NAMES) + "]"
    versions = "[" + ", ".join(f"'{v}'" for v in AGENT_VERSIONS) + "]"
    con.execute(
        f"""CREATE TEMP TABLE ws AS
        WITH b AS (
            SELECT key, n,
                   {_ts(start)} + to_microseconds(CAST(h(key, 0, 'created') % {span_us} AS BIGINT))
                       AS created
            FROM bg
        )
        SELECT key, 'background' AS scenario,
               {names}[1 + CAST(h(key, 0, 'name') % {len(WORKSPACE_NAMES)} AS INTEGER)]
                   || '-' || CAST(key AS VARCHAR) AS name,
               CAST(h(key, 0, 'tpl') % {BACKGROUND_TEMPLATES} AS INTEGER) AS tpl,
               CAST(h(key, 0, 'owner') % {users} AS BIGINT) AS owner,
               created, n,
               CAST((epoch_us({_ts(builds_end)}) - epoch_us(created)) / n AS BIGINT) AS step_us,
               NULL::BIGINT[] AS offsets,
               n >= 2 AND h(key, 0, 'deleted') % 20 = 0 AS deleted,
               {versions}[1 + CAST(h(key, 0, 'version') % {len(AGENT_VERSIONS)} AS INTEGER)]
                   AS version
        FROM b
        UNION ALL
        SELECT key, scenario, name, tpl, key AS owner, t0 AS created, len(offsets) AS n,
               NULL AS step_us, offsets, false AS deleted, 'v2.31.11' AS version
        FROM planted"""
    )
    con.execute(f"CREATE TEMP TABLE facts AS SELECT {users} AS users")
    tpl_rows = [
        (i, name, kind, auth, rt, rn, st, sn, itype, icon)
        for i, (name, kind, auth, rt, rn, st, sn, itype, icon) in enumerate(TEMPLATES)
    ]
    con.execute(
        """CREATE TEMP TABLE tpl (tpl INTEGER, name VARCHAR, kind VARCHAR, auth VARCHAR,
           start_type VARCHAR, start_name VARCHAR, stop_type VARCHAR, stop_name VARCHAR,
           instance_type VARCHAR, icon VARCHAR)"""
    )
    con.executemany("INSERT INTO tpl VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", tpl_rows)
    exported = _ts(EXPORTED_AT)
    # One row per build. Background builds are spread evenly over the workspace's life with
    # jitter; planted builds are at fixed offsets. Every value is a function of (key, j).
    con.execute(
        f"""CREATE VIEW bld AS
        WITH b AS (
            SELECT ws.*, j, t.kind, t.auth, t.start_type, t.start_name, t.stop_type,
                   t.stop_name, t.instance_type, t.icon,
                   CASE WHEN offsets IS NULL
                        THEN created + to_microseconds(
                            (j - 1) * step_us + CAST(h(key, j, 'jit') % (step_us // 2) AS BIGINT))
                        ELSE created + to_seconds(offsets[j]) END AS created_at,
                   CASE WHEN j = n THEN NULL
                        WHEN offsets IS NULL
                        THEN created + to_microseconds(
                            j * step_us + CAST(h(key, j + 1, 'jit') % (step_us // 2) AS BIGINT))
                        ELSE created + to_seconds(offsets[j + 1]) END AS next_created_at
            FROM ws JOIN tpl t ON t.tpl = ws.tpl, range(1, ws.n + 1) r(j)
        )
        SELECT *,
               CASE WHEN deleted AND j = n THEN 'delete' WHEN j % 2 = 1 THEN 'start'
                    ELSE 'stop' END AS transition,
               scenario = 'background' AND j % 2 = 1 AND j < n
                   AND h(key, j, 'fail') % 100 = 0 AS failed,
               CASE WHEN scenario = 'background' THEN created_at + secs(1 + 2 * pct(key, j, 'js'))
                    ELSE created_at + to_seconds(2) END AS job_started_at,
               CASE WHEN scenario = 'background' THEN created_at + secs(20 + 70 * pct(key, j, 'jc'))
                    ELSE created_at + to_seconds(40) END AS job_completed_at,
               uid(key, j, 'build') AS build_id,
               uid(key, j, 'job') AS job_id,
               uid(key, 0, 'ws') AS workspace_id,
               uid(owner, 0, 'user') AS owner_id,
               uid({TEMPLATE_KEY} + tpl, CAST(h(key, j, 'tv') % {VERSIONS_PER_TEMPLATE} AS BIGINT),
                   'tv') AS template_version_id
        FROM b"""
    )
    # One agent row per successful start or stop build, on the build's host resource. Start
    # rows connected and reached 'ready'; those of builds followed by a stop were shut down
    # ('off'). Stop rows were never connected. The incident's build #1 row was frozen at the
    # stop (still 'ready') and its build #3 row was attached to but never left 'created'.
    con.execute(
        f"""CREATE VIEW ag AS
        WITH a AS (
            SELECT *,
                   transition = 'start' AS connected,
                   j = n AS is_last,
                   CASE WHEN scenario = 'background'
                        THEN job_completed_at + secs(CASE WHEN kind = 'vm' THEN 25 ELSE 4 END
                                                     + 35 * pct(key, j, 'boot'))
                        WHEN scenario = 'pods' THEN job_completed_at + to_seconds(7)
                        ELSE created_at + to_seconds(60) END AS boot
            FROM bld WHERE NOT failed AND transition <> 'delete'
        ), b AS (
            SELECT *,
                   CASE WHEN NOT connected THEN NULL
                        WHEN scenario = 'incident' AND j = 3 THEN created_at + to_seconds(70)
                        WHEN scenario = 'background'
                        THEN boot + secs(1.182093 + 0.3 * pct(key, j, 'fc'))
                        ELSE boot + to_seconds(2) END AS first_connected_at
            FROM a
        ), c AS (
            SELECT *,
                   CASE WHEN NOT connected OR (scenario = 'incident' AND j = 3) THEN NULL
                        WHEN scenario = 'background' THEN first_connected_at + secs(0.214087)
                        ELSE boot + to_seconds(3) END AS started_at,
                   CASE WHEN NOT connected OR (scenario = 'incident' AND j = 3) THEN NULL
                        WHEN scenario = 'background'
                        THEN first_connected_at + secs(0.214087 + 8 + 110 * pct(key, j, 'rd'))
                        ELSE boot + to_seconds(30) END AS ready_at
            FROM b
        )
        SELECT *,
               uid(key, j, 'agent') AS agent_id,
               uid(key, j, 'res') AS resource_id,
               CASE WHEN NOT connected THEN 'created'
                    WHEN scenario = 'incident' THEN CASE WHEN j = 1 THEN 'ready' ELSE 'created' END
                    WHEN is_last THEN 'ready' ELSE 'off' END AS lifecycle_state,
               CASE WHEN NOT connected THEN NULL
                    WHEN scenario = 'incident' AND j = 3 THEN {exported}
                    WHEN scenario = 'incident' THEN next_created_at
                    WHEN is_last AND scenario = 'reconnect' THEN {exported}
                    WHEN is_last THEN {exported} - secs(1 + 600 * pct(key, j, 'lc'))
                    ELSE next_created_at + secs(11) END AS last_connected_at,
               CASE WHEN NOT connected OR is_last THEN NULL
                    WHEN scenario = 'incident' THEN next_created_at + to_seconds(5)
                    ELSE next_created_at + secs(12.3) END AS disconnected_at,
               CASE WHEN kind = 'vm'
                    THEN CAST(1000000000000000000 + h(key, 0, 'instance') % 8000000000000000000
                              AS VARCHAR) END AS auth_instance_id,
               CASE WHEN regexp_matches(version, '^v2\\.[0-9]\\.') THEN '2.0' ELSE '2.4' END
                   AS api,
               transition = 'start' AND is_last AND scenario = 'background' AS has_startup_logs,
               CASE WHEN transition = 'start' THEN start_type ELSE stop_type END AS res_type,
               CASE WHEN transition = 'start' THEN start_name ELSE stop_name END AS res_name
        FROM c"""
    )


def _pg_zero(tz: str) -> str:
    """Go's zero time as psql prints it in the session's time zone."""
    return pg_timestamp(GO_ZERO, tz)


def _tables_sql(tz: str, startup_logs: bool) -> dict[str, str]:
    """One SELECT per table, columns in Coder's order, values as psql's CSV has them."""
    zero = _pg_zero(tz)
    exported = _ts(EXPORTED_AT)
    history = _ts(EXPORTED_AT - timedelta(days=HISTORY_DAYS + 60))
    t = "'t'"
    f = "'f'"
    apps = "'{vscode,vscode_insiders,web_terminal,ssh_helper,port_forwarding_helper}'"
    first = "[" + ", ".join(f"'{n}'" for n in FIRST_NAMES) + "]"
    replicas = "uid(0, CAST(h(key, j, 'replica') % 2 AS BIGINT), 'replica')"
    worker = "uid(0, 0, 'worker')"
    admin = "uid(CAST(0 AS BIGINT), 0, 'user')"
    tpl_key = f"({TEMPLATE_KEY} + tpl)"
    import_at = f"{history} + to_days(CAST(tpl * 3 + v * 20 AS INTEGER))"
    startup_bytes = sum(len(text.encode()) for _, _, text in STARTUP_OUTPUT)
    sql = {
        "users": f"""
            WITH people AS (
                SELECT u AS key,
                       CASE WHEN u = 0 THEN 'admin'
                            ELSE {first}[1 + CAST(h(u, 0, 'first') % {len(FIRST_NAMES)} AS INTEGER)]
                                 || CAST(u AS VARCHAR) END AS username,
                       {history} + to_seconds(CAST(h(u, 0, 'uc') % 40000000 AS BIGINT)) AS created
                FROM range((SELECT users FROM facts)) r(u)
                UNION ALL
                SELECT key, replace(name, '-vm-', '-') || '-owner', t0 - to_days(30) FROM planted
            )
            SELECT uid(key, 0, 'user') AS id, username || '@example.com' AS email, username,
                   '\\x243261243130' || hexof(key, 0, 'pw1') || hexof(key, 0, 'pw2')
                       AS hashed_password,
                   created AS created_at, created + to_days(1) AS updated_at, 'active' AS status,
                   CASE WHEN key = 0 THEN '{{owner}}' ELSE '{{}}' END AS rbac_roles,
                   ['password', 'github', 'oidc'][1 + CAST(h(key, 0, 'login') % 3 AS INTEGER)]
                       AS login_type,
                   '' AS avatar_url, {f} AS deleted,
                   CAST(timezone('UTC', {exported} - secs(86400 * pct(key, 0, 'seen')))
                        AS TIMESTAMP) AS last_seen_at,
                   '' AS quiet_hours_schedule, upper(username[1]) || username[2:] AS name,
                   NULL AS github_com_user_id, NULL AS hashed_one_time_passcode,
                   NULL AS one_time_passcode_expires_at, {f} AS is_system,
                   {f} AS is_service_account, NULL AS chat_spend_limit_micros
            FROM people
            UNION ALL
            SELECT '{PREBUILDS_USER_ID}', 'prebuilds@system', 'prebuilds', '\\x6e6f6e65',
                   {history}, {history}, 'active', '{{}}', 'none', '', {f},
                   TIMESTAMP '0001-01-01 00:00:00', '', 'Prebuilds Owner', NULL, NULL, NULL, {t},
                   {f}, NULL""",
        "templates": f"""
            SELECT uid({tpl_key}, 0, 'template') AS id, {history} AS created_at,
                   {history} + to_days(400) AS updated_at, '{ORG_ID}' AS organization_id,
                   {f} AS deleted, name, 'terraform' AS provisioner,
                   uid({tpl_key}, {VERSIONS_PER_TEMPLATE - 1}, 'tv') AS active_version_id,
                   '' AS description, 28800000000000 AS default_ttl, {admin} AS created_by,
                   icon, '{{}}' AS user_acl, '{{"{ORG_ID}": ["use"]}}' AS group_acl,
                   '' AS display_name, {t} AS allow_user_cancel_workspace_jobs,
                   {t} AS allow_user_autostart, {t} AS allow_user_autostop, 0 AS failure_ttl,
                   0 AS time_til_dormant, 0 AS time_til_dormant_autodelete,
                   0 AS autostop_requirement_days_of_week, 1 AS autostop_requirement_weeks,
                   0 AS autostart_block_days_of_week, {f} AS require_active_version,
                   '' AS deprecated, 3600000000000 AS activity_bump,
                   'owner' AS max_port_sharing_level, {f} AS use_classic_parameter_flow,
                   'simple' AS cors_behavior, {f} AS disable_module_cache
            FROM tpl ORDER BY tpl""",
        "template_versions": f"""
            SELECT uid({tpl_key}, v, 'tv') AS id, uid({tpl_key}, 0, 'template') AS template_id,
                   '{ORG_ID}' AS organization_id, {import_at} AS created_at,
                   {import_at} + to_seconds(25) AS updated_at,
                   name || '_v' || CAST(v + 1 AS VARCHAR) AS name,
                   '# ' || name || chr(10) || chr(10) || 'Template for ' || kind || 's.' AS readme,
                   uid({tpl_key}, v, 'import') AS job_id, {admin} AS created_by,
                   '[]' AS external_auth_providers, '' AS message, {f} AS archived,
                   NULL AS source_example_id, {f} AS has_ai_task, {f} AS has_external_agent
            FROM tpl, range({VERSIONS_PER_TEMPLATE}) r(v) ORDER BY tpl, v""",
        "provisioner_jobs": f"""
            SELECT uid({tpl_key}, v, 'import') AS id, {import_at} AS created_at,
                   {import_at} + to_seconds(25) AS updated_at,
                   {import_at} + to_seconds(1) AS started_at, NULL AS canceled_at,
                   {import_at} + to_seconds(25) AS completed_at, NULL AS error,
                   '{ORG_ID}' AS organization_id, {admin} AS initiator_id,
                   'terraform' AS provisioner, 'file' AS storage_method,
                   'template_version_import' AS type,
                   '{{"template_version_id": "' || CAST(uid({tpl_key}, v, 'tv') AS VARCHAR) || '"}}'
                       AS input,
                   {worker} AS worker_id, uid({tpl_key}, v, 'file') AS file_id,
                   '{{"owner": "", "scope": "organization"}}' AS tags, NULL AS error_code,
                   '{{}}' AS trace_metadata, 'succeeded' AS job_status, 4821 AS logs_length,
                   {f} AS logs_overflowed
            FROM tpl, range({VERSIONS_PER_TEMPLATE}) r(v)
            UNION ALL
            SELECT job_id, created_at, job_completed_at, job_started_at, NULL, job_completed_at,
                   CASE WHEN failed THEN 'terraform apply failed:' || chr(10)
                        || 'Error: googleapi: Error 503: The zone '
                        || '''projects/acme/zones/us-central1-a'' '
                        || 'does not have enough resources available to fulfill the request, '
                        || 'resourceExhausted' END,
                   '{ORG_ID}', owner_id, 'terraform', 'file', 'workspace_build',
                   '{{"dry_run": false, "workspace_build_id": "'
                       || CAST(build_id AS VARCHAR) || '"}}',
                   {worker},
                   uid({tpl_key}, CAST(h(key, j, 'tv') % {VERSIONS_PER_TEMPLATE} AS BIGINT),
                       'file'),
                   '{{"owner": "", "scope": "organization"}}', NULL, '{{}}',
                   CASE WHEN failed THEN 'failed' ELSE 'succeeded' END,
                   CAST(2000 + h(key, j, 'logs') % 30000 AS INTEGER), {f}
            FROM bld""",
        "workspaces": f"""
            SELECT uid(key, 0, 'ws') AS id, created - to_seconds(120) AS created_at,
                   coalesce(created + to_microseconds((n - 1) * step_us),
                            created + to_seconds(offsets[n])) AS updated_at,
                   uid(owner, 0, 'user') AS owner_id, '{ORG_ID}' AS organization_id,
                   uid({tpl_key}, 0, 'template') AS template_id,
                   CASE WHEN deleted THEN {t} ELSE {f} END AS deleted, name,
                   CASE WHEN h(key, 0, 'auto') % 3 = 0
                        THEN 'CRON_TZ=America/New_York 30 8 * * 1-5' END AS autostart_schedule,
                   CASE WHEN h(key, 0, 'ttl') % 4 <> 0 THEN 28800000000000 END AS ttl,
                   {exported} - secs(3600 * pct(key, 0, 'used')) AS last_used_at,
                   NULL AS dormant_at, NULL AS deleting_at, 'never' AS automatic_updates,
                   {f} AS favorite, NULL AS next_start_at, '{{}}' AS group_acl,
                   '{{}}' AS user_acl
            FROM ws""",
        "workspace_builds": f"""
            SELECT build_id AS id, created_at, job_completed_at AS updated_at, workspace_id,
                   template_version_id, j AS build_number, transition, owner_id AS initiator_id,
                   CASE WHEN failed THEN NULL
                        ELSE '\\x7b2276657273696f6e223a347d' || hexof(key, j, 'state') END
                       AS provisioner_state,
                   job_id,
                   CASE WHEN transition = 'start' AND NOT failed AND h(key, 0, 'ttl') % 4 <> 0
                        THEN CAST(job_completed_at + to_hours(8) AS VARCHAR)
                        ELSE '{zero}' END AS deadline,
                   CASE WHEN scenario <> 'background' THEN 'cli'
                        WHEN transition = 'start'
                        THEN ['initiator', 'autostart', 'dashboard', 'cli'][
                            1 + CAST(h(key, j, 'why') % 4 AS INTEGER)]
                        WHEN transition = 'stop'
                        THEN ['initiator', 'autostop'][1 + CAST(h(key, j, 'why') % 2 AS INTEGER)]
                        ELSE 'initiator' END AS reason,
                   0 AS daily_cost, '{zero}' AS max_deadline,
                   NULL AS template_version_preset_id, {f} AS has_ai_task,
                   {f} AS has_external_agent
            FROM bld""",
        "workspace_resources": f"""
            SELECT uid({tpl_key}, v * 2 + s, 'ires') AS id,
                   {import_at} + to_seconds(25) AS created_at,
                   uid({tpl_key}, v, 'import') AS job_id,
                   CASE WHEN s = 0 THEN 'start' ELSE 'stop' END AS transition,
                   CASE WHEN s = 0 THEN start_type ELSE stop_type END AS type,
                   CASE WHEN s = 0 THEN start_name ELSE stop_name END AS name,
                   {f} AS hide, icon, instance_type, 0 AS daily_cost, '' AS module_path
            FROM tpl, range({VERSIONS_PER_TEMPLATE}) r(v), range(2) q(s)
            UNION ALL
            SELECT resource_id, job_completed_at, job_id, transition, res_type, res_name, {f},
                   icon, instance_type, 0, ''
            FROM ag
            UNION ALL
            SELECT uid(key, j, 'pvc'), job_completed_at, job_id, transition,
                   'kubernetes_persistent_volume_claim', 'home', {f}, '', NULL, 0, ''
            FROM ag WHERE transition = 'start' AND start_type = 'kubernetes_pod'""",
        "workspace_agents": f"""
            SELECT uid({tpl_key}, v * 2 + s, 'iagent') AS id,
                   {import_at} + to_seconds(25) AS created_at,
                   {import_at} + to_seconds(25) AS updated_at, 'main' AS name,
                   NULL AS first_connected_at, NULL AS last_connected_at, NULL AS disconnected_at,
                   uid({tpl_key}, v * 2 + s, 'ires') AS resource_id,
                   uid({tpl_key}, v * 2 + s, 'itoken') AS auth_token, NULL AS auth_instance_id,
                   'amd64' AS architecture, '{{}}' AS environment_variables,
                   'linux' AS operating_system, NULL AS instance_metadata,
                   NULL AS resource_metadata, '/home/coder' AS directory, '' AS version,
                   NULL AS last_connected_replica_id, 120 AS connection_timeout_seconds,
                   'https://coder.com/docs/admin/templates/troubleshooting' AS troubleshooting_url,
                   '/etc/motd' AS motd_file, 'created' AS lifecycle_state,
                   '' AS expanded_directory, 0 AS logs_length, {f} AS logs_overflowed,
                   NULL AS started_at, NULL AS ready_at, '{{}}' AS subsystems,
                   {apps} AS display_apps, '' AS api_version, 0 AS display_order,
                   NULL AS parent_id, 'all' AS api_key_scope, {f} AS deleted
            FROM tpl, range({VERSIONS_PER_TEMPLATE}) r(v), range(2) q(s)
            UNION ALL
            SELECT agent_id, job_completed_at,
                   greatest(job_completed_at, last_connected_at, disconnected_at), 'main',
                   first_connected_at, last_connected_at, disconnected_at, resource_id,
                   uid(key, j, 'token'), auth_instance_id, 'amd64',
                   '{{"GIT_TOKEN": "ghp_' || hexof(key, 0, 'git') || '"}}', 'linux', NULL, NULL,
                   '/home/coder', CASE WHEN connected THEN version ELSE '' END,
                   CASE WHEN connected THEN {replicas} END, 120,
                   'https://coder.com/docs/admin/templates/troubleshooting', '/etc/motd',
                   lifecycle_state, CASE WHEN connected THEN '/home/coder' ELSE '' END,
                   CASE WHEN has_startup_logs AND {str(startup_logs).lower()}
                        THEN {startup_bytes} ELSE 0 END,
                   {f}, started_at, ready_at, '{{}}', {apps},
                   CASE WHEN connected THEN api ELSE '' END, 0, NULL, 'all', {f}
            FROM ag""",
        "schema_migrations": f"SELECT 349 AS version, {f} AS dirty",
    }
    if startup_logs:
        lines = ", ".join(
            f"({i}, {off}, '{level}', '{text.replace(chr(39), chr(39) * 2)}')"
            for i, (off, level, text) in enumerate(STARTUP_OUTPUT)
        )
        sql["workspace_agent_logs"] = f"""
            SELECT agent_id, started_at + secs(o.off) AS created_at,
                   replace(o.text, 'project', ws_name) AS output,
                   key * 16 + o.i AS id, o.level, uid(key, 0, 'logsource') AS log_source_id
            FROM (SELECT *, name AS ws_name FROM ag WHERE has_startup_logs) a,
                 (VALUES {lines}) o(i, off, level, text)"""
    return sql


def _write_tables(
    con: duckdb.DuckDBPyConnection,
    db: Path,
    fmt: str,
    tz: str,
    startup_logs: bool,
    result: Generated,
) -> None:
    # Timestamps are written in the session's zone, as psql writes them.
    con.execute(f"SET TimeZone = '{tz}'")
    try:
        for table, select in _tables_sql(tz, startup_logs).items():
            path = db / f"{table}.{fmt}"
            target = str(path).replace("'", "''")
            options = "HEADER, COMPRESSION gzip" if fmt == "csv.gz" else "HEADER"
            rows = con.execute(f"COPY ({select}) TO '{target}' ({options})").fetchone()
            result.tables[table] = int(rows[0]) if rows else 0
            result.table_bytes += path.stat().st_size
    finally:
        con.execute("SET TimeZone = 'UTC'")
    result.workspaces = int(con.execute("SELECT count(*) FROM ws").fetchone()[0])  # type: ignore[index]


# --------------------------------------------------------------------------------------
# Agent logs


def _noise_pool(seed: int, size: int = 4096) -> tuple[pl.Series, float]:
    """Rendered noise entries without their timestamp, and their mean size in bytes as
    written (timestamp and newline included)."""
    rng = random.Random(f"noise-{seed}")
    vocabulary = list(_CHATTER) + EXTRA_CHATTER
    peers = [
        "".join(
            rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789")
            for _ in range(5)
        )
        for _ in range(64)
    ]
    at = datetime(2026, 1, 1, tzinfo=UTC)
    bodies = []
    for i in range(size):
        spec = MULTILINE_CHATTER if i % 400 == 7 else rng.choice(vocabulary)
        level, logger, msg, fields = spec
        vals = {
            "ip": f"35.{rng.randint(180, 240)}.{rng.randint(1, 254)}.{rng.randint(1, 254)}",
            "ms": rng.randint(1, 9),
            "peer": rng.choice(peers),
            "disco": f"{rng.getrandbits(64):016x}",
            "addr": "[fd7a:115c:a1e0:{:x}:{:x}:{:x}:{:x}:{:x}]:{}".format(
                *(rng.getrandbits(16) for _ in range(5)), rng.randint(40000, 60000)
            ),
            "sid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "n": rng.randint(0, 3),
            "rx": rng.randint(1000, 900000),
        }
        fs = [(k, v.format(**vals) if isinstance(v, str) else v) for k, v in fields]
        bodies.append(slog_line(at, level, msg.format(**vals), fs, logger)[23:])
    series = pl.Series("body", bodies, dtype=pl.String)
    mean = sum(len(b.encode()) for b in bodies) / size + 24
    return series, mean


def _ms(dt: datetime) -> int:
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


@dataclass
class _Process:
    """One agent process on a host, as the agent rows tell it."""

    agent_id: uuid.UUID
    workspace_id: uuid.UUID
    workspace: str
    owner: str
    env: dict[str, str]
    version: str
    auth: str
    boot: datetime
    first: datetime
    started: datetime | None
    ready: datetime | None
    stop_at: datetime | None  # the stop build that shut it down, if any
    build_number: int


class _LogWriter:
    """Writes one host's log in time order: `coder-agent.log`, with `backups` gzip'd
    lumberjack backups of about `rotate_bytes` each holding its oldest lines."""

    def __init__(self, directory: Path, backups: int, rotate_bytes: int) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.backups, self.rotate = backups, rotate_bytes
        self.bytes = self.lines = self.disk = self.files = self.gz_files = 0
        self._size = self._last_ms = 0
        self._open()

    def _open(self) -> None:
        self._size = 0
        if self.backups > 0:
            self._tmp = self.dir / ".coder-agent.rotating.gz"
            # Closed by _close(). No name and no time in the header, as Go's gzip writer (and
            # so lumberjack) leaves them; level 1: the compression ratio is not what is measured.
            self._raw: Any = self._tmp.open("wb")
            self._fh: Any = gzip.GzipFile(
                filename="", mode="wb", fileobj=self._raw, compresslevel=1, mtime=0
            )
        else:
            self._tmp = self.dir / "coder-agent.log"
            self._fh = self._raw = self._tmp.open("wb", buffering=1 << 20)

    def _close(self, stamp_ms: int | None) -> None:
        self._fh.close()
        if self._fh is not self._raw:
            self._raw.close()
        self.files += 1
        if stamp_ms is None and self.backups == 0:
            self.disk += self._tmp.stat().st_size
            return
        at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=stamp_ms or 0)
        name = f"coder-agent-{at:%Y-%m-%dT%H-%M-%S}.{at.microsecond // 1000:03d}.log.gz"
        final = self.dir / name
        self._tmp.rename(final)
        self.disk += final.stat().st_size
        self.gz_files += 1
        self.backups -= 1

    def write(self, ms: pl.Series, lines: pl.Series) -> None:
        while len(lines):
            if self.backups > 0:
                sizes = (lines.str.len_bytes() + 1).cum_sum() + self._size
                over = sizes > self.rotate
                cut = int(over.arg_true()[0]) + 1 if over.any() else len(lines)
                cut = min(cut, len(lines))
            else:
                cut = len(lines)
            part = lines.slice(0, cut)
            pl.DataFrame({"l": part}).write_csv(self._fh, include_header=False, quote_style="never")
            written = int(part.str.len_bytes().sum()) + len(part)
            self._size += written
            self.bytes += written
            self.lines += int(part.str.count_matches("\n").sum()) + len(part)
            self._last_ms = int(ms[cut - 1])
            lines, ms = lines.slice(cut), ms.slice(cut)
            if self.backups > 0 and self._size > self.rotate and len(lines):
                self._close(int(ms[0]))
                self._open()

    def close(self) -> None:
        # Fewer lines than planned: the file being written becomes the last backup.
        self._close(self._last_ms + 1 if self.backups > 0 else None)


class _Host:
    """The structured lines of one host's agent processes, and the noise between them."""

    def __init__(self, rel: str, builder: ScenarioBuilder) -> None:
        self.rel = rel
        self.log = AgentLogFile(path=f"{rel}/coder-agent.log", builder=builder)
        self.spans: list[tuple[datetime, datetime]] = []  # when noise is written
        self._manifests: dict[tuple[Any, ...], str] = {}

    def manifest(self, at: datetime, p: _Process) -> None:
        """`fetched manifest` naming p's agent row, rendered as synth renders it."""
        key = (p.agent_id, self.log.style, self.log.extra_space)
        if key not in self._manifests:  # a reconnect fetches the same manifest: render it once
            ids = uuid.uuid5(p.agent_id, "manifest")
            agent = SimpleNamespace(
                id=str(p.agent_id),
                uuid=p.agent_id,
                name="main",
                env=p.env,
                directory="/home/coder",
                log_source_id=str(uuid.uuid5(ids, "log")),
                script_id=str(uuid.uuid5(ids, "script")),
                app_id=str(uuid.uuid5(ids, "app")),
            )
            value: Any
            if self.log.style == "json":
                doc = _manifest_json(
                    cast(Agent, agent), p.owner, p.workspace_id, p.workspace, ACCESS_URL
                )
                value = _Raw(go_json(doc))
            else:
                fields = _manifest_proto(
                    cast(Agent, agent), p.owner, p.workspace_id, p.workspace, ACCESS_URL
                )
                value = prototext(fields, "  " if self.log.extra_space else " ")
            line = slog_line(at, "info", "fetched manifest", [("manifest", value)])
            self._manifests[key] = line[23:]  # without the timestamp
        at = at.astimezone(UTC)
        stamp = f"{at:%Y-%m-%d %H:%M:%S}.{at.microsecond // 1000:03d}"
        self.log.raw(stamp + self._manifests[key], at)

    def boot(self, p: _Process, connect_after: timedelta = timedelta(milliseconds=212)) -> None:
        """A fresh process: start line, connect, manifest, starting -> ready."""
        self.log.start(p.boot, version=p.version, auth=p.auth)
        self.log.connecting(p.boot + connect_after)
        self.manifest(p.first + timedelta(milliseconds=41), p)
        if p.started is not None:
            self.log.lifecycle(p.started, "starting", last="created")
        if p.ready is not None:
            self.log.lifecycle(p.ready, "ready", last="starting")

    def reconnect(self, at: datetime, p: _Process, network_error: bool) -> None:
        """coderd went away (a rolling restart): the same process fetches the same row again."""
        self.log.disconnected(at)
        if network_error:
            self.log.run_error(at + timedelta(milliseconds=900), "network")
        self.log.connecting(at + timedelta(seconds=2))
        self.manifest(at + timedelta(seconds=4, milliseconds=310), p)

    def entries(self) -> list[tuple[int, str]]:
        ordered = sorted(
            ((t, seq, text) for t, seq, text in self.log.entries if t is not None),
            key=lambda e: (e[0], e[1]),
        )
        return [(_ms(t), text) for t, _, text in ordered]


def _background_hosts(
    con: duckdb.DuckDBPyConnection, wanted: int, seed: int
) -> list[tuple[str, list[_Process]]]:
    """Hosts for `wanted` logs: live background workspaces, in a seeded order. A VM host holds
    the processes of its workspace's last three start builds (each shut down at its stop); a
    pod is a host of its own, for each of the last two start builds."""
    rows = con.execute(
        f"""WITH chosen AS (
                SELECT key FROM ws
                WHERE scenario = 'background' AND NOT deleted AND n % 2 = 1
                ORDER BY h(key, 0, 'host') LIMIT {int(wanted)}
            )
            SELECT a.key, a.kind, a.name, a.j, a.agent_id, a.workspace_id, a.version, a.auth,
                   a.boot, a.first_connected_at, a.started_at, a.ready_at, a.next_created_at,
                   hexof(a.key, 0, 'git'), u.username
            FROM ag a
            JOIN chosen USING (key)
            LEFT JOIN (
                SELECT u AS owner,
                       CASE WHEN u = 0 THEN 'admin' ELSE
                       {"[" + ", ".join(f"'{n}'" for n in FIRST_NAMES) + "]"}[
                           1 + CAST(h(u, 0, 'first') % {len(FIRST_NAMES)} AS INTEGER)]
                       || CAST(u AS VARCHAR) END AS username
                FROM range((SELECT users FROM facts)) r(u)
            ) u ON u.owner = a.owner
            WHERE a.transition = 'start' AND a.j > a.n - CASE WHEN a.kind = 'vm' THEN 6 ELSE 4 END
            ORDER BY h(a.key, 0, 'host'), a.j"""
    ).fetchall()
    hosts: dict[str, list[_Process]] = {}
    for (
        _,
        kind,
        name,
        j,
        agent_id,
        ws_id,
        version,
        auth,
        boot,
        first,
        started,
        ready,
        next_created,
        git,
        username,
    ) in rows:
        p = _Process(
            agent_id=agent_id,
            workspace_id=ws_id,
            workspace=name,
            owner=username,
            env={"GIT_TOKEN": f"ghp_{git}"},
            version=version,
            auth=auth,
            boot=boot,
            first=first,
            started=started,
            ready=ready,
            stop_at=next_created,
            build_number=j,
        )
        rel = f"logs/{name}" if kind == "vm" else f"logs/{name}-pod-{j}"
        hosts.setdefault(rel, []).append(p)
    return list(hosts.items())


def _planted_processes(con: duckdb.DuckDBPyConnection) -> dict[str, dict[int, _Process]]:
    rows = con.execute(
        """SELECT a.name, a.scenario, a.j, a.agent_id, a.workspace_id, a.version, a.auth,
                  a.boot, a.first_connected_at, a.started_at, a.ready_at, a.next_created_at,
                  hexof(a.key, 0, 'git'), p.name
           FROM ag a JOIN planted p USING (key)
           ORDER BY a.key, a.j"""
    ).fetchall()
    out: dict[str, dict[int, _Process]] = {}
    for (
        name,
        _,
        j,
        agent_id,
        ws_id,
        version,
        auth,
        boot,
        first,
        started,
        ready,
        nxt,
        git,
        pname,
    ) in rows:
        out.setdefault(name, {})[j] = _Process(
            agent_id=agent_id,
            workspace_id=ws_id,
            workspace=name,
            owner=pname.replace("-vm-", "-") + "-owner",
            env={"GIT_TOKEN": f"ghp_{git}"},
            version=version,
            auth=auth,
            boot=boot,
            first=first,
            started=started,
            ready=ready,
            stop_at=nxt,
            build_number=j,
        )
    return out


def _write_logs(
    con: duckdb.DuckDBPyConnection,
    logs: Path,
    seed: int,
    log_bytes: int,
    host_bytes: int,
    rotate_bytes: int,
    result: Generated,
) -> None:
    builder = ScenarioBuilder(seed=seed, start=EXPORTED_AT, access_url=ACCESS_URL)
    pool, mean_line = _noise_pool(seed)
    collected = EXPORTED_AT - timedelta(minutes=1)  # the logs were copied just before the export
    written = 0

    def emit(host: _Host, noise_lines: int, noise_seed: int, backups: int) -> None:
        nonlocal written
        writer = _LogWriter(logs.parent / host.rel, backups, rotate_bytes)
        _write_host(writer, host, noise_lines, noise_seed, pool)
        writer.close()
        written += writer.bytes
        result.log_bytes += writer.bytes
        result.log_disk_bytes += writer.disk
        result.log_lines += writer.lines
        result.log_files += writer.files
        result.gz_log_files += writer.gz_files
        result.hosts += 1

    # Planted hosts first, with a fixed amount of noise, so they are the same at every size.
    for name, procs in _planted_processes(con).items():
        scenario = name.split("-")[1] if name.startswith("lookalike-") else "incident"
        record = Planted(
            scenario=scenario,
            workspace=name,
            workspace_id=str(procs[1].workspace_id),
            agents={j: str(p.agent_id) for j, p in procs.items()},
            hosts=[],
            expected=[],
        )
        noise_seed = int(hashlib.sha256(f"{seed}-{name}".encode()).hexdigest()[:8], 16)
        for host in _planted_hosts(name, scenario, procs, builder, collected):
            record.hosts.append(host.rel)
            emit(host, PLANTED_NOISE * len(host.spans), noise_seed + len(record.hosts), 0)
        if scenario == "incident":
            a1, a3 = str(procs[1].agent_id), str(procs[3].agent_id)
            record.expected = [
                ("survived-build-boundary", name, 3, a3),
                ("lifecycle-stuck-created", name, 3, a3),
                ("instance-identity-rebinding", name, 3, a3),
                ("previous-agent-not-shut-down", name, 1, a1),
            ]
        result.planted.append(record)

    remaining = max(log_bytes - written, 0)
    if remaining < 64 * 1024:
        return
    wanted = max(1, round(remaining / host_bytes))
    hosts = _background_hosts(con, wanted, seed)[:wanted]
    if not hosts:
        return
    # Hosts log unevenly: a few busy ones several times the mean, whose logs were rotated.
    weights = [0.2 + 2.8 * ((_hash_int(seed, rel) % 1000) / 1000) ** 2 for rel, _ in hosts]
    total_weight = sum(weights)
    for (rel, chain), weight in zip(hosts, weights, strict=True):
        target = remaining * weight / total_weight
        rng = random.Random(f"{seed}-{rel}")
        host = _Host(rel, builder)
        for proc in chain:
            # Its own process per start build: started after the build, shut down at the stop,
            # and reconnected to the same row about once a day in between.
            end = proc.stop_at + timedelta(seconds=10) if proc.stop_at else collected
            host.boot(proc)
            begin = (proc.ready or proc.first) + timedelta(seconds=5)
            life = (end - begin).total_seconds()
            count = min(8, int(life // 86_400))
            for r in range(count):
                at = begin + timedelta(seconds=life * (r + 0.2 + 0.6 * rng.random()) / count)
                host.reconnect(at, proc, network_error=rng.random() < 0.3)
            if proc.stop_at:
                host.log.shutdown(end)
            host.spans.append((begin, end - timedelta(seconds=1)))
        structured = sum(len(text.encode()) + 1 for _, text in host.entries())
        noise = max(int((target - structured) / mean_line), 0)
        # Backups of rotate_bytes each; the current file keeps the rest (at least a quarter).
        backups = max(0, int((target - rotate_bytes / 4) // rotate_bytes))
        emit(host, noise, _hash_int(seed, rel), backups)


def _planted_hosts(
    name: str,
    scenario: str,
    procs: dict[int, _Process],
    builder: ScenarioBuilder,
    collected: datetime,
) -> list[_Host]:
    """The planted workspaces' logs: the same lines at every size."""
    s = timedelta(seconds=1)
    if scenario == "incident":
        # tests/cases.py `_suspended_vm`: one process from build #1 through #3.
        a1, a3 = procs[1], procs[3]
        host = _Host(f"logs/{name}", builder)
        host.boot(a1, connect_after=s)
        suspended = a1.stop_at + timedelta(seconds=5) if a1.stop_at else a1.boot
        host.spans.append((a1.boot + 40 * s, suspended - s))
        host.log.disconnected(suspended)
        host.log.connecting(a3.first - 2 * s)
        host.manifest(a3.first, a3)
        host.spans.append((a3.first + 10 * s, collected))
        return [host]
    if scenario == "pods":
        # A new pod per start build, each shut down at its stop: new process, new row.
        hosts = []
        for j, p in sorted(procs.items()):
            if p.started is None:
                continue  # stop builds' rows: nothing ran
            host = _Host(f"logs/{name}-pod-{j}", builder)
            host.boot(p, connect_after=s)
            end = p.stop_at + 10 * s if p.stop_at else collected
            if p.stop_at:
                host.log.shutdown(end)
            host.spans.append((p.boot + 40 * s, end - s))
            hosts.append(host)
        return hosts
    # reconnect: one VM, one row; coderd restarts twice and the process fetches it again.
    p = procs[1]
    host = _Host(f"logs/{name}", builder)
    host.boot(p, connect_after=s)
    for k, at in enumerate((p.boot + timedelta(hours=10), p.boot + timedelta(hours=20))):
        host.reconnect(at, p, network_error=k == 1)
    host.spans.append((p.boot + 40 * s, collected))
    return [host]


def _hash_int(seed: int, text: str) -> int:
    return int(hashlib.sha256(f"{seed}|{text}".encode()).hexdigest()[:12], 16)


NOISE_BLOCK = 200_000  # noise lines built at once: bounds memory whatever the host's size


def _write_host(writer: _LogWriter, host: _Host, noise: int, seed: int, pool: pl.Series) -> None:
    """Merge the host's structured lines into `noise` noise lines spread over its spans."""
    structured = host.entries()
    spans = [(a, b) for a, b in host.spans if b > a]
    total = sum((b - a).total_seconds() for a, b in spans) or 1.0
    done, k = 0, 0
    for n_span, (a, b) in enumerate(spans):
        share = (
            noise - done
            if n_span == len(spans) - 1
            else round(noise * (b - a).total_seconds() / total)
        )
        done += share
        a_ms, span_ms = _ms(a), max(_ms(b) - _ms(a), 1)
        for i0 in range(0, max(share, 1), NOISE_BLOCK):
            i1 = min(i0 + NOISE_BLOCK, share)
            last = i1 >= share
            upper = a_ms + (i1 * span_ms) // max(share, 1)
            if last and n_span == len(spans) - 1:
                upper = 1 << 62
            take = []
            while k < len(structured) and structured[k][0] < upper:
                take.append(structured[k])
                k += 1
            block = _noise(a_ms, span_ms, share, i0, i1, seed + 7919 * n_span, pool)
            if take:
                extra = pl.DataFrame(
                    {"ms": [t for t, _ in take], "line": [text for _, text in take]},
                    schema={"ms": pl.Int64, "line": pl.String},
                )
                block = pl.concat([block, extra]).sort("ms", maintain_order=True)
            writer.write(block["ms"], block["line"])
    if k < len(structured):
        rest = structured[k:]
        writer.write(
            pl.Series([t for t, _ in rest], dtype=pl.Int64),
            pl.Series([text for _, text in rest], dtype=pl.String),
        )


def _noise(
    a_ms: int, span_ms: int, n: int, i0: int, i1: int, seed: int, pool: pl.Series
) -> pl.DataFrame:
    """Noise lines i0..i1 of n spread evenly (with jitter) over span_ms from a_ms."""
    if i1 <= i0:
        return pl.DataFrame(schema={"ms": pl.Int64, "line": pl.String})
    i = pl.int_range(i0, i1, dtype=pl.Int64)
    jitter = (i.hash(seed) % 1000).cast(pl.Float64) / 1000
    frame = pl.select(
        ms=(
            pl.lit(a_ms, dtype=pl.Int64)
            + ((i.cast(pl.Float64) + jitter) * (span_ms / n)).cast(pl.Int64)
        ),
        idx=(i.hash(seed + 1) % len(pool)).cast(pl.UInt32),
    )
    stamp = pl.from_epoch("ms", time_unit="ms").dt.strftime("%Y-%m-%d %H:%M:%S%.3f")
    return frame.select("ms", line=pl.concat_str([stamp, pl.lit(pool).gather(pl.col("idx"))]))


# --------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    """`python -m forensics.generate OUT [--builds 10k] [--log-bytes 100MB] ...`"""
    ap = argparse.ArgumentParser(
        prog="python -m forensics.generate",
        description="Write a realistic Coder export (tables and agent logs) at a chosen size.",
    )
    ap.add_argument("out", type=Path, help="directory to write (must be new or empty)")
    ap.add_argument("--builds", default="10k", help="workspace builds (10k, 1M; default 10k)")
    ap.add_argument("--log-bytes", default="100MB", help="agent log bytes (100MB, 1GB, 5GiB)")
    ap.add_argument("--incidents", type=int, default=5, help="planted #18571 incidents (5)")
    ap.add_argument("--lookalikes", type=int, default=3, help="look-alikes of each kind (3)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--format", dest="fmt", choices=["csv", "csv.gz"], default="csv")
    ap.add_argument("--builds-per-workspace", type=int, default=20)
    ap.add_argument("--host-bytes", default="3MiB", help="mean log size per host (3MiB)")
    ap.add_argument("--rotate-bytes", default="4MiB", help="log rotation size (4MiB)")
    ap.add_argument("--tz", default="UTC", help="psql session time zone of the timestamps")
    ap.add_argument("--no-startup-logs", action="store_true", help="skip workspace_agent_logs")
    args = ap.parse_args(argv)
    try:
        res = generate(
            args.out,
            builds=args.builds,
            log_bytes=args.log_bytes,
            incidents=args.incidents,
            seed=args.seed,
            fmt=args.fmt,
            lookalikes=args.lookalikes,
            builds_per_workspace=args.builds_per_workspace,
            host_bytes=parse_size(args.host_bytes),
            rotate_bytes=parse_size(args.rotate_bytes),
            tz=args.tz,
            startup_logs=not args.no_startup_logs,
        )
    except (ValueError, FileExistsError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    rows = sum(res.tables.values())
    print(
        f"{res.out_dir}: {rows:,} rows in {len(res.tables)} tables "
        f"({res.table_bytes / 1e6:,.0f} MB, {res.table_seconds:.1f} s, "
        f"{rows / max(res.table_seconds, 1e-9):,.0f} rows/s); "
        f"{res.log_lines:,} log lines in {res.log_files} files from {res.hosts} hosts "
        f"({res.log_bytes / 1e6:,.0f} MB, {res.log_disk_bytes / 1e6:,.0f} MB on disk, "
        f"{res.log_seconds:.1f} s, {res.log_bytes / 1e6 / max(res.log_seconds, 1e-9):,.0f} MB/s); "
        f"{len(res.expected)} findings planted",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
