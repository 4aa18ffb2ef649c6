"""How to reach a running stack: the env dict (what `cdc devstack env --json` prints) and
DIR/cdc.toml (the pipeline's settings file for the stack)."""

from __future__ import annotations

import json
import os
import re
from typing import Any

from cdc.devstack import base as b
from cdc.devstack import postgres
from cdc.devstack.base import Ctx
from cdc.devstack.services import connect_kwargs


def env_dict(ctx: Ctx) -> dict[str, Any]:
    pg, moto, bao = ctx.part("postgres"), ctx.part("moto"), ctx.part("openbao")
    s = ctx.secrets
    ca = str(postgres.ca_file(ctx.directory))
    return {
        "dir": str(ctx.directory),
        "config": str(ctx.directory / "cdc.toml"),
        "pipeline": b.PIPELINE,
        "postgres_dsn": (
            f"host=127.0.0.1 port={pg['port']} dbname={b.PG_DATABASE} user={b.PG_USER} "
            f"password={s['pg_password']} sslmode=verify-full sslrootcert={dsn_value(ca)}"
        ),
        "postgres_ca": ca,
        "postgres_admin_dsn": postgres.admin_dsn(pg),
        "snowflake": connect_kwargs(ctx, ctx.part("fakesnow")),
        "aws_endpoint_url": f"http://127.0.0.1:{moto['port']}",
        "aws_region": b.AWS_REGION,
        "aws_access_key_id": b.AWS_ACCESS_KEY_ID,
        "aws_secret_access_key": b.AWS_SECRET_ACCESS_KEY,
        "vault_addr": f"http://127.0.0.1:{bao['port']}",
        "vault_token": s["vault_token"],
        "stage_dir": str(ctx.stage_dir),
        "stage_url": ctx.stage_dir.as_uri(),
        "checkpoint_table": b.CHECKPOINT_TABLE,
        "s3_bucket": b.S3_BUCKET,
        "dlq_url": moto["dlq_url"],
        "sns_topic_arn": moto["sns_topic_arn"],
        "logs_dir": str(ctx.logs),
    }


def dsn_value(value: str) -> str:
    """A libpq connection-string value: quoted (with \\ and ' escaped) when it needs to be."""
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def write_config(ctx: Ctx) -> None:
    q = json.dumps  # a JSON string is a valid TOML basic string
    pg, sf, bao, moto = (ctx.part(n) for n in ("postgres", "fakesnow", "openbao", "moto"))
    text = f"""# written by `cdc devstack up`; rewritten when a port changes
pipeline = {q(b.PIPELINE)}
stage_url = {q(ctx.stage_dir.as_uri())}
checkpoint_table = {q(b.CHECKPOINT_TABLE)}
dlq_url = {q(moto["dlq_url"])}
alarm_topic_arn = {q(moto["sns_topic_arn"])}
metrics_namespace = "CDC"

[source]
host = "127.0.0.1"
port = {pg["port"]}
database = {q(b.PG_DATABASE)}
sslmode = "verify-full"
sslrootcert = {q(str(postgres.ca_file(ctx.directory)))}

[vault]
addr = {q(f"http://127.0.0.1:{bao['port']}")}
auth_method = "token"
token = {q(ctx.secrets["vault_token"])}
kv_mount = {q(b.VAULT_KV_MOUNT)}
source_path = {q(b.VAULT_SOURCE_PATH)}
snowflake_path = {q(b.VAULT_SNOWFLAKE_PATH)}

[snowflake]
account = {q(b.SF_ACCOUNT)}
host = "127.0.0.1"
port = {sf["port"]}
protocol = "http"
database = {q(b.SF_DATABASE)}
stage = {q(b.SF_STAGE)}
load_schema = {q(b.SF_LOAD_SCHEMA)}
swap_strategy = "rename"

[aws]
region = {q(b.AWS_REGION)}
endpoint_url = {q(f"http://127.0.0.1:{moto['port']}")}
access_key_id = {q(b.AWS_ACCESS_KEY_ID)}
secret_access_key = {q(b.AWS_SECRET_ACCESS_KEY)}

[window]
max_seconds = 60
"""
    path = ctx.directory / "cdc.toml"
    if not path.is_file() or path.read_text() != text:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
