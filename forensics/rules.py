"""Rule files: one SQL query per file, `<group>/<id>.sql`, with a `-- key: value` header.

Header keys: id, title, severity, requires, reads, params, description, explain, remedy, links
(a value continues on following `--   ` lines). `requires` names the canonical columns a rule
cannot run without (it is skipped when an export lacks them); `reads` the ones it uses when they
are there. A run loads only the columns that the model and its rules name (`columns_read`).
A rule's cases live beside it in `<id>.cases.toml`. Built-in rules ship under
`forensics/queries/rules/`; `--rules DIR` adds more, found recursively.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

from forensics.errors import UsageError

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
    path: str  # as shown to users: "lifecycle/<id>.sql" for built-ins, the file path otherwise
    requires: list[tuple[str, list[str]]] = field(default_factory=list)  # (table, columns)
    reads: list[tuple[str, list[str]]] = field(default_factory=list)  # used when exported
    needs_logs: bool = False
    params: dict[str, str] = field(default_factory=dict)
    explain: str = ""
    remedy: str = ""
    links: list[str] = field(default_factory=list)
    file: Path | None = None  # where the rule lives on disk

    @property
    def cases_file(self) -> Path | None:
        """`<id>.cases.toml` beside the rule file, if the rule has one."""
        if self.file is None:
            return None
        path = self.file.with_name(f"{self.id}.cases.toml")
        return path if path.exists() else None


def table_columns(value: str) -> list[tuple[str, list[str]]]:
    """`table(col, col), table(col)` (a `requires` or `reads` header value) as (table, columns)."""
    return [
        (m.group(1), [c.strip() for c in m.group(2).split(",") if c.strip()])
        for m in re.finditer(r"([a-z_]+)\(([^)]*)\)", value)
    ]


def parse_rule(text: str, path: str, file: Path | None = None) -> Rule:
    """Parse a rule file's header and keep the whole file as its query."""
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
        raise UsageError(f"{path}: rule header lacks {', '.join(missing)}")
    if meta["severity"] not in SEVERITIES:
        raise UsageError(f"{path}: severity must be one of {', '.join(SEVERITIES)}")
    params = {}
    for item in meta.get("params", "").split(","):
        if item.strip():
            name, sep, value = item.partition("=")
            if not sep:
                raise UsageError(f"{path}: params must read name=default, not {item.strip()!r}")
            params[name.strip()] = value.strip()
    return Rule(
        id=meta["id"],
        title=meta["title"],
        severity=meta["severity"],
        description=meta["description"],
        sql=text,
        path=path,
        requires=table_columns(meta.get("requires", "")),
        reads=table_columns(meta.get("reads", "")),
        needs_logs="agent logs" in meta.get("requires", ""),
        params=params,
        explain=meta.get("explain", ""),
        remedy=meta.get("remedy", ""),
        links=[u.strip() for u in meta.get("links", "").split(",") if u.strip()],
        file=file,
    )


def builtin_rules() -> list[Rule]:
    """The rules shipped with forensics, sorted by id."""
    root = Path(str(resources.files("forensics") / "queries" / "rules"))
    return _sorted([_read(f, str(f.relative_to(root))) for f in sorted(root.rglob("*.sql"))])


def load_rules(extra_dirs: list[Path] | None = None) -> list[Rule]:
    """Built-in rules plus every `*.sql` rule under `extra_dirs`; ids must be unique."""
    rules = builtin_rules()
    for d in extra_dirs or []:
        if not d.is_dir():
            raise UsageError(f"--rules {d}: not a directory")
        found = [_read(f, str(f)) for f in sorted(d.rglob("*.sql"))]
        if not found:
            raise UsageError(f"--rules {d}: no *.sql rule files in it")
        rules += found
    seen: dict[str, str] = {}
    for rule in rules:
        if rule.id in seen:
            raise UsageError(
                f"rule id {rule.id!r} is defined twice: {seen[rule.id]} and {rule.path}"
            )
        seen[rule.id] = rule.path
    return _sorted(rules)


def choose(
    rules: list[Rule],
    select: list[str] | None = None,
    ignore: list[str] | None = None,
    params: list[str] | None = None,
) -> list[Rule]:
    """Apply --select/--ignore (rule ids) and --param ID.NAME=VALUE overrides."""
    ids = {r.id for r in rules}
    for option, given in (("--select", select), ("--ignore", ignore)):
        unknown = sorted(set(given or []) - ids)
        if unknown:
            raise UsageError(f"{option}: no rule {', '.join(unknown)} (see `forensics rules list`)")
    chosen = [r for r in rules if (not select or r.id in select) and r.id not in (ignore or [])]
    overrides: dict[str, dict[str, str]] = {}
    for item in params or []:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)\.([A-Za-z0-9_]+)=(.*)", item)
        if not m:
            raise UsageError(f"--param {item!r}: expected RULE_ID.NAME=VALUE")
        rule_id, name, value = m.groups()
        by_id = {r.id: r for r in rules}
        if rule_id not in by_id:
            raise UsageError(f"--param {item!r}: no rule {rule_id}")
        if name not in by_id[rule_id].params:
            declared = ", ".join(by_id[rule_id].params) or "none"
            raise UsageError(
                f"--param {item!r}: rule {rule_id} has no parameter {name} (it has: {declared})"
            )
        overrides.setdefault(rule_id, {})[name] = value
    return [replace(r, params={**r.params, **overrides.get(r.id, {})}) for r in chosen]


def model_sql() -> list[tuple[str, str]]:
    """The model's SQL files (name, text) in the order they run."""
    root = resources.files("forensics") / "queries" / "model"
    files = sorted((f for f in root.iterdir() if f.name.endswith(".sql")), key=lambda p: p.name)
    return [(f.name, f.read_text(encoding="utf-8")) for f in files]


def model_reads() -> list[tuple[str, list[str]]]:
    """The canonical columns the model reads: the `-- reads:` lines of its SQL files."""
    found = []
    for _name, text in model_sql():
        for line in text.splitlines():
            if line.startswith("-- reads:"):
                found += table_columns(line.removeprefix("-- reads:"))
    return found


def columns_read(rules: list[Rule]) -> list[tuple[str, list[str]]]:
    """Every canonical column a run with these rules reads: the model's and the rules'."""
    return [*model_reads(), *(tc for r in rules for tc in (*r.requires, *r.reads))]


def _read(file: Path, shown: str) -> Rule:
    return parse_rule(file.read_text(encoding="utf-8"), shown, file)


def _sorted(rules: list[Rule]) -> list[Rule]:
    return sorted(rules, key=lambda r: r.id)
