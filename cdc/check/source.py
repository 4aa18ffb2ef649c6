"""Preflight checks of the source database (see ``cdc.check``): nothing is written and no slot of the
pipeline is touched; wal2json is proven with a temporary slot that goes away with the session."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg2
import psycopg2.extras

from cdc.check import CheckFailed, Checks
from cdc.errors import SchemaError
from cdc.settings import Settings, parse_keys
from cdc.source.catalog import SYSTEM_SCHEMA_FILTER, load_catalog
from cdc.source.slot import SESSION_OPTIONS, classify_error
from cdc.source.wal2json import WAL2JSON_OPTIONS

MIN_VERSION = 130000  # pg_replication_slots.wal_status and pg_partition_root
PROBE_TIMEOUT = "10s"  # creating a logical slot waits for running transactions to end

_RELATIONS_SQL = f"""
SELECT n.nspname, c.relname, c.relreplident, has_table_privilege(c.oid, 'SELECT')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND {SYSTEM_SCHEMA_FILTER}
"""
_IDENTITY = {"d": "default (the primary key)", "f": "full", "i": "using index", "n": "nothing"}


def _quoted(table: Any) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in (table.schema, table.name))


def _one(conn: Any, text: str, args: tuple[Any, ...] = ()) -> tuple[Any, ...]:
    with conn.cursor() as cur:
        cur.execute(text, args)
        row = cur.fetchone()
        return tuple(row) if row is not None else ()


def check_postgres(checks: Checks, settings: Settings, secrets: Any) -> None:
    from cdc.app import source_params

    params = source_params(settings, secrets)
    where = f"{settings.source_host}:{settings.source_port}/{settings.source_database}"
    conns: list[Any] = []

    def login() -> str:
        try:
            conn = psycopg2.connect(**params, options=SESSION_OPTIONS)
        except psycopg2.Error as exc:
            raise classify_error(exc, f"connecting to {where}") from exc
        conn.autocommit = True
        conns.append(conn)
        tls = _one(conn, "SELECT ssl, version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        secure = f"TLS {tls[1]} ({tls[2]})" if tls and tls[0] else "no TLS"
        return f"connected to {where} as {params['user']}, {secure}, sslmode {settings.source_sslmode}"

    if not checks.run(
        "postgres.login",
        login,
        "check source_host/source_port/source_database, the user and password in Vault at "
        f"{settings.vault_kv_mount}/{settings.vault_source_path}, the server's pg_hba.conf (or security "
        "group) and source_sslmode/source_sslrootcert",
    ):
        checks.skip("postgres.server", "needs a PostgreSQL login")
        return
    conn = conns[0]
    try:
        _server(checks, conn, params["user"])
        _replication(checks, settings, params)
        slot = _slot(checks, conn, settings)
        _wal2json(checks, conn, slot)
        _tables(checks, conn, settings, params["user"])
    finally:
        conn.close()


def _server(checks: Checks, conn: Any, user: str) -> None:
    def version() -> str:
        number, text = _one(conn, "SELECT current_setting('server_version_num')::int, version()")
        if number < MIN_VERSION:
            raise CheckFailed(f"server is {text.split(',')[0]}; the pipeline needs PostgreSQL 13 or later")
        return text.split(",")[0]

    checks.run("postgres.version", version, "upgrade the server (Aurora PostgreSQL 13 or later)")

    def wal_level() -> str:
        level, senders, slots = _one(
            conn,
            "SELECT current_setting('wal_level'), current_setting('max_wal_senders')::int, "
            "current_setting('max_replication_slots')::int",
        )
        if level != "logical":
            raise CheckFailed(f"wal_level is {level}: logical decoding needs wal_level = logical")
        if senders < 1 or slots < 1:
            raise CheckFailed(
                f"max_wal_senders is {senders} and max_replication_slots {slots}: both must be at least 1"
            )
        return f"wal_level logical, max_wal_senders {senders}, max_replication_slots {slots}"

    checks.run(
        "postgres.wal_level",
        wal_level,
        "set wal_level = logical (Aurora: rds.logical_replication = 1 in the DB cluster parameter group) "
        "with max_wal_senders and max_replication_slots above 0, then restart the server",
    )

    def privilege() -> str:
        replication, superuser, rds = _one(
            conn,
            "SELECT r.rolreplication, r.rolsuper, EXISTS (SELECT 1 FROM pg_roles g WHERE "
            "g.rolname = 'rds_replication' AND pg_has_role(current_user, g.oid, 'MEMBER')) "
            "FROM pg_roles r WHERE r.rolname = current_user",
        )
        how = [
            n
            for n, has in (("REPLICATION", replication), ("superuser", superuser), ("rds_replication", rds))
            if has
        ]
        if not how:
            raise CheckFailed(
                f"user {user} has neither the REPLICATION attribute nor the rds_replication role"
            )
        return f"user {user} may replicate ({', '.join(how)})"

    checks.run(
        "postgres.replication_privilege",
        privilege,
        f"ALTER ROLE {user} REPLICATION (on Aurora: GRANT rds_replication TO {user})",
    )


def _replication(checks: Checks, settings: Settings, params: dict[str, Any]) -> None:
    def step() -> str:
        try:
            conn = psycopg2.connect(
                **params,
                options=SESSION_OPTIONS,
                connection_factory=psycopg2.extras.LogicalReplicationConnection,
            )
        except psycopg2.Error as exc:
            raise classify_error(exc, "opening a replication connection") from exc
        try:
            with conn.cursor() as cur:
                cur.execute("IDENTIFY_SYSTEM")
                _system, timeline, position, dbname = cur.fetchone()
        finally:
            conn.close()
        return f"replication connection to {dbname}: timeline {timeline}, WAL at {position}"

    checks.run(
        "postgres.replication_connection",
        step,
        "allow replication connections for the user: pg_hba.conf must admit it to the database (logical "
        "replication connections match the database name), max_wal_senders must have a free sender",
    )


def _slot(checks: Checks, conn: Any, settings: Settings) -> tuple[Any, ...]:
    """The pipeline slot's row (empty when it does not exist)."""
    name, database = settings.source_slot, settings.source_database
    found: list[tuple[Any, ...]] = []

    def step() -> str:
        row = _one(
            conn,
            "SELECT slot_type, plugin, database, active_pid, confirmed_flush_lsn::text, restart_lsn::text, "
            "wal_status, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint "
            "FROM pg_replication_slots WHERE slot_name = %s",
            (name,),
        )
        if not row:
            used, most = _one(
                conn,
                "SELECT count(*), current_setting('max_replication_slots')::int FROM pg_replication_slots",
            )
            if used >= most:
                raise CheckFailed(
                    f"slot {name} does not exist and all {most} replication slots are in use",
                    "raise max_replication_slots or drop an unused slot",
                )
            return (
                f"slot {name} does not exist yet: the first window creates it ({used} of {most} slots used)"
            )
        found.append(row)
        kind, plugin, slot_db, pid, confirmed, restart, wal_status, retained = row
        owned = "set source_slot (CDC_SOURCE_SLOT) to a free name, or drop the slot if nothing uses it"
        if kind != "logical":
            raise CheckFailed(f"slot {name} exists but is a {kind} slot: another tool uses this name", owned)
        if plugin != "wal2json":
            raise CheckFailed(f"slot {name} exists with output plugin {plugin}, not wal2json", owned)
        if slot_db != database:
            raise CheckFailed(f"slot {name} exists in database {slot_db}, not {database}", owned)
        state = (
            "invalidated (wal_status lost): the next window drops it and snapshots"
            if wal_status == "lost"
            else f"wal_status {wal_status}"
        )
        active = f"in use by pid {pid}" if pid else "not in use"
        return (
            f"slot {name} (wal2json): confirmed {confirmed}, restart {restart}, {state}, "
            f"retains {retained} bytes of WAL, {active}"
        )

    checks.run("postgres.slot", step, "see the detail")
    return found[0] if found else ()


def _wal2json(checks: Checks, conn: Any, slot: tuple[Any, ...]) -> None:
    if slot and slot[1] == "wal2json":
        checks.add("postgres.wal2json", "ok", "the pipeline's slot decodes with wal2json")
        return

    def step() -> str:
        probe = f"cdc_check_{uuid.uuid4().hex[:12]}"
        options = [v for pair in WAL2JSON_OPTIONS.items() for v in pair]
        try:
            with conn.cursor() as cur:
                cur.execute(f"SET statement_timeout = '{PROBE_TIMEOUT}'")
                try:
                    cur.execute("SELECT pg_create_logical_replication_slot(%s, 'wal2json', true)", (probe,))
                    cur.execute(
                        "SELECT count(*) FROM pg_logical_slot_peek_changes(%s, NULL, 1, VARIADIC %s)",
                        (probe, options),
                    )
                    cur.execute("SELECT pg_drop_replication_slot(%s)", (probe,))
                finally:
                    cur.execute("RESET statement_timeout")
        except psycopg2.errors.QueryCanceled as exc:
            raise CheckFailed(
                f"a temporary wal2json slot could not be created within {PROBE_TIMEOUT}: a long-running "
                "transaction holds slot creation back",
                "run the check again when it has ended (the first window waits for it the same way)",
            ) from exc
        except psycopg2.Error as exc:
            text = str(exc).strip().splitlines()[0]
            if "could not access file" in text or "wal2json" in text and "not" in text:
                raise CheckFailed(
                    f"the server cannot load wal2json: {text}",
                    "install the wal2json output plugin (Aurora and RDS ship it; on Debian the package "
                    "postgresql-15-wal2json)",
                ) from exc
            raise classify_error(exc, "creating a temporary wal2json slot") from exc
        return f"wal2json loads and accepts the pipeline's options ({', '.join(WAL2JSON_OPTIONS)})"

    checks.run(
        "postgres.wal2json",
        step,
        "install wal2json 2.x on the server; creating the probe slot also needs the replication privilege "
        "and a free replication slot",
    )


def _tables(checks: Checks, conn: Any, settings: Settings, user: str) -> None:
    from cdc.snowflake.sql import target_columns

    configured = parse_keys(settings.source_keys)
    catalog = load_catalog(conn, settings.source_tables, configured)
    with conn.cursor() as cur:
        cur.execute(_RELATIONS_SQL)
        relations = {(s, t): (ident, select) for s, t, ident, select in cur.fetchall()}
    if not catalog.tables and not catalog.refused:  # every user table is replicated: there is none yet
        checks.add(
            "postgres.tables",
            "ok",
            f"no user table in {settings.source_database} yet: tables created later are picked up",
        )
        return
    for (schema, name), reason in sorted(catalog.refused.items()):
        # no key, REPLICA IDENTITY NOTHING, a key or name that does not fit, a colliding target
        checks.add(f"postgres.table {schema}.{name}", "failed", reason, catalog.fixes.get((schema, name)))
    for ident, table in sorted(catalog.tables.items()):
        replident, select = relations.get(ident, ("d", True))

        def step(table: Any = table, replident: str = replident, select: bool = select) -> str:
            if not select:
                raise CheckFailed(
                    f"user {user} may not SELECT from {table.qualified} (snapshots and value lookups "
                    "read it)",
                    f"GRANT SELECT ON {_quoted(table)} TO {user}",
                )
            try:
                target_columns(table)
            except SchemaError as exc:
                raise CheckFailed(str(exc), "rename one of the columns in the source") from exc
            source = (
                "source_keys"
                if table.ident in configured
                else "replica identity index"
                if replident == "i"
                else "primary key"
            )
            return (
                f"key ({', '.join(table.key)}) from the {source}, replica identity {_IDENTITY[replident]}, "
                f"{len(table.columns)} columns, SELECT granted"
            )

        checks.run(f"postgres.table {table.qualified}", step, "see the detail")
