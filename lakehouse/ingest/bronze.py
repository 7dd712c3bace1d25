"""Raw clickstream messages -> typed, deduplicated bronze rows (pure logic, no I/O)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa

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


@dataclass
class BronzeBatch:
    table: pa.Table
    rejected: list[tuple[int, int, str]] = field(default_factory=list)  # (partition, offset, reason)
    duplicates: int = 0


def parse_event(value: bytes) -> dict:
    """One message as a typed row; raises ValueError with the reason when it is not a valid event."""
    try:
        event = json.loads(value)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise ValueError("not a JSON object")
    missing = [k for k in REQUIRED if event.get(k) in (None, "")]
    if missing:
        raise ValueError(f"missing required field(s): {', '.join(missing)}")
    try:
        event_time = datetime.fromisoformat(str(event["event_time"]).replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"event_time is not an ISO-8601 timestamp: {event['event_time']!r}") from exc
    if event_time.tzinfo is None:
        event_time = event_time.replace(tzinfo=UTC)
    event_time = event_time.astimezone(UTC)

    def opt(name: str, kind):
        v = event.get(name)
        if v is None:
            return None
        try:
            return kind(v)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} is not {kind.__name__}: {v!r}") from exc

    return {
        "event_id": str(event["event_id"]),
        "event_type": str(event["event_type"]),
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
        "properties": json.dumps(event.get("properties") or {}, sort_keys=True),
    }


def to_bronze(raw: pa.Table) -> BronzeBatch:
    """Type every raw message and keep the first delivery of each event_id (by partition, offset)."""
    rows: list[dict] = []
    rejected: list[tuple[int, int, str]] = []
    seen: set[str] = set()
    duplicates = 0
    order = raw.sort_by([("partition", "ascending"), ("offset", "ascending")])
    for partition, offset, value in zip(
        order.column("partition").to_pylist(),
        order.column("offset").to_pylist(),
        order.column("value").to_pylist(),
        strict=True,
    ):
        try:
            row = parse_event(value)
        except ValueError as exc:
            rejected.append((partition, offset, str(exc)))
            continue
        if row["event_id"] in seen:
            duplicates += 1
            continue
        seen.add(row["event_id"])
        row["kafka_partition"] = partition
        row["kafka_offset"] = offset
        rows.append(row)
    return BronzeBatch(pa.Table.from_pylist(rows, schema=BRONZE_SCHEMA), rejected, duplicates)
