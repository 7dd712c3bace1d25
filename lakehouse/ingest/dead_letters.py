"""Dead letters: Kafka records that cannot be used, kept with their bytes and the reason.

One table per pipeline (`bronze/clickstream_dead_letters`, `silver/cdc_dead_letters`), written exactly
once like every other table: each commit carries, per source partition, the last offset it has
looked at (a Delta `txn` action), and a rerun skips the records below that mark.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from deltalake.transaction import Transaction

from lakehouse.ingest.delta_sink import DeltaAppender

DEAD_LETTER_SCHEMA = pa.schema([
    pa.field("topic", pa.string(), nullable=False),
    pa.field("partition", pa.int32(), nullable=False),
    pa.field("offset", pa.int64(), nullable=False),
    pa.field("kafka_timestamp", pa.timestamp("ms", tz="UTC")),
    pa.field("value", pa.binary()),
    pa.field("error", pa.string(), nullable=False),
    pa.field("dead_lettered_at", pa.timestamp("us", tz="UTC"), nullable=False),
])  # fmt: skip


def keep_from(rows: pa.Table, marks: dict[int, int], partition_col: str, offset_col: str) -> pa.Table:
    """Rows whose offset is at or after their partition's mark."""
    if rows.num_rows == 0:
        return rows
    floor = pa.array([marks.get(p, 0) for p in rows.column(partition_col).to_pylist()], pa.int64())
    return rows.filter(pc.greater_equal(rows.column(offset_col), floor))


def commit_dead_letters(appender: DeltaAppender, table: DeltaTable, dead: pa.Table, marks: dict[int, int],
                        txns: list[Transaction], source: str) -> pa.Table:  # fmt: skip
    """One commit: the dead letters at or after their partition's mark, and the new marks (`txns`), which
    move even when there is nothing to write. Returns the dead letters written."""
    dead = keep_from(dead, marks, "partition", "offset")
    adds = appender.write_files(dead) if dead.num_rows else []
    appender.commit(table, adds, txns, {"lakehouse.source": source})
    return dead
