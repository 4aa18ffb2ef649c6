"""``cdc stage prune`` on the local stage and on S3 (moto), and replay's progress without a terminal,
against the real local stack."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import Pipeline

from cdc.app import aws_client
from cdc.cli import main
from cdc.demo import compare_table, replicate_until_caught_up
from cdc.model import Lsn
from cdc.prune import prune
from cdc.snowflake import sql as sfsql
from cdc.stage import LocalStage, S3Stage


@pytest.fixture
def p(stack: Any, tmp_path: Path, restore_logging: None) -> Iterator[Pipeline]:
    pipeline = Pipeline(stack, window_max_changes=8)
    with pipeline.conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {pipeline.schema}")
        cur.execute(f"CREATE TABLE {pipeline.schema}.a (id int PRIMARY KEY, v text)")
        cur.execute(f"CREATE TABLE {pipeline.schema}.b (id int PRIMARY KEY, v text)")
    pipeline.conn.commit()
    assert pipeline.engine.run_window().status == "snapshot"
    config = tmp_path / "cdc.toml"
    config.write_text(
        Path(stack.env["config"])
        .read_text()
        .replace('pipeline = "devstack"', f'pipeline = "{pipeline.name}"')
    )
    pipeline.config = config  # type: ignore[attr-defined]
    yield pipeline
    pipeline.close()


def run(p: Pipeline, capsys: Any, *args: str) -> tuple[int, dict[str, Any], str]:
    capsys.readouterr()
    code = main([*args, "--config", str(p.config), "--json"])  # type: ignore[attr-defined]
    out = capsys.readouterr()
    assert len(out.out.splitlines()) == 1, out
    return code, json.loads(out.out), out.err


def workload(p: Pipeline, start: int) -> list[dict[str, Any]]:
    with p.conn.cursor() as cur:
        for i in range(start, start + 4):
            cur.execute(f"INSERT INTO {p.schema}.a VALUES (%s, %s)", (i, f"a{i}"))
            cur.execute(f"INSERT INTO {p.schema}.b VALUES (%s, %s)", (i, f"b{i}"))
            p.conn.commit()
        cur.execute(f"UPDATE {p.schema}.a SET v = v || '!' WHERE id % 2 = 0")
        p.conn.commit()
    return replicate_until_caught_up(p.engine)


def resnapshot(p: Pipeline, table: str) -> Lsn:
    result = p.engine.run_window(mode="snapshot", tables=(f"{p.schema}.{table}",))
    assert result.status == "snapshot" and result.snapshot is not None
    return Lsn.parse(result.snapshot["lsn"])


def root(p: Pipeline) -> Path:
    stage = p.engine.stage
    assert isinstance(stage, LocalStage)
    return stage.root / p.name


def listing(p: Pipeline) -> dict[str, list[str]]:
    return {kind: sorted(d.name for d in (root(p) / kind).iterdir()) for kind in ("windows", "snapshots")}


def end(name: str) -> Lsn:
    return Lsn(int(name.split("-")[1], 16))


def checkpoint(p: Pipeline) -> Lsn:
    cp = p.store.load()
    assert cp is not None
    return cp.lsn


def test_prune_keeps_what_rebuilds_need_and_removes_the_rest_locally_and_on_s3(
    p: Pipeline, stack: Any, capsys: Any
) -> None:
    a, b = f"{p.schema}.a", f"{p.schema}.b"
    workload(p, 1)
    [first_snapshot] = listing(p)["snapshots"]
    before = listing(p)

    # 1. every window since the first snapshot rebuilds a and b: nothing goes, each says why
    code, result, _ = run(p, capsys, "stage", "prune", "--before", str(checkpoint(p)))
    assert code == 0 and result["status"] == "pruned"
    assert (result["windows"], result["snapshots"], result["deleted_keys"]) == ([], [], 0)
    kept = {k["name"]: k["reason"] for k in result["kept"]}
    assert set(kept) == {*before["windows"], first_snapshot}
    for name in before["windows"]:
        assert kept[name].startswith(f"needed to rebuild {a} and 1 more table(s) from the latest snapshot")
    assert kept[first_snapshot] == f"latest complete snapshot of {a}, {b}"
    assert listing(p) == before

    # 2. a newer snapshot of a alone releases nothing: b's snapshot is still the first one
    at_a = resnapshot(p, "a")
    workload(p, 100)
    code, result, _ = run(p, capsys, "stage", "prune", "--before", str(checkpoint(p)))
    assert code == 0 and (result["windows"], result["snapshots"]) == ([], [])
    kept = {k["name"]: k["reason"] for k in result["kept"]}
    assert kept[first_snapshot] == f"latest complete snapshot of {b}"
    assert all(kept[w].startswith(f"needed to rebuild {b}") for w in listing(p)["windows"])

    # 3. with both re-snapshotted, the windows ending at or before a's snapshot and the first
    # snapshot (superseded for both tables) go; everything a rebuild needs stays
    at_b = resnapshot(p, "b")
    workload(p, 200)
    assert at_a < at_b
    full = listing(p)
    gone = [w for w in full["windows"] if end(w) <= at_a]
    assert 0 < len(gone) < len(full["windows"])
    cp = checkpoint(p)

    bucket, prefix = stack.env["s3_bucket"], f"prune-{p.name}"
    s3 = aws_client(p.settings, "s3")
    for path in sorted(root(p).rglob("*")):
        if path.is_file():
            key = f"{prefix}/{path.relative_to(root(p).parent).as_posix()}"
            s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
    try:
        on_s3 = prune(S3Stage(s3, bucket, prefix), p.store, p.name, cp, dry_run=False, lease_ttl_s=60)
        s3_left = sorted(
            o["Key"].split("/")[3]
            for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/")["Contents"]
            if o["Key"].endswith("/manifest.json")
        )
    finally:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/"):
            for o in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=o["Key"])
    code, local, _ = run(p, capsys, "stage", "prune", "--before", str(cp))
    assert code == 0
    for result in (on_s3, local):
        assert [w["name"] for w in result["windows"]] == gone
        assert [s["name"] for s in result["snapshots"]] == [first_snapshot]
        assert result["checkpoint_lsn"] == str(cp)
    left = {
        "windows": [w for w in full["windows"] if w not in gone],
        "snapshots": [s for s in full["snapshots"] if s != first_snapshot],
    }
    assert listing(p) == left
    assert s3_left == sorted(left["windows"] + left["snapshots"])

    # what stayed is enough: both tables rebuild from their latest snapshot plus the later windows
    catalog = p.engine.source.catalog()
    for table in ("a", "b"):
        fq = sfsql.target_table(p.settings.snowflake_database, catalog.tables[(p.schema, table)])
        p.engine.sink.connection.cursor().execute(f"DROP TABLE {fq}")
    code, rebuilt, _ = run(p, capsys, "replay", "--rebuild", "--tables", f"{a},{b}")
    assert code == 0 and rebuilt["status"] == "rebuilt", rebuilt
    for table in ("a", "b"):
        diff = compare_table(p.conn, p.engine, catalog.tables[(p.schema, table)])
        assert diff.equal and diff.source_rows == diff.target_rows == 12


def test_prune_without_a_checkpoint_refuses(p: Pipeline, capsys: Any) -> None:
    other = p.config.read_text().replace(f'pipeline = "{p.name}"', 'pipeline = "never-ran"')  # type: ignore[attr-defined]
    p.config.write_text(other)  # type: ignore[attr-defined]
    code, result, _ = run(p, capsys, "stage", "prune", "--before", "0/1000000")
    assert code == 1 and result["error"]["class"] == "PruneRefused"
    assert result["error"]["message"].startswith("pipeline 'never-ran' has no checkpoint")


PLAIN_LINE = re.compile(
    r"^window (\d+)/(\d+) [0-9A-F]{16}-[0-9A-F]{16} \([0-9A-F]+/[0-9A-F]+ -> [0-9A-F]+/[0-9A-F]+\): "
    r"(\d+) tables, (\d+) rows applied; ([\d,]+)/([\d,]+) rows, [\d,]+ rows/s, (\d+:\d\d|\?) left$"
)


def test_replay_without_a_terminal_prints_one_plain_line_per_window(p: Pipeline, capsys: Any) -> None:
    windows = [r for r in workload(p, 1) if r["end_lsn"] != r["start_lsn"]]
    code, result, err = run(p, capsys, "replay", "--from-lsn", windows[0]["start_lsn"])
    assert code == 0 and result["status"] == "replayed"
    assert "\r" not in err and "\033" not in err
    lines = [m for m in (PLAIN_LINE.match(line) for line in err.splitlines()) if m]
    assert len(lines) == len(result["windows"]) == len(windows)
    total = sum(v["rows"] for w in result["windows"] for v in w["tables"].values())
    assert [int(m.group(1)) for m in lines] == list(range(1, len(windows) + 1))
    assert {int(m.group(2)) for m in lines} == {len(windows)}
    assert {int(m.group(6).replace(",", "")) for m in lines} == {total}
    assert int(lines[-1].group(5).replace(",", "")) == total and lines[-1].group(7) == "0:00"
    for m, w in zip(lines, result["windows"], strict=True):
        applied = sum(v["loaded"] for v in w["applied"].values())
        assert (int(m.group(3)), int(m.group(4))) == (len(w["applied"]), applied)
