"""Dead letters: Kafka records that cannot be used, kept with their bytes and the reason.

One table per pipeline (`bronze/clickstream_dead_letters`, `silver/cdc_dead_letters`), written exactly
once like every other table (lakehouse/ingest/exactly_once.py): each commit carries, per source
partition, the last offset it has looked at, and a rerun skips the records below that mark.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

DEAD_LETTER_SCHEMA = pa.schema([
    pa.field("topic", pa.string(), nullable=False),
    pa.field("partition", pa.int32(), nullable=False),
    pa.field("offset", pa.int64(), nullable=False),
    pa.field("kafka_timestamp", pa.timestamp("ms", tz="UTC")),
    pa.field("value", pa.binary()),
    pa.field("error", pa.string(), nullable=False),
    pa.field("dead_lettered_at", pa.timestamp("us", tz="UTC"), nullable=False),
])  # fmt: skip


def dead_letter_table(records: list[tuple]) -> pa.Table:
    """Dead letters from (topic, partition, offset, kafka_timestamp, value, error) tuples."""
    now = datetime.now(UTC)
    columns = list(zip(*records, strict=True)) if records else [[] for _ in range(6)]
    return pa.table([*columns, [now] * len(records)], schema=DEAD_LETTER_SCHEMA)
