"""Credentials from HashiCorp Vault (or OpenBao) through hvac.

Login by token, AppRole or AWS IAM (an ``sts:GetCallerIdentity`` request signed with botocore's
SigV4 from the Lambda's own credentials, which Vault replays to STS to learn the caller's ARN).
The token is kept with the instance and the login repeated when less than a minute of it is
left. Secrets are KV v2 entries, read once per instance: a warm Lambda keeps the instance and
does not ask Vault again. Values are wrapped in ``Secret`` as soon as they arrive; only field
names are ever logged.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.auth
import botocore.awsrequest
import hvac
import hvac.exceptions
import requests

from cdc.errors import AuthError, SecretsError, SecretsUnavailable
from cdc.settings import Secret, Settings

log = logging.getLogger(__name__)

RELOGIN_MARGIN_S = 60.0
# The signed request targets the global STS endpoint, Vault's default sts_endpoint, which only
# accepts signatures scoped to us-east-1.
STS_URL = "https://sts.amazonaws.com/"
STS_SIGNING_REGION = "us-east-1"
STS_BODY = "Action=GetCallerIdentity&Version=2011-06-15"
SERVER_ID_HEADER = "X-Vault-AWS-IAM-Server-ID"

_AUTH_REFUSED = (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized, hvac.exceptions.InvalidRequest)
_UNAVAILABLE = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    hvac.exceptions.VaultDown,
    hvac.exceptions.InternalServerError,
    hvac.exceptions.BadGateway,
    hvac.exceptions.RateLimitExceeded,
)


@dataclass(frozen=True)
class Credentials:
    user: str
    password: Secret | None
    extra: dict[str, Secret]  # other fields of the secret (private_key, host, ...), all wrapped


def needs_login(expires_at: float | None, now: float, margin: float = RELOGIN_MARGIN_S) -> bool:
    """True when a token that expires at ``expires_at`` (None: never) has less than ``margin`` left."""
    return expires_at is not None and expires_at - now < margin


def iam_login_payload(credentials: Any, role: str | None, server_id: str | None = None) -> dict[str, str]:
    """The body of Vault's ``auth/<mount>/login`` for the AWS IAM method.

    ``credentials`` has ``access_key``, ``secret_key`` and ``token`` (botocore's frozen
    credentials). The request is signed, never sent: Vault sends it to STS. The secret key only
    goes into the signature; the session token is one of the signed headers, as STS requires.
    """
    headers = {
        "Host": "sts.amazonaws.com",
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
    }
    if server_id:
        headers[SERVER_ID_HEADER] = server_id  # signed too: binds the request to this Vault
    request = botocore.awsrequest.AWSRequest(method="POST", url=STS_URL, data=STS_BODY, headers=headers)
    botocore.auth.SigV4Auth(credentials, "sts", STS_SIGNING_REGION).add_auth(request)
    signed = {k: [str(v)] for k, v in request.headers.items()}

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    payload = {
        "iam_http_request_method": "POST",
        "iam_request_url": b64(STS_URL),
        "iam_request_body": b64(STS_BODY),
        "iam_request_headers": b64(json.dumps(signed)),
    }
    if role:
        payload["role"] = role
    return payload


class VaultSecrets:
    """Reads the pipeline's credentials from Vault. ``client`` is an ``hvac.Client``."""

    def __init__(
        self,
        client: hvac.Client,
        settings: Settings,
        *,
        boto_session: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._settings = settings
        self._boto_session = boto_session
        self._clock = clock
        self._logged_in = False
        self._expires_at: float | None = None  # on self._clock's scale; None: the token never expires
        self._cache: dict[str, dict[str, Secret]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> VaultSecrets:
        client = hvac.Client(
            url=settings.vault_addr,
            namespace=settings.vault_namespace,
            verify=settings.vault_ca_cert or True,
            timeout=10,
        )
        return cls(client, settings)

    # ---------------------------------------------------------------- login

    def login(self) -> None:
        """Log in with the configured method and remember when the token expires."""
        method = self._settings.vault_auth_method
        with self._login_errors(method):
            if method == "token":
                ttl = self._login_token()
            elif method == "approle":
                ttl = self._login_approle()
            elif method == "aws":
                ttl = self._login_aws()
            else:
                raise AuthError(f"Vault auth method {method!r} is not supported (token, approle, aws)")
        self._logged_in = True
        self._expires_at = None if ttl <= 0 else self._clock() + ttl
        log.info(
            "vault login",
            extra={"auth_method": method, "vault_addr": self._settings.vault_addr, "ttl_s": ttl},
        )

    def ensure_login(self) -> None:
        """Log in if we never did or the token has less than a minute left."""
        if not self._logged_in or needs_login(self._expires_at, self._clock()):
            self.login()

    def _login_token(self) -> int:
        token = self._settings.vault_token
        if not token:
            raise AuthError(
                "Vault auth method is token but no token is configured: set CDC_VAULT_TOKEN (vault_token)"
            )
        self._client.token = token.reveal()
        data = self._client.auth.token.lookup_self()["data"]  # proves the token works
        return int(data.get("ttl") or 0)

    def _login_approle(self) -> int:
        role_id, secret_id = self._settings.vault_role_id, self._settings.vault_secret_id
        if not role_id or not secret_id:
            raise AuthError(
                "Vault auth method is approle but CDC_VAULT_ROLE_ID or CDC_VAULT_SECRET_ID is not set"
            )
        resp = self._client.auth.approle.login(
            role_id=role_id, secret_id=secret_id.reveal(), mount_point=self._settings.vault_approle_mount
        )
        return int(resp["auth"].get("lease_duration") or 0)

    def _login_aws(self) -> int:
        session = self._boto_session
        if session is None:
            session = boto3.session.Session()
        credentials = session.get_credentials()
        if credentials is None:
            raise AuthError(
                "Vault auth method is aws but no AWS credentials were found (Lambda role, environment "
                "or profile); the IAM login signs sts:GetCallerIdentity with them"
            )
        s = self._settings
        frozen = credentials.get_frozen_credentials()
        payload = iam_login_payload(frozen, s.vault_aws_role, s.vault_aws_server_id)
        resp = self._client.adapter.login(f"/v1/auth/{s.vault_aws_mount}/login", json=payload)
        return int(resp["auth"].get("lease_duration") or 0)

    @contextmanager
    def _login_errors(self, method: str) -> Iterator[None]:
        addr = self._settings.vault_addr
        try:
            yield
        except _AUTH_REFUSED as exc:
            raise AuthError(
                f"Vault at {addr} refused the {method} login ({type(exc).__name__}: "
                f"{self._scrub(str(exc))}); {self._login_hint(method)}"
            ) from exc
        except _UNAVAILABLE as exc:
            raise self._unavailable(f"logging in ({method})", exc) from exc
        except hvac.exceptions.VaultError as exc:
            raise AuthError(
                f"Vault at {addr} failed the {method} login ({type(exc).__name__}: {self._scrub(str(exc))})"
            ) from exc

    def _login_hint(self, method: str) -> str:
        s = self._settings
        if method == "token":
            return "check that CDC_VAULT_TOKEN holds a valid, unexpired token for this Vault" + (
                f" and namespace {s.vault_namespace!r}" if s.vault_namespace else ""
            )
        if method == "approle":
            return (
                f"check CDC_VAULT_ROLE_ID and CDC_VAULT_SECRET_ID (secret ids expire and may be limited "
                f"in uses) and that AppRole is enabled at auth/{s.vault_approle_mount}"
            )
        return (
            f"check that role {s.vault_aws_role!r} at auth/{s.vault_aws_mount} binds this IAM principal "
            "(bound_iam_principal_arn) and that CDC_VAULT_AWS_SERVER_ID matches the mount's "
            "iam_server_id_header_value"
        )

    # ---------------------------------------------------------------- reading

    def read(self, path: str) -> dict[str, Secret]:
        """Every field of the KV v2 secret at ``path``, wrapped; cached for this instance's life."""
        cached = self._cache.get(path)
        if cached is not None:
            return cached
        self.ensure_login()
        mount = self._settings.vault_kv_mount
        try:
            resp = self._client.secrets.kv.v2.read_secret_version(
                path=path, mount_point=mount, raise_on_deleted_version=True
            )
        except hvac.exceptions.InvalidPath as exc:
            raise SecretsError(
                f"no secret at {self._where(path)}; write it, e.g. "
                f"`bao kv put -mount={mount} {path} user=... password=...` (or `vault kv put ...`)"
            ) from exc
        except hvac.exceptions.Forbidden as exc:
            raise SecretsError(
                f"Vault at {self._settings.vault_addr} refused to read {mount}/data/{path} (permission "
                f"denied); the login's policy must allow read on {mount}/data/{path}"
            ) from exc
        except _UNAVAILABLE as exc:
            raise self._unavailable(f"reading {mount}/{path}", exc) from exc
        except hvac.exceptions.VaultError as exc:
            raise SecretsError(
                f"Vault rejected reading {self._where(path)} ({type(exc).__name__}: {self._scrub(str(exc))})"
            ) from exc
        data = (resp.get("data") or {}).get("data") or {}
        secret = {str(k): Secret(v if isinstance(v, str) else str(v)) for k, v in data.items()}
        log.info(
            "vault secret read", extra={"mount": mount, "path": path, "fields": sorted(secret)}
        )  # field names only, never values
        self._cache[path] = secret
        return secret

    def source_credentials(self) -> Credentials:
        """PostgreSQL credentials: ``user`` (or ``username``) and ``password``."""
        path = self._settings.vault_source_path
        fields = self.read(path)
        user = self._user(path, fields)
        password = self._require(path, fields, "password")
        return Credentials(user=user, password=password, extra=_rest(fields))

    def snowflake_credentials(self) -> Credentials:
        """Snowflake credentials: ``user`` (or ``username``) and ``password``, or ``private_key``
        (PKCS#8 PEM, in ``extra``) with an optional ``private_key_passphrase`` if it is encrypted.
        A key pair wins over a password when the secret holds both."""
        path = self._settings.vault_snowflake_path
        fields = self.read(path)
        user = self._user(path, fields)
        mount = self._settings.vault_kv_mount
        if "password" not in fields and "private_key" not in fields:
            raise SecretsError(
                f"secret {self._where(path)} has neither field 'password' nor 'private_key' (fields "
                f"present: {', '.join(sorted(fields)) or 'none'}); add one, e.g. "
                f"`bao kv patch -mount={mount} {path} private_key=@rsa_key.p8`"
            )
        if "private_key_passphrase" in fields and "private_key" not in fields:
            raise SecretsError(
                f"secret {self._where(path)} has 'private_key_passphrase' but no 'private_key'; add the "
                f"key (`bao kv patch -mount={mount} {path} private_key=@rsa_key.p8`) or remove the passphrase"
            )
        return Credentials(user=user, password=fields.get("password"), extra=_rest(fields))

    # ---------------------------------------------------------------- helpers

    def _user(self, path: str, fields: dict[str, Secret]) -> str:
        for name in ("user", "username"):
            if name in fields:
                return fields[name].reveal()
        return self._require(path, fields, "user", also="'username'").reveal()

    def _require(self, path: str, fields: dict[str, Secret], name: str, also: str = "") -> Secret:
        if name not in fields:
            alternative = f" (or {also})" if also else ""
            raise SecretsError(
                f"secret {self._where(path)} has no field {name!r}{alternative} (fields present: "
                f"{', '.join(sorted(fields)) or 'none'}); add it with "
                f"`bao kv patch -mount={self._settings.vault_kv_mount} {path} {name}=...`"
            )
        return fields[name]

    def _where(self, path: str) -> str:
        return (
            f"{path!r} (KV v2 mount {self._settings.vault_kv_mount!r}, Vault at {self._settings.vault_addr})"
        )

    def _unavailable(self, doing: str, exc: Exception) -> SecretsUnavailable:
        return SecretsUnavailable(
            f"Vault at {self._settings.vault_addr} could not be reached or is not serving while {doing} "
            f"({type(exc).__name__}); check the address, network path and that Vault is unsealed, then retry"
        )

    def _scrub(self, text: str) -> str:
        """Remove any configured credential from a server message before it goes into an error."""
        for secret in (self._settings.vault_token, self._settings.vault_secret_id):
            if secret:
                text = text.replace(secret.reveal(), "***")
        return text


def _rest(fields: dict[str, Secret]) -> dict[str, Secret]:
    return {k: v for k, v in fields.items() if k not in ("user", "username", "password")}
