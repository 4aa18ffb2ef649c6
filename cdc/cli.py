"""The ``cdc`` command line. ``--json`` prints one JSON object on stdout; human output goes to stderr."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from cdc import replay, verify
from cdc import settings as settings_mod
from cdc.errors import CdcError, ConfigError
from cdc.logs import redact, redact_value, setup_logging

FOLLOW_IDLE_WAIT_S = 1.0  # sync --follow: pause after a window that caught up


def _emit(args: argparse.Namespace, data: dict[str, Any], human: str) -> None:
    """The command's output, every registered secret masked (see cdc.logs)."""
    if getattr(args, "json", False):
        sys.stdout.write(redact(json.dumps(redact_value(data), default=str)) + "\n")
    else:
        sys.stderr.write(redact(human.rstrip()) + "\n")


def _load(args: argparse.Namespace) -> settings_mod.Settings:
    settings = settings_mod.load(args.config)
    setup_logging(settings.log_level, "json" if args.json else "text")
    return settings


def cmd_devstack(args: argparse.Namespace) -> int:
    from cdc import devstack

    directory = Path(args.dir).resolve()
    if args.action == "up":
        env = devstack.up(directory)
        _emit(args, env, f"devstack running in {directory}\nconfig: {env['config']}")
    elif args.action == "env":
        env = devstack.env(directory)
        _emit(args, env, "\n".join(f"{k} = {v}" for k, v in env.items()))
    else:
        devstack.down(directory)
        _emit(args, {"dir": str(directory), "stopped": True}, f"devstack in {directory} stopped")
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    from cdc.app import build_alerts, build_engine, report_window

    if args.idle_wait is not None and not args.follow:
        raise ConfigError(["--idle-wait only applies with --follow: add --follow, or leave --idle-wait out"])
    if args.idle_wait is not None and args.idle_wait < 0:
        raise ConfigError([f"--idle-wait must be 0 seconds or more, got {args.idle_wait}"])
    settings = _load(args)
    engine = build_engine(settings)
    alerts = build_alerts(settings)
    if args.follow:
        return _follow(args, engine, alerts, report_window)
    try:
        while True:
            result = engine.run_window()
            report_window(engine, alerts, result)
            _emit(args, result.as_dict(), _describe(result.as_dict()))
            if not args.until_caught_up or result.status in _UNFINISHED or result.caught_up:
                break
    finally:
        engine.close()
    return 1 if result.failure else 0


# results after which another window would not get further: it would fail again, find the lease
# still held, or start the same unfinished snapshot over
_UNFINISHED = ("failed", "lease_held", "snapshot_incomplete")


def _follow(args: argparse.Namespace, engine: Any, alerts: Any, report_window: Any) -> int:
    """``sync --follow``: windows back to back until SIGINT or SIGTERM (see cdc.follow)."""
    from cdc.follow import follow

    stop = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        if not stop.is_set():
            sys.stderr.write(f"{signal.Signals(signum).name}: stopping after the current window\n")
        stop.set()

    def on_result(result: Any) -> None:
        report_window(engine, alerts, result)
        _emit(args, result.as_dict(), _describe(result.as_dict()))

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        idle = FOLLOW_IDLE_WAIT_S if args.idle_wait is None else args.idle_wait
        last = follow(engine.run_window, on_result, stop, idle)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        engine.close()
    return 1 if last is not None and last.failure else 0


def _describe(r: dict[str, Any]) -> str:
    head = f"window {r['window_id']}: {r['status']}"
    if r["status"] == "failed":
        return f"{head}\n  {r['error']['class']}: {r['error']['message']}"
    if r.get("snapshot"):
        snap = r["snapshot"]
        lines = [f"{head} ({r['mode']}: {r['reason']})  snapshot {snap['snapshot_id']} at {snap['lsn']}"]
        for t in snap["finished"]:
            lines.append(f"  {t['table']}: {t['rows']:,} rows in {t['copy_s'] + t['load_s']:.1f}s")
        lines += [f"  not done: {t}" for t in snap["unfinished"]]
        lines += [f"  note: {n}" for n in r["notes"]]
        return "\n".join(lines)
    lines = [
        f"{head}  {r['start_lsn']} -> {r['end_lsn']}  {r['transactions']} txns, "
        f"{r['changes']} changes in {r['duration_s']:.2f}s ({r['stop_reason']})"
    ]
    for table, ops in sorted(r["tables"].items()):
        lines.append(f"  {table}: " + ", ".join(f"{k}={v}" for k, v in ops.items() if v))
    lines += [f"  note: {n}" for n in r["notes"]]
    return "\n".join(lines)


def cmd_snapshot(args: argparse.Namespace) -> int:
    from cdc.app import build_engine
    from cdc.snapshot_mode import ProgressPrinter

    settings = _load(args)
    tables = tuple(t.strip() for t in (args.tables or "").split(",") if t.strip())
    engine = build_engine(settings)
    progress = ProgressPrinter(sys.stderr, tty=sys.stderr.isatty() and not args.json)
    try:
        result = engine.run_window(mode="snapshot", tables=tables, progress=progress).as_dict()
    finally:
        engine.close()
    _emit(args, result, _describe(result))
    return 0 if result["status"] == "snapshot" else 1


def cmd_status(args: argparse.Namespace) -> int:
    from cdc.status import pipeline_status, render

    settings = _load(args)
    status = pipeline_status(settings)
    _emit(args, status, render(status))
    return 0 if status["status"] == "ok" else 1


def cmd_check(args: argparse.Namespace) -> int:
    from cdc.check import run_checks

    settings = _load(args)
    report = run_checks(settings)
    _emit(args, report.as_dict(), report.text())
    return 0 if report.ok else 1


def cmd_stage(args: argparse.Namespace) -> int:
    from cdc.app import aws_client
    from cdc.checkpoint import CheckpointStore
    from cdc.model import Lsn
    from cdc.prune import describe, prune
    from cdc.stage import open_stage

    try:
        before = Lsn.parse(args.before)
    except ValueError as exc:
        raise ConfigError([f"--before: {exc}"]) from exc
    settings = _load(args)
    s3 = aws_client(settings, "s3") if settings.stage_url.startswith("s3://") else None
    store = CheckpointStore(aws_client(settings, "dynamodb"), settings.checkpoint_table, settings.pipeline)
    result = prune(
        open_stage(settings.stage_url, s3),
        store,
        settings.pipeline,
        before,
        dry_run=args.dry_run,
        lease_ttl_s=settings.lease_ttl_s,
    )
    _emit(args, result, describe(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cdc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("devstack", help="embedded local stack: PostgreSQL, moto, fakesnow, OpenBao")
    dev.add_argument("action", choices=("up", "env", "down"))
    dev.add_argument("--dir", required=True, help="directory holding the stack's data, logs and cdc.toml")
    dev.add_argument("--json", action="store_true")
    dev.set_defaults(func=cmd_devstack)

    sync = sub.add_parser("sync", help="run one window (or windows until caught up, or --follow)")
    sync.add_argument("--config", required=True)
    sync.add_argument("--json", action="store_true", help="one JSON object per window, one per line")
    repeat = sync.add_mutually_exclusive_group()
    repeat.add_argument(
        "--until-caught-up",
        action="store_true",
        help="repeat windows until the slot has nothing more to give",
    )
    repeat.add_argument(
        "--follow",
        action="store_true",
        help="run windows back to back until SIGINT/SIGTERM (the current window always finishes)",
    )
    sync.add_argument(
        "--idle-wait",
        type=float,
        metavar="SECONDS",
        help=f"with --follow: pause after a window that caught up (default {FOLLOW_IDLE_WAIT_S:g})",
    )
    sync.set_defaults(func=cmd_sync)

    snap = sub.add_parser(
        "snapshot", help="re-snapshot every table, or only --tables, without stopping replication"
    )
    snap.add_argument("--config", required=True)
    snap.add_argument("--tables", help="comma-separated schema.table names (default: every table)")
    snap.add_argument("--json", action="store_true")
    snap.set_defaults(func=cmd_snapshot)

    status = sub.add_parser(
        "status",
        help="checkpoint, slot state and lag, lease, last window, per-table rows and positions; "
        "exit 1 when a part could not be read",
    )
    status.add_argument("--config", required=True)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    check = sub.add_parser(
        "check",
        help="preflight: prove every part is reachable and allowed, moving no data; exit 1 on any failure",
    )
    check.add_argument("--config", required=True)
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=cmd_check)

    stage = sub.add_parser("stage", help="manage the staged windows and snapshots")
    stage_actions = stage.add_subparsers(dest="action", required=True)
    prune = stage_actions.add_parser(
        "prune",
        help="remove windows and snapshots before --before that neither the checkpoint nor a rebuild "
        "from the latest snapshots needs (holds the lease)",
    )
    prune.add_argument("--config", required=True)
    prune.add_argument(
        "--before", required=True, help="LSN (X/Y or 16 hex digits): remove what ends before it"
    )
    prune.add_argument(
        "--dry-run", action="store_true", help="list what would go and what is kept; delete nothing"
    )
    prune.add_argument("--json", action="store_true")
    prune.set_defaults(func=cmd_stage)

    verify.register(sub)
    replay.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        _emit(args, {"error": {"class": "ConfigError", "problems": exc.problems}}, str(exc))
        return 2
    except CdcError as exc:
        _emit(
            args,
            {"error": {"class": type(exc).__name__, "message": str(exc)}},
            f"{type(exc).__name__}: {exc}",
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
