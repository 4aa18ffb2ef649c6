"""The stand-ins that run as dev tools from the venv: moto (AWS), fakesnow (Snowflake) and an
OpenBao dev server (Vault). Each part has ``launch`` (spawn, returns at once), ``answers`` (a cheap
probe), ``provision`` (idempotent set-up of what the pipeline expects) and ``stop``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from cdc.devstack import base as b
from cdc.devstack.base import Ctx, tool
from cdc.devstack.procs import DevstackError, http_status, spawn, stop_group


def _spawn(
    ctx: Ctx, st: dict[str, Any], name: str, argv: list[str], env: dict[str, str] | None = None
) -> None:
    pid, started = spawn(argv, ctx.log(name), env=env, cwd=ctx.directory)
    st.update(pid=pid, started=started)


def stop(ctx: Ctx, st: dict[str, Any]) -> bool:
    return stop_group(st.get("pid"), st.get("started"))


def _retry(action: Any, what: str, attempts: int = 20) -> Any:
    """Run ``action`` until it succeeds: a server can answer a probe a moment before every
    API behind it is ready."""
    for attempt in range(attempts):
        try:
            return action()
        except Exception as exc:  # noqa: BLE001 - re-raised below with context once attempts run out
            if attempt == attempts - 1:
                raise DevstackError(f"{what} failed: {type(exc).__name__}: {exc}") from exc
            time.sleep(0.25)
    return None


# --- moto: S3, DynamoDB, SQS, SNS, CloudWatch ------------------------------------------------


class Moto:
    name = "moto"

    @staticmethod
    def url(st: dict[str, Any]) -> str:
        return f"http://127.0.0.1:{st['port']}"

    def launch(self, ctx: Ctx, st: dict[str, Any]) -> None:
        _spawn(ctx, st, self.name, [tool("moto_server"), "-H", "127.0.0.1", "-p", str(st["port"])])

    def answers(self, ctx: Ctx, st: dict[str, Any]) -> bool:
        return http_status(self.url(st) + "/moto-api/") == 200

    def provision(self, ctx: Ctx, st: dict[str, Any]) -> None:
        import boto3

        session = boto3.session.Session(
            aws_access_key_id=b.AWS_ACCESS_KEY_ID,
            aws_secret_access_key=b.AWS_SECRET_ACCESS_KEY,
            region_name=b.AWS_REGION,
        )
        url = self.url(st)
        ddb = session.client("dynamodb", endpoint_url=url)
        if b.CHECKPOINT_TABLE not in _retry(lambda: ddb.list_tables()["TableNames"], "DynamoDB list_tables"):
            ddb.create_table(
                TableName=b.CHECKPOINT_TABLE,
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
            )
            ddb.get_waiter("table_exists").wait(TableName=b.CHECKPOINT_TABLE, WaiterConfig={"Delay": 1})
        s3 = session.client("s3", endpoint_url=url)
        if b.S3_BUCKET not in [x["Name"] for x in s3.list_buckets().get("Buckets", [])]:
            s3.create_bucket(Bucket=b.S3_BUCKET)
        sqs, sns = session.client("sqs", endpoint_url=url), session.client("sns", endpoint_url=url)
        st["dlq_url"] = sqs.create_queue(QueueName=b.DLQ_NAME)["QueueUrl"]
        st["sns_topic_arn"] = sns.create_topic(Name=b.SNS_TOPIC)["TopicArn"]


# --- fakesnow: Snowflake --------------------------------------------------------------------


class Fakesnow:
    name = "fakesnow"

    def launch(self, ctx: Ctx, st: dict[str, Any]) -> None:
        # fakesnow keeps its databases in the server process, shared by every connection (its
        # -d db path applies to the in-process patch mode, not to the server).
        _spawn(ctx, st, self.name, [tool("fakesnow"), "-s", "--host", "127.0.0.1", "-p", str(st["port"])])

    def answers(self, ctx: Ctx, st: dict[str, Any]) -> bool:
        return http_status(f"http://127.0.0.1:{st['port']}/") is not None

    def provision(self, ctx: Ctx, st: dict[str, Any]) -> None:
        import snowflake.connector

        ctx.stage_dir.mkdir(parents=True, exist_ok=True)
        kwargs = connect_kwargs(ctx, st)
        kwargs.pop("database")

        def setup() -> None:
            conn = snowflake.connector.connect(**kwargs, login_timeout=10, network_timeout=10)
            try:
                cur = conn.cursor()
                if cur.execute("SELECT 1").fetchall() != [(1,)]:  # type: ignore[union-attr]
                    raise DevstackError("fakesnow answered SELECT 1 with something else")
                cur.execute(f"CREATE DATABASE IF NOT EXISTS {b.SF_DATABASE}")
                cur.execute(f"CREATE SCHEMA IF NOT EXISTS {b.SF_DATABASE}.{b.SF_LOAD_SCHEMA}")
                url = ctx.stage_dir.as_uri() + "/"
                cur.execute(f"CREATE STAGE IF NOT EXISTS {b.SF_STAGE} URL='{url}'")
            finally:
                conn.close()

        _retry(setup, "Snowflake (fakesnow) set-up", attempts=8)


def connect_kwargs(ctx: Ctx, st: dict[str, Any]) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": st["port"],
        "protocol": "http",
        "account": b.SF_ACCOUNT,
        "user": b.SF_USER,
        "password": ctx.secrets["snowflake_password"],
        "database": b.SF_DATABASE,
    }


# --- OpenBao dev server: Vault ----------------------------------------------------------------


class OpenBao:
    name = "openbao"

    @staticmethod
    def url(st: dict[str, Any]) -> str:
        return f"http://127.0.0.1:{st['port']}"

    def launch(self, ctx: Ctx, st: dict[str, Any]) -> None:
        # The root token goes by environment, not argv, so `ps` does not show it. The dev server
        # also binds port+1 (cluster listener): the port was chosen with port+1 free.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BAO_", "VAULT_"))}
        env["BAO_DEV_ROOT_TOKEN_ID"] = ctx.secrets["vault_token"]
        listen = f"-dev-listen-address=127.0.0.1:{st['port']}"
        argv = [tool("bao"), "server", "-dev", listen, "-dev-no-store-token"]
        _spawn(ctx, st, self.name, argv, env)

    def answers(self, ctx: Ctx, st: dict[str, Any]) -> bool:
        return http_status(self.url(st) + "/v1/sys/health") == 200

    def provision(self, ctx: Ctx, st: dict[str, Any]) -> None:
        import hvac

        client = hvac.Client(url=self.url(st), token=ctx.secrets["vault_token"], timeout=5)
        health = _retry(lambda: client.sys.read_health_status(method="GET"), "Vault health")
        if not isinstance(health, dict) or health.get("sealed"):
            raise DevstackError(f"OpenBao at {self.url(st)} is not ready: {health!r}")
        kv = client.secrets.kv.v2
        secrets = {
            b.VAULT_SOURCE_PATH: {"user": b.PG_USER, "password": ctx.secrets["pg_password"]},
            b.VAULT_SNOWFLAKE_PATH: {"user": b.SF_USER, "password": ctx.secrets["snowflake_password"]},
        }
        for path, secret in secrets.items():
            write = lambda p=path, s=secret: kv.create_or_update_secret(  # noqa: E731
                path=p, secret=s, mount_point=b.VAULT_KV_MOUNT
            )
            _retry(write, f"writing Vault secret {b.VAULT_KV_MOUNT}/{path}")
