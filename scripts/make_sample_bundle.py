#!/usr/bin/env python3
"""Regenerate sample_data/support-bundle/ from `forensics.synth_bundle`.

Usage:
    python scripts/make_sample_bundle.py            # writes sample_data/support-bundle/
    python scripts/make_sample_bundle.py --out DIR  # somewhere else

What it writes (replacing DIR wholesale):
    DIR/coder-support-1778853731.zip   the coder/coder#18571 incident as `coder support bundle`
                                       lays it out (synth_bundle.incident_bundle)
    DIR/README.md                      what is in it and what the analyzer should say

The output is deterministic: member times are left unset, as Go's archive/zip leaves them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from forensics.synth_bundle import (  # noqa: E402
    INCIDENT_COLLECTED_AT,
    bundle_name,
    incident_bundle,
    incident_scenario,
    write_bundle,
)

README = """\
# sample_data/support-bundle

`{name}` is a synthetic `coder support bundle ml-train` taken on
{when} UTC while `coder ssh ml-train` hung: coder/coder#18571 seen through a support bundle.
Regenerate it with `python scripts/make_sample_bundle.py` (deterministic; built by
`forensics.synth_bundle.incident_bundle()`).

`ml-train` is a GCE VM that is suspended on stop and resumed on start. One agent process has
run since build #1 (its start line is the first line of `agent/logs.txt`); it served row A
(`{a}`) of build #1, was frozen by the
suspend at build #2 (stop), thawed after build #3 (start), got a 401, reconnected and fetched
the manifest of row B (`{b}`), and never
reported a lifecycle state again. In the bundle:

- `agent/agent.json`: row B as the server sees it: `status` connected, `lifecycle_state`
  created, `first_connected_at` set, `started_at`/`ready_at` absent;
- `workspace/workspace.json`: latest build #3 (start, running), its job and resources;
- `agent/manifest.json`: the running process serves row B (`agent_id`);
- `agent/logs.txt`: one process start (build #1's time), a `fetched manifest` for row A, then
  after `disconnected from coderd` / `connecting to coderd` one for row B and no lifecycle
  report after it; `agent/startup_logs.txt` is empty;
- `deployment/workspaces.json` also lists `web`, a healthy pod workspace.

`forensics analyze sample_data/support-bundle/{name}` flags row B with
**lifecycle-stuck-created** and **survived-build-boundary**. A bundle holds only the latest
build, so rules about the previous build's row (previous-agent-not-shut-down,
instance-identity-rebinding) need the database tables as well.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "sample_data" / "support-bundle")
    out: Path = parser.parse_args().out
    if out.exists():
        shutil.rmtree(out)
    scn = incident_scenario()
    name = bundle_name(INCIDENT_COLLECTED_AT)
    write_bundle(incident_bundle(scn), out / name)
    rows = scn.meta["rows"]
    (out / "README.md").write_text(
        README.format(
            name=name,
            when=f"{INCIDENT_COLLECTED_AT:%Y-%m-%d %H:%M:%S}",
            a=rows["A"],
            b=rows["B"],
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
