"""The timeline picture and the provenance section of report.html."""

from __future__ import annotations

import re
from pathlib import Path

from forensics.engine import analyze
from forensics.report import text_timeline, write_outputs
from forensics.timeline_svg import draw

SAMPLE = Path("sample_data/incident")


def sample_timeline():
    result = analyze([SAMPLE])
    [(workspace_id, timeline)] = result.timelines.items()
    return result, timeline


def test_the_incident_is_drawn_with_its_builds_rows_and_process():
    result, tl = sample_timeline()
    svg = str(draw(tl, "2026-05-15T13:59:51Z"))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    for label in ("#1 start", "#2 stop", "#3 start"):
        assert f">{label}</text>" in svg
    # One lane per agent row with its state as text, the never-connected stop-build row said so.
    assert svg.count(">ready</text>") >= 1 and ">created</text>" in svg
    assert "never connected (created)" in svg
    # Both flagged rows (build #1 frozen, build #3 stuck) are framed; the process's manifests
    # point at build #1's and then build #3's row.
    assert svg.count('class="flagged"') == 2
    assert svg.index("→#1") < svg.index("→#3")
    assert "process 1 · ml-train-vm" in svg


def test_names_in_the_picture_are_escaped():
    _, tl = sample_timeline()
    tl["processes"][0]["stream"] = "logs/<img src=x onerror=alert(1)>/coder-agent.log"
    tl["agents"][0]["agent_name"] = '"><script>alert(1)</script>'
    svg = str(draw(tl, None))
    assert "<img" not in svg and "<script" not in svg
    assert "&lt;img src=x" in svg and "&lt;script&gt;" in svg


def test_text_timeline_tells_the_story_in_order():
    _, tl = sample_timeline()
    lines = text_timeline(tl)
    story = [
        "build #1 start created",
        "process 1 (ml-train-vm) process start",
        "fetched the manifest of build #1's agent row",
        "build #2 stop created",
        "build #3 start created",
        "fetched the manifest of build #3's agent row",
    ]
    at = [next(i for i, ln in enumerate(lines) if s in ln) for s in story]
    assert at == sorted(at)
    assert any("is still 'created'" in ln for ln in lines)


def test_provenance_names_rules_schema_and_command(tmp_path):
    dump = tmp_path / "dump"
    dump.mkdir()
    for f in (SAMPLE / "db").iterdir():
        (dump / f.name).write_bytes(f.read_bytes())
    (dump / "schema_migrations.csv").write_text("version,dirty\n498,f\n")
    result = analyze([dump])
    assert result.schema_version == "498"
    write_outputs(result, tmp_path / "out", argv=["forensics", "analyze", "dump"])
    html = (tmp_path / "out" / "report.html").read_text()
    prov = html[html.index('id="provenance"') :]
    assert "migration 498" in prov and "forensics analyze dump" in prov
    for run in result.rules:
        assert re.search(rf"<code>{re.escape(run.rule.id)}</code>.*?[0-9a-f]{{12}}", prov, re.S)
