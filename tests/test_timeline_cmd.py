"""`forensics timeline WORKSPACE PATHS...` on the sample incident and on copies of it.

ml-train (sample_data/README.md): build #1 start, #2 stop, #3 start; one agent process since
build #1 served build #1's row and, after a 401 at the resume, build #3's row, which stays
`created`.
"""

from __future__ import annotations

import gzip
import json
import os
import pty
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forensics.cli import app
from forensics.errors import ExitCode
from forensics.synth import sample_scenario
from forensics.timeline_text import Event, clean, color_wanted, event_lines

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data" / "incident"
ROW_1, ROW_3 = "9a2c5625", "225c41c3"  # ml-train's agent rows of builds #1 and #3
WS_ID = "291bdc32-9e31-4e2a-b2a2-2dc1a9451d37"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
ROW = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})  ")
SKEW = 45  # seconds the skewed copy's ml-train host clock runs ahead


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def rows(stdout: str) -> list[str]:
    """The event lines of the text output (they start with a time)."""
    return [line for line in stdout.splitlines() if ROW.match(line)]


def cells(stdout: str) -> list[dict[str, str]]:
    """The event lines cut into their columns at the header's column positions."""
    header = next(line for line in stdout.splitlines() if line.startswith("TIME (UTC)"))
    at = {t: header.index(t) for t in ("SOURCE", "EVENT", "DETAIL")}
    out = []
    for line in rows(stdout):
        rest = line[at["DETAIL"] :]
        m = re.fullmatch(r"(.*?)\s{2,}(\S+:\d+)", rest)
        out.append(
            {
                "time": line[:23],
                "raw": line[25:48].strip() if "HOST CLOCK" in header else "",
                "source": line[at["SOURCE"] : at["EVENT"]].strip(),
                "event": line[at["EVENT"] : at["DETAIL"]].strip(),
                "detail": (m.group(1) if m else rest).strip(),
                "where": m.group(2) if m else "",
            }
        )
    return out


def index(events: list[dict[str, str]], source: str, event: str, detail: str = "") -> int:
    """The position of the one event from `source` named `event` whose detail has `detail`."""
    hits = [
        i
        for i, e in enumerate(events)
        if e["source"] == source and e["event"] == event and detail in e["detail"]
    ]
    assert len(hits) == 1, (source, event, detail, hits)
    return hits[0]


@pytest.fixture(scope="module")
def plain():
    result = invoke("timeline", "ml-train", SAMPLE)
    assert result.exit_code == ExitCode.OK, result.stderr
    return result


@pytest.fixture(scope="module")
def as_json():
    result = invoke("timeline", "ml-train", SAMPLE, "--json")
    assert result.exit_code == ExitCode.OK, result.stderr
    return result


@pytest.fixture(scope="module")
def export_copy(tmp_path_factory):
    """The sample's tables with web renamed to ml-train (two owners, one name) and api's name
    carrying a terminal escape sequence."""
    root = tmp_path_factory.mktemp("copy")
    shutil.copytree(SAMPLE / "db", root / "db")
    csv = root / "db" / "workspaces.csv"
    text = csv.read_text(encoding="utf-8")
    assert text.count(",web,") == 1 and text.count(",api,") == 1
    csv.write_text(
        text.replace(",web,", ",ml-train,").replace(",api,", ",api\x1b[2J,"), encoding="utf-8"
    )
    return root


def test_prints_builds_rows_and_the_surviving_process_in_time_order(plain):
    events = cells(plain.stdout)
    times = [e["time"] for e in events]
    assert times == sorted(times)
    proc, row_1, row_3 = "ml-train-vm#1", f"agent {ROW_1} (#1)", f"agent {ROW_3} (#3)"
    created = [index(events, f"build #{n}", "build created") for n in (1, 2, 3)]
    job_3 = index(events, "build #3", "job succeeded")
    start = index(events, proc, "process start")
    manifest_1 = index(events, proc, "manifest", f"agent {ROW_1} = build #1's row")
    manifest_3 = index(events, proc, "manifest", f"agent {ROW_3} = build #3's row")
    refused = index(events, proc, "connection error", "HTTP 401")
    stuck = index(events, row_3, "still created")
    # one process, started after build #1 was created and long before build #3, fetched build
    # #1's row, was refused once at the resume and then fetched build #3's row
    assert created[0] < start < manifest_1 < created[1] < created[2] < refused < job_3
    assert job_3 < index(events, row_3, "row created") < stuck < manifest_3
    assert events[start]["where"] == "coder-agent-2026-05-13T23-10-00.000.log.gz:1"
    assert events[manifest_3]["where"] == "coder-agent.log:6"
    # build #1's row went starting and ready, as the process reported; build #3's never did
    assert (
        manifest_1
        < index(events, proc, "lifecycle starting", f"agent {ROW_1}")
        < index(events, row_1, "lifecycle started")
        < index(events, proc, "lifecycle ready", f"agent {ROW_1}")
        < index(events, row_1, "disconnected")
        < created[2]
    )
    assert not [e for e in events if e["source"] == row_3 and e["event"].startswith("lifecycle")]
    assert [e["event"] for e in events if e["source"] == "build #2"] == [
        "build created",
        "job started",
        "job succeeded",
    ]
    assert {e["source"] for e in events if e["where"]} == {proc}


def test_header_and_flags(plain):
    head = plain.stdout.split("\n\n")[0]
    assert head.startswith(f"Workspace rwyrick/ml-train  (id {WS_ID})")
    assert "3 build(s), 3 agent row(s), 1 agent process(es) in the logs, 4 finding(s)" in head
    assert "process ml-train-vm#1: incident/logs/ml-train-vm/coder-agent.log, 2 files; " in head
    assert "(start line); served build(s) #1, #3" in head
    events = cells(plain.stdout)
    flags = [
        (e["source"], e["event"], e["detail"].split(":")[0]) for e in events if "⚑" in e["event"]
    ]
    assert flags == [
        (f"agent {ROW_1} (#1)", "⚑ medium", "previous-agent-not-shut-down"),
        (f"agent {ROW_3} (#3)", "⚑ critical", "lifecycle-stuck-created"),
        (f"agent {ROW_3} (#3)", "⚑ high", "instance-identity-rebinding"),
        (f"agent {ROW_3} (#3)", "⚑ high", "survived-build-boundary"),
    ]
    row_1 = events[index(events, f"agent {ROW_1} (#1)", "row created")]
    assert row_1["detail"].endswith("now ready; ⚑ previous-agent-not-shut-down")


def test_columns_are_aligned(plain):
    lines = plain.stdout.splitlines()
    header = next(line for line in lines if line.startswith("TIME (UTC)"))
    columns = [header.index(t) for t in ("SOURCE", "EVENT", "DETAIL", "FILE:LINE")]
    for line in rows(plain.stdout):
        for col in columns[:3]:
            if col < len(line):  # lines end where their last non-empty column does
                assert line[col - 2 : col] == "  ", (col, line)
        assert line[columns[0]] != " " and line[columns[1]] != " "
        if re.search(r"\.log(\.gz)?:\d+$", line) and len(line) < 200:
            assert line[columns[3] - 2 : columns[3]] == "  " and line[columns[3]] == "c", line


def test_plain_when_piped_coloured_when_asked(plain):
    assert "\x1b" not in plain.stdout + plain.stderr
    coloured = invoke("timeline", "ml-train", SAMPLE, "--color", "always")
    assert coloured.exit_code == ExitCode.OK
    assert "\x1b[31m" in coloured.stdout  # the connection error and the stuck row in red
    assert ANSI.sub("", coloured.stdout) == plain.stdout


def test_no_secret_is_printed(plain, as_json):
    scn = sample_scenario()
    secrets = {s for s in scn.secret_values() if len(s) >= 8}
    for text in (plain.stdout, as_json.stdout):
        assert not [s for s in secrets if s in text]
        assert "manifest=" not in text and "token=" not in text


def test_json_lines_hold_the_same_events(plain, as_json):
    events = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert len(events) == len(rows(plain.stdout))
    times = [datetime.fromisoformat(e["ts"]) for e in events]
    assert times == sorted(times)
    manifests = [e for e in events if e["event"] == "manifest"]
    assert [(e["source"], e["file"].rsplit("/", 1)[-1], e["line"]) for e in manifests] == [
        ("ml-train-vm#1", "coder-agent-2026-05-13T23-10-00.000.log.gz", 7),
        ("ml-train-vm#1", "coder-agent.log", 6),
    ]
    stuck = [e for e in events if e["event"] == "still created"]
    assert stuck[0]["source"] == f"agent {ROW_3} (#3)"
    assert set(stuck[0]["rules"]) == {
        "lifecycle-stuck-created",
        "instance-identity-rebinding",
        "survived-build-boundary",
    }
    assert stuck[0]["file"] is None and stuck[0]["ts_raw"] is None


def test_since_until_limit():
    result = invoke(
        "timeline",
        "ml-train",
        SAMPLE,
        "--since",
        "2026-05-13",
        "--until",
        "2026-05-13T23:10:22.062Z",
        "--limit",
        "4",
    )
    assert result.exit_code == ExitCode.OK
    lines = rows(result.stdout)
    assert [line.split("  ")[0] for line in lines] == [
        "2026-05-13 23:09:40.000",
        "2026-05-13 23:09:42.000",
        "2026-05-13 23:10:00.000",
        "2026-05-13 23:10:00.412",
    ]
    # until is inclusive of 23:10:22.0618 (first connected, still created, the finding)
    assert result.stderr.strip() == "note: showed the first 4 of 10 events"


def test_by_id_prefix_and_owner_name(as_json, export_copy):
    by_id = invoke("timeline", WS_ID[:8].upper(), SAMPLE, "--json")
    assert by_id.exit_code == ExitCode.OK
    assert by_id.stdout == as_json.stdout
    too_short = invoke("timeline", WS_ID[:7], SAMPLE)
    assert too_short.exit_code == ExitCode.BAD_INPUT
    owned = invoke("timeline", "rwyrick/ml-train", export_copy)
    assert owned.exit_code == ExitCode.OK
    assert owned.stdout.startswith(f"Workspace rwyrick/ml-train  (id {WS_ID})")


def test_unknown_workspace_names_the_nearest(cli):
    result = cli("timeline", "ml-trian", SAMPLE)
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.stdout == ""
    assert result.stderr == (
        "Error: no workspace 'ml-trian' among the 7 in the export; nearest: ml-train. "
        f"List them with: forensics timeline --list {SAMPLE}\n"
    )


def test_ambiguous_workspace_lists_the_matches(cli, export_copy):
    result = cli("timeline", "ml-train", export_copy)
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.stderr == (
        "Error: 'ml-train' matches 2 workspaces: "
        "alice/ml-train (id 160e92bb-0d63-4b7e-98e0-680c080c8595); "
        f"rwyrick/ml-train (id {WS_ID}). Name one as OWNER/NAME or by id\n"
    )


def test_list_escapes_control_characters(cli, export_copy):
    result = cli("timeline", "--list", export_copy)
    assert result.exit_code == ExitCode.OK
    assert "\x1b" not in result.stdout
    assert re.search(
        r"^alice/api\\x1b\[2J +763e26e5-b20a-47c0-961f-2e2f144238df +1 ", result.stdout, re.M
    )
    assert result.stdout.splitlines()[0].split() == [
        "WORKSPACE",
        "ID",
        "BUILDS",
        "LAST",
        "BUILD",
        "(UTC)",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--color", "sometimes"),
            "Error: --color must be one of auto, always, never, not 'sometimes'",
        ),
        (("--since", "yesterday"), "Error: --since: not an ISO 8601 date or time: 'yesterday'"),
        (("--limit", "0"), "Error: --limit must be 1 or more, not 0"),
    ],
)
def test_bad_options(cli, args, message):
    result = cli("timeline", "ml-train", SAMPLE, *args)
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.stderr.startswith(message)


def test_no_paths(cli, tmp_path):
    result = cli("timeline", "ml-train")
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "timeline needs WORKSPACE and the PATHS to read" in result.stderr
    empty = cli("timeline", "ml-train", tmp_path)
    assert empty.exit_code == ExitCode.BAD_INPUT
    assert empty.stderr.startswith("Error: no files found under")


def _start(args: list[str], env: dict[str, str], tty: bool):
    """Start the command in a child process, its stdout a terminal or a pipe."""
    command = [sys.executable, "-m", "forensics", *args]
    if not tty:
        return subprocess.Popen(command, stdout=subprocess.PIPE, env=env), None
    master, slave = pty.openpty()
    proc = subprocess.Popen(command, stdout=slave, stderr=subprocess.DEVNULL, env=env)
    os.close(slave)
    return proc, master


def _output(proc: subprocess.Popen, master: int | None) -> str:
    """What the child wrote to its stdout (the output here fits a pty's buffer)."""
    if master is None:
        out, _ = proc.communicate(timeout=60)
    else:
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not data:
                break
            chunks.append(data)
        os.close(master)
        out = b"".join(chunks)
    assert proc.wait(timeout=60) == ExitCode.OK
    return out.decode()


def test_colour_on_a_terminal_plain_in_a_pipe_and_with_no_color():
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | {"TERM": "xterm"}
    args = ["timeline", "ml-train", str(SAMPLE), "--until", "2026-05-12T13:21:00Z"]
    runs = [
        _start(args, env, tty=True),
        _start(args, env, tty=False),
        _start(args, env | {"NO_COLOR": "1"}, tty=True),
    ]
    on_tty, piped, no_color = (_output(*run) for run in runs)
    assert "\x1b[1;35mprocess start\x1b[0m" in on_tty
    assert "\x1b" not in piped
    assert ANSI.sub("", on_tty).replace("\r\n", "\n") == piped
    assert "\x1b" not in no_color
    assert no_color.replace("\r\n", "\n") == piped


@pytest.mark.parametrize(
    ("mode", "isatty", "environ", "expected"),
    [
        ("auto", True, {}, True),
        ("auto", False, {}, False),
        ("auto", True, {"NO_COLOR": "1"}, False),
        ("auto", True, {"NO_COLOR": ""}, True),  # no-color.org: only a non-empty value counts
        ("auto", True, {"TERM": "dumb"}, False),
        ("always", False, {"NO_COLOR": "1"}, True),
        ("never", True, {}, False),
    ],
)
def test_color_wanted(mode, isatty, environ, expected):
    assert color_wanted(mode, isatty, environ) is expected


def test_clean_shows_escapes_instead_of_sending_them():
    assert clean("a\x1b]0;title\x07b\u202ec\td") == "a\\x1b]0;title\\x07b\\u202ec\\x09d"


def test_host_clock_column_only_when_a_log_time_was_corrected():
    t = datetime(2026, 5, 13, 23, 10, tzinfo=UTC)
    db = Event(t, "build #3", "build created", "start", "build")
    log = Event(t, "vm#1", "connecting", "", "connect", file="logs/vm/coder-agent.log", line=1)
    assert "HOST CLOCK" not in event_lines([db, log])[0]
    log.ts_raw = t + timedelta(seconds=SKEW)
    lines = event_lines([db, log])
    assert lines[0].startswith("TIME (UTC)               HOST CLOCK               SOURCE")
    assert lines[2].startswith("2026-05-13 23:10:00.000  2026-05-13 23:10:45.000  vm#1 ")
    assert lines[2].endswith("coder-agent.log:1")
    assert lines[1].index("build #3") == lines[2].index("vm#1") == lines[0].index("SOURCE")


def _shift_logs(directory: Path, seconds: int) -> None:
    stamp = re.compile(rb"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", re.M)

    def shift(data: bytes) -> bytes:
        def later(m: re.Match[bytes]) -> bytes:
            when = datetime.strptime(m.group().decode(), "%Y-%m-%d %H:%M:%S.%f")
            return (
                (when + timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3].encode()
            )

        return stamp.sub(later, data)

    for path in directory.iterdir():
        if path.suffix == ".gz":
            path.write_bytes(gzip.compress(shift(gzip.decompress(path.read_bytes()))))
        else:
            path.write_bytes(shift(path.read_bytes()))


def test_skewed_host_shows_raw_and_corrected_times(tmp_path):
    shutil.copytree(SAMPLE / "db", tmp_path / "db")
    shutil.copytree(SAMPLE / "logs" / "ml-train-vm", tmp_path / "logs" / "ml-train-vm")
    _shift_logs(tmp_path / "logs" / "ml-train-vm", SKEW)
    result = invoke("timeline", "ml-train", tmp_path)
    assert result.exit_code == ExitCode.OK, result.stderr
    assert "HOST CLOCK" in result.stdout
    events = cells(result.stdout)
    start = events[index(events, "ml-train-vm#1", "process start")]
    logged = datetime(2026, 5, 12, 13, 20, 58, 214000) + timedelta(seconds=SKEW)
    corrected = datetime.strptime(start["time"], "%Y-%m-%d %H:%M:%S.%f")
    assert start["raw"] == f"{logged:%Y-%m-%d %H:%M:%S.%f}"[:-3]
    assert abs((logged - corrected).total_seconds() - SKEW) < 1  # back on the server's clock
    assert "clock of ml-train-vm: offset +45." in result.stdout
    assert [e["time"] for e in events] == sorted(e["time"] for e in events)
    # corrected, the manifest follows the row's first connection as it did on the server
    assert index(events, f"agent {ROW_1} (#1)", "first connected") < index(
        events, "ml-train-vm#1", "manifest", f"agent {ROW_1}"
    )
    assert not [e for e in events if e["raw"] and not e["where"]]  # database times are not


def test_log_offset_overrides_the_estimate():
    result = invoke(
        "timeline", "ml-train", SAMPLE, "--log-offset", "ml-train-vm=3", "--since", "2026-05-13"
    )
    assert result.exit_code == ExitCode.OK, result.stderr
    assert "clock of ml-train-vm: offset +3.000 s (--log-offset)" in result.stdout
    events = cells(result.stdout)
    manifest = events[index(events, "ml-train-vm#1", "manifest", f"agent {ROW_3}")]
    assert (manifest["time"], manifest["raw"]) == (
        "2026-05-13 23:10:19.102",
        "2026-05-13 23:10:22.102",
    )
    # three seconds earlier on the server's clock, the manifest now precedes the row's creation
    assert index(events, "ml-train-vm#1", "manifest", f"agent {ROW_3}") < index(
        events, f"agent {ROW_3} (#3)", "row created"
    )


def test_a_process_whose_start_is_not_in_the_logs(tmp_path):
    shutil.copytree(SAMPLE / "db", tmp_path / "db")
    (tmp_path / "logs" / "ml-train-vm").mkdir(parents=True)
    # only the current file: the rotated backup with the start line was not collected
    shutil.copy(
        SAMPLE / "logs" / "ml-train-vm" / "coder-agent.log", tmp_path / "logs" / "ml-train-vm"
    )
    result = invoke("timeline", "ml-train", tmp_path)
    assert result.exit_code == ExitCode.OK, result.stderr
    assert "began 2026-05-13 23:10:00.000 (start not in logs); served build(s) #3" in result.stdout
    events = cells(result.stdout)
    first = index(events, "ml-train-vm#0", "first line seen")
    assert events[first]["where"] == "coder-agent.log:1"
    assert events[first + 1]["event"] == "connecting"
    assert not [e for e in events if e["event"] == "process start"]
    assert index(events, "build #3", "build created") < first
