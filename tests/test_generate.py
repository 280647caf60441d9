"""forensics.generate: tables that join like Coder's, logs of the size asked for, and planted
incidents that the analysis finds the same way at every size (and nothing on the look-alikes).
"""

from __future__ import annotations

import csv
import gzip
import re
from pathlib import Path

import duckdb
import pytest

from forensics.engine import analyze
from forensics.generate import Generated, generate, parse_count, parse_size
from forensics.synth import SCHEMA

SMALL = {"builds": 400, "log_bytes": 600_000}
LARGER = {"builds": 1_500, "log_bytes": 2_000_000}
COMMON = {"incidents": 2, "seed": 7, "host_bytes": 128 * 1024, "rotate_bytes": 64 * 1024}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    return generate(tmp_path_factory.mktemp("gen") / "small", **SMALL, **COMMON)


@pytest.fixture(scope="module")
def larger(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    return generate(tmp_path_factory.mktemp("gen") / "larger", **LARGER, **COMMON)


def _found(gen: Generated) -> set[tuple[str, str | None, int | None, str]]:
    result = analyze([Path(gen.out_dir)])
    return {(f.rule, f.workspace_name, f.build_number, f.fingerprint) for f in result.findings}


@pytest.fixture(scope="module")
def found_small(small: Generated) -> set[tuple[str, str | None, int | None, str]]:
    return _found(small)


def test_tables_have_coders_columns_in_order(small: Generated) -> None:
    db = Path(small.out_dir) / "db"
    for table, columns in SCHEMA.items():
        with (db / f"{table}.csv").open(newline="", encoding="utf-8") as f:
            assert next(csv.reader(f)) == [c for c, _ in columns], table
    first = (db / "workspace_builds.csv").read_text().splitlines()[1].split(",")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,6})?\+00", first[1])  # as psql


def test_every_agent_row_ties_to_a_build_or_template_import(small: Generated) -> None:
    db = Path(small.out_dir) / "db"
    con = duckdb.connect()
    for table in (
        "workspace_agents",
        "workspace_resources",
        "provisioner_jobs",
        "workspace_builds",
        "workspaces",
        "template_versions",
        "users",
    ):
        # Ids typed as UUID: a value that is not one fails the load.
        con.execute(
            f"CREATE TABLE {table} AS SELECT * FROM read_csv('{db / table}.csv', header = true, "
            "types = {'id': 'UUID'})"
        )
    assert con.execute("SELECT count(*) FROM workspace_builds").fetchone() == (SMALL["builds"],)
    orphans = con.execute(
        """SELECT count(*) FROM workspace_agents a
           LEFT JOIN workspace_resources r ON r.id = a.resource_id
           LEFT JOIN provisioner_jobs j ON j.id = r.job_id
           LEFT JOIN workspace_builds b ON b.job_id = j.id
           LEFT JOIN template_versions v ON v.job_id = j.id
           WHERE j.id IS NULL OR (b.id IS NULL) = (v.id IS NULL)
              OR (b.id IS NULL) <> (j.type = 'template_version_import')"""
    ).fetchone()
    assert orphans == (0,)
    per_build = con.execute(
        """SELECT max(n), count(*) FROM (
               SELECT b.id, count(a.id) AS n FROM workspace_builds b
               JOIN provisioner_jobs j ON j.id = b.job_id
               LEFT JOIN workspace_resources r ON r.job_id = j.id
               LEFT JOIN workspace_agents a ON a.resource_id = r.id
               WHERE j.job_status = 'succeeded' AND b.transition <> 'delete' GROUP BY b.id)
           WHERE n <> 1 OR n IS NULL"""
    ).fetchone()
    assert per_build is not None and per_build[1] == 0  # one agent row per build
    unjoined = con.execute(
        """SELECT count(*) FROM workspace_builds b
           LEFT JOIN workspaces w ON w.id = b.workspace_id
           LEFT JOIN users u ON u.id = w.owner_id WHERE u.id IS NULL"""
    ).fetchone()
    assert unjoined == (0,)
    gaps = con.execute(
        """SELECT count(*) FROM (SELECT workspace_id, max(build_number) AS hi, count(*) AS n
           FROM workspace_builds GROUP BY ALL) WHERE hi <> n"""
    ).fetchone()
    assert gaps == (0,)
    # Lifecycle states agree with the connection and lifecycle times.
    bad = con.execute(
        """SELECT lifecycle_state, count(*) FROM workspace_agents
           WHERE (lifecycle_state IN ('ready', 'off')
                  AND (first_connected_at IS NULL OR started_at IS NULL OR ready_at IS NULL
                       OR NOT first_connected_at < started_at AND started_at < ready_at))
              OR (lifecycle_state = 'created' AND started_at IS NOT NULL)
              OR (lifecycle_state = 'off' AND disconnected_at IS NULL)
              OR (first_connected_at IS NULL AND version <> '')
           GROUP BY ALL"""
    ).fetchall()
    assert bad == []


def test_logs_have_the_size_asked_for(small: Generated) -> None:
    assert abs(small.log_bytes - SMALL["log_bytes"]) < 0.15 * SMALL["log_bytes"]
    logs = sorted(p for p in (Path(small.out_dir) / "logs").rglob("*") if p.is_file())
    assert small.log_files == len(logs) and small.gz_log_files > 0
    lines = nbytes = 0
    for path in logs:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        lines += data.count(b"\n")
        nbytes += len(data)
        assert data.endswith(b"\n")
    assert (lines, nbytes) == (small.log_lines, small.log_bytes)
    rotated = [p.name for p in logs if p.suffix == ".gz"]
    assert all(name.startswith("coder-agent-20") for name in rotated)


def test_planted_incidents_are_found_and_look_alikes_are_not(
    small: Generated, found_small: set[tuple[str, str | None, int | None, str]]
) -> None:
    assert found_small == small.expected
    incidents = [p for p in small.planted if p.scenario == "incident"]
    assert len(incidents) == COMMON["incidents"]
    for p in incidents:
        rules = {rule for rule, ws, build, _ in found_small if ws == p.workspace and build == 3}
        assert {"lifecycle-stuck-created", "survived-build-boundary"} <= rules
    lookalikes = {p.workspace for p in small.planted if p.scenario != "incident"}
    assert {"pods", "reconnect"} == {p.scenario for p in small.planted} - {"incident"}
    assert not {ws for _, ws, _, _ in found_small} & lookalikes


def test_same_findings_and_files_at_another_size(
    small: Generated, larger: Generated, found_small: set[tuple[str, str | None, int | None, str]]
) -> None:
    assert larger.log_bytes > 2 * small.log_bytes
    assert sum(larger.tables.values()) > 2 * sum(small.tables.values())
    assert _found(larger) == found_small
    assert [(p.workspace, p.agents) for p in larger.planted] == [
        (p.workspace, p.agents) for p in small.planted
    ]
    for p in small.planted:  # the planted hosts' logs are the same bytes
        for host in p.hosts:
            mine = (Path(small.out_dir) / host / "coder-agent.log").read_bytes()
            assert (Path(larger.out_dir) / host / "coder-agent.log").read_bytes() == mine


def test_sizes_parse() -> None:
    assert parse_count("10k") == 10_000 and parse_count("1M") == 1_000_000
    assert parse_size("100MB") == 100 * 10**6 and parse_size("5GiB") == 5 * 2**30
    assert parse_size("512k") == 512_000 and parse_size(7) == 7
    with pytest.raises(ValueError):
        parse_size("lots")
