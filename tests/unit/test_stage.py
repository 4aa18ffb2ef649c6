"""LocalStage, the manifest and the S3 error mapping (no servers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from cdc.batch import WindowWriter
from cdc.errors import ConfigError, PermanentError, StageError
from cdc.model import Change, Column, Lsn, StagedTable, TableSchema
from cdc.stage import (
    LocalStage,
    ManifestCorrupt,
    S3Stage,
    StageObjectMissing,
    StagePermanentError,
    build_manifest,
    open_stage,
    read_manifest,
    snapshot_prefix,
    staged_tables,
    window_prefix,
    write_manifest,
)

ORDERS = TableSchema(
    "public",
    "orders",
    (
        Column("id", 1, "integer", 23, nullable=False),
        Column("amt", 3, "numeric(10,2)", 1700),
        Column("tags", 4, "tsvector", 3614, toastable=True),  # no typed mapping: travels as text
    ),
    ("id",),
)
ODD = TableSchema("Sales Dept", 'Odd "T"', (Column("Key Col", 1, "integer", 23),), ("Key Col",))


def stage_window(spool: Path) -> list[StagedTable]:
    schemas = {t.ident: t for t in (ORDERS, ODD)}
    writer = WindowWriter(spool, lambda s, t: schemas[(s, t)], part_max_rows=2)
    ts = "2026-11-29 07:02:32.502865+00"
    for i in range(3):
        writer.add(
            Change("I", "public", "orders", Lsn(10 + i), {"id": i, "amt": "1.50", "tags": "{a}"}),
            Lsn(0x1_0000_0020),
            ts,
        )
    writer.add(Change("D", "Sales Dept", 'Odd "T"', Lsn(40), identity={"Key Col": 1}), Lsn(0x1_0000_0050), ts)
    writer.add(Change("T", "Sales Dept", 'Odd "T"', Lsn(41)), Lsn(0x1_0000_0050), ts)
    return writer.close()


def test_prefixes_sort_in_lsn_order() -> None:
    assert window_prefix("p1", Lsn.parse("0/16B3748"), Lsn.parse("1/0")) == (
        "p1/windows/00000000016B3748-0000000100000000"
    )
    assert snapshot_prefix("p1", "20261129T070232Z") == "p1/snapshots/20261129T070232Z"
    assert window_prefix("p", Lsn(0x9), Lsn(0x10)) < window_prefix("p", Lsn(0x10), Lsn(0x11))


def test_local_stage_publishes_spool_and_reads_back(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    tables = stage_window(spool)
    stage = open_stage((tmp_path / "stage").as_uri())
    assert isinstance(stage, LocalStage) and stage.url == (tmp_path / "stage").as_uri()
    prefix = window_prefix("p1", Lsn(1), Lsn(2))
    sent = stage.publish(spool, prefix)
    spooled = sorted(p.relative_to(spool).as_posix() for p in spool.rglob("*") if p.is_file())
    assert sent == sum((spool / rel).stat().st_size for rel in spooled)
    assert stage.list_keys(prefix + "/") == [f"{prefix}/{rel}" for rel in spooled]
    assert len(spooled) == 3 and "public.orders/part-00001.parquet" in spooled
    odd_dir = ODD.stage_dir
    assert stage.list_keys(f"{prefix}/{odd_dir}") == [f"{prefix}/{odd_dir}/part-00000.parquet"]
    assert stage.list_keys("p1/windows/0000000000000001-") == stage.list_keys(prefix)
    assert stage.list_keys("p1/windows/00000000000000019") == []
    assert stage.list_keys("nothing/here") == []
    key = f"{prefix}/public.orders/part-00000.parquet"
    assert stage.get_bytes(key) == (spool / "public.orders" / "part-00000.parquet").read_bytes()
    assert stage.exists(key) and not stage.exists(f"{prefix}/public.orders/part-00009.parquet")
    assert tables[0].files[0].bytes == len(stage.get_bytes(key))


def test_local_stage_refuses_keys_that_leave_the_root(tmp_path: Path) -> None:
    stage = LocalStage(tmp_path)
    for key in ("../x", "/etc/passwd", "a//b", "a/./b", ""):
        with pytest.raises(StagePermanentError, match="invalid stage key"):
            stage.put_bytes(key, b"x")


def test_missing_key_is_a_permanent_error_naming_it(tmp_path: Path) -> None:
    stage = LocalStage(tmp_path)
    with pytest.raises(StageObjectMissing, match="p/windows/x/manifest.json"):
        read_manifest(stage, "p/windows/x")


def test_manifest_round_trip(tmp_path: Path) -> None:
    tables = stage_window(tmp_path / "spool")
    stage = LocalStage(tmp_path / "stage")
    start, end = Lsn.parse("1/10"), Lsn.parse("1/60")
    prefix = window_prefix("p1", start, end)
    manifest = build_manifest("p1", "w-1", start, end, tables, {"transactions": 2})
    assert write_manifest(stage, prefix, manifest) == f"{prefix}/manifest.json"
    assert read_manifest(stage, prefix) == manifest
    assert manifest["version"] == 1 and manifest["transactions"] == 2
    assert (manifest["start_lsn"], manifest["end_lsn"]) == ("1/10", "1/60")
    assert (manifest["start_lsn_int"], manifest["end_lsn_int"]) == (0x1_0000_0010, 0x1_0000_0060)
    orders, odd = manifest["tables"]
    assert orders["columns"][1] == {
        "name": "amt",
        "attnum": 3,
        "type": "numeric(10,2)",
        "stage_name": "C3",
        "type_oid": 1700,
        "nullable": True,
        "toastable": False,
    }
    assert (orders["rows"], orders["key"], orders["columns_as_text"]) == (3, ["id"], ["tags"])
    assert [f["rows"] for f in orders["files"]] == [2, 1]
    assert orders["ops"] == {"I": 3, "U": 0, "D": 0, "T": 0} and orders["truncate"] is None
    assert (odd["schema"], odd["table"], odd["stage_dir"]) == ("Sales Dept", 'Odd "T"', ODD.stage_dir)
    assert odd["truncate"] == [0x1_0000_0050, 4]
    assert staged_tables(read_manifest(stage, prefix)) == tables


def test_extra_fields_cannot_replace_the_manifests_own() -> None:
    for field in ("end_lsn", "checksum", "tables"):
        with pytest.raises(ValueError, match=field):
            build_manifest("p1", "w-1", Lsn(1), Lsn(2), [], {field: 1})


@pytest.mark.parametrize(
    "tamper",
    [
        lambda m: m["tables"][0].update(rows=4),
        lambda m: m.update(end_lsn_int=m["end_lsn_int"] + 1),
        lambda m: m.pop("checksum"),
        lambda m: m.update(checksum="0" * 64),
    ],
)
def test_tampered_manifest_is_refused_naming_the_key(tmp_path: Path, tamper: Any) -> None:
    stage = LocalStage(tmp_path)
    manifest = build_manifest("p1", "w-1", Lsn(1), Lsn(2), stage_window(tmp_path / "spool"), {})
    write_manifest(stage, "p1/windows/w", manifest)
    path = tmp_path / "p1" / "windows" / "w" / "manifest.json"
    stored = json.loads(path.read_text())
    tamper(stored)
    path.write_text(json.dumps(stored))
    with pytest.raises(ManifestCorrupt, match="p1/windows/w/manifest.json.*checksum") as info:
        read_manifest(stage, "p1/windows/w")
    assert isinstance(info.value, PermanentError)


def test_truncated_manifest_is_refused(tmp_path: Path) -> None:
    stage = LocalStage(tmp_path)
    stage.put_bytes("w/manifest.json", b'{"version": 1, "tab')
    with pytest.raises(ManifestCorrupt, match="w/manifest.json is not valid JSON"):
        read_manifest(stage, "w")


def test_open_stage_parses_urls() -> None:
    client = object()
    stage = open_stage("s3://my-bucket/cdc/stage/", s3_client=client)
    assert isinstance(stage, S3Stage)
    assert (stage.bucket, stage.prefix, stage.url, stage.client) == (
        "my-bucket",
        "cdc/stage",
        "s3://my-bucket/cdc/stage",
        client,
    )
    assert open_stage("s3://b", s3_client=client).url == "s3://b"
    for url in ("http://x/y", "file://relative/dir", "s3:///nobucket", "/abs/dir"):
        with pytest.raises(ConfigError, match="CDC_STAGE_URL"):
            open_stage(url, s3_client=client)


class RaisingClient:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def put_object(self, **kwargs: Any) -> None:
        raise self.exc

    def head_object(self, **kwargs: Any) -> None:
        raise self.exc


def client_error(code: str, status: int) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": "msg"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "PutObject")


@pytest.mark.parametrize(
    ("exc", "expected", "fragment"),
    [
        (client_error("SlowDown", 503), StageError, "throttling"),
        (client_error("InternalError", 500), StageError, "retry later"),
        (client_error("Whatever", 502), StageError, "retry later"),
        (EndpointConnectionError(endpoint_url="https://s3"), StageError, "cannot reach S3"),
        (client_error("AccessDenied", 403), StagePermanentError, "grant the pipeline's role"),
        (client_error("NoSuchBucket", 404), StagePermanentError, "bucket 'bkt' does not exist"),
        (client_error("InvalidArgument", 400), StagePermanentError, "S3 rejected the request"),
        (NoCredentialsError(), StagePermanentError, "no AWS credentials"),
    ],
)
def test_s3_errors_map_to_transient_or_permanent(
    exc: Exception, expected: type[Exception], fragment: str
) -> None:
    stage = S3Stage(RaisingClient(exc), "bkt", "pre")
    with pytest.raises(expected, match=fragment) as info:
        stage.put_bytes("p/manifest.json", b"{}")
    assert "s3://bkt/pre/p/manifest.json" in str(info.value)
    assert info.value.__cause__ is exc


def test_s3_exists_is_false_only_for_a_missing_key() -> None:
    assert S3Stage(RaisingClient(client_error("404", 404)), "bkt").exists("k") is False
    with pytest.raises(StagePermanentError):
        S3Stage(RaisingClient(client_error("403", 403)), "bkt").exists("k")
