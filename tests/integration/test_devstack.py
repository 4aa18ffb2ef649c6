"""The embedded local stack: every part answers with what the pipeline expects, `up` is
idempotent, a second stack runs beside the first, and `down` stops exactly its own processes."""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import hvac
import psycopg2
import pytest
import snowflake.connector

from cdc import devstack
from cdc.devstack import postgres as devstack_postgres
from cdc.devstack.procs import start_time, wait_until

PARTS = ("postgres", "moto", "fakesnow", "openbao")
REQUIRED_KEYS = {
    "postgres_dsn", "postgres_admin_dsn", "snowflake", "aws_endpoint_url", "aws_region",
    "aws_access_key_id", "aws_secret_access_key", "vault_addr", "vault_token", "config",
    "stage_dir", "checkpoint_table", "s3_bucket", "dlq_url", "sns_topic_arn", "dir",
}  # fmt: skip


def _state(directory: Path) -> dict[str, Any]:
    state: dict[str, Any] = json.loads((directory / "state.json").read_text())
    return state


def _pids(directory: Path) -> dict[str, int]:
    return {name: part["pid"] for name, part in _state(directory)["parts"].items()}


def _ports(directory: Path) -> dict[str, int]:
    return {name: part["port"] for name, part in _state(directory)["parts"].items()}


def _gone(pids: list[int]) -> bool:
    return wait_until(lambda: all(start_time(pid) is None for pid in pids), 10)


def _aws(env: dict[str, Any], service: str) -> Any:
    make_client: Any = boto3.client  # the stubs only know literal service names
    return make_client(
        service,
        endpoint_url=env["aws_endpoint_url"],
        region_name=env["aws_region"],
        aws_access_key_id=env["aws_access_key_id"],
        aws_secret_access_key=env["aws_secret_access_key"],
    )


def _pg_scalar(dsn: str, sql: str) -> Any:
    conn = psycopg2.connect(dsn, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone()[0]  # type: ignore[index]
    finally:
        conn.close()


def _answers(env: dict[str, Any]) -> None:
    """Every part of the stack behind ``env`` serves a real request."""
    assert _pg_scalar(env["postgres_dsn"], "SELECT current_user") == "cdc"
    assert (
        _aws(env, "dynamodb").describe_table(TableName="cdc-checkpoints")["Table"]["TableStatus"] == "ACTIVE"
    )
    assert hvac.Client(url=env["vault_addr"], token=env["vault_token"]).is_authenticated() is True
    conn = snowflake.connector.connect(**env["snowflake"], login_timeout=10)
    try:
        assert conn.cursor().execute("SELECT 1").fetchall() == [(1,)]  # type: ignore[union-attr]
    finally:
        conn.close()


def test_up_returns_env_with_every_key_and_exact_values(stack: Any) -> None:
    env, state = stack.env, _state(stack.dir)
    ports, pw = _ports(stack.dir), state["secrets"]
    assert set(env) >= REQUIRED_KEYS
    assert env["dir"] == str(stack.dir)
    assert env["config"] == str(stack.dir / "cdc.toml")
    assert env["postgres_dsn"] == (
        f"host=127.0.0.1 port={ports['postgres']} dbname=app user=cdc "
        f"password={pw['pg_password']} sslmode=verify-full sslrootcert={stack.dir}/postgres-ca.pem"
    )
    assert env["postgres_ca"] == f"{stack.dir}/postgres-ca.pem"
    socket_dir = state["parts"]["postgres"]["socket_dir"]
    assert env["postgres_admin_dsn"] == f"host={socket_dir} port={ports['postgres']} dbname=app user=postgres"
    assert env["snowflake"] == {
        "host": "127.0.0.1", "port": ports["fakesnow"], "protocol": "http", "account": "fakesnow",
        "user": "cdc", "password": pw["snowflake_password"], "database": "CDC_DEMO",
    }  # fmt: skip
    assert env["aws_endpoint_url"] == f"http://127.0.0.1:{ports['moto']}"
    assert (env["aws_region"], env["aws_access_key_id"], env["aws_secret_access_key"]) == (
        "us-east-1", "testing", "testing",
    )  # fmt: skip
    assert env["vault_addr"] == f"http://127.0.0.1:{ports['openbao']}"
    assert env["vault_token"] == pw["vault_token"]
    assert env["stage_dir"] == str(stack.dir / "stage")
    assert Path(env["stage_dir"]).is_dir()
    assert (env["checkpoint_table"], env["s3_bucket"]) == ("cdc-checkpoints", "cdc-stage")
    assert env["dlq_url"] == f"http://127.0.0.1:{ports['moto']}/123456789012/cdc-dlq"
    assert env["sns_topic_arn"] == "arn:aws:sns:us-east-1:123456789012:cdc-alerts"
    assert len(set(ports.values()) | {ports["openbao"] + 1}) == 5


def test_config_file_loads_and_points_at_the_running_parts(stack: Any) -> None:
    s, ports = stack.settings, _ports(stack.dir)
    assert (s.pipeline, s.source_host, s.source_port, s.source_database, s.source_sslmode) == (
        "devstack", "127.0.0.1", ports["postgres"], "app", "verify-full",
    )  # fmt: skip
    assert s.source_sslrootcert == f"{stack.dir}/postgres-ca.pem"
    assert s.source_tables == ()
    assert (s.vault_addr, s.vault_auth_method, s.vault_token.reveal()) == (
        stack.env["vault_addr"], "token", stack.env["vault_token"],
    )  # fmt: skip
    assert (s.vault_source_path, s.vault_snowflake_path, s.vault_kv_mount) == (
        "cdc/source",
        "cdc/snowflake",
        "secret",
    )
    assert (s.snowflake_account, s.snowflake_host, s.snowflake_port, s.snowflake_protocol) == (
        "fakesnow", "127.0.0.1", ports["fakesnow"], "http",
    )  # fmt: skip
    assert (s.snowflake_database, s.snowflake_stage, s.snowflake_load_schema) == (
        "CDC_DEMO", "CDC_DEMO.CDC_LOAD.CDC_STAGE", "CDC_LOAD",
    )  # fmt: skip
    assert s.stage_url == f"file://{stack.dir}/stage"
    assert (s.aws_region, s.aws_endpoint_url, s.checkpoint_table) == (
        "us-east-1", f"http://127.0.0.1:{ports['moto']}", "cdc-checkpoints",
    )  # fmt: skip
    assert s.window_max_seconds == 60
    assert os.stat(stack.dir / "cdc.toml").st_mode & 0o077 == 0
    assert os.stat(stack.dir / "state.json").st_mode & 0o077 == 0


def test_postgres_serves_cdc_over_tcp_with_logical_decoding(stack: Any) -> None:
    conn = psycopg2.connect(stack.env["postgres_dsn"])
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW wal_level")
            assert cur.fetchone() == ("logical",)
            cur.execute("SELECT current_user, current_database(), inet_server_addr()::text")
            assert cur.fetchone() == ("cdc", "app", "127.0.0.1/32")
            cur.execute(
                "SELECT setting FROM pg_settings WHERE name IN ('max_replication_slots', 'max_wal_senders')"
            )
            assert cur.fetchall() == [("32",), ("32",)]
            cur.execute("SELECT rolreplication, rolsuper FROM pg_roles WHERE rolname = 'cdc'")
            assert cur.fetchone() == (True, False)
            cur.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'app'")
            assert cur.fetchone() == ("cdc",)
    finally:
        conn.close()


def test_postgres_refuses_a_wrong_password(stack: Any) -> None:
    dsn = stack.env["postgres_dsn"].replace(_state(stack.dir)["secrets"]["pg_password"], "wrong")
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(dsn)


def test_admin_dsn_is_the_superuser_over_the_unix_socket(stack: Any) -> None:
    dsn = stack.env["postgres_admin_dsn"]
    assert _pg_scalar(dsn, "SELECT current_user || ' ' || current_database()") == "postgres app"
    assert _pg_scalar(dsn, "SHOW is_superuser") == "on"
    assert _pg_scalar(dsn, "SELECT inet_server_addr() IS NULL") is True  # a unix socket


def test_wal2json_slot_decodes_an_insert_and_is_dropped(stack: Any) -> None:
    tag = f"devstack_{secrets.token_hex(4)}"
    conn = psycopg2.connect(stack.env["postgres_dsn"])
    conn.autocommit = True
    cur = conn.cursor()
    try:
        cur.execute(f"CREATE SCHEMA {tag}; CREATE TABLE {tag}.t (id int PRIMARY KEY, note text)")
        cur.execute("SELECT slot_name FROM pg_create_logical_replication_slot(%s, 'wal2json')", (tag,))
        cur.execute("SELECT slot_name, plugin FROM pg_replication_slots WHERE slot_name = %s", (tag,))
        assert cur.fetchone() == (tag, "wal2json")
        cur.execute(f"INSERT INTO {tag}.t VALUES (1, 'hello')")
        cur.execute(
            "SELECT data FROM pg_logical_slot_get_changes(%s, NULL, NULL, 'format-version', '2')", (tag,)
        )
        messages = [json.loads(row[0]) for row in cur.fetchall()]
        # commits of other sessions (an autovacuum's ANALYZE) come as a B and a C with nothing between
        bare = {
            i for i in range(len(messages) - 1) if messages[i : i + 2] == [{"action": "B"}, {"action": "C"}]
        }
        assert [m for i, m in enumerate(messages) if i not in bare and i - 1 not in bare] == [
            {"action": "B"},
            {
                "action": "I", "schema": tag, "table": "t",
                "columns": [
                    {"name": "id", "type": "integer", "value": 1},
                    {"name": "note", "type": "text", "value": "hello"},
                ],
            },
            {"action": "C"},
        ]  # fmt: skip
    finally:
        cur.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
            (tag,),
        )
        cur.execute(f"DROP SCHEMA IF EXISTS {tag} CASCADE")
        cur.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (tag,))
        assert cur.fetchone() == (0,)
        conn.close()


def test_moto_serves_the_checkpoint_table_bucket_queue_and_topic(stack: Any) -> None:
    env = stack.env
    table = _aws(env, "dynamodb").describe_table(TableName="cdc-checkpoints")["Table"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "pk", "AttributeType": "S"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    # Other integration tests share this moto: look for ours rather than expect it alone.
    assert "cdc-stage" in [b["Name"] for b in _aws(env, "s3").list_buckets()["Buckets"]]
    assert _aws(env, "sqs").get_queue_url(QueueName="cdc-dlq")["QueueUrl"] == env["dlq_url"]
    assert env["sns_topic_arn"] in [t["TopicArn"] for t in _aws(env, "sns").list_topics()["Topics"]]


def test_fakesnow_has_the_database_schema_and_stage(stack: Any) -> None:
    conn = snowflake.connector.connect(**stack.env["snowflake"])
    try:
        cur = conn.cursor()
        assert cur.execute("SELECT current_database()").fetchall() == [("CDC_DEMO",)]  # type: ignore[union-attr]
        stages = cur.execute("SHOW STAGES IN SCHEMA CDC_DEMO.CDC_LOAD").fetchall()  # type: ignore[union-attr]
        assert [(row[1], row[2], row[3], row[4]) for row in stages if row[1] == "CDC_STAGE"] == [
            ("CDC_STAGE", "CDC_DEMO", "CDC_LOAD", f"file://{stack.dir}/stage/")
        ]
    finally:
        conn.close()


def test_vault_holds_the_source_and_snowflake_secrets(stack: Any) -> None:
    client = hvac.Client(url=stack.env["vault_addr"], token=stack.env["vault_token"])
    kv = client.secrets.kv.v2
    source = kv.read_secret_version(path="cdc/source", mount_point="secret", raise_on_deleted_version=True)
    sf = kv.read_secret_version(path="cdc/snowflake", mount_point="secret", raise_on_deleted_version=True)
    assert source["data"]["data"] == {"user": "cdc", "password": _state(stack.dir)["secrets"]["pg_password"]}
    assert sf["data"]["data"] == {"user": "cdc", "password": stack.env["snowflake"]["password"]}


def test_env_returns_what_up_returned(stack: Any) -> None:
    assert devstack.env(stack.dir) == stack.env


def test_second_up_on_the_same_dir_is_idempotent_and_fast(stack: Any) -> None:
    before = _state(stack.dir)
    started = time.monotonic()
    env = devstack.up(stack.dir)
    elapsed = time.monotonic() - started
    assert env == stack.env
    assert _state(stack.dir) == before
    assert elapsed < 2.0, f"second up took {elapsed:.2f} s"


@pytest.fixture(scope="module")
def second_stack(tmp_path_factory: pytest.TempPathFactory, stack: Any) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("devstack-second")
    try:
        devstack.up(directory)
        yield directory
    finally:
        devstack.down(directory, purge=True)


def test_second_stack_runs_beside_the_first_on_other_ports(stack: Any, second_stack: Path) -> None:
    first, second = _ports(stack.dir), _ports(second_stack)
    first_all = set(first.values()) | {first["openbao"] + 1}
    second_all = set(second.values()) | {second["openbao"] + 1}
    assert first_all.isdisjoint(second_all)
    assert set(_pids(stack.dir).values()).isdisjoint(_pids(second_stack).values())
    _answers(devstack.env(second_stack))


def test_up_restarts_only_the_part_that_died(second_stack: Path) -> None:
    devstack.up(second_stack)
    before_pids, before_ports = _pids(second_stack), _ports(second_stack)
    os.kill(before_pids["moto"], signal.SIGKILL)
    assert _gone([before_pids["moto"]])
    with pytest.raises(devstack.DevstackError, match="not running: moto not answering"):
        devstack.env(second_stack)
    env = devstack.up(second_stack)
    after = _pids(second_stack)
    assert after["moto"] != before_pids["moto"]
    assert {k: v for k, v in after.items() if k != "moto"} == {
        k: v for k, v in before_pids.items() if k != "moto"
    }
    assert _ports(second_stack) == before_ports
    _answers(env)  # the restarted moto has its table, bucket, queue and topic again
    assert _aws(env, "sqs").get_queue_url(QueueName="cdc-dlq")["QueueUrl"] == env["dlq_url"]


def test_down_stops_only_that_stacks_processes(stack: Any, second_stack: Path) -> None:
    devstack.up(second_stack)
    pids = _pids(second_stack)
    devstack.down(second_stack)
    assert _gone(list(pids.values()))
    assert all(part.get("pid") is None for part in _state(second_stack)["parts"].values())
    with pytest.raises(devstack.DevstackError, match="is not running"):
        devstack.env(second_stack)
    assert all(start_time(pid) is not None for pid in _pids(stack.dir).values())
    _answers(devstack.env(stack.dir))
    devstack.down(second_stack)  # a second down has nothing left to stop


def test_env_of_a_directory_without_a_stack_says_how_to_start_one(tmp_path: Path) -> None:
    with pytest.raises(devstack.DevstackError, match=r"(?s)no devstack in .*cdc devstack up --dir"):
        devstack.env(tmp_path)
    devstack.down(tmp_path)  # nothing to stop: no error


def test_missing_postgres_names_the_packages_and_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(devstack_postgres, "PG_BINDIR", tmp_path / "no-such-bin")
    with pytest.raises(devstack.DevstackError) as info:
        devstack.up(tmp_path / "stack")
    assert "postgresql-15 postgresql-15-wal2json" in str(info.value)
    assert "make test" in str(info.value)
    assert not (tmp_path / "stack" / "state.json").exists()
