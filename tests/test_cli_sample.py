"""The command line end to end on the committed sample incident and on variants of it.

The sample (sample_data/incident) holds exactly one incident: ml-train build #3's agent row,
flagged by survived-build-boundary (high) and lifecycle-stuck-created (critical).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forensics import __version__
from forensics.cli import app
from forensics.errors import ExitCode
from forensics.synth import ScenarioBuilder, sample_scenario, write_dump
from tests.cases import CASES, T0

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data" / "incident"
FROZEN_ROW = "9a2c5625-a4e0-42f6-9d7c-22298a814672"  # ml-train build #1: frozen at the stop
OUTPUTS = ("report.html", "findings.json", "summary.md")
SURVIVED, STUCK = "survived-build-boundary", "lifecycle-stuck-created"


def invoke(*args):
    """Like the `cli` fixture, for module-scoped fixtures."""
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def findings_of(out: Path) -> list[dict]:
    return json.loads((out / "findings.json").read_text(encoding="utf-8"))["findings"]


def key(findings: list[dict]) -> list[tuple]:
    return [(f["rule"], f["agent_id"], f["build_number"], f["ts"], f["summary"]) for f in findings]


def digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def html_text(html: str) -> str:
    """The text a reader sees (tags dropped, entities decoded), cells kept apart."""

    class Text(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.parts: list[str] = []

        def handle_starttag(self, tag, attrs):
            self.parts.append(" ")

        def handle_endtag(self, tag):
            self.parts.append(" ")

        def handle_data(self, data):
            self.parts.append(data)

    p = Text()
    p.feed(html)
    p.close()
    return "".join(p.parts)


@pytest.fixture(scope="module")
def scn():
    return sample_scenario()


@pytest.fixture(scope="module")
def incident_agent(scn):
    return scn.agent_id("ml-train", 3)


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    """One CLI run on the committed sample; inputs hashed before and after."""
    out = tmp_path_factory.mktemp("sample") / "out"
    before = digests(SAMPLE)
    result = invoke("analyze", SAMPLE, "--out", out)
    return result, out, before, digests(SAMPLE)


def test_sample_incident_verdict_on_stdout(sample_run, incident_agent):
    result, out, _, _ = sample_run
    assert result.exit_code == ExitCode.FINDINGS
    assert result.stdout.splitlines() == [
        "FAIL: 4 finding(s), 3 at or above high",
        f"critical lifecycle-stuck-created        workspace=ml-train build=#3 agent={incident_agent}",
        f"high     instance-identity-rebinding    workspace=ml-train build=#3 agent={incident_agent}",
        f"high     survived-build-boundary        workspace=ml-train build=#3 agent={incident_agent}",
        f"medium   previous-agent-not-shut-down   workspace=ml-train build=#1 agent={FROZEN_ROW}",
    ]
    assert result.stdout.endswith("\n")


def test_sample_notes_go_to_stderr_and_outputs_are_written(sample_run):
    result, out, before, after = sample_run
    wrote = f"wrote {out / 'report.html'}, {out / 'findings.json'}, {out / 'summary.md'}"
    lines = result.stderr.splitlines()
    assert wrote in lines
    assert all(ln.startswith(("wrote ", "note: ")) for ln in lines), result.stderr
    assert "could not be read" not in result.stderr  # the sample is clean
    assert "wrote" not in result.stdout
    for name in OUTPUTS:
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    assert before == after, "analyze modified the sample inputs"


def test_fail_on_critical_still_fails_on_the_critical_finding(cli, tmp_path, incident_agent):
    r = cli("analyze", SAMPLE, "--out", tmp_path / "out", "--fail-on", "critical")
    assert r.exit_code == ExitCode.FINDINGS
    assert r.stdout.splitlines()[0] == "FAIL: 4 finding(s), 1 at or above critical"
    assert len(r.stdout.splitlines()) == 5
    doc = json.loads((tmp_path / "out" / "findings.json").read_text())
    assert doc["verdict"] == {"fail_on": "critical", "findings": 4, "failing": 1, "exit_code": 1}


def _case_dump(tmp_path: Path, *names: str) -> Path:
    b = ScenarioBuilder(seed=7, start=T0 - timedelta(days=30))
    for name in names:
        CASES[name](b)
    dump = tmp_path / "dump"
    write_dump(b.build_scenario(), dump)
    return dump


def test_findings_below_threshold_exit_0(cli, tmp_path):
    # The agent has the lifecycle-replay fix: it still crossed the boundary (high, twice:
    # survived and re-bound), and the replay shows in its timestamps (medium), but its row
    # reached 'ready', so nothing is critical.
    dump = _case_dump(tmp_path, "incident_with_lifecycle_replay_fix")
    r = cli("analyze", dump, "--out", tmp_path / "out", "--fail-on", "critical")
    assert r.exit_code == ExitCode.OK
    lines = r.stdout.splitlines()
    assert lines[0] == "OK: 3 finding(s), 0 at or above critical"
    assert [ln.split()[:2] for ln in lines[1:]] == [
        ["high", "instance-identity-rebinding"],
        ["high", SURVIVED],
        ["medium", "lifecycle-timestamps-incoherent"],
    ]
    assert all("workspace=vm1 build=#3 " in ln for ln in lines[1:])
    # The same dump fails at the default threshold.
    r = cli("analyze", dump, "--out", tmp_path / "out2")
    assert r.exit_code == ExitCode.FINDINGS
    assert r.stdout.splitlines()[0] == "FAIL: 3 finding(s), 2 at or above high"


def test_clean_lookalike_dump_exits_0(cli, tmp_path):
    dump = _case_dump(
        tmp_path,
        "lookalike_ephemeral_pods",
        "lookalike_same_row_reconnects",
        "lookalike_prebuild_claim",
    )
    r = cli("analyze", dump, "--out", tmp_path / "out")
    assert r.exit_code == ExitCode.OK, r.stdout
    assert r.stdout == "OK: no findings\n"
    assert findings_of(tmp_path / "out") == []
    assert "No findings." in (tmp_path / "out" / "summary.md").read_text()


# --------------------------------------------------------------------------------------
# The same deployment in every export format gives the same findings

VARIANTS = {
    "csv.gz": dict(fmt="csv", gzip=True),
    "ndjson": dict(fmt="ndjson"),
    "ndjson.gz": dict(fmt="ndjson", gzip=True),
    "parquet": dict(fmt="parquet"),
    "parquet.gz": dict(fmt="parquet", gzip=True),
    "csv+05:30, logs.gz": dict(fmt="csv", tz_offset="+05:30", logs_gzip=True),
    "csv UTC, logs.gz": dict(fmt="csv", tz_offset="UTC", logs_gzip=True),
}


def _run_variant(scn, root: Path, **kw) -> list[dict]:
    dump = root / "dump"  # same basename everywhere: paths in the evidence then match
    write_dump(scn, dump, **kw)
    r = invoke("analyze", dump, "--out", root / "out")
    assert r.exit_code == ExitCode.FINDINGS, r.stdout + r.stderr
    doc = json.loads((root / "out" / "findings.json").read_text())
    assert all(t["rejected"] == 0 for t in doc["coverage"]["tables"]), doc["coverage"]["tables"]
    assert all(lg["unparsed"] == 0 for lg in doc["coverage"]["logs"])
    return doc["findings"]


@pytest.fixture(scope="module")
def csv_findings(scn, tmp_path_factory):
    return _run_variant(scn, tmp_path_factory.mktemp("csv"), fmt="csv")


def test_csv_dump_of_the_sample_gives_the_sample_findings(csv_findings, sample_run):
    _, out, _, _ = sample_run
    assert key(csv_findings) == key(findings_of(out))
    assert [(f["rule"], f["workspace_name"], f["build_number"]) for f in csv_findings] == [
        (STUCK, "ml-train", 3),
        ("instance-identity-rebinding", "ml-train", 3),
        (SURVIVED, "ml-train", 3),
        ("previous-agent-not-shut-down", "ml-train", 1),
    ]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_format_gives_the_same_findings(variant, scn, csv_findings, tmp_path):
    got = _run_variant(scn, tmp_path, **VARIANTS[variant])
    assert key(got) == key(csv_findings)
    # Evidence too (rows, build history, log lines), except the .gz of gzip'd logs' names.
    norm = lambda fs: json.dumps([f["evidence"] for f in fs]).replace(".log.gz", ".log")  # noqa: E731
    assert norm(got) == norm(csv_findings)
    assert [f["fingerprint"] for f in got] == [f["fingerprint"] for f in csv_findings]


# --------------------------------------------------------------------------------------
# Unreadable rows and lines are counted, located, and do not change the answer


def _csv_line(row: list[str]) -> str:
    s = io.StringIO()
    csv.writer(s, lineterminator="\n").writerow(row)
    return s.getvalue()


def _append(path: Path, text: str) -> int:
    """Append `text` (whole lines); returns the physical line number of its first line."""
    data = path.read_bytes()
    assert data.endswith(b"\n")
    path.write_bytes(data + text.encode())
    return data.count(b"\n") + 1


def test_malformed_rows_and_lines_are_reported_not_fatal(cli, tmp_path, sample_run):
    _, sample_out, _, _ = sample_run
    dump = tmp_path / "incident"
    shutil.copytree(SAMPLE, dump)
    agents = dump / "db" / "workspace_agents.csv"
    good = next(csv.reader(io.StringIO(agents.read_text().splitlines()[1])))
    bad_ts = list(good)
    bad_ts[0], bad_ts[1] = "0badc0de-0000-4000-8000-000000000002", "yesterday at noon"
    short_line = _append(agents, "0badc0de-0000-4000-8000-000000000001,2026-05-01 00:00:00-04\n")
    bad_ts_line = _append(agents, _csv_line(bad_ts))
    # template_versions has quoted multi-line values (readme): rows and lines differ there.
    versions = dump / "db" / "template_versions.csv"
    with versions.open(newline="") as f:
        tv = list(csv.reader(f))
    assert len(tv) < len(versions.read_text().splitlines())  # multi-line records
    tv_bad = list(tv[1])
    tv_bad[0], tv_bad[7] = "0badc0de-0000-4000-8000-000000000003", "job 31/02/2026"  # job_id
    tv_bad_line = _append(versions, _csv_line(tv_bad))
    log = dump / "logs" / "ml-train-vm" / "coder-agent.log"
    garbage = "<<< this is not a slog line >>>"
    garbage_line = _append(log, garbage + "\n")

    before = digests(dump)
    r = cli("analyze", dump, "--out", tmp_path / "out")
    assert digests(dump) == before, "analyze modified its inputs"

    assert r.exit_code == ExitCode.FINDINGS
    assert r.stdout == sample_run[0].stdout
    assert "note: 4 row(s)/line(s) could not be read; see the coverage section" in r.stderr
    assert key(findings_of(tmp_path / "out")) == key(findings_of(sample_out))

    doc = json.loads((tmp_path / "out" / "findings.json").read_text())
    [wa] = [t for t in doc["coverage"]["tables"] if t["table"] == "workspace_agents"]
    assert wa["path"] == "incident/db/workspace_agents.csv"
    assert (wa["rows_read"], wa["rows_loaded"], wa["rejected"]) == (16, 14, 2)
    assert [s["line"] for s in wa["samples"]] == [short_line, bad_ts_line]
    assert "yesterday at noon" in wa["samples"][1]["reason"]
    [tvl] = [t for t in doc["coverage"]["tables"] if t["table"] == "template_versions"]
    assert tvl["rejected"] == 1 and [s["line"] for s in tvl["samples"]] == [tv_bad_line]
    [lg] = [x for x in doc["coverage"]["logs"] if x["path"].endswith("ml-train-vm/coder-agent.log")]
    assert lg["unparsed"] == 1 and lg["lines"] == garbage_line
    assert [list(s) for s in lg["samples"]] == [[garbage_line, garbage]]

    html = (tmp_path / "out" / "report.html").read_text()
    coverage = html_text(html[html.index('id="coverage"') :])
    for n in (short_line, bad_ts_line, tv_bad_line, garbage_line):
        assert re.search(rf"\bline {n}\b", coverage), f"line {n} not in the coverage section"
    assert garbage in coverage


def test_python_m_forensics_version():
    p = subprocess.run(
        [sys.executable, "-m", "forensics", "--version"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"forensics {__version__}\n"


def test_sample_findings_are_what_the_sample_promises(sample_run, scn):
    # sample_data/README.md and synth.sample_scenario() say what must be flagged; nothing else.
    _, out, _, _ = sample_run
    got = {(f["workspace_name"], f["build_number"], f["rule"]) for f in findings_of(out)}
    promised = {
        (ws, n, rule)
        for (ws, n, _name), rules in scn.meta["expected_flags"].items()
        for rule in rules
    }
    assert got == promised
