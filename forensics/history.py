"""Nightly mode: a DuckDB file that remembers every run, so a run can say what is new, still
open, resolved or regressed since the last one, and how agent rows moved between exports.

One `History` per run of `forensics analyze --history FILE`:

- `History.open()` takes DuckDB's write lock on the file (waiting a bounded time for another
  run to finish), checks that the file is a forensics history, and upgrades an older format.
  The lock is held until `close()`, so two runs on one history never interleave.
- `capture()` is given to `engine.analyze(inspect=...)`: it copies each agent row's lifecycle
  state out of the analysis database into a Parquet file, set-based.
- `record()` opens one transaction and writes the run, its inputs, its findings and the agent
  rows that changed since the previous export (only changes are stored, so a year of nightly
  exports of a million agent rows stays small), compares the run with the one before, prunes
  old runs, and returns what the report shows (`Outcome.document`).
- `commit()` makes all of it durable at once. A run killed before the commit leaves the history
  as it was: DuckDB makes a transaction part of the file (through its write-ahead log) only
  when it commits, and replays or discards the log when the file is next opened.

Nothing here prints; `progress` callbacks receive the notes the command line shows.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
from markupsafe import Markup, escape

from forensics import __version__
from forensics.engine import Analysis, jsonable
from forensics.errors import InputError, UsageError
from forensics.rules import SEVERITIES

FORMAT_VERSION = 2
DEFAULT_WAIT = 600.0  # seconds a run waits for another run to release the history
MAX_ROWS = 500  # agent rows listed per kind of lifecycle change (counts are always complete)
TREND_RUNS = 60  # runs shown in the trend chart
META = "forensics_meta"
# Test hook: FORENSICS_PAUSE_AT=<point>[:<seconds>] makes a run stop at that named point (see
# `checkpoint`) so that tests can kill it there or start a second run against the same file.
PAUSE_ENV = "FORENSICS_PAUSE_AT"

SCHEMA = f"""
CREATE TABLE {META} (key VARCHAR NOT NULL, value VARCHAR);
-- One row per recorded run. run_at is the run's time (--generated-at, else now); as_of is the
-- moment the export describes; input_key identifies the export (its files' sha256s).
CREATE TABLE runs (
    run_id INTEGER NOT NULL, run_at TIMESTAMPTZ NOT NULL, recorded_at TIMESTAMPTZ NOT NULL,
    as_of TIMESTAMPTZ, tool VARCHAR, input_key VARCHAR NOT NULL, report_dir VARCHAR,
    forced BOOLEAN, findings INTEGER, new INTEGER, regressed INTEGER, resolved INTEGER,
    agent_rows BIGINT
);
CREATE TABLE run_inputs (run_id INTEGER NOT NULL, path VARCHAR, size BIGINT, sha256 VARCHAR);
-- Each rule's status in the run (ran, skipped, broken): a finding whose rule did not run is
-- neither resolved nor regressed. Runs without rows here (upgraded ones) ran every rule.
CREATE TABLE run_rules (run_id INTEGER NOT NULL, rule VARCHAR NOT NULL, status VARCHAR);
CREATE TABLE findings (
    run_id INTEGER NOT NULL, fingerprint VARCHAR NOT NULL, rule VARCHAR, severity VARCHAR,
    agent_id VARCHAR, workspace_id VARCHAR, workspace_name VARCHAR, build_number INTEGER,
    ts VARCHAR, summary VARCHAR
);
-- Agent rows, stored as changes: a row is written for a run when an agent row first appears,
-- when any of its columns differ from its previous state, and (present = false) when it is
-- gone from the export. The state of every row as of run R is its latest row with run_id <= R.
CREATE TABLE agent_states (
    run_id INTEGER NOT NULL, agent_id UUID NOT NULL, present BOOLEAN NOT NULL,
    agent_name VARCHAR, workspace_id UUID, workspace_name VARCHAR, build_number INTEGER,
    transition VARCHAR, lifecycle_state VARCHAR, connected BOOLEAN, latest BOOLEAN
);
"""

# Upgrades, by the format they start from. Each runs in one transaction with the version bump.
MIGRATIONS: dict[int, str] = {
    # Format 1 kept every agent row of every run (run_agents) and fewer run facts; format 2
    # keeps only changes (agent_states), the finding's time and workspace id, and run counts.
    1: """
ALTER TABLE runs RENAME COLUMN started_at TO run_at;
ALTER TABLE runs RENAME COLUMN out_dir TO report_dir;
ALTER TABLE runs ADD COLUMN recorded_at TIMESTAMPTZ;
ALTER TABLE runs ADD COLUMN forced BOOLEAN;
ALTER TABLE runs ADD COLUMN findings INTEGER;
ALTER TABLE runs ADD COLUMN new INTEGER;
ALTER TABLE runs ADD COLUMN regressed INTEGER;
ALTER TABLE runs ADD COLUMN resolved INTEGER;
ALTER TABLE runs ADD COLUMN agent_rows BIGINT;
UPDATE runs SET recorded_at = run_at, forced = false,
    findings = (SELECT count(*) FROM run_findings f WHERE f.run_id = runs.run_id),
    agent_rows = (SELECT count(*) FROM run_agents a WHERE a.run_id = runs.run_id);
ALTER TABLE run_inputs ADD COLUMN size BIGINT;
CREATE TABLE run_rules (run_id INTEGER NOT NULL, rule VARCHAR NOT NULL, status VARCHAR);
CREATE TABLE findings AS
SELECT run_id, fingerprint, rule, severity, agent_id, CAST(NULL AS VARCHAR) AS workspace_id,
       workspace_name, build_number, CAST(NULL AS VARCHAR) AS ts, summary
FROM run_findings;
DROP TABLE run_findings;
CREATE TABLE agent_states (
    run_id INTEGER NOT NULL, agent_id UUID NOT NULL, present BOOLEAN NOT NULL,
    agent_name VARCHAR, workspace_id UUID, workspace_name VARCHAR, build_number INTEGER,
    transition VARCHAR, lifecycle_state VARCHAR, connected BOOLEAN, latest BOOLEAN
);
INSERT INTO agent_states
WITH ordered AS (SELECT run_id, lag(run_id) OVER (ORDER BY run_id) AS prev FROM runs)
SELECT o.run_id, s.agent_id, true, NULL, NULL, s.workspace_name, s.build_number, NULL,
       s.lifecycle_state, NULL, NULL
FROM run_agents s JOIN ordered o USING (run_id)
LEFT JOIN run_agents p ON p.run_id = o.prev AND p.agent_id = s.agent_id
WHERE p.agent_id IS NULL
   OR p.lifecycle_state IS DISTINCT FROM s.lifecycle_state
   OR p.workspace_name IS DISTINCT FROM s.workspace_name
   OR p.build_number IS DISTINCT FROM s.build_number
UNION ALL
SELECT o.run_id, p.agent_id, false, NULL, NULL, p.workspace_name, p.build_number, NULL,
       p.lifecycle_state, NULL, NULL
FROM ordered o JOIN run_agents p ON p.run_id = o.prev
WHERE NOT EXISTS (
    SELECT 1 FROM run_agents s WHERE s.run_id = o.run_id AND s.agent_id = p.agent_id
);
DROP TABLE run_agents;
""",
}

AGENT_COLUMNS = (
    "agent_name",
    "workspace_id",
    "workspace_name",
    "build_number",
    "transition",
    "lifecycle_state",
    "connected",
    "latest",
)
SEVERITY_RANK = "list_position(" + str(list(SEVERITIES)) + ", severity)"
# ran(run, rule): whether the rule ran in that run; a run that recorded no rules (one from an
# older format, or no run at all) counts as having run every rule.
RAN_MACRO = """CREATE OR REPLACE TEMP MACRO ran(p_run, p_rule) AS
    EXISTS (SELECT 1 FROM run_rules WHERE run_id = p_run AND rule = p_rule AND status = 'ran')
    OR NOT EXISTS (SELECT 1 FROM run_rules WHERE run_id = p_run)"""


def checkpoint(point: str) -> None:
    """Stop here when the test hook names this point (see PAUSE_ENV); otherwise do nothing."""
    wanted = os.environ.get(PAUSE_ENV, "")
    name, _, seconds = wanted.partition(":")
    if not point or name != point:
        return
    os.write(2, f"paused at {point}\n".encode())
    time.sleep(float(seconds or 60))


@dataclass
class Outcome:
    """What `record()` did, and what the report's "Since last run" section shows."""

    run: int
    recorded: bool  # False: this export was already recorded as run `run` (a re-run)
    previous: int | None
    document: dict[str, Any]
    pruned: list[int] = field(default_factory=list)

    def new_failing(self, fail_on: str) -> int:
        """New and regressed findings at or above `fail_on`; none in a re-run."""
        if not self.recorded:
            return 0
        floor = SEVERITIES.index(fail_on)
        doc = self.document
        return sum(
            1 for f in doc["new"] + doc["regressed"] if SEVERITIES.index(f["severity"]) >= floor
        )


class History:
    """An open, locked history file; see the module docstring for the order of calls."""

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection) -> None:
        self.path = path
        self.con = con
        self._tmp = Path(tempfile.mkdtemp(prefix="forensics-history-"))
        self._snapshot: Path | None = None
        self._in_transaction = False

    # -- opening

    @classmethod
    def open(
        cls,
        path: Path,
        wait: float = DEFAULT_WAIT,
        progress: Callable[[str], None] | None = None,
    ) -> History:
        """Open (or create) the history at `path`, waiting up to `wait` seconds for its lock.

        Raises InputError, naming the file, when it is not a forensics history, was written by
        a newer forensics, or is still locked by another process after `wait` seconds.
        """
        say = progress or (lambda _m: None)
        if path.is_dir():
            raise InputError(f"--history {path}: is a directory, not a history file")
        if not path.parent.is_dir():
            raise InputError(f"--history {path}: directory {path.parent} does not exist")
        if path.is_file() and path.stat().st_size == 0:
            path.unlink()  # an empty file (e.g. made by `touch`) holds nothing: start afresh
        con = _connect(path, wait, say)
        history = cls(path, con)
        try:
            history._prepare(say)
        except BaseException:
            history.close()
            raise
        checkpoint("history-locked")
        return history

    def _prepare(self, say: Callable[[str], None]) -> None:
        con = self.con
        con.execute("SET TimeZone = 'UTC'")
        tables = {
            name
            for (name,) in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
            ).fetchall()
        }
        if not tables:
            self._transaction(
                SCHEMA + f"INSERT INTO {META} VALUES ('format_version', '{FORMAT_VERSION}'), "
                f"('created_by', 'forensics {__version__}'), "
                f"('written_by', 'forensics {__version__}');"
            )
            say(f"created {self.path} (history format {FORMAT_VERSION})")
            con.execute(RAN_MACRO)
            return
        if META not in tables:
            listed = ", ".join(sorted(tables)[:8]) + (", ..." if len(tables) > 8 else "")
            raise InputError(
                f"--history {self.path}: a DuckDB database but not a forensics history (it has "
                f"no {META} table; its tables: {listed}). Give a new file name, or the file an "
                "earlier `forensics analyze --history` run wrote."
            )
        meta = dict(con.execute(f"SELECT key, value FROM {META}").fetchall())
        try:
            version = int(meta.get("format_version") or "")
        except ValueError:
            raise InputError(
                f"--history {self.path}: not a forensics history (no valid format_version in "
                f"{META}: {meta.get('format_version')!r})"
            ) from None
        if version > FORMAT_VERSION:
            raise InputError(
                f"--history {self.path}: written by a newer forensics "
                f"({meta.get('written_by', 'unknown version')}, history format {version}); "
                f"forensics {__version__} reads formats up to {FORMAT_VERSION}. Upgrade "
                "forensics to use this history."
            )
        if version < 1 or any(v not in MIGRATIONS for v in range(version, FORMAT_VERSION)):
            raise InputError(f"--history {self.path}: unknown history format {version}")
        for step in range(version, FORMAT_VERSION):
            self._transaction(
                MIGRATIONS[step]
                + f"UPDATE {META} SET value = '{step + 1}' WHERE key = 'format_version';",
                pause="history-migrate",
            )
        con.execute(RAN_MACRO)
        if version < FORMAT_VERSION:
            say(f"upgraded {self.path} from history format {version} to {FORMAT_VERSION}")

    def _transaction(self, sql: str, pause: str = "") -> None:
        self.con.execute("BEGIN TRANSACTION")
        try:
            self.con.execute(sql)
            checkpoint(pause)
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise

    # -- the run

    def capture(self, con: duckdb.DuckDBPyConnection) -> None:
        """Copy every agent row's state out of the analysis database (`engine.analyze`'s
        `inspect` callback). One statement, streamed to Parquet: no row passes through Python."""
        target = self._tmp / "agents.parquet"
        con.execute(
            f"""COPY (
                    SELECT agent_id, agent_name, workspace_id, workspace_name,
                           build_number, transition, lifecycle_state,
                           first_connected_at IS NOT NULL AS connected,
                           is_latest_build AS latest
                    FROM agent_builds
                    QUALIFY row_number() OVER (PARTITION BY agent_id ORDER BY build_number) = 1
                ) TO '{_sql_path(target)}' (FORMAT parquet)"""
        )
        self._snapshot = target

    def record(
        self,
        result: Analysis,
        out: Path,
        force: bool = False,
        keep_runs: int | None = None,
        keep_days: int | None = None,
        fail_on_new: bool = False,
    ) -> Outcome:
        """Write this run into the history inside a transaction that `commit()` ends.

        When the same export (the same input file contents) is already recorded, nothing is
        added unless `force`; the outcome then describes that earlier run (a re-run).
        """
        if self._snapshot is None:
            raise RuntimeError("History.capture() was not given to analyze()")
        con = self.con
        input_key = hashlib.sha256(
            "\n".join(sorted(s.sha256 for s in result.inputs)).encode()
        ).hexdigest()
        report_dir = str(out.resolve())
        con.execute("BEGIN TRANSACTION")
        self._in_transaction = True
        earlier = _scalar(con, "SELECT max(run_id) FROM runs WHERE input_key = ?", [input_key])
        recorded = earlier is None or force
        forced = recorded and earlier is not None
        if recorded:
            run = (_scalar(con, "SELECT max(run_id) FROM runs") or 0) + 1
            self._insert_run(run, result, input_key, report_dir, forced)
        else:
            run = earlier
            con.execute("UPDATE runs SET report_dir = ? WHERE run_id = ?", [report_dir, run])
        previous = _scalar(con, "SELECT max(run_id) FROM runs WHERE run_id < ?", [run])
        doc = self._compare(run, previous)
        if recorded:
            counts = doc["counts"]
            con.execute(
                "UPDATE runs SET new = ?, regressed = ?, resolved = ? WHERE run_id = ?",
                [counts["new"], counts["regressed"], counts["resolved"], run],
            )
        now = result.generated_at
        pruned = self._prune(run, keep_runs, keep_days, now)
        con.execute(
            f"UPDATE {META} SET value = ? WHERE key = 'written_by'", [f"forensics {__version__}"]
        )
        doc.update(
            file=str(self.path),
            format_version=FORMAT_VERSION,
            run=run,
            recorded=recorded,
            rerun_of=None if recorded else run,
            forced=forced,
            fail_on_new=fail_on_new,
            fail_on=result.fail_on,
            pruned={
                "runs": pruned,
                "keep_runs": keep_runs,
                "keep_days": keep_days,
            }
            if pruned
            else None,
            trend=self._trend(),
            runs_kept=_scalar(con, "SELECT count(*) FROM runs"),
        )
        outcome = Outcome(run, recorded, previous, doc, pruned)
        doc["new_failing"] = outcome.new_failing(result.fail_on)
        return outcome

    def _insert_run(
        self, run: int, result: Analysis, input_key: str, report_dir: str, forced: bool
    ) -> None:
        con = self.con
        con.execute(
            """INSERT INTO runs (run_id, run_at, recorded_at, as_of, tool, input_key, report_dir,
                                 forced, findings, agent_rows)
               VALUES (?, ?, now(), ?, ?, ?, ?, ?, ?, 0)""",
            [
                run,
                result.generated_at,
                result.as_of,
                result.tool,
                input_key,
                report_dir,
                forced,
                len(result.findings),
            ],
        )
        inputs = result.inputs
        con.execute(
            """INSERT INTO run_inputs (run_id, path, size, sha256)
               SELECT ?, unnest(?::VARCHAR[]), unnest(?::BIGINT[]), unnest(?::VARCHAR[])""",
            [
                run,
                [s.display for s in inputs],
                [s.size for s in inputs],
                [s.sha256 for s in inputs],
            ],
        )
        con.execute(
            """INSERT INTO run_rules (run_id, rule, status)
               SELECT ?, unnest(?::VARCHAR[]), unnest(?::VARCHAR[])""",
            [run, [r.rule.id for r in result.rules], [r.status for r in result.rules]],
        )
        fs = result.findings
        con.execute(
            """INSERT INTO findings (run_id, fingerprint, rule, severity, agent_id, workspace_id,
                                     workspace_name, build_number, ts, summary)
               SELECT ?, unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]),
                      unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]),
                      unnest(?::INTEGER[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[])""",
            [
                run,
                [f.fingerprint for f in fs],
                [f.rule for f in fs],
                [f.severity for f in fs],
                [f.agent_id for f in fs],
                [f.workspace_id for f in fs],
                [f.workspace_name for f in fs],
                [f.build_number for f in fs],
                [f.ts for f in fs],
                [f.summary for f in fs],
            ],
        )
        checkpoint("history-insert")
        # Only what changed since the previous export is written (see SCHEMA).
        differs = " OR ".join(f"p.{c} IS DISTINCT FROM s.{c}" for c in AGENT_COLUMNS)
        cols = ", ".join(f"s.{c}" for c in AGENT_COLUMNS)
        pcols = ", ".join(f"p.{c}" for c in AGENT_COLUMNS)
        snapshot = _sql_path(self._snapshot) if self._snapshot else ""
        con.execute(
            f"""INSERT INTO agent_states (run_id, agent_id, present, {", ".join(AGENT_COLUMNS)})
                WITH snap AS (
                    SELECT CAST(agent_id AS UUID) AS agent_id, agent_name,
                           CAST(workspace_id AS UUID) AS workspace_id, workspace_name,
                           CAST(build_number AS INTEGER) AS build_number, transition,
                           lifecycle_state, connected, latest
                    FROM read_parquet('{snapshot}')
                ),
                prev AS (
                    SELECT * FROM agent_states
                    QUALIFY row_number() OVER (PARTITION BY agent_id ORDER BY run_id DESC) = 1
                )
                SELECT $run, s.agent_id, true, {cols}
                FROM snap s LEFT JOIN prev p USING (agent_id)
                WHERE p.agent_id IS NULL OR NOT p.present OR {differs}
                UNION ALL
                SELECT $run, p.agent_id, false, {pcols}
                FROM prev p ANTI JOIN snap s USING (agent_id)
                WHERE p.present""",
            {"run": run},
        )
        con.execute(
            f"UPDATE runs SET agent_rows = (SELECT count(*) FROM read_parquet('{snapshot}')) "
            "WHERE run_id = ?",
            [run],
        )

    def _compare(self, run: int, previous: int | None) -> dict[str, Any]:
        """Findings of `run` against `previous` (new, regressed, still open, resolved) and the
        agent rows whose state moved between the two exports."""
        con = self.con
        prev = previous if previous is not None else -1
        rows = _records(
            con,
            f"""WITH cur AS (SELECT * FROM findings WHERE run_id = $run),
                seen AS (
                    SELECT fingerprint, min(run_id) AS first_run, count(*) AS runs_seen
                    FROM findings
                    WHERE run_id <= $run AND fingerprint IN (SELECT fingerprint FROM cur)
                    GROUP BY fingerprint
                ),
                me AS (SELECT run_at FROM runs WHERE run_id = $run)
                SELECT c.fingerprint, c.rule, c.severity, c.agent_id, c.workspace_name,
                       c.build_number,
                       CASE WHEN c.fingerprint IN (SELECT fingerprint FROM findings
                                                   WHERE run_id = $prev) THEN 'open'
                            WHEN s.first_run < $run AND ran($prev, c.rule) THEN 'regressed'
                            -- not checked in the previous run: nothing says it went away
                            WHEN s.first_run < $run THEN 'open'
                            ELSE 'new' END AS status,
                       s.first_run AS first_seen_run, r.run_at AS first_seen_at, s.runs_seen,
                       (SELECT count(*) FROM runs x
                        WHERE x.run_id BETWEEN s.first_run AND $run) AS age_runs,
                       round(date_diff('second', r.run_at, (SELECT run_at FROM me)) / 86400.0, 1)
                           AS age_days
                FROM cur c JOIN seen s USING (fingerprint)
                LEFT JOIN runs r ON r.run_id = s.first_run
                ORDER BY {SEVERITY_RANK.replace("severity", "c.severity")} DESC,
                         c.workspace_name, c.build_number, c.rule, c.fingerprint""",
            {"run": run, "prev": prev},
        )
        gone = _records(
            con,
            f"""SELECT fingerprint, rule, severity, agent_id, workspace_name, build_number,
                       summary, run_id AS last_seen_run, ran($run, rule) AS checked
                FROM findings
                WHERE run_id = $prev
                  AND fingerprint NOT IN (SELECT fingerprint FROM findings WHERE run_id = $run)
                ORDER BY {SEVERITY_RANK} DESC, workspace_name, build_number, rule, fingerprint""",
            {"run": run, "prev": prev},
        )
        resolved: list[dict[str, Any]] = []
        unchecked: list[dict[str, Any]] = []
        for r in gone:
            (resolved if r.pop("checked") else unchecked).append(r)
        by: dict[str, list[dict[str, Any]]] = {"new": [], "regressed": [], "open": []}
        for r in rows:
            status = r.pop("status")
            if status != "open":  # age is only shown for findings that stayed open
                for k in ("first_seen_at", "age_runs", "age_days", "runs_seen"):
                    r.pop(k)
                if status == "new":
                    r.pop("first_seen_run")
            by[status].append(r)
        return {
            "previous_run": self._run_facts(previous) if previous is not None else None,
            "this_run": self._run_facts(run),
            "counts": {
                "new": len(by["new"]),
                "regressed": len(by["regressed"]),
                "open": len(by["open"]),
                "resolved": len(resolved),
                "unchecked": len(unchecked),
            },
            **by,
            "resolved": resolved,
            # In the previous run, absent now, but their rule did not run now: unknown.
            "unchecked": unchecked,
            "lifecycle": self._lifecycle(run, previous),
        }

    def _run_facts(self, run: int) -> dict[str, Any]:
        [row] = _records(
            self.con,
            "SELECT run_id AS run, run_at, as_of, agent_rows FROM runs WHERE run_id = ?",
            [run],
        )
        return row

    def _lifecycle(self, run: int, previous: int | None) -> dict[str, Any] | None:
        """Agent rows whose lifecycle state changed between the exports of `previous` and
        `run`, and rows of a workspace's latest start build still 'created' in both."""
        if previous is None:
            return None
        con = self.con
        # Each agent row's state as of both runs, kept only where they differ or where the row
        # could be stuck: unchanged rows (most of them) drop out here, in one pass.
        con.execute(
            """CREATE OR REPLACE TEMP TABLE agent_pairs AS
               WITH at_run AS (
                   SELECT * FROM agent_states WHERE run_id <= $run
                   QUALIFY row_number() OVER (PARTITION BY agent_id ORDER BY run_id DESC) = 1
               ),
               at_prev AS (
                   SELECT * FROM agent_states WHERE run_id <= $prev
                   QUALIFY row_number() OVER (PARTITION BY agent_id ORDER BY run_id DESC) = 1
               )
               SELECT CAST(coalesce(c.agent_id, p.agent_id) AS VARCHAR) AS agent_id,
                      c.agent_name, c.workspace_name, c.build_number, c.transition, c.latest,
                      c.connected, coalesce(c.present, false) AS now_present,
                      coalesce(p.present, false) AS was_present,
                      p.lifecycle_state AS before, c.lifecycle_state AS after
               FROM at_run c FULL JOIN at_prev p ON p.agent_id = c.agent_id
               WHERE c.run_id IS DISTINCT FROM p.run_id
                  OR (c.lifecycle_state = 'created' AND c.transition = 'start' AND c.latest)""",
            {"run": run, "prev": previous},
        )
        moved = """SELECT agent_id, agent_name, workspace_name, build_number, transition,
                          before, after
                   FROM agent_pairs
                   WHERE now_present AND was_present AND before IS DISTINCT FROM after"""
        stuck = """SELECT agent_id, agent_name, workspace_name, build_number, transition,
                          connected
                   FROM agent_pairs
                   WHERE now_present AND was_present AND after = 'created'
                     AND before = 'created' AND transition = 'start' AND latest"""
        appeared, gone = con.execute(
            """SELECT count(*) FILTER (now_present AND NOT was_present),
                      count(*) FILTER (was_present AND NOT now_present)
               FROM agent_pairs"""
        ).fetchone() or (0, 0)
        params: list[Any] = []
        order = f" ORDER BY workspace_name, build_number, agent_name, agent_id LIMIT {MAX_ROWS}"
        cur, prev = self._run_facts(run), self._run_facts(previous)
        lifecycle = {
            "compared_with": previous,
            "hours_between": _hours(prev["as_of"] or prev["run_at"], cur["as_of"] or cur["run_at"]),
            "agent_rows": cur["agent_rows"],
            "appeared": appeared,
            "gone": gone,
            "changed_count": _scalar(con, f"SELECT count(*) FROM ({moved})", params),
            "changed": _records(con, moved + order, params),
            "still_created_count": _scalar(con, f"SELECT count(*) FROM ({stuck})", params),
            "still_created": _records(con, stuck + order, params),
        }
        con.execute("DROP TABLE agent_pairs")
        return lifecycle

    def _prune(
        self, run: int, keep_runs: int | None, keep_days: int | None, now: datetime
    ) -> list[int]:
        """Drop the oldest runs beyond `keep_runs` or older than `keep_days` before `now`.

        Runs go oldest first (everything up to the newest run that must go), never `run`
        itself. Agent states are folded: per agent row the latest state up to the cut is kept,
        so comparisons with the runs that remain stay exact.
        """
        if keep_runs is None and keep_days is None:
            return []
        con = self.con
        doomed: set[int] = set()
        if keep_runs is not None:
            doomed |= {
                r
                for (r,) in con.execute(
                    "SELECT run_id FROM runs ORDER BY run_id DESC OFFSET ?", [keep_runs]
                ).fetchall()
            }
        if keep_days is not None:
            cutoff = now - timedelta(days=keep_days)
            doomed |= {
                r
                for (r,) in con.execute(
                    "SELECT run_id FROM runs WHERE run_at < ?", [cutoff]
                ).fetchall()
            }
        doomed.discard(run)
        if not doomed:
            return []
        cut = max(doomed)
        pruned = [
            r
            for (r,) in con.execute(
                "SELECT run_id FROM runs WHERE run_id <= ? AND run_id <> ? ORDER BY run_id",
                [cut, run],
            ).fetchall()
        ]
        for table in ("findings", "run_inputs", "run_rules", "runs"):
            con.execute(f"DELETE FROM {table} WHERE list_contains(?::INTEGER[], run_id)", [pruned])
        con.execute(
            """DELETE FROM agent_states WHERE rowid IN (
                   SELECT rowid FROM agent_states WHERE run_id <= ?
                   QUALIFY row_number() OVER (PARTITION BY agent_id ORDER BY run_id DESC) > 1
               )""",
            [cut],
        )
        con.execute("DELETE FROM agent_states WHERE run_id <= ? AND NOT present", [cut])
        return pruned

    def _trend(self) -> dict[str, Any]:
        """Findings per rule in each of the last TREND_RUNS runs, oldest first."""
        runs = _records(
            self.con,
            f"""SELECT run_id AS run, run_at FROM runs ORDER BY run_id DESC LIMIT {TREND_RUNS}""",
            [],
        )[::-1]
        ids = [r["run"] for r in runs]
        counts = self.con.execute(
            """SELECT rule, run_id, count(*) FROM findings
               WHERE list_contains(?::INTEGER[], run_id) GROUP BY ALL ORDER BY rule""",
            [ids],
        ).fetchall()
        per_rule: dict[str, list[int | None]] = {}
        for rule, run_id, n in counts:
            per_rule.setdefault(rule, [0] * len(ids))[ids.index(run_id)] = n
        # A rule that did not run in a run has no count there (None), not 0.
        not_run = self.con.execute(
            """SELECT r.rule, x.run_id
                FROM (SELECT DISTINCT rule FROM findings
                      WHERE list_contains($ids::INTEGER[], run_id)) r,
                     (SELECT unnest($ids::INTEGER[]) AS run_id) x
                WHERE NOT ran(x.run_id, r.rule)""",
            {"ids": ids},
        ).fetchall()
        for rule, run_id in not_run:
            per_rule[rule][ids.index(run_id)] = None
        return {
            "runs": runs,
            "rules": [{"rule": k, "counts": v} for k, v in sorted(per_rule.items())],
        }

    def commit(self) -> None:
        """Make everything `record()` wrote durable, at once."""
        checkpoint("history-commit")
        self.con.execute("COMMIT")
        self._in_transaction = False

    def runs(self) -> list[dict[str, Any]]:
        """Every run in the history, newest first (for the index page)."""
        return _records(
            self.con,
            """SELECT run_id AS run, run_at, as_of, findings, new, regressed, resolved,
                      report_dir, forced
               FROM runs ORDER BY run_id DESC""",
            [],
        )

    def close(self) -> None:
        """Roll back anything not committed, release the lock, remove temporary files."""
        try:
            if self._in_transaction:
                self.con.execute("ROLLBACK")
        finally:
            self._in_transaction = False
            self.con.close()
            shutil.rmtree(self._tmp, ignore_errors=True)


def _connect(path: Path, wait: float, say: Callable[[str], None]) -> duckdb.DuckDBPyConnection:
    """Open `path` read-write, retrying while another process holds DuckDB's file lock."""
    deadline = time.monotonic() + wait
    announced = False
    while True:
        try:
            return duckdb.connect(str(path))
        except duckdb.IOException as exc:
            text = str(exc)
            if "lock" not in text.lower():
                raise InputError(f"--history {path}: {_not_history(text)}") from None
            holder = _holder(text)
            if time.monotonic() >= deadline:
                raise InputError(
                    f"--history {path}: in use by {holder}; gave up after waiting "
                    f"{wait:g} s (--history-wait). Another run on the same history is still "
                    "going: let it finish, or give it more time with --history-wait."
                ) from None
            if not announced:
                say(f"{path} is in use by {holder}; waiting up to {wait:g} s")
                announced = True
            time.sleep(min(0.2, max(deadline - time.monotonic(), 0.01)))
        except duckdb.Error as exc:
            raise InputError(f"--history {path}: {_not_history(str(exc))}") from None


def _not_history(text: str) -> str:
    if "not a valid DuckDB database" in text:
        return "not a forensics history (not a DuckDB database file)"
    return f"cannot be opened as a forensics history: {text}"


def _holder(text: str) -> str:
    """Who holds the lock, from DuckDB's message: the process id and, where /proc tells, its
    command line."""
    m = re.search(r"\(PID (\d+)\)", text)
    if not m:
        return "another process"
    pid = m.group(1)
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        command = " ".join(a.decode(errors="replace") for a in argv if a)
    except OSError:
        m2 = re.search(r"held in (.+?) \(PID", text)
        command = m2.group(1) if m2 else ""
    if len(command) > 200:
        command = command[:199] + "…"
    return f"process {pid} ({command})" if command else f"process {pid}"


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def _scalar(con: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> Any:
    row = con.execute(sql, params).fetchone()
    return row[0] if row else None


def _records(con: duckdb.DuckDBPyConnection, sql: str, params: Any) -> list[dict[str, Any]]:
    cur = con.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [{k: jsonable(v) for k, v in zip(names, row, strict=True)} for row in cur.fetchall()]


def _hours(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    a = datetime.fromisoformat(start.replace("Z", "+00:00"))
    b = datetime.fromisoformat(end.replace("Z", "+00:00"))
    return round((b - a).total_seconds() / 3600, 1)


# --------------------------------------------------------------------------------------
# Trend chart: one small chart per rule (findings per run as bars), so nothing depends on
# telling colours apart; every chart says its rule and its numbers in text.

TREND_WIDTH, TREND_LABEL, TREND_ROW, TREND_RIGHT = 1000, 300, 40, 60
BAR, CURRENT = "#0072B2", "#D55E00"  # Okabe-Ito blue and vermillion


def trend_svg(trend: dict[str, Any], current: int) -> Markup | None:
    """Findings per rule across the recorded runs as inline SVG (None when no run has any)."""
    runs, rules = trend["runs"], trend["rules"]
    if not runs or not rules:
        return None
    step = (TREND_WIDTH - TREND_LABEL - TREND_RIGHT) / len(runs)
    bar = max(min(step * 0.7, 24), 1.5)
    height = len(rules) * TREND_ROW + 34
    out = [
        f'<svg class="trend" viewBox="0 0 {TREND_WIDTH} {height}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif" font-size="11">',
        f"<title>Findings per rule in the last {len(runs)} run(s)</title>",
    ]
    at = next((j for j, r in enumerate(runs) if r["run"] == current), None)
    for i, row in enumerate(rules):
        top = i * TREND_ROW + 4
        base = top + TREND_ROW - 12
        counts = row["counts"]
        most = max((n for n in counts if n is not None), default=0)
        now = counts[at] if at is not None else None
        now_text = "—" if at is None else "not run" if now is None else str(now)
        label = f"{row['rule']}: {now_text} now, max {most}"
        out.append(f'<text x="4" y="{base - 8}">{escape(label)}</text>')
        out.append(
            f'<line x1="{TREND_LABEL}" y1="{base}" x2="{TREND_WIDTH - TREND_RIGHT}" y2="{base}" '
            f'stroke="#57606a"/>'
        )
        for j, n in enumerate(counts):
            x = TREND_LABEL + j * step + (step - bar) / 2
            when = str(runs[j]["run_at"])[:10]
            if n is None:  # the rule did not run: a cross, not a zero
                tip = f"{row['rule']}: run #{runs[j]['run']} ({when}), rule not run"
                out.append(
                    f'<text x="{x + bar / 2:.1f}" y="{base - 2}" text-anchor="middle" '
                    f'fill="#57606a">×<title>{escape(tip)}</title></text>'
                )
                continue
            h = max((TREND_ROW - 18) * n / (most or 1), 1.5 if n else 0)
            colour = CURRENT if j == at else BAR
            tip = f"{row['rule']}: run #{runs[j]['run']} ({when}), {n} finding(s)"
            out.append(
                f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{escape(tip)}</title></rect>'
            )
        latest = "–" if counts[-1] is None else str(counts[-1])
        out.append(
            f'<text x="{TREND_WIDTH - TREND_RIGHT + 6}" y="{base - 2}" '
            f'font-weight="700">{escape(latest)}</text>'
        )
    axis = len(rules) * TREND_ROW + 16
    first, last = runs[0], runs[-1]
    out.append(
        f'<text x="{TREND_LABEL}" y="{axis}">run #{first["run"]} '
        f"{escape(str(first['run_at'])[:10])}</text>"
        f'<text x="{TREND_WIDTH - TREND_RIGHT}" y="{axis}" text-anchor="end">run '
        f"#{last['run']} {escape(str(last['run_at'])[:10])}</text>"
        f'<rect x="4" y="{axis - 9}" width="10" height="10" fill="{CURRENT}"/>'
        f'<text x="18" y="{axis}">this run</text>'
        f'<rect x="84" y="{axis - 9}" width="10" height="10" fill="{BAR}"/>'
        f'<text x="98" y="{axis}">earlier runs</text>'
    )
    out.append("</svg>")
    return Markup("".join(out))


def check_options(
    history: Path | None,
    fail_on_new: bool,
    force: bool,
    keep_runs: int | None,
    keep_days: int | None,
    wait: float = DEFAULT_WAIT,
) -> None:
    """Refuse history options that cannot apply: they need --history, and counts are >= 1."""
    if wait < 0:
        raise UsageError(f"--history-wait must be 0 or more seconds, not {wait:g}")
    if history is None:
        given = [
            name
            for name, value in (
                ("--fail-on-new", fail_on_new),
                ("--force", force),
                ("--keep-runs", keep_runs is not None),
                ("--keep-days", keep_days is not None),
            )
            if value
        ]
        if given:
            raise UsageError(
                f"{', '.join(given)} need(s) --history FILE: new, kept and re-run are "
                "relative to the runs recorded there"
            )
    for name, value in (("--keep-runs", keep_runs), ("--keep-days", keep_days)):
        if value is not None and value < 1:
            raise UsageError(f"{name} must be at least 1, not {value}")


__all__ = [
    "DEFAULT_WAIT",
    "FORMAT_VERSION",
    "History",
    "Outcome",
    "check_options",
    "checkpoint",
    "trend_svg",
]
