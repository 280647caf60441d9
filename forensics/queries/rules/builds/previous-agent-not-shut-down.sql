-- id: previous-agent-not-shut-down
-- title: Agent frozen at a stop instead of shut down
-- severity: medium
-- requires: workspace_agents(name, lifecycle_state, disconnected_at, started_at), workspace_builds(build_number, transition, created_at), workspace_resources(type, name), provisioner_jobs(completed_at, canceled_at, error)
-- reads: workspace_agents(id, resource_id), workspace_resources(id, job_id)
-- params: window_seconds=600
-- description: The agent row of a start build never reached 'shutting_down', 'shutdown_timeout',
--   'shutdown_error' or 'off', although the next build was a stop whose job succeeded, and the
--   row's connection dropped at that stop: disconnected_at falls between the stop build's
--   creation and window_seconds after its job completed. The agent's host persisted into the
--   stop build: the stop build's job recorded a resource of the same type and name as the one
--   the agent row hangs off (on a suspend-on-stop template the VM, and until Coder PR #28276
--   the coder_agent with it, exist in every transition). Not flagged when the process's own
--   log shows a shutdown at the stop, when the stop build's agent row of the same name was
--   connected (the agent kept running), or when a fresh agent reported 'starting' for the
--   next start build's row of the same name within window_seconds of that build's job. One
--   row per agent row.
-- explain: A stop that really stops the agent (SIGTERM on VM shutdown, pod deletion with a
--   grace period) makes it report 'shutting_down' and then 'off'. This row stayed in its
--   running state and its connection simply dropped while the stop ran, so the process was
--   cut off without a shutdown. Because the host resource is still in the stop build's
--   Terraform state, the host was kept, not destroyed: typically a VM suspended on stop
--   (GCE desired_status SUSPENDED), with the agent process frozen in RAM. When the VM resumes
--   at the next start the same process thaws, re-authenticates by instance identity, attaches
--   to the new build's agent row and never reports a lifecycle for it (coder/coder#18571). An
--   ephemeral pod killed at the stop leaves the same 'ready' row with a disconnect, but its pod
--   is absent from the stop build's resources, so it is not flagged; neither is a stop build
--   whose agent row hangs off another persistent resource (a disk, a project) while the VM
--   itself is gone. Caveat: before Coder PR #21538 (January 2026, issue #19467) a start build's
--   agent could not authenticate once the stop build existed, so a VM that is powered off on
--   stop, with the agent shut down gracefully, can look the same when its log was not
--   collected; the next start tells them apart (a fresh agent reports 'starting', a thawed one
--   does not), and such rows are dropped once that start exists.
-- remedy: If the template suspends the VM on stop, expect the next start to reuse this agent
--   process: restart the agent after resume (a systemd unit or startup hook that restarts
--   coder-agent when the instance resumes), or change the template to power the VM off or
--   recreate it on stop. Check survived-build-boundary and lifecycle-stuck-created for the
--   next start build's agent row.
-- links: https://github.com/coder/coder/issues/18571, https://github.com/coder/coder/issues/19467
WITH rows_at_stop AS (
    SELECT
        ab.*,
        a.resource_id,
        hr.type AS host_type,
        hr.name AS host_name,
        s.build_id AS stop_build_id,
        s.build_number AS stop_build_number,
        s.build_created_at AS stop_created_at,
        s.job_id AS stop_job_id,
        s.job_completed_at AS stop_completed_at
    FROM agent_builds ab
    JOIN workspace_agents a ON a.id = ab.agent_id
    JOIN workspace_resources hr ON hr.id = a.resource_id
    JOIN LATERAL (
        SELECT * FROM builds b
        WHERE b.workspace_id = ab.workspace_id AND b.build_number > ab.build_number
        ORDER BY b.build_number LIMIT 1
    ) s ON true
    WHERE ab.transition = 'start'
      AND s.transition = 'stop'
      AND s.job_status = 'succeeded'
      AND ab.lifecycle_state NOT IN ('shutting_down', 'shutdown_timeout', 'shutdown_error', 'off')
      AND ab.disconnected_at >= s.build_created_at
      AND ab.disconnected_at <= s.job_completed_at + to_seconds(CAST($window_seconds AS DOUBLE))
),
host_kept AS (
    -- The stop build's job recorded the same host resource (type and name).
    SELECT r.agent_id,
           arg_min(sr.id, sr.id) AS stop_resource_id
    FROM rows_at_stop r
    JOIN workspace_resources sr
      ON sr.job_id = r.stop_job_id AND sr.type = r.host_type AND sr.name = r.host_name
    GROUP BY ALL
),
stop_rows AS (
    -- The stop build's agent row of the same name, if the stop build has one.
    SELECT r.agent_id,
           arg_min(x.agent_id, x.agent_created_at) AS stop_agent_id,
           min(x.first_connected_at) AS stop_agent_connected_at,
           bool_or(sa.resource_id = hk.stop_resource_id) AS stop_agent_on_host
    FROM rows_at_stop r
    JOIN agent_builds x ON x.build_id = r.stop_build_id AND x.agent_name = r.agent_name
    JOIN workspace_agents sa ON sa.id = x.agent_id
    LEFT JOIN host_kept hk ON hk.agent_id = r.agent_id
    GROUP BY ALL
),
next_start AS (
    -- The first start build after the stop, and its agent row of the same name.
    SELECT r.agent_id, n.build_number AS next_start_build_number,
           n.job_completed_at AS next_start_completed_at, n.build_created_at AS next_start_created_at,
           y.agent_id AS next_agent_id, y.lifecycle_state AS next_agent_state,
           y.first_connected_at AS next_agent_connected_at, y.started_at AS next_agent_started_at
    FROM rows_at_stop r
    JOIN LATERAL (
        SELECT * FROM builds b
        WHERE b.workspace_id = r.workspace_id AND b.build_number > r.stop_build_number
          AND b.transition = 'start'
        ORDER BY b.build_number LIMIT 1
    ) n ON true
    LEFT JOIN agent_builds y ON y.build_id = n.build_id AND y.agent_name = r.agent_name
),
served AS (
    SELECT DISTINCT m.agent_id, m.stream, m.process_no
    FROM agent_manifests m
    WHERE m.agent_id IN (SELECT agent_id FROM rows_at_stop)
),
process_log AS (
    -- What the agent processes that served the row logged around and after the stop.
    SELECT r.agent_id,
           min(e.ts) FILTER (e.kind = 'shutdown'
                AND e.ts BETWEEN r.stop_created_at - to_seconds(CAST($window_seconds AS DOUBLE))
                             AND r.stop_completed_at + to_seconds(CAST($window_seconds AS DOUBLE))) AS shutdown_logged_at,
           max(e.ts) FILTER (e.ts <= r.stop_completed_at + to_seconds(CAST($window_seconds AS DOUBLE))) AS last_line_at_stop,
           min(e.ts) FILTER (e.ts > r.stop_completed_at + to_seconds(CAST($window_seconds AS DOUBLE))) AS first_line_after_stop
    FROM rows_at_stop r
    JOIN served sv ON sv.agent_id = r.agent_id
    JOIN agent_events e ON e.stream = sv.stream AND e.process_no = sv.process_no
    -- (only the served streams' files are read: most entries are other hosts')
    WHERE e.file_id IN (SELECT file_id FROM log_positions
                        WHERE stream IN (SELECT stream FROM served))
    GROUP BY ALL
)
SELECT
    r.agent_id,
    r.workspace_id,
    r.workspace_name,
    r.build_number,
    r.disconnected_at AS ts,
    format('Agent row {} of build #{} (start) stayed ''{}'' and lost its connection at {}, {} s after stop build #{} was created (its job succeeded at {}), while its host {}.{} persisted into the stop build: the agent was frozen, not shut down.',
        left(CAST(r.agent_id AS VARCHAR), 8), r.build_number, r.lifecycle_state,
        strftime(r.disconnected_at, '%Y-%m-%d %H:%M:%S UTC'),
        CAST(round(epoch(r.disconnected_at) - epoch(r.stop_created_at)) AS BIGINT),
        r.stop_build_number, strftime(r.stop_completed_at, '%Y-%m-%d %H:%M:%S UTC'),
        r.host_type, r.host_name) AS summary,
    r.lifecycle_state,
    r.ready_at,
    r.disconnected_at,
    r.stop_build_number,
    r.stop_created_at AS stop_build_created_at,
    r.stop_completed_at AS stop_job_completed_at,
    r.host_type || '.' || r.host_name AS host_resource,
    CASE WHEN sr.stop_agent_on_host
         THEN 'resource of the stop build''s job, with its agent row ' || CAST(sr.stop_agent_id AS VARCHAR)
         ELSE 'resource of the stop build''s job' END AS host_on_stop_build,
    CASE
        WHEN ns.next_start_build_number IS NULL THEN 'no start build after the stop yet'
        WHEN ns.next_agent_id IS NULL THEN format('#{} start: no agent row named {}', ns.next_start_build_number, r.agent_name)
        WHEN ns.next_agent_connected_at IS NOT NULL AND ns.next_agent_started_at IS NULL
            THEN format('#{} start: row {} connected at {} but never reported a lifecycle state, as a thawed process does (see survived-build-boundary)',
                 ns.next_start_build_number, left(CAST(ns.next_agent_id AS VARCHAR), 8),
                 strftime(ns.next_agent_connected_at, '%Y-%m-%d %H:%M:%S UTC'))
        ELSE format('#{} start: row {} is ''{}''{}', ns.next_start_build_number,
                 left(CAST(ns.next_agent_id AS VARCHAR), 8), ns.next_agent_state,
                 coalesce(' (reported starting at ' || strftime(ns.next_agent_started_at, '%Y-%m-%d %H:%M:%S UTC') || ')', ''))
    END AS next_start,
    CASE
        WHEN pl.agent_id IS NULL THEN 'not collected'
        WHEN pl.first_line_after_stop IS NULL
            THEN format('last line at {}; nothing logged after the stop', strftime(pl.last_line_at_stop, '%Y-%m-%d %H:%M:%S UTC'))
        ELSE format('last line at {}; the same process (no restart, no shutdown) logged again at {}',
                 strftime(pl.last_line_at_stop, '%Y-%m-%d %H:%M:%S UTC'),
                 strftime(pl.first_line_after_stop, '%Y-%m-%d %H:%M:%S UTC'))
    END AS agent_log
FROM rows_at_stop r
JOIN host_kept hk ON hk.agent_id = r.agent_id
LEFT JOIN stop_rows sr ON sr.agent_id = r.agent_id
LEFT JOIN next_start ns ON ns.agent_id = r.agent_id
LEFT JOIN process_log pl ON pl.agent_id = r.agent_id
WHERE pl.shutdown_logged_at IS NULL
  AND sr.stop_agent_connected_at IS NULL
  AND NOT coalesce(ns.next_agent_started_at <= coalesce(ns.next_start_completed_at, ns.next_start_created_at)
                   + to_seconds(CAST($window_seconds AS DOUBLE)), false)
ORDER BY r.workspace_name, r.build_number, r.agent_id;
