"""Preflight checks of Vault, the stage, DynamoDB, Snowflake, SQS and CloudWatch (see ``cdc.check``)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from cdc.check import CheckFailed, Checks
from cdc.checkpoint import CheckpointStore
from cdc.errors import CdcError
from cdc.logs import register_secret
from cdc.settings import Settings

PROBE_TABLE_PREFIX = "CDC_CHECK_"
_DENIED = frozenset({"AccessDenied", "AccessDeniedException", "UnrecognizedClientException", "403"})


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


# --- Vault ----------------------------------------------------------------------------------------


def check_vault(checks: Checks, settings: Settings, secrets: Any) -> set[str]:
    """Login and both secrets; returns which secrets were read (``source``, ``snowflake``)."""
    method, addr = settings.vault_auth_method, settings.vault_addr

    def login() -> str:
        secrets.ensure_login()
        return f"{method} login at {addr} accepted"

    if not checks.run(
        "vault.login",
        login,
        f"check vault_addr and the {method} credentials (vault_auth_method, CDC_VAULT_*)",
    ):
        checks.skip("vault.secrets", "needs a Vault login")
        return set()
    read: set[str] = set()
    mount = settings.vault_kv_mount
    for kind, path, fetch in (
        ("source", settings.vault_source_path, secrets.source_credentials),
        ("snowflake", settings.vault_snowflake_path, secrets.snowflake_credentials),
    ):

        def step(fetch: Any = fetch, path: str = path) -> str:
            creds = fetch()
            if creds.password:
                register_secret(creds.password.reveal())
            fields = ["user", *(["password"] if creds.password else []), *sorted(creds.extra)]
            return f"{mount}/{path}: fields {', '.join(fields)} (user {creds.user})"

        if checks.run(
            f"vault.secret.{kind}",
            step,
            f"write the secret at {mount}/{path} with fields user and password, and allow the login's "
            f"policy to read {mount}/data/{path}",
        ):
            read.add(kind)
    return read


# --- stage -----------------------------------------------------------------------------------------


def check_stage(checks: Checks, settings: Settings) -> None:
    """Write, list, read back and delete a probe object under ``<pipeline>/_check/``."""
    from cdc.app import aws_client
    from cdc.stage import open_stage

    def step() -> str:
        s3 = aws_client(settings, "s3") if settings.stage_url.startswith("s3://") else None
        stage = open_stage(settings.stage_url, s3)
        key = f"{settings.pipeline}/_check/probe.txt"  # one fixed key: a probe left behind is overwritten
        body = f"cdc check {uuid.uuid4().hex} at {time.time():.3f}\n".encode()
        stage.put_bytes(key, body)
        if key not in stage.list_keys(f"{settings.pipeline}/_check/"):
            raise CheckFailed(
                f"wrote {stage.url}/{key}, but listing {settings.pipeline}/_check/ does not show it"
            )
        if stage.get_bytes(key) != body:
            raise CheckFailed(f"{stage.url}/{key} read back differs from what was written")
        try:
            stage.delete_keys([key])
            deleted = "deleted it"
        except CdcError as exc:
            # the pipeline itself never deletes (only `cdc stage prune` does): not a failure
            deleted = f"could not delete it ({exc}); only `cdc stage prune` needs s3:DeleteObject"
        return f"wrote, listed and read back {stage.url}/{key}; {deleted}"

    where = settings.stage_url
    checks.run(
        "stage.write_read",
        step,
        f"make {where} writable and readable by the pipeline: the bucket must exist and the role needs "
        "s3:PutObject, s3:GetObject and s3:ListBucket on the prefix (and kms:GenerateDataKey/kms:Decrypt "
        "on the bucket's key); locally the directory must be writable",
    )


# --- DynamoDB --------------------------------------------------------------------------------------


def check_dynamodb(checks: Checks, settings: Settings) -> None:
    from cdc.app import aws_client

    table, pipeline = settings.checkpoint_table, settings.pipeline
    client = aws_client(settings, "dynamodb")

    def step() -> str:
        store = CheckpointStore(client, table, pipeline)
        checkpoint = store.load()
        store.read_lease()
        # the write the checkpoint save makes, with conditions that can never hold: DynamoDB checks
        # the permissions, then cancels; nothing is written
        never = "attribute_exists(#pk) AND attribute_not_exists(#pk)"
        try:
            client.transact_write_items(
                TransactItems=[
                    {
                        "ConditionCheck": {
                            "TableName": table,
                            "Key": {"pk": {"S": f"lease#{pipeline}"}},
                            "ConditionExpression": never,
                            "ExpressionAttributeNames": {"#pk": "pk"},
                        }
                    },
                    {
                        "Put": {
                            "TableName": table,
                            "Item": {"pk": {"S": f"checkpoint#{pipeline}"}, "check_probe": {"S": "never"}},
                            "ConditionExpression": never,
                            "ExpressionAttributeNames": {"#pk": "pk"},
                        }
                    },
                ]
            )
        except ClientError as exc:
            if _code(exc) != "TransactionCanceledException":
                raise CheckFailed(
                    f"table {table!r}: the conditional checkpoint write was refused ({_code(exc)}: "
                    f"{exc.response.get('Error', {}).get('Message', '')})",
                    f"grant dynamodb:PutItem and dynamodb:ConditionCheckItem on table {table!r} for the "
                    f"items checkpoint#{pipeline} and lease#{pipeline}",
                ) from exc
        else:
            raise CheckFailed(f"table {table!r}: a write whose conditions can never hold succeeded")
        at = (
            f"checkpoint at {checkpoint.lsn}"
            if checkpoint
            else "no checkpoint yet (the first window snapshots)"
        )
        return f"table {table!r}: read checkpoint and lease ({at}); conditional write allowed"

    checks.run(
        "dynamodb.checkpoint_table",
        step,
        f"create table {table!r} (partition key pk, String) in {settings.aws_region}, or fix "
        "checkpoint_table; the role needs dynamodb:GetItem, PutItem, UpdateItem and ConditionCheckItem on it",
    )


# --- Snowflake -------------------------------------------------------------------------------------


def check_snowflake(checks: Checks, settings: Settings, secrets: Any) -> None:
    from cdc.app import build_sink
    from cdc.snowflake import sql

    where = settings.snowflake_host or f"account {settings.snowflake_account}"
    sinks: list[Any] = []

    def login() -> str:
        sinks.append(build_sink(settings, secrets))
        user = secrets.snowflake_credentials().user
        return f"logged in to {where} as {user}, database {settings.snowflake_database}"

    if not checks.run(
        "snowflake.login",
        login,
        "check snowflake_account/snowflake_host, the network path (PrivateLink endpoint) and the user and "
        f"password in Vault at {settings.vault_kv_mount}/{settings.vault_snowflake_path}",
    ):
        checks.skip("snowflake.objects", "needs a Snowflake login")
        return
    conn = sinks[0].connection
    database, load = settings.snowflake_database, settings.snowflake_load_schema
    role = settings.snowflake_role or "the user's default role"
    try:
        _check_warehouse(checks, conn, settings, role)

        def schema() -> str:
            _rows(conn, sql.create_schema_sql(database, load))
            return f"database {database}: load schema {load} exists (or was created)"

        if not checks.run(
            "snowflake.database",
            schema,
            f"check snowflake_database ({database}) exists and {role} has USAGE on it and CREATE SCHEMA",
        ):
            checks.skip("snowflake.merge", "needs the load schema")
        else:
            checks.run(
                "snowflake.merge",
                lambda: _merge_probe(conn, database, load),
                f"grant {role} CREATE TABLE on schema {database}.{load} (load tables are transient) and a "
                "warehouse that can run",
            )
        checks.run(
            "snowflake.stage",
            lambda: _stage_url(conn, settings),
            f"create the stage {settings.snowflake_stage} with URL = '{settings.stage_url}/' (and its "
            f"storage integration) and grant {role} USAGE on it, or fix snowflake_stage",
        )
    finally:
        sinks[0].close()


def _rows(conn: Any, text: str) -> list[tuple[Any, ...]]:
    cur = conn.cursor()
    cur.execute(text)
    return list(cur.fetchall()) if cur.description else []


def _named_rows(conn: Any, text: str) -> list[dict[str, Any]]:
    cur = conn.cursor()
    cur.execute(text)
    names = [d[0].lower() for d in cur.description or ()]
    return [dict(zip(names, row, strict=False)) for row in cur.fetchall()]


def _like(name: str) -> str:
    return "'" + name.replace("\\", "\\\\").replace("'", "''") + "'"


def _named(rows: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The SHOW rows for the object ``name`` (as the naming rule spells it: plain lower case is
    upper case), whatever else the LIKE pattern matched."""
    from cdc.snowflake import sql

    spelled = sql.ident(name)[1:-1].replace('""', '"')
    return [r for r in rows if str(r.get("name", "")) == spelled]


def _check_warehouse(checks: Checks, conn: Any, settings: Settings, role: str) -> None:
    warehouse = settings.snowflake_warehouse
    if not warehouse:
        checks.skip(
            "snowflake.warehouse", "snowflake_warehouse is not set: the user's default warehouse runs"
        )
        return

    def step() -> str:
        rows = _named(_named_rows(conn, f"SHOW WAREHOUSES LIKE {_like(warehouse)}"), warehouse)
        if not rows:
            raise CheckFailed(f"warehouse {warehouse} does not exist or {role} has no USAGE on it")
        row = rows[0]
        state, resume = str(row.get("state", "")).upper(), str(row.get("auto_resume", "true")).lower()
        if state == "SUSPENDED" and resume != "true":
            raise CheckFailed(f"warehouse {warehouse} is suspended and does not resume on its own")
        return f"warehouse {row.get('name', warehouse)}: {state.lower() or 'state unknown'}"

    checks.run(
        "snowflake.warehouse",
        step,
        f"grant {role} USAGE (and OPERATE) on warehouse {warehouse}, turn on AUTO_RESUME, or fix "
        "snowflake_warehouse",
    )


def _merge_probe(conn: Any, database: str, load: str) -> str:
    from cdc.snowflake import sql

    name = f"{PROBE_TABLE_PREFIX}{uuid.uuid4().hex[:12].upper()}"
    fq = sql.qualified(database, load, name)
    try:
        _rows(conn, f'CREATE TRANSIENT TABLE {fq} ("ID" NUMBER(10,0), "V" VARCHAR)')
        _rows(conn, f'INSERT INTO {fq} ("ID", "V") VALUES (1, \'a\')')
        _rows(
            conn,
            f"MERGE INTO {fq} t USING (SELECT 1 AS \"ID\", 'b' AS \"V\" UNION ALL SELECT 2, 'c') s "
            'ON t."ID" = s."ID" WHEN MATCHED THEN UPDATE SET "V" = s."V" '
            'WHEN NOT MATCHED THEN INSERT ("ID", "V") VALUES (s."ID", s."V")',
        )
        got = [tuple(r) for r in _rows(conn, f'SELECT "ID", "V" FROM {fq} ORDER BY "ID"')]
    finally:
        _rows(conn, sql.drop_table_sql(fq))
    if got != [(1, "b"), (2, "c")]:
        raise CheckFailed(f"the MERGE probe on {fq} left {got}, expected [(1, 'b'), (2, 'c')]")
    return f"created transient table {fq}, merged into it and dropped it"


def _stage_url(conn: Any, settings: Settings) -> str:
    from cdc.snowflake import sql

    parts = settings.snowflake_stage.split(".")
    name = parts[-1]
    container = parts[:-1] if len(parts) == 3 else [settings.snowflake_database, *parts[:-1]]
    scope = (
        f"IN SCHEMA {sql.qualified(*container)}"
        if len(container) == 2
        else f"IN DATABASE {sql.ident(container[0])}"
    )
    rows = _named(_named_rows(conn, f"SHOW STAGES LIKE {_like(name)} {scope}"), name)
    if not rows:
        raise CheckFailed(f"stage {settings.snowflake_stage} does not exist or the role cannot see it")
    url = str(rows[0].get("url") or "").strip().strip('"[]')
    if url.rstrip("/") != settings.stage_url.rstrip("/"):
        raise CheckFailed(
            f"stage {settings.snowflake_stage} reads {url or 'no URL'}, but the pipeline stages to "
            f"{settings.stage_url}: COPY would not find the staged parts",
            f"point the stage at {settings.stage_url}/ (CREATE OR REPLACE STAGE ... URL = "
            f"'{settings.stage_url}/') or set stage_url to the stage's URL",
        )
    return f"stage {settings.snowflake_stage} reads {url}"


# --- SQS and CloudWatch ----------------------------------------------------------------------------


def check_sqs(checks: Checks, settings: Settings) -> None:
    from cdc.app import aws_client

    url = settings.dlq_url
    if not url:
        checks.skip("sqs.dead_letter_queue", "dlq_url is not set: failed windows are only logged")
        return
    try:
        attrs = aws_client(settings, "sqs").get_queue_attributes(
            QueueUrl=url, AttributeNames=["QueueArn", "ApproximateNumberOfMessages"]
        )["Attributes"]
    except ClientError as exc:
        code = _code(exc)
        if code in _DENIED:
            checks.skip(
                "sqs.dead_letter_queue",
                f"{url}: this role may not read the queue's attributes ({code}); it was not probed, as a "
                "probe message would raise the dead-letter alarm",
            )
            return
        checks.add(
            "sqs.dead_letter_queue",
            "failed",
            f"{url}: {code}: {exc.response.get('Error', {}).get('Message', '')}",
            "create the queue or fix dlq_url (CDC_DLQ_URL)",
        )
        return
    except BotoCoreError as exc:
        checks.add(
            "sqs.dead_letter_queue",
            "failed",
            f"{url}: {type(exc).__name__}: {exc}",
            "check the network path to SQS",
        )
        return
    checks.add(
        "sqs.dead_letter_queue",
        "ok",
        f"{attrs.get('QueueArn', url)} exists ({attrs.get('ApproximateNumberOfMessages', '?')} messages "
        "waiting); sending is not probed (a probe message would raise the dead-letter alarm)",
    )


def check_sns(checks: Checks, settings: Settings) -> None:
    from cdc.app import aws_client

    arn = settings.alarm_topic_arn
    if not arn:
        checks.skip("sns.alarm_topic", "alarm_topic_arn is not set: the alarms' topic is not checked")
        return

    def step() -> str:
        attrs = aws_client(settings, "sns").get_topic_attributes(TopicArn=arn)["Attributes"]
        confirmed = int(attrs.get("SubscriptionsConfirmed", "0") or 0)
        note = "" if confirmed else "; nobody is subscribed yet: alarms reach no one"
        return f"{arn} exists with {confirmed} confirmed subscription(s){note}"

    checks.run(
        "sns.alarm_topic",
        step,
        "create the topic or fix alarm_topic_arn (CDC_ALARM_TOPIC_ARN), and grant sns:GetTopicAttributes",
    )


def check_cloudwatch(checks: Checks, settings: Settings) -> None:
    from cdc.app import aws_client

    if settings.metrics_mode != "cloudwatch":
        checks.skip(
            "cloudwatch.metrics", f"metrics_mode is {settings.metrics_mode}: metrics go to stdout (EMF)"
        )
        return

    def step() -> str:
        aws_client(settings, "cloudwatch").put_metric_data(
            Namespace=settings.metrics_namespace,
            MetricData=[
                {
                    "MetricName": "PreflightChecks",
                    "Dimensions": [{"Name": "Pipeline", "Value": settings.pipeline}],
                    "Value": 1,
                    "Unit": "Count",
                }
            ],
        )
        return f"published PreflightChecks=1 in namespace {settings.metrics_namespace}"

    checks.run(
        "cloudwatch.metrics",
        step,
        "grant cloudwatch:PutMetricData, or set metrics_mode = emf (metrics through the log stream)",
    )
