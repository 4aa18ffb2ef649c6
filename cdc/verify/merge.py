"""The comparison itself: a merge-join of two key-ordered row streams, pure and without I/O.

Both sides are read in key order (``cdc.verify.read`` asks each database for the order described
here) and walked together, one row of each at a time, so memory stays bounded whatever the size of
the table. Every value becomes its canonical text (``cdc.compare.canonical_text``), which is the
same string on both sides for a right value and a different one for a wrong value, whatever the
type; a row matches when every compared column's canonical text matches (two values read as the
same text are equal without computing it, and key columns are settled by the key order).

Key order. Each key column gets an *order class* from its Snowflake type, and the same total
order is asked of PostgreSQL, of Snowflake and of Python:

========  =====================================  =====================================
class     databases order by                     Python compares
========  =====================================  =====================================
number    the native number (NUMBER(p,s))        ``(is NaN, Decimal)``: NaN last
float     the native double (FLOAT)              ``(is NaN, float)``: NaN last
bool      the native boolean                     canonical ``f`` < ``t``
binary    the native bytes (memcmp)              canonical ``\\x`` + hex (same order)
text      the text, byte-wise (``COLLATE "C"``)  ``str`` (code points = UTF-8 bytes)
========  =====================================  =====================================

A key column of any other Snowflake type (VARIANT) cannot be ordered the same way on both sides:
such a table is reported with an error instead of being compared. A stream found out of order is
an ``OrderError``, never a wrong report.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, NamedTuple

from cdc.compare import canonical_text
from cdc.errors import PermanentError
from cdc.model import Column, TableSchema
from cdc.typemap import TypeMapping, column_mapping

OrderClass = Literal["number", "float", "bool", "binary", "text"]
Side = Literal["source", "target"]
KeyValue = int | bool | str


class VerifyError(PermanentError):
    """One table cannot be compared as it is (unsortable key, unsorted stream, missing target)."""


class OrderError(VerifyError):
    """A side's rows did not arrive in the key order verify asked for."""


def order_class(mapping: TypeMapping) -> OrderClass | None:
    """How a key column of this mapping is ordered on both sides (None: it cannot be)."""
    target = mapping.snowflake.upper()
    if target.startswith("NUMBER"):
        return "number"
    if target.startswith("FLOAT"):
        return "float"
    if target == "BOOLEAN":
        return "bool"
    if target.startswith("BINARY"):
        return "binary"
    if target.startswith("VARCHAR"):
        return "text"
    return None


def order_value(cls: OrderClass, text: str | None, raw: Any) -> Any:
    """A key value in the total order of its class (``text``: canonical text, ``raw``: as read)."""
    if cls == "text":
        return raw if isinstance(raw, str) else str(raw)
    if text is None:
        raise ValueError("a key column is NULL")
    if cls == "number":
        number = Decimal(text)
        return (True, Decimal(0)) if number.is_nan() else (False, number)
    if cls == "float":
        real = float(text)
        return (True, 0.0) if math.isnan(real) else (False, real)
    return text


class Row(NamedTuple):
    order: tuple[Any, ...]  # the key in its total order
    raw: Sequence[Any]  # every compared column as read (canonical text is computed when needed)


def _same(mapping: TypeMapping, a: Any, b: Any) -> bool:
    """Whether two values of a column are equal: on their canonical text, with a shortcut for
    identical text (the canonical text is a function of the value, so it is equal too)."""
    if a is None or b is None:
        return a is b
    if type(a) is str and type(b) is str and a == b:
        return True
    return canonical_text(mapping, a) == canonical_text(mapping, b)


@dataclass(frozen=True)
class Layout:
    """The columns compared for one table, in the order both sides read them, and its key."""

    table: TableSchema
    columns: tuple[Column, ...]
    mappings: tuple[TypeMapping, ...]
    key_index: tuple[int, ...]  # positions of the key columns in ``columns``
    key_classes: tuple[OrderClass, ...]
    # columns ``differing`` compares: a key column whose order values matched is equal already,
    # except a float key (0.0 and -0.0 are one key but two values)
    value_index: tuple[int, ...]

    @classmethod
    def of(cls, table: TableSchema, columns: Sequence[Column] | None = None) -> Layout:
        """The layout comparing ``columns`` (default: every column; the key is always compared)."""
        chosen = tuple(table.columns if columns is None else columns)
        names = [c.name for c in chosen]
        missing = [k for k in table.key if k not in names]
        if missing:
            raise VerifyError(f"table {table.qualified}: key column(s) {', '.join(missing)} not compared")
        mappings = tuple(column_mapping(c) for c in chosen)
        key_index = tuple(names.index(k) for k in table.key)
        classes: list[OrderClass] = []
        for i in key_index:
            klass = order_class(mappings[i])
            if klass is None:
                raise VerifyError(
                    f"table {table.qualified}: key column {chosen[i].name!r} ({chosen[i].type_name}, "
                    f"{mappings[i].snowflake} in Snowflake) cannot be ordered the same way in PostgreSQL "
                    "and Snowflake, so verify cannot compare this table"
                )
            classes.append(klass)
        settled = {i for i, k in zip(key_index, classes, strict=True) if k != "float"}
        values = tuple(i for i in range(len(chosen)) if i not in settled)
        return cls(table, chosen, mappings, key_index, tuple(classes), values)

    def row(self, raw: Sequence[Any]) -> Row:
        """One row as read (source text or target values, in ``columns`` order)."""
        if len(raw) != len(self.columns):
            raise ValueError(f"{len(raw)} values for {len(self.columns)} columns")
        order = tuple(
            order_value(k, None if k == "text" else canonical_text(self.mappings[i], raw[i]), raw[i])
            for k, i in zip(self.key_classes, self.key_index, strict=True)
        )
        return Row(order, raw)

    def differing(self, source: Row, target: Row) -> list[str]:
        """Names of the columns whose values differ (in column order) between rows of one key."""
        a, b, mappings = source.raw, target.raw, self.mappings
        return [self.columns[i].name for i in self.value_index if not _same(mappings[i], a[i], b[i])]

    def key(self, row: Row) -> list[KeyValue]:
        """The key of a row as reported: integers and booleans as such, anything else as text."""
        result: list[KeyValue] = []
        for i in self.key_index:
            text = canonical_text(self.mappings[i], row.raw[i])
            kind = self.mappings[i].kind
            if text is not None and kind == "int":
                result.append(int(text))
            elif text is not None and kind == "bool":
                result.append(text == "t")
            else:
                result.append(str(text))
        return result


@dataclass
class Comparison:
    """What the merge found for one table; the lists hold at most ``limit`` keys in all."""

    limit: int
    source_rows: int = 0
    target_rows: int = 0
    missing: list[list[KeyValue]] = field(default_factory=list)  # in the source, not in the target
    extra: list[list[KeyValue]] = field(default_factory=list)  # in the target, not in the source
    different: list[tuple[list[KeyValue], list[str]]] = field(default_factory=list)
    missing_count: int = 0
    extra_count: int = 0
    different_count: int = 0

    @property
    def mismatches(self) -> int:
        return self.missing_count + self.extra_count + self.different_count

    @property
    def equal(self) -> bool:
        return self.mismatches == 0

    @property
    def truncated(self) -> bool:
        return self.mismatches > len(self.missing) + len(self.extra) + len(self.different)

    def _room(self) -> bool:
        return len(self.missing) + len(self.extra) + len(self.different) < self.limit


class _Stream:
    """One side's rows with the order check: each key must be greater than the one before."""

    def __init__(self, layout: Layout, side: Side, raw: Iterable[Sequence[Any]]) -> None:
        self._layout = layout
        self._side = side
        self._raw: Iterator[Sequence[Any]] = iter(raw)
        self.count = 0
        self.current: Row | None = None
        self.duplicate = False  # the current row has the same key as the one before it

    def advance(self) -> None:
        previous = self.current
        raw = next(self._raw, None)
        if raw is None:
            self.current = None
            return
        try:
            row = self._layout.row(raw)
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise VerifyError(
                f"table {self._layout.table.qualified}: a {self._side} row cannot be read: {exc}"
            ) from exc
        self.count += 1
        self.current = row
        self.duplicate = False
        if previous is None:
            return
        try:
            ascending = previous.order < row.order
            self.duplicate = not ascending and previous.order == row.order
        except (TypeError, InvalidOperation) as exc:
            raise self._unordered(previous, row, f" ({exc})") from exc
        if not ascending and not self.duplicate:
            raise self._unordered(previous, row, "")

    def _unordered(self, previous: Row, row: Row, detail: str) -> OrderError:
        layout = self._layout
        return OrderError(
            f"table {layout.table.qualified}: {self._side} rows are not in the key order verify asked "
            f"for: key {layout.key(row)} came after {layout.key(previous)}{detail}. The database "
            "sorted differently from Python (a collation on the key column?); nothing was concluded "
            "for this table: report it as a bug"
        )


def merge_compare(
    layout: Layout,
    source: Iterable[Sequence[Any]],
    target: Iterable[Sequence[Any]],
    *,
    limit: int,
) -> Comparison:
    """Walk both key-ordered streams together and record every missing, extra and different row.

    A key the target holds twice counts the second row as extra; a key the source holds twice, or
    a key smaller than the one before it on either side, raises ``OrderError``.
    """
    result = Comparison(limit=limit)
    src, tgt = _Stream(layout, "source", source), _Stream(layout, "target", target)
    src.advance()
    tgt.advance()
    while src.current is not None or tgt.current is not None:
        if src.duplicate:
            assert src.current is not None
            raise OrderError(
                f"table {layout.table.qualified}: the source returned key {layout.key(src.current)} twice; "
                "is the key still unique? Nothing was concluded for this table"
            )
        s, t = src.current, tgt.current
        if t is not None and (tgt.duplicate or s is None or t.order < s.order):
            result.extra_count += 1
            if result._room():
                result.extra.append(layout.key(t))
            tgt.advance()
        elif t is None or (s is not None and s.order < t.order):
            assert s is not None
            result.missing_count += 1
            if result._room():
                result.missing.append(layout.key(s))
            src.advance()
        else:
            assert s is not None
            columns = layout.differing(s, t)
            if columns:
                result.different_count += 1
                if result._room():
                    result.different.append((layout.key(s), columns))
            src.advance()
            tgt.advance()
    result.source_rows, result.target_rows = src.count, tgt.count
    return result
