"""NaN and +/-Infinity that wal2json sent as null, read at the source.

wal2json writes NaN, Infinity and -Infinity of numeric, real and double precision columns as JSON
null. A null in such a column of an insert or update is looked up by key when a part is written
(``fill_from_source``); a key that arrives as null cannot be replicated and says so.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from itertools import compress, count, repeat
from typing import Any, Protocol

from cdc.errors import DecodeError
from cdc.model import TableSchema
from cdc.typemap import NUMBER_KINDS, TypeMapping


class ValueLookup(Protocol):
    """Reads the current value of some columns of some rows at the source, as PostgreSQL text.

    Returns ``{key: {column: text or None}}``; a key whose row no longer exists is absent.
    ``cdc.source.lookup.SourceLookup`` implements it over a psycopg2 connection.
    """

    def __call__(
        self, table: TableSchema, columns: Sequence[str], keys: Sequence[tuple[Any, ...]]
    ) -> Mapping[tuple[Any, ...], Mapping[str, str | None]]: ...


def _null_key(table: TableSchema, names: list[str]) -> DecodeError:
    return DecodeError(
        f"table {table.qualified}: key column(s) {names} of a row arrived as null, which wal2json "
        "writes for NaN and +/-Infinity: such a key cannot be replicated; change the key's value in "
        "the source, or leave the table out of source_tables"
    )


def fill_from_source(
    table: TableSchema,
    mappings: Sequence[TypeMapping],
    values: list[list[Any]],
    ops: Sequence[str],
    unchanged: Sequence[str | None],
    lookup: ValueLookup,
) -> int:
    """Replace nulls that may be NaN or +/-Infinity with the source's current value.

    wal2json writes NaN, Infinity and -Infinity of numeric, real and double precision columns as
    JSON null, so a null in such a column of an insert or update row is looked up by key (one
    batched query per call). The value read is the row's *current* value: a later change of the
    row comes in a later window and is applied over it, so the target converges to the source;
    a row that no longer exists keeps null (its delete follows). ``values`` is the buffer of one
    table, column by column, ``ops`` and ``unchanged`` its ``_CDC_OP`` and ``_CDC_UNCHANGED``
    metadata. Returns the number of rows looked up.
    """
    numeric = [i for i, m in enumerate(mappings) if m.kind in NUMBER_KINDS]
    if not numeric:
        return 0
    position = {col.name: i for i, col in enumerate(table.columns)}
    key_index = [position[k] for k in table.key]
    number_keys = [i for i in key_index if i in numeric]
    wanted: list[tuple[int, tuple[Any, ...], list[int]]] = []
    # rows with a null in some number column, found without a Python step per row
    candidates: set[int] = set()
    for i in numeric:
        candidates.update(compress(count(), map(operator.is_, values[i], repeat(None))))
    for row in sorted(candidates):
        op = ops[row]
        if op == "D" and any(values[i][row] is None for i in number_keys):
            raise _null_key(table, [table.columns[i].name for i in number_keys if values[i][row] is None])
        if op not in ("I", "U"):
            continue
        omitted = unchanged[row] or ""
        nulls = [
            i for i in numeric if values[i][row] is None and f",{table.columns[i].attnum}," not in omitted
        ]
        if not nulls:
            continue
        key = tuple(values[i][row] for i in key_index)
        if any(i in key_index for i in nulls) or any(k is None for k in key):
            raise _null_key(table, [table.columns[i].name for i in nulls if i in key_index])
        wanted.append((row, key, nulls))
    if not wanted:
        return 0
    columns = sorted({i for _, _, nulls in wanted for i in nulls})
    names = [table.columns[i].name for i in columns]
    found = lookup(table, names, list(dict.fromkeys(key for _, key, _ in wanted)))
    for row, key, nulls in wanted:
        current = found.get(key)
        if current is None:
            continue  # the row is gone: its delete comes in this or a later window
        for i in nulls:
            values[i][row] = current.get(table.columns[i].name)
    return len(wanted)
