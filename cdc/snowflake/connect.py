"""The arguments ``snowflake.connector.connect`` gets: account, PrivateLink host, warehouse and
role from the settings; key-pair authentication (a private key from the Snowflake secret) or a
password. The credential never shows in a repr or a log line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cdc.errors import AuthError
from cdc.settings import Secret, Settings

__all__ = ["LOGIN_TIMEOUT_S", "NETWORK_TIMEOUT_S", "ConnectArgs", "connect_args", "load_private_key"]

LOGIN_TIMEOUT_S = 30
NETWORK_TIMEOUT_S = 300


@dataclass(frozen=True)
class ConnectArgs:
    """What ``snowflake.connector.connect`` gets. The credential is held apart from the other
    arguments, so that printing or logging these never shows it; ``kwargs()`` joins them."""

    params: dict[str, Any]
    password: Secret | None = None
    private_key: bytes | None = field(default=None, repr=False)  # PKCS#8 DER, unencrypted

    @property
    def auth(self) -> str:
        return "key_pair" if self.private_key is not None else "password"

    def kwargs(self) -> dict[str, Any]:
        if self.private_key is not None:
            return {**self.params, "authenticator": "SNOWFLAKE_JWT", "private_key": self.private_key}
        return {**self.params, "password": self.password.reveal() if self.password else ""}


def connect_args(
    settings: Settings,
    user: str,
    *,
    password: Secret | None = None,
    private_key: bytes | None = None,
    login_timeout: int = LOGIN_TIMEOUT_S,
    network_timeout: int = NETWORK_TIMEOUT_S,
) -> ConnectArgs:
    """Connector arguments from the settings: key-pair auth when ``private_key`` (DER, see
    ``load_private_key``) is given, else the password; the PrivateLink host when one is set."""
    params: dict[str, Any] = {
        "account": settings.snowflake_account,
        "user": user,
        "database": settings.snowflake_database,
        "login_timeout": login_timeout,
        "network_timeout": network_timeout,
    }
    if settings.snowflake_host:
        params.update(
            host=settings.snowflake_host,
            port=settings.snowflake_port,
            protocol=settings.snowflake_protocol,
        )
    if settings.snowflake_warehouse:
        params["warehouse"] = settings.snowflake_warehouse
    if settings.snowflake_role:
        params["role"] = settings.snowflake_role
    if private_key is not None:
        return ConnectArgs(params, private_key=private_key)
    return ConnectArgs(params, password=password)


def load_private_key(pem: Secret, passphrase: Secret | None = None) -> bytes:
    """The Snowflake secret's ``private_key`` (PKCS#8 or PKCS#1 PEM, encrypted with
    ``passphrase`` or not) as the unencrypted PKCS#8 DER bytes the connector signs its JWT with.
    Errors name the fields, never their values."""
    text = pem.reveal().strip()
    if "\\n" in text and "\n" not in text:  # stored with escaped newlines (JSON, one-line CLI)
        text = text.replace("\\n", "\n")
    encrypted = "ENCRYPTED" in text.split("\n", 1)[0] or "Proc-Type: 4,ENCRYPTED" in text
    fix = "store the output of `openssl pkcs8 -topk8 ...` (the whole PEM, BEGIN and END lines included)"
    if not text.startswith("-----BEGIN") or "PRIVATE KEY-----" not in text:
        raise AuthError(f"the Snowflake secret's private_key is not a PEM private key; {fix}")
    if encrypted and not passphrase:
        raise AuthError(
            "the Snowflake secret's private_key is encrypted but the secret has no private_key_passphrase; "
            "add the passphrase to the secret, or store an unencrypted key"
        )
    try:
        key = serialization.load_pem_private_key(
            text.encode(), password=passphrase.reveal().encode() if passphrase and encrypted else None
        )
    except (ValueError, TypeError) as exc:
        if encrypted:
            raise AuthError(
                "the Snowflake secret's private_key could not be decrypted with its private_key_passphrase "
                f"({type(exc).__name__}); check that the passphrase belongs to this key"
            ) from None
        raise AuthError(
            f"the Snowflake secret's private_key could not be read ({type(exc).__name__}: damaged or "
            f"not a private key); {fix}"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise AuthError(
            f"the Snowflake secret's private_key is a {type(key).__name__.lstrip('_')}; Snowflake key-pair "
            "authentication needs an RSA (2048 bits or more) or EC key"
        )
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
