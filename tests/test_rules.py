"""Every rule against its cases: the incident in its variants, and the look-alikes."""

from __future__ import annotations

import shutil

import pytest

from forensics.engine import analyze
from forensics.rules import builtin_rules
from forensics.synth import ScenarioBuilder, write_dump
from tests.cases import CASES, DB_ONLY, NO_RESOURCES, T0


def run_case(name, tmp_path):
    b = ScenarioBuilder(seed=7, start=T0 - __import__("datetime").timedelta(days=30))
    expected = CASES[name](b)
    scn = b.build_scenario()
    if name in DB_ONLY:
        scn.logs.clear()
    if name in NO_RESOURCES:
        scn.tables["workspace_resources"].clear()
    write_dump(scn, tmp_path / "dump")
    if name in NO_RESOURCES:
        (tmp_path / "dump" / "db" / "workspace_resources.csv").unlink()
    result = analyze([tmp_path / "dump"])
    shutil.rmtree(tmp_path / "dump")
    return result, expected


@pytest.mark.parametrize("name", sorted(CASES))
def test_case(name, tmp_path):
    result, expected = run_case(name, tmp_path)
    got = {(f.rule, f.workspace_name, f.build_number) for f in result.findings}
    assert got == expected
    assert not [r for r in result.rules if r.status == "broken"]


def test_every_rule_has_a_case_that_fires_it():
    fired = set()
    for fn in CASES.values():
        fired |= {rule for rule, _, _ in fn(ScenarioBuilder(seed=1, start=T0))}
    missing = {r.id for r in builtin_rules()} - fired
    assert not missing, f"rules without a positive case: {missing}"


def test_survived_finding_carries_its_proof(tmp_path):
    result, _ = run_case("incident_suspended_vm", tmp_path)
    [f] = [f for f in result.findings if f.rule == "survived-build-boundary"]
    ev = f.evidence["rule"]
    assert ev["process_began_by"] == "process start"
    assert ev["process_origin_build"] == 1
    assert ev["builds_crossed"] == ["#2 stop", "#3 start"]
    assert ev["earlier_agent_ids"] == [f.evidence["builds"][0]["agents"][0]["agent_id"]]
    assert ev["lifecycle_reports_after_attach"] == 0
    kinds = [line["kind"] for line in f.evidence["log_lines"]]
    assert kinds[0] == "process start" and kinds.count("manifest") == 2
    assert all(
        line["source"].endswith("coder-agent.log") and line["line"] > 0
        for line in f.evidence["log_lines"]
    )
    assert "survived from build #1" in f.summary


def test_db_only_run_says_why_the_log_rule_was_skipped(tmp_path):
    result, _ = run_case("db_only_stuck_created", tmp_path)
    [run] = [r for r in result.rules if r.rule.id == "survived-build-boundary"]
    assert run.status == "skipped" and "agent logs" in run.reason


def test_fallback_join_is_reported(tmp_path):
    result, _ = run_case("incident_without_resources", tmp_path)
    assert any("workspace_resources rows were not exported" in n for n in result.model_notes)


def test_unknown_agent_ids_in_logs_are_reported(tmp_path):
    result, _ = run_case("lookalike_log_from_another_deployment", tmp_path)
    assert any("no row in the exported workspace_agents" in n for n in result.model_notes)
