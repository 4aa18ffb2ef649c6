"""Faults against the real local stack: dead-lettering, secrets in logs, overlapping runs, WAL.

Each test has its own pipeline (schema, slot, stage prefix) and its own CloudWatch namespace;
the dead-letter queue is the stack's ``cdc-dlq`` (messages are told apart by pipeline).
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hvac
import psycopg2
import pytest
from helpers import Pipeline, load_handler, settings_env

from cdc.alerts import Alerts
from cdc.app import aws_client, build_engine
from cdc.cli import main as cli_main
from cdc.demo import TABLES, compare_table, create_schema, replicate_until_caught_up, run_workload
from cdc.devstack import base as devstack_base
from cdc.model import Lsn, WindowResult

REPO = Path(__file__).resolve().parents[2]


# --- helpers ------------------------------------------------------------------------------------


def execute(p: Pipeline, statements: list[str]) -> None:
    with p.conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement.format(s=p.schema))
    p.conn.commit()


def slot_lag_bytes(p: Pipeline) -> int:
    with p.admin.cursor() as cur:
        cur.execute(
            "SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint FROM pg_replication_slots "
            "WHERE slot_name = %s",
            (p.settings.source_slot,),
        )
        row = cur.fetchone()
        assert row is not None, "the slot is gone"
        return int(row[0])


def alerts_for(p: Pipeline, dlq_url: str) -> Alerts:
    return Alerts(
        aws_client(p.settings, "sqs"),
        dlq_url,
        aws_client(p.settings, "cloudwatch"),
        f"CDC/test-{p.name}",
        p.name,
    )


def drain(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Every message on the queue (bodies parsed), deleted as read."""
    bodies: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = got.get("Messages", [])
        if not messages:
            return bodies
        for m in messages:
            bodies.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])


@pytest.fixture
def pipe(stack: Any) -> Iterator[Pipeline]:
    p = Pipeline(stack)
    execute(p, ["CREATE SCHEMA {s}"])
    yield p
    p.close()


def with_tables(p: Pipeline, *tables: str) -> None:
    p.settings = p.settings.replace(source_tables=tuple(f"{p.schema}.{t}" for t in tables))
    p.engine.close()
    p.engine = build_engine(p.settings)


# --- (a) a window that fails for good -----------------------------------------------------------


def test_a_window_that_fails_for_good_sends_one_dead_letter_and_keeps_the_checkpoint(
    stack: Any, pipe: Pipeline
) -> None:
    p = pipe
    execute(p, ["CREATE TABLE {s}.prices (id int PRIMARY KEY, n numeric(5,2))"])
    with_tables(p, "prices")
    alerts = alerts_for(p, stack.env["dlq_url"])
    drain(alerts.sqs, stack.env["dlq_url"])  # earlier tests' leftovers are not ours
    alerts.after_window(p.engine.run_window())  # first run: slot and checkpoint
    execute(
        p, ["INSERT INTO {s}.prices VALUES (1, 1.5), (2, 2.5)", "UPDATE {s}.prices SET n = 3 WHERE id = 2"]
    )
    applied = p.engine.run_window()
    assert applied.status == "applied", applied
    alerts.after_window(applied, slot_lag_bytes=slot_lag_bytes(p))

    before = p.store.load()
    assert before is not None
    execute(p, ["INSERT INTO {s}.prices VALUES (3, 'NaN')"])
    failed = p.engine.run_window()
    assert failed.status == "failed" and failed.error is not None and failed.error["kind"] == "permanent"
    after = p.store.load()
    assert after is not None and after.lsn == before.lsn and after.window_id == before.window_id
    assert p.slot_confirmed() == before.lsn
    alerts.after_window(failed, slot_lag_bytes=slot_lag_bytes(p), checkpoint_lsn=str(before.lsn))
    assert alerts.delivery_errors == 0

    ours = [m for m in drain(alerts.sqs, stack.env["dlq_url"]) if m["pipeline"] == p.name]
    assert len(ours) == 1, ours
    (message,) = ours
    assert message["window_id"] == failed.window_id
    assert message["start_lsn"] == str(before.lsn) and message["end_lsn"] is None
    assert message["error_class"] == failed.error["class"] and message["kind"] == "permanent"
    assert "n" in message["message"] and "NUMBER(5,2)" in message["message"]

    # the metrics are in CloudWatch (moto over HTTP)
    cw, ns = alerts.cloudwatch, alerts.namespace
    assert cw is not None
    pipeline_dim = [{"Name": "Pipeline", "Value": p.name}]

    def total(metric: str, dims: list[dict[str, str]] = pipeline_dim) -> float:
        now = datetime.now(UTC)
        stats = cw.get_metric_statistics(
            Namespace=ns,
            MetricName=metric,
            Dimensions=dims,
            StartTime=now - timedelta(minutes=10),
            EndTime=now + timedelta(minutes=1),
            Period=60,
            Statistics=["Sum"],
        )
        return float(sum(d["Sum"] for d in stats["Datapoints"]))

    assert total("WindowFailures") == 1
    assert total("SlotLagBytes") > 0
    table = f"{p.schema}.prices"

    def rows(op: str) -> float:
        dims = [*pipeline_dim, {"Name": "Table", "Value": table}, {"Name": "Operation", "Value": op}]
        return total("Rows", dims)

    assert (rows("I"), rows("U")) == (2, 1)
    names = {m["MetricName"] for m in cw.list_metrics(Namespace=ns)["Metrics"]}
    assert {
        "Windows",
        "WindowFailures",
        "WindowDuration",
        "BytesStaged",
        "Retries",
        "SlotLagBytes",
        "Rows",
    } <= names


# --- (b) no secret in any log line, error, dead letter, result, manifest or metric --------------


def spellings(secret: str) -> set[str]:
    """Every way ``secret`` could show in output: raw, and escaped inside a JSON string."""
    return {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}


def test_no_secret_reaches_logs_errors_dead_letters_or_results(
    stack: Any,
    pipe: Pipeline,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    restore_logging: None,
    tmp_path: Path,
) -> None:
    p = pipe
    tag = uuid.uuid4().hex[:8]
    # secrets JSON escapes (quotes, backslashes) or that a naive split would cut (spaces)
    pg_password = f'pg "pass\\word" {tag} end'
    sf_password = f'sf \\"pa ss\\" {tag}'
    wrong_token = f'hvs.wrong "tok\\en" {tag}'
    wrong_pg_password = f'wrong pg "pass\\" {tag}'
    secrets = {
        "postgres password": pg_password,
        "snowflake password": sf_password,
        "vault token": stack.env["vault_token"],
        "stack postgres password": dict(kv.split("=", 1) for kv in stack.env["postgres_dsn"].split())[
            "password"
        ],
        "wrong vault token": wrong_token,
        "wrong postgres password": wrong_pg_password,
    }
    assert all(len(v) >= 8 for v in secrets.values())
    assert all('"' in v and "\\" in v and " " in v for v in (pg_password, sf_password, wrong_token))

    # the pipeline logs in with these passwords: PostgreSQL checks its own (a role made for the test),
    # the fakesnow stand-in takes any
    role = f"cdc_{p.name}"
    admin = hvac.Client(url=stack.env["vault_addr"], token=stack.env["vault_token"], timeout=10)
    kv2, mount = admin.secrets.kv.v2, devstack_base.VAULT_KV_MOUNT
    paths = {
        "source": f"cdc/{p.name}/source",
        "snowflake": f"cdc/{p.name}/snowflake",
        "wrong": f"cdc/{p.name}/wrong-source",
    }
    with p.admin.cursor() as cur:
        cur.execute(f"CREATE ROLE {role} LOGIN REPLICATION PASSWORD %s", (pg_password,))
        cur.execute(f"GRANT pg_read_all_data TO {role}")
    kv2.create_or_update_secret(
        path=paths["source"], mount_point=mount, secret={"user": role, "password": pg_password}
    )
    kv2.create_or_update_secret(
        path=paths["snowflake"],
        mount_point=mount,
        secret={"user": stack.env["snowflake"]["user"], "password": sf_password},
    )
    kv2.create_or_update_secret(
        path=paths["wrong"], mount_point=mount, secret={"user": role, "password": wrong_pg_password}
    )
    try:
        config = tmp_path / "cdc.toml"
        config.write_text("")  # every setting comes from the environment, as in the Lambda
        texts = _run_everything_that_could_leak(p, caplog, capsys, paths, wrong_token, role, config)
    finally:
        p.engine.close()
        for path in paths.values():
            kv2.delete_metadata_and_all_versions(path=path, mount_point=mount)
        with p.admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
            cur.execute(f"DROP ROLE {role}")
    leaks = [
        (what, where)
        for what, value in secrets.items()
        for where, text in texts.items()
        if any(form in text for form in spellings(value))
    ]
    assert leaks == []


def _run_everything_that_could_leak(
    p: Pipeline,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    paths: dict[str, str],
    wrong_token: str,
    role: str,
    config: Path,
) -> dict[str, str]:
    """Good, failed and refused runs of the engine, the Lambda and the command line; every text
    they left, by where it was found."""
    queue = aws_client(p.settings, "sqs").create_queue(QueueName=f"dlq-{p.name}")["QueueUrl"]
    alerts = alerts_for(p, queue)
    emf = io.StringIO()
    emf_alerts = Alerts(None, None, None, f"CDC/test-{p.name}", p.name, stdout=emf)
    results: list[dict[str, Any]] = []

    def after(result: WindowResult) -> None:
        results.append(result.as_dict())
        alerts.after_window(result, slot_lag_bytes=None)
        emf_alerts.after_window(result, slot_lag_bytes=None)

    caplog.set_level(logging.DEBUG)
    for name in ("cdc", "hvac", "botocore", "snowflake.connector", "psycopg2", "urllib3"):
        logging.getLogger(name).setLevel(logging.DEBUG)

    # 1. a good run, an applied window and a window that fails for good, as the role above
    execute(p, ["CREATE TABLE {s}.prices (id int PRIMARY KEY, n numeric(5,2))"])
    p.settings = p.settings.replace(
        vault_source_path=paths["source"], vault_snowflake_path=paths["snowflake"]
    )
    with_tables(p, "prices")
    after(p.engine.run_window())
    execute(p, ["INSERT INTO {s}.prices VALUES (1, 1.5)"])
    after(p.engine.run_window())
    with p.admin.cursor() as cur:  # the pipeline's sessions really are the role's
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (role,))
        assert cur.fetchone()[0] >= 1
    execute(p, ["INSERT INTO {s}.prices VALUES (2, 'NaN')"])
    after(p.engine.run_window())
    assert [r["status"] for r in results] == ["snapshot", "applied", "failed"]

    # 2. the Lambda with a wrong Vault token (the login fails), and with a wrong PostgreSQL
    # password in Vault (the PostgreSQL login fails)
    handler_results = []
    debug = {"log_level": "DEBUG"}
    for changes in ({"vault_token": wrong_token}, {"vault_source_path": paths["wrong"]}):
        with pytest.MonkeyPatch.context() as mp:
            for key, value in settings_env(p.settings, **changes, **debug).items():
                mp.setenv(key, value)
            handler_results.append(load_handler().handler({}, None))
    assert [r["status"] for r in handler_results] == ["failed", "failed"], handler_results
    assert [r["error"]["class"] for r in handler_results] == ["AuthError", "AuthError"]
    for r in handler_results:
        after(WindowResult(p.name, r.get("window_id", "startup"), "failed", error=r["error"]))
        results[-1] = r  # the handler's own result is what the Lambda returns: check that one

    # 3. the command line: a window (it fails on the NaN again), the status and the preflight
    codes = []
    for command in ("sync", "status", "check"):
        with pytest.MonkeyPatch.context() as mp:
            for key, value in settings_env(p.settings).items():
                mp.setenv(key, value)
            codes.append(cli_main([command, "--config", str(config), "--json"]))
    assert codes[0] == 1  # the failed window

    dead_letters = drain(alerts.sqs, queue)
    assert len(dead_letters) == 3  # NaN window, wrong token, wrong password
    captured = capsys.readouterr()
    with capsys.disabled():
        print("\nhandler errors:", [(r["error"]["class"], r["error"].get("kind")) for r in handler_results])
    stage_root = Path(p.settings.stage_url.removeprefix("file://")) / p.name
    manifests = sorted(stage_root.rglob("manifest.json"))
    assert manifests  # the applied window's and the snapshot's
    cw = alerts.cloudwatch
    now = datetime.now(UTC)
    listed = cw.list_metrics(Namespace=alerts.namespace)["Metrics"]
    data = cw.get_metric_data(
        MetricDataQueries=[
            {"Id": f"m{i}", "MetricStat": {"Metric": m, "Period": 60, "Stat": "Sum"}}
            for i, m in enumerate(listed[:100])
        ],
        StartTime=now - timedelta(minutes=10),
        EndTime=now + timedelta(minutes=1),
    )
    assert {m["MetricName"] for m in listed} >= {"Windows", "WindowFailures", "Rows"}
    assert len(caplog.records) > 20 and captured.err  # the logs were really captured
    return {
        "log records": "\n".join(
            f"{r.getMessage()} {json.dumps(vars(r), default=str)}" for r in caplog.records
        ),
        "formatted log lines": captured.err,
        "command line and EMF output": captured.out,
        "error messages": json.dumps([r["error"] for r in results if r.get("error")]),
        "dead letters": json.dumps(dead_letters),
        "results": json.dumps(results, default=str),
        "manifests": "\n".join(m.read_text() for m in manifests),
        "metrics": json.dumps([listed, data["MetricDataResults"]], default=str),
        "EMF lines": emf.getvalue(),
    }


# --- (c) two runs started together --------------------------------------------------------------


def test_runs_started_together_hold_the_lease_in_turn_and_the_target_equals_the_source(
    stack: Any, pipe: Pipeline, tmp_path: Path
) -> None:
    p = pipe
    create_schema(p.conn, p.schema)
    with_tables(p, *TABLES)
    assert p.engine.run_window().status == "snapshot"
    config = tmp_path / "cdc.toml"
    config.write_text((stack.dir / "cdc.toml").read_text())
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CDC_")},
        "CDC_PIPELINE": p.name,
        "CDC_SOURCE_TABLES": ",".join(p.settings.source_tables),
        "CDC_WINDOW_MAX_CHANGES": "200",
    }

    stop = threading.Event()
    writer_errors: list[BaseException] = []

    def writer() -> None:
        conn = psycopg2.connect(stack.env["postgres_dsn"])
        try:
            seed = 100
            while not stop.is_set():
                run_workload(conn, p.schema, 5, seed=seed)
                seed += 1
                time.sleep(0.05)
        except BaseException as exc:  # reported by the test below
            writer_errors.append(exc)
        finally:
            conn.close()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    statuses: list[str] = []
    try:
        for _ in range(5):
            procs = [
                subprocess.Popen(
                    [sys.executable, "-m", "cdc.cli", "sync", "--config", str(config), "--json"],
                    cwd=REPO,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for _ in range(2)
            ]
            for proc in procs:
                out, err = proc.communicate(timeout=180)
                assert proc.returncode == 0, (out, err[-3000:])
                result = json.loads(out)
                assert result["status"] in ("applied", "empty", "lease_held"), result
                statuses.append(result["status"])
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not writer_errors, writer_errors
    assert "applied" in statuses, statuses
    print("overlapping runs:", {s: statuses.count(s) for s in set(statuses)})

    replicate_until_caught_up(p.engine)
    catalog = p.engine.source.catalog()
    for name in TABLES:
        diff = compare_table(p.conn, p.engine, catalog.tables[(p.schema, name)])
        assert diff.equal, (diff.table, diff.missing[:5], diff.extra[:5], diff.different[:5])


# --- (d) WAL written only for tables that are not replicated -----------------------------------


def test_the_slot_moves_forward_while_only_unreplicated_tables_change(pipe: Pipeline) -> None:
    p = pipe
    execute(
        p,
        [
            "CREATE TABLE {s}.replicated (id int PRIMARY KEY, v text)",
            "CREATE TABLE {s}.other (id int PRIMARY KEY, v text)",
        ],
    )
    with_tables(p, "replicated")
    assert p.engine.run_window().status == "snapshot"
    confirmed = [p.slot_confirmed()]
    for round_ in range(3):
        for i in range(20):
            execute(
                p,
                [
                    f"INSERT INTO {{s}}.other SELECT g, repeat('x', 200) FROM generate_series({round_ * 1000 + i * 50}, {round_ * 1000 + i * 50 + 49}) g"
                ],
            )
        result = p.engine.run_window()
        assert result.status == "empty" and result.changes == 0, result
        assert result.end_lsn is not None and Lsn.parse(result.end_lsn) > confirmed[-1]
        checkpoint = p.store.load()
        assert checkpoint is not None and str(checkpoint.lsn) == result.end_lsn
        confirmed.append(p.slot_confirmed())
        assert confirmed[-1] == checkpoint.lsn
    assert confirmed == sorted(set(confirmed)), confirmed  # strictly forward, window after window
    # every window reports the slot: wal_status, retained WAL and lag
    assert result.slot is not None and result.slot.wal_status in ("reserved", "extended")
    assert result.slot.lag_bytes is not None and result.slot.retained_bytes is not None


def set_max_slot_wal_keep_size(p: Pipeline, value: str) -> None:
    p.admin.autocommit = True
    with p.admin.cursor() as cur:
        cur.execute(f"ALTER SYSTEM SET max_slot_wal_keep_size = '{value}'")
        cur.execute("SELECT pg_reload_conf()")
        for _ in range(50):  # the reload reaches this backend's view of the setting shortly
            cur.execute("SHOW max_slot_wal_keep_size")
            row = cur.fetchone()
            if row and row[0] == value:
                return
            time.sleep(0.1)
    raise AssertionError(f"max_slot_wal_keep_size did not become {value}")


def test_every_window_reports_the_slot_and_warns_before_it_is_at_risk(
    stack: Any, pipe: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    p = pipe
    execute(p, ["CREATE TABLE {s}.t (id int PRIMARY KEY)"])
    with_tables(p, "t")
    assert p.engine.run_window().status == "snapshot"
    alerts = alerts_for(p, stack.env["dlq_url"])
    execute(p, ["INSERT INTO {s}.t VALUES (1)"])
    quiet = p.engine.run_window()
    assert quiet.status == "applied" and quiet.slot is not None
    assert quiet.slot.safe_wal_bytes is None  # the server keeps WAL for slots without limit
    assert quiet.lag_s is not None and 0 <= quiet.lag_s < 600
    as_dict = quiet.as_dict()
    assert set(as_dict["slot"]) == {"wal_status", "retained_bytes", "safe_wal_bytes", "lag_bytes"}
    alerts.after_window(quiet)

    set_max_slot_wal_keep_size(p, "1GB")
    try:
        execute(p, ["INSERT INTO {s}.t VALUES (2)"])
        limited = p.engine.run_window()
        assert limited.slot is not None and limited.slot.safe_wal_bytes is not None
        assert 0 < limited.slot.safe_wal_bytes < 2 * 1024**3  # 1 GB from the segment it is in
        # the warning threshold (2 GiB by default) is above what this server lets the slot keep
        with caplog.at_level(logging.WARNING, logger="cdc.alerts"):
            alerts.after_window(limited)
    finally:
        set_max_slot_wal_keep_size(p, "-1")
    warnings = [r.getMessage() for r in caplog.records if "replication slot at risk" in r.getMessage()]
    assert len(warnings) == 1 and "max_slot_wal_keep_size" in warnings[0], warnings
    assert alerts.delivery_errors == 0

    cw = alerts.cloudwatch
    assert cw is not None
    now = datetime.now(UTC)

    def values(metric: str) -> list[float]:
        stats = cw.get_metric_statistics(
            Namespace=alerts.namespace,
            MetricName=metric,
            Dimensions=[{"Name": "Pipeline", "Value": p.name}],
            StartTime=now - timedelta(minutes=10),
            EndTime=now + timedelta(minutes=1),
            Period=60,
            Statistics=["Maximum", "SampleCount"],
        )
        return [d["Maximum"] for d in stats["Datapoints"]]

    assert max(values("SlotAtRisk")) == 1
    assert values("SlotSafeWalBytes") and max(values("SlotSafeWalBytes")) < 2 * 1024**3
    assert values("SlotRetainedBytes") and values("CommitLagSeconds")
