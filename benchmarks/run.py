"""Issue 7: the pipeline at deployment scale, against the floors and the alternatives.

For each size (workspace builds : agent log bytes) it generates a dump with
`forensics.generate` (or reuses the one cached under --workdir), runs the real pipeline
(`forensics.engine.analyze`, then `forensics.report.write_outputs`) in a fresh process so that
peak RSS is that run's, and prints per stage: wall time, throughput and peak RSS. On the same
files it measures the floors and what an operator would do otherwise:

  (a) DuckDB alone counting the rows of the table files and the lines of the logs;
  (b) `wc -l` over the logs (`zcat | wc -l` for the gzip'd backups);
  (c) PostgreSQL: `\\copy` the CSVs into a scratch server with Coder's schema
      (tests/pg_schema.sql, started with tests/pgcluster.py) and run the equivalent join
      (connected agent rows stuck in 'created', tied to their builds through resources and
      jobs), load and query timed apart;
  (d) a grep pipeline over the logs (`zgrep` the start and manifest lines | sort | uniq -c).

Each dump's files are read once before these runs (`warm`), so all of them read from the
page cache. Then it checks issue 7's targets and exits 1 when one is missed (after printing
everything):

    .venv/bin/python benchmarks/run.py --sizes 10k:100MB,100k:1GB,1M:1GB --rss-proof 5GB
    .venv/bin/python benchmarks/run.py --quick                    # 10k builds, 50 MB
    .venv/bin/python benchmarks/run.py ... --markdown docs/performance.md

Timings on a small shared machine move by tens of percent from one run to the next. With
`--repeat N` the analysis and the DuckDB floor run N times per size; the median run of each
is the one reported (every run's time is listed), peak RSS is the highest of the runs, and
every run must find the planted incidents.

Dumps are cached in --workdir (default /tmp/forensics-bench) by their parameters and reused;
each is a few GB at the larger sizes. Not a test: the full set takes tens of minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from forensics.generate import (  # noqa: E402
    FORMAT_VERSION,
    generate,
    parse_count,
    parse_size,
)

PINNED = "2026-05-20T00:00:00+00:00"  # generated_at, so reports are comparable across sizes
DEFAULT_SIZES = "10k:100MB,100k:1GB,1M:1GB"
QUICK_SIZES = "10k:50MB"
RSS_PROOF_BUILDS = 100_000  # builds of the --rss-proof dump when only its log size is given
MAX_RSS_MIB = 2 * 10**9 / 2**20  # peak RSS target: 2 GB (decimal), 1907 MiB
MIN_LINES_PER_S = 1_000_000
MAX_FLOOR_RATIO = 3.0
RENDER_SLACK = 1.5  # render time and report size may vary this much across sizes ...
RENDER_SLACK_SECONDS = 0.5  # ... or by this many seconds
MARK_START, MARK_END = "<!-- benchmarks/run.py: start -->", "<!-- benchmarks/run.py: end -->"
# The equivalent of lifecycle-stuck-created, joined to builds the way forensics (and Coder) do.
PG_QUERY = """SELECT w.name, b.build_number, a.id
FROM workspace_agents a
JOIN workspace_resources r ON r.id = a.resource_id
JOIN workspace_builds b ON b.job_id = r.job_id
JOIN workspaces w ON w.id = b.workspace_id
WHERE a.lifecycle_state = 'created' AND a.first_connected_at IS NOT NULL
  AND a.started_at IS NULL AND a.version <> ''
ORDER BY w.name, b.build_number"""
PG_TABLES = [  # loaded in this order; the rest of the dump's tables too
    "users", "templates", "template_versions", "provisioner_jobs", "workspaces",
    "workspace_builds", "workspace_resources", "workspace_agents", "workspace_agent_logs",
    "schema_migrations",
]  # fmt: skip
GREP_PATTERN = "fetched manifest\\|agent is starting now"
FLOOR_TARGET = "analysis of 1M builds + 1 GB within 3x the DuckDB counting floor"


@dataclass
class Size:
    builds: int
    log_bytes: int
    purpose: str = "size"  # size | rss proof

    @property
    def label(self) -> str:
        return f"{_count(self.builds)} builds + {_bytes(self.log_bytes)} logs"


@dataclass
class Measured:
    """Everything measured for one size."""

    size: Size
    dump: str
    generated: dict[str, Any]
    generation_seconds: float | None  # None when the dump was reused
    run: dict[str, Any] = field(default_factory=dict)  # the forensics child's report
    process_wall: float = 0.0
    process_rss_mib: float = 0.0
    duckdb: dict[str, Any] = field(default_factory=dict)
    wc: dict[str, Any] = field(default_factory=dict)
    pg: dict[str, Any] = field(default_factory=dict)
    grep: dict[str, Any] = field(default_factory=dict)
    # With --repeat: every run of the analysis (seconds, parse rate, peak RSS, findings) and
    # every DuckDB floor (seconds); `run` and `duckdb` are the median ones.
    repeats: list[dict[str, Any]] = field(default_factory=list)
    floor_repeats: list[float] = field(default_factory=list)


# --------------------------------------------------------------------------------------
# Formatting


def _count(n: float) -> str:
    for unit, scale in (("M", 10**6), ("k", 10**3)):
        if n >= scale:
            v = n / scale
            return f"{v:.0f}{unit}" if v == int(v) else f"{v:.1f}{unit}"
    return f"{n:.0f}"


def _bytes(n: float) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            v = n / scale
            return f"{v:.0f} {unit}" if abs(v - round(v)) < 0.05 else f"{v:.1f} {unit}"
    return f"{n:.0f} B"


def _rate(n: float, seconds: float, unit: str) -> str:
    if seconds <= 0:
        return "-"
    r = n / seconds
    if r >= 10**6:
        return f"{r / 10**6:.2f} M {unit}/s"
    if r >= 10**3:
        return f"{r / 10**3:.0f} k {unit}/s"
    return f"{r:.0f} {unit}/s"


def _mbps(nbytes: float, seconds: float) -> str:
    return f"{nbytes / 10**6 / seconds:,.0f} MB/s" if seconds > 0 else "-"


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "-"
    return f"{a / b:.2f}x"


# --------------------------------------------------------------------------------------
# Children: each measurement runs in a fresh process, so its peak RSS is its own


def child_analyze(dump: Path, out: Path, report: Path, breakdown: bool = False) -> None:
    """The real pipeline: analyze(), then write_outputs(); stages, render, findings, RSS.

    With `breakdown`, each statement of the model SQL is run and timed on its own.
    """
    from forensics.engine import analyze
    from forensics.report import write_outputs

    model_times = _time_model_statements() if breakdown else []
    started = time.perf_counter()
    result = analyze([dump], generated_at=datetime.fromisoformat(PINNED))
    analyzed = time.perf_counter()
    rss_before_render = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    write_outputs(result, out, ["forensics", "analyze", str(dump), "--out", str(out)])
    rendered = time.perf_counter()
    doc = {
        "stages": result.stages,
        "analyze_seconds": analyzed - started,
        "render_seconds": rendered - analyzed,
        "rss_before_render_mib": rss_before_render,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "report_html_bytes": (out / "report.html").stat().st_size,
        "summary_md_bytes": (out / "summary.md").stat().st_size,
        "findings_json_bytes": (out / "findings.json").stat().st_size,
        "findings": sorted(
            [f.rule, f.workspace_name, f.build_number, f.fingerprint] for f in result.findings
        ),
        "input_files": len(result.inputs),
        "model_statements": model_times,
    }
    report.write_text(json.dumps(doc, indent=1, default=str), encoding="utf-8")


def _time_model_statements() -> list[list[Any]]:
    """Make the engine run the model one statement at a time and record each one's seconds.

    forensics.engine executes `model_sql()`'s items one by one; this hands it the statements
    (split by DuckDB's own parser) through a generator that notes the time each one took.
    """
    import duckdb

    import forensics.engine as engine

    times: list[list[Any]] = []
    parser = duckdb.connect()
    statements = []
    for name, text in engine.model_sql():
        for n, st in enumerate(parser.extract_statements(text), start=1):
            found = re.search(r"CREATE (?:OR REPLACE )?(?:TEMP |TEMPORARY )?\w+ (\w+)", st.query)
            statements.append((f"{name} #{n} {found.group(1) if found else ''}".strip(), st.query))

    def timed() -> Any:
        for label, sql in statements:
            started = time.perf_counter()
            yield label, sql
            times.append([label, time.perf_counter() - started])

    engine.model_sql = timed  # type: ignore[assignment]
    return times


def child_count(dump: Path, report: Path) -> None:
    """DuckDB alone: rows of every table file (all columns as text), lines of every log."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    tables, logs = _dump_files(dump)
    started = time.perf_counter()
    rows = 0
    for path in tables:
        rows += con.execute(
            "SELECT count(*) FROM read_csv(?, header = true, all_varchar = true)", [str(path)]
        ).fetchone()[0]  # type: ignore[index]
    counted_tables = time.perf_counter()
    lines = con.execute(
        """SELECT count(*) FROM read_csv($files, columns = {'line': 'VARCHAR'}, header = false,
           delim = chr(1), quote = '', escape = '', auto_detect = false, strict_mode = false,
           compression = 'auto')""",
        {"files": [str(p) for p in logs]},
    ).fetchone()[0]  # type: ignore[index]
    done = time.perf_counter()
    doc = {
        "table_rows": rows,
        "table_seconds": counted_tables - started,
        "log_lines": lines,
        "log_seconds": done - counted_tables,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    report.write_text(json.dumps(doc), encoding="utf-8")


def _dump_files(dump: Path) -> tuple[list[Path], list[Path]]:
    tables = sorted(p for p in (dump / "db").iterdir() if p.is_file())
    logs = sorted(p for p in (dump / "logs").rglob("*") if p.is_file())
    return tables, logs


def _run_child(args: list[str], report: Path) -> tuple[dict[str, Any], float, float]:
    """Run `benchmarks/run.py <child args>`; its report, wall seconds, peak RSS (MiB, wait4)."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, *args])
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:1])} failed with exit code {proc.returncode}")
    return json.loads(report.read_text(encoding="utf-8")), wall, usage.ru_maxrss / 1024


# --------------------------------------------------------------------------------------
# Dumps


def ensure_dump(workdir: Path, size: Size, incidents: int, seed: int, fresh: bool) -> Measured:
    """Generate the dump for `size`, or reuse the cached one made with the same parameters."""
    name = f"dump-{size.builds}b-{size.log_bytes}B-k{incidents}-s{seed}-csv"
    dump = workdir / name
    meta = dump / ".generated.json"
    if meta.exists() and not fresh:
        doc = json.loads(meta.read_text(encoding="utf-8"))
        if doc.get("format_version") == FORMAT_VERSION:
            print(f"[{size.label}] reusing {dump}", file=sys.stderr, flush=True)
            return Measured(size, str(dump), doc, None)
    if dump.exists():
        shutil.rmtree(dump)
    print(f"[{size.label}] generating {dump} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    generate(dump, builds=size.builds, log_bytes=size.log_bytes, incidents=incidents, seed=seed)
    took = time.perf_counter() - started
    doc = json.loads(meta.read_text(encoding="utf-8"))
    return Measured(size, str(dump), doc, took)


# --------------------------------------------------------------------------------------
# Floors and alternatives


def _shell(cmd: str, files: list[Path]) -> str:
    """Run `cmd` with the file names on stdin, NUL-separated (too many for one argument)."""
    names = "".join(f"{p}\0" for p in files)
    out = subprocess.run(
        ["bash", "-c", cmd], input=names, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def measure_wc(dump: Path) -> dict[str, Any]:
    _, logs = _dump_files(dump)
    plain = [p for p in logs if p.suffix != ".gz"]
    packed = [p for p in logs if p.suffix == ".gz"]
    started = time.perf_counter()
    lines = 0
    if plain:  # the last line is the total (or the only file's count)
        lines += int(_shell("wc -l --files0-from=-", plain).splitlines()[-1].split()[0])
    if packed:
        lines += int(_shell("xargs -0 zcat | wc -l", packed))
    return {"lines": lines, "seconds": time.perf_counter() - started}


def measure_grep(dump: Path) -> dict[str, Any]:
    _, logs = _dump_files(dump)
    started = time.perf_counter()
    out = _shell(f"xargs -0 zgrep -H '{GREP_PATTERN}' | sort | uniq -c | wc -l", logs)
    return {
        "command": f"zgrep -H '{GREP_PATTERN}' <logs> | sort | uniq -c | wc -l",
        "distinct_lines": int(out or 0),
        "seconds": time.perf_counter() - started,
    }


def _attempt(label: str, what: str, measure: Any) -> dict[str, Any]:
    """One floor or alternative; a failure is recorded and printed, not fatal."""
    print(f"[{label}] {what} ...", file=sys.stderr, flush=True)
    try:
        return measure()
    except Exception as exc:
        print(f"[{label}] {what} failed: {exc}", file=sys.stderr, flush=True)
        return {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}


class Postgres:
    """A scratch PostgreSQL server (tests/pgcluster.py) with Coder's schema per database."""

    def __init__(self) -> None:
        from tests.pgcluster import PgCluster

        self.cluster = PgCluster.start()
        self.psql = str(self.cluster.bindir / "psql")
        schema = (ROOT / "tests" / "pg_schema.sql").read_text(encoding="utf-8")
        # The export holds job_status, a generated column in Coder's schema: load it as data.
        self.schema = re.sub(
            r"job_status provisioner_job_status GENERATED ALWAYS AS \(.*?\) STORED NOT NULL",
            "job_status provisioner_job_status",
            schema,
            flags=re.S,
        )
        version = self._sql("postgres", "SHOW server_version")
        self.version = version.strip()

    def _sql(self, db: str, sql: str, timeout: float = 3600) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        out = subprocess.run(
            [
                self.psql,
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                self.cluster.dsn(db),
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        if out.returncode != 0:
            raise RuntimeError(f"psql failed: {out.stderr.strip()[:500]}")
        return out.stdout

    def measure(self, dump: Path) -> dict[str, Any]:
        db = "bench"
        self._sql("postgres", f"DROP DATABASE IF EXISTS {db}")
        self._sql("postgres", f"CREATE DATABASE {db}")
        try:
            with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
                f.write(self.schema)
            self._sql(db, f"\\i {f.name}")
            os.unlink(f.name)
            tables, _ = _dump_files(dump)
            by_name = {p.name.split(".")[0]: p for p in tables}
            order = [t for t in PG_TABLES if t in by_name] + sorted(set(by_name) - set(PG_TABLES))
            per_table, started = {}, time.perf_counter()
            for table in order:
                t = time.perf_counter()
                path = str(by_name[table]).replace("'", "''")
                self._sql(db, f"\\copy {table} FROM '{path}' WITH (FORMAT csv, HEADER)")
                per_table[table] = time.perf_counter() - t
            loaded = time.perf_counter()
            rows = self._sql(db, PG_QUERY).strip().splitlines()
            queried = time.perf_counter()
            size = self._sql(db, f"SELECT pg_database_size('{db}')").strip()
            return {
                "load_seconds": loaded - started,
                "query_seconds": queried - loaded,
                "per_table": per_table,
                "stuck_rows": len(rows),
                "database_bytes": int(size),
                "version": self.version,
            }
        finally:
            self._sql("postgres", f"DROP DATABASE IF EXISTS {db}")

    def stop(self) -> None:
        self.cluster.stop()


# --------------------------------------------------------------------------------------
# One size


def warm(dump: Path) -> None:
    """Read every file of the dump once, so that the analysis and the floors measured after it
    all read from the page cache: a cold first read would time the disk, and only for whichever
    runs first (the analysis)."""
    tables, logs = _dump_files(dump)
    for path in [*tables, *logs]:
        with path.open("rb") as f:
            while f.read(8 << 20):
                pass


def median_of(items: list[Any], key: Any) -> Any:
    """The item in the middle when sorted by `key` (the lower of the two middle ones when the
    count is even), so that what is reported is one real run, not a blend of several."""
    return sorted(items, key=key)[(len(items) - 1) // 2]


def parse_rate(run: dict[str, Any]) -> float:
    """Lines per second of a run's `parse logs` stage (0 when it parsed nothing)."""
    st = next((s for s in run["stages"] if s["stage"] == "parse logs"), {})
    return st.get("lines", 0) / st["seconds"] if st.get("seconds") else 0.0


def median_parse_rate(m: Measured) -> float:
    """A size's parse rate: the median over its runs (that of its one run without --repeat)."""
    rates = [r["parse_lines_per_s"] for r in m.repeats] or [parse_rate(m.run)]
    return median_of(rates, key=float)


def repeat_line(m: Measured) -> str:
    """With --repeat, what each run measured; empty for a single run."""
    if len(m.repeats) < 2:
        return ""
    runs = ", ".join(f"{r['analyze_seconds']:.1f}" for r in m.repeats)
    rates = ", ".join(f"{r['parse_lines_per_s'] / 10**6:.2f}" for r in m.repeats)
    floors = ", ".join(f"{f:.1f}" for f in m.floor_repeats) or "-"
    return (
        f"{len(m.repeats)} runs; the one shown below is the median by analysis time. Analysis "
        f"{runs} s; parse {rates} M lines/s (the summary and the targets take the median, "
        f"{median_parse_rate(m) / 10**6:.2f}); DuckDB floor {floors} s"
    )


def measure(
    m: Measured, workdir: Path, pg: Postgres | None, breakdown: bool = False, repeat: int = 1
) -> None:
    """The analysis and the DuckDB floor `repeat` times each (the median of each is kept, and
    the highest peak RSS), then the other alternatives once."""
    dump = Path(m.dump)
    label = m.size.label
    out = workdir / f"out-{dump.name}"
    shutil.rmtree(out, ignore_errors=True)
    warm(dump)
    with tempfile.TemporaryDirectory(prefix="forensics-bench-") as tmp:
        report = Path(tmp) / "analyze.json"
        print(f"[{label}] forensics analyze ...", file=sys.stderr, flush=True)
        extra = ["--model-breakdown"] if breakdown else []
        runs = []
        for _ in range(repeat):
            try:
                runs.append(
                    _run_child(
                        ["--child-analyze", str(dump), str(out), str(report), *extra], report
                    )
                )
            except RuntimeError as exc:  # printed by the child; the other sizes still run
                m.run = {"error": str(exc)}
                return
        m.run, m.process_wall, _ = median_of(runs, key=lambda r: r[0]["analyze_seconds"])
        m.process_rss_mib = max(rss for _, _, rss in runs)
        m.repeats = [
            {
                "analyze_seconds": run["analyze_seconds"],
                "parse_lines_per_s": parse_rate(run),
                "process_rss_mib": rss,
                "findings": run["findings"],
            }
            for run, _, rss in runs
        ]
        count = Path(tmp) / "count.json"

        def duckdb_floor() -> dict[str, Any]:
            floors = []
            for _ in range(repeat):
                doc, wall, rss = _run_child(["--child-count", str(dump), str(count)], count)
                floors.append({**doc, "process_wall": wall, "process_rss_mib": rss})
            m.floor_repeats = [f["table_seconds"] + f["log_seconds"] for f in floors]
            return median_of(floors, key=lambda f: f["table_seconds"] + f["log_seconds"])

        m.duckdb = _attempt(label, "DuckDB counting floor", duckdb_floor)
    m.wc = _attempt(label, "wc -l", lambda: measure_wc(dump))
    m.grep = _attempt(label, "zgrep pipeline", lambda: measure_grep(dump))
    if pg is not None:
        m.pg = _attempt(label, "PostgreSQL \\copy + query", lambda: pg.measure(dump))
    saved = workdir / "results" / f"{dump.name}.json"
    saved.parent.mkdir(exist_ok=True)
    saved.write_text(json.dumps(asdict(m), indent=1, default=str), encoding="utf-8")


STAGE_HEADER = ["stage", "wall s", "CPU s", "throughput", "peak RSS MiB"]


def stage_rows(m: Measured) -> list[list[str]]:
    """Per stage: name, seconds, CPU seconds (all threads), throughput, peak RSS (MiB as the
    engine records it)."""
    gen = m.generated
    log_bytes = gen.get("log_bytes", 0)
    table_bytes = gen.get("table_bytes", 0)
    rows = []
    for st in m.run["stages"]:
        s = st["seconds"]
        name = st["stage"]
        if name == "discover":
            what = f"{st.get('files', 0):,} files, {_bytes(st.get('bytes', 0))}: "
            what += _mbps(st.get("bytes", 0), s)
        elif name == "ingest tables":
            what = f"{st.get('rows', 0):,} rows: {_rate(st.get('rows', 0), s, 'rows')}, "
            what += _mbps(table_bytes, s)
        elif name == "parse logs":
            what = f"{st.get('lines', 0):,} lines: {_rate(st.get('lines', 0), s, 'lines')}, "
            what += _mbps(log_bytes, s)
        elif name == "load logs":
            what = f"{st.get('entries', 0):,} entries: {_rate(st.get('entries', 0), s, 'entries')}"
        elif name == "rules":
            what = f"{st.get('findings', 0)} findings"
        elif name == "timelines":
            what = f"{st.get('workspaces', 0)} workspaces"
        else:
            what = ""
        cpu, rss = f"{st['cpu_seconds']:.2f}", f"{st['peak_rss_mib']:,.0f}"
        rows.append([name, f"{s:.2f}", cpu, what, rss])
        if name == "model":  # with --model-breakdown
            rows += [
                [f"  {label}", f"{t:.2f}", "", "", ""]
                for label, t in m.run.get("model_statements", [])
            ]
    run = m.run
    rows.append(
        [
            "render",
            f"{run['render_seconds']:.2f}",
            "",
            f"report.html {_bytes(run['report_html_bytes'])}, "
            f"summary.md {_bytes(run['summary_md_bytes'])}",
            f"{run['peak_rss_mib']:,.0f}",
        ]
    )
    rows.append(
        [
            "total (analyze + render)",
            f"{run['analyze_seconds'] + run['render_seconds']:.2f}",
            "",
            f"process wall {m.process_wall:.1f} s (with interpreter start and imports)",
            f"{m.process_rss_mib:,.0f}",
        ]
    )
    return rows


def floor_rows(m: Measured) -> list[list[str]]:
    """Floors and alternatives: what, seconds, the comparison."""
    analyze_s = m.run["analyze_seconds"]
    parse = next((s for s in m.run["stages"] if s["stage"] == "parse logs"), None)
    d = m.duckdb
    failed = [
        [name, "-", f"failed: {r['error']}"]
        for name, r in (("DuckDB counting floor", m.duckdb), ("wc -l", m.wc),
                        ("PostgreSQL", m.pg), ("zgrep pipeline", m.grep))
        if r and "error" in r
    ]  # fmt: skip
    rows: list[list[str]] = []
    if _ok(d):
        floor = d["table_seconds"] + d["log_seconds"]
        rows += [
            [
                "DuckDB counts table rows (read_csv, all_varchar)",
                f"{d['table_seconds']:.2f}",
                f"{d['table_rows']:,} rows, {_rate(d['table_rows'], d['table_seconds'], 'rows')}",
            ],
            [
                "DuckDB counts log lines (one column, gzip too)",
                f"{d['log_seconds']:.2f}",
                f"{d['log_lines']:,} lines, {_rate(d['log_lines'], d['log_seconds'], 'lines')}",
            ],
            [
                "DuckDB counting floor (sum)",
                f"{floor:.2f}",
                f"forensics analyze {analyze_s:.1f} s = {analyze_s / floor:.2f}x the floor",
            ],
        ]
    if _ok(m.wc):
        wc_rate = m.wc["lines"] / m.wc["seconds"]
        cmp = ""
        if parse:
            p_rate = parse.get("lines", 0) / parse["seconds"]
            cmp = f"parse logs {p_rate / 10**6:.2f} M lines/s = {p_rate / wc_rate:.2f}x wc -l"
        what = f"{m.wc['lines']:,} lines, {wc_rate / 10**6:.1f} M lines/s; {cmp}"
        rows.append(["wc -l over the logs (zcat | wc -l for .gz)", f"{m.wc['seconds']:.2f}", what])
    if _ok(m.pg):
        total = m.pg["load_seconds"] + m.pg["query_seconds"]
        rows += [
            [
                "PostgreSQL \\copy of the tables",
                f"{m.pg['load_seconds']:.2f}",
                f"database {_bytes(m.pg['database_bytes'])} (PostgreSQL {m.pg['version']})",
            ],
            [
                "PostgreSQL stuck-agent join",
                f"{m.pg['query_seconds']:.2f}",
                f"{m.pg['stuck_rows']} rows",
            ],
            [
                "PostgreSQL load + query",
                f"{total:.2f}",
                f"forensics analyze = {analyze_s / total:.2f}x (DB rules only there; no logs)",
            ],
        ]
    if _ok(m.grep):
        rows.append(
            [
                "zgrep start/manifest lines | sort | uniq -c",
                f"{m.grep['seconds']:.2f}",
                f"{m.grep['distinct_lines']:,} distinct lines; forensics parse + load "
                f"logs = {_log_seconds(m) / m.grep['seconds']:.2f}x",
            ]
        )
    return rows + failed


def _ok(measured: dict[str, Any]) -> bool:
    return bool(measured) and "error" not in measured


def _log_seconds(m: Measured) -> float:
    return sum(s["seconds"] for s in m.run["stages"] if s["stage"] in ("parse logs", "load logs"))


# --------------------------------------------------------------------------------------
# Targets


@dataclass
class Target:
    name: str
    status: str  # met | MISSED | not measured
    detail: str


def check_targets(measured: list[Measured]) -> list[Target]:
    out = []
    results = [m for m in measured if _ok(m.run)]
    failed = [m.size.label for m in measured if not _ok(m.run)]
    if failed:
        out.append(Target("forensics analyze ran at every size", "MISSED", ", ".join(failed)))
    big = [
        m for m in results if m.size.builds >= 10**6 and m.size.log_bytes >= 10**9 and _ok(m.duckdb)
    ]
    if big:
        parts, ok = [], True
        for m in big:
            floor = m.duckdb["table_seconds"] + m.duckdb["log_seconds"]
            ratio = m.run["analyze_seconds"] / floor
            ok &= ratio <= MAX_FLOOR_RATIO
            parts.append(
                f"{m.size.label}: {m.run['analyze_seconds']:.1f} s vs {floor:.1f} s = {ratio:.2f}x"
            )
        out.append(Target(FLOOR_TARGET, "met" if ok else "MISSED", "; ".join(parts)))
    else:
        why = "no size with >= 1M builds and >= 1 GB of logs (and a DuckDB floor)"
        out.append(Target(FLOOR_TARGET, "not measured", why))
    rates = [(rate, m.size.label) for m in results if (rate := median_parse_rate(m))]
    if rates:
        low = min(rates)
        status = "met" if low[0] >= MIN_LINES_PER_S else "MISSED"
        detail = ", ".join(f"{r / 10**6:.2f} M/s ({lbl})" for r, lbl in rates)
        out.append(Target("log parsing >= 1M lines/s", status, detail))
    peaks = [(m.process_rss_mib, m.size.label) for m in results]
    if peaks:
        high = max(peaks)
        out.append(
            Target(
                f"peak RSS < 2 GB ({MAX_RSS_MIB:,.0f} MiB) at every size",
                "met" if high[0] < MAX_RSS_MIB else "MISSED",
                ", ".join(f"{r:,.0f} MiB ({lbl})" for r, lbl in peaks),
            )
        )
    if len(results) >= 2:
        times = [m.run["render_seconds"] for m in results]
        sizes = [m.run["report_html_bytes"] for m in results]
        flat_t = (
            max(times) <= min(times) * RENDER_SLACK
            or max(times) - min(times) <= RENDER_SLACK_SECONDS
        )
        flat_s = max(sizes) <= min(sizes) * RENDER_SLACK
        out.append(
            Target(
                "report render time and size independent of input size",
                "met" if flat_t and flat_s else "MISSED",
                f"render {min(times):.2f}-{max(times):.2f} s, report.html "
                f"{_bytes(min(sizes))}-{_bytes(max(sizes))} (allowed: x{RENDER_SLACK} "
                f"or +{RENDER_SLACK_SECONDS} s)",
            )
        )
    else:
        out.append(
            Target(
                "report render time and size independent of input size",
                "not measured",
                "needs two sizes or more",
            )
        )
    sets = [  # every run's, when repeated: each must find the planted incidents
        (m.size.label + (f" (run {n})" if len(m.repeats) > 1 else ""), {tuple(f) for f in found})
        for m in results
        for n, found in enumerate([r["findings"] for r in m.repeats] or [m.run["findings"]], 1)
    ]
    expected = (
        {tuple(f) for f in results[0].generated.get("expected_findings", [])} if results else set()
    )
    if sets:
        same = all(s == sets[0][1] for _, s in sets) and sets[0][1] == expected
        detail = f"{len(sets[0][1])} findings at {len(results)} size(s)"
        if len(sets) > len(results):
            detail += f" in every one of {len(sets)} runs"
        detail += f", {len(expected)} planted"
        if not same:
            for label, s in sets:
                extra, missing = sorted(s - expected)[:3], sorted(expected - s)[:3]
                if extra or missing:
                    detail += f"; {label}: unexpected {extra}, missing {missing}"
        out.append(
            Target(
                "planted-incident findings identical at every size "
                "(rule, workspace, build, fingerprint)",
                "met" if same else "MISSED",
                detail,
            )
        )
    return out


# --------------------------------------------------------------------------------------
# Output


def _table(header: list[str], rows: list[list[str]], right: frozenset[int] = frozenset()) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def fmt(r: list[str]) -> str:
        cells = enumerate(zip(r, widths, strict=True))
        cols = (str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in cells)
        return "  ".join(cols).rstrip()

    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *map(fmt, rows)])


def _md(header: list[str], rows: list[list[str]]) -> str:
    def esc(c: str) -> str:
        return str(c).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def dump_line(m: Measured) -> str:
    g = m.generated
    rows = sum(g.get("tables", {}).values())
    gen = (
        f"generated in {m.generation_seconds:.1f} s"
        if m.generation_seconds is not None
        else "reused (generated earlier in "
        f"{g.get('table_seconds', 0) + g.get('log_seconds', 0):.1f} s)"
    )
    return (
        f"{rows:,} table rows ({_bytes(g.get('table_bytes', 0))} CSV, "
        f"{g.get('tables', {}).get('workspace_agents', 0):,} agent rows), "
        f"{g.get('log_lines', 0):,} log lines ({_bytes(g.get('log_bytes', 0))}, "
        f"{_bytes(g.get('log_disk_bytes', 0))} on disk) in {g.get('log_files', 0)} files "
        f"({g.get('gz_log_files', 0)} gzip'd) from {g.get('hosts', 0)} hosts; {gen}: "
        f"{_rate(rows, g.get('table_seconds', 0), 'rows')}, "
        f"{_mbps(g.get('log_bytes', 0), g.get('log_seconds', 0))} of logs"
    )


def summary_rows(results: list[Measured]) -> list[list[str]]:
    """One row per size: forensics against each floor and alternative, as times and ratios."""
    rows = []
    for m in results:
        if not _ok(m.run):
            rows.append([_title(m), "failed"] + ["-"] * (len(SUMMARY_HEADER) - 2))
            continue
        analyze_s = m.run["analyze_seconds"]
        floor = m.duckdb["table_seconds"] + m.duckdb["log_seconds"] if _ok(m.duckdb) else None
        rate = median_parse_rate(m)
        wc_rate = m.wc["lines"] / m.wc["seconds"] if _ok(m.wc) else None
        pg = m.pg["load_seconds"] + m.pg["query_seconds"] if _ok(m.pg) else None
        grep = m.grep["seconds"] if _ok(m.grep) else None
        rows.append(
            [
                _title(m),
                f"{analyze_s:.1f}",
                f"{floor:.1f}" if floor else "-",
                _ratio(analyze_s, floor),
                f"{rate / 10**6:.2f} M",
                f"{wc_rate / 10**6:.2f} M" if wc_rate else "-",
                _ratio(rate, wc_rate),
                f"{pg:.1f}" if pg else "-",
                _ratio(analyze_s, pg),
                f"{grep:.1f}" if grep else "-",
                _ratio(_log_seconds(m), grep),
                f"{m.run['render_seconds']:.2f}",
                _bytes(m.run["report_html_bytes"]),
                f"{m.process_rss_mib:,.0f}",
            ]
        )
    return rows


SUMMARY_HEADER = [
    "size", "analyze s", "DuckDB floor s", "analyze ÷ floor", "parse lines/s", "wc -l lines/s",
    "parse ÷ wc", "PostgreSQL load+query s", "analyze ÷ PostgreSQL", "zgrep s",
    "parse+load logs ÷ zgrep", "render s", "report.html", "peak RSS MiB",
]  # fmt: skip


def _title(m: Measured) -> str:
    return m.size.label + (" (RSS proof)" if m.size.purpose == "rss proof" else "")


def print_results(results: list[Measured], targets: list[Target]) -> None:
    for m in results:
        print(f"\n== {_title(m)} ==")
        if not _ok(m.run):
            print(f"forensics analyze failed: {m.run['error']} (its traceback is above)")
            continue
        print(f"dump {m.dump}: {dump_line(m)}")
        if repeats := repeat_line(m):
            print(repeats)
        print(_table(STAGE_HEADER, stage_rows(m), frozenset({1, 2, 4})))
        print()
        print(
            _table(
                ["floor / alternative (same files)", "s", "comparison"],
                floor_rows(m),
                frozenset({1}),
            )
        )
    print("\n== summary ==")
    print(_table(SUMMARY_HEADER, summary_rows(results), frozenset(range(1, 14))))
    print("\n== targets ==")
    for t in targets:
        print(f"{t.status:>12}  {t.name}: {t.detail}")


def code_state() -> tuple[str, str]:
    """The commit, and the uncommitted changes to forensics/ (a diff; empty when clean)."""
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    diff = subprocess.run([*git, "diff", "HEAD", "--", "forensics"], capture_output=True, text=True)
    return commit.stdout.strip(), diff.stdout


def machine() -> list[tuple[str, str]]:
    import duckdb
    import polars

    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "unknown"
    with open("/proc/meminfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    os_name = platform.platform()
    if Path("/etc/os-release").exists():
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = f"{line.split('=', 1)[1].strip(chr(34))}, Linux {platform.release()}"
    commit, dirty = code_state()
    return [
        ("CPU", f"{cpu}, {os.cpu_count()} cores"),
        ("memory", mem),
        ("OS", os_name),
        ("Python", platform.python_version()),
        ("DuckDB", duckdb.__version__),
        ("Polars", polars.__version__),
        ("forensics", f"{commit}{' with uncommitted changes in forensics/' if dirty else ''}"),
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
    ]


def markdown(
    results: list[Measured], targets: list[Target], command: str, took: float, warning: str
) -> str:
    parts = [MARK_START, "", "### Machine", ""]
    parts += [f"- {k}: {v}" for k, v in machine()]
    if warning:
        parts.append(f"- **{warning}**")
    pgv = next((m.pg["version"] for m in results if _ok(m.pg)), None)
    if pgv:
        parts.append(f"- PostgreSQL (the alternative): {pgv}, fsync off, shared_buffers 32 MB")
    parts += [
        "",
        "### Command",
        "",
        "```",
        command,
        "```",
        "",
        f"The whole run took {took / 60:.1f} min.",
        "",
        "### Targets",
        "",
    ]
    parts.append(
        _md(
            ["target", "result", "measured"],
            [[t.name, f"**{t.status}**", t.detail] for t in targets],
        )
    )
    parts += ["", "### Summary", "", _md(SUMMARY_HEADER, summary_rows(results))]
    for m in results:
        parts += ["", f"### {_title(m)}", "", dump_line(m), ""]
        if repeats := repeat_line(m):
            parts += [repeats, ""]
        if not _ok(m.run):
            parts += [f"forensics analyze failed: {m.run['error']}"]
            continue
        parts += [_md(STAGE_HEADER, stage_rows(m)), ""]
        parts += [_md(["floor / alternative (same files)", "s", "comparison"], floor_rows(m))]
    parts += ["", MARK_END]
    return "\n".join(parts) + "\n"


def write_markdown(path: Path, text: str) -> None:
    """Replace the marked results section of `path` (appended when the file has none)."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if MARK_START in old and MARK_END in old:
        head, rest = old.split(MARK_START, 1)
        tail = rest.split(MARK_END, 1)[1]
        new = head + text.rstrip("\n") + tail
    else:
        new = (old.rstrip("\n") + "\n\n" if old else "") + text
    path.write_text(new, encoding="utf-8")


# --------------------------------------------------------------------------------------


def parse_sizes(text: str) -> list[Size]:
    sizes = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        builds, _, logs = item.partition(":")
        if not logs:
            raise SystemExit(f"--sizes: {item!r} is not BUILDS:LOGS (e.g. 10k:100MB)")
        sizes.append(Size(parse_count(builds), parse_size(logs)))
    return sizes


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child-analyze":
        breakdown = sys.argv[5:] == ["--model-breakdown"]
        child_analyze(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), breakdown)
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--child-count":
        child_count(Path(sys.argv[2]), Path(sys.argv[3]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", help=f"BUILDS:LOGS,... (default {DEFAULT_SIZES})")
    ap.add_argument("--rss-proof", help="log size (builds 100k) or BUILDS:LOGS, e.g. 5GB")
    ap.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES}")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/forensics-bench"))
    ap.add_argument("--incidents", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--regenerate", action="store_true", help="do not reuse cached dumps")
    ap.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL comparison")
    ap.add_argument("--markdown", type=Path, help="write the results section of this file")
    ap.add_argument(
        "--model-breakdown", action="store_true", help="time each model SQL statement apart"
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run the analysis and the DuckDB floor N times per size and report the median of "
        "each (this machine's timings move by tens of percent from run to run)",
    )
    args = ap.parse_args()
    if args.repeat < 1:
        raise SystemExit("--repeat: N must be 1 or more")
    sizes = parse_sizes(args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES))
    if args.rss_proof:
        proof = args.rss_proof
        extra = parse_sizes(proof)[0] if ":" in proof else Size(RSS_PROOF_BUILDS, parse_size(proof))
        extra.purpose = "rss proof"
        sizes.append(extra)
    command = "benchmarks/run.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    args.workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    code_before = code_state()
    pg = None
    if not args.no_postgres:
        try:
            pg = Postgres()
        except Exception as exc:  # the comparison is optional; say why it is missing
            print(f"PostgreSQL comparison skipped: {exc}", file=sys.stderr)
    results = []
    try:
        for size in sizes:
            m = ensure_dump(args.workdir, size, args.incidents, args.seed, args.regenerate)
            measure(m, args.workdir, pg, args.model_breakdown, args.repeat)
            results.append(m)
    finally:
        if pg is not None:
            pg.stop()
    targets = check_targets(results)
    print_results(results, targets)
    took = time.perf_counter() - started
    print(f"\nwhole run: {took / 60:.1f} min")
    warning = ""
    if code_state() != code_before:  # the sizes measured different code: do not compare them
        warning = f"forensics/ changed during the run (it began at {code_before[0]})"
        print(f"WARNING: {warning}")
    if args.markdown:
        write_markdown(args.markdown, markdown(results, targets, command, took, warning))
        print(f"wrote the results section of {args.markdown}")
    return 1 if any(t.status == "MISSED" for t in targets) else 0


if __name__ == "__main__":
    sys.exit(main())
