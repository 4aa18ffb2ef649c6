"""Process and port helpers for the embedded stack: free ports, detached children that are
recognised again later (pid plus kernel start time, so a reused pid is never mistaken for ours),
stopping a process group, waiting, and the tail of a log file with secrets blanked out.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cdc.errors import PermanentError

# Popen objects of the children this process started: kept so they are reaped (no zombies, no
# "still running" warnings) when this same process stops them again.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class DevstackError(PermanentError):
    """A part of the embedded local stack could not be started, reached or stopped."""


@dataclass(frozen=True)
class RunAs:
    """The unprivileged user that runs PostgreSQL when we are root."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def free_ports(count: int, pairs: int = 0, avoid: Iterable[int] = ()) -> list[int]:
    """``count`` distinct free ports on 127.0.0.1; the first ``pairs`` of them also have port+1
    free (OpenBao binds its cluster listener there). All are held until every one is chosen."""
    held: list[socket.socket] = []
    ports: list[int] = []
    taken = set(avoid)
    try:
        while len(ports) < count:
            sock = _bind(0)
            held.append(sock)
            port = sock.getsockname()[1]
            if port in taken or port + 1 in taken:
                continue
            if len(ports) < pairs:
                neighbour = _try_bind(port + 1)
                if neighbour is None:
                    continue
                held.append(neighbour)
                taken.add(port + 1)
            taken.add(port)
            ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


def port_is_free(port: int) -> bool:
    """Whether a server could listen on ``port`` again. Like the servers, the probe sets
    SO_REUSEADDR, so connections of a stopped server still in TIME_WAIT do not count."""
    sock = _try_bind(port, reuse=True)
    if sock is None:
        return False
    sock.close()
    return True


def _bind(port: int, reuse: bool = False) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if reuse:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return sock


def _try_bind(port: int, reuse: bool = False) -> socket.socket | None:
    if not 0 < port < 65536:
        return None
    try:
        return _bind(port, reuse)
    except OSError:
        return None


def spawn(
    argv: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    run_as: RunAs | None = None,
) -> tuple[int, int]:
    """Start ``argv`` detached (own session, stdin closed, output appended to ``log_path``).
    Returns (pid, start time) for ``alive``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        os.chmod(log_path, 0o600)
        log.write(f"\n=== devstack: starting {Path(argv[0]).name} at {time.strftime('%F %T')}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                user=run_as.uid if run_as else None,
                group=run_as.gid if run_as else None,
                extra_groups=list(run_as.groups) if run_as else None,
            )
        except OSError as exc:
            raise DevstackError(f"could not start {argv[0]}: {exc}") from exc
    _CHILDREN[proc.pid] = proc
    return proc.pid, start_time(proc.pid) or 0


def run(
    argv: Sequence[str],
    *,
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    run_as: RunAs | None = None,
) -> int:
    """Run ``argv`` to completion (output appended to ``log_path`` or discarded); its exit code."""
    with open(log_path, "ab") if log_path else open(os.devnull, "wb") as out:
        return subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd="/",
            env=dict(env) if env is not None else None,
            check=False,
            user=run_as.uid if run_as else None,
            group=run_as.gid if run_as else None,
            extra_groups=list(run_as.groups) if run_as else None,
        ).returncode


def start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), None when it is gone or a
    zombie. Together with the pid it names one process for good."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def alive(pid: int | None, started: int | None) -> bool:
    """True when ``pid`` still runs and is the very process we started."""
    if not pid:
        return False
    _reap(pid)
    now = start_time(pid)
    if now is None:
        if not Path("/proc").is_dir():  # not Linux: fall back to a signal probe
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
        return False
    return not started or now == started


def _reap(pid: int) -> None:
    proc = _CHILDREN.get(pid)
    if proc is not None and proc.poll() is not None:
        del _CHILDREN[pid]


def stop_group(pid: int | None, started: int | None, timeout: float = 10.0) -> bool:
    """SIGTERM the process group led by ``pid`` (only if it is still ours), SIGKILL after
    ``timeout``. Returns False when it would not die."""
    if not alive(pid, started):
        return True
    assert pid is not None
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        if wait_until(lambda: not alive(pid, started), wait):
            return True
    return not alive(pid, started)


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
        interval = min(interval * 1.5, 0.5)


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The HTTP status ``url`` answers with (any status counts as an answer), None if none."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - local URL
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


def log_tail(path: Path, secrets: Iterable[str] = (), lines: int = 25) -> str:
    """The last ``lines`` lines of a log, with every secret replaced by ***."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 16384))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return f"(no log at {path})"
    tail = "\n".join(text.splitlines()[-lines:])
    for secret in secrets:
        if secret:
            tail = tail.replace(secret, "***")
    return tail


def failure(what: str, todo: str, log_path: Path, secrets: Iterable[str]) -> DevstackError:
    """A DevstackError that says what failed, what to do, and shows the service's log tail."""
    tail = log_tail(log_path, secrets)
    indented = "\n".join("    " + line for line in tail.splitlines())
    return DevstackError(f"{what}\n  what to do: {todo}\n  last lines of {log_path}:\n{indented}")
