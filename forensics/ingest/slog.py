"""Decoding cdr.dev/slog field values, and the agent ids inside `fetched manifest` lines.

The agent logs its manifest in one of two renderings (reference §3.3):
- up to v2.9, `manifest={"agent_id":"<uuid>",...}`: the SDK struct as JSON;
- from v2.10, `manifest="agent_id:\"\x12...\" ..."`: the protobuf message as prototext, whose
  `agent_id` is 16 raw bytes escaped by protobuf-go, the whole then quoted by Go's
  `strconv.Quote`. Decoding undoes both layers, in that order.
"""

from __future__ import annotations

import functools
import re
import uuid

_JSON_ID = re.compile(r'"(agent_id|workspace_id)":"([0-9a-fA-F-]{36})"')
_PROTO_FIELD = re.compile(r'(?:^|[\s{])(agent_id|workspace_id):"((?:[^"\\]|\\.)*)"')
_GO_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_PROTO_SIMPLE = {"n": 0x0A, "r": 0x0D, "t": 0x09, '"': 0x22, "'": 0x27, "\\": 0x5C}


_GO_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3}|.)", re.S)


def _go_escape(m: re.Match[str]) -> str:
    e = m.group(1)
    head = e[0]
    if head == "x" or head in "01234567":
        byte = int(e[1:], 16) if head == "x" else int(e, 8)
        # A byte: kept as a surrogate escape, so runs of them can be decoded as UTF-8 below.
        return chr(byte) if byte < 0x80 else chr(0xDC00 + byte)
    if head in "uU":
        return chr(int(e[1:], 16))
    if head in _GO_ESCAPES:
        return _GO_ESCAPES[head]
    if head in ("\\", '"', "'"):
        return head
    raise ValueError(f"bad escape \\{head}")


def go_unquote(s: str) -> str:
    """Undo Go's strconv.Quote: the input includes the surrounding double quotes.

    `\\xHH` escapes are bytes: consecutive ones that form UTF-8 become their character, others
    stay as surrogate escapes (as `bytes.decode(errors="surrogateescape")` gives them).
    """
    if len(s) < 2 or s[0] != '"' or s[-1] != '"':
        raise ValueError("not a Go quoted string")
    body = s[1:-1]
    if body.endswith("\\") and (len(body) - len(body.rstrip("\\"))) % 2:
        raise ValueError("dangling escape")
    text = _GO_ESCAPE.sub(_go_escape, body)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")


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
    start = fields.find("manifest=")
    if fields.startswith('manifest="') or (start > 0 and fields[start - 2 : start] == "  "):
        # Prototext: the ids are top-level fields that come before the environment, scripts
        # and apps, which can be kilobytes long, so only the part before them is decoded. A
        # space is never part of an escape in Go's quoting: cutting before one is safe.
        cut = fields.find(" environment_variables:", start)
        if fields[start + 9 : start + 10] == '"' and cut > 0:
            fields = f'manifest={fields[start + 9 : cut]}"'
    return _manifest_ids(fields)


@functools.lru_cache(maxsize=4096)
def _manifest_ids(fields: str) -> tuple[str | None, str | None, str]:
    # A process fetches the same manifest on every reconnect: decode each text once.
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
