"""Keeping a run's lease alive while it works, and fencing each step that changes the target.

A run takes the pipeline's lease for ``lease_ttl_s``. Work can outlast that outside Lambda (a
window's MERGEs of a large backlog, a snapshot of a large table): the lease would expire under the
running work, another run would take it, and both would change the target at once; a snapshot's
swap could then put back rows older than what the other run merged. ``LeaseKeeper`` renews the
lease on a background thread every fifth of its TTL, and ``check`` is the fence: it raises
``CheckpointConflict`` once the lease was taken over, or once renewals have failed for so long
(three in a row, at least) that less than a fifth of the TTL is left, and the engine calls it before
every MERGE and every snapshot swap.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType

from cdc.checkpoint import CheckpointStore, Lease
from cdc.errors import CdcError, CheckpointConflict

log = logging.getLogger(__name__)

SHARE = 1 / 5  # of the TTL: between two renewals, and the least a step may start with


class LeaseKeeper:
    """Renews ``lease`` every ``ttl_s / 5`` while in its ``with`` block (see the module docstring)."""

    def __init__(
        self, store: CheckpointStore, lease: Lease, ttl_s: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._ttl = ttl_s
        self._clock = clock
        self._lease = lease
        self._lost: CdcError | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._keep, name="cdc-lease", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def lease(self) -> Lease:
        """The lease as last renewed."""
        with self._lock:
            return self._lease

    def check(self) -> None:
        """The fence: raise ``CheckpointConflict`` unless the lease is ours for at least a fifth of
        its TTL more (time for the step about to start)."""
        with self._lock:
            lost, lease = self._lost, self._lease
        if lost is not None:
            raise CheckpointConflict(str(lost))
        left = lease.expires_at - self._clock()
        if left < self._ttl * SHARE:
            raise CheckpointConflict(
                f"pipeline {lease.pipeline}: this run ({lease.owner}) could not renew its lease, which "
                f"ends in {max(left, 0):.0f} s: it stops before changing the target, and the next run "
                "takes the window again from the checkpoint. Check that DynamoDB is reachable"
            )

    def _keep(self) -> None:
        while not self._stop.wait(self._ttl * SHARE):
            try:
                renewed = self._store.renew_lease(self.lease, self._ttl)
            except CheckpointConflict as exc:  # taken over: renewing again cannot help
                with self._lock:
                    self._lost = exc
                log.error("lease lost", extra={"error": str(exc)})
                return
            except Exception as exc:  # noqa: BLE001 - DynamoDB unreachable or throttled: try again at the next turn
                log.warning("could not renew the lease", extra={"error": f"{type(exc).__name__}: {exc}"})
                continue
            with self._lock:
                self._lease = renewed


class HeldLease:
    """The pipeline's lease, taken on entry (``LeaseHeld`` while another run holds it), kept alive by
    a ``LeaseKeeper`` and released on exit: for a replay, rebuild or prune. ``fence`` is the
    keeper's check, before each step that changes the target or the stage."""

    def __init__(self, store: CheckpointStore, ttl_s: int, owner: str) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.owner = owner
        self._lease: Lease | None = None
        self._keeper: LeaseKeeper | None = None

    def __enter__(self) -> HeldLease:
        self._lease = self.store.acquire_lease(self.owner, self.ttl_s)
        self._keeper = LeaseKeeper(self.store, self._lease, self.ttl_s).__enter__()
        return self

    def fence(self) -> None:
        assert self._keeper is not None
        self._keeper.check()

    def __exit__(self, *exc: object) -> None:
        if self._keeper is not None:
            self._keeper.__exit__(None, None, None)
        try:
            if self._lease is not None:
                self.store.release_lease(self._lease)
        except CdcError as error:  # it expires on its own
            log.warning("could not release the lease: %s", error)
