"""Debezium change records -> rows of a raw change log (pure logic, no I/O).

A change log row keeps the message's coordinates and bytes and adds what the apply step needs:
the operation (c, u, d, r; NULL for a tombstone), before and after images as JSON, the LSN, the
transaction id and the source commit time. A record that cannot be read keeps its bytes and says
why in `error`, so nothing is lost and the apply step can dead-letter it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

from lakehouse.ingest import strict_json
from lakehouse.ingest.bronze import to_column
from lakehouse.ingest.landing import MAX_MS, MIN_MS, kafka_timestamps

CHANGE_LOG_SCHEMA = pa.schema([
    pa.field("topic", pa.string(), nullable=False),
    pa.field("partition", pa.int32(), nullable=False),
    pa.field("offset", pa.int64(), nullable=False),
    pa.field("kafka_timestamp", pa.timestamp("ms", tz="UTC")),
    pa.field("key", pa.string()),
    pa.field("op", pa.string()),
    pa.field("before", pa.string()),
    pa.field("after", pa.string()),
    pa.field("lsn", pa.int64()),
    pa.field("tx_id", pa.int64()),
    pa.field("source_ts", pa.timestamp("ms", tz="UTC")),
    pa.field("source_table", pa.string()),
    pa.field("snapshot", pa.string()),  # Debezium's source.snapshot: first/true/last(_in_data_collection)/false
    pa.field("value", pa.binary()),
    pa.field("error", pa.string()),
    pa.field("ingested_at", pa.timestamp("us", tz="UTC"), nullable=False),
])  # fmt: skip

OPERATIONS = {"c", "u", "d", "r"}


def parse_change(value: bytes | None) -> dict:
    """The fields of one Debezium value (JSON converter, schemas disabled); ValueError if unreadable."""
    if value is None:
        return {"op": None}  # a tombstone: the key's row was deleted (compaction marker)
    change = strict_json.loads(value)
    if (
        not isinstance(change, dict)
        or not isinstance(change.get("op"), str)
        or change["op"] not in OPERATIONS
    ):
        op = change.get("op") if isinstance(change, dict) else None
        raise ValueError(f"not a Debezium change record (op={str(op)[:40]!r})")
    source = change.get("source")
    incremental_read = (
        change["op"] == "r" and isinstance(source, dict) and source.get("snapshot") == "incremental"
    )
    if not isinstance(source, dict) or (source.get("lsn") is None and not incremental_read):
        raise ValueError("change record without source.lsn")  # only an incremental snapshot's reads have none
    image = "before" if change["op"] == "d" else "after"
    if not isinstance(change.get(image), dict):
        raise ValueError(f"{change['op']!r} change record without its {image} image (an object)")
    snapshot = source.get("snapshot")
    table = source.get("table")
    return {
        "op": change["op"],
        "before": strict_json.dumps(change["before"]) if change.get("before") is not None else None,
        "after": strict_json.dumps(change["after"]) if change.get("after") is not None else None,
        "lsn": to_column("source.lsn", source.get("lsn"), pa.int64()),
        "tx_id": to_column("source.txId", source.get("txId"), pa.int64()),
        "source_ts": epoch_millis("source.ts_ms", source.get("ts_ms")),
        "source_table": to_column("source.table", table, pa.string()),
        "snapshot": str(snapshot).lower()[:40] if snapshot is not None else None,
    }


def epoch_millis(name: str, value) -> int | None:
    """Milliseconds since the epoch within the years a timestamp column holds (ValueError otherwise)."""
    value = to_column(name, value, pa.int64())
    if value is not None and not MIN_MS <= value <= MAX_MS:
        raise ValueError(f"{name} is out of the range of a timestamp: {value}")
    return value


def decode_key(key: bytes | None) -> str | None:
    """The message key as text (ValueError if it is not UTF-8: a key is never altered to fit)."""
    if key is None:
        return None
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"message key is not UTF-8 ({exc.reason} at byte {exc.start}): {key[:40]!r}"
        ) from exc


def to_change_log(topic: str, cols: dict[str, list]) -> pa.Table:
    """A landing batch (columns of Kafka records) as change-log rows. The topic names the table
    (`<prefix>.<schema>.<table>`): a change of any other table on it is unreadable, not applied.
    Every record becomes a row: one that cannot be read keeps its bytes and says why in `error`."""
    expected = topic.rsplit(".", 1)[-1]
    rows = []
    now = datetime.now(UTC)
    for p, o, key, value in zip(*(cols[c] for c in ("partition", "offset", "key", "value")), strict=True):
        row = {"topic": topic, "partition": p, "offset": o, "key": None, "value": value,
               "ingested_at": now}  # fmt: skip
        try:
            row["key"] = decode_key(key)
            row.update(parse_change(value))
            if row.get("source_table") not in (None, expected):
                row["error"] = f"a change of table {row['source_table']!r} on the topic of table {expected!r}"
        except Exception as exc:  # noqa: BLE001 - any record, whatever it holds, becomes a row with the reason
            row = {k: row[k] for k in ("topic", "partition", "offset", "key", "value", "ingested_at")}
            row["error"] = (
                str(exc) if isinstance(exc, ValueError) else f"cannot be read: {type(exc).__name__}: {exc}"
            )
        rows.append(row)
    table = pa.Table.from_pylist(rows, schema=CHANGE_LOG_SCHEMA)
    return table.set_column(table.schema.get_field_index("kafka_timestamp"), "kafka_timestamp",
                            kafka_timestamps(cols["timestamp_ms"]))  # fmt: skip
