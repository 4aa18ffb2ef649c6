"""wal2json format-version 2 messages -> ``Begin`` / ``Commit`` / ``Change`` values. Pure, no I/O.

The slot must be read with ``WAL2JSON_OPTIONS``: one JSON object per message, transactions
framed by "B" and "C" records, each change carrying its LSN and xid. Numbers with a fraction or an
exponent are kept as their exact text (never a float); integers stay ``int``. Anything the parser
does not understand is a ``DecodeError`` that says what is wrong, for which action and table, and
shows the start of the payload.

Two entry points give the same values: ``parse_message`` (plain ``json``, every check, a
``Change`` with value dicts) and ``parse_row`` (the replication stream's path: msgspec decodes the
payload straight into a ``RowChange`` struct, no dict per change; anything it does not accept goes
through ``parse_message``, so errors read the same).
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any, ClassVar, NoReturn

import msgspec

from cdc.errors import DecodeError
from cdc.model import Begin, Change, Commit, Lsn, Op

WAL2JSON_OPTIONS: dict[str, str] = {
    "format-version": "2",
    "include-xids": "1",
    "include-timestamp": "1",
    "include-lsn": "1",
    "include-transaction": "1",
    "include-column-positions": "1",
    # Type names, type OIDs and the key list come from the catalog: leaving them out of each
    # change spares the source's walsender a format_type() per value and a third of the payload.
    "include-types": "0",
    "include-type-oids": "0",
    "include-pk": "0",
}

PAYLOAD_EXCERPT = 200
_IGNORED_ACTIONS = frozenset({"M"})  # logical decoding messages (pg_logical_emit_message)


class _Malformed(Exception):
    """Internal: a structural problem found while walking a decoded message."""


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"non-standard JSON constant {name}")


def _json_int(text: str) -> int | str:
    """JSON integers as int, but ``-0`` (a float column's negative zero) as text, keeping its sign,
    and so an integer longer than Python converts (a numeric of thousands of digits)."""
    limit = sys.get_int_max_str_digits()
    return text if text == "-0" or (limit and len(text.lstrip("-")) > limit) else int(text)


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


# --- the stream's path: msgspec structs -------------------------------------------------------


class Field(msgspec.Struct, frozen=True, gc=False):
    """One column of a change as wal2json lists it: its name, its JSON value and its attnum."""

    name: str
    value: Any
    position: int | None = None


class RowChange(msgspec.Struct, frozen=True, gc=False, tag_field="action"):
    """A row change as the stream reads it: what ``Change`` holds, without a dict per change.

    ``columns`` is the new row (I, U), ``identity`` the old key (U, D), each a list of ``Field``
    in the plugin's order; ``lsn`` is the change's LSN as text. One subclass per operation, so
    ``op`` is a class attribute; each subclass requires what its operation must carry, so the
    decoder rejects an insert without columns or a delete without its old key. Names are not
    checked for duplicates here: the consumer places values by name and reports a duplicate
    (``WindowWriter`` does).
    """

    op: ClassVar[Op]
    schema: str
    table: str
    lsn: str
    xid: int | None = None
    columns: list[Field] | None = None
    identity: list[Field] | None = None

    @property
    def ident(self) -> tuple[str, str]:
        return (self.schema, self.table)

    def moved_to(self, schema: str, table: str, attnums: dict[int, int] | None = None) -> RowChange:
        """The same change, counted for another table (a partition's change for its root), with
        its columns' positions read through ``attnums`` when given (the partition's attnum -> the
        root's; a position it lacks becomes None, and the column is known by its name)."""
        if attnums is None or self.columns is None:
            return msgspec.structs.replace(self, schema=schema, table=table)
        columns = [
            Field(f.name, f.value, None if f.position is None else attnums.get(f.position))
            for f in self.columns
        ]
        return msgspec.structs.replace(self, schema=schema, table=table, columns=columns)

    def attnum(self, column: str) -> int | None:
        """The attnum of one column of ``columns`` when the decoder reported positions."""
        for field in self.columns or ():
            if field.name == column:
                return field.position
        return None

    def to_change(self) -> Change:
        """The ``Change`` that ``parse_message`` makes of the same message."""
        values = _field_dict(self, "columns") if self.op in ("I", "U") else None
        positions = None
        if values is not None and self.columns and all(f.position is not None for f in self.columns):
            positions = tuple(f.position for f in self.columns if f.position is not None)
        identity = _field_dict(self, "identity") if self.op in ("U", "D") else None
        return Change(
            self.op, self.schema, self.table, Lsn.parse(self.lsn), values, identity, self.xid, positions
        )

    @staticmethod
    def from_change(change: Change) -> RowChange:
        cls = _ROW_TYPES[change.op]
        columns = None
        if change.values is not None:
            positions = change.positions or ()
            columns = [
                Field(k, v, positions[i] if i < len(positions) else None)
                for i, (k, v) in enumerate(change.values.items())
            ]
        identity = None if change.identity is None else [Field(k, v) for k, v in change.identity.items()]
        lsn = str(change.lsn)
        return cls(change.schema, change.table, lsn, change.xid, columns=columns, identity=identity)


class RowInsert(RowChange, frozen=True, gc=False, tag="I", kw_only=True):
    op: ClassVar[Op] = "I"
    columns: list[Field]


class RowUpdate(RowChange, frozen=True, gc=False, tag="U", kw_only=True):
    op: ClassVar[Op] = "U"
    columns: list[Field]


class RowDelete(RowChange, frozen=True, gc=False, tag="D", kw_only=True):
    op: ClassVar[Op] = "D"
    identity: list[Field]


class RowTruncate(RowChange, frozen=True, gc=False, tag="T"):
    op: ClassVar[Op] = "T"


class _Frame(msgspec.Struct, frozen=True, gc=False, tag_field="action"):
    xid: int
    lsn: str
    nextlsn: str
    timestamp: str


class _BeginFrame(_Frame, frozen=True, gc=False, tag="B"):
    pass


class _CommitFrame(_Frame, frozen=True, gc=False, tag="C"):
    pass


class _LogicalMessage(msgspec.Struct, frozen=True, gc=False, tag_field="action", tag="M"):
    pass


_ROW_TYPES: dict[str, type[RowChange]] = {"I": RowInsert, "U": RowUpdate, "D": RowDelete, "T": RowTruncate}
_DECODER = msgspec.json.Decoder(
    RowInsert | RowUpdate | RowDelete | RowTruncate | _BeginFrame | _CommitFrame | _LogicalMessage,
    float_hook=str,  # a number with a fraction or an exponent stays its exact text
)
_LSN_TEXT = re.compile(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}")
# msgspec reads the integer -0 (a float column's negative zero) as 0: such a payload takes the
# plain parser, which keeps "-0". In a column object the value is followed by "," or "}".
_NEGATIVE_ZERO = re.compile(rb":-0[,}]")


def parse_row(payload: bytes) -> Begin | Commit | RowChange | None:
    """Decode one wal2json v2 message as the stream does; ``None`` for messages it ignores ("M").

    The same values as ``parse_message`` (a ``RowChange`` in place of a ``Change``), the same
    ``DecodeError`` for anything malformed.
    """
    try:
        message = _DECODER.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        message = None
    if isinstance(message, RowChange):
        # the decoder saw to the fields each operation requires
        if _LSN_TEXT.fullmatch(message.lsn) and _NEGATIVE_ZERO.search(payload) is None:
            return message
    elif isinstance(message, _Frame):
        if _LSN_TEXT.fullmatch(message.lsn) and _LSN_TEXT.fullmatch(message.nextlsn):
            cls = Begin if isinstance(message, _BeginFrame) else Commit
            return cls(message.xid, Lsn.parse(message.lsn), Lsn.parse(message.nextlsn), message.timestamp)
    elif isinstance(message, _LogicalMessage):
        return None
    parsed = parse_message(payload)  # raises the DecodeError that says what is wrong
    return RowChange.from_change(parsed) if isinstance(parsed, Change) else parsed


def _field_dict(change: RowChange, what: str) -> dict[str, Any] | None:
    fields: list[Field] | None = getattr(change, what)
    if fields is None:
        return None
    result = {f.name: f.value for f in fields}
    if len(result) != len(fields):
        seen: set[str] = set()
        twice = next(f.name for f in fields if f.name in seen or seen.add(f.name))  # type: ignore[func-returns-value]
        raise DecodeError(
            f"cannot decode wal2json message (action {change.op!r}, table {change.schema}.{change.table}): "
            f'"{what}" lists column {twice!r} twice'
        )
    return result
