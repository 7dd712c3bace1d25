"""Kafka -> Delta landing: the project's one ingest machinery (events now, CDC later).

The guarantee comes from the Delta log, not from the consumer group: every commit that
appends a batch also records, in the same transaction, a Delta `txn` action per topic
partition (`app_id = <app>:<topic>:<partition>`, `version = last offset landed`). A run starts
each partition right after the offset recorded in the table, so a crash before the commit
lands nothing and the next run re-reads the same records; a crash after it re-reads nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
from deltalake.transaction import Transaction

from lakehouse.ingest.delta_sink import DeltaAppender, txn_app_id
from lakehouse.resources.kafka import KafkaResource

RAW_SCHEMA = pa.schema([
    pa.field("topic", pa.string(), nullable=False),
    pa.field("partition", pa.int32(), nullable=False),
    pa.field("offset", pa.int64(), nullable=False),
    pa.field("kafka_timestamp", pa.timestamp("ms", tz="UTC")),
    pa.field("key", pa.binary()),
    pa.field("value", pa.binary()),
    pa.field("ingested_at", pa.timestamp("us", tz="UTC"), nullable=False),
])  # fmt: skip


def to_arrow(topic: str, cols: dict[str, list]) -> pa.Table:
    n = len(cols["offset"])
    return pa.table(
        {
            "topic": pa.repeat(topic, n) if n else pa.array([], pa.string()),
            "partition": pa.array(cols["partition"], pa.int32()),
            "offset": pa.array(cols["offset"], pa.int64()),
            "kafka_timestamp": pa.array(cols["timestamp_ms"], pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            "key": pa.array(cols["key"], pa.binary()),
            "value": pa.array(cols["value"], pa.binary()),
            "ingested_at": pa.repeat(pa.scalar(datetime.now(UTC), pa.timestamp("us", tz="UTC")), n),
        },
        schema=RAW_SCHEMA,
    )


def last_offsets(batch: pa.Table) -> dict[int, int]:
    grouped = batch.group_by("partition").aggregate([("offset", "max")])
    return dict(
        zip(grouped.column("partition").to_pylist(), grouped.column("offset_max").to_pylist(), strict=True)
    )


@dataclass
class LandingResult:
    rows: int = 0
    commits: int = 0
    offsets: dict[int, tuple[int, int]] = field(default_factory=dict)  # partition -> (first, last) landed
    lag_before: dict[int, int] = field(default_factory=dict)  # records behind Kafka at the start (not follow)


def land_topic(
    kafka: KafkaResource,
    appender: DeltaAppender,
    topic: str,
    app: str,
    batch_size: int = 50_000,
    batch_seconds: float = 5.0,
    follow: bool = False,
    idle_exit: float | None = None,
    log: Callable[[str], None] = print,
    to_table: Callable[[str, dict[str, list]], pa.Table] | None = None,
) -> LandingResult:
    """Append every record of `topic` not yet in the table, one Delta commit per batch.

    A batch closes at `batch_size` records or after `batch_seconds`, whichever comes first. Without
    `follow`, the run stops at the end offsets seen when it started; with it, it keeps landing new
    records (until `idle_exit` seconds pass without any, if given). `to_table` turns a batch's
    columns into the table's rows (default: the raw message layout)."""
    to_table = to_table or to_arrow
    table = appender.open()
    partitions = kafka.partitions(topic)
    start = appender.next_offsets(table, app, topic, partitions)
    end = None if follow else kafka.end_offsets(topic)
    result = LandingResult(lag_before={p: end[p] - start[p] for p in partitions} if end else {})
    log(f"landing {topic} into {appender.uri} from offsets {start}"
        + (f"; {sum(result.lag_before.values())} records behind" if end else " (following)"))  # fmt: skip
    with kafka.reader(topic, start, end) as reader:
        idle_since = time.monotonic()
        while follow or not reader.done:
            cols = reader.next_batch(batch_size, batch_seconds)
            if not cols["offset"]:
                if idle_exit is not None and time.monotonic() - idle_since > idle_exit:
                    break
                continue
            idle_since = time.monotonic()
            batch = to_table(topic, cols)
            last = last_offsets(batch)
            txns = [Transaction(app_id=txn_app_id(app, topic, p), version=o) for p, o in sorted(last.items())]
            appender.commit(table, appender.write_files(batch), txns, {"lakehouse.source": f"kafka:{topic}"})
            reader.commit_hint(last)
            for p, o in last.items():
                result.offsets[p] = (result.offsets.get(p, (start[p], o))[0], o)
            result.rows += batch.num_rows
            result.commits += 1
            log(
                f"  committed {batch.num_rows} records at table version {table.version()} ({result.rows} so far)"
            )
    return result


def raw_appender(uri: str, storage_options: dict[str, str]) -> DeltaAppender:
    return DeltaAppender(uri=uri, storage_options=storage_options, schema=RAW_SCHEMA)
