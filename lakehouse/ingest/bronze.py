"""Raw clickstream messages -> typed bronze rows and dead letters (pure logic, no I/O).

No single message, whatever its bytes, can stop this step: each becomes a row or a dead letter
with the reason. Known fields are typed strictly and never coerced: an integer out of its
column's range, a fractional value for an integer column, a number as a string, a boolean as a
number, NaN or infinity, an oversized or invalid string, deep nesting, duplicate keys are all
dead letters. A new top-level field becomes a new column (schema evolution) when its name can
be a column and its type is stable, up to `max_new_columns` columns beyond the base schema; a
value that does not fit a column already in the table is an incompatible change (dead letter).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.ingest import strict_json
from lakehouse.ingest.dead_letters import dead_letter_table

BRONZE_SCHEMA = pa.schema([
    pa.field("event_id", pa.string(), nullable=False),
    pa.field("event_type", pa.string(), nullable=False),
    pa.field("event_time", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("event_date", pa.date32(), nullable=False),
    pa.field("user_id", pa.int64(), nullable=False),
    pa.field("session_hint", pa.string()),
    pa.field("product_id", pa.int64()),
    pa.field("merchant_id", pa.int64()),
    pa.field("price", pa.float64()),
    pa.field("quantity", pa.int32()),
    pa.field("device", pa.string()),
    pa.field("country", pa.string()),
    pa.field("schema_version", pa.int32()),
    pa.field("properties", pa.string()),
    pa.field("kafka_partition", pa.int32(), nullable=False),
    pa.field("kafka_offset", pa.int64(), nullable=False),
])  # fmt: skip


REQUIRED = ("event_id", "event_type", "event_time", "user_id")
COMPUTED = {"event_date", "kafka_partition", "kafka_offset"}  # bronze's own columns: never from the message
KNOWN = {f.name for f in BRONZE_SCHEMA} - COMPUTED
MAX_TIME_CHARS = 64
SUB_MICROSECOND = re.compile(r"[.,]\d{7,}")
COLUMN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")  # what Delta, Spark and Trino all take as a column
INT_RANGE = {pa.int32(): (-(2**31), 2**31 - 1), pa.int64(): (-(2**63), 2**63 - 1)}
EXACT_DOUBLE = 2**53  # integers beyond this lose digits as a double


def to_column(name: str, value, column_type: pa.DataType):
    """A JSON value as the value of a column of `column_type`, or ValueError: never coerced or truncated."""
    if value is None:
        return None
    if column_type in INT_RANGE:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} is not an integer: {_show(value)}")
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"{name} is not an integer: {value!r} (a fraction is never truncated)")
            if abs(value) >= EXACT_DOUBLE:  # the literal may already have lost digits when it became a double
                raise ValueError(f"{name} is a double at or beyond 2**53, not an exact integer: {value!r}")
            value = int(value)
        lo, hi = INT_RANGE[column_type]
        if not lo <= value <= hi:
            raise ValueError(f"{name} is out of range for {column_type}: {_show(value)}")
        return value
    if column_type == pa.float64():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} is not a number: {_show(value)}")
        if isinstance(value, int) and abs(value) > EXACT_DOUBLE:
            raise ValueError(f"{name} cannot be stored exactly as a double: {_show(value)}")
        return float(value)
    if column_type == pa.bool_():
        if not isinstance(value, bool):
            raise ValueError(f"{name} is not a boolean: {_show(value)}")
        return value
    if column_type == pa.string():
        if isinstance(value, str):
            return value
        raise ValueError(f"{name} is not a string: {_show(value)}")
    raise ValueError(f"{name}: the table's column type {column_type} takes no JSON value ({_show(value)})")


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


def parse_event(value: bytes | None) -> tuple[dict, dict]:
    """One message as (typed known fields, extra top-level fields); ValueError with the reason if invalid."""
    event = strict_json.loads(value)
    if not isinstance(event, dict):
        raise ValueError(f"not a JSON object: a JSON {type(event).__name__}")
    missing = [k for k in REQUIRED if event.get(k) in (None, "")]
    if missing:
        raise ValueError(f"missing required field(s): {', '.join(missing)}")
    row = {name: to_column(name, event.get(name), BRONZE_SCHEMA.field(name).type)
           for name in KNOWN - {"event_time", "properties"}}  # fmt: skip
    row["event_time"] = parse_time(event["event_time"])
    row["event_date"] = row["event_time"].date()
    properties = event.get("properties")
    if properties is not None and not isinstance(properties, dict):
        raise ValueError(f"properties is not a JSON object: {_show(properties)}")
    row["properties"] = strict_json.dumps(properties or {})
    extras = {k: v for k, v in event.items() if k not in KNOWN and v is not None}
    return row, extras


def parse_time(raw) -> datetime:
    if not isinstance(raw, str) or len(raw) > MAX_TIME_CHARS:
        raise ValueError(f"event_time is not an ISO-8601 timestamp: {_show(raw)}")
    if SUB_MICROSECOND.search(raw):
        raise ValueError(f"event_time is more precise than microseconds (never truncated): {_show(raw)}")
    try:
        event_time = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if event_time.tzinfo is None:
            event_time = event_time.replace(tzinfo=UTC)
        return event_time.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"event_time is not an ISO-8601 timestamp in range: {_show(raw)} ({exc})") from exc


def arrow_type_of(value) -> pa.DataType:
    """Column type for a new field's JSON value (objects and arrays are kept as JSON text)."""
    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, int):
        return pa.int64()
    if isinstance(value, float):
        return pa.float64()
    return pa.string()


@dataclass
class BronzeBatch:
    table: pa.Table  # valid rows, first delivery of each event_id in this batch
    dead_letters: pa.Table
    duplicates: int = 0  # repeated deliveries within the batch


class Columns:
    """The bronze table's columns as this batch goes: the existing ones, and new fields up to a limit."""

    def __init__(self, existing: pa.Schema | None, max_new: int):
        self.types = {f.name: f.type for f in (existing or BRONZE_SCHEMA)}
        self.lower = {n.lower(): n for n in self.types}
        self.max_new = max_new

    def new_count(self) -> int:
        return sum(1 for n in self.types if n not in BRONZE_SCHEMA.names)

    def values(self, extras: dict) -> tuple[dict, dict[str, pa.DataType]]:
        """The extra fields as column values, and the columns they would add; ValueError if they cannot."""
        values, added = {}, {}
        for name, v in extras.items():
            if name in COMPUTED:
                raise ValueError(f"field {name!r} is computed by bronze and cannot come from a message")
            column_type = self.types.get(name)
            if column_type is None:
                if not COLUMN_NAME.fullmatch(name):
                    raise ValueError(f"field {_show(name)} cannot become a column (letters, digits and _, at "
                                     "most 128, not starting with a digit)")  # fmt: skip
                taken = self.lower.get(name.lower()) or next(
                    (n for n in added if n.lower() == name.lower()), None
                )
                if taken:
                    raise ValueError(f"field {name!r} differs from column {taken!r} only in case")
                if self.new_count() + len(added) >= self.max_new:
                    raise ValueError(f"field {name!r} would be column {self.new_count() + len(added) + 1} beyond "
                                     f"the base schema; the limit is {self.max_new} "
                                     "(LAKEHOUSE_BRONZE_MAX_NEW_COLUMNS)")  # fmt: skip
                column_type = added[name] = arrow_type_of(v)
            elif not _fits(v, column_type):
                raise ValueError(f"incompatible change: field {name!r} is {arrow_type_of(v)}, the table has "
                                 f"{column_type}")  # fmt: skip
            if column_type == pa.string() and isinstance(v, (dict, list)):
                v = strict_json.dumps(v)
            values[name] = to_column(name, v, column_type)
        return values, added

    def add(self, added: dict[str, pa.DataType]) -> None:
        self.types.update(added)
        self.lower.update({n.lower(): n for n in added})

    def schema(self) -> pa.Schema:
        return pa.schema([*BRONZE_SCHEMA, *(pa.field(n, t) for n, t in self.types.items()
                                            if n not in BRONZE_SCHEMA.names)])  # fmt: skip


def _fits(value, column_type: pa.DataType) -> bool:
    found = arrow_type_of(value)
    return found == column_type or (found == pa.int64() and column_type == pa.float64())


def to_bronze(raw: pa.Table, existing: pa.Schema | None = None, max_new_columns: int = 64,
              decided: dict[int, int] | None = None) -> BronzeBatch:  # fmt: skip
    """Type raw messages; keep the first delivery of each event_id; route the rest to dead letters.

    `existing` is the bronze table's current schema: the types of columns added by earlier batches.
    Messages below `decided` (per partition: offsets a crashed run already sorted into dead letters) come
    first, in the order they had then, so the first value of a new field, which fixes its column's type,
    is the same one as then and every message is decided the same way again."""
    columns = Columns(existing, max_new_columns)
    rows: list[dict] = []
    coordinates: list[tuple] = []
    dead: list[tuple] = []
    seen: set[str] = set()
    duplicates = 0
    floor = pa.array([(decided or {}).get(p, 0) for p in raw.column("partition").to_pylist()], pa.int64())
    later = pc.greater_equal(raw.column("offset"), floor)
    order = raw.append_column("_later", later).sort_by(
        [("_later", "ascending"), ("partition", "ascending"), ("offset", "ascending")]
    )
    for topic, partition, offset, ts, value in zip(
        *(order.column(c).to_pylist() for c in ("topic", "partition", "offset", "kafka_timestamp", "value")),
        strict=True,
    ):
        try:
            row, extras = parse_event(value)
            values, added = columns.values(extras)
        except ValueError as exc:
            dead.append((topic, partition, offset, ts, value, str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - no message, whatever it holds, stops the batch
            dead.append((topic, partition, offset, ts, value, f"cannot be read: {type(exc).__name__}: {exc}"))
            continue
        columns.add(added)
        row.update(values)
        if row["event_id"] in seen:
            duplicates += 1
            continue
        seen.add(row["event_id"])
        row["kafka_partition"] = partition
        row["kafka_offset"] = offset
        rows.append(row)
        coordinates.append((topic, partition, offset, ts, value))
    table, rejected = _arrow_rows(rows, coordinates, columns.schema())
    return BronzeBatch(table=table, dead_letters=dead_letter_table(dead + rejected), duplicates=duplicates)


def _arrow_rows(
    rows: list[dict], coordinates: list[tuple], schema: pa.Schema
) -> tuple[pa.Table, list[tuple]]:
    """The rows as a table. Validation should leave nothing Arrow refuses; should it still refuse a row,
    that row (found one by one) becomes a dead letter with Arrow's reason instead of failing the batch."""
    try:
        return pa.Table.from_pylist(rows, schema=schema), []
    except (pa.ArrowException, OverflowError, ValueError, TypeError):
        pass
    good, rejected = [], []
    for row, coordinate in zip(rows, coordinates, strict=True):
        try:
            pa.Table.from_pylist([row], schema=schema)
            good.append(row)
        except (pa.ArrowException, OverflowError, ValueError, TypeError) as exc:
            rejected.append((*coordinate, f"cannot be stored in bronze: {exc}"))
    return pa.Table.from_pylist(good, schema=schema), rejected
