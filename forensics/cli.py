"""The `forensics` command line: a thin shell over `forensics.engine` and `forensics.report`."""

from __future__ import annotations

import os
import secrets
import sys
import textwrap
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from dateutil import parser as dateparser

from forensics import __version__, timeline_text
from forensics import collect as collecting
from forensics.anonymize import Pseudonymizer
from forensics.engine import analyze, jsonable
from forensics.errors import ExitCode, ForensicsError, UsageError
from forensics.history import DEFAULT_WAIT, History, Outcome, check_options, checkpoint
from forensics.report import check_out_dir, staged_dir, write_index, write_outputs
from forensics.rule_cases import run_cases
from forensics.rules import SEVERITIES, choose, load_rules

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    help="Forensics for Coder deployments: find workspace agents that survived a build "
    "boundary and agent rows stuck in 'created', with the rows and log lines that prove it.",
)
rules_app = typer.Typer(no_args_is_help=True, help="Inspect the rules.")
app.add_typer(rules_app, name="rules")

RulesDirs = Annotated[
    list[Path] | None,
    typer.Option("--rules", help="A directory of your own rule files (*.sql); repeatable."),
]
LogOffsets = Annotated[
    list[str] | None,
    typer.Option(
        "--log-offset",
        metavar="HOST=SECONDS",
        help="A host's clock offset from the server's, in seconds (positive: the host's clock "
        "is ahead), used instead of the estimate; repeatable. HOST is the directory its logs "
        "are in, as the report's clock table shows it.",
    ),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"forensics {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    pass


@app.command("analyze")
def analyze_cmd(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Directories or files: table exports, agent logs, support bundles.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Directory for report.html, findings.json, summary.md."),
    ] = Path("forensics-out"),
    fail_on: Annotated[
        str,
        typer.Option(
            help=f"Exit 1 when a finding has this severity or higher ({', '.join(SEVERITIES)})."
        ),
    ] = "high",
    generated_at: Annotated[
        str | None,
        typer.Option(
            help="Timestamp to print as the report's generation time (for reproducible output)."
        ),
    ] = None,
    rules_dir: RulesDirs = None,
    select: Annotated[
        list[str] | None,
        typer.Option("--select", help="Run only these rule ids (repeatable or comma-separated)."),
    ] = None,
    ignore: Annotated[
        list[str] | None,
        typer.Option("--ignore", help="Do not run these rule ids (repeatable or comma-separated)."),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="Override a rule parameter: RULE_ID.NAME=VALUE (repeatable)."),
    ] = None,
    anonymize: Annotated[
        bool,
        typer.Option(
            "--anonymize",
            help="Replace usernames, emails, workspace and host names and IPs with pseudonyms.",
        ),
    ] = False,
    anonymize_key: Annotated[
        str | None,
        typer.Option(
            "--anonymize-key",
            help="Key for --anonymize (implies it): the same key gives the same pseudonyms "
            "across reports. Default: a random key, used once and written nowhere.",
        ),
    ] = None,
    log_offset: LogOffsets = None,
    history: Annotated[
        Path | None,
        typer.Option(
            "--history",
            metavar="FILE",
            help="Record the run in this DuckDB history file and report what is new, still "
            "open, resolved or regressed since the last run; index.html of the runs goes in "
            "the parent directory of --out.",
        ),
    ] = None,
    fail_on_new: Annotated[
        bool,
        typer.Option(
            "--fail-on-new",
            help="With --history: exit 1 only when a new or regressed finding is at or above "
            "--fail-on (a re-run of a recorded export exits 0).",
        ),
    ] = False,
    keep_runs: Annotated[
        int | None,
        typer.Option(
            "--keep-runs", metavar="N", help="With --history: keep only the N latest runs."
        ),
    ] = None,
    keep_days: Annotated[
        int | None,
        typer.Option(
            "--keep-days",
            metavar="N",
            help="With --history: drop runs recorded more than N days before this one.",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="With --history: record the run even when the same input files are already "
            "recorded.",
        ),
    ] = False,
    history_wait: Annotated[
        float,
        typer.Option(
            "--history-wait",
            metavar="SECONDS",
            help="With --history: how long to wait for another run to release the history "
            "file before giving up (exit 2).",
        ),
    ] = DEFAULT_WAIT,
    debug: Annotated[bool, typer.Option(help="Show a traceback on errors.")] = False,
) -> None:
    """Analyse exported tables and agent logs; write the report and print the verdict."""
    hist: History | None = None
    outcome: Outcome | None = None
    try:
        with _reported(debug):
            when = _parse_time(generated_at) if generated_at else None
            offsets = parse_log_offsets(log_offset)
            chosen = choose(load_rules(rules_dir), _ids(select), _ids(ignore), param)
            check_options(history, fail_on_new, force, keep_runs, keep_days, history_wait)
            check_out_dir(out)
            wants_pseudonyms = anonymize or anonymize_key is not None
            if history is not None:
                hist = History.open(
                    history,
                    wait=history_wait,
                    progress=lambda m: typer.echo(f"history: {m}", err=True),
                )
            result = analyze(
                paths,
                fail_on=fail_on,
                generated_at=when,
                rules=chosen,
                identify=wants_pseudonyms,
                log_offsets=offsets,
                inspect=hist.capture if hist is not None else None,
            )
            pseudonyms = None
            if wants_pseudonyms:
                key = (
                    anonymize_key.encode() if anonymize_key is not None else secrets.token_bytes(32)
                )
                pseudonyms = Pseudonymizer(result.identifiers, key)
            argv = sys.argv if pseudonyms is None else [*sys.argv[:2], "…"]  # paths may name hosts
            if hist is not None:
                outcome = hist.record(
                    result,
                    out,
                    force=force,
                    keep_runs=keep_runs,
                    keep_days=keep_days,
                    fail_on_new=fail_on_new,
                )
            # The report directory appears whole or not at all; with --history, the history is
            # committed first, so a report never claims a run that the history does not hold.
            with staged_dir(out) as stage:
                write_outputs(
                    result,
                    stage,
                    argv=argv,
                    pseudonyms=pseudonyms,
                    history=outcome.document if outcome is not None else None,
                )
                if hist is not None:
                    hist.commit()
                    checkpoint("report-publish")
            if hist is not None and history is not None:
                checkpoint("index")
                index = write_index(
                    out.parent,
                    hist.runs(),
                    str(history),
                    result.tool,
                    jsonable(result.generated_at),
                )
    finally:
        if hist is not None:
            hist.close()
    lines = verdict_lines(result)
    if outcome is not None and fail_on_new:
        lines[0] = _new_verdict(result, outcome)
    for line in lines:
        typer.echo(pseudonyms.text(line) if pseudonyms else line)
    for run in result.rules:
        if run.status != "ran":
            typer.echo(f"note: rule {run.rule.id} {run.status}: {run.reason}", err=True)
    rejected = sum(t.rejected for t in result.tables) + sum(lg.unparsed for lg in result.logs)
    if rejected:
        typer.echo(
            f"note: {rejected} row(s)/line(s) could not be read; see the coverage section", err=True
        )
    typer.echo(
        f"wrote {out / 'report.html'}, {out / 'findings.json'}, {out / 'summary.md'}", err=True
    )
    if outcome is not None:
        for line in _history_lines(outcome, history):
            typer.echo(line, err=True)
        typer.echo(f"wrote {index}", err=True)
    if result.incomplete():
        raise typer.Exit(ExitCode.INTERNAL)
    if outcome is not None and fail_on_new:
        raise typer.Exit(ExitCode.FINDINGS if outcome.new_failing(fail_on) else ExitCode.OK)
    raise typer.Exit(ExitCode.FINDINGS if result.failing() else ExitCode.OK)


def _new_verdict(result, outcome: Outcome) -> str:
    """The verdict line under --fail-on-new: about what is new, with the totals after it."""
    new = outcome.new_failing(result.fail_on)
    since = f" since run #{outcome.previous}" if outcome.previous is not None else ""
    floor = result.fail_on
    total = f"{len(result.findings)} finding(s), {len(result.failing())} at or above {floor}"
    if not outcome.recorded:
        return f"OK: re-run of run #{outcome.run}, nothing new ({total})"
    if new:
        return f"FAIL: {new} new or regressed finding(s) at or above {floor}{since} ({total})"
    return f"OK: nothing new at or above {floor}{since} ({total})"


def _history_lines(outcome: Outcome, path: Path | None) -> list[str]:
    """What the run did to the history, for stderr."""
    doc = outcome.document
    c = doc["counts"]
    counts = (
        f"{c['new']} new, {c['regressed']} regressed, {c['open']} still open, "
        f"{c['resolved']} resolved"
    )
    if not outcome.recorded:
        lines = [
            f"history: these input files are already run #{outcome.run} in {path}; nothing "
            "recorded (--force records them again)"
        ]
    elif outcome.previous is None:
        lines = [f"history: recorded run #{outcome.run} in {path}, the first: {counts}"]
    else:
        lines = [
            f"history: recorded run #{outcome.run} in {path}; since run #{outcome.previous}: "
            f"{counts}"
        ]
    if outcome.pruned:
        rule = " and ".join(
            f"--{k.replace('_', '-')} {v}"
            for k, v in (doc["pruned"] or {}).items()
            if k != "runs" and v is not None
        )
        ids = ", ".join(f"#{r}" for r in outcome.pruned)
        lines.append(f"history: pruned {len(outcome.pruned)} old run(s) ({ids}) by {rule}")
    return lines


@app.command("collect")
def collect_cmd(
    out: Annotated[
        Path | None,
        typer.Argument(
            metavar="DIR",
            help="New directory for the dump: db/<table>.csv.gz and manifest.json.",
            show_default=False,
        ),
    ] = None,
    dsn: Annotated[
        str | None,
        typer.Option(
            "--dsn",
            metavar="DSN",
            help="libpq connection string or postgres:// URL of Coder's database "
            "(default: the PG* environment variables).",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            metavar="DATE",
            help="Only builds, jobs, resources, agents, logs and scripts created at or after "
            "this date or time (ISO 8601, UTC unless an offset is given).",
        ),
    ] = None,
    workspace: Annotated[
        list[str] | None,
        typer.Option(
            "--workspace",
            metavar="NAME",
            help="Only this workspace, by name, any owner (repeatable).",
        ),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", metavar="csv|parquet", help="gzip'd CSV, or Parquet.")
    ] = "csv",
    print_sql: Annotated[
        bool,
        typer.Option(
            "--print-sql", help="Print the same export as a psql script instead of running it."
        ),
    ] = False,
    debug: Annotated[bool, typer.Option(help="Show a traceback on errors.")] = False,
) -> None:
    """Export what analyze reads from a live Coder database: one read-only snapshot, no secrets."""
    tty = sys.stderr.isatty()

    def progress(level: str, message: str) -> None:
        if level == "warning":
            typer.echo(f"warning: {message}", err=True)
        elif tty:
            typer.echo(message, err=True)

    with _reported(debug, clean=lambda text: collecting.redact(text, dsn)):
        when = collecting.parse_since(since) if since else None
        names = collecting.check_workspace_names(workspace or [])
        if print_sql:
            if out is not None or dsn is not None or fmt != "csv":
                raise UsageError(
                    "--print-sql prints a psql script to stdout: it takes no DIR, --dsn or "
                    "--format (psql writes CSV into its current directory)"
                )
            typer.echo(collecting.psql_script(collecting.Scope(when, tuple(names))), nl=False)
            raise typer.Exit(ExitCode.OK)
        if out is None:
            raise UsageError("collect needs a directory to write the dump into (or --print-sql)")
        result = collecting.collect(
            out, dsn=dsn, since=when, workspaces=names, fmt=fmt, progress=progress
        )
    exported = [t for t in result.tables if t.status == "exported"]
    snapshot = result.manifest["exported_at"]
    typer.echo(
        f"wrote {out}: {len(exported)} tables, {result.rows:,} rows, one snapshot as of "
        f"{snapshot}; {out / 'manifest.json'} says what was exported and what was not",
        err=True,
    )
    typer.echo(f"next: forensics analyze {out} <agent log directories>", err=True)
    raise typer.Exit(ExitCode.OK)


@app.command("timeline")
def timeline_cmd(
    workspace: Annotated[
        str,
        typer.Argument(
            metavar="WORKSPACE",
            help="Workspace name, OWNER/NAME, or id (a prefix of 8 or more characters will "
            "do). With --list, the first path.",
            show_default=False,
        ),
    ],
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="PATHS...",
            help="Directories or files: table exports, agent logs.",
            show_default=False,
        ),
    ] = None,
    color: Annotated[
        str,
        typer.Option(
            "--color",
            metavar="auto|always|never",
            help="Colour: auto (on a terminal, unless NO_COLOR is set), always, or never.",
        ),
    ] = "auto",
    since: Annotated[
        str | None,
        typer.Option(
            metavar="TIME",
            help="Only events at or after this time (ISO 8601, UTC unless an offset is given; "
            "a date means midnight).",
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(metavar="TIME", help="Only events at or before this time."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(metavar="N", help="Print only the first N events.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the events as JSON lines, without the header.")
    ] = False,
    list_all: Annotated[
        bool,
        typer.Option("--list", help="List the workspaces in the inputs instead (no WORKSPACE)."),
    ] = False,
    log_offset: LogOffsets = None,
    debug: Annotated[bool, typer.Option(help="Show a traceback on errors.")] = False,
) -> None:
    """Print one workspace's merged timeline: builds, agent rows, agent processes, findings."""
    inputs = [Path(workspace), *(paths or [])] if list_all else list(paths or [])
    with _reported(debug):
        if color not in timeline_text.COLOR_MODES:
            raise UsageError(f"--color must be one of auto, always, never, not {color!r}")
        if not inputs:
            raise UsageError("timeline needs WORKSPACE and the PATHS to read (or --list PATHS)")
        start = timeline_text.parse_time(since, "--since") if since else None
        end = timeline_text.parse_time(until, "--until") if until else None
        if limit is not None and limit < 1:
            raise UsageError(f"--limit must be 1 or more, not {limit}")
        offsets = parse_log_offsets(log_offset)
        if list_all:
            for line in timeline_text.workspace_lines(timeline_text.list_workspaces(inputs)):
                typer.echo(line)
            raise typer.Exit(ExitCode.OK)
        tl = timeline_text.workspace_timeline(inputs, workspace, log_offsets=offsets)
    events = timeline_text.since_until(tl.events, start, end)
    shown = events[:limit] if limit else events
    if as_json:
        for line in timeline_text.json_lines(shown):
            typer.echo(line)
    else:
        paint = timeline_text.color_wanted(color, sys.stdout.isatty(), os.environ)
        mark = "⚑" if timeline_text.encodable("⚑", sys.stdout.encoding) else "!"
        lines = timeline_text.header_lines(tl, paint, mark) + [""]
        lines += timeline_text.event_lines(shown, paint, flag_mark=mark) if shown else []
        for line in lines:
            typer.echo(line, color=paint)
    if not shown:
        typer.echo("note: no events in the chosen time window", err=True)
    elif len(shown) < len(events):
        typer.echo(f"note: showed the first {len(shown)} of {len(events)} events", err=True)
    for broken in tl.broken_rules:
        typer.echo(f"note: rule {broken} (its findings are not marked)", err=True)
    raise typer.Exit(ExitCode.INTERNAL if tl.broken_rules else ExitCode.OK)


def verdict_lines(result) -> list[str]:
    """One line per finding (rule, workspace, build, agent), after a one-line verdict."""
    failing = result.failing()
    if not result.findings:
        head = "OK: no findings"
    else:
        head = (
            f"{'FAIL' if failing else 'OK'}: {len(result.findings)} finding(s), "
            f"{len(failing)} at or above {result.fail_on}"
        )
    lines = [head]
    for f in result.findings:
        lines.append(
            f"{f.severity:<8} {f.rule:<30} workspace={f.workspace_name} "
            f"build=#{f.build_number} agent={f.agent_id}"
        )
    return lines


def _parse_time(text: str) -> datetime:
    try:
        when = dateparser.isoparse(text)
    except ValueError:
        raise UsageError(f"--generated-at: not an ISO 8601 time: {text!r}") from None
    if when.tzinfo is None:
        raise UsageError("--generated-at needs a UTC offset, e.g. 2026-05-20T00:00:00Z")
    return when


def parse_log_offsets(values: list[str] | None) -> dict[str, float]:
    """--log-offset HOST=SECONDS values, checked."""
    offsets: dict[str, float] = {}
    for value in values or []:
        host, sep, seconds = value.rpartition("=")
        try:
            offsets[host.strip()] = float(seconds)
        except ValueError:
            host = ""
        if not sep or not host.strip():
            raise UsageError(
                f"--log-offset: expected HOST=SECONDS (e.g. ml-train-vm=-42.5), not {value!r}"
            )
    return offsets


def _ids(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


@contextmanager
def _reported(debug: bool, clean: Callable[[str], str] = str) -> Iterator[None]:
    """Turn our errors into one `Error:` line and their exit code, and anything else (a bug)
    into an internal-error line that says how to see the traceback. `clean` scrubs the text
    (collect removes the password from a DSN)."""
    try:
        yield
    except typer.Exit:
        raise
    except ForensicsError as exc:
        if debug:
            traceback.print_exc()
        typer.echo(f"Error: {clean(str(exc))}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except Exception as exc:
        if debug:
            traceback.print_exc()
        detail = clean(f"{type(exc).__name__}: {exc}")
        typer.echo(f"Error: internal error: {detail} (rerun with --debug)", err=True)
        raise typer.Exit(ExitCode.INTERNAL) from None


def _guard(fn: Callable[[], int]) -> None:
    """Run `fn`, turning our errors into one `Error:` line and an exit code."""
    try:
        code = fn()
    except ForensicsError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    raise typer.Exit(code)


@rules_app.command("list")
def rules_list(rules_dir: RulesDirs = None) -> None:
    """List the rules: id, severity, title."""

    def run() -> int:
        for rule in load_rules(rules_dir):
            typer.echo(f"{rule.id:<34} {rule.severity:<9} {rule.title}")
        return ExitCode.OK

    _guard(run)


@rules_app.command("show")
def rules_show(
    rule_id: Annotated[str, typer.Argument(metavar="ID", help="The rule to show.")],
    rules_dir: RulesDirs = None,
) -> None:
    """Show a rule: what it concludes, why it matters, its parameters and its SQL."""

    def run() -> int:
        [rule] = choose(load_rules(rules_dir), select=[rule_id])
        typer.echo(f"{rule.id}: {rule.title}")
        typer.echo(f"severity: {rule.severity}")
        typer.echo(f"file: {rule.path}")
        requires = [f"{t}({', '.join(c)})" for t, c in rule.requires]
        requires += ["agent logs"] if rule.needs_logs else []
        typer.echo(f"requires: {'; '.join(requires) or 'nothing'}")
        params = ", ".join(f"{k}={v}" for k, v in rule.params.items())
        typer.echo(f"params: {params or 'none'}")
        for label, text in (
            ("description", rule.description),
            ("explain", rule.explain),
            ("remedy", rule.remedy),
        ):
            if text:
                typer.echo(
                    f"\n{label}:\n"
                    + textwrap.fill(text, 92, initial_indent="  ", subsequent_indent="  ")
                )
        if rule.links:
            typer.echo("\nlinks:\n" + "\n".join(f"  {u}" for u in rule.links))
        typer.echo("\nsql:\n" + rule.sql.rstrip())
        return ExitCode.OK

    _guard(run)


@rules_app.command("test")
def rules_test(
    rule_ids: Annotated[
        list[str] | None, typer.Argument(metavar="[ID]...", help="Rules to test (default: all).")
    ] = None,
    rules_dir: RulesDirs = None,
) -> None:
    """Run the rules' cases; exit 1 if any case fails or a rule has none."""

    def run() -> int:
        chosen = choose(load_rules(rules_dir), select=_ids(rule_ids) or None)
        results = run_cases(chosen)
        for r in results:
            status = "PASS" if r.passed else "FAIL"
            typer.echo(f"{status}  {r.rule}: {r.case}")
            if not r.passed:
                detail = (
                    r.message or f"expected {r.expected or 'no findings'}, got {r.got or 'none'}"
                )
                typer.echo(f"      {detail}")
        failed = sum(not r.passed for r in results)
        typer.echo(f"{len(results) - failed} passed, {failed} failed")
        return ExitCode.FINDINGS if failed else ExitCode.OK

    _guard(run)


def main() -> None:
    """Entry point of the `forensics` console script."""
    app()
