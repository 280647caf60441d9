"""benchmarks/run.py --repeat: which run is reported, and that every run must find the
planted incidents (the benchmark itself is not run here: it takes minutes)."""

import importlib.util
import sys
from pathlib import Path

import pytest

RUN_PY = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmarks_run", RUN_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being made
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def _run(seconds: float, lines_per_s: float, findings: list[list]) -> dict:
    return {
        "analyze_seconds": seconds,
        "render_seconds": 0.1,
        "report_html_bytes": 400_000,
        "findings": findings,
        "stages": [{"stage": "parse logs", "seconds": 1.0, "lines": lines_per_s}],
    }


def _measured(bench, runs: list[dict], planted: list[list]):
    m = bench.Measured(bench.Size(10_000, 10**8), "dump", {"expected_findings": planted}, None)
    m.run = runs[len(runs) // 2]
    m.repeats = [
        {
            "analyze_seconds": r["analyze_seconds"],
            "parse_lines_per_s": bench.parse_rate(r),
            "process_rss_mib": 100.0,
            "findings": r["findings"],
        }
        for r in runs
    ]
    return m


def test_median_is_one_of_the_runs(bench):
    runs = [{"s": 3.0}, {"s": 1.0}, {"s": 2.0}]
    assert bench.median_of(runs, key=lambda r: r["s"]) is runs[2]
    # an even count gives the lower of the two middle runs, not their average
    assert bench.median_of([4.0, 1.0, 3.0, 2.0], key=float) == 2.0


def test_parse_target_uses_the_median_rate(bench):
    planted = [["lifecycle-stuck-created", "ws", 3, "f1"]]
    runs = [_run(2.0, rate, planted) for rate in (0.7e6, 1.2e6, 1.1e6)]
    targets = {t.name: t for t in bench.check_targets([_measured(bench, runs, planted)])}
    parse = targets["log parsing >= 1M lines/s"]
    assert parse.status == "met"
    assert "1.10 M/s" in parse.detail


def test_a_run_missing_a_planted_finding_misses_the_target(bench):
    planted = [
        ["lifecycle-stuck-created", "ws", 3, "f1"],
        ["survived-build-boundary", "ws", 3, "f2"],
    ]
    # the first run (not the one shown) missed one
    runs = [_run(2.0, 1.2e6, planted[:1]), _run(2.1, 1.2e6, planted), _run(2.2, 1.2e6, planted)]
    targets = bench.check_targets([_measured(bench, runs, planted)])
    same = next(t for t in targets if t.name.startswith("planted-incident findings"))
    assert same.status == "MISSED"
    assert "(run 1)" in same.detail and "survived-build-boundary" in same.detail
