"""Structured logging: one JSON object per line, with the window id as correlation id.

Fields passed through ``extra=`` (pipeline, window_id, lsn, table, ...) become top-level keys.
Values of registered secrets are masked in every record as a last line of defence (before the
record is serialised, and in the JSON line as escaped); the code never logs a secret on purpose.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import Any

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_SECRETS: set[str] = set()
_FORMS: tuple[str, ...] = ()  # every registered secret as written raw and inside JSON strings
MASK = "***"
_LOCK = threading.Lock()


def register_secret(value: str) -> None:
    """Mask this value wherever it would appear in a log line (values shorter than 4 are ignored)."""
    global _FORMS
    if not value or len(value) < 4:
        return
    with _LOCK:
        if value in _SECRETS:
            return
        _SECRETS.add(value)
        forms = {
            form
            for secret in _SECRETS
            for form in (secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1])
        }
        _FORMS = tuple(sorted(forms, key=len, reverse=True))  # longest first: no half-masked value


def redact(text: str) -> str:
    """``text`` with every registered secret masked, raw or as a JSON string escapes it
    (``"`` as ``\\"``, ``\\`` as ``\\\\``, non-ASCII as ``\\uXXXX``)."""
    for form in _FORMS:
        if form in text:
            text = text.replace(form, MASK)
    return text


def redact_value(value: Any) -> Any:
    """A copy of a JSON-able value (dicts, lists, tuples, strings, numbers) with every string masked
    by ``redact``, keys too; any other object becomes its redacted ``str``, as ``json.dumps(...,
    default=str)`` would print it. Redact before serialising, then ``redact`` the text again."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict):
        return {(redact(k) if isinstance(k, str) else k): redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v) for v in value]
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        # masked before escaping (a secret with a quote or backslash is escaped in the line), and
        # the line again in case a value's own serialisation spelled a secret out
        return redact(json.dumps(redact_value(data), default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")
        )
        line = f"{record.levelname:<7} {record.name}: {record.getMessage()}" + (
            f" [{extras}]" if extras else ""
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


def setup_logging(level: str = "INFO", fmt: str = "json", stream: Any = None) -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    for old in list(root.handlers):
        if getattr(old, "_cdc", False):
            root.removeHandler(old)
    handler._cdc = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("botocore", "boto3", "urllib3", "snowflake.connector", "hvac", "s3transfer"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


class WindowLog(logging.LoggerAdapter):  # type: ignore[type-arg,unused-ignore]
    """A logger that adds the pipeline and window id to every record."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs
