"""CheckpointStore against a real moto server over HTTP (DynamoDB conditions and transactions)."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from cdc.checkpoint import Checkpoint, CheckpointStore, Lease
from cdc.errors import AuthError, CheckpointConflict, CheckpointError, CheckpointUnavailable, LeaseHeld
from cdc.lease import LeaseKeeper
from cdc.model import Lsn

pytestmark = pytest.mark.integration

REGION = "us-east-1"


def _client(endpoint: str, **config: Any) -> Any:
    return boto3.client(
        "dynamodb",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(**config) if config else None,
    )


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def table(endpoint: str) -> str:
    name = "cdc-checkpoints"
    client = _client(endpoint)
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=name)
    return name


@pytest.fixture
def store(endpoint: str, table: str) -> CheckpointStore:
    """A store for a pipeline of its own, so that tests do not see each other's items."""
    return CheckpointStore(_client(endpoint), table, f"p-{uuid.uuid4().hex[:10]}")


def test_missing_checkpoint_loads_as_none(store: CheckpointStore) -> None:
    assert store.load() is None
    assert store.read_lease() is None


def test_first_save_then_load_returns_exact_values(store: CheckpointStore) -> None:
    lease = store.acquire_lease("run-a", ttl_s=300)
    lsn = Lsn.parse("16/B374D848")
    saved = store.save(
        lsn=lsn, slot="cdc_p", window_id="w-1", lease=lease, expected=None, extra={"changes": 3, "t": ["a.b"]}
    )
    loaded = store.load()
    assert loaded == saved
    assert loaded == Checkpoint(
        pipeline=store.pipeline,
        lsn=lsn,
        slot="cdc_p",
        window_id="w-1",
        updated_at=saved.updated_at,
        version=1,
        extra={"changes": 3, "t": ["a.b"]},
    )
    assert abs(saved.updated_at - time.time()) < 60


def test_checkpoint_item_keeps_lsn_as_number_and_readable_text(store: CheckpointStore) -> None:
    lease = store.acquire_lease("run-a", ttl_s=300)
    lsn = Lsn((0xFFFFFFFF << 32) | 0xFFFFFFFE)  # near the top of the 64-bit range: exact in a Number
    store.save(lsn=lsn, slot="s", window_id=None, lease=lease, expected=None)
    raw = store._client.get_item(TableName=store.table, Key={"pk": {"S": f"checkpoint#{store.pipeline}"}})
    assert raw["Item"]["lsn"] == {"N": str(lsn.value)}
    assert raw["Item"]["lsn_text"] == {"S": "FFFFFFFF/FFFFFFFE"}
    loaded = store.load()
    assert loaded is not None and loaded.lsn == lsn and loaded.window_id is None


def test_successive_saves_increment_version(store: CheckpointStore) -> None:
    lease = store.acquire_lease("run-a", ttl_s=300)
    first = store.save(lsn=Lsn(100), slot="s", window_id="w1", lease=lease, expected=None)
    second = store.save(lsn=Lsn(200), slot="s", window_id="w2", lease=lease, expected=first)
    assert (first.version, second.version) == (1, 2)
    assert store.load() == second


def test_save_with_stale_expected_conflicts_and_leaves_checkpoint(store: CheckpointStore) -> None:
    lease = store.acquire_lease("run-a", ttl_s=300)
    first = store.save(lsn=Lsn.parse("0/100"), slot="s", window_id="w1", lease=lease, expected=None)
    second = store.save(lsn=Lsn.parse("0/200"), slot="s", window_id="w2", lease=lease, expected=first)
    with pytest.raises(CheckpointConflict) as info:
        store.save(lsn=Lsn.parse("0/300"), slot="s", window_id="w3", lease=lease, expected=first)
    message = str(info.value)
    assert "checkpoint moved" in message
    assert "0/100" in message and "0/200" in message  # expected and stored positions
    assert "wrote nothing" in message
    assert store.load() == second


def test_first_save_conflicts_when_a_checkpoint_already_exists(store: CheckpointStore) -> None:
    lease = store.acquire_lease("run-a", ttl_s=300)
    existing = store.save(lsn=Lsn.parse("0/100"), slot="s", window_id="w1", lease=lease, expected=None)
    with pytest.raises(CheckpointConflict, match=r"expected none, stored LSN 0/100"):
        store.save(lsn=Lsn.parse("0/300"), slot="s", window_id="w3", lease=lease, expected=None)
    assert store.load() == existing


def test_acquire_lease_on_free_pipeline_starts_at_epoch_one(store: CheckpointStore) -> None:
    lease = store.acquire_lease("run-a", ttl_s=300, now=1_000_000.0)
    assert lease == Lease(pipeline=store.pipeline, owner="run-a", epoch=1, expires_at=1_000_300.0)
    assert store.read_lease() == lease
    raw = store._client.get_item(TableName=store.table, Key={"pk": {"S": f"lease#{store.pipeline}"}})
    assert raw["Item"]["ttl"] == {"N": str(1_000_300 + 86_400)}


def test_second_owner_gets_lease_held_with_owner_and_expiry(store: CheckpointStore) -> None:
    now = time.time()
    held = store.acquire_lease("run-a", ttl_s=300, now=now)
    with pytest.raises(LeaseHeld) as info:
        store.acquire_lease("run-b", ttl_s=300, now=now + 1)
    assert info.value.owner == "run-a"
    assert info.value.expires_at == held.expires_at
    assert info.value.pipeline == store.pipeline
    assert store.read_lease() == held


def test_same_owner_reacquires_with_next_epoch(store: CheckpointStore) -> None:
    first = store.acquire_lease("run-a", ttl_s=300)
    again = store.acquire_lease("run-a", ttl_s=300)
    assert again.epoch == first.epoch + 1


def test_expired_lease_is_taken_over_with_next_epoch(store: CheckpointStore) -> None:
    old = store.acquire_lease("run-a", ttl_s=10, now=time.time() - 100)
    new = store.acquire_lease("run-b", ttl_s=300)
    assert (new.owner, new.epoch) == ("run-b", old.epoch + 1)
    assert store.read_lease() == new


def test_old_holder_cannot_save_after_takeover(store: CheckpointStore) -> None:
    old = store.acquire_lease("run-a", ttl_s=300)
    store.save(lsn=Lsn.parse("0/100"), slot="s", window_id="w1", lease=old, expected=None)
    new = store.acquire_lease("run-b", ttl_s=300, now=old.expires_at + 1)  # after old expired
    expected = store.load()
    with pytest.raises(CheckpointConflict) as info:
        store.save(lsn=Lsn.parse("0/200"), slot="s", window_id="w2", lease=old, expected=expected)
    message = str(info.value)
    assert "lease lost" in message
    assert f"taken over by run-b (epoch {new.epoch}" in message
    assert "wrote nothing" in message
    assert store.load() == expected
    # the new holder writes normally
    saved = store.save(lsn=Lsn.parse("0/200"), slot="s", window_id="w2", lease=new, expected=expected)
    assert store.load() == saved


def test_renewing_extends_the_lease_and_fails_once_another_run_took_it_over(
    endpoint: str, table: str
) -> None:
    clock = [time.time()]
    store = CheckpointStore(_client(endpoint), table, f"p-{uuid.uuid4().hex[:10]}", clock=lambda: clock[0])
    lease = store.acquire_lease("run-a", ttl_s=60)
    clock[0] += 50
    renewed = store.renew_lease(lease, ttl_s=60)
    assert (renewed.epoch, renewed.expires_at) == (lease.epoch, clock[0] + 60)
    assert store.read_lease() == renewed
    clock[0] += 30  # past the first expiry, within the renewed one: the lease still holds
    saved = store.save(lsn=Lsn.parse("0/100"), slot="s", window_id="w1", lease=renewed, expected=None)
    with pytest.raises(LeaseHeld):
        store.acquire_lease("run-b", ttl_s=60)
    clock[0] += 31  # now expired: another run takes over, and renewing fails before any apply
    taken = store.acquire_lease("run-b", ttl_s=60)
    with pytest.raises(CheckpointConflict, match=r"lost its lease to run-b \(epoch 2\) before applying"):
        store.renew_lease(renewed, ttl_s=60)
    assert store.read_lease() == taken and store.load() == saved


def test_save_with_expired_lease_conflicts_even_before_takeover(endpoint: str, table: str) -> None:
    clock = [time.time()]
    store = CheckpointStore(_client(endpoint), table, f"p-{uuid.uuid4().hex[:10]}", clock=lambda: clock[0])
    lease = store.acquire_lease("run-a", ttl_s=60)
    first = store.save(lsn=Lsn.parse("0/100"), slot="s", window_id="w1", lease=lease, expected=None)
    clock[0] += 61
    with pytest.raises(CheckpointConflict, match=r"lease lost.*run-a epoch 1.*expired"):
        store.save(lsn=Lsn.parse("0/150"), slot="s", window_id="w2", lease=lease, expected=first)
    assert store.load() == first


def test_release_lets_another_owner_in_at_once(store: CheckpointStore) -> None:
    lease = store.acquire_lease("run-a", ttl_s=900)
    store.release_lease(lease)
    released = store.read_lease()
    assert released is not None and released.expires_at == 0 and released.epoch == lease.epoch
    other = store.acquire_lease("run-b", ttl_s=900)
    assert (other.owner, other.epoch) == ("run-b", lease.epoch + 1)


def test_releasing_a_lost_lease_changes_nothing(store: CheckpointStore) -> None:
    old = store.acquire_lease("run-a", ttl_s=10, now=time.time() - 100)
    new = store.acquire_lease("run-b", ttl_s=300)
    store.release_lease(old)  # silently does nothing
    assert store.read_lease() == new


def test_missing_table_is_a_permanent_checkpoint_error(endpoint: str) -> None:
    store = CheckpointStore(_client(endpoint), "no-such-table", "p")
    with pytest.raises(CheckpointError, match=r"'no-such-table'.*does not exist.*create it") as info:
        store.load()
    assert not isinstance(info.value, CheckpointUnavailable)
    with pytest.raises(CheckpointError, match="does not exist"):
        store.acquire_lease("run-a", ttl_s=60)


def test_unreachable_dynamodb_is_transient(table: str) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    client = _client(
        f"http://127.0.0.1:{dead}", connect_timeout=1, read_timeout=1, retries={"max_attempts": 1}
    )
    store = CheckpointStore(client, table, "p")
    with pytest.raises(CheckpointUnavailable, match=r"could not reach DynamoDB to load the checkpoint"):
        store.load()
    with pytest.raises(CheckpointUnavailable):
        store.acquire_lease("run-a", ttl_s=60)


def test_losing_the_acquire_race_is_lease_held(
    store: CheckpointStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    winner = store.acquire_lease("run-b", ttl_s=300)
    real_read = store.read_lease
    calls = []

    def stale_then_real() -> Lease | None:
        calls.append(1)
        return None if len(calls) == 1 else real_read()  # first read: before run-b's write landed

    monkeypatch.setattr(store, "read_lease", stale_then_real)
    with pytest.raises(LeaseHeld) as info:
        store.acquire_lease("run-a", ttl_s=300)
    assert (info.value.owner, info.value.expires_at) == ("run-b", winner.expires_at)
    assert real_read() == winner


class _FailingClient:
    """Stands in for a DynamoDB client whose every call fails with one error code."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __getattr__(self, operation: str) -> Any:
        def fail(**_: Any) -> Any:
            raise ClientError({"Error": {"Code": self.code, "Message": "m"}}, operation)

        return fail


@pytest.mark.parametrize(
    "code",
    [
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    ],
)
def test_throttling_and_service_errors_are_transient(code: str) -> None:
    store = CheckpointStore(_FailingClient(code), "t", "p")
    with pytest.raises(CheckpointUnavailable, match=code):
        store.load()


@pytest.mark.parametrize("code", ["AccessDeniedException", "UnrecognizedClientException"])
def test_access_denied_names_the_iam_action_and_table(code: str) -> None:
    store = CheckpointStore(_FailingClient(code), "cdc-checkpoints", "p")
    with pytest.raises(AuthError, match=r"needs dynamodb:GetItem on table 'cdc-checkpoints'"):
        store.load()
    lease = Lease("p", "me", 1, time.time() + 60)
    with pytest.raises(AuthError, match=r"dynamodb:ConditionCheckItem and dynamodb:PutItem"):
        store.save(lsn=Lsn(1), slot="s", window_id=None, lease=lease, expected=None)
    with pytest.raises(AuthError, match=r"dynamodb:UpdateItem"):
        store.release_lease(lease)


class _NoReasonsClient:
    """A real client whose cancelled transactions come back without CancellationReasons."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def transact_write_items(self, **kwargs: Any) -> Any:
        try:
            return self._client.transact_write_items(**kwargs)
        except ClientError as exc:
            exc.response.pop("CancellationReasons", None)
            raise


def test_conflicts_are_explained_even_without_cancellation_reasons(endpoint: str, table: str) -> None:
    store = CheckpointStore(_NoReasonsClient(_client(endpoint)), table, f"p-{uuid.uuid4().hex[:10]}")
    lease = store.acquire_lease("run-a", ttl_s=300)
    first = store.save(lsn=Lsn.parse("0/100"), slot="s", window_id="w1", lease=lease, expected=None)
    store.save(lsn=Lsn.parse("0/200"), slot="s", window_id="w2", lease=lease, expected=first)
    with pytest.raises(CheckpointConflict, match=r"checkpoint moved: expected LSN 0/100.*stored LSN 0/200"):
        store.save(lsn=Lsn.parse("0/300"), slot="s", window_id="w3", lease=lease, expected=first)
    store.acquire_lease("run-b", ttl_s=300, now=lease.expires_at + 1)
    with pytest.raises(CheckpointConflict, match=r"lease lost.*taken over by run-b"):
        store.save(lsn=Lsn.parse("0/300"), slot="s", window_id="w3", lease=lease, expected=store.load())


def test_a_kept_lease_outlives_its_ttl_while_the_work_runs(store: CheckpointStore) -> None:
    lease = store.acquire_lease("run-a", ttl_s=2)
    with LeaseKeeper(store, lease, ttl_s=2) as keeper:
        time.sleep(4)  # work longer than the TTL
        with pytest.raises(LeaseHeld):
            store.acquire_lease("run-b", ttl_s=2)
        keeper.check()
        store.save(lsn=Lsn.parse("0/100"), slot="s", window_id="w1", lease=lease, expected=None)
        assert keeper.lease.epoch == lease.epoch and keeper.lease.expires_at > lease.expires_at + 2
    time.sleep(2.1)  # no longer kept: it expires, and another run may take it
    assert store.acquire_lease("run-b", ttl_s=2).epoch == lease.epoch + 1


def test_the_fence_closes_once_another_run_took_the_lease_over(store: CheckpointStore) -> None:
    lease = store.acquire_lease("run-a", ttl_s=2)
    with LeaseKeeper(store, lease, ttl_s=2) as keeper:
        keeper.check()
        # as if this run had stalled past its lease and another had taken it over meanwhile
        store.release_lease(lease)
        store.acquire_lease("run-b", ttl_s=60)
        time.sleep(1.5)  # some turns of the keeper
        with pytest.raises(CheckpointConflict, match=r"lost its lease to run-b \(epoch 2\)"):
            keeper.check()


def test_the_fence_closes_when_renewing_keeps_failing(endpoint: str, table: str) -> None:
    pipeline = f"p-{uuid.uuid4().hex[:10]}"
    lease = CheckpointStore(_client(endpoint), table, pipeline).acquire_lease("run-a", ttl_s=5)
    unreachable = _client("http://127.0.0.1:9", connect_timeout=0.2, retries={"max_attempts": 1})
    with LeaseKeeper(CheckpointStore(unreachable, table, pipeline), lease, ttl_s=5) as keeper:
        keeper.check()  # 5 s left
        time.sleep(2.5)  # two renewals failed: a failure or two does not close the fence
        keeper.check()
        time.sleep(1.8)  # less than a fifth of the TTL is left
        with pytest.raises(CheckpointConflict, match=r"could not renew its lease, which ends in [01] s"):
            keeper.check()
