-- id: build-job-never-completed
-- title: Workspace's latest build never completed; an older build's agent still serves it
-- severity: medium
-- requires: workspace_agents(first_connected_at, lifecycle_state), workspace_builds(build_number, transition, created_at), provisioner_jobs(started_at, completed_at, canceled_at, error)
-- params: threshold_seconds=3600
-- description: A workspace whose latest build's provisioner job is still pending, running or
--   canceling more than threshold_seconds after the build was created, at the export's time.
--   Such a build has no agent rows of its own (Coder records them only when a job completes),
--   so the finding is on the agent row the workspace still runs on: the connected agent row of
--   its most recent earlier build. One row per such agent row.
-- explain: While a build's job has not completed, the workspace shows 'starting', 'stopping'
--   or 'pending' and nobody can start or stop it, but the agent of the previous build keeps
--   running: for a stop build that never completes the VM or pod is not torn down, and for
--   a start build the user keeps working on (or waiting for) infrastructure of an older
--   build. Coder's hung-job detector normally fails a job that stops reporting progress, so
--   a job that stays pending or running for long means no provisioner picked it up (no
--   daemon with matching tags), or the detector is not running.
-- remedy: Look at the provisioner daemons (coder provisioner list) and the job's tags; cancel
--   the stuck build from the dashboard or CLI and run it again once a provisioner can take
--   it. Check the older build's agent: it is still the one serving the workspace.
-- links: https://github.com/coder/coder/issues/18571
WITH stuck AS (
    SELECT b.*, x.as_of,
           date_diff('second', b.build_created_at, x.as_of) AS age_seconds
    FROM builds b, export_facts x
    WHERE b.is_latest_build
      AND b.job_status IN ('pending', 'running', 'canceling')
      AND b.build_created_at < x.as_of - to_seconds(CAST($threshold_seconds AS DOUBLE))
),
serving AS (
    -- The most recent earlier build of the workspace that has a connected agent row.
    SELECT s.build_id AS stuck_build_id, max(ab.build_number) AS serving_build
    FROM stuck s
    JOIN agent_builds ab
      ON ab.workspace_id = s.workspace_id AND ab.build_number < s.build_number
     AND ab.first_connected_at IS NOT NULL
    GROUP BY ALL
)
SELECT
    ab.agent_id,
    ab.workspace_id,
    ab.workspace_name,
    ab.build_number,
    s.build_created_at AS ts,
    format('Build #{} ({}) of the workspace was created at {} and its job is still ''{}'' {} hours later (export as of {}); agent row {} of build #{} ({}, ''{}'') still serves the workspace.',
        s.build_number, s.transition, strftime(s.build_created_at, '%Y-%m-%d %H:%M:%S UTC'),
        s.job_status, round(s.age_seconds / 3600.0, 1), strftime(s.as_of, '%Y-%m-%d %H:%M:%S UTC'),
        left(CAST(ab.agent_id AS VARCHAR), 8), ab.build_number, ab.transition,
        ab.lifecycle_state) AS summary,
    s.build_number AS stuck_build_number,
    s.transition AS stuck_transition,
    s.job_status AS stuck_job_status,
    s.job_started_at AS stuck_job_started_at,
    s.age_seconds AS stuck_for_seconds,
    ab.lifecycle_state,
    ab.first_connected_at,
    ab.last_connected_at,
    ab.disconnected_at
FROM stuck s
JOIN serving v ON v.stuck_build_id = s.build_id
JOIN agent_builds ab
  ON ab.workspace_id = s.workspace_id AND ab.build_number = v.serving_build
 AND ab.first_connected_at IS NOT NULL
ORDER BY ab.workspace_name, ab.build_number, ab.agent_id;
