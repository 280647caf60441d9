"""Every built-in rule's own cases (`<id>.cases.toml`) pass, and every rule has them."""

from __future__ import annotations

import pytest

from forensics.rule_cases import load_cases, run_case
from forensics.rules import builtin_rules

RULES = builtin_rules()
ALL_CASES = [(rule, case) for rule in RULES for case in load_cases(rule)]


@pytest.mark.parametrize(
    ("rule", "case"), ALL_CASES, ids=[f"{r.id}: {c.name}" for r, c in ALL_CASES]
)
def test_rule_case(rule, case):
    result = run_case(rule, case)
    assert result.passed, result.message or f"expected {result.expected}, got {result.got}"


@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_every_rule_has_a_firing_case_and_a_lookalike(rule):
    cases = load_cases(rule)
    assert any(c.expect for c in cases), f"{rule.id}: no case where it fires"
    assert any(not c.expect for c in cases), f"{rule.id}: no look-alike case where it must not fire"


@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_every_rule_explains_itself(rule):
    assert rule.explain and rule.remedy and rule.links, rule.id
    assert rule.requires, f"{rule.id} declares no required tables"
    for name in rule.params:
        assert f"${name}" in rule.sql, f"{rule.id}: param {name} unused"
