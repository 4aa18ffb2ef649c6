"""PostgreSQL TLS failures (libpq's messages) become permanent errors that say what to change."""

from __future__ import annotations

import psycopg2
import pytest

from cdc.errors import AuthError, SourceError, SourceUnavailable
from cdc.source.slot import classify_error

HOST = 'connection to server at "db.example.com" (10.0.0.5), port 5432 failed: '


@pytest.mark.parametrize(
    ("message", "hint"),
    [
        ("SSL error: certificate verify failed", "point it at the CA that signed the server certificate"),
        (
            'server certificate for "other.example.com" does not match host name "db.example.com"',
            "does not hold the name in source_host (CDC_SOURCE_HOST)",
        ),
        (
            'root certificate file "/opt/rds.pem" does not exist\nEither provide the file, ...',
            "source_sslrootcert (CDC_SOURCE_SSLROOTCERT) must name a readable PEM file",
        ),
        ("server does not support SSL, but SSL was required", "the server does not offer TLS"),
        (
            'FATAL:  no pg_hba.conf entry for host "10.0.0.9", user "cdc", database "app", no encryption',
            "set source_sslmode (CDC_SOURCE_SSLMODE) to verify-full",
        ),
    ],
)
def test_tls_failures_are_permanent_and_say_what_to_change(message: str, hint: str) -> None:
    error = classify_error(psycopg2.OperationalError(HOST + message), "connecting")
    assert isinstance(error, SourceError)
    assert str(error).startswith("PostgreSQL TLS connection failed while connecting: " + HOST)
    assert message.splitlines()[0] in str(error) and hint in str(error)


def test_other_connection_failures_keep_their_classes() -> None:
    refused = classify_error(psycopg2.OperationalError(HOST + "Connection refused"), "connecting")
    assert isinstance(refused, SourceUnavailable)
    lost = classify_error(psycopg2.OperationalError("SSL SYSCALL error: EOF detected"), "reading")
    assert isinstance(lost, SourceUnavailable)  # a dropped connection, retried
    login = classify_error(
        psycopg2.OperationalError(HOST + 'FATAL:  password authentication failed for user "cdc"'), "x"
    )
    assert isinstance(login, AuthError)
    hba = classify_error(
        psycopg2.OperationalError(
            HOST + 'FATAL:  no pg_hba.conf entry for host "10.0.0.9", user "x", SSL on'
        ),
        "x",
    )
    assert isinstance(hba, AuthError)
