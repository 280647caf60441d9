"""The `forensics` command line: a thin shell over `forensics.engine` and `forensics.report`."""

from __future__ import annotations

import secrets
import sys
import textwrap
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from dateutil import parser as dateparser

from forensics import __version__
from forensics import collect as collecting
from forensics.anonymize import Pseudonymizer
from forensics.engine import analyze
from forensics.errors import ExitCode, ForensicsError, UsageError
from forensics.report import write_outputs
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
        typer.Argument(help="Directories or files: table exports, agent logs.", show_default=False),
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
    debug: Annotated[bool, typer.Option(help="Show a traceback on errors.")] = False,
) -> None:
    """Analyse exported tables and agent logs; write the report and print the verdict."""
    try:
        when = _parse_time(generated_at) if generated_at else None
        chosen = choose(load_rules(rules_dir), _ids(select), _ids(ignore), param)
        wants_pseudonyms = anonymize or anonymize_key is not None
        result = analyze(
            paths, fail_on=fail_on, generated_at=when, rules=chosen, identify=wants_pseudonyms
        )
        pseudonyms = None
        if wants_pseudonyms:
            key = anonymize_key.encode() if anonymize_key is not None else secrets.token_bytes(32)
            pseudonyms = Pseudonymizer(result.identifiers, key)
        argv = sys.argv if pseudonyms is None else [*sys.argv[:2], "…"]  # paths may name hosts
        write_outputs(result, out, argv=argv, pseudonyms=pseudonyms)
    except ForensicsError as exc:
        if debug:
            traceback.print_exc()
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except Exception as exc:  # a bug: say so, and how to get details
        if debug:
            traceback.print_exc()
        typer.echo(
            f"Error: internal error: {type(exc).__name__}: {exc} (rerun with --debug)", err=True
        )
        raise typer.Exit(ExitCode.INTERNAL) from None
    for line in verdict_lines(result):
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
    if result.incomplete():
        raise typer.Exit(ExitCode.INTERNAL)
    raise typer.Exit(ExitCode.FINDINGS if result.failing() else ExitCode.OK)


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

    try:
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
    except ForensicsError as exc:
        if debug:
            traceback.print_exc()
        typer.echo(f"Error: {collecting.redact(str(exc), dsn)}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except typer.Exit:
        raise
    except Exception as exc:  # a bug: say so, and how to get details
        if debug:
            traceback.print_exc()
        message = collecting.redact(f"{type(exc).__name__}: {exc}", dsn)
        typer.echo(f"Error: internal error: {message} (rerun with --debug)", err=True)
        raise typer.Exit(ExitCode.INTERNAL) from None
    exported = [t for t in result.tables if t.status == "exported"]
    snapshot = result.manifest["exported_at"]
    typer.echo(
        f"wrote {out}: {len(exported)} tables, {result.rows:,} rows, one snapshot as of "
        f"{snapshot}; {out / 'manifest.json'} says what was exported and what was not",
        err=True,
    )
    typer.echo(f"next: forensics analyze {out} <agent log directories>", err=True)
    raise typer.Exit(ExitCode.OK)


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


def _ids(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


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
