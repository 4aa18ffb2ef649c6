"""The benchmark's workload: a seeded mix of inserts, updates and deletes in transactions of about
1,000 rows across a narrow table (like pgbench_accounts) and a wide one of mixed types."""

from __future__ import annotations

import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import psycopg2.extras

SCHEMA = "bench"
TABLES = ("bench.accounts", "bench.wide")
TXN_ROWS = 1000
SLOT_PREFIX = "bench_"

DDL = [
    f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE",
    f"CREATE SCHEMA {SCHEMA}",
    f"""CREATE TABLE {SCHEMA}.accounts (
        aid bigint PRIMARY KEY, bid integer NOT NULL, abalance integer NOT NULL, filler char(84))""",
    f"""CREATE TABLE {SCHEMA}.wide (
        id bigint PRIMARY KEY, amount numeric(12,2), ratio double precision, qty integer,
        name text, code varchar(32), active boolean, created_at timestamptz, birth date,
        attrs jsonb, ref uuid, tags text[], note text, score bigint, small smallint)""",
    f"GRANT USAGE ON SCHEMA {SCHEMA} TO PUBLIC",
    f"GRANT SELECT ON ALL TABLES IN SCHEMA {SCHEMA} TO PUBLIC",
]
WIDE_COLS = (
    "id, amount, ratio, qty, name, code, active, created_at, birth, attrs, ref, tags, note, score, small"
)
WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
]
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


# -- workload -------------------------------------------------------------------------------------
class Workload:
    """Seeded row changes in transactions of TXN_ROWS; updates and deletes hit live keys."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.live: dict[str, list[int]] = {"accounts": [], "wide": []}
        self.next_id = {"accounts": 1, "wide": 1}
        self.ops = {"I": 0, "U": 0, "D": 0}
        self.transactions = 0

    def _wide_row(self, key: int) -> tuple[Any, ...]:
        r = self.rng
        return (
            key,
            f"{r.randint(-(10**9), 10**9) / 100:.2f}",
            None if r.random() < 0.02 else r.random() * 1000,  # a few NULLs: the NaN lookup path
            r.randint(0, 10_000),
            " ".join(r.choices(WORDS, k=r.randint(2, 6))),
            f"C-{r.getrandbits(40):010x}",
            r.random() < 0.5,
            EPOCH + timedelta(seconds=r.randint(0, 3 * 10**7), microseconds=r.randint(0, 999_999)),
            (EPOCH - timedelta(days=r.randint(0, 30_000))).date(),
            json.dumps(
                {"k": r.randint(0, 99), "w": r.choice(WORDS), "v": [r.randint(0, 9) for _ in range(3)]}
            ),
            str(uuid.UUID(int=r.getrandbits(128))),
            r.sample(WORDS, r.randint(0, 4)),
            None if r.random() < 0.1 else "x" * r.randint(10, 200),
            r.getrandbits(62),
            r.randint(-32768, 32767),
        )

    def transaction(self, cur: Any, rows: int) -> None:
        r = self.rng
        ins: dict[str, list[tuple[Any, ...]]] = {"accounts": [], "wide": []}
        upd: dict[str, list[int]] = {"accounts": [], "wide": []}
        dele: dict[str, list[int]] = {"accounts": [], "wide": []}
        for _ in range(rows):
            table = "accounts" if r.random() < 0.5 else "wide"
            live = self.live[table]
            p = r.random()
            if p < 0.75 or len(live) < 100:
                key = self.next_id[table]
                self.next_id[table] += 1
                if table == "accounts":
                    ins[table].append((key, r.randint(1, 100), r.randint(-5000, 5000), ""))
                else:
                    ins[table].append(self._wide_row(key))
                live.append(key)
                self.ops["I"] += 1
            elif p < 0.95:
                upd[table].append(live[r.randrange(len(live))])
                self.ops["U"] += 1
            else:
                i = r.randrange(len(live))
                live[i], live[-1] = live[-1], live[i]
                dele[table].append(live.pop())
                self.ops["D"] += 1
        ex = psycopg2.extras.execute_values
        if ins["accounts"]:
            ex(cur, f"INSERT INTO {SCHEMA}.accounts VALUES %s", ins["accounts"], page_size=1000)
        if ins["wide"]:
            ex(cur, f"INSERT INTO {SCHEMA}.wide ({WIDE_COLS}) VALUES %s", ins["wide"], page_size=1000)
        for key in upd["accounts"]:  # one statement per update: one WAL record and change each
            cur.execute(
                f"UPDATE {SCHEMA}.accounts SET abalance = abalance + %s WHERE aid = %s",
                (r.randint(-500, 500), key),
            )
        for key in upd["wide"]:
            row = self._wide_row(key)
            cur.execute(
                f"UPDATE {SCHEMA}.wide SET amount = %s, ratio = %s, qty = %s, active = %s, "
                "created_at = %s, attrs = %s, note = %s WHERE id = %s",
                (row[1], row[2], row[3], row[6], row[7], row[9], row[12], key),
            )
        for table, col in (("accounts", "aid"), ("wide", "id")):
            if dele[table]:
                cur.execute(f"DELETE FROM {SCHEMA}.{table} WHERE {col} = ANY(%s)", (dele[table],))
        self.transactions += 1


def run_workload(dsn: str, changes: int, seed: int) -> dict[str, Any]:
    wl = Workload(seed)
    conn = psycopg2.connect(dsn)
    started = time.monotonic()
    try:
        with conn.cursor() as cur:
            done = 0
            while done < changes:
                n = min(TXN_ROWS, changes - done)
                wl.transaction(cur, n)
                conn.commit()
                done += n
    finally:
        conn.close()
    return {
        "changes": sum(wl.ops.values()),
        "transactions": wl.transactions,
        "ops": wl.ops,
        "seconds": time.monotonic() - started,
        "rows": {t: len(v) for t, v in wl.live.items()},
    }


# -- measurements ---------------------------------------------------------------------------------
