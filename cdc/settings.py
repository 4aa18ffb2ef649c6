"""The pipeline's settings: one frozen object, built from environment variables and, for the CLI,
a TOML file whose keys mirror them.

Every setting is defined once, in ``FIELDS``. Its environment variable is ``CDC_`` plus the upper-
case name (``source_host`` -> ``CDC_SOURCE_HOST``). In TOML it is either the flat key
(``source_host = "db"``) or the part after the first underscore inside a table named by the part
before it (``[source]`` ``host = "db"``). An environment variable beats the file; an explicit
override beats both. Invalid or missing settings raise one ``ConfigError`` that lists every problem,
before anything connects anywhere.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from cdc.errors import ConfigError


class Secret:
    """A string that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class Field:
    name: str
    kind: Literal["str", "int", "float", "list", "secret", "bool"]
    default: Any = None
    required: bool = False
    choices: tuple[str, ...] = ()
    doc: str = ""

    @property
    def env(self) -> str:
        return f"CDC_{self.name.upper()}"


FIELDS: tuple[Field, ...] = (
    Field("pipeline", "str", required=True, doc="Pipeline name: [a-z0-9_-], 1-48 characters."),
    # source
    Field("source_host", "str", required=True, doc="PostgreSQL host (Aurora writer endpoint)."),
    Field("source_port", "int", 5432),
    Field("source_database", "str", required=True),
    Field(
        "source_sslmode",
        "str",
        "verify-full",
        choices=("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    ),
    Field("source_sslrootcert", "str", doc="CA bundle for verify-ca / verify-full."),
    Field("source_slot", "str", doc="Replication slot; default cdc_<pipeline>."),
    Field("source_tables", "list", (), doc="schema.table names to replicate; empty: every user table."),
    Field(
        "source_keys",
        "str",
        doc="Keys for tables without a primary key: 'schema.table:col1,col2;...'; "
        "such a table needs REPLICA IDENTITY FULL (or an index covering the key).",
    ),
    Field("source_connect_timeout_s", "int", 10),
    Field(
        "delete_mode",
        "str",
        "hard",
        choices=("hard", "soft"),
        doc="soft keeps deleted rows with _CDC_DELETED = TRUE.",
    ),
    Field(
        "slot_warn_safe_wal_bytes",
        "int",
        2 * 1024**3,
        doc="Warn (metric SlotAtRisk, log) when less WAL than this may still be written before the "
        "slot passes the server's max_slot_wal_keep_size.",
    ),
    Field(
        "slot_warn_retained_bytes",
        "int",
        20 * 1024**3,
        doc="Warn when the slot retains more WAL than this and the server sets no max_slot_wal_keep_size.",
    ),
    Field(
        "resnapshot_stopped_tables",
        "bool",
        True,
        doc="Re-snapshot a table in the next run when a schema change stopped it (a volatile "
        "default, a new key column, an unsafe type change); false leaves it stopped for an operator.",
    ),
    # vault
    Field("vault_addr", "str", required=True, doc="Vault address, e.g. https://vault:8200."),
    Field("vault_auth_method", "str", "token", choices=("token", "approle", "aws")),
    Field("vault_token", "secret"),
    Field("vault_role_id", "str"),
    Field("vault_secret_id", "secret"),
    Field("vault_aws_role", "str"),
    Field("vault_aws_mount", "str", "aws"),
    Field("vault_aws_server_id", "str", doc="X-Vault-AWS-IAM-Server-ID header value."),
    Field("vault_approle_mount", "str", "approle"),
    Field("vault_namespace", "str"),
    Field("vault_kv_mount", "str", "secret"),
    Field("vault_source_path", "str", required=True, doc="KV v2 path of the PostgreSQL credentials."),
    Field("vault_snowflake_path", "str", required=True, doc="KV v2 path of the Snowflake credentials."),
    Field("vault_ca_cert", "str"),
    # snowflake
    Field("snowflake_account", "str", required=True),
    Field("snowflake_host", "str", doc="PrivateLink host name; default <account>.snowflakecomputing.com."),
    Field("snowflake_port", "int", 443),
    Field("snowflake_protocol", "str", "https", choices=("https", "http")),
    Field("snowflake_database", "str", required=True),
    Field("snowflake_warehouse", "str"),
    Field("snowflake_role", "str"),
    Field(
        "snowflake_stage",
        "str",
        required=True,
        doc="Snowflake stage (qualified name) whose URL is the stage_url root.",
    ),
    Field("snowflake_load_schema", "str", "CDC_LOAD", doc="Schema for transient load tables."),
    Field(
        "snowflake_swap_strategy",
        "str",
        "swap",
        choices=("swap", "rename"),
        doc="How a snapshot replaces a target: swap (ALTER TABLE SWAP WITH, atomic on Snowflake) or "
        "rename (two renames in one transaction; only for the local fakesnow stand-in)",
    ),
    # stage
    Field("stage_url", "str", required=True, doc="s3://bucket/prefix or file:///absolute/dir."),
    # aws
    Field("aws_region", "str", "us-east-1"),
    Field("aws_endpoint_url", "str", doc="Endpoint override for every AWS client (local stand-ins)."),
    Field("aws_access_key_id", "str", doc="Only for local stand-ins; in AWS the execution role is used."),
    Field("aws_secret_access_key", "secret", doc="Only for local stand-ins."),
    Field("checkpoint_table", "str", required=True, doc="DynamoDB table for checkpoints and leases."),
    # window
    Field("window_max_changes", "int", 100_000),
    Field(
        "window_max_seconds",
        "int",
        600,
        doc="Time budget of one window (its reading, or an automatic re-snapshot) outside Lambda.",
    ),
    Field("window_safety_margin_s", "int", 30, doc="Lambda time kept free after a window."),
    Field(
        "window_apply_margin_s",
        "int",
        60,
        doc="Lambda time kept for staging and applying a window: reading stops when less than this "
        "plus the safety margin is left.",
    ),
    Field(
        "window_merge_reserve_s",
        "int",
        20,
        doc="A table's COPY + MERGE starts only with this much Lambda time left beyond the safety "
        "margin (or the slowest apply of the window so far, if longer); else the window stops "
        "there and the next run applies it again.",
    ),
    Field(
        "apply_parallelism",
        "int",
        4,
        doc="Tables of a window applied at the same time, each on its own Snowflake connection.",
    ),
    Field("part_max_rows", "int", 25_000, doc="Rows per Parquet part before it is flushed."),
    Field(
        "receive_process_min_bytes",
        "int",
        64 * 1024 * 1024,
        doc="A window with at least this much WAL to read (checkpoint to the server's end when it "
        "starts) receives the slot in a child process, so that parsing runs on another core meanwhile "
        "(starting it costs about 0.3 s of CPU); smaller windows read in line. 0: always; -1: never.",
    ),
    Field("lease_ttl_s", "int", 900),
    Field(
        "retry_attempts",
        "int",
        3,
        doc="Attempts of a window that fails with a transient error (connection, timeout, throttling), "
        "with exponential backoff and jitter between them; at least 1 (no retry).",
    ),
    # alerts
    Field("dlq_url", "str", doc="SQS queue for windows that failed for good; unset: none is sent."),
    Field(
        "alarm_topic_arn",
        "str",
        doc="SNS topic the alarms notify (deployed by Terraform); cdc check verifies it.",
    ),
    Field("metrics_namespace", "str", "CDC", doc="CloudWatch namespace of the window metrics."),
    Field(
        "metrics_mode",
        "str",
        "cloudwatch",
        choices=("cloudwatch", "emf"),
        doc="cloudwatch: PutMetricData; emf: embedded metric format on stdout (Lambda).",
    ),
    # logging
    Field("log_level", "str", "INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR")),
    Field("log_format", "str", "json", choices=("json", "text")),
)

_BY_NAME = {f.name: f for f in FIELDS}
_PIPELINE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")
_TABLE_NAME = re.compile(r"^[^.]+\.[^.]+$")


@dataclass(frozen=True)
class Settings:
    pipeline: str
    source_host: str
    source_port: int
    source_database: str
    source_sslmode: str
    source_sslrootcert: str | None
    source_slot: str
    source_tables: tuple[str, ...]
    source_keys: str | None
    source_connect_timeout_s: int
    delete_mode: str
    slot_warn_safe_wal_bytes: int
    slot_warn_retained_bytes: int
    resnapshot_stopped_tables: bool
    vault_addr: str
    vault_auth_method: str
    vault_token: Secret | None
    vault_role_id: str | None
    vault_secret_id: Secret | None
    vault_aws_role: str | None
    vault_aws_mount: str
    vault_aws_server_id: str | None
    vault_approle_mount: str
    vault_namespace: str | None
    vault_kv_mount: str
    vault_source_path: str
    vault_snowflake_path: str
    vault_ca_cert: str | None
    snowflake_account: str
    snowflake_host: str | None
    snowflake_port: int
    snowflake_protocol: str
    snowflake_database: str
    snowflake_warehouse: str | None
    snowflake_role: str | None
    snowflake_stage: str
    snowflake_load_schema: str
    snowflake_swap_strategy: str
    stage_url: str
    aws_region: str
    aws_endpoint_url: str | None
    aws_access_key_id: str | None
    aws_secret_access_key: Secret | None
    checkpoint_table: str
    window_max_changes: int
    window_max_seconds: int
    window_safety_margin_s: int
    window_apply_margin_s: int
    window_merge_reserve_s: int
    apply_parallelism: int
    part_max_rows: int
    receive_process_min_bytes: int
    lease_ttl_s: int
    retry_attempts: int
    dlq_url: str | None
    alarm_topic_arn: str | None
    metrics_namespace: str
    metrics_mode: str
    log_level: str
    log_format: str

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed (validated again)."""
        raw = {f.name: getattr(self, f.name) for f in FIELDS}
        if (
            "pipeline" in changes
            and "source_slot" not in changes
            and self.source_slot == default_slot(self.pipeline)
        ):
            raw["source_slot"] = None  # the slot follows the pipeline unless it was set explicitly
        raw.update(changes)
        return _build({k: v for k, v in raw.items() if v is not None})


def load(
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Settings from the TOML file (optional), then the environment, then explicit overrides."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    problems: list[str] = []
    if config_file is not None:
        raw.update(_read_toml(Path(config_file), problems))
    for f in FIELDS:
        if f.env in env and env[f.env] != "":
            raw[f.name] = env[f.env]
    if overrides:
        for key in overrides:
            if key not in _BY_NAME:
                problems.append(f"unknown setting {key!r}")
        raw.update({k: v for k, v in overrides.items() if v is not None and k in _BY_NAME})
    return _build(raw, problems)


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """The Lambda's settings: environment variables only."""
    return load(None, env)


def parse_keys(text: str | None) -> dict[tuple[str, str], tuple[str, ...]]:
    """``schema.table:col1,col2;schema.other:col`` -> {(schema, table): (col1, col2), ...}."""
    keys: dict[tuple[str, str], tuple[str, ...]] = {}
    for item in (text or "").split(";"):
        if not item.strip():
            continue
        table, sep, cols = item.partition(":")
        columns = tuple(c.strip() for c in cols.split(",") if c.strip())
        if not sep or not _TABLE_NAME.match(table.strip()) or not columns:
            raise ValueError(f"{item.strip()!r} must be written schema.table:col1,col2")
        schema, name = table.strip().split(".", 1)
        keys[(schema, name)] = columns
    return keys


def default_slot(pipeline: str) -> str:
    return ("cdc_" + re.sub(r"[^a-z0-9_]", "_", pipeline))[:63]


def _read_toml(path: Path, problems: list[str]) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        problems.append(f"config file {path} does not exist")
        return {}
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"config file {path} is not valid TOML: {exc}")
        return {}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            for sub, subvalue in value.items():
                flat[f"{key}_{sub}"] = subvalue
        else:
            flat[key] = value
    for key in flat:
        if key not in _BY_NAME:
            problems.append(f"{path}: unknown setting {key!r}")
    return {k: v for k, v in flat.items() if k in _BY_NAME}


_NEVER_MINUS_ONE = frozenset({"receive_process_min_bytes"})  # -1 means "never"


def _convert(f: Field, value: Any, problems: list[str]) -> Any:
    where = f"{f.name} ({f.env})"
    if f.kind == "int":
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            problems.append(f"{where}: expected a whole number, got {value!r}")
            return None
        try:
            number = int(value)
        except (TypeError, ValueError):
            problems.append(f"{where}: expected a whole number, got {value!r}")
            return None
        if number < 0 and not (f.name in _NEVER_MINUS_ONE and number == -1):
            problems.append(f"{where}: must not be negative, got {number}")
        return number
    if f.kind == "list":
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",")]
        elif isinstance(value, (list, tuple)):
            items = [str(v).strip() for v in value]
        else:
            problems.append(f"{where}: expected a list or comma-separated text")
            return ()
        return tuple(i for i in items if i)
    if f.kind == "secret":
        return value if isinstance(value, Secret) else Secret(str(value))
    if f.kind == "bool":
        word = str(value).strip().lower()
        if word not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            problems.append(f"{where}: expected true or false, got {value!r}")
            return None
        return word in ("1", "true", "yes", "on")
    text = str(value)
    if f.choices and text not in f.choices:
        problems.append(f"{where}: must be one of {', '.join(f.choices)}; got {text!r}")
    return text


def _build(raw: Mapping[str, Any], earlier: list[str] | None = None) -> Settings:
    problems: list[str] = list(earlier or [])
    values: dict[str, Any] = {}
    for f in FIELDS:
        value = raw.get(f.name)
        if value is None or value == "":
            if f.required:
                problems.append(f"{f.name} ({f.env}) is required" + (f": {f.doc}" if f.doc else ""))
            values[f.name] = f.default
            continue
        values[f.name] = _convert(f, value, problems)

    pipeline = values.get("pipeline")
    if isinstance(pipeline, str) and not _PIPELINE.fullmatch(pipeline):
        problems.append(f"pipeline (CDC_PIPELINE): {pipeline!r} must match [a-z0-9][a-z0-9_-]{{0,47}}")
    if not values.get("source_slot") and isinstance(pipeline, str):
        values["source_slot"] = default_slot(pipeline)
    slot = values.get("source_slot")
    if isinstance(slot, str) and not re.fullmatch(r"[a-z0-9_]{1,63}", slot):
        problems.append(f"source_slot (CDC_SOURCE_SLOT): {slot!r} must be 1-63 of [a-z0-9_]")
    for table in values.get("source_tables") or ():
        if not _TABLE_NAME.match(table):
            problems.append(f"source_tables: {table!r} must be written schema.table")
    keys = values.get("source_keys")
    if isinstance(keys, str):
        try:
            parse_keys(keys)
        except ValueError as exc:
            problems.append(f"source_keys (CDC_SOURCE_KEYS): {exc}")
    stage_url = values.get("stage_url")
    if isinstance(stage_url, str):
        parsed = urlparse(stage_url)
        if parsed.scheme == "s3":
            if not parsed.netloc:
                problems.append(f"stage_url (CDC_STAGE_URL): {stage_url!r} names no bucket")
        elif parsed.scheme == "file":
            if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
                problems.append(f"stage_url (CDC_STAGE_URL): {stage_url!r} must be an absolute path")
        else:
            problems.append(f"stage_url (CDC_STAGE_URL): {stage_url!r} must start with s3:// or file://")
    method = values.get("vault_auth_method")
    if method == "token" and not values.get("vault_token"):
        problems.append("vault_token (CDC_VAULT_TOKEN) is required when vault_auth_method is token")
    if method == "approle":
        for name in ("vault_role_id", "vault_secret_id"):
            if not values.get(name):
                problems.append(
                    f"{name} ({_BY_NAME[name].env}) is required when vault_auth_method is approle"
                )
    if method == "aws" and not values.get("vault_aws_role"):
        problems.append("vault_aws_role (CDC_VAULT_AWS_ROLE) is required when vault_auth_method is aws")
    if values.get("source_sslmode") in ("verify-ca", "verify-full") and not values.get("source_sslrootcert"):
        problems.append(
            "source_sslrootcert (CDC_SOURCE_SSLROOTCERT) is required with sslmode "
            f"{values['source_sslmode']}: point it at the CA bundle (for Aurora, the RDS global bundle)"
        )
    positive = ("window_max_changes", "part_max_rows", "lease_ttl_s", "window_max_seconds", "retry_attempts")
    for name in (*positive, "apply_parallelism"):
        if values.get(name) == 0:
            problems.append(f"{name} ({_BY_NAME[name].env}) must be greater than 0")
    if problems:
        raise ConfigError(problems)
    return Settings(**values)


def describe() -> list[dict[str, Any]]:
    """Every setting with its environment variable, default and documentation (for the README)."""
    return [
        {"name": f.name, "env": f.env, "default": f.default, "required": f.required, "doc": f.doc}
        for f in FIELDS
    ]


assert {f.name for f in dataclasses.fields(Settings)} == set(_BY_NAME), "FIELDS and Settings disagree"
