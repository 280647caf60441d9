"""Run an analysis: discover -> ingest -> model -> rules -> findings with evidence.

`analyze()` is the library entry point; it returns an `Analysis` and never prints or exits.
"""

from __future__ import annotations

import hashlib
import re
import resource
import secrets
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from forensics import __version__
from forensics.anonymize import Identifiers
from forensics.db import connect, one, scalar, sql_text
from forensics.discover import LOG_KINDS, Source, discover
from forensics.errors import InputError, UsageError
from forensics.ingest.bundle import expand_bundles
from forensics.ingest.logs import GENERIC_DIRS, SECRET, LogLoad, load_logs, parse_logs
from forensics.ingest.schema import REQUIRED_TABLES, TABLES, export_command, loaded_columns
from forensics.ingest.tables import TableLoad, create_tables, created_columns, load_table
from forensics.rules import SEVERITIES, Rule, builtin_rules, columns_read, model_sql

STANDARD_COLUMNS = ("agent_id", "workspace_id", "workspace_name", "build_number", "ts", "summary")
MAX_LOG_EVIDENCE = 60
BUILDS_BEFORE, BUILDS_AFTER = 20, 5  # build history shown around a finding's build
# Canonical columns read here in Python besides the model's and the rules' (`columns_read`):
# the names --anonymize replaces, the model notes' counts, the timeline's workspace list.
PIPELINE_READS = [
    ("users", ["id", "username", "name", "email"]),
    ("workspaces", ["id", "name", "owner_id", "deleted"]),
    ("workspace_agents", ["id", "resource_id", "auth_instance_id"]),
    ("workspace_resources", ["id", "job_id"]),
    ("schema_migrations", ["version"]),
]
MAX_TIMELINES = 200  # workspaces drawn as a timeline picture (as many as report.MAX_DETAILED)
TIMELINE_BUILDS_BEFORE, TIMELINE_BUILDS_AFTER = 4, 2


@dataclass
class RuleRun:
    """How one rule fared in this run."""

    rule: Rule
    status: str  # ran | skipped | broken
    reason: str = ""
    findings: int = 0


@dataclass
class Finding:
    """One row a rule returned, with the evidence that backs it."""

    rule: str
    severity: str
    title: str
    agent_id: str
    workspace_id: str | None
    workspace_name: str | None
    build_number: int | None
    ts: str | None
    summary: str
    evidence: dict[str, Any]
    fingerprint: str


@dataclass
class Analysis:
    """Everything a renderer needs; field names are the findings.json contract."""

    inputs: list[Source]
    tables: list[TableLoad]
    logs: list[LogLoad]
    rules: list[RuleRun]
    findings: list[Finding]
    generated_at: datetime
    as_of: datetime | None
    fail_on: str
    model_notes: list[str] = field(default_factory=list)
    tool: str = f"forensics {__version__}"
    # Per affected workspace: builds, agent rows and agent processes, for the timeline picture.
    timelines: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Coder's migration version, when schema_migrations was exported.
    schema_version: str | None = None
    identifiers: Identifiers = field(default_factory=Identifiers)  # for --anonymize
    # Per log stream: its host's clock offset from the server's, how it was found, how sure.
    clocks: list[dict[str, Any]] = field(default_factory=list)
    # Per stage of the pipeline: wall time, peak RSS so far and what it processed (benchmarks).
    stages: list[dict[str, Any]] = field(default_factory=list)

    def failing(self) -> list[Finding]:
        """Findings at or above the --fail-on threshold."""
        floor = SEVERITIES.index(self.fail_on)
        return [f for f in self.findings if SEVERITIES.index(f.severity) >= floor]

    def incomplete(self) -> bool:
        """True when a rule could not run because it is broken."""
        return any(r.status == "broken" for r in self.rules)


def analyze(
    paths: Sequence[Path],
    fail_on: str = "high",
    generated_at: datetime | None = None,
    rules: list[Rule] | None = None,
    identify: bool = False,
    log_offsets: dict[str, float] | None = None,
    inspect: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
) -> Analysis:
    """Analyse the files under `paths` and return findings with evidence and input coverage.

    `rules` defaults to the built-in rules (see `forensics.rules.load_rules` and `choose`).
    `identify` collects the names of people, workspaces and hosts (`Analysis.identifiers`),
    which --anonymize needs. `log_offsets` maps a host (or log stream) to its clock's offset
    from the server's in seconds, overriding the estimate (--log-offset). `inspect`, when
    given, is called with the analysis database once the model and rules have run (before it
    is closed), to copy model tables out of it (e.g. `agent_builds` for --history); it must
    not change them.
    """
    with open_analysis(paths, fail_on, generated_at, rules, log_offsets) as (con, result):
        if identify:
            result.identifiers = _identifiers(con, result.inputs)
        if inspect is not None:
            inspect(con)
        return result


@contextmanager
def open_analysis(
    paths: Sequence[Path],
    fail_on: str = "high",
    generated_at: datetime | None = None,
    rules: list[Rule] | None = None,
    log_offsets: dict[str, float] | None = None,
) -> Iterator[tuple[duckdb.DuckDBPyConnection, Analysis]]:
    """Run `analyze()`'s pipeline and keep its database open inside the `with` block.

    For commands that query the model further (`forensics timeline`): the connection holds the
    canonical tables, the model and the rules' findings; it and its temporary directory are
    gone when the block ends.
    """
    if fail_on not in SEVERITIES:
        raise UsageError(f"--fail-on must be one of {', '.join(SEVERITIES)}, not {fail_on!r}")
    clock = Stages()
    sources = discover(list(paths))
    if not sources:
        raise InputError(f"no files found under {', '.join(str(p) for p in paths)}")
    with tempfile.TemporaryDirectory(prefix="forensics-") as tmp:
        # Support bundles are unpacked here, so nothing is left behind when the run ends.
        sources = expand_bundles(sources, Path(tmp) / "bundles")
        clock.mark("discover", files=len(sources), bytes=sum(s.size for s in sources))
        con = connect(Path(tmp) / "spill")
        try:
            chosen = builtin_rules() if rules is None else rules
            offsets = log_offsets or {}
            yield con, _run(con, sources, Path(tmp), fail_on, generated_at, chosen, offsets, clock)
        finally:
            con.close()


def _run(
    con: duckdb.DuckDBPyConnection,
    sources: list[Source],
    tmp: Path,
    fail_on: str,
    generated_at: datetime | None,
    rules: list[Rule],
    log_offsets: dict[str, float],
    clock: Stages,
) -> Analysis:
    _require_usable(sources)
    # Only the columns something reads are loaded: the rest cost a third of the load's time.
    create_tables(con, loaded_columns([*columns_read(rules), *PIPELINE_READS]))
    hash_key = secrets.token_hex(16)  # lives for this run only; never written anywhere
    table_loads = [
        load_table(con, src, hash_key, n) for n, src in enumerate(sources) if src.kind == "table"
    ]
    notes = _dedupe(con, table_loads, {s.display for s in sources if s.archive})
    clock.mark("ingest tables", rows=sum(t.rows_read for t in table_loads))
    work = tmp / "logs"
    work.mkdir()
    logs = [(n, src) for n, src in enumerate(sources) if src.kind in LOG_KINDS]
    log_files = [
        (n, src, load) for (n, src), load in zip(logs, parse_logs(con, work, logs), strict=True)
    ]
    clock.mark("parse logs", lines=sum(lg.lines for _, _, lg in log_files))
    notes += load_logs(con, log_files)
    _offset_overrides(con, log_offsets)
    clock.mark("load logs", entries=sum(lg.entries for _, _, lg in log_files))
    for name, sql in model_sql():
        try:
            con.execute(sql)
        except duckdb.Error as exc:
            raise RuntimeError(f"model {name} failed: {exc}") from exc
    notes += _model_notes(con)
    as_of = scalar(con, "SELECT as_of FROM export_facts")
    clock.mark("model")
    missing = _missing_columns(table_loads)
    runs, findings = [], []
    evidence_cache: dict[tuple[Any, ...], Any] = {}  # several rules often flag the same row
    have_logs = any(src.kind == "agent_log" for src in sources)
    for rule in rules:
        run, rows = _run_rule(con, rule, missing, have_logs)
        runs.append(run)
        findings += [_finding(con, rule, row, evidence_cache) for row in rows]
    findings.sort(
        key=lambda f: (
            -SEVERITIES.index(f.severity),
            f.workspace_name or "",
            f.build_number or 0,
            f.rule,
        )
    )
    clock.mark("rules", findings=len(findings))
    timelines = {ws: _timeline(con, ws, findings) for ws in _affected(findings)}
    clock.mark("timelines", workspaces=len(timelines))
    return Analysis(
        inputs=sources,
        tables=table_loads,
        logs=[load for _, _, load in log_files],
        rules=runs,
        findings=findings,
        generated_at=generated_at or datetime.now(UTC).replace(microsecond=0),
        as_of=as_of,
        fail_on=fail_on,
        model_notes=notes,
        clocks=_records(con, "SELECT * FROM log_offsets ORDER BY stream", []),
        stages=clock.records,
        timelines=timelines,
        schema_version=scalar(con, "SELECT CAST(max(version) AS VARCHAR) FROM schema_migrations"),
    )


def _identifiers(con: duckdb.DuckDBPyConnection, sources: list[Source]) -> Identifiers:
    """Names of people, workspaces and hosts in the inputs, for --anonymize."""
    ids = Identifiers()
    for kind, sql in (
        ("user", "SELECT username FROM users UNION SELECT name FROM users"),
        ("email", "SELECT email FROM users"),
        ("workspace", "SELECT name FROM workspaces"),
        ("host", "SELECT auth_instance_id FROM workspace_agents"),
    ):
        for (value,) in con.execute(sql).fetchall():
            ids.add(kind, value)
    for src in sources:
        if src.kind in LOG_KINDS and not src.archive:  # a bundle's folders name no host
            # Logs are collected per host: the directory a log sits in names its host.
            parent = Path(src.display).parent.name
            if parent.lower() not in GENERIC_DIRS:
                ids.add("host", parent)
    return ids


class Stages:
    """Wall time, CPU time (all threads) and peak memory of each pipeline stage, in order."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._last = time.perf_counter()
        self._last_cpu = time.process_time()

    def mark(self, stage: str, **counts: int) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        self.records.append(
            {
                "stage": stage,
                "seconds": now - self._last,
                "cpu_seconds": cpu - self._last_cpu,
                "peak_rss_mib": peak_kib / 1024,
                **counts,
            }
        )
        self._last, self._last_cpu = now, cpu


def _offset_overrides(con: duckdb.DuckDBPyConnection, offsets: dict[str, float]) -> None:
    """Load --log-offset values; each must name a host (or stream) some log came from."""
    con.execute("CREATE TABLE log_offset_overrides (host VARCHAR, seconds DOUBLE)")
    if not offsets:
        return
    known = {h for row in con.execute("SELECT host, stream FROM log_files").fetchall() for h in row}
    unknown = sorted(set(offsets) - known)
    if unknown:
        hosts = sorted({h for (h,) in con.execute("SELECT host FROM log_files").fetchall()})
        raise UsageError(
            f"--log-offset: no agent log from {', '.join(unknown)}; "
            f"the logs come from: {', '.join(hosts) or 'no hosts (no agent logs given)'}"
        )
    con.executemany("INSERT INTO log_offset_overrides VALUES (?, ?)", list(offsets.items()))


def _affected(findings: list[Finding]) -> list[str]:
    """Workspaces with findings, the most severe first, at most MAX_TIMELINES of them."""
    seen: dict[str, None] = {}
    for f in findings:
        if f.workspace_id:
            seen.setdefault(f.workspace_id, None)
    return list(seen)[:MAX_TIMELINES]


def _timeline(con: duckdb.DuckDBPyConnection, workspace_id: str, findings: list[Finding]) -> dict:
    """Builds, agent rows and agent processes of one workspace, around its findings."""
    numbers = [
        f.build_number for f in findings if f.workspace_id == workspace_id and f.build_number
    ]
    low, high = min(numbers) - TIMELINE_BUILDS_BEFORE, max(numbers) + TIMELINE_BUILDS_AFTER
    builds = _records(
        con,
        """SELECT build_number, transition, build_created_at AS created_at, job_status,
                  coalesce(job_completed_at, job_started_at) AS job_done_at
           FROM builds WHERE workspace_id = ? AND build_number BETWEEN ? AND ?
           ORDER BY build_number""",
        [workspace_id, low, high],
    )
    agents = _records(
        con,
        """SELECT CAST(agent_id AS VARCHAR) AS agent_id, agent_name, build_number,
                  lifecycle_state, agent_created_at AS created_at, first_connected_at,
                  last_connected_at, disconnected_at, started_at, ready_at
           FROM agent_builds WHERE workspace_id = ? AND build_number BETWEEN ? AND ?
           ORDER BY build_number, agent_name""",
        [workspace_id, low, high],
    )
    ids = [a["agent_id"] for a in agents]
    processes = _records(
        con,
        """WITH served AS (
               SELECT DISTINCT stream, process_no FROM agent_manifests
               WHERE CAST(agent_id AS VARCHAR) IN (SELECT unnest(?::VARCHAR[]))
           )
           SELECT p.stream, p.process_no, coalesce(p.started_at, p.first_seen_at) AS began_at,
                  p.started_at IS NOT NULL AS start_seen, p.last_seen_at,
                  (list({'ts': e.ts, 'kind': e.kind, 'line': e.line, 'source': e.source,
                         'agent_id': CAST(m.agent_id AS VARCHAR)} ORDER BY e.file_rank, e.line)
                      FILTER (e.kind IS NOT NULL))[1:400] AS events
           FROM agent_processes p JOIN served USING (stream, process_no)
           LEFT JOIN agent_key_events e USING (stream, process_no)
           LEFT JOIN agent_manifests m ON m.stream = e.stream AND m.source = e.source
                                      AND m.line = e.line
           GROUP BY ALL ORDER BY began_at, p.stream""",
        [ids],
    )
    flagged = sorted({f.agent_id for f in findings if f.workspace_id == workspace_id})
    return {"builds": builds, "agents": agents, "processes": processes, "flagged": flagged}


def _records(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    cur = con.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [{k: jsonable(v) for k, v in zip(names, row, strict=True)} for row in cur.fetchall()]


def _require_usable(sources: list[Source]) -> None:
    """Refuse inputs that cannot give an honest answer: nothing usable, or no agents/builds."""
    usable = [s for s in sources if s.kind == "table" or s.kind in LOG_KINDS]
    if not usable:
        listing = "\n".join(f"  {s.display}: {s.note or s.kind}" for s in sources[:20])
        more = f"\n  ... and {len(sources) - 20} more" if len(sources) > 20 else ""
        raise InputError(
            f"found {len(sources)} file(s) but none is a Coder table export "
            f"(CSV/NDJSON/Parquet) or an agent log:\n{listing}{more}"
        )
    found = sorted({s.table for s in sources if s.table})
    missing = [t for t in REQUIRED_TABLES if t not in found]
    if missing:
        logs = sum(1 for s in sources if s.kind in LOG_KINDS)
        commands = "\n".join(f"  {export_command(t)}" for t in missing)
        raise InputError(
            f"required table(s) missing: {', '.join(missing)}. Found tables: "
            f"{', '.join(found) or 'none'}; agent logs: {logs}. Export what is missing with:\n"
            f"{commands}"
        )


# Times that are plans, not records of what happened: no use for telling copies apart.
PLANNED_TIMES = {"deadline", "max_deadline", "deleting_at", "next_start_at"}


def _dedupe(
    con: duckdb.DuckDBPyConnection, loads: list[TableLoad], bundled: set[str] | None = None
) -> list[str]:
    """Keep one row per primary key when a table came in several files.

    The copy kept is the latest one: the copy with the latest time recorded on it (updated_at,
    connections, lifecycle, job progress); on a tie, a table export's copy rather than a
    support bundle's (`bundled` holds the displays of files read from bundles), whose rows
    lack columns. Columns the kept copy's file did not have are filled from the other copies.
    A bundle's startup log lines carry no database id, so they are dropped for an agent whose
    lines an export also has.
    """
    notes = []

    def numbered(paths: Iterable[str]) -> str:
        listed = ", ".join(sql_text(p) for p in sorted(paths)) or "NULL"
        return f"(SELECT file FROM table_files WHERE path IN ({listed}))"

    from_bundle = numbered(bundled or ())
    for table in sorted({ld.table for ld in loads if sum(x.table == ld.table for x in loads) > 1}):
        spec, mine = TABLES[table], [ld for ld in loads if ld.table == table]
        key = ", ".join(f'"{k}"' for k in spec.key)
        before = scalar(con, f'SELECT count(*) FROM "{table}"')
        if table == "workspace_agent_logs" and bundled:
            con.execute(
                f"""DELETE FROM workspace_agent_logs WHERE __file IN {from_bundle}
                AND agent_id IN (SELECT agent_id FROM workspace_agent_logs
                                 WHERE __file NOT IN {from_bundle})"""
            )
        loaded = created_columns(con, table)
        stamps = [
            f'"{c}"'
            for c, k in spec.columns.items()
            if k == "ts" and c not in PLANNED_TIMES and c in loaded
        ]
        latest = f"greatest({', '.join(stamps)})" if stamps else "NULL"
        fills = [
            f'coalesce("{h}_hash", arg_min("{h}_hash", __rank) OVER k) AS "{h}_hash"'
            for h in spec.hashed
            if f"{h}_hash" in loaded
        ]
        for col in (c for c in spec.columns if c in loaded):
            lacking = [ld.path for ld in mine if col in ld.missing_columns]
            if lacking and any(col not in ld.missing_columns for ld in mine):
                without = numbered(lacking)
                fills.append(
                    f"CASE WHEN __file IN {without} THEN arg_min(CASE WHEN __file NOT IN "
                    f'{without} THEN "{col}" END, __rank) OVER k ELSE "{col}" END AS "{col}"'
                )
        select = (
            f"SELECT * EXCLUDE (__rank) REPLACE ({', '.join(fills)}) FROM ranked "
            f"WINDOW k AS (PARTITION BY {key}) QUALIFY __rank = 1"
            if fills
            else "SELECT * EXCLUDE (__rank) FROM ranked WHERE __rank = 1"
        )
        con.execute(
            f"""CREATE OR REPLACE TABLE "{table}" AS
            WITH ranked AS (
                SELECT t.*, row_number() OVER (PARTITION BY {key} ORDER BY {latest} DESC NULLS LAST,
                    coalesce(__file IN {from_bundle}, false), f.path, __line) AS __rank
                FROM "{table}" t LEFT JOIN table_files f ON f.file = t.__file
            )
            {select}"""
        )
        after = scalar(con, f'SELECT count(*) FROM "{table}"')
        files = sorted(ld.path for ld in mine)
        if before == after:
            continue
        notes.append(
            f"{table} came from {len(files)} files ({', '.join(files)}); "
            f"{before - after} duplicate row(s) with the same key were counted once"
        )
    if notes:
        notes.append(
            "Of rows with the same key in several files, the copy with the latest time recorded "
            "on it (updated_at, connection, lifecycle and job times) was kept, on a tie a table "
            "export's rather than a support bundle's; columns its file lacked were filled from "
            "the other copies"
        )
    return notes


def _model_notes(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Say how agents were tied to builds, and which could not be."""
    notes = []
    total, tied, via_manifest = one(
        con,
        """SELECT (SELECT count(*) FROM workspace_agents),
                  (SELECT count(*) FROM agent_builds),
                  (SELECT count(*) FROM agent_builds WHERE joined_by <> 'resource')""",
    )
    if via_manifest:
        notes.append(
            f"{via_manifest} agent row(s) were tied to builds through the workspace id in their "
            "process's manifest and the build times, because their workspace_resources rows "
            "were not exported"
        )
    non_build = scalar(
        con,
        """SELECT count(*) FROM workspace_agents a
           JOIN workspace_resources r ON r.id = a.resource_id
           WHERE NOT EXISTS (SELECT 1 FROM builds b WHERE b.job_id = r.job_id)""",
    )
    if non_build:
        notes.append(
            f"{non_build} agent row(s) belong to template import or dry-run jobs (no workspace "
            "build) and are not workspace agents; rules do not look at them"
        )
    orphans = total - tied - non_build
    if orphans > 0:
        notes.append(
            f"{orphans} agent row(s) could not be tied to any workspace build (their resource "
            "is missing from the export and no log manifest names their workspace)"
        )
    unknown = scalar(
        con,
        """SELECT count(DISTINCT agent_id) FROM agent_manifests
           WHERE agent_id IS NOT NULL AND agent_id NOT IN (SELECT id FROM workspace_agents)""",
    )
    if unknown:
        notes.append(
            f"{unknown} agent id(s) seen in log manifests have no row in the exported "
            "workspace_agents (a log from another deployment, an export taken earlier, or an "
            "earlier build's agent: a support bundle holds only the latest build's)"
        )
    return notes


def _missing_columns(loads: list[TableLoad]) -> dict[str, set[str]]:
    """Columns missing from every file of a table (all columns for a table not exported)."""
    out: dict[str, set[str]] = {name: set(t.columns) for name, t in TABLES.items()}
    for ld in loads:
        out[ld.table] &= set(ld.missing_columns)
    return out


def _run_rule(
    con: duckdb.DuckDBPyConnection,
    rule: Rule,
    missing: dict[str, set[str]],
    have_logs: bool,
) -> tuple[RuleRun, list[dict[str, Any]]]:
    gaps = []
    for table, cols in rule.requires:
        lacking = [c for c in cols if c in missing.get(table, set())]
        if table in missing and missing[table] == set(TABLES[table].columns):
            gaps.append(f"table {table} (export it with: {export_command(table)})")
        elif lacking:
            gaps.append(f"{table} columns {', '.join(lacking)} (an older Coder version?)")
    if rule.needs_logs and not have_logs:
        gaps.append("agent logs (coder-agent.log and its rotated backups from the workspace hosts)")
    if gaps:
        return RuleRun(rule, "skipped", "needs " + "; ".join(gaps)), []
    try:
        cur = con.execute(rule.sql, rule.params or None)
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    except duckdb.Error as exc:
        return RuleRun(rule, "broken", f"{type(exc).__name__}: {exc}{_unloaded(con, exc)}"), []
    lacking = [c for c in STANDARD_COLUMNS if c not in names]
    if lacking:
        return RuleRun(rule, "broken", f"result lacks column(s) {', '.join(lacking)}"), []
    return RuleRun(rule, "ran", findings=len(rows)), rows


def _unloaded(con: duckdb.DuckDBPyConnection, exc: duckdb.Error) -> str:
    """What to do when a rule broke on a canonical column this run did not load."""
    m = re.search(r'column (?:named )?"([^"]+)"', str(exc))
    if not isinstance(exc, duckdb.BinderException) or not m:
        return ""
    tables = [
        t for t in TABLES if m[1] in TABLES[t].columns and m[1] not in created_columns(con, t)
    ]
    if not tables:
        return ""
    where = " or ".join(f"{t}({m[1]})" for t in tables)
    return (
        f" ({m[1]} was not loaded: only the columns that the model and the rules name are; "
        f"add {where} to the rule's `-- reads:` header)"
    )


def _finding(
    con: duckdb.DuckDBPyConnection,
    rule: Rule,
    row: dict[str, Any],
    cache: dict[tuple[Any, ...], Any],
) -> Finding:
    agent_id = str(row["agent_id"])
    extra = {k: scrub(jsonable(v)) for k, v in row.items() if k not in STANDARD_COLUMNS}
    evidence = {
        "rule": extra,
        "agent": _once(cache, ("agent", agent_id), lambda: _agent_row(con, agent_id)),
        **_once(
            cache,
            ("builds", row["workspace_id"], row["build_number"]),
            lambda: _build_history(con, row["workspace_id"], row["build_number"]),
        ),
        "log_lines": _once(
            cache,
            ("logs", agent_id, row.get("log_stream"), row.get("process_no")),
            lambda: _log_lines(con, agent_id, row.get("log_stream"), row.get("process_no")),
        ),
    }
    return Finding(
        rule=rule.id,
        severity=rule.severity,
        title=rule.title,
        agent_id=agent_id,
        workspace_id=jsonable(row["workspace_id"]),
        workspace_name=row["workspace_name"],
        build_number=row["build_number"],
        ts=jsonable(row["ts"]),
        summary=row["summary"],
        evidence=evidence,
        fingerprint=hashlib.sha256(f"{rule.id}|{agent_id}".encode()).hexdigest()[:16],
    )


def _once(
    cache: dict[tuple[Any, ...], Any], key: tuple[Any, ...], compute: Callable[[], Any]
) -> Any:
    """`compute()` the first time `key` is asked for in this run, the stored value after."""
    if key not in cache:
        cache[key] = compute()
    return cache[key]


AGENT_COLUMNS = """agent_id, agent_name, workspace_name, build_number, transition, lifecycle_state,
    agent_created_at, first_connected_at, last_connected_at, disconnected_at, started_at,
    ready_at, version, api_version, expanded_directory, logs_length, startup_log_rows,
    auth_instance_id, agent_deleted, joined_by"""


def _agent_row(con: duckdb.DuckDBPyConnection, agent_id: str) -> dict[str, Any]:
    rows = _records(con, f"SELECT {AGENT_COLUMNS} FROM agent_builds WHERE agent_id = ?", [agent_id])
    return rows[0] if rows else {}


def _build_history(
    con: duckdb.DuckDBPyConnection, workspace_id: Any, build_number: int
) -> dict[str, Any]:
    """The builds around the finding's build (`builds`) and how many were left out."""
    low, high = build_number - BUILDS_BEFORE, build_number + BUILDS_AFTER
    builds = _records(
        con,
        """SELECT b.build_number, b.transition, b.reason, b.build_created_at AS created_at,
                  b.job_status, b.job_completed_at,
                  list({'agent_id': CAST(a.agent_id AS VARCHAR), 'name': a.agent_name,
                        'lifecycle_state': a.lifecycle_state,
                        'first_connected_at': a.first_connected_at,
                        'started_at': a.started_at, 'ready_at': a.ready_at,
                        'disconnected_at': a.disconnected_at}
                       ORDER BY a.agent_name) FILTER (a.agent_id IS NOT NULL) AS agents
           FROM builds b LEFT JOIN agent_builds a ON a.build_id = b.build_id
           WHERE b.workspace_id = ? AND b.build_number BETWEEN ? AND ?
           GROUP BY ALL ORDER BY b.build_number""",
        [workspace_id, low, high],
    )
    before, after = one(
        con,
        """SELECT count(*) FILTER (build_number < ?), count(*) FILTER (build_number > ?)
           FROM builds WHERE workspace_id = ?""",
        [low, high, workspace_id],
    )
    return {"builds": builds, "builds_not_shown": {"before": before, "after": after}}


def _log_lines(
    con: duckdb.DuckDBPyConnection,
    agent_id: str,
    stream: str | None = None,
    process_no: int | None = None,
) -> list[dict[str, Any]]:
    """Key log lines of every process that served this agent row, and of the process the rule
    names (`log_stream`, `process_no` columns), which may never have reached the row."""
    rows = con.execute(
        f"""WITH served AS (
                SELECT DISTINCT stream, process_no FROM agent_manifests WHERE agent_id = ?
                UNION
                SELECT CAST(? AS VARCHAR), CAST(? AS BIGINT) WHERE ? IS NOT NULL
            )
            SELECT e.source, e.line, e.ts, e.ts_raw, e.level, e.logger, e.message, e.fields,
                   e.block, e.kind, o.offset_seconds
            FROM agent_key_events e JOIN served USING (stream, process_no)
            JOIN log_offsets o USING (stream)
            ORDER BY e.stream, e.file_rank, e.line
            LIMIT {MAX_LOG_EVIDENCE}""",
        [agent_id, stream, process_no, stream],
    ).fetchall()
    out = []
    for source, line, ts, raw, level, logger, message, fields, block, kind, offset in rows:
        # The line as the file has it (host clock); `ts` is the same moment on the server's clock.
        text = f"{raw:%Y-%m-%d %H:%M:%S}.{raw.microsecond // 1000:03d} [{level[:4]}]  "
        text += f"{logger}: " if logger else ""
        text += message + (f"  {fields}" if fields else "")
        if block:
            text += " ...\n" + block
        out.append(
            {
                "source": source,
                "line": line,
                "ts": jsonable(ts),
                "ts_raw": jsonable(raw),
                "clock_offset_seconds": offset,
                "kind": kind,
                "text": text,
            }
        )
    return out


def scrub(v: Any) -> Any:
    """Blank out `token=...`-style secrets in any string a rule returned (script output, errors)."""
    if isinstance(v, str):
        return re.sub(SECRET, r"\1<redacted>", v)
    if isinstance(v, list):
        return [scrub(x) for x in v]
    if isinstance(v, dict):
        return {k: scrub(x) for k, x in v.items()}
    return v


def jsonable(v: Any) -> Any:
    """Turn DuckDB values into JSON-ready ones (UTC ISO timestamps, strings for UUIDs)."""
    if isinstance(v, datetime):
        if v.tzinfo is not None:
            v = v.astimezone(UTC)
        return v.isoformat().replace("+00:00", "Z")
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    return v
