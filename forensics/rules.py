"""Rule files: one SQL query per file under `queries/rules/<group>/<id>.sql`, with a header.

The header is `-- key: value` lines (a value continues on following `--   ` lines). Keys:
id, title, severity, requires, params, description, explain, remedy, links.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

SEVERITIES = ("info", "low", "medium", "high", "critical")
REQUIRED_KEYS = ("id", "title", "severity", "description")


@dataclass
class Rule:
    """A parsed rule file."""

    id: str
    title: str
    severity: str
    description: str
    sql: str
    path: str
    requires: list[tuple[str, list[str]]] = field(default_factory=list)  # (table, columns)
    needs_logs: bool = False
    params: dict[str, str] = field(default_factory=dict)
    explain: str = ""
    remedy: str = ""
    links: list[str] = field(default_factory=list)


def parse_rule(text: str, path: str) -> Rule:
    """Parse a rule file's header and keep its SQL (the whole file) as the query."""
    meta: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        m = re.match(r"^-- ([a-z_]+):\s*(.*)$", line)
        if m:
            key = m.group(1)
            meta[key] = m.group(2).strip()
        elif key and re.match(r"^--\s{2,}\S", line):
            meta[key] += " " + line[2:].strip()
        elif not line.startswith("--"):
            break
    missing = [k for k in REQUIRED_KEYS if not meta.get(k)]
    if missing:
        raise ValueError(f"{path}: rule header lacks {', '.join(missing)}")
    if meta["severity"] not in SEVERITIES:
        raise ValueError(f"{path}: severity must be one of {', '.join(SEVERITIES)}")
    requires, needs_logs = _parse_requires(meta.get("requires", ""))
    params = dict(p.strip().split("=", 1) for p in meta.get("params", "").split(",") if "=" in p)
    return Rule(
        id=meta["id"],
        title=meta["title"],
        severity=meta["severity"],
        description=meta["description"],
        sql=text,
        path=path,
        requires=requires,
        needs_logs=needs_logs,
        params={k.strip(): v.strip() for k, v in params.items()},
        explain=meta.get("explain", ""),
        remedy=meta.get("remedy", ""),
        links=[u.strip() for u in meta.get("links", "").split(",") if u.strip()],
    )


def _parse_requires(spec: str) -> tuple[list[tuple[str, list[str]]], bool]:
    out = []
    for m in re.finditer(r"([a-z_]+)\(([^)]*)\)", spec):
        out.append((m.group(1), [c.strip() for c in m.group(2).split(",") if c.strip()]))
    return out, "agent logs" in spec


def builtin_rules() -> list[Rule]:
    """The rules shipped with forensics, sorted by id."""
    root = resources.files("forensics") / "queries" / "rules"
    rules = []
    for group in sorted(root.iterdir(), key=lambda p: p.name):
        if not group.is_dir():
            continue
        for f in sorted(group.iterdir(), key=lambda p: p.name):
            if f.name.endswith(".sql"):
                rules.append(parse_rule(f.read_text(encoding="utf-8"), f"{group.name}/{f.name}"))
    return sorted(rules, key=lambda r: r.id)


def model_sql() -> list[tuple[str, str]]:
    """The model's SQL files (name, text) in the order they run."""
    root = resources.files("forensics") / "queries" / "model"
    files = sorted((f for f in root.iterdir() if f.name.endswith(".sql")), key=lambda p: p.name)
    return [(f.name, f.read_text(encoding="utf-8")) for f in files]


def rule_path(rule: Rule) -> Path:
    """Where a built-in rule lives inside the installed package."""
    return Path(str(resources.files("forensics") / "queries" / "rules")) / rule.path
