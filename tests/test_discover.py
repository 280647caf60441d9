"""Inputs are recognised by content first: names and directories are hints, not facts."""

from __future__ import annotations

import gzip

from forensics.discover import discover

BUILDS_HEADER = "id,created_at,updated_at,workspace_id,template_version_id,build_number,transition,initiator_id,provisioner_state,job_id\n"
AGENTS_HEADER = (
    "id,created_at,updated_at,name,resource_id,auth_token,architecture,operating_system\n"
)
LOG = "2026-05-14 13:00:00.123 [info]  agent is starting now  url=https://c  auth=token  version=v2.31.11\n"


def kinds(tmp_path):
    return {
        s.display.split("/", 1)[1]: (s.kind, s.table, s.format, s.compressed)
        for s in discover([tmp_path])
    }


def test_tables_by_name_and_by_content(tmp_path):
    (tmp_path / "workspace_builds.csv").write_text(BUILDS_HEADER)
    (tmp_path / "export-17.csv").write_text(AGENTS_HEADER)  # name says nothing, columns do
    (tmp_path / "public.workspace_agents.csv.gz").write_bytes(gzip.compress(AGENTS_HEADER.encode()))
    got = kinds(tmp_path)
    assert got["workspace_builds.csv"] == ("table", "workspace_builds", "csv", False)
    assert got["export-17.csv"] == ("table", "workspace_agents", "csv", False)
    assert got["public.workspace_agents.csv.gz"] == ("table", "workspace_agents", "csv", True)


def test_a_misnamed_file_is_taken_for_what_it_contains(tmp_path):
    (tmp_path / "workspace_agents.csv").write_text(BUILDS_HEADER)
    [src] = discover([tmp_path])
    assert src.table == "workspace_builds"
    assert "named like workspace_agents" in src.note


def test_logs_found_by_content_anywhere(tmp_path):
    (tmp_path / "host-a" / "var" / "tmp").mkdir(parents=True)
    (tmp_path / "host-a" / "var" / "tmp" / "agent.txt").write_text(LOG)
    (tmp_path / "rotated.gz").write_bytes(gzip.compress(LOG.encode()))
    got = kinds(tmp_path)
    assert got["host-a/var/tmp/agent.txt"][:1] == ("agent_log",)
    assert got["rotated.gz"] == ("agent_log", None, "slog", True)


def test_everything_else_is_listed_with_a_reason(tmp_path):
    (tmp_path / "notes.txt").write_text("we restarted the VM at 10:00\n")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    sources = {s.display.split("/", 1)[1]: s for s in discover([tmp_path])}
    assert sources["notes.txt"].kind == "unrecognised" and "neither" in sources["notes.txt"].note
    assert sources["empty.csv"].kind == "empty"
    assert sources["other.csv"].kind == "unrecognised"
    assert all(len(s.sha256) == 64 for s in sources.values())


def test_two_inputs_with_the_same_name_stay_apart(tmp_path):
    for night in ("n1", "n2"):
        (tmp_path / night / "logs").mkdir(parents=True)
        (tmp_path / night / "logs" / "coder-agent.log").write_text(LOG)
    sources = discover([tmp_path / "n1" / "logs", tmp_path / "n2" / "logs"])
    assert [s.display for s in sources] == ["n1/logs/coder-agent.log", "n2/logs/coder-agent.log"]


def test_every_agent_log_rendering_and_the_agent_side_files(tmp_path):
    old = (
        "2023-03-10 11:08:20.001 [INFO]\t<./cli/agent.go:120>\tagent.workspaceAgent.func2\t"
        'starting agent\t{"version": "v0.19.2"}\n'
    )
    json_sink = (
        '{"ts":"2024-05-12T14:25:37.043Z","level":"INFO","msg":"agent is starting now",'
        '"fields":{"version":"v2.8.3"}}\n'
    )
    init = "2026-05-14 13:00:00.001 [info]  spawning reaper process\n"
    (tmp_path / "old.log").write_text(old)
    (tmp_path / "agent.json.log").write_text(json_sink)
    (tmp_path / "coder-agent-init.log").write_text(init)
    script = "coder-script-7b2c0000-0000-4000-8000-000000000002.log"
    (tmp_path / script).write_text("Cloning into 'repo'...\ndone\n")
    sources = {s.display.split("/", 1)[1]: s for s in discover([tmp_path])}
    assert (sources["old.log"].kind, sources["old.log"].format) == ("agent_log", "slog")
    assert (sources["agent.json.log"].kind, sources["agent.json.log"].format) == (
        "agent_log",
        "slog JSON",
    )
    assert sources["coder-agent-init.log"].kind == "agent_log"
    assert "reaper" in sources["coder-agent-init.log"].note
    assert sources[script].kind == "script_log"
    assert "7b2c0000-0000-4000-8000-000000000002" in sources[script].note
    assert "2 lines" in sources[script].note
