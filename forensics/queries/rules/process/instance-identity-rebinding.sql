-- id: instance-identity-rebinding
-- title: Surviving agent process re-bound to a new build's row through instance identity
-- severity: high
-- requires: workspace_agents(id, created_at, resource_id, auth_instance_id), workspace_builds(build_number, transition, created_at), agent logs
-- description: Agent rows of one workspace share auth_instance_id (a long-lived VM that keeps
--   its cloud instance across builds), and a later build's row was attached to by an agent
--   process instance that had earlier served an older row with the same instance id: that
--   instance's `fetched manifest` lines name the older row first and then the later row, with no
--   process start or prebuild reinitialization between them. When the process's start line is
--   in the logs its `auth=` mode must be google-, aws- or azure-instance-identity; a process
--   known to use token auth is not flagged. One row per later agent row.
-- explain: With instance-identity auth the agent has no fixed token: on every (re)connection it
--   proves which cloud instance it runs on and coderd answers with the token of the newest
--   agent row carrying that instance id. A VM that is suspended or stopped without being
--   recreated keeps its instance id, so every build adds a row with the same auth_instance_id,
--   and the agent process that survived the build boundary silently receives the new row's
--   token on its next reconnect (coderd/workspaceresourceauth.go, coder/coder#25155). This is
--   how a process from an earlier build ends up serving the new row without ever restarting;
--   the process then never reports a lifecycle for it (coder/coder#18571). Rows that share an
--   instance id but were each served by a fresh process (the VM rebooted on start), prebuild
--   claims (the agent reinitializes) and rows no process ever attached to are not flagged.
-- remedy: Restart the agent process on the VM so a fresh agent reports its lifecycle to the new
--   row. In the template, restart the agent on resume or start (a systemd unit bound to the
--   boot, or a start script that re-executes the agent), or recreate the VM per build. A
--   lasting fix needs the agent to replay its lifecycle when the manifest's agent id changes
--   (proposed in coder/coder#25406, not merged).
-- links: https://github.com/coder/coder/issues/18571, https://github.com/coder/coder/issues/25155, https://github.com/coder/coder/issues/25157, https://github.com/coder/coder/pull/25406
WITH served AS (
    -- Each agent row each process instance served, first time seen.
    SELECT stream, process_no, instance_no, agent_id,
           min(ts) AS attached_at,
           arg_min(source || ':' || line, ts) AS attached_line
    FROM agent_manifests
    WHERE agent_id IS NOT NULL
    GROUP BY ALL
),
pairs AS (
    SELECT
        later.stream, later.process_no, later.instance_no,
        later.agent_id, later.attached_at, later.attached_line,
        earlier.agent_id AS earlier_agent_id,
        earlier.attached_at AS earlier_attached_at,
        earlier.attached_line AS earlier_attached_line,
        nb.workspace_id, nb.workspace_name, nb.build_number, nb.transition,
        nb.auth_instance_id, nb.lifecycle_state,
        ob.build_number AS earlier_build_number, ob.lifecycle_state AS earlier_lifecycle_state
    FROM served later
    JOIN served earlier
      ON earlier.stream = later.stream AND earlier.process_no = later.process_no
     AND earlier.instance_no = later.instance_no
     AND earlier.agent_id <> later.agent_id AND earlier.attached_at < later.attached_at
    JOIN agent_builds nb ON nb.agent_id = later.agent_id
    JOIN agent_builds ob ON ob.agent_id = earlier.agent_id
    WHERE nb.workspace_id = ob.workspace_id
      AND coalesce(nb.auth_instance_id, '') <> ''
      AND nb.auth_instance_id = ob.auth_instance_id
      AND ob.build_number < nb.build_number
),
chosen AS (
    -- The row served just before the later one is the one whose session was carried over.
    SELECT
        p.*,
        list_sort(list(DISTINCT CAST(p.earlier_agent_id AS VARCHAR)) OVER w_all) AS all_earlier_agent_ids
    FROM pairs p
    WINDOW w_all AS (PARTITION BY p.agent_id)
    QUALIFY row_number() OVER (PARTITION BY p.agent_id
                               ORDER BY p.earlier_attached_at DESC, p.stream, p.process_no) = 1
)
SELECT
    c.agent_id,
    c.workspace_id,
    c.workspace_name,
    c.build_number,
    c.attached_at AS ts,
    format('Agent row {} of build #{} ({}) was attached at {} by an agent process that had served build #{}''s row {} since {}: both rows carry instance id {}, and the process ({}, started {}) exchanged its instance identity for the new row''s token on a reconnect instead of a fresh agent starting.',
        left(CAST(c.agent_id AS VARCHAR), 8), c.build_number, c.transition,
        strftime(c.attached_at, '%Y-%m-%d %H:%M:%S UTC'),
        c.earlier_build_number, left(CAST(c.earlier_agent_id AS VARCHAR), 8),
        strftime(c.earlier_attached_at, '%Y-%m-%d %H:%M:%S UTC'),
        c.auth_instance_id,
        coalesce('auth=' || p.auth, 'auth mode unknown'),
        coalesce(strftime(p.started_at, '%Y-%m-%d %H:%M:%S UTC'),
                 'before ' || strftime(i.began_at, '%Y-%m-%d %H:%M:%S UTC') || ', start line not in the logs')
    ) AS summary,
    c.auth_instance_id AS shared_instance_id,
    CAST(c.earlier_agent_id AS VARCHAR) AS earlier_agent_id,
    c.earlier_build_number,
    c.earlier_lifecycle_state,
    c.earlier_attached_at,
    c.earlier_attached_line,
    c.attached_line,
    c.lifecycle_state,
    c.all_earlier_agent_ids,
    (SELECT list(CAST(a.agent_id AS VARCHAR) || ' (#' || a.build_number || ' ' || a.transition || ')'
                 ORDER BY a.build_number, a.agent_id)
       FROM agent_builds a
      WHERE a.workspace_id = c.workspace_id AND a.auth_instance_id = c.auth_instance_id) AS rows_sharing_instance_id,
    c.stream AS log_stream,
    c.process_no,
    c.instance_no,
    p.started_at AS process_started_at,
    coalesce(p.auth, 'unknown (start line not in the logs)') AS process_auth,
    p.agent_version AS process_agent_version,
    i.began_at AS instance_began_at,
    i.began_by AS instance_began_by,
    i.first_source || ':' || i.first_line AS instance_first_line
FROM chosen c
JOIN agent_processes p ON p.stream = c.stream AND p.process_no = c.process_no
JOIN agent_instances i
  ON i.stream = c.stream AND i.process_no = c.process_no AND i.instance_no = c.instance_no
WHERE p.auth IS NULL OR p.auth LIKE '%-instance-identity'
ORDER BY c.workspace_name, c.build_number, c.agent_id;
