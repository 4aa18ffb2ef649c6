"""``cdc check`` and the Lambda event ``{"mode": "check"}``: a preflight that proves every part the
pipeline uses is reachable and allows what the pipeline does, without moving any data.

Each item has a ``name``, a ``status`` (``ok``, ``failed``, or ``skipped`` when it cannot run
because an item it needs failed or it does not apply), a ``detail`` and, for a failure, a ``fix``
(what to change). Texts never carry a secret: only secret *field names* are shown, every text goes
through ``cdc.logs.redact`` and the credentials read are registered for it first.

* ``vault``: login and both secrets (``check.services``).
* ``postgres``: login and TLS, version, ``wal_level``, the replication privilege, a replication
  connection, wal2json, the slot (exists and is ours, or can be created) and each table's key,
  replica identity and SELECT grant (``check.source``).
* ``stage``: write, list, read back and delete a probe object.
* ``dynamodb``: read the checkpoint and lease items and a checkpoint write that cannot succeed.
* ``snowflake``: login, warehouse, the load schema, a transient probe table with a MERGE, and that
  the Snowflake stage points at ``stage_url``.
* ``sqs`` (with ``dlq_url``) and ``cloudwatch`` (with ``metrics_mode = "cloudwatch"``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from cdc.errors import CdcError
from cdc.logs import redact, register_secret
from cdc.settings import Settings

__all__ = ["CheckFailed", "CheckItem", "CheckReport", "Checks", "run_checks"]

log = logging.getLogger(__name__)

Status = Literal["ok", "failed", "skipped"]


class CheckFailed(Exception):
    """Raised by a check step: ``detail`` says what is wrong, ``fix`` what to change."""

    def __init__(self, detail: str, fix: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fix = fix


@dataclass(frozen=True)
class CheckItem:
    name: str
    status: Status
    detail: str
    fix: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


@dataclass
class CheckReport:
    pipeline: str
    items: list[CheckItem] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def failed(self) -> list[CheckItem]:
        return [i for i in self.items if i.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed

    def item(self, name: str) -> CheckItem:
        return next(i for i in self.items if i.name == name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "status": "ok" if self.ok else "failed",
            "failed": [i.name for i in self.failed],
            "checks": [i.as_dict() for i in self.items],
            "duration_s": round(self.duration_s, 3),
        }

    def text(self) -> str:
        """One line per item (plus its fix), then the verdict."""
        mark = {"ok": "ok  ", "failed": "FAIL", "skipped": "skip"}
        width = max((len(i.name) for i in self.items), default=0)
        lines = [f"preflight of pipeline {self.pipeline}:"]
        for i in self.items:
            lines.append(f"  {mark[i.status]}  {i.name.ljust(width)}  {i.detail}")
            if i.fix:
                lines.append(f"        {' ' * width}  fix: {i.fix}")
        verdict = (
            f"all {len(self.items)} checks passed"
            if self.ok
            else f"{len(self.failed)} of {len(self.items)} checks failed: "
            + ", ".join(i.name for i in self.failed)
        )
        lines.append(verdict)
        return "\n".join(lines)


class Checks:
    """Collects items; ``run`` turns a step's result or error into one."""

    def __init__(self, report: CheckReport) -> None:
        self.report = report

    def add(self, name: str, status: Status, detail: str, fix: str | None = None) -> None:
        item = CheckItem(name, status, redact(detail), redact(fix) if fix else None)
        self.report.items.append(item)
        level = logging.WARNING if status == "failed" else logging.DEBUG
        log.log(level, "check %s: %s", name, status, extra={"check": name, "detail": item.detail})

    def skip(self, name: str, detail: str) -> None:
        self.add(name, "skipped", detail)

    def run(self, name: str, step: Callable[[], str], fix: str) -> bool:
        """Run ``step`` (it returns the detail); any error makes the item failed with ``fix``."""
        try:
            detail = step()
        except CheckFailed as exc:
            self.add(name, "failed", exc.detail, exc.fix or fix)
            return False
        except CdcError as exc:
            self.add(name, "failed", f"{type(exc).__name__}: {exc}", fix)
            return False
        except Exception as exc:  # noqa: BLE001 - a client library's own error: reported as the item's failure
            text = " ".join(str(getattr(exc, "msg", None) or exc).split())
            self.add(name, "failed", f"{type(exc).__name__}: {text}", fix)
            return False
        self.add(name, "ok", detail)
        return True


def run_checks(settings: Settings, secrets: Any = None) -> CheckReport:
    """Every check for the pipeline ``settings`` describe (``secrets``: a ``VaultSecrets``, e.g. the
    warm Lambda's; by default one is made from the settings)."""
    from cdc.check import services
    from cdc.check.source import check_postgres
    from cdc.secrets import VaultSecrets

    started = time.monotonic()
    for secret in (settings.vault_token, settings.vault_secret_id, settings.aws_secret_access_key):
        if secret:
            register_secret(secret.reveal())
    report = CheckReport(settings.pipeline)
    checks = Checks(report)
    secrets = secrets or VaultSecrets.from_settings(settings)
    creds = services.check_vault(checks, settings, secrets)
    if "source" in creds:
        check_postgres(checks, settings, secrets)
    else:
        checks.skip("postgres", "needs the PostgreSQL secret from Vault (see the vault items)")
    services.check_stage(checks, settings)
    services.check_dynamodb(checks, settings)
    if "snowflake" in creds:
        services.check_snowflake(checks, settings, secrets)
    else:
        checks.skip("snowflake", "needs the Snowflake secret from Vault (see the vault items)")
    services.check_sqs(checks, settings)
    services.check_sns(checks, settings)
    services.check_cloudwatch(checks, settings)
    report.duration_s = time.monotonic() - started
    return report
