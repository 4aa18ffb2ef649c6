"""The whole pipeline against the real local servers: PostgreSQL + wal2json, moto, fakesnow, OpenBao."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import Pipeline

from cdc.app import build_engine
from cdc.demo import TABLES, compare_table, create_schema, replicate_until_caught_up, run_workload
from cdc.model import Lsn
from cdc.stage import read_manifest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def shop(stack: Any):
    p = Pipeline(stack, window_max_changes=40)
    p.settings = p.settings.replace(source_tables=tuple(f"{p.schema}.{t}" for t in TABLES))
    p.engine.close()
    p.engine = build_engine(p.settings)
    create_schema(p.conn, p.schema)
    yield p
    p.close()


def assert_all_equal(p: Pipeline) -> None:
    catalog = p.engine.source.catalog()
    for name in TABLES:
        diff = compare_table(p.conn, p.engine, catalog.tables[(p.schema, name)])
        assert diff.equal, (diff.table, diff.missing[:5], diff.extra[:5], diff.different[:5])
        assert diff.source_rows == diff.target_rows


def test_first_run_creates_slot_and_checkpoint_at_its_consistent_point(shop: Pipeline) -> None:
    result = shop.engine.run_window()
    assert result.status == "snapshot"
    checkpoint = shop.store.load()
    assert checkpoint is not None
    assert str(checkpoint.lsn) == result.end_lsn
    assert shop.slot_confirmed() == checkpoint.lsn


def test_workload_over_many_windows_makes_every_table_equal_row_by_row(shop: Pipeline) -> None:
    shop.engine.run_window()
    run_workload(shop.conn, shop.schema, 60, seed=1)
    results = replicate_until_caught_up(shop.engine)
    # the change bound (40) falls inside bursts of transactions: several windows were needed
    applied = [r for r in results if r["status"] == "applied"]
    assert len(applied) >= 3
    assert any(r["stop_reason"] == "max_changes" for r in applied)
    for previous, current in zip(applied, applied[1:], strict=False):
        assert Lsn.parse(current["start_lsn"]) == Lsn.parse(previous["end_lsn"])
    assert_all_equal(shop)
    run_workload(shop.conn, shop.schema, 40, seed=2)
    replicate_until_caught_up(shop.engine)
    assert_all_equal(shop)


def test_slot_is_never_confirmed_past_the_checkpoint(shop: Pipeline) -> None:
    shop.engine.run_window()
    run_workload(shop.conn, shop.schema, 30, seed=3)
    for _ in range(50):
        result = shop.engine.run_window()
        checkpoint = shop.store.load()
        assert checkpoint is not None
        confirmed = shop.slot_confirmed()
        assert confirmed <= checkpoint.lsn
        assert confirmed == checkpoint.lsn  # confirmed right after the checkpoint was written
        assert str(checkpoint.lsn) == result.end_lsn
        if result.caught_up:
            break
    else:
        pytest.fail("never caught up")


def _target_rows_with_metadata(p: Pipeline, table: str) -> list[dict[str, Any]]:
    schema = p.engine.source.catalog().tables[(p.schema, table)]
    rows = p.engine.sink.fetch_table(schema)  # type: ignore[attr-defined]
    assert all("_CDC_LSN" in r and "_CDC_SYNCED_AT" in r for r in rows)
    return rows


def _reapply(p: Pipeline, window: dict[str, Any]) -> None:
    start, end = Lsn.parse(window["start_lsn"]), Lsn.parse(window["end_lsn"])
    prefix = f"{p.name}/windows/{start.padded}-{end.padded}"
    manifest = read_manifest(p.engine.stage, prefix)
    catalog = p.engine.source.catalog()
    for entry in manifest["tables"]:
        table = catalog.tables[(entry["schema"], entry["table"])]
        truncate = tuple(entry["truncate"]) if entry["truncate"] else None
        p.engine.sink.apply(
            table,
            f"{prefix}/{entry['stage_dir']}",
            window_id="reapply",
            max_lsn=manifest["last_commit_lsn"],
            truncate=truncate,
        )


def test_reapplying_an_applied_window_changes_nothing(shop: Pipeline) -> None:
    shop.engine.run_window()
    run_workload(shop.conn, shop.schema, 25, seed=4)
    results = replicate_until_caught_up(shop.engine)
    applied = [r for r in results if r["status"] == "applied"]
    assert len(applied) >= 2
    before = {t: _target_rows_with_metadata(shop, t) for t in TABLES}
    assert sum(len(rows) for rows in before.values()) > 50
    # A crash between the MERGE and the checkpoint makes the next run apply the last window again.
    _reapply(shop, applied[-1])
    assert {t: _target_rows_with_metadata(shop, t) for t in TABLES} == before
    # Replaying every window in order also ends where it started (metadata included).
    for window in applied:
        _reapply(shop, window)
    assert {t: _target_rows_with_metadata(shop, t) for t in TABLES} == before
    assert_all_equal(shop)


def test_lambda_handler_runs_one_window_from_environment(stack: Any, monkeypatch: Any) -> None:
    p = Pipeline(stack)
    try:
        with p.conn.cursor() as cur:
            cur.execute(
                f"CREATE SCHEMA {p.schema}; CREATE TABLE {p.schema}.items (id int PRIMARY KEY, v text); "
                f"CREATE TABLE {p.schema}.other (id int PRIMARY KEY)"
            )
        p.conn.commit()
        env = {
            "CDC_PIPELINE": p.name,
            "CDC_SOURCE_HOST": p.settings.source_host,
            "CDC_SOURCE_PORT": str(p.settings.source_port),
            "CDC_SOURCE_DATABASE": p.settings.source_database,
            "CDC_SOURCE_SSLMODE": "verify-full",  # the devstack serves TCP over TLS only
            "CDC_SOURCE_SSLROOTCERT": p.settings.source_sslrootcert or "",
            "CDC_SOURCE_TABLES": f"{p.schema}.items",
            "CDC_VAULT_ADDR": p.settings.vault_addr,
            "CDC_VAULT_TOKEN": p.settings.vault_token.reveal(),
            "CDC_VAULT_SOURCE_PATH": p.settings.vault_source_path,
            "CDC_VAULT_SNOWFLAKE_PATH": p.settings.vault_snowflake_path,
            "CDC_SNOWFLAKE_ACCOUNT": p.settings.snowflake_account,
            "CDC_SNOWFLAKE_HOST": p.settings.snowflake_host or "",
            "CDC_SNOWFLAKE_PORT": str(p.settings.snowflake_port),
            "CDC_SNOWFLAKE_PROTOCOL": "http",
            "CDC_SNOWFLAKE_DATABASE": p.settings.snowflake_database,
            "CDC_SNOWFLAKE_STAGE": p.settings.snowflake_stage,
            "CDC_STAGE_URL": p.settings.stage_url,
            "CDC_AWS_ENDPOINT_URL": p.settings.aws_endpoint_url or "",
            "CDC_SNOWFLAKE_SWAP_STRATEGY": "rename",
            "CDC_CHECKPOINT_TABLE": p.settings.checkpoint_table,
            "CDC_LOG_FORMAT": "json",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        sys.path.insert(0, str(REPO / "lambda"))
        try:
            import handler as lambda_handler
        finally:
            sys.path.remove(str(REPO / "lambda"))

        class Context:
            def get_remaining_time_in_millis(self) -> int:
                return 300_000

        event = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
        first = lambda_handler.handler(event, Context())
        assert first["status"] == "snapshot"
        with p.conn.cursor() as cur:
            cur.execute(f"INSERT INTO {p.schema}.items VALUES (1, 'a'), (2, 'b')")
            cur.execute(f"UPDATE {p.schema}.items SET v = 'c' WHERE id = 2")
            cur.execute(f"DELETE FROM {p.schema}.items WHERE id = 1")
        p.conn.commit()
        # transactions with nothing for the pipeline: a table outside its set, an empty one
        with p.conn.cursor() as cur:
            cur.execute(f"INSERT INTO {p.schema}.other VALUES (1)")
        p.conn.commit()
        with p.conn.cursor() as cur:
            cur.execute("SELECT txid_current()")
        p.conn.commit()
        second = lambda_handler.handler(event, Context())
        json.dumps(second)  # JSON-serialisable
        assert second["status"] == "applied"
        assert second["transactions"] == 1
        assert second["changes"] == 4
        assert second["tables"] == {f"{p.schema}.items": {"I": 2, "U": 1, "D": 1, "T": 0}}
        assert second["start_lsn"] == first["end_lsn"]
        rows = p.engine.sink.fetch_table(p.engine.source.catalog().tables[(p.schema, "items")])
        assert [(r["id"], r["v"]) for r in rows] == [(2, "c")]
    finally:
        p.close()


def test_cli_sync_prints_one_json_object(stack: Any, tmp_path: Path) -> None:
    p = Pipeline(stack)
    try:
        config = tmp_path / "cdc.toml"
        text = (
            Path(stack.env["config"]).read_text().replace('pipeline = "devstack"', f'pipeline = "{p.name}"')
        )
        config.write_text(text)
        env = {**os.environ}
        out = subprocess.run(
            [sys.executable, "-m", "cdc.cli", "sync", "--config", str(config), "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        data = json.loads(out.stdout)
        assert data["pipeline"] == p.name
        assert data["status"] == "snapshot"
        assert out.stdout.count("\n") == 1
    finally:
        p.close()
