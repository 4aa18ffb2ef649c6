"""What a window stages and counts when it ends inside a transaction: the rows of that transaction
are left out of the MERGE (past ``max_lsn``), of the window's counts, and a table with no other rows
is not staged at all; the next window reads the transaction whole and counts it."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_batch import schema_for

from cdc.batch import WindowWriter
from cdc.model import Change, Lsn
from cdc.reader import _committed

TS = "2026-01-01 00:00:00+00"


def _insert(writer: WindowWriter, key: int, commit: int) -> None:
    writer.add(Change("I", "public", "cdc_t1", Lsn(commit), values={"id": key, "note": "a"}), Lsn(commit), TS)


@pytest.mark.parametrize(("max_lsn", "rows"), [(20, 3), (19, 1), (10, 1), (9, 0)])
def test_a_table_whose_rows_are_all_past_the_last_commit_counts_no_rows(
    tmp_path: Path, max_lsn: int, rows: int
) -> None:
    """A table whose every row is of the transaction the window cut off counts none (the MERGE
    would apply none, and the reader does not stage it); a row committed at max_lsn counts."""
    writer = WindowWriter(tmp_path, schema_for, part_max_rows=2)
    for key, commit in enumerate((10, 20, 20)):
        _insert(writer, key, commit)
    [staged] = writer.close(max_lsn)
    assert (staged.rows, len(staged.files)) == (3, 2)
    assert _committed(staged, tmp_path, max_lsn).rows == rows


def test_counts_leave_out_the_cut_off_transaction_with_its_key_change_and_delete(tmp_path: Path) -> None:
    writer = WindowWriter(tmp_path, schema_for, part_max_rows=2)
    _insert(writer, 1, 10)
    _insert(writer, 2, 10)  # the first part: its statistics show nothing past 19, and it is not read
    key_change = Change("U", "public", "cdc_t1", Lsn(20), values={"id": 11, "note": "b"}, identity={"id": 1})
    writer.add(key_change, Lsn(20), TS)  # a delete row and the moved row
    writer.add(Change("D", "public", "cdc_t1", Lsn(20), identity={"id": 2}), Lsn(20), TS)
    _insert(writer, 3, 20)
    [staged] = writer.close(19)  # the transaction committing at 20 is cut off
    assert (staged.rows, staged.ops) == (6, {"I": 3, "U": 1, "D": 1, "T": 0})
    counted = _committed(staged, tmp_path, 19)
    assert (counted.rows, counted.ops) == (2, {"I": 2, "U": 0, "D": 0, "T": 0})
    assert _committed(staged, tmp_path, 20) == staged  # nothing past 20


def test_a_table_staged_for_its_truncate_alone_counts_no_rows(tmp_path: Path) -> None:
    writer = WindowWriter(tmp_path, schema_for)
    writer.add(Change(op="T", schema="public", table="cdc_t1", lsn=Lsn(5)), Lsn(9), TS)
    _insert(writer, 1, 20)
    [staged] = writer.close(19)
    counted = _committed(staged, tmp_path, 19)
    assert (counted.rows, counted.ops, counted.truncate) == (0, {"I": 0, "U": 0, "D": 0, "T": 1}, (9, 0))
