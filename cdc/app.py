"""Builds a ready engine from settings: the one place that turns configuration into clients.

The Lambda handler and the CLI both call ``build_engine``; tests call it with settings that point
at the embedded local stack.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config

from cdc.alerts import Alerts
from cdc.checkpoint import CheckpointStore
from cdc.engine import Engine
from cdc.logs import register_secret
from cdc.model import WindowResult
from cdc.secrets import VaultSecrets
from cdc.settings import Settings, parse_keys
from cdc.snowflake.sink import SnowflakeSink
from cdc.source.slot import PostgresSource
from cdc.stage import open_stage

_AWS_CONFIG = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30)


def aws_client(settings: Settings, service: str) -> Any:
    """A boto3 client; explicit keys only when the settings carry them (local stand-ins)."""
    keys: dict[str, str] = {}
    if settings.aws_access_key_id and settings.aws_secret_access_key:
        keys = {
            "aws_access_key_id": settings.aws_access_key_id,
            "aws_secret_access_key": settings.aws_secret_access_key.reveal(),
        }
    return boto3.client(
        service,  # type: ignore[call-overload]
        region_name=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url,
        config=_AWS_CONFIG,
        **keys,
    )


TCP_KEEPALIVE_IDLE_S = 30  # a silent connection is probed after this long,
TCP_KEEPALIVE_INTERVAL_S = 10  # then this often,
TCP_KEEPALIVE_COUNT = 3  # and given up after this many unanswered probes


def source_params(settings: Settings, secrets: VaultSecrets) -> dict[str, Any]:
    creds = secrets.source_credentials()
    password = creds.password.reveal() if creds.password else None
    if password:
        register_secret(password)
    params: dict[str, Any] = {
        "host": settings.source_host,
        "port": settings.source_port,
        "dbname": settings.source_database,
        "user": creds.user,
        "password": password,
        "sslmode": settings.source_sslmode,
        "connect_timeout": settings.source_connect_timeout_s,
        "application_name": f"cdc-{settings.pipeline}",
        # a peer gone without a word (network failure, failover) fails a waiting query or COPY in
        # about a minute, not the operating system's two hours; reading connections also listen
        # for the walsender's answers (cdc.source.ping.Silence)
        "keepalives": 1,
        "keepalives_idle": TCP_KEEPALIVE_IDLE_S,
        "keepalives_interval": TCP_KEEPALIVE_INTERVAL_S,
        "keepalives_count": TCP_KEEPALIVE_COUNT,
    }
    if settings.source_sslrootcert:
        params["sslrootcert"] = settings.source_sslrootcert
    return params


def build_source(settings: Settings, secrets: VaultSecrets) -> PostgresSource:
    return PostgresSource(
        source_params(settings, secrets),
        settings.source_slot,
        settings.source_tables,
        parse_keys(settings.source_keys),
        settings.receive_process_min_bytes,
    )


def build_sink(settings: Settings, secrets: VaultSecrets) -> SnowflakeSink:
    creds = secrets.snowflake_credentials()
    password = creds.password.reveal() if creds.password else ""
    register_secret(password)
    passphrase = creds.extra.get("private_key_passphrase")
    if passphrase:
        register_secret(passphrase.reveal())
    return SnowflakeSink.connect(
        settings,
        creds.user,
        password,
        private_key=creds.extra.get("private_key"),
        private_key_passphrase=passphrase,
    )


def build_engine(
    settings: Settings,
    secrets: VaultSecrets | None = None,
    time_left: Callable[[], float] | None = None,
) -> Engine:
    """An engine wired to the real clients. Secrets are read here; databases connect when needed."""
    if secrets is None:
        secrets = VaultSecrets.from_settings(settings)
    if settings.vault_token:
        register_secret(settings.vault_token.reveal())
    if settings.vault_secret_id:
        register_secret(settings.vault_secret_id.reveal())
    s3 = aws_client(settings, "s3") if settings.stage_url.startswith("s3://") else None
    return Engine(
        settings,
        source=build_source(settings, secrets),
        sink_factory=lambda: build_sink(settings, secrets),
        stage=open_stage(settings.stage_url, s3),
        store=CheckpointStore(aws_client(settings, "dynamodb"), settings.checkpoint_table, settings.pipeline),
        time_left=time_left,
    )


def build_alerts(settings: Settings) -> Alerts:
    """Dead-letter queue and metrics for the window results."""
    cloudwatch = aws_client(settings, "cloudwatch") if settings.metrics_mode == "cloudwatch" else None
    sqs = aws_client(settings, "sqs") if settings.dlq_url else None
    return Alerts(
        sqs,
        settings.dlq_url,
        cloudwatch,
        settings.metrics_namespace,
        settings.pipeline,
        slot_warn_safe_wal_bytes=settings.slot_warn_safe_wal_bytes,
        slot_warn_retained_bytes=settings.slot_warn_retained_bytes,
    )


def report_window(engine: Engine, alerts: Alerts, result: WindowResult) -> None:
    """Metrics for every window; a failed one also goes to the dead-letter queue."""
    if result.status == "lease_held":
        return
    alerts.after_window(
        result,
        retries=engine.last_retries,
        checkpoint_lsn=engine.last_checkpoint_lsn,
    )
