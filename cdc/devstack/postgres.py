"""PostgreSQL 15 with wal_level=logical and wal2json: one cluster per stack directory.

Over TCP the server accepts TLS connections only (``hostssl`` in pg_hba.conf), with a certificate
for 127.0.0.1/localhost signed by the stack's own CA (``cdc.devstack.tls``, written to
``DIR/postgres-ca.pem``), so clients connect with ``sslmode=verify-full``. The superuser connects
over the unix socket.

As root, initdb and the server run as the ``postgres`` user (they refuse to run as root), so the
data directory must be reachable by that user; when the stack directory is not (a 0700 parent,
for example), the cluster lives under /tmp in a directory named after a hash of the stack's
directory, recorded in state.json.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
from pathlib import Path
from typing import Any

from cdc.devstack import tls
from cdc.devstack.base import PG_DATABASE, PG_USER, Ctx
from cdc.devstack.procs import DevstackError, RunAs, alive, failure, run, spawn, stop_group, wait_until

NAME = "postgres"
PG_BINDIR = Path(os.environ.get("CDC_DEVSTACK_PG_BINDIR", "/usr/lib/postgresql/15/bin"))
PACKAGES = "postgresql-15 postgresql-15-wal2json"
_INSTALL = (
    f"install the Debian packages {PACKAGES} (as root: apt-get install -y {PACKAGES}), "
    "or run `make test`, which installs them through tools/ensure_system_deps.sh"
)
_SOCKET_NAME_LEN = len("/.s.PGSQL.65535.lock")
CA_FILE = "postgres-ca.pem"  # in the stack's directory, next to cdc.toml
SERVER_CERT = "server.crt"  # in the data directory
SERVER_KEY = "server.key"


def check_installed() -> None:
    """Fail before anything starts when the server binaries or wal2json are missing."""
    missing = [str(PG_BINDIR / b) for b in ("initdb", "postgres", "pg_ctl") if not (PG_BINDIR / b).is_file()]
    if missing:
        raise DevstackError(
            f"PostgreSQL 15 server binaries not found: {', '.join(missing)}\n  what to do: {_INSTALL}"
        )
    plugin = _libdir() / "wal2json.so"
    if not plugin.is_file():
        raise DevstackError(f"the wal2json output plugin is missing ({plugin})\n  what to do: {_INSTALL}")
    run_as()


def _libdir() -> Path:
    pg_config = PG_BINDIR / "pg_config"
    if pg_config.is_file():
        out = subprocess.run([str(pg_config), "--pkglibdir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip())
    return PG_BINDIR.parent / "lib"


def run_as() -> RunAs | None:
    """The ``postgres`` user when we are root (initdb and postgres refuse root), else None."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise DevstackError(
            f"running as root but there is no 'postgres' user\n  what to do: {_INSTALL}"
        ) from exc
    groups = tuple(os.getgrouplist(pw.pw_name, pw.pw_gid))
    return RunAs(pw.pw_name, pw.pw_uid, pw.pw_gid, groups, pw.pw_dir)


def answers(ctx: Ctx, st: dict[str, Any]) -> bool:
    import psycopg2

    try:
        conn = psycopg2.connect(admin_dsn(st, "postgres"), connect_timeout=2)
    except psycopg2.Error:
        return False
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            return cur.fetchone() == (1,)
    finally:
        conn.close()


def admin_dsn(st: dict[str, Any], dbname: str = PG_DATABASE) -> str:
    return f"host={st['socket_dir']} port={st['port']} dbname={dbname} user=postgres"


def launch(ctx: Ctx, st: dict[str, Any]) -> None:
    user = run_as()
    if "base" not in st:
        st["base"] = str(_choose_base(ctx.directory, user))
    base = Path(st["base"])
    data = base / "data"
    st["data_dir"] = str(data)
    st["socket_dir"] = str(_socket_dir(ctx.directory, base, user))
    if not (data / "PG_VERSION").is_file():
        _initdb(ctx, data, user)
    _ensure_tls(ctx, data, st, user)
    _configure(data, st, user)
    pid, started = spawn(
        [str(PG_BINDIR / "postgres"), "-D", str(data)], ctx.log(NAME), cwd="/", run_as=user, env=_env(user)
    )
    st.update(pid=pid, started=started)


def _env(user: RunAs | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    if user:
        env.update(HOME=user.home, USER=user.name, LOGNAME=user.name)
    return env


def _own(path: Path, user: RunAs | None, mode: int = 0o700) -> None:
    """Create ``path`` for the server's user; refuse one that someone else planted."""
    path.mkdir(parents=True, exist_ok=True)
    info = os.lstat(path)
    expected = user.uid if user else os.geteuid()
    if user and info.st_uid == 0 and path.is_dir() and not path.is_symlink():
        os.chown(path, user.uid, user.gid)
    elif info.st_uid != expected or path.is_symlink():
        raise DevstackError(
            f"{path} exists but is not a directory owned by uid {expected}\n"
            "  what to do: remove it, or use another --dir"
        )
    os.chmod(path, mode)


def _choose_base(directory: Path, user: RunAs | None) -> Path:
    preferred = directory / "pg"
    if user is None:
        _own(preferred, None)
        return preferred
    _own(preferred, user)
    if run(["test", "-w", str(preferred), "-a", "-x", str(preferred)], run_as=user) == 0:
        return preferred
    preferred.rmdir()
    fallback = Path("/tmp") / f"cdc-devstack-{_hash(directory)}"
    _own(fallback, user)
    return fallback


def _socket_dir(directory: Path, base: Path, user: RunAs | None) -> Path:
    inside = base / "run"
    short_enough = len(str(inside)) + _SOCKET_NAME_LEN < 100
    chosen = inside if short_enough else Path("/tmp") / f"cdc-pgsock-{_hash(directory)}"
    _own(chosen, user)
    return chosen


def _hash(directory: Path) -> str:
    return hashlib.sha256(str(directory).encode()).hexdigest()[:12]


def _initdb(ctx: Ctx, data: Path, user: RunAs | None) -> None:
    if data.exists():  # a half-made cluster from an interrupted initdb: ours, start over
        shutil.rmtree(data)
    argv = [
        str(PG_BINDIR / "initdb"),
        "-D",
        str(data),
        "-U",
        "postgres",
        "-A",
        "trust",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
        "--no-instructions",
    ]
    code = run(argv, log_path=ctx.log(NAME), env=_env(user), run_as=user)
    if code != 0:
        raise failure(
            f"initdb into {data} failed (exit {code})",
            f"check that {data.parent} is writable, or remove it and run up again",
            ctx.log(NAME),
            ctx.secret_values(),
        )


def _configure(data: Path, st: dict[str, Any], user: RunAs | None) -> None:
    settings = {
        "listen_addresses": "'127.0.0.1'",
        "port": str(st["port"]),
        "unix_socket_directories": f"'{st['socket_dir']}'",
        "wal_level": "logical",
        "max_replication_slots": "32",
        "max_wal_senders": "32",
        "fsync": "off",
        "full_page_writes": "off",
        "password_encryption": "'scram-sha-256'",
        "shared_buffers": "64MB",
        "log_min_messages": "warning",
        "log_connections": "off",
        "ssl": "on",
        "ssl_cert_file": f"'{SERVER_CERT}'",
        "ssl_key_file": f"'{SERVER_KEY}'",
        "ssl_min_protocol_version": "'TLSv1.2'",
    }
    _write(data / "devstack.conf", "".join(f"{k} = {v}\n" for k, v in settings.items()), user)
    conf = data / "postgresql.conf"
    text = conf.read_text()
    if "include 'devstack.conf'" not in text:
        _write(conf, text + "\n# written by cdc devstack\ninclude 'devstack.conf'\n", user)
    # TCP only with TLS (no "host" line): a client with sslmode=disable is refused
    hba = (
        "# written by cdc devstack\n"
        "local    all          postgres                  trust\n"
        "local    replication  postgres                  trust\n"
        "hostssl  all          all       127.0.0.1/32    scram-sha-256\n"
        "hostssl  replication  all       127.0.0.1/32    scram-sha-256\n"
    )
    _write(data / "pg_hba.conf", hba, user)


def _write(path: Path, text: str | bytes, user: RunAs | None) -> None:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    os.chmod(path, 0o600)
    if user:
        os.chown(path, user.uid, user.gid)


def has_tls(ctx: Ctx, st: dict[str, Any]) -> bool:
    """Whether the cluster was started with the stack's TLS certificate (see ``_ensure_tls``)."""
    return bool(st.get("tls_ca_sha256")) and ca_file(ctx.directory).is_file()


def ca_file(directory: Path) -> Path:
    """The CA certificate clients trust for the stack in ``directory`` (sslrootcert)."""
    return directory / CA_FILE


def _ensure_tls(ctx: Ctx, data: Path, st: dict[str, Any], user: RunAs | None) -> None:
    """The server certificate and key in the data directory and the CA that signed them next to
    cdc.toml; made afresh when one is missing, they no longer belong together, or the server
    certificate ends within 30 days."""
    ca, cert, key = ca_file(ctx.directory), data / SERVER_CERT, data / SERVER_KEY
    current = all(p.is_file() for p in (ca, cert, key)) and st.get("tls_ca_sha256") == _sha256(ca)
    if current and not tls.expires_within(cert.read_bytes(), 30):
        st["ca_file"] = str(ca)
        return
    made = tls.server_tls()
    _write(cert, made.cert_pem, user)
    _write(key, made.key_pem, user)
    tmp = ca.with_suffix(".tmp")
    tmp.write_bytes(made.ca_pem)
    os.chmod(tmp, 0o644)
    os.replace(tmp, ca)
    st.update(ca_file=str(ca), tls_ca_sha256=_sha256(ca))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def provision(ctx: Ctx, st: dict[str, Any]) -> None:
    """Role ``cdc`` (LOGIN REPLICATION, reads every table) and database ``app`` owned by it."""
    import psycopg2

    password = ctx.secrets["pg_password"]
    conn = psycopg2.connect(admin_dsn(st, "postgres"), connect_timeout=5)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (PG_USER,))
            verb = "ALTER" if cur.fetchone() else "CREATE"
            cur.execute(f"{verb} ROLE {PG_USER} LOGIN REPLICATION PASSWORD %s", (password,))
            cur.execute(f"GRANT pg_read_all_data TO {PG_USER}")
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,))
            if not cur.fetchone():
                cur.execute(f"CREATE DATABASE {PG_DATABASE} OWNER {PG_USER}")
    finally:
        conn.close()


def stop(ctx: Ctx, st: dict[str, Any]) -> bool:
    """pg_ctl stop -m fast (as the server's user); a stray postmaster is then signalled."""
    pid, started = st.get("pid"), st.get("started")
    if not alive(pid, started):
        return True
    user = run_as()
    argv = [str(PG_BINDIR / "pg_ctl"), "stop", "-D", st["data_dir"], "-m", "fast", "-w", "-t", "30"]
    run(argv, log_path=ctx.log(NAME), env=_env(user), run_as=user)
    if wait_until(lambda: not alive(pid, started), 10):
        return True
    return stop_group(pid, started)


def purge(st: dict[str, Any]) -> None:
    """Remove the cluster's files (data and socket directories)."""
    for key in ("base", "socket_dir"):
        if st.get(key):
            shutil.rmtree(st[key], ignore_errors=True)
