"""Coder support bundles: read alone or with other inputs, mapped onto the canonical tables and
log events, and read safely (no path escapes, bounded expansion, nothing left behind)."""

from __future__ import annotations

import csv
import io
import json
import stat
import struct
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forensics.discover import classify, discover
from forensics.engine import _dedupe
from forensics.errors import ExitCode
from forensics.ingest import bundle as bundle_mod
from forensics.ingest.bundle import Refused, _Budget, _read_member, read_bundle
from forensics.ingest.tables import create_tables, load_table
from forensics.synth import write_dump
from forensics.synth_bundle import (
    INCIDENT_COLLECTED_AT,
    bundle_name,
    healthy_bundle,
    incident_bundle,
    incident_scenario,
    tabwriter,
    write_bundle,
)

ROOT = Path(__file__).resolve().parent.parent
SURVIVED, STUCK = "survived-build-boundary", "lifecycle-stuck-created"
BUNDLE = bundle_name(INCIDENT_COLLECTED_AT)  # coder-support-1778853731.zip


@pytest.fixture(scope="module")
def scn():
    return incident_scenario()


@pytest.fixture(autouse=True)
def private_tmp(tmp_path, monkeypatch):
    """Every temporary directory of the run goes under tmp_path/tmp, to check it is removed."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def doc(out: Path) -> dict:
    return json.loads((out / "findings.json").read_text(encoding="utf-8"))


def inputs(out: Path) -> dict[str, list[dict]]:
    by_path: dict[str, list[dict]] = {}
    for i in doc(out)["inputs"]:
        by_path.setdefault(i["path"], []).append(i)
    return by_path


def flagged(out: Path) -> list[tuple[str, str]]:
    return sorted((f["rule"], f["agent_id"]) for f in doc(out)["findings"])


def member_sources(path: Path, tmp_path: Path) -> dict[str, list]:
    src = classify(path, path.name)
    assert src.kind == "bundle", src.note
    out: dict[str, list] = {}
    for s in read_bundle(src, tmp_path / "unpacked"):
        out.setdefault(s.display.split("!", 1)[1], []).append(s)
    return out


def all_text(root: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in root.iterdir())


# --------------------------------------------------------------------------------------
# The incident and a healthy workspace, each from a bundle alone


def test_incident_bundle_alone_is_flagged_and_shows_its_members(cli, scn, tmp_path, private_tmp):
    files = incident_bundle(scn, sanitize=False)  # env values left in: none may leak
    path = write_bundle(files, tmp_path / BUNDLE)
    r = cli("analyze", path, "--out", tmp_path / "out")
    assert r.exit_code == ExitCode.FINDINGS, r.stderr
    row_b = scn.meta["rows"]["B"]
    assert flagged(tmp_path / "out") == [(STUCK, row_b), (SURVIVED, row_b)]

    found = inputs(tmp_path / "out")
    [zip_line] = found[BUNDLE]
    assert zip_line["kind"] == "bundle"
    assert "collected 2026-05-15 14:02:11 UTC (from the file name)" in zip_line["note"]
    assert "Coder server v2.31.11+e5b2b1f" in zip_line["note"]
    assert [i["kind"] for i in found[f"{BUNDLE}!agent/logs.txt"]] == ["agent_log"]
    assert [i["kind"] for i in found[f"{BUNDLE}!cli_logs.txt"]] == ["log"]
    assert [i["kind"] for i in found[f"{BUNDLE}!logs.txt"]] == ["log"]
    assert {i["table"] for i in found[f"{BUNDLE}!workspace/workspace.json"]} >= {
        "workspaces",
        "workspace_builds",
        "provisioner_jobs",
        "workspace_resources",
    }
    [agent] = found[f"{BUNDLE}!agent/agent.json"]
    assert agent["table"] == "workspace_agents" and "lifecycle created" in agent["note"]
    [manifest] = found[f"{BUNDLE}!agent/manifest.json"]
    assert manifest["kind"] == "agent_log" and row_b in manifest["note"]
    [nested] = found[f"{BUNDLE}!workspace/template_file.zip"]
    assert nested["kind"] == "skipped" and "not expanded" in nested["note"]
    assert len(found) == len(files) + 1  # every member listed, and the zip itself
    assert all(len(i["sha256"]) == 64 for lines in found.values() for i in lines)

    survived = next(f for f in doc(tmp_path / "out")["findings"] if f["rule"] == SURVIVED)
    ev = survived["evidence"]["rule"]
    assert ev["earlier_agent_ids"] == [scn.meta["rows"]["A"]]
    assert ev["process_began_by"] == "process start"
    assert ev["process_first_line"] == f"{BUNDLE}!agent/logs.txt:1"
    assert ev["lifecycle_reports_after_attach"] == 0
    # The manifest's line sits in agent/logs.txt's stream, after its last line.
    lines = {(ln["source"], ln["kind"]) for ln in survived["evidence"]["log_lines"]}
    assert (f"{BUNDLE}!agent/manifest.json", "manifest") in lines

    outputs = all_text(tmp_path / "out")
    env = next(a for a in scn.tables["workspace_agents"] if a["id"] == row_b)
    for secret in env["environment_variables"].values():
        assert secret in files["agent/manifest.json"].decode()  # planted ...
        assert secret not in outputs  # ... and never copied
    assert list(private_tmp.iterdir()) == []  # the unpacked bundle is gone


def test_healthy_bundle_gives_no_findings(cli, scn, tmp_path):
    path = write_bundle(healthy_bundle(scn), tmp_path / "coder-support-1778853760.zip")
    r = cli("analyze", path, "--out", tmp_path / "out")
    assert r.exit_code == ExitCode.OK, r.stdout + r.stderr
    assert doc(tmp_path / "out")["findings"] == []
    loads = {t["path"]: t for t in doc(tmp_path / "out")["coverage"]["tables"]}
    startup = loads["coder-support-1778853760.zip!agent/startup_logs.txt"]
    assert (startup["table"], startup["rows_loaded"], startup["rejected"]) == (
        "workspace_agent_logs",
        6,
        0,
    )


def test_a_2023_bundle_with_workspace_agent_json(cli, scn, tmp_path):
    files = incident_bundle(scn, layout="2023")
    assert "workspace/agent.json" in files and "agent/agent.json" not in files
    path = write_bundle(files, tmp_path / BUNDLE)
    r = cli("analyze", path, "--out", tmp_path / "out")
    row_b = scn.meta["rows"]["B"]
    assert flagged(tmp_path / "out") == [(STUCK, row_b), (SURVIVED, row_b)], r.stderr
    [agent] = inputs(tmp_path / "out")[f"{BUNDLE}!workspace/agent.json"]
    assert agent["table"] == "workspace_agents"


# --------------------------------------------------------------------------------------
# Together with table exports and loose logs


def test_bundle_with_table_exports_and_loose_logs(cli, scn, tmp_path):
    """The dump was exported the evening before the bundle was taken: the bundle's copy of
    row B (connected more recently) is the one kept; earlier builds come from the dump."""
    row_b = scn.meta["rows"]["B"]
    yesterday = datetime(2026, 5, 14, 18, 0, tzinfo=UTC)
    for row in scn.tables["workspace_agents"]:
        if row["id"] == row_b:
            stale = dict(row, last_connected_at=yesterday, updated_at=yesterday)
    older = type(scn)(
        tables={
            **scn.tables,
            "workspace_agents": [
                stale if a["id"] == row_b else a for a in scn.tables["workspace_agents"]
            ],
        },
        logs={},
    )
    write_dump(older, tmp_path / "dump")
    logs = tmp_path / "logs"
    for host in ("web-pod", "ml-train-vm"):  # ml-train's log also collected by hand
        (logs / host).mkdir(parents=True)
        (logs / host / "coder-agent.log").write_text(
            "".join(ln + "\n" for ln in scn.logs[f"{host}/coder-agent.log"])
        )
    path = write_bundle(incident_bundle(scn), tmp_path / BUNDLE)
    r = cli("analyze", tmp_path / "dump", path, logs, "--out", tmp_path / "out")
    assert r.exit_code == ExitCode.FINDINGS, r.stderr
    found = doc(tmp_path / "out")
    mine = [f for f in found["findings"] if f["agent_id"] == row_b]
    assert sorted(f["rule"] for f in mine if f["rule"] in (STUCK, SURVIVED)) == [STUCK, SURVIVED]
    survived = next(f for f in mine if f["rule"] == SURVIVED)
    assert survived["evidence"]["rule"]["process_origin_build"] == 1  # build #1 from the dump
    assert survived["evidence"]["agent"]["last_connected_at"] == "2026-05-15T14:02:07.900000Z"
    notes = " ".join(found["coverage"]["notes"])
    assert f"{BUNDLE}!agent/agent.json" in notes and "the latest time recorded" in notes


def test_dedupe_keeps_the_latest_copy_and_fills_what_it_lacks(con, tmp_path):
    agent = "a1000000-0000-4000-8000-000000000001"
    res = "c1000000-0000-4000-8000-000000000001"
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "workspace_agents.csv").write_text(
        "id,created_at,updated_at,name,resource_id,auth_token,architecture,operating_system,"
        "lifecycle_state,last_connected_at,motd_file\n"
        f"{agent},2026-05-14 06:00:00-04,2026-05-14 07:00:00-04,main,{res},"
        "f0000000-0000-4000-8000-00000000000f,amd64,linux,created,2026-05-14 07:00:00-04,"
        "/etc/motd\n"
    )
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "workspace_agents.csv").write_text(
        "id,created_at,updated_at,name,resource_id,architecture,operating_system,"
        "lifecycle_state,last_connected_at\n"
        f'"{agent}","2026-05-14T10:00:00Z","2026-05-15T14:00:00Z","main","{res}","amd64",'
        '"linux","created","2026-05-15T14:00:00Z"\n'
    )
    export = classify(tmp_path / "db" / "workspace_agents.csv", "db/workspace_agents.csv")
    from_bundle = classify(tmp_path / "b" / "workspace_agents.csv", "x.zip!agent/agent.json")
    create_tables(con)
    loads = [load_table(con, s, "k", n) for n, s in enumerate([export, from_bundle])]
    notes = _dedupe(con, loads, {"x.zip!agent/agent.json"})
    row = con.execute(
        "SELECT f.path, last_connected_at, auth_token_hash IS NOT NULL, motd_file "
        "FROM workspace_agents JOIN table_files f ON f.file = __file"
    ).fetchall()
    assert row == [
        ("x.zip!agent/agent.json", datetime(2026, 5, 15, 14, 0, tzinfo=UTC), True, "/etc/motd")
    ]
    assert "1 duplicate row(s)" in notes[0]


# --------------------------------------------------------------------------------------
# Mapping details


def test_startup_logs_are_rows_of_the_agent_and_bad_lines_are_rejected(con, scn, tmp_path):
    files = healthy_bundle(scn)
    files["agent/startup_logs.txt"] += b"garbage that is not a log line\n"
    path = write_bundle(files, tmp_path / "coder-support-1778853760.zip")
    [src] = member_sources(path, tmp_path)["agent/startup_logs.txt"]
    rows = list(csv.DictReader(io.StringIO(src.path.read_text())))
    agent = json.loads(files["agent/agent.json"])["id"]
    assert {r["agent_id"] for r in rows} == {agent}
    assert [r["id"] for r in rows] == [str(-n) for n in range(1, 8)]
    assert rows[5]["output"] == "npm WARN deprecated inflight@1.0.6: leaks memory"
    create_tables(con)
    load = load_table(con, src, "k", 0)
    assert (load.rows_loaded, load.rejected) == (6, 1)
    assert "created_at: cannot read garbage" in load.samples[0].reason


def test_tabwriter_pads_like_go():
    text = tabwriter(["t\t[info]\tok", "t\t[debug]\ta\tb", "t\t[info]\tlast"])
    assert text == "t [info]  ok\nt [debug] a b\nt [info]  last\n"


def test_agent_scripts_and_legacy_agent_fields(tmp_path, scn):
    files = incident_bundle(scn)
    agent = json.loads(files["agent/agent.json"])
    agent.pop("logs_length")
    agent["startup_logs_length"] = 17
    agent["scripts"] = [
        {
            "id": "5c000000-0000-4000-8000-000000000005",
            "log_source_id": "50000000-0000-4000-8000-000000000005",
            "script": "export SECRET_TOKEN=abc",
            "timeout": 300_000_000_000,
            "run_on_start": True,
            "start_blocks_login": True,
            "display_name": "Startup",
        }
    ]
    files["agent/agent.json"] = json.dumps(agent).encode()
    made = member_sources(write_bundle(files, tmp_path / BUNDLE), tmp_path)["agent/agent.json"]
    by_table = {s.table: list(csv.DictReader(io.StringIO(s.path.read_text()))) for s in made}
    assert by_table["workspace_agents"][0]["logs_length"] == "17"
    [script] = by_table["workspace_agent_scripts"]
    assert script["timeout_seconds"] == "300" and script["workspace_agent_id"] == agent["id"]
    assert "script" not in script and "SECRET_TOKEN" not in made[0].path.read_text()


def test_collection_time_without_the_usual_file_name(tmp_path, scn):
    files = incident_bundle(scn)
    renamed = write_bundle(files, tmp_path / "ml-train-bundle.zip")
    [m] = member_sources(renamed, tmp_path / "a")["agent/manifest.json"]
    assert "from the last line of cli_logs.txt" in m.note
    assert m.path.read_text().startswith("2026-05-15 14:02:10.900 [info]  fetched manifest")
    timed = tmp_path / "timed.zip"
    with zipfile.ZipFile(timed, "w") as z:
        for name, data in files.items():
            z.writestr(zipfile.ZipInfo(name, (2026, 5, 15, 14, 3, 0)), data)
    [m] = member_sources(timed, tmp_path / "b")["agent/manifest.json"]
    assert "2026-05-15 14:03:00 UTC, from the zip members' times" in m.note


def test_bad_json_is_an_error_line_and_the_rest_is_read(cli, scn, tmp_path):
    files = incident_bundle(scn)
    files["agent/agent.json"] = b'{\n    "id": "caaf64e4",\n'
    files["agent/manifest.json"] = b"[1, 2]\n"
    path = write_bundle(files, tmp_path / BUNDLE)
    r = cli("analyze", path, "--out", tmp_path / "out")
    found = inputs(tmp_path / "out")
    [agent] = found[f"{BUNDLE}!agent/agent.json"]
    assert agent["kind"] == "error"
    assert agent["note"].startswith("not valid JSON (Expecting")
    assert "expected codersdk.WorkspaceAgent" in agent["note"]
    [manifest] = found[f"{BUNDLE}!agent/manifest.json"]
    assert manifest["kind"] == "error" and "JSON list where agentsdk.Manifest" in manifest["note"]
    # workspace.json still gives the agent's row (as the server listed it in the build).
    assert (STUCK, scn.meta["rows"]["B"]) in flagged(tmp_path / "out"), r.stderr


# --------------------------------------------------------------------------------------
# Safe reading


def _raw_zip(path: Path, members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for info, data in members:
            z.writestr(info, data)
    return path


def test_escaping_members_are_refused_and_nothing_is_written_outside(cli, scn, tmp_path):
    link = zipfile.ZipInfo("agent/link")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    evil = [
        ("../../evil.txt", b"x"),
        ("/tmp/evil-abs.txt", b"x"),
        ("agent/..\\..\\evil-win.txt", b"x"),
        (link, b"/etc/passwd"),
    ]
    path = _raw_zip(tmp_path / BUNDLE, [*incident_bundle(scn).items(), *evil])
    r = cli("analyze", path, "--out", tmp_path / "out")
    assert r.exit_code == ExitCode.FINDINGS, r.stderr
    found = inputs(tmp_path / "out")
    notes = {p.split("!", 1)[1]: v[0]["note"] for p, v in found.items() if "!" in p}
    assert (
        notes["../../evil.txt"] == "refused: a path that climbs out of the archive (..); not read"
    )
    assert notes["/tmp/evil-abs.txt"] == "refused: an absolute path; not read"
    assert notes["agent/..\\..\\evil-win.txt"].startswith("refused: a path that climbs")
    assert notes["agent/link"] == "refused: a symbolic link; not read"
    assert "4 refused or bad" in found[BUNDLE][0]["note"]
    for p in (tmp_path.parent / "evil.txt", tmp_path / "evil.txt", Path("/tmp/evil-abs.txt")):
        assert not p.exists()
    assert not list(tmp_path.rglob("evil*"))


def test_zip_bomb_and_lying_headers_are_refused(scn, tmp_path):
    files = incident_bundle(scn)
    files["agent/logs.txt"] = b"\0" * (20 * 1024 * 1024)  # ~1000:1
    path = write_bundle(files, tmp_path / BUNDLE)
    [logs] = member_sources(path, tmp_path / "a")["agent/logs.txt"]
    assert logs.kind == "error"
    assert "declares a compression ratio of" in logs.note and "zip bomb" in logs.note

    # Declared sizes that lie: smaller than the data (caught by the CRC), or larger than allowed.
    files = incident_bundle(scn)
    for declared, expect in ((1000, "cannot be read: Bad CRC-32"), (300 << 20, "declares")):
        data = bytearray(write_bundle(files, tmp_path / "x.zip").read_bytes())
        _patch_size(data, b"agent/logs.txt", declared)
        (tmp_path / BUNDLE).write_bytes(bytes(data))
        made = member_sources(tmp_path / BUNDLE, tmp_path / f"s{declared}")
        [logs] = made["agent/logs.txt"]
        assert logs.kind == "error" and expect in logs.note, logs.note
        assert made["agent/agent.json"][0].kind == "table"  # the rest is read


def _patch_size(data: bytearray, name: bytes, size: int) -> None:
    """Set a member's uncompressed size in its local header and central directory entry."""
    at = data.find(b"PK\x03\x04")
    while at >= 0:
        (nlen,) = struct.unpack_from("<H", data, at + 26)
        if data[at + 30 : at + 30 + nlen] == name:
            struct.pack_into("<I", data, at + 22, size)
        at = data.find(b"PK\x03\x04", at + 4)
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        (nlen,) = struct.unpack_from("<H", data, at + 28)
        if data[at + 46 : at + 46 + nlen] == name:
            struct.pack_into("<I", data, at + 24, size)
        at = data.find(b"PK\x01\x02", at + 4)


def test_expansion_is_counted_as_it_streams_not_taken_from_headers(tmp_path, monkeypatch):
    """Whatever a header says, the bytes a member actually produces are capped."""

    class Liar:
        def open(self, info):
            return io.BytesIO(b"a" * (3 * 1024 * 1024))

    info = zipfile.ZipInfo("agent/logs.txt")
    info.file_size, info.compress_size = 10, 10  # what the header claims
    with pytest.raises(Refused, match="expands more than 100:1"):
        _read_member(Liar(), info, _Budget(), None)  # type: ignore[arg-type]
    info.compress_size = 1 << 30
    monkeypatch.setattr(bundle_mod, "MAX_MEMBER_BYTES", 2 * 1024 * 1024)
    with pytest.raises(Refused, match="expands past the 2 MiB limit"):
        _read_member(Liar(), info, _Budget(), tmp_path / "out")
    with pytest.raises(Refused, match="the bundle expands past its 1,024 MiB limit"):
        _read_member(Liar(), info, _Budget(left=1024 * 1024), None)


def test_corrupt_member_is_an_error_and_the_rest_is_read(scn, tmp_path):
    data = bytearray(write_bundle(incident_bundle(scn), tmp_path / "x.zip").read_bytes())
    name = b"agent/logs.txt"
    at = data.find(b"PK\x03\x04")
    while data[at + 30 : at + 30 + len(name)] != name:
        at = data.find(b"PK\x03\x04", at + 4)
    start = at + 30 + len(name)
    data[start + 100 : start + 400] = bytes(300)  # damage the deflate stream
    (tmp_path / BUNDLE).write_bytes(bytes(data))
    made = member_sources(tmp_path / BUNDLE, tmp_path)
    [logs] = made["agent/logs.txt"]
    assert logs.kind == "error" and logs.note.startswith("cannot be read: ")
    assert made["agent/manifest.json"][0].kind == "agent_log"


def test_truncated_bundle_alone_exits_2_naming_it(cli, scn, tmp_path):
    data = write_bundle(incident_bundle(scn), tmp_path / "full.zip").read_bytes()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / BUNDLE).write_bytes(data[: len(data) // 2])
    r = cli("analyze", tmp_path / "in", "--out", tmp_path / "out")
    assert r.exit_code == ExitCode.BAD_INPUT
    assert "none is a Coder table export" in r.stderr
    assert f"{BUNDLE}: zip archive that cannot be read (named like a coder support bundle)" in (
        r.stderr
    )
    assert not (tmp_path / "out").exists()


def test_bundle_with_nothing_usable_exits_2(cli, tmp_path):
    path = _raw_zip(
        tmp_path / BUNDLE,
        [("agent/agent.json", b"null\n"), ("cli_logs.txt", b""), ("../x", b"x")],
    )
    r = cli("analyze", path, "--out", tmp_path / "out")
    assert r.exit_code == ExitCode.BAD_INPUT
    assert "agent/agent.json: JSON null: the support run could not fetch" in r.stderr
    assert "../x: refused" in r.stderr


def test_other_archives_keep_a_note(tmp_path):
    _raw_zip(tmp_path / "dump.zip", [("db/workspace_agents.csv", b"id\n")])
    (tmp_path / "logs.tar").write_bytes(b"x" * 257 + b"ustar" + b"\0" * 300)
    notes = {s.display.split("/", 1)[1]: (s.kind, s.note) for s in discover([tmp_path])}
    assert notes["dump.zip"] == (
        "unrecognised",
        "zip archive, not a coder support bundle: unpack it and pass the directory",
    )
    assert notes["logs.tar"] == ("unrecognised", "tar archive: unpack it and pass the directory")


def test_a_bundle_zipped_inside_a_folder_is_recognised(scn, tmp_path):
    files = incident_bundle(scn)
    path = _raw_zip(tmp_path / "b.zip", [(f"coder-support/{k}", v) for k, v in files.items()])
    made = member_sources(path, tmp_path)
    assert made["coder-support/agent/agent.json"][0].table == "workspace_agents"
    assert made["coder-support/agent/logs.txt"][0].kind == "agent_log"


def test_committed_sample_bundle_is_current(scn, tmp_path):
    committed = ROOT / "sample_data" / "support-bundle" / BUNDLE
    fresh = write_bundle(incident_bundle(scn), tmp_path / BUNDLE)
    assert committed.read_bytes() == fresh.read_bytes(), "run scripts/make_sample_bundle.py"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3)
    ),
    max_leaves=12,
)
SHAPES = {
    "id": st.just("caaf64e4-c05d-4e87-bf8d-0dcf014d84e3"),
    "agent_id": st.just("caaf64e4-c05d-4e87-bf8d-0dcf014d84e3"),
    "latest_build": st.fixed_dictionaries({}, optional={"resources": JSON, "job": JSON}),
    "scripts": JSON,
    "workspaces": st.lists(JSON, max_size=2),
}


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    member=st.sampled_from(sorted(bundle_mod.READ)),
    content=st.binary(max_size=200)
    | JSON.map(lambda v: json.dumps(v).encode())
    | st.fixed_dictionaries({}, optional=SHAPES).map(lambda v: json.dumps(v).encode()),
)
def test_any_member_content_is_read_or_reported_never_a_crash(scn, tmp_path, member, content):
    files = incident_bundle(scn)
    files[member] = content
    path = write_bundle(files, tmp_path / BUNDLE)
    dest = Path(tempfile.mkdtemp(dir=tmp_path))
    made = read_bundle(classify(path, path.name), dest / "b")
    shown = {s.display.split("!", 1)[1] for s in made}
    assert shown == set(files)
    assert all(
        s.kind in ("table", "agent_log", "log", "info", "skipped", "error", "empty") for s in made
    )
