"""Rule cases: tiny exports and log snippets with the findings a rule must give for them.

A rule's cases live beside it in `<id>.cases.toml`:

    [files]                      # shared by every case (optional)
    "workspace_builds.csv" = '''...'''

    [[case]]
    name = "a process carried over from build #1"
    expect = ["<agent id>", ...]  # agent ids the rule must flag; [] for a look-alike
    params = { grace_seconds = "0" }   # optional overrides
    [case.files]                 # added to (or replacing) the shared files
    "logs/vm/coder-agent.log" = '''...'''

Each case is run through the real pipeline (discover, ingest, model, the one rule), so a case
tests the rule exactly as an analysis would run it.
"""

from __future__ import annotations

import tempfile
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from forensics.engine import analyze
from forensics.errors import ForensicsError, UsageError
from forensics.rules import Rule


@dataclass
class Case:
    """One case of one rule."""

    name: str
    files: dict[str, str]
    expect: list[str]
    params: dict[str, str] = field(default_factory=dict)


@dataclass
class CaseResult:
    """The outcome of running one case."""

    rule: str
    case: str
    passed: bool
    expected: list[str]
    got: list[str]
    message: str = ""


def load_cases(rule: Rule) -> list[Case]:
    """The cases of `rule`, or [] when it has no cases file."""
    path = rule.cases_file
    if path is None:
        return []
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    shared = doc.get("files", {})
    cases = []
    for n, raw in enumerate(doc.get("case", []), start=1):
        if "name" not in raw or "expect" not in raw:
            raise UsageError(f"{path}: case {n} needs a name and an expect list")
        files = {**shared, **raw.get("files", {})}
        for name in files:
            p = PurePosixPath(name)
            if p.is_absolute() or ".." in p.parts:
                raise UsageError(
                    f"{path}: case {raw['name']!r}: file name {name!r} must stay inside the case"
                )
        cases.append(
            Case(
                name=raw["name"],
                files=files,
                expect=sorted(str(x).lower() for x in raw["expect"]),
                params={k: str(v) for k, v in raw.get("params", {}).items()},
            )
        )
    return cases


def run_case(rule: Rule, case: Case) -> CaseResult:
    """Write the case's files to a temporary directory and analyse them with this rule alone."""
    unknown = sorted(set(case.params) - set(rule.params))
    if unknown:
        return CaseResult(rule.id, case.name, False, case.expect, [], f"unknown params {unknown}")
    with tempfile.TemporaryDirectory(prefix="forensics-case-") as tmp:
        root = Path(tmp) / "case"
        for name, text in case.files.items():
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text.lstrip("\n"), encoding="utf-8")
        try:
            result = analyze([root], rules=[replace(rule, params={**rule.params, **case.params})])
        except ForensicsError as exc:
            return CaseResult(rule.id, case.name, False, case.expect, [], f"input error: {exc}")
    # A case is only meaningful if all of it was read: a silently rejected row or an
    # unrecognised file would make it pass for the wrong reason.
    unread = [s.display for s in result.inputs if s.kind not in ("table", "agent_log")]
    rejected = [f"{t.path}: {t.rejected} row(s)" for t in result.tables if t.rejected]
    unparsed = [f"{lg.path}: {lg.unparsed} line(s)" for lg in result.logs if lg.unparsed]
    if unread or rejected or unparsed:
        problems = "; ".join(
            [f"not recognised: {', '.join(unread)}"] * bool(unread) + rejected + unparsed
        )
        return CaseResult(
            rule.id, case.name, False, case.expect, [], f"case input not fully read: {problems}"
        )
    [run] = result.rules
    if run.status != "ran":
        return CaseResult(
            rule.id, case.name, False, case.expect, [], f"rule {run.status}: {run.reason}"
        )
    got = sorted(f.agent_id for f in result.findings)
    return CaseResult(rule.id, case.name, got == case.expect, case.expect, got)


def run_cases(rules: list[Rule]) -> list[CaseResult]:
    """Every case of every rule; a rule without cases is a failure of its own."""
    results = []
    for rule in rules:
        cases = load_cases(rule)
        if not cases:
            results.append(
                CaseResult(rule.id, "(no cases)", False, [], [], f"{rule.id} has no cases file")
            )
        results += [run_case(rule, case) for case in cases]
    return results
