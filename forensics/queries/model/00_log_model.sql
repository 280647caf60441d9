-- Agent processes and what they did, from the parsed log lines.
-- A log stream is one file and its rotated backups; within a stream, lines are ordered by file
-- (oldest first) and line number. A process begins at its start line ("agent is starting now",
-- before 2023 "starting agent"); an agent instance begins at a process start or at a prebuild
-- claim's "agent reinitializing", which builds a fresh agent inside the same process.
CREATE OR REPLACE TABLE agent_events AS
WITH ordered AS (
    SELECT
        e.*,
        f.stream,
        f.source,
        dense_rank() OVER (PARTITION BY f.stream ORDER BY f.first_ts NULLS LAST, f.source) AS file_rank,
        e.message IN ('agent is starting now', 'starting agent') AS is_start,
        e.message = 'agent reinitializing' AS is_reinit
    FROM log_events e
    JOIN log_files f USING (file_id)
)
SELECT
    *,
    sum(CAST(is_start AS INTEGER)) OVER w AS process_no,
    sum(CAST(is_start OR is_reinit AS INTEGER)) OVER w AS instance_no,
    CASE
        WHEN is_start THEN 'process start'
        WHEN is_reinit THEN 'reinitialization'
        WHEN message IN ('fetched manifest', 'fetched metadata') THEN 'manifest'
        WHEN message IN ('set lifecycle state', 'reporting lifecycle state') THEN 'lifecycle'
        WHEN message = 'agent received instruction to reinitialize' THEN 'reinit instruction'
        WHEN message IN ('connecting to coderd') THEN 'connect'
        WHEN message IN ('disconnected from coderd', 'likely disconnected from coder') THEN 'disconnect'
        WHEN message IN ('run exited with error', 'runLoop exited with error') THEN 'connection error'
        WHEN message IN ('shutting down agent', 'agent shutting down') THEN 'shutdown'
        WHEN message LIKE 'startup script%failed' THEN 'script failure'
    END AS kind
FROM ordered
WINDOW w AS (PARTITION BY stream ORDER BY file_rank, line ROWS UNBOUNDED PRECEDING);

CREATE OR REPLACE TABLE agent_processes AS
SELECT
    stream,
    process_no,
    min(ts) FILTER (is_start) AS started_at,
    min(ts) AS first_seen_at,
    max(ts) AS last_seen_at,
    arg_min(source, file_rank * 1e12 + line) AS first_source,
    arg_min(line, file_rank * 1e12 + line) AS first_line,
    max(regexp_extract(fields, '(?:^|  )version=(\S+)', 1)) FILTER (is_start) AS agent_version,
    max(regexp_extract(fields, '(?:^|  )auth=(\S+)', 1)) FILTER (is_start) AS auth
FROM agent_events
GROUP BY ALL;

CREATE OR REPLACE TABLE agent_instances AS
SELECT
    stream,
    process_no,
    instance_no,
    coalesce(min(ts) FILTER (is_start OR is_reinit), min(ts)) AS began_at,
    CASE
        WHEN bool_or(is_reinit) THEN 'reinitialization'
        WHEN bool_or(is_start) THEN 'process start'
        ELSE 'first line seen (start line not in the logs)'
    END AS began_by,
    arg_min(source, file_rank * 1e12 + line) AS first_source,
    arg_min(line, file_rank * 1e12 + line) AS first_line
FROM agent_events
GROUP BY ALL;

CREATE OR REPLACE TABLE agent_manifests AS
SELECT
    stream, process_no, instance_no, ts, source, line,
    TRY_CAST(nullif(regexp_extract(fields, 'agent_id=([0-9a-f-]{36})', 1), '') AS UUID) AS agent_id,
    TRY_CAST(nullif(regexp_extract(fields, 'workspace_id=([0-9a-f-]{36})', 1), '') AS UUID) AS workspace_id
FROM agent_events
WHERE kind = 'manifest';

CREATE OR REPLACE TABLE agent_lifecycle_reports AS
SELECT
    stream, process_no, instance_no, ts, source, line,
    coalesce(
        nullif(regexp_extract(fields, 'current=\{"state":"([a-z_]+)"', 1), ''),
        nullif(regexp_extract(fields, '(?:^|  )state=\{?"?(?:state"?:"?)?([a-z_]+)', 1), ''),
        lower(nullif(regexp_extract(fields, 'state:([A-Z_]+)', 1), ''))
    ) AS state
FROM agent_events
WHERE kind = 'lifecycle' AND message = 'set lifecycle state';
