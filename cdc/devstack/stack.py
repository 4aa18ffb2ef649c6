"""The stack as a whole: start the parts that are not running (side by side), report how to
reach them, and stop exactly what was started."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from cdc.devstack import base as b
from cdc.devstack import postgres
from cdc.devstack.base import Ctx, tool
from cdc.devstack.config import env_dict, write_config
from cdc.devstack.procs import DevstackError, alive, failure, free_ports, port_is_free, wait_until
from cdc.devstack.services import Fakesnow, Moto, OpenBao
from cdc.devstack.services import stop as stop_service
from cdc.devstack.state import load_state, locked, new_state, save, state_path


class Part(Protocol):
    name: str

    def launch(self, ctx: Ctx, st: dict[str, Any]) -> None: ...
    def answers(self, ctx: Ctx, st: dict[str, Any]) -> bool: ...
    def provision(self, ctx: Ctx, st: dict[str, Any]) -> None: ...
    def stop(self, ctx: Ctx, st: dict[str, Any]) -> bool: ...


class Postgres:
    name = postgres.NAME
    launch = staticmethod(postgres.launch)
    answers = staticmethod(postgres.answers)
    provision = staticmethod(postgres.provision)
    stop = staticmethod(postgres.stop)


class _Service:
    """moto, fakesnow and OpenBao share one way of stopping."""

    def __init__(self, impl: Moto | Fakesnow | OpenBao) -> None:
        self.name = impl.name
        self.launch = impl.launch
        self.answers = impl.answers
        self.provision = impl.provision

    def stop(self, ctx: Ctx, st: dict[str, Any]) -> bool:
        return stop_service(ctx, st)


# Launch order: the quick spawns first, PostgreSQL (initdb) last, so all boot side by side.
PARTS: tuple[Part, ...] = (_Service(Moto()), _Service(Fakesnow()), _Service(OpenBao()), Postgres())
_PAIRED = {"openbao"}  # needs port+1 free as well


def _running(ctx: Ctx, part: Part) -> bool:
    st = ctx.part(part.name)
    return alive(st.get("pid"), st.get("started")) and bool(st.get("port")) and part.answers(ctx, st)


# --- up --------------------------------------------------------------------------------------


def up(directory: Path) -> dict[str, Any]:
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    with locked(directory):
        ctx = Ctx(directory, load_state(directory) or new_state(directory))
        ctx.logs.mkdir(exist_ok=True)
        postgres.check_installed()
        for name in ("moto_server", "fakesnow", "bao"):
            tool(name)
        todo = [
            p
            for p in PARTS
            if not (ctx.part(p.name).get("provisioned") and _running(ctx, p)) or _outdated(ctx, p)
        ]
        if todo:
            _start(ctx, todo)
        write_config(ctx)
        save(ctx)
        return env_dict(ctx)


def _outdated(ctx: Ctx, part: Part) -> bool:
    """A running part started by an older devstack that lacks what cdc.toml now relies on (the
    PostgreSQL server without TLS): it is restarted, its data kept."""
    return part.name == postgres.NAME and not postgres.has_tls(ctx, ctx.part(part.name))


def _start(ctx: Ctx, todo: list[Part]) -> None:
    for part in todo:  # alive but not answering, or never provisioned: start it afresh
        st = ctx.part(part.name)
        if alive(st.get("pid"), st.get("started")) and not part.stop(ctx, st):
            raise DevstackError(
                f"{part.name} (pid {st['pid']}) does not answer and would not stop\n"
                f"  what to do: kill it by hand, then run up again; see {ctx.log(part.name)}"
            )
        _forget(st)
    _assign_ports(ctx, todo)
    launched: list[Part] = []
    try:
        for part in todo:
            part.launch(ctx, ctx.part(part.name))
            launched.append(part)
            save(ctx)
        # Import the clients here, once, while the servers boot (not in racing threads).
        import boto3  # noqa: F401
        import hvac  # noqa: F401
        import psycopg2  # noqa: F401
        import snowflake.connector  # noqa: F401

        with ThreadPoolExecutor(len(todo)) as pool:
            futures = [pool.submit(_ready, ctx, part) for part in todo]
        errors = [exc for f in futures if (exc := f.exception()) is not None]
        if errors:
            if len(errors) == 1:
                raise errors[0]
            raise DevstackError("\n\n".join(str(e) for e in errors))
    except BaseException:
        for part in launched:
            st = ctx.part(part.name)
            if part.stop(ctx, st):
                _forget(st)
        save(ctx)
        raise


def _forget(st: dict[str, Any]) -> None:
    for key in ("pid", "started", "provisioned"):
        st.pop(key, None)


def _assign_ports(ctx: Ctx, todo: list[Part], fresh: bool = False) -> None:
    """Keep a part's old port when it is still free (cdc.toml stays valid), else pick a new one."""
    others = [ctx.part(p.name).get("port") for p in PARTS if p not in todo]
    in_use: set[int] = {port + step for port in others if port for step in (0, 1)}
    need: list[Part] = []
    for part in todo:
        st = ctx.part(part.name)
        port: int | None = st.get("port")
        ok = (
            not fresh
            and port is not None
            and port not in in_use
            and port_is_free(port)
            and (part.name not in _PAIRED or port_is_free(port + 1))
        )
        if ok and port is not None:
            in_use.update({port, port + 1})
        else:
            need.append(part)
    need.sort(key=lambda p: p.name not in _PAIRED)
    pairs = sum(p.name in _PAIRED for p in need)
    for part, port in zip(need, free_ports(len(need), pairs, avoid=in_use), strict=True):
        ctx.part(part.name)["port"] = port


def _ready(ctx: Ctx, part: Part) -> None:
    """Wait until the part answers, then provision it. A part that dies at once (its port taken
    between choosing and binding) is started once more on a new port."""
    st = ctx.part(part.name)
    for attempt in (1, 2):
        pid, started = st["pid"], st["started"]

        def settled(pid: int = pid, started: int = started) -> bool:
            return part.answers(ctx, st) or not alive(pid, started)

        if wait_until(settled, b.READY_TIMEOUT_S, interval=0.1) and alive(pid, started):
            break
        if alive(pid, started):
            raise failure(
                f"{part.name} did not answer on 127.0.0.1:{st['port']} within {b.READY_TIMEOUT_S:.0f} s",
                f"read the log; then `cdc devstack down --dir {ctx.directory}` and up again",
                ctx.log(part.name),
                ctx.secret_values(),
            )
        if attempt == 2:
            raise failure(
                f"{part.name} exited during start-up (port {st['port']})",
                "read the log below and fix the cause, then run `cdc devstack up` again",
                ctx.log(part.name),
                ctx.secret_values(),
            )
        _forget(st)
        _assign_ports(ctx, [part], fresh=True)
        part.launch(ctx, st)
        save(ctx)
    try:
        part.provision(ctx, st)
    except Exception as exc:
        raise failure(
            f"setting up {part.name} on 127.0.0.1:{st['port']} failed: {exc}",
            "read the log; then run `cdc devstack up` again",
            ctx.log(part.name),
            ctx.secret_values(),
        ) from exc
    st["provisioned"] = True


# --- env ---------------------------------------------------------------------------------------


def env(directory: Path) -> dict[str, Any]:
    directory = Path(directory).resolve()
    state = load_state(directory)
    if state is None:
        raise DevstackError(
            f"no devstack in {directory} (no state.json)\n"
            f"  what to do: start one with `cdc devstack up --dir {directory}`"
        )
    ctx = Ctx(directory, state)
    stopped = [p for p in PARTS if not _running(ctx, p)]
    if stopped:
        names = ", ".join(p.name for p in stopped)
        raise failure(
            f"the devstack in {directory} is not running: {names} not answering",
            f"run `cdc devstack up --dir {directory}` (it restarts only what stopped)",
            ctx.log(stopped[0].name),
            ctx.secret_values(),
        )
    return env_dict(ctx)


# --- down ------------------------------------------------------------------------------------


def down(directory: Path, *, purge: bool = False) -> None:
    directory = Path(directory).resolve()
    if not state_path(directory).is_file():
        return
    with locked(directory):
        state = load_state(directory)
        if state is None:
            return
        ctx = Ctx(directory, state)
        stuck: list[str] = []
        for part in reversed(PARTS):
            st = ctx.part(part.name)
            if part.stop(ctx, st):
                _forget(st)
            else:
                stuck.append(f"{part.name} (pid {st.get('pid')})")
        save(ctx)
        if stuck:
            raise DevstackError(
                f"could not stop {', '.join(stuck)} of the devstack in {directory}\n"
                "  what to do: kill them by hand (kill -9 PID), then run down again"
            )
        if purge:
            postgres.purge(ctx.part("postgres"))
            shutil.rmtree(ctx.stage_dir, ignore_errors=True)
            for name in ("cdc.toml", "state.json", postgres.CA_FILE):
                (directory / name).unlink(missing_ok=True)
