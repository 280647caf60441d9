"""`forensics collect` against a real PostgreSQL server started for these tests.

The server (tests/pgcluster.py) gets a Coder-shaped schema (tests/pg_schema.sql) and the sample
deployment (forensics.synth.sample_scenario(), the data committed under sample_data/), then:
collect -> analyze gives the sample's findings; no secret reaches the dump or the terminal;
missing privileges, bad credentials, an unreachable server and a non-Coder database give one
clear `Error:` line and exit 2; --since/--workspace limit rows; the export is one snapshot while
a writer keeps committing; memory stays flat; the --print-sql script does the same in psql.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import threading
import time
import tracemalloc
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forensics import collect as collecting
from forensics import synth
from forensics.cli import app
from forensics.engine import PIPELINE_READS
from forensics.errors import ExitCode
from forensics.ingest.schema import TABLES, loaded_columns
from forensics.rules import builtin_rules, columns_read
from tests.pgcluster import PgCluster, PgUnavailable

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data" / "incident"
SCHEMA_SQL = Path(__file__).with_name("pg_schema.sql")
PASSWORD = "Pw-9c1e5b7a-do-not-print"
MIGRATION = 498
SECRET_COLUMNS = {c for t in TABLES.values() for c in t.secret}


def invoke(*args, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False, env=env)


def findings(out: Path) -> list[tuple]:
    doc = json.loads((out / "findings.json").read_text(encoding="utf-8"))
    return [
        (f["rule"], f["agent_id"], f["build_number"], f["ts"], f["summary"])
        for f in doc["findings"]
    ]


def loaded_rows(out: Path) -> dict[str, int]:
    doc = json.loads((out / "findings.json").read_text(encoding="utf-8"))
    assert all(t["rejected"] == 0 for t in doc["coverage"]["tables"]), doc["coverage"]["tables"]
    return {t["table"]: t["rows_loaded"] for t in doc["coverage"]["tables"] if t["rows_loaded"]}


def analyze(tmp: Path, *paths: Path) -> Path:
    out = tmp / "out"
    r = invoke("analyze", *paths, "--out", out)
    assert r.exit_code == ExitCode.FINDINGS, r.stdout + r.stderr
    return out


def read_csv(path: Path) -> list[dict[str, str | None]]:
    """Rows of a psql CSV export, NULL (unquoted empty) as None and "" as ""."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        text = f.read()
    rows = list(csv.reader(io.StringIO(text)))
    header, out = rows[0], []
    for row in rows[1:]:
        out.append({h: (v if v != "" else None) for h, v in zip(header, row, strict=True)})
    return out


def header(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        return next(csv.reader(f))


def every_byte(root: Path) -> str:
    """All files under root as text, gzip'd ones decompressed."""
    parts = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            parts.append(data.decode("utf-8", errors="replace"))
    return "\n".join(parts)


def canonical_header(table: str) -> list[str]:
    t = TABLES[table]
    return [*t.columns, *(f"{h}_hash" for h in t.hashed)]


# --------------------------------------------------------------------------------------
# The server


def load_scenario(conn, scn: synth.Scenario) -> None:
    """Load the scenario's rows as psql CSV (synth's writer) with COPY FROM STDIN.

    Each table goes through a staging copy, so the generated provisioner_jobs.job_status is
    computed by the server (and checked against the scenario's)."""
    for table in synth.TABLES:
        text = synth.csv_table(table, scn.tables[table], "UTC")
        conn.execute(f"CREATE TEMP TABLE stage_{table} (LIKE {table})")
        with conn.cursor().copy(
            f"COPY stage_{table} FROM STDIN WITH (FORMAT csv, HEADER MATCH)"
        ) as cp:
            cp.write(text)
        cols = ", ".join(
            r[0]
            for r in conn.execute(
                "SELECT quote_ident(attname) FROM pg_attribute WHERE attrelid = %s::regclass "
                "AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
                [table],
            )
        )
        conn.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM stage_{table}")
    [(bad,)] = conn.execute(
        "SELECT count(*) FROM provisioner_jobs p JOIN stage_provisioner_jobs s USING (id) "
        "WHERE p.job_status <> s.job_status"
    ).fetchall()
    assert bad == 0


@pytest.fixture(scope="session")
def scn():
    return synth.sample_scenario()


@pytest.fixture(scope="session")
def pg(scn):
    """A running cluster with databases coder (the sample), coder_old (an older Coder's
    schema), coder_busy (for the concurrent writer), coder_big (many log rows) and notcoder."""
    try:
        cluster = PgCluster.start()
    except PgUnavailable as exc:
        pytest.fail(f"cannot start PostgreSQL for the collect tests: {exc}")
    try:
        with cluster.connect() as c:
            c.execute("CREATE DATABASE coder")
            for role in ("forensics_ro", "no_agents", "no_logs"):
                c.execute(f"CREATE ROLE {role} LOGIN")
            c.execute(f"CREATE ROLE pw_user LOGIN PASSWORD '{PASSWORD}'")
        with cluster.connect("coder") as c:
            c.execute(SCHEMA_SQL.read_text())
            load_scenario(c, scn)
            c.execute("INSERT INTO schema_migrations VALUES (%s, false)", [MIGRATION])
            c.execute(
                "GRANT SELECT ON ALL TABLES IN SCHEMA public "
                "TO forensics_ro, no_agents, no_logs, pw_user"
            )
            c.execute("REVOKE SELECT ON workspace_agents FROM no_agents")
            c.execute("REVOKE SELECT ON workspace_agent_logs FROM no_logs")
        with cluster.connect() as c:
            for db in ("coder_old", "coder_busy", "coder_big"):
                c.execute(f"CREATE DATABASE {db} TEMPLATE coder")
            c.execute("CREATE DATABASE notcoder")
        with cluster.connect("coder_old") as c:
            # As before Coder's 2023-10 migrations: no api_version/parent_id/deleted, the
            # startup_logs_* names, the old log table name, no scripts, no timings.
            c.execute(
                "ALTER TABLE workspace_agents DROP COLUMN api_version, DROP COLUMN parent_id, "
                "DROP COLUMN deleted"
            )
            c.execute("ALTER TABLE workspace_agents RENAME logs_length TO startup_logs_length")
            c.execute("ALTER TABLE workspace_agent_logs RENAME TO workspace_agent_startup_logs")
            c.execute("DROP TABLE workspace_agent_scripts, workspace_agent_script_timings")
        with cluster.connect("coder_big") as c:
            c.execute(
                "INSERT INTO workspace_agent_logs (agent_id, created_at, output, id, level, "
                "log_source_id) SELECT agent_id, created_at + g * interval '1 ms', "
                "'line ' || g || ' ' || md5(g::text) || repeat('.', 200), 1000 + g, 'info', "
                "log_source_id FROM (SELECT * FROM workspace_agent_logs LIMIT 1) a, "
                "generate_series(1, 120000) g"
            )
        yield cluster
    finally:
        cluster.stop()


def ro(pg: PgCluster, db: str = "coder", user: str = "forensics_ro") -> str:
    return pg.dsn(db, user)


@pytest.fixture(scope="session")
def sample_findings(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sample")
    out = analyze(tmp, SAMPLE)
    return findings(out), loaded_rows(out)


@pytest.fixture(scope="session")
def csv_dump(pg, tmp_path_factory):
    dump = tmp_path_factory.mktemp("collect") / "dump"
    r = invoke("collect", "--dsn", ro(pg), dump)
    return r, dump


# --------------------------------------------------------------------------------------
# 1. collect -> analyze gives the findings of the psql exports of the same data


def test_collect_writes_a_dump_and_says_so_on_stderr(csv_dump):
    r, dump = csv_dump
    assert r.exit_code == ExitCode.OK, r.stderr
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert lines[0].startswith(f"wrote {dump}: 12 tables, ") and "one snapshot as of" in lines[0]
    assert lines[1] == f"next: forensics analyze {dump} <agent log directories>"
    assert len(lines) == 2  # no warnings; no progress (stderr is not a terminal)
    files = sorted(p.relative_to(dump).as_posix() for p in dump.rglob("*") if p.is_file())
    assert files == sorted(["manifest.json", *(f"db/{t}.csv.gz" for t in TABLES)])


def test_collect_then_analyze_gives_the_sample_findings(csv_dump, sample_findings, tmp_path):
    _, dump = csv_dump
    out = analyze(tmp_path, dump, SAMPLE / "logs")
    want, want_rows = sample_findings
    assert findings(out) == want
    assert len(want) == 4
    got_rows = loaded_rows(out)
    assert {t: got_rows[t] for t in want_rows} == want_rows
    assert got_rows["schema_migrations"] == 1
    # Every exported column is canonical (auth_token only as its hash): none missing, no
    # secret; the ones ignored are those this run reads nowhere (a rule of yours may read them).
    doc = json.loads((out / "findings.json").read_text(encoding="utf-8"))
    loaded = loaded_columns([*columns_read(builtin_rules()), *PIPELINE_READS])
    for t in doc["coverage"]["tables"]:
        assert (t["missing_columns"], t["secret_columns"]) == ([], []), t
        spec = TABLES[t["table"]]
        exported = set(spec.columns) | {f"{h}_hash" for h in spec.hashed}
        assert set(t["ignored_columns"]) == exported - set(loaded[t["table"]]), t


def test_parquet_dump_gives_the_same_findings(pg, sample_findings, tmp_path):
    dump = tmp_path / "dump"
    r = invoke("collect", "--dsn", ro(pg), "--format", "parquet", dump)
    assert r.exit_code == ExitCode.OK, r.stderr
    assert sorted(p.name for p in (dump / "db").iterdir()) == sorted(f"{t}.parquet" for t in TABLES)
    out = analyze(tmp_path, dump, SAMPLE / "logs")
    assert findings(out) == sample_findings[0]
    manifest = json.loads((dump / "manifest.json").read_text())
    assert manifest["format"] == "parquet"


def test_manifest(csv_dump, scn):
    _, dump = csv_dump
    m = json.loads((dump / "manifest.json").read_text())
    assert m["tool"].startswith("forensics ") and m["manifest_version"] == 1
    assert m["server"]["version"].startswith(("15", "16", "17", "18", "13", "14"))
    assert m["coder_migration"] == {"version": MIGRATION, "dirty": False}
    assert m["snapshot"]["isolation"] == "repeatable read" and m["snapshot"]["read_only"] is True
    assert re.fullmatch(r"\d+:\d+:[\d,]*", m["snapshot"]["snapshot"])
    assert datetime.fromisoformat(m["exported_at"]) <= datetime.fromisoformat(m["finished_at"])
    assert m["role"] == "forensics_ro" and m["database"] == "coder"
    assert list(m["tables"]) == list(TABLES)
    for table, entry in m["tables"].items():
        assert entry["status"] == "exported"
        assert entry["file"] == f"db/{table}.csv.gz"
        assert entry["columns"] == canonical_header(table)
        assert entry["missing_columns"] == []
        assert entry["rows"] == len(read_csv(dump / entry["file"]))
        if table in synth.TABLES:
            assert entry["rows"] == len(scn.tables[table]), table
    assert m["tables"]["workspace_agents"]["rows"] == 14
    assert m["warnings"] == []


# --------------------------------------------------------------------------------------
# 2. Secrets


def test_no_secret_in_the_dump_nor_on_the_terminal(csv_dump, scn):
    r, dump = csv_dump
    secrets = {s for s in scn.secret_values() if len(s) >= 8}
    assert len(secrets) > 20
    text = every_byte(dump)
    leaked = [s for s in secrets if s in text or s in r.stdout or s in r.stderr]
    assert leaked == []
    # Only the canonical columns, never a secret column; auth_token only as its keyed hash.
    for table in TABLES:
        cols = header(dump / "db" / f"{table}.csv.gz")
        assert cols == canonical_header(table)
        assert not SECRET_COLUMNS & set(cols)
    agents = read_csv(dump / "db" / "workspace_agents.csv.gz")
    tokens = {a["id"]: a["auth_token"] for a in scn.tables["workspace_agents"]}
    hashes = {a["id"]: a["auth_token_hash"] for a in agents}
    assert all(h and re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes.values())
    # Equal tokens (a prebuild claim reuses its token) hash equal; different ones do not.
    for a in hashes:
        for b in hashes:
            assert (hashes[a] == hashes[b]) == (tokens[a] == tokens[b])


def test_the_hash_key_is_new_for_every_export(pg, csv_dump, tmp_path):
    dump = tmp_path / "again"
    assert invoke("collect", "--dsn", ro(pg), dump).exit_code == 0
    first = read_csv(csv_dump[1] / "db" / "workspace_agents.csv.gz")
    second = read_csv(dump / "db" / "workspace_agents.csv.gz")
    assert {a["auth_token_hash"] for a in first}.isdisjoint({a["auth_token_hash"] for a in second})


# --------------------------------------------------------------------------------------
# 3. Privileges


def test_no_select_on_a_required_table_fails_with_the_grant(pg, tmp_path):
    dump = tmp_path / "dump"
    r = invoke("collect", "--dsn", ro(pg, user="no_agents"), dump)
    assert r.exit_code == ExitCode.BAD_INPUT
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("Error: ")
    assert "may not SELECT from workspace_agents" in r.stderr
    assert r.stderr.rstrip().endswith("run: GRANT SELECT ON workspace_agents TO no_agents;")
    assert not dump.exists()


def test_no_select_on_an_optional_table_warns_and_exports_the_rest(pg, tmp_path):
    dump = tmp_path / "dump"
    r = invoke("collect", "--dsn", ro(pg, user="no_logs"), dump)
    assert r.exit_code == ExitCode.OK, r.stderr
    [warning] = [ln for ln in r.stderr.splitlines() if ln.startswith("warning: ")]
    assert "permission denied for table workspace_agent_logs" in warning
    assert warning.endswith("GRANT SELECT ON workspace_agent_logs TO no_logs;")
    assert not (dump / "db" / "workspace_agent_logs.csv.gz").exists()
    assert (dump / "db" / "workspace_agents.csv.gz").exists()
    m = json.loads((dump / "manifest.json").read_text())
    entry = m["tables"]["workspace_agent_logs"]
    assert entry["status"] == "no_permission"
    assert entry["grant"] == "GRANT SELECT ON workspace_agent_logs TO no_logs;"
    assert m["tables"]["workspace_agents"]["rows"] == 14
    assert m["warnings"] == [warning.removeprefix("warning: ")]


# --------------------------------------------------------------------------------------
# 4. One snapshot while Coder keeps writing


class Writer(threading.Thread):
    """Keeps adding a build (job, resource, agent 'ready', one log line) to a new workspace
    and turning the previous agent 'off', one transaction per build, until stopped."""

    def __init__(self, pg: PgCluster, db: str):
        super().__init__(daemon=True)
        self.pg, self.db = pg, db
        self.cond = threading.Condition()
        self.committed = 0  # builds committed so far
        self.stop = threading.Event()
        self.error: BaseException | None = None
        with pg.connect(db) as c:
            [(self.owner, self.org, self.template, self.version)] = c.execute(
                "SELECT w.owner_id, w.organization_id, w.template_id, t.active_version_id "
                "FROM workspaces w JOIN templates t ON t.id = w.template_id "
                "WHERE w.name = 'ml-train'"
            ).fetchall()
            self.workspace = uuid.uuid4()
            c.execute(
                "INSERT INTO workspaces (id, created_at, updated_at, owner_id, organization_id, "
                "template_id, name) VALUES (%s, now(), now(), %s, %s, %s, %s)",
                [
                    self.workspace,
                    self.owner,
                    self.org,
                    self.template,
                    f"busy-{self.workspace.hex[:8]}",
                ],
            )
            c.execute(
                "SELECT setval('workspace_agent_startup_logs_id_seq', (SELECT max(id) FROM workspace_agent_logs))"
            )
            self._build(c)

    def _build(self, c) -> None:
        job, build, res, agent = (uuid.uuid4() for _ in range(4))
        with c.transaction():
            c.execute(
                "INSERT INTO provisioner_jobs (id, created_at, updated_at, started_at, "
                "completed_at, organization_id, initiator_id, provisioner, storage_method, type, "
                "input, file_id) VALUES (%s, now(), now(), now(), now(), %s, %s, 'terraform', "
                "'file', 'workspace_build', '{}', %s)",
                [job, self.org, self.owner, uuid.uuid4()],
            )
            c.execute(
                "INSERT INTO workspace_builds (id, created_at, updated_at, workspace_id, "
                "template_version_id, build_number, transition, initiator_id, job_id) "
                "VALUES (%s, now(), now(), %s, %s, %s, 'start', %s, %s)",
                [build, self.workspace, self.version, self.committed + 1, self.owner, job],
            )
            c.execute(
                "INSERT INTO workspace_resources (id, created_at, job_id, transition, type, name) "
                "VALUES (%s, now(), %s, 'start', 'google_compute_instance', 'dev')",
                [res, job],
            )
            c.execute(
                "UPDATE workspace_agents SET lifecycle_state = 'off', updated_at = now() "
                "WHERE lifecycle_state = 'ready' AND resource_id IN (SELECT r.id FROM "
                "workspace_resources r JOIN workspace_builds b ON b.job_id = r.job_id "
                "WHERE b.workspace_id = %s)",
                [self.workspace],
            )
            c.execute(
                "INSERT INTO workspace_agents (id, created_at, updated_at, name, resource_id, "
                "auth_token, architecture, operating_system, lifecycle_state, first_connected_at, "
                "started_at, ready_at) VALUES (%s, now(), now(), 'main', %s, %s, 'amd64', "
                "'linux', 'ready', now(), now(), now())",
                [agent, res, uuid.uuid4()],
            )
            c.execute(
                "INSERT INTO workspace_agent_logs (agent_id, created_at, output) VALUES (%s, now(), 'ready')",
                [agent],
            )
        with self.cond:
            self.committed += 1
            self.cond.notify_all()

    def run(self) -> None:
        deadline = time.monotonic() + 20
        try:
            with self.pg.connect(self.db) as c:
                while not self.stop.is_set() and time.monotonic() < deadline:
                    self._build(c)
                    time.sleep(0.002)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def wait_for_more(self, than: int, timeout: float = 10) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: self.committed > than, timeout), "writer stalled"


def busy_state(dump: Path, workspace_id: str) -> dict[str, int]:
    """What the dump holds for workspace `busy`, checking that every row joins."""
    db = dump / "db"
    builds = [
        b for b in read_csv(db / "workspace_builds.csv.gz") if b["workspace_id"] == workspace_id
    ]
    jobs = {j["id"] for j in read_csv(db / "provisioner_jobs.csv.gz")}
    resources = {r["id"]: r["job_id"] for r in read_csv(db / "workspace_resources.csv.gz")}
    agents = read_csv(db / "workspace_agents.csv.gz")
    logs = read_csv(db / "workspace_agent_logs.csv.gz")
    build_jobs = {b["job_id"] for b in builds}
    # Every agent row in the dump has its resource, its resource's job, and (for builds) the build.
    for a in agents:
        assert a["resource_id"] in resources, a
        assert resources[a["resource_id"]] in jobs, a
    assert build_jobs <= jobs
    busy = [a for a in agents if resources[a["resource_id"]] in build_jobs]
    busy_ids = {a["id"] for a in busy}
    return {
        "builds": len(builds),
        "max_build_number": max(int(b["build_number"]) for b in builds),
        "resources": sum(1 for j in resources.values() if j in build_jobs),
        "agents": len(busy),
        "ready": sum(1 for a in busy if a["lifecycle_state"] == "ready"),
        "logs": sum(1 for g in logs if g["agent_id"] in busy_ids),
    }


def collect_while_writing(pg: PgCluster, db: str, dump: Path) -> tuple[dict, Writer, dict]:
    writer = Writer(pg, db)
    writer.start()
    waits = []

    def progress(level: str, message: str) -> None:
        # After the snapshot is taken and after each table: let the writer commit more.
        seen = writer.committed
        writer.wait_for_more(seen)
        waits.append(seen)

    try:
        result = collecting.collect(dump, dsn=ro(pg, db), progress=progress)
    finally:
        writer.stop.set()
        writer.join(30)
    assert writer.error is None, writer.error
    assert len(waits) >= len(TABLES)  # the writer committed between every two tables
    return busy_state(dump, str(writer.workspace)), writer, result.manifest


def test_the_export_is_one_snapshot_while_a_writer_commits(pg, tmp_path):
    state, writer, manifest = collect_while_writing(pg, "coder_busy", tmp_path / "dump")
    n = state["builds"]
    # Exactly what the database held at one instant: n whole builds, the last one ready...
    assert state == {
        "builds": n,
        "max_build_number": n,
        "resources": n,
        "agents": n,
        "ready": 1,
        "logs": n,
    }
    # ...while the writer committed many more during the export.
    assert writer.committed >= n + len(TABLES)
    assert manifest["snapshot"]["isolation"] == "repeatable read"


def test_without_the_snapshot_the_same_check_fails(pg, tmp_path, monkeypatch):
    # The control: the same export under READ COMMITTED mixes instants, and the check sees it.
    monkeypatch.setattr(collecting, "BEGIN", "BEGIN ISOLATION LEVEL READ COMMITTED, READ ONLY")
    state, _, manifest = collect_while_writing(pg, "coder_busy", tmp_path / "dump")
    assert manifest["snapshot"]["isolation"] == "read committed"
    assert state["builds"] > state["agents"] or state["resources"] != state["agents"]


def test_memory_stays_flat_whatever_the_table_size(pg, tmp_path):
    dump = tmp_path / "dump"
    tracemalloc.start()
    try:
        result = collecting.collect(dump, dsn=ro(pg, "coder_big"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    logs = next(t for t in result.tables if t.table == "workspace_agent_logs")
    assert logs.rows == 120_000 + 52
    raw = len(gzip.decompress((dump / "db" / "workspace_agent_logs.csv.gz").read_bytes()))
    assert raw > 30_000_000
    assert peak < 8_000_000, f"peak {peak:,} bytes for a {raw:,}-byte table"


# --------------------------------------------------------------------------------------
# 5. Connection errors


def test_unreachable_server(pg, tmp_path):
    from tests.pgcluster import free_port

    port = free_port()
    r = invoke(
        "collect",
        "--dsn",
        f"postgresql://forensics_ro:{PASSWORD}@127.0.0.1:{port}/coder",
        tmp_path / "d",
    )
    assert r.exit_code == ExitCode.BAD_INPUT
    assert r.stderr.count("\n") == 1
    assert r.stderr.startswith("Error: cannot reach the PostgreSQL server: ")
    assert f'"127.0.0.1", port {port} failed: Connection refused' in r.stderr
    assert PASSWORD not in r.stderr + r.stdout
    assert not (tmp_path / "d").exists()


def test_wrong_password(pg, tmp_path):
    wrong = "Wrong-" + PASSWORD
    r = invoke("collect", "--dsn", pg.tcp_url("coder", "pw_user", wrong), tmp_path / "d")
    assert r.exit_code == ExitCode.BAD_INPUT
    assert r.stderr.count("\n") == 1
    assert r.stderr.startswith("Error: authentication failed: ")
    assert 'password authentication failed for user "pw_user"' in r.stderr
    assert wrong not in r.stderr + r.stdout and PASSWORD not in r.stderr + r.stdout
    # The same through PG* environment variables, and no password at all.
    env = {
        "PGHOST": "127.0.0.1",
        "PGPORT": str(pg.port),
        "PGDATABASE": "coder",
        "PGUSER": "pw_user",
    }
    r = invoke("collect", tmp_path / "d", env={**env, "PGPASSWORD": wrong})
    assert r.exit_code == ExitCode.BAD_INPUT and "authentication failed" in r.stderr
    assert wrong not in r.stderr + r.stdout
    r = invoke("collect", tmp_path / "d", env={**env, "PGPASSWORD": None})
    assert r.exit_code == ExitCode.BAD_INPUT
    assert "authentication failed" in r.stderr and "no password supplied" in r.stderr
    assert not (tmp_path / "d").exists()


def test_right_password_through_the_environment(pg, tmp_path):
    env = {
        "PGHOST": "127.0.0.1",
        "PGPORT": str(pg.port),
        "PGDATABASE": "coder",
        "PGUSER": "pw_user",
        "PGPASSWORD": PASSWORD,
    }
    r = invoke("collect", tmp_path / "d", env=env)
    assert r.exit_code == ExitCode.OK, r.stderr
    assert PASSWORD not in r.stderr + r.stdout + every_byte(tmp_path / "d")
    assert json.loads((tmp_path / "d" / "manifest.json").read_text())["role"] == "pw_user"


def test_not_a_coder_database(pg, tmp_path):
    r = invoke("collect", "--dsn", pg.dsn("notcoder"), tmp_path / "d")
    assert r.exit_code == ExitCode.BAD_INPUT
    assert r.stderr == (
        "Error: database notcoder is not a Coder database: it has no workspace_agents table "
        "(check the database name in the DSN or PGDATABASE; Coder's is often 'coder')\n"
    )
    assert not (tmp_path / "d").exists()


def test_no_such_database(pg, tmp_path):
    r = invoke("collect", "--dsn", pg.tcp_url("nodb", "pw_user", PASSWORD), tmp_path / "d")
    assert r.exit_code == ExitCode.BAD_INPUT
    assert r.stderr.startswith("Error: ") and 'database "nodb" does not exist' in r.stderr
    assert PASSWORD not in r.stderr


# --------------------------------------------------------------------------------------
# 6. Limits, older schemas, and the psql script


def test_workspace_limits_every_table_to_that_workspace(pg, scn, sample_findings, tmp_path):
    dump = tmp_path / "dump"
    r = invoke(
        "collect", "--dsn", ro(pg), "--workspace", "ml-train", "--workspace", "no-such", dump
    )
    assert r.exit_code == ExitCode.OK, r.stderr
    assert r.stderr.splitlines()[0] == (
        "warning: --workspace no-such: no workspace has this name; nothing exported for it"
    )
    db = dump / "db"
    ws = scn.workspace_id("ml-train")
    assert [w["name"] for w in read_csv(db / "workspaces.csv.gz")] == ["ml-train"]
    builds = read_csv(db / "workspace_builds.csv.gz")
    assert sorted(int(b["build_number"]) for b in builds) == [1, 2, 3]
    assert {b["workspace_id"] for b in builds} == {ws}
    agents = {a["id"] for a in read_csv(db / "workspace_agents.csv.gz")}
    assert agents == {scn.agent_id("ml-train", n) for n in (1, 2, 3)}
    assert {g["agent_id"] for g in read_csv(db / "workspace_agent_logs.csv.gz")} <= agents
    assert len(read_csv(db / "provisioner_jobs.csv.gz")) == 3
    assert len(read_csv(db / "workspace_resources.csv.gz")) == 3
    assert {u["username"] for u in read_csv(db / "users.csv.gz")} == {"rwyrick"}
    m = json.loads((dump / "manifest.json").read_text())
    assert m["scope"] == {
        "since": None,
        "workspaces": ["ml-train", "no-such"],
        "workspaces_matched": {"ml-train": 1, "no-such": 0},
    }
    # All four findings of the sample are about ml-train: the limited dump still has them.
    out = analyze(tmp_path, dump, SAMPLE / "logs")
    assert findings(out) == sample_findings[0]


def test_workspace_matching_nothing_is_an_error(pg, tmp_path):
    r = invoke("collect", "--dsn", ro(pg), "--workspace", "nope", tmp_path / "d")
    assert r.exit_code == ExitCode.BAD_INPUT
    assert r.stderr.startswith("Error: --workspace: no workspace is named nope")
    assert not (tmp_path / "d").exists()


def test_since_limits_history_and_keeps_what_joins(pg, scn, tmp_path):
    dump = tmp_path / "dump"
    since = datetime(2026, 5, 13, tzinfo=UTC)
    r = invoke("collect", "--dsn", ro(pg), "--since", "2026-05-13", dump)
    assert r.exit_code == ExitCode.OK, r.stderr
    db = dump / "db"
    for table, col in collecting.SINCE_COLUMNS.items():
        if table not in synth.TABLES:
            continue
        want = sorted(
            str(row.get("id", "")) + str(row.get("agent_id", ""))
            for row in scn.tables[table]
            if row[col] >= since
        )
        got = read_csv(db / f"{table}.csv.gz")
        assert sorted((g.get("id") or "") + (g.get("agent_id") or "") for g in got) == want, table
        assert 0 < len(got) < len(scn.tables[table]), table
    for table in ("workspaces", "users", "templates", "template_versions"):
        assert len(read_csv(db / f"{table}.csv.gz")) == len(scn.tables[table])
    assert (
        json.loads((dump / "manifest.json").read_text())["scope"]["since"] == "2026-05-13T00:00:00Z"
    )


def test_older_coder_schema_exports_what_exists_and_says_what_is_missing(pg, tmp_path):
    dump = tmp_path / "dump"
    r = invoke("collect", "--dsn", ro(pg, "coder_old"), dump)
    assert r.exit_code == ExitCode.OK, r.stderr
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("warning: ")]
    assert warnings == [
        "warning: workspace_agents: no column api_version, parent_id, deleted in this database "
        "(an older Coder version?); exported without, and rules that need them are skipped",
        "warning: workspace_agent_scripts: no table workspace_agent_scripts in this database "
        "(an older Coder version?); not exported, and rules that need it are skipped",
        "warning: workspace_agent_script_timings: no table workspace_agent_script_timings in "
        "this database (an older Coder version?); not exported, and rules that need it are "
        "skipped",
    ]
    m = json.loads((dump / "manifest.json").read_text())
    agents = m["tables"]["workspace_agents"]
    assert agents["missing_columns"] == ["api_version", "parent_id", "deleted"]
    assert "logs_length" in agents["columns"]  # read from startup_logs_length
    assert header(dump / "db" / "workspace_agents.csv.gz") == agents["columns"]
    logs = m["tables"]["workspace_agent_logs"]
    assert logs["source"] == "public.workspace_agent_startup_logs" and logs["rows"] == 52
    assert m["tables"]["workspace_agent_scripts"]["status"] == "missing"


def test_print_sql_runs_in_psql_and_gives_the_same_findings(pg, scn, sample_findings, tmp_path):
    r = invoke("collect", "--print-sql")
    assert r.exit_code == ExitCode.OK and r.stderr == ""
    script = r.stdout
    assert "SELECT *" not in script and "\\set" not in script
    assert script.count("\\copy (SELECT ") == len(TABLES) + 1
    assert "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;" in script
    assert script.rstrip().endswith("COMMIT;")
    work = tmp_path / "psql"
    work.mkdir()
    (tmp_path / "collect.sql").write_text(script)
    p = pg.psql("-d", ro(pg), "-f", str(tmp_path / "collect.sql"), cwd=work)
    assert p.returncode == 0, p.stdout + p.stderr
    for table in TABLES:
        assert header(work / f"{table}.csv") == canonical_header(table)
    secrets = {s for s in scn.secret_values() if len(s) >= 8}
    assert not [s for s in secrets if s in every_byte(work) or s in p.stdout + p.stderr]
    manifest = json.loads((work / "manifest.json").read_text())
    assert manifest["coder_migration"] == {"version": MIGRATION, "dirty": False}
    assert manifest["snapshot"]["isolation"] == "repeatable read"
    out = analyze(tmp_path, work, SAMPLE / "logs")
    assert findings(out) == sample_findings[0]


def test_print_sql_with_limits(pg, tmp_path):
    r = invoke(
        "collect", "--print-sql", "--since", "2026-05-13T00:00:00Z", "--workspace", "ml-train"
    )
    assert r.exit_code == ExitCode.OK
    assert "created_at >= '2026-05-13T00:00:00+00:00'::timestamptz" in r.stdout
    assert "name = ANY (ARRAY['ml-train']::text[])" in r.stdout
    (tmp_path / "c.sql").write_text(r.stdout)
    p = pg.psql("-d", ro(pg), "-f", str(tmp_path / "c.sql"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    builds = read_csv(tmp_path / "workspace_builds.csv")
    assert [b["build_number"] for b in builds] == ["3"]


# --------------------------------------------------------------------------------------
# Usage errors (no server needed) and documentation


@pytest.mark.parametrize(
    "args, message",
    [
        (["--print-sql", "DIR"], "--print-sql prints a psql script to stdout"),
        (["--print-sql", "--format", "parquet"], "--print-sql prints a psql script"),
        ([], "collect needs a directory"),
        (["--since", "last tuesday", "DIR"], "--since: not an ISO 8601 date or time"),
        (["--workspace", "alice/ml-train", "DIR"], "give the workspace name without its owner"),
        (["--workspace", "x'; DROP TABLE users; --", "DIR"], "not a Coder workspace name"),
        (["--format", "xlsx", "DIR"], "--format must be one of csv, parquet"),
    ],
)
def test_usage_errors(args, message, tmp_path):
    args = [str(tmp_path / "d") if a == "DIR" else a for a in args]
    r = (
        invoke("collect", "--dsn", "host=/nonexistent", *args)
        if "--print-sql" not in args
        else invoke("collect", *args)
    )
    assert r.exit_code == ExitCode.BAD_INPUT
    assert r.stderr.startswith("Error: ") and message in r.stderr, r.stderr
    assert not (tmp_path / "d").exists()


def test_a_non_empty_directory_is_refused(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "old.csv").write_text("x\n")
    r = invoke("collect", "--dsn", "host=/nonexistent", tmp_path / "d")
    assert r.exit_code == ExitCode.BAD_INPUT and "is not empty" in r.stderr
    assert (tmp_path / "d" / "old.csv").exists()


def test_a_password_in_a_broken_dsn_is_not_echoed():
    r = invoke("collect", "--dsn", "postgres://u:Sekr1t-pw@db x/coder", "d")
    assert r.exit_code == ExitCode.BAD_INPUT
    assert "Sekr1t-pw" not in r.stderr + r.stdout


def test_readme_documents_collect():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "## Collecting from a live database" in readme
    help_text = invoke("collect", "--help").stdout
    for option in re.findall(r"--[a-z][a-z-]+", help_text):
        if option in ("--help", "--no-debug", "--debug"):
            continue
        assert option in readme, option
    assert "GRANT SELECT ON" in readme
