"""Value conversion: JSON values as wal2json sent them -> typed Arrow arrays, column by column.

Each ``TypeMapping.kind`` has a per-value preparation (validating what the plugin sends) and,
where Arrow can parse text exactly (decimals, floats, dates, timestamps), one vectorised cast of
the whole column. A value that does not fit raises ``DecodeError`` naming table, column and value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from cdc.errors import DecodeError
from cdc.model import Column, TableSchema
from cdc.typemap import TypeMapping

COMMIT_TS_TYPE = pa.timestamp("us", tz="UTC")
_CONVERT_ERRORS = (
    pa.ArrowInvalid,
    pa.ArrowTypeError,
    pa.ArrowNotImplementedError,
    OverflowError,
    ValueError,
    TypeError,
)
_UNREPRESENTABLE = re.compile(r"^[+-]?infinity$|\sBC$", re.IGNORECASE)
_SHOWN = 80


class _BadValue(Exception):
    """Internal: one value a column cannot hold; the message says why."""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


# --- value conversion, column by column ---------------------------------------------------------


def _int(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _BadValue("is not an integer")
    return value


def _bool(value: Any) -> Any:
    if not isinstance(value, bool):
        raise _BadValue("is not a boolean")
    return value


def _number_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _BadValue("is not a number")


def _any_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _temporal_text(value: Any) -> str:
    if not isinstance(value, str):
        raise _BadValue("is not text")
    if _UNREPRESENTABLE.search(value):
        raise _BadValue("cannot be represented yet ('infinity' and BC dates are not supported)")
    return value


def _hex(value: Any) -> bytes:
    if not isinstance(value, str):
        raise _BadValue("is not hex text")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise _BadValue("is not hex text (wal2json sends bytea as hex without the \\x prefix)") from exc


_PREPARE: dict[str, tuple[Callable[[Any], Any], bool]] = {
    # kind -> (per-value preparation, whether the prepared text is then cast to the Arrow type)
    "int": (_int, False),
    "bool": (_bool, False),
    "float": (_number_text, True),
    "decimal": (_number_text, True),
    "string": (_any_text, False),
    "json": (_any_text, False),
    "uuid": (_any_text, False),
    "text": (_any_text, False),
    "date": (_temporal_text, True),
    "timestamp": (_temporal_text, True),
    "timestamptz": (_temporal_text, True),
    "bytes": (_hex, False),
}


def convert_column(table: TableSchema, column: Column, mapping: TypeMapping, values: list[Any]) -> pa.Array:
    prepare, cast = _PREPARE[mapping.kind]

    def fail(value: Any, reason: str) -> DecodeError:
        return DecodeError(
            f"table {table.qualified} column {column.name!r} ({column.type_name}): value {_shown(value)} "
            f"{reason}; it cannot be staged as Arrow {mapping.arrow}"
        )

    prepared: list[Any] = []
    for value in values:
        if value is None:
            prepared.append(None)
            continue
        try:
            prepared.append(prepare(value))
        except _BadValue as exc:
            raise fail(value, str(exc)) from exc

    def build(items: list[Any]) -> pa.Array:
        if cast:
            return pa.array(items, pa.string()).cast(mapping.arrow)
        return pa.array(items, mapping.arrow)

    try:
        return build(prepared)
    except _CONVERT_ERRORS as exc:
        for original, item in zip(values, prepared, strict=True):
            try:
                build([item])
            except _CONVERT_ERRORS as one:
                raise fail(original, f"does not fit ({one})") from one
        raise DecodeError(
            f"table {table.qualified} column {column.name!r} ({column.type_name}): cannot convert the "
            f"column to Arrow {mapping.arrow}: {exc}"
        ) from exc


def commit_timestamps(table: TableSchema, stamps: list[str]) -> pa.Array:
    try:
        return pa.array(stamps, pa.string()).cast(COMMIT_TS_TYPE)
    except _CONVERT_ERRORS as exc:
        raise DecodeError(
            f"table {table.qualified}: a commit timestamp is not in PostgreSQL's form "
            f"'2026-11-29 07:02:32.502865+00' ({exc}); first one: {_shown(stamps[0])}"
        ) from exc
