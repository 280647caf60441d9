"""The same incident logged in each slog rendering gives the same findings.

The agent log of a synthetic incident (a v2.9 agent, JSON manifests) is rewritten from slog's
current human format into its pre-2023 human format and into the JSON sink; the analysis of
each must agree finding for finding, fingerprints included.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from forensics.engine import analyze
from forensics.ingest.slog import go_unquote
from forensics.synth import ScenarioBuilder, write_dump
from tests.cases import CASES, T0

ENTRY = re.compile(r"^(\S+ \S+) \[(debu|info|warn|erro|crit|fata)\]  (.*)$")
LEVELS = {"debu": "DEBUG", "info": "INFO", "warn": "WARN", "erro": "ERROR", "crit": "CRITICAL"}


def _value(text: str, i: int) -> tuple[object, int]:
    """One slog field value starting at text[i]: Go-quoted, JSON, or a bare token."""
    if text[i] == '"':
        j = i + 1
        while text[j] != '"':
            j += 2 if text[j] == "\\" else 1
        return go_unquote(text[i : j + 1]), j + 1
    if text[i] in "{[":
        try:
            return json.JSONDecoder().raw_decode(text, i)
        except ValueError:
            pass  # a bare token that starts with a bracket, e.g. an IPv6 address
    end = text.find("  ", i)
    end = len(text) if end < 0 else end
    token = text[i:end]
    return {"true": True, "false": False}.get(token, int(token) if token.isdigit() else token), end


def _fields(text: str) -> dict[str, object]:
    out, i = {}, 0
    while i < len(text):
        key_end = text.index("=", i)
        out[text[i:key_end]], i = _value(text, key_end + 1)
        i += 2  # the two spaces between fields
    return out


def entries(log: str):
    """(ts, level, logger, message, fields) per entry of a format B log, blocks joined."""
    out: list = []
    for line in log.splitlines():
        m = ENTRY.match(line)
        if not m:  # a trailing block line: "    key= first" then deeper-indented lines
            ts, level, logger, message, fields = out[-1]
            if line.startswith("    ") and "= " in line and not line[4].isspace():
                key, _, first = line[4:].partition("= ")
                fields[key] = first
                out[-1][4]["__block__"] = key
            else:
                key = fields["__block__"]
                fields[key] += "\n" + line[4 + len(key) + 2 :]
            continue
        ts, level, rest = m.groups()
        rest = rest.removesuffix(" ...")
        logger = None
        if lm := re.match(r"^([A-Za-z0-9_.\-]+): ", rest):
            logger, rest = lm.group(1), rest[lm.end() :]
        message, _, fields = rest.partition("  ")
        out.append((ts, level, logger, message, _fields(fields) if fields else {}))
    for ts, level, logger, message, fields in out:
        block = fields.pop("__block__", None)
        yield ts, level, logger, message, fields, block


def as_format_a(log: str) -> str:
    lines = []
    for ts, level, logger, message, fields, block in entries(log):
        head = f"{ts} [{LEVELS[level]}]\t" + (f"({logger})\t" if logger else "")
        head += "<./agent/agent.go:1>\t(*agent).run\t" + message
        plain = {k: v for k, v in fields.items() if k != block}
        if plain:
            head += "\t" + json.dumps(plain, separators=(", ", ": "))
        if block:
            first, *rest = str(fields[block]).split("\n")
            lines += [head + " ...", f'"{block}": {first}']
            lines += [" " * (len(block) + 4) + r for r in rest]
        else:
            lines.append(head)
    return "\n".join(lines) + "\n"


def as_json_sink(log: str) -> str:
    lines = []
    for ts, level, logger, message, fields, _ in entries(log):
        obj = {
            "ts": ts.replace(" ", "T") + "Z",
            "level": LEVELS[level],
            "msg": message,
            "caller": "/src/agent/agent.go:1",
            "func": "github.com/coder/coder/v2/agent.(*agent).run",
            "logger_names": logger.split(".") if logger else [],
            "fields": fields,
        }
        lines.append(json.dumps(obj))
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def incident(tmp_path_factory):
    b = ScenarioBuilder(seed=7, start=T0 - timedelta(days=30))
    CASES["incident_old_agent_json_manifest"](b)
    # A stale-token rejection too, for a multi-line 403 error block.
    CASES["incident_stale_token_rejected"](b)
    dump = tmp_path_factory.mktemp("renderings") / "dump"
    write_dump(b.build_scenario(), dump)
    result = analyze([dump])
    assert result.findings
    return dump, result


def _findings(result):
    return sorted(
        (f.rule, f.workspace_name, f.build_number, f.fingerprint) for f in result.findings
    )


@pytest.mark.parametrize("convert", [as_format_a, as_json_sink])
def test_same_findings_in_every_rendering(incident, convert):
    dump, baseline = incident
    logs = sorted((dump / "logs").rglob("coder-agent*.log"))
    assert logs
    for path in logs:
        original = path.read_text()
        path.write_text(convert(original))
        try:
            result = analyze([dump])
        finally:
            path.write_text(original)
        assert _findings(result) == _findings(baseline), path
        load = next(
            lg for lg in result.logs if lg.path.endswith(path.name) and path.parent.name in lg.path
        )
        assert load.unparsed == 0 and len(load.formats) == 1
        assert load.formats != {"slog human": load.entries}
