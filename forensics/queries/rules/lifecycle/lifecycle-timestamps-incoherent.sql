-- id: lifecycle-timestamps-incoherent
-- title: Agent lifecycle timestamps that cannot be real
-- severity: medium
-- requires: workspace_agents(created_at, lifecycle_state, started_at, ready_at), workspace_builds(build_number, created_at)
-- reads: workspace_agent_scripts(workspace_agent_id, run_on_start)
-- params: skew_tolerance_seconds=300
-- description: An agent row whose started_at/ready_at could not have come from an agent that
--   started up for this row. Problems, listed per row in `problems`: 'ready_at before
--   started_at'; 'started_at before the build was created' and 'started_at before the agent
--   row was created', each by more than skew_tolerance_seconds (times replayed from an earlier
--   build's agent, or a badly wrong host clock); 'ready_at within 1 ms of started_at' (a
--   replayed lifecycle: exactly 0 or exactly 1 ms apart always counts; less than 1 ms only
--   when the export shows start scripts for the agent, since an agent with no start scripts
--   can report 'ready' a fraction of a millisecond after 'starting'). Rows without started_at
--   (never started, or older than June 2023, when the column was added: such rows can read
--   'ready' with no times) are not judged. One row per agent row.
-- explain: started_at and ready_at are the changed_at times the agent itself sends with each
--   lifecycle report ('starting', then 'ready', 'start_timeout' or 'start_error'), and the
--   server stores them without checking them against the row. A real startup therefore
--   happens after the build and the agent row were created (allowing for clock skew between
--   the workspace host and the server), and takes at least as long as the start scripts need
--   to fork and run. Times that predate the build come from a lifecycle history carried over
--   from an earlier build's agent and re-sent to the new row (agents without the fix in
--   coder/coder#13075 could re-send their whole lifecycle history after a reconnect);
--   started_at and ready_at exactly 1 ms apart are what the proposed fix in PR #25406 writes
--   when it re-emits 'starting' and 'ready' to a new agent row without running any startup.
--   Either way the row can read 'ready' although no startup ran for this build: its startup
--   scripts did not run, and clients that wait for 'ready' were told the workspace was set up.
--   ready_at before started_at cannot come from one agent's ordered reports at all.
-- remedy: Treat the row's lifecycle as unreliable: check on the workspace host whether the
--   agent process predates the build (see survived-build-boundary) and whether the startup
--   scripts ran for this build (workspace_agent_logs, script timings). Restart the agent, or
--   stop and start the workspace, so a fresh agent runs the startup. If only the clock is at
--   fault (started_at far from the server's times on every build), fix time sync on the host.
-- links: https://github.com/coder/coder/pull/25406, https://github.com/coder/coder/issues/18571, https://github.com/coder/coder/issues/13062, https://github.com/coder/coder/pull/13075
WITH start_scripts AS (
    SELECT workspace_agent_id AS agent_id, count(*) AS start_scripts
    FROM workspace_agent_scripts
    WHERE coalesce(run_on_start, true)
    GROUP BY ALL
),
measured AS (
    SELECT
        ab.*,
        coalesce(s.start_scripts, 0) AS start_scripts,
        epoch(ab.build_created_at) - epoch(ab.started_at) AS started_before_build_s,
        epoch(ab.agent_created_at) - epoch(ab.started_at) AS started_before_row_s,
        epoch_us(ab.ready_at) - epoch_us(ab.started_at) AS startup_us,
        CAST($skew_tolerance_seconds AS DOUBLE) AS tolerance_s
    FROM agent_builds ab
    LEFT JOIN start_scripts s ON s.agent_id = ab.agent_id
    WHERE ab.started_at IS NOT NULL
),
judged AS (
    SELECT
        m.*,
        list_filter([
            CASE WHEN m.startup_us < 0 THEN 'ready_at before started_at' END,
            CASE WHEN m.started_before_build_s > m.tolerance_s THEN 'started_at before the build was created' END,
            CASE WHEN m.started_before_row_s > m.tolerance_s THEN 'started_at before the agent row was created' END,
            CASE WHEN m.startup_us IN (0, 1000)
                   OR (m.startup_us BETWEEN 0 AND 1000 AND m.start_scripts > 0)
                 THEN 'ready_at within 1 ms of started_at' END
        ], lambda p: p IS NOT NULL) AS problems
    FROM measured m
)
SELECT
    j.agent_id,
    j.workspace_id,
    j.workspace_name,
    j.build_number,
    coalesce(j.started_at, j.ready_at) AS ts,
    format('Agent row {} of build #{} ({}), lifecycle ''{}'', has lifecycle times that cannot be real: {} (build created {}, row created {}, started_at {}, ready_at {}).',
        left(CAST(j.agent_id AS VARCHAR), 8), j.build_number, j.transition, j.lifecycle_state,
        array_to_string(list_transform(j.problems, lambda p:
            CASE p
                WHEN 'ready_at before started_at'
                    THEN format('ready_at is {} s before started_at', round(-j.startup_us / 1e6, 3))
                WHEN 'started_at before the build was created'
                    THEN format('started_at is {} s before the build was created', round(j.started_before_build_s, 1))
                WHEN 'started_at before the agent row was created'
                    THEN format('started_at is {} s before the agent row was created', round(j.started_before_row_s, 1))
                WHEN 'ready_at within 1 ms of started_at'
                    THEN format('ready_at is only {} µs after started_at', j.startup_us)
                ELSE p
            END), '; '),
        strftime(j.build_created_at, '%Y-%m-%d %H:%M:%S UTC'),
        strftime(j.agent_created_at, '%Y-%m-%d %H:%M:%S UTC'),
        coalesce(strftime(j.started_at, '%Y-%m-%d %H:%M:%S.%f UTC'), 'NULL'),
        coalesce(strftime(j.ready_at, '%Y-%m-%d %H:%M:%S.%f UTC'), 'NULL')
    ) AS summary,
    j.problems,
    j.lifecycle_state,
    j.transition,
    j.build_created_at,
    j.agent_created_at,
    j.started_at,
    j.ready_at,
    round(j.started_before_build_s, 3) AS started_before_build_seconds,
    round(j.started_before_row_s, 3) AS started_before_row_seconds,
    j.startup_us AS startup_microseconds,
    j.tolerance_s AS skew_tolerance_seconds,
    j.start_scripts,
    j.first_connected_at,
    j.version,
    j.startup_log_rows
FROM judged j
WHERE len(j.problems) > 0
ORDER BY j.workspace_name, j.build_number, j.agent_id;
