"""Render an `Analysis` as report.html, findings.json and summary.md.

Every string that came from the inputs (names, log lines) is attacker-controlled: the HTML
environment autoescapes, and the Markdown filter below escapes what Markdown would interpret.
"""

from __future__ import annotations

import base64
import errno
import functools
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from forensics.anonymize import Pseudonymizer
from forensics.engine import Analysis, jsonable
from forensics.errors import ExitCode, UsageError
from forensics.history import trend_svg
from forensics.ingest.logs import LogLoad
from forensics.rules import SEVERITIES
from forensics.timeline_svg import draw

SCHEMA_VERSION = 1
MAX_MARKDOWN = 60_000
MAX_MARKDOWN_TIMELINES = 5  # text timelines in summary.md
MAX_DETAILED = 200  # findings rendered with full evidence in report.html; all are in the table
# Progressive enhancement for the findings table: sort by a column, filter by text. The page
# reads the same without it; the Content-Security-Policy admits exactly this script by hash.
SCRIPT = """
(function () {
  var tables = document.querySelectorAll("table.findings");
  if (!tables.length) return;
  var more = document.getElementById("more-findings");
  var filter = document.getElementById("findings-filter");
  filter.hidden = false;
  filter.addEventListener("input", function () {
    var q = filter.value.toLowerCase();
    if (more && q !== "") more.open = true;
    Array.prototype.forEach.call(tables, function (table) {
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
        row.hidden = q !== "" && row.textContent.toLowerCase().indexOf(q) < 0;
      });
    });
  });
  Array.prototype.forEach.call(tables, function (table) {
    var body = table.tBodies[0];
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.tabIndex = 0;
      th.title = "Sort by this column";
      var dir = 1;
      function sort() {
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[col].getAttribute("data-sort") || a.cells[col].textContent;
          var y = b.cells[col].getAttribute("data-sort") || b.cells[col].textContent;
          return x.localeCompare(y, undefined, {numeric: true}) * dir;
        });
        rows.forEach(function (r) { body.appendChild(r); });
        dir = -dir;
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") sort(); });
    });
  });
})();
"""


def findings_document(result: Analysis, argv: list[str] | None = None) -> dict[str, Any]:
    """The findings.json document (see DESIGN.md's output contract)."""
    failing = result.failing()
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": result.tool,
        "generated_at": jsonable(result.generated_at),
        "command": shlex.join(argv) if argv else None,
        "export_as_of": jsonable(result.as_of),
        "verdict": {
            "fail_on": result.fail_on,
            "findings": len(result.findings),
            "failing": len(failing),
            "exit_code": int(ExitCode.FINDINGS if failing else ExitCode.OK),
        },
        "inputs": [
            {
                "path": s.display,
                "size": s.size,
                "sha256": s.sha256,
                "kind": s.kind,
                "table": s.table,
                "format": s.format,
                "compressed": s.compressed,
                "note": s.note,
            }
            for s in result.inputs
        ],
        "coverage": {
            "tables": [asdict(t) for t in result.tables],
            "logs": [_log_document(lg) for lg in result.logs],
            "clocks": result.clocks,
            "rules": [
                {"id": r.rule.id, "status": r.status, "reason": r.reason, "findings": r.findings}
                for r in result.rules
            ],
            "notes": result.model_notes,
        },
        "findings": [
            {
                "rule": f.rule,
                "severity": f.severity,
                "title": f.title,
                "agent_id": f.agent_id,
                "workspace_id": f.workspace_id,
                "workspace_name": f.workspace_name,
                "build_number": f.build_number,
                "ts": f.ts,
                "summary": f.summary,
                "evidence": f.evidence,
                "fingerprint": f.fingerprint,
            }
            for f in result.findings
        ],
    }


def _log_document(load: LogLoad) -> dict[str, Any]:
    doc = asdict(load)
    doc["versions"] = sorted(load.versions)
    doc["renderings"] = sorted(load.renderings)
    doc["version_range"] = load.version_range
    return doc


def write_outputs(
    result: Analysis,
    out: Path,
    argv: list[str] | None = None,
    pseudonyms: Pseudonymizer | None = None,
    history: dict[str, Any] | None = None,
) -> None:
    """Write the three outputs into `out` (created if needed).

    With `pseudonyms` (--anonymize), names of people, workspaces and hosts, emails and IP
    addresses are replaced by keyed pseudonyms in all three outputs alike. `history` (from
    `forensics.history.Outcome.document`) adds the "Since last run" section and the
    top-level "history" object of findings.json.
    """
    out.mkdir(parents=True, exist_ok=True)
    doc = findings_document(result, argv)
    if history is not None:
        doc["history"] = history
        if history["fail_on_new"]:  # the run exits on what is new, not on all findings
            doc["verdict"]["exit_code"] = int(
                ExitCode.FINDINGS if history["new_failing"] else ExitCode.OK
            )
    timelines = result.timelines
    if pseudonyms is not None:
        doc = pseudonyms.apply(doc)
        doc["anonymized"] = True
        timelines = pseudonyms.apply(timelines)
    (out / "findings.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    context = _context(result, doc, timelines)
    html = _environment().get_template("report.html").render(**context)
    (out / "report.html").write_text(html, encoding="utf-8")
    (out / "summary.md").write_text(render_markdown(context), encoding="utf-8")


def render_markdown(context: dict[str, Any]) -> str:
    """summary.md, kept under GitHub's comment limit by dropping findings from the end."""
    env = _environment(markdown=True)
    template = env.get_template("summary.md")
    findings = context["findings"]
    shown = len(findings)
    while True:
        # Text timelines only for the workspaces of the findings shown, at most a few.
        workspaces = {f["workspace_id"] for f in findings[:shown]}
        groups = [g for g in context["groups"] if g["workspace_id"] in workspaces]
        text = template.render(
            **{
                **context,
                "findings": findings[:shown],
                "groups": groups[:MAX_MARKDOWN_TIMELINES],
                "omitted": len(findings) - shown,
            }
        )
        if len(text) <= MAX_MARKDOWN or shown == 0:
            return text
        shown = max(0, shown - max(1, shown // 4))


def _context(
    result: Analysis, doc: dict[str, Any], timelines: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    by_rule = {r.rule.id: r.rule for r in result.rules}
    # Findings grouped by workspace (in verdict order), each group with its timeline picture;
    # the first MAX_DETAILED findings get their full evidence, the rest a line in the table.
    groups: dict[str, dict[str, Any]] = {}
    for n, f in enumerate(doc["findings"]):
        key = f["workspace_id"] or ""
        group = groups.setdefault(
            key,
            {
                "workspace_id": key,
                "workspace_name": f["workspace_name"],
                "svg": draw(timelines[key], doc["export_as_of"]) if key in timelines else None,
                "findings": [],
            },
        )
        if n < MAX_DETAILED:
            group["findings"].append(f)
    for key, group in groups.items():
        group["text_timeline"] = text_timeline(timelines[key]) if key in timelines else []
    return {
        "groups": [g for g in groups.values() if g["findings"]],
        "detailed": min(len(doc["findings"]), MAX_DETAILED),
        "rule_digests": {r.rule.id: _digest(r.rule.sql) for r in result.rules},
        "schema_version": result.schema_version,
        "script": SCRIPT,
        "findings": doc["findings"],
        "rules": by_rule,
        "runs": result.rules,
        "inputs": doc["inputs"],
        "tables": doc["coverage"]["tables"],
        "logs": doc["coverage"]["logs"],
        "clocks": doc["coverage"]["clocks"],
        # The page lists at most MAX_COVERAGE_ROWS files per table, those with something to
        # say first, and sums up the rest, so its size does not grow with the input's;
        # findings.json lists every file.
        "shown": {
            "inputs": _most_telling(
                doc["inputs"], lambda s: s["kind"] not in ("table", "agent_log")
            ),
            "tables": _most_telling(doc["coverage"]["tables"], lambda t: t["rejected"] > 0),
            "logs": _most_telling(
                doc["coverage"]["logs"],
                lambda lg: lg["unparsed"] > 0 or bool(lg["problem"]) or lg["duplicates"] > 0,
            ),
            "clocks": _most_telling(
                doc["coverage"]["clocks"], lambda c: c["method"] in ("estimated", "--log-offset")
            ),
        },
        "notes": doc["coverage"]["notes"],
        "verdict": doc["verdict"],
        "generated_at": doc["generated_at"],
        "tool": result.tool,
        "command": doc["command"],
        "as_of": doc["export_as_of"],
        "omitted": 0,
        "history": doc.get("history"),
        "history_svg": (
            trend_svg(doc["history"]["trend"], doc["history"]["run"]) if "history" in doc else None
        ),
    }


MAX_COVERAGE_ROWS = 60


def _most_telling(rows: list[dict[str, Any]], telling: Callable[[dict[str, Any]], bool]) -> dict:
    """At most MAX_COVERAGE_ROWS rows, the telling ones first (in their order), and the rest
    counted: {"rows": [...], "more": n}."""
    if len(rows) <= MAX_COVERAGE_ROWS:
        return {"rows": rows, "more": 0}
    first = [r for r in rows if telling(r)]
    rest = [r for r in rows if not telling(r)]
    shown = (first + rest)[:MAX_COVERAGE_ROWS]
    return {"rows": shown, "more": len(rows) - len(shown)}


def text_timeline(timeline: dict[str, Any], limit: int = 40) -> list[str]:
    """One workspace's builds, agent rows and agent processes as time-ordered lines of text."""
    events: list[tuple[str, str]] = []
    build_of = {a["agent_id"]: a["build_number"] for a in timeline["agents"]}
    flagged = set(timeline["flagged"])
    for b in timeline["builds"]:
        events.append((b["created_at"], f"build #{b['build_number']} {b['transition']} created"))
    for a in timeline["agents"]:
        row = f"build #{a['build_number']} agent row {a['agent_id'][:8]}"
        mark = "  <- finding" if a["agent_id"] in flagged else ""
        for column, what in (
            ("first_connected_at", "first connected"),
            ("started_at", "reported starting"),
            ("ready_at", f"reported {a['lifecycle_state']}"),
            ("disconnected_at", "disconnected"),
        ):
            if a[column]:
                events.append(
                    (a[column], f"{row} {what}{mark if column == 'first_connected_at' else ''}")
                )
        if a["first_connected_at"] and not a["started_at"]:
            events.append((a["first_connected_at"], f"{row} is still '{a['lifecycle_state']}'"))
    for p in timeline["processes"]:
        parts = p["stream"].split("/")
        name = f"process {p['process_no']} ({parts[-2] if len(parts) > 1 else parts[-1]})"
        if not p["start_seen"]:
            events.append((p["began_at"], f"{name} first line seen (its start is not in the logs)"))
        for e in p["events"] or []:
            if e["kind"] == "manifest" and e["agent_id"]:
                target = build_of.get(e["agent_id"])
                whose = f"build #{target}'s" if target is not None else "an unknown"
                events.append(
                    (
                        e["ts"],
                        f"{name} fetched the manifest of {whose} agent row {e['agent_id'][:8]}",
                    )
                )
            elif e["kind"] in (
                "process start",
                "reinitialization",
                "disconnect",
                "connection error",
            ):
                events.append((e["ts"], f"{name} {e['kind']}"))
    events.sort()
    lines = [f"{_when(ts)[:19]}  {text}" for ts, text in events]
    if len(lines) > limit:
        lines = lines[: limit - 1] + [f"... {len(lines) - limit + 1} more events in report.html"]
    return lines


def check_query(finding: dict[str, Any]) -> str:
    """A psql query a maintainer runs on their own database to see the rows behind a finding."""
    ws = str(uuid.UUID(finding["workspace_id"])) if finding["workspace_id"] else ""
    agent = str(uuid.UUID(finding["agent_id"]))
    return f"""-- Builds of workspace {finding["workspace_name"]!r} with their agent rows;
-- the finding is about agent {agent} (build #{finding["build_number"]}).
SELECT wb.build_number, wb.transition, wb.created_at AS build_created_at,
       pj.completed_at AS job_completed_at, pj.error AS job_error,
       wa.id AS agent_id, wa.name, wa.lifecycle_state, wa.first_connected_at,
       wa.started_at, wa.ready_at, wa.disconnected_at, wa.version, wa.auth_instance_id
FROM workspace_builds wb
JOIN provisioner_jobs pj ON pj.id = wb.job_id
LEFT JOIN (workspace_resources wr JOIN workspace_agents wa ON wa.resource_id = wr.id)
       ON wr.job_id = wb.job_id
WHERE wb.workspace_id = '{ws}'
ORDER BY wb.build_number, wa.name;"""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def script_hash() -> str:
    """The CSP source expression that admits SCRIPT and nothing else."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode() + "'"


@functools.cache  # compiled templates are kept for the process: each run renders the same ones
def _environment(markdown: bool = False) -> Environment:
    env = Environment(
        loader=PackageLoader("forensics", "reports"),
        autoescape=False if markdown else select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["md"] = md_escape
    env.filters["short"] = lambda v: str(v)[:8] if v else ""
    env.filters["when"] = _when
    env.filters["size"] = _size
    env.filters["cell"] = _cell
    env.filters["fenced"] = fenced
    env.filters["log_excerpt"] = _log_excerpt
    env.filters["mark"] = _mark
    env.globals["script_hash"] = script_hash
    env.globals["check_query"] = check_query
    env.globals["severity_rank"] = lambda sev: SEVERITIES.index(sev)
    return env


def md_escape(value: Any) -> str:
    """Escape text for a Markdown table cell or line: no HTML, links, code or emphasis."""
    text = str(value if value is not None else "")
    text = re.sub(r"([\\`*_\[\]<>|~])", r"\\\1", text)
    return text.replace("\r", " ").replace("\n", " ")


def fenced(lines: list[str]) -> str:
    """A Markdown code block whose fence no run of backticks in the text can close."""
    text = "\n".join(lines)
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def _log_excerpt(lines: list[dict[str, Any]]) -> list[str]:
    """`file:line  first line of the entry`, for a compact block of log evidence."""
    return [
        f"{ln['source'].rsplit('/', 1)[-1]}:{ln['line']}  {ln['text'].splitlines()[0]}"
        for ln in lines
    ]


def _when(value: Any) -> str:
    """ISO UTC timestamps as 'YYYY-MM-DD HH:MM:SS.mmm' (UTC is said once, in the header)."""
    if not value:
        return "—"
    text = str(value).replace("T", " ").rstrip("Z")
    if "." in text:
        head, frac = text.split(".", 1)
        text = f"{head}.{frac[:3]}"
    return text


def _cell(value: Any) -> str:
    """A value in a key/value table: timestamps shortened, lists joined, NULL spelled out."""
    if value is None:
        return "NULL"
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            return "\n".join(_cell(v) for v in value)  # one record per line (pre-wrap cell)
        return ", ".join(_cell(v) for v in value) if value else "none"
    if isinstance(value, dict):
        return "  ".join(_cell(v) for v in value.values() if v is not None)
    if isinstance(value, str) and _ISO.match(value):
        return _when(value)
    return str(value)


def _mark(text: str, needle: str) -> Markup:
    """Escape `text`, then highlight every occurrence of `needle` (an id, escaped the same)."""
    escaped = escape(text)
    if not needle:
        return escaped
    target = escape(needle)
    return Markup(str(escaped).replace(str(target), f"<mark>{target}</mark>"))


_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


# --------------------------------------------------------------------------------------
# The report directory is replaced as a whole: written under a temporary sibling name, then
# renamed into place, so a run killed at any moment leaves the old report or the new one.

OUTPUT_FILES = ("report.html", "findings.json", "summary.md")
_STAGING = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-(?P<pid>\d+)-[0-9a-f]{8}$")


def check_out_dir(out: Path) -> None:
    """Refuse an --out that is not a directory or holds anything but an earlier report: the
    whole directory is replaced, and nothing else in it may be lost."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    if out.is_dir():
        other = sorted(p.name for p in out.iterdir() if p.name not in OUTPUT_FILES)
        if other:
            more = f" and {len(other) - 5} more" if len(other) > 5 else ""
            listed = ", ".join(other[:5]) + more
            raise UsageError(
                f"--out {out}: holds {listed}, which is not part of a report; the report "
                "directory is replaced as a whole, so give a new or empty directory (or one "
                "holding only an earlier report)"
            )


@contextmanager
def staged_dir(out: Path) -> Iterator[Path]:
    """Yield a new temporary sibling of `out` to write into; when the block ends without an
    error, it takes `out`'s place (an existing `out` is swapped out and removed)."""
    check_out_dir(out)
    parent = out.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(parent)
    stage = parent / f".{out.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    stage.mkdir()
    try:
        yield stage
        for f in stage.iterdir():  # on disk before the rename makes them visible
            with f.open("rb") as fh:
                os.fsync(fh.fileno())
        if not out.exists():
            os.rename(stage, out)
        elif _exchange(stage, out):
            shutil.rmtree(stage)  # it now holds the previous report
        else:
            old = parent / f".{out.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
            os.rename(out, old)
            os.rename(stage, out)
            shutil.rmtree(old)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories in one step (Linux renameat2 RENAME_EXCHANGE); False when the
    system or file system cannot, and the caller renames twice instead."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes  # only here: the one system call Python's os module does not offer

    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _remove_abandoned(parent: Path) -> None:
    """Remove the temporary report directories (and index.html files) that runs killed
    before they finished left in `parent`: their process is gone."""
    for p in parent.glob(".*.*-*-*"):
        m = _STAGING.match(p.name)
        if not m:
            continue
        try:
            os.kill(int(m["pid"]), 0)
        except ProcessLookupError:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        except OSError:
            pass  # alive (another user's process): not ours to remove


def write_index(
    root: Path, runs: list[dict[str, Any]], history_file: str, tool: str, generated_at: str
) -> Path:
    """index.html in `root`: every run in the history, newest first, linking its report."""
    rows = []
    for r in runs:
        report = Path(r["report_dir"]) / "report.html" if r["report_dir"] else None
        href = label = None
        if report is not None and report.is_file():
            label = Path(os.path.relpath(report, root.absolute())).as_posix()
            href = quote(label)
        rows.append({**r, "href": href, "label": label})
    html = (
        _environment()
        .get_template("index.html")
        .render(
            runs=rows,
            history_file=history_file,
            tool=tool,
            generated_at=generated_at,
            script=SCRIPT,
        )
    )
    target = root / "index.html"
    tmp = root / f".index.html.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, target)
    return target
