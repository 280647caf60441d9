"""Table exports as psql and PostgreSQL write them: CSV, COPY'd row_to_json NDJSON, Parquet, gzip."""

from __future__ import annotations

import dataclasses
import gzip
import json

import pytest

from forensics.db import connect
from forensics.ingest.schema import loaded_columns
from forensics.ingest.tables import create_tables, load_table
from tests.conftest import source

AGENTS_HEADER = (
    "id,created_at,updated_at,name,first_connected_at,last_connected_at,disconnected_at,"
    "resource_id,auth_token,auth_instance_id,architecture,environment_variables,"
    "operating_system,instance_metadata,resource_metadata,directory,version,lifecycle_state,"
    "started_at,ready_at,subsystems,display_apps,expanded_directory,api_version"
)
A1 = "5e1f0c2a-0000-4000-8000-000000000001"
A2 = "5e1f0c2a-0000-4000-8000-000000000002"
R1 = "9d000000-0000-4000-8000-000000000001"
TOKEN = "0b7c1f55-5e0e-4c1e-9d2a-3f0e9c4b7a61"
AGENTS_CSV = f"""{AGENTS_HEADER}
{A1},2026-05-14 06:00:00.123-04,2026-05-14 06:00:00.123-04,main,2026-05-14 06:01:00-04,,,{R1},{TOKEN},,amd64,"{{""GIT_TOKEN"": ""ghp_topsecret"", ""X"": ""a,b""}}",linux,"{{""zone"": ""us-east1-b""}}",,"",v2.31.11,ready,2026-05-14 06:01:01.5+05:30,2026-05-14 06:02:00-04,{{}},"{{vscode,web_terminal,""odd, one""}}","/home/coder
with newline",2.4
{A2},2026-05-15 06:00:00-04,2026-05-15 06:00:00-04,main,,,,{R1},{TOKEN},i-1,amd64,,linux,,,,"",created,,,{{}},{{}},"",""
"""


def load(con, tmp_path, name, data: bytes, compress=False):
    path = tmp_path / (name + (".gz" if compress else ""))
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    src = source(path)
    assert src.kind == "table", src.note
    create_tables(con)
    return load_table(con, src, "testkey", 0)


def rows(con, sql):
    return con.execute(sql).fetchall()


@pytest.mark.parametrize("compress", [False, True])
def test_psql_csv_values_land_typed_and_in_utc(con, tmp_path, compress):
    ld = load(con, tmp_path, "workspace_agents.csv", AGENTS_CSV.encode(), compress)
    assert (ld.rows_read, ld.rows_loaded, ld.rejected) == (2, 2, 0)
    (created, started, apps, directory, expanded, version, api) = rows(
        con,
        f"""SELECT strftime(created_at, '%Y-%m-%d %H:%M:%S.%g'), strftime(started_at, '%H:%M:%S.%g'),
                  display_apps, directory, expanded_directory, version, api_version
           FROM workspace_agents WHERE id = '{A1}'""",
    )[0]
    assert created == "2026-05-14 10:00:00.123"  # -04 offset to UTC
    assert started == "00:31:01.500"  # +05:30 offset to UTC
    assert apps == ["vscode", "web_terminal", "odd, one"]
    assert directory == ""  # "" is an empty string ...
    assert expanded == "/home/coder\nwith newline"
    assert (version, api) == ("v2.31.11", "2.4")
    second = rows(
        con,
        f"SELECT first_connected_at, started_at, version FROM workspace_agents WHERE id = '{A2}'",
    )
    assert second == [(None, None, "")]  # ... and an empty field is NULL


def test_secret_columns_are_never_loaded_and_tokens_only_hashed(con, tmp_path):
    ld = load(con, tmp_path, "workspace_agents.csv", AGENTS_CSV.encode())
    assert set(ld.secret_columns) == {
        "auth_token",
        "environment_variables",
        "instance_metadata",
        "resource_metadata",
    }
    everything = str(rows(con, "SELECT * FROM workspace_agents"))
    assert (
        "ghp_topsecret" not in everything
        and TOKEN not in everything
        and "us-east1" not in everything
    )
    hashes = rows(con, "SELECT DISTINCT auth_token_hash FROM workspace_agents")
    assert len(hashes) == 1 and hashes[0][0] and hashes[0][0] not in TOKEN


def test_bad_rows_are_rejected_with_their_physical_line(con, tmp_path):
    bad = AGENTS_CSV + (
        f"{A2[:-1]}3,not a time,2026-05-15 06:00:00-04,main,,,,{R1},{TOKEN},,amd64,,linux,,,,,created,,,{{}},{{}},,\n"
        f"{A2[:-1]}4,2026-05-15 06:00:00-04,too,few,columns\n"
        f"{A2[:-1]}5,2026-05-15 06:00:00-04,2026-05-15 06:00:00-04,main,,,,{R1},{TOKEN},,amd64,,linux,,,,,created,,,{{}},{{}},,\n"
    )
    ld = load(con, tmp_path, "workspace_agents.csv", bad.encode())
    assert (ld.rows_read, ld.rows_loaded, ld.rejected) == (5, 3, 2)
    # Line 2-3 is one row (quoted newline), so the bad rows sit on lines 5 and 6.
    assert [(r.line, r.reason.split(":")[0]) for r in ld.samples] == [
        (5, "created_at"),
        (6, "missing columns"),
    ]
    assert "not a time" in ld.samples[0].reason


def test_only_the_columns_a_run_reads_are_loaded_and_checked(con, tmp_path):
    # `display_apps` of the second row does not read; a run that reads no such column loads
    # the row, and says the column was ignored.
    path = tmp_path / "workspace_agents.csv"
    path.write_text(AGENTS_CSV.replace("created,,,{},{},", "created,,,{},{oops,"))
    create_tables(con, loaded_columns([("workspace_agents", ["lifecycle_state"])]))
    ld = load_table(con, source(path), "testkey", 0)
    assert (ld.rows_read, ld.rows_loaded, ld.rejected) == (2, 2, 0)
    assert {"display_apps", "architecture", "version"} <= set(ld.ignored_columns)
    assert sorted(ld.secret_columns) == sorted(
        ["auth_token", "environment_variables", "instance_metadata", "resource_metadata"]
    )
    # the columns that make a row (required, key) come with the ones read
    names = [d[0] for d in con.execute("SELECT * FROM workspace_agents").description]
    assert names == ["id", "created_at", "resource_id", "lifecycle_state", "__file", "__line"]
    # a run that reads every column rejects the row
    with connect() as every:
        create_tables(every)
        ld = load_table(every, source(path), "testkey", 0)
    assert (ld.rows_read, ld.rows_loaded, ld.rejected) == (2, 1, 1)
    assert ld.samples[0].reason.startswith("display_apps: cannot read {oops as array")


def test_go_zero_time_sentinel_becomes_null_not_a_reject(con, tmp_path):
    csv_text = (
        "id,created_at,updated_at,workspace_id,template_version_id,build_number,transition,"
        "initiator_id,provisioner_state,job_id,deadline,reason\n"
        "b1000000-0000-4000-8000-000000000001,2026-05-14 06:00:00-04,2026-05-14 06:00:00-04,"
        "c1000000-0000-4000-8000-000000000001,d1000000-0000-4000-8000-000000000001,1,start,"
        "e1000000-0000-4000-8000-000000000001,\\x7b7d,f1000000-0000-4000-8000-000000000001,"
        "0001-12-31 20:00:00-04 BC,initiator\n"
    )
    ld = load(con, tmp_path, "workspace_builds.csv", csv_text.encode())
    assert (ld.rows_loaded, ld.rejected) == (1, 0)
    assert rows(con, "SELECT deadline, build_number, transition FROM workspace_builds") == [
        (None, 1, "start")
    ]
    assert ld.secret_columns == ["provisioner_state"]


def ndjson_lines(copy_escaped: bool) -> bytes:
    objs = [
        {
            "id": A1,
            "created_at": "2026-05-14T06:00:00.123-04:00",
            "name": "main",
            "resource_id": R1,
            "auth_token": TOKEN,
            "lifecycle_state": "ready",
            "display_apps": ["vscode", "web_terminal"],
            "directory": 'say "hi" \\ C:\\path',
            "environment_variables": {"GIT_TOKEN": "ghp_topsecret"},
            "version": "v2.9.4",
            "first_connected_at": None,
        },
        {
            "id": A2,
            "created_at": "2026-05-15T06:00:00-04:00",
            "name": "main",
            "resource_id": R1,
            "auth_token": TOKEN,
            "lifecycle_state": "created",
            "display_apps": [],
            "directory": "",
            "version": "",
        },
    ]
    lines = [json.dumps(o, separators=(",", ":")) for o in objs]
    lines.insert(1, "")  # a blank line is not a row
    lines.append("{not json")
    text = "\n".join(lines) + "\n"
    if copy_escaped:
        text = text.replace("\\", "\\\\")  # what COPY text format does to row_to_json output
    return text.encode()


@pytest.mark.parametrize("copy_escaped", [True, False])
def test_row_to_json_ndjson_copy_escaped_or_plain(con, tmp_path, copy_escaped):
    ld = load(con, tmp_path, "workspace_agents.ndjson", ndjson_lines(copy_escaped))
    assert (ld.rows_read, ld.rows_loaded, ld.rejected) == (3, 2, 1)
    assert [(r.line, r.reason) for r in ld.samples] == [(4, "not a JSON object")]
    got = rows(
        con,
        f"SELECT strftime(created_at, '%H:%M:%S.%g'), display_apps, directory FROM workspace_agents WHERE id = '{A1}'",
    )
    assert got == [("10:00:00.123", ["vscode", "web_terminal"], 'say "hi" \\ C:\\path')]
    assert "ghp_topsecret" not in str(rows(con, "SELECT * FROM workspace_agents"))


@pytest.mark.parametrize("compress", [False, True])
def test_parquet_with_real_types(con, tmp_path, compress):
    path = tmp_path / "agents.parquet"
    con.execute(
        f"""COPY (SELECT '{A1}'::UUID AS id, TIMESTAMPTZ '2026-05-14 06:00:00.123-04' AS created_at,
                  '{R1}' AS resource_id, 'ready' AS lifecycle_state, ['vscode']::VARCHAR[] AS display_apps,
                  TIMESTAMPTZ '0001-01-01 00:00:00+00' AS ready_at, '{TOKEN}' AS auth_token,
                  'amd64' AS architecture, 'linux' AS operating_system)
            TO '{path}' (FORMAT parquet)"""
    )
    data = path.read_bytes()
    ld = load(con, tmp_path, "workspace_agents.parquet", data, compress)
    assert (ld.rows_loaded, ld.rejected) == (1, 0)
    got = rows(
        con,
        "SELECT strftime(created_at, '%H:%M:%S.%g'), display_apps, ready_at FROM workspace_agents",
    )
    assert got == [("10:00:00.123", ["vscode"], None)]


def test_older_and_newer_schemas_load(con, tmp_path):
    # 2022-era: no lifecycle columns, startup_logs_length; plus a column from the future.
    csv_text = (
        "id,created_at,updated_at,name,resource_id,auth_token,architecture,operating_system,"
        "version,startup_logs_length,quantum_flux\n"
        f"{A1},2023-01-02 03:04:05+00,2023-01-02 03:04:05+00,main,{R1},{TOKEN},amd64,linux,v0.17.1,42,yes\n"
    )
    ld = load(con, tmp_path, "workspace_agents.csv", csv_text.encode())
    assert (ld.rows_loaded, ld.rejected) == (1, 0)
    assert "lifecycle_state" in ld.missing_columns and "started_at" in ld.missing_columns
    assert "logs_length" not in ld.missing_columns
    assert ld.ignored_columns == ["quantum_flux"]
    assert rows(con, "SELECT logs_length, lifecycle_state FROM workspace_agents") == [(42, None)]


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("{}", []),
        ("{vscode,web_terminal}", ["vscode", "web_terminal"]),
        ("{a b,c}", ["a b", "c"]),
        ("{a,NULL}", ["a", None]),
        ('{"NULL",x}', ["NULL", "x"]),
        ('{"odd, one",b}', ["odd, one", "b"]),
        ('{"say \\"hi\\"","C:\\\\path"}', ['say "hi"', "C:\\path"]),
        ('{""}', [""]),
        ("{a,,b}", ["a", "b"]),
        ("{,a}", ["a"]),
        ('["x","y"]', ["x", "y"]),
        ("not an array", None),
    ],
)
def test_postgres_array_literals(con, literal, expected):
    create_tables(con)
    assert con.execute("SELECT pg_array(?)", [literal]).fetchone()[0] == expected


def test_ndjson_bad_value_is_rejected_on_its_line(con, tmp_path):
    objs = [
        {"id": A1, "created_at": "2026-05-14T06:00:00-04:00", "resource_id": R1},
        {"id": A2, "created_at": "yesterday", "resource_id": R1},
        {"id": A2[:-1] + "3", "created_at": "2026-05-14T06:00:00-04:00"},
    ]
    data = "\n".join(json.dumps(o) for o in objs) + "\n"
    ld = load(con, tmp_path, "workspace_agents.ndjson", data.encode())
    assert (ld.rows_read, ld.rows_loaded, ld.rejected) == (3, 1, 2)
    assert [(r.line, r.reason) for r in ld.samples] == [
        (2, "created_at: cannot read yesterday as ts"),
        (3, "resource_id: required value is empty"),
    ]
    assert rows(con, "SELECT CAST(id AS VARCHAR), __line FROM workspace_agents") == [(A1, 1)]


def test_missing_required_column_rejects_every_row(con, tmp_path):
    # Discovery refuses such a file; should one come through anyway, no row of it loads.
    good = tmp_path / "workspace_agents.csv"
    good.write_text(AGENTS_CSV)
    lacking = tmp_path / "lacking.csv"
    lacking.write_text(f"id,created_at,name\n{A1},2026-05-14 06:00:00-04,main\n{A2},,main\n")
    create_tables(con)
    ld = load_table(con, dataclasses.replace(source(good), path=lacking), "testkey", 0)
    assert (ld.rows_read, ld.rows_loaded, ld.rejected) == (2, 0, 2)
    assert "resource_id" in ld.missing_columns
    assert [(r.line, r.reason) for r in ld.samples] == [
        (2, "resource_id: column missing from the export"),
        (3, "created_at: required value is empty; resource_id: column missing from the export"),
    ]
    assert rows(con, "SELECT count(*) FROM workspace_agents") == [(0,)]


def test_a_second_file_rejects_only_its_own_rows(con, tmp_path):
    first = load(con, tmp_path, "workspace_agents.csv", AGENTS_CSV.encode())
    (tmp_path / "more").mkdir()
    path = tmp_path / "more" / "workspace_agents.csv"
    path.write_text(
        "id,created_at,resource_id\n"
        f"{A2[:-1]}3,2026-05-15 06:00:00-04,{R1}\n"
        f"{A2[:-1]}4,2026-05-15 06:00:00-04,not-a-uuid\n"
    )
    second = load_table(con, source(path), "testkey", 1)
    assert (first.rows_loaded, second.rows_loaded, second.rejected) == (2, 1, 1)
    assert second.samples[0].line == 3
    assert rows(con, "SELECT count(*), count(__line) FROM workspace_agents") == [(3, 0)]


@pytest.mark.parametrize("keep_order", [True, False])
def test_the_connections_insertion_order_setting_is_left_as_it_was(con, tmp_path, keep_order):
    con.execute(f"SET preserve_insertion_order = {keep_order}")
    load(con, tmp_path, "workspace_agents.csv", AGENTS_CSV.encode())
    setting = con.execute("SELECT current_setting('preserve_insertion_order')").fetchone()[0]
    assert setting is keep_order
