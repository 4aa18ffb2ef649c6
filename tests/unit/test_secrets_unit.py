"""VaultSecrets without a Vault: the AWS IAM login request and the re-login-before-expiry logic.

A tiny local HTTP server stands in for Vault and records what hvac sends.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import botocore.session
import hvac
import pytest

from cdc import settings as cdc_settings
from cdc.errors import AuthError, SecretsError
from cdc.secrets import RELOGIN_MARGIN_S, Credentials, VaultSecrets, iam_login_payload, needs_login
from cdc.settings import Secret, Settings

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLE-session-token"


class FakeVault:
    """Records requests; answers from ``routes`` (path -> (status, JSON body))."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.routes: dict[str, tuple[int, dict[str, Any]]] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fake.requests.append(
                    {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
                )
                status, payload = fake.routes.get(self.path, (404, {"errors": []}))
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer  # noqa: N815 - http.server's naming

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.addr = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def logins(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"].endswith("/login")]


@pytest.fixture
def vault() -> Iterator[FakeVault]:
    fake = FakeVault()
    fake.thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
        fake.thread.join(timeout=5)


def _login_ok(lease_duration: int, token: str = "s.issued-token") -> tuple[int, dict[str, Any]]:
    return 200, {"auth": {"client_token": token, "lease_duration": lease_duration, "renewable": True}}


def _kv(data: dict[str, str]) -> tuple[int, dict[str, Any]]:
    return 200, {"data": {"data": data, "metadata": {"version": 1}}}


def _settings(addr: str, **overrides: Any) -> Settings:
    base = {
        "pipeline": "orders",
        "source_host": "db",
        "source_database": "app",
        "source_sslmode": "require",
        "vault_addr": addr,
        "vault_auth_method": "aws",
        "vault_aws_role": "cdc-lambda",
        "vault_aws_mount": "aws-prod",
        "vault_source_path": "cdc/source",
        "vault_snowflake_path": "cdc/snowflake",
        "snowflake_account": "acme",
        "snowflake_database": "RAW",
        "snowflake_stage": "RAW.CDC.STAGE",
        "stage_url": "s3://bucket/cdc",
        "checkpoint_table": "cdc-checkpoints",
    }
    base.update(overrides)
    return cdc_settings.load(None, env={}, overrides=base)


def _boto_session(token: str | None = SESSION_TOKEN) -> botocore.session.Session:
    session = botocore.session.Session()
    session.set_credentials(ACCESS_KEY, SECRET_KEY, token)
    return session


def _sigv4(secret_key: str, date: str, region: str, string_to_sign: str) -> str:
    key = f"AWS4{secret_key}".encode()
    for part in (date, region, "sts", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def _login_body(fake: FakeVault, mount: str = "aws-prod") -> dict[str, Any]:
    logins = fake.logins()
    assert [r["path"] for r in logins] == [f"/v1/auth/{mount}/login"]
    assert logins[0]["method"] == "POST"
    body: dict[str, Any] = json.loads(logins[0]["body"])
    return body


def test_iam_login_sends_a_correctly_signed_get_caller_identity(vault: FakeVault) -> None:
    vault.routes["/v1/auth/aws-prod/login"] = _login_ok(900)
    settings = _settings(vault.addr, vault_aws_server_id="vault.example.com")
    secrets = VaultSecrets(hvac.Client(url=vault.addr), settings, boto_session=_boto_session())
    secrets.login()

    body = _login_body(vault)
    assert body["role"] == "cdc-lambda"
    assert body["iam_http_request_method"] == "POST"
    url = base64.b64decode(body["iam_request_url"]).decode()
    assert url == "https://sts.amazonaws.com/"
    payload = base64.b64decode(body["iam_request_body"]).decode()
    assert payload == "Action=GetCallerIdentity&Version=2011-06-15"
    headers = {k: v[0] for k, v in json.loads(base64.b64decode(body["iam_request_headers"])).items()}
    assert headers["X-Vault-AWS-IAM-Server-ID"] == "vault.example.com"
    assert headers["X-Amz-Security-Token"] == SESSION_TOKEN
    assert headers["Host"] == "sts.amazonaws.com"

    # The signature is right: recompute it from the signed headers (AWS Signature Version 4).
    amz_date = headers["X-Amz-Date"]
    date = amz_date[:8]
    today = datetime.now(UTC)
    assert date in {(today - timedelta(days=d)).strftime("%Y%m%d") for d in (0, 1)}
    auth = headers["Authorization"]
    prefix = f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{date}/us-east-1/sts/aws4_request, SignedHeaders="
    assert auth.startswith(prefix)
    signed_names, signature = auth[len(prefix) :].split(", Signature=")
    names = signed_names.split(";")
    assert {"host", "x-amz-date", "x-vault-aws-iam-server-id", "x-amz-security-token"} <= set(names)
    lower = {k.lower(): v for k, v in headers.items()}
    canonical = "\n".join(
        [
            "POST",
            "/",
            "",
            "".join(f"{n}:{lower[n].strip()}\n" for n in names),
            signed_names,
            hashlib.sha256(payload.encode()).hexdigest(),
        ]
    )
    scope = f"{date}/us-east-1/sts/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    assert signature == _sigv4(SECRET_KEY, date, "us-east-1", to_sign)

    # hvac now uses the issued token; the secret key never left the process
    assert secrets._client.token == "s.issued-token"
    assert SECRET_KEY not in json.dumps(body)


def test_iam_login_without_server_id_or_session_token_omits_those_headers(vault: FakeVault) -> None:
    vault.routes["/v1/auth/aws-prod/login"] = _login_ok(900)
    secrets = VaultSecrets(
        hvac.Client(url=vault.addr), _settings(vault.addr), boto_session=_boto_session(None)
    )
    secrets.login()
    headers = json.loads(base64.b64decode(_login_body(vault)["iam_request_headers"]))
    assert "X-Vault-AWS-IAM-Server-ID" not in headers
    assert "X-Amz-Security-Token" not in headers


def test_iam_login_refused_is_auth_error_with_what_to_check(vault: FakeVault) -> None:
    vault.routes["/v1/auth/aws-prod/login"] = (400, {"errors": ["entry for role cdc-lambda not found"]})
    secrets = VaultSecrets(hvac.Client(url=vault.addr), _settings(vault.addr), boto_session=_boto_session())
    with pytest.raises(AuthError) as info:
        secrets.login()
    message = str(info.value)
    assert f"Vault at {vault.addr} refused the aws login" in message
    assert "role 'cdc-lambda' at auth/aws-prod" in message and "bound_iam_principal_arn" in message
    assert SECRET_KEY not in message and SESSION_TOKEN not in message


def test_iam_login_without_aws_credentials_is_auth_error(vault: FakeVault) -> None:
    class NoCredentials:
        def get_credentials(self) -> None:
            return None

    secrets = VaultSecrets(hvac.Client(url=vault.addr), _settings(vault.addr), boto_session=NoCredentials())
    with pytest.raises(AuthError, match="no AWS credentials were found"):
        secrets.login()
    assert vault.requests == []


@pytest.mark.parametrize(
    ("expires_at", "now", "expected"),
    [
        (None, 1e12, False),  # a token without expiry (root, or ttl 0) never needs a new login
        (1000.0, 0.0, False),
        (1000.0, 1000.0 - RELOGIN_MARGIN_S, False),  # exactly a minute left: still fine
        (1000.0, 1000.0 - RELOGIN_MARGIN_S + 0.001, True),
        (1000.0, 2000.0, True),  # already expired
    ],
)
def test_needs_login_when_less_than_a_minute_remains(
    expires_at: float | None, now: float, expected: bool
) -> None:
    assert needs_login(expires_at, now) is expected


def test_reads_log_in_again_shortly_before_the_token_expires(vault: FakeVault) -> None:
    vault.routes["/v1/auth/aws-prod/login"] = _login_ok(300)
    vault.routes["/v1/secret/data/cdc/source"] = _kv({"user": "u", "password": "p"})
    vault.routes["/v1/secret/data/cdc/snowflake"] = _kv({"user": "s", "password": "q"})
    vault.routes["/v1/secret/data/cdc/other"] = _kv({"x": "y"})
    clock = [5000.0]
    secrets = VaultSecrets(
        hvac.Client(url=vault.addr),
        _settings(vault.addr),
        boto_session=_boto_session(),
        clock=lambda: clock[0],
    )
    secrets.source_credentials()  # first use logs in
    assert len(vault.logins()) == 1
    clock[0] += 300 - RELOGIN_MARGIN_S - 1  # 61 s left
    secrets.snowflake_credentials()
    assert len(vault.logins()) == 1
    clock[0] += 2  # 59 s left
    secrets.read("cdc/other")
    assert len(vault.logins()) == 2
    # cached paths need no token at all: no login, no request
    before = len(vault.requests)
    clock[0] += 10_000
    secrets.source_credentials()
    assert len(vault.requests) == before


def test_token_without_expiry_is_not_renewed(vault: FakeVault) -> None:
    vault.routes["/v1/auth/aws-prod/login"] = _login_ok(0)
    vault.routes["/v1/secret/data/cdc/a"] = _kv({"k": "v"})
    vault.routes["/v1/secret/data/cdc/b"] = _kv({"k": "v"})
    clock = [0.0]
    secrets = VaultSecrets(
        hvac.Client(url=vault.addr),
        _settings(vault.addr),
        boto_session=_boto_session(),
        clock=lambda: clock[0],
    )
    secrets.read("cdc/a")
    clock[0] += 1e9
    secrets.read("cdc/b")
    assert len(vault.logins()) == 1


def test_snowflake_key_pair_secret_returns_key_and_passphrase_wrapped(vault: FakeVault) -> None:
    vault.routes["/v1/auth/aws-prod/login"] = _login_ok(900)
    pem = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHz\n-----END ENCRYPTED PRIVATE KEY-----"
    vault.routes["/v1/secret/data/cdc/snowflake"] = _kv(
        {"user": "CDC_LOADER", "private_key": pem, "private_key_passphrase": "pp-3391", "role": "LOADER"}
    )
    secrets = VaultSecrets(hvac.Client(url=vault.addr), _settings(vault.addr), boto_session=_boto_session())
    creds = secrets.snowflake_credentials()
    assert creds == Credentials(
        user="CDC_LOADER",
        password=None,
        extra={
            "private_key": Secret(pem),
            "private_key_passphrase": Secret("pp-3391"),
            "role": Secret("LOADER"),
        },
    )
    assert "pp-3391" not in repr(creds) and "MIIFHz" not in repr(creds)


def test_snowflake_passphrase_without_key_is_secrets_error(vault: FakeVault) -> None:
    vault.routes["/v1/auth/aws-prod/login"] = _login_ok(900)
    vault.routes["/v1/secret/data/cdc/snowflake"] = _kv(
        {"user": "CDC_LOADER", "password": "pw-7720", "private_key_passphrase": "pp-3391"}
    )
    secrets = VaultSecrets(hvac.Client(url=vault.addr), _settings(vault.addr), boto_session=_boto_session())
    with pytest.raises(SecretsError) as info:
        secrets.snowflake_credentials()
    message = str(info.value)
    assert message == (
        f"secret 'cdc/snowflake' (KV v2 mount 'secret', Vault at {vault.addr}) has 'private_key_passphrase' "
        "but no 'private_key'; add the key (`bao kv patch -mount=secret cdc/snowflake "
        "private_key=@rsa_key.p8`) or remove the passphrase"
    )
    assert "pp-3391" not in message and "pw-7720" not in message


def test_iam_login_payload_signs_the_server_id_and_never_carries_the_secret_key() -> None:
    creds = _boto_session().get_credentials().get_frozen_credentials()
    payload = iam_login_payload(creds, "cdc-lambda", "vault.example.com")
    assert sorted(payload) == [
        "iam_http_request_method",
        "iam_request_body",
        "iam_request_headers",
        "iam_request_url",
        "role",
    ]
    headers = {k: v[0] for k, v in json.loads(base64.b64decode(payload["iam_request_headers"])).items()}
    signed = headers["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert signed == [
        "content-type",
        "host",
        "x-amz-date",
        "x-amz-security-token",
        "x-vault-aws-iam-server-id",
    ]
    assert (
        SECRET_KEY not in json.dumps(payload)
        and SECRET_KEY not in base64.b64decode(payload["iam_request_headers"]).decode()
    )
    assert "role" not in iam_login_payload(creds, None)
