"""Apply staged windows to Snowflake: target DDL, COPY into a transient load table, MERGE.

The connection comes in through the constructor (``SnowflakeSink.connect`` builds one from
settings), so tests hand in one that points at the fakesnow stand-in. Connector errors become the
pipeline's errors here: transient ones (network, timeout, service unavailable) ``SinkUnavailable``,
refused credentials ``AuthError``, rejected SQL ``MergeError`` naming the statement and the table.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import snowflake.connector
from snowflake.connector import errors as sf_errors

from cdc import failpoints
from cdc.errors import AuthError, CdcError, MergeError, PermanentError, SinkUnavailable
from cdc.model import TableSchema
from cdc.settings import Secret, Settings
from cdc.snowflake import evolve, sql
from cdc.snowflake.connect import (
    LOGIN_TIMEOUT_S,
    NETWORK_TIMEOUT_S,
    connect_args,
    load_private_key,
)

__all__ = ["ApplyResult", "SnowflakeSink", "StatementRunner", "map_error"]

log = logging.getLogger(__name__)

# server codes for refused credentials: wrong user or password, locked or disabled user, bad
# key-pair JWT, expired or invalid OAuth token, client IP not allowed
_AUTH_ERRNOS = frozenset({390100, 390101, 390102, 390144, 390303, 390318, 390422})
_ER_FAILED_TO_CONNECT = 250001  # the connector's "could not log in" (403, MFA, login timeout)
# connector codes for a lost or unreachable service: connection closed, request failed, server
# failure, connection timeout, request timeout
_TRANSIENT_ERRNOS = frozenset({250002, 250003, 250005, 251011, 251012})
_TRANSIENT_CLASSES: tuple[type[Exception], ...] = (
    sf_errors.ServiceUnavailableError,
    sf_errors.BadGatewayError,
    sf_errors.GatewayTimeoutError,
    sf_errors.RequestTimeoutError,
    sf_errors.TooManyRequests,
    sf_errors.OtherHTTPRetryableError,
    sf_errors.InternalServerError,
    sf_errors.RequestExceedMaxRetryError,
    OSError,  # socket and requests errors that escape the connector
)

_HINTS = {
    "create schema": "check that the role may create schemas in the database",
    "create table": "check that the role may create tables in the schema and that every column type is valid",
    "create load table": "check that the load schema exists and the role may create tables in it",
    "copy": "check that the stage points at the stage root and the Parquet parts match the load table",
    "merge": "the window was not applied and the checkpoint did not move; fix the target table "
    "(missing or retyped columns) or report the statement as a bug",
    "fetch": "check that the target table exists and the role may read it",
    "describe": "check that the role may read the database's INFORMATION_SCHEMA",
    "add column": "check that the role owns the target table",
    "register columns": "check that the role may create and write tables in the load schema",
    "fill column": "check that the role may update the target table",
    "rename column": "check that the role owns the target table",
    "widen column": "check that the role owns the target table",
}


@dataclass(frozen=True)
class ApplyResult:
    """What one table's apply did: rows COPYed into the load table, and the MERGE's counts."""

    loaded_rows: int
    inserted: int
    updated: int
    deleted: int


def map_error(
    exc: BaseException,
    *,
    action: str,
    hint: str,
    secret: str | None = None,
    rejected: type[PermanentError] = MergeError,
) -> CdcError:
    """A pipeline error for a connector error (``raise map_error(...) from exc``).

    ``action`` says what failed (``merge for table public.orders``), ``hint`` what to do when
    Snowflake rejected it (raised as ``rejected``); ``secret``, if given, is masked should the
    connector's message ever echo it.
    """
    message = _message(exc, secret)
    errno = getattr(exc, "errno", None)
    where = f"Snowflake {action}"
    if isinstance(exc, _TRANSIENT_CLASSES) or errno in _TRANSIENT_ERRNOS:
        return SinkUnavailable(f"{where}: Snowflake is unreachable or busy ({message}); retry later")
    if errno in _AUTH_ERRNOS or isinstance(exc, sf_errors.ForbiddenError):
        return AuthError(
            f"{where}: Snowflake refused the credentials ({message}); check the account, user "
            "and password (or private key, registered as the user's RSA_PUBLIC_KEY) in the Snowflake secret"
        )
    if errno == _ER_FAILED_TO_CONNECT:
        if isinstance(exc, sf_errors.OperationalError):
            return SinkUnavailable(f"{where}: could not reach Snowflake ({message}); retry later")
        return AuthError(
            f"{where}: Snowflake refused the login ({message}); check the account, user and password "
            "(or private key)"
        )
    if isinstance(exc, (sf_errors.OperationalError, sf_errors.InterfaceError)):
        return SinkUnavailable(f"{where}: connection problem ({message}); retry later")
    return rejected(f"{where} was rejected: {message}; {hint}")


class StatementRunner:
    """Where a statement runs: logged at debug level, a connector error turned into the
    pipeline's error that names the statement, the table and (``hints``) what to check. Schemas
    are created once per runner."""

    def __init__(
        self, connection: Any, database: str, pipeline: str, hints: dict[str, str], action_prefix: str = ""
    ) -> None:
        self._conn = connection
        self._database = database
        self._pipeline = pipeline
        self._hints = hints
        self._prefix = action_prefix
        self._schemas: set[str] = set()

    def run(self, text: str, statement: str, table: str) -> Any:
        log.debug("snowflake %s", statement, extra={"pipeline": self._pipeline, "table": table, "sql": text})
        try:
            cur = self._conn.cursor()
            cur.execute(text)
        except Exception as exc:
            raise map_error(
                exc, action=f"{self._prefix}{statement} for table {table}", hint=self._hints[statement]
            ) from exc
        return cur

    def ensure_schema(self, schema_name: str, table: str) -> None:
        if schema_name not in self._schemas:
            self.run(sql.create_schema_sql(self._database, schema_name), "create schema", table)
            self._schemas.add(schema_name)


def _message(exc: BaseException, secret: str | None) -> str:
    text = " ".join((getattr(exc, "msg", None) or str(exc) or type(exc).__name__).split())
    if secret:
        text = text.replace(secret, "***")
    return text


class SnowflakeSink:
    """Loads one table of a staged window into its target table."""

    def __init__(
        self,
        connection: Any,
        *,
        database: str,
        stage: str,
        load_schema: str,
        pipeline: str,
        soft_delete: bool = False,
    ) -> None:
        self._conn = connection
        self.soft_delete = soft_delete
        self._database = database
        self._stage = sql.stage_ref(stage)
        self._load_schema = load_schema
        self._pipeline = pipeline
        self._runner = StatementRunner(connection, database, pipeline, _HINTS)
        self._run = self._runner.run
        self._ensure_schema = self._runner.ensure_schema
        self._tables: dict[tuple[str, str], TableSchema] = {}
        self._registry_ready = False

    @classmethod
    def connect(
        cls,
        settings: Settings,
        user: str,
        password: str | None = None,
        *,
        private_key: Secret | None = None,
        private_key_passphrase: Secret | None = None,
        login_timeout: int = LOGIN_TIMEOUT_S,
        network_timeout: int = NETWORK_TIMEOUT_S,
    ) -> SnowflakeSink:
        """Open a connection as configured: key-pair auth when ``private_key`` (the secret's PEM)
        is given, else ``password``. The credential goes to the connector and nowhere else."""
        args = connect_args(
            settings,
            user,
            password=Secret(password) if password else None,
            private_key=load_private_key(private_key, private_key_passphrase) if private_key else None,
            login_timeout=login_timeout,
            network_timeout=network_timeout,
        )
        where = settings.snowflake_host or f"account {settings.snowflake_account}"
        log.info(
            "connecting to Snowflake",
            extra={"pipeline": settings.pipeline, "host": where, "user": user, "auth": args.auth},
        )
        try:
            conn = snowflake.connector.connect(**args.kwargs())
        except Exception as exc:
            raise map_error(
                exc,
                action=f"login to {where} as {user} ({args.auth.replace('_', ' ')} authentication)",
                hint="check the account, user, role, warehouse and database settings",
                secret=password,
                rejected=AuthError,
            ) from exc
        return cls(
            conn,
            database=settings.snowflake_database,
            stage=settings.snowflake_stage,
            load_schema=settings.snowflake_load_schema,
            pipeline=settings.pipeline,
            soft_delete=settings.delete_mode == "soft",
        )

    @property
    def connection(self) -> Any:
        """The Snowflake connection, for read-only tools (cdc verify) that run their own queries."""
        return self._conn

    def ensure_table(self, table: TableSchema) -> evolve.Evolution:
        """Create the target table, or evolve it to the source schema (added, renamed, widened and
        dropped columns); raises ``SchemaError`` for a change that cannot be applied safely.
        Checked once per sink for each version of the table's schema."""
        if self._tables.get(table.ident) == table:
            return evolve.Evolution()
        self._ensure_schema(table.schema, table.qualified)
        raw = self._registry_raw(table)  # read once: the evolution below never changes its history
        existing = self.describe(table, raw)
        target_fq = sql.target_table(self._database, table)
        if not existing:
            self._run(
                sql.create_target_table_sql(self._database, table, self.soft_delete),
                "create table",
                table.qualified,
            )
            evolution = evolve.Evolution(notes=[f"table {table.qualified}: created {target_fq}"])
        else:
            has_rows = bool(
                self._run(f"SELECT 1 FROM {target_fq} LIMIT 1", "fetch", table.qualified).fetchall()
            )
            evolution = evolve.plan(
                self._database,
                table,
                existing,
                has_rows,
                self.soft_delete,
                pending_fills=evolve.decode_pending_fills(raw),
                recorded_types=evolve.decode_types(raw),
            )
            if evolution.fills:
                # a run that dies before the fill finishes leaves these markers: the next fills again
                marked = evolve.decode_history(raw) + evolve.pending_fill_entries(table, evolution.fills)
                self._write_registry(table, marked)
            for what, text in evolution.statements:
                self._run(text, what, table.qualified)
                failpoints.hit(f"after_{what.replace(' ', '_')}")
        entries = evolve.registry_entries(table, existing, evolve.decode_history(raw), evolution.set_aside)
        self._write_registry(table, entries)
        for note in evolution.notes:
            log.info(note, extra={"pipeline": self._pipeline, "table": table.qualified})
        self._tables[table.ident] = table
        return evolution

    def describe(
        self, table: TableSchema, registry: list[evolve.RegistryRow] | None = None
    ) -> list[evolve.TargetColumn]:
        """The target table's columns (empty when the table does not exist), with the attnum and
        PostgreSQL name the column registry (``registry``: its rows, read here when not given)
        knows for them."""
        rows = self._registry_raw(table) if registry is None else registry
        origins = evolve.decode_registry(rows)
        cur = self._run(evolve.describe_sql(self._database, table), "describe", table.qualified)
        return [
            evolve.TargetColumn(name, data_type, length, precision, scale, origins.get(name))
            for name, data_type, length, precision, scale in cur.fetchall()
        ]

    def column_origins(self, table: TableSchema) -> dict[str, int]:
        """PostgreSQL name (current or former) -> attnum of every column this pipeline created."""
        return {pg: attnum for attnum, pg, _ in self._registry_rows(table)}

    def _registry_rows(self, table: TableSchema) -> list[tuple[int, str, str]]:
        return evolve.decode_history(self._registry_raw(table))

    def _registry_raw(self, table: TableSchema) -> list[evolve.RegistryRow]:
        self._ensure_registry(table)
        return list(
            self._run(
                evolve.registry_read_sql(self._database, self._load_schema, table),
                "register columns",
                table.qualified,
            ).fetchall()
        )

    def _write_registry(self, table: TableSchema, entries: list[tuple[int, str, str]]) -> None:
        for text in evolve.registry_write_sql(self._database, self._load_schema, table, entries):
            self._run(text, "register columns", table.qualified)

    def _ensure_registry(self, table: TableSchema) -> None:
        if not self._registry_ready:
            for text in evolve.registry_create_sql(self._database, self._load_schema):
                self._run(text, "register columns", table.qualified)
            self._registry_ready = True

    def apply(
        self,
        table: TableSchema,
        rel_path: str,
        *,
        window_id: str,
        max_lsn: int,
        truncate: tuple[int, int] | None,
        min_lsn: int | None = None,
    ) -> ApplyResult:
        """COPY the table's parts under ``rel_path`` into a fresh load table and MERGE it
        (``min_lsn``: see ``sql.merge_sql``).

        The truncate (``(lsn, seq)``) and the changes are applied by one MERGE statement, so the
        target moves atomically; the load table is dropped whatever happens.
        """
        name = table.qualified
        fields = {"pipeline": self._pipeline, "window_id": window_id, "table": name}
        load_name = sql.load_table_name(self._pipeline, window_id, table)
        load_fq = sql.qualified(self._database, self._load_schema, load_name)
        target_fq = sql.target_table(self._database, table)
        create = sql.create_load_table_sql(self._database, self._load_schema, load_name, table)
        copy = sql.copy_sql(load_fq, self._stage, rel_path)
        self._ensure_schema(self._load_schema, name)
        try:
            self._run(create, "create load table", name)
            loaded = _copied_rows(self._run(copy, "copy", name), name, rel_path)
            # fill only the columns some update left out (none: no join back to the target)
            omitted = sql.omitted_attnums(self._run(sql.omitted_sql(load_fq), "merge", name).fetchall())
            merge = sql.merge_sql(
                target_fq,
                load_fq,
                table,
                max_lsn=max_lsn,
                truncate=truncate,
                soft_delete=self.soft_delete,
                omitted=omitted,
                min_lsn=min_lsn,
            )
            failpoints.hit_soon("during_merge", 0.02)
            counts = _merge_counts(self._run(merge, "merge", name))
        finally:
            self._drop(load_fq, fields)
        result = ApplyResult(loaded, counts["inserted"], counts["updated"], counts["deleted"])
        log.info(
            "applied %s: %d rows loaded, %d inserted, %d updated, %d deleted",
            name,
            result.loaded_rows,
            result.inserted,
            result.updated,
            result.deleted,
            extra={**fields, "lsn": max_lsn, "truncate": truncate},
        )
        return result

    def fetch_table(self, table: TableSchema) -> list[dict[str, Any]]:
        """Every target row ordered by key, keyed by source column names and metadata names."""
        cur = self._run(
            sql.select_table_sql(self._database, table, self.soft_delete), "fetch", table.qualified
        )
        columns = sql.fetch_columns(table, self.soft_delete)
        flagged = [i for i, (_, _, ts) in enumerate(columns) if ts]
        rows = []
        for raw in cur.fetchall():
            values = list(raw[: len(columns)])
            for i, is_null in zip(flagged, raw[len(columns) :], strict=True):
                if is_null:
                    values[i] = None
            rows.append({key: value for (key, _, _), value in zip(columns, values, strict=True)})
        return rows

    def close(self) -> None:
        try:
            self._conn.close()
        except Exception as exc:  # closing a dead connection must not hide the real outcome
            log.warning(
                "closing the Snowflake connection failed: %s",
                _message(exc, None),
                extra={"pipeline": self._pipeline},
            )

    def _drop(self, load_fq: str, fields: dict[str, str]) -> None:
        try:
            self._conn.cursor().execute(sql.drop_table_sql(load_fq))
        except Exception as exc:  # a leftover transient table costs little; the apply's outcome stands
            log.warning(
                "could not drop load table %s: %s (drop it by hand)",
                load_fq,
                _message(exc, None),
                extra=fields,
            )


def _copied_rows(cur: Any, table: str, rel_path: str) -> int:
    """Rows the COPY loaded; any file not fully loaded is an error (0 files is an empty table)."""
    columns = [d[0].lower() for d in cur.description or ()]
    rows = cur.fetchall()
    if "rows_loaded" not in columns:
        return 0
    status, loaded, file_ = columns.index("status"), columns.index("rows_loaded"), columns.index("file")
    bad = [f"{row[file_]} ({row[status]})" for row in rows if str(row[status]).upper() != "LOADED"]
    if bad:
        raise MergeError(
            f"Snowflake copy for table {table} from {rel_path}/ did not load every part: "
            f"{', '.join(bad)}; check the parts and re-run the window"
        )
    return sum(int(row[loaded] or 0) for row in rows)


def _merge_counts(cur: Any) -> dict[str, int]:
    """The MERGE's result row: ``number of rows inserted/updated/deleted`` (absent means 0)."""
    columns = [d[0].lower() for d in cur.description or ()]
    row = cur.fetchone() or ()
    counts = {"inserted": 0, "updated": 0, "deleted": 0}
    for name, value in zip(columns, row, strict=False):
        for op in counts:
            if name == f"number of rows {op}":
                counts[op] = int(value or 0)
    return counts
