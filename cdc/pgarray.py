"""PostgreSQL array text -> the JSON text staged for it (a VARIANT in Snowflake), and money text.

See ``cdc.convert`` for the rules: integers and booleans as JSON numbers and booleans, real/double
as JSON numbers (NaN, Infinity and -Infinity as those strings), numeric and money as strings
holding the exact number, json/jsonb elements as embedded JSON, every other element type as its
PostgreSQL text; an array whose lower bounds are not 1 keeps them (``{"lower_bounds": ...}``).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from cdc.typemap import TypeMapping

INT_TEXT = re.compile(r"-?\d+")
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_MONEY = re.compile(r"(-?)\$?(\d{1,3}(?:,\d{3})*|\d+)\.(\d\d)")  # lc_monetary=C: "-$1,234.56"
# element kinds whose JSON is not just their text as a JSON string
_NOT_TEXT_ELEMENTS = frozenset({"int", "float4", "float8", "bool", "json", "money"})
# quotes, escapes, nesting, or a character JSON must escape (controls, DEL is fine, lone
# surrogates are not): the parser and json.dumps decide
_NOT_SIMPLE = re.compile(r'["\\{}\x00-\x1f\ud800-\udfff]')
# what PostgreSQL's array input trims around an element (scanner_isspace): ASCII blanks only; an
# element with any other space (U+00A0, U+3000, ...) at its ends keeps it, and array_out does not
# quote it
_BLANKS = " \t\n\r\v\f"


def parse_money(text: str) -> Decimal:
    """``-$1,234.56`` (money's output under lc_monetary=C) -> ``Decimal('-1234.56')``."""
    m = _MONEY.fullmatch(text)
    if m is None:
        raise ValueError(f"{text!r} is not money as lc_monetary=C prints it ('-$1,234.56')")
    return Decimal(f"{m.group(1)}{m.group(2).replace(',', '')}.{m.group(3)}")


def parse_pg_array(text: str, delimiter: str = ",") -> tuple[list[int] | None, list[Any]]:
    """PostgreSQL array text -> (lower bounds, or None when all are 1; nested lists of element
    text, None for NULL). ``'[0:1]={"a b",NULL}'`` -> ``([0], ["a b", None])``."""
    pos = 0
    lower: list[int] | None = None
    if text.startswith("["):
        eq = text.find("=")
        if eq < 0:
            raise ValueError("dimension decoration without '='")
        bounds = re.findall(r"\[(-?\d+):(-?\d+)\]", text[:eq])
        if "".join(f"[{lo}:{hi}]" for lo, hi in bounds) != text[:eq]:
            raise ValueError(f"bad dimension decoration {text[:eq]!r}")
        lower = [int(lo) for lo, _ in bounds]
        pos = eq + 1

    def element(i: int) -> tuple[Any, int]:
        if text.startswith("{", i):
            return items(i)
        if text.startswith('"', i):
            out, i = [], i + 1
            while i < len(text) and text[i] != '"':
                if text[i] == "\\":
                    i += 1
                out.append(text[i : i + 1])
                i += 1
            if i >= len(text):
                raise ValueError("unterminated quoted element")
            return "".join(out), i + 1
        start, out, escaped = i, [], False
        while i < len(text) and text[i] not in (delimiter, "}"):
            if text[i] == "\\":
                i, escaped = i + 1, True
            out.append(text[i : i + 1])
            i += 1
        raw = "".join(out).strip(_BLANKS)
        if not raw or i >= len(text):
            raise ValueError(f"empty or unterminated element at offset {start}")
        return (None if raw.upper() == "NULL" and not escaped else raw), i

    def items(i: int) -> tuple[list[Any], int]:
        result: list[Any] = []
        i += 1  # "{"
        if text.startswith("}", i):
            return result, i + 1
        while True:
            value, i = element(i)
            result.append(value)
            if text.startswith("}", i):
                return result, i + 1
            if not text.startswith(delimiter, i):
                raise ValueError(f"expected {delimiter!r} or '}}' at offset {i}")
            i += 1

    if not text.startswith("{", pos):
        raise ValueError("an array starts with '{'")
    values, end = items(pos)
    if end != len(text):
        raise ValueError(f"unexpected text after the array at offset {end}")
    if lower is not None and all(b == 1 for b in lower):
        lower = None
    return lower, values


def _element_json(text: str, element: TypeMapping) -> str:
    kind = element.kind
    if kind == "int" and INT_TEXT.fullmatch(text):
        return text
    if kind in ("float4", "float8") and _JSON_NUMBER.fullmatch(text):
        return text
    if kind == "bool" and text in ("t", "f"):
        return "true" if text == "t" else "false"
    if kind == "json":
        json.loads(text)  # raises ValueError when the element is not JSON
        return text
    if kind == "money":
        return json.dumps(str(parse_money(text)))
    if kind in ("int", "bool"):
        raise ValueError(f"element {text!r} is not a {kind}")
    return json.dumps(text, ensure_ascii=False)  # numeric, NaN/Infinity, and every text form


def pg_array_json(text: str, element: TypeMapping, delimiter: str = ",") -> str:
    """PostgreSQL array text -> the JSON text staged for it (see the module docstring)."""
    simple = _simple_text_array(text, element, delimiter)
    if simple is not None:
        return simple
    lower, values = parse_pg_array(text, delimiter)

    def render(value: Any) -> str:
        if value is None:
            return "null"
        if isinstance(value, list):
            return "[" + ",".join(render(v) for v in value) + "]"
        return _element_json(value, element)

    body = render(values)
    if lower is None:
        return body
    return '{"lower_bounds":' + json.dumps(lower, separators=(",", ":")) + ',"values":' + body + "}"


def _simple_text_array(text: str, element: TypeMapping, delimiter: str) -> str | None:
    """The JSON of a one-dimensional array of text-like elements without quotes or escapes
    (``{a,b,NULL}``), built in one step; None for any other array. Same result as the parser."""
    if element.kind in _NOT_TEXT_ELEMENTS or len(text) < 2 or text[0] != "{" or text[-1] != "}":
        return None
    inner = text[1:-1]
    if _NOT_SIMPLE.search(inner):
        return None
    if not inner:
        return "[]"
    items: list[str] = []
    for raw in inner.split(delimiter):
        item = raw.strip(_BLANKS)
        if not item:
            return None  # an empty element: the parser says what is wrong
        items.append("null" if item.upper() == "NULL" else f'"{item}"')
    return "[" + ",".join(items) + "]"
