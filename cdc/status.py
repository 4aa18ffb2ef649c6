"""Where a pipeline stands: checkpoint, slot and lag."""

from __future__ import annotations

from typing import Any

from cdc.app import aws_client, build_source
from cdc.checkpoint import CheckpointStore
from cdc.secrets import VaultSecrets
from cdc.settings import Settings


def pipeline_status(settings: Settings) -> dict[str, Any]:
    store = CheckpointStore(aws_client(settings, "dynamodb"), settings.checkpoint_table, settings.pipeline)
    checkpoint = store.load()
    lease = store.read_lease()
    source = build_source(settings, VaultSecrets.from_settings(settings))
    try:
        slot = source.slot_info()
        wal = source.current_wal_lsn()
    finally:
        source.close()
    return {
        "pipeline": settings.pipeline,
        "checkpoint_lsn": str(checkpoint.lsn) if checkpoint else None,
        "checkpoint_updated_at": checkpoint.updated_at if checkpoint else None,
        "last_window_id": checkpoint.window_id if checkpoint else None,
        "last_window": checkpoint.extra if checkpoint else None,
        "slot": settings.source_slot,
        "slot_exists": slot is not None,
        "slot_confirmed_lsn": str(slot.confirmed_flush) if slot and slot.confirmed_flush else None,
        "slot_restart_lsn": str(slot.restart) if slot and slot.restart else None,
        "slot_wal_status": slot.wal_status if slot else None,
        "retained_wal_bytes": slot.retained_bytes if slot else None,
        "wal_lsn": str(wal),
        "lag_bytes": wal.value - checkpoint.lsn.value if checkpoint else None,
        "lease_owner": lease.owner if lease else None,
        "lease_expires_at": lease.expires_at if lease else None,
    }
