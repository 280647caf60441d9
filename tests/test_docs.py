"""The README documents every command, option and rule, and starts with the two commands."""

from __future__ import annotations

import re
from pathlib import Path

from forensics.rules import builtin_rules

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


def test_readme_starts_with_the_two_commands():
    blocks = re.findall(r"```\n(.*?)\n```", README, flags=re.S)
    assert "forensics analyze sample_data/incident" in blocks[0]
    assert blocks[1].endswith(".venv/bin/pytest")


def test_ci_runs_the_readme_test_command():
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text(encoding="utf-8")
    command = re.findall(r"```\n(.*?)\n```", README, flags=re.S)[1].split("&& ")[-1]
    assert ci.rstrip().endswith(command)


def test_every_rule_is_documented():
    for rule in builtin_rules():
        assert f"`{rule.id}`" in README, rule.id


def test_every_command_and_option_is_documented(cli):
    for command in (
        "analyze",
        "collect",
        "timeline",
        "rules list",
        "rules show",
        "rules test",
        "--version",
    ):
        assert f"forensics {command}" in README
    for command in (["analyze"], ["collect"], ["timeline"], ["rules", "test"]):
        help_text = cli(*command, "--help").stdout
        for option in re.findall(r"--[a-z][a-z-]+", help_text):
            if option in ("--help", "--no-debug"):
                continue
            assert option in README, (command, option)
