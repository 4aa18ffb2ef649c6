"""``cdc checkpoint show`` and ``cdc checkpoint set``: read or move a pipeline's checkpoint by hand."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from cdc.checkpoint import CheckpointStore
from cdc.errors import PermanentError
from cdc.model import Lsn
from cdc.source.slot import SlotInfo


class CheckpointRefused(PermanentError):
    """``checkpoint set`` would break an invariant, or the operator said no."""


def show(store: CheckpointStore, slot: SlotInfo | None, wal: Lsn | None, slot_name: str) -> dict[str, Any]:
    checkpoint = store.load()
    lease = store.read_lease()
    return {
        "pipeline": store.pipeline,
        "checkpoint": None
        if checkpoint is None
        else {
            "lsn": str(checkpoint.lsn),
            "slot": checkpoint.slot,
            "window_id": checkpoint.window_id,
            "updated_at": checkpoint.updated_at,
            "version": checkpoint.version,
            "extra": checkpoint.extra,
        },
        "slot": {
            "name": slot_name,
            "exists": slot is not None,
            "confirmed_flush_lsn": str(slot.confirmed_flush) if slot and slot.confirmed_flush else None,
            "restart_lsn": str(slot.restart) if slot and slot.restart else None,
            "wal_status": slot.wal_status if slot else None,
        },
        "wal_lsn": str(wal) if wal else None,
        "lease": None
        if lease is None
        else {
            "owner": lease.owner,
            "epoch": lease.epoch,
            "expires_at": lease.expires_at,
            "live": lease.expires_at > time.time(),
        },
    }


def check_target(target: Lsn, slot: SlotInfo | None, wal: Lsn, slot_name: str) -> None:
    """Refuse an LSN the slot cannot serve from."""
    if slot is None:
        raise CheckpointRefused(
            f"slot {slot_name} does not exist: the next `cdc sync` snapshots and sets the checkpoint "
            "itself; moving it now would be overwritten"
        )
    if slot.confirmed_flush is not None and target < slot.confirmed_flush:
        raise CheckpointRefused(
            f"LSN {target} is below the slot's confirmed_flush_lsn {slot.confirmed_flush}: slot {slot_name} "
            "no longer holds the changes before that position (PostgreSQL streams only from the confirmed "
            "position on and may already have recycled the WAL), so the pipeline could never re-read them. "
            f"To re-apply older changes use `cdc replay --from-lsn {target}` (staged windows), or "
            "`cdc snapshot` to copy the tables again"
        )
    if target > wal:
        raise CheckpointRefused(f"LSN {target} is past the end of the source's WAL ({wal})")


def set_checkpoint(
    store: CheckpointStore,
    target: Lsn,
    slot: SlotInfo | None,
    wal: Lsn,
    slot_name: str,
    lease_ttl_s: int,
    confirm: Callable[[str], bool],
) -> dict[str, Any]:
    """Move the checkpoint to ``target`` (under the lease), after the checks and ``confirm``."""
    current = store.load()
    if current is None:
        raise CheckpointRefused(
            f"pipeline {store.pipeline!r} has no checkpoint yet: run `cdc sync`, which snapshots and sets it"
        )
    check_target(target, slot, wal, slot_name)
    direction = "back" if target < current.lsn else "forward"
    effect = (
        "the next window re-reads the changes from there (already applied changes are ignored by the MERGE)"
        if direction == "back"
        else "the changes in between will never be applied to the target"
    )
    question = (
        f"Move the checkpoint of pipeline {store.pipeline!r} {direction} from {current.lsn} to {target}? "
        f"{effect}."
    )
    if target == current.lsn:
        return {"pipeline": store.pipeline, "status": "unchanged", "lsn": str(target)}
    if not confirm(question):
        raise CheckpointRefused("not confirmed: the checkpoint did not move")
    owner = f"cdc-checkpoint-set-{uuid.uuid4().hex[:12]}"
    lease = store.acquire_lease(owner, lease_ttl_s)  # LeaseHeld while a window runs
    try:
        saved = store.save(
            lsn=target,
            slot=current.slot,
            window_id=current.window_id,
            lease=lease,
            expected=current,
            extra={
                **current.extra,
                "checkpoint_set": {
                    "from": str(current.lsn),
                    "to": str(target),
                    "at": time.time(),
                    "by": owner,
                },
            },
        )
    finally:
        store.release_lease(lease)
    return {
        "pipeline": store.pipeline,
        "status": "moved",
        "from_lsn": str(current.lsn),
        "lsn": str(saved.lsn),
        "version": saved.version,
    }
