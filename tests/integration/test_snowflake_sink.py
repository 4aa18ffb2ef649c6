"""SnowflakeSink against the fakesnow stand-in: staged Parquet windows -> COPY -> MERGE -> target.

Each test writes Parquet parts in the stage layout the batch writer produces, applies windows in
order and compares the target row by row (values and metadata).
"""

from __future__ import annotations

import datetime as dt
import json
import socket
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cdc.errors import MergeError, SinkUnavailable
from cdc.model import Column, TableSchema
from cdc.settings import Settings
from cdc.settings import load as settings_load
from cdc.snowflake import ApplyResult, SnowflakeSink
from cdc.typemap import column_mapping

fakesnow = pytest.importorskip(
    "fakesnow", reason="fakesnow is not installed: the Snowflake sink suite cannot run"
)
snowflake_connector = pytest.importorskip("snowflake.connector")
sf_errors = snowflake_connector.errors

pytestmark = pytest.mark.integration

DATABASE = "CDC_TEST"
LOAD_SCHEMA = "CDC_LOAD"
STAGE = "CDC_TEST.CDC_LOAD.CDC_STAGE"
PIPELINE = "sinktest"
UTC = dt.UTC


@pytest.fixture(scope="module")
def stage_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stage")


@pytest.fixture(scope="module")
def connection(stage_dir: Path) -> Iterator[Any]:
    with fakesnow.server() as kwargs:
        conn = snowflake_connector.connect(**kwargs)
        cur = conn.cursor()
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {DATABASE}.{LOAD_SCHEMA}")
        cur.execute(f"CREATE STAGE {STAGE} URL='file://{stage_dir}/'")
        yield conn
        conn.close()


@pytest.fixture
def sink(connection: Any) -> SnowflakeSink:
    return SnowflakeSink(
        connection, database=DATABASE, stage=STAGE, load_schema=LOAD_SCHEMA, pipeline=PIPELINE
    )


# --- staged windows -------------------------------------------------------------------------

BASE_TS = dt.datetime(2024, 5, 1, tzinfo=UTC)
PART_ROWS = 3  # rows per Parquet part, so that most windows have several parts
META_TYPES = {
    "_CDC_LSN": pa.int64(),
    "_CDC_SEQ": pa.int64(),
    "_CDC_OP": pa.string(),
    "_CDC_COMMIT_TS": pa.timestamp("us", tz="UTC"),
    "_CDC_UNCHANGED": pa.string(),
}


ORDERS_COLUMNS = (  # name, type, toastable
    ("tenant", "integer", False),
    ("id", "bigint", False),
    ("note", "text", True),
    ("doc", "jsonb", True),
    ("amt", "numeric(12,2)", False),
    ("paid_at", "timestamp with time zone", False),
    ("raw", "bytea", True),
    ("flag", "boolean", False),
    ("day", "date", False),
    ("seen", "timestamp without time zone", False),
    ("ratio", "double precision", False),
    ("qty", "smallint", False),
)


def orders(schema: str) -> TableSchema:
    """A table with a composite key, toastable text/jsonb/bytea columns and one column per kind."""
    columns = tuple(
        Column(name, n, type_, 0, nullable=n > 2, toastable=toast)
        for n, (name, type_, toast) in enumerate(ORDERS_COLUMNS, start=1)
    )
    return TableSchema(schema, "orders", columns, ("tenant", "id"))


def commit_ts(lsn: int) -> dt.datetime:
    return BASE_TS + dt.timedelta(seconds=lsn)


def ch(
    op: str,
    lsn: int,
    seq: int,
    row: dict[str, Any] | None = None,
    *,
    unchanged: tuple[int, ...] = (),
    **values: Any,
) -> dict[str, Any]:
    """One staged change: source column values (``row`` and ``values``) plus the metadata the batch
    writer adds; ``unchanged`` lists the attnums an update left out."""
    values = {**(row or {}), **values}
    meta = {
        "_CDC_LSN": lsn,
        "_CDC_SEQ": seq,
        "_CDC_OP": op,
        "_CDC_COMMIT_TS": commit_ts(lsn),
        "_CDC_UNCHANGED": "," + ",".join(map(str, unchanged)) + "," if unchanged else None,
    }
    return {**values, **meta}


def stage_window(stage_dir: Path, table: TableSchema, window: str, changes: list[dict[str, Any]]) -> str:
    """Write the changes as Parquet parts at ``<pipeline>/windows/<window>/<table dir>/``."""
    rel_path = f"{PIPELINE}/windows/{window}/{table.stage_dir}"
    directory = stage_dir / rel_path
    directory.mkdir(parents=True)
    for part, start in enumerate(range(0, len(changes), PART_ROWS)):
        rows = changes[start : start + PART_ROWS]
        arrays = {
            c.stage_name: pa.array([r.get(c.name) for r in rows], column_mapping(c).arrow)
            for c in table.columns
        }
        arrays.update({name: pa.array([r[name] for r in rows], type_) for name, type_ in META_TYPES.items()})
        pq.write_table(pa.table(arrays), directory / f"part-{part:05d}.parquet")
    return rel_path


def target_row(table: TableSchema, change: dict[str, Any], **kept: Any) -> dict[str, Any]:
    """The target row a change leaves behind (``kept``: values the target kept from before)."""
    row = {c.name: change.get(c.name) for c in table.columns}
    row.update(kept)
    row.update({k: change[k] for k in ("_CDC_LSN", "_CDC_SEQ", "_CDC_OP", "_CDC_COMMIT_TS")})
    return row


def normal(table: TableSchema, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with comparable values (json parsed, binary as bytes), ordered by key."""
    result = []
    for row in rows:
        row = dict(row)
        for col in table.columns:
            if column_mapping(col).kind == "json" and row[col.name] is not None:
                row[col.name] = json.loads(row[col.name])
            elif isinstance(row[col.name], bytearray):
                row[col.name] = bytes(row[col.name])
        result.append(row)
    return sorted(result, key=lambda r: tuple(r[k] for k in table.key))


def current(sink: SnowflakeSink, table: TableSchema) -> list[dict[str, Any]]:
    """The target's rows, normalised; ``_CDC_SYNCED_AT`` is checked and dropped."""
    rows = sink.fetch_table(table)
    for row in rows:
        synced = row.pop("_CDC_SYNCED_AT")
        assert isinstance(synced, dt.datetime) and synced.tzinfo is not None, row
    return normal(table, rows)


def expected(table: TableSchema, *rows: dict[str, Any]) -> list[dict[str, Any]]:
    return normal(table, list(rows))


def full(tenant: int, id_: int, n: int) -> dict[str, Any]:
    """Values for every column of ``orders``, distinct per ``n``."""
    return {
        "tenant": tenant,
        "id": id_,
        "note": f"note {n} " + "x" * 50,
        "doc": json.dumps({"n": n, "tags": ["a", "b"], "nested": {"ok": True}}),
        "amt": Decimal(f"{n}.25"),
        # date/time types are staged as PostgreSQL's ISO text (UTC for timestamptz)
        "paid_at": f"{dt.datetime(2024, 1, 2, 3, 4, 5, 123456) + dt.timedelta(days=n)}+00",
        "raw": bytes([0, n, 255]),
        "flag": n % 2 == 0,
        "day": str(dt.date(2024, 2, 29) + dt.timedelta(days=n)),
        "seen": str(dt.datetime(2023, 12, 31, 23, 59, 59, 999999) + dt.timedelta(hours=n)),
        "ratio": n / 8,
        "qty": -n,
    }


def apply(
    sink: SnowflakeSink,
    stage_dir: Path,
    table: TableSchema,
    window: str,
    changes: list[dict[str, Any]],
    *,
    max_lsn: int | None = None,
    truncate: tuple[int, int] | None = None,
) -> ApplyResult:
    rel_path = f"{PIPELINE}/windows/{window}/{table.stage_dir}"
    if changes and not (stage_dir / rel_path).exists():
        stage_window(stage_dir, table, window, changes)
    if max_lsn is None:
        max_lsn = max((c["_CDC_LSN"] for c in changes), default=truncate[0] if truncate else 0)
    sink.ensure_table(table)
    return sink.apply(table, rel_path, window_id=window, max_lsn=max_lsn, truncate=truncate)


def load_tables(connection: Any) -> list[Any]:
    """Transient load tables left in the load schema (the column registry lives there too)."""
    cur = connection.cursor()
    cur.execute(f"SHOW TABLES IN SCHEMA {DATABASE}.{LOAD_SCHEMA}")
    return [row for row in cur.fetchall() if row[1] != "_CDC_COLUMNS"]


def window(n: int) -> str:
    return f"{n * 0x10000:016X}-{(n + 1) * 0x10000:016X}"


# --- behaviour --------------------------------------------------------------------------------


def test_inserts_updates_and_deletes_leave_the_latest_change_per_key(
    sink: SnowflakeSink, stage_dir: Path, connection: Any
) -> None:
    t = orders("t_basic")
    i1, i2, i3 = (
        ch("I", 100, 0, **full(1, 1, 1)),
        ch("I", 100, 1, **full(1, 2, 2)),
        ch("I", 110, 2, **full(2, 1, 3)),
    )
    assert apply(sink, stage_dir, t, window(1), [i1, i2, i3]) == ApplyResult(3, 3, 0, 0)
    assert current(sink, t) == expected(t, target_row(t, i1), target_row(t, i2), target_row(t, i3))

    u1 = ch("U", 200, 0, **full(1, 1, 4))
    nulls = {c.name: None for c in t.columns if c.name not in t.key}
    u1_nulls = ch("U", 210, 1, **{**full(1, 1, 5), **nulls})  # NULL is a value, not "unchanged"
    d2 = ch("D", 210, 2, tenant=1, id=2)
    i4 = ch("I", 220, 3, **full(3, 1, 6))
    assert apply(sink, stage_dir, t, window(2), [u1, u1_nulls, d2, i4]) == ApplyResult(4, 1, 1, 1)
    assert current(sink, t) == expected(t, target_row(t, u1_nulls), target_row(t, i3), target_row(t, i4))
    assert load_tables(connection) == []


def test_key_change_deletes_the_old_key_and_inserts_the_new(sink: SnowflakeSink, stage_dir: Path) -> None:
    t = orders("t_keychange")
    i1, i2 = ch("I", 100, 0, **full(1, 1, 1)), ch("I", 100, 1, **full(1, 2, 2))
    apply(sink, stage_dir, t, window(1), [i1, i2])

    old = ch("D", 300, 0, tenant=1, id=1)
    new = ch("U", 300, 1, **full(1, 5, 7))
    assert apply(sink, stage_dir, t, window(2), [old, new]) == ApplyResult(2, 1, 0, 1)
    assert current(sink, t) == expected(t, target_row(t, i2), target_row(t, new))


def test_update_without_toast_columns_keeps_the_target_values(sink: SnowflakeSink, stage_dir: Path) -> None:
    t = orders("t_toast")
    i1 = ch("I", 100, 0, **full(1, 1, 1))
    apply(sink, stage_dir, t, window(1), [i1])

    left_out = {"note": None, "doc": None, "raw": None}
    u1 = ch("U", 400, 0, unchanged=(3, 4, 7), **{**full(1, 1, 2), **left_out})
    assert apply(sink, stage_dir, t, window(2), [u1]) == ApplyResult(1, 0, 1, 0)
    kept = {k: i1[k] for k in left_out}
    assert current(sink, t) == expected(t, target_row(t, u1, **kept))

    # a toastable column an update did send is applied, even as NULL
    u2 = ch("U", 500, 0, unchanged=(4, 7), **{**full(1, 1, 3), **left_out})
    apply(sink, stage_dir, t, window(3), [u2])
    assert current(sink, t) == expected(t, target_row(t, u2, doc=i1["doc"], raw=i1["raw"]))


def test_unchanged_toast_takes_the_latest_value_sent_in_the_same_window(
    sink: SnowflakeSink, stage_dir: Path
) -> None:
    t = orders("t_toast_window")
    i1 = ch("I", 100, 0, **full(1, 1, 1))
    apply(sink, stage_dir, t, window(1), [i1])

    left_out = {"note": None, "doc": None, "raw": None}
    u1 = ch("U", 200, 0, **full(1, 1, 2))  # sends new TOAST values
    u1_again = ch("U", 210, 1, unchanged=(3, 4, 7), **{**full(1, 1, 3), **left_out})
    i2 = ch("I", 220, 2, **full(1, 2, 4))  # inserted and then updated in the same window
    u2 = ch("U", 230, 3, unchanged=(3, 4, 7), **{**full(1, 2, 5), **left_out})
    u2_note = ch("U", 240, 4, unchanged=(4, 7), **{**full(1, 2, 6), "doc": None, "raw": None})
    assert apply(sink, stage_dir, t, window(2), [u1, u1_again, i2, u2, u2_note]) == ApplyResult(5, 1, 1, 0)
    assert current(sink, t) == expected(
        t,
        target_row(t, u1_again, note=u1["note"], doc=u1["doc"], raw=u1["raw"]),
        target_row(t, u2_note, doc=i2["doc"], raw=i2["raw"]),
    )


def test_truncate_then_inserts_in_the_same_window(sink: SnowflakeSink, stage_dir: Path) -> None:
    t = orders("t_truncate")
    before = [ch("I", 100, n, **full(1, n + 1, n + 1)) for n in range(3)]  # keys (1,1) (1,2) (1,3)
    apply(sink, stage_dir, t, window(1), before)

    gone = ch("U", 500, 0, **full(1, 1, 9))  # same transaction, before the TRUNCATE: discarded
    # TRUNCATE at (lsn 500, seq 1)
    again = ch("I", 500, 2, **full(1, 2, 10))
    fresh = ch("I", 510, 3, **full(1, 4, 11))
    fresh_u = ch("U", 520, 4, unchanged=(3,), **{**full(1, 4, 12), "note": None})
    changes = [gone, again, fresh, fresh_u]
    result = apply(sink, stage_dir, t, window(2), changes, truncate=(500, 1))
    assert result == ApplyResult(4, inserted=1, updated=1, deleted=2)
    after = expected(t, target_row(t, again), target_row(t, fresh_u, note=fresh["note"]))
    assert current(sink, t) == after

    # a window holding only a truncate has no parts: the COPY loads nothing, the target empties
    assert apply(sink, stage_dir, t, window(3), [], truncate=(600, 0)) == ApplyResult(0, 0, 0, 2)
    assert current(sink, t) == []


def test_rows_past_max_lsn_are_ignored(sink: SnowflakeSink, stage_dir: Path) -> None:
    t = orders("t_maxlsn")
    i1, cut = ch("I", 700, 0, **full(1, 1, 1)), ch("I", 800, 1, **full(1, 2, 2))
    late_u = ch("U", 800, 2, **full(1, 1, 3))
    assert apply(sink, stage_dir, t, window(1), [i1, cut, late_u], max_lsn=799) == ApplyResult(3, 1, 0, 0)
    assert current(sink, t) == expected(t, target_row(t, i1))


def test_reapplying_a_window_changes_nothing(sink: SnowflakeSink, stage_dir: Path) -> None:
    t = orders("t_reapply")
    first = [ch("I", 100, n, **full(1, n + 1, n + 1)) for n in range(4)]
    apply(sink, stage_dir, t, window(1), first)
    second = [
        ch("U", 200, 0, unchanged=(3, 4, 7), **{**full(1, 1, 7), "note": None, "doc": None, "raw": None}),
        ch("D", 200, 1, tenant=1, id=2),
        ch("I", 210, 3, **full(1, 9, 8)),
    ]
    apply(sink, stage_dir, t, window(2), second, truncate=(200, 2))  # (1,3) and (1,4) go
    rows = sink.fetch_table(t)
    assert [(r["tenant"], r["id"]) for r in rows] == [(1, 9)]

    # the engine crashed before its checkpoint: the same window comes again
    assert apply(sink, stage_dir, t, window(2), second, truncate=(200, 2)) == ApplyResult(3, 0, 0, 0)
    assert sink.fetch_table(t) == rows  # _CDC_SYNCED_AT included: nothing was touched


ODD = TableSchema(
    "My Schema",
    'Odd "T" tbl',
    (
        Column("Mixed Case", 1, "integer", 23, nullable=False),
        Column("select", 2, "text", 25, toastable=True),
        Column('q"uote', 3, "text", 25),
        Column("a;b", 4, "jsonb", 3802),
        Column("naïve", 5, "numeric(5,1)", 1700),
        Column('x"); DROP TABLE t; --', 6, "integer", 23),
    ),
    ("Mixed Case",),
)


def test_odd_identifiers_replicate_with_their_exact_spelling(
    sink: SnowflakeSink, stage_dir: Path, connection: Any
) -> None:
    def values(key: int, n: int) -> dict[str, Any]:
        return {
            "Mixed Case": key,
            "select": f"sel {n}",
            'q"uote': f'it\'s "{n}"',
            "a;b": json.dumps({"k": n}),
            "naïve": Decimal(f"{n}.5"),
            'x"); DROP TABLE t; --': n,
        }

    i1, i2 = ch("I", 100, 0, **values(1, 1)), ch("I", 100, 1, **values(2, 2))
    assert apply(sink, stage_dir, ODD, window(1), [i1, i2]) == ApplyResult(2, 2, 0, 0)
    u1 = ch("U", 200, 0, unchanged=(2,), **{**values(1, 3), "select": None})
    d2 = ch("D", 200, 1, {"Mixed Case": 2})
    assert apply(sink, stage_dir, ODD, window(2), [u1, d2]) == ApplyResult(2, 0, 1, 1)
    assert current(sink, ODD) == expected(ODD, target_row(ODD, u1, select=i1["select"]))

    cur = connection.cursor()
    cur.execute(f'SELECT COUNT(*) FROM {DATABASE}."My Schema"."Odd ""T"" tbl"')
    assert cur.fetchone() == (1,)
    cur.execute(
        f'SELECT "Mixed Case", "SELECT", "q""uote", "naïve" FROM {DATABASE}."My Schema"."Odd ""T"" tbl"'
    )
    assert cur.fetchall() == [(1, "sel 1", 'it\'s "3"', Decimal("3.5"))]


def test_rejected_merge_raises_merge_error_and_drops_the_load_table(
    sink: SnowflakeSink, stage_dir: Path, connection: Any
) -> None:
    t = orders("t_broken")
    narrow = TableSchema(t.schema, t.name, t.columns[:2], t.key)  # target lacks the other columns
    sink.ensure_table(narrow)
    stage_window(stage_dir, t, window(1), [ch("I", 100, 0, **full(1, 1, 1))])
    rel_path = f"{PIPELINE}/windows/{window(1)}/{t.stage_dir}"
    with pytest.raises(MergeError) as info:  # applied without evolving the target first
        sink.apply(t, rel_path, window_id=window(1), max_lsn=100, truncate=None)
    message = str(info.value)
    assert "merge" in message and "t_broken.orders" in message and "checkpoint did not move" in message
    assert load_tables(connection) == []


def test_unsafe_stage_path_is_refused_before_anything_runs(sink: SnowflakeSink, connection: Any) -> None:
    t = orders("t_path")
    with pytest.raises(ValueError, match="stage path"):
        sink.apply(t, f"{PIPELINE}/x/ FILE_FORMAT=(TYPE=CSV)", window_id="w", max_lsn=1, truncate=None)
    assert load_tables(connection) == []


# --- connecting -------------------------------------------------------------------------------


def settings_for(host: str, port: int) -> Settings:
    return settings_load(
        None,
        env={},
        overrides={
            "pipeline": PIPELINE,
            "source_host": "localhost",
            "source_database": "src",
            "source_sslmode": "disable",
            "vault_addr": "http://127.0.0.1:8200",
            "vault_token": "t",
            "vault_source_path": "cdc/source",
            "vault_snowflake_path": "cdc/snowflake",
            "snowflake_account": "fakesnow",
            "snowflake_host": host,
            "snowflake_port": port,
            "snowflake_protocol": "http",
            "snowflake_database": DATABASE,
            "snowflake_stage": STAGE,
            "stage_url": "file:///tmp/unused",
            "checkpoint_table": "cdc",
        },
    )


def test_connect_from_settings_reaches_the_stand_in(connection: Any) -> None:
    port = connection.port  # the stand-in the module fixture started
    sink = SnowflakeSink.connect(settings_for("127.0.0.1", port), "cdc_user", "pw")
    try:
        t = orders("t_connect")
        sink.ensure_table(t)
        assert sink.fetch_table(t) == []
    finally:
        sink.close()


def test_unreachable_snowflake_is_transient_and_hides_the_password() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SinkUnavailable) as info:
        SnowflakeSink.connect(settings_for("127.0.0.1", port), "cdc_user", "s3cret-pw", login_timeout=3)
    assert "s3cret-pw" not in str(info.value)
    assert "cdc_user" in str(info.value) and "retry" in str(info.value)
    assert isinstance(info.value.__cause__, sf_errors.OperationalError)
