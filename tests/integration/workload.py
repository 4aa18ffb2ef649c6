"""A seeded random workload for the replicator: the same seed writes the same SQL in the same order.

Tables: ``wide`` has a column of every supported type (as in test_types.py: ints, numeric(p,s),
numeric and real/double with NaN/+-Infinity, money, text/varchar/char, boolean, date/time/timetz/
timestamp/timestamptz with infinity and BC, interval, json/jsonb, uuid, bytea, inet/cidr/macaddr,
bit/varbit, xml, an enum, domains, 1-D/2-D arrays, a stored generated column, NOT NULL floats);
``pairs`` a composite key; ``plain``; ``Mixed Case; T ble`` (odd column names too) in the schema
``Odd Schéma; ...``. Each has TOASTed columns (STORAGE EXTERNAL, mostly 2.2-8 kB of random hex or
bytes: really out of line, so an update that leaves them alone sends no value for them).

``burst(n)`` runs n transactions of 1-8 operations (one in ten: 8-20) under a random TimeZone; one
in 15 is rolled back. Operations on a random table, by weight:

* 28 insert: 1-3 rows, every column (10 % NULL) or a random subset; a new key or a deleted one
* 30 update: 1-3 rows, 1-6 columns; one in three also sets the TOASTed columns (long, short or
  NULL), the others leave them unchanged; one in 20 is a no-op ``SET c = c``
* 10 delete: 1-3 rows
* 9 key change, TOASTed values unchanged: to a new or a reused key, or one part of the composite
  key; one in four swaps two rows' keys through a temporary key
* 2 truncate: one table or two, half the time followed by an insert in the same transaction
* 3 alter: ADD COLUMN with a constant default or none, DROP COLUMN (added ones), RENAME COLUMN,
  integer -> bigint, varchar(n) -> varchar(m) (renames and widening hit key columns too). Each kind,
  and a truncate, is also scheduled into some burst. A burst ends with an insert into every table
  altered since its last write, so that the next window brings the target along.

ADD COLUMN takes any addable type with or without a default and sometimes the name of a column
dropped before; renames and widening may follow an ADD COLUMN ... DEFAULT before the pipeline
catches up (a rewrite then makes the pipeline re-snapshot the table). Domains are nullable (a NOT
NULL domain has its own test). Scalar floats are never -0 (the stand-in's UPDATE keeps 0 for -0). The
generator mirrors keys and columns, never reads the database, and keeps every statement in ``log``
(long literals cut).
"""

from __future__ import annotations

import copy
import ipaddress
import json
import random
import re
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any
from xml.sax.saxutils import escape

Key = tuple[Any, ...]
quote = lambda name: '"' + name.replace('"', '""') + '"'  # noqa: E731  (a PostgreSQL identifier)
CHARS = "abcXYZ019 _-,;:{}()[]\"'\\\n\téüß€中😀\u0301"
ZONES = ("UTC", "America/New_York", "Asia/Kolkata", "Pacific/Chatham", "Europe/Berlin")
INT_BITS = {"smallint": 15, "integer": 31, "bigint": 63}
SCHEMA_TYPES = ("mood", "amount", "ratio")  # an enum, a domain over numeric(12,2) >= 0, one over double


# --- values, as PostgreSQL input text -------------------------------------------------------------
def text(rng: random.Random, n: int = 24) -> str:
    return "".join(rng.choice(CHARS) for _ in range(rng.randint(0, n)))


def digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def number(rng: random.Random, whole: int, scale: int, negative: bool = True) -> str:
    frac, sign = digits(rng, rng.randint(0, scale)), "-" if negative and rng.random() < 0.3 else ""
    return sign + (digits(rng, rng.randint(1, whole)) if whole else "0") + ("." + frac if frac else "")


def floating(rng: random.Random, real: bool, element: bool) -> str:
    """A double (or real), shortest exact text; array elements may be -0."""
    if rng.random() < 0.2:
        extremes = ["1.17549435e-38", "3.4028235e38"] if real else ["5e-324", "1.7976931348623157e308"]
        return rng.choice(["NaN", "Infinity", "-Infinity", "0", "-0" if element else "0.1", *extremes])
    value = rng.uniform(-1, 1) * 10.0 ** (rng.randint(-30, 30) if real else rng.randint(-300, 300))
    return repr(value)


def a_date(rng: random.Random, special: bool = True) -> str:
    if special and rng.random() < 0.08:
        return rng.choice(["infinity", "-infinity", "5874897-12-31"])
    if rng.random() < 0.1:
        return f"{rng.randint(1, 4000):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} BC"
    return (date(1, 1, 1) + timedelta(days=rng.randint(0, 3652058))).isoformat()


def clock(rng: random.Random, hours: int = 23) -> str:
    frac = "." + digits(rng, rng.randint(1, 6)) if rng.random() < 0.6 else ""
    return f"{rng.randint(0, hours):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}{frac}"


def json_value(rng: random.Random, depth: int = 0) -> Any:
    r = rng.random()
    if depth < 2 and r < 0.25:
        return {text(rng, 6): json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    if depth < 2 and r < 0.4:
        return [json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    numbers = [rng.randint(-(10**15), 10**15), round(rng.uniform(-1e6, 1e6), rng.randint(0, 6))]
    return rng.choice([None, True, False, text(rng, 10), *numbers])


def array(items: list[Any]) -> str:
    element = lambda e: '"' + str(e).replace("\\", "\\\\").replace('"', '\\"') + '"'  # noqa: E731
    return (
        "{"
        + ",".join("NULL" if e is None else array(e) if isinstance(e, list) else element(e) for e in items)
        + "}"
    )


def generate(rng: random.Random, t: str, element: bool = False) -> str:
    """A random value of the type ``t`` (as the DDL writes it)."""
    r = rng.random()
    if t.endswith("[]"):  # 1-D, sometimes with lower bound 0; integer[][]: 2-D, sometimes [0:][-1:]
        inner, height, width = t[: t.index("[")], rng.randint(1, 3), rng.randint(t.count("[]") - 1, 4)
        row = lambda: [None if rng.random() < 0.15 else generate(rng, inner, True) for _ in range(width)]  # noqa: E731
        if t.count("[]") == 1:
            return (f"[0:{width - 1}]=" if width and r < 0.1 else "") + array(row())
        return (f"[0:{height - 1}][-1:{width - 2}]=" if r < 0.2 else "") + array(
            [row() for _ in range(height)]
        )
    if t in INT_BITS:
        return str(rng.randint(-(2 ** INT_BITS[t]), 2 ** INT_BITS[t] - 1))
    if m := re.fullmatch(r"numeric\((\d+),(\d+)\)", t):
        return number(rng, int(m[1]) - int(m[2]), int(m[2]))
    if t == "numeric":
        return (
            rng.choice(["NaN", "Infinity", "-Infinity", "0.000"])
            if r < 0.15
            else number(rng, rng.choice([1, 5, 20, 60]), rng.choice([0, 3, 25]))
        )
    if t in ("real", "double precision", "ratio"):
        return floating(rng, t == "real", element)
    if t in ("money", "amount"):
        return number(rng, 15 if t == "money" else 10, 2, negative=t == "money")
    if m := re.fullmatch(r"(?:varchar|char)\((\d+)\)", t):
        return text(rng, int(m[1]))[: int(m[1])]
    if t in ("text", "xml"):
        return text(rng) if t == "text" else f'<r n="{rng.randint(0, 99)}">{escape(text(rng, 12))}</r>'
    if t in ("date", "time", "timetz", "interval"):
        zone = rng.choice(["+00", "+05:30", "-08", "-15:59", "+14"])
        ys, ms, ds = (rng.randint(-n, n) if rng.random() < 0.7 else 0 for n in (300, 11, 40))
        span = (
            f"{ys} years {ms} mons {ds} days {rng.choice(['', '-'])}{clock(rng, 99)}" if r > 0.1 else "PT0S"
        )
        return {"date": a_date(rng), "time": clock(rng), "timetz": clock(rng) + zone, "interval": span}[t]
    if t.startswith("timestamp"):  # timestamp, timestamptz, timestamp(3) with time zone
        if r < 0.08:
            return rng.choice(["infinity", "-infinity", "10000-01-01 00:00:00", "0044-03-15 12:00:00.5 BC"])
        day = a_date(rng, special=False)
        value = f"{day.removesuffix(' BC')} {'24:00:00' if r < 0.1 else clock(rng)}" + day[10:]
        return value + (
            rng.choice(["", "+00", "-05", "+05:30", " Europe/Berlin"]) if t != "timestamp" else ""
        )
    if t in ("json", "jsonb"):
        spaced = rng.choice([(",", ":"), (", ", ": ")])
        doc = json.dumps(json_value(rng), ensure_ascii=rng.random() < 0.5, separators=spaced)
        duplicate = f'{{"k": {doc}, "k": {json.dumps(json_value(rng))}}}'  # json keeps both, the last wins
        return duplicate if t == "json" and r < 0.2 else doc
    if t in ("inet", "cidr"):
        v6 = rng.random() < 0.3
        address = ipaddress.ip_address(rng.getrandbits(128) if v6 else rng.getrandbits(32))
        prefix = rng.randint(0, 128 if v6 else 32)
        if t == "cidr":
            return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
        return f"{address}/{prefix}" if r < 0.5 else str(address)
    return {
        "boolean": lambda: rng.choice("tf"),
        "uuid": lambda: str(uuid.UUID(int=rng.getrandbits(128))),
        "bytea": lambda: "\\x" + rng.randbytes(rng.randint(0, 16)).hex(),
        "macaddr": lambda: ":".join(f"{b:02x}" for b in rng.randbytes(6)),
        "bit(4)": lambda: "".join(rng.choice("01") for _ in range(4)),
        "bit varying(8)": lambda: "".join(rng.choice("01") for _ in range(rng.randint(0, 8))),
        "mood": lambda: rng.choice(["sad", "ok", "happy"]),
    }[t]()


def toast(rng: random.Random, binary: bool) -> str:
    """Mostly 2.2-8 kB of random hex (random bytes for bytea), sometimes a short value."""
    long = rng.random() < 0.85
    if binary:
        return "\\x" + rng.randbytes(rng.randint(2100, 4000) if long else rng.randint(0, 8)).hex()
    return rng.randbytes(rng.randint(1100, 4000)).hex() if long else text(rng, 10)


# --- tables: "name: type [!key] [!toast] [!notnull] [!gen EXPR]" ----------------------------------
WIDE = """id: integer !key | c_int2: smallint | c_int4: integer | c_int8: bigint | c_num_10_2: numeric(10,2)
c_num_38: numeric(38,10) | c_num_40: numeric(40,5) | c_num: numeric | c_real: real | c_double: double precision
c_money: money | c_text: text | c_varchar: varchar(10) | c_char: char(5) | c_bool: boolean | c_date: date
c_time: time | c_timetz: timetz | c_ts: timestamp | c_tstz: timestamptz | c_tstz3: timestamp(3) with time zone
c_interval: interval | c_json: json | c_jsonb: jsonb | c_uuid: uuid | c_bytea: bytea | c_inet: inet
c_cidr: cidr | c_macaddr: macaddr | c_bit: bit(4) | c_varbit: bit varying(8) | c_xml: xml | c_enum: mood
c_amount: amount | c_ratio: ratio | c_int_arr: integer[] | c_int_arr2: integer[][] | c_text_arr: text[]
c_num_arr: numeric[] | c_float_arr: double precision[] | c_bool_arr: boolean[] | c_jsonb_arr: jsonb[]
c_date_arr: date[] | c_gen: numeric !gen c_num_10_2 * 2 | c_double_nn: double precision !notnull
c_num_nn: numeric !notnull | doc: text !toast | blob: bytea !toast | w_int: integer | w_vc: varchar(8)"""
PAIRS = """region: text !key | num: integer !key | qty: integer | price: numeric(12,3) | ratio: double precision
note: text !toast | tags: text[] | w_int: integer | w_vc: varchar(6)"""
PLAIN = "id: integer !key | v: text | n: bigint | w_vc: varchar(4) | body: text !toast"
ODD = """Key Col: bigint !key | select: text | Mixed Col: numeric | naïve: date | with space: double precision
Toast; Col: text !toast | w int: integer | W vc: varchar(5)"""
# types an ADD COLUMN picks from
ADDABLE = re.split(
    r", ", "integer, bigint, numeric(10,2), numeric, real, double precision, text, bytea, boolean"
)
ADDABLE += re.split(r", ", "date, timestamptz, interval, jsonb, uuid, money, integer[], text[]")
ALTERS = ("add_default", "add_null", "drop", "rename", "widen_int", "widen_varchar")
OPS, WEIGHTS = ("insert", "update", "delete", "move", "truncate", "alter"), (28, 30, 10, 9, 2, 3)


@dataclass(frozen=True)
class Col:
    name: str
    type: str
    toast: bool = False
    null: bool = True
    generated: str | None = None  # the expression of a stored generated column


@dataclass
class Table:
    schema: str
    name: str
    spec: str
    new_key: Callable[[random.Random, int], Key]  # (rng, a number never used before) -> a key
    cols: list[Col] = field(default_factory=list)
    key: tuple[str, ...] = ()
    live: dict[Key, None] = field(default_factory=dict)  # dicts as ordered sets: reproducible
    dead: dict[Key, None] = field(default_factory=dict)
    counter: int = 0
    altered: bool = False  # schema changed, no row written since
    dropped_names: list[str] = field(default_factory=list)  # an ADD COLUMN may take one again

    def __post_init__(self) -> None:
        for item in re.split(r"\s*[|\n]\s*", self.spec):
            name, rest = item.split(": ", 1)
            type_name, *flags = rest.split(" !")
            expr = next((f[4:] for f in flags if f.startswith("gen ")), None)
            self.cols.append(Col(name, type_name, "toast" in flags, "notnull" not in flags, expr))
            self.key += (name,) if "key" in flags else ()

    @property
    def ident(self) -> str:
        return f"{quote(self.schema)}.{quote(self.name)}"

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def writable(self) -> list[Col]:
        return [c for c in self.cols if not c.generated and c.name not in self.key]

    def where(self, keys: list[Key]) -> tuple[str, list[Any]]:
        """``(k1, k2) IN ((%s, %s), ...)`` and its parameters."""
        one = "(" + ", ".join(["%s"] * len(self.key)) + ")"
        names = ", ".join(map(quote, self.key))
        return f"({names}) IN ({', '.join([one] * len(keys))})", [v for k in keys for v in k]

    def ddl(self) -> str:
        defs = [
            f"{quote(c.name)} "
            + (f'"{self.schema}".{c.type}' if c.type in SCHEMA_TYPES else c.type)
            + (f" GENERATED ALWAYS AS ({c.generated}) STORED" if c.generated else "")
            + ("" if c.null else " NOT NULL DEFAULT 0")
            for c in self.cols
        ]
        keys = ", ".join(map(quote, self.key))
        external = [
            f"ALTER TABLE {self.ident} ALTER {quote(c.name)} SET STORAGE EXTERNAL;"
            for c in self.cols
            if c.toast
        ]
        return f"CREATE TABLE {self.ident} ({', '.join(defs)}, PRIMARY KEY ({keys}));" + "".join(external)


class Workload:
    """Writes the workload of ``seed`` through ``conn``; ``bursts`` is how many ``burst`` calls follow."""

    def __init__(self, conn: Any, schema: str, odd_schema: str, seed: int, bursts: int) -> None:
        self.conn, self.schema, self.odd_schema = conn, schema, odd_schema
        self.rng = random.Random(seed)
        regions = ("eu", "us", "apac", "Ü ber", "")
        self.tables = [
            Table(schema, "wide", WIDE, lambda rng, n: (n,)),
            Table(schema, "pairs", PAIRS, lambda rng, n: (rng.choice(regions), n)),
            Table(schema, "plain", PLAIN, lambda rng, n: (n * 7919 % 100_003,)),
            Table(odd_schema, "Mixed Case; T ble", ODD, lambda rng, n: (n * -1_000_003,)),
        ]
        self.log: list[str] = []
        self.counts: Counter[str] = Counter()
        self.bursts_done = self.names = 0
        self.schedule: dict[int, list[str]] = {}  # every ALTER kind and a truncate, each in some burst
        for kind in (*ALTERS, "truncate"):
            self.schedule.setdefault(self.rng.randrange(bursts), []).append(kind)

    def create(self) -> None:
        with self.conn.cursor() as cur:
            cur.execute(f"CREATE SCHEMA {quote(self.schema)}; CREATE SCHEMA {quote(self.odd_schema)};")
            cur.execute(
                f"""CREATE TYPE "{self.schema}".mood AS ENUM ('sad', 'ok', 'happy');
                CREATE DOMAIN "{self.schema}".amount AS numeric(12,2) CHECK (VALUE >= 0);
                CREATE DOMAIN "{self.schema}".ratio AS double precision;"""
                + "".join(t.ddl() for t in self.tables)
            )
        self.conn.commit()

    def execute(self, cur: Any, query: str, params: Any = ()) -> None:
        statement = cur.mogrify(query, params).decode()
        cur.execute(statement)
        self.log.append(re.sub(r"'(?:[^']|''){80,}'", lambda m: f"'<{len(m[0])} chars>'", statement))

    def value(self, col: Col) -> str | None:
        if col.null and self.rng.random() < 0.1:
            return None
        return toast(self.rng, col.type == "bytea") if col.toast else generate(self.rng, col.type)

    def burst(self, transactions: int) -> None:
        forced = self.schedule.pop(self.bursts_done, [])
        slots = [self.rng.randrange(transactions) for _ in forced]
        for i in range(transactions):
            self.transaction([kind for kind, slot in zip(forced, slots, strict=True) if slot == i])
        for table in (t for t in self.tables if t.altered):  # the next window brings the target along
            with self.conn.cursor() as cur:
                self.insert(cur, table)
            self.conn.commit()
        self.bursts_done += 1
        self.log.append(f"-- end of burst {self.bursts_done}")

    def transaction(self, forced: list[str]) -> None:
        rng = self.rng
        ops = rng.choices(OPS, WEIGHTS, k=rng.randint(8, 20) if rng.random() < 0.1 else rng.randint(1, 8))
        for kind in forced:
            ops.insert(rng.randint(0, len(ops)), kind)
        saved = copy.deepcopy((self.tables, self.counts))
        rollback = not forced and rng.random() < 1 / 15
        with self.conn.cursor() as cur:
            self.execute(cur, "SET LOCAL TimeZone = %s", (rng.choice(ZONES),))
            for kind in ops:
                if kind in ALTERS or kind == "alter":
                    self.alter(cur, rng.choice(ALTERS) if kind == "alter" else kind)
                    continue
                table = rng.choice(self.tables)
                kind = "insert" if kind in ("update", "delete", "move") and not table.live else kind
                getattr(self, kind)(cur, table)
        (self.conn.rollback if rollback else self.conn.commit)()
        if rollback:
            self.tables, self.counts = saved
        self.counts["rolled_back" if rollback else "transactions"] += 1
        self.log.append("ROLLBACK" if rollback else "COMMIT")

    # -- operations ---------------------------------------------------------------------------------
    def take_key(self, table: Table, reuse: float = 0.3) -> Key:
        if table.dead and self.rng.random() < reuse:
            key = self.rng.choice(list(table.dead))
            del table.dead[key]
            self.counts["key_reused"] += 1
            return key
        while True:
            table.counter += 1
            key = table.new_key(self.rng, table.counter)
            if key not in table.live and key not in table.dead:
                return key

    def some_rows(self, table: Table) -> list[Key]:
        return self.rng.sample(list(table.live), min(len(table.live), self.rng.randint(1, 3)))

    def written(self, table: Table, keys: list[Key]) -> None:
        table.live.update(dict.fromkeys(keys))
        table.altered = False

    def insert(self, cur: Any, table: Table) -> None:
        cols = table.writable()
        if self.rng.random() < 0.2:  # sparse: the others get their default (NULL, or 0 when NOT NULL)
            cols = self.rng.sample(cols, self.rng.randint(0, len(cols)))
        keys = [self.take_key(table) for _ in range(self.rng.randint(1, 3))]
        names = ", ".join(map(quote, (*table.key, *(c.name for c in cols))))
        rows = ", ".join(["(" + ", ".join(["%s"] * (len(table.key) + len(cols))) + ")"] * len(keys))
        params = [v for key in keys for v in (*key, *(self.value(c) for c in cols))]
        self.execute(cur, f"INSERT INTO {table.ident} ({names}) VALUES {rows}", params)
        self.written(table, keys)
        self.counts["insert"] += len(keys)

    def update(self, cur: Any, table: Table) -> None:
        keys, plain = self.some_rows(table), [c for c in table.writable() if not c.toast]
        chosen = self.rng.sample(plain, self.rng.randint(1, min(6, len(plain))))
        toasted = self.rng.random() < 1 / 3
        chosen += [c for c in table.writable() if c.toast and toasted]
        self.counts["update_toast_set" if toasted else "update_toast_unchanged"] += 1
        noop = self.rng.random() < 0.05  # SET c = c
        sets = ", ".join(f"{quote(c.name)} = " + (quote(c.name) if noop else "%s") for c in chosen)
        cond, params = table.where(keys)
        values = [] if noop else [self.value(c) for c in chosen]
        self.execute(cur, f"UPDATE {table.ident} SET {sets} WHERE {cond}", values + params)
        self.written(table, keys)
        self.counts["update"] += len(keys)

    def delete(self, cur: Any, table: Table) -> None:
        keys = self.some_rows(table)
        cond, params = table.where(keys)
        self.execute(cur, f"DELETE FROM {table.ident} WHERE {cond}", params)
        table.live = {k: None for k in table.live if k not in keys}
        table.dead.update(dict.fromkeys(keys))
        table.altered = False
        self.counts["delete"] += len(keys)

    def set_key(self, cur: Any, table: Table, old: Key, new: Key, also: tuple[Col, ...] = ()) -> None:
        sets = ", ".join(f"{quote(n)} = %s" for n in (*table.key, *(c.name for c in also)))
        cond, params = table.where([old])
        values = [*new, *(self.value(c) for c in also)]
        self.execute(cur, f"UPDATE {table.ident} SET {sets} WHERE {cond}", values + params)
        del table.live[old]
        table.dead[old] = None
        table.dead.pop(new, None)
        self.written(table, [new])

    def move(self, cur: Any, table: Table) -> None:
        """A key change that leaves the TOASTed columns alone."""
        rng = self.rng
        if len(table.live) >= 2 and rng.random() < 0.25:  # swap two rows' keys through a temporary key
            a, b = rng.sample(list(table.live), 2)
            tmp = self.take_key(table, reuse=0)
            for old, new in ((a, tmp), (b, a), (tmp, b)):
                self.set_key(cur, table, old, new)
            self.counts["key_swap"] += 1
            return
        old = rng.choice(list(table.live))
        new = table.new_key(rng, old[-1])  # a composite key: another first part, the same last part
        if len(table.key) == 1 or rng.random() < 0.5 or new in table.live or new in table.dead:
            new = self.take_key(table, reuse=0.4)
        also = tuple(c for c in table.writable() if not c.toast and rng.random() < 0.15)
        self.set_key(cur, table, old, new, also)
        self.counts["key_change"] += 1

    def truncate(self, cur: Any, table: Table) -> None:
        chosen = [table] + ([t for t in self.tables if t is not table][:1] if self.rng.random() < 0.3 else [])
        self.execute(cur, "TRUNCATE " + ", ".join(t.ident for t in chosen))
        for t in chosen:
            t.dead.update(t.live)
            t.live = {}
            self.counts["truncate"] += 1
        if self.rng.random() < 0.5:
            self.insert(cur, table)

    def alter(self, cur: Any, kind: str) -> None:
        rng = self.rng
        applicable: dict[str, Callable[[Table], list[Col]]] = {
            "drop": lambda t: [c for c in t.cols if c.name.startswith("added #")],
            "rename": lambda t: [c for c in t.cols if not c.generated],
            "widen_int": lambda t: [c for c in t.cols if c.type == "integer"],
            "widen_varchar": lambda t: [c for c in t.cols if c.type.startswith("varchar(")],
        }
        candidates = [t for t in self.tables if kind not in applicable or applicable[kind](t)]
        if not candidates:
            kind, candidates = "add_null", self.tables
        table = rng.choice(candidates)
        self.counts[f"alter_{kind}"] += 1
        table.altered, alter, self.names = True, f"ALTER TABLE {table.ident}", self.names + 1
        if kind in ("add_default", "add_null"):
            in_use = {c.name for c in table.cols}
            reusable = [n for n in table.dropped_names if n not in in_use]
            name = rng.choice(reusable) if reusable and rng.random() < 0.4 else f"added #{self.names}"
            new = Col(name, rng.choice(ADDABLE))
            default = [generate(rng, new.type)] if kind == "add_default" else []
            with_default = f" DEFAULT %s::{new.type}" if default else ""
            self.execute(cur, f"{alter} ADD {quote(new.name)} {new.type}{with_default}", default)
            table.cols.append(new)
            return
        col = rng.choice(applicable[kind](table))
        if kind == "drop":
            self.execute(cur, f"{alter} DROP {quote(col.name)}")
            table.cols.remove(col)
            table.dropped_names.append(col.name)
        elif kind == "rename":
            base = re.sub(r"( #|_r)\d+$", "", col.name)  # a fresh name: the base, " #" or "_r", a number
            new = replace(col, name=base + rng.choice([" #", "_r"]) + str(self.names))
            self.execute(cur, f"{alter} RENAME {quote(col.name)} TO {quote(new.name)}")
            table.cols[table.cols.index(col)] = new
            table.key = tuple(new.name if k == col.name else k for k in table.key)
        else:
            length = int(col.type[8:-1]) if kind == "widen_varchar" else 0
            wider = "bigint" if kind == "widen_int" else f"varchar({length + rng.randint(1, 20)})"
            self.execute(cur, f"{alter} ALTER {quote(col.name)} TYPE {wider}")
            table.cols[table.cols.index(col)] = replace(col, type=wider)
