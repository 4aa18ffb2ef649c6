"""Load one staged snapshot table into Snowflake and swap it in, never showing a half-loaded table.

Runs the builders of ``cdc.snowflake.snapshot_sql`` on a Snowflake connection (the sink's). Steps
for table T with snapshot token K:

1. drop leftovers ``T__CDC_NEW_*`` / ``T__CDC_OLD_*`` of earlier snapshots that died, then create
   ``T__CDC_NEW_K`` with the target's DDL;
2. COPY the staged parts into a transient load table; its row count must equal the rows the
   copy staged (a missing or extra part fails here);
3. INSERT ... SELECT into the new table (load expressions: json -> VARIANT, ...); count again;
4. create T if it does not exist yet, then swap (``swap_strategy``: "swap" on Snowflake,
   "rename" on the fakesnow stand-in, see ``snapshot_sql``) and drop the retired rows;
5. rewrite the sink's column registry for T (its columns are now exactly the source's).

Any failure before the swap drops the new and the load table and leaves T as it was; the swap
itself is one statement (or one transaction, rolled back, on the stand-in).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from cdc.errors import CdcError, MergeError
from cdc.model import StagedTable, TableSchema
from cdc.settings import Settings
from cdc.snowflake import evolve, sql
from cdc.snowflake import snapshot_sql as ssql
from cdc.snowflake.sink import StatementRunner

__all__ = ["LoadResult", "SnapshotLoader"]

log = logging.getLogger(__name__)

_HINTS = {
    "create schema": "check that the role may create schemas in the database",
    "find leftovers": "check that the role may read the database's INFORMATION_SCHEMA",
    "drop leftover": "drop the table by hand; check that the role owns it",
    "create new table": "check that the role may create tables in the target schema",
    "create load table": "check that the load schema exists and the role may create tables in it",
    "copy": "check that the stage points at the stage root and the snapshot's parts are complete",
    "count": "check that the role may read the new table",
    "insert": "the snapshot was not swapped in; check the load expressions of the table's column types",
    "create table": "check that the role may create tables in the target schema",
    "swap": "the previous target is still in place; check that the role owns both tables",
    "register columns": "check that the role may create and write tables in the load schema",
}


@dataclass(frozen=True)
class LoadResult:
    table: str  # schema.table in the source
    target: str  # the target table, fully qualified
    rows: int
    strategy: str
    seconds: float


class SnapshotLoader:
    """Loads staged snapshot tables through ``connection`` (a Snowflake DB-API connection)."""

    def __init__(
        self,
        connection: Any,
        *,
        database: str,
        stage: str,
        load_schema: str,
        pipeline: str,
        swap_strategy: str = "swap",
        soft_delete: bool = False,
    ) -> None:
        if swap_strategy not in ssql.SWAP_STRATEGIES:
            raise ValueError(f"swap_strategy must be one of {ssql.SWAP_STRATEGIES}, got {swap_strategy!r}")
        self._conn = connection
        self._database = database
        self._stage = sql.stage_ref(stage)
        self._load_schema = load_schema
        self._pipeline = pipeline
        self.swap_strategy = swap_strategy
        self.soft_delete = soft_delete
        self._runner = StatementRunner(connection, database, pipeline, _HINTS, action_prefix="snapshot ")
        self._run = self._runner.run
        self._ensure_schema = self._runner.ensure_schema

    @classmethod
    def from_settings(cls, connection: Any, settings: Settings, swap_strategy: str) -> SnapshotLoader:
        return cls(
            connection,
            database=settings.snowflake_database,
            stage=settings.snowflake_stage,
            load_schema=settings.snowflake_load_schema,
            pipeline=settings.pipeline,
            swap_strategy=swap_strategy,
            soft_delete=settings.delete_mode == "soft",
        )

    def load(self, staged: StagedTable, rel_path: str, *, token: str) -> LoadResult:
        """Load ``staged`` (its parts under ``rel_path`` in the stage) and swap it in as the target."""
        started = time.monotonic()
        table = staged.table
        name = table.qualified
        fields = {"pipeline": self._pipeline, "table": name, "snapshot": token}
        target_fq = sql.target_table(self._database, table)
        new_fq = ssql.side_table_fq(self._database, table, ssql.NEW_TAG, token)
        old_fq = ssql.side_table_fq(self._database, table, ssql.OLD_TAG, token)
        load_name = sql.load_table_name(self._pipeline, f"snapshot-{token}", table)
        load_fq = sql.qualified(self._database, self._load_schema, load_name)
        self._ensure_schema(table.schema, name)
        self._ensure_schema(self._load_schema, name)
        self.drop_leftovers(table)
        swapped = False
        try:
            self._run(
                ssql.create_side_table_sql(self._database, table, token, self.soft_delete),
                "create new table",
                name,
            )
            if staged.rows:
                self._run(
                    sql.create_load_table_sql(self._database, self._load_schema, load_name, table),
                    "create load table",
                    name,
                )
                self._run(sql.copy_sql(load_fq, self._stage, rel_path), "copy", name).fetchall()
                self._expect(load_fq, staged.rows, name, f"the load table after the COPY from {rel_path}/")
                self._run(ssql.insert_snapshot_sql(new_fq, load_fq, table, self.soft_delete), "insert", name)
                self._drop(load_fq, fields)
            self._expect(new_fq, staged.rows, name, "the new table")
            self._run(
                sql.create_target_table_sql(self._database, table, self.soft_delete), "create table", name
            )
            self._swap(target_fq, new_fq, old_fq, name)
            swapped = True
        finally:
            if not swapped:
                self._drop(load_fq, fields)
                self._drop(new_fq, fields)
        self._drop(ssql.retired_table(self.swap_strategy, new_fq, old_fq), fields)
        self._register(table)
        result = LoadResult(name, target_fq, staged.rows, self.swap_strategy, time.monotonic() - started)
        log.info(
            "snapshot of %s swapped in: %d rows (%s)",
            name,
            result.rows,
            self.swap_strategy,
            extra={**fields, "rows": result.rows, "seconds": round(result.seconds, 3)},
        )
        return result

    def drop_leftovers(self, table: TableSchema) -> list[str]:
        """Drop side tables of ``table`` left by snapshots that died; return their names."""
        rows = self._run(ssql.leftover_tables_sql(self._database, table), "find leftovers", table.qualified)
        names = [str(r[0]) for r in rows.fetchall()]
        for found in names:
            ref = ssql.side_table_ref(self._database, table, found)
            log.warning(
                "dropping %s, left by a snapshot that did not finish",
                ref,
                extra={"pipeline": self._pipeline, "table": table.qualified},
            )
            self._run(sql.drop_table_sql(ref), "drop leftover", table.qualified)
        return names

    def _swap(self, target_fq: str, new_fq: str, old_fq: str, name: str) -> None:
        statements = ssql.swap_statements(self.swap_strategy, target_fq, new_fq, old_fq)
        try:
            for text in statements:
                self._run(text, "swap", name)
        except CdcError:
            if statements[0] == "BEGIN":
                self._rollback(name)
            raise

    def _expect(self, fq: str, rows: int, name: str, what: str) -> None:
        found = self._run(ssql.count_rows_sql(fq), "count", name).fetchone()
        count = int(found[0]) if found else -1
        if count != rows:
            raise MergeError(
                f"snapshot of table {name}: {what} has {count} rows, the snapshot staged {rows}; "
                "the previous target is still in place. Check the staged parts, then run the snapshot again"
            )

    def _register(self, table: TableSchema) -> None:
        statements = evolve.registry_create_sql(self._database, self._load_schema)
        statements += evolve.registry_write_sql(
            self._database, self._load_schema, table, evolve.registry_entries(table, [])
        )
        for text in statements:
            self._run(text, "register columns", table.qualified)

    def _rollback(self, name: str) -> None:
        try:
            self._conn.cursor().execute("ROLLBACK")
        except Exception:  # the connection is gone: the server rolls the transaction back
            log.warning("rollback after a failed swap failed", exc_info=True, extra={"table": name})

    def _drop(self, fq: str, fields: dict[str, str]) -> None:
        try:
            self._conn.cursor().execute(sql.drop_table_sql(fq))
        except Exception as exc:  # the snapshot's outcome stands; the next one drops it as a leftover
            log.warning("could not drop %s: %s", fq, exc, extra=fields)
