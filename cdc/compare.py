"""Row-by-row comparison of a source table with its target, on normalised values."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


def normalize(value: Any) -> Any:
    """One comparable form for a value read from PostgreSQL (psycopg2) or Snowflake."""
    if isinstance(value, (memoryview, bytearray)):
        return bytes(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC)
    if isinstance(value, Decimal):
        return value.normalize() if value.is_finite() else str(value)
    if isinstance(value, float):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return value


def normalize_json(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        value = json.loads(value)
    return json.dumps(value, sort_keys=True)


@dataclass
class TableDiff:
    table: str
    source_rows: int
    target_rows: int
    missing: list[tuple[Any, ...]] = field(default_factory=list)  # keys in source, not in target
    extra: list[tuple[Any, ...]] = field(default_factory=list)  # keys in target, not in source
    different: list[tuple[tuple[Any, ...], list[str]]] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not (self.missing or self.extra or self.different)


def compare_rows(
    table: str,
    key: tuple[str, ...],
    source: list[dict[str, Any]],
    target: list[dict[str, Any]],
    json_columns: frozenset[str] = frozenset(),
) -> TableDiff:
    def norm(row: dict[str, Any]) -> dict[str, Any]:
        return {c: normalize_json(v) if c in json_columns else normalize(v) for c, v in row.items()}

    src = {tuple(normalize(r[k]) for k in key): norm(r) for r in source}
    tgt = {tuple(normalize(r[k]) for k in key): norm(r) for r in target}
    diff = TableDiff(table, len(source), len(target))
    diff.missing = sorted((k for k in src if k not in tgt), key=repr)
    diff.extra = sorted((k for k in tgt if k not in src), key=repr)
    for k in sorted(src.keys() & tgt.keys(), key=repr):
        columns = [c for c in src[k] if src[k][c] != tgt[k].get(c)]
        if columns:
            diff.different.append((k, columns))
    return diff
