"""Rule cases: tiny deployments built with forensics.synth, each with the findings it must give.

A case is a function that fills a ScenarioBuilder and returns the expected findings as
(rule, workspace, build_number) tuples. Cases whose name starts with `lookalike_` are the
ways a real deployment produces something that resembles the incident but is not it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from forensics.synth import ScenarioBuilder

T0 = datetime(2026, 5, 14, 9, 0, tzinfo=UTC)
S = timedelta(seconds=1)
H = timedelta(hours=1)
SURVIVED, STUCK = "survived-build-boundary", "lifecycle-stuck-created"
REBOUND, NOT_SHUT_DOWN = "instance-identity-rebinding", "previous-agent-not-shut-down"
STUCK_STARTING, INCOHERENT = "lifecycle-stuck-starting", "lifecycle-timestamps-incoherent"
STALE = "stale-agent-rejected"
CANCELED = "build-failed-agent-connected"

Expected = set[tuple[str, str, int]]
CASES: dict[str, Callable[[ScenarioBuilder], Expected]] = {}
# Cases whose logs are left out of the dump, to check what the database alone gives.
DB_ONLY = {"db_only_stuck_created"}
# Cases whose workspace_resources table is left out of the dump.
NO_RESOURCES = {"incident_without_resources"}


def case(fn: Callable[[ScenarioBuilder], Expected]) -> Callable[[ScenarioBuilder], Expected]:
    CASES[fn.__name__] = fn
    return fn


def _ready(b, build, boot, **kw):
    """A healthy agent row for `build` whose process started at `boot`."""
    return b.agent(
        build,
        lifecycle_state=kw.pop("lifecycle_state", "ready"),
        first_connected_at=boot + 2 * S,
        started_at=boot + 3 * S,
        ready_at=boot + 30 * S,
        **kw,
    )


def _boot(log, at, agent, version="v2.31.11", auth="google-instance-identity", style=None):
    """A fresh process: start line, manifest for `agent`, starting -> ready."""
    log.start(at, version=version, auth=auth)
    log.connecting(at + S)
    log.manifest(at + 2 * S, agent, style=style)
    log.lifecycle(at + 3 * S, "starting", last="created")
    log.lifecycle(at + 30 * S, "ready", last="starting")


def _suspended_vm(b, name="vm1", style=None, version="v2.31.11", replay=False):
    """The #18571 incident: builds #1 start, #2 stop, #3 start, one agent process throughout."""
    owner = b.user(f"{name}-owner")
    ws = b.workspace(name, owner, b.template(f"{name}-gce-vm", kind="vm"))
    b1 = b.build(ws, "start", at=T0)
    boot = T0 + 60 * S
    a1 = _ready(b, b1, boot, version=version, disconnected_at=T0 + 5 * H + 5 * S)
    b2 = b.build(ws, "stop", at=T0 + 5 * H)
    b.agent(b2)  # the agent resource exists on stop builds too; nothing connects to it
    b3 = b.build(ws, "start", at=T0 + 24 * H)
    attach = T0 + 24 * H + 70 * S
    if replay:  # an agent with the lifecycle-replay fix: the new row reaches ready
        a3 = b.agent(
            b3,
            lifecycle_state="ready",
            first_connected_at=attach,
            started_at=attach + S,
            ready_at=attach + S + timedelta(milliseconds=1),
            last_connected_at=attach + 2 * H,
            version=version,
        )
    else:
        a3 = b.agent(
            b3, first_connected_at=attach, last_connected_at=attach + 2 * H, version=version
        )
    log = b.log(f"logs/{name}/coder-agent.log")
    _boot(log, boot, a1, version=version, style=style)
    log.chatter(boot + 40 * S, T0 + 5 * H, 5)
    log.disconnected(T0 + 5 * H + 5 * S)
    log.connecting(attach - 2 * S)
    log.manifest(attach, a3, style=style)
    if replay:
        log.lifecycle(attach + S, "starting", last="created")
        log.lifecycle(attach + 2 * S, "ready", last="starting")
    log.chatter(attach + 10 * S, attach + 2 * H, 5)
    return log


@case
def incident_suspended_vm(b):
    # The whole story: the row of build #1 was frozen at the stop (never shut down), the
    # same process re-bound through instance identity to build #3's row, which stays created.
    _suspended_vm(b)
    return {(SURVIVED, "vm1", 3), (STUCK, "vm1", 3), (REBOUND, "vm1", 3), (NOT_SHUT_DOWN, "vm1", 1)}


@case
def incident_old_agent_json_manifest(b):
    _suspended_vm(b, style="json", version="v2.9.4")
    return {(SURVIVED, "vm1", 3), (STUCK, "vm1", 3), (REBOUND, "vm1", 3), (NOT_SHUT_DOWN, "vm1", 1)}


@case
def incident_start_line_rotated_away(b):
    # Only the current file was collected: it begins mid-process, before build #3 existed.
    owner = b.user("rot")
    ws = b.workspace("vm2", owner, b.template("gce", kind="vm"))
    b1 = b.build(ws, "start", at=T0)
    _ready(b, b1, T0 + 60 * S)
    b.build(ws, "stop", at=T0 + 5 * H)
    b3 = b.build(ws, "start", at=T0 + 24 * H)
    a3 = b.agent(b3, first_connected_at=T0 + 24 * H + 70 * S, last_connected_at=T0 + 26 * H)
    log = b.log("logs/vm2/coder-agent.log")
    log.chatter(T0 + 2 * H, T0 + 4 * H, 5)  # no start line, no earlier manifest
    log.connecting(T0 + 24 * H + 60 * S)
    log.manifest(T0 + 24 * H + 70 * S, a3)
    return {(SURVIVED, "vm2", 3), (STUCK, "vm2", 3)}


@case
def incident_with_lifecycle_replay_fix(b):
    # The process still crossed the boundary, but replayed its lifecycle: not stuck, and the
    # replay's 1 ms starting->ready shows in the timestamps.
    _suspended_vm(b, replay=True)
    return {(SURVIVED, "vm1", 3), (REBOUND, "vm1", 3), (INCOHERENT, "vm1", 3)}


@case
def db_only_stuck_created(b):
    _suspended_vm(b)
    return {(STUCK, "vm1", 3), (NOT_SHUT_DOWN, "vm1", 1)}


@case
def incident_without_resources(b):
    # workspace_resources not exported: agents are tied to builds through the manifests
    # (previous-agent-not-shut-down needs the resources and is skipped).
    _suspended_vm(b)
    return {(SURVIVED, "vm1", 3), (STUCK, "vm1", 3), (REBOUND, "vm1", 3)}


@case
def incident_stale_token_rejected(b):
    # Token auth: the resumed process holds build #1's token and is refused (403) while
    # build #3's row never connects.
    owner = b.user("tok")
    ws = b.workspace("vm3", owner, b.template("libvirt", kind="vm"))
    b1 = b.build(ws, "start", at=T0)
    boot = T0 + 60 * S
    a1 = _ready(b, b1, boot, disconnected_at=T0 + 5 * H + 5 * S)
    b.build(ws, "stop", at=T0 + 5 * H)
    b3 = b.build(ws, "start", at=T0 + 24 * H)
    b.agent(b3)
    log = b.log("logs/vm3/coder-agent.log")
    _boot(log, boot, a1, auth="token")
    log.disconnected(T0 + 5 * H + 5 * S)
    for i in range(5):
        log.connecting(T0 + 24 * H + (120 + 10 * i) * S)
        log.run_error(T0 + 24 * H + (121 + 10 * i) * S, 403)
    return {(STALE, "vm3", 3), (NOT_SHUT_DOWN, "vm3", 1)}


@case
def stuck_starting_script_never_returns(b):
    # A pod whose startup script waits forever on a lock: 'starting' for 3 h, past the
    # 1800 s default; its startup log says why.
    owner = b.user("hang")
    ws = b.workspace("hang", owner, b.template("k8s-pod", kind="pod"))
    bld = b.build(ws, "start", at=T0)
    boot = T0 + 50 * S
    agent = b.agent(
        bld,
        lifecycle_state="starting",
        first_connected_at=boot + 2 * S,
        started_at=boot + 3 * S,
        last_connected_at=T0 + 3 * H,
    )
    b.agent_logs(
        agent,
        [
            (boot + 4 * S, "info", "==> Installing toolchain"),
            (boot + 9 * S, "error", "E: Could not get lock /var/lib/dpkg/lock-frontend"),
            (boot + 10 * S, "info", "waiting for the dpkg lock"),
        ],
    )
    log = b.log("logs/hang/coder-agent.log")
    log.start(boot, auth="token")
    log.connecting(boot + S)
    log.manifest(boot + 2 * S, agent)
    log.lifecycle(boot + 3 * S, "starting", last="created")
    return {(STUCK_STARTING, "hang", 1)}


@case
def lookalike_export_while_starting(b):
    # The export was taken 10 minutes into a long but healthy startup.
    owner = b.user("slow")
    ws = b.workspace("slow", owner, b.template("k8s-pod", kind="pod"))
    bld = b.build(ws, "start", at=T0)
    boot = T0 + 50 * S
    agent = b.agent(
        bld,
        lifecycle_state="starting",
        first_connected_at=boot + 2 * S,
        started_at=boot + 3 * S,
        last_connected_at=boot + 10 * 60 * S,
    )
    log = b.log("logs/slow/coder-agent.log")
    log.start(boot, auth="token")
    log.connecting(boot + S)
    log.manifest(boot + 2 * S, agent)
    log.lifecycle(boot + 3 * S, "starting", last="created")
    return set()


@case
def canceled_build_whose_agent_connected(b):
    # The cancel arrived while Terraform was finishing: the job completed as canceled, but
    # the VM exists and its agent connected. The workspace shows canceled; the VM runs on.
    owner = b.user("cancel")
    ws = b.workspace("half", owner, b.template("gce", kind="vm"))
    bld = b.build(ws, "start", at=T0)
    bld.job.canceled_at = bld.job.completed_at - 2 * S
    _ready(b, bld, T0 + 60 * S, last_connected_at=T0 + 2 * H)
    return {(CANCELED, "half", 1)}


@case
def stop_build_never_completed(b):
    # No provisioner picked up the stop's job: it is still running hours later, and the
    # start build's agent keeps serving the workspace.
    owner = b.user("hung")
    ws = b.workspace("hung-stop", owner, b.template("k8s", kind="pod"))
    bld = b.build(ws, "start", at=T0)
    _ready(b, bld, T0 + 50 * S, last_connected_at=T0 + 9 * H)
    b.build(ws, "stop", at=T0 + 5 * H, job_status="running")
    return {("build-job-never-completed", "hung-stop", 1)}


@case
def lookalike_ephemeral_pods(b):
    owner = b.user("pods")
    ws = b.workspace("web", owner, b.template("k8s-pod", kind="pod"))
    for n, at in enumerate((T0, T0 + 24 * H), start=1):
        bld = b.build(ws, "start", at=at)
        boot = at + 47 * S  # the pod starts after its build's job ran
        agent = _ready(b, bld, boot, disconnected_at=at + 5 * H + 3 * S)
        _boot(b.log(f"logs/web-pod-{n}/coder-agent.log"), boot, agent, auth="token")
        b.build(ws, "stop", at=at + 5 * H)
    return set()


@case
def lookalike_same_row_reconnects(b):
    owner = b.user("rc")
    ws = b.workspace("api", owner, b.template("gce", kind="vm"))
    bld = b.build(ws, "start", at=T0)
    boot = T0 + 60 * S
    agent = _ready(b, bld, boot)
    log = b.log("logs/api/coder-agent.log")
    _boot(log, boot, agent)
    for k in (1, 2):  # coderd restarts: the same process fetches the same row's manifest
        log.disconnected(T0 + k * 10 * H)
        log.connecting(T0 + k * 10 * H + 2 * S)
        log.manifest(T0 + k * 10 * H + 4 * S, agent)
    return set()


@case
def lookalike_prebuild_claim(b):
    system = b.user("prebuilds", is_system=True)
    owner = b.user("claimer")
    ws = b.workspace("claimed", owner, b.template("k8s-pod", kind="pod"))
    b1 = b.build(ws, "start", at=T0, initiator=system)
    boot = T0 + 50 * S
    p = _ready(b, b1, boot)
    claim = T0 + 6 * H
    b2 = b.build(ws, "start", at=claim)
    reinit = claim + 41 * S
    q = _ready(b, b2, reinit, auth_token=p.auth_token)
    log = b.log("logs/claimed/coder-agent.log")
    _boot(log, boot, p, auth="token")
    log.reinit(reinit, str(ws.id))
    log.connecting(reinit + S)
    log.manifest(reinit + 2 * S, q)
    log.lifecycle(reinit + 3 * S, "starting", last="created")
    log.lifecycle(reinit + 30 * S, "ready", last="starting")
    return set()


@case
def lookalike_never_connected(b):
    owner = b.user("nc")
    ws = b.workspace("broken-boot", owner, b.template("gce", kind="vm"))
    b.agent(b.build(ws, "start", at=T0))
    return set()


@case
def lookalike_template_import_agent(b):
    # Agents hang off the template import job too. Make one look stuck: it must not count.
    owner = b.user("imp")
    tpl = b.template("gce", kind="vm")
    b.workspace("idle", owner, tpl)
    for agent in [a for a in b.agents if a.build is None]:
        agent.first_connected_at = agent.last_connected_at = T0 + H
        agent.version = "v2.31.11"
    return set()


@case
def lookalike_deleted_workspace_history(b):
    owner = b.user("del")
    ws = b.workspace("old-proj", owner, b.template("k8s-pod", kind="pod"), deleted=True)
    bld = b.build(ws, "start", at=T0)
    boot = T0 + 50 * S
    agent = _ready(b, bld, boot, lifecycle_state="off", deleted=True)
    log = b.log("logs/old-proj/coder-agent.log")
    _boot(log, boot, agent, auth="token")
    b.build(ws, "stop", at=T0 + 8 * H)
    log.shutdown(T0 + 8 * H + 7 * S)
    b.build(ws, "delete", at=T0 + 48 * H)
    return set()


@case
def lookalike_logstream_kube_connection(b):
    # Before coder#22052, coder-logstream-kube set first_connected_at with the agent token;
    # no agent ever ran (it would have reported its version on connect).
    owner = b.user("lsk")
    ws = b.workspace("pending-pod", owner, b.template("k8s-pod", kind="pod"))
    bld = b.build(ws, "start", at=T0)
    b.agent(
        bld,
        first_connected_at=T0 + 50 * S,
        last_connected_at=T0 + 5 * H,
        version="",
        api_version="",
    )
    return set()


@case
def lookalike_export_during_startup(b):
    # The export was taken seconds after the agent connected, before it reported 'starting'.
    owner = b.user("early")
    ws = b.workspace("fresh", owner, b.template("k8s-pod", kind="pod"))
    bld = b.build(ws, "start", at=T0)
    b.agent(bld, first_connected_at=T0 + 50 * S, last_connected_at=T0 + 80 * S)
    return set()


@case
def lookalike_clock_skew_within_tolerance(b):
    # The pod's clock runs 2 minutes slow: its start line predates its build by 70 s.
    owner = b.user("skew")
    ws = b.workspace("skewed", owner, b.template("k8s-pod", kind="pod"))
    bld = b.build(ws, "start", at=T0)
    agent = _ready(b, bld, T0 + 50 * S)
    _boot(b.log("logs/skewed/coder-agent.log"), T0 - 70 * S, agent, auth="token")
    return set()


@case
def lookalike_vm_recreated_same_log_name(b):
    # Each start build gets a new host (a pod, or a VM destroyed on stop); both hosts' logs are
    # called coder-agent.log, and the second host's start line was rotated away. Logs of
    # different hosts must not be merged.
    owner = b.user("rec")
    ws = b.workspace("recreated", owner, b.template("k8s", kind="pod"))
    for n, at in enumerate((T0, T0 + 24 * H), start=1):
        bld = b.build(ws, "start", at=at)
        boot = at + 55 * S
        agent = _ready(b, bld, boot, disconnected_at=at + 5 * H)
        log = b.log(f"logs/host-{n}/coder-agent.log")
        if n == 1:
            _boot(log, boot, agent)
        else:
            log.chatter(boot + 40 * S, boot + H, 3)
            log.connecting(boot + H + S)
            log.manifest(boot + H + 2 * S, agent)
        b.build(ws, "stop", at=at + 5 * H)
    return set()


@case
def lookalike_log_from_another_deployment(b):
    # A log whose process served agent rows this export does not have.
    owner = b.user("other")
    ws = b.workspace("here", owner, b.template("gce", kind="vm"))
    bld = b.build(ws, "start", at=T0 + 24 * H)
    _ready(b, bld, T0 + 24 * H + 60 * S)
    elsewhere = ScenarioBuilder(seed=99, start=T0)
    ws2 = elsewhere.workspace("there", elsewhere.user("x"), elsewhere.template("gce2", kind="vm"))
    stray = _ready(elsewhere, elsewhere.build(ws2, "start", at=T0), T0 + 60 * S)
    _boot(elsewhere.log("logs/stray/coder-agent.log"), T0 + 59 * S, stray)
    b.log_files.extend(elsewhere.log_files)
    return set()
