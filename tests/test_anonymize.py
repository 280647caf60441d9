"""--anonymize: people, workspaces, hosts and IPs become stable keyed pseudonyms everywhere."""

from __future__ import annotations

import json
import re

from forensics.anonymize import Identifiers, Pseudonymizer
from forensics.errors import ExitCode

SAMPLE = "sample_data/incident"
OUTPUTS = ("report.html", "findings.json", "summary.md")
NAMES = [
    "ml-train",
    "rwyrick",
    "R. Wyrick",
    "ml-train-vm",
    "web-pod-1",
    "api-vm",
    "prebuild-claimed",
]


def run(cli, out, *extra):
    r = cli("analyze", SAMPLE, "--out", out, "--generated-at", "2026-05-20T00:00:00Z", *extra)
    assert r.exit_code == ExitCode.FINDINGS, r.stderr
    return r, {name: (out / name).read_text() for name in OUTPUTS}


def test_names_never_reach_an_output(cli, tmp_path):
    r, outputs = run(cli, tmp_path, "--anonymize")
    for name, text in [*outputs.items(), ("stdout", r.stdout)]:
        for real in NAMES:
            assert real not in text, (name, real)
    assert '"anonymized": true' in outputs["findings.json"]


def test_pseudonyms_are_the_same_everywhere_in_one_report(cli, tmp_path):
    r, outputs = run(cli, tmp_path, "--anonymize")
    doc = json.loads(outputs["findings.json"])
    [workspace] = {f["workspace_name"] for f in doc["findings"]}
    assert re.fullmatch(r"workspace-[0-9a-f]{8}", workspace)
    assert f"workspace={workspace} " in r.stdout
    assert workspace in outputs["summary.md"] and f"<h2>{workspace}</h2>" in outputs["report.html"]
    # The host directory of the incident's log is one pseudonym in paths and log evidence.
    sources = {ln["source"] for f in doc["findings"] for ln in f["evidence"]["log_lines"]}
    hosts = {s.split("/")[2] for s in sources}
    assert len(hosts) == 1 and re.fullmatch(r"host-[0-9a-f]{8}", hosts.pop())


def test_a_given_key_gives_reproducible_pseudonyms_and_is_written_nowhere(cli, tmp_path):
    key = "correct-horse-battery-staple"
    _, first = run(cli, tmp_path / "a", "--anonymize-key", key)
    _, again = run(cli, tmp_path / "b", "--anonymize-key", key)
    _, other = run(cli, tmp_path / "c", "--anonymize")
    assert first == again
    assert first["findings.json"] != other["findings.json"]
    assert all(key not in text for text in first.values())


def test_ips_emails_and_names_in_free_text():
    ids = Identifiers()
    ids.add("user", "alice")
    ids.add("workspace", "dev-box")
    ids.add("user", "al")  # too short to replace safely: kept
    p = Pseudonymizer(ids, b"k")
    text = (
        "ssh connection  remote_addr=100.64.0.2:51234 peer=[fd7a:115c:a1e0:ffe4:15b2:7569:a5fb:c997]:41943"
        " at 2026-05-12 13:20:58 by alice (alice@example.com) on dev-box, not dev-boxes; al"
    )
    got = p.text(text)
    for real in ("100.64.0.2", "fd7a:115c", "alice", "alice@example.com", "dev-box "):
        assert real not in got, real
    assert "13:20:58" in got and "dev-boxes" in got and got.endswith("; al")
    assert p.text("alice") == p.text("alice") == p.pseudonym("user", "alice")
    assert Pseudonymizer(ids, b"other").text("alice") != p.text("alice")
