"""``cdc check`` (and the Lambda's ``{"mode": "check"}``) against the real local stack: it passes on the
devstack, moves no data, and names precisely what is broken (and never a secret)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import pytest
from helpers import Pipeline, load_handler, settings_env

from cdc.check import CheckReport, run_checks
from cdc.cli import main
from cdc.devstack import base as devstack_base
from cdc.settings import Secret

EVERY_CHECK = [
    "vault.login",
    "vault.secret.source",
    "vault.secret.snowflake",
    "postgres.login",
    "postgres.version",
    "postgres.wal_level",
    "postgres.replication_privilege",
    "postgres.replication_connection",
    "postgres.slot",
    "postgres.wal2json",
    "postgres.table {s}.items",
    "stage.write_read",
    "dynamodb.checkpoint_table",
    "snowflake.login",
    "snowflake.warehouse",
    "snowflake.database",
    "snowflake.merge",
    "snowflake.stage",
    "sqs.dead_letter_queue",
    "sns.alarm_topic",
    "cloudwatch.metrics",
]


@pytest.fixture
def p(stack: Any) -> Iterator[Pipeline]:
    pipeline = Pipeline(stack)
    with pipeline.conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {pipeline.schema}")
        cur.execute(f"CREATE TABLE {pipeline.schema}.items (id int PRIMARY KEY, v text)")
        cur.execute(f"CREATE TABLE {pipeline.schema}.nokey (a int, b text)")
    pipeline.conn.commit()
    pipeline.settings = pipeline.settings.replace(source_tables=(f"{pipeline.schema}.items",))
    yield pipeline
    pipeline.close()


def statuses(report: CheckReport) -> dict[str, str]:
    return {i.name: i.status for i in report.items}


def leftovers(p: Pipeline) -> dict[str, Any]:
    """What a check could leave behind: probe objects, probe slots and tables, a checkpoint."""
    with p.admin.cursor() as cur:
        cur.execute("SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'cdc\\_check\\_%'")
        slots = [r[0] for r in cur.fetchall()]
    cur = p.engine.sink.connection.cursor()
    cur.execute(f"SHOW TABLES LIKE 'CDC_CHECK_%' IN SCHEMA {p.settings.snowflake_database}.CDC_LOAD")
    stage_root = Path(p.settings.stage_url.removeprefix("file://"))
    return {
        "probe_files": sorted(str(f) for f in (stage_root / p.name).rglob("*") if f.is_file()),
        "probe_slots": slots,
        "probe_tables": cur.fetchall(),
        "pipeline_slot": p.engine.source.slot_info(),
        "checkpoint": p.store.load(),
        "lease": p.store.read_lease(),
    }


def test_check_passes_on_the_devstack_and_leaves_nothing_behind(
    p: Pipeline, stack: Any, tmp_path: Path, capsys: Any, restore_logging: None
) -> None:
    config = tmp_path / "cdc.toml"
    config.write_text(
        f'source_tables = ["{p.schema}.items"]\n'
        + Path(stack.env["config"]).read_text().replace('pipeline = "devstack"', f'pipeline = "{p.name}"')
    )
    capsys.readouterr()
    code = main(["check", "--config", str(config), "--json"])
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert len(lines) == 1, out.out
    result = json.loads(lines[0])
    assert code == 0, result
    assert result["status"] == "ok" and result["failed"] == []
    assert [c["name"] for c in result["checks"]] == [n.format(s=p.schema) for n in EVERY_CHECK]
    by_name = {c["name"]: c for c in result["checks"]}
    assert {n for n, c in by_name.items() if c["status"] == "skipped"} == {"snowflake.warehouse"}
    assert by_name["postgres.slot"]["detail"].startswith(f"slot {p.settings.source_slot} does not exist yet")
    assert by_name[f"postgres.table {p.schema}.items"]["detail"] == (
        "key (id) from the primary key, replica identity default (the primary key), 2 columns, SELECT granted"
    )
    assert by_name["stage.write_read"]["detail"].endswith(f"{p.name}/_check/probe.txt; deleted it")
    assert by_name["snowflake.stage"]["detail"] == (
        f"stage {p.settings.snowflake_stage} reads {p.settings.stage_url}/"
    )
    assert leftovers(p) == {
        "probe_files": [],
        "probe_slots": [],
        "probe_tables": [],
        "pipeline_slot": None,
        "checkpoint": None,
        "lease": None,
    }


def test_wrong_postgres_password_fails_the_login_without_showing_it(
    p: Pipeline, stack: Any, capsys: Any
) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    path = f"cdc/{p.name}/source"
    admin = hvac.Client(url=stack.env["vault_addr"], token=stack.env["vault_token"], timeout=10)
    admin.secrets.kv.v2.create_or_update_secret(
        path=path, mount_point=devstack_base.VAULT_KV_MOUNT, secret={"user": "cdc", "password": wrong}
    )
    try:
        report = run_checks(p.settings.replace(vault_source_path=path))
    finally:
        admin.secrets.kv.v2.delete_metadata_and_all_versions(
            path=path, mount_point=devstack_base.VAULT_KV_MOUNT
        )
    assert report.failed == [report.item("postgres.login")]
    login = report.item("postgres.login")
    assert login.detail.startswith("AuthError: PostgreSQL refused the login while connecting to 127.0.0.1:")
    assert 'password authentication failed for user "cdc"' in login.detail
    assert login.fix is not None and f"in Vault at secret/{path}" in login.fix
    assert report.item("postgres.server").status == "skipped"
    assert report.item("vault.secret.source").detail == f"secret/{path}: fields user, password (user cdc)"
    shown = json.dumps(report.as_dict()) + report.text() + "".join(capsys.readouterr())
    assert wrong not in shown


def test_a_table_without_a_key_and_a_foreign_slot_are_named(p: Pipeline) -> None:
    with p.admin.cursor() as cur:  # another tool took the pipeline's slot name
        cur.execute(
            "SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (p.settings.source_slot,)
        )
    settings = p.settings.replace(source_tables=(f"{p.schema}.items", f"{p.schema}.nokey"))
    report = run_checks(settings)
    assert [i.name for i in report.failed] == ["postgres.slot", f"postgres.table {p.schema}.nokey"]
    slot = report.item("postgres.slot")
    assert slot.detail == f"slot {settings.source_slot} exists with output plugin test_decoding, not wal2json"
    assert slot.fix == "set source_slot (CDC_SOURCE_SLOT) to a free name, or drop the slot if nothing uses it"
    assert report.item("postgres.wal2json").status == "ok"  # proven with a temporary slot of its own
    nokey = report.item(f"postgres.table {p.schema}.nokey")
    assert nokey.detail == (
        f"table {p.schema}.nokey has no primary key and cannot be replicated: add a primary key, or a unique "
        "index on NOT NULL columns with ALTER TABLE ... REPLICA IDENTITY USING INDEX"
    )
    assert nokey.fix is not None and "source_keys" in nokey.fix
    assert report.item(f"postgres.table {p.schema}.items").status == "ok"


def test_missing_bucket_table_and_stage_are_named(p: Pipeline) -> None:
    bucket = f"no-such-bucket-{uuid.uuid4().hex[:8]}"
    settings = p.settings.replace(
        stage_url=f"s3://{bucket}/cdc",
        checkpoint_table="no-such-checkpoints",
        snowflake_stage="CDC_DEMO.CDC_LOAD.NO_SUCH_STAGE",
        alarm_topic_arn="arn:aws:sns:us-east-1:123456789012:no-such-topic",
    )
    report = run_checks(settings)
    assert [i.name for i in report.failed] == [
        "stage.write_read",
        "dynamodb.checkpoint_table",
        "snowflake.stage",
        "sns.alarm_topic",
    ]
    topic = report.item("sns.alarm_topic")
    assert "NotFound" in topic.detail and topic.fix is not None and "CDC_ALARM_TOPIC_ARN" in topic.fix
    stage = report.item("stage.write_read")
    assert stage.detail.startswith(
        f"StagePermanentError: write s3://{bucket}/cdc/{p.name}/_check/probe.txt: bucket '{bucket}' does not exist"
    )
    assert stage.fix is not None and stage.fix.startswith(f"make s3://{bucket}/cdc writable and readable")
    table = report.item("dynamodb.checkpoint_table")
    assert "table 'no-such-checkpoints'" in table.detail and "the table does not exist" in table.detail
    assert report.item("snowflake.stage").detail == (
        "stage CDC_DEMO.CDC_LOAD.NO_SUCH_STAGE does not exist or the role cannot see it"
    )


def test_a_wrong_vault_token_skips_what_needs_the_secrets(p: Pipeline, capsys: Any) -> None:
    token = f"s.{uuid.uuid4().hex}"
    report = run_checks(p.settings.replace(vault_token=Secret(token)))
    assert token not in json.dumps(report.as_dict()) + report.text() + "".join(capsys.readouterr())
    assert [i.name for i in report.failed] == ["vault.login"]
    assert (
        report.item("vault.login").detail.startswith("AuthError: Vault at http://127.0.0.1:")
        and "refused the token login" in report.item("vault.login").detail
    )
    assert {n: s for n, s in statuses(report).items() if s == "skipped"} == {
        "vault.secrets": "skipped",
        "postgres": "skipped",
        "snowflake": "skipped",
    }
    assert (
        statuses(report)["stage.write_read"] == "ok" and statuses(report)["dynamodb.checkpoint_table"] == "ok"
    )


# --- the Lambda ------------------------------------------------------------------------------------


def test_lambda_check_event_is_the_deployment_smoke_test(p: Pipeline, restore_logging: None) -> None:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in settings_env(p.settings.replace(metrics_mode="emf", log_format="text")).items():
            mp.setenv(key, value)
        result = load_handler().handler({"mode": "check"}, None)
        mp.setenv("CDC_SOURCE_TABLES", f"{p.schema}.items,{p.schema}.nokey")
        failing = load_handler().handler({"mode": "check"}, None)
    assert result["status"] == "ok" and result["failed"] == []
    assert [c["name"] for c in result["checks"]] == [n.format(s=p.schema) for n in EVERY_CHECK]
    assert result["checks"][-1] == {
        "name": "cloudwatch.metrics",
        "status": "skipped",
        "detail": "metrics_mode is emf: metrics go to stdout (EMF)",
        "fix": None,
    }
    assert failing["status"] == "failed" and failing["failed"] == [f"postgres.table {p.schema}.nokey"]
    assert p.store.load() is None and p.engine.source.slot_info() is None  # no window ran
