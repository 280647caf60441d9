"""The three outputs: no secrets, no markup from the inputs, self-contained HTML in the right
order, byte-for-byte reproducible, a bounded summary.md, and the findings.json contract."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forensics.cli import app
from forensics.errors import ExitCode
from forensics.report import MAX_MARKDOWN, SCRIPT, script_hash
from forensics.synth import ScenarioBuilder, sample_scenario, write_dump
from tests.cases import T0, H, S, _boot, _ready, _suspended_vm

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data" / "incident"
OUTPUTS = ("report.html", "findings.json", "summary.md")
SURVIVED, STUCK = "survived-build-boundary", "lifecycle-stuck-created"
PINNED = "2026-05-20T00:00:00Z"


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


# These tests are about the outputs, so they run the two core rules only; what the other
# rules find on the same inputs is tested in tests/test_rules.py.
CORE = ("--select", "survived-build-boundary,lifecycle-stuck-created")


def analyze_to(dump: Path, out: Path, *extra: str, expect: int = ExitCode.FINDINGS):
    r = invoke("analyze", dump, "--out", out, *CORE, *extra)
    assert r.exit_code == expect, r.stdout + r.stderr
    return r


def outputs(out: Path) -> dict[str, str]:
    return {name: (out / name).read_text(encoding="utf-8") for name in OUTPUTS}


class Node:
    """An element: tag, attributes, children (elements and text)."""

    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Node | None):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    def text(self) -> str:
        return " ".join(c if isinstance(c, str) else c.text() for c in self.children)

    def walk(self):
        for c in self.children:
            if isinstance(c, Node):
                yield c
                yield from c.walk()

    def find_all(self, tag: str) -> list[Node]:
        return [n for n in self.walk() if n.tag == tag]

    def classes(self) -> list[str]:
        return (self.attrs.get("class") or "").split()


VOID = {"meta", "link", "br", "hr", "img", "input", "col", "wbr", "source", "area", "base"}


def parse_html(html: str) -> Node:
    """A small DOM (tags, attributes, text) built with the standard library parser."""

    class Builder(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.root = self.cur = Node("#root", {}, None)

        def handle_starttag(self, tag, attrs):
            node = Node(tag, dict(attrs), self.cur)
            self.cur.children.append(node)
            if tag not in VOID:
                self.cur = node

        def handle_startendtag(self, tag, attrs):
            self.cur.children.append(Node(tag, dict(attrs), self.cur))

        def handle_endtag(self, tag):
            n = self.cur
            while n is not None and n.tag != tag:
                n = n.parent
            if n is not None and n.parent is not None:
                self.cur = n.parent

        def handle_data(self, data):
            self.cur.children.append(data)

    b = Builder()
    b.feed(html)
    b.close()
    return b.root


# --------------------------------------------------------------------------------------
# Secrets


@pytest.fixture(scope="module")
def scn():
    return sample_scenario()


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "parquet"])
def test_no_secret_reaches_any_output(fmt, scn, tmp_path):
    write_dump(scn, tmp_path / "dump", fmt=fmt)
    r = analyze_to(tmp_path / "dump", tmp_path / "out")
    secrets = sorted(s for s in scn.secret_values() if len(s) >= 8)
    assert len(secrets) > 50  # tokens, env values, metadata, password hashes, tf state
    texts = {**outputs(tmp_path / "out"), "stdout": r.stdout, "stderr": r.stderr}
    for name, text in texts.items():
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"{name} ({fmt}) contains secret(s) {leaked[:3]}"
        # nor a recognisable piece of one
        leaked = [s for s in secrets if len(s) >= 16 and s[:16] in text]
        assert not leaked, f"{name} ({fmt}) contains the start of secret(s) {leaked[:3]}"


def test_secret_on_an_unparsed_log_line_is_not_copied_into_the_report(scn, tmp_path):
    # A line that is not slog output (an env dump by a wrapper script, a torn write) is shown
    # in the coverage section as a sample; the agent token on it must not come along.
    token = next(
        row["auth_token"]
        for row in scn.tables["workspace_agents"]
        if row["id"] == scn.agent_id("ml-train", 3)
    )
    assert token in scn.secret_values()
    path = "logs/ml-train-vm/coder-agent.log"
    lines = scn.logs[path]
    logs = {**scn.logs, path: [*lines[:3], f"CODER_AGENT_TOKEN={token}", *lines[3:]]}
    write_dump(dataclasses.replace(scn, logs=logs), tmp_path / "dump")
    analyze_to(tmp_path / "dump", tmp_path / "out")
    doc = json.loads((tmp_path / "out" / "findings.json").read_text())
    assert sum(lg["unparsed"] for lg in doc["coverage"]["logs"]) == 1  # it was seen
    for name, text in outputs(tmp_path / "out").items():
        assert token not in text, f"{name} shows the agent token from an unparsed log line"


# --------------------------------------------------------------------------------------
# Attacker-controlled text

EVIL_NAME = "<img src=x onerror=alert(1)>"
EVIL_RAW = "</script><script>alert(1)</script>"
EVIL_ERROR = "<b>bold</b> upstream said </script><script>alert(2)</script>"


@pytest.fixture(scope="module")
def evil_run(tmp_path_factory):
    """The #18571 incident in a workspace whose name and agent log carry markup."""
    tmp = tmp_path_factory.mktemp("evil")
    b = ScenarioBuilder(seed=11, start=T0 - timedelta(days=30))
    ws = b.workspace(EVIL_NAME, b.user("mallory"), b.template("gce-vm", kind="vm"))
    b1 = b.build(ws, "start", at=T0)
    boot = T0 + 60 * S
    a1 = _ready(b, b1, boot, disconnected_at=T0 + 5 * H + 5 * S)
    b.build(ws, "stop", at=T0 + 5 * H)
    b3 = b.build(ws, "start", at=T0 + 24 * H)
    attach = T0 + 24 * H + 70 * S
    a3 = b.agent(b3, first_connected_at=attach, last_connected_at=attach + 2 * H)
    log = b.log("logs/evil-host/coder-agent.log")
    _boot(log, boot, a1)
    log.raw(EVIL_RAW)  # not slog: an unparsed line, sampled in the coverage section
    log.disconnected(T0 + 5 * H + 5 * S)
    log.line(attach - 6 * S, "info", "<b>bold</b> chatter")
    log.run_error(attach - 5 * S, EVIL_ERROR)  # a key line: shown with the finding
    log.connecting(attach - 2 * S)
    log.manifest(attach, a3)
    scn = b.build_scenario()
    write_dump(scn, tmp / "dump")
    analyze_to(tmp / "dump", tmp / "out")
    return scn, tmp / "out"


def test_markup_in_inputs_fires_the_finding(evil_run):
    _, out = evil_run
    doc = json.loads((out / "findings.json").read_text())
    assert {(f["rule"], f["workspace_name"], f["build_number"]) for f in doc["findings"]} == {
        (SURVIVED, EVIL_NAME, 3),
        (STUCK, EVIL_NAME, 3),
    }
    texts = [ln["text"] for f in doc["findings"] for ln in f["evidence"]["log_lines"]]
    assert any("<b>bold</b>" in t for t in texts)  # the evil error is part of the evidence
    [lg] = doc["coverage"]["logs"]
    assert lg["unparsed"] == 1 and lg["samples"][0][1] == EVIL_RAW


def test_report_html_escapes_everything_from_the_inputs(evil_run):
    _, out = evil_run
    html = (out / "report.html").read_text()
    # The one script is the report's own table sorter, admitted by hash in the CSP; any other
    # script tag would have come from the inputs.
    own = f"<script>{SCRIPT}</script>"
    assert html.count(own) == 1
    html = html.replace(own, "")
    assert "<img" not in html.lower()
    assert "<script" not in html.lower() and "</script" not in html.lower()
    assert "<b>bold" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html  # coverage sample
    assert "&lt;b&gt;bold&lt;/b&gt;" in html  # the evidence line
    elements = list(parse_html(html).walk())
    tags = {n.tag for n in elements}
    assert not tags & {"script", "img", "iframe", "object", "embed", "link", "form"}
    assert not [(n.tag, k) for n in elements for k in n.attrs if k.startswith("on")]


def _outside_code(md: str) -> str:
    """Markdown text outside fenced code blocks (whose content GitHub shows literally)."""
    out, fence = [], None
    for line in md.split("\n"):
        stripped = line.lstrip(" ")
        indent = len(line) - len(stripped)
        if fence is None:
            m = re.match(r"(`{3,}|~{3,})", stripped) if indent <= 3 else None
            if m:
                fence = m.group(1)
                continue
            out.append(line)
        elif (
            indent <= 3
            and stripped.rstrip().startswith(fence[0] * len(fence))
            and set(stripped.rstrip()) == {fence[0]}
        ):
            fence = None
    assert fence is None, "unclosed code fence"
    return "\n".join(out)


def test_summary_md_escapes_markup_from_the_inputs(evil_run):
    _, out = evil_run
    md = (out / "summary.md").read_text()
    prose = _outside_code(md)
    assert "img src=x onerror=alert(1)" in prose  # the name is there, as text
    assert prose.count("\\<img src=x onerror=alert(1)\\>") >= 2  # table row and heading
    raw = prose.replace("<sub>", "").replace("</sub>", "")
    assert not re.search(r"(?<!\\)<", raw), "unescaped '<' outside code blocks in summary.md"
    # Inside code blocks text is literal, and nothing in it can close the block early.
    for fence, body in re.findall(r"^(`{3,})text\n(.*?)\n\1$", md, re.S | re.M):
        assert not re.search(rf"^ {{0,3}}`{{{len(fence)},}}\s*$", body, re.M)


# --------------------------------------------------------------------------------------
# report.html: self-contained, verdict first, evidence with each finding


@pytest.fixture(scope="module")
def sample_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample") / "out"
    analyze_to(SAMPLE, out)
    return out


URL_ATTRS = {"src", "href", "action", "formaction", "srcset", "poster", "data", "background"}


def test_report_html_loads_nothing_from_anywhere(sample_out):
    html = (sample_out / "report.html").read_text()
    elements = list(parse_html(html).walk())
    for n in elements:
        for name, value in n.attrs.items():
            if name in URL_ATTRS:
                assert not re.match(r"\s*(https?:)?//", value or "", re.I), (n.tag, name, value)
            if name == "style":
                assert "url(" not in (value or "").lower(), (n.tag, value)
    styles = [n.text().lower() for n in elements if n.tag == "style"]
    assert styles  # the report carries its own CSS
    for css in styles:
        assert "@import" not in css
        for ref in re.findall(r"url\(\s*['\"]?([^'\")]*)", css):
            assert not re.match(r"(https?:)?//", ref), ref
    assert not {n.tag for n in elements} & {"link", "iframe", "object", "embed", "img"}
    scripts = [n for n in elements if n.tag == "script"]
    assert len(scripts) == 1 and not scripts[0].attrs  # inline only, no src
    [csp] = [
        n.attrs["content"]
        for n in elements
        if n.tag == "meta"
        and (n.attrs.get("http-equiv") or "").lower() == "content-security-policy"
    ]
    directives = [d.strip() for d in (csp or "").split(";")]
    assert "default-src 'none'" in directives
    assert f"script-src {script_hash()}" in directives  # that one script, nothing else


def test_verdict_comes_first_then_findings_then_coverage(sample_out):
    html = (sample_out / "report.html").read_text()
    verdict = html.index('id="verdict"')
    findings = html.index('id="findings"')
    first_finding = html.index("<article")
    coverage = html.index('id="coverage"')
    assert verdict < findings < first_finding < coverage
    assert html.count('id="verdict"') == html.count('id="coverage"') == 1


def test_each_finding_shows_its_build_history_and_log_lines(sample_out):
    html = (sample_out / "report.html").read_text()
    doc = json.loads((sample_out / "findings.json").read_text())
    root = parse_html(html)
    articles = {a.attrs.get("id"): a for a in root.find_all("article")}
    assert len(articles) == len(doc["findings"]) == 2
    for f in doc["findings"]:
        art = articles[f"f-{f['fingerprint']}"]
        # Build history: one row per build, in order, only the flagged build marked.
        rows = [
            tr
            for tr in art.find_all("tr")
            if re.match(r"\s*#\d+\b", tr.text()) and tr.find_all("td")
        ]
        assert [int(re.match(r"\s*#(\d+)", r.text()).group(1)) for r in rows] == [1, 2, 3]
        marked = [r for r in rows if "this-build" in r.classes()]
        assert len(marked) == 1 and marked[0].text().split()[0] == f"#{f['build_number']}"
        assert "created" in marked[0].text()  # the flagged row's lifecycle is shown
        # Log lines: every evidence line with its file and line number.
        text = art.text()
        lines = f["evidence"]["log_lines"]
        assert lines and any(ln["kind"] == "process start" for ln in lines)
        for ln in lines:
            assert ln["source"] in text, ln["source"]
            first = ln["text"].splitlines()[0][:40]
            assert re.search(rf"(?<!\d){ln['line']}\s+{re.escape(first)}", text), (
                f"{ln['source']}:{ln['line']} not shown with its text"
            )


# --------------------------------------------------------------------------------------
# Reproducible output


def test_same_inputs_give_byte_identical_outputs(tmp_path):
    """Two separate processes (different hash seeds, different working directories), same
    argv: the three outputs must be byte-identical."""
    args = ["analyze", str(SAMPLE), "--out", "out", "--generated-at", PINNED]
    runs = []
    for n, seed in enumerate(("1", "2")):
        cwd = tmp_path / f"run{n}"
        cwd.mkdir()
        env = {**os.environ, "PYTHONHASHSEED": seed}
        p = subprocess.run(
            [sys.executable, "-m", "forensics", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            timeout=120,
        )
        assert p.returncode == ExitCode.FINDINGS, p.stderr
        runs.append({name: (cwd / "out" / name).read_bytes() for name in OUTPUTS})
    for name in OUTPUTS:
        assert runs[0][name] == runs[1][name], f"{name} differs between two runs"
    doc = json.loads(runs[0]["findings.json"])
    assert doc["generated_at"] == PINNED
    assert doc["command"].endswith(shlex.join(args))
    assert b"2026-05-20 00:00:00" in runs[0]["report.html"]


# --------------------------------------------------------------------------------------
# summary.md stays pasteable


@pytest.fixture(scope="module")
def many_run(tmp_path_factory):
    """150 workspaces, each with the incident: 300 findings."""
    tmp = tmp_path_factory.mktemp("many")
    b = ScenarioBuilder(seed=3, start=T0 - timedelta(days=30))
    for i in range(150):
        _suspended_vm(b, name=f"vm{i:03d}")
    write_dump(b.build_scenario(), tmp / "dump")
    analyze_to(tmp / "dump", tmp / "out")
    return tmp / "out"


def _check_summary_accounts_for_every_finding(md: str, total: int) -> None:
    assert len(md) < MAX_MARKDOWN
    assert md.startswith(f"## Coder forensics: {total} finding(s)")
    assert "No findings." not in md
    rows = [ln for ln in md.splitlines() if re.match(r"\| (critical|high) \| `", ln)]
    sections = re.findall(r"^### ", md, re.M)
    assert rows and len(rows) == len(sections)
    if len(rows) < total:
        m = re.search(r"(\d+) more finding\(s\) left out", md)
        assert m, "summary.md does not say that findings were left out"
        assert int(m.group(1)) == total - len(rows)


def test_summary_md_with_many_findings_is_bounded_and_says_what_it_left_out(many_run):
    doc = json.loads((many_run / "findings.json").read_text())
    assert len(doc["findings"]) == 300
    md = (many_run / "summary.md").read_text()
    _check_summary_accounts_for_every_finding(md, 300)
    assert "left out" in md  # 300 findings cannot fit


def test_summary_md_with_a_very_long_build_history(tmp_path):
    # A VM workspace started and stopped every day for 800 days, then the incident: the
    # build history of one finding alone is longer than GitHub's comment limit.
    b = ScenarioBuilder(seed=5, start=T0 - timedelta(days=900))
    ws = b.workspace("daily-vm", b.user("daily"), b.template("gce-vm", kind="vm"))
    for k in range(800):
        day = T0 - timedelta(days=800 - k)
        b.build(ws, "start", at=day)
        b.build(ws, "stop", at=day + 8 * H)
    b1 = b.build(ws, "start", at=T0)
    a1 = _ready(b, b1, T0 + 60 * S, disconnected_at=T0 + 5 * H + 5 * S)
    b.build(ws, "stop", at=T0 + 5 * H)
    b3 = b.build(ws, "start", at=T0 + 24 * H)
    attach = T0 + 24 * H + 70 * S
    a3 = b.agent(b3, first_connected_at=attach, last_connected_at=attach + 2 * H)
    log = b.log("logs/daily/coder-agent.log")
    _boot(log, T0 + 60 * S, a1)
    log.disconnected(T0 + 5 * H + 5 * S)
    log.manifest(attach, a3)
    write_dump(b.build_scenario(), tmp_path / "dump")
    analyze_to(tmp_path / "dump", tmp_path / "out")
    doc = json.loads((tmp_path / "out" / "findings.json").read_text())
    assert {(f["rule"], f["build_number"]) for f in doc["findings"]} == {
        (SURVIVED, 1603),
        (STUCK, 1603),
    }
    md = (tmp_path / "out" / "summary.md").read_text()
    _check_summary_accounts_for_every_finding(md, 2)


# --------------------------------------------------------------------------------------
# findings.json contract

TOP_KEYS = {
    "schema_version",
    "tool",
    "generated_at",
    "command",
    "export_as_of",
    "verdict",
    "inputs",
    "coverage",
    "findings",
}
FINDING_KEYS = {
    "rule",
    "severity",
    "title",
    "agent_id",
    "workspace_id",
    "workspace_name",
    "build_number",
    "ts",
    "summary",
    "evidence",
    "fingerprint",
}


def test_findings_json_contract(sample_out, scn):
    doc = json.loads((sample_out / "findings.json").read_text())
    assert set(doc) == TOP_KEYS
    assert doc["schema_version"] == 1 and doc["tool"].startswith("forensics ")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["generated_at"])
    assert doc["export_as_of"].endswith("Z")
    assert doc["verdict"] == {"fail_on": "high", "findings": 2, "failing": 2, "exit_code": 1}
    assert set(doc["coverage"]) == {"tables", "logs", "rules", "notes", "clocks"}
    for lg in doc["coverage"]["logs"]:
        assert lg["lines"] == lg["entries"] + lg["continuation"] + lg["blank"] + lg["unparsed"]
        assert lg["formats"] == {"slog human": lg["entries"]}
        assert lg["version_range"].startswith(("v2.", "≥ v2.10"))
    for clock in doc["coverage"]["clocks"]:
        assert clock["method"] == "within latency: not applied" and clock["offset_seconds"] == 0
    files = {str(p.relative_to(SAMPLE.parent)): p for p in SAMPLE.rglob("*") if p.is_file()}
    assert {i["path"] for i in doc["inputs"]} == set(files)
    for i in doc["inputs"]:
        assert set(i) == {"path", "size", "sha256", "kind", "table", "format", "compressed", "note"}
        data = files[i["path"]].read_bytes()
        assert (i["size"], i["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    agent = scn.agent_id("ml-train", 3)
    assert [(f["rule"], f["severity"]) for f in doc["findings"]] == [
        (STUCK, "critical"),
        (SURVIVED, "high"),
    ]
    for f in doc["findings"]:
        assert set(f) == FINDING_KEYS
        assert f["agent_id"] == agent
        assert f["workspace_id"] == scn.workspace_id("ml-train")
        assert (f["workspace_name"], f["build_number"]) == ("ml-train", 3)
        assert f["ts"].endswith("Z") and f["title"] and f["summary"]
        assert {"rule", "agent", "builds", "log_lines"} <= set(f["evidence"])
        assert f["evidence"]["agent"]["agent_id"] == agent
        assert re.fullmatch(r"[0-9a-f]{16}", f["fingerprint"])


def test_fingerprints_are_stable_and_distinct(sample_out, many_run, scn, tmp_path):
    first = json.loads((sample_out / "findings.json").read_text())["findings"]
    # Another export of the same deployment, in another format, elsewhere.
    write_dump(scn, tmp_path / "elsewhere", fmt="parquet")
    analyze_to(tmp_path / "elsewhere", tmp_path / "out")
    again = json.loads((tmp_path / "out" / "findings.json").read_text())["findings"]
    fp = lambda fs: {(f["rule"], f["agent_id"]): f["fingerprint"] for f in fs}  # noqa: E731
    assert fp(first) == fp(again)
    assert len(set(fp(first).values())) == 2  # same agent, two rules
    many = json.loads((many_run / "findings.json").read_text())["findings"]
    assert len({f["fingerprint"] for f in many}) == len(many) == 300


def test_coverage_lists_a_bounded_number_of_files_the_telling_ones_first(tmp_path):
    import shutil

    from forensics.report import MAX_COVERAGE_ROWS

    dump = tmp_path / "incident"
    shutil.copytree(SAMPLE, dump)
    for n in range(MAX_COVERAGE_ROWS + 15):
        host = dump / "logs" / f"quiet-{n:03d}"
        host.mkdir()
        lines = [
            f"2026-05-14 10:{m:02d}:0{n % 10}.000 [debu]  net.tailnet: peer {n}" for m in range(3)
        ]
        (host / "coder-agent.log").write_text("\n".join(lines) + "\n")
    damaged = dump / "logs" / "quiet-999"
    damaged.mkdir()
    (damaged / "coder-agent.log").write_text(
        "2026-05-14 10:00:00.000 [info]  connecting to coderd\nthis line is garbage\n"
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["analyze", str(dump), "--out", str(out)])
    assert result.exit_code == ExitCode.FINDINGS, result.output
    html = (out / "report.html").read_text()
    logs = html[
        html.index("<h3>Agent logs</h3>") : html.index(
            "</table>", html.index("<h3>Agent logs</h3>")
        )
    ]
    assert logs.count('<tr><td class="mono">') == MAX_COVERAGE_ROWS
    assert "quiet-999/coder-agent.log" in logs and "this line is garbage" in logs  # telling first
    total = len(json.loads((out / "findings.json").read_text())["coverage"]["logs"])
    assert f"and {total - MAX_COVERAGE_ROWS} more log file(s), 0 unparsed" in logs
