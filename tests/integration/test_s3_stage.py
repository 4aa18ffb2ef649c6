"""S3Stage against a real moto server over HTTP: publish, list, read back, manifest, errors."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from cdc.batch import WindowWriter
from cdc.errors import StageError
from cdc.model import Change, Column, Lsn, TableSchema
from cdc.stage import (
    ManifestCorrupt,
    S3Stage,
    StageObjectMissing,
    StagePermanentError,
    build_manifest,
    open_stage,
    read_manifest,
    staged_tables,
    window_prefix,
    write_manifest,
)

pytestmark = pytest.mark.integration

TABLE = TableSchema(
    "public",
    "Mixed Case",
    (
        Column("id", 1, "bigint", 20),
        Column("amt", 2, "numeric(12,2)", 1700),
        Column("note", 3, "text", 25),
    ),
    ("id",),
)


def s3_client(endpoint: str, **config: Any) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(**config) if config else None,
    )


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(endpoint: str) -> Iterator[str]:
    client = s3_client(endpoint)
    name = f"cdc-stage-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    yield name
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=name, Key=obj["Key"])
    client.delete_bucket(Bucket=name)  # fails loudly if anything was left behind


def spool_window(spool: Path, rows: int = 9) -> list[Any]:
    writer = WindowWriter(spool, lambda s, t: TABLE, part_max_rows=2)
    for i in range(rows):
        writer.add(
            Change("I", "public", "Mixed Case", Lsn(100 + i), {"id": i, "amt": f"{i}.10", "note": "n"}),
            Lsn(0x2_0000_0000 + i),
            "2026-11-29 07:02:32.502865+00",
        )
    return writer.close()


def test_publish_list_and_read_back(endpoint: str, bucket: str, tmp_path: Path) -> None:
    tables = spool_window(tmp_path / "spool")
    stage = open_stage(f"s3://{bucket}/cdc/stage", s3_client=s3_client(endpoint))
    assert isinstance(stage, S3Stage)
    stage.max_workers = 4
    prefix = window_prefix("pipe", Lsn(0x2_0000_0000), Lsn(0x2_0000_0100))
    sent = stage.publish(tmp_path / "spool", prefix)
    [staged] = tables
    assert sent == sum(f.bytes for f in staged.files) and len(staged.files) == 5
    keys = stage.list_keys(prefix)
    assert keys == [f"{prefix}/{staged.stage_dir}/{f.name}" for f in staged.files]
    raw = s3_client(endpoint).list_objects_v2(Bucket=bucket)["Contents"]
    assert sorted(o["Key"] for o in raw) == [f"cdc/stage/{k}" for k in keys]
    for f, key in zip(staged.files, keys, strict=True):
        assert stage.get_bytes(key) == (tmp_path / "spool" / staged.stage_dir / f.name).read_bytes()
        assert stage.exists(key)
    assert not stage.exists(f"{prefix}/manifest.json")
    assert stage.list_keys("pipe/windows/00000002") == keys and stage.list_keys("pipe/snapshots/") == []


def test_manifest_written_last_round_trips(endpoint: str, bucket: str, tmp_path: Path) -> None:
    tables = spool_window(tmp_path / "spool", rows=3)
    stage = S3Stage(s3_client(endpoint), bucket, "root")
    prefix = window_prefix("pipe", Lsn(1), Lsn(2))
    stage.publish(tmp_path / "spool", prefix)
    manifest = build_manifest("pipe", "w-7", Lsn(1), Lsn(2), tables, {"transactions": 3})
    key = write_manifest(stage, prefix, manifest)
    assert stage.exists(key) and key in stage.list_keys(prefix)
    assert read_manifest(stage, prefix) == manifest
    assert staged_tables(read_manifest(stage, prefix)) == tables


def test_tampered_manifest_is_refused(endpoint: str, bucket: str, tmp_path: Path) -> None:
    stage = S3Stage(s3_client(endpoint), bucket, "root")
    manifest = build_manifest("pipe", "w-8", Lsn(1), Lsn(2), spool_window(tmp_path / "spool", rows=1), {})
    write_manifest(stage, "pipe/windows/w", manifest)
    stored = json.loads(stage.get_bytes("pipe/windows/w/manifest.json"))
    stored["tables"][0]["files"][0]["sha256"] = "0" * 64
    s3_client(endpoint).put_object(
        Bucket=bucket, Key="root/pipe/windows/w/manifest.json", Body=json.dumps(stored).encode()
    )
    with pytest.raises(ManifestCorrupt, match="pipe/windows/w/manifest.json.*checksum"):
        read_manifest(stage, "pipe/windows/w")


def test_missing_key_is_reported_as_missing(endpoint: str, bucket: str) -> None:
    stage = S3Stage(s3_client(endpoint), bucket, "root")
    with pytest.raises(StageObjectMissing, match=f"s3://{bucket}/root/nope/manifest.json"):
        read_manifest(stage, "nope")


def test_missing_bucket_is_a_clear_permanent_error(endpoint: str, tmp_path: Path) -> None:
    spool_window(tmp_path / "spool", rows=1)
    stage = S3Stage(s3_client(endpoint), "no-such-bucket-cdc", "root")
    for call in (
        lambda: stage.publish(tmp_path / "spool", "p/w"),
        lambda: stage.put_bytes("p/k", b"x"),
        lambda: stage.get_bytes("p/k"),
        lambda: stage.list_keys("p/"),
    ):
        with pytest.raises(StagePermanentError, match="bucket 'no-such-bucket-cdc' does not exist") as info:
            call()
        assert "CDC_STAGE_URL" in str(info.value)
        assert not isinstance(info.value, StageError)


def test_unreachable_endpoint_is_transient(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = s3_client(f"http://127.0.0.1:{port}", retries={"max_attempts": 1}, connect_timeout=2)
    with pytest.raises(StageError, match="cannot reach S3"):
        S3Stage(client, "bkt", "root").put_bytes("p/k", b"x")
