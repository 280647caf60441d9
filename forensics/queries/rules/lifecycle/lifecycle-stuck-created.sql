-- id: lifecycle-stuck-created
-- title: Connected agent never left 'created'
-- severity: critical
-- requires: workspace_agents(lifecycle_state, first_connected_at, started_at, version), workspace_builds(build_number)
-- params: grace_seconds=300
-- description: An agent row that an agent process connected to (first_connected_at set, and
--   the agent reported its version, which every real agent does on connect) but that never
--   reported any lifecycle state: lifecycle_state is still 'created' and started_at is empty,
--   more than grace_seconds after the connection. The database alone shows this. One row per agent.
-- explain: A fresh agent reports 'starting' within seconds of connecting. A row that has been
--   connected for longer and is still 'created' was attached to by a process that believes it
--   has nothing left to report, which is what happens when a process survives a build
--   boundary (coder/coder#18571, #13921). Clients that wait for the agent to be ready,
--   including 'coder ssh' with blocking startup scripts, wait forever.
-- remedy: Restart the agent process on the workspace host; the new process reports its
--   lifecycle to this row. Check the survived-build-boundary finding for the same agent.
-- links: https://github.com/coder/coder/issues/18571, https://github.com/coder/coder/issues/13921
SELECT
    ab.agent_id,
    ab.workspace_id,
    ab.workspace_name,
    ab.build_number,
    ab.first_connected_at AS ts,
    format('Agent row {} of build #{} ({}) was connected at {} and reported version {}, but has stayed ''created'' without any lifecycle report (export as of {}).',
        left(CAST(ab.agent_id AS VARCHAR), 8), ab.build_number, ab.transition,
        strftime(ab.first_connected_at, '%Y-%m-%d %H:%M:%S UTC'), ab.version,
        strftime(x.as_of, '%Y-%m-%d %H:%M:%S UTC')) AS summary,
    ab.lifecycle_state,
    ab.first_connected_at,
    ab.last_connected_at,
    ab.disconnected_at,
    ab.version,
    ab.startup_log_rows,
    ab.is_latest_build,
    x.as_of AS export_as_of
FROM agent_builds ab, export_facts x
WHERE ab.first_connected_at IS NOT NULL
  AND ab.lifecycle_state = 'created'
  AND ab.started_at IS NULL
  AND coalesce(ab.version, '') <> ''
  AND ab.first_connected_at < x.as_of - to_seconds(CAST($grace_seconds AS DOUBLE))
ORDER BY ab.workspace_name, ab.build_number, ab.agent_id;
