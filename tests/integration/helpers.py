"""Shared helpers for integration tests: a pipeline with its own schema, slot and stage prefix."""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import threading
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg2

from cdc.app import aws_client, build_engine
from cdc.checkpoint import CheckpointStore
from cdc.engine import Engine
from cdc.model import Lsn
from cdc.settings import FIELDS, Secret, Settings


class Pipeline:
    """One test's own schema, slot, pipeline name and stage prefix."""

    def __init__(self, stack: Any, **overrides: Any) -> None:
        self.name = f"t{uuid.uuid4().hex[:10]}"
        self.schema = f"s_{self.name}"
        self.admin = psycopg2.connect(stack.env["postgres_admin_dsn"])
        self.admin.autocommit = True
        self.conn = psycopg2.connect(stack.env["postgres_dsn"])
        self.settings: Settings = stack.settings.replace(
            pipeline=self.name, source_tables=overrides.pop("source_tables", ()), **overrides
        )
        self.engine: Engine = build_engine(self.settings)
        self.store = CheckpointStore(
            aws_client(self.settings, "dynamodb"), self.settings.checkpoint_table, self.name
        )

    def slot_confirmed(self) -> Lsn:
        with self.admin.cursor() as cur:
            cur.execute(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
                (self.settings.source_slot,),
            )
            return Lsn.parse(cur.fetchone()[0])

    def close(self) -> None:
        self.engine.close()
        self.conn.close()
        with self.admin.cursor() as cur:
            cur.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                (self.settings.source_slot,),
            )
            cur.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
        self.admin.close()


REPO = Path(__file__).resolve().parents[2]


def copied_tables(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tables (with their snapshot rows) of each table re-snapshot among window results."""
    return [r["tables"] for r in results if r["mode"] == "tables"]


def assert_stopped_then_copied(results: list[dict[str, Any]], table: str, reason: str, rows: int) -> None:
    """A window stopped ``table`` saying why (``reason``) and how to copy it, and one table
    re-snapshot then copied its ``rows``."""
    notes = " ".join(n for r in results for n in r["notes"])
    assert f"{reason}; re-snapshot the table (cdc snapshot --tables {table})" in notes, notes
    assert copied_tables(results) == [{table: {"snapshot_rows": rows}}]


def settings_env(settings: Settings, **changes: str) -> dict[str, str]:
    """The ``CDC_*`` environment variables that make ``settings`` (the Lambda's only input)."""
    env: dict[str, str] = {}
    for f in FIELDS:
        value = getattr(settings, f.name)
        if value is None:
            continue
        if isinstance(value, Secret):
            value = value.reveal()
        elif isinstance(value, tuple):
            value = ",".join(value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[f.env] = str(value)
    env.update({f"CDC_{k.upper()}": v for k, v in changes.items()})
    return env


def load_handler() -> ModuleType:
    """A fresh copy of lambda/handler.py (a cold start: no Vault client cached)."""
    spec = importlib.util.spec_from_file_location(
        f"cdc_lambda_handler_{uuid.uuid4().hex[:6]}", REPO / "lambda" / "handler.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FreezingRelay:
    """A TCP relay to a server that stops relaying a connection, both ways, once it has carried
    ``freeze_after`` bytes to its client, and leaves that connection's sockets open: to the client
    it is a connection lost without a word (a network failure, a connection left half open).
    ``frozen`` is set when the first connection freezes; ``close`` ends every connection."""

    def __init__(self, host: str, port: int, freeze_after: int) -> None:
        self._target = (host, port)
        self._freeze_after = freeze_after
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.frozen = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(self._target)
            self._sockets += [client, server]
            stop = threading.Event()
            threading.Thread(target=self._pump, args=(client, server, stop, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, stop, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, stop: threading.Event, to_client: bool) -> None:
        carried = 0
        while not stop.is_set():
            try:
                data = src.recv(65536)
            except OSError:
                return
            if stop.is_set():
                return  # frozen meanwhile: what came is never delivered
            if not data:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            try:
                dst.sendall(data)
            except OSError:
                return
            carried += len(data) if to_client else 0
            if carried >= self._freeze_after:
                stop.set()
                self.frozen.set()

    def close(self) -> None:
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
