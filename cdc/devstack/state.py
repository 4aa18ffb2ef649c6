"""DIR/state.json (ports, pids with their start times, passwords, where the PostgreSQL cluster
lives) and the lock that lets one up/down at a time work on a directory."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cdc.devstack.base import Ctx
from cdc.devstack.procs import DevstackError

STATE_VERSION = 1
_save_lock = threading.Lock()


def state_path(directory: Path) -> Path:
    return directory / "state.json"


def load_state(directory: Path) -> dict[str, Any] | None:
    path = state_path(directory)
    if not path.is_file():
        return None
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DevstackError(
            f"{path} is not valid JSON ({exc})\n  what to do: stop the processes it "
            "named by hand if any still run, remove the file and run up again"
        ) from exc
    if state.get("dir") != str(directory):
        raise DevstackError(
            f"{path} belongs to a stack in {state.get('dir')!r}, not {directory}\n"
            "  what to do: use that directory, or remove state.json here"
        )
    return state


def new_state(directory: Path) -> dict[str, Any]:
    return {
        "version": STATE_VERSION,
        "dir": str(directory),
        "secrets": {
            "pg_password": secrets.token_hex(16),
            "snowflake_password": secrets.token_hex(16),
            "vault_token": "devroot-" + secrets.token_hex(12),
        },
        "parts": {},
    }


def save(ctx: Ctx) -> None:
    with _save_lock:
        path = state_path(ctx.directory)
        tmp = path.with_suffix(".json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(ctx.state, handle, indent=2, sort_keys=True)
        os.replace(tmp, path)


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """One up/down at a time per directory."""
    fd = os.open(directory / ".devstack.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
