-- id: stale-agent-rejected
-- title: Agent process holding an outdated build's token is rejected, the new build's agent never connects
-- severity: high
-- requires: workspace_agents(id, created_at, resource_id, first_connected_at), workspace_builds(build_number, transition, created_at), agent logs
-- params: min_rejections=2
-- description: An agent process that served an older build's agent row (its `fetched manifest`
--   lines name that row; when the rejected process fetched no manifest at all, the last row an
--   earlier process in the same log served) keeps trying to connect after a newer start build
--   of the same workspace completed, and coderd answers HTTP 403 "Agent trying to connect from
--   non-latest build" / "build is outdated" at least min_rejections times, while the newer
--   build's agent row of the same name never connected (first_connected_at empty). Rejections
--   count only while that start build was the workspace's latest build and after its job
--   finished (a failed, canceled or still running build is not counted). The finding is on the
--   newer build's agent row; when the export holds no agent row for the newer build, it is on
--   the old row, the only row the process can be tied to. One row per agent row.
-- explain: With token auth a workspace agent authenticates with the token of one agent row, and
--   coderd accepts a token only for the latest build (or the previous start build while a stop
--   build runs, coder/coder#19467). Each build gets a new row and a new token, delivered to a
--   freshly provisioned host. When the host is not recreated (a VM that is powered off or
--   suspended and started again, a pod or container that survives the stop), the old process,
--   or a new one started from the old cloud-init token, keeps presenting the old token and is
--   refused with 403 "build is outdated" (coder/coder#2970, #3485, #9635, #13248). Nothing else
--   on the host runs an agent with the new token, so the new build's agent row never connects
--   and the workspace shows its agent as 'connecting' until it times out. A single 403 at a
--   stop followed by the process shutting down, 403s from a leftover process while a fresh
--   process did connect to the new row, and 401s while a build is still provisioning are
--   normal and not flagged.
-- remedy: Make the template deliver the new build's token to the host on every start: recreate
--   the VM or container, or have the start path re-read the token (e.g. the agent's init script
--   fetched from coderd via cloud-init on every boot rather than baked into the disk) and
--   restart the agent. Right now, restart the agent on the host with the new build's token (or
--   rebuild the workspace), and stop the stale process.
-- links: https://github.com/coder/coder/issues/9635, https://github.com/coder/coder/issues/2970, https://github.com/coder/coder/issues/3485, https://github.com/coder/coder/issues/13248, https://github.com/coder/coder/issues/19467
WITH rejections AS (
    SELECT *
    FROM agent_connection_errors
    WHERE http_status = 403
      AND (lower(coalesce(http_message, '')) LIKE '%non-latest build%'
           OR lower(error_text) LIKE '%build is outdated%')
),
-- The agent row whose token the rejected process presents: the last row named in a manifest
-- of the same log stream before the rejection (its own process, or, for a process that never
-- got a manifest, the process that ran on the same host before it).
held AS (
    SELECT
        r.*,
        m.agent_id AS old_agent_id,
        m.source || ':' || m.line AS old_manifest_line,
        CASE WHEN m.process_no = r.process_no AND m.instance_no = r.instance_no
             THEN 'manifest of the rejected process'
             ELSE 'manifest of an earlier process in the same log'
        END AS tied_by
    FROM rejections r
    ASOF JOIN (SELECT * FROM agent_manifests WHERE agent_id IS NOT NULL) m
      ON m.stream = r.stream AND r.ts >= m.ts
),
-- The build that was the workspace's latest when each rejection happened.
placed AS (
    SELECT h.*, ob.workspace_id, ob.workspace_name, ob.agent_name AS old_agent_name,
           ob.build_number AS old_build_number, ob.lifecycle_state AS old_lifecycle_state,
           lb.build_id AS new_build_id, lb.build_number AS new_build_number,
           lb.transition AS new_transition, lb.build_created_at AS new_build_created_at,
           lb.job_status AS new_job_status, lb.job_completed_at AS new_job_completed_at
    FROM held h
    JOIN agent_builds ob ON ob.agent_id = h.old_agent_id
    ASOF JOIN builds lb ON lb.workspace_id = ob.workspace_id AND h.ts >= lb.build_created_at
),
counted AS (
    SELECT
        stream, process_no, old_agent_id, old_agent_name, old_build_number, old_lifecycle_state,
        workspace_id, workspace_name, new_build_id, new_build_number, new_build_created_at,
        new_job_status, new_job_completed_at,
        count(*) AS rejections,
        min(ts) AS first_rejected_at,
        max(ts) AS last_rejected_at,
        arg_min(source || ':' || line, ts) AS first_rejection_line,
        arg_max(source || ':' || line, ts) AS last_rejection_line,
        arg_min(concat_ws(' / ', http_message, error_detail), ts) AS rejection_message,
        arg_min(endpoint_path, ts) AS endpoint_path,
        arg_max(old_manifest_line, ts) AS old_manifest_line,
        arg_max(tied_by, ts) AS tied_by
    FROM placed
    WHERE new_transition = 'start'
      AND new_build_number > old_build_number
      AND coalesce(new_job_status, 'succeeded') = 'succeeded'
      AND ts >= coalesce(new_job_completed_at, new_build_created_at)
    GROUP BY ALL
    HAVING count(*) >= CAST($min_rejections AS INTEGER)
),
-- The newer build's agent rows that a fresh agent should have connected to.
new_rows AS (
    SELECT c.old_agent_id, c.new_build_id,
           count(nr.agent_id) AS rows_in_new_build,
           count(nr.agent_id) FILTER (nr.first_connected_at IS NOT NULL) AS connected_rows
    FROM counted c
    LEFT JOIN agent_builds nr
      ON nr.build_id = c.new_build_id
     AND (nr.agent_name = c.old_agent_name OR c.old_agent_name IS NULL)
    GROUP BY ALL
),
flagged AS (
    -- The newer build's rows that never connected, when none of them did.
    SELECT c.*, nr.agent_id AS flagged_agent_id, 'newer build''s row' AS flagged_row
    FROM counted c
    JOIN new_rows n USING (old_agent_id, new_build_id)
    JOIN agent_builds nr
      ON nr.build_id = c.new_build_id
     AND (nr.agent_name = c.old_agent_name OR c.old_agent_name IS NULL)
    WHERE n.connected_rows = 0 AND nr.first_connected_at IS NULL
    UNION ALL
    -- No row of the newer build in the export: the old row is the one the process is tied to.
    SELECT c.*, c.old_agent_id AS flagged_agent_id, 'old row (newer build has no agent row in the export)'
    FROM counted c
    JOIN new_rows n USING (old_agent_id, new_build_id)
    WHERE n.rows_in_new_build = 0
),
one_per_row AS (
    SELECT
        flagged_agent_id,
        sum(rejections) OVER (PARTITION BY flagged_agent_id) AS total_rejections,
        min(first_rejected_at) OVER (PARTITION BY flagged_agent_id) AS all_first_rejected_at,
        max(last_rejected_at) OVER (PARTITION BY flagged_agent_id) AS all_last_rejected_at,
        *
    FROM flagged
    QUALIFY row_number() OVER (PARTITION BY flagged_agent_id
                               ORDER BY rejections DESC, first_rejected_at, stream, process_no) = 1
)
SELECT
    o.flagged_agent_id AS agent_id,
    o.workspace_id,
    o.workspace_name,
    ab.build_number,
    o.all_first_rejected_at AS ts,
    format('{}; meanwhile an agent process presenting the token of build #{}''s row {} was turned away {} time(s) with HTTP 403 "{}" between {} and {}, after start build #{} {}.',
        CASE WHEN o.flagged_row = 'newer build''s row'
             THEN format('Agent row {} of build #{} never connected', left(CAST(o.flagged_agent_id AS VARCHAR), 8), o.new_build_number)
             ELSE format('Start build #{} has no agent row in the export, so this finding is on the old row', o.new_build_number)
        END,
        o.old_build_number, left(CAST(o.old_agent_id AS VARCHAR), 8), o.total_rejections,
        o.rejection_message,
        strftime(o.all_first_rejected_at, '%Y-%m-%d %H:%M:%S UTC'),
        strftime(o.all_last_rejected_at, '%Y-%m-%d %H:%M:%S UTC'),
        o.new_build_number,
        CASE WHEN o.new_job_completed_at IS NOT NULL
             THEN 'had completed at ' || strftime(o.new_job_completed_at, '%Y-%m-%d %H:%M:%S UTC')
             ELSE 'was created at ' || strftime(o.new_build_created_at, '%Y-%m-%d %H:%M:%S UTC') || ' (its job was not exported)'
        END
    ) AS summary,
    o.total_rejections AS rejections,
    o.all_first_rejected_at AS first_rejected_at,
    o.all_last_rejected_at AS last_rejected_at,
    o.first_rejection_line,
    o.last_rejection_line,
    o.rejection_message,
    o.endpoint_path,
    CAST(o.old_agent_id AS VARCHAR) AS old_agent_id,
    o.old_build_number,
    o.old_lifecycle_state,
    o.old_manifest_line,
    o.tied_by,
    o.new_build_number,
    o.new_build_created_at,
    o.new_job_status,
    o.new_job_completed_at,
    o.flagged_row,
    o.stream AS log_stream,
    o.process_no,
    p.started_at AS process_started_at,
    p.auth AS process_auth,
    p.agent_version AS process_agent_version
FROM one_per_row o
JOIN agent_builds ab ON ab.agent_id = o.flagged_agent_id
LEFT JOIN agent_processes p ON p.stream = o.stream AND p.process_no = o.process_no
ORDER BY o.workspace_name, ab.build_number, o.flagged_agent_id;
