-- reads: workspace_agents(id, first_connected_at)
-- Agent processes and what they did, from the parsed log lines.
-- A log stream is one file and its rotated backups; within a stream, lines are ordered by file
-- (oldest first) and line number. A process begins at its start line ("agent is starting now",
-- before 2023 "starting agent"); an agent instance begins at a process start or at a prebuild
-- claim's "agent reinitializing", which builds a fresh agent inside the same process.

-- Where each file sits in its stream, and how many processes (and agent instances) began in
-- the stream's earlier files: an entry's process number is that plus the start lines up to it
-- in its own file (counted when the file was parsed), so no window runs over every line.
CREATE OR REPLACE TABLE log_positions AS
WITH counted AS (
    SELECT f.file_id, f.stream, f.host, f.source,
           dense_rank() OVER (PARTITION BY f.stream ORDER BY f.first_ts NULLS LAST, f.source) AS file_rank,
           coalesce(c.starts, 0) AS starts, coalesce(c.instances, 0) AS instances
    FROM log_files f
    LEFT JOIN (
        SELECT file_id, count(*) FILTER (is_start) AS starts,
               count(*) FILTER (is_start OR is_reinit) AS instances
        FROM log_key_events WHERE is_start OR is_reinit GROUP BY file_id
    ) c USING (file_id)
)
SELECT file_id, stream, host, source, file_rank,
       coalesce(sum(starts) OVER earlier, 0) AS starts_before,
       coalesce(sum(instances) OVER earlier, 0) AS instances_before
FROM counted
WINDOW earlier AS (PARTITION BY stream ORDER BY file_rank
                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING);

-- Each host's clock offset against the server's. Log times come from the agent host's clock,
-- workspace_agents.first_connected_at from coderd's. A process fetches an agent row's manifest a
-- fraction of a second after connecting as that row, so where the logs show a row's *first*
-- connection, the pair (manifest logged at, first_connected_at) measures the offset plus
-- latency. A manifest shows a first connection when it is the first of an agent instance whose
-- start (or reinitialization) is in the logs, at most five minutes after it, or when the
-- instance served another row just before (it moved to a new row). A manifest from a process
-- whose start was rotated away may be a reconnect hours later, and is not paired. The median
-- of a stream's pairs is its estimate; one pair gives medium confidence, several that agree
-- within 10 s high, several that disagree low (not applied). Offsets under two seconds are
-- latency, not skew, and are not applied; --log-offset HOST=SECONDS (log_offset_overrides) wins.
CREATE OR REPLACE TABLE log_offsets AS
WITH positioned AS (
    SELECT p.stream, p.file_rank, e.line, e.ts AS ts_raw, e.fields, e.message, e.is_start,
           e.is_reinit, p.starts_before + e.starts AS process_no,
           p.instances_before + e.instances AS instance_no
    FROM log_key_events e JOIN log_positions p USING (file_id)
    -- (the kind test follows from the next one, and is cheaper)
    WHERE e.kind IN ('manifest', 'process start', 'reinitialization')
      AND (e.message = 'fetched manifest' OR e.is_start OR e.is_reinit)
),
manifests AS (
    SELECT
        stream, process_no, instance_no, ts_raw, file_rank, line,
        TRY_CAST(nullif(regexp_extract(fields, 'agent_id=([0-9a-f-]{36})', 1), '') AS UUID) AS agent_id
    FROM positioned
    WHERE message = 'fetched manifest'
),
beginnings AS (
    SELECT stream, process_no, instance_no, min(ts_raw) AS began_at
    FROM positioned WHERE is_start OR is_reinit
    GROUP BY ALL
),
sequenced AS (
    SELECT m.*,
           lag(m.agent_id) OVER (PARTITION BY m.stream, m.process_no, m.instance_no
                                 ORDER BY m.file_rank, m.line) AS previous_agent_id,
           row_number() OVER (PARTITION BY m.stream, m.process_no, m.instance_no
                              ORDER BY m.file_rank, m.line) AS nth,
           b.began_at
    FROM manifests m
    LEFT JOIN beginnings b USING (stream, process_no, instance_no)
),
first_connections AS (
    SELECT stream, agent_id, min(ts_raw) AS logged_at
    FROM sequenced
    WHERE agent_id IS NOT NULL
      AND ((nth = 1 AND began_at IS NOT NULL AND ts_raw <= began_at + INTERVAL 5 MINUTE)
           OR (previous_agent_id IS NOT NULL AND previous_agent_id <> agent_id))
    GROUP BY ALL
),
pairs AS (
    SELECT c.stream, epoch(c.logged_at) - epoch(a.first_connected_at) AS delta
    FROM first_connections c JOIN workspace_agents a ON a.id = c.agent_id
    WHERE a.first_connected_at IS NOT NULL
),
estimated AS (
    SELECT stream, round(median(delta), 3) AS seconds, count(*) AS pairs,
           round(max(delta) - min(delta), 3) AS spread
    FROM pairs GROUP BY stream
),
streams AS (SELECT stream, min(host) AS host FROM log_files GROUP BY stream),
graded AS (
    SELECT s.stream, s.host, o.seconds AS given, e.seconds AS estimated,
           coalesce(e.pairs, 0) AS pairs, e.spread AS spread_seconds,
           CASE WHEN e.pairs >= 2 AND e.spread <= 10 THEN 'high'
                WHEN e.pairs = 1 THEN 'medium'
                WHEN e.pairs >= 2 THEN 'low'
                ELSE 'none' END AS confidence
    FROM streams s
    LEFT JOIN estimated e USING (stream)
    LEFT JOIN log_offset_overrides o ON o.host IN (s.host, s.stream)
)
SELECT stream, host, estimated AS estimated_seconds, pairs, spread_seconds, confidence,
    CASE WHEN given IS NOT NULL THEN given
         WHEN confidence IN ('high', 'medium') AND abs(estimated) >= 2 THEN estimated
         ELSE 0 END AS offset_seconds,
    CASE WHEN given IS NOT NULL THEN '--log-offset'
         WHEN confidence IN ('high', 'medium') AND abs(estimated) >= 2 THEN 'estimated'
         WHEN confidence = 'low' THEN 'pairs disagree: not applied'
         WHEN pairs > 0 THEN 'within latency: not applied'
         ELSE 'no first connection in the logs: not applied' END AS method
FROM graded;

-- Every log entry's place: stream, process and instance, `ts` on the server's clock (corrected
-- by its host's offset), `ts_raw` as logged, and its kind (set when the file was parsed). A
-- view: most entries are noise, read only for the times of the processes a rule looks at.
CREATE OR REPLACE VIEW agent_events AS
SELECT
    e.file_id, e.line,
    e.ts - to_microseconds(CAST(round(o.offset_seconds * 1e6) AS BIGINT)) AS ts,
    e.ts AS ts_raw,
    p.stream, p.host, p.source, p.file_rank, e.is_start, e.is_reinit,
    p.starts_before + e.starts AS process_no,
    p.instances_before + e.instances AS instance_no,
    e.kind
FROM log_events e
JOIN log_positions p USING (file_id)
JOIN log_offsets o USING (stream);

-- The entries that mark what a process did (start, manifest, lifecycle, connection, errors,
-- shutdown), with their text: a small share of a log, which the model, the evidence and the
-- timelines read.
CREATE OR REPLACE TABLE agent_key_events AS
SELECT
    e.file_id, e.line,
    e.ts - to_microseconds(CAST(round(o.offset_seconds * 1e6) AS BIGINT)) AS ts,
    e.ts AS ts_raw, e.level, e.logger, e.message, e.fields, e.block,
    p.stream, p.host, p.source, p.file_rank, e.is_start, e.is_reinit,
    p.starts_before + e.starts AS process_no,
    p.instances_before + e.instances AS instance_no,
    e.kind
FROM log_key_events e
JOIN log_positions p USING (file_id)
JOIN log_offsets o USING (stream);

-- Each agent instance's share of each file: its first and last times and first line. Processes
-- and instances are built from these few rows, not from every entry.
CREATE OR REPLACE TABLE log_segments AS
WITH segments AS (
    SELECT file_id, starts, instances,
           min(ts) FILTER (is_start) AS started_at,
           min(ts) FILTER (is_start OR is_reinit) AS began_at,
           min(ts) AS first_seen_at, max(ts) AS last_seen_at, min(line) AS first_line,
           bool_or(is_start) AS has_start, bool_or(is_reinit) AS has_reinit
    FROM log_events GROUP BY ALL
)
SELECT p.stream, p.starts_before + s.starts AS process_no,
       p.instances_before + s.instances AS instance_no, p.source, p.file_rank, s.first_line,
       s.started_at - shift AS started_at, s.began_at - shift AS began_at,
       s.first_seen_at - shift AS first_seen_at, s.last_seen_at - shift AS last_seen_at,
       s.has_start, s.has_reinit
FROM segments s
JOIN log_positions p USING (file_id)
JOIN (SELECT stream, to_microseconds(CAST(round(offset_seconds * 1e6) AS BIGINT)) AS shift
      FROM log_offsets) o USING (stream);

CREATE OR REPLACE TABLE agent_processes AS
SELECT
    stream,
    process_no,
    min(started_at) AS started_at,
    min(first_seen_at) AS first_seen_at,
    max(last_seen_at) AS last_seen_at,
    arg_min(source, file_rank * 1e12 + first_line) AS first_source,
    arg_min(first_line, file_rank * 1e12 + first_line) AS first_line,
    any_value(s.agent_version) AS agent_version,
    any_value(s.auth) AS auth
FROM log_segments
LEFT JOIN (
    SELECT stream, process_no,
           max(regexp_extract(fields, '(?:^|  )version=(\S+)', 1)) AS agent_version,
           max(regexp_extract(fields, '(?:^|  )auth=(\S+)', 1)) AS auth
    FROM agent_key_events WHERE is_start
    GROUP BY ALL
) s USING (stream, process_no)
GROUP BY stream, process_no;

CREATE OR REPLACE TABLE agent_instances AS
SELECT
    stream,
    process_no,
    instance_no,
    coalesce(min(began_at), min(first_seen_at)) AS began_at,
    CASE
        WHEN bool_or(has_reinit) THEN 'reinitialization'
        WHEN bool_or(has_start) THEN 'process start'
        ELSE 'first line seen (start line not in the logs)'
    END AS began_by,
    arg_min(source, file_rank * 1e12 + first_line) AS first_source,
    arg_min(first_line, file_rank * 1e12 + first_line) AS first_line
FROM log_segments
GROUP BY ALL;

CREATE OR REPLACE TABLE agent_manifests AS
SELECT
    stream, process_no, instance_no, ts, source, line,
    TRY_CAST(nullif(regexp_extract(fields, 'agent_id=([0-9a-f-]{36})', 1), '') AS UUID) AS agent_id,
    TRY_CAST(nullif(regexp_extract(fields, 'workspace_id=([0-9a-f-]{36})', 1), '') AS UUID) AS workspace_id
FROM agent_key_events
WHERE kind = 'manifest';

CREATE OR REPLACE TABLE agent_lifecycle_reports AS
-- `set lifecycle state` (fields current/last, early 2023 state/previous) is the agent's own
-- record of a change; `reporting lifecycle state` (payload, prototext) its report to coderd.
-- An instance's reports are taken from the first kind when it logged any, else the second.
WITH reports AS (
    SELECT
        stream, process_no, instance_no, ts, ts_raw, source, line, message,
        coalesce(
            nullif(regexp_extract(fields, 'current=\{"state":"([a-z_]+)"', 1), ''),
            nullif(regexp_extract(fields, '(?:^|  )state=\{?"?(?:state"?:"?)?([a-z_]+)', 1), ''),
            lower(nullif(regexp_extract(fields, 'state:([A-Z_]+)', 1), ''))
        ) AS state
    FROM agent_key_events
    WHERE kind = 'lifecycle'
)
SELECT stream, process_no, instance_no, ts, ts_raw, source, line, state
FROM reports r
WHERE message = 'set lifecycle state'
   OR NOT EXISTS (
       SELECT 1 FROM reports s
       WHERE s.stream = r.stream AND s.process_no = r.process_no
         AND s.instance_no = r.instance_no AND s.message = 'set lifecycle state');
