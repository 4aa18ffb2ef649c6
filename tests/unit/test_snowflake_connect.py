"""Snowflake connect arguments: password or key pair, PrivateLink host, and the private key read
from the secret's PEM. The credential never shows in a repr, a log line or an error."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import snowflake.connector
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from cdc import settings as cdc_settings
from cdc.errors import AuthError
from cdc.settings import Secret, Settings
from cdc.snowflake.connect import ConnectArgs, connect_args, load_private_key
from cdc.snowflake.sink import SnowflakeSink

PASSWORD = "pw-Zq81!x"
PASSPHRASE = "correct horse 9127"


def _settings(**overrides: Any) -> Settings:
    base = {
        "pipeline": "orders",
        "source_host": "db",
        "source_database": "app",
        "source_sslmode": "require",
        "vault_addr": "https://vault:8200",
        "vault_token": "t",
        "vault_source_path": "cdc/source",
        "vault_snowflake_path": "cdc/snowflake",
        "snowflake_account": "xy12345",
        "snowflake_database": "RAW",
        "snowflake_stage": "RAW.CDC_LOAD.CDC_STAGE",
        "stage_url": "s3://bucket/cdc",
        "checkpoint_table": "cdc-checkpoints",
    }
    base.update(overrides)
    return cdc_settings.load(None, env={}, overrides=base)


PRIVATELINK = {
    "snowflake_host": "xy12345.us-east-1.privatelink.snowflakecomputing.com",
    "snowflake_warehouse": "CDC_WH",
    "snowflake_role": "CDC_LOADER",
}


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _der(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem(key: Any, passphrase: str | None = None, fmt: Any = serialization.PrivateFormat.PKCS8) -> str:
    encryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, fmt, encryption).decode()


def test_password_connect_args_through_privatelink_host() -> None:
    args = connect_args(_settings(**PRIVATELINK), "CDC_USER", password=Secret(PASSWORD))
    assert args.auth == "password"
    assert args.kwargs() == {
        "account": "xy12345",
        "user": "CDC_USER",
        "database": "RAW",
        "login_timeout": 30,
        "network_timeout": 300,
        "host": "xy12345.us-east-1.privatelink.snowflakecomputing.com",
        "port": 443,
        "protocol": "https",
        "warehouse": "CDC_WH",
        "role": "CDC_LOADER",
        "password": PASSWORD,
    }
    assert PASSWORD not in repr(args) and PASSWORD not in str(args)


def test_key_pair_connect_args_carry_the_der_key_and_no_password(rsa_key: rsa.RSAPrivateKey) -> None:
    der = _der(rsa_key)
    args = connect_args(_settings(), "CDC_USER", password=Secret(PASSWORD), private_key=der, login_timeout=5)
    assert args.auth == "key_pair"
    assert args.kwargs() == {
        "account": "xy12345",  # no host: the connector builds xy12345.snowflakecomputing.com
        "user": "CDC_USER",
        "database": "RAW",
        "login_timeout": 5,
        "network_timeout": 300,
        "authenticator": "SNOWFLAKE_JWT",
        "private_key": der,
    }
    assert args.password is None  # a key pair wins over a password
    text = repr(args)
    assert repr(der) not in text and der.hex() not in text and PASSWORD not in text


@pytest.mark.parametrize(
    ("passphrase", "fmt"),
    [
        (None, serialization.PrivateFormat.PKCS8),
        (PASSPHRASE, serialization.PrivateFormat.PKCS8),
        (None, serialization.PrivateFormat.TraditionalOpenSSL),  # BEGIN RSA PRIVATE KEY
        (PASSPHRASE, serialization.PrivateFormat.TraditionalOpenSSL),  # Proc-Type: 4,ENCRYPTED
    ],
)
def test_private_key_pem_becomes_unencrypted_pkcs8_der(
    rsa_key: rsa.RSAPrivateKey, passphrase: str | None, fmt: Any
) -> None:
    pem = _pem(rsa_key, passphrase, fmt)
    got = load_private_key(Secret(pem), Secret(passphrase) if passphrase else None)
    assert got == _der(rsa_key)


def test_private_key_stored_with_escaped_newlines_or_an_unneeded_passphrase(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    one_line = _pem(rsa_key).strip().replace("\n", "\\n")
    assert load_private_key(Secret(one_line)) == _der(rsa_key)
    assert load_private_key(Secret(_pem(rsa_key)), Secret("unused")) == _der(rsa_key)


def test_ec_key_is_accepted() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    assert load_private_key(Secret(_pem(key))) == _der(key)


def test_encrypted_key_without_passphrase_says_to_add_it(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(AuthError) as info:
        load_private_key(Secret(_pem(rsa_key, PASSPHRASE)))
    assert str(info.value) == (
        "the Snowflake secret's private_key is encrypted but the secret has no private_key_passphrase; "
        "add the passphrase to the secret, or store an unencrypted key"
    )


def test_wrong_passphrase_is_auth_error_without_the_passphrase(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(AuthError) as info:
        load_private_key(Secret(_pem(rsa_key, PASSPHRASE)), Secret("wrong-phrase-5531"))
    message = str(info.value)
    assert message.startswith(
        "the Snowflake secret's private_key could not be decrypted with its private_key_passphrase ("
    )
    assert message.endswith("); check that the passphrase belongs to this key")
    assert "wrong-phrase-5531" not in message and PASSPHRASE not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize(
    "text",
    [
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",  # base64 without the PEM lines
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
        "",
    ],
)
def test_not_a_pem_private_key_is_auth_error(text: str) -> None:
    with pytest.raises(AuthError) as info:
        load_private_key(Secret(text))
    assert str(info.value).startswith("the Snowflake secret's private_key is not a PEM private key; store ")


def test_damaged_pem_is_auth_error_without_the_key() -> None:
    damaged = (
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAAS-damaged\n-----END PRIVATE KEY-----"
    )
    with pytest.raises(AuthError) as info:
        load_private_key(Secret(damaged))
    message = str(info.value)
    assert message.startswith("the Snowflake secret's private_key could not be read (ValueError: damaged or ")
    assert "MIIEvQ" not in message


def test_ed25519_key_is_refused_with_the_key_types_snowflake_takes() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(AuthError, match=r"needs an RSA \(2048 bits or more\) or EC key$"):
        load_private_key(Secret(_pem(key)))


def test_sink_connect_passes_the_key_and_logs_neither_key_nor_passphrase(
    rsa_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[dict[str, Any]] = []

    def connect(**kwargs: Any) -> object:
        seen.append(kwargs)
        return object()

    monkeypatch.setattr(snowflake.connector, "connect", connect)
    caplog.set_level(logging.DEBUG)
    pem = _pem(rsa_key, PASSPHRASE)
    SnowflakeSink.connect(
        _settings(**PRIVATELINK),
        "CDC_USER",
        private_key=Secret(pem),
        private_key_passphrase=Secret(PASSPHRASE),
    )
    (kwargs,) = seen
    assert kwargs["private_key"] == _der(rsa_key) and kwargs["authenticator"] == "SNOWFLAKE_JWT"
    assert "password" not in kwargs
    (record,) = [r for r in caplog.records if r.getMessage() == "connecting to Snowflake"]
    assert (record.auth, record.user, record.host) == (  # type: ignore[attr-defined]
        "key_pair",
        "CDC_USER",
        "xy12345.us-east-1.privatelink.snowflakecomputing.com",
    )
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert PASSPHRASE not in logged and "PRIVATE KEY" not in logged


def test_refused_password_login_names_the_method_and_masks_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def connect(**kwargs: Any) -> object:
        raise snowflake.connector.errors.DatabaseError(
            msg=f"Incorrect username or password was specified ({kwargs['password']})", errno=390100
        )

    monkeypatch.setattr(snowflake.connector, "connect", connect)
    with pytest.raises(AuthError) as info:
        SnowflakeSink.connect(_settings(), "CDC_USER", PASSWORD)
    assert str(info.value) == (
        "Snowflake login to account xy12345 as CDC_USER (password authentication): Snowflake refused the "
        "credentials (390100: Incorrect username or password was specified (***)); check the account, user "
        "and password (or private key, registered as the user's RSA_PUBLIC_KEY) in the Snowflake secret"
    )


def test_connect_args_is_a_frozen_value() -> None:
    args = ConnectArgs({"account": "a"}, password=Secret(PASSWORD))
    with pytest.raises(AttributeError):
        args.password = None  # type: ignore[misc]
