"""The embedded local stack: PostgreSQL 15 with wal2json (TLS only over TCP, with the stack's own CA
in ``DIR/postgres-ca.pem``), moto (S3, DynamoDB, SQS, SNS, CloudWatch), fakesnow (Snowflake) and an
OpenBao dev server (Vault), one set per directory.

``up(DIR)`` starts whatever is not already running there, writes ``DIR/cdc.toml`` and returns the
env dict (how to reach each part); ``env(DIR)`` returns it for a running stack; ``down(DIR)``
stops exactly the processes ``up`` started for DIR. Ports are chosen free at start, so stacks in
different directories run side by side. State (ports, pids, passwords) is in ``DIR/state.json``,
logs in ``DIR/logs/<part>.log``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cdc.devstack import stack
from cdc.devstack.procs import DevstackError

__all__ = ["DevstackError", "down", "env", "up"]


def up(directory: Path) -> dict[str, Any]:
    """Start the stack in ``directory`` (only the parts not already running and answering), write
    ``directory/cdc.toml``, and return the env dict once every part is ready."""
    return stack.up(Path(directory))


def env(directory: Path) -> dict[str, Any]:
    """The env dict of the stack running in ``directory``; DevstackError if it is not running."""
    return stack.env(Path(directory))


def down(directory: Path, *, purge: bool = False) -> None:
    """Stop the processes ``up`` started for ``directory`` (nothing else). ``purge=True`` also
    removes the stack's data (PostgreSQL cluster, stage, state.json, cdc.toml); logs stay."""
    stack.down(Path(directory), purge=purge)
