"""Draw one workspace's timeline as inline SVG: builds as bands, agent rows as bars coloured by
lifecycle, agent processes as lines with marks for what they logged.

Colours come from the Okabe-Ito palette (distinguishable with the common colour-vision
deficiencies), and nothing is told by colour alone: bars carry their state as text, and marks
differ in shape. Every string from the inputs goes through `escape`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from markupsafe import Markup, escape

WIDTH, LABEL, RIGHT = 1000, 170, 12
BUILD_H, LANE_H, GAP = 34, 26, 6
STATE_COLOURS = {
    "created": "#D55E00",
    "starting": "#E69F00",
    "ready": "#009E73",
    "start_timeout": "#CC79A7",
    "start_error": "#CC79A7",
    "shutting_down": "#0072B2",
    "shutdown_timeout": "#0072B2",
    "shutdown_error": "#0072B2",
    "off": "#7f7f7f",
}
# Marks for process events: shape and what the legend calls them.
MARKS = {
    "process start": ("triangle", "process start"),
    "reinitialization": ("square", "reinitialized"),
    "manifest": ("diamond", "manifest (agent id)"),
    "lifecycle": ("circle", "lifecycle report"),
    "connection error": ("cross", "connection error"),
    "disconnect": ("bar", "disconnected"),
    "shutdown": ("square", "shutdown"),
}


def draw(timeline: dict[str, Any], as_of: str | None) -> Markup:
    """The timeline picture of one workspace (see engine._timeline for the input)."""
    builds, agents, processes = timeline["builds"], timeline["agents"], timeline["processes"]
    flagged = set(timeline["flagged"])
    stamps = [b["created_at"] for b in builds] + [p["began_at"] for p in processes]
    stamps += [a["created_at"] for a in agents]
    ends = [as_of] + [p["last_seen_at"] for p in processes]
    ends += [a[k] for a in agents for k in ("last_connected_at", "disconnected_at", "ready_at")]
    t0 = min(_t(s) for s in stamps if s)
    t1 = max(_t(s) for s in stamps + ends if s)
    span = max((t1 - t0).total_seconds(), 1.0)
    t0_pad = t0.timestamp() - span * 0.02
    span *= 1.04

    def x(stamp: str | None) -> float:
        if not stamp:
            return WIDTH - RIGHT
        return LABEL + (_t(stamp).timestamp() - t0_pad) / span * (WIDTH - LABEL - RIGHT)

    lanes = len(agents) + len(processes)
    height = BUILD_H + GAP + lanes * (LANE_H + GAP) + 64
    out: list[str] = [
        f'<svg class="timeline" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif" font-size="11">',
        "<title>Timeline: builds, agent rows and agent processes</title>",
    ]
    # Builds: a band from each build's creation to the next one's.
    for i, b in enumerate(builds):
        left = x(b["created_at"])
        right = x(builds[i + 1]["created_at"]) if i + 1 < len(builds) else WIDTH - RIGHT
        fill = "#f2f4f7" if i % 2 == 0 else "#ffffff"
        out.append(
            f'<rect x="{left:.1f}" y="0" width="{max(right - left, 1):.1f}" height="{height - 52}" '
            f'fill="{fill}"/>'
        )
        out.append(
            f'<line x1="{left:.1f}" y1="0" x2="{left:.1f}" y2="{height - 52}" stroke="#57606a" '
            f'stroke-dasharray="3 3"/>'
        )
        label = f"#{b['build_number']} {b['transition']}"
        out.append(
            f'<text x="{left + 3:.1f}" y="13" font-weight="700">{escape(label)}</text>'
            f'<text x="{left + 3:.1f}" y="26" fill="#57606a">{escape(_short(b["created_at"]))}'
            f"</text>"
        )
    y = BUILD_H + GAP
    rows_y: dict[str, float] = {}
    for a in agents:
        rows_y[a["agent_id"]] = y
        out += _agent_lane(a, y, x, a["agent_id"] in flagged)
        y += LANE_H + GAP
    for p in processes:
        out += _process_lane(p, y, x, agents)
        y += LANE_H + GAP
    out += _legend(height - 44)
    out.append("</svg>")
    return Markup("".join(out))


def _agent_lane(a: dict[str, Any], y: float, x, flagged: bool) -> list[str]:
    state = a["lifecycle_state"] or "created"
    label = f"#{a['build_number']} {a['agent_name']} {a['agent_id'][:8]}"
    out = [f'<text x="4" y="{y + 16:.1f}">{escape(label)}</text>']
    end = a["disconnected_at"] or a["last_connected_at"]
    mid = y + LANE_H / 2
    # Waiting for a connection: a thin dashed line from the row's creation.
    out.append(
        f'<line x1="{x(a["created_at"]):.1f}" y1="{mid:.1f}" '
        f'x2="{x(a["first_connected_at"] or end):.1f}" y2="{mid:.1f}" stroke="#57606a" '
        f'stroke-dasharray="2 3"/>'
    )
    if a["first_connected_at"]:
        segments = _segments(a, state)
        for start, stop, seg_state in segments:
            left, right = x(start), x(stop)
            colour = STATE_COLOURS.get(seg_state, "#7f7f7f")
            out.append(
                f'<rect x="{left:.1f}" y="{y + 4:.1f}" width="{max(right - left, 3):.1f}" '
                f'height="{LANE_H - 8}" fill="{colour}" fill-opacity="0.85"/>'
            )
        last_left = x(segments[-1][0])
        out.append(
            f'<text x="{last_left + 4:.1f}" y="{y + 17:.1f}" font-weight="700" fill="#1b1f24">'
            f"{escape(state)}</text>"
        )
    else:
        out.append(
            f'<text x="{x(a["created_at"]) + 4:.1f}" y="{y + 12:.1f}" fill="#57606a">'
            f"never connected ({escape(state)})</text>"
        )
    if flagged:
        right = x(end) if end else WIDTH - RIGHT
        left = x(a["first_connected_at"] or a["created_at"])
        out.append(
            f'<rect class="flagged" x="{left - 3:.1f}" y="{y + 1:.1f}" '
            f'width="{max(right - left, 3) + 6:.1f}" height="{LANE_H - 2}" fill="none" '
            f'stroke="#a40e26" stroke-width="2.5"/>'
        )
        out.append(f'<text x="{LABEL - 14:.1f}" y="{y + 17:.1f}" fill="#a40e26">⚑</text>')
    return out


def _segments(a: dict[str, Any], state: str) -> list[tuple[str, str | None, str]]:
    """The row's known lifecycle: created until started_at, starting until ready_at, then
    its current state until the connection ended (or the export)."""
    end = a["disconnected_at"] or a["last_connected_at"]
    start = a["first_connected_at"]
    if not a["started_at"]:
        return [(start, end, state)]
    segs = [(start, a["started_at"], "created")]
    if a["ready_at"]:
        segs += [(a["started_at"], a["ready_at"], "starting"), (a["ready_at"], end, state)]
    else:
        segs += [(a["started_at"], end, state)]
    return segs


def _process_lane(p: dict[str, Any], y: float, x, agents: list[dict[str, Any]]) -> list[str]:
    parts = p["stream"].split("/")
    where = parts[-2] if len(parts) > 1 else parts[-1]
    label = f"process {p['process_no']} · {where}"
    label = label if len(label) <= 28 else label[:27] + "…"
    mid = y + LANE_H / 2
    out = [
        f'<text x="4" y="{y + 16:.1f}">{escape(label)}</text>',
        f'<line x1="{x(p["began_at"]):.1f}" y1="{mid:.1f}" x2="{x(p["last_seen_at"]):.1f}" '
        f'y2="{mid:.1f}" stroke="#1b1f24" stroke-width="3"/>',
    ]
    if not p["start_seen"]:
        out.append(
            f'<text x="{x(p["began_at"]) - 4:.1f}" y="{mid + 4:.1f}" text-anchor="end" '
            f'fill="#57606a">…</text>'
        )
    builds_of = {a["agent_id"]: a["build_number"] for a in agents}
    for e in (p["events"] or [])[:400]:
        shape = MARKS.get(e["kind"], (None, ""))[0]
        if shape is None:
            continue
        out.append(_mark(shape, x(e["ts"]), mid, e))
        if e["kind"] == "manifest" and e["agent_id"]:
            target = builds_of.get(e["agent_id"])
            text = f"#{target}" if target is not None else e["agent_id"][:8]
            out.append(
                f'<text x="{x(e["ts"]) + 5:.1f}" y="{y + 2:.1f}" font-size="10" '
                f'font-weight="700">→{escape(text)}</text>'
            )
    return out


def _mark(shape: str, cx: float, cy: float, event: dict[str, Any] | None) -> str:
    title = ""
    if event is not None:
        where = f"{event['source']}:{event['line']}"
        title = (
            f"<title>{escape(event['kind'])} {escape(_short(event['ts']))} {escape(where)}</title>"
        )

    def path(d: str, style: str) -> str:
        return f'<path d="{d}" {style}/>'

    if shape == "triangle":
        body = path(
            f"M{cx - 6:.1f},{cy + 6:.1f} L{cx:.1f},{cy - 7:.1f} L{cx + 6:.1f},{cy + 6:.1f} Z",
            'fill="#1b1f24"',
        )
    elif shape == "diamond":
        body = path(
            f"M{cx:.1f},{cy - 7:.1f} L{cx + 6:.1f},{cy:.1f} L{cx:.1f},{cy + 7:.1f} "
            f"L{cx - 6:.1f},{cy:.1f} Z",
            'fill="#56B4E9" stroke="#0072B2"',
        )
    elif shape == "circle":
        body = (
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" fill="#fff" stroke="#009E73" '
            f'stroke-width="2"/>'
        )
    elif shape == "cross":
        body = path(
            f"M{cx - 5:.1f},{cy - 5:.1f} L{cx + 5:.1f},{cy + 5:.1f} "
            f"M{cx - 5:.1f},{cy + 5:.1f} L{cx + 5:.1f},{cy - 5:.1f}",
            'stroke="#D55E00" stroke-width="2.5"',
        )
    elif shape == "bar":
        body = path(
            f"M{cx:.1f},{cy - 8:.1f} L{cx:.1f},{cy + 8:.1f}", 'stroke="#D55E00" stroke-width="2.5"'
        )
    else:
        body = f'<rect x="{cx - 5:.1f}" y="{cy - 5:.1f}" width="10" height="10" fill="#CC79A7"/>'
    return f"<g>{title}{body}</g>"


def _legend(y: float) -> list[str]:
    out = [f'<g transform="translate(4,{y:.1f})">']
    x = 0.0
    for state in ("created", "starting", "ready", "shutting_down", "off"):
        out.append(
            f'<rect x="{x:.1f}" y="0" width="12" height="12" fill="{STATE_COLOURS[state]}"/>'
            f'<text x="{x + 16:.1f}" y="10">{state}</text>'
        )
        x += 22 + 7 * len(state)
    out.append(
        f'<rect x="{x:.1f}" y="0" width="18" height="12" fill="none" stroke="#a40e26" '
        f'stroke-width="2.5"/>'
        f'<text x="{x + 22:.1f}" y="10">finding</text>'
    )
    x = 0.0
    seen = set()
    for _kind, (shape, label) in MARKS.items():
        if label in seen:
            continue
        seen.add(label)
        out.append(_mark(shape, x + 6, 27, None))
        out.append(f'<text x="{x + 16:.1f}" y="31">{escape(label)}</text>')
        x += 28 + 6.2 * len(label)
    out.append("</g>")
    return out


def _t(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _short(stamp: str | None) -> str:
    return stamp[5:16].replace("T", " ") if stamp else ""
