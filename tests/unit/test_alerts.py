"""The dead-letter message and the metrics of a window, without servers (botocore's Stubber)."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.stub import ANY, Stubber

from cdc.alerts import Alerts, classify, dlq_message, emf_lines, window_metrics
from cdc.logs import register_secret
from cdc.model import SlotHealth, WindowResult

DLQ = "https://sqs.us-east-1.amazonaws.com/123456789012/cdc-dlq"
SECRET = "s3cr3t-pg-password-unit"


def client(service: str) -> Any:
    session = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="y", region_name="us-east-1")
    return session.client(service)  # type: ignore[call-overload]


def failed(message: str = "permission denied") -> WindowResult:
    return WindowResult(
        "shop",
        "w1",
        "failed",
        duration_s=1.5,
        error={"class": "AuthError", "message": message, "kind": "permanent"},
    )


APPLIED = WindowResult(
    "shop",
    "w2",
    "applied",
    "0/10",
    "0/20",
    tables={"public.orders": {"I": 3, "U": 1, "D": 0, "T": 0}, "public.items": {"I": 2}},
    bytes_staged=1234,
    duration_s=2.0,
)


def test_dlq_message_carries_the_window_and_error_but_no_registered_secret() -> None:
    register_secret(SECRET)
    body = dlq_message(failed(f"login failed for password={SECRET}"), checkpoint_lsn="0/16B3748")
    assert body["pipeline"] == "shop" and body["window_id"] == "w1"
    assert body["start_lsn"] == "0/16B3748" and body["end_lsn"] is None
    assert body["error_class"] == "AuthError" and body["kind"] == "permanent"
    assert "login failed" in body["message"]
    assert SECRET not in json.dumps(body)


def test_dlq_message_cuts_a_huge_error_message() -> None:
    body = dlq_message(failed("x" * 100_000))
    assert len(body["message"]) < 5000 and body["message"].endswith("(cut)")


def test_metrics_of_an_applied_window_count_rows_per_table_and_operation() -> None:
    data = window_metrics(APPLIED, slot_lag_bytes=4096, retries=2)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for d in data:
        by_name.setdefault(d["MetricName"], []).append(d)
    assert by_name["WindowFailures"][0]["Value"] == 0
    assert by_name["BytesStaged"][0]["Value"] == 1234
    assert by_name["SlotLagBytes"][0]["Value"] == 4096
    assert by_name["Retries"][0]["Value"] == 2
    assert by_name["WindowDuration"][0]["Unit"] == "Seconds"
    rows = {
        (dims["Table"], dims["Operation"]): d["Value"]
        for d in by_name["Rows"]
        for dims in [{x["Name"]: x["Value"] for x in d["Dimensions"]}]
    }
    assert rows == {("public.orders", "I"): 3, ("public.orders", "U"): 1, ("public.items", "I"): 2}


def dead_letters_once(result: WindowResult) -> None:
    """``after_window(result)`` sends one message to the dead-letter queue and the metrics."""
    sqs, cw = client("sqs"), client("cloudwatch")
    with Stubber(sqs) as sqs_stub, Stubber(cw) as cw_stub:
        sqs_stub.add_response(
            "send_message",
            {"MessageId": "m1", "MD5OfMessageBody": "x"},
            {"QueueUrl": DLQ, "MessageBody": ANY, "MessageAttributes": ANY},
        )
        cw_stub.add_response("put_metric_data", {}, {"Namespace": "CDC", "MetricData": ANY})
        alerts = Alerts(sqs, DLQ, cw, "CDC", "shop")
        alerts.after_window(result)
        sqs_stub.assert_no_pending_responses()
        cw_stub.assert_no_pending_responses()
    assert alerts.delivery_errors == 0


def test_a_failed_window_sends_one_dead_letter_and_a_failure_metric() -> None:
    dead_letters_once(failed())


def test_an_applied_window_sends_no_dead_letter() -> None:
    sqs, cw = client("sqs"), client("cloudwatch")
    with Stubber(sqs), Stubber(cw) as cw_stub:  # any SQS call would fail: none is expected
        cw_stub.add_response("put_metric_data", {}, {"Namespace": "CDC", "MetricData": ANY})
        Alerts(sqs, DLQ, cw, "CDC", "shop").after_window(APPLIED)
        cw_stub.assert_no_pending_responses()


def test_sqs_and_cloudwatch_errors_are_logged_classified_and_never_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sqs, cw = client("sqs"), client("cloudwatch")
    with Stubber(sqs) as sqs_stub, Stubber(cw) as cw_stub:
        sqs_stub.add_client_error(
            "send_message", "AWS.SimpleQueueService.NonExistentQueue", http_status_code=400
        )
        cw_stub.add_client_error("put_metric_data", "Throttling", http_status_code=400)
        alerts = Alerts(sqs, DLQ, cw, "CDC", "shop")
        with caplog.at_level(logging.DEBUG):
            alerts.after_window(failed())
    assert alerts.delivery_errors == 2
    kinds = [getattr(r, "kind", None) for r in caplog.records if hasattr(r, "kind")]
    assert kinds == ["permanent", "transient"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors and all(getattr(r, "window_id", None) == "w1" for r in errors)


def test_connection_errors_are_transient() -> None:
    assert classify(EndpointConnectionError(endpoint_url="http://x")) == "transient"
    assert classify(ValueError("x")) == "permanent"


def test_without_a_cloudwatch_client_metrics_go_to_stdout_in_embedded_metric_format() -> None:
    out = io.StringIO()
    Alerts(None, None, None, "CDC", "shop", stdout=out).after_window(APPLIED, slot_lag_bytes=7)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines, "no EMF line"
    metrics: dict[tuple[str, ...], dict[str, Any]] = {}
    for line in lines:
        (directive,) = line["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "CDC"
        (dims,) = directive["Dimensions"]
        for m in directive["Metrics"]:
            assert m["Name"] in line  # the value sits at the top level, as EMF requires
            metrics[(m["Name"], *(line[d] for d in dims))] = line[m["Name"]]
    assert metrics[("SlotLagBytes", "shop")] == 7
    assert metrics[("Rows", "shop", "public.orders", "U")] == 1
    assert metrics[("WindowFailures", "shop")] == 0


def test_emf_groups_datums_by_dimension_set() -> None:
    lines = emf_lines("CDC", window_metrics(APPLIED), 0)
    # base dims, base+Status, and one per (table, op) with rows
    assert len(lines) == 2 + 3


@pytest.mark.parametrize(
    ("health", "fragment"),
    [
        (SlotHealth("reserved", 10_000, None, 0), None),
        (SlotHealth("reserved", 10_000, 5 * 1024**3, 0), None),
        (SlotHealth("extended", 10_000, 1024**3, 0), "only 1,073,741,824 bytes of WAL"),
        (SlotHealth("unreserved", 10_000, 0, 0), "wal_status is unreserved"),
        (SlotHealth("lost", None, None, None), "wal_status is lost"),
        (SlotHealth("reserved", 30 * 1024**3, None, 0), "without limit: the disk may fill"),
    ],
)
def test_a_slot_is_at_risk_near_its_wal_limit_or_holding_too_much_wal(
    health: SlotHealth, fragment: str | None
) -> None:
    risk = health.risk(2 * 1024**3, 20 * 1024**3)
    assert risk is None if fragment is None else fragment in (risk or ""), risk


def test_slot_and_lag_metrics_come_with_every_window_that_read_them() -> None:
    result = dataclasses.replace(APPLIED, slot=SlotHealth("extended", 900, 1024, 700), lag_s=2.5)
    by_name = {d["MetricName"]: d for d in window_metrics(result, slot_risk="near the limit")}
    assert (by_name["SlotLagBytes"]["Value"], by_name["SlotRetainedBytes"]["Value"]) == (700, 900)
    assert (by_name["SlotSafeWalBytes"]["Value"], by_name["SlotAtRisk"]["Value"]) == (1024, 1)
    assert by_name["CommitLagSeconds"] == {
        "MetricName": "CommitLagSeconds",
        "Dimensions": [{"Name": "Pipeline", "Value": "shop"}],
        "Value": 2.5,
        "Unit": "Seconds",
    }
    quiet = {d["MetricName"] for d in window_metrics(APPLIED)}
    assert not quiet & {"SlotAtRisk", "SlotRetainedBytes", "CommitLagSeconds"}
    assert result.as_dict()["slot"] == {
        "wal_status": "extended",
        "retained_bytes": 900,
        "safe_wal_bytes": 1024,
        "lag_bytes": 700,
    }


def test_a_slot_at_risk_logs_a_warning_that_says_what_to_do(caplog: pytest.LogCaptureFixture) -> None:
    out = io.StringIO()
    alerts = Alerts(None, None, None, "CDC", "shop", stdout=out, slot_warn_safe_wal_bytes=4096)
    with caplog.at_level(logging.WARNING, logger="cdc.alerts"):
        alerts.after_window(dataclasses.replace(APPLIED, slot=SlotHealth("reserved", 9, 1024, 9)))
    (warning,) = [r.getMessage() for r in caplog.records if "at risk" in r.getMessage()]
    assert "only 1,024 bytes" in warning and "max_slot_wal_keep_size" in warning
    emitted = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["SlotAtRisk"] for e in emitted if "SlotAtRisk" in e] == [1]


def test_a_snapshot_that_did_not_fit_the_invocation_is_dead_lettered_with_what_to_do() -> None:
    unfinished = WindowResult(
        "shop",
        "w3",
        "snapshot_incomplete",
        mode="snapshot",
        notes=(
            "snapshot stopped by its time budget: 1 of 3 tables swapped in (10 rows); not finished: s.b, s.c.",
        ),
    )
    body = dlq_message(unfinished)
    assert (body["status"], body["error_class"], body["kind"]) == (
        "snapshot_incomplete",
        "SnapshotIncomplete",
        "permanent",
    )
    assert body["message"].startswith("snapshot stopped by its time budget") and "s.b, s.c" in body["message"]
    assert "run `cdc snapshot --config FILE` (no time limit outside Lambda)" in body["what_to_do"]
    failures = [d for d in window_metrics(unfinished) if d["MetricName"] == "WindowFailures"]
    assert [d["Value"] for d in failures] == [1]
    dead_letters_once(unfinished)
