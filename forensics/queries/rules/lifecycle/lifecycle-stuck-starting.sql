-- id: lifecycle-stuck-starting
-- title: Agent startup hung or failed
-- severity: high
-- requires: workspace_agents(lifecycle_state, started_at, ready_at), workspace_builds(build_number, created_at)
-- reads: workspace_agent_scripts(id, workspace_agent_id, timeout_seconds, run_on_start, display_name), workspace_agent_script_timings(script_id, stage, started_at, ended_at, exit_code, status), workspace_agent_logs(agent_id, created_at, id, level, output)
-- params: start_timeout_seconds=1800, grace_seconds=60, log_tail_lines=10
-- description: An agent row whose startup did not finish: it ended in 'start_timeout' or
--   'start_error', or it is still 'starting' longer after started_at than its start timeout
--   allows. The timeout is the largest timeout_seconds of the agent's run-on-start scripts
--   (workspace_agent_scripts); when the agent has no start scripts in the export, or one of them
--   has timeout_seconds = 0 (no timeout), start_timeout_seconds is used instead (or the largest
--   script timeout, if that is longer). A row is judged at the export's time, or, when a later
--   build of the workspace superseded it, at the moment that build was created: after that no
--   agent reports lifecycle for it, so a row the user stopped while it was still starting
--   within its timeout is not flagged. grace_seconds allows for the agent's clock (started_at)
--   differing from the server's. The startup script output (workspace_agent_logs) and script
--   timings are shown when exported. One row per agent row.
-- explain: The agent sets 'starting' when it receives its first manifest, runs the start
--   scripts in parallel, and then reports 'ready', or 'start_timeout' when a script exceeded
--   its timeout_seconds, or 'start_error' when a script exited non-zero. A row still 'starting'
--   after its longest script timeout has passed means the agent never reported the outcome: it
--   died or lost its connection mid-startup, or a script without a timeout never returned.
--   'start_timeout' and 'start_error' mean a start script failed: the workspace may be usable
--   but is not set up as the template intends, and with blocking startup scripts 'coder ssh'
--   and IDE connections wait or warn. The last lines of the startup log and the script timings
--   (exit code, timed_out, pipes_left_open) usually name the script and the cause.
-- remedy: Read the startup log tail and script timings below; fix the failing script in the
--   template (a script that leaves a background process attached to its stdout/stderr shows
--   as pipes_left_open: redirect its output or use nohup/setsid). For a row still 'starting',
--   check on the workspace host whether the agent process and the script are still running
--   (coder-agent.log, coder-script-*.log), then restart the workspace.
-- links: https://github.com/coder/coder/issues/18571, https://github.com/coder/coder/pull/5785
WITH start_scripts AS (
    -- Start scripts run in parallel; the longest timeout bounds the whole startup, and one
    -- script with no timeout (0) leaves it unbounded.
    SELECT
        workspace_agent_id AS agent_id,
        count(*) AS start_scripts,
        max(timeout_seconds) FILTER (timeout_seconds > 0) AS max_timeout,
        bool_or(coalesce(timeout_seconds, 0) <= 0) AS any_unbounded
    FROM workspace_agent_scripts
    WHERE coalesce(run_on_start, true)
    GROUP BY ALL
),
limits AS (
    SELECT
        ab.*,
        x.as_of,
        coalesce(s.start_scripts, 0) AS start_scripts,
        CASE
            WHEN s.agent_id IS NULL THEN CAST($start_timeout_seconds AS BIGINT)
            WHEN s.any_unbounded THEN greatest(coalesce(s.max_timeout, 0), CAST($start_timeout_seconds AS BIGINT))
            ELSE s.max_timeout
        END AS timeout_seconds,
        CASE
            WHEN s.agent_id IS NULL THEN 'start_timeout_seconds: no start scripts in the export'
            WHEN s.any_unbounded THEN 'start_timeout_seconds: a start script has no timeout'
            ELSE 'the largest start script timeout'
        END AS timeout_source,
        -- After a later build supersedes the row, nothing reports lifecycle for it any more.
        least(x.as_of, ab.next_build_created_at) AS judged_at,
        CASE WHEN ab.next_build_created_at < x.as_of
             THEN (SELECT 'when ' || n.transition || ' build #' || CAST(n.build_number AS VARCHAR) || ' superseded it'
                     FROM builds n
                    WHERE n.workspace_id = ab.workspace_id AND n.build_number > ab.build_number
                    ORDER BY n.build_number LIMIT 1)
             ELSE 'the export''s time' END AS judged_by
    FROM agent_builds ab
    CROSS JOIN export_facts x
    LEFT JOIN start_scripts s ON s.agent_id = ab.agent_id
    WHERE ab.lifecycle_state IN ('starting', 'start_timeout', 'start_error')
),
candidates AS (
    SELECT
        l.*,
        l.started_at + to_seconds(CAST(l.timeout_seconds AS DOUBLE)) AS deadline,
        -- Durations as '3h58m', '19m09s', '41s'.
        CASE WHEN l.lifecycle_state = 'starting' THEN (
            SELECT CASE WHEN d >= 3600 THEN format('{}h{:02d}m', d // 3600, (d % 3600) // 60)
                        WHEN d >= 60 THEN format('{}m{:02d}s', d // 60, d % 60)
                        ELSE format('{}s', d) END
            FROM (SELECT CAST(round(epoch(l.judged_at) - epoch(l.started_at)) AS BIGINT) AS d))
        END AS still_starting_for,
        (SELECT CASE WHEN d >= 3600 THEN format('{}h{:02d}m', d // 3600, (d % 3600) // 60)
                     WHEN d >= 60 THEN format('{}m{:02d}s', d // 60, d % 60)
                     ELSE format('{}s', d) END
           FROM (SELECT CAST(round(epoch(l.ready_at) - epoch(l.started_at)) AS BIGINT) AS d)) AS startup_took
    FROM limits l
    WHERE l.lifecycle_state IN ('start_timeout', 'start_error')
       OR (l.started_at IS NOT NULL
           AND l.started_at + to_seconds(CAST(l.timeout_seconds + CAST($grace_seconds AS BIGINT) AS DOUBLE)) < l.judged_at)
),
log_stats AS (
    SELECT
        agent_id,
        count(*) AS startup_log_lines,
        count(*) FILTER (level = 'error') AS startup_log_errors,
        count(*) FILTER (level = 'warn') AS startup_log_warnings
    FROM workspace_agent_logs
    WHERE agent_id IN (SELECT agent_id FROM candidates)
    GROUP BY ALL
),
log_tail AS (
    SELECT
        agent_id,
        list(struct_pack(created_at := created_at, level := level, output := output)
             ORDER BY created_at, id) AS startup_log_tail
    FROM (
        SELECT *, row_number() OVER (PARTITION BY agent_id ORDER BY created_at DESC, id DESC) AS from_end
        FROM workspace_agent_logs
        WHERE agent_id IN (SELECT agent_id FROM candidates)
    )
    WHERE from_end <= CAST($log_tail_lines AS BIGINT)
    GROUP BY ALL
),
script_runs AS (
    SELECT
        s.workspace_agent_id AS agent_id,
        coalesce(nullif(s.display_name, ''), CAST(s.id AS VARCHAR)) AS script,
        coalesce(s.run_on_start, true) AS run_on_start,
        t.script_id IS NOT NULL AS has_timing,
        t.stage, t.started_at, t.ended_at, t.exit_code, t.status
    FROM workspace_agent_scripts s
    LEFT JOIN workspace_agent_script_timings t
      ON t.script_id = s.id AND coalesce(t.stage, 'start') = 'start'
    WHERE s.workspace_agent_id IN (SELECT agent_id FROM candidates)
),
scripts AS (
    SELECT
        agent_id,
        list(struct_pack(script := script, stage := stage, started_at := started_at,
                         ended_at := ended_at, exit_code := exit_code, status := status)
             ORDER BY started_at, script) FILTER (has_timing) AS script_timings,
        list(format('{} ({}, exit code {})', script, status, exit_code) ORDER BY started_at, script)
            FILTER (has_timing AND status <> 'ok') AS failed_scripts,
        list(DISTINCT script ORDER BY script) FILTER (run_on_start AND NOT has_timing) AS start_scripts_without_timing
    FROM script_runs
    GROUP BY ALL
)
SELECT
    c.agent_id,
    c.workspace_id,
    c.workspace_name,
    c.build_number,
    CASE WHEN c.lifecycle_state = 'starting' THEN c.started_at
         ELSE coalesce(c.ready_at, c.started_at) END AS ts,
    CASE WHEN c.lifecycle_state = 'starting' THEN
        format('Agent row {} of build #{} ({}) entered ''starting'' at {} and was still ''starting'' at {} ({}), {} later, past its start timeout of {} s ({}). {}',
            left(CAST(c.agent_id AS VARCHAR), 8), c.build_number, c.transition,
            strftime(c.started_at, '%Y-%m-%d %H:%M:%S UTC'),
            strftime(c.judged_at, '%Y-%m-%d %H:%M:%S UTC'), c.judged_by,
            c.still_starting_for, c.timeout_seconds, c.timeout_source,
            c.log_note)
        || CASE WHEN len(sc.start_scripts_without_timing) > 0
                THEN ' Start scripts that never finished: ' || array_to_string(sc.start_scripts_without_timing, ', ') || '.'
                ELSE '' END
    ELSE
        format('Agent row {} of build #{} ({}) ended its startup in ''{}'' at {}{}. {}',
            left(CAST(c.agent_id AS VARCHAR), 8), c.build_number, c.transition, c.lifecycle_state,
            coalesce(strftime(c.ready_at, '%Y-%m-%d %H:%M:%S UTC'), 'an unrecorded time'),
            CASE WHEN c.started_at IS NOT NULL AND c.ready_at IS NOT NULL
                 THEN format(', {} after it entered ''starting'' at {}',
                        c.startup_took,
                        strftime(c.started_at, '%Y-%m-%d %H:%M:%S UTC'))
                 ELSE '' END,
            c.log_note)
        || CASE WHEN len(sc.failed_scripts) > 0
                THEN ' Failed scripts: ' || array_to_string(sc.failed_scripts, '; ') || '.'
                ELSE '' END
    END AS summary,
    c.lifecycle_state,
    c.transition,
    c.started_at,
    c.ready_at,
    c.timeout_seconds AS start_timeout_seconds,
    c.timeout_source,
    c.deadline AS start_deadline,
    CASE WHEN c.lifecycle_state = 'starting' THEN c.judged_at END AS still_starting_at,
    CASE WHEN c.lifecycle_state = 'starting' THEN c.judged_by END AS still_starting_when,
    c.is_latest_build,
    c.first_connected_at,
    c.last_connected_at,
    c.disconnected_at,
    c.logs_length,
    coalesce(ls.startup_log_lines, 0) AS startup_log_lines,
    coalesce(ls.startup_log_errors, 0) AS startup_log_errors,
    coalesce(ls.startup_log_warnings, 0) AS startup_log_warnings,
    coalesce(lt.startup_log_tail, []) AS startup_log_tail,
    c.start_scripts,
    coalesce(sc.script_timings, []) AS script_timings,
    coalesce(sc.failed_scripts, []) AS failed_scripts,
    coalesce(sc.start_scripts_without_timing, []) AS start_scripts_without_timing,
    c.as_of AS export_as_of
FROM (
    SELECT c.*,
           CASE WHEN NOT EXISTS (SELECT 1 FROM workspace_agent_logs)
                THEN 'No startup logs in the export.'
                ELSE format('Startup log: {} line(s), {} at error level.',
                            coalesce(ls.startup_log_lines, 0), coalesce(ls.startup_log_errors, 0))
           END AS log_note
    FROM candidates c
    LEFT JOIN log_stats ls ON ls.agent_id = c.agent_id
) c
LEFT JOIN log_stats ls ON ls.agent_id = c.agent_id
LEFT JOIN log_tail lt ON lt.agent_id = c.agent_id
LEFT JOIN scripts sc ON sc.agent_id = c.agent_id
ORDER BY c.workspace_name, c.build_number, c.agent_id;
