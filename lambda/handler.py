"""AWS Lambda entry point: an EventBridge scheduled event runs one window.

Configuration comes from environment variables only. The Vault client (and the secrets it read)
lives as long as the warm Lambda, so a scheduled run every minute logs in to Vault once.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from cdc import settings as settings_mod
from cdc.alerts import startup_failure
from cdc.app import build_alerts, build_engine, report_window
from cdc.check import run_checks
from cdc.errors import CdcError, ConfigError, TransientError
from cdc.logs import redact_value, setup_logging
from cdc.secrets import VaultSecrets

log = logging.getLogger("cdc.lambda")

_secrets: dict[tuple[str, str, str], VaultSecrets] = {}


def _vault(settings: settings_mod.Settings) -> VaultSecrets:
    key = (settings.vault_addr, settings.vault_source_path, settings.vault_snowflake_path)
    if key not in _secrets:
        _secrets[key] = VaultSecrets.from_settings(settings)
    return _secrets[key]


def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    try:
        settings = settings_mod.from_env()
    except ConfigError as exc:
        setup_logging()
        log.error("invalid configuration", extra={"problems": exc.problems})
        return redact_value({"status": "failed", "error": {"class": "ConfigError", "message": str(exc)}})
    setup_logging(settings.log_level, settings.log_format)
    event = event or {}
    # the schedule's {} runs what the engine decides (an incremental window, or the automatic
    # re-snapshot of tables a schema change stopped); "incremental" asks for an incremental window only
    mode = event.get("mode")
    tables = event.get("tables") or []
    if mode not in (None, "incremental", "snapshot", "check") or not isinstance(tables, list):
        message = (
            f"unsupported event {json.dumps(event)[:200]}: use {{}} (scheduled), "
            '{"mode": "snapshot"}, {"mode": "snapshot", "tables": ["schema.table", ...]} or '
            '{"mode": "check"} (preflight)'
        )
        log.error("unsupported event", extra={"error": message})
        return redact_value(
            {
                "pipeline": settings.pipeline,
                "status": "failed",
                "error": {"class": "ConfigError", "message": message},
            }
        )
    if mode == "check":
        return redact_value(_check(settings))
    time_left = None
    if context is not None and hasattr(context, "get_remaining_time_in_millis"):
        time_left = lambda: context.get_remaining_time_in_millis() / 1000.0  # noqa: E731
    try:
        engine = build_engine(settings, _vault(settings), time_left)
    except CdcError as exc:
        log.error("could not start the window", extra={"error_class": type(exc).__name__, "error": str(exc)})
        build_alerts(settings).after_window(startup_failure(settings.pipeline, exc))
        kind = "transient" if isinstance(exc, TransientError) else "permanent"
        return redact_value(
            {
                "pipeline": settings.pipeline,
                "status": "failed",
                "error": {"class": type(exc).__name__, "message": str(exc), "kind": kind},
            }
        )
    try:
        result = engine.run_window(mode=mode, tables=tuple(str(t) for t in tables))
        report_window(engine, build_alerts(settings), result)
        return redact_value(result.as_dict())
    finally:
        engine.close()


def _check(settings: settings_mod.Settings) -> dict[str, Any]:
    """The preflight (``cdc check``) as a deployment's smoke test: moves no data; ``status`` is
    ``ok`` or ``failed`` with every item's detail and fix."""
    report = run_checks(settings, _vault(settings))
    result = report.as_dict()
    log.info(
        "preflight",
        extra={"pipeline": settings.pipeline, "status": result["status"], "failed": result["failed"]},
    )
    return result
