"""Kafka -> Delta landing: the project's one ingest machinery (events now, CDC later).

The guarantee comes from the Delta log, not from the consumer group: every commit that
appends a batch also records, in the same transaction, a Delta `txn` action per topic
partition (`app_id = <app>:<topic>:<partition>`, `version = last offset landed`). A run starts
each partition right after the offset recorded in the table, so a crash before the commit
lands nothing and the next run re-reads the same records; a crash after it re-reads nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from deltalake.transaction import CommitProperties, Transaction

from lakehouse.resources.kafka import KafkaRecord, KafkaResource

RAW_SCHEMA = pa.schema([
    pa.field("topic", pa.string(), nullable=False),
    pa.field("partition", pa.int32(), nullable=False),
    pa.field("offset", pa.int64(), nullable=False),
    pa.field("kafka_timestamp", pa.timestamp("ms", tz="UTC")),
    pa.field("key", pa.binary()),
    pa.field("value", pa.binary()),
    pa.field("ingested_at", pa.timestamp("us", tz="UTC"), nullable=False),
])  # fmt: skip


def txn_app_id(app: str, topic: str, partition: int) -> str:
    return f"{app}:{topic}:{partition}"


def landed_offsets(table: DeltaTable | None, app: str, topic: str, partitions: list[int]) -> dict[int, int]:
    """Next offset to read per partition, from the `txn` actions in the table's log."""
    result = {}
    for p in partitions:
        version = table.transaction_version(txn_app_id(app, topic, p)) if table is not None else None
        result[p] = 0 if version is None else version + 1
    return result


def records_to_arrow(records: list[KafkaRecord]) -> pa.Table:
    now = datetime.now(UTC)
    return pa.table(
        {
            "topic": [r.topic for r in records],
            "partition": [r.partition for r in records],
            "offset": [r.offset for r in records],
            "kafka_timestamp": [r.timestamp_ms for r in records],
            "key": [r.key for r in records],
            "value": [r.value for r in records],
            "ingested_at": [now] * len(records),
        },
        schema=RAW_SCHEMA,
    )


@dataclass
class LandingResult:
    rows: int = 0
    commits: int = 0
    offsets: dict[int, tuple[int, int]] = field(default_factory=dict)  # partition -> (first, last)
    lag_before: dict[int, int] = field(default_factory=dict)


def land_topic(
    kafka: KafkaResource,
    table_uri: str,
    storage_options: dict[str, str],
    topic: str,
    app: str,
    batch_size: int = 50_000,
    to_arrow: Callable[[list[KafkaRecord]], pa.Table] = records_to_arrow,
    log: Callable[[str], None] = print,
) -> LandingResult:
    """Append every record of `topic` not yet in the table, one Delta commit per batch."""
    partitions = kafka.partitions(topic)
    try:
        table = DeltaTable(table_uri, storage_options=storage_options)
    except Exception:  # noqa: BLE001 - a table that does not exist yet starts at offset 0
        table = None
    start = landed_offsets(table, app, topic, partitions)
    end = kafka.end_offsets(topic)
    result = LandingResult(lag_before={p: end[p] - start[p] for p in partitions})
    log(f"landing {topic}: {sum(result.lag_before.values())} new records across {len(partitions)} partitions")
    for batch in kafka.read_batches(topic, start, end, batch_size):
        last: dict[int, int] = {}
        for r in batch:
            last[r.partition] = max(last.get(r.partition, -1), r.offset)
            first, _ = result.offsets.get(r.partition, (r.offset, r.offset))
            result.offsets[r.partition] = (min(first, r.offset), last[r.partition])
        txns = [Transaction(app_id=txn_app_id(app, topic, p), version=o) for p, o in sorted(last.items())]
        write_deltalake(
            table_uri,
            to_arrow(batch),
            mode="append",
            storage_options=storage_options,
            commit_properties=CommitProperties(
                app_transactions=txns, custom_metadata={"lakehouse.source": f"kafka:{topic}"}
            ),
        )
        result.rows += len(batch)
        result.commits += 1
        log(f"  committed {len(batch)} records ({result.rows} so far)")
    return result
