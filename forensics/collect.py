"""`forensics collect`: a consistent, read-only export of what `analyze` reads, from live Coder.

One connection, one ``BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY`` transaction, so every
table comes from the same snapshot while Coder keeps writing. Only the canonical columns of
`forensics.ingest.schema.TABLES` are selected (never ``SELECT *``): secret columns are never
read, and ``auth_token`` leaves the server only as ``auth_token_hash``, a SHA-256 of the token
keyed with a random key that the server makes for this transaction (a transaction-local setting:
it is never sent to the client, printed or written, and is gone at COMMIT). Equal tokens still
hash equal within one export, which is all the rules need.

Rows stream from ``COPY (SELECT ...) TO STDOUT WITH (FORMAT csv, HEADER)`` into gzip'd CSV
(``db/<table>.csv.gz``) or, with ``fmt="parquet"``, into a temporary CSV that DuckDB turns into
Parquet; no table is ever held in memory. ``manifest.json`` is written last.

Tables and columns are looked up in ``pg_catalog`` first (``information_schema`` hides what the
role may not read, so it cannot tell "absent" from "not permitted"): what an older Coder lacks
is exported without and reported, and a missing SELECT privilege is reported with the GRANT
that fixes it.

Nothing here prints: progress and warnings go through the `progress` callback, and failures
raise `ForensicsError` subclasses (exit code 2).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from dateutil import parser as dateparser
from psycopg.conninfo import conninfo_to_dict

from forensics import __version__
from forensics.errors import ExitCode, ForensicsError, UsageError
from forensics.ingest.schema import REQUIRED_TABLES, TABLE_ALIASES, TABLES

MANIFEST_VERSION = 1
BEGIN = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"  # one snapshot for every table
FORMATS = ("csv", "parquet")
HASH_KEY_SETTING = "forensics.hash_key"
MIGRATIONS_TABLE = "schema_migrations"
FLUSH_BYTES = 1 << 20  # write to the file in chunks of about this size
PROGRESS_SECONDS = 2.0  # at most one "rows so far" message per table this often
# Coder's workspace names: letters, digits and single hyphens (older versions allowed `_`).
WORKSPACE_NAME = re.compile(r"[A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)*")
SIMPLE_IDENT = re.compile(r"[a-z_][a-z0-9_]*")
# Legacy table names, per canonical table (older Coder versions).
LEGACY_TABLES = {
    canon: [old for old, new in TABLE_ALIASES.items() if new == canon] for canon in TABLES
}

# (level, message): level is "info" (progress, shown on a terminal) or "warning" (always shown).
Progress = Callable[[str, str], None]


class CollectError(ForensicsError):
    """The export cannot be made (the database refused, or it failed half way)."""

    exit_code = ExitCode.BAD_INPUT


class ConnectError(CollectError):
    """The server cannot be reached, or the database does not exist."""


class AuthenticationError(CollectError):
    """The server refused the credentials."""


class PermissionDenied(CollectError):
    """The role may not read a table that is required."""


class NotCoderDatabase(CollectError):
    """The database has no `workspace_agents` table."""


@dataclass
class TableExport:
    """What happened to one canonical table."""

    table: str
    status: str = "exported"  # exported | missing | no_permission
    source: str | None = None  # the relation read, schema-qualified
    file: str | None = None  # relative to the dump directory
    rows: int = 0
    bytes: int = 0
    columns: list[str] = field(default_factory=list)
    missing_columns: list[str] = field(default_factory=list)
    filter: str | None = None
    note: str = ""
    grant: str | None = None

    def as_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"status": self.status, "source": self.source}
        if self.status == "exported":
            doc.update(file=self.file, rows=self.rows, bytes=self.bytes, columns=self.columns)
        doc["missing_columns"] = self.missing_columns
        if self.status == "exported":
            doc["filter"] = self.filter
        if self.grant:
            doc["grant"] = self.grant
        if self.note:
            doc["note"] = self.note
        return doc


@dataclass
class CollectResult:
    """The dump written by `collect()`."""

    out: Path
    manifest: dict[str, Any]
    tables: list[TableExport]
    warnings: list[str]

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)


# --------------------------------------------------------------------------------------
# Options


def parse_since(text: str) -> datetime:
    """`--since`: a date (midnight UTC) or an ISO 8601 time (UTC unless it has an offset)."""
    try:
        when = dateparser.isoparse(text.strip())
    except ValueError:
        raise UsageError(
            f"--since: not an ISO 8601 date or time: {text!r} (e.g. 2026-05-01 or "
            "2026-05-01T12:00:00Z)"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def check_workspace_names(names: Sequence[str]) -> list[str]:
    """`--workspace` values: plain workspace names (any owner), deduplicated in order."""
    out: list[str] = []
    for name in names:
        name = name.strip()
        if "/" in name:
            raise UsageError(
                f"--workspace {name!r}: give the workspace name without its owner "
                "(every owner's workspace of that name is exported)"
            )
        if not WORKSPACE_NAME.fullmatch(name) or len(name) > 64:
            raise UsageError(f"--workspace {name!r}: not a Coder workspace name")
        if name not in out:
            out.append(name)
    return out


@dataclass(frozen=True)
class Scope:
    """What to export: history since a time, and/or only some workspaces."""

    since: datetime | None = None
    workspaces: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {
            "since": _iso(self.since) if self.since else None,
            "workspaces": list(self.workspaces),
        }


# --------------------------------------------------------------------------------------
# SQL


def _ident(name: str) -> str:
    return name if SIMPLE_IDENT.fullmatch(name) else '"' + name.replace('"', '""') + '"'


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _since_literal(since: datetime) -> str:
    return f"'{since.astimezone(UTC).isoformat()}'::timestamptz"


def _names_literal(names: Sequence[str]) -> str:
    # Names are checked against WORKSPACE_NAME, so they hold no quote.
    return "ARRAY[" + ", ".join(f"'{n}'" for n in names) + "]::text[]"


# Columns each table is limited by with --since (rows created at or after it).
SINCE_COLUMNS = {
    "workspace_builds": "created_at",
    "provisioner_jobs": "created_at",
    "workspace_resources": "created_at",
    "workspace_agents": "created_at",
    "workspace_agent_logs": "created_at",
    "workspace_agent_scripts": "created_at",
    "workspace_agent_script_timings": "started_at",
}


def _conditions(scope: Scope) -> dict[str, list[tuple[str, set[str]]]]:
    """Per table, the WHERE conditions and the other tables each one reads.

    --since limits history (builds, jobs, resources, agents, logs, scripts); workspaces,
    users, templates and template versions are kept whole so that rows still join.
    --workspace limits every table that hangs off a workspace, through its builds' jobs.
    """
    conds: dict[str, list[tuple[str, set[str]]]] = {t: [] for t in TABLES}
    if scope.since is not None:
        for table, col in SINCE_COLUMNS.items():
            conds[table].append((f"{col} >= {_since_literal(scope.since)}", set()))
    if scope.workspaces:
        names = _names_literal(scope.workspaces)
        ws = f"SELECT id FROM workspaces WHERE name = ANY ({names})"
        jobs = f"SELECT job_id FROM workspace_builds WHERE workspace_id IN ({ws})"
        resources = f"SELECT id FROM workspace_resources WHERE job_id IN ({jobs})"
        agents = f"SELECT id FROM workspace_agents WHERE resource_id IN ({resources})"
        scripts = f"SELECT id FROM workspace_agent_scripts WHERE workspace_agent_id IN ({agents})"
        path = {"workspaces", "workspace_builds"}
        conds["workspaces"].append((f"name = ANY ({names})", set()))
        conds["workspace_builds"].append((f"workspace_id IN ({ws})", {"workspaces"}))
        conds["provisioner_jobs"].append((f"id IN ({jobs})", path))
        conds["workspace_resources"].append((f"job_id IN ({jobs})", path))
        conds["workspace_agents"].append(
            (f"resource_id IN ({resources})", path | {"workspace_resources"})
        )
        deps = path | {"workspace_resources", "workspace_agents"}
        conds["workspace_agent_logs"].append((f"agent_id IN ({agents})", deps))
        conds["workspace_agent_scripts"].append((f"workspace_agent_id IN ({agents})", deps))
        conds["workspace_agent_script_timings"].append(
            (f"script_id IN ({scripts})", deps | {"workspace_agent_scripts"})
        )
        conds["users"].append(
            (
                f"id IN (SELECT owner_id FROM workspaces WHERE name = ANY ({names})) "
                "OR id IN (SELECT initiator_id FROM workspace_builds "
                f"WHERE workspace_id IN ({ws}))",
                path,
            )
        )
    return conds


def _hash_sql(column: str, server_version: int) -> str:
    """SQL for the keyed hash of a secret column (the key is the transaction-local setting)."""
    key = f"current_setting('{HASH_KEY_SETTING}')"
    value = f"{key} || {_ident(column)}::text"
    if server_version >= 110000:  # sha256() arrived in PostgreSQL 11
        return f"encode(sha256(convert_to({value}, 'UTF8')), 'hex')"
    return f"md5({value})"


def _hash_key_sql(server_version: int) -> str:
    """Makes the hash key inside the server; returns only `true` to the client."""
    if server_version >= 130000:  # gen_random_uuid() is built in from PostgreSQL 13
        key = "gen_random_uuid()::text || gen_random_uuid()::text"
    else:
        key = "md5(random()::text || clock_timestamp()::text) || md5(random()::text)"
    return (
        f"SELECT set_config('{HASH_KEY_SETTING}', {key}, true) IS NOT NULL "
        "AS auth_token_hash_key_set"
    )


@dataclass
class Plan:
    """How one canonical table is read: from which relation, which columns, which rows."""

    table: str
    relation: str | None = None  # the table's name in the database (canonical or legacy)
    schema: str | None = None  # the schema it resolved to on the search_path
    present: dict[str, bool] = field(default_factory=dict)  # column -> may SELECT it
    table_privilege: bool = False
    selects: list[tuple[str, str]] = field(default_factory=list)  # (canonical name, SQL)
    missing: list[str] = field(default_factory=list)
    where: list[str] = field(default_factory=list)
    order_by: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return [name for name, _ in self.selects]

    def query(self) -> str:
        cols = ", ".join(
            sql if sql == _ident(name) else f"{sql} AS {_ident(name)}" for name, sql in self.selects
        )
        text = f"SELECT {cols} FROM {_ident(self.relation or self.table)}"
        if self.where:
            text += " WHERE " + " AND ".join(f"({w})" if " OR " in w else w for w in self.where)
        if self.order_by:
            text += " ORDER BY " + ", ".join(self.order_by)
        return text

    def readable(self) -> bool:
        """May the role read every column this plan selects?"""
        if self.table_privilege:
            return True
        return all(self.present.get(c, False) for c in self._source_columns())

    def _source_columns(self) -> list[str]:
        table = TABLES[self.table]
        legacy = {canon: old for old, canon in table.renamed.items()}
        out = []
        for col in table.columns:
            if col in self.present:
                out.append(col)
            elif legacy.get(col) in self.present:
                out.append(legacy[col])
        out += [c for c in table.hashed if c in self.present]
        return out


def _plan_columns(plan: Plan, server_version: int) -> None:
    """Fill in the select list and the missing columns from the relation's columns."""
    table = TABLES[plan.table]
    legacy = {canon: old for old, canon in table.renamed.items()}
    for col in table.columns:
        if col in plan.present:
            plan.selects.append((col, _ident(col)))
        elif legacy.get(col) in plan.present:
            plan.selects.append((col, _ident(legacy[col])))
        else:
            plan.missing.append(col)
    for col in table.hashed:
        if col in plan.present:
            plan.selects.append((f"{col}_hash", _hash_sql(col, server_version)))
        else:
            plan.missing.append(col)
    if all(k in plan.present for k in table.key):
        plan.order_by = [_ident(k) for k in table.key]


def full_plans(scope: Scope) -> list[Plan]:
    """Plans for the current Coder schema, every table and column present (for --print-sql)."""
    conds = _conditions(scope)
    plans = []
    for name, table in TABLES.items():
        plan = Plan(name, relation=name, table_privilege=True)
        plan.present = {c: True for c in [*table.columns, *table.hashed]}
        _plan_columns(plan, server_version=130000)
        plan.where = [sql for sql, _ in conds[name]]
        plans.append(plan)
    return plans


# --------------------------------------------------------------------------------------
# The psql script


def psql_script(scope: Scope) -> str:
    """The same export as psql commands (`--print-sql`), for hosts without Python."""
    plans = full_plans(scope)
    lines = [
        "-- Export what `forensics analyze` reads from Coder's database, with psql alone.",
        f"-- Written by forensics {__version__} (`forensics collect --print-sql`).",
        "--",
        "-- Run it in an empty directory, as a role that may SELECT these tables:",
        '--     psql "postgres://readonly@db/coder" -X -v ON_ERROR_STOP=1 -f collect.sql',
        "-- then: forensics analyze . <agent log directories>",
        "--",
        "-- Every table comes from one REPEATABLE READ, READ ONLY transaction: one snapshot.",
        "-- Secret columns are never selected. auth_token is exported only as auth_token_hash:",
        "-- SHA-256 of the token with a random key that the server makes for this transaction;",
        "-- the key is never printed or written (hashes of two exports do not compare).",
        "-- For current Coder on PostgreSQL 13+. If psql says a column or table does not exist",
        "-- (an older Coder), delete it from its line, or use `forensics collect`, which adapts.",
    ]
    if scope.since or scope.workspaces:
        lines.append(f"-- Limited to: {json.dumps(scope.describe())}")
    lines += [
        "",
        "SET client_encoding = 'UTF8';",
        BEGIN + ";",
        "SET LOCAL TimeZone = 'UTC';",
        "SET LOCAL DateStyle = 'ISO, MDY';",
        _hash_key_sql(130000) + ";",
    ]
    for plan in plans:
        lines.append(f"\\copy ({plan.query()}) TO '{plan.table}.csv' WITH (FORMAT csv, HEADER)")
    tables = ", ".join(
        f"'{p.table}', json_build_object('file', '{p.table}.csv', 'columns', "
        f"json_build_array({', '.join(_quote(c) for c in p.columns)}))"
        for p in plans
    )
    manifest = (
        "SELECT json_build_object("
        f"'manifest_version', {MANIFEST_VERSION}, "
        f"'tool', 'forensics {__version__}', 'collected_with', 'psql script', "
        "'exported_at', now(), "
        "'server', json_build_object('version', current_setting('server_version'), "
        "'version_num', current_setting('server_version_num')::int), "
        "'database', current_database(), 'role', current_user, "
        "'coder_migration', (SELECT json_build_object('version', version, 'dirty', dirty) "
        f"FROM {MIGRATIONS_TABLE} ORDER BY version DESC LIMIT 1), "
        "'snapshot', json_build_object('isolation', current_setting('transaction_isolation'), "
        "'read_only', current_setting('transaction_read_only') = 'on', "
        "'snapshot', pg_current_snapshot()::text), "
        f"'scope', '{json.dumps(scope.describe())}'::json, "
        f"'tables', json_build_object({tables}))"
    )
    lines.append(f"\\copy ({manifest}) TO 'manifest.json'")
    lines.append("COMMIT;")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# Connecting and error messages


def redact(text: str, dsn: str | None = None) -> str:
    """`text` with any password (from the DSN, PGPASSWORD or a URL) replaced by ***."""
    secrets = []
    if dsn:
        try:
            pw = conninfo_to_dict(dsn).get("password")
        except psycopg.Error:
            pw = None
        if pw:
            secrets.append(str(pw))
    if os.environ.get("PGPASSWORD"):
        secrets.append(os.environ["PGPASSWORD"])
    for s in sorted(secrets, key=len, reverse=True):
        if len(s) >= 4:  # shorter ones would blank ordinary words, and guard nothing
            text = text.replace(s, "***")
    text = re.sub(r"(postgres(?:ql)?://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", text, flags=re.I)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _connect(dsn: str | None) -> psycopg.Connection:
    conninfo = dsn or ""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.Error as exc:
        raise UsageError(
            f"--dsn is not a libpq connection string or URL: {redact(_one_line(str(exc)), dsn)}"
        ) from None
    kwargs: dict[str, Any] = {"autocommit": True}
    if "connect_timeout" not in params and not os.environ.get("PGCONNECT_TIMEOUT"):
        kwargs["connect_timeout"] = 10
    if "application_name" not in params and not os.environ.get("PGAPPNAME"):
        kwargs["application_name"] = "forensics collect"
    try:
        return psycopg.connect(conninfo, **kwargs)
    except psycopg.Error as exc:
        raise _connect_error(exc, dsn) from None


def _connect_error(exc: psycopg.Error, dsn: str | None) -> CollectError:
    text = redact(_one_line(str(exc)), dsn)
    for prefix in ("connection failed: ", "connection is bad: "):
        text = text.removeprefix(prefix)
    text = text.replace("FATAL: ", "").strip()
    low = text.lower()
    if "password authentication failed" in low or "authentication failed" in low:
        return AuthenticationError(
            f"authentication failed: {text} (check the password in the DSN, PGPASSWORD or "
            "~/.pgpass)"
        )
    if "no password supplied" in low:
        return AuthenticationError(
            f"authentication failed: {text}: the server wants a password; give it in the DSN, "
            "PGPASSWORD or ~/.pgpass"
        )
    if "pg_hba.conf" in low:
        return AuthenticationError(
            f"the server refused this connection: {text} (its pg_hba.conf has no entry for this "
            "host, user and database)"
        )
    if re.search(r'role ".*" does not exist', low):
        return AuthenticationError(f"authentication failed: {text}")
    if re.search(r'database ".*" does not exist', low):
        return ConnectError(f"{text} (check the database name in the DSN or PGDATABASE)")
    return ConnectError(f"cannot reach the PostgreSQL server: {text}")


# --------------------------------------------------------------------------------------
# The export


class _Collector:
    def __init__(
        self,
        conn: psycopg.Connection,
        out: Path,
        scope: Scope,
        fmt: str,
        progress: Progress | None,
        dsn: str | None,
    ):
        self.conn, self.out, self.scope, self.fmt, self.dsn = conn, out, scope, fmt, dsn
        self._progress = progress
        self.warnings: list[str] = []
        self.role = ""
        self.version = 0

    def info(self, message: str) -> None:
        if self._progress:
            self._progress("info", message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        if self._progress:
            self._progress("warning", message)

    def sql(self, query: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        return self.conn.execute(query, params).fetchall()  # type: ignore[arg-type]

    def run(self) -> CollectResult:
        c = self.conn
        self.version = c.info.server_version
        c.execute("SET client_encoding = 'UTF8'")
        c.execute(BEGIN)
        # Text output in UTC and ISO format whatever the defaults (LOCAL: for this transaction,
        # which also holds behind a transaction-pooling proxy).
        c.execute("SET LOCAL TimeZone = 'UTC'")
        c.execute("SET LOCAL DateStyle = 'ISO, MDY'")
        # The first statement takes the snapshot that every table below is read from.
        c.execute(_hash_key_sql(self.version))
        snap_fn = "pg_current_snapshot()" if self.version >= 130000 else "txid_current_snapshot()"
        [(exported_at, server_version, database, role, isolation, read_only, snapshot)] = self.sql(
            "SELECT now(), current_setting('server_version'), current_database(), current_user, "
            "current_setting('transaction_isolation'), current_setting('transaction_read_only'), "
            f"{snap_fn}::text"
        )
        self.role = role
        self.info(
            f"connected to {database} (PostgreSQL {server_version}) as {role}; "
            f"snapshot {snapshot} at {_iso(exported_at)}"
        )
        plans = self._plans()
        matched = self._check_workspaces(plans)
        migration = self._migration()
        exports = []
        db_dir = self.out / "db"
        db_dir.mkdir(parents=True, exist_ok=True)
        for plan in plans:
            exports.append(self._export(plan, db_dir))
        c.execute("COMMIT")
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "tool": f"forensics {__version__}",
            "collected_with": "forensics collect",
            "exported_at": _iso(exported_at),
            "finished_at": _iso(datetime.now(UTC)),
            "server": {"version": server_version, "version_num": self.version},
            "database": database,
            "role": role,
            "coder_migration": migration,
            "snapshot": {
                "isolation": isolation,
                "read_only": read_only == "on",
                "snapshot": snapshot,
                "note": "every table was read in one REPEATABLE READ, READ ONLY transaction",
            },
            "format": "csv.gz" if self.fmt == "csv" else "parquet",
            "scope": {**self.scope.describe(), "workspaces_matched": matched},
            "secrets": {
                "not_read": {
                    t.name: [c for c in t.secret if c not in t.hashed]
                    for t in TABLES.values()
                    if t.secret
                },
                "hashed": {
                    f"{t.name}.{c}": f"{c}_hash: SHA-256 of the value with a random key made "
                    "inside the server for this export and never stored"
                    for t in TABLES.values()
                    for c in t.hashed
                },
            },
            "tables": {e.table: e.as_json() for e in exports},
            "warnings": self.warnings,
        }
        path = self.out / "manifest.json"
        path.write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
        return CollectResult(self.out, manifest, exports, self.warnings)

    # -- planning ----------------------------------------------------------------------

    def _relation(self, name: str) -> tuple[int, str, bool] | None:
        """(oid, schema, SELECT privilege) of the table `name` resolves to on the search_path
        (the export's queries name it unqualified, so they read that same table), or None."""
        rows = self.sql(
            "SELECT c.oid::int, n.nspname::text, has_table_privilege(c.oid, 'SELECT') "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.oid = to_regclass(%s)",
            [name],
        )
        return rows[0] if rows else None

    def _grant(self, schema: str | None, name: str | None) -> str:
        target = _ident(name or "")
        if schema not in (None, "public"):
            target = f"{_ident(schema or '')}.{target}"
        return f"GRANT SELECT ON {target} TO {_ident(self.role)};"

    def _plans(self) -> list[Plan]:
        conds = _conditions(self.scope)
        plans: dict[str, Plan] = {}
        for name in TABLES:
            plan = Plan(name)
            for candidate in [name, *LEGACY_TABLES.get(name, [])]:
                rel = self._relation(candidate)
                if rel is None:
                    continue
                oid, plan.schema, plan.table_privilege = rel
                plan.relation = candidate
                plan.present = dict(
                    self.sql(
                        "SELECT attname::text, has_column_privilege(attrelid, attnum, 'SELECT') "
                        "FROM pg_attribute WHERE attrelid = %s AND attnum > 0 "
                        "AND NOT attisdropped ORDER BY attnum",
                        [oid],
                    )
                )
                _plan_columns(plan, self.version)
                break
            plans[name] = plan
        if plans["workspace_agents"].relation is None:
            self._not_coder()
        for name, plan in plans.items():
            plan.where = [sql for sql, _ in conds[name]]
            if plan.relation is None:
                continue
            since_col = SINCE_COLUMNS.get(name)
            if self.scope.since and since_col and since_col not in plan.present:
                plan.where = [w for w in plan.where if not w.startswith(f"{since_col} >= ")]
                self.warn(f"--since cannot limit {name} (it has no {since_col}): exported whole")
            if not plan.readable():
                if name in REQUIRED_TABLES:
                    raise PermissionDenied(
                        f"permission denied: role {self.role} may not SELECT from "
                        f"{plan.relation}, which forensics needs; as its owner or a superuser, "
                        f"run: {self._grant(plan.schema, plan.relation)}"
                    )
                continue  # reported when its turn comes
            for _, deps in conds[name]:
                for dep in sorted(deps):
                    dp = plans[dep]
                    if dp.relation is not None and dp.readable():
                        continue
                    problem = (
                        f"table {dep} is missing"
                        if dp.relation is None
                        else f"role {self.role} may not SELECT from {dep} "
                        f"({self._grant(dp.schema, dp.relation)})"
                    )
                    raise UsageError(
                        f"--workspace needs table {dep} to find {name}'s rows, but {problem}"
                    )
        return list(plans.values())

    def _not_coder(self) -> None:
        rows = self.sql(
            "SELECT n.nspname, has_schema_privilege(n.oid, 'USAGE') FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relname = 'workspace_agents' AND c.relkind IN ('r', 'p', 'v', 'm', 'f') "
            "ORDER BY 1"
        )
        database = self.sql("SELECT current_database(), current_setting('search_path')")[0]
        for schema, usage in rows:
            if not usage:
                raise PermissionDenied(
                    f"permission denied: role {self.role} may not use schema {schema}, which "
                    f"holds workspace_agents; as its owner or a superuser, run: "
                    f"GRANT USAGE ON SCHEMA {_ident(schema)} TO {_ident(self.role)};"
                )
            raise NotCoderDatabase(
                f"workspace_agents is in schema {schema}, which is not on the search_path "
                f"({database[1]}): add options=-csearch_path={schema} to the DSN"
            )
        raise NotCoderDatabase(
            f"database {database[0]} is not a Coder database: it has no workspace_agents "
            "table (check the database name in the DSN or PGDATABASE; Coder's is often 'coder')"
        )

    def _check_workspaces(self, plans: list[Plan]) -> dict[str, int]:
        if not self.scope.workspaces:
            return {}
        ws = next(p for p in plans if p.table == "workspaces")
        rows = dict(
            self.sql(
                f"SELECT name::text, count(*)::int FROM {_ident(ws.relation or 'workspaces')} "
                "WHERE name = ANY (%s) GROUP BY name",
                [list(self.scope.workspaces)],
            )
        )
        matched = {name: rows.get(name, 0) for name in self.scope.workspaces}
        unmatched = [n for n, k in matched.items() if k == 0]
        if len(unmatched) == len(matched):
            raise UsageError(
                f"--workspace: no workspace is named {', '.join(unmatched)} (deleted "
                "workspaces count too; names are exact)"
            )
        for name in unmatched:
            self.warn(f"--workspace {name}: no workspace has this name; nothing exported for it")
        for name, k in matched.items():
            if k > 1:
                self.info(f"--workspace {name}: {k} workspaces (several owners or re-created)")
        return matched

    def _migration(self) -> dict[str, Any] | None:
        """Coder's migration version: golang-migrate's one-row `schema_migrations`."""
        rel = self._relation(MIGRATIONS_TABLE)
        if rel is None or not rel[2]:
            if MIGRATIONS_TABLE not in TABLES:  # else its export says why it is not there
                problem = "no such table" if rel is None else "permission denied"
                self.warn(f"{MIGRATIONS_TABLE}: {problem}; Coder's migration version is unknown")
            return None
        rows = self.sql(
            f"SELECT version, dirty FROM {MIGRATIONS_TABLE} ORDER BY version DESC LIMIT 1"
        )
        if not rows:
            return None
        return {"version": rows[0][0], "dirty": rows[0][1]}

    # -- exporting ---------------------------------------------------------------------

    def _export(self, plan: Plan, db_dir: Path) -> TableExport:
        source = f"{plan.schema}.{plan.relation}" if plan.relation else None
        exp = TableExport(plan.table, source=source, missing_columns=plan.missing)
        if plan.relation is None:
            exp.status = "missing"
            legacy = LEGACY_TABLES.get(plan.table)
            names = " or ".join([plan.table, *(legacy or [])])
            exp.note = f"no table {names} in this database (an older Coder version?)"
            self.warn(f"{plan.table}: {exp.note}; not exported, and rules that need it are skipped")
            return exp
        if not plan.readable():
            exp.status, exp.grant = "no_permission", self._grant(plan.schema, plan.relation)
            exp.note = f"role {self.role} may not SELECT from {source}"
            self.warn(
                f"permission denied for table {plan.table}: not exported, and rules that need "
                f"it are skipped; to export it, run as its owner or a superuser: {exp.grant}"
            )
            return exp
        if plan.missing:
            self.warn(
                f"{plan.table}: no column {', '.join(plan.missing)} in this database (an older "
                "Coder version?); exported without, and rules that need them are skipped"
            )
        exp.columns = plan.columns
        exp.filter = " AND ".join(plan.where) or None
        suffix = ".csv.gz" if self.fmt == "csv" else ".parquet"
        target = db_dir / f"{plan.table}{suffix}"
        exp.file = str(target.relative_to(self.out))
        query = f"COPY ({plan.query()}) TO STDOUT WITH (FORMAT csv, HEADER)"
        self.conn.execute("SAVEPOINT forensics_table")
        try:
            if self.fmt == "csv":
                exp.rows = self._copy(query, plan.table, target, gzip_it=True)
            else:
                tmp = db_dir / f".{plan.table}.csv.tmp"
                try:
                    exp.rows = self._copy(query, plan.table, tmp, gzip_it=False)
                    _csv_to_parquet(tmp, target, plan.columns)
                finally:
                    tmp.unlink(missing_ok=True)
        except psycopg.errors.InsufficientPrivilege as exc:
            target.unlink(missing_ok=True)
            self.conn.execute("ROLLBACK TO SAVEPOINT forensics_table")
            grant = self._grant(plan.schema, plan.relation)
            reason = redact(_one_line(exc.diag.message_primary or str(exc)), self.dsn)
            if plan.table in REQUIRED_TABLES:
                raise PermissionDenied(
                    f"{reason}: forensics needs {plan.table}; as its owner or a superuser, "
                    f"run: {grant}"
                ) from None
            exp.status, exp.grant, exp.note, exp.file = "no_permission", grant, reason, None
            exp.columns = []
            self.warn(f"{plan.table}: {reason}; not exported. To export it, run: {grant}")
            return exp
        except psycopg.Error as exc:
            target.unlink(missing_ok=True)
            raise self._export_error(plan.table, exc) from None
        self.conn.execute("RELEASE SAVEPOINT forensics_table")
        exp.bytes = target.stat().st_size
        self.info(f"{plan.table}: {exp.rows:,} rows, {_size(exp.bytes)} -> {exp.file}")
        return exp

    def _copy(self, query: str, table: str, path: Path, gzip_it: bool) -> int:
        """Stream one COPY into `path`; returns the number of rows."""
        raw = path.open("wb")
        sink: Any = raw
        if gzip_it:
            sink = gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0)
        chunks, buf = 0, bytearray()
        last = time.monotonic()
        try:
            with self.conn.cursor() as cur:
                with cur.copy(query) as copy:  # type: ignore[arg-type]
                    for chunk in copy:  # one CSV row (the header first) per chunk
                        buf += chunk
                        chunks += 1
                        if len(buf) >= FLUSH_BYTES:
                            sink.write(buf)
                            buf.clear()
                            now = time.monotonic()
                            if now - last >= PROGRESS_SECONDS:
                                last = now
                                self.info(f"{table}: {chunks - 1:,} rows so far")
                rows = cur.rowcount if cur.rowcount >= 0 else max(chunks - 1, 0)
            sink.write(buf)
        finally:
            if gzip_it:
                sink.close()
            raw.close()
        return rows

    def _export_error(self, table: str, exc: psycopg.Error) -> CollectError:
        text = redact(_one_line(str(exc)), self.dsn)
        hint = ""
        if isinstance(exc, psycopg.errors.QueryCanceled):
            hint = (
                " (a statement_timeout? rerun with PGOPTIONS='-c statement_timeout=0', or use "
                "--since/--workspace)"
            )
        elif "conflict with recovery" in text:
            hint = " (on a replica: enable hot_standby_feedback, or export from the primary)"
        return CollectError(f"exporting {table} failed: {text}{hint}")


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _csv_to_parquet(src: Path, dst: Path, columns: list[str]) -> None:
    """Turn one exported CSV into Parquet with DuckDB, streaming in bounded memory; values stay
    text, exactly as in the CSV (NULL and empty string kept apart), so `analyze` reads them
    the same."""
    import duckdb

    with tempfile.TemporaryDirectory(prefix=".duckdb-", dir=dst.parent) as spill:
        con = duckdb.connect(
            config={"memory_limit": "128MB", "threads": 1, "temp_directory": spill}
        )
        try:
            con.execute("SET enable_progress_bar = false")
            cols = ", ".join(f"'{c}': 'VARCHAR'" for c in columns)
            s, d = str(src).replace("'", "''"), str(dst).replace("'", "''")
            con.execute(
                f"""COPY (SELECT * FROM read_csv('{s}', header=true, auto_detect=false,
                    columns={{{cols}}}, delim=',', quote='"', escape='"',
                    allow_quoted_nulls=false, new_line='\\n'))
                TO '{d}' (FORMAT parquet, ROW_GROUP_SIZE 30000)"""
            )
        finally:
            con.close()


def _prepare_out(out: Path) -> bool:
    """Check that `out` is new or empty; returns whether it must be created."""
    if out.exists():
        if not out.is_dir():
            raise UsageError(f"{out} exists and is not a directory")
        if any(out.iterdir()):
            raise UsageError(
                f"{out} is not empty: collect writes a new dump; give a new or empty directory"
            )
        return False
    return True


def collect(
    out: Path,
    *,
    dsn: str | None = None,
    since: datetime | None = None,
    workspaces: Sequence[str] = (),
    fmt: str = "csv",
    progress: Progress | None = None,
) -> CollectResult:
    """Export what `analyze` reads into `out` (db/<table>.csv.gz or .parquet, manifest.json).

    `dsn` is a libpq connection string or URL; None uses the PG* environment variables.
    """
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    scope = Scope(since, tuple(check_workspace_names(workspaces)))
    create = _prepare_out(out)
    conn = _connect(dsn)
    try:
        if create:
            out.mkdir(parents=True)
        return _Collector(conn, out, scope, fmt, progress, dsn).run()
    except BaseException as exc:
        # Leave nothing half-written: a dump is complete when manifest.json exists.
        if create:
            shutil.rmtree(out, ignore_errors=True)
        else:
            shutil.rmtree(out / "db", ignore_errors=True)
            (out / "manifest.json").unlink(missing_ok=True)
        if isinstance(exc, psycopg.Error):
            raise CollectError(f"the export failed: {redact(_one_line(str(exc)), dsn)}") from None
        raise
    finally:
        conn.close()
