"""Every way a window can fail ends in a failed result, never in an exception out of ``run_window``:
an error the pipeline does not know, and a lease that cannot be taken for another reason than
another run holding it. The engine is the real one; PostgreSQL and DynamoDB are stand-ins."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from cdc.checkpoint import CheckpointStore
from cdc.engine import Engine
from cdc.errors import ConfigError, SourceUnavailable
from cdc.logs import register_secret
from cdc.settings import Settings, load
from cdc.stage import open_stage

ENV = {
    "CDC_PIPELINE": "orders",
    "CDC_SOURCE_HOST": "db.internal",
    "CDC_SOURCE_DATABASE": "app",
    "CDC_SOURCE_SSLMODE": "require",
    "CDC_VAULT_ADDR": "https://vault:8200",
    "CDC_VAULT_TOKEN": "hvs.env-token-value",
    "CDC_VAULT_SOURCE_PATH": "cdc/source",
    "CDC_VAULT_SNOWFLAKE_PATH": "cdc/snowflake",
    "CDC_SNOWFLAKE_ACCOUNT": "acme-xy12345",
    "CDC_SNOWFLAKE_DATABASE": "RAW",
    "CDC_SNOWFLAKE_STAGE": "RAW.CDC.STAGE",
    "CDC_CHECKPOINT_TABLE": "cdc-checkpoints",
}


class Dynamo:
    """DynamoDB as the checkpoint store uses it: items by key; ``fail`` makes every read fail."""

    def __init__(self, fail: str | None = None) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.fail = fail
        self.calls: list[str] = []

    def _error(self, operation: str) -> None:
        self.calls.append(operation)
        if self.fail is not None:
            raise ClientError({"Error": {"Code": self.fail, "Message": "no"}}, operation)

    def get_item(self, TableName: str, Key: dict[str, Any], ConsistentRead: bool) -> dict[str, Any]:
        self._error("GetItem")
        item = self.items.get(Key["pk"]["S"])
        return {"Item": item} if item is not None else {}

    def put_item(self, TableName: str, Item: dict[str, Any], **_condition: Any) -> dict[str, Any]:
        self._error("PutItem")
        self.items[Item["pk"]["S"]] = Item
        return {}

    def update_item(self, TableName: str, Key: dict[str, Any], **update: Any) -> dict[str, Any]:
        self._error("UpdateItem")
        self.items[Key["pk"]["S"]]["expires_at"] = update["ExpressionAttributeValues"][":zero"]
        return {}


class Source:
    """A PostgreSQL stand-in whose every call raises ``error``."""

    slot = "cdc_orders"
    conn_params: dict[str, Any] = {}

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls: list[str] = []

    def _call(self, name: str) -> Any:
        self.calls.append(name)
        raise self.error

    def catalog(self) -> Any:
        return self._call("catalog")

    def current_wal_lsn(self) -> Any:
        return self._call("current_wal_lsn")

    def slot_info(self) -> Any:
        return self._call("slot_info")

    def create_slot(self) -> Any:
        return self._call("create_slot")

    def stream(self, *_args: Any) -> Any:
        return self._call("stream")

    def stream_rows(self, *_args: Any) -> Any:
        return self._call("stream_rows")

    def confirm(self, _lsn: Any) -> None:
        self._call("confirm")


def settings(tmp_path: Path, **env: str) -> Settings:
    return load(env={**ENV, "CDC_STAGE_URL": f"file://{tmp_path}", **env})


def engine(tmp_path: Path, source: Any, dynamo: Dynamo, **env: str) -> Engine:
    def no_sink() -> Any:
        raise AssertionError("no window reaches Snowflake here")

    s = settings(tmp_path, **env)
    return Engine(
        s,
        source=source,
        sink_factory=no_sink,
        stage=open_stage(s.stage_url),
        store=CheckpointStore(dynamo, s.checkpoint_table, s.pipeline),
    )


def test_an_unexpected_error_is_a_permanent_failed_result_with_its_class_and_the_traceback_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = f"pw-{uuid.uuid4().hex}"
    register_secret(secret)
    dynamo = Dynamo()
    source = Source(RuntimeError(f"socket closed (password={secret})"))
    caplog.set_level(logging.INFO, logger="cdc")
    result = engine(tmp_path, source, dynamo).run_window()
    assert result.status == "failed"
    assert result.error == {
        "class": "RuntimeError",
        "message": "unexpected error RuntimeError: socket closed (password=***); the window stopped there "
        "and the next run starts again from the checkpoint; the log line 'window failed' has the "
        "traceback: report it if it happens again",
        "kind": "permanent",
    }
    assert result.slot is None  # the slot's health could not be read either: reported as unknown
    assert source.calls == ["slot_info", "slot_info"]  # the window (not retried) and the slot's health
    failed = [r for r in caplog.records if r.getMessage() == "window failed"]
    assert len(failed) == 1 and failed[0].exc_info is not None
    assert failed[0].exc_info[0] is RuntimeError
    # the lease was taken and given back
    lease = dynamo.items["lease#orders"]
    assert lease["expires_at"] == {"N": "0"} and dynamo.calls[-1] == "UpdateItem"


def test_a_lease_that_cannot_be_taken_is_a_failed_result(tmp_path: Path) -> None:
    source = Source(RuntimeError("not reached"))
    dynamo = Dynamo(fail="AccessDeniedException")
    result = engine(tmp_path, source, dynamo).run_window()
    assert result.status == "failed" and result.error is not None
    assert result.error["class"] == "AuthError" and result.error["kind"] == "permanent"
    assert result.error["message"] == (
        "pipeline 'orders': could not read the lease on DynamoDB table 'cdc-checkpoints': "
        "AccessDeniedException; the Lambda's IAM role needs dynamodb:GetItem on table "
        "'cdc-checkpoints' (and valid AWS credentials)"
    )
    assert dynamo.calls == ["GetItem"]  # not retried, and no lease to release


def test_a_throttled_lease_is_retried_like_the_window_then_fails_as_transient(tmp_path: Path) -> None:
    source = Source(RuntimeError("not reached"))
    dynamo = Dynamo(fail="ThrottlingException")
    eng = engine(tmp_path, source, dynamo, CDC_RETRY_ATTEMPTS="2")
    result = eng.run_window()
    assert result.status == "failed" and result.error is not None
    assert (result.error["class"], result.error["kind"]) == ("CheckpointUnavailable", "transient")
    assert dynamo.calls == ["GetItem", "GetItem"] and eng.last_retries == 1


def test_one_attempt_means_a_transient_error_is_not_retried(tmp_path: Path) -> None:
    source = Source(SourceUnavailable("PostgreSQL unreachable while reading the slot: refused"))
    eng = engine(tmp_path, source, Dynamo(), CDC_RETRY_ATTEMPTS="1")
    result = eng.run_window()
    assert result.status == "failed" and result.error is not None
    assert result.error["kind"] == "transient" and eng.last_retries == 0
    assert source.calls == ["slot_info", "slot_info"]  # one attempt, then the slot's health


@pytest.mark.parametrize(
    ("value", "problem"), [("0", "must be greater than 0"), ("-1", "must not be negative")]
)
def test_retry_attempts_below_one_is_refused(tmp_path: Path, value: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=rf"retry_attempts \(CDC_RETRY_ATTEMPTS\).*{problem}"):
        settings(tmp_path, CDC_RETRY_ATTEMPTS=value)


def test_retry_attempts_defaults_to_three(tmp_path: Path) -> None:
    assert settings(tmp_path).retry_attempts == 3
