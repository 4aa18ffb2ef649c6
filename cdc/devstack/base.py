"""What every part of the embedded stack shares: the stack's directory and secrets, the fixed
resource names, and where the executables of the dev tools live."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdc.devstack.procs import DevstackError

PIPELINE = "devstack"
AWS_REGION = "us-east-1"
# moto accepts any credentials; these are passed explicitly, never read from ~/.aws.
AWS_ACCESS_KEY_ID = "testing"
AWS_SECRET_ACCESS_KEY = "testing"
CHECKPOINT_TABLE = "cdc-checkpoints"
S3_BUCKET = "cdc-stage"
DLQ_NAME = "cdc-dlq"
SNS_TOPIC = "cdc-alerts"
PG_DATABASE = "app"
PG_USER = "cdc"
SF_ACCOUNT = "fakesnow"
SF_USER = "cdc"
SF_DATABASE = "CDC_DEMO"
SF_LOAD_SCHEMA = "CDC_LOAD"
SF_STAGE = f"{SF_DATABASE}.{SF_LOAD_SCHEMA}.CDC_STAGE"
VAULT_KV_MOUNT = "secret"
VAULT_SOURCE_PATH = "cdc/source"
VAULT_SNOWFLAKE_PATH = "cdc/snowflake"

READY_TIMEOUT_S = 45.0


@dataclass
class Ctx:
    """One stack: its directory and the state that ``state.json`` persists."""

    directory: Path
    state: dict[str, Any]

    @property
    def logs(self) -> Path:
        return self.directory / "logs"

    @property
    def stage_dir(self) -> Path:
        return self.directory / "stage"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def part(self, name: str) -> dict[str, Any]:
        parts: dict[str, dict[str, Any]] = self.state.setdefault("parts", {})
        return parts.setdefault(name, {})

    @property
    def secrets(self) -> dict[str, str]:
        secrets: dict[str, str] = self.state["secrets"]
        return secrets

    def secret_values(self) -> list[str]:
        return list(self.secrets.values())


def tool(name: str) -> str:
    """An executable of the dev extras: next to this interpreter first (the venv), then PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    raise DevstackError(
        f"{name} not found next to {sys.executable} nor on PATH\n"
        "  what to do: install the dev extras into this environment: pip install -e '.[dev]'"
    )
