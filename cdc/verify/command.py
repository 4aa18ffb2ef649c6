"""``cdc verify``: the command line of the comparison (``register`` adds it to the ``cdc`` parser).

Kept light: the databases' client libraries are imported only when the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from cdc import settings as settings_mod
from cdc.errors import CdcError, ConfigError
from cdc.logs import setup_logging

if TYPE_CHECKING:
    from cdc.verify.run import TableReport, VerifyReport

DEFAULT_MAX_MISMATCHES = 20
DEFAULT_BATCH_SIZE = 10_000

HELP = "compare source and target per table: row counts and every value of every row"
DESCRIPTION = """\
Compare every replicated table (or those of --tables) in PostgreSQL with its Snowflake target:
row counts, and every column of every row on its canonical text (exact for every type). Both sides
are streamed in key order, so tables larger than memory work. Lists up to --max-mismatches keys
per table (missing in the target, extra in the target, or different, with the columns that
differ). Soft-deleted target rows (_CDC_DELETED = TRUE) count as absent.

Exit status: 0 when every table is equal, 1 on any difference or error, 2 for a configuration
error. Rows changed since the last applied window differ until the next window: run it when the
pipeline is caught up (the output shows the checkpoint LSN and the source's WAL LSN)."""


def parse_tables(text: str) -> list[tuple[str, str]]:
    """``schema.table,...`` as (schema, table) pairs, names exact and case-sensitive.

    A name holding a dot, comma or quote is written in double quotes with quotes doubled:
    ``"my.schema"."odd ""t"", x"``. Unquoted, the schema ends at the first dot.
    """
    pairs: list[tuple[str, str]] = []
    pos, end = 0, len(text)

    def fail(why: str) -> ConfigError:
        return ConfigError([f"--tables {text!r}: {why}; write schema.table[,schema.table...]"])

    def part(stops: str) -> str:
        nonlocal pos
        while pos < end and text[pos].isspace():
            pos += 1
        if pos < end and text[pos] == '"':
            pos += 1
            chars: list[str] = []
            while True:
                if pos >= end:
                    raise fail("a quoted name is not closed")
                if text[pos] == '"':
                    if text[pos + 1 : pos + 2] == '"':
                        chars.append('"')
                        pos += 2
                        continue
                    pos += 1
                    break
                chars.append(text[pos])
                pos += 1
            while pos < end and text[pos].isspace():
                pos += 1
            return "".join(chars)
        start = pos
        while pos < end and text[pos] not in stops:
            pos += 1
        return text[start:pos].strip()

    while pos < end:
        schema = part(".,")
        if pos >= end or text[pos] != ".":
            raise fail(f"{schema!r} is not written schema.table")
        pos += 1
        table = part(",")
        if pos < end and text[pos] != ",":
            raise fail(f"unexpected {text[pos]!r} after {table!r}")
        pos += 1
        if not schema or not table:
            raise fail("a schema or table name is empty")
        pairs.append((schema, table))
    if not pairs:
        raise fail("names no table")
    return pairs


def _positive(minimum: int) -> Any:
    def convert(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {number}")
        return number

    return convert


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``verify`` subcommand to the ``cdc`` parser."""
    parser = subparsers.add_parser(
        "verify", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="the pipeline's TOML settings file")
    parser.add_argument(
        "--tables",
        help="schema.table[,schema.table...] to compare (default: every replicated table); quote a name "
        'holding a dot or comma: "my.schema"."t,1"',
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument(
        "--max-mismatches",
        type=_positive(0),
        default=DEFAULT_MAX_MISMATCHES,
        metavar="N",
        help=f"list at most N mismatching keys per table (default {DEFAULT_MAX_MISMATCHES}); all are counted",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive(1),
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help=f"rows per fetch on each side (default {DEFAULT_BATCH_SIZE})",
    )
    parser.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    from cdc.verify.run import verify

    settings = settings_mod.load(args.config)
    setup_logging(settings.log_level, "json" if args.json else "text")
    tables = parse_tables(args.tables) if args.tables is not None else None
    if not args.json:
        sys.stderr.write(f"verify pipeline {settings.pipeline}\n")

    def progress(table: TableReport) -> None:
        sys.stderr.write(describe_table(table) + "\n")
        sys.stderr.flush()

    report = verify(
        settings,
        tables,
        max_mismatches=args.max_mismatches,
        batch_size=args.batch_size,
        on_table=None if args.json else progress,
    )
    if args.json:
        sys.stdout.write(json.dumps(report.as_dict(), default=str) + "\n")
    else:
        sys.stderr.write(describe_summary(report) + "\n")
    return 0 if report.equal else 1


def _key(key: list[Any]) -> str:
    return json.dumps(key, ensure_ascii=False, default=str)


def describe_table(t: TableReport) -> str:
    """One line for the table, then one per listed mismatch."""
    c = t.comparison
    counts = f"source {_rows(t.source_rows)}, target {_rows(t.target_rows)}"
    if t.equal:
        return f"  {t.table}: equal ({counts})"
    lines = [f"  {t.table}: {'ERROR' if c is None else 'DIFFERENT'} ({counts})"]
    if c is not None and not c.equal:
        lines[0] += (
            f": {c.missing_count} missing in target, {c.extra_count} extra in target, "
            f"{c.different_count} different"
        )
        lines += [f"      missing in target: {_key(k)}" for k in c.missing]
        lines += [f"      extra in target:   {_key(k)}" for k in c.extra]
        lines += [f"      different:         {_key(k)} columns {', '.join(cols)}" for k, cols in c.different]
        if c.truncated:
            listed = len(c.missing) + len(c.extra) + len(c.different)
            lines.append(f"      ... {c.mismatches - listed} more not listed (--max-mismatches)")
    if t.error:
        lines.append(f"      error: {t.error}")
    return "\n".join(lines)


def _rows(n: int | None) -> str:
    return "? rows" if n is None else f"{n} row{'s' if n != 1 else ''}"


def describe_summary(report: VerifyReport) -> str:
    lines = []
    for table, reason in report.skipped.items():
        lines.append(f"  {table}: skipped ({reason})")
    position = f"checkpoint {report.checkpoint_lsn or '-'}, source WAL {report.source_wal_lsn or '-'}"
    if report.lag_bytes is not None:
        position += f" ({report.lag_bytes} bytes apart)"
    lines.append(f"  {position}")
    lines += [f"  note: {n}" for n in report.notes]
    bad = sum(1 for t in report.tables if not t.equal)
    lines.append(
        f"{'EQUAL' if report.equal else 'DIFFERENT'}: {len(report.tables) - bad} of {len(report.tables)} "
        "table(s) equal"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``cdc verify`` on its own: ``argv`` are the arguments after ``verify``."""
    parser = argparse.ArgumentParser(prog="cdc")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["verify", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args))
    except ConfigError as exc:
        _error(args, {"class": "ConfigError", "problems": exc.problems}, str(exc))
        return 2
    except CdcError as exc:
        _error(args, {"class": type(exc).__name__, "message": str(exc)}, f"{type(exc).__name__}: {exc}")
        return 1


def _error(args: argparse.Namespace, error: dict[str, Any], human: str) -> None:
    if args.json:
        sys.stdout.write(json.dumps({"error": error}, default=str) + "\n")
    else:
        sys.stderr.write(human.rstrip() + "\n")
