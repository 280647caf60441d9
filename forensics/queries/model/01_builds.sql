-- reads: workspace_builds(id, workspace_id, build_number, transition, reason, created_at, job_id), provisioner_jobs(id, started_at, completed_at, canceled_at, error), workspaces(id, name, deleted, owner_id), users(id, username)
-- Builds with their job's status (recomputed as PostgreSQL's generated column does, since older
-- exports lack `job_status`), the workspace, its owner, and neighbouring builds.
CREATE OR REPLACE TABLE builds AS
WITH jobs AS (
    SELECT
        id AS job_id,
        started_at AS job_started_at,
        completed_at AS job_completed_at,
        error AS job_error,
        CASE
            WHEN completed_at IS NOT NULL THEN CASE
                WHEN coalesce(error, '') <> '' THEN 'failed'
                WHEN canceled_at IS NOT NULL THEN 'canceled'
                ELSE 'succeeded' END
            WHEN coalesce(error, '') <> '' THEN 'failed'
            WHEN canceled_at IS NOT NULL THEN 'canceling'
            WHEN started_at IS NULL THEN 'pending'
            ELSE 'running'
        END AS job_status
    FROM provisioner_jobs
)
SELECT
    b.id AS build_id,
    b.workspace_id,
    coalesce(w.name, '(workspace ' || left(CAST(b.workspace_id AS VARCHAR), 8) || ')') AS workspace_name,
    coalesce(w.deleted, false) AS workspace_deleted,
    u.username AS owner_name,
    b.build_number,
    b.transition,
    b.reason,
    b.created_at AS build_created_at,
    b.job_id,
    j.job_status,
    j.job_started_at,
    j.job_completed_at,
    j.job_error,
    b.build_number = max(b.build_number) OVER (PARTITION BY b.workspace_id) AS is_latest_build,
    lead(b.created_at) OVER (PARTITION BY b.workspace_id ORDER BY b.build_number) AS next_build_created_at
FROM workspace_builds b
LEFT JOIN workspaces w ON w.id = b.workspace_id
LEFT JOIN users u ON u.id = w.owner_id
LEFT JOIN jobs j ON j.job_id = b.job_id;
