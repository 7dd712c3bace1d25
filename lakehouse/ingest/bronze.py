"""Raw clickstream messages -> typed bronze rows and dead letters (pure logic, no I/O).

Known fields are typed strictly; a message that is not JSON, lacks a required field or has a
field of the wrong type becomes a dead letter with the reason. A new top-level field is kept as
a new column (schema evolution) as long as its type is stable; a value whose type does not fit
the column already in the table is an incompatible change and goes to the dead letters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa

from lakehouse.ingest.dead_letters import DEAD_LETTER_SCHEMA

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
KNOWN = {f.name for f in BRONZE_SCHEMA} - {"event_date", "kafka_partition", "kafka_offset"}


def parse_event(value: bytes | None) -> tuple[dict, dict]:
    """One message as (typed known fields, extra top-level fields); ValueError with the reason if invalid."""
    try:
        event = json.loads(value)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise ValueError("not a JSON object")
    missing = [k for k in REQUIRED if event.get(k) in (None, "")]
    if missing:
        raise ValueError(f"missing required field(s): {', '.join(missing)}")
    raw_time = event["event_time"]
    if not isinstance(raw_time, str):
        raise ValueError(f"event_time is not an ISO-8601 timestamp: {raw_time!r}")
    try:
        event_time = datetime.fromisoformat(raw_time.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"event_time is not an ISO-8601 timestamp: {raw_time!r}") from exc
    if event_time.tzinfo is None:
        event_time = event_time.replace(tzinfo=UTC)
    event_time = event_time.astimezone(UTC)

    def opt(name: str, kind):
        v = event.get(name)
        if v is None:
            return None
        if kind in (int, float) and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ValueError(f"{name} is not {'an integer' if kind is int else 'a number'}: {v!r}")
        if kind is int and isinstance(v, float) and not v.is_integer():
            raise ValueError(f"{name} is not an integer: {v!r}")
        if kind is str and not isinstance(v, str):
            raise ValueError(f"{name} is not a string: {v!r}")
        return kind(v)

    properties = event.get("properties")
    if properties is not None and not isinstance(properties, dict):
        raise ValueError(f"properties is not a JSON object: {properties!r}")
    row = {
        "event_id": opt("event_id", str),
        "event_type": opt("event_type", str),
        "event_time": event_time,
        "event_date": event_time.date(),
        "user_id": opt("user_id", int),
        "session_hint": opt("session_hint", str),
        "product_id": opt("product_id", int),
        "merchant_id": opt("merchant_id", int),
        "price": opt("price", float),
        "quantity": opt("quantity", int),
        "device": opt("device", str),
        "country": opt("country", str),
        "schema_version": opt("schema_version", int),
        "properties": json.dumps(properties or {}, sort_keys=True),
    }
    extras = {k: v for k, v in event.items() if k not in KNOWN and v is not None}
    return row, extras


def arrow_type_of(value) -> pa.DataType:
    """Column type for a new field's JSON value (objects and arrays are kept as JSON text)."""
    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, int):
        return pa.int64()
    if isinstance(value, float):
        return pa.float64()
    return pa.string()


def _fits(value, column_type: pa.DataType) -> bool:
    found = arrow_type_of(value)
    return found == column_type or (found == pa.int64() and column_type == pa.float64())


def _column_value(value, column_type: pa.DataType):
    if column_type == pa.string() and isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return value


@dataclass
class BronzeBatch:
    table: pa.Table  # valid rows, first delivery of each event_id in this batch
    dead_letters: pa.Table
    duplicates: int = 0  # repeated deliveries within the batch


def to_bronze(raw: pa.Table, existing: pa.Schema | None = None) -> BronzeBatch:
    """Type raw messages; keep the first delivery of each event_id; route the rest to dead letters.

    `existing` is the bronze table's current schema: the types of columns added by earlier batches."""
    columns = {f.name: f.type for f in (existing or BRONZE_SCHEMA)}
    rows: list[dict] = []
    dead: dict[str, list] = {f.name: [] for f in DEAD_LETTER_SCHEMA}
    seen: set[str] = set()
    duplicates = 0
    now = datetime.now(UTC)
    order = raw.sort_by([("partition", "ascending"), ("offset", "ascending")])
    for topic, partition, offset, ts, value in zip(
        *(order.column(c).to_pylist() for c in ("topic", "partition", "offset", "kafka_timestamp", "value")),
        strict=True,
    ):
        try:
            row, extras = parse_event(value)
            for name, v in extras.items():
                if name not in columns:
                    columns[name] = arrow_type_of(v)  # a new optional field: a new column
                elif not _fits(v, columns[name]):
                    raise ValueError(
                        f"incompatible change: field {name!r} is {arrow_type_of(v)}, the table has {columns[name]}"
                    )
                row[name] = _column_value(v, columns[name])
        except ValueError as exc:
            for name, v in zip(dead, (topic, partition, offset, ts, value, str(exc), now), strict=True):
                dead[name].append(v)
            continue
        if row["event_id"] in seen:
            duplicates += 1
            continue
        seen.add(row["event_id"])
        row["kafka_partition"] = partition
        row["kafka_offset"] = offset
        rows.append(row)
    new_fields = [pa.field(n, t) for n, t in columns.items() if n not in BRONZE_SCHEMA.names]
    schema = pa.schema([*BRONZE_SCHEMA, *new_fields])
    return BronzeBatch(
        table=pa.Table.from_pylist(rows, schema=schema),
        dead_letters=pa.table(dead, schema=DEAD_LETTER_SCHEMA),
        duplicates=duplicates,
    )
