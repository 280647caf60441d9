"""The canonical tables: which Coder columns are read, with which types, and which never are.

Only the columns listed here can be loaded (and `forensics collect` exports these), and of
them a run loads those that its model and rules read (`loaded_columns`). Everything else in an
export is ignored and recorded as ignored; secret columns are listed separately so the
coverage section can say they were deliberately not read. `auth_token` is the one secret that
rules need to compare, so it is loaded only as a keyed hash (`auth_token_hash`) whose key lives
for one run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Column kinds map to DuckDB types; `array` is a PostgreSQL array literal or a JSON array.
DUCKDB_TYPES = {
    "uuid": "UUID",
    "ts": "TIMESTAMPTZ",
    "int": "BIGINT",
    "bool": "BOOLEAN",
    "text": "VARCHAR",
    "json": "VARCHAR",
    "array": "VARCHAR[]",
}


@dataclass(frozen=True)
class Table:
    """One canonical table: its columns (name -> kind), the required ones, and the secret ones."""

    name: str
    columns: dict[str, str]
    required: tuple[str, ...]
    secret: tuple[str, ...] = ()
    renamed: dict[str, str] = field(default_factory=dict)  # legacy column name -> canonical
    hashed: tuple[str, ...] = ()  # secret columns loaded only as `<name>_hash`
    key: tuple[str, ...] = ("id",)  # identifies a row when a table comes in several files


def _cols(spec: str) -> dict[str, str]:
    """Parse 'name:kind name:kind ...' into an ordered dict."""
    out = {}
    for item in spec.split():
        name, kind = item.split(":")
        out[name] = kind
    return out


TABLES: dict[str, Table] = {
    t.name: t
    for t in [
        Table(
            "workspace_agents",
            _cols(
                "id:uuid created_at:ts updated_at:ts name:text first_connected_at:ts "
                "last_connected_at:ts disconnected_at:ts resource_id:uuid auth_instance_id:text "
                "architecture:text operating_system:text directory:text version:text "
                "last_connected_replica_id:uuid connection_timeout_seconds:int "
                "troubleshooting_url:text motd_file:text lifecycle_state:text "
                "expanded_directory:text logs_length:int logs_overflowed:bool started_at:ts "
                "ready_at:ts subsystems:array display_apps:array api_version:text "
                "display_order:int parent_id:uuid api_key_scope:text deleted:bool"
            ),
            required=("id", "created_at", "resource_id"),
            secret=(
                "auth_token",
                "environment_variables",
                "instance_metadata",
                "resource_metadata",
            ),
            renamed={
                "startup_logs_length": "logs_length",
                "startup_logs_overflowed": "logs_overflowed",
            },
            hashed=("auth_token",),
        ),
        Table(
            "workspace_builds",
            _cols(
                "id:uuid created_at:ts updated_at:ts workspace_id:uuid template_version_id:uuid "
                "build_number:int transition:text initiator_id:uuid job_id:uuid deadline:ts "
                "reason:text daily_cost:int max_deadline:ts template_version_preset_id:uuid"
            ),
            required=("id", "created_at", "workspace_id", "build_number", "transition", "job_id"),
            secret=("provisioner_state",),
        ),
        Table(
            "workspace_resources",
            _cols(
                "id:uuid created_at:ts job_id:uuid transition:text type:text name:text hide:bool "
                "icon:text instance_type:text daily_cost:int module_path:text"
            ),
            required=("id", "job_id"),
        ),
        Table(
            "provisioner_jobs",
            _cols(
                "id:uuid created_at:ts updated_at:ts started_at:ts canceled_at:ts completed_at:ts "
                "error:text organization_id:uuid initiator_id:uuid provisioner:text "
                "storage_method:text type:text worker_id:uuid file_id:uuid tags:json "
                "error_code:text job_status:text"
            ),
            required=("id", "created_at"),
            secret=("input", "trace_metadata"),
        ),
        Table(
            "workspaces",
            _cols(
                "id:uuid created_at:ts updated_at:ts owner_id:uuid organization_id:uuid "
                "template_id:uuid deleted:bool name:text autostart_schedule:text ttl:int "
                "last_used_at:ts dormant_at:ts deleting_at:ts automatic_updates:text"
            ),
            required=("id", "name"),
            secret=("group_acl", "user_acl"),
        ),
        Table(
            "users",
            _cols(
                "id:uuid email:text username:text created_at:ts updated_at:ts status:text "
                "rbac_roles:array login_type:text deleted:bool last_seen_at:ts name:text "
                "is_system:bool"
            ),
            required=("id", "username"),
            secret=(
                "hashed_password",
                "hashed_one_time_passcode",
                "one_time_passcode_expires_at",
                "avatar_url",
                "quiet_hours_schedule",
                "github_com_user_id",
            ),
        ),
        Table(
            "templates",
            _cols(
                "id:uuid created_at:ts updated_at:ts organization_id:uuid deleted:bool name:text "
                "provisioner:text active_version_id:uuid display_name:text"
            ),
            required=("id", "name"),
            secret=("user_acl", "group_acl"),
        ),
        Table(
            "template_versions",
            _cols(
                "id:uuid template_id:uuid organization_id:uuid created_at:ts updated_at:ts "
                "name:text job_id:uuid created_by:uuid archived:bool"
            ),
            required=("id", "job_id"),
            secret=("readme",),
        ),
        Table(
            # Startup-script output: shown only as the last lines of a stuck agent's log, and
            # passed through the same secret scrubbing as agent log lines.
            "workspace_agent_logs",
            _cols("agent_id:uuid created_at:ts output:text id:int level:text log_source_id:uuid"),
            required=("agent_id", "created_at"),
            key=("agent_id", "id"),
        ),
        Table(
            "workspace_agent_scripts",
            _cols(
                "id:uuid workspace_agent_id:uuid log_source_id:uuid log_path:text created_at:ts "
                "cron:text start_blocks_login:bool run_on_start:bool run_on_stop:bool "
                "timeout_seconds:int display_name:text"
            ),
            required=("workspace_agent_id", "timeout_seconds"),
            secret=("script",),
        ),
        Table(
            "workspace_agent_script_timings",
            _cols("script_id:uuid started_at:ts ended_at:ts exit_code:int stage:text status:text"),
            required=("script_id", "started_at"),
            key=("script_id", "started_at"),
        ),
        Table(
            # Coder's migration version: which schema the export came from (provenance).
            "schema_migrations",
            _cols("version:int dirty:bool"),
            required=("version",),
            key=("version",),
        ),
    ]
}

REQUIRED_TABLES = ("workspace_agents", "workspace_builds")

# Legacy table names written by older Coder versions.
TABLE_ALIASES = {"workspace_agent_startup_logs": "workspace_agent_logs"}

# Columns that identify a table when a file's name does not.
SIGNATURE_COLUMNS = {
    "workspace_agents": {"resource_id", "auth_token", "architecture", "operating_system"},
    "workspace_builds": {"workspace_id", "build_number", "transition", "job_id"},
    "workspace_resources": {"job_id", "transition", "type", "name"},
    "provisioner_jobs": {"provisioner", "storage_method", "file_id", "type"},
    "workspaces": {"owner_id", "template_id", "name", "last_used_at"},
    "users": {"email", "username", "hashed_password"},
    "templates": {"active_version_id", "provisioner", "name"},
    "template_versions": {"template_id", "job_id", "readme"},
    "workspace_agent_logs": {"agent_id", "output", "log_source_id"},
    "workspace_agent_scripts": {"workspace_agent_id", "script", "timeout_seconds", "run_on_start"},
    "workspace_agent_script_timings": {"script_id", "exit_code", "stage", "status"},
    "schema_migrations": {"version", "dirty"},
}


def export_command(table: str) -> str:
    """The psql command an operator runs to export `table` in the format we read best."""
    return (
        f'psql "$CODER_PG_URL" -c "\\copy (SELECT * FROM {table}) TO \'{table}.csv\' '
        'WITH (FORMAT csv, HEADER)"'
    )


def loaded_columns(reads: list[tuple[str, list[str]]]) -> dict[str, list[str]]:
    """The columns of each canonical table that a run loads: those read by the model and the
    rules (`reads`), plus the ones that identify a row and that a row cannot be without.

    A hashed secret is loaded when its `<name>_hash` is read. Names that are not canonical
    columns are left out (a rule may name one it computes itself). Canonical order is kept.
    """
    wanted: dict[str, set[str]] = {name: set() for name in TABLES}
    for table, cols in reads:
        if table in wanted:
            wanted[table].update(cols)
    out = {}
    for name, table in TABLES.items():
        keep = wanted[name] | set(table.required) | set(table.key)
        out[name] = [c for c in table.columns if c in keep]
        out[name] += [f"{h}_hash" for h in table.hashed if f"{h}_hash" in keep]
    return out
