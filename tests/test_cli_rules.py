"""Choosing and extending rules from the command line."""

from __future__ import annotations

import json

import pytest

from forensics.errors import ExitCode

SAMPLE = "sample_data/incident"
MY_RULE = """\
-- id: my-never-ready
-- title: Agent rows that never became ready
-- severity: low
-- requires: workspace_agents(lifecycle_state)
-- params: state=created
-- description: Every agent row still in $state.
-- explain: A demonstration rule.
-- remedy: None.
-- links: https://example.com
SELECT agent_id, workspace_id, workspace_name, build_number, agent_created_at AS ts,
       'still ' || lifecycle_state AS summary
FROM agent_builds WHERE lifecycle_state = $state ORDER BY agent_id;
"""


@pytest.fixture
def rules_dir(tmp_path):
    d = tmp_path / "my-rules"
    d.mkdir()
    (d / "my-never-ready.sql").write_text(MY_RULE)
    return d


def findings(out):
    return json.loads((out / "findings.json").read_text())


def test_select_runs_only_the_chosen_rule(cli, tmp_path):
    r = cli("analyze", SAMPLE, "--out", tmp_path, "--select", "lifecycle-stuck-created")
    assert r.exit_code == ExitCode.FINDINGS
    doc = findings(tmp_path)
    assert [x["id"] for x in doc["coverage"]["rules"]] == ["lifecycle-stuck-created"]
    assert {f["rule"] for f in doc["findings"]} == {"lifecycle-stuck-created"}


def test_ignore_and_comma_lists(cli, tmp_path):
    r = cli(
        "analyze",
        SAMPLE,
        "--out",
        tmp_path,
        "--ignore",
        "lifecycle-stuck-created,survived-build-boundary",
    )
    ran = {x["id"] for x in findings(tmp_path)["coverage"]["rules"]}
    assert "lifecycle-stuck-created" not in ran and "survived-build-boundary" not in ran
    assert r.exit_code in (ExitCode.OK, ExitCode.FINDINGS)


def test_unknown_rule_id_is_a_usage_error(cli, tmp_path):
    r = cli("analyze", SAMPLE, "--out", tmp_path, "--select", "no-such-rule")
    assert r.exit_code == ExitCode.BAD_INPUT
    assert r.stderr == "Error: --select: no rule no-such-rule (see `forensics rules list`)\n"


def test_param_overrides_a_default(cli, tmp_path):
    # With a grace longer than the row has been connected, the stuck row is not flagged yet.
    r = cli(
        "analyze",
        SAMPLE,
        "--out",
        tmp_path,
        "--select",
        "lifecycle-stuck-created",
        "--param",
        "lifecycle-stuck-created.grace_seconds=864000",
    )
    assert r.exit_code == ExitCode.OK and findings(tmp_path)["findings"] == []


@pytest.mark.parametrize(
    ("param", "message"),
    [
        (
            "lifecycle-stuck-created.nope=1",
            "rule lifecycle-stuck-created has no parameter nope (it has: grace_seconds)",
        ),
        ("nosuch.grace_seconds=1", "no rule nosuch"),
        ("grace_seconds=1", "expected RULE_ID.NAME=VALUE"),
    ],
)
def test_bad_params_are_usage_errors(cli, tmp_path, param, message):
    r = cli("analyze", SAMPLE, "--out", tmp_path, "--param", param)
    assert r.exit_code == ExitCode.BAD_INPUT and message in r.stderr


def test_a_users_rule_directory(cli, tmp_path, rules_dir):
    out = tmp_path / "out"
    r = cli(
        "analyze",
        SAMPLE,
        "--out",
        out,
        "--rules",
        rules_dir,
        "--select",
        "my-never-ready",
        "--param",
        "my-never-ready.state=ready",
        "--fail-on",
        "low",
    )
    assert r.exit_code == ExitCode.FINDINGS
    assert all(f["summary"] == "still ready" for f in findings(out)["findings"])
    assert "my-never-ready" in cli("rules", "list", "--rules", rules_dir).stdout


def test_a_broken_rule_is_reported_and_the_others_still_run(cli, tmp_path, rules_dir):
    (rules_dir / "broken.sql").write_text(
        MY_RULE.replace("my-never-ready", "broken").replace(
            "FROM agent_builds", "FROM no_such_table"
        )
    )
    out = tmp_path / "out"
    r = cli("analyze", SAMPLE, "--out", out, "--rules", rules_dir)
    assert r.exit_code == ExitCode.INTERNAL  # the run is incomplete
    runs = {x["id"]: x for x in findings(out)["coverage"]["rules"]}
    assert runs["broken"]["status"] == "broken" and "no_such_table" in runs["broken"]["reason"]
    assert runs["survived-build-boundary"]["status"] == "ran"
    assert "note: rule broken broken:" in r.stderr


ARCH_RULE = """\
-- id: my-arch
-- title: Agent rows by architecture
-- severity: low
-- requires: workspace_agents(lifecycle_state)
{reads}-- description: Every agent row, with the architecture its agent reported.
SELECT ab.agent_id, ab.workspace_id, ab.workspace_name, ab.build_number, ab.agent_created_at AS ts,
       'arch ' || a.architecture AS summary
FROM agent_builds ab JOIN workspace_agents a ON a.id = ab.agent_id ORDER BY ab.agent_id;
"""


def test_a_rule_gets_the_columns_its_header_names(cli, tmp_path, rules_dir):
    # Nothing built in reads `architecture`, so it is loaded only for a rule that names it.
    (rules_dir / "my-arch.sql").write_text(ARCH_RULE.format(reads=""))
    out = tmp_path / "out"
    run_it = ["analyze", SAMPLE, "--out", out, "--rules", rules_dir, "--select", "my-arch"]
    r = cli(*run_it)
    assert r.exit_code == ExitCode.INTERNAL
    [run] = findings(out)["coverage"]["rules"]
    assert run["status"] == "broken"
    assert "add workspace_agents(architecture) to the rule's `-- reads:` header" in run["reason"]
    [agents] = [t for t in findings(out)["coverage"]["tables"] if t["table"] == "workspace_agents"]
    assert "architecture" in agents["ignored_columns"]

    (rules_dir / "my-arch.sql").write_text(
        ARCH_RULE.format(reads="-- reads: workspace_agents(architecture)\n")
    )
    r = cli(*run_it, "--fail-on", "low")
    assert r.exit_code == ExitCode.FINDINGS, r.stderr
    doc = findings(out)
    assert {f["summary"] for f in doc["findings"]} == {"arch amd64"}
    [agents] = [t for t in doc["coverage"]["tables"] if t["table"] == "workspace_agents"]
    assert "architecture" not in agents["ignored_columns"]


def test_duplicate_rule_id_is_refused(cli, tmp_path, rules_dir):
    (rules_dir / "dup.sql").write_text(MY_RULE.replace("my-never-ready", "survived-build-boundary"))
    r = cli("rules", "list", "--rules", rules_dir)
    assert r.exit_code == ExitCode.BAD_INPUT and "defined twice" in r.stderr


def test_rules_show(cli):
    r = cli("rules", "show", "survived-build-boundary")
    assert r.exit_code == 0
    assert "severity: high" in r.stdout and "params: skew_tolerance_seconds=300" in r.stdout
    assert "-- id: survived-build-boundary" in r.stdout  # the SQL itself


def test_rules_test_passes_builtin_and_fails_a_rule_without_cases(cli, rules_dir):
    ok = cli("rules", "test", "lifecycle-stuck-created")
    assert ok.exit_code == 0 and ok.stdout.rstrip().endswith("0 failed")
    bad = cli("rules", "test", "my-never-ready", "--rules", rules_dir)
    assert bad.exit_code == ExitCode.FINDINGS
    assert "FAIL  my-never-ready: (no cases)" in bad.stdout


def test_rules_test_reports_a_wrong_expectation(cli, rules_dir):
    (rules_dir / "my-never-ready.cases.toml").write_text(
        '[[case]]\nname = "expects a finding that is not there"\n'
        'expect = ["a0000000-0000-4000-8000-000000000001"]\n[case.files]\n'
        '"workspace_agents.csv" = """\nid,created_at,resource_id,lifecycle_state\n"""\n'
        '"workspace_builds.csv" = """\nid,created_at,workspace_id,build_number,transition,job_id\n"""\n'
    )
    r = cli("rules", "test", "my-never-ready", "--rules", rules_dir)
    assert r.exit_code == ExitCode.FINDINGS
    assert "FAIL  my-never-ready: expects a finding that is not there" in r.stdout
    assert "expected ['a0000000-0000-4000-8000-000000000001'], got none" in r.stdout
