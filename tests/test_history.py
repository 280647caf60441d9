"""Nightly mode (`analyze --history`): what is new, still open, resolved or regressed across a
series of exports; agent rows between exports; re-runs, retention, the index page; the
history format and its migrations; and the guarantees under SIGKILL and concurrent runs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from forensics.cli import app
from forensics.engine import Analysis
from forensics.errors import ExitCode
from forensics.history import FORMAT_VERSION, PAUSE_ENV, History, Outcome, trend_svg
from forensics.synth import ScenarioBuilder, write_dump
from tests.cases import T0, H, S, _ready
from tests.test_report import parse_html

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data" / "incident"
V1_SQL = Path(__file__).parent / "fixtures" / "history" / "v1.sql"
STUCK, INCOHERENT = "lifecycle-stuck-created", "lifecycle-timestamps-incoherent"
# Database-only rules: fast, and they need no agent logs.
RULES = ("--select", f"{STUCK},{INCOHERENT}")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def night(day: int) -> str:
    """--generated-at of the run on night `day` (one run a night, at 02:00 UTC)."""
    return (datetime(2026, 5, 20, 2, tzinfo=UTC) + timedelta(days=day - 1)).isoformat()


def nightly_export(root: Path, day: int, stuck: bool = True, clock_skew: bool = False) -> Path:
    """The deployment as exported on night `day`.

    vm1: builds #1 start, #2 stop, #3 start; build #3's row is connected and either stuck in
    'created' (the incident) or, once the agent was restarted, 'ready'. boot: its latest build
    is a start whose agent row no agent ever connected to (stays 'created', no rule flags
    it). clock (optional): a row whose ready_at precedes started_at (a medium finding).
    Every night's export differs (the rows' last contact moves on), as real exports do.
    """
    b = ScenarioBuilder(seed=61, start=T0 - timedelta(days=30))
    owner = b.user("ops")
    tpl = b.template("gce-vm", kind="vm")
    vm = b.workspace("vm1", owner, tpl)
    b1 = b.build(vm, "start", at=T0)
    _ready(b, b1, T0 + 60 * S, disconnected_at=T0 + 5 * H)
    b.build(vm, "stop", at=T0 + 5 * H)
    b3 = b.build(vm, "start", at=T0 + 24 * H)
    attach = T0 + 24 * H + 70 * S
    seen = attach + day * H
    if stuck:
        b.agent(b3, first_connected_at=attach, last_connected_at=seen)
    else:
        b.agent(
            b3,
            lifecycle_state="ready",
            first_connected_at=attach,
            started_at=attach + S,
            ready_at=attach + 40 * S,
            last_connected_at=seen,
        )
    boot = b.workspace("boot", owner, tpl)
    b.agent(b.build(boot, "start", at=T0 + 2 * H))
    if clock_skew:
        ws = b.workspace("clock", owner, tpl)
        up = T0 + 3 * H
        b.agent(
            b.build(ws, "start", at=up - 60 * S),
            lifecycle_state="ready",
            first_connected_at=up,
            started_at=up + 60 * S,
            ready_at=up + 30 * S,
            last_connected_at=seen,
        )
    dump = root / f"export-{day}{'-fixed' if not stuck else ''}{'-skew' if clock_skew else ''}"
    write_dump(b.build_scenario(), dump)
    return dump


def run_night(tmp: Path, dump: Path, day: int, *extra, expect: int | None = None):
    """One nightly run: report into reports/<day>/, history in tmp/history.duckdb."""
    out = tmp / "reports" / f"2026-05-{19 + day:02d}"
    r = invoke(
        "analyze",
        dump,
        "--history",
        tmp / "history.duckdb",
        "--out",
        out,
        "--generated-at",
        night(day),
        *RULES,
        *extra,
    )
    if expect is not None:
        assert r.exit_code == expect, r.stdout + r.stderr
    doc = (
        json.loads((out / "findings.json").read_text()) if (out / "findings.json").exists() else {}
    )
    return r, out, doc


def runs_in(history: Path) -> list[tuple]:
    con = duckdb.connect(str(history), read_only=True)
    try:
        return con.execute("SELECT run_id, input_key FROM runs ORDER BY run_id").fetchall()
    finally:
        con.close()


def keyed(items: list[dict]) -> set[tuple[str, str, int]]:
    return {(f["rule"], f["workspace_name"], f["build_number"]) for f in items}


# --------------------------------------------------------------------------------------
# A week of nights


@pytest.fixture(scope="module")
def week(tmp_path_factory):
    """Nights 1-4 with --fail-on-new: the incident appears, the same export is analysed
    again, the incident is fixed, then it comes back."""
    tmp = tmp_path_factory.mktemp("week")
    n1 = nightly_export(tmp, 1)
    nights = {
        "1": run_night(tmp, n1, 1, "--fail-on-new"),
        "1 again": run_night(tmp, n1, 2, "--fail-on-new"),
        "3 fixed": run_night(tmp, nightly_export(tmp, 3, stuck=False), 3, "--fail-on-new"),
        "4 back": run_night(tmp, nightly_export(tmp, 4), 4, "--fail-on-new"),
    }
    return tmp, nights


def test_first_night_everything_is_new_and_fail_on_new_fails(week):
    tmp, nights = week
    r, out, doc = nights["1"]
    assert r.exit_code == ExitCode.FINDINGS, r.stdout + r.stderr
    h = doc["history"]
    assert (h["run"], h["recorded"], h["previous_run"]) == (1, True, None)
    assert keyed(h["new"]) == {(STUCK, "vm1", 3)}
    assert h["counts"] == {"new": 1, "regressed": 0, "open": 0, "resolved": 0, "unchecked": 0}
    assert h["new_failing"] == 1 and doc["verdict"]["exit_code"] == 1
    assert r.stdout.splitlines()[0] == (
        "FAIL: 1 new or regressed finding(s) at or above high (1 finding(s), 1 at or above high)"
    )
    assert f"history: recorded run #1 in {tmp / 'history.duckdb'}, the first: 1 new" in r.stderr
    assert h["lifecycle"] is None  # nothing to compare agent rows with yet


def test_the_same_export_again_adds_no_run_and_says_it_is_a_rerun(week):
    tmp, nights = week
    r, out, doc = nights["1 again"]
    assert r.exit_code == ExitCode.OK, r.stdout + r.stderr  # nothing new: no second alert
    h = doc["history"]
    assert (h["run"], h["recorded"], h["rerun_of"]) == (1, False, 1)
    assert r.stdout.splitlines()[0].startswith("OK: re-run of run #1, nothing new")
    assert "these input files are already run #1" in r.stderr
    assert [r[0] for r in runs_in(tmp / "history.duckdb")] == [1, 2, 3]  # nights 1, 3, 4
    html = (out / "report.html").read_text()
    assert "Re-run of run #1." in html
    assert "re-run of run #1" in (out / "summary.md").read_text()


def test_fixed_night_resolves_and_shows_the_row_that_moved(week):
    _, nights = week
    r, out, doc = nights["3 fixed"]
    assert r.exit_code == ExitCode.OK, r.stdout + r.stderr
    h = doc["history"]
    assert (h["run"], h["previous_run"]["run"]) == (2, 1)
    assert keyed(h["resolved"]) == {(STUCK, "vm1", 3)}
    assert h["counts"] == {"new": 0, "regressed": 0, "open": 0, "resolved": 1, "unchecked": 0}
    lc = h["lifecycle"]
    assert [
        (a["workspace_name"], a["build_number"], a["before"], a["after"]) for a in lc["changed"]
    ] == [("vm1", 3, "created", "ready")]
    # The boot workspace's row: latest start build, 'created' in both exports (a day apart).
    assert [(a["workspace_name"], a["connected"]) for a in lc["still_created"]] == [("boot", False)]
    assert (lc["changed_count"], lc["still_created_count"], lc["appeared"], lc["gone"]) == (
        1,
        1,
        0,
        0,
    )
    assert lc["hours_between"] == 2.0  # the exports' as_of moved on by 2 h (see nightly_export)


def test_incident_back_is_regressed_and_fail_on_new_fails_again(week):
    tmp, nights = week
    r, out, doc = nights["4 back"]
    assert r.exit_code == ExitCode.FINDINGS, r.stdout + r.stderr
    h = doc["history"]
    assert (h["run"], h["previous_run"]["run"]) == (3, 2)
    assert keyed(h["regressed"]) == {(STUCK, "vm1", 3)} and h["new"] == []
    assert h["regressed"][0]["first_seen_run"] == 1
    assert [(a["before"], a["after"]) for a in h["lifecycle"]["changed"]] == [("ready", "created")]
    assert h["trend"]["runs"] == [
        {"run": 1, "run_at": "2026-05-20T02:00:00Z"},
        {"run": 2, "run_at": "2026-05-22T02:00:00Z"},
        {"run": 3, "run_at": "2026-05-23T02:00:00Z"},
    ]
    assert h["trend"]["rules"] == [{"rule": STUCK, "counts": [1, 0, 1]}]
    # findings.json keeps its other keys as they were.
    assert list(doc)[:9] == [
        "schema_version",
        "tool",
        "generated_at",
        "command",
        "export_as_of",
        "verdict",
        "inputs",
        "coverage",
        "findings",
    ]


def test_report_shows_since_last_run_with_trend_chart_and_lifecycle(week):
    _, nights = week
    _, out, doc = nights["4 back"]
    html = (out / "report.html").read_text()
    root = parse_html(html)
    [section] = [n for n in root.find_all("section") if n.attrs.get("id") == "since-last-run"]
    text = " ".join(section.text().split())
    assert "compared with run #2" in text
    assert "0 new · 1 regressed · 0 still open · 0 resolved" in text
    assert "regressed (seen in run #1, then resolved)" in text
    assert "ready created" in text  # the vm1 row went back from ready to created
    [svg] = section.find_all("svg")
    labels = " ".join(t.text() for t in svg.find_all("text"))
    assert f"{STUCK}: 1 now, max 1" in labels  # every rule's numbers as text
    tips = [t.text() for t in svg.find_all("title")]
    assert f"{STUCK}: run #2 (2026-05-22), 0 finding(s)" in tips
    # Verdict, then the history section, then the findings.
    assert (
        html.index('id="verdict"') < html.index('id="since-last-run"') < html.index('id="findings"')
    )
    links = [a.attrs["href"] for a in section.find_all("a")]
    assert "../index.html" in links
    assert f"#f-{doc['findings'][0]['fingerprint']}" in links
    md = (out / "summary.md").read_text()
    assert "**Since last run** (run #3 against run #2" in md
    assert f"| **regressed** | critical | `{STUCK}` | vm1 | #3 |" in md
    assert re.search(rf"{STUCK}\s+1 0 1\n", md)


def test_index_links_every_run_report(week):
    tmp, nights = week
    index = tmp / "reports" / "index.html"
    root = parse_html(index.read_text())
    rows = [tr for tr in root.find_all("tr") if tr.find_all("td")]
    assert [tr.find_all("td")[0].text().strip() for tr in rows] == ["#3", "#2", "#1"]
    hrefs = [a.attrs["href"] for a in root.find_all("a")]
    # Run 1's report was last written by the re-run on night 2.
    assert hrefs == ["2026-05-23/report.html", "2026-05-22/report.html", "2026-05-21/report.html"]
    for href in hrefs:
        assert (tmp / "reports" / href).is_file()


# --------------------------------------------------------------------------------------
# Options


def test_fail_on_new_ignores_new_findings_below_fail_on(tmp_path):
    run_night(tmp_path, nightly_export(tmp_path, 1), 1, expect=ExitCode.FINDINGS)
    skewed = nightly_export(tmp_path, 2, clock_skew=True)
    r, _, doc = run_night(tmp_path, skewed, 2, "--fail-on-new", expect=ExitCode.OK)
    h = doc["history"]
    assert keyed(h["new"]) == {(INCOHERENT, "clock", 1)}  # new, but medium
    assert keyed(h["open"]) == {(STUCK, "vm1", 3)}  # critical, but not new
    assert h["open"][0]["age_runs"] == 2 and h["open"][0]["age_days"] == 1.0
    assert h["open"][0]["first_seen_run"] == 1
    assert r.stdout.splitlines()[0] == (
        "OK: nothing new at or above high since run #1 (2 finding(s), 1 at or above high)"
    )
    assert doc["verdict"]["exit_code"] == 0
    # The same outcome at --fail-on medium is an alert; a re-run never is.
    outcome = Outcome(run=2, recorded=True, previous=1, document=h)
    assert (outcome.new_failing("high"), outcome.new_failing("medium")) == (0, 1)
    assert Outcome(run=2, recorded=False, previous=1, document=h).new_failing("medium") == 0


def test_force_records_the_same_export_again(tmp_path):
    dump = nightly_export(tmp_path, 1)
    run_night(tmp_path, dump, 1)
    r, _, doc = run_night(tmp_path, dump, 2, "--force", "--fail-on-new", expect=ExitCode.OK)
    h = doc["history"]
    assert (h["run"], h["recorded"], h["forced"]) == (2, True, True)
    assert keyed(h["open"]) == {(STUCK, "vm1", 3)} and h["new"] == []
    assert h["lifecycle"]["changed_count"] == 0 and h["lifecycle"]["still_created_count"] == 2
    assert len(runs_in(tmp_path / "history.duckdb")) == 2


def test_keep_runs_and_keep_days_prune_old_runs_and_say_so(tmp_path):
    history = tmp_path / "history.duckdb"
    for day in (1, 2, 3):
        run_night(tmp_path, nightly_export(tmp_path, day, stuck=day != 2), day)
    r, _, doc = run_night(tmp_path, nightly_export(tmp_path, 4), 4, "--keep-runs", "2")
    assert "history: pruned 2 old run(s) (#1, #2) by --keep-runs 2" in r.stderr
    assert doc["history"]["pruned"] == {"runs": [1, 2], "keep_runs": 2, "keep_days": None}
    assert [r[0] for r in runs_in(history)] == [3, 4]
    assert doc["history"]["trend"]["rules"] == [{"rule": STUCK, "counts": [1, 1]}]
    # Comparisons after pruning still see the agent rows as they were in the runs kept: night 5
    # heals vm1's row, and the change is against run #4's export.
    r, _, doc = run_night(tmp_path, nightly_export(tmp_path, 5, stuck=False), 5, "--keep-days", "1")
    h = doc["history"]
    assert [(a["before"], a["after"]) for a in h["lifecycle"]["changed"]] == [("created", "ready")]
    assert keyed(h["resolved"]) == {(STUCK, "vm1", 3)}
    assert h["pruned"]["runs"] == [3]  # recorded 2 days before this run
    assert "by --keep-days 1" in r.stderr
    assert [r[0] for r in runs_in(history)] == [4, 5]
    con = duckdb.connect(str(history), read_only=True)
    try:  # folded, not lost: one state per agent row from before the cut, then changes
        per_agent = con.execute(
            "SELECT count(*) FROM agent_states WHERE run_id <= 4 GROUP BY agent_id"
        ).fetchall()
        assert per_agent and all(n == 1 for (n,) in per_agent)
    finally:
        con.close()


def test_a_rule_that_did_not_run_neither_resolves_nor_regresses(tmp_path):
    """Night 2's export has no agent logs, so survived-build-boundary is skipped: its finding is
    "not checked", not resolved, and when the logs are back on night 3 it is still open, not a
    regression that --fail-on-new would alert on."""
    import shutil

    with_logs = tmp_path / "n1"
    shutil.copytree(SAMPLE, with_logs)
    db_only = tmp_path / "n2"
    shutil.copytree(SAMPLE / "db", db_only / "db")
    again = tmp_path / "n3"
    shutil.copytree(SAMPLE, again)
    (again / "EXPORTED_WITH.txt").write_text("exported again on night 3\n")
    rules = ("--select", f"survived-build-boundary,{STUCK}")
    history = tmp_path / "history.duckdb"
    docs = []
    for day, dump in ((1, with_logs), (2, db_only), (3, again)):
        out = tmp_path / "reports" / str(day)
        r = invoke(
            "analyze",
            dump,
            "--history",
            history,
            "--out",
            out,
            "--generated-at",
            night(day),
            *rules,
            "--fail-on-new",
        )
        docs.append(json.loads((out / "findings.json").read_text())["history"])
        assert r.exit_code == (ExitCode.FINDINGS if day == 1 else ExitCode.OK), r.stdout + r.stderr
    survived = ("survived-build-boundary", "ml-train", 3)
    assert keyed(docs[1]["unchecked"]) == {survived} and docs[1]["resolved"] == []
    assert docs[1]["counts"]["unchecked"] == 1
    assert keyed(docs[2]["open"]) == {survived, (STUCK, "ml-train", 3)}
    assert docs[2]["regressed"] == [] and docs[2]["new"] == []
    trend = {t["rule"]: t["counts"] for t in docs[2]["trend"]["rules"]}
    assert trend == {"survived-build-boundary": [1, None, 1], STUCK: [1, 1, 1]}
    html = (tmp_path / "reports" / "2" / "report.html").read_text()
    assert "1 not checked" in html and "Not checked this run" in html
    md = (tmp_path / "reports" / "3" / "summary.md").read_text()
    assert re.search(r"survived-build-boundary\s+1 - 1\n", md)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fail-on-new"], "--fail-on-new need(s) --history FILE"),
        (["--keep-runs", "3", "--force"], "--force, --keep-runs need(s) --history FILE"),
        (["--history", "h.duckdb", "--keep-days", "0"], "--keep-days must be at least 1, not 0"),
    ],
)
def test_history_options_are_checked(tmp_path, args, message):
    r = invoke("analyze", SAMPLE, "--out", tmp_path / "out", *args)
    assert r.exit_code == ExitCode.BAD_INPUT
    assert r.stderr.startswith(f"Error: {message}")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------
# The history file: not a history, newer, older


def _error_for(tmp_path: Path, history: Path) -> str:
    r = invoke("analyze", SAMPLE, "--history", history, "--out", tmp_path / "out", *RULES)
    assert r.exit_code == ExitCode.BAD_INPUT, r.stdout + r.stderr
    assert not (tmp_path / "out").exists()
    [line] = r.stderr.splitlines()
    return line


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    bogus = tmp_path / "notes.duckdb"
    bogus.write_text("these are my notes, not a database\n" * 200)
    line = _error_for(tmp_path, bogus)
    assert line == f"Error: --history {bogus}: not a forensics history (not a DuckDB database file)"
    assert bogus.read_text().startswith("these are my notes")  # untouched


def test_a_duckdb_database_of_something_else_is_refused(tmp_path):
    other = tmp_path / "analytics.duckdb"
    con = duckdb.connect(str(other))
    con.execute("CREATE TABLE sales (id INTEGER); INSERT INTO sales VALUES (1)")
    con.close()
    line = _error_for(tmp_path, other)
    assert line.startswith(
        f"Error: --history {other}: a DuckDB database but not a forensics history "
        "(it has no forensics_meta table; its tables: sales)"
    )
    con = duckdb.connect(str(other), read_only=True)
    assert con.execute("SELECT * FROM sales").fetchall() == [(1,)]
    assert con.execute("SELECT count(*) FROM information_schema.tables").fetchone() == (1,)
    con.close()


def test_a_history_from_a_newer_forensics_is_refused(tmp_path):
    history = tmp_path / "history.duckdb"
    run_night(tmp_path, nightly_export(tmp_path, 1), 1)
    con = duckdb.connect(str(history))
    con.execute(
        "UPDATE forensics_meta SET value = CASE key WHEN 'format_version' THEN '7' "
        "WHEN 'written_by' THEN 'forensics 9.0.0' ELSE value END"
    )
    con.close()
    line = _error_for(tmp_path, history)
    assert line == (
        f"Error: --history {history}: written by a newer forensics (forensics 9.0.0, history "
        f"format 7); forensics 0.1.0 reads formats up to {FORMAT_VERSION}. Upgrade forensics "
        "to use this history."
    )


def test_history_in_a_missing_directory_is_refused(tmp_path):
    line = _error_for(tmp_path, tmp_path / "nope" / "history.duckdb")
    assert line == (
        f"Error: --history {tmp_path / 'nope' / 'history.duckdb'}: directory "
        f"{tmp_path / 'nope'} does not exist"
    )


def test_a_format_1_history_is_migrated_and_its_runs_still_count(tmp_path):
    history = tmp_path / "history.duckdb"
    con = duckdb.connect(str(history))
    con.execute(V1_SQL.read_text())
    con.close()
    out = tmp_path / "reports" / "2026-05-15"
    r = invoke(
        "analyze",
        SAMPLE,
        "--history",
        history,
        "--out",
        out,
        "--select",
        f"{STUCK},lifecycle-stuck-starting",
        "--generated-at",
        "2026-05-15T02:00:00Z",
    )
    assert r.exit_code == ExitCode.FINDINGS, r.stdout + r.stderr
    assert f"history: upgraded {history} from history format 1 to 2" in r.stderr
    h = json.loads((out / "findings.json").read_text())["history"]
    assert (h["run"], h["previous_run"]["run"]) == (3, 2)
    # The finding the old runs recorded is still open, aged from the first old run.
    [still] = h["open"]
    assert (still["rule"], still["first_seen_run"], still["age_runs"], still["age_days"]) == (
        STUCK,
        1,
        3,
        2.0,
    )
    assert keyed(h["resolved"]) == {("lifecycle-stuck-starting", "data-pipe", 2)}
    lc = h["lifecycle"]
    assert [(a["workspace_name"], a["before"], a["after"]) for a in lc["changed"]] == [
        ("data-pipe", "starting", "ready")
    ]
    assert {a["workspace_name"] for a in lc["still_created"]} == {"broken-boot", "ml-train"}
    assert h["trend"]["rules"] == [
        {"rule": STUCK, "counts": [1, 1, 1]},
        {"rule": "lifecycle-stuck-starting", "counts": [1, 1, 0]},
    ]
    con = duckdb.connect(str(history), read_only=True)
    try:
        meta = dict(con.execute("SELECT key, value FROM forensics_meta").fetchall())
        assert meta["format_version"] == str(FORMAT_VERSION)
        tables = {
            t for (t,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
        assert tables == {
            "forensics_meta",
            "runs",
            "run_inputs",
            "run_rules",
            "findings",
            "agent_states",
        }
        # The old per-run copies became changes: 5 rows in run 1, one gone in run 2.
        assert con.execute(
            "SELECT run_id, count(*), count(*) FILTER (NOT present) FROM agent_states "
            "WHERE run_id <= 2 GROUP BY run_id ORDER BY run_id"
        ).fetchall() == [(1, 5, 0), (2, 1, 1)]
        assert con.execute("SELECT run_id, findings FROM runs ORDER BY run_id").fetchall() == [
            (1, 2),
            (2, 2),
            (3, 1),
        ]
    finally:
        con.close()


def test_a_failed_migration_leaves_the_old_history_as_it_was(tmp_path, monkeypatch):
    history = tmp_path / "history.duckdb"
    con = duckdb.connect(str(history))
    con.execute(V1_SQL.read_text())
    con.close()
    import forensics.history as hist

    monkeypatch.setitem(hist.MIGRATIONS, 1, hist.MIGRATIONS[1] + "SELECT * FROM no_such_table;")
    with pytest.raises(duckdb.Error):
        History.open(history, wait=0).close()
    con = duckdb.connect(str(history), read_only=True)
    try:
        assert con.execute(
            "SELECT value FROM forensics_meta WHERE key = 'format_version'"
        ).fetchone() == ("1",)
        assert con.execute("SELECT count(*) FROM run_agents").fetchone() == (9,)
    finally:
        con.close()


# --------------------------------------------------------------------------------------
# The report directory


def test_out_dir_with_other_files_is_refused_and_kept(tmp_path):
    out = tmp_path / "home"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    r = invoke("analyze", SAMPLE, "--out", out, *RULES)
    assert r.exit_code == ExitCode.BAD_INPUT
    assert r.stderr.startswith(
        f"Error: --out {out}: holds thesis.tex, which is not part of a report"
    )
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]


def test_an_earlier_report_is_replaced_whole_without_leftovers(tmp_path):
    out = tmp_path / "reports" / "latest"
    invoke("analyze", SAMPLE, "--out", out, *RULES, "--generated-at", night(1))
    first = (out / "findings.json").read_text()
    r = invoke("analyze", SAMPLE, "--out", out, *RULES, "--generated-at", night(2))
    assert r.exit_code == ExitCode.FINDINGS
    assert (out / "findings.json").read_text() != first
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["latest"]
    assert sorted(p.name for p in out.iterdir()) == ["findings.json", "report.html", "summary.md"]


# --------------------------------------------------------------------------------------
# Scale: agent rows are stored as changes, set-based


def _analysis(when: datetime) -> Analysis:
    return Analysis(
        inputs=[],
        tables=[],
        logs=[],
        rules=[],
        findings=[],
        generated_at=when,
        as_of=when,
        fail_on="high",
    )


def test_unchanged_agent_rows_are_not_stored_again(tmp_path):
    """200,000 agent rows a night: the second night stores only the rows that changed."""
    source = duckdb.connect()
    source.execute(
        """CREATE TABLE agent_builds AS
           SELECT uuid() AS agent_id, 'main' AS agent_name, uuid() AS workspace_id,
                  'ws' || i AS workspace_name, 1 AS build_number, 'start' AS transition,
                  'ready' AS lifecycle_state, TIMESTAMPTZ '2026-05-01 00:00:00+00' AS first_connected_at,
                  true AS is_latest_build
           FROM range(200000) t(i)"""
    )
    history_file = tmp_path / "big.duckdb"
    started = time.monotonic()
    for day in (1, 2):
        if day == 2:
            source.execute(
                "UPDATE agent_builds SET lifecycle_state = 'off' WHERE workspace_name LIKE 'ws1%'"
            )
            source.execute("DELETE FROM agent_builds WHERE workspace_name = 'ws7'")
        hist = History.open(history_file, wait=0)
        try:
            hist.capture(source)
            result = _analysis(datetime(2026, 5, 19 + day, tzinfo=UTC))
            outcome = hist.record(result, tmp_path / "out", force=True)  # no inputs: same key
            hist.commit()
        finally:
            hist.close()
    elapsed = time.monotonic() - started
    changed = 1 + 10 + 100 + 1000 + 10000 + 100000  # ws1, ws1x, ws1xx, ... below 200,000
    lc = outcome.document["lifecycle"]
    assert (lc["changed_count"], lc["gone"], lc["appeared"]) == (changed, 1, 0)
    assert len(lc["changed"]) == 500  # listed rows are capped, counts are not
    con = duckdb.connect(str(history_file), read_only=True)
    try:
        assert con.execute(
            "SELECT run_id, count(*) FROM agent_states GROUP BY 1 ORDER BY 1"
        ).fetchall() == [
            (1, 200000),
            (2, changed + 1),
        ]
    finally:
        con.close()
    assert elapsed < 20, f"two nights of 200,000 agent rows took {elapsed:.1f} s"


def test_trend_chart_labels_every_rule_and_marks_this_run():
    trend = {
        "runs": [{"run": n, "run_at": f"2026-05-{19 + n}T02:00:00Z"} for n in (1, 2, 3)],
        "rules": [
            {"rule": "a-rule", "counts": [0, 2, 4]},
            {"rule": "<b>evil</b>", "counts": [1, 0, 0]},
        ],
    }
    svg = str(trend_svg(trend, current=3))
    assert "a-rule: 4 now, max 4" in svg
    assert "&lt;b&gt;evil&lt;/b&gt;: 0 now, max 1" in svg and "<b>" not in svg
    assert svg.count('fill="#D55E00"') == 2 + 1  # this run's bar in each row, and the legend
    assert "run #1 2026-05-20" in svg and "run #3 2026-05-22" in svg
    assert trend_svg({"runs": trend["runs"], "rules": []}, current=3) is None


# --------------------------------------------------------------------------------------
# Real processes: SIGKILL at named points, and two runs on one history


def _spawn(tmp: Path, dump: Path, out: Path, when: str, *extra: str, pause: str | None = None):
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.pop(PAUSE_ENV, None)
    if pause:
        env[PAUSE_ENV] = pause
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "forensics",
            "analyze",
            str(dump),
            "--history",
            str(tmp / "history.duckdb"),
            "--out",
            str(out),
            "--generated-at",
            when,
            *RULES,
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )


def _wait_for_pause(proc: subprocess.Popen, point: str, timeout: float = 30) -> None:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if line == f"paused at {point}\n":
            return
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"the run never paused at {point} (exit {proc.poll()})")


def _history_runs(history: Path) -> list[tuple[int, int, int]]:
    """(run, findings recorded for it, its findings count) for every run; opening it at all
    proves the file is usable."""
    con = duckdb.connect(str(history))
    try:
        return con.execute(
            """SELECT r.run_id, (SELECT count(*) FROM findings f WHERE f.run_id = r.run_id),
                      r.findings
               FROM runs r ORDER BY r.run_id"""
        ).fetchall()
    finally:
        con.close()


POINTS = ["history-locked", "history-insert", "history-commit", "report-publish", "index"]


def test_sigkill_at_any_point_leaves_the_history_and_report_whole(tmp_path):
    """Night 1 is recorded; night 2 is killed at each named point in turn (in parallel, each
    on its own copy). The history then holds night 1 only, or nights 1 and 2 completely, and
    the report directory is night 1's or night 2's, never a mix."""
    base = tmp_path / "base"
    base.mkdir()
    first = nightly_export(base, 1)
    second = nightly_export(base, 2, stuck=False)
    run_night(base, first, 1, expect=ExitCode.FINDINGS)
    seeded = base / "history.duckdb"
    procs = {}
    for point in POINTS:
        work = tmp_path / point
        (work / "reports").mkdir(parents=True)
        (work / "history.duckdb").write_bytes(seeded.read_bytes())
        # The report goes where night 1's report already is: it must be replaced whole.
        out = work / "reports" / "latest"
        out.mkdir()
        for f in (base / "reports" / "2026-05-20").iterdir():
            (out / f.name).write_bytes(f.read_bytes())
        procs[point] = (work, out, _spawn(work, second, out, night(2), pause=f"{point}:60"))
    for point, (work, out, proc) in procs.items():
        _wait_for_pause(proc, point)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        runs = _history_runs(work / "history.duckdb")
        committed = point in ("report-publish", "index")
        if committed:
            assert runs == [(1, 1, 1), (2, 0, 0)], point
        else:
            assert runs == [(1, 1, 1)], point
        docs = json.loads((out / "findings.json").read_text())
        stamp = docs["generated_at"]
        assert stamp in (night(1).replace("+00:00", "Z"), night(2).replace("+00:00", "Z")), point
        for name in ("report.html", "summary.md"):
            assert stamp in (out / name).read_text(), (point, name)  # all from the same run
        if point != "index":  # the swap happens after the pause at report-publish
            assert stamp == night(1).replace("+00:00", "Z"), point
        if point not in ("history-commit", "report-publish"):
            continue
        # The next night runs normally on what the kill left (here a half-made report
        # directory under a temporary name), and removes it.
        assert [p for p in (work / "reports").iterdir() if p.name.startswith(".latest.tmp-")]
        r, _, doc = run_night(work, second, 3, expect=ExitCode.OK)
        assert doc["history"]["run"] == 2, point  # once committed, night 2's run is a re-run
        assert doc["history"]["recorded"] is not committed, point
        assert not [p for p in (work / "reports").iterdir() if p.name.startswith(".")], point


def test_sigkill_during_an_upgrade_leaves_the_old_history(tmp_path):
    history = tmp_path / "history.duckdb"
    con = duckdb.connect(str(history))
    con.execute(V1_SQL.read_text())
    con.close()
    proc = _spawn(tmp_path, SAMPLE, tmp_path / "reports" / "a", night(1), pause="history-migrate")
    _wait_for_pause(proc, "history-migrate")  # the upgrade ran, not yet committed
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    con = duckdb.connect(str(history))
    try:
        assert con.execute(
            "SELECT value FROM forensics_meta WHERE key = 'format_version'"
        ).fetchone() == ("1",)
        assert con.execute("SELECT count(*) FROM run_agents").fetchone() == (9,)
        assert con.execute("SELECT count(*) FROM run_findings").fetchone() == (4,)
    finally:
        con.close()
    r, _, doc = run_night(tmp_path, SAMPLE, 2)
    assert "from history format 1 to 2" in r.stderr
    assert doc["history"]["run"] == 3


def test_sigkill_at_random_moments_never_half_writes_the_history(tmp_path):
    """Kill runs at moments spread over their whole length, without any pause: each leaves
    a history that opens and holds complete runs only."""
    dump = nightly_export(tmp_path, 1)
    history = tmp_path / "history.duckdb"
    # How long a whole run takes here, to spread the kills over it.
    started = time.monotonic()
    proc = _spawn(tmp_path, dump, tmp_path / "reports" / "0", night(1))
    proc.communicate(timeout=60)
    length = time.monotonic() - started
    assert proc.returncode == ExitCode.FINDINGS
    kills = []
    for i, fraction in enumerate((0.6, 0.85, 0.97)):
        other = nightly_export(tmp_path, 10 + i, stuck=i % 2 == 0)
        proc = _spawn(tmp_path, other, tmp_path / "reports" / str(i + 1), night(10 + i))
        time.sleep(length * fraction)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        kills.append(proc.returncode)
        runs = _history_runs(history)
        assert all(findings == count for _, findings, count in runs), runs
        assert [r for r, _, _ in runs] == list(range(1, len(runs) + 1))
    assert -signal.SIGKILL in kills  # (runs killed after they finished recorded a whole run)


def test_a_second_run_waits_a_bounded_time_then_gives_up_naming_the_file_and_holder(tmp_path):
    """Run A holds the history for a few seconds. Run B, allowed to wait 1 s, gives up with
    exit 2 and says who holds the file; run C, allowed 60 s, waits for A and then records."""
    history = tmp_path / "history.duckdb"
    first = _spawn(
        tmp_path,
        nightly_export(tmp_path, 1),
        tmp_path / "r" / "a",
        night(1),
        pause="history-locked:3",
    )
    impatient = patient = None
    try:
        _wait_for_pause(first, "history-locked")
        fixed = nightly_export(tmp_path, 2, stuck=False)
        started = time.monotonic()
        impatient = _spawn(tmp_path, fixed, tmp_path / "r" / "b", night(2), "--history-wait", "1")
        patient = _spawn(tmp_path, fixed, tmp_path / "r" / "c", night(2), "--history-wait", "60")
        _, err = impatient.communicate(timeout=60)
        assert time.monotonic() - started >= 1
        assert impatient.returncode == ExitCode.BAD_INPUT, err
        assert f"history: {history} is in use by process {first.pid} (" in err
        last = err.splitlines()[-1]
        assert last.startswith(f"Error: --history {history}: in use by process {first.pid} (")
        assert "-m forensics analyze" in last  # the holder's command line
        assert "gave up after waiting 1 s (--history-wait)" in last
        assert not (tmp_path / "r" / "b").exists()
        _, err1 = first.communicate(timeout=60)
        _, err2 = patient.communicate(timeout=60)
    finally:
        for proc in (first, impatient, patient):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert first.returncode == ExitCode.FINDINGS, err1
    assert patient.returncode == ExitCode.OK, err2
    assert "waiting up to 60 s" in err2
    doc = json.loads((tmp_path / "r" / "c" / "findings.json").read_text())
    assert (doc["history"]["run"], doc["history"]["previous_run"]["run"]) == (2, 1)
    assert keyed(doc["history"]["resolved"]) == {(STUCK, "vm1", 3)}
