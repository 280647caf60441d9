"""Decoding the agent id out of `fetched manifest` lines, both renderings."""

import uuid

import pytest

from forensics.ingest.slog import field_value, go_unquote, manifest_ids, proto_bytes

# 16 bytes that exercise every prototext escape: NUL, printable ASCII, quote, backslash,
# newline, a valid 2-byte UTF-8 rune (é, kept literal), a C1 rune (U+0080, written \u0080),
# an invalid byte, DEL, tab, CR, space, tilde and a low control byte.
AWKWARD = bytes(
    [0x00, 0x41, 0x22, 0x5C, 0x0A, 0xC3, 0xA9, 0xC2, 0x80, 0xFF, 0x7F, 0x09, 0x0D, 0x20, 0x7E, 0x10]
)
# What protobuf-go's prototext writes for those bytes, worked out by hand from its encoder.
AWKWARD_PROTOTEXT = '\\x00A\\"\\\\\\né\\u0080\\xff\\x7f\\t\\r ~\\x10'
# The same after Go's strconv.Quote of the whole manifest, as it appears in the log line.
AWKWARD_LOGGED = (
    '"agent_id:\\"\\\\x00A\\\\\\"\\\\\\\\\\\\né\\\\u0080\\\\xff\\\\x7f\\\\t\\\\r ~\\\\x10\\"'
    '  agent_name:\\"main\\" workspace_id:\\"\\\\x12\\\\x34Vx\\\\x9a\\\\xbc\\\\xde\\\\xf0\\\\x12'
    '\\\\x34Vx\\\\x9a\\\\xbc\\\\xde\\\\xf0\\" environment_variables:{key:\\"GIT_TOKEN\\" '
    'value:\\"ghp_secret\\"}"'
)


def test_proto_bytes_undoes_prototext_escaping():
    assert proto_bytes(AWKWARD_PROTOTEXT) == AWKWARD


def test_go_unquote_then_proto_bytes_round_trip():
    text = go_unquote(AWKWARD_LOGGED)
    assert text.startswith('agent_id:"' + AWKWARD_PROTOTEXT + '"')
    assert 'value:"ghp_secret"' in text


def test_manifest_ids_from_prototext():
    agent_id, workspace_id, rendering = manifest_ids("manifest=" + AWKWARD_LOGGED)
    assert rendering == "prototext"
    assert agent_id == str(uuid.UUID(bytes=AWKWARD))
    assert workspace_id == "12345678-9abc-def0-1234-56789abcdef0"


def test_manifest_ids_from_json():
    fields = (
        'manifest={"parent_id":null,"agent_id":"5E1F0C2A-0000-4000-8000-000000000001",'
        '"agent_name":"main","workspace_id":"7b2c0000-0000-4000-8000-000000000002",'
        '"environment_variables":{"A":"b c"},"apps":[{"id":"x"}]}'
    )
    assert manifest_ids(fields) == (
        "5e1f0c2a-0000-4000-8000-000000000001",
        "7b2c0000-0000-4000-8000-000000000002",
        "json",
    )


@pytest.mark.parametrize(
    "fields",
    ["", "manifest=garbage", 'manifest="agent_id:\\"\\\\x01\\\\x02\\""', 'manifest="unterminated'],
)
def test_undecodable_manifests_give_no_id(fields):
    agent_id, _, _ = manifest_ids(fields)
    assert agent_id is None


def test_field_value_handles_quoted_and_json_values():
    fields = 'url=https://c.example.com  auth="google instance"  current={"state":"ready"}  n=3'
    assert field_value(fields, "url") == "https://c.example.com"
    assert field_value(fields, "auth") == '"google instance"'
    assert field_value(fields, "current") == '{"state":"ready"}'
    assert field_value(fields, "n") == "3"
    assert field_value(fields, "missing") is None
