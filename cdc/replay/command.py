"""``cdc replay`` and ``cdc checkpoint``: the command lines (``register`` adds both to the ``cdc`` parser).

Kept light: database clients are imported only when a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cdc import settings as settings_mod
from cdc.errors import CdcError, ConfigError, LeaseHeld
from cdc.logs import setup_logging
from cdc.model import Lsn

REPLAY_DESCRIPTION = """\
Re-apply staged windows (<pipeline>/windows/<start>-<end>/) whose range lies in [--from-lsn,
--to-lsn] (or from the stored checkpoint with --from-checkpoint), in LSN order, through the
Snowflake MERGE. Before applying anything every window's manifest checksum and every part's sha256
are checked and the windows must chain (each starts where the previous ended); any problem stops
the replay and names the windows and files. Idempotent: changes the target already has are
ignored. Holds the pipeline lease; does not move the checkpoint; never reads the source.

--rebuild --tables schema.table: load the table from the latest staged snapshot that holds it,
then re-apply every later staged window's changes for it (a damaged or dropped target table).

Windows that read nothing stage nothing, so a gap between two staged windows may be harmless:
check the stage, then pass --allow-gaps. Exit status: 0 done, 1 refused or failed, 2 bad
configuration."""


def _emit(args: argparse.Namespace, data: dict[str, Any], human: str) -> None:
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(data, default=str) + "\n")
    else:
        sys.stderr.write(human.rstrip() + "\n")


def _progress(args: argparse.Namespace) -> Any:
    """Replay progress on stderr: a bar on a terminal, one plain line per window otherwise."""
    from cdc.progress import ProgressLine, WorkProgress

    return WorkProgress(ProgressLine(sys.stderr, tty=sys.stderr.isatty() and not args.json), "window")


def _lsn(text: str) -> Lsn:
    try:
        return Lsn.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _tables(text: str | None) -> list[str]:
    if not text:
        return []
    from cdc.verify import parse_tables

    return [f"{s}.{t}" for s, t in parse_tables(text)]


def _settings(args: argparse.Namespace) -> settings_mod.Settings:
    settings = settings_mod.load(args.config)
    setup_logging(settings.log_level, "json" if args.json else "text")
    return settings


def _clients(settings: settings_mod.Settings) -> tuple[Any, Any, Any]:
    """(stage, checkpoint store, sink factory): the source database is never opened."""
    from cdc.app import aws_client, build_sink
    from cdc.checkpoint import CheckpointStore
    from cdc.logs import register_secret
    from cdc.secrets import VaultSecrets
    from cdc.stage import open_stage

    for secret in (settings.vault_token, settings.vault_secret_id):
        if secret:
            register_secret(secret.reveal())
    s3 = aws_client(settings, "s3") if settings.stage_url.startswith("s3://") else None
    stage = open_stage(settings.stage_url, s3)
    store = CheckpointStore(aws_client(settings, "dynamodb"), settings.checkpoint_table, settings.pipeline)
    return stage, store, lambda: build_sink(settings, VaultSecrets.from_settings(settings))


def run_replay(
    args: argparse.Namespace, settings: settings_mod.Settings, clients: tuple[Any, Any, Any]
) -> int:
    from cdc.replay.run import ReplayRefused, rebuild, replay

    stage, store, sink_factory = clients
    tables = _tables(args.tables)
    sinks: list[Any] = []

    def factory() -> Any:
        sinks.append(sink_factory())
        return sinks[-1]

    try:
        if args.rebuild:
            if not tables:
                raise ConfigError(["--rebuild needs --tables schema.table[,...]"])
            result = rebuild(
                settings,
                stage,
                store,
                factory,
                tables=tables,
                dry_run=args.dry_run,
                allow_gaps=args.allow_gaps,
                progress=_progress(args),
            )
        else:
            if args.from_checkpoint:
                checkpoint = store.load()
                if checkpoint is None:
                    raise ConfigError(
                        [f"--from-checkpoint: pipeline {settings.pipeline!r} has no checkpoint"]
                    )
                start = checkpoint.lsn
            else:
                start = args.from_lsn
            result = replay(
                settings,
                stage,
                store,
                factory,
                start=start,
                end=args.to_lsn,
                tables=set(tables) or None,
                dry_run=args.dry_run,
                allow_gaps=args.allow_gaps,
                progress=_progress(args),
            )
    except ReplayRefused as exc:
        _emit(args, {"pipeline": settings.pipeline, "status": "refused", "problems": exc.problems}, str(exc))
        return 1
    except LeaseHeld as exc:
        _emit(
            args,
            {"pipeline": settings.pipeline, "status": "lease_held", "owner": exc.owner, "message": str(exc)},
            f"replay refused: {exc}; wait for it to finish (or for the lease to expire) and run replay again",
        )
        return 1
    finally:
        for sink in sinks:
            sink.close()
    _emit(args, result, _describe(result))
    return 0


def _describe(r: dict[str, Any]) -> str:
    if r["mode"] == "rebuild":
        lines = [f"rebuild: {r['status']}"]
        for t in r["tables"]:
            lines.append(
                f"  {t['table']}: snapshot {t['snapshot_id']} ({t['snapshot_rows']} rows) "
                f"+ {len(t['windows'])} windows"
            )
        return "\n".join(lines)
    rows = sum(v["rows"] for w in r["windows"] for v in w["tables"].values())
    return f"replay: {r['status']}: {len(r['windows'])} windows, {rows} staged rows from {r['from_lsn']}"


def cmd_replay(args: argparse.Namespace) -> int:
    settings = _settings(args)
    return run_replay(args, settings, _clients(settings))


def cmd_checkpoint(args: argparse.Namespace) -> int:
    from cdc.app import aws_client, build_source
    from cdc.checkpoint import CheckpointStore
    from cdc.replay.checkpoint_cmd import CheckpointRefused, set_checkpoint, show
    from cdc.secrets import VaultSecrets

    settings = _settings(args)
    store = CheckpointStore(aws_client(settings, "dynamodb"), settings.checkpoint_table, settings.pipeline)
    source = build_source(settings, VaultSecrets.from_settings(settings))
    try:
        slot = source.slot_info()
        wal = source.current_wal_lsn()
    finally:
        source.close()
    if args.action == "show":
        data = show(store, slot, wal, settings.source_slot)
        cp = data["checkpoint"]
        human = [f"pipeline {data['pipeline']}: checkpoint {cp['lsn'] if cp else 'none'}"]
        if cp:
            human.append(
                f"  version {cp['version']}, window {cp['window_id']}, updated {cp['updated_at']:.0f}"
            )
        s = data["slot"]
        human.append(
            f"  slot {s['name']}: confirmed {s['confirmed_flush_lsn']}, restart {s['restart_lsn']}, "
            f"{s['wal_status']}"
        )
        human.append(f"  WAL at {data['wal_lsn']}; lease {data['lease']}")
        _emit(args, data, "\n".join(human))
        return 0

    def confirm(question: str) -> bool:
        if args.yes:
            return True
        sys.stderr.write(question + " [y/N] ")
        sys.stderr.flush()
        answer = sys.stdin.readline().strip().lower()
        return answer in ("y", "yes")

    try:
        result = set_checkpoint(
            store, args.lsn, slot, wal, settings.source_slot, settings.lease_ttl_s, confirm
        )
    except (CheckpointRefused, LeaseHeld) as exc:
        _emit(
            args, {"pipeline": settings.pipeline, "status": "refused", "message": str(exc)}, f"refused: {exc}"
        )
        return 1
    _emit(
        args,
        result,
        f"checkpoint {result['status']}: {result.get('from_lsn', result['lsn'])} -> {result['lsn']}",
    )
    return 0


def register(subparsers: Any) -> None:
    """Add ``replay`` and ``checkpoint`` to the ``cdc`` parser."""
    rp = subparsers.add_parser(
        "replay",
        help="re-apply staged windows, or rebuild a target table from a staged snapshot",
        description=REPLAY_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rp.add_argument("--config", required=True)
    start = rp.add_mutually_exclusive_group()
    start.add_argument("--from-lsn", type=_lsn, help="first LSN (X/Y or 16 hex digits)")
    start.add_argument("--from-checkpoint", action="store_true", help="start at the stored checkpoint LSN")
    rp.add_argument("--to-lsn", type=_lsn, help="last LSN (default: every later window)")
    rp.add_argument("--tables", help="comma-separated schema.table names (default: every table)")
    rp.add_argument(
        "--rebuild", action="store_true", help="load --tables from the latest snapshot, then replay"
    )
    rp.add_argument("--dry-run", action="store_true", help="list windows, tables and rows; apply nothing")
    rp.add_argument("--allow-gaps", action="store_true", help="accept gaps between staged windows")
    rp.add_argument("--json", action="store_true")
    rp.set_defaults(func=_checked_replay)

    cp = subparsers.add_parser("checkpoint", help="show or move the pipeline's checkpoint")
    actions = cp.add_subparsers(dest="action", required=True)
    show_p = actions.add_parser("show", help="checkpoint, slot position and lease")
    show_p.add_argument("--config", required=True)
    show_p.add_argument("--json", action="store_true")
    show_p.set_defaults(func=cmd_checkpoint)
    set_p = actions.add_parser(
        "set", help="move the checkpoint (never below the slot's confirmed_flush_lsn); takes the lease"
    )
    set_p.add_argument("--config", required=True)
    set_p.add_argument("--lsn", required=True, type=_lsn)
    set_p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    set_p.add_argument("--json", action="store_true")
    set_p.set_defaults(func=cmd_checkpoint)


def _checked_replay(args: argparse.Namespace) -> int:
    if not args.rebuild and args.from_lsn is None and not args.from_checkpoint:
        raise ConfigError(["replay needs --from-lsn LSN or --from-checkpoint (or --rebuild --tables ...)"])
    return cmd_replay(args)


def main(argv: list[str] | None = None) -> int:
    """``python -m cdc.replay`` / tools/replay.py: the two commands on their own parser."""
    parser = argparse.ArgumentParser(prog="cdc", description=__doc__)
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
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
