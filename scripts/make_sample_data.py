#!/usr/bin/env python3
"""Regenerate sample_data/ from `forensics.synth.sample_scenario()`.

Usage:
    python scripts/make_sample_data.py            # writes sample_data/ at the repo root
    python scripts/make_sample_data.py --out DIR  # somewhere else

What it writes (replacing DIR/incident/ and DIR/README.md wholesale):
    DIR/README.md                      what each workspace is and what should be flagged
    DIR/incident/EXPORTED_WITH.txt     the psql session that produces db/ from a real database
    DIR/incident/db/<table>.csv        nine tables, as psql's \\copy ... (FORMAT csv, HEADER)
                                       writes them with TimeZone America/New_York
    DIR/incident/logs/<host>/coder-agent.log (+ one rotated .log.gz)   agent logs

The output is deterministic: the same code writes byte-identical files (seeded ids,
gzip mtime 0), so a `git diff` after a run shows only intended changes.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from forensics.synth import export_commands, sample_scenario, write_dump  # noqa: E402

TZ = "America/New_York"

README = """\
# sample_data

A small, synthetic Coder deployment for trying the analyzer and for tests. Regenerate it with
`python scripts/make_sample_data.py` (deterministic). It is built by
`forensics.synth.sample_scenario()`, which tests can call to get every id
(`scn.agent_id("ml-train", 3)`) and every planted secret (`scn.secret_values()`).

```
incident/EXPORTED_WITH.txt   the psql session that produced db/ (TimeZone America/New_York)
incident/db/*.csv            users, templates, template_versions, provisioner_jobs, workspaces,
                             workspace_builds, workspace_resources, workspace_agents,
                             workspace_agent_logs, as `\\copy ... (FORMAT csv, HEADER)` writes them
incident/logs/<host>/        coder-agent.log of each host we have (cdr.dev/slog human format, UTC)
```

Times in the CSVs print as `-04` (EDT; `-05` before 8 March). Go zero-time sentinels
(`deadline`, `max_deadline`, `last_used_at` = `0001-01-01 00:00:00+00`) print as
`0001-12-31 19:03:58-04:56:02 BC`: that is what PostgreSQL writes in an America/New_York
session (New York's local mean time before 1883; a fixed `-04` session would print
`0001-12-31 20:00:00-04 BC`).
`users.last_seen_at` is `timestamp without time zone` and has no offset at all. Every secret
column holds a fake secret (agent tokens, env vars in `environment_variables` and in the
`fetched manifest` log lines, metadata, hashed passwords, Terraform state); none may show in a
report.

Deployment: https://coder.example.com, agents v2.31.11 unless noted. Templates `gce-vm`
(long-lived GCE VMs, `google-instance-identity` auth, the VM is *suspended* on stop) and
`k8s-pod` (a pod per start, token auth). Each template's import job also owns agent rows that
never connect, as in real databases.

Workspaces (owner, template, builds), and what the analyzer should say:

1. `ml-train` (rwyrick, gce-vm; #1 start, #2 stop, #3 start): **the incident, flagged.**
   One agent process since build #1 (`logs/ml-train-vm/`). Row A (#1) went created, starting,
   ready. At the stop the VM was suspended and the process frozen: A stays `ready`, with
   `disconnected_at` set. #2 (stop) has an agent row that never connects. After #3 the same
   process thawed, got a 401 once, reconnected and fetched the manifest of row B (#3), and
   never reported a lifecycle state again: B is `created` with `first_connected_at`,
   `version`, `api_version` and `expanded_directory` set, `started_at`/`ready_at` NULL and no
   startup logs. All three rows share `auth_instance_id`. The log was rotated at the resume:
   `coder-agent-2026-05-13T23-10-00.000.log.gz` holds the older lines (with the process start),
   `coder-agent.log` the rest. Expected: build #3's agent,
   `{b}`,
   flagged by **survived-build-boundary** and **lifecycle-stuck-created**.
2. `web` (alice, k8s-pod; #1 start, #2 stop, #3 start): a new pod and a new agent process per
   start, each started after its build's job (`logs/web-pod-1/`: agent v2.9.4, manifest as
   JSON; `logs/web-pod-2/`: v2.31.11, prototext). The stop build has no agent row. Both rows
   `ready`; the first pod was killed at the stop, so its log just ends. Not flagged.
3. `api` (alice, gce-vm; #1 start): one process (agent v2.30.4) disconnects and reconnects
   twice to the *same* row: three `fetched manifest` lines with one agent id. Row `ready`.
   Not flagged.
4. `prebuild-claimed` (jdoe, k8s-pod; #1 start by the prebuilds user, #2 start = the claim by
   jdoe): one process, reinitialized by the claim (`agent received instruction to
   reinitialize` + `agent reinitializing`), then a second manifest (row Q) and a fresh
   starting/ready. Rows P and Q are both `ready` and share `auth_token` (a claim reuses it).
   Not flagged.
5. `broken-boot` (mchen, gce-vm; #1 start): the VM never ran the agent. Row `created`,
   `first_connected_at` NULL, no logs. Not flagged (never connected is another problem).
6. `old-proj` (mchen, k8s-pod; #1 start, #2 stop, #3 delete): deleted workspace
   (`workspaces.deleted = t`, agent row `deleted = t`); the agent shut down cleanly at the
   stop (ready, then `off`; `logs/old-proj-pod/`). Not flagged.
7. `data-pipe` (jdoe, k8s-pod; #1 start failed, #2 start): build #1's job failed (its error
   has a newline and commas), so it has no resources and no agents; #2 is healthy. No log
   file was collected. Not flagged.

Crafted ids: row B of ml-train (`{b}`) and web #3's agent
(`{w}`) have 16 bytes that hold quotes, backslashes, control
characters, invalid and multi-byte UTF-8, so decoding the prototext `agent_id` is exercised
for real. Random ids elsewhere add more such bytes.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "sample_data")
    args = parser.parse_args()
    out: Path = args.out
    incident = out / "incident"
    if incident.exists():
        shutil.rmtree(incident)
    scn = sample_scenario()
    write_dump(scn, incident, fmt="csv", tz_offset=TZ)
    header = (
        "-- psql session that exported db/ (run in incident/db/):\n"
        '--   psql "$CODER_PG_CONNECTION_URL" -f ../EXPORTED_WITH.txt\n'
    )
    (incident / "EXPORTED_WITH.txt").write_text(header + export_commands("csv", TZ))
    b, w = scn.agent_id("ml-train", 3), scn.agent_id("web", 3)
    (out / "README.md").write_text(README.replace("{b}", b).replace("{w}", w))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
