"""Unusable input exits 2 with a message that says what was found and what is needed."""

from __future__ import annotations

from forensics.errors import ExitCode

BUILDS = (
    "id,created_at,updated_at,workspace_id,template_version_id,build_number,transition,initiator_id,job_id\n"
    "b1000000-0000-4000-8000-000000000001,2026-05-14 06:00:00-04,2026-05-14 06:00:00-04,"
    "c1000000-0000-4000-8000-000000000001,d1000000-0000-4000-8000-000000000001,1,start,"
    "e1000000-0000-4000-8000-000000000001,f1000000-0000-4000-8000-000000000001\n"
)


def test_missing_path(cli, tmp_path):
    r = cli("analyze", tmp_path / "nope", "--out", tmp_path / "out")
    assert r.exit_code == ExitCode.BAD_INPUT
    assert r.stderr.startswith("Error: ") and "nope: no such file or directory" in r.stderr


def test_empty_directory_is_an_error_not_a_green_report(cli, tmp_path):
    (tmp_path / "dump").mkdir()
    r = cli("analyze", tmp_path / "dump", "--out", tmp_path / "out")
    assert r.exit_code == ExitCode.BAD_INPUT
    assert "no files found" in r.stderr
    assert not (tmp_path / "out").exists()


def test_unrecognised_files_are_named(cli, tmp_path):
    (tmp_path / "dump").mkdir()
    (tmp_path / "dump" / "notes.txt").write_text("hello\n")
    r = cli("analyze", tmp_path / "dump", "--out", tmp_path / "out")
    assert r.exit_code == ExitCode.BAD_INPUT
    assert "none is a Coder table export" in r.stderr and "notes.txt" in r.stderr


def test_missing_required_table_says_how_to_export_it(cli, tmp_path):
    (tmp_path / "dump").mkdir()
    (tmp_path / "dump" / "workspace_builds.csv").write_text(BUILDS)
    r = cli("analyze", tmp_path / "dump", "--out", tmp_path / "out")
    assert r.exit_code == ExitCode.BAD_INPUT
    assert "required table(s) missing: workspace_agents" in r.stderr
    assert "Found tables: workspace_builds" in r.stderr
    assert (
        "\\copy (SELECT * FROM workspace_agents) TO 'workspace_agents.csv' WITH (FORMAT csv, HEADER)"
        in r.stderr
    )


def test_bad_fail_on_value(cli, tmp_path):
    (tmp_path / "dump").mkdir()
    (tmp_path / "dump" / "workspace_builds.csv").write_text(BUILDS)
    r = cli("analyze", tmp_path / "dump", "--fail-on", "severe")
    assert r.exit_code == ExitCode.BAD_INPUT
    assert "--fail-on must be one of info, low, medium, high, critical" in r.stderr


def test_generated_at_needs_an_offset(cli, tmp_path):
    r = cli("analyze", tmp_path, "--generated-at", "2026-05-20 00:00")
    assert r.exit_code == ExitCode.BAD_INPUT
    assert "--generated-at needs a UTC offset" in r.stderr


def test_version(cli):
    r = cli("--version")
    assert r.exit_code == 0 and r.stdout.startswith("forensics ")
