"""Synthetic `coder support bundle` zips, laid out from a `forensics.synth` scenario.

`support_bundle()` writes, for one workspace of a scenario, what `coder support bundle
<workspace>` would have collected at a given moment (reference §4): the server's codersdk JSON
(indented four spaces, as Go's encoder with SetIndent writes it), the agent's current
coder-agent.log, its in-memory manifest, its startup logs as the CLI tab-aligns them, the
CLI's and the support run's own logs, and the deployment and network files nobody reads here.
`write_bundle()` zips it the way Go's archive/zip does (member times left unset).

`incident_bundle()` is coder/coder#18571 seen through a bundle; `healthy_bundle()` is a pod
workspace whose agent is ready. Nothing here prints.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from forensics.synth import (
    ACCESS_URL,
    Scenario,
    ScenarioBuilder,
    _boot_log,
    _healthy_agent,
    go_time,
    slog_line,
)

SERVER_VERSION = "v2.31.11+e5b2b1f"
INACTIVE_AFTER = timedelta(minutes=1)  # coderd's agent inactive-disconnect timeout (default)
# Members of a current bundle (cli/support.go writeBundle), in a fixed order.
LAYOUTS = {
    "current": "agent/agent.json agent/startup_logs.txt deployment/workspaces.json",
    "2024": "agent/agent.json agent/startup_logs.txt",  # before deployment/workspaces.json
    "2023": "workspace/agent.json workspace/agent_startup_logs.txt",
}
INCIDENT_COLLECTED_AT = datetime(2026, 5, 15, 14, 2, 11, tzinfo=UTC)
HEALTHY_COLLECTED_AT = datetime(2026, 5, 15, 14, 2, 40, tzinfo=UTC)


def _t(v: datetime | None) -> str | None:
    return go_time(v) if v is not None else None


def _pretty(value: Any) -> bytes:
    """json.Encoder with SetIndent("", "    "): four spaces, a trailing newline."""
    text = json.dumps(value, indent=4, ensure_ascii=False)
    for a, b in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(a, b)
    return (text + "\n").encode()


def _status(agent: dict[str, Any], at: datetime) -> str:
    """codersdk.WorkspaceAgentStatus as coderd derives it from the row's connection times."""
    if agent["first_connected_at"] is None:
        return "connecting"
    last, gone = agent["last_connected_at"], agent["disconnected_at"]
    if (gone is not None and gone > last) or last + INACTIVE_AFTER < at:
        return "disconnected"
    return "connected"


def _agent_json(
    row: dict[str, Any], at: datetime, layout: str, sanitize: bool = True
) -> dict[str, Any]:
    """codersdk.WorkspaceAgent for a workspace_agents row (omitempty fields left out)."""
    status = _status(row, at)
    ready = row["lifecycle_state"] == "ready"
    env = {k: "***REDACTED***" if sanitize else v for k, v in row["environment_variables"].items()}
    out: dict[str, Any] = {
        "id": row["id"],
        "parent_id": row["parent_id"],
        "created_at": _t(row["created_at"]),
        "updated_at": _t(row["updated_at"]),
    }
    for col in ("first_connected_at", "last_connected_at", "disconnected_at"):
        if row[col] is not None:
            out[col] = _t(row[col])
    for col in ("started_at", "ready_at"):
        if row[col] is not None:
            out[col] = _t(row[col])
    out |= {
        "status": status,
        "lifecycle_state": row["lifecycle_state"],
        "name": row["name"],
        "resource_id": row["resource_id"],
    }
    if row["auth_instance_id"]:
        out["instance_id"] = row["auth_instance_id"]
    out |= {
        "architecture": row["architecture"],
        "environment_variables": env,
        "operating_system": row["operating_system"],
    }
    if layout == "2023":
        out |= {
            "startup_logs_length": row["logs_length"],
            "startup_logs_overflowed": False,
        }
    else:
        out |= {"logs_length": row["logs_length"], "logs_overflowed": row["logs_overflowed"]}
    out["directory"] = row["directory"]
    if row["expanded_directory"]:
        out["expanded_directory"] = row["expanded_directory"]
    out["version"] = row["version"]
    if layout != "2023":
        out["api_version"] = row["api_version"]
    out |= {
        "apps": [],
        "connection_timeout_seconds": row["connection_timeout_seconds"],
        "troubleshooting_url": row["troubleshooting_url"],
    }
    if layout == "2023":
        out["subsystem"] = ""
    else:
        out["subsystems"] = row["subsystems"]
    reason = {
        "connecting": "agent has not yet connected",
        "disconnected": "agent has lost connection",
        "connected": "" if ready else "agent is not ready",
    }[status]
    out |= {
        "health": {"healthy": not reason, **({"reason": reason} if reason else {})},
        "display_apps": row["display_apps"],
        "log_sources": [],
        "scripts": [],
        "startup_script_behavior": "non-blocking",
    }
    return out


def _build_status(transition: str, job_status: str) -> str:
    if job_status == "succeeded":
        return {"start": "running", "stop": "stopped", "delete": "deleted"}[transition]
    if job_status in ("pending", "running"):
        return {"start": "starting", "stop": "stopping", "delete": "deleting"}[transition]
    return job_status  # failed, canceled, canceling


def _workspace_json(
    scn: Scenario, ws: dict[str, Any], at: datetime, layout: str, sanitize: bool = True
) -> dict[str, Any]:
    """codersdk.Workspace with its latest build, that build's job, resources and agents."""
    t = scn.tables
    owner = next(u for u in t["users"] if u["id"] == ws["owner_id"])
    tpl = next(x for x in t["templates"] if x["id"] == ws["template_id"])
    builds = [b for b in t["workspace_builds"] if b["workspace_id"] == ws["id"]]
    build = max(builds, key=lambda b: b["build_number"])
    job = next(j for j in t["provisioner_jobs"] if j["id"] == build["job_id"])
    initiator = next(u for u in t["users"] if u["id"] == build["initiator_id"])
    version = next(v for v in t["template_versions"] if v["id"] == build["template_version_id"])
    job_json: dict[str, Any] = {"id": job["id"], "created_at": _t(job["created_at"])}
    for col in ("started_at", "completed_at", "canceled_at"):
        if job[col] is not None:
            job_json[col] = _t(job[col])
    if job["error"]:
        job_json["error"] = job["error"]
    job_json |= {
        "status": job["job_status"],
        "worker_id": job["worker_id"],
        "file_id": job["file_id"],
        "tags": job["tags"],
        "queue_position": 0,
        "queue_size": 0,
        "organization_id": job["organization_id"],
        "initiator_id": job["initiator_id"],
        "input": {"workspace_build_id": build["id"]},
        "type": job["type"],
        "metadata": {
            "template_version_name": version["name"],
            "template_id": tpl["id"],
            "template_name": tpl["name"],
            "template_display_name": tpl["display_name"],
            "template_icon": tpl["icon"],
            "workspace_id": ws["id"],
            "workspace_name": ws["name"],
        },
        "logs_overflowed": False,
    }
    resources = []
    for res in t["workspace_resources"]:
        if res["job_id"] != job["id"]:
            continue
        agents = [
            _agent_json(a, at, layout, sanitize)
            for a in t["workspace_agents"]
            if a["resource_id"] == res["id"]
        ]
        resources.append(
            {
                "id": res["id"],
                "created_at": _t(res["created_at"]),
                "job_id": res["job_id"],
                "workspace_transition": res["transition"],
                "type": res["type"],
                "name": res["name"],
                "hide": res["hide"],
                "icon": res["icon"],
                **({"agents": agents} if agents else {}),
                "metadata": [],
                "daily_cost": res["daily_cost"],
            }
        )
    latest = {
        "id": build["id"],
        "created_at": _t(build["created_at"]),
        "updated_at": _t(build["updated_at"]),
        "workspace_id": ws["id"],
        "workspace_name": ws["name"],
        "workspace_owner_id": owner["id"],
        "workspace_owner_name": owner["username"],
        "template_version_id": version["id"],
        "template_version_name": version["name"],
        "build_number": build["build_number"],
        "transition": build["transition"],
        "initiator_id": initiator["id"],
        "initiator_name": initiator["username"],
        "job": job_json,
        "reason": build["reason"],
        "resources": resources,
        "deadline": _t(build["deadline"]) if build["deadline"].year > 1 else None,
        "max_deadline": _t(build["max_deadline"]) if build["max_deadline"].year > 1 else None,
        "status": _build_status(build["transition"], job["job_status"]),
        "daily_cost": build["daily_cost"],
        "template_version_preset_id": build["template_version_preset_id"],
    }
    out: dict[str, Any] = {
        "id": ws["id"],
        "created_at": _t(ws["created_at"]),
        "updated_at": _t(ws["updated_at"]),
        "owner_id": owner["id"],
        "owner_name": owner["username"],
        "owner_avatar_url": "",
        "organization_id": ws["organization_id"],
        "organization_name": "coder",
        "template_id": tpl["id"],
        "template_name": tpl["name"],
        "template_display_name": tpl["display_name"],
        "template_icon": tpl["icon"],
        "template_allow_user_cancel_workspace_jobs": True,
        "template_active_version_id": tpl["active_version_id"],
        "template_require_active_version": False,
        "latest_build": latest,
        "latest_app_status": None,
        "outdated": False,
        "name": ws["name"],
    }
    if ws["autostart_schedule"]:
        out["autostart_schedule"] = ws["autostart_schedule"]
    if ws["ttl"]:
        out["ttl_ms"] = ws["ttl"] // 1_000_000
    out |= {
        "last_used_at": _t(ws["last_used_at"]),
        "deleting_at": None,
        "dormant_at": None,
        "health": {"healthy": True, "failing_agents": []},
        "automatic_updates": ws["automatic_updates"],
        "allow_renames": False,
        "favorite": ws["favorite"],
        "next_start_at": _t(ws["next_start_at"]),
        "is_prebuild": False,
    }
    return out


def _manifest_json(
    scn: Scenario, agent: dict[str, Any], ws: dict[str, Any], sanitize: bool
) -> dict[str, Any]:
    """agentsdk.Manifest as the agent's /debug/manifest serves it (env sanitized by the CLI)."""
    owner = next(u for u in scn.tables["users"] if u["id"] == ws["owner_id"])
    env = agent["environment_variables"]
    host = ACCESS_URL.split("://", 1)[-1]
    return {
        "parent_id": None,
        "agent_id": agent["id"],
        "agent_name": agent["name"],
        "owner_name": owner["username"],
        "workspace_id": ws["id"],
        "workspace_name": ws["name"],
        "git_auth_configs": 0,
        "vscode_port_proxy_uri": f"https://{{{{port}}}}--{agent['name']}--{ws['name']}--"
        f"{owner['username']}.apps.{host}",
        "apps": [],
        "derpmap": {"HomeParams": {}, "Regions": {"999": {"RegionID": 999, "RegionCode": "coder"}}},
        "derp_force_websockets": False,
        "environment_variables": {k: "***REDACTED***" if sanitize else v for k, v in env.items()},
        "directory": agent["directory"],
        "motd_file": agent["motd_file"],
        "disable_direct_connections": False,
        "metadata": [],
        "scripts": [],
        "devcontainers": [],
    }


def tabwriter(rows: list[str], padding: int = 1) -> str:
    """Go's text/tabwriter (minwidth 0, padding 1, spaces): tab-ended cells are padded to the
    widest cell of their column within each run of lines that have that column."""
    cells = [r.split("\t") for r in rows]
    out: list[str] = [""] * len(cells)

    def write(i: int, widths: list[int]) -> None:
        line = cells[i]
        text = [c.ljust(widths[j]) for j, c in enumerate(line[:-1])]
        out[i] = "".join(text) + line[-1]

    def fmt(line0: int, line1: int, widths: list[int]) -> None:
        column, this = len(widths), line0
        while this < line1:
            if column >= len(cells[this]) - 1:
                write(this, widths)
                this += 1
                continue
            start, width = this, 0
            while this < line1 and column < len(cells[this]) - 1:
                width = max(width, len(cells[this][column]) + padding)
                this += 1
            fmt(start, this, [*widths, width])

    fmt(0, len(cells), [])
    return "".join(line + "\n" for line in out)


def _startup_logs(scn: Scenario, agent_id: str) -> bytes:
    """`created_at\\t[level]\\toutput` per line as the CLI writes startup_logs.txt."""
    rows = sorted(
        (r for r in scn.tables["workspace_agent_logs"] if r["agent_id"] == agent_id),
        key=lambda r: (r["created_at"], r["id"]),
    )
    lines = [
        f"{r['created_at']:%Y-%m-%d %H:%M:%S}.{r['created_at'].microsecond // 1000:03d}"
        f"\t[{r['level']}]\t{r['output']}"
        for r in rows
    ]
    return tabwriter(lines).encode()


def _cli_log(ws: dict[str, Any], agent: dict[str, Any], at: datetime) -> bytes:
    """cli_logs.txt: the coder CLI's own debug log of the support run."""
    ms = timedelta(milliseconds=1)
    commit = SERVER_VERSION.split("+")[-1]
    lines = [
        slog_line(at - 9 * ms * 100, "debug", "user auto-confirmed"),
        slog_line(
            at - 8 * ms * 100,
            "debug",
            "version info",
            [
                ("version", SERVER_VERSION),
                ("build_time", "2026-04-28T17:02:45Z"),
                ("external_url", f"https://github.com/coder/coder/commit/{commit}"),
                ("slim", False),
                ("agpl", False),
                ("boring_crypto", False),
            ],
        ),
        slog_line(
            at - 8 * ms * 100,
            "debug",
            "invocation",
            [("args", f"coder support bundle {ws['name']} --yes")],
        ),
        slog_line(
            at - 3 * ms * 100,
            "debug",
            "found workspace",
            [("workspace_name", ws["name"]), ("workspace_id", ws["id"])],
        ),
        slog_line(
            at - 2 * ms * 100,
            "debug",
            "found workspace agent",
            [("agent_name", agent["name"]), ("agent_id", agent["id"])],
        ),
        slog_line(
            at - ms * 100,
            "debug",
            "output path",
            [("path", f"/home/coder/coder-support-{int(at.timestamp())}.zip")],
        ),
    ]
    return "".join(ln + "\n" for ln in lines).encode()


def _support_log(ws: dict[str, Any], owner: dict[str, Any], at: datetime, reached: bool) -> bytes:
    """logs.txt: the support run's log (sloghuman), lines joined with newlines."""
    me = {"id": owner["id"], "username": owner["username"], "name": owner["name"]}
    lines = [
        slog_line(at + timedelta(milliseconds=140), "info", "running as user", [("me", me)]),
        slog_line(
            at + timedelta(milliseconds=910),
            "debug",
            "net.tailnet: netcheck: report: udp=true v6=false derp=999 derpdist=999v4:4ms",
            logger="dial-agent",
        ),
    ]
    if not reached:
        lines.append(slog_line(at + timedelta(seconds=30), "error", "timed out waiting for agent"))
    return "\n".join(lines).encode()


def _template_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo("main.tf", (1980, 1, 1, 0, 0, 0)), 'resource "coder_agent" {}\n')
    return buf.getvalue()


def support_bundle(
    scn: Scenario,
    workspace: str,
    *,
    collected_at: datetime,
    agent_log: list[str] | None,
    agent_name: str = "main",
    layout: str = "current",
    manifest_agent_id: str | None = None,
    sanitize: bool = True,
) -> dict[str, bytes]:
    """The files of `coder support bundle <workspace> [<agent_name>]` taken at `collected_at`.

    `agent_log` is the current coder-agent.log of the workspace's host (None: the agent could
    not be reached, so agent/logs.txt and agent/manifest.json are missing). The manifest names
    `manifest_agent_id` (default: the agent's own id). `sanitize=False` leaves the environment
    variables in, as a careless bundle might, to check they never reach a report.
    """
    t = scn.tables
    ws = next(w for w in t["workspaces"] if w["name"] == workspace)
    ws_json = _workspace_json(scn, ws, collected_at, layout, sanitize)
    agents = [a for r in ws_json["latest_build"]["resources"] for a in r.get("agents", [])]
    agent_json = next(a for a in agents if a["name"] == agent_name)
    agent_row = next(a for a in t["workspace_agents"] if a["id"] == agent_json["id"])
    owner = next(u for u in t["users"] if u["id"] == ws["owner_id"])
    agent_file, startup_file, *rest = LAYOUTS[layout].split()
    files: dict[str, bytes] = {
        "deployment/buildinfo.json": _pretty(
            {
                "external_url": "https://github.com/coder/coder/commit/"
                + SERVER_VERSION.split("+")[-1],
                "version": SERVER_VERSION,
                "dashboard_url": ACCESS_URL,
                "telemetry": True,
                "workspace_proxy": False,
                "agent_api_version": "2.4",
                "provisioner_api_version": "1.6",
                "upgrade_message": "",
                "deployment_id": str(uuid.UUID(int=0x5EED)),
            }
        ),
        "deployment/config.json": _pretty({"config": {"access_url": ACCESS_URL}, "options": []}),
        "deployment/experiments.json": _pretty([]),
        "deployment/health.json": _pretty(
            {"healthy": True, "severity": "ok", "time": _t(collected_at)}
        ),
        "network/netcheck.json": _pretty({"healthy": True, "severity": "ok", "regions": {}}),
        "network/coordinator_debug.html": b"<!DOCTYPE html><html><body><h2>coordinator</h2>"
        b"</body></html>\n",
        "network/tailnet_debug.html": b"<!DOCTYPE html><html><body>tailnet</body></html>\n",
        "workspace/workspace.json": _pretty(ws_json),
        "workspace/template.json": _pretty(
            {"id": ws_json["template_id"], "name": ws_json["template_name"]}
        ),
        "workspace/template_version.json": _pretty(
            {"id": ws_json["latest_build"]["template_version_id"]}
        ),
        "workspace/parameters.json": _pretty([]),
        "workspace/build_logs.txt": (
            f"{ws_json['latest_build']['created_at'][:19].replace('T', ' ')}.000 [info] "
            "provisioner_daemon  Setting up  \n"
        ).encode(),
        "workspace/template_file.zip": _template_zip(),
        agent_file: _pretty(agent_json),
        startup_file: _startup_logs(scn, agent_json["id"]),
        "agent/listening_ports.json": _pretty({"ports": []}),
        "agent/ping_result.json": _pretty({"IP": "fd7a:115c:a1e0::1", "Err": ""}),
        "agent/prometheus.txt": b"# HELP agent_scripts_executed_total Total number of scripts\n",
        "logs.txt": _support_log(ws, owner, collected_at, reached=agent_log is not None),
        "cli_logs.txt": _cli_log(ws, agent_json, collected_at),
    }
    if agent_log is not None:
        served = dict(agent_row, id=manifest_agent_id or agent_row["id"])
        files["agent/logs.txt"] = "".join(ln + "\n" for ln in agent_log).encode()
        files["agent/manifest.json"] = _pretty(_manifest_json(scn, served, ws, sanitize))
        files["agent/agent_magicsock.html"] = b"<html><body><h1>magicsock</h1></body></html>\n"
    if rest:  # deployment/workspaces.json: every workspace, capped at 10
        listing = [
            _workspace_json(scn, w, collected_at, layout, sanitize)
            for w in t["workspaces"]
            if not w["deleted"] and any(b["workspace_id"] == w["id"] for b in t["workspace_builds"])
        ]
        files[rest[0]] = _pretty({"workspaces": listing[:10], "count": len(listing)})
    return files


def write_bundle(files: dict[str, bytes], path: Path) -> Path:
    """Zip `files` as Go's archive/zip Create does: deflated, no member times. Deterministic."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 0, 0, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return path


def bundle_name(collected_at: datetime) -> str:
    """The file name `coder support bundle` gives its output by default."""
    return f"coder-support-{int(collected_at.timestamp())}.zip"


def incident_scenario() -> Scenario:
    """coder/coder#18571 on one host: ml-train, a GCE VM suspended at stop and resumed at
    start. One agent process since build #1 served row A (#1), froze at the stop, thawed after
    build #3 and attached to row B (#3) without reporting any lifecycle for it. Also `web`, a
    healthy pod workspace, and its own host's log. Log paths: meta["logs"][workspace]."""

    def d(y: int, mo: int, day: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0):
        return datetime(y, mo, day, h, mi, s, us, tzinfo=UTC)

    def sec(s: float) -> timedelta:
        return timedelta(seconds=s)

    b = ScenarioBuilder(seed=25406, start=d(2026, 5, 1, 9, 0))
    admin = b.user("coderadmin", at=d(2026, 5, 1, 9, 0), roles=["owner"])
    rwyrick = b.user("rwyrick", at=d(2026, 5, 2, 10, 4, 31, 220_000), login_type="github")
    alice = b.user("alice", at=d(2026, 5, 2, 11, 0, 2, 5_000), login_type="oidc")
    gce = b.template("gce-vm", at=d(2026, 5, 3, 15, 0), created_by=admin, display_name="GCE VM")
    k8s = b.template("k8s-pod", at=d(2026, 5, 3, 15, 30), created_by=admin)
    vm_auth = "google-instance-identity"

    ml = b.workspace(
        "ml-train",
        rwyrick,
        gce,
        at=d(2026, 5, 12, 13, 18, 2, 500_000),
        ttl_hours=None,
        last_used_at=d(2026, 5, 15, 13, 57, 10, 441_002),
    )
    b1 = b.build(ml, "start", at=d(2026, 5, 12, 13, 20), reason="cli")
    boot = d(2026, 5, 12, 13, 20, 58, 214_379)
    suspend = d(2026, 5, 12, 20, 5, 31, 770_401)
    row_a, tm = _healthy_agent(
        b, b1, booted=boot, last_connected_at=suspend - sec(10), disconnected_at=suspend + sec(0.01)
    )
    b2 = b.build(ml, "stop", at=d(2026, 5, 12, 20, 5), reason="cli")
    b.agent(b2)  # the stop build's agent row: nothing ever connects to it
    b3 = b.build(ml, "start", at=d(2026, 5, 13, 23, 9, 40), reason="cli")
    resume, first_b = d(2026, 5, 13, 23, 10, 0), d(2026, 5, 13, 23, 10, 22, 61_880)
    row_b = b.agent(
        b3,
        first_connected_at=first_b,
        last_connected_at=INCIDENT_COLLECTED_AT - sec(3.1),
    )
    lf = b.log("ml-train-vm/coder-agent.log")
    _boot_log(lf, row_a, tm, booted=boot, version="v2.31.11", auth=vm_auth)
    lf.chatter(tm["ready"], suspend - sec(60), 30)
    lf.disconnected(suspend)
    lf.connecting(resume + timedelta(microseconds=312))
    lf.run_error(resume + sec(0.4127), 401)
    lf.connecting(d(2026, 5, 13, 23, 10, 21, 300_115))
    lf.manifest(first_b + sec(0.0402), row_b)
    lf.chatter(first_b + sec(2), INCIDENT_COLLECTED_AT - sec(5), 24)

    web = b.workspace("web", alice, k8s, at=d(2026, 5, 15, 8, 29))
    wb = b.build(web, "start", at=d(2026, 5, 15, 8, 30))
    assert wb.job.completed_at is not None
    boot_w = wb.job.completed_at + sec(5.604)
    ag, tm_w = _healthy_agent(
        b, wb, booted=boot_w, last_connected_at=INCIDENT_COLLECTED_AT - sec(2.2)
    )
    lw = b.log("web-pod/coder-agent.log")
    _boot_log(lw, ag, tm_w, booted=boot_w, version="v2.31.11", auth="token")
    lw.chatter(tm_w["ready"], HEALTHY_COLLECTED_AT - sec(4), 14)

    scn = b.build_scenario(exported_at=INCIDENT_COLLECTED_AT)
    scn.meta["logs"] = {"ml-train": lf.path, "web": lw.path}
    scn.meta["rows"] = {"A": row_a.id, "B": row_b.id, "stop": b2.id}
    return scn


def incident_bundle(scn: Scenario | None = None, **kw: Any) -> dict[str, bytes]:
    """The bundle an operator took of ml-train while it hung (`coder ssh` waiting forever)."""
    scn = scn or incident_scenario()
    kw.setdefault("collected_at", INCIDENT_COLLECTED_AT)
    kw.setdefault("agent_log", scn.logs[scn.meta["logs"]["ml-train"]])
    return support_bundle(scn, "ml-train", **kw)


def healthy_bundle(scn: Scenario | None = None, **kw: Any) -> dict[str, bytes]:
    """A bundle of `web`, whose pod agent is ready (2024 layout: no deployment/workspaces.json,
    which would list ml-train too)."""
    scn = scn or incident_scenario()
    kw.setdefault("collected_at", HEALTHY_COLLECTED_AT)
    kw.setdefault("agent_log", scn.logs[scn.meta["logs"]["web"]])
    kw.setdefault("layout", "2024")
    return support_bundle(scn, "web", **kw)
