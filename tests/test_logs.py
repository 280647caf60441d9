"""Agent log parsing: every line accounted for, entries and their trailing field blocks."""

from __future__ import annotations

import gzip

import duckdb
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from forensics.ingest import logs
from forensics.ingest.logs import load_logs, parse_log, stream_of
from tests.conftest import source

REAL_LINES = """\
2026-05-14 13:00:00.123 [info]  agent is starting now  url=https://coder.example.com  auth=google-instance-identity  version=v2.31.11
2026-05-14 13:00:00.130 [debu]  net.tailnet: wgengine: Reconfig: configuring router
2026-05-14 13:00:01.002 [info]  fetched manifest  manifest={"agent_id":"5e1f0c2a-0000-4000-8000-000000000001","workspace_id":"7b2c0000-0000-4000-8000-000000000002","environment_variables":{"GIT_TOKEN":"ghp_topsecret"}}
2026-05-14 13:00:01.010 [debu]  set lifecycle state  current={"state":"starting","changed_at":"2026-05-14T13:00:01.01Z"}  last={"state":"created","changed_at":"0001-01-01T00:00:00Z"}

2026-05-14 13:05:00.000 [warn]  run exited with error ...
    error= GET https://coder.example.com/api/v2/workspaceagents/me/rpc?version=2.4: unexpected status code 403: Agent trying to connect from non-latest build.
           \tError: build is outdated
this line is not slog output
2026-05-14 13:05:02.500 [info]  ssh-server: ssh connection  remote_addr=100.64.0.2:51234  token=abc123secret
"""


def parse(tmp_path, text: bytes, name="coder-agent.log", compress=False):
    path = tmp_path / name
    path.write_bytes(gzip.compress(text, mtime=0) if compress else text)
    src = source(path)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    load = parse_log(src, 0, work)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    load_logs(con, work, [(0, src, load)])
    return load, con


def events(con):
    return con.execute(
        "SELECT line, strftime(ts, '%H:%M:%S.%g'), level, logger, message, fields, block "
        "FROM log_events ORDER BY line"
    ).fetchall()


def test_every_line_is_accounted_for_once(tmp_path):
    load, _ = parse(tmp_path, REAL_LINES.encode())
    assert load.lines == 10
    assert (load.entries, load.continuation, load.blank, load.unparsed) == (6, 2, 1, 1)
    assert load.entries + load.continuation + load.blank + load.unparsed == load.lines
    assert load.samples == [(9, "this line is not slog output")]


def test_entries_are_split_into_level_logger_message_fields(tmp_path):
    _, con = parse(tmp_path, REAL_LINES.encode())
    rows = events(con)
    assert rows[0][:5] == (1, "13:00:00.123", "info", None, "agent is starting now")
    assert "auth=google-instance-identity" in rows[0][5]
    assert rows[1][3:5] == ("net.tailnet", "wgengine: Reconfig: configuring router")
    assert rows[3][4] == "set lifecycle state"
    assert rows[3][5].startswith('current={"state":"starting"')


def test_trailing_field_block_is_joined_onto_its_entry(tmp_path):
    _, con = parse(tmp_path, REAL_LINES.encode())
    line, _, level, _, message, _, block = events(con)[4]
    assert (line, level, message) == (6, "warn", "run exited with error")
    assert "403: Agent trying to connect from non-latest build." in block
    assert block.splitlines()[1].strip() == "Error: build is outdated"


def test_manifest_environment_and_tokens_never_stored(tmp_path):
    load, con = parse(tmp_path, REAL_LINES.encode())
    dump = str(con.execute("SELECT list(fields), list(block) FROM log_events").fetchall())
    assert "ghp_topsecret" not in dump
    assert "abc123secret" not in dump
    assert "agent_id=5e1f0c2a-0000-4000-8000-000000000001" in dump
    assert load.manifests == 1 and load.undecoded_manifests == 0


def test_crlf_ansi_gzip_and_missing_final_newline(tmp_path):
    text = REAL_LINES.replace("\n", "\r\n").rstrip("\r\n")
    text = text.replace("[info]  agent is", "[info]  \x1b[1magent is\x1b[0m")
    load, con = parse(tmp_path, text.encode(), name="coder-agent.log.gz", compress=True)
    assert load.lines == 10 and load.unparsed == 1
    first = events(con)[0]
    assert first[4] == "agent is starting now"
    last = events(con)[-1]
    assert last[4] == "ssh connection" and not last[5].endswith("\r")


def test_invalid_utf8_and_nul_bytes_do_not_stop_parsing(tmp_path):
    text = REAL_LINES.encode().replace(b"this line is not slog output", b"\x00\xff\xfe binary \x80")
    load, _ = parse(tmp_path, text)
    assert load.lines == 10 and load.entries == 6 and load.unparsed == 1


def test_blocks_split_across_read_boundaries(tmp_path, monkeypatch):
    # Many entries with field blocks, read in tiny blocks: the same result as one read.
    chunk = REAL_LINES.encode() * 50
    whole, con_whole = parse(tmp_path, chunk)
    monkeypatch.setattr(logs, "BLOCK_BYTES", 97)
    (tmp_path / "small").mkdir()
    small, con_small = parse(tmp_path / "small", chunk)
    assert (small.lines, small.entries, small.continuation, small.unparsed) == (
        whole.lines,
        whole.entries,
        whole.continuation,
        whole.unparsed,
    )
    assert events(con_small) == events(con_whole)


@pytest.mark.parametrize(
    ("display", "stream"),
    [
        ("host/coder-agent.log", "host/coder-agent.log"),
        ("host/coder-agent-2026-05-13T23-10-00.000.log.gz", "host/coder-agent.log"),
        ("host/coder-agent-2026-05-13T23-10-00.000.log", "host/coder-agent.log"),
        ("other/coder-agent.log", "other/coder-agent.log"),
    ],
)
def test_rotated_backups_join_their_stream(tmp_path, display, stream):
    path = tmp_path / display.split("/")[1]
    path.write_text("x")
    src = source(path)
    src.display = display
    assert stream_of(src) == stream


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=80),
            st.sampled_from(REAL_LINES.encode().split(b"\n")),
            st.just(b"    indented continuation"),
        ),
        max_size=30,
    )
)
def test_any_bytes_parse_without_crashing_and_every_line_counts(tmp_path_factory, chunks):
    data = b"\n".join(chunks)
    assume(not data.startswith(b"\x1f\x8b"))  # gzip magic: a corrupt gzip file, tested below
    tmp = tmp_path_factory.mktemp("prop")
    load, con = parse(tmp, data)
    expected_lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    assert load.lines == expected_lines
    assert load.entries + load.continuation + load.blank + load.unparsed == load.lines
    assert con.execute("SELECT count(*) FROM log_events").fetchone()[0] == load.entries


def test_truncated_gzip_keeps_what_decompressed(tmp_path):
    whole = gzip.compress(REAL_LINES.encode() * 200, mtime=0)
    load, _ = parse(
        tmp_path, whole[: len(whole) // 2], name="coder-agent-2026-05-13T23-10-00.000.log.gz"
    )
    assert load.lines > 100 and "stopped reading" in load.problem
    assert load.entries + load.continuation + load.blank + load.unparsed == load.lines


def test_complete_and_multi_member_gzip_read_without_problem(tmp_path):
    data = gzip.compress(REAL_LINES.encode(), mtime=0) + gzip.compress(REAL_LINES.encode(), mtime=0)
    path = tmp_path / "coder-agent-2026-05-13T23-10-00.000.log.gz"
    path.write_bytes(data)
    load = parse_log(source(path), 0, tmp_path)
    assert load.problem == "" and load.lines == 20 and load.entries == 12
