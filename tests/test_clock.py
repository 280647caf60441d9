"""Clock skew: each host's offset is estimated, shown, overridable, and never flips a verdict."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from forensics.engine import analyze
from forensics.errors import ExitCode
from forensics.synth import ScenarioBuilder, write_dump
from tests.cases import CASES, T0, S, _boot, _ready

# Cases whose verdict depends on log times, each run with the agent hosts' clocks off the
# server's by up to the survived-build-boundary rule's tolerance (300 s) either way.
TIME_SENSITIVE = [
    "incident_suspended_vm",
    "incident_start_line_rotated_away",
    "incident_stale_token_rejected",
    "lookalike_ephemeral_pods",
    "lookalike_same_row_reconnects",
    "lookalike_prebuild_claim",
    "lookalike_vm_recreated_same_log_name",
]


def dump_of(tmp_path, build, skew_seconds: float):
    b = ScenarioBuilder(seed=7, start=T0 - timedelta(days=30))
    b.log_clock = timedelta(seconds=skew_seconds)
    expected = build(b)
    write_dump(b.build_scenario(), tmp_path / "dump")
    return tmp_path / "dump", expected


@pytest.mark.parametrize("skew", [-300, -97.5, 300])
@pytest.mark.parametrize("name", TIME_SENSITIVE)
def test_skew_within_tolerance_never_flips_a_verdict(tmp_path, name, skew):
    dump, expected = dump_of(tmp_path, CASES[name], skew)
    result = analyze([dump])
    assert {(f.rule, f.workspace_name, f.build_number) for f in result.findings} == expected


def fresh_pod_slow_clock(b):
    """A pod that booted after its build, on a host whose clock is 400 s slow: uncorrected,
    its start line would predate the build by more than the tolerance."""
    ws = b.workspace("late", b.user("slow"), b.template("k8s-pod", kind="pod"))
    build = b.build(ws, "start", at=T0)
    boot = T0 + 55 * S
    agent = _ready(b, build, boot)
    _boot(b.log("logs/slow-pod/coder-agent.log"), boot, agent, auth="token")
    return set()


def test_offset_is_estimated_and_corrected_times_sit_beside_raw_ones(tmp_path):
    dump, _ = dump_of(tmp_path, fresh_pod_slow_clock, -400)
    result = analyze([dump])
    assert result.findings == []
    [clock] = result.clocks
    assert clock["host"] == "slow-pod" and clock["method"] == "estimated"
    assert clock["offset_seconds"] == pytest.approx(-400, abs=1)
    assert clock["pairs"] == 1 and clock["confidence"] == "medium"


def test_log_offset_overrides_the_estimate(tmp_path, cli):
    dump, _ = dump_of(tmp_path, fresh_pod_slow_clock, -400)
    # Saying the clock was right turns the estimate off: the start line then predates the
    # build by 345 s, beyond the tolerance, and the fresh pod is (wrongly) taken for a survivor.
    r = cli("analyze", dump, "--out", tmp_path / "o", "--log-offset", "slow-pod=0")
    assert r.exit_code == ExitCode.FINDINGS, r.output
    assert "survived-build-boundary" in r.stdout
    doc = json.loads((tmp_path / "o" / "findings.json").read_text())
    [clock] = doc["coverage"]["clocks"]
    assert (clock["method"], clock["offset_seconds"]) == ("--log-offset", 0)
    assert clock["estimated_seconds"] == pytest.approx(-400, abs=1)
    r = cli("analyze", dump, "--out", tmp_path / "o2")
    assert r.exit_code == ExitCode.OK, r.output


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("nosuchhost=5", "no agent log from nosuchhost; the logs come from: slow-pod"),
        ("slow-pod", "expected HOST=SECONDS"),
        ("slow-pod=fast", "expected HOST=SECONDS"),
    ],
)
def test_bad_log_offset_is_a_usage_error(tmp_path, cli, value, message):
    dump, _ = dump_of(tmp_path, fresh_pod_slow_clock, 0)
    r = cli("analyze", dump, "--out", tmp_path / "o", "--log-offset", value)
    assert r.exit_code == ExitCode.BAD_INPUT
    assert message in r.stderr


def test_without_correction_the_tolerance_still_absorbs_a_skew_within_it(tmp_path, cli):
    # The estimate turned off (--log-offset HOST=0): a clock 200 s slow puts the fresh pod's
    # start line 145 s before its build, inside the 300 s tolerance, so nothing is flagged.
    dump, _ = dump_of(tmp_path, fresh_pod_slow_clock, -200)
    r = cli("analyze", dump, "--out", tmp_path / "o", "--log-offset", "slow-pod=0")
    assert r.exit_code == ExitCode.OK, r.output
    r = cli(
        "analyze",
        dump,
        "--out",
        tmp_path / "o",
        "--log-offset",
        "slow-pod=0",
        "--param",
        "survived-build-boundary.skew_tolerance_seconds=60",
    )
    assert r.exit_code == ExitCode.FINDINGS, r.output
