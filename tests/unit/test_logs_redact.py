"""Secrets are masked before anything is serialised: a secret with a quote, a backslash, spaces or
non-ASCII text never shows in a JSON log line, a text line or the command line's output, not even
in the escaped form JSON gives it."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import uuid

import pytest

from cdc.cli import _emit
from cdc.logs import JsonFormatter, TextFormatter, redact, redact_value, register_secret


def odd_secret() -> str:
    """A fresh secret with every character JSON escapes or spells differently."""
    return f'pa"ss\\w0rd {uuid.uuid4().hex[:8]} é\t"end'


def forms(secret: str) -> list[str]:
    """Every way the secret could be spelled in output: raw and as JSON strings escape it."""
    return [secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]]


def leaked(secret: str, text: str) -> list[str]:
    return [form for form in forms(secret) if form in text]


def record(message: str, **extra: object) -> logging.LogRecord:
    rec = logging.makeLogRecord({"name": "cdc.test", "levelname": "ERROR", "msg": message})
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_a_secret_with_quotes_and_backslashes_is_masked_in_a_json_log_line() -> None:
    secret = odd_secret()
    register_secret(secret)
    line = JsonFormatter().format(
        record(f"login failed with {secret}", error=f"refused {secret}", nested={"detail": [secret, 5]})
    )
    assert leaked(secret, line) == []
    data = json.loads(line)
    assert data["message"] == "login failed with ***"
    assert data["error"] == "refused ***"
    assert data["nested"] == {"detail": ["***", 5]}


def test_a_secret_in_an_exception_traceback_is_masked_in_a_json_log_line() -> None:
    secret = odd_secret()
    register_secret(secret)
    try:
        raise RuntimeError(f"connect failed: {secret}")
    except RuntimeError:
        rec = logging.makeLogRecord({"name": "cdc.test", "msg": "boom", "levelname": "ERROR"})
        rec.exc_info = sys.exc_info()
    line = JsonFormatter().format(rec)
    assert leaked(secret, line) == []
    assert json.loads(line)["exception"].endswith("RuntimeError: connect failed: ***")


def test_a_secret_is_masked_in_a_text_log_line() -> None:
    secret = odd_secret()
    register_secret(secret)
    line = TextFormatter().format(record(f"token {secret}", error=secret))
    assert line == "ERROR   cdc.test: token *** [error=***]"


@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_redact_masks_the_escaped_form_in_text_that_is_already_json(ensure_ascii: bool) -> None:
    secret = odd_secret()
    register_secret(secret)
    text = json.dumps({"message": f"a {secret} b"}, ensure_ascii=ensure_ascii)
    assert secret not in text  # what the old redaction looked for
    assert json.loads(redact(text)) == {"message": "a *** b"}


def test_one_secret_inside_another_is_masked_whole() -> None:
    inner = f"in{uuid.uuid4().hex[:6]}"
    outer = f'{inner}"and more'
    register_secret(inner)
    register_secret(outer)
    assert redact(json.dumps(f"x {outer} y")) == '"x *** y"'


def test_redact_value_masks_every_string_and_keeps_the_other_values() -> None:
    secret = odd_secret()
    register_secret(secret)

    class Opaque:
        def __str__(self) -> str:
            return f"opaque {secret}"

    value = {
        "error": {"message": f"x{secret}x", "kind": "permanent"},
        secret: "key",
        "list": (1, 2.5, None, True, secret),
        "object": Opaque(),
    }
    assert redact_value(value) == {
        "error": {"message": "x***x", "kind": "permanent"},
        "***": "key",
        "list": [1, 2.5, None, True, "***"],
        "object": "opaque ***",
    }


def test_short_values_are_not_registered() -> None:
    register_secret("abc")
    assert redact("abc abcd") == "abc abcd"


@pytest.mark.parametrize("as_json", [True, False])
def test_command_line_output_masks_secrets(as_json: bool, capsys: pytest.CaptureFixture[str]) -> None:
    secret = odd_secret()
    register_secret(secret)
    data = {"status": "failed", "error": {"class": "AuthError", "message": f"refused {secret}"}}
    _emit(argparse.Namespace(json=as_json), data, f"AuthError: refused {secret}")
    out = capsys.readouterr()
    assert leaked(secret, out.out + out.err) == []
    if as_json:
        assert out.err == ""
        assert json.loads(out.out) == {
            "status": "failed",
            "error": {"class": "AuthError", "message": "refused ***"},
        }
    else:
        assert (out.out, out.err) == ("", "AuthError: refused ***\n")
