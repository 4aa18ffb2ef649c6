"""Which staged windows a replay applies, and whether they are whole (pure, except ``verify_parts``).

A staged window lives under ``<pipeline>/windows/<start16>-<end16>/``; its ``manifest.json`` is
written last, so a window directory without one was never completed or was damaged. Windows that
read nothing leave nothing in the stage (the checkpoint moves on without a manifest), so two
consecutive staged windows that do not touch are a *gap*: either windows that staged nothing, or
windows that were lost. Replay cannot tell them apart and stops unless told ``allow_gaps``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cdc.model import Lsn
from cdc.stage import MANIFEST_NAME, Stage, StageObjectMissing

_WINDOW_DIR = re.compile(r"^([0-9A-F]{16})-([0-9A-F]{16})$")


@dataclass(frozen=True)
class WindowDir:
    """One directory under ``<pipeline>/windows/``: its LSN range and whether it has a manifest."""

    start: Lsn
    end: Lsn
    prefix: str  # stage key prefix, no trailing slash
    has_manifest: bool
    files: int = 0  # keys under the prefix besides the manifest

    @property
    def name(self) -> str:
        return self.prefix.rsplit("/", 1)[-1]

    def describe(self) -> str:
        return f"{self.name} ({self.start} -> {self.end})"


@dataclass
class Selection:
    """The chain of windows to apply, in LSN order, and what stands in its way."""

    chain: list[WindowDir] = field(default_factory=list)
    superseded: list[WindowDir] = field(default_factory=list)  # re-read after a crash: covered
    gaps: list[tuple[Lsn, Lsn]] = field(default_factory=list)  # (end of one, start of the next)
    problems: list[str] = field(default_factory=list)  # stop replay before anything is applied
    notes: list[str] = field(default_factory=list)


def parse_window_dirs(pipeline: str, keys: Iterable[str]) -> list[WindowDir]:
    """Group stage keys (relative to the root) into window directories, sorted by (start, end)."""
    base = f"{pipeline}/windows/"
    found: dict[str, list[str]] = {}
    for key in keys:
        if not key.startswith(base):
            continue
        name, _, rest = key[len(base) :].partition("/")
        if _WINDOW_DIR.match(name) and rest:
            found.setdefault(name, []).append(rest)
    result = []
    for name, rests in found.items():
        match = _WINDOW_DIR.match(name)
        assert match is not None
        result.append(
            WindowDir(
                start=Lsn(int(match.group(1), 16)),
                end=Lsn(int(match.group(2), 16)),
                prefix=base + name,
                has_manifest=MANIFEST_NAME in rests,
                files=sum(1 for r in rests if r != MANIFEST_NAME),
            )
        )
    return sorted(result, key=lambda w: (w.start.value, w.end.value))


def list_window_dirs(stage: Stage, pipeline: str) -> list[WindowDir]:
    return parse_window_dirs(pipeline, stage.list_keys(f"{pipeline}/windows/"))


def select_windows(
    windows: list[WindowDir],
    start: Lsn,
    end: Lsn | None = None,
    *,
    allow_gaps: bool = False,
    overlapping: bool = False,
    anchored: bool = False,
) -> Selection:
    """The windows whose range lies in [start, end], chained in LSN order.

    ``overlapping``: also take windows that began before ``start`` but end after it (rebuild from a
    snapshot taken at ``start``). ``anchored``: the chain must begin at or before ``start`` (a first
    window starting later is a gap). A window directory without a manifest is a problem unless a
    complete window with the same start covers it (a crash between staging and the checkpoint, then
    a re-read). Two windows with the same start: the one that continues the chain (else the longer)
    is applied, the other is superseded.
    """
    sel = Selection()

    def wanted(w: WindowDir) -> bool:
        begins = w.start >= start or (overlapping and w.end > start)
        return begins and (end is None or w.end <= end)

    for w in windows:
        if (end is None or w.end <= end) and w.start < start < w.end and not overlapping:
            sel.notes.append(f"window {w.describe()} begins before {start} and is not replayed")
    candidates = [w for w in windows if wanted(w)]
    complete = [w for w in candidates if w.has_manifest]
    starts = {w.start for w in complete}
    for w in candidates:
        if not w.has_manifest:
            if w.start in starts:
                sel.superseded.append(w)
            else:
                sel.problems.append(
                    f"window {w.describe()}: {MANIFEST_NAME} is missing ({w.files} part files without it); "
                    "the window is incomplete or damaged"
                )
    by_start: dict[Lsn, list[WindowDir]] = {}
    for w in complete:
        by_start.setdefault(w.start, []).append(w)
    pos: Lsn | None = None
    if anchored and complete and min(starts) > start:
        sel.gaps.append((start, min(starts)))
    ordered = sorted(starts)
    used: set[str] = set()
    i = 0
    while i < len(ordered):
        here = ordered[i]
        if pos is not None and here < pos:  # starts inside the window just chosen
            i += 1
            continue
        if pos is not None and here > pos:
            sel.gaps.append((pos, here))
        group = by_start[here]
        chaining = [w for w in group if w.end in starts]
        chosen = max(chaining or group, key=lambda w: w.end.value)
        sel.chain.append(chosen)
        used.add(chosen.prefix)
        pos = chosen.end
        i += 1
    sel.superseded += [w for w in complete if w.prefix not in used]
    for w in sel.superseded:
        if w.has_manifest:
            sel.notes.append(f"window {w.describe()} is covered by another staged window and is skipped")
    if not allow_gaps:
        for gap_start, gap_end in sel.gaps:
            before = next((w.name for w in sel.chain if w.end == gap_start), "the start of the range")
            after = next((w.name for w in sel.chain if w.start == gap_end), "?")
            sel.problems.append(
                f"gap: no staged window covers {gap_start} -> {gap_end} (between {before} and {after}); "
                "windows there were lost, or read nothing (those stage nothing): check the stage, then "
                "re-run with --allow-gaps if nothing is missing"
            )
    return sel


def table_name(entry: dict[str, Any]) -> str:
    return f"{entry['schema']}.{entry['table']}"


def manifest_tables(manifest: dict[str, Any], tables: set[str] | None) -> list[dict[str, Any]]:
    """The manifest's table entries, only those in ``tables`` when given."""
    return [t for t in manifest["tables"] if tables is None or table_name(t) in tables]


def verify_parts(stage: Stage, prefix: str, entries: list[dict[str, Any]]) -> list[str]:
    """Problems with the parts the entries list: missing, or a sha256 other than the manifest's."""
    problems = []
    for entry in entries:
        for f in entry["files"]:
            key = f"{prefix}/{entry['stage_dir']}/{f['name']}"
            try:
                data = stage.get_bytes(key)
            except StageObjectMissing:
                problems.append(f"part {key} ({table_name(entry)}) is missing")
                continue
            digest = hashlib.sha256(data).hexdigest()
            if digest != f["sha256"]:
                problems.append(
                    f"part {key} ({table_name(entry)}) is damaged: sha256 {digest}, "
                    f"manifest says {f['sha256']}"
                )
    return problems
