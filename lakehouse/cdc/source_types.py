"""PostgreSQL column types -> typed silver columns, and Debezium's JSON values -> silver values.

A source column's type comes from PostgreSQL's catalog (`format_type`, as `\\d` shows it) when silver
first meets the column, and is kept in silver's identity, so a value is always read as the type its
column had when the change was captured. The values are those of the connector's configuration
(lakehouse/cdc/connector.json): `decimal.handling.mode=string` (numerics as exact text),
`time.precision.mode=isostring` (dates, times and timestamps as ISO-8601 text, which carries its own
precision: a column whose precision changes is still read right), timestamptz as ISO-8601 text in UTC,
bytea as base64 text, arrays as JSON arrays.

Delta Lake has no TIME type: `time` and `timetz` are kept as ISO text ('14:03:05.123456'), which Trino
casts with `CAST(x AS time)`. An unconstrained `numeric` (no precision) or one of more than 38 digits
is kept as its exact text, as is a numeric whose scale exceeds its precision. `interval` is kept as microseconds (Debezium's `interval.handling.mode`
default). Everything else without a closer type (enums, uuid, json, jsonb, xml, text of any length)
is text.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from datetime import time as dtime
from decimal import Decimal, InvalidOperation, localcontext
from functools import cache

import pyarrow as pa

from lakehouse.ingest import strict_json
from lakehouse.ingest.landing import MAX_MS, MIN_MS

INTEGERS = {"smallint": pa.int16(), "integer": pa.int32(), "bigint": pa.int64()}
INT_BITS = {pa.int16(): 16, pa.int32(): 32, pa.int64(): 64}
FLOATS = {"real": pa.float32(), "double precision": pa.float64()}
FLOAT32_MAX = 3.4028235677973366e38  # anything below rounds to the largest finite float32
FIRST_DAY, LAST_DAY = -719_162, 2_932_896  # 0001-01-01 and 9999-12-31 in days since 1970
MAX_DECIMAL_DIGITS = 38
_NUMERIC = re.compile(r"numeric\((\d+),(\d+)\)")
_TIMESTAMP = re.compile(r"timestamp(?:\((\d)\))? (with|without) time zone")
_TEXTUAL = re.compile(
    r"text|character varying(\(\d+\))?|character(\(\d+\))?|uuid|enum|citext|name|xml|inet|cidr|macaddr|json|jsonb"
    r"|time(\(\d\))? with time zone"
)
_TIME = re.compile(r"time(?:\((\d)\))? (with|without) time zone")

# The catalog query: each column's type as `format_type` shows it, with `enum` for enum types (whose
# names are the user's own) and a domain's base type in place of the domain.
CATALOG_QUERY = """
SELECT a.attname,
       CASE WHEN t.typtype = 'e' THEN 'enum'
            WHEN e.typtype = 'e' THEN 'enum[]'
            WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod)
            ELSE format_type(a.atttypid, a.atttypmod) END
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


def catalog_types(conn, schema: str, table: str) -> dict[str, str]:
    """{column: PostgreSQL type} of a table, from its catalog (empty if the table does not exist)."""
    return dict(conn.execute(CATALOG_QUERY, (schema, table)).fetchall())


@cache
def arrow_type(pg: str) -> pa.DataType:
    """The silver column type of a PostgreSQL type."""
    if pg.endswith("[]"):
        return pa.list_(arrow_type(pg[:-2]))
    if pg in INTEGERS:
        return INTEGERS[pg]
    if pg in FLOATS:
        return FLOATS[pg]
    if pg == "boolean":
        return pa.bool_()
    if pg == "bytea":
        return pa.binary()
    if pg == "date":
        return pa.date32()
    if pg == "interval":
        return pa.int64()
    numeric = _NUMERIC.fullmatch(pg)
    if numeric and int(numeric[2]) <= int(numeric[1]) <= MAX_DECIMAL_DIGITS:
        return pa.decimal128(int(numeric[1]), int(numeric[2]))
    stamp = _TIMESTAMP.fullmatch(pg)
    if stamp:
        return pa.timestamp("us", tz="UTC") if stamp[2] == "with" else pa.timestamp("us")
    return pa.string()


def decode(name: str, pg: str, value):
    """A value of Debezium's change record as the silver value of a column of PostgreSQL type `pg`
    (ValueError, with the reason, if the value is not one of that type)."""
    if value is None:
        return None
    if pg.endswith("[]"):
        if not isinstance(value, list):
            raise ValueError(f"{name} is {pg} but the change holds {_show(value)}")
        return [decode(f"{name}[{i}]", pg[:-2], v) for i, v in enumerate(value)]
    column = arrow_type(pg)
    if column in INT_BITS or pg == "interval":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} is {pg} but the change holds {_show(value)}")
        return _in_range(name, value, column)
    if column in (pa.float32(), pa.float64()):
        if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity"):
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} is {pg} but the change holds {_show(value)}")
        if column == pa.float32() and abs(value) >= FLOAT32_MAX:
            raise ValueError(f"{name} is {pg} but {_show(value)} is beyond its range")
        return float(value)
    if column == pa.bool_():
        if not isinstance(value, bool):
            raise ValueError(f"{name} is {pg} but the change holds {_show(value)}")
        return value
    if pa.types.is_decimal(column):
        return fit_decimal(name, _decimal(name, pg, value), column)
    if pa.types.is_timestamp(column):
        return _timestamp_micros(name, pg, value)
    if column == pa.date32():
        if isinstance(value, str):  # `isostring`: "2017-09-15Z"
            try:
                value = (date.fromisoformat(value.removesuffix("Z")) - date(1970, 1, 1)).days
            except ValueError as exc:
                raise ValueError(
                    f"{name} is a date but its value is not an ISO-8601 date: {_show(value)}"
                ) from exc
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} is a date but the change holds {_show(value)} (ISO-8601 text expected)")
        if not FIRST_DAY <= value <= LAST_DAY:
            raise ValueError(
                f"{name} is a date outside the years 1 to 9999 (days since 1970: {_show(value)})"
            )
        return value
    if column == pa.binary():
        if not isinstance(value, str):
            raise ValueError(f"{name} is bytea but the change holds {_show(value)} (base64 text expected)")
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"{name} is bytea but its value is not base64: {_show(value)}") from exc
    time = _TIME.fullmatch(pg)
    if time and time[2] == "without":  # `isostring`: "04:05:11.789Z", kept as "04:05:11.789000"
        if isinstance(value, str):
            try:
                return dtime.fromisoformat(value.removesuffix("Z")).isoformat()
            except ValueError:
                pass
        raise ValueError(
            f"{name} is {pg} but the change holds {_show(value)} (ISO-8601 time of day expected)"
        )
    if isinstance(value, str):
        return value
    if _TEXTUAL.fullmatch(pg) or pg.startswith("numeric") or pg == "money":
        raise ValueError(f"{name} is {pg} but the change holds {_show(value)} (text expected)")
    return strict_json.dumps(value)  # a type Debezium sends as a structure (a geometry, say): its JSON text


def fit(name: str, value, column: pa.DataType):
    """A decoded value as a value of silver's column type `column` (which may be wider than the value's
    own type), or ValueError if that column cannot hold it exactly."""
    if value is None:
        return None
    if pa.types.is_list(column):
        if not isinstance(value, list):
            raise ValueError(f"{name}: silver's column is {column} but the value is {_show(value)}")
        return [fit(f"{name}[{i}]", v, column.value_type) for i, v in enumerate(value)]
    if column in INT_BITS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name}: silver's column is {column} but the value is {_show(value)}")
        return _in_range(name, value, column)
    if pa.types.is_decimal(column):
        if not isinstance(value, (Decimal, int)) or isinstance(value, bool):
            raise ValueError(f"{name}: silver's column is {column} but the value is {_show(value)}")
        return fit_decimal(name, Decimal(value), column)
    if column in (pa.float32(), pa.float64()):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name}: silver's column is {column} but the value is {_show(value)}")
        return float(value)
    expected = {pa.bool_(): bool, pa.string(): str, pa.binary(): bytes, pa.date32(): int}
    kind = int if pa.types.is_timestamp(column) else expected.get(column)
    if kind is None or not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{name}: silver's column is {column} but the value is {_show(value)}")
    return value


def widens(old: pa.DataType, new: pa.DataType) -> bool:
    """Whether silver's column of type `old` may become `new` without changing any value it holds:
    a wider integer, a double from a real, a decimal with at least as many digits on each side of the
    point, a list of a wider element. Text to text (varchar(n) to text) is no change at all."""
    if old == new:
        return True
    if old in INT_BITS and new in INT_BITS:
        return INT_BITS[new] >= INT_BITS[old]
    if old == pa.float32() and new == pa.float64():
        return True
    if pa.types.is_decimal(old) and pa.types.is_decimal(new):
        return new.scale >= old.scale and new.precision - new.scale >= old.precision - old.scale
    if old in INT_BITS and pa.types.is_decimal(new):
        return new.precision - new.scale >= len(str(2 ** (INT_BITS[old] - 1)))
    if pa.types.is_list(old) and pa.types.is_list(new):
        return widens(old.value_type, new.value_type)
    return False


def fit_decimal(name: str, value: Decimal, column: pa.DataType) -> Decimal:
    """`value` at the column's scale, or ValueError if that would round it or it has too many digits."""
    shown = f"decimal({column.precision},{column.scale})"
    if not value.is_finite():
        raise ValueError(f"{name} is {value}, which silver's {shown} cannot hold")
    if value and value.adjusted() >= column.precision - column.scale:
        raise ValueError(f"{name} = {value} has more digits than silver's {shown} holds")
    with localcontext() as ctx:
        ctx.prec = 2 * MAX_DECIMAL_DIGITS + 2
        exact = value.quantize(Decimal(1).scaleb(-column.scale))
        if exact != value:
            raise ValueError(f"{name} = {value} has more than {column.scale} decimal places (silver's column "
                             f"is {shown}; a value is never rounded)")  # fmt: skip
    if len(exact.as_tuple().digits) > column.precision:
        raise ValueError(f"{name} = {value} has more digits than silver's {shown} holds")
    return exact


def _decimal(name: str, pg: str, value) -> Decimal:
    if not isinstance(value, str):
        raise ValueError(f"{name} is {pg} but the change holds {_show(value)} (exact text expected)")
    try:
        return Decimal(value)
    except InvalidOperation as exc:
        raise ValueError(f"{name} is {pg} but its value is not a number: {_show(value)}") from exc


def _timestamp_micros(name: str, pg: str, value) -> int:
    """Microseconds since 1970 (UTC) of a timestamp's ISO-8601 text; the text says its own precision, so a
    column whose precision changed is still read right. timestamptz carries its offset (Z); a timestamp
    without time zone arrives as its wall-clock value marked Z, and is kept as that wall-clock value."""
    if not isinstance(value, str):
        raise ValueError(f"{name} is {pg} but the change holds {_show(value)} (ISO-8601 text expected)")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{name} is {pg} but its value is not an ISO-8601 time: {_show(value)}") from exc
    if parsed.tzinfo is None:
        raise ValueError(f"{name} is {pg} but its value has no time zone: {_show(value)}")
    parsed = parsed.astimezone(UTC)
    delta = parsed - datetime(1970, 1, 1, tzinfo=UTC)
    return _in_years(name, (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)


def _in_years(name: str, micros: int) -> int:
    """Microseconds since 1970 within the years 1 to 9999 (what every reader of the table can show)."""
    if not MIN_MS * 1000 <= micros <= MAX_MS * 1000 + 999:
        raise ValueError(f"{name} is a time outside the years 1 to 9999: {_show(micros)} µs since 1970")
    return micros


def _in_range(name: str, value: int, column: pa.DataType) -> int:
    bits = INT_BITS.get(column, 64)
    if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
        raise ValueError(f"{name} is out of range for {column}: {_show(value)}")
    return value


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


class SourceTypes:
    """A table's column types in PostgreSQL: those silver registered (its identity keeps them), and the
    catalog's now (read once, when a column is new to silver or a value does not read as its type)."""

    def __init__(self, registered: dict[str, str], read_catalog: Callable[[], dict[str, str]]):
        self.registered = dict(registered)
        self._read_catalog = read_catalog
        self._catalog: dict[str, str] | None = None

    def catalog(self) -> dict[str, str]:
        if self._catalog is None:
            self._catalog = self._read_catalog()
        return self._catalog

    def resolve(self, name: str, value) -> tuple[str | None, object]:
        """(the column's PostgreSQL type, the value as silver holds it); (None, value) when PostgreSQL
        does not know the column (dropped since): then it is typed from its JSON value."""
        pg = self.registered.get(name)
        if pg is None:
            pg = self.catalog().get(name)
            return (pg, decode(name, pg, value)) if pg is not None else (None, value)
        try:
            return pg, decode(name, pg, value)
        except ValueError as first:
            now = self.catalog().get(name)  # the column may have changed type since silver registered it
            if now is None or now == pg:
                raise
            try:
                return now, decode(name, now, value)
            except ValueError:
                raise first from None


def typed_column(name: str, pg: str, column: pa.DataType | None, value, image: dict) -> pa.DataType:
    """Silver's type for column `name` once a value of PostgreSQL type `pg` is stored in it (the column's
    current type `column`, widened if `pg` is wider); the value is made the column's in `image`.
    ValueError when the source type changed in a way silver cannot follow."""
    found = arrow_type(pg)
    if column is None or column == found:
        image[name] = value  # decoded as its own type: it fits
        return found
    if widens(found, column):
        pass
    elif widens(column, found):
        column = found
    else:
        raise ValueError(
            f"{name} is {pg} in PostgreSQL now, but silver's column is {column}: not a widening (a wider "
            "integer, more decimal digits, text for varchar), so silver cannot take it without changing "
            "values it holds; fix: give the new type a new column in PostgreSQL, or rebuild the silver "
            "table in the new type (drop it, then `lakehouse cdc resnapshot`)"
        )
    image[name] = fit(name, value, column)
    return column
