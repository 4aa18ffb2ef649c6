"""Snapshots: copy tables at an exported snapshot's exact LSN, stage them like windows, load them
into fresh Snowflake tables and swap them in.

Building blocks the engine composes (see each module):

* ``export``: ``create_slot_with_snapshot`` / ``create_temporary_snapshot`` -> ``ExportedSnapshot``
  (consistent LSN S + snapshot name, valid while its connection stays open), the boundary rule
  ``in_snapshot(commit_lsn, S)`` and ``snapshot_row_lsn(S)``;
* ``copy``: ``copy_table`` streams ``COPY ... TO STDOUT`` (text format) through a pipe to Arrow's
  streaming reader, ``parts.TableParts`` and ``writer.PartWriter``, into Parquet parts shaped like
  the stream's, a row group at a time, memory bounded whatever the table's size;
* ``load``: ``SnapshotLoader`` loads a staged table into ``<target>__CDC_NEW_<token>`` and swaps it in;
* ``run``: ``run_snapshot`` does all of it table by table within a deadline.
"""

from cdc.snapshot.copy import CopyProgress, SnapshotDeadline, SnapshotTable, arrow_schema, copy_table
from cdc.snapshot.export import (
    ExportedSnapshot,
    SnapshotPoint,
    create_slot_with_snapshot,
    create_temporary_snapshot,
    drop_slot,
    in_snapshot,
    open_copy_connection,
    snapshot_row_lsn,
)
from cdc.snapshot.load import LoadResult, SnapshotLoader
from cdc.snapshot.run import FinishedTable, SnapshotProgress, SnapshotResult, new_snapshot_id, run_snapshot

__all__ = [
    "CopyProgress",
    "ExportedSnapshot",
    "FinishedTable",
    "LoadResult",
    "SnapshotDeadline",
    "SnapshotLoader",
    "SnapshotPoint",
    "SnapshotProgress",
    "SnapshotResult",
    "SnapshotTable",
    "arrow_schema",
    "copy_table",
    "create_slot_with_snapshot",
    "create_temporary_snapshot",
    "drop_slot",
    "in_snapshot",
    "new_snapshot_id",
    "open_copy_connection",
    "run_snapshot",
    "snapshot_row_lsn",
]
