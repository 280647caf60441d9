-- id: survived-build-boundary
-- title: Agent process survived a build boundary
-- severity: high
-- requires: workspace_agents(id, created_at, resource_id), workspace_builds(build_number, transition, created_at), agent logs
-- params: skew_tolerance_seconds=300
-- description: An agent row that was served by an agent process (or agent instance) that began
--   before the row's build was created: the process was carried over from an earlier build,
--   typically a VM suspended on stop and resumed on start, and it did not reinitialize for the
--   new build. One row per agent row.
-- explain: Coder gives every build a new agent row and expects a new agent process to report
--   its lifecycle (created, starting, ready) for it. A process that survives the build
--   boundary re-authenticates and attaches to the new row, but its lifecycle reporter has
--   already reported everything it knows to the old row, so the new row stays 'created' and
--   startup scripts never run for it (coder/coder#18571). The evidence is the process start
--   line, which predates the build, and the manifests in which the same process served first
--   the old agent id and then the new one. Prebuild claims cross the boundary legitimately,
--   announced by 'agent reinitializing'; those are not flagged.
-- remedy: Restart the agent process on the workspace host (or stop and start the workspace
--   with a template that recreates the VM). Long term, the template should restart the agent
--   on resume, or the agent must replay its lifecycle when the manifest's agent id changes.
-- links: https://github.com/coder/coder/issues/18571, https://github.com/coder/coder/pull/25406
WITH served AS (
    SELECT
        agent_id, stream, process_no, instance_no,
        min(ts) AS attached_at,
        arg_min(source, ts) AS attached_source,
        arg_min(line, ts) AS attached_line
    FROM agent_manifests
    WHERE agent_id IS NOT NULL
    GROUP BY ALL
),
earlier AS (
    -- Other agent rows the same instance served before attaching to this one.
    SELECT s.agent_id, s.stream, s.process_no, s.instance_no,
           list(DISTINCT CAST(m.agent_id AS VARCHAR) ORDER BY CAST(m.agent_id AS VARCHAR)) AS earlier_agent_ids
    FROM served s
    JOIN agent_manifests m
      ON m.stream = s.stream AND m.process_no = s.process_no AND m.instance_no = s.instance_no
     AND m.agent_id <> s.agent_id AND m.ts < s.attached_at
    GROUP BY ALL
),
candidates AS (
    SELECT ab.*, s.stream, s.process_no, s.instance_no, s.attached_at, s.attached_source,
           s.attached_line, i.began_at, i.began_by, i.first_source, i.first_line,
           coalesce(e.earlier_agent_ids, []) AS earlier_agent_ids
    FROM agent_builds ab
    JOIN served s ON s.agent_id = ab.agent_id
    JOIN agent_instances i
      ON i.stream = s.stream AND i.process_no = s.process_no AND i.instance_no = s.instance_no
    LEFT JOIN earlier e
      ON e.agent_id = s.agent_id AND e.stream = s.stream AND e.process_no = s.process_no
     AND e.instance_no = s.instance_no
    WHERE i.began_at < ab.build_created_at
      -- Time alone must clear the clock-skew tolerance; having served an older row is proof.
      AND (len(e.earlier_agent_ids) > 0
           OR i.began_at < ab.build_created_at - to_seconds(CAST($skew_tolerance_seconds AS DOUBLE)))
)
SELECT
    c.agent_id,
    c.workspace_id,
    c.workspace_name,
    c.build_number,
    c.attached_at AS ts,
    format('Agent row {} of build #{} ({}) was served by an agent process that began at {} ({}), before the build was created at {}: the process survived from {}{}.',
        left(CAST(c.agent_id AS VARCHAR), 8), c.build_number, c.transition,
        strftime(c.began_at, '%Y-%m-%d %H:%M:%S UTC'), c.began_by,
        strftime(c.build_created_at, '%Y-%m-%d %H:%M:%S UTC'),
        coalesce('build #' || CAST(origin.build_number AS VARCHAR), 'before the first exported build'),
        CASE WHEN c.lifecycle_state = 'created' THEN ', and the row never left ''created''' ELSE '' END
    ) AS summary,
    c.stream AS log_stream,
    c.process_no,
    c.instance_no,
    c.began_at AS process_began_at,
    c.began_by AS process_began_by,
    c.first_source || ':' || c.first_line AS process_first_line,
    c.attached_source || ':' || c.attached_line AS attached_line,
    c.build_created_at,
    origin.build_number AS process_origin_build,
    c.earlier_agent_ids,
    (SELECT list('#' || b.build_number || ' ' || b.transition ORDER BY b.build_number)
       FROM builds b
      WHERE b.workspace_id = c.workspace_id AND b.build_created_at > c.began_at
        AND b.build_number <= c.build_number) AS builds_crossed,
    (SELECT count(*) FROM agent_lifecycle_reports r
      WHERE r.stream = c.stream AND r.process_no = c.process_no AND r.instance_no = c.instance_no
        AND r.ts >= c.attached_at) AS lifecycle_reports_after_attach,
    c.lifecycle_state
FROM candidates c
LEFT JOIN LATERAL (
    SELECT b.build_number FROM builds b
    WHERE b.workspace_id = c.workspace_id AND b.build_created_at <= c.began_at
    ORDER BY b.build_number DESC LIMIT 1
) origin ON true
ORDER BY c.workspace_name, c.build_number, c.agent_id;
