"""report.html in a real browser: headless Chromium (Debian's `chromium` package) driven by
Playwright for Python, with every request other than the report file itself blocked.

Checked on the sample report and on the XSS probe (tests.test_report's `evil_run`): nothing is
fetched, nothing is logged as an error, the timeline picture is drawn, the probe neither runs
nor breaks the layout, the table's filter and sort work under the page's CSP and the page reads
the same with JavaScript off, and it prints to A4.

Chromium is not downloaded by Playwright: the tests drive the system browser and fail (never
skip) when it is missing.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

from forensics.cli import app
from forensics.errors import ExitCode
from forensics.timeline_svg import STATE_COLOURS
from tests.test_report import EVIL_ERROR, EVIL_NAME, EVIL_RAW, evil_run  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data" / "incident"
# No GPU, no QUIC, no first-run, background, component-update or sync traffic; and should
# anything still try the network, the proxy is a closed local port and no name resolves.
# (Playwright gives every launch a fresh temporary --user-data-dir and adds --no-sandbox.)
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    "--host-resolver-rules=MAP * ~NOTFOUND",
]
# Runs before the page's own script: any dialog or CSP violation is recorded in the page.
CANARY = """
window.__xss = [];
window.__csp = [];
["alert", "confirm", "prompt"].forEach(function (name) {
  var orig = window[name];
  window[name] = function () {
    window.__xss.push(name + ":" + Array.prototype.join.call(arguments, " "));
    return orig.apply(this, arguments);
  };
});
document.addEventListener("securitypolicyviolation", function (e) {
  window.__csp.push(e.violatedDirective + " " + e.blockedURI);
});
"""


def chromium_path() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    pytest.fail(
        "Chromium not found (no `chromium` on PATH, no /usr/bin/chromium): install the Debian "
        "package with `apt-get update && apt-get install -y chromium`",
        pytrace=False,
    )


def test_chromium_is_installed():
    assert Path(chromium_path()).exists()


@pytest.fixture(scope="module")
def browser():
    exe = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "Playwright for Python is missing: .venv/bin/pip install -e '.[dev]'", pytrace=False
        )
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=FLAGS, headless=True)
        yield b
        b.close()


@dataclass
class Visit:
    """A report opened in its own browser context, with everything it did."""

    url: str
    page: Any = None
    requests: list[str] = field(default_factory=list)  # every request the browser made
    blocked: list[str] = field(default_factory=list)  # requests the route guard refused
    failed: list[str] = field(default_factory=list)
    console: list[tuple[str, str]] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def errors(self) -> list[str]:
        """Console errors, page errors, and requests other than the report itself."""
        out = [f"console {t}: {text}" for t, text in self.console if t == "error"]
        out += [f"page error: {e}" for e in self.page_errors]
        out += [f"request: {u}" for u in self.requests if u != self.url]
        out += [f"blocked: {u}" for u in self.blocked] + [f"failed: {u}" for u in self.failed]
        return out

    def canaries(self) -> dict[str, list[str]]:
        return self.page.evaluate("({xss: window.__xss || [], csp: window.__csp || []})")


@pytest.fixture
def visit(browser):
    """open(path, javascript=True) -> Visit; the context is closed after the test."""
    contexts = []

    def open_(path: Path, javascript: bool = True) -> Visit:
        v = Visit(url=path.as_uri())
        ctx = browser.new_context(
            java_script_enabled=javascript,
            service_workers="block",
            viewport={"width": 1280, "height": 900},
        )
        contexts.append(ctx)
        ctx.on("request", lambda r: v.requests.append(r.url))
        ctx.on("requestfailed", lambda r: v.failed.append(r.url))

        def guard(route):
            if route.request.url == v.url:
                route.continue_()
            else:
                v.blocked.append(route.request.url)
                route.abort("blockedbyclient")

        ctx.route("**/*", guard)
        ctx.add_init_script(CANARY)
        page = ctx.new_page()
        page.on("console", lambda m: v.console.append((m.type, m.text)))
        page.on("pageerror", lambda e: v.page_errors.append(str(e)))

        def dialog(d):
            v.dialogs.append(f"{d.type}: {d.message}")
            d.dismiss()

        page.on("dialog", dialog)
        page.goto(v.url, wait_until="load")
        v.page = page
        return v

    yield open_
    for ctx in contexts:
        ctx.close()


@pytest.fixture(scope="module")
def sample_out(tmp_path_factory) -> Path:
    """`forensics analyze sample_data/incident --out DIR`, every rule."""
    out = tmp_path_factory.mktemp("browser-sample") / "out"
    r = CliRunner().invoke(app, ["analyze", str(SAMPLE), "--out", str(out)])
    assert r.exit_code == ExitCode.FINDINGS, r.output
    return out


@pytest.fixture(scope="module")
def evil_out(evil_run) -> Path:  # noqa: F811
    return evil_run[1]


def findings_of(out: Path) -> list[dict[str, Any]]:
    return json.loads((out / "findings.json").read_text())["findings"]


def affected_workspaces(out: Path) -> list[str]:
    return list(dict.fromkeys(f["workspace_id"] for f in findings_of(out) if f["workspace_id"]))


REPORTS = ["sample_out", "evil_out"]


@pytest.fixture(params=REPORTS)
def report(request) -> Path:
    return request.getfixturevalue(request.param)


# --------------------------------------------------------------------------------------
# (a) no network, (b) no console or page error


def test_the_guard_sees_and_blocks_requests(visit, tmp_path):
    # The detector itself: a page that does fetch something is caught (the route aborts the
    # request before it leaves the browser; .invalid never resolves anyway).
    page = tmp_path / "fetches.html"
    page.write_text('<!DOCTYPE html><img src="http://example.invalid/x.png">', encoding="utf-8")
    v = visit(page)
    assert "http://example.invalid/x.png" in v.requests
    assert v.blocked == ["http://example.invalid/x.png"]


def test_report_makes_no_request_and_logs_no_error(report, visit):
    v = visit(report / "report.html")
    v.page.wait_for_timeout(200)  # anything deferred (timers, lazy loads) has its chance
    assert v.requests == [v.url]
    assert v.errors() == []
    assert v.canaries() == {"xss": [], "csp": []}  # the own script is admitted by its hash
    assert v.dialogs == []


# --------------------------------------------------------------------------------------
# (c) the timeline is drawn


def picture(png: bytes) -> tuple[int, float, set[tuple[int, int, int]]]:
    """(distinct colours, share of pixels that are not near-white, the colours)."""
    img = Image.open(io.BytesIO(png)).convert("RGB")
    counts = img.getcolors(maxcolors=img.width * img.height)
    assert counts is not None
    ink = sum(n for n, rgb in counts if min(rgb) < 230)  # band fills (#f2f4f7) are not ink
    return len(counts), ink / (img.width * img.height), {rgb for _, rgb in counts}


def rgb(hex_colour: str) -> tuple[int, int, int]:
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def check_timelines(page, out: Path) -> None:
    svgs = page.locator("svg.timeline")
    workspaces = affected_workspaces(out)
    assert svgs.count() == len(workspaces) >= 1
    for n, ws in enumerate(workspaces):
        svg = page.locator(f'section.workspace[id="ws-{ws}"] svg.timeline')
        assert svg.count() == 1, f"no timeline in the section of workspace {ws}"
        box = svg.bounding_box()
        assert box and box["width"] > 600 and box["height"] > 150, box
        svg.scroll_into_view_if_needed()
        colours, ink, seen = picture(svg.screenshot())
        assert colours >= 16 and ink > 0.03, (n, colours, ink)
        # The legend's swatches are opaque: each lifecycle colour and the finding frame show.
        legend = [STATE_COLOURS[s] for s in ("created", "starting", "ready", "shutting_down")]
        missing = [c for c in [*legend, "#a40e26"] if rgb(c) not in seen]
        assert not missing, f"colours not drawn in timeline {n}: {missing}"
        assert svg.locator("rect.flagged").count() >= 1  # the flagged agent row is framed


def test_timeline_is_drawn_per_affected_workspace(report, visit):
    v = visit(report / "report.html")
    check_timelines(v.page, report)
    assert v.errors() == []


# --------------------------------------------------------------------------------------
# (d) the XSS probe neither executes nor breaks the layout


def check_layout(page, out: Path) -> None:
    findings = findings_of(out)
    rows = page.locator("#findings-table tbody tr")
    assert rows.count() == len(findings)
    for i, f in enumerate(findings):
        cells = rows.nth(i).locator("td")
        assert cells.count() == 6
        assert cells.nth(1).inner_text().strip() == f["rule"]
        assert cells.nth(2).inner_text().strip() == f["workspace_name"]
        assert page.locator(f'article[id="f-{f["fingerprint"]}"]').is_visible()
    order = page.evaluate(
        """() => {
          const body = [...document.body.children].filter(e => e.tagName !== "SCRIPT");
          const first = document.querySelector("article");
          const cov = document.getElementById("coverage");
          const follows = (a, b) => !!(a.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING);
          return {
            tags: body.slice(0, 2).map(e => e.tagName + "#" + e.id),
            verdictBeforeArticles: follows(document.getElementById("verdict"), first),
            articlesBeforeCoverage: follows(first, cov),
            verdictTop: document.getElementById("verdict").getBoundingClientRect().top,
          };
        }"""
    )
    assert order["tags"] == ["HEADER#", "SECTION#verdict"], order
    assert order["verdictBeforeArticles"] and order["articlesBeforeCoverage"], order
    assert order["verdictTop"] < 300  # on the first screen


def test_xss_probe_does_not_execute_or_break_the_layout(evil_out, visit):
    v = visit(evil_out / "report.html")
    page = v.page
    page.wait_for_timeout(200)
    assert v.dialogs == [] and v.canaries() == {"xss": [], "csp": []}
    assert v.errors() == [] and v.requests == [v.url]
    markup = page.evaluate(
        """() => ({
          img: document.querySelectorAll("img").length,
          scripts: document.scripts.length,
          b: document.querySelectorAll("b").length,
          handlers: [...document.querySelectorAll("*")].flatMap(
            e => [...e.attributes].filter(a => a.name.startsWith("on")).map(a => a.name)),
        })"""
    )
    assert markup == {"img": 0, "scripts": 1, "b": 0, "handlers": []}
    check_layout(page, evil_out)
    # The probe is shown as the text it is: as the workspace's heading, in the coverage
    # section's sample of unparsed lines, and in the evidence of the finding.
    assert page.locator("section.workspace > h2").all_inner_texts() == [EVIL_NAME]
    assert EVIL_RAW in "\n".join(page.locator("#coverage ~ table").all_inner_texts())
    assert "<b>bold</b> upstream said" in EVIL_ERROR
    assert "<b>bold</b> upstream said" in "\n".join(page.locator("article").all_inner_texts())


def test_xss_probe_is_escaped_even_without_the_csp(evil_out, visit, tmp_path):
    # Defence in depth: with the Content-Security-Policy removed, escaping alone must hold.
    html = (evil_out / "report.html").read_text(encoding="utf-8")
    stripped, n = re.subn(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)
    assert n == 1
    (tmp_path / "report.html").write_text(stripped, encoding="utf-8")
    v = visit(tmp_path / "report.html")
    v.page.wait_for_timeout(200)
    assert v.dialogs == [] and v.canaries()["xss"] == []
    assert v.requests == [v.url] and v.errors() == []  # an injected <img src=x> would fetch
    check_layout(v.page, evil_out)


def test_sample_layout_and_links_to_the_evidence(sample_out, visit):
    v = visit(sample_out / "report.html")
    check_layout(v.page, sample_out)
    last = findings_of(sample_out)[-1]["fingerprint"]
    v.page.locator(f'#findings-table a[href="#f-{last}"]').click()
    top = v.page.locator(f'article[id="f-{last}"]').evaluate("e => e.getBoundingClientRect().top")
    assert -2 <= top < 100  # scrolled to its evidence (content-visibility: sub-pixel settling)
    assert v.requests == [v.url] and v.errors() == []


# --------------------------------------------------------------------------------------
# (e) the inline script works under the CSP, and the page reads the same without it


def column(page, n: int) -> list[str]:
    return [
        t.strip()
        for t in page.locator(f"#findings-table tbody tr td:nth-child({n})").all_inner_texts()
    ]


def test_filter_and_sort_work_under_the_csp(sample_out, visit):
    v = visit(sample_out / "report.html")
    page = v.page
    findings = findings_of(sample_out)
    rules = [f["rule"] for f in findings]
    assert len(set(rules)) == len(rules) >= 3 and rules != sorted(rules)
    visible = page.locator("#findings-table tbody tr:visible")
    box = page.locator("#findings-filter")
    assert box.is_visible()  # the script un-hid it: it ran
    box.press_sequentially("previous-agent")
    assert column(page, 2) == rules and visible.count() == 1
    assert visible.locator("td").nth(1).inner_text().strip() == "previous-agent-not-shut-down"
    box.fill("")
    assert visible.count() == len(findings)
    box.fill("ML-TRAIN")  # case-insensitive, across every column
    assert visible.count() == len(findings)
    box.fill("no such finding")
    assert visible.count() == 0
    box.fill("")
    header = page.locator("#findings-table thead th")
    header.nth(1).click()
    assert column(page, 2) == sorted(rules)
    header.nth(1).click()
    assert column(page, 2) == sorted(rules, reverse=True)
    header.nth(3).focus()
    page.keyboard.press("Enter")  # keyboard sorting; numeric by data-sort
    builds = [int(b.lstrip("#")) for b in column(page, 4)]
    assert builds == sorted(builds)
    header.nth(0).click()  # severity: most severe first
    assert column(page, 1)[0].lower() == "critical"
    assert v.errors() == [] and v.canaries() == {"xss": [], "csp": []}


def test_evil_names_filter_as_text(evil_out, visit):
    v = visit(evil_out / "report.html")
    box = v.page.locator("#findings-filter")
    box.fill("<img src=x")
    assert v.page.locator("#findings-table tbody tr:visible").count() == len(findings_of(evil_out))
    assert v.dialogs == [] and v.errors() == []


def test_without_javascript_everything_is_readable(report, visit):
    v = visit(report / "report.html", javascript=False)
    page = v.page
    findings = findings_of(report)
    assert not page.locator("#findings-filter").is_visible()  # no dead control
    assert page.locator("#findings-table tbody tr:visible").count() == len(findings)
    for f in findings:
        assert page.locator(f'article[id="f-{f["fingerprint"]}"]').is_visible()
    check_timelines(page, report)
    assert v.requests == [v.url] and v.errors() == []


# --------------------------------------------------------------------------------------
# (f) print


def pdf_pages(pdf: bytes) -> list[tuple[float, float]]:
    """Each page's MediaBox width and height, in points."""
    pages = re.findall(rb"/Type\s*/Page\b(?!s)", pdf)
    boxes = re.findall(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]", pdf)
    assert len(boxes) >= len(pages)
    return [(float(w), float(h)) for w, h in boxes[: len(pages)]]


def test_prints_to_a4(sample_out, visit):
    v = visit(sample_out / "report.html")
    page = v.page
    page.emulate_media(media="print")
    assert not page.locator("#findings-filter").is_visible()
    box = page.locator("svg.timeline").first.bounding_box()
    assert box and box["width"] > 400 and box["height"] > 100  # the picture prints too
    pdf = page.pdf(format="A4", print_background=True)
    assert pdf.startswith(b"%PDF-")
    pages = pdf_pages(pdf)
    assert len(pages) > 1
    for w, h in pages:  # A4: 595.3 x 841.9 pt
        assert abs(w - 595.3) < 2 and abs(h - 841.9) < 2, (w, h)
    assert v.requests == [v.url] and v.errors() == []
