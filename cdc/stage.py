"""The Parquet stage (a local directory or an S3 prefix) and the per-window manifest.

Layout under the stage root (see ARCHITECTURE.md)::

    <pipeline>/windows/<start_lsn>-<end_lsn>/<stage_dir>/part-NNNNN.parquet
    <pipeline>/windows/<start_lsn>-<end_lsn>/manifest.json
    <pipeline>/snapshots/<id>/...

Parts are published first, the manifest last: a window without a manifest was never completed.
Keys passed to a ``Stage`` are relative to its root.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, NoCredentialsError
from botocore.exceptions import ConnectionError as BotoConnectionError

from cdc.errors import CdcError, ConfigError, PermanentError, StageError
from cdc.model import Column, Lsn, StagedFile, StagedTable, TableSchema

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
_TMP_MARK = ".cdc-tmp-"


class StagePermanentError(PermanentError):
    """The stage refuses the pipeline for good: missing bucket, no permission, bad key."""


class StageObjectMissing(StagePermanentError):
    """A key that should be in the stage is not there."""


class ManifestCorrupt(StagePermanentError):
    """A manifest cannot be read or its checksum does not match its content."""


def window_prefix(pipeline: str, start: Lsn, end: Lsn) -> str:
    return f"{pipeline}/windows/{start.padded}-{end.padded}"


def snapshot_prefix(pipeline: str, snapshot_id: str) -> str:
    return f"{pipeline}/snapshots/{snapshot_id}"


class Stage(Protocol):
    url: str

    def publish(self, spool_dir: Path, prefix: str) -> int:
        """Upload every file under ``spool_dir`` to ``prefix/<relative path>``; return the bytes sent."""
        ...

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def get_bytes(self, key: str) -> bytes: ...

    def list_keys(self, prefix: str) -> list[str]:
        """Keys (relative to the stage root) that start with ``prefix``, sorted."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete_keys(self, keys: list[str]) -> int:
        """Remove these keys (relative to the root); a key that is already gone is no error.
        Returns the number of keys removed (on S3: asked to remove; S3 does not say which existed)."""
        ...


def _spool_files(spool_dir: Path) -> list[tuple[Path, str]]:
    files = [p for p in Path(spool_dir).rglob("*") if p.is_file()]
    return sorted((p, p.relative_to(spool_dir).as_posix()) for p in files)


def _join(prefix: str, rel: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{rel}" if prefix else rel


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise StagePermanentError(f"invalid stage key {key!r}: use a relative path without '.', '..' or '//'")
    return key


class LocalStage:
    """A stage in a local directory (the embedded default, and Snowflake's ``file://`` stages)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        self.url = self.root.as_uri()

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*_check_key(key).split("/"))

    def _write(self, key: str, write: Any) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=_TMP_MARK, dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    write(fh)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StageError(f"cannot write {path} in local stage {self.url}: {exc}") from exc

    def publish(self, spool_dir: Path, prefix: str) -> int:
        total = 0
        for path, rel in _spool_files(spool_dir):
            with path.open("rb") as src:
                self._write(_join(prefix, rel), lambda fh, src=src: _copy(src, fh))
            total += path.stat().st_size
        return total

    def put_bytes(self, key: str, data: bytes) -> None:
        self._write(key, lambda fh: fh.write(data))

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise StageObjectMissing(f"{key!r} is not in local stage {self.url}") from exc
        except OSError as exc:
            raise StageError(f"cannot read {path} in local stage {self.url}: {exc}") from exc

    def list_keys(self, prefix: str) -> list[str]:
        base = self.root.joinpath(*[p for p in prefix.split("/")[:-1] if p])
        if not base.is_dir():
            return []
        keys = (p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())
        return sorted(k for k in keys if k.startswith(prefix) and _TMP_MARK not in k)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete_keys(self, keys: list[str]) -> int:
        removed = 0
        parents: set[Path] = set()
        for key in keys:
            path = self._path(key)
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise StageError(f"cannot delete {path} in local stage {self.url}: {exc}") from exc
            parents.add(path.parent)
        for parent in sorted(parents, key=lambda d: len(d.parts), reverse=True):
            # directories left empty go too, up to (not including) the pipeline's own directory
            while parent.parent != self.root and parent != self.root and _empty_dir(parent):
                parent.rmdir()
                parent = parent.parent
        return removed


def _empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _copy(src: Any, dst: Any) -> None:
    while chunk := src.read(1 << 20):
        dst.write(chunk)


# fmt: off
_TRANSIENT_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests",
    "RequestTimeout", "RequestTimeoutException", "InternalError", "ServiceUnavailable", "Busy",
    "PriorRequestNotComplete",
})
_DENIED_CODES = frozenset({
    "AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
    "InvalidToken", "AccountProblem", "InvalidSecurity", "403", "Forbidden",
})
# fmt: on
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_DELETE_BATCH = 1000  # DeleteObjects takes at most 1,000 keys per request


class S3Stage:
    """A stage under ``s3://bucket/prefix``; the boto3 S3 client comes in from the caller."""

    def __init__(self, client: Any, bucket: str, prefix: str = "", max_workers: int = 8) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.max_workers = max(1, max_workers)
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"

    def _key(self, key: str) -> str:
        return _join(self.prefix, _check_key(key))

    def _error(self, exc: Exception, action: str, key: str) -> CdcError:
        where = f"s3://{self.bucket}/{key}"
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            detail = f"{code or status}: {error.get('Message', '')}".rstrip(": ")
            if code == "NoSuchBucket":
                return StagePermanentError(
                    f"{action} {where}: bucket {self.bucket!r} does not exist ({detail}); create it or "
                    "fix stage_url (CDC_STAGE_URL)"
                )
            if code in _DENIED_CODES:
                return StagePermanentError(
                    f"{action} {where}: access denied ({detail}); grant the pipeline's role s3:PutObject, "
                    f"s3:GetObject and s3:ListBucket on bucket {self.bucket!r}, or fix its credentials"
                )
            if code in _MISSING_CODES:
                return StageObjectMissing(f"{action} {where}: no such key ({detail})")
            if code in _TRANSIENT_CODES or status >= 500 or status == 429:
                return StageError(
                    f"{action} {where}: S3 is unavailable or throttling ({detail}); retry later"
                )
            return StagePermanentError(f"{action} {where}: S3 rejected the request ({detail})")
        if isinstance(exc, NoCredentialsError):
            return StagePermanentError(
                f"{action} {where}: no AWS credentials found; configure the role or environment credentials"
            )
        if isinstance(exc, BotoConnectionError | HTTPClientError):
            return StageError(f"{action} {where}: cannot reach S3 ({exc}); retry later")
        return StagePermanentError(f"{action} {where}: {exc}")

    def publish(self, spool_dir: Path, prefix: str) -> int:
        files = _spool_files(spool_dir)
        if not files:
            return 0
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(files))) as pool:
            futures: list[Future[int]] = [
                pool.submit(self._upload, path, self._key(_join(prefix, rel))) for path, rel in files
            ]
            wait(futures)
        return sum(f.result() for f in futures)  # the first failure (in file order) is raised

    def _upload(self, path: Path, key: str) -> int:
        try:
            with path.open("rb") as fh:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=fh)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "upload to", key) from exc
        return path.stat().st_size

    def put_bytes(self, key: str, data: bytes) -> None:
        full = self._key(key)
        try:
            self.client.put_object(Bucket=self.bucket, Key=full, Body=data)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "write", full) from exc

    def get_bytes(self, key: str) -> bytes:
        full = self._key(key)
        try:
            data: bytes = self.client.get_object(Bucket=self.bucket, Key=full)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "read", full) from exc
        return data

    def list_keys(self, prefix: str) -> list[str]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full
            ):
                keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "list", full) from exc
        return sorted(keys)

    def exists(self, key: str) -> bool:
        full = self._key(key)
        try:
            self.client.head_object(Bucket=self.bucket, Key=full)
        except (ClientError, BotoCoreError) as exc:
            error = self._error(exc, "check", full)
            if isinstance(error, StageObjectMissing):
                return False
            raise error from exc
        return True

    def delete_keys(self, keys: list[str]) -> int:
        removed = 0
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = [self._key(k) for k in keys[start : start + _DELETE_BATCH]]
            try:
                resp = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
            except (ClientError, BotoCoreError) as exc:
                raise self._error(exc, "delete from", batch[0]) from exc
            errors = resp.get("Errors") or []
            if errors:
                first = errors[0]
                code = str(first.get("Code", ""))
                hint = (
                    f"grant the role s3:DeleteObject on bucket {self.bucket!r}"
                    if code in _DENIED_CODES
                    else "retry; nothing outside these keys was touched"
                )
                where = f"s3://{self.bucket}/{first.get('Key')}"
                raise StagePermanentError(
                    f"delete from s3://{self.bucket}: {len(errors)} of {len(batch)} keys were not deleted, "
                    f"first {where} ({code}: {first.get('Message', '')}); {hint}"
                )
            removed += len(batch)
        return removed


def open_stage(url: str, s3_client: Any = None) -> Stage:
    """``file:///abs/dir`` -> ``LocalStage``; ``s3://bucket/prefix`` -> ``S3Stage``."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        path = unquote(parsed.path)
        if parsed.netloc not in ("", "localhost") or not path.startswith("/"):
            raise ConfigError([f"stage_url (CDC_STAGE_URL): {url!r} must be file:///absolute/dir"])
        return LocalStage(Path(path))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ConfigError([f"stage_url (CDC_STAGE_URL): {url!r} names no bucket"])
        if s3_client is None:
            import boto3

            s3_client = boto3.client("s3")
        return S3Stage(s3_client, parsed.netloc, unquote(parsed.path))
    raise ConfigError([f"stage_url (CDC_STAGE_URL): {url!r} must start with s3:// or file://"])


# --- manifest -------------------------------------------------------------------------------------


def _canonical(manifest: dict[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def build_manifest(
    pipeline: str,
    window_id: str,
    start: Lsn,
    end: Lsn,
    tables: list[StagedTable],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The window's manifest; ``extra`` fields (e.g. ``last_commit_lsn``) sit at the top level."""
    manifest: dict[str, Any] = {
        "version": MANIFEST_VERSION,
        "pipeline": pipeline,
        "window_id": window_id,
        "start_lsn": str(start),
        "end_lsn": str(end),
        "start_lsn_int": start.value,
        "end_lsn_int": end.value,
        "created_at": datetime.now(UTC).isoformat(timespec="microseconds"),
        "tables": [_table_entry(t) for t in tables],
    }
    clash = sorted(set(extra or {}) & (set(manifest) | {"checksum"}))
    if clash:
        raise ValueError(f"manifest extra fields {clash} would replace the manifest's own fields")
    manifest.update(extra or {})
    manifest["checksum"] = hashlib.sha256(_canonical(manifest)).hexdigest()
    return manifest


def _table_entry(staged: StagedTable) -> dict[str, Any]:
    table = staged.table
    return {
        "schema": table.schema,
        "table": table.name,
        "stage_dir": staged.stage_dir,
        "key": list(table.key),
        "columns": [
            {
                "name": c.name,
                "attnum": c.attnum,
                "type": c.type_name,
                "stage_name": c.stage_name,
                "type_oid": c.type_oid,
                "nullable": c.nullable,
                "toastable": c.toastable,
            }
            for c in table.columns
        ],
        "files": [
            {"name": f.name, "rows": f.rows, "bytes": f.bytes, "sha256": f.sha256} for f in staged.files
        ],
        "rows": staged.rows,
        "ops": dict(staged.ops),
        "truncate": None if staged.truncate is None else list(staged.truncate),  # [commit LSN, seq]
        "columns_as_text": list(staged.columns_as_text),
    }


def staged_tables(manifest: dict[str, Any]) -> list[StagedTable]:
    """The ``StagedTable`` values a manifest describes (for replay)."""
    result = []
    for t in manifest["tables"]:
        columns = tuple(
            Column(
                name=c["name"],
                attnum=c["attnum"],
                type_name=c["type"],
                type_oid=c.get("type_oid", 0),
                nullable=c.get("nullable", True),
                toastable=c.get("toastable", False),
            )
            for c in t["columns"]
        )
        truncate = t["truncate"]
        result.append(
            StagedTable(
                table=TableSchema(schema=t["schema"], name=t["table"], columns=columns, key=tuple(t["key"])),
                stage_dir=t["stage_dir"],
                files=tuple(StagedFile(f["name"], f["rows"], f["bytes"], f["sha256"]) for f in t["files"]),
                rows=t["rows"],
                ops=dict(t["ops"]),
                truncate=None if truncate is None else (int(truncate[0]), int(truncate[1])),
                columns_as_text=tuple(t["columns_as_text"]),
            )
        )
    return result


def write_manifest(stage: Stage, prefix: str, manifest: dict[str, Any]) -> str:
    key = _join(prefix, MANIFEST_NAME)
    stage.put_bytes(key, json.dumps(manifest, sort_keys=True, indent=1).encode())
    return key


def read_manifest(stage: Stage, prefix: str) -> dict[str, Any]:
    key = _join(prefix, MANIFEST_NAME)
    data = stage.get_bytes(key)
    try:
        manifest = json.loads(data)
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        raise ManifestCorrupt(
            f"manifest {stage.url}/{key} is not valid JSON ({exc}); re-stage the window"
        ) from exc
    expected = manifest.get("checksum")
    actual = hashlib.sha256(_canonical(manifest)).hexdigest()
    if expected != actual:
        raise ManifestCorrupt(
            f"manifest {stage.url}/{key}: checksum {expected!r} does not match its content ({actual}); "
            "the manifest was changed or truncated after it was written: re-stage the window"
        )
    return manifest
