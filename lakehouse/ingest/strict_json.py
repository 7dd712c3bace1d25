"""Strict JSON for records from outside: one place that turns any bytes into a value or a reason.

Python's `json` module is lenient where a lake must not be: it accepts `NaN` and `Infinity`, turns
`1e999` into infinity, keeps the last of two equal keys, guesses UTF-16 from the bytes, decodes
lone surrogate escapes (`"\\ud800"`) into strings that cannot be written as UTF-8, and overflows
the stack on deep nesting. `loads` refuses all of these with a `ValueError` that says which.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 32  # nesting of objects and arrays
MAX_STRING_CHARS = 1 << 16  # one string value or key


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of the range of a double")
    return value


MAX_INT_DIGITS = 40  # far beyond int64; Python would otherwise spend time on (or refuse) huge literals


def _int(text: str) -> int:
    if len(text) > MAX_INT_DIGITS:
        raise ValueError(f"an integer literal of {len(text)} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _constant(name: str):
    raise ValueError(f"{name} is not valid JSON (NaN and Infinity have no JSON form)")


def _object(pairs: list[tuple[str, Any]]) -> dict:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        repeated = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"duplicate key {repeated[:80]!r}")
    return result


def loads(value: bytes | str | None) -> Any:
    """The JSON value of a record, or ValueError with the reason it is not acceptable."""
    if value is None:
        raise ValueError("not JSON: the record has no value (null)")
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"not UTF-8: {exc.reason} at byte {exc.start}") from exc
    try:
        parsed = json.loads(
            value, parse_float=_float, parse_int=_int, parse_constant=_constant, object_pairs_hook=_object
        )
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    except RecursionError as exc:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels") from exc
    check(parsed)
    return parsed


def check(value: Any) -> None:
    """Bounded depth, bounded strings, and every string encodable as UTF-8 (iteratively: no recursion)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_string(item, "string")
        elif isinstance(item, (dict, list)):
            if depth >= MAX_DEPTH:
                raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                for key, v in item.items():
                    _check_string(key, "key")
                    stack.append((v, depth + 1))
            else:
                stack.extend((v, depth + 1) for v in item)


def _check_string(text: str, what: str) -> None:
    if len(text) > MAX_STRING_CHARS:
        raise ValueError(f"a {what} of {len(text)} characters (at most {MAX_STRING_CHARS})")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"a {what} with an invalid Unicode escape (lone surrogate at {exc.start})") from exc


def dumps(value: Any) -> str:
    """Canonical JSON text of a checked value (sorted keys, ASCII)."""
    return json.dumps(value, sort_keys=True, allow_nan=False)
