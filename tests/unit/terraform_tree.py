"""Reading terraform/ with python-hcl2 for the tests: the parsed files (cached), the blocks of a
module, and the expressions (prose left out) that the reference checks scan."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

try:
    import hcl2
except ImportError:  # fail, never skip: the checks must run
    hcl2 = None

ROOT = Path(__file__).resolve().parents[2] / "terraform"
MODULES = ROOT / "modules"
EXAMPLE = ROOT / "examples" / "complete"
META_ARGUMENTS = {"source", "count", "for_each", "providers", "depends_on", "version"}
PROSE_KEYS = {"description", "error_message", "alarm_description", "comment", "__comments__"}


@functools.cache
def load(path: Path) -> dict:
    if hcl2 is None:
        pytest.fail("python-hcl2 is not installed: pip install python-hcl2 (dev extra)")
    with path.open() as fh:
        return hcl2.load(fh)


def files(base: Path = ROOT) -> list[Path]:
    found = sorted(base.rglob("*.tf"))
    assert found, f"no .tf files under {base}"
    return found


def module_dirs() -> list[Path]:
    return sorted({p.parent for p in files()})


def blocks(kind: str, type_: str | None = None, module: str | None = None, base: Path | None = None):
    """(name, body) of every `resource`/`data` block of a type, across the tree or one module."""
    if base is None:
        base = MODULES / module if module else ROOT
    paths = sorted(base.glob("*.tf")) if module or base != ROOT else sorted(base.rglob("*.tf"))
    for path in paths:
        for block in load(path).get(kind, []):
            for t, named in block.items():
                if type_ is None or t.strip('"') == type_:
                    for name, body in named.items():
                        yield name.strip('"'), body


def dir_blocks(directory: Path, kind: str) -> Iterator[tuple[str, Any]]:
    """(name, body) of the `variable`/`output`/`module`/`locals` blocks of one module directory."""
    for path in sorted(directory.glob("*.tf")):
        for block in load(path).get(kind, []):
            if kind == "locals":
                yield from ((k, v) for k, v in block.items() if k != "__is_block__")
            else:
                for name, body in block.items():
                    yield name.strip('"'), body


def unq(v):
    return v.strip('"') if isinstance(v, str) else v


def statements(module: str | None = None):
    for _, doc in blocks("data", "aws_iam_policy_document", module):
        yield from doc.get("statement", [])


def expressions(node: Any) -> Iterator[str]:
    """Every string of a parsed file except prose (descriptions, messages, comments)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key not in PROSE_KEYS:
                yield key
                yield from expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item)
    elif isinstance(node, str):
        yield node


def module_text(directory: Path) -> str:
    return "\n".join(s for p in sorted(directory.glob("*.tf")) for s in expressions(load(p)))


def declared(directory: Path, kind: str) -> set[str]:
    return {name for name, _ in dir_blocks(directory, kind)}
