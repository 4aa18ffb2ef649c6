"""``cdc replay`` and ``cdc checkpoint`` against the real local stack."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers import Pipeline

from cdc.demo import compare_table, replicate_until_caught_up
from cdc.model import Lsn
from cdc.replay import main
from cdc.snowflake import sql as sfsql
from cdc.stage import LocalStage


@pytest.fixture
def p(stack: Any, tmp_path: Path):
    pipeline = Pipeline(stack, window_max_changes=20)
    with pipeline.conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {pipeline.schema}")
        cur.execute(f"CREATE TABLE {pipeline.schema}.items (id int PRIMARY KEY, v text, n int)")
        cur.execute(f"CREATE TABLE {pipeline.schema}.other (id int PRIMARY KEY, v text)")
    pipeline.conn.commit()
    assert pipeline.engine.run_window().status == "snapshot"
    config = tmp_path / "cdc.toml"
    text = Path(stack.env["config"]).read_text()
    config.write_text(text.replace('pipeline = "devstack"', f'pipeline = "{pipeline.name}"'))
    pipeline.config = config  # type: ignore[attr-defined]
    yield pipeline
    pipeline.close()


def run(p: Pipeline, capsys: Any, *args: str) -> tuple[int, dict[str, Any], str]:
    capsys.readouterr()
    code = main([args[0], *args[1:], "--config", str(p.config), "--json"])  # type: ignore[attr-defined]
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert len(lines) == 1, out
    return code, json.loads(lines[0]), out.err


def workload(p: Pipeline) -> list[dict[str, Any]]:
    with p.conn.cursor() as cur:
        for i in range(1, 61):
            cur.execute(f"INSERT INTO {p.schema}.items VALUES (%s, %s, 0)", (i, f"v{i}"))
            cur.execute(f"INSERT INTO {p.schema}.other VALUES (%s, %s)", (i, f"o{i}"))
            p.conn.commit()
        cur.execute(f"UPDATE {p.schema}.items SET n = n + 1 WHERE id % 3 = 0")
        cur.execute(f"DELETE FROM {p.schema}.items WHERE id % 7 = 0")
        p.conn.commit()
    results = replicate_until_caught_up(p.engine)
    assert sum(r["status"] == "applied" for r in results) >= 3
    # every window that moved the checkpoint is staged (an empty one with a manifest only)
    return [r for r in results if r["status"] in ("applied", "empty") and r["end_lsn"] != r["start_lsn"]]


def table(p: Pipeline, name: str) -> Any:
    return p.engine.source.catalog().tables[(p.schema, name)]


def assert_equal(p: Pipeline, *names: str) -> None:
    for name in names:
        diff = compare_table(p.conn, p.engine, table(p, name))
        assert diff.equal, (name, diff.missing[:5], diff.extra[:5], diff.different[:5])
        assert diff.source_rows == diff.target_rows


def target_sql(p: Pipeline, statement: str, name: str) -> None:
    fq = sfsql.target_table(p.settings.snowflake_database, table(p, name))
    p.engine.sink.connection.cursor().execute(statement.format(t=fq))


def rows(p: Pipeline, *names: str) -> dict[str, list[dict[str, Any]]]:
    return {n: p.engine.sink.fetch_table(table(p, n)) for n in names}  # type: ignore[attr-defined]


def stage_dir(p: Pipeline) -> Path:
    stage = p.engine.stage
    assert isinstance(stage, LocalStage)
    return stage.root / p.name / "windows"


def test_replay_after_rollback_restores_target_and_twice_changes_nothing(p: Pipeline, capsys: Any) -> None:
    applied = workload(p)
    first = applied[0]["start_lsn"]
    assert_equal(p, "items", "other")
    target_sql(p, "DELETE FROM {t} WHERE 1 = 1", "items")
    target_sql(p, "DELETE FROM {t} WHERE id > 30", "other")
    assert not compare_table(p.conn, p.engine, table(p, "items")).equal
    code, result, err = run(p, capsys, "replay", "--from-lsn", first)
    assert code == 0, result
    assert result["status"] == "replayed"
    assert [w["start_lsn"] for w in result["windows"]] == [r["start_lsn"] for r in applied]
    assert err.count("window ") >= len(applied)  # one progress line per window
    assert_equal(p, "items", "other")
    before = rows(p, "items", "other")
    code, again, _ = run(p, capsys, "replay", "--from-lsn", first)
    assert code == 0
    assert again["status"] == "replayed" and len(again["windows"]) == len(applied)
    assert rows(p, "items", "other") == before  # metadata (_CDC_LSN, _CDC_SYNCED_AT) included


def test_dry_run_lists_exact_windows_and_row_counts(p: Pipeline, capsys: Any) -> None:
    applied = workload(p)
    second, last = applied[1], applied[-1]
    code, result, _ = run(
        p, capsys, "replay", "--from-lsn", second["start_lsn"], "--to-lsn", last["end_lsn"],
        "--tables", f"{p.schema}.items", "--dry-run",
    )  # fmt: skip
    assert code == 0 and result["status"] == "dry_run"
    assert [(w["start_lsn"], w["end_lsn"]) for w in result["windows"]] == [
        (r["start_lsn"], r["end_lsn"]) for r in applied[1:]
    ]
    assert not any("below the checkpoint" in n for n in result["notes"])  # it ends at the checkpoint
    code, short, _ = run(
        p, capsys, "replay", "--from-lsn", second["start_lsn"], "--to-lsn", second["end_lsn"], "--dry-run"
    )
    assert code == 0
    assert any(f"replaying to {second['end_lsn']}, below the checkpoint" in n for n in short["notes"])
    for window, r in zip(result["windows"], applied[1:], strict=True):
        assert set(window["tables"]) <= {f"{p.schema}.items"}
        ops = r["tables"].get(f"{p.schema}.items")
        if ops:
            assert window["tables"][f"{p.schema}.items"]["ops"] == ops
            assert window["tables"][f"{p.schema}.items"]["rows"] >= sum(ops.values()) - ops.get("T", 0)


def test_missing_manifest_and_damaged_part_stop_replay_before_applying(p: Pipeline, capsys: Any) -> None:
    applied = workload(p)
    target_sql(p, "DELETE FROM {t} WHERE 1 = 1", "items")
    dirs = sorted(d for d in stage_dir(p).iterdir() if d.is_dir())
    (dirs[1] / "manifest.json").unlink()
    part = next(dirs[2].rglob("part-*.parquet"))
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    code, result, _ = run(p, capsys, "replay", "--from-lsn", applied[0]["start_lsn"])
    assert code == 1 and result["status"] == "refused"
    text = "\n".join(result["problems"])
    assert dirs[1].name in text and "manifest.json is missing" in text
    assert part.name in text and dirs[2].name in text and "damaged" in text
    assert rows(p, "items")["items"] == []  # nothing applied


def test_replay_refuses_windows_that_do_not_reach_the_range_or_the_checkpoint(
    p: Pipeline, capsys: Any
) -> None:
    applied = workload(p)
    before = rows(p, "items", "other")
    dirs = sorted(d for d in stage_dir(p).iterdir() if d.is_dir())
    # the first window was pruned: a replay from its start would leave its changes out
    shutil.rmtree(dirs[0])
    code, result, _ = run(p, capsys, "replay", "--from-lsn", applied[0]["start_lsn"])
    assert code == 1 and result["status"] == "refused", result
    assert (
        f"gap: no staged window covers {applied[0]['start_lsn']} -> {applied[1]['start_lsn']}"
        in "\n".join(result["problems"])
    )
    # the last window is gone: replaying the others would end short of the checkpoint
    shutil.rmtree(dirs[-1])
    code, result, _ = run(p, capsys, "replay", "--from-lsn", applied[1]["start_lsn"])
    assert code == 1 and result["status"] == "refused", result
    checkpoint = p.store.load()
    assert checkpoint is not None
    assert (
        f"gap: the staged windows end at {applied[-1]['start_lsn']}, before the checkpoint {checkpoint.lsn}"
        in "\n".join(result["problems"])
    )
    assert rows(p, "items", "other") == before  # nothing applied
    code, result, _ = run(p, capsys, "replay", "--from-lsn", applied[1]["start_lsn"], "--allow-gaps")
    assert code == 0 and result["status"] == "replayed"


def test_replay_across_a_table_re_snapshot_brings_back_no_deleted_row(p: Pipeline, capsys: Any) -> None:
    applied = workload(p)
    # deleted after the last window, then the table is re-snapshotted: later windows skip the
    # delete (the copy holds it), so no staged window carries it
    with p.conn.cursor() as cur:
        cur.execute(f"DELETE FROM {p.schema}.items WHERE id <= 5")
    p.conn.commit()
    assert p.engine.run_window(mode="snapshot", tables=(f"{p.schema}.items",)).status == "snapshot"
    with p.conn.cursor() as cur:
        cur.execute(f"UPDATE {p.schema}.items SET n = 100 WHERE id = 6")
    p.conn.commit()
    replicate_until_caught_up(p.engine)
    assert_equal(p, "items", "other")
    code, result, _ = run(p, capsys, "replay", "--from-lsn", applied[0]["start_lsn"])
    assert code == 0 and result["status"] == "replayed", result
    assert_equal(p, "items", "other")  # ids 1..5 stay deleted, id 6 keeps n = 100


def test_rebuild_of_a_dropped_target_table(p: Pipeline, capsys: Any) -> None:
    workload(p)
    target_sql(p, "DROP TABLE {t}", "items")
    code, result, _ = run(p, capsys, "replay", "--rebuild", "--tables", f"{p.schema}.items")
    assert code == 0, result
    assert result["status"] == "rebuilt" and result["tables"][0]["windows"]
    assert_equal(p, "items", "other")


def test_rebuild_uses_a_table_copied_by_a_snapshot_that_failed_on_another_table(
    p: Pipeline, capsys: Any
) -> None:
    workload(p)
    with p.conn.cursor() as cur:
        cur.execute(f"DELETE FROM {p.schema}.items WHERE id <= 5")  # only the copy below holds this
        cur.execute(f"CREATE TABLE {p.schema}.z_bad (id int PRIMARY KEY, n numeric(5,2))")
        cur.execute(f"INSERT INTO {p.schema}.z_bad VALUES (1, 'NaN')")  # cannot be staged
    p.conn.commit()
    tables = (f"{p.schema}.items", f"{p.schema}.z_bad")
    result = p.engine.run_window(mode="snapshot", tables=tables)
    assert result.status == "failed" and "z_bad" in result.error["message"]  # type: ignore[index]
    with p.conn.cursor() as cur:
        cur.execute(f"UPDATE {p.schema}.z_bad SET n = 1.5")
    p.conn.commit()
    assert p.engine.run_window(mode="snapshot", tables=tables[1:]).status == "snapshot"
    replicate_until_caught_up(p.engine)
    assert_equal(p, "items")
    target_sql(p, "DROP TABLE {t}", "items")
    code, rebuilt, _ = run(p, capsys, "replay", "--rebuild", "--tables", f"{p.schema}.items")
    assert code == 0, rebuilt
    assert rebuilt["tables"][0]["snapshot_lsn"] == p.store.load().extra["snapshot_lsns"][f"{p.schema}.items"]  # type: ignore[union-attr]
    assert_equal(p, "items")


def test_replay_refuses_while_the_lease_is_held(p: Pipeline, capsys: Any) -> None:
    applied = workload(p)
    lease = p.store.acquire_lease("someone-else", 60)
    try:
        code, result, _ = run(p, capsys, "replay", "--from-lsn", applied[0]["start_lsn"])
    finally:
        p.store.release_lease(lease)
    assert code == 1 and result["status"] == "lease_held" and result["owner"] == "someone-else"


def test_checkpoint_show_and_set_refuses_below_the_slot(p: Pipeline, capsys: Any) -> None:
    applied = workload(p)
    code, shown, _ = run(p, capsys, "checkpoint", "show")
    assert code == 0
    checkpoint = p.store.load()
    assert checkpoint is not None and shown["checkpoint"]["lsn"] == str(checkpoint.lsn)
    confirmed = p.slot_confirmed()
    assert shown["slot"]["confirmed_flush_lsn"] == str(confirmed)
    below = applied[0]["start_lsn"]
    assert Lsn.parse(below) < confirmed
    code, refused, _ = run(p, capsys, "checkpoint", "set", "--lsn", below, "--yes")
    assert code == 1 and refused["status"] == "refused"
    assert "confirmed_flush_lsn" in refused["message"] and str(confirmed) in refused["message"]
    assert p.store.load() == checkpoint
    code, moved, _ = run(p, capsys, "checkpoint", "set", "--lsn", str(confirmed), "--yes")
    assert code == 0 and moved["lsn"] == str(confirmed)
