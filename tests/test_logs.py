"""Agent log parsing: every line accounted for, entries and their trailing field blocks."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from forensics.engine import analyze
from forensics.ingest import logs
from forensics.ingest.logs import load_logs, parse_logs, stream_of
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
    [load], con = parse_sources(tmp_path, [source(path)])
    return load, con


def parse_sources(tmp_path, sources):
    """Parse and load log files the way `analyze` does; returns their accounting and the db."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    numbered = list(enumerate(sources))
    loads = parse_logs(con, work, numbered)
    load_logs(con, [(n, src, load) for (n, src), load in zip(numbered, loads, strict=True)])
    return loads, con


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
    assert rows[1][3:6] == (None, None, None)  # noise: no rule reads its text
    assert rows[3][4] == "set lifecycle state"
    assert rows[3][5].startswith('current={"state":"starting"')


def test_logger_names_and_colons_in_messages(tmp_path):
    text = (
        b"2026-05-14 13:00:00.000 [info]  agent.net: connecting to coderd  url=https://c.example\n"
        b'2026-05-14 13:00:01.000 [erro]  agent.script: startup script "a: b" failed  token=s3cret\n'
        b"2026-05-14 13:00:02.000 [warn]  agent: run exited with error ...\n"
        b"    error= boom\n"
    )
    _, con = parse(tmp_path, text)
    rows = [r[2:6] for r in events(con)]
    assert rows == [
        ("info", "agent.net", "connecting to coderd", "url=https://c.example"),
        ("error", "agent.script", 'startup script "a: b" failed', "token=<redacted>"),
        ("warn", "agent", "run exited with error", ""),
    ]


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
    error = events(con)[4]
    assert error[4] == "run exited with error"
    assert "\r" not in error[6] and error[6].endswith("Error: build is outdated")


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
    [load], _ = parse_sources(tmp_path, [source(path)])
    assert load.problem == "" and load.lines == 20 and load.entries == 12


# Format A: slog before mid-2023 (tab-separated, JSON fields, upper-case levels), from an
# agent that was upgraded to format B without its log file being rotated.
OLD_AND_NEW = (
    "2023-03-10 11:08:20.001 [INFO]\t<./cli/agent.go:120>\tagent.workspaceAgent.func2\t"
    'starting agent\t{"url": "https://coder.example.com", "auth": "token", "version": "v0.19.2"}\n'
    "2023-03-10 11:08:20.500 [INFO]\t<./agent/agent.go:250>\t(*agent).run\tfetched metadata\n"
    "2023-03-10 11:08:20.510 [DEBUG]\t<./agent/agent.go:400>\t(*agent).setLifecycle\t"
    'set lifecycle state\t{"state": "starting", "previous": "created"}\n'
    "2023-03-10 11:08:25.030 [DEBUG]\t(net.tailnet)\t<./codersdk/agentsdk/agentsdk.go:194>\t"
    '(*Client).Listen.func1\tgot coordinate pong\t{"took": "498.265µs", "token": "s3cr3t"}\n'
    "2023-03-10 11:09:00.000 [WARN]\t<./agent/agent.go:199>\t(*agent).runLoop\t"
    "run exited with error ...\n"
    '"error": GET https://coder.example.com/api/v2/workspaceagents/me/metadata: unexpected '
    "status code 401: Workspace agent not authorized.\n"
    "         Error: unauthorized\n"
    # pasted from a browser: tabs became spaces
    "2023-03-10 11:09:01.000 [DEBUG] <./codersdk/agentsdk/agentsdk.go:194>   "
    '(*Client).Listen.func1  got coordinate pong     {"took": "1.2ms"}\n'
    "2023-07-31 09:00:00.000 [info]  agent is starting now  url=https://coder.example.com"
    "  auth=token  version=v2.0.2\n"
)

JSON_SINK = (
    '{"ts":"2024-05-12T14:25:37.043512Z","level":"INFO","msg":"agent is starting now",'
    '"caller":"/src/cli/agent.go:291","func":"cli.workspaceAgent.func1","logger_names":[],'
    '"fields":{"url":"https://coder.example.com","auth":"token","version":"v2.8.3"}}\n'
    '{"ts":"2024-05-12T16:25:38.5+02:00","level":"INFO","msg":"fetched manifest",'
    '"logger_names":[],"fields":{"manifest":{"agent_id":"5e1f0c2a-0000-4000-8000-000000000001",'
    '"workspace_id":"7b2c0000-0000-4000-8000-000000000002",'
    '"environment_variables":{"GIT_TOKEN":"ghp_topsecret"}}}}\n'
    '{"ts":"2024-05-12T14:25:39Z","level":"DEBUG","msg":"ssh connection",'
    '"logger_names":["ssh-server"],"fields":{"remote_addr":"100.64.0.2:5123","user":"a b"}}\n'
    '{"not": "a log object"}\n'
)


def test_old_slog_format_is_read_and_its_fields_rendered_like_new(tmp_path):
    load, con = parse(tmp_path, OLD_AND_NEW.encode())
    assert load.lines == 9
    assert (load.entries, load.continuation, load.unparsed) == (7, 2, 0)
    assert load.formats == {logs.HUMAN_V1: 6, logs.HUMAN: 1}
    rows = events(con)
    assert rows[0][1:5] == ("11:08:20.001", "info", None, "starting agent")
    assert "version=v0.19.2" in rows[0][5] and "auth=token" in rows[0][5]
    assert rows[2][4:6] == ("set lifecycle state", "state=starting  previous=created")
    assert rows[3][3:5] == ("net.tailnet", "got coordinate pong")
    assert "s3cr3t" not in rows[3][5]
    assert rows[4][4] == "run exited with error" and "unexpected status code 401" in rows[4][6]
    assert rows[5][2:5] == ("debug", None, "got coordinate pong")
    assert rows[5][5] == "took=1.2ms"
    assert load.version_range == "v0.19.2 – v2.0.2 (process start lines)"


def test_json_sink_is_read_in_utc_with_manifest_ids_and_no_secrets(tmp_path):
    load, con = parse(tmp_path, JSON_SINK.encode(), name="coder-agent.json")
    assert (load.entries, load.unparsed) == (3, 1)
    assert load.samples[0][0] == 4
    rows = events(con)
    assert rows[0][1:5] == ("14:25:37.043", "info", None, "agent is starting now")
    assert rows[1][1] == "14:25:38.500"  # +02:00 turned into UTC
    assert "agent_id=5e1f0c2a-0000-4000-8000-000000000001" in rows[1][5]
    assert rows[2][3:6] == (
        "ssh-server",
        "ssh connection",
        'remote_addr=100.64.0.2:5123  user="a b"',
    )
    dump = str(con.execute("SELECT list(fields) FROM log_events").fetchall())
    assert "ghp_topsecret" not in dump
    assert load.formats == {logs.JSON: 3}
    assert load.version_range == "v2.8.3 (process start lines)"


@pytest.mark.parametrize(
    ("name", "stream"),
    [
        ("coder-agent.log.1", "host/coder-agent.log"),
        ("coder-agent (1).log", "host/coder-agent.log"),
        ("coder-agent.log.bak", "host/coder-agent.log"),
        ("coder-agent-init.log", "host/coder-agent-init.log"),
    ],
)
def test_copies_made_by_hand_join_their_stream(tmp_path, name, stream):
    path = tmp_path / name
    path.write_text("x")
    src = source(path)
    src.display = f"host/{name}"
    assert stream_of(src) == stream


SAMPLE = Path(__file__).resolve().parent.parent / "sample_data" / "incident"


def _findings(result):
    return sorted(
        (f.rule, f.workspace_name, f.build_number, f.fingerprint) for f in result.findings
    )


def test_the_same_log_collected_twice_is_read_once(tmp_path):
    """A host's log copied again into its own directory, and once more into another directory
    (say, by a second person collecting): every entry counted once, the same findings."""
    dump = tmp_path / "incident"
    shutil.copytree(SAMPLE, dump)
    log = dump / "logs" / "ml-train-vm" / "coder-agent.log"
    shutil.copy(log, log.with_name("coder-agent.log.1"))
    (dump / "logs" / "collected-again").mkdir()
    shutil.copy(log, dump / "logs" / "collected-again" / "coder-agent.log")
    result = analyze([dump])
    assert _findings(result) == _findings(analyze([SAMPLE]))
    copies = [
        lg
        for lg in result.logs
        if lg.path.endswith(("ml-train-vm/coder-agent.log", ".log.1", "again/coder-agent.log"))
    ]
    assert len(copies) == 3 and len({lg.stream for lg in copies}) == 1
    assert sorted(lg.duplicates for lg in copies) == [0, copies[0].entries, copies[0].entries]
    assert any(
        "collected-again/coder-agent.log" in n and "one stream" in n for n in result.model_notes
    )
    [clock] = [c for c in result.clocks if c["stream"] == copies[0].stream]
    assert clock["pairs"] == 2  # the copies add no pairs of their own


def test_overlapping_rotated_copies_keep_each_entry_once(tmp_path):
    # Two copies of one growing log taken an hour apart: the later holds the earlier's lines
    # and more. Repeated identical lines within a file stay (they happened twice).
    head = REAL_LINES.encode()
    repeat = b"2026-05-14 13:05:02.500 [info]  ssh-server: ssh connection  remote_addr=1.2.3.4:1\n"
    first = head + repeat + repeat
    later = first + b"2026-05-14 14:00:00.000 [info]  disconnected from coderd\n"
    sources = []
    for name, data in (("coder-agent.log", later), ("coder-agent.log.1", first)):
        path = tmp_path / name
        path.write_bytes(data)
        src = source(path)
        src.display = f"host/{name}"
        sources.append(src)
    [newer, older], con = parse_sources(tmp_path, sources)
    assert older.duplicates == older.entries == 8
    assert newer.duplicates == 0
    assert con.execute("SELECT count(*) FROM log_events").fetchone()[0] == newer.entries == 9
    repeats = "SELECT count(*) FROM log_events WHERE ts = '2026-05-14 13:05:02.5+00'"
    assert con.execute(repeats).fetchone()[0] == 3  # REAL_LINES' own line, then the two


EVERY_RENDERING = [
    *REAL_LINES.encode().split(b"\n"),
    *OLD_AND_NEW.encode().split(b"\n"),
    *JSON_SINK.encode().split(b"\n"),
]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=80),
            st.sampled_from(EVERY_RENDERING),
            st.sampled_from([b'{"ts": 1, "msg": []}', b"\x1b[31m", b"\r", b"\x00" * 5]),
            st.text(max_size=40).map(str.encode),
        ),
        max_size=30,
    )
)
def test_mixed_renderings_and_damage_every_line_counts_once(tmp_path_factory, chunks):
    data = b"\n".join(chunks)
    assume(not data.startswith(b"\x1f\x8b"))
    tmp = tmp_path_factory.mktemp("mixed")
    load, con = parse(tmp, data)
    expected_lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    assert load.lines == expected_lines
    assert load.entries + load.continuation + load.blank + load.unparsed == load.lines
    assert sum(load.formats.values()) == load.entries
    assert con.execute("SELECT count(*) FROM log_events").fetchone()[0] == load.entries


def test_a_line_longer_than_64_kib_is_one_entry(tmp_path):
    long_value = "x" * 200_000
    text = (
        REAL_LINES + f"2026-05-14 13:06:00.000 [warn]  run exited with error  error={long_value}\n"
    )
    load, con = parse(tmp_path, text.encode())
    assert load.lines == 11 and load.entries == 7
    [(n,)] = con.execute("SELECT length(fields) FROM log_events WHERE line = 11").fetchall()
    assert n == len("error=") + 200_000


def test_a_file_read_from_a_cleaned_copy_gives_the_same_events(tmp_path):
    # DuckDB reads a clean file directly; one with CRLF line ends, a stray carriage return or
    # invalid UTF-8 is read from a cleaned copy. Apart from the damaged line, same events.
    clean = REAL_LINES.encode()
    damaged = clean.replace(b"\n", b"\r\n").replace(b"not slog output", b"not slog\r\xffoutput")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _, con_clean = parse(tmp_path / "a", clean)
    load, con_damaged = parse(tmp_path / "b", damaged)
    assert events(con_damaged) == events(con_clean)
    assert load.samples == [(9, "this line is not slog\ufffd\ufffdoutput")]
    assert not list((tmp_path / "b" / "work").iterdir())  # the copy is removed


def test_noise_entries_keep_no_text_but_are_told_apart(tmp_path):
    # Entries no rule reads (no kind, no field block) are stored without their text; their
    # hash still tells two different lines at the same time apart.
    text = (
        b"2026-05-14 13:00:00.000 [debu]  net.tailnet: one  a=1\n"
        b"2026-05-14 13:00:00.000 [debu]  net.tailnet: two  a=1\n"
    )
    _, con = parse(tmp_path, text)
    rows = con.execute("SELECT message, fields, h FROM log_events ORDER BY line").fetchall()
    assert [r[:2] for r in rows] == [(None, None), (None, None)]
    assert rows[0][2] != rows[1][2]


@pytest.mark.parametrize("damaged", [False, True])
def test_files_read_in_one_batch_are_numbered_as_if_alone(tmp_path, damaged):
    # Files are read in batches, numbered through the batch and then within each file; a file
    # DuckDB cannot read as is (CRLF) sends its batch back to file-by-file reading. Each
    # file's lines, process numbers and accounting are its own either way.
    other_day = REAL_LINES.replace("2026-05-14", "2026-05-15")  # not a copy of the first
    second = other_day.encode().replace(b"\n", b"\r\n" if damaged else b"\n")
    third = REAL_LINES.replace("2026-05-14", "2026-05-16").encode()[:-1]  # no final newline
    texts = [REAL_LINES.encode(), second, b"\n" * 3, third]
    sources = []
    for n, text in enumerate(texts):
        path = tmp_path / f"host{n}" / "coder-agent.log"
        path.parent.mkdir()
        path.write_bytes(text)
        sources.append(source(path))
    (tmp_path / "together").mkdir()
    together, con = parse_sources(tmp_path / "together", sources)
    for n, src in enumerate(sources):
        (tmp_path / f"alone{n}").mkdir()
        [alone], con_alone = parse_sources(tmp_path / f"alone{n}", [src])
        assert together[n] == alone
        assert (
            con.execute(
                "SELECT line, ts, kind, starts, instances, block FROM log_events "
                f"WHERE file_id = {n} ORDER BY line"
            ).fetchall()
            == con_alone.execute(
                "SELECT line, ts, kind, starts, instances, block FROM log_events ORDER BY line"
            ).fetchall()
        )
    assert [ld.lines for ld in together] == [10, 10, 3, 10]


@pytest.mark.parametrize("data", [b"\r\n", b"\rabc\n", b"\r"])
def test_a_carriage_return_first_in_the_file_is_not_a_line_break(tmp_path, data):
    # DuckDB's reader would take it for one; such a file is read from a cleaned copy.
    load, _ = parse(tmp_path, data)
    assert load.lines == 1


def test_log_times_are_utc_whatever_the_machines_time_zone(tmp_path, monkeypatch):
    # Files are read on cursors, which start in the machine's time zone unless told otherwise.
    import time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        _, con = parse(tmp_path, REAL_LINES.encode())
        [(ts,)] = con.execute(
            "SELECT strftime(ts AT TIME ZONE 'UTC', '%H:%M:%S') FROM log_events WHERE line = 1"
        ).fetchall()
    finally:
        monkeypatch.undo()
        time.tzset()
    assert ts == "13:00:00"


def test_batches_give_every_worker_several_and_put_gzip_first(tmp_path, monkeypatch):
    # Small logs are cut into more, smaller batches, so that one worker is not left holding the
    # last big one while the other waits; gzip'd files are read first, in batches of their own.
    monkeypatch.setattr(logs, "MIN_BATCH_BYTES", 64 * 1024)
    line = b"2026-05-14 13:00:00.130 [debu]  net.tailnet: wgengine: Reconfig: configuring router\n"
    numbered = []
    for n in range(40):
        path = tmp_path / f"host{n}" / ("coder-agent.log.gz" if n % 10 == 3 else "coder-agent.log")
        path.parent.mkdir()
        text = line * 1200  # about 100 kB
        path.write_bytes(gzip.compress(text, mtime=0) if path.suffix == ".gz" else text)
        numbered.append((n, source(path)))
    total = sum(logs._uncompressed_size(src) for _, src in numbered)
    for workers in (1, 2):
        batches = logs._batches(numbered, workers)
        limit = total // (workers * logs.BATCHES_PER_WORKER)
        gzipped = [b for b in batches if b[0][1].compressed]
        assert batches[: len(gzipped)] == gzipped  # gzip'd batches first
        assert all(len({src.compressed for _, src in b}) == 1 for b in batches)
        order = [n for b in batches for n, _ in b]
        assert order == [n for n, s in numbered if s.compressed] + [
            n for n, s in numbered if not s.compressed
        ]
        for b in batches:
            assert sum(logs._uncompressed_size(s) for _, s in b) <= limit
        assert len(batches) >= workers * logs.BATCHES_PER_WORKER
    assert len(logs._batches(numbered, 2)) > len(logs._batches(numbered, 1))
