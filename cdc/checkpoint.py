"""LSN checkpoints and the single-writer lease, in one DynamoDB table.

The table's only key is ``pk`` (string). Two items per pipeline:

* ``lease#<pipeline>``: ``owner``, ``epoch`` (fencing number, +1 on every acquisition),
  ``expires_at`` (epoch seconds) and ``ttl`` (for DynamoDB TTL, a day after expiry).
* ``checkpoint#<pipeline>``: ``lsn`` (Number) and ``lsn_text`` ("X/Y", for people reading the
  table), ``slot``, ``window_id``, ``updated_at``, ``version`` (+1 on every write) and ``extra``
  (JSON text).

A checkpoint is written in one transaction that also checks the lease, so a run whose lease was
taken over can never move the checkpoint (the epoch fences it), and two runs that loaded the same
checkpoint cannot both advance it (compare-and-set on ``version``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from cdc.errors import (
    AuthError,
    CheckpointConflict,
    CheckpointError,
    CheckpointUnavailable,
    LeaseHeld,
)
from cdc.model import Lsn

log = logging.getLogger(__name__)

LEASE_TTL_GRACE_S = 86_400  # DynamoDB TTL removes a lease item a day after it expired

_TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionConflictException",
        "TransactionInProgressException",
    }
)
_CONDITION_FAILED = "ConditionalCheckFailedException"
_AUTH_CODES = frozenset({"AccessDeniedException", "UnrecognizedClientException"})
_CONNECTION_ERRORS = (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)
# Cancellation reasons that mean "try again", not "somebody else wrote".
_TRANSIENT_REASONS = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})

# Reserved words in DynamoDB expressions (OWNER, TTL, ...) are always written through names.
_NAMES = {
    "#pk": "pk",
    "#owner": "owner",
    "#epoch": "epoch",
    "#expires": "expires_at",
    "#version": "version",
}


@dataclass(frozen=True)
class Lease:
    pipeline: str
    owner: str
    epoch: int
    expires_at: float


@dataclass(frozen=True)
class Checkpoint:
    pipeline: str
    lsn: Lsn  # restart position: end of the last applied transaction's commit record
    slot: str
    window_id: str | None
    updated_at: float
    version: int  # increments on every write
    extra: dict[str, Any] = field(default_factory=dict)  # free-form JSON-able


class CheckpointStore:
    """Checkpoint and lease of one pipeline. ``client`` is a boto3 DynamoDB client."""

    def __init__(
        self, client: Any, table: str, pipeline: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._client = client
        self._table = table
        self._pipeline = pipeline
        self._clock = clock
        self._checkpoint_key = {"pk": {"S": f"checkpoint#{pipeline}"}}
        self._lease_key = {"pk": {"S": f"lease#{pipeline}"}}

    @property
    def table(self) -> str:
        return self._table

    @property
    def pipeline(self) -> str:
        return self._pipeline

    # ---------------------------------------------------------------- checkpoint

    def load(self) -> Checkpoint | None:
        with self._errors("load the checkpoint", "dynamodb:GetItem"):
            resp = self._client.get_item(TableName=self._table, Key=self._checkpoint_key, ConsistentRead=True)
        item = resp.get("Item")
        return None if item is None else self._checkpoint_from_item(item)

    def save(
        self,
        *,
        lsn: Lsn,
        slot: str,
        window_id: str | None,
        lease: Lease,
        expected: Checkpoint | None,
        extra: dict[str, Any] | None = None,
    ) -> Checkpoint:
        """Write the checkpoint if ``lease`` is still ours and the stored one is still ``expected``.

        Raises ``CheckpointConflict`` (nothing written) when either condition fails.
        """
        if lease.pipeline != self._pipeline:
            raise ValueError(f"lease of pipeline {lease.pipeline!r} used for {self._pipeline!r}")
        now = self._clock()
        new = Checkpoint(
            pipeline=self._pipeline,
            lsn=lsn,
            slot=slot,
            window_id=window_id,
            updated_at=now,
            version=1 if expected is None else expected.version + 1,
            extra=dict(extra or {}),
        )
        put: dict[str, Any] = {"TableName": self._table, "Item": self._checkpoint_to_item(new)}
        if expected is None:
            put["ConditionExpression"] = "attribute_not_exists(#pk)"
            put["ExpressionAttributeNames"] = {"#pk": "pk"}
        else:
            put["ConditionExpression"] = "#version = :v"
            put["ExpressionAttributeNames"] = {"#version": "version"}
            put["ExpressionAttributeValues"] = {":v": {"N": str(expected.version)}}
        check = {
            "TableName": self._table,
            "Key": self._lease_key,
            "ConditionExpression": "#owner = :me AND #epoch = :epoch AND #expires > :now",
            "ExpressionAttributeNames": {k: _NAMES[k] for k in ("#owner", "#epoch", "#expires")},
            "ExpressionAttributeValues": {
                ":me": {"S": lease.owner},
                ":epoch": {"N": str(lease.epoch)},
                ":now": {"N": _num(now)},
            },
        }
        try:
            with self._errors(
                "save the checkpoint",
                "dynamodb:ConditionCheckItem and dynamodb:PutItem",
                expect="TransactionCanceledException",
            ):
                self._client.transact_write_items(TransactItems=[{"ConditionCheck": check}, {"Put": put}])
        except ClientError as exc:
            raise self._explain_cancellation(exc, lsn=lsn, lease=lease, expected=expected, now=now) from exc
        log.info(
            "checkpoint saved",
            extra={
                "pipeline": self._pipeline,
                "lsn": str(lsn),
                "window_id": window_id,
                "version": new.version,
            },
        )
        return new

    def _explain_cancellation(
        self, exc: ClientError, *, lsn: Lsn, lease: Lease, expected: Checkpoint | None, now: float
    ) -> Exception:
        reasons = [r.get("Code", "None") for r in exc.response.get("CancellationReasons") or []]
        if any(r in _TRANSIENT_REASONS for r in reasons) and "ConditionalCheckFailed" not in reasons:
            return CheckpointUnavailable(
                f"pipeline {self._pipeline!r}: DynamoDB cancelled the checkpoint write on table "
                f"{self._table!r} ({', '.join(reasons)}); this run wrote nothing; retry"
            )
        current = self._quiet(self.read_lease)
        if reasons[:1]:
            lease_failed = reasons[0] == "ConditionalCheckFailed"
        else:  # no reasons returned: judge from the lease item itself
            lease_failed = not (
                current is not None
                and (current.owner, current.epoch) == (lease.owner, lease.epoch)
                and current.expires_at > now
            )
        wrote = f"checkpoint {lsn} was not written; this run wrote nothing"
        if lease_failed:
            if current is None:
                now_held = "the lease item is gone or unreadable"
            elif (current.owner, current.epoch) == (lease.owner, lease.epoch):
                now_held = (
                    f"it expired at {current.expires_at:.0f} before the write at {now:.0f} (epoch seconds)"
                )
            else:
                now_held = (
                    f"it was taken over by {current.owner} (epoch {current.epoch}, "
                    f"expires {current.expires_at:.0f})"
                )
            return CheckpointConflict(
                f"pipeline {self._pipeline!r}: lease lost: we held it as {lease.owner} epoch {lease.epoch}, "
                f"but {now_held}; {wrote}. The current holder re-reads the window."
            )
        stored = self._quiet(self.load)
        stored_text = "none" if stored is None else f"LSN {stored.lsn} (version {stored.version})"
        expected_text = "none" if expected is None else f"LSN {expected.lsn} (version {expected.version})"
        return CheckpointConflict(
            f"pipeline {self._pipeline!r}: checkpoint moved: expected {expected_text}, stored {stored_text}; "
            f"{wrote}. Another writer advanced it; reload and re-read from the stored position."
        )

    # ---------------------------------------------------------------- lease

    def read_lease(self) -> Lease | None:
        with self._errors("read the lease", "dynamodb:GetItem"):
            resp = self._client.get_item(TableName=self._table, Key=self._lease_key, ConsistentRead=True)
        item = resp.get("Item")
        if item is None:
            return None
        return Lease(
            pipeline=self._pipeline,
            owner=item["owner"]["S"],
            epoch=int(item["epoch"]["N"]),
            expires_at=float(item["expires_at"]["N"]),
        )

    def acquire_lease(self, owner: str, ttl_s: int, now: float | None = None) -> Lease:
        """Take the lease if it is free, expired or already ours; else raise ``LeaseHeld``."""
        now = self._clock() if now is None else now
        current = self.read_lease()
        if current is not None and current.owner != owner and current.expires_at > now:
            raise LeaseHeld(self._pipeline, current.owner, current.expires_at)
        lease = Lease(
            pipeline=self._pipeline,
            owner=owner,
            epoch=1 if current is None else current.epoch + 1,
            expires_at=now + ttl_s,
        )
        item = {
            **self._lease_key,
            "pipeline": {"S": self._pipeline},
            "owner": {"S": owner},
            "epoch": {"N": str(lease.epoch)},
            "expires_at": {"N": _num(lease.expires_at)},
            "ttl": {"N": str(int(lease.expires_at) + LEASE_TTL_GRACE_S)},
        }
        put: dict[str, Any] = {"TableName": self._table, "Item": item}
        if current is None:
            put["ConditionExpression"] = "attribute_not_exists(#pk)"
            put["ExpressionAttributeNames"] = {"#pk": "pk"}
        else:
            put["ConditionExpression"] = "#epoch = :seen AND (#expires <= :now OR #owner = :me)"
            put["ExpressionAttributeNames"] = {k: _NAMES[k] for k in ("#owner", "#epoch", "#expires")}
            put["ExpressionAttributeValues"] = {
                ":seen": {"N": str(current.epoch)},
                ":now": {"N": _num(now)},
                ":me": {"S": owner},
            }
        try:
            with self._errors("acquire the lease", "dynamodb:PutItem", expect=_CONDITION_FAILED):
                self._client.put_item(**put)
        except ClientError as exc:
            winner = self._quiet(self.read_lease)
            raise LeaseHeld(
                self._pipeline,
                winner.owner if winner else "another invocation",
                winner.expires_at if winner else now,
            ) from exc
        log.info(
            "lease acquired",
            extra={
                "pipeline": self._pipeline,
                "owner": owner,
                "epoch": lease.epoch,
                "expires_at": lease.expires_at,
            },
        )
        return lease

    def renew_lease(self, lease: Lease, ttl_s: int, now: float | None = None) -> Lease:
        """Extend our lease (same epoch) before work that must not outlive it: a MERGE. Raises
        ``CheckpointConflict`` when another run has taken the lease over since."""
        now = self._clock() if now is None else now
        renewed = Lease(lease.pipeline, lease.owner, lease.epoch, now + ttl_s)
        try:
            with self._errors("renew the lease", "dynamodb:UpdateItem", expect=_CONDITION_FAILED):
                self._client.update_item(
                    TableName=self._table,
                    Key=self._lease_key,
                    UpdateExpression="SET #expires = :until, #ttl = :ttl",
                    ConditionExpression="#owner = :me AND #epoch = :epoch",
                    ExpressionAttributeNames={
                        **{k: _NAMES[k] for k in ("#owner", "#epoch", "#expires")},
                        "#ttl": "ttl",
                    },
                    ExpressionAttributeValues={
                        ":until": {"N": _num(renewed.expires_at)},
                        ":ttl": {"N": str(int(renewed.expires_at) + LEASE_TTL_GRACE_S)},
                        ":me": {"S": lease.owner},
                        ":epoch": {"N": str(lease.epoch)},
                    },
                )
        except ClientError as exc:
            holder = self._quiet(self.read_lease)
            raise CheckpointConflict(
                f"pipeline {self._pipeline}: this run ({lease.owner}, epoch {lease.epoch}) lost its lease to "
                f"{holder.owner if holder else 'another run'} (epoch {holder.epoch if holder else '?'}) "
                "before applying: it stops without applying or moving the checkpoint, and its staged "
                "files are harmless. If this repeats, raise lease_ttl_s above the longest window"
            ) from exc
        return renewed

    def release_lease(self, lease: Lease) -> None:
        """Expire the lease now, if it is still ours; a lost lease releases nothing (silently)."""
        try:
            with self._errors("release the lease", "dynamodb:UpdateItem", expect=_CONDITION_FAILED):
                self._client.update_item(
                    TableName=self._table,
                    Key=self._lease_key,
                    UpdateExpression="SET #expires = :zero",
                    ConditionExpression="#owner = :me AND #epoch = :epoch",
                    ExpressionAttributeNames={k: _NAMES[k] for k in ("#owner", "#epoch", "#expires")},
                    ExpressionAttributeValues={
                        ":zero": {"N": "0"},
                        ":me": {"S": lease.owner},
                        ":epoch": {"N": str(lease.epoch)},
                    },
                )
        except ClientError:
            log.info(
                "lease not released: no longer ours",
                extra={"pipeline": self._pipeline, "owner": lease.owner, "epoch": lease.epoch},
            )
            return
        log.info(
            "lease released", extra={"pipeline": self._pipeline, "owner": lease.owner, "epoch": lease.epoch}
        )

    # ---------------------------------------------------------------- items and errors

    def _checkpoint_to_item(self, cp: Checkpoint) -> dict[str, Any]:
        return {
            **self._checkpoint_key,
            "pipeline": {"S": cp.pipeline},
            "lsn": {"N": str(cp.lsn.value)},
            "lsn_text": {"S": str(cp.lsn)},
            "slot": {"S": cp.slot},
            "window_id": {"NULL": True} if cp.window_id is None else {"S": cp.window_id},
            "updated_at": {"N": _num(cp.updated_at)},
            "version": {"N": str(cp.version)},
            "extra": {"S": json.dumps(cp.extra, sort_keys=True, separators=(",", ":"))},
        }

    def _checkpoint_from_item(self, item: dict[str, Any]) -> Checkpoint:
        try:
            return Checkpoint(
                pipeline=item.get("pipeline", {}).get("S", self._pipeline),
                lsn=Lsn(int(item["lsn"]["N"])),
                slot=item["slot"]["S"],
                window_id=item.get("window_id", {}).get("S"),
                updated_at=float(item["updated_at"]["N"]),
                version=int(item["version"]["N"]),
                extra=json.loads(item["extra"]["S"]) if "extra" in item else {},
            )
        except (KeyError, ValueError) as exc:
            raise CheckpointError(
                f"pipeline {self._pipeline!r}: the checkpoint item in table {self._table!r} is malformed "
                f"({type(exc).__name__}: {exc}); fix or delete it (a missing checkpoint means a new snapshot)"
            ) from exc

    @contextmanager
    def _errors(self, action: str, iam_action: str, *, expect: str | None = None) -> Iterator[None]:
        """Map botocore errors to the pipeline's; a ClientError with code ``expect`` reaches the caller."""
        try:
            yield
        except ClientError as exc:
            if expect is not None and exc.response.get("Error", {}).get("Code") == expect:
                raise
            raise self._translate(exc, action, iam_action) from exc
        except NoCredentialsError as exc:
            raise AuthError(
                f"pipeline {self._pipeline!r}: no AWS credentials to {action} on DynamoDB table "
                f"{self._table!r}; in Lambda the execution role provides them, elsewhere set "
                "aws_access_key_id/aws_secret_access_key, AWS_PROFILE or the AWS_* variables"
            ) from exc
        except _CONNECTION_ERRORS as exc:
            raise CheckpointUnavailable(
                f"pipeline {self._pipeline!r}: could not reach DynamoDB to {action} on table "
                f"{self._table!r} ({type(exc).__name__}: {exc}); retry later"
            ) from exc

    def _translate(self, exc: ClientError, action: str, iam_action: str) -> Exception:
        error = exc.response.get("Error", {})
        code = error.get("Code", "Unknown")
        where = f"pipeline {self._pipeline!r}: could not {action} on DynamoDB table {self._table!r}"
        if code in _TRANSIENT_CODES:
            return CheckpointUnavailable(f"{where}: {code}; retry later")
        if code == "ResourceNotFoundException":
            return CheckpointError(
                f"{where}: the table does not exist in this account and region; create it (Terraform "
                "module, or `cdc devstack up` locally) with partition key pk (String)"
            )
        if code in _AUTH_CODES:
            return AuthError(
                f"{where}: {code}; the Lambda's IAM role needs {iam_action} on table {self._table!r} "
                "(and valid AWS credentials)"
            )
        return CheckpointError(f"{where}: {code}: {error.get('Message', '')}")

    @staticmethod
    def _quiet(read: Callable[[], Any]) -> Any:
        """A diagnostic read that must not replace the error being explained."""
        try:
            return read()
        except Exception:  # noqa: BLE001 - best effort, the original error is raised anyway
            log.warning("diagnostic read failed", exc_info=True)
            return None


def _num(value: float) -> str:
    """A DynamoDB Number for a float: exact round trip (``repr``), never exponent notation."""
    text = repr(float(value))
    return text if "e" not in text else f"{value:.6f}"
