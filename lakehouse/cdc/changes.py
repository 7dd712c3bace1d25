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
    if not isinstance(change, dict) or change.get("op") not in OPERATIONS:
        op = change.get("op") if isinstance(change, dict) else None
        raise ValueError(f"not a Debezium change record (op={str(op)[:40]!r})")
    source = change.get("source")
    if not isinstance(source, dict) or source.get("lsn") is None:
        raise ValueError("change record without source.lsn")
    image = "before" if change["op"] == "d" else "after"
    if not isinstance(change.get(image), dict):
        raise ValueError(f"{change['op']!r} change record without its {image} image (an object)")
    snapshot = source.get("snapshot")
    table = source.get("table")
    return {
        "op": change["op"],
        "before": strict_json.dumps(change["before"]) if change.get("before") is not None else None,
        "after": strict_json.dumps(change["after"]) if change.get("after") is not None else None,
        "lsn": to_column("source.lsn", source["lsn"], pa.int64()),
        "tx_id": to_column("source.txId", source.get("txId"), pa.int64()),
        "source_ts": to_column("source.ts_ms", source.get("ts_ms"), pa.int64()),
        "source_table": to_column("source.table", table, pa.string()),
        "snapshot": str(snapshot).lower()[:40] if snapshot is not None else None,
    }


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
    for p, o, ts, key, value in zip(*(cols[c] for c in ("partition", "offset", "timestamp_ms", "key", "value")),
                                    strict=True):  # fmt: skip
        row = {"topic": topic, "partition": p, "offset": o, "kafka_timestamp": ts, "key": None, "value": value,
               "ingested_at": now}  # fmt: skip
        try:
            row["key"] = decode_key(key)
            row.update(parse_change(value))
            if row.get("source_table") not in (None, expected):
                row["error"] = f"a change of table {row['source_table']!r} on the topic of table {expected!r}"
        except ValueError as exc:
            row = {k: row[k] for k in ("topic", "partition", "offset", "kafka_timestamp", "key", "value",
                                       "ingested_at")}  # fmt: skip
            row["error"] = str(exc)
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=CHANGE_LOG_SCHEMA)
