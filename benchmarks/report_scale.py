"""How report.html and summary.md scale to a large run (issue 5: a report with 10,000
findings stays under 10 MB and opens in a browser in under 2 s; summary.md stays under
60,000 characters).

Builds a deployment of N long-lived VM workspaces (default 2,500), each with the #18571
incident (tests/cases.py's `_suspended_vm`: 4 findings each, so 10,000 findings), runs the real
pipeline on it, renders with forensics.report.write_outputs, and loads the page in headless
Chromium (Debian's `chromium`, driven by Playwright) to time it. Prints the sizes, what the
page is made of, the times, and, when a target is missed, how much each part of the page costs.

    .venv/bin/python benchmarks/report_scale.py [--workspaces 2500] [--dump DIR] [--out DIR]
                                                [--runs 3] [--breakdown]

Not a test: it takes a few minutes (the analysis dominates) and exits 1 when a target is
missed.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from forensics.engine import analyze  # noqa: E402
from forensics.report import write_outputs  # noqa: E402
from forensics.synth import ScenarioBuilder, write_dump  # noqa: E402
from tests.cases import T0, _suspended_vm  # noqa: E402
from tests.test_browser import FLAGS  # noqa: E402  (the browser tests' offline Chromium flags)

MAX_HTML = 10 * 1024 * 1024  # bytes
MAX_MD = 60_000  # characters
MAX_LOAD = 2.0  # seconds, navigation start to the end of the load event
PINNED = datetime(2026, 5, 20, tzinfo=UTC)
# Parts of the page, each removable to see what it costs (regexes over the HTML).
PARTS = {
    "findings table rows": r"<tr><td data-sort=.*?</tr>\s*",
    "finding articles (evidence)": r'<article class="finding.*?</article>\s*',
    "timeline SVGs": r'<figure class="timeline">.*?</figure>\s*',
    "coverage section": r'<h2 id="coverage">.*?(?=<h2 id="provenance">)',
}


def build_dump(workspaces: int, dump: Path) -> float:
    t = time.perf_counter()
    b = ScenarioBuilder(seed=3, start=T0 - timedelta(days=30))
    for i in range(workspaces):
        _suspended_vm(b, name=f"vm{i:05d}")
    write_dump(b.build_scenario(), dump)
    return time.perf_counter() - t


def size_parts(html: str) -> dict[str, tuple[int, int]]:
    """Bytes and count of each part of the page."""
    out = {}
    for name, pattern in PARTS.items():
        found = re.findall(pattern, html, re.S)
        out[name] = (sum(len(m.encode()) for m in found), len(found))
    return out


def launch():
    exe = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(exe).exists():
        sys.exit("Chromium not found: apt-get update && apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    return pw, pw.chromium.launch(executable_path=exe, args=FLAGS)


def load_times(browser, path: Path, runs: int) -> list[dict[str, float]]:
    """Per run: navigation start to loadEventEnd, DOMContentLoaded, first contentful paint
    (ms), and Chromium's own layout/style/script time for the load (CDP Performance)."""
    results = []
    for _ in range(runs):
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        ctx.route(
            "**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort()
        )
        page = ctx.new_page()
        cdp = ctx.new_cdp_session(page)
        cdp.send("Performance.enable")
        page.goto(path.as_uri(), wait_until="load")
        nav = page.evaluate(
            """() => {
              const n = performance.getEntriesByType("navigation")[0];
              const fcp = performance.getEntriesByName("first-contentful-paint")[0];
              return {load: n.loadEventEnd - n.startTime,
                      dcl: n.domContentLoadedEventEnd - n.startTime,
                      fcp: fcp ? fcp.startTime : NaN};
            }"""
        )
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        for key in ("LayoutDuration", "RecalcStyleDuration", "ScriptDuration", "TaskDuration"):
            nav[key] = metrics.get(key, float("nan")) * 1000
        nav.update(interactions(page))
        results.append(nav)
        ctx.close()
    return results


def interactions(page) -> dict[str, float]:
    """The table's filter (one keystroke's worth) and a sort, with the layout they force (ms)."""
    return page.evaluate(
        """() => {
          const time = (f) => { const t = performance.now(); f(); document.body.offsetHeight;
                                return performance.now() - t; };
          const box = document.getElementById("findings-filter");
          const type = (q) => { box.value = q; box.dispatchEvent(new Event("input")); };
          const th = document.querySelectorAll("#findings-table thead th")[1];
          return {filter: time(() => type("vm00042")), unfilter: time(() => type("")),
                  sort: time(() => th.click())};
        }"""
    )


def without(html: str, *parts: str) -> str:
    for name in parts:
        html = re.sub(PARTS[name], "", html, flags=re.S)
    return html


def rows_after_first_in_details(html: str, keep: int = 200) -> str:
    """What-if: findings table rows after the first `keep` in a second table inside a closed
    <details> (the filter script would search both)."""
    rows = re.findall(PARTS["findings table rows"], html, re.S)
    if len(rows) <= keep:
        return html
    start, end = html.index(rows[0]), html.index(rows[-1]) + len(rows[-1])
    more = (
        f"</tbody></table><details><summary>{len(rows) - keep} more findings</summary>"
        f"<table><tbody>{''.join(rows[keep:])}</tbody></table></details><table hidden><tbody>"
    )
    return html[:start] + "".join(rows[:keep]) + more + html[end:]


def coverage_in_details(html: str) -> str:
    """What-if: the coverage tables inside a closed <details> (their summary stays visible)."""
    return re.sub(
        r'(<h2 id="coverage">.*?</p>)(.*?)(?=<h2 id="provenance">)',
        lambda m: (
            f"{m.group(1)}<details><summary>files, tables, logs</summary>{m.group(2)}</details>"
        ),
        html,
        flags=re.S,
    )


def articles_content_visibility(html: str) -> str:
    """What-if: CSS only, off-screen finding articles are not laid out until scrolled to."""
    css = (
        "@media screen { article.finding { content-visibility: auto; "
        "contain-intrinsic-size: auto 1500px; } }"
    )
    return html.replace("</style>", css + "\n</style>", 1)


def breakdown(browser, html: str, tmp: Path, runs: int) -> None:
    """Load time of the page with only one part, without it, and with the proposed changes.
    The parts do not add up: layout cost grows faster than the page."""
    variant = tmp / "variant.html"

    def time_of(text: str) -> tuple[float, float]:
        variant.write_text(text, encoding="utf-8")
        rows = load_times(browser, variant, runs)
        return median(rows, "load") / 1000, median(rows, "LayoutDuration") / 1000

    print("load time (layout time) of the page with only / without each part:")
    print(f"  {'nothing but the frame':<32} {time_of(without(html, *PARTS))[0]:5.2f} s")
    for name in PARTS:
        others = [p for p in PARTS if p != name]
        only, only_layout = time_of(without(html, *others))
        rest, rest_layout = time_of(without(html, name))
        print(
            f"  {name:<32} only {only:5.2f} s ({only_layout:4.2f} s)   "
            f"without {rest:5.2f} s ({rest_layout:4.2f} s)"
        )
    print("what-if (the HTML rewritten here; forensics/ unchanged):")
    steps = [
        ("table rows after the first 200 in a closed <details>", rows_after_first_in_details),
        ("+ coverage tables in a closed <details>", coverage_in_details),
        ("+ content-visibility: auto on finding articles", articles_content_visibility),
    ]
    text = html
    for label, change in steps:
        text = change(text)
        load, layout = time_of(text)
        print(f"  {label:<56} {load:5.2f} s ({layout:4.2f} s layout)")


def median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--workspaces", type=int, default=2500, help="incident workspaces (x4 findings)"
    )
    ap.add_argument("--dump", type=Path, help="reuse (or keep) the generated dump here")
    ap.add_argument("--out", type=Path, help="keep the outputs here")
    ap.add_argument("--runs", type=int, default=3, help="page loads to time (median is shown)")
    ap.add_argument("--breakdown", action="store_true", help="time the parts of the page")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="report-scale-"))
    dump = args.dump or tmp / "dump"
    out = args.out or tmp / "out"
    try:
        if dump.exists() and any(dump.iterdir()):
            print(f"dump: reusing {dump}")
        else:
            took = build_dump(args.workspaces, dump)
            print(f"dump: {args.workspaces} workspaces generated in {took:.1f} s ({dump})")
        t = time.perf_counter()
        result = analyze([dump], generated_at=PINNED)
        print(f"analysis: {len(result.findings)} findings in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        write_outputs(result, out, ["forensics", "analyze", str(dump)])
        render = time.perf_counter() - t
        html_path = out / "report.html"
        html = html_path.read_text(encoding="utf-8")
        md = (out / "summary.md").read_text(encoding="utf-8")
        size = html_path.stat().st_size
        json_size = (out / "findings.json").stat().st_size
        print(f"render (write_outputs): {render:.2f} s")
        print(f"report.html: {size:,} bytes ({size / 2**20:.2f} MiB; target < 10 MiB)")
        print(f"summary.md: {len(md):,} characters (target < {MAX_MD:,})")
        print(f"findings.json: {json_size:,} bytes (no target)")
        print("report.html parts:")
        for name, (nbytes, count) in size_parts(html).items():
            print(f"  {name:<28} {nbytes:>11,} bytes  {count:>6} element(s)  {nbytes / size:5.1%}")

        pw, browser = launch()
        try:
            rows = load_times(browser, html_path, args.runs)
            load = median(rows, "load") / 1000
            print(f"Chromium load (median of {args.runs}, navigation start to load event end):")
            print(f"  load {load:.2f} s (target < {MAX_LOAD:.0f} s)")
            for key in ("dcl", "fcp", "LayoutDuration", "RecalcStyleDuration", "ScriptDuration"):
                print(f"  {key:<20} {median(rows, key):8.0f} ms")
            print(f"  table script on {len(result.findings):,} rows (incl. the layout it forces):")
            for key in ("filter", "unfilter", "sort"):
                print(f"    {key:<18} {median(rows, key):8.0f} ms")
            if load > MAX_LOAD or size > MAX_HTML or args.breakdown:
                breakdown(browser, html, tmp, args.runs)
        finally:
            browser.close()
            pw.stop()
        ok = size < MAX_HTML and len(md) < MAX_MD and load < MAX_LOAD
        print("OK: every target met" if ok else "MISSED a target")
        return 0 if ok else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # what --dump and --out name is kept


if __name__ == "__main__":
    sys.exit(main())
