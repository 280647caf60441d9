-- id: build-failed-agent-connected
-- title: Agent connected for a failed or canceled build
-- severity: medium
-- requires: workspace_agents(first_connected_at, last_connected_at, disconnected_at, version, lifecycle_state), workspace_builds(build_number, transition), provisioner_jobs(started_at, completed_at, canceled_at, error)
-- reads: workspace_agents(id, resource_id), workspace_resources(id, type, name), provisioner_jobs(id, created_at)
-- params: include_superseded=false
-- description: An agent row that a real agent connected to (first_connected_at set, and the
--   agent reported its version) although its build's provisioner job ended 'failed' or
--   'canceled' (job status recomputed from completed_at, error and canceled_at). Only builds
--   that are still their workspace's latest build are flagged, unless include_superseded is
--   true. One row per agent row.
-- explain: Coder records a build's resources and agent rows only when the provisioner reports
--   the job complete, in the same transaction that sets completed_at; a job that fails
--   (including one ended by the hung-job detector) records none. A canceled build with agent
--   rows is one whose cancel arrived while Terraform was finishing: Terraform applied the
--   plan, the provisioner reported completion, and the job ended 'canceled' with its
--   infrastructure in place. An agent that connected to such a row proves that a VM or pod
--   came up and is (or was) running, while the dashboard shows the workspace as canceled or
--   failed; schedules that act on running workspaces may leave it alone, and it keeps
--   costing. A failed build that owns agent rows is not produced by the Coder versions whose
--   provisioner code was read; if one is flagged, check the export (were provisioner_jobs and
--   workspace_agents exported from one snapshot?) before trusting it. Rows whose connection
--   carries no agent version are not flagged: before Coder PR #22052, coder-logstream-kube
--   set connection times with the agent's token although no agent ran.
-- remedy: Look the workspace up in the cloud console and stop or start it from Coder, so that
--   a successful build owns the infrastructure (a stop build tears down or suspends what the
--   canceled build's Terraform state recorded). If builds are often canceled during the
--   apply, raise the template's timeouts rather than canceling.
-- links: https://github.com/coder/coder/pull/22052
SELECT
    ab.agent_id,
    ab.workspace_id,
    ab.workspace_name,
    ab.build_number,
    ab.first_connected_at AS ts,
    format('Agent row {} of build #{} ({}) was connected at {} by an agent reporting {}, although the build''s job ended ''{}'' at {}: {} came up for a build Coder counts as {}; the agent {}{}.',
        left(CAST(ab.agent_id AS VARCHAR), 8), ab.build_number, ab.transition,
        strftime(ab.first_connected_at, '%Y-%m-%d %H:%M:%S UTC'), ab.version, ab.job_status,
        strftime(ab.job_completed_at, '%Y-%m-%d %H:%M:%S UTC'),
        CASE WHEN res.type IS NULL THEN 'its infrastructure' ELSE res.type || '.' || res.name END,
        ab.job_status,
        CASE WHEN ab.disconnected_at IS NULL OR ab.disconnected_at < ab.last_connected_at
             THEN format('was still connected at {}', strftime(ab.last_connected_at, '%Y-%m-%d %H:%M:%S UTC'))
             ELSE format('disconnected at {}', strftime(ab.disconnected_at, '%Y-%m-%d %H:%M:%S UTC')) END,
        CASE WHEN ab.is_latest_build THEN ' and the build is still the workspace''s latest'
             ELSE format(', and build #{} ({}, {}) followed', nb.build_number, nb.transition, nb.job_status) END
    ) AS summary,
    ab.job_status,
    left(split_part(nullif(ab.job_error, ''), chr(10), 1), 200) AS job_error_first_line,
    pj.created_at AS job_created_at,
    ab.job_started_at,
    pj.canceled_at AS job_canceled_at,
    ab.job_completed_at,
    res.type || '.' || res.name AS agent_resource,
    ab.first_connected_at,
    ab.last_connected_at,
    ab.disconnected_at,
    ab.lifecycle_state,
    ab.version,
    ab.is_latest_build,
    CASE WHEN nb.build_number IS NOT NULL
         THEN format('#{} {} ({})', nb.build_number, nb.transition, nb.job_status) END AS next_build
FROM agent_builds ab
JOIN provisioner_jobs pj ON pj.id = ab.job_id
JOIN workspace_agents a ON a.id = ab.agent_id
LEFT JOIN workspace_resources res ON res.id = a.resource_id
LEFT JOIN LATERAL (
    SELECT b.build_number, b.transition, b.job_status FROM builds b
    WHERE b.workspace_id = ab.workspace_id AND b.build_number > ab.build_number
    ORDER BY b.build_number LIMIT 1
) nb ON true
WHERE ab.job_status IN ('failed', 'canceled')
  AND ab.first_connected_at IS NOT NULL
  AND coalesce(ab.version, '') <> ''
  AND (ab.is_latest_build OR CAST($include_superseded AS BOOLEAN))
ORDER BY ab.workspace_name, ab.build_number, ab.agent_id;
