"""The wal2json v2 parser against real plugin output (tests/fixtures/wal2json, see
tools/capture_wal2json.py) and against malformed input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cdc.errors import DecodeError
from cdc.model import Begin, Change, Commit, Lsn
from cdc.source.wal2json import WAL2JSON_OPTIONS, parse_message

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "wal2json"
SCENARIOS = sorted(p.stem for p in FIXTURES.glob("*.jsonl"))


def lines(scenario: str) -> list[str]:
    return (FIXTURES / f"{scenario}.jsonl").read_text().splitlines()


def raw(line: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(line)
    return result


def changes(scenario: str) -> list[tuple[Change, dict[str, Any]]]:
    result = []
    for line in lines(scenario):
        message = parse_message(line)
        if isinstance(message, Change):
            result.append((message, raw(line)))
    return result


def test_options_ask_for_format_version_2_with_everything_the_pipeline_reads() -> None:
    assert WAL2JSON_OPTIONS == {
        "format-version": "2",
        "include-xids": "1",
        "include-timestamp": "1",
        "include-lsn": "1",
        "include-transaction": "1",
        "include-column-positions": "1",
        "include-types": "0",
        "include-type-oids": "0",
        "include-pk": "0",
    }


def test_column_positions_are_kept_and_tell_each_name_s_attnum() -> None:
    change = parse_message(
        '{"action":"I","schema":"s","table":"t","lsn":"0/10","xid":5,"columns":['
        '{"name":"id","type":"integer","typeoid":23,"value":1,"position":1},'
        '{"name":"b","type":"integer","typeoid":23,"value":5,"position":3}]}'
    )
    assert isinstance(change, Change)
    assert change.positions == (1, 3)
    assert (change.attnum("id"), change.attnum("b"), change.attnum("zz")) == (1, 3, None)


def test_messages_without_positions_parse_with_none() -> None:
    change = parse_message(
        '{"action":"I","schema":"s","table":"t","lsn":"0/10","columns":'
        '[{"name":"id","type":"integer","value":1}]}'
    )
    assert isinstance(change, Change) and change.positions is None and change.attnum("id") is None


def test_fixtures_are_present() -> None:
    assert {
        "insert_types",
        "update",
        "update_toast",
        "key_change",
        "delete",
        "truncate",
        "odd_names",
        "multi_statement",
        "replica_full",
        "message",
        "insert_unrepresentable",
    } <= set(SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_fixture_parses_into_framed_transactions(scenario: str) -> None:
    open_begin: Begin | None = None
    for line in lines(scenario):
        message = parse_message(line.encode())  # bytes, as the replication stream delivers them
        assert message == parse_message(line)
        obj = raw(line)
        if isinstance(message, Begin):
            assert open_begin is None
            assert message == Begin(
                xid=obj["xid"],
                commit_lsn=Lsn.parse(obj["lsn"]),
                end_lsn=Lsn.parse(obj["nextlsn"]),
                commit_ts=obj["timestamp"],
            )
            assert message.commit_lsn < message.end_lsn
            open_begin = message
        elif isinstance(message, Commit):
            assert open_begin is not None
            assert (message.xid, message.commit_lsn, message.end_lsn, message.commit_ts) == (
                open_begin.xid,
                open_begin.commit_lsn,
                open_begin.end_lsn,
                open_begin.commit_ts,
            )
            open_begin = None
        elif isinstance(message, Change):
            assert open_begin is not None
            assert message.xid == open_begin.xid
            assert message.lsn == Lsn.parse(obj["lsn"])
            assert message.lsn <= open_begin.commit_lsn
            assert (message.schema, message.table) == (obj["schema"], obj["table"])
        else:
            assert message is None and obj["action"] == "M"
    assert open_begin is None


def test_insert_keeps_every_value_exact() -> None:
    (first, obj), *_ = changes("insert_types")
    assert first == Change(
        op="I",
        schema="public",
        table="cdc_types",
        lsn=Lsn.parse(obj["lsn"]),
        xid=obj["xid"],
        values={
            "id": 1,
            "c_smallint": 32767,
            "c_integer": -2147483648,
            "c_bigint": 9223372036854775807,
            "c_real": "1.5",
            "c_double": "3.141592653589793",
            "c_bool": True,
            "c_text": 'h\u00e9llo "quoted"\nline \\ backslash',
            "c_varchar": "varchar",
            "c_char": "ab   ",
            "c_date": "2024-02-29",
            "c_ts": "2024-02-29 13:14:15.123456",
            "c_ts3": "2024-02-29 13:14:15.123",
            "c_tstz": "2024-02-29 11:14:15.123456+00",
            "c_json": '{"a": [1, 2.50, null], "b": "x"}',
            "c_jsonb": '{"a": [1, 2.50, null], "b": "x"}',
            "c_uuid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "c_bytea": "deadbeef00",
            "c_num": "12345678.91",
            "c_num_big": "1234567890123456789012345678.0123456789",
            "c_num_free": "0.1",
            "c_interval": "P1DT2H3M4S",
            "c_int_arr": "{1,2,NULL}",
            "c_text_arr": '{"a b",c}',
            "c_inet": "192.168.0.1/24",
            "c_enum": "happy",
        },
        identity=None,
    )


def test_numbers_with_exponent_stay_text_and_nan_arrives_as_null() -> None:
    by_id = {c.values["id"]: c.values for c, _ in changes("insert_types") if c.values}
    assert by_id[4]["c_real"] == "3.4e+38"
    assert by_id[4]["c_double"] == "1e+300"
    assert by_id[4]["c_num_free"] == "0.00000015"
    assert by_id[3]["c_real"] is None  # 'NaN'::real: wal2json 2.5 writes null
    assert by_id[3]["c_double"] is None  # 'Infinity'::float8 likewise
    assert by_id[3]["c_num_free"] is None
    assert by_id[3]["c_bigint"] == -9223372036854775808


def test_update_carries_new_row_and_identity() -> None:
    [(insert, _), (update, obj)] = changes("update")
    assert insert.op == "I"
    assert update == Change(
        op="U",
        schema="public",
        table="cdc_t1",
        lsn=Lsn.parse(obj["lsn"]),
        xid=obj["xid"],
        values={"id": 1, "amt": "99.99", "note": None},
        identity={"id": 1},
    )


def test_update_that_leaves_a_toasted_column_alone_omits_it() -> None:
    [(insert, _), (untouched, obj), (rewritten, _)] = changes("update_toast")
    assert insert.values is not None and len(insert.values["big"]) > 2048
    assert untouched == Change(
        op="U",
        schema="public",
        table="cdc_toast",
        lsn=Lsn.parse(obj["lsn"]),
        xid=obj["xid"],
        values={"id": 1, "counter": 1},
        identity={"id": 1},
    )
    assert rewritten.values is not None and rewritten.values["big"].endswith("x")


def test_primary_key_change_has_old_key_in_identity() -> None:
    [(single, _), (_insert, _), (composite, _)] = changes("key_change")
    assert (single.values, single.identity) == ({"id": 2, "amt": "5.50", "note": None}, {"id": 1})
    assert composite.values == {"region": "eu", "num": 2, "payload": "p"}
    assert composite.identity == {"region": "eu", "num": 1}


def test_delete_has_only_identity() -> None:
    [(single, obj), (composite, _)] = changes("delete")
    assert single == Change(
        op="D",
        schema="public",
        table="cdc_t1",
        lsn=Lsn.parse(obj["lsn"]),
        xid=obj["xid"],
        values=None,
        identity={"id": 2},
    )
    assert composite.identity == {"region": "eu", "num": 2}


def test_truncate_is_a_change_without_values_one_per_table() -> None:
    found = [(c.op, c.table, c.values, c.identity) for c, _ in changes("truncate")]
    assert found == [
        ("I", "cdc_t1", {"id": 7, "amt": "1.00", "note": "gone soon"}, None),
        ("T", "cdc_t1", None, None),
        ("T", "cdc_t1", None, None),
        ("T", "cdc_composite", None, None),
    ]


def test_odd_table_and_column_names_arrive_exactly() -> None:
    found = [(c.op, c.schema, c.table, c.values, c.identity) for c, _ in changes("odd_names")]
    assert found == [
        ("I", "public", 'Odd "T"', {"Key Col": 1, "Value": "v1", "select": 7}, None),
        ("U", "public", 'Odd "T"', {"Key Col": 1, "Value": "v2", "select": 7}, {"Key Col": 1}),
        ("D", "public", 'Odd "T"', None, {"Key Col": 1}),
    ]


def test_multi_statement_transaction_keeps_stream_order() -> None:
    found = [(c.op, c.table, c.xid) for c, _ in changes("multi_statement")]
    xid = found[0][2]
    assert found == [
        ("I", "cdc_t1", xid),
        ("I", "cdc_t1", xid),
        ("U", "cdc_t1", xid),
        ("D", "cdc_t1", xid),
        ("I", "cdc_composite", xid),
    ]


def test_replica_identity_full_sends_whole_old_row() -> None:
    [_, (update, _), (delete, _)] = changes("replica_full")
    assert update.identity == {"id": 1, "v": "a"}
    assert delete.identity == {"id": 1, "v": "b"}


def test_logical_messages_are_ignored() -> None:
    parsed = [parse_message(line) for line in lines("message")]
    assert [type(m).__name__ for m in parsed] == ["Begin", "NoneType", "Change", "Commit"]


B = (
    '{"action":"B","xid":733,"timestamp":"2026-11-29 07:02:32.502865+00",'
    '"lsn":"0/15454A8","nextlsn":"0/15454D8"}'
)
INS = (
    '{"action":"I","xid":735,"timestamp":"t","lsn":"0/1545640","schema":"public","table":"t1",'
    '"columns":[{"name":"id","type":"integer","typeoid":23,"value":2}]}'
)


def _edit(text: str, **changes: Any) -> str:
    obj = json.loads(text)
    for key, value in changes.items():
        if value is ...:
            obj.pop(key)
        else:
            obj[key] = value
    return json.dumps(obj)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"not json at all", ["invalid JSON", "unknown action", "not json at all"]),
        (b'{"action":"B", "xid": 1', ["invalid JSON"]),
        (b"\xff\xfe{}", ["encoding"]),
        ("[1, 2]", ["expected a JSON object, got list"]),
        ('{"xid": 1}', ['missing or non-text "action"']),
        (_edit(B, action="X"), ["unknown action 'X'", "action 'X'"]),
        (_edit(B, nextlsn=...), ['missing field "nextlsn"', "action 'B'"]),
        (_edit(B, xid="733"), ['field "xid" must be an integer, got str']),
        (_edit(B, xid=True), ['field "xid" must be an integer, got bool']),
        (_edit(B, lsn="zz/1"), ['field "lsn" is not an LSN']),
        (_edit(B, timestamp=5), ['field "timestamp" must be text']),
        (_edit(INS, columns=...), ['missing field "columns"', "action 'I'", "table public.t1"]),
        (_edit(INS, columns={"id": 2}), ['field "columns" must be a list, got dict']),
        (_edit(INS, columns=[{"name": "id"}]), ["(column 'id') has no \"value\""]),
        (_edit(INS, columns=[5]), ['"columns"[0] must be an object']),
        (_edit(INS, columns=[{"value": 1}]), ['"columns"[0] has no text "name"']),
        (_edit(INS, columns=[{"name": "id", "value": 1}, {"name": "id", "value": 2}]), ["column 'id' twice"]),
        (_edit(INS, table=...), ['missing field "table"']),
        (_edit(INS, lsn=...), ['missing field "lsn"', "table public.t1"]),
        (_edit(INS, action="D"), ['missing field "identity"', "action 'D'"]),
        (INS.replace('"value":2', '"value":NaN'), ["invalid JSON", "NaN"]),
    ],
)
def test_malformed_message_is_a_decode_error_saying_what_is_wrong(
    payload: str | bytes, expected: list[str]
) -> None:
    with pytest.raises(DecodeError) as info:
        parse_message(payload)
    message = str(info.value)
    for fragment in expected:
        assert fragment in message
    assert info.value.__cause__ is not None


def test_decode_error_shows_at_most_200_characters_of_the_payload() -> None:
    payload = '{"action":"Q","pad":"' + "a" * 250 + "SECRET-TAIL" + "b" * 300 + '"}'
    with pytest.raises(DecodeError) as info:
        parse_message(payload)
    assert payload[:200] in str(info.value)
    assert "SECRET-TAIL" not in str(info.value)
