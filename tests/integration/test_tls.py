"""TLS to PostgreSQL: the devstack serves TCP only over TLS with its own CA, and every connection
the pipeline opens (catalog and lookups, the replication stream, the snapshot's exported snapshot
and copy, cdc verify) verifies the server's certificate and host name (sslmode=verify-full)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from helpers import Pipeline

from cdc.app import build_engine, source_params
from cdc.demo import compare_table
from cdc.devstack import tls
from cdc.errors import SourceError
from cdc.secrets import VaultSecrets
from cdc.snapshot.export import create_temporary_snapshot, open_copy_connection
from cdc.source.slot import classify_error
from cdc.verify.run import connect_source


@pytest.fixture
def p(stack: Any) -> Iterator[Pipeline]:
    pipeline = Pipeline(stack)
    with pipeline.conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {pipeline.schema}")
        cur.execute(f"CREATE TABLE {pipeline.schema}.t (id int PRIMARY KEY, note text)")
        cur.execute(f"INSERT INTO {pipeline.schema}.t SELECT i, 'row ' || i FROM generate_series(1, 5) i")
    pipeline.conn.commit()
    pipeline.settings = pipeline.settings.replace(source_tables=(f"{pipeline.schema}.t",))
    pipeline.engine.close()
    pipeline.engine = build_engine(pipeline.settings)
    yield pipeline
    pipeline.close()


@pytest.fixture
def wrong_ca(tmp_path: Path) -> Path:
    cert, _key = tls.new_ca("some other CA")
    path = tmp_path / "other-ca.pem"
    path.write_bytes(tls.pem(cert))
    return path


def tls_of(p: Pipeline, conn: Any) -> tuple[Any, ...]:
    """(ssl, TLS version, backend type, application name) of the server session behind ``conn``."""
    with p.admin.cursor() as cur:
        cur.execute(
            "SELECT s.ssl, s.version, a.backend_type, a.application_name "
            "FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE pid = %s",
            (conn.info.backend_pid,),
        )
        row = cur.fetchone()
    assert row is not None
    return tuple(row)


def test_devstack_config_verifies_the_server_certificate(stack: Any) -> None:
    s = stack.settings
    assert (s.source_sslmode, s.source_sslrootcert) == ("verify-full", stack.env["postgres_ca"])
    assert Path(s.source_sslrootcert).read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    conn = psycopg2.connect(stack.env["postgres_dsn"])
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            assert cur.fetchone() == (True, "TLSv1.3")
    finally:
        conn.close()


def test_every_pipeline_connection_uses_verified_tls(stack: Any, p: Pipeline) -> None:
    params = p.engine.source.conn_params
    assert (params["sslmode"], params["sslrootcert"]) == ("verify-full", stack.env["postgres_ca"])
    result = p.engine.run_window()  # creates the slot with an exported snapshot, copies, loads
    assert (result.status, result.changes) == ("snapshot", 5)
    app = f"cdc-{p.name}"
    plain = p.engine.source._sql()  # the catalog's and the lookups' connection
    assert tls_of(p, plain) == (True, "TLSv1.3", "client backend", app)
    with create_temporary_snapshot(params, f"tls_{p.name}") as snap:
        assert tls_of(p, snap.connection) == (True, "TLSv1.3", "walsender", app)
        copy_conn = open_copy_connection(params)
        try:
            assert tls_of(p, copy_conn) == (True, "TLSv1.3", "client backend", app)
        finally:
            copy_conn.close()
    verify_conn = connect_source(p.settings, VaultSecrets.from_settings(p.settings))
    try:
        assert tls_of(p, verify_conn) == (True, "TLSv1.3", "client backend", app)
    finally:
        verify_conn.close()
    with p.conn.cursor() as cur:
        cur.execute(f"UPDATE {p.schema}.t SET note = 'changed' WHERE id = 2")
    p.conn.commit()
    result = p.engine.run_window()  # the replication stream and the confirm, over TLS as well
    assert (result.status, result.changes) == ("applied", 1)
    table = p.engine.source.catalog().tables[(p.schema, "t")]
    diff = compare_table(p.conn, p.engine, table)
    assert diff.equal and diff.target_rows == 5


def test_wrong_ca_fails_for_good_and_names_the_setting(stack: Any, wrong_ca: Path) -> None:
    p = Pipeline(stack, source_sslrootcert=str(wrong_ca))
    try:
        result = p.engine.run_window()
        assert result.status == "failed"
        assert result.error is not None
        assert (result.error["class"], result.error["kind"]) == ("SourceError", "permanent")
        message = result.error["message"]
        assert "certificate verify failed" in message
        assert "source_sslrootcert (CDC_SOURCE_SSLROOTCERT)" in message
        assert "CA that signed the server certificate" in message
        assert p.engine.last_retries == 0  # permanent: not retried
        assert p.store.load() is None
    finally:
        p.close()


def test_plain_tcp_is_refused_and_says_to_use_tls(stack: Any) -> None:
    dsn = stack.env["postgres_dsn"].replace("sslmode=verify-full", "sslmode=disable")
    with pytest.raises(psycopg2.OperationalError, match="no pg_hba.conf entry .* no encryption"):
        psycopg2.connect(dsn)
    p = Pipeline(stack, source_sslmode="disable")
    try:
        result = p.engine.run_window()
        assert result.error is not None
        assert (result.status, result.error["class"], result.error["kind"]) == (
            "failed",
            "SourceError",
            "permanent",
        )
        assert "accepts this user only over TLS" in result.error["message"]
        assert "set source_sslmode (CDC_SOURCE_SSLMODE) to verify-full" in result.error["message"]
    finally:
        p.close()


def test_host_name_not_in_the_certificate_fails_with_what_to_change(stack: Any) -> None:
    params = source_params(stack.settings, VaultSecrets.from_settings(stack.settings))
    params.update(host="db.example.invalid", hostaddr="127.0.0.1")  # reaches the server by address
    with pytest.raises(psycopg2.OperationalError) as info:
        psycopg2.connect(**params)
    error = classify_error(info.value, "connecting")
    assert isinstance(error, SourceError)
    assert 'does not match host name "db.example.invalid"' in str(error)
    assert "does not hold the name in source_host (CDC_SOURCE_HOST)" in str(error)
    params.update(host="localhost")  # a name the certificate holds
    conn = psycopg2.connect(**params)
    conn.close()


def test_missing_ca_file_is_a_configuration_error(stack: Any, tmp_path: Path) -> None:
    params = source_params(stack.settings, VaultSecrets.from_settings(stack.settings))
    params["sslrootcert"] = str(tmp_path / "missing.pem")
    with pytest.raises(psycopg2.OperationalError) as info:
        psycopg2.connect(**params)
    error = classify_error(info.value, "connecting")
    assert isinstance(error, SourceError)
    assert f'root certificate file "{tmp_path}/missing.pem" does not exist' in str(error)
    assert "must name a readable PEM file of CA certificates" in str(error)
