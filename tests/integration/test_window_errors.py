"""Windows that fail before they start still end in a failed result that is dead-lettered and
counted (the checkpoint table is missing), and a transient failure is tried ``retry_attempts``
times (PostgreSQL on a closed port)."""

from __future__ import annotations

import json
import logging
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from helpers import Pipeline

from cdc.app import aws_client, build_alerts, report_window


@pytest.fixture
def pipelines(stack: Any) -> Iterator[list[Pipeline]]:
    made: list[Pipeline] = []
    yield made
    for p in made:
        p.close()


def closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_missing_checkpoint_table_is_a_failed_window_that_is_dead_lettered_and_counted(
    stack: Any, pipelines: list[Pipeline]
) -> None:
    suffix = uuid.uuid4().hex[:10]
    table = f"no-such-table-{suffix}"
    queue = aws_client(stack.settings, "sqs").create_queue(QueueName=f"dlq-{suffix}")["QueueUrl"]
    p = Pipeline(
        stack,
        checkpoint_table=table,
        dlq_url=queue,
        metrics_namespace=f"CDC/test-{suffix}",
        metrics_mode="cloudwatch",
    )
    pipelines.append(p)
    result = p.engine.run_window()
    assert result.status == "failed" and result.error is not None
    assert result.error["class"] == "CheckpointError" and result.error["kind"] == "permanent"
    assert result.error["message"] == (
        f"pipeline {p.name!r}: could not read the lease on DynamoDB table {table!r}: the table does not "
        "exist in this account and region; create it (Terraform module, or `cdc devstack up` locally) with "
        "partition key pk (String)"
    )
    alerts = build_alerts(p.settings)
    report_window(p.engine, alerts, result)
    assert alerts.delivery_errors == 0

    sqs = aws_client(p.settings, "sqs")
    got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    bodies = [json.loads(m["Body"]) for m in got.get("Messages", [])]
    assert [(b["pipeline"], b["window_id"], b["error_class"], b["kind"]) for b in bodies] == [
        (p.name, result.window_id, "CheckpointError", "permanent")
    ]
    assert bodies[0]["message"] == result.error["message"]
    sqs.delete_queue(QueueUrl=queue)

    now = datetime.now(UTC)
    stats = aws_client(p.settings, "cloudwatch").get_metric_statistics(
        Namespace=p.settings.metrics_namespace,
        MetricName="WindowFailures",
        Dimensions=[{"Name": "Pipeline", "Value": p.name}],
        StartTime=now - timedelta(minutes=10),
        EndTime=now + timedelta(minutes=1),
        Period=60,
        Statistics=["Sum"],
    )
    assert sum(d["Sum"] for d in stats["Datapoints"]) == 1


def test_an_unreachable_source_is_tried_retry_attempts_times_then_fails_as_transient(
    stack: Any, pipelines: list[Pipeline], caplog: pytest.LogCaptureFixture
) -> None:
    port = closed_port()
    p = Pipeline(stack, source_port=port, retry_attempts=2)
    pipelines.append(p)
    caplog.set_level(logging.INFO, logger="cdc")
    result = p.engine.run_window()
    assert result.status == "failed" and result.error is not None
    assert (result.error["class"], result.error["kind"]) == ("SourceUnavailable", "transient")
    assert result.error["message"].startswith("PostgreSQL unreachable while ")
    assert f"port {port} failed: Connection refused" in result.error["message"]
    assert p.engine.last_retries == 1  # two attempts
    retries = [r for r in caplog.records if r.getMessage() == "retrying window after a transient error"]
    assert [getattr(r, "attempt", None) for r in retries] == [2]
    assert p.store.load() is None  # nothing was written
