"""After each window: a dead-letter message when it failed for good, and metrics for every window.

``Alerts.after_window(result)`` is called by the caller of ``Engine.run_window`` (the Lambda
handler, the CLI) with the window's result. It

* sends ONE message to the dead-letter queue (SQS) for a ``failed`` window, and for a
  ``snapshot_incomplete`` one (a snapshot that did not fit the invocation: every run would start
  it over, so it needs an operator like a failure does): pipeline, window id,
  start/end LSN, error class, kind and message. Every text goes through ``cdc.logs.redact`` and
  the error message is cut to ``MAX_MESSAGE_CHARS``; no secret is ever put in the body on purpose.
* publishes the window's metrics in namespace ``namespace`` with dimension ``Pipeline``:
  ``Windows`` (Count, dimension ``Status`` too), ``WindowFailures`` (Count, 1 for a failed window
  or an unfinished snapshot, else 0: the CloudWatch alarm watches its Sum, the alarm's action is
  the SNS topic),
  ``WindowDuration`` (Seconds), ``BytesStaged`` (Bytes), ``Retries`` (Count),
  ``SlotLagBytes`` (Bytes, when known), ``SlotRetainedBytes`` and ``SlotSafeWalBytes`` (Bytes,
  from ``pg_replication_slots``), ``SlotAtRisk`` (1 when the slot nears invalidation by
  ``max_slot_wal_keep_size``, or retains too much WAL where there is no such limit: an alarm
  watches it, and a warning says why and what to do), ``CommitLagSeconds`` (from the last
  applied commit to the end of the window) and ``Rows`` (Count, dimensions ``Table`` and
  ``Operation`` I/U/D/T, one datum per table and operation that had changes).

How metrics leave the process (one choice per ``Alerts``):

* a CloudWatch client given: ``PutMetricData`` (batches of ``PUT_BATCH``). One API call per
  window; the execution role needs ``cloudwatch:PutMetricData``. Used by the CLI and the tests
  (against moto).
* ``cloudwatch_client=None``: one line of CloudWatch *embedded metric format* on stdout. Lambda
  sends stdout to CloudWatch Logs, which extracts the metrics: no API call, no latency, no extra
  permission. The Lambda uses this.

Errors talking to SQS or CloudWatch never hide the window's result and never raise: they are
logged with their class and kind (transient: throttling, 5xx, connection; permanent: access
denied, queue missing, invalid request) and counted in ``delivery_errors``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, EndpointConnectionError

from cdc.errors import CdcError, TransientError
from cdc.logs import WindowLog, redact
from cdc.model import WindowResult

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 4000  # an SQS body may hold 256 KiB; an error message is never that useful
PUT_BATCH = 20  # PutMetricData datums per call: the lowest limit any CloudWatch API version had
_TRANSIENT_CODES = {
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "RequestLimitExceeded",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalError",
    "RequestTimeout",
    "AWS.SimpleQueueService.RequestThrottled",
}

Datum = dict[str, Any]


def classify(exc: BaseException) -> str:
    """``transient`` when retrying later may work, else ``permanent``."""
    if isinstance(exc, (EndpointConnectionError, ConnectionError)):
        return "transient"
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return "transient" if code in _TRANSIENT_CODES or status >= 500 else "permanent"
    if isinstance(exc, BotoCoreError):
        return "transient"  # read timeouts, connection closed, ...
    return "permanent"


def startup_failure(pipeline: str, exc: CdcError, started: float | None = None) -> WindowResult:
    """The failed result of a run that stopped before its window began (settings, Vault login,
    connecting): the handler hands it to ``after_window`` like any other failed window."""
    return WindowResult(
        pipeline,
        f"startup-{int(time.time())}",
        "failed",
        duration_s=time.monotonic() - started if started is not None else 0.0,
        error={
            "class": type(exc).__name__,
            "message": redact(str(exc)),
            "kind": "transient" if isinstance(exc, TransientError) else "permanent",
        },
    )


def dlq_message(result: WindowResult, checkpoint_lsn: str | None = None) -> dict[str, Any]:
    """The dead-letter body of a failed window (every text redacted)."""
    error = result.error or {}
    if result.status == "snapshot_incomplete":
        error = {"class": "SnapshotIncomplete", "kind": "permanent", "message": " ".join(result.notes)}
    message = redact(str(error.get("message", "")))
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + " ... (cut)"
    return {
        "pipeline": result.pipeline,
        "window_id": result.window_id,
        "status": result.status,
        "start_lsn": result.start_lsn or checkpoint_lsn,
        "end_lsn": result.end_lsn,
        "error_class": redact(str(error.get("class", ""))),
        "kind": error.get("kind", "permanent"),
        "message": message,
        "duration_s": round(result.duration_s, 3),
        "what_to_do": _SNAPSHOT_TODO
        if result.status == "snapshot_incomplete"
        else (
            "the checkpoint did not move: fix the cause named in `message`, then run "
            "`cdc sync --config FILE` (or wait for the schedule); `cdc status` shows the lag"
        ),
    }


_SNAPSHOT_TODO = (
    "the snapshot did not fit the invocation's time and every run would start it over: run "
    "`cdc snapshot --config FILE` (no time limit outside Lambda) from a longer-running task, or "
    "raise the Lambda timeout; the tables it names as finished are in place"
)


def window_metrics(
    result: WindowResult,
    *,
    slot_lag_bytes: int | None = None,
    retries: int = 0,
    slot_risk: str | None = None,
) -> list[Datum]:
    """The window's datums in PutMetricData's shape (``MetricName``, ``Dimensions``, ``Value``, ``Unit``)."""
    base = [{"Name": "Pipeline", "Value": result.pipeline}]
    if slot_lag_bytes is None and result.slot is not None:
        slot_lag_bytes = result.slot.lag_bytes
    data: list[Datum] = [
        {
            "MetricName": "Windows",
            "Dimensions": [*base, {"Name": "Status", "Value": result.status}],
            "Value": 1,
            "Unit": "Count",
        },
        {
            "MetricName": "WindowFailures",
            "Dimensions": base,
            "Value": 1 if result.failure else 0,
            "Unit": "Count",
        },
        {"MetricName": "WindowDuration", "Dimensions": base, "Value": result.duration_s, "Unit": "Seconds"},
        {"MetricName": "BytesStaged", "Dimensions": base, "Value": result.bytes_staged, "Unit": "Bytes"},
        {"MetricName": "Retries", "Dimensions": base, "Value": retries, "Unit": "Count"},
    ]
    if slot_lag_bytes is not None:
        data.append(
            {"MetricName": "SlotLagBytes", "Dimensions": base, "Value": slot_lag_bytes, "Unit": "Bytes"}
        )
    if result.slot is not None:
        if result.slot.retained_bytes is not None:
            data.append(_datum("SlotRetainedBytes", base, result.slot.retained_bytes, "Bytes"))
        if result.slot.safe_wal_bytes is not None:
            data.append(_datum("SlotSafeWalBytes", base, result.slot.safe_wal_bytes, "Bytes"))
        data.append(_datum("SlotAtRisk", base, 1 if slot_risk else 0, "Count"))
    if result.lag_s is not None:
        data.append(_datum("CommitLagSeconds", base, result.lag_s, "Seconds"))
    for table, ops in sorted(result.tables.items()):
        for op, count in sorted(ops.items()):
            if count:
                data.append(
                    {
                        "MetricName": "Rows",
                        "Dimensions": [
                            *base,
                            {"Name": "Table", "Value": table},
                            {"Name": "Operation", "Value": op},
                        ],
                        "Value": count,
                        "Unit": "Count",
                    }
                )
    return data


def _datum(name: str, dimensions: list[dict[str, str]], value: float, unit: str) -> Datum:
    return {"MetricName": name, "Dimensions": dimensions, "Value": value, "Unit": unit}


def emf_lines(namespace: str, data: Iterable[Datum], timestamp_ms: int) -> list[str]:
    """CloudWatch embedded metric format: one JSON line per distinct dimension set."""
    groups: dict[tuple[tuple[str, str], ...], list[Datum]] = {}
    for datum in data:
        dims = tuple((d["Name"], d["Value"]) for d in datum["Dimensions"])
        groups.setdefault(dims, []).append(datum)
    lines = []
    for dims, datums in groups.items():
        body: dict[str, Any] = {
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [
                    {
                        "Namespace": namespace,
                        "Dimensions": [[name for name, _ in dims]],
                        "Metrics": [{"Name": d["MetricName"], "Unit": d["Unit"]} for d in datums],
                    }
                ],
            },
            **dict(dims),
            **{d["MetricName"]: d["Value"] for d in datums},
        }
        lines.append(redact(json.dumps(body, default=str)))
    return lines


class Alerts:
    """Dead-letter queue and metrics publisher; see the module docstring."""

    def __init__(
        self,
        sqs_client: Any,
        dlq_url: str | None,
        cloudwatch_client: Any | None,
        namespace: str,
        pipeline: str,
        *,
        stdout: IO[str] | None = None,
        slot_warn_safe_wal_bytes: int = 2 * 1024**3,
        slot_warn_retained_bytes: int = 20 * 1024**3,
    ) -> None:
        self.sqs = sqs_client
        self.slot_warn_safe_wal_bytes = slot_warn_safe_wal_bytes
        self.slot_warn_retained_bytes = slot_warn_retained_bytes
        self.dlq_url = dlq_url
        self.cloudwatch = cloudwatch_client
        self.namespace = namespace
        self.pipeline = pipeline
        self._stdout = stdout
        self.delivery_errors = 0

    def after_window(
        self,
        result: WindowResult,
        *,
        slot_lag_bytes: int | None = None,
        retries: int = 0,
        checkpoint_lsn: str | None = None,
    ) -> None:
        """Dead-letter a failed window, then publish the metrics. Never raises for SQS/CloudWatch."""
        wlog = WindowLog(log, {"pipeline": result.pipeline, "window_id": result.window_id})
        if result.failure:
            self._dead_letter(result, checkpoint_lsn, wlog)
        risk = (
            result.slot.risk(self.slot_warn_safe_wal_bytes, self.slot_warn_retained_bytes)
            if result.slot is not None
            else None
        )
        if risk is not None:
            wlog.warning(
                f"replication slot at risk: {risk}; let the pipeline catch up (cdc sync --until-caught-up), "
                "raise max_slot_wal_keep_size, or drop tables it cannot keep up with",
                extra={"slot": result.slot.as_dict() if result.slot else None},
            )
        data = window_metrics(result, slot_lag_bytes=slot_lag_bytes, retries=retries, slot_risk=risk)
        self._publish(data, wlog)

    # -- delivery ------------------------------------------------------------------------------
    def _dead_letter(self, result: WindowResult, checkpoint_lsn: str | None, wlog: WindowLog) -> None:
        if self.sqs is None or not self.dlq_url:
            wlog.warning("failed window not dead-lettered: no dead-letter queue is configured (dlq_url)")
            return
        body = json.dumps(dlq_message(result, checkpoint_lsn), sort_keys=True)
        try:
            self.sqs.send_message(
                QueueUrl=self.dlq_url,
                MessageBody=body,
                MessageAttributes={
                    "pipeline": {"DataType": "String", "StringValue": result.pipeline},
                    "error_class": {
                        "DataType": "String",
                        "StringValue": str((result.error or {}).get("class") or "unknown"),
                    },
                },
            )
        except (BotoCoreError, ClientError) as exc:
            self._delivery_failed("could not send the failed window to the dead-letter queue", exc, wlog)
        else:
            wlog.info("failed window sent to the dead-letter queue")

    def _publish(self, data: list[Datum], wlog: WindowLog) -> None:
        if self.cloudwatch is None:
            out = self._stdout or sys.stdout
            for line in emf_lines(self.namespace, data, int(time.time() * 1000)):
                out.write(line + "\n")
            out.flush()
            return
        for i in range(0, len(data), PUT_BATCH):
            try:
                self.cloudwatch.put_metric_data(Namespace=self.namespace, MetricData=data[i : i + PUT_BATCH])
            except (BotoCoreError, ClientError) as exc:
                self._delivery_failed("could not publish the window's metrics to CloudWatch", exc, wlog)
                return

    def _delivery_failed(self, what: str, exc: BaseException, wlog: WindowLog) -> None:
        self.delivery_errors += 1
        kind = classify(exc)
        action = (
            "it may pass: nothing to do unless it repeats"
            if kind == "transient"
            else "check the queue URL / namespace and the role's sqs:SendMessage / cloudwatch:PutMetricData"
        )
        wlog.error(
            f"{what}; the window's result stands ({action})",
            extra={"error_class": type(exc).__name__, "kind": kind, "error": redact(str(exc))},
        )
