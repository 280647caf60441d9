"""One workspace's merged timeline for the terminal: `forensics timeline WORKSPACE PATHS...`.

Builds, agent rows, agent processes (from the logs) and findings, in one chronological list of
events, queried from the model that `engine.open_analysis` builds, and rendered as aligned
columns (coloured when asked) or as JSON lines. Library code: it raises, never prints.
"""

from __future__ import annotations

import difflib
import json
import re
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

import duckdb

from forensics.engine import Finding, jsonable, open_analysis, scrub
from forensics.errors import InputError, UsageError
from forensics.rules import SEVERITIES

ID_PREFIX = re.compile(r"[0-9a-f-]{8,36}")
MIN_ID_PREFIX = 8
DETAIL_WIDTH = 64  # details longer than this still print whole, they just end the alignment
ERROR_TEXT = 110  # an error's text is cut to this many characters
COLOR_MODES = ("auto", "always", "never")


@dataclass
class Event:
    """One line of the timeline."""

    ts: datetime
    source: str  # build #N | agent <id8> (#N) | <process label>
    event: str
    detail: str
    # build | job | agent | process | manifest | lifecycle | connect | disconnect | error |
    # reinit | shutdown | finding
    kind: str
    tone: str = "plain"  # plain | good | warn | bad | flag: how it is coloured
    file: str | None = None  # log events: the file and line that say so
    line: int | None = None
    ts_raw: datetime | None = None  # log events: the time as the host logged it, when it differs
    rules: list[str] = field(default_factory=list)  # findings on this event's agent row
    order: tuple[Any, ...] = ()  # ties on `ts` keep the order of the source they came from

    def as_json(self) -> dict[str, Any]:
        """The event as one JSON object (UTC ISO times)."""
        return {
            "ts": jsonable(self.ts),
            "ts_raw": jsonable(self.ts_raw),
            "source": self.source,
            "event": self.event,
            "detail": self.detail,
            "kind": self.kind,
            "file": self.file,
            "line": self.line,
            "rules": self.rules,
        }


@dataclass
class Process:
    """An agent process of the workspace, as the header describes it."""

    label: str
    stream: str
    files: int
    began_at: datetime | None
    start_seen: bool
    builds: list[int]
    offset: dict[str, Any] | None = None  # this stream's row of log_offsets, if estimated


@dataclass
class Workspace:
    """A workspace of the export, as WORKSPACE arguments are matched against."""

    id: str
    name: str
    owner: str | None
    deleted: bool
    builds: int
    last_build_at: datetime | None = None

    @property
    def full_name(self) -> str:
        """OWNER/NAME, or NAME when the owner is unknown."""
        return f"{self.owner}/{self.name}" if self.owner else self.name

    def describe(self) -> str:
        """OWNER/NAME (id ..., deleted) for error messages."""
        return f"{self.full_name} (id {self.id}{', deleted' if self.deleted else ''})"


@dataclass
class Timeline:
    """The result of `workspace_timeline`: header facts and the ordered events."""

    workspace: Workspace
    events: list[Event]
    processes: list[Process]
    findings: list[Finding]
    builds: int
    agent_rows: int
    offsets_known: bool  # the model has log_offsets (clock skew estimates)
    raw_times: bool  # the model has agent_events.ts_raw
    broken_rules: list[str] = field(default_factory=list)  # rules that failed: flags may lack


def workspace_timeline(
    paths: Sequence[Any], workspace: str, log_offsets: dict[str, float] | None = None
) -> Timeline:
    """Analyse `paths` as `analyze` does and return the timeline of one workspace.

    `workspace` is a name, OWNER/NAME, or a workspace id (whole, or a prefix of at least 8
    characters). Raises InputError when it matches none or several workspaces. `log_offsets`
    overrides hosts' clock offsets, as in `analyze`.
    """
    with open_analysis(paths, log_offsets=log_offsets) as (con, analysis):
        ws = resolve_workspace(con, workspace, paths)
        findings = [f for f in analysis.findings if f.workspace_id == ws.id]
        tl = _collect(con, ws, findings)
        tl.broken_rules = [
            f"{r.rule.id}: {r.reason}" for r in analysis.rules if r.status == "broken"
        ]
        return tl


def list_workspaces(paths: Sequence[Any]) -> list[Workspace]:
    """Every workspace in the export (from `workspaces` and from builds), by owner and name."""
    with open_analysis(paths, rules=[]) as (con, _):
        return _workspaces(con)


def _workspaces(con: duckdb.DuckDBPyConnection) -> list[Workspace]:
    rows = con.execute(
        """WITH known AS (
               SELECT w.id, w.name, u.username AS owner, coalesce(w.deleted, false) AS deleted
               FROM workspaces w LEFT JOIN users u ON u.id = w.owner_id
               UNION ALL
               -- builds of workspaces whose row was not exported still name a workspace
               SELECT DISTINCT workspace_id, workspace_name, owner_name, workspace_deleted
               FROM builds WHERE workspace_id NOT IN (SELECT id FROM workspaces)
           )
           SELECT CAST(k.id AS VARCHAR), k.name, k.owner, k.deleted, count(b.build_id),
                  max(b.build_created_at)
           FROM known k LEFT JOIN builds b ON b.workspace_id = k.id
           WHERE k.id IS NOT NULL
           GROUP BY ALL ORDER BY k.owner NULLS LAST, k.name, 1"""
    ).fetchall()
    return [Workspace(*row) for row in rows]


def resolve_workspace(
    con: duckdb.DuckDBPyConnection, text: str, paths: Sequence[Any] = ()
) -> Workspace:
    """The one workspace `text` names: by id or id prefix, OWNER/NAME, or NAME."""
    wanted = text.strip()
    known = _workspaces(con)
    low = wanted.lower()
    matches = {}
    if ID_PREFIX.fullmatch(low) and sum(c != "-" for c in low) >= MIN_ID_PREFIX:
        matches = {w.id: w for w in known if w.id.startswith(low)}
    if "/" in wanted:
        matches |= {w.id: w for w in known if w.full_name.lower() == low}
    else:
        matches |= {w.id: w for w in known if w.name.lower() == low}
    if len(matches) == 1:
        return next(iter(matches.values()))
    if matches:
        listing = "; ".join(w.describe() for w in matches.values())
        raise InputError(
            f"{wanted!r} matches {len(matches)} workspaces: {listing}. "
            "Name one as OWNER/NAME or by id"
        )
    listed = "forensics timeline --list " + " ".join(shlex.quote(str(p)) for p in paths)
    if not known:
        raise InputError(f"no workspace {wanted!r}: the export has no workspaces or builds")
    names = sorted({w.full_name if "/" in wanted else w.name for w in known})
    near = difflib.get_close_matches(wanted, names, n=5, cutoff=0.5)
    hint = f"nearest: {', '.join(near)}. " if near else ""
    raise InputError(
        f"no workspace {wanted!r} among the {len(known)} in the export; {hint}"
        f"List them with: {listed.rstrip()}"
    )


def _collect(con: duckdb.DuckDBPyConnection, ws: Workspace, findings: list[Finding]) -> Timeline:
    flags: dict[str, list[str]] = {}
    for f in findings:
        flags.setdefault(f.agent_id, []).append(f.rule)
    events: list[Event] = []
    builds = _rows(
        con,
        """SELECT build_number, transition, reason, build_created_at, job_status,
                  job_started_at, job_completed_at, job_error
           FROM builds WHERE workspace_id = ? ORDER BY build_number""",
        [ws.id],
    )
    for b in builds:
        events += _build_events(b)
    agents = _rows(
        con,
        """SELECT CAST(agent_id AS VARCHAR) AS agent_id, agent_name, build_number, transition,
                  lifecycle_state, agent_created_at, first_connected_at, started_at, ready_at,
                  last_connected_at, disconnected_at, version
           FROM agent_builds WHERE workspace_id = ? ORDER BY build_number, agent_name""",
        [ws.id],
    )
    build_of = {a["agent_id"]: a["build_number"] for a in agents}
    for a in agents:
        events += _agent_events(a, flags.get(a["agent_id"], []))
    raw_times = _has_column(con, "agent_events", "ts_raw")
    offsets_known = _has_table(con, "log_offsets")
    processes, log_events = _process_events(con, ws.id, list(build_of), build_of, raw_times)
    events += log_events
    if offsets_known:
        _attach_offsets(con, processes)
    labels = {a["agent_id"]: _agent_label(a["agent_id"], a["build_number"]) for a in agents}
    created = {a["agent_id"]: a["agent_created_at"] for a in agents}
    for n, f in enumerate(findings):
        when = _parse_ts(f.ts) or created.get(f.agent_id)
        if when is None:
            continue
        events.append(
            Event(
                when,
                labels.get(f.agent_id, _agent_label(f.agent_id, f.build_number)),
                f"⚑ {f.severity}",
                f"{f.rule}: {f.title}",
                "finding",
                tone="flag" if SEVERITIES.index(f.severity) >= SEVERITIES.index("high") else "warn",
                rules=[f.rule],
                order=(3, n),
            )
        )
    events.sort(key=lambda e: (e.ts, e.order))
    return Timeline(
        workspace=ws,
        events=events,
        processes=processes,
        findings=findings,
        builds=len(builds),
        agent_rows=len(agents),
        offsets_known=offsets_known,
        raw_times=raw_times,
    )


def _build_events(b: dict[str, Any]) -> list[Event]:
    n = b["build_number"]
    src = f"build #{n}"
    status = b["job_status"] or "unknown"
    reason = f", reason {b['reason']}" if b["reason"] else ""
    out = [
        Event(
            b["build_created_at"],
            src,
            "build created",
            f"{b['transition']}{reason}; job {status}",
            "build",
            order=(0, n, 0),
        )
    ]
    if b["job_started_at"]:
        out.append(Event(b["job_started_at"], src, "job started", "", "job", order=(0, n, 1)))
    if b["job_completed_at"]:
        error = f": {_short(scrub(b['job_error']))}" if b["job_error"] else ""
        tone = "good" if status == "succeeded" else "bad"
        out.append(
            Event(
                b["job_completed_at"], src, f"job {status}", error[2:], "job", tone, order=(0, n, 2)
            )
        )
    return [e for e in out if e.ts is not None]


def _agent_events(a: dict[str, Any], rules: list[str]) -> list[Event]:
    n, state = a["build_number"], a["lifecycle_state"] or "unknown"
    src = _agent_label(a["agent_id"], n)
    stuck = state == "created" and a["first_connected_at"] is not None
    connected = "never connected" if a["first_connected_at"] is None else ""
    flag = f"; ⚑ {', '.join(rules)}" if rules else ""
    rows = [
        (
            "agent_created_at",
            "row created",
            f"agent {a['agent_name']!s}, {a['transition']} build #{n}, "
            f"now {state}{'; ' + connected if connected else ''}{flag}",
            "agent",
            "bad" if stuck else "plain",
        ),
        (
            "first_connected_at",
            "first connected",
            f"version {a['version']}" if a["version"] else "",
            "connect",
            "plain",
        ),
        ("started_at", "lifecycle started", "started_at (agent clock)", "lifecycle", "good"),
        (
            "ready_at",
            f"lifecycle {state}",
            "ready_at (agent clock)",
            "lifecycle",
            "good" if state in ("ready", "shutting_down", "shutdown_timeout", "off") else "bad",
        ),
        ("last_connected_at", "last connected", "", "connect", "plain"),
        ("disconnected_at", "disconnected", "", "disconnect", "warn"),
    ]
    out = []
    for i, (column, event, detail, kind, tone) in enumerate(rows):
        if a[column] is not None:
            out.append(
                Event(a[column], src, event, detail, kind, tone, rules=rules, order=(1, n, i))
            )
    if stuck:
        out.append(
            Event(
                a["first_connected_at"],
                src,
                "still created",
                "connected, but no lifecycle state was ever reported for this row",
                "agent",
                "bad",
                rules=rules,
                order=(1, n, 1.5),
            )
        )
    return out


def _process_events(
    con: duckdb.DuckDBPyConnection,
    workspace_id: str,
    agent_ids: list[str],
    build_of: dict[str, int],
    raw_times: bool,
) -> tuple[list[Process], list[Event]]:
    """The agent processes that served the workspace (a manifest names one of its agent rows
    or the workspace itself), and their key log lines."""
    served = """SELECT DISTINCT stream, process_no FROM agent_manifests
                WHERE CAST(agent_id AS VARCHAR) IN (SELECT unnest(?::VARCHAR[]))
                   OR CAST(workspace_id AS VARCHAR) = ?"""
    procs = _rows(
        con,
        f"""SELECT p.stream, p.process_no, p.started_at, p.first_seen_at, p.first_source,
                   p.first_line, p.agent_version, p.auth,
                   (SELECT count(DISTINCT source) FROM log_segments e
                    WHERE e.stream = p.stream) AS files
            FROM agent_processes p JOIN ({served}) s USING (stream, process_no)
            ORDER BY coalesce(p.started_at, p.first_seen_at), p.stream, p.process_no""",
        [agent_ids, workspace_id],
    )
    raw = "e.ts_raw" if raw_times else "NULL"
    lines = _rows(
        con,
        f"""SELECT e.stream, e.process_no, e.instance_no, e.file_rank, e.source, e.line, e.ts,
                   {raw} AS ts_raw, e.kind, e.message,
                   CAST(m.agent_id AS VARCHAR) AS agent_id, r.state,
                   c.http_status, c.http_message, c.error_detail, c.error_text,
                   nullif(regexp_extract(e.fields, '(?:^|  )reason=(\\S+)', 1), '') AS reason,
                   nullif(regexp_extract(e.fields, '(?:^|  )error=(.*)$', 1), '') AS error
            FROM agent_key_events e JOIN ({served}) s USING (stream, process_no)
            LEFT JOIN agent_manifests m
                   ON m.stream = e.stream AND m.source = e.source AND m.line = e.line
            LEFT JOIN agent_lifecycle_reports r
                   ON r.stream = e.stream AND r.source = e.source AND r.line = e.line
            LEFT JOIN agent_connection_errors c
                   ON c.stream = e.stream AND c.source = e.source AND c.line = e.line
            WHERE (e.kind IS NOT NULL OR c.line IS NOT NULL) AND e.ts IS NOT NULL
              -- 'reporting lifecycle state' repeats the 'set lifecycle state' line before it
              AND NOT (e.kind = 'lifecycle' AND r.line IS NULL)
            ORDER BY e.stream, e.file_rank, e.line""",
        [agent_ids, workspace_id],
    )
    labels = _process_labels(procs)
    by_key = {(p["stream"], p["process_no"]): p for p in procs}
    served_builds: dict[tuple[str, int], set[int]] = {key: set() for key in by_key}
    for ln in lines:
        if ln["agent_id"] in build_of:
            served_builds[(ln["stream"], ln["process_no"])].add(build_of[ln["agent_id"]])
    processes: list[Process] = []
    events: list[Event] = []
    for key, p in by_key.items():
        processes.append(
            Process(
                labels[key],
                p["stream"],
                p["files"],
                p["started_at"] or p["first_seen_at"],
                p["started_at"] is not None,
                sorted(served_builds[key]),
            )
        )
        if p["started_at"] is None and p["first_seen_at"] is not None:
            events.append(
                Event(
                    p["first_seen_at"],
                    labels[key],
                    "first line seen",
                    "start not in logs: the process began earlier",
                    "process",
                    "warn",
                    file=p["first_source"],
                    line=p["first_line"],
                    order=(2, p["stream"], -1, 0),
                )
            )
    serving: dict[tuple[Any, ...], str] = {}  # instance -> agent id of its latest manifest
    for ln in lines:
        key = (ln["stream"], ln["process_no"])
        instance = (*key, ln["instance_no"])
        if ln["agent_id"]:
            serving[instance] = ln["agent_id"]
        event, detail, kind, tone = _log_event(ln, by_key[key], serving.get(instance), build_of)
        raw = ln["ts_raw"]
        events.append(
            Event(
                ln["ts"],
                labels[key],
                event,
                detail,
                kind,
                tone,
                file=ln["source"],
                line=ln["line"],
                ts_raw=raw if raw is not None and raw != ln["ts"] else None,
                order=(2, ln["stream"], ln["file_rank"], ln["line"]),
            )
        )
    return processes, events


def _log_event(
    ln: dict[str, Any], proc: dict[str, Any], serving: str | None, build_of: dict[str, int]
) -> tuple[str, str, str, str]:
    """(event, detail, kind, tone) of one key log line."""
    kind = ln["kind"]
    if kind == "process start":
        parts = [f"version {proc['agent_version']}" if proc["agent_version"] else ""]
        parts.append(f"auth {proc['auth']}" if proc["auth"] else "")
        return "process start", ", ".join(p for p in parts if p), "process", "plain"
    if kind == "manifest":
        if not ln["agent_id"]:
            return "manifest", "no agent id in this line", "manifest", "plain"
        return "manifest", _row_ref(ln["agent_id"], build_of), "manifest", "plain"
    if kind == "lifecycle":
        whose = f" for {_row_ref(serving, build_of)}" if serving else ""
        state = ln["state"] or "(state not read)"
        tone = "bad" if state in ("start_error", "start_timeout", "shutdown_error") else "good"
        return f"lifecycle {state}", f"reported{whose}", "lifecycle", tone
    if kind == "connect":
        return "connecting", "", "connect", "plain"
    if kind == "disconnect":
        return "disconnected", "", "disconnect", "warn"
    if kind == "reinit instruction":
        reason = f"reason {ln['reason']}" if ln["reason"] else ""
        return "reinit instruction", reason, "reinit", "warn"
    if kind == "reinitialization":
        return "reinitializing", "a fresh agent instance in the same process", "reinit", "warn"
    if kind == "shutdown":
        return "shutdown", _short(scrub(ln["error"])) if ln["error"] else "", "shutdown", "warn"
    if kind == "script failure":
        return "script failed", _short(scrub(ln["error"] or "")), "error", "bad"
    if kind == "lifecycle refused":
        return "lifecycle refused", "a backwards lifecycle change, refused", "lifecycle", "warn"
    if kind not in (None, "connection error"):  # a kind this module does not know yet
        return clean(kind), _short(scrub(ln["message"])), "process", "plain"
    # connection errors, and lines the model lists as such without a kind
    if ln["http_status"]:
        text = f"HTTP {ln['http_status']}: {ln['http_message'] or ''}".rstrip(": ")
    elif ln["error_detail"]:
        text = ln["error_detail"]
    else:
        text = (ln["error_text"] or ln["message"] or "").strip().removeprefix("error=").strip()
    return "connection error", _short(scrub(text)), "error", "bad"


def _row_ref(agent_id: str, build_of: dict[str, int]) -> str:
    if agent_id in build_of:
        return f"agent {agent_id[:8]} = build #{build_of[agent_id]}'s row"
    return f"agent {agent_id[:8]} (not one of this workspace's rows in the export)"


def _agent_label(agent_id: str, build_number: int | None) -> str:
    return f"agent {agent_id[:8]} (#{build_number})" if build_number else f"agent {agent_id[:8]}"


def _process_labels(procs: list[dict[str, Any]]) -> dict[tuple[str, int], str]:
    """Short names for processes: the host directory and the process number in its stream, or
    the whole stream when two streams share a directory."""
    dirs: dict[str, set[str]] = {}
    for p in procs:
        dirs.setdefault(_host_dir(p["stream"]), set()).add(p["stream"])
    out = {}
    for p in procs:
        host = _host_dir(p["stream"])
        name = host if len(dirs[host]) == 1 else p["stream"]
        out[(p["stream"], p["process_no"])] = f"{name}#{p['process_no']}"
    return out


def _host_dir(stream: str) -> str:
    parts = PurePosixPath(stream).parts
    return parts[-2] if len(parts) > 1 else parts[-1]


def _attach_offsets(con: duckdb.DuckDBPyConnection, processes: list[Process]) -> None:
    rows = _rows(con, "SELECT * FROM log_offsets", [])
    by_stream = {r.get("stream"): r for r in rows}
    for p in processes:
        p.offset = by_stream.get(p.stream)


def _has_table(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
        ).fetchall()[0][0]
    )


def _has_column(con: duckdb.DuckDBPyConnection, table: str, column: str) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM duckdb_columns() WHERE table_name = ? AND column_name = ?",
            [table, column],
        ).fetchall()[0][0]
    )


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    cur = con.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _parse_ts(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _short(text: str | None, limit: int = ERROR_TEXT) -> str:
    """Multi-line error text as one line of at most `limit` characters."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# ---- rendering -------------------------------------------------------------------------------

SGR = {
    "dim": "2",
    "bold": "1",
    "build": "1;34",  # bold blue
    "job": "34",
    "agent": "36",  # cyan
    "process": "1;35",  # bold magenta
    "manifest": "35",
    "lifecycle": "32",
    "good": "32",
    "warn": "33",
    "bad": "31",
    "flag": "1;31",
}


def parse_time(text: str, option: str) -> datetime:
    """`--since`/`--until`: an ISO 8601 date (midnight) or time, UTC unless it has an offset."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{option}: not an ISO 8601 date or time: {text!r} (e.g. 2026-05-13 or "
            "2026-05-13T23:00:00Z)"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def color_wanted(mode: str, isatty: bool, environ: dict[str, str] | Any) -> bool:
    """Whether to colour: `always`, `never`, or (auto) on a terminal unless NO_COLOR is set
    (https://no-color.org: any non-empty value) or TERM is `dumb`."""
    if mode == "always":
        return True
    if mode == "never":
        return False
    return isatty and not environ.get("NO_COLOR") and environ.get("TERM") != "dumb"


def since_until(
    events: Iterable[Event], since: datetime | None, until: datetime | None
) -> list[Event]:
    """The events at or after `since` and at or before `until`."""
    return [
        e for e in events if (since is None or e.ts >= since) and (until is None or e.ts <= until)
    ]


def header_lines(tl: Timeline, color: bool = False, flag_mark: str = "⚑") -> list[str]:
    """What the timeline is about: the workspace, what was found, the processes, clock offsets."""
    ws = tl.workspace
    paint = _painter(color)
    deleted = ", deleted" if ws.deleted else ""
    out = [
        paint("bold", f"Workspace {clean(ws.full_name)}") + f"  (id {ws.id}{deleted})",
        f"{tl.builds} build(s), {tl.agent_rows} agent row(s), {len(tl.processes)} agent "
        f"process(es) in the logs, {len(tl.findings)} finding(s); times are UTC",
    ]
    for p in tl.processes:
        began = _time(p.began_at) if p.began_at else "?"
        how = "start line" if p.start_seen else "start not in logs"
        served = ", ".join(f"#{n}" for n in p.builds) or "none of its rows"
        files = f", {p.files} files" if p.files > 1 else ""
        out.append(
            f"  process {clean(p.label)}: {clean(p.stream)}{files}; began {began} ({how}); "
            f"served build(s) {served}"
        )
    if tl.offsets_known:
        streams = {p.stream: p for p in tl.processes}  # processes of one stream share a clock
        for stream, p in streams.items():
            host = (p.offset or {}).get("host") or _host_dir(stream)
            out.append(f"  clock of {clean(str(host))}: {_offset_text(p.offset)}")
    if tl.findings:
        rules = ", ".join(sorted({f.rule for f in tl.findings}))
        out.append(paint("flag", f"{flag_mark} flagged") + f": {rules}")
    return out


def _offset_text(row: dict[str, Any] | None) -> str:
    """A log_offsets row in words: the offset applied, then the estimate behind it."""
    if not row:
        return "no offset estimate (times as logged)"
    applied = row.get("offset_seconds")
    text = f"offset {applied:+.3f} s" if isinstance(applied, int | float) else "offset unknown"
    if row.get("method"):
        text += f" ({clean(str(row['method']))})"
    facts = []
    estimate = row.get("estimated_seconds")
    if isinstance(estimate, int | float):
        facts.append(f"estimate {estimate:+.3f} s")
    if row.get("pairs") is not None:
        facts.append(f"{row['pairs']} pair(s)")
    if isinstance(row.get("spread_seconds"), int | float):
        facts.append(f"spread {row['spread_seconds']:.3f} s")
    if row.get("confidence"):
        facts.append(f"confidence {clean(str(row['confidence']))}")
    return text + ("; " + ", ".join(facts) if facts else "")


def event_lines(
    events: list[Event], color: bool = False, raw_times: bool = True, flag_mark: str = "⚑"
) -> list[str]:
    """The events as aligned columns: time, [host clock,] source, event, detail, file:line."""
    paint = _painter(color)
    show_raw = raw_times and any(e.ts_raw is not None for e in events)
    cells = []
    for e in events:
        where = f"{PurePosixPath(e.file).name}:{e.line}" if e.file else ""
        cells.append(
            (
                _time(e.ts),
                _time(e.ts_raw) if e.ts_raw else "",
                clean(e.source),
                clean(e.event).replace("⚑", flag_mark),
                clean(e.detail).replace("⚑", flag_mark),
                clean(where),
            )
        )
    titles = ("TIME (UTC)", "HOST CLOCK", "SOURCE", "EVENT", "DETAIL", "FILE:LINE")
    widths = [max([len(t), *(len(c[i]) for c in cells)]) for i, t in enumerate(titles)]
    widths[4] = min(widths[4], DETAIL_WIDTH)
    columns = [0, 1, 2, 3, 4, 5] if show_raw else [0, 2, 3, 4, 5]

    def row(values: Sequence[str], styles: Sequence[str | None]) -> str:
        parts = []
        for i in columns:
            pad = "" if i == columns[-1] else " " * (widths[i] - len(values[i]))
            parts.append(paint(styles[i], values[i]) + pad)  # escapes outside the padding
        return "  ".join(parts).rstrip()

    out = [row(titles, ["bold"] * 6)]
    for e, c in zip(events, cells, strict=True):
        tone = e.tone if e.tone != "plain" else None
        style = tone or (e.kind if e.kind in SGR else None)
        source_style = "bold" if e.kind in ("build", "process") else None
        out.append(row(c, ["dim", "dim", source_style, style, tone, "dim"]))
    return out


def json_lines(events: Iterable[Event]) -> list[str]:
    """One JSON object per event."""
    return [json.dumps(e.as_json(), ensure_ascii=False) for e in events]


def workspace_lines(workspaces: list[Workspace]) -> list[str]:
    """`--list`: one line per workspace."""
    cells = [
        (
            clean(w.full_name),
            w.id,
            str(w.builds),
            _time(w.last_build_at) if w.last_build_at else "",
            "deleted" if w.deleted else "",
        )
        for w in workspaces
    ]
    titles = ("WORKSPACE", "ID", "BUILDS", "LAST BUILD (UTC)", "")
    widths = [max([len(t), *(len(c[i]) for c in cells)]) for i, t in enumerate(titles)]
    return [
        "  ".join(v.ljust(widths[i]) for i, v in enumerate(values)).rstrip()
        for values in (titles, *cells)
    ]


def _painter(color: bool) -> Callable[[str | None, str], str]:
    def paint(style: str | None, text: str) -> str:
        if not color or not style or not text.strip():
            return text
        return f"\x1b[{SGR[style]}m{text}\x1b[0m"

    return paint


CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean(text: str) -> str:
    """Text from the inputs made safe for a terminal: control characters (escape sequences
    included) and bidirectional overrides shown as escapes, never interpreted."""
    return CONTROL.sub(lambda m: _escape(m.group()), text)


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _time(ts: datetime) -> str:
    ts = ts.astimezone(UTC)
    return f"{ts:%Y-%m-%d %H:%M:%S}.{ts.microsecond // 1000:03d}"


def encodable(mark: str, encoding: str | None) -> bool:
    """Whether `mark` can be written to a stream with this encoding."""
    try:
        mark.encode(encoding or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return False
    return True
