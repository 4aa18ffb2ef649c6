"""The stream's parser (``parse_row``, msgspec) against the plain one (``parse_message``): the same
values for every real wal2json fixture, the same errors for malformed input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cdc.errors import DecodeError
from cdc.model import Begin, Change, Commit, Lsn
from cdc.source.wal2json import Field, RowChange, RowDelete, RowInsert, parse_message, parse_row

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "wal2json"
LINES = [
    pytest.param(line, id=f"{path.stem}:{n}")
    for path in sorted(FIXTURES.glob("*.jsonl"))
    for n, line in enumerate(path.read_text().splitlines())
]


@pytest.mark.parametrize("line", LINES)
def test_every_fixture_message_gives_what_the_plain_parser_gives(line: str) -> None:
    plain = parse_message(line)
    fast = parse_row(line.encode())
    if isinstance(plain, Change):
        assert isinstance(fast, RowChange)
        assert fast.to_change() == plain
        assert RowChange.from_change(plain) == fast
    else:
        assert fast == plain


INSERT = (
    '{"action":"I","xid":7,"timestamp":"2026-11-29 07:02:32.5+00","lsn":"0/1545640","schema":"s",'
    '"table":"t","columns":[{"name":"id","value":2,"position":1},{"name":"f","value":%s,"position":3}]}'
)


@pytest.mark.parametrize(
    ("number", "value"),
    [
        ("1.50", "1.50"),
        ("-0", "-0"),  # a float column's negative zero keeps its sign
        ("0", 0),
        ("-0.0", "-0.0"),
        ("1e+300", "1e+300"),
        ("123456789012345678901234567890", 123456789012345678901234567890),
        ("-9223372036854775808", -9223372036854775808),
    ],
)
def test_numbers_keep_their_exact_text_or_integer(number: str, value: Any) -> None:
    change = parse_row((INSERT % number).encode())
    assert change == RowInsert(
        schema="s",
        table="t",
        lsn="0/1545640",
        xid=7,
        columns=[Field("id", 2, 1), Field("f", value, 3)],
    )
    assert type(change.columns[1].value) is type(value)  # type: ignore[union-attr]


def test_negative_zero_without_positions_keeps_its_sign_too() -> None:
    payload = b'{"action":"I","lsn":"0/10","schema":"s","table":"t","columns":[{"name":"f","value":-0}]}'
    change = parse_row(payload)
    assert isinstance(change, RowChange) and change.columns == [Field("f", "-0")]


def test_row_change_tells_op_ident_and_attnum() -> None:
    change = parse_row((INSERT % "5").encode())
    assert isinstance(change, RowInsert)
    assert (change.op, change.ident, change.attnum("f"), change.attnum("id"), change.attnum("x")) == (
        "I",
        ("s", "t"),
        3,
        1,
        None,
    )
    moved = change.moved_to("s", "root")
    assert (moved.ident, moved.columns, moved.lsn) == (("s", "root"), change.columns, "0/1545640")


def test_begin_commit_and_logical_messages() -> None:
    begin = b'{"action":"B","xid":733,"timestamp":"2026-11-29 07:02:32.502865+00","lsn":"0/15454A8","nextlsn":"0/15454D8"}'
    assert parse_row(begin) == Begin(733, Lsn(0x15454A8), Lsn(0x15454D8), "2026-11-29 07:02:32.502865+00")
    assert parse_row(begin.replace(b'"B"', b'"C"')) == Commit(
        733, Lsn(0x15454A8), Lsn(0x15454D8), "2026-11-29 07:02:32.502865+00"
    )
    assert parse_row(b'{"action":"M","transactional":false,"prefix":"p","content":"x"}') is None


def test_delete_carries_the_identity_only() -> None:
    change = parse_row(
        b'{"action":"D","lsn":"0/10","schema":"s","table":"t","identity":[{"name":"id","value":4}]}'
    )
    assert change == RowDelete(schema="s", table="t", lsn="0/10", identity=[Field("id", 4)])
    assert isinstance(change, RowChange)
    assert change.to_change() == Change("D", "s", "t", Lsn(16), None, {"id": 4})


B = '{"action":"B","xid":733,"timestamp":"2026-11-29 07:02:32.502865+00","lsn":"0/15454A8","nextlsn":"0/15454D8"}'
INS = (
    '{"action":"I","xid":735,"timestamp":"t","lsn":"0/1545640","schema":"public","table":"t1",'
    '"columns":[{"name":"id","value":2}]}'
)


def _edit(text: str, **changes: Any) -> bytes:
    obj = json.loads(text)
    for key, value in changes.items():
        if value is ...:
            obj.pop(key)
        else:
            obj[key] = value
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    "payload",
    [
        b"not json at all",
        b'{"action":"B", "xid": 1',
        b"\xff\xfe{}",
        b"[1, 2]",
        b'{"xid": 1}',
        _edit(B, action="X"),
        _edit(B, nextlsn=...),
        _edit(B, xid="733"),
        _edit(B, xid=True),
        _edit(B, lsn="zz/1"),
        _edit(B, timestamp=5),
        _edit(INS, columns=...),
        _edit(INS, columns={"id": 2}),
        _edit(INS, columns=[{"name": "id"}]),
        _edit(INS, columns=[5]),
        _edit(INS, columns=[{"value": 1}]),
        _edit(INS, table=...),
        _edit(INS, lsn=...),
        _edit(INS, lsn="0/zz"),
        _edit(INS, action="D"),
        INS.replace('"value":2', '"value":NaN').encode(),
        INS.replace('"t1"', '"t\xe9"').encode("latin-1"),  # not UTF-8
    ],
)
def test_malformed_message_is_the_plain_parsers_decode_error(payload: bytes) -> None:
    with pytest.raises(DecodeError) as plain:
        parse_message(payload)
    with pytest.raises(DecodeError) as fast:
        parse_row(payload)
    assert str(fast.value) == str(plain.value)


def test_a_column_listed_twice_is_refused_when_the_change_is_read_as_a_change() -> None:
    payload = _edit(INS, columns=[{"name": "id", "value": 1}, {"name": "id", "value": 2}])
    change = parse_row(payload)
    assert isinstance(change, RowChange)  # the writer refuses it (tests/unit/test_batch_rows.py)
    with pytest.raises(DecodeError, match="lists column 'id' twice"):
        change.to_change()
