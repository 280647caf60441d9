-- reads: workspace_agents(id, name, created_at, updated_at, resource_id, lifecycle_state, started_at, ready_at, first_connected_at, last_connected_at, disconnected_at, version, api_version, expanded_directory, logs_length, auth_instance_id, deleted), workspace_resources(id, job_id), workspace_agent_logs(agent_id), workspace_builds(created_at, updated_at), provisioner_jobs(created_at, updated_at, started_at, completed_at)
-- Every agent row tied to the workspace build it belongs to, the way Coder itself joins them:
-- agent -> resource -> build (by job id). Agents of template-import and dry-run jobs have
-- resources too, but no build, so they drop out here. When an agent's resource was not
-- exported, the agent is tied through the workspace id its process logged in a manifest and
-- the last build of that workspace created before the agent row (`joined_by` says which).
CREATE OR REPLACE TABLE agent_builds AS
WITH via_resource AS (
    SELECT a.id AS agent_id, b.build_id, 'resource' AS joined_by
    FROM workspace_agents a
    JOIN workspace_resources r ON r.id = a.resource_id
    JOIN builds b ON b.job_id = r.job_id
),
unresolved AS (
    SELECT a.id AS agent_id, a.created_at
    FROM workspace_agents a
    WHERE NOT EXISTS (SELECT 1 FROM workspace_resources r WHERE r.id = a.resource_id)
),
manifest_workspace AS (
    SELECT DISTINCT agent_id, workspace_id FROM agent_manifests WHERE workspace_id IS NOT NULL
),
via_manifest AS (
    SELECT u.agent_id, b.build_id, 'manifest workspace id + build time' AS joined_by
    FROM unresolved u
    JOIN manifest_workspace m ON m.agent_id = u.agent_id
    ASOF JOIN builds b ON b.workspace_id = m.workspace_id AND u.created_at >= b.build_created_at
),
joined AS (
    SELECT * FROM via_resource
    UNION ALL
    SELECT * FROM via_manifest
)
SELECT
    a.id AS agent_id,
    a.name AS agent_name,
    a.created_at AS agent_created_at,
    a.lifecycle_state,
    a.started_at,
    a.ready_at,
    a.first_connected_at,
    a.last_connected_at,
    a.disconnected_at,
    a.version,
    a.api_version,
    a.expanded_directory,
    a.logs_length,
    a.auth_instance_id,
    a.deleted AS agent_deleted,
    coalesce(l.startup_log_rows, 0) AS startup_log_rows,
    j.joined_by,
    b.*
FROM workspace_agents a
JOIN joined j ON j.agent_id = a.id
JOIN builds b ON b.build_id = j.build_id
LEFT JOIN (
    SELECT agent_id, count(*) AS startup_log_rows FROM workspace_agent_logs GROUP BY agent_id
) l ON l.agent_id = a.id;

-- The moment the export describes: the latest timestamp the database itself recorded.
CREATE OR REPLACE TABLE export_facts AS
SELECT greatest(
    (SELECT max(greatest(updated_at, last_connected_at, created_at)) FROM workspace_agents),
    (SELECT max(greatest(updated_at, created_at)) FROM workspace_builds),
    (SELECT max(greatest(updated_at, completed_at, started_at, created_at)) FROM provisioner_jobs)
) AS as_of;
