"""wal2json format-version 2 messages -> ``Begin`` / ``Commit`` / ``Change`` values. Pure, no I/O.

The slot must be read with ``WAL2JSON_OPTIONS``: one JSON object per message, transactions
framed by "B" and "C" records, each change carrying its LSN, xid, primary key and type OIDs.
Numbers with a fraction or an exponent are kept as their exact text (never a float); integers
stay ``int``. Anything the parser does not understand is a ``DecodeError`` that says what is
wrong, for which action and table, and shows the start of the payload.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from cdc.errors import DecodeError
from cdc.model import Begin, Change, Commit, Lsn

WAL2JSON_OPTIONS: dict[str, str] = {
    "format-version": "2",
    "include-xids": "1",
    "include-timestamp": "1",
    "include-lsn": "1",
    "include-pk": "1",
    "include-type-oids": "1",
    "include-transaction": "1",
    "include-column-positions": "1",
}

PAYLOAD_EXCERPT = 200
_IGNORED_ACTIONS = frozenset({"M"})  # logical decoding messages (pg_logical_emit_message)


class _Malformed(Exception):
    """Internal: a structural problem found while walking a decoded message."""


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"non-standard JSON constant {name}")


def _json_int(text: str) -> int | str:
    """JSON integers as int, but ``-0`` (a float column's negative zero) as text, keeping its sign."""
    return text if text == "-0" else int(text)


def parse_message(payload: bytes | str) -> Begin | Commit | Change | None:
    """Decode one wal2json v2 message; ``None`` for messages the pipeline ignores ("M")."""
    text = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes | bytearray) else payload
    action: str | None = None
    where: str | None = None
    try:
        if isinstance(payload, bytes | bytearray):
            payload.decode("utf-8")  # strict: a broken encoding is a decoder fault, not data
        obj = json.loads(text, parse_float=str, parse_int=_json_int, parse_constant=_reject_constant)
        if not isinstance(obj, dict):
            raise _Malformed(f"expected a JSON object, got {type(obj).__name__}")
        raw_action = obj.get("action")
        if not isinstance(raw_action, str):
            raise _Malformed('missing or non-text "action"')
        action = raw_action
        if isinstance(obj.get("schema"), str) and isinstance(obj.get("table"), str):
            where = f"{obj['schema']}.{obj['table']}"
        return _parse_object(obj, action)
    except (_Malformed, ValueError, UnicodeDecodeError) as exc:
        what = str(exc) if isinstance(exc, _Malformed) else f"invalid JSON or encoding ({exc})"
        raise DecodeError(_describe(what, action, where, text)) from exc


def _describe(what: str, action: str | None, where: str | None, text: str) -> str:
    context = f"action {action!r}" if action is not None else "unknown action"
    if where is not None:
        context += f", table {where}"
    excerpt = text[:PAYLOAD_EXCERPT] + ("..." if len(text) > PAYLOAD_EXCERPT else "")
    return (
        f"cannot decode wal2json message ({context}): {what}; payload starts {excerpt!r}. "
        "Check that the slot uses the wal2json plugin with format-version 2 and the pipeline's options."
    )


def _parse_object(obj: dict[str, Any], action: str) -> Begin | Commit | Change | None:
    if action in ("B", "C"):
        cls = Begin if action == "B" else Commit
        return cls(
            xid=_int(obj, "xid"),
            commit_lsn=_lsn(obj, "lsn"),
            end_lsn=_lsn(obj, "nextlsn"),
            commit_ts=_text(obj, "timestamp"),
        )
    if action in _IGNORED_ACTIONS:
        return None
    if action not in ("I", "U", "D", "T"):
        raise _Malformed(f"unknown action {action!r} (expected B, C, I, U, D, T or M)")
    schema = _text(obj, "schema")
    table = _text(obj, "table")
    lsn = _lsn(obj, "lsn")
    xid = _int(obj, "xid") if "xid" in obj else None
    if action == "T":
        return Change(op="T", schema=schema, table=table, lsn=lsn, xid=xid)
    values = _columns(obj, "columns") if action in ("I", "U") else None
    positions = _positions(obj["columns"]) if values is not None else None
    if action == "D":
        identity: dict[str, Any] | None = _columns(obj, "identity")
    elif action == "U" and "identity" in obj:
        identity = _columns(obj, "identity")
    else:
        identity = None
    return Change(
        op="I" if action == "I" else "U" if action == "U" else "D",
        schema=schema,
        table=table,
        lsn=lsn,
        values=values,
        identity=identity,
        xid=xid,
        positions=positions,
    )


def _field(obj: dict[str, Any], name: str) -> Any:
    if name not in obj:
        raise _Malformed(f'missing field "{name}"')
    return obj[name]


def _text(obj: dict[str, Any], name: str) -> str:
    value = _field(obj, name)
    if not isinstance(value, str):
        raise _Malformed(f'field "{name}" must be text, got {type(value).__name__}')
    return value


def _int(obj: dict[str, Any], name: str) -> int:
    value = _field(obj, name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Malformed(f'field "{name}" must be an integer, got {type(value).__name__}')
    return value


def _lsn(obj: dict[str, Any], name: str) -> Lsn:
    text = _text(obj, name)
    try:
        return Lsn.parse(text)
    except ValueError as exc:
        raise _Malformed(f'field "{name}" is not an LSN: {text!r}') from exc


def _positions(items: list[dict[str, Any]]) -> tuple[int, ...] | None:
    """The columns' attnums, when every column carries one (include-column-positions)."""
    positions: list[int] = []
    for item in items:
        position = item.get("position")
        if not isinstance(position, int) or isinstance(position, bool):
            return None
        positions.append(position)
    return tuple(positions)


def _columns(obj: dict[str, Any], name: str) -> dict[str, Any]:
    items = _field(obj, name)
    if not isinstance(items, list):
        raise _Malformed(f'field "{name}" must be a list, got {type(items).__name__}')
    result: dict[str, Any] = {}
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            raise _Malformed(f'"{name}"[{position}] must be an object, got {type(item).__name__}')
        column = item.get("name")
        if not isinstance(column, str):
            raise _Malformed(f'"{name}"[{position}] has no text "name"')
        if "value" not in item:
            raise _Malformed(f'"{name}"[{position}] (column {column!r}) has no "value"')
        if column in result:
            raise _Malformed(f'"{name}" lists column {column!r} twice')
        result[column] = item["value"]
    return result
