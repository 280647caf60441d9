"""Decoding cdr.dev/slog field values, and the agent ids inside `fetched manifest` lines.

The agent logs its manifest in one of two renderings (reference §3.3):
- up to v2.9, `manifest={"agent_id":"<uuid>",...}`: the SDK struct as JSON;
- from v2.10, `manifest="agent_id:\"\x12...\" ..."`: the protobuf message as prototext, whose
  `agent_id` is 16 raw bytes escaped by protobuf-go, the whole then quoted by Go's
  `strconv.Quote`. Decoding undoes both layers, in that order.
"""

from __future__ import annotations

import re
import uuid

_JSON_ID = re.compile(r'"(agent_id|workspace_id)":"([0-9a-fA-F-]{36})"')
_PROTO_FIELD = re.compile(r'(?:^|[\s{])(agent_id|workspace_id):"((?:[^"\\]|\\.)*)"')
_GO_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_PROTO_SIMPLE = {"n": 0x0A, "r": 0x0D, "t": 0x09, '"': 0x22, "'": 0x27, "\\": 0x5C}


def go_unquote(s: str) -> str:
    """Undo Go's strconv.Quote: the input includes the surrounding double quotes."""
    if len(s) < 2 or s[0] != '"' or s[-1] != '"':
        raise ValueError("not a Go quoted string")
    body, out, i = s[1:-1], [], 0
    raw = bytearray()  # \x escapes are bytes; flush them as UTF-8 when a rune follows

    def flush() -> None:
        if raw:
            out.append(raw.decode("utf-8", errors="surrogateescape"))
            raw.clear()

    while i < len(body):
        c = body[i]
        if c != "\\":
            flush()
            out.append(c)
            i += 1
            continue
        e = body[i + 1]
        if e == "x":
            raw.append(int(body[i + 2 : i + 4], 16))
            i += 4
            continue
        flush()
        if e in _GO_ESCAPES:
            out.append(_GO_ESCAPES[e])
            i += 2
        elif e in ('"', "\\", "'"):
            out.append(e)
            i += 2
        elif e == "u":
            out.append(chr(int(body[i + 2 : i + 6], 16)))
            i += 6
        elif e == "U":
            out.append(chr(int(body[i + 2 : i + 10], 16)))
            i += 10
        elif e in "01234567":
            raw.append(int(body[i + 1 : i + 4], 8))
            i += 4
        else:
            raise ValueError(f"bad escape \\{e}")
    flush()
    return "".join(out)


def proto_bytes(s: str) -> bytes:
    """Undo protobuf-go's prototext escaping of a bytes field (the text between the quotes)."""
    out, i = bytearray(), 0
    while i < len(s):
        c = s[i]
        if c != "\\":
            out += c.encode("utf-8", errors="surrogateescape")
            i += 1
            continue
        e = s[i + 1]
        if e == "x":
            j = i + 2
            while j < len(s) and j < i + 4 and s[j] in "0123456789abcdefABCDEF":
                j += 1
            out.append(int(s[i + 2 : j], 16))
            i = j
        elif e in _PROTO_SIMPLE:
            out.append(_PROTO_SIMPLE[e])
            i += 2
        elif e == "u":
            out += chr(int(s[i + 2 : i + 6], 16)).encode("utf-8")
            i += 6
        elif e == "U":
            out += chr(int(s[i + 2 : i + 10], 16)).encode("utf-8")
            i += 10
        elif e in "01234567":
            j = i + 1
            while j < len(s) and j < i + 4 and s[j] in "01234567":
                j += 1
            out.append(int(s[i + 1 : j], 8))
            i = j
        else:
            raise ValueError(f"bad prototext escape \\{e}")
    return bytes(out)


def field_value(fields: str, key: str) -> str | None:
    """The raw value of `key=` in a slog fields string (`  k=v  k2="quoted v"`), or None."""
    m = re.search(rf'(?:^|  ){re.escape(key)}=("(?:[^"\\]|\\.)*"|\{{.*\}}(?=  \w+=|$)|\S+)', fields)
    return m.group(1) if m else None


def manifest_ids(fields: str) -> tuple[str | None, str | None, str]:
    """(agent_id, workspace_id, rendering) of a `fetched manifest` line's fields.

    rendering is "json", "prototext" or "unknown"; ids are None when they cannot be decoded.
    """
    value = field_value(fields, "manifest")
    if value is None:
        return None, None, "unknown"
    if value.startswith("{"):
        found = {k: v.lower() for k, v in _JSON_ID.findall(value)}
        return found.get("agent_id"), found.get("workspace_id"), "json"
    if value.startswith('"'):
        try:
            text = go_unquote(value)
        except (ValueError, IndexError):
            return None, None, "unknown"
        ids: dict[str, str | None] = {}
        for key, escaped in _PROTO_FIELD.findall(text):
            if key in ids:
                continue  # nested messages (apps, scripts) carry their own ids later on
            try:
                raw = proto_bytes(escaped)
            except (ValueError, IndexError):
                raw = b""
            ids[key] = str(uuid.UUID(bytes=raw)) if len(raw) == 16 else None
        return ids.get("agent_id"), ids.get("workspace_id"), "prototext"
    return None, None, "unknown"
