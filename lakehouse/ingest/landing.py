"""Kafka -> Delta landing: the project's one ingest machinery (events now, CDC later).

The guarantee comes from the Delta log, not from the consumer group: every commit that
appends a batch also records, in the same transaction, a Delta `txn` action per topic
partition (`app_id = <app>:<topic>:<partition>`, `version = last offset landed`). A run starts
each partition right after the offset recorded in the table, so a crash before the commit
lands nothing and the next run re-reads the same records; a crash after it re-reads nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from lakehouse.ingest.delta_sink import landed_partitions, upload_files
from lakehouse.ingest.exactly_once import MarkedTable, table_identity
from lakehouse.resources.kafka import KafkaResource
from lakehouse.stack.errors import StackError

RAW_SCHEMA = pa.schema([
    pa.field("topic", pa.string(), nullable=False),
    pa.field("partition", pa.int32(), nullable=False),
    pa.field("offset", pa.int64(), nullable=False),
    pa.field("kafka_timestamp", pa.timestamp("ms", tz="UTC")),
    pa.field("key", pa.binary()),
    pa.field("value", pa.binary()),
    pa.field("ingested_at", pa.timestamp("us", tz="UTC"), nullable=False),
])  # fmt: skip


MIN_MS, MAX_MS = -62_135_596_800_000, 253_402_300_799_999  # 0001-01-01 .. 9999-12-31: what a timestamp holds


def kafka_timestamps(values: list[int | None]) -> pa.Array:
    """Kafka record timestamps as a column; one a timestamp cannot hold (or -1: none) becomes null."""
    arr = pa.array(values, pa.int64())
    bad = pc.or_(pc.less(arr, 0), pc.greater(arr, MAX_MS))
    return pc.if_else(bad, pa.scalar(None, pa.int64()), arr).cast(pa.timestamp("ms", tz="UTC"))


def to_arrow(topic: str, cols: dict[str, list]) -> pa.Table:
    n = len(cols["offset"])
    return pa.table(
        {
            "topic": pa.repeat(topic, n) if n else pa.array([], pa.string()),
            "partition": pa.array(cols["partition"], pa.int32()),
            "offset": pa.array(cols["offset"], pa.int64()),
            "kafka_timestamp": kafka_timestamps(cols["timestamp_ms"]),
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
    max_lag_s: float = 0.0  # longest a landed record waited between Kafka's timestamp and its commit

    def figures(self) -> dict:
        """Numeric metadata of a landing: what it landed and how far behind Kafka it was."""
        import dagster as dg

        return {"rows_landed": dg.MetadataValue.int(self.rows), "commits": dg.MetadataValue.int(self.commits),
                "records_behind_at_start": dg.MetadataValue.int(sum(self.lag_before.values())),
                "landing_lag_s": dg.MetadataValue.float(round(self.max_lag_s, 3))}  # fmt: skip


def land_topic(
    kafka: KafkaResource,
    target: MarkedTable,
    batch_size: int = 50_000,
    batch_seconds: float = 5.0,
    follow: bool = False,
    idle_exit: float | None = None,
    log: Callable[[str], None] = print,
    to_table: Callable[[str, dict[str, list]], pa.Table] | None = None,
    partitions: list[int] | None = None,
) -> LandingResult:
    """Append every record of the target's topic not yet in the table, one Delta commit per batch.

    A batch closes at `batch_size` records or after `batch_seconds`, whichever comes first. Without
    `follow`, the run stops at the end offsets seen when it started; with it, it keeps landing new
    records (until `idle_exit` seconds pass without any, if given). `to_table` turns a batch's
    columns into the table's rows (default: the raw message layout). `partitions` lands only those
    (default: all); every commit carries the marks of all the partitions this run holds, so another
    writer holding one of them at the same time makes one of the two stop (exactly_once.py).

    Before reading, each partition's mark is checked against what Kafka still has: a gap (records
    deleted by retention, a recreated topic, fewer partitions) stops the landing with `OffsetGap`
    instead of skipping or re-reading anything (`acknowledge_gaps` records an accepted gap)."""
    if batch_size < 1 or batch_seconds <= 0:
        raise ValueError(f"batch_size must be >= 1 and batch_seconds > 0 (got {batch_size}, {batch_seconds})")
    to_table = to_table or to_arrow
    topic = target.topic
    target.open()
    held = partitions_to_land(kafka, target, partitions)
    position = target.next_offsets(held)
    watermarks = kafka.watermarks(topic)
    check_offsets(target, watermarks, position, landed_partitions(target.table) if target.table else [])
    check_incarnation(target, kafka.topic_id(topic))
    end = None if follow else {p: watermarks[p][1] for p in held}
    result = LandingResult(lag_before={p: end[p] - position[p] for p in held} if end else {})
    log(f"landing {topic} into {target.uri} from offsets {position}"
        + (f"; {sum(result.lag_before.values())} records behind" if end else " (following)"))  # fmt: skip
    with kafka.reader(topic, position, end) as reader:
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
            for p, o in last.items():
                result.offsets[p] = (result.offsets.get(p, (position[p], o))[0], o)
                position[p] = o + 1
            adds = upload_files(target.uri, target.storage_options, batch)
            target.commit_files(adds, dict(position), f"kafka:{topic}")
            oldest_ms = min((t for t in cols["timestamp_ms"] if t and t > 0), default=None)
            if oldest_ms is not None:
                result.max_lag_s = max(result.max_lag_s, time.time() - oldest_ms / 1000)
            reader.commit_hint(last)
            result.rows += batch.num_rows
            result.commits += 1
            log(f"  committed {batch.num_rows} records at table version {target.table.version()} "
                f"({result.rows} so far)")  # fmt: skip
    return result


def partitions_to_land(kafka: KafkaResource, target: MarkedTable, only: list[int] | None) -> list[int]:
    existing = kafka.partitions(target.topic)
    if only is None:
        return existing
    unknown = sorted(set(only) - set(existing))
    if unknown:
        raise OffsetGap(
            f"{target.topic} has no partition(s) {unknown} (it has {existing})",
            fix="choose partitions the topic has",
        )
    return sorted(set(only))


class OffsetGap(StackError):
    """The table's position in a partition is no longer in Kafka: landing on would skip or repeat records."""


def check_offsets(target: MarkedTable, watermarks: dict[int, tuple[int, int]], position: dict[int, int],
                  landed: list[int]) -> None:  # fmt: skip
    """Refuse to land when a mark and Kafka disagree; never reset behind the user's back."""
    ack = f"`lakehouse ingest acknowledge-gap --topic {target.topic}`"
    problems, fixes = [], set()
    for p in sorted(set(landed) - set(watermarks)):
        mark = target.next_offsets([p])[p]
        problems.append(f"partition {p} (the table holds offsets up to {mark - 1}) is gone: the topic has "
                        f"{len(watermarks)} partition(s) now")  # fmt: skip
        fixes.add("the topic was recreated with fewer partitions: land it into a new table (another "
                  "LAKEHOUSE_SCHEMA_PREFIX or topic), or recreate it with the partitions it had")  # fmt: skip
    for p, mark in sorted(position.items()):
        low, high = watermarks[p]
        if mark < low:
            problems.append(f"partition {p}: the table's next offset is {mark}, but Kafka keeps only "
                            f"{low}..{high - 1}: {low - mark} records were deleted before they were landed")  # fmt: skip
            fixes.add(f"if those records are lost for good, {ack} records the gap in the table's history and "
                      "lands on from Kafka's first offset; otherwise restore them to the topic first")  # fmt: skip
        elif mark > high:
            problems.append(f"partition {p}: the table's next offset is {mark}, but Kafka's latest is {high} "
                            f"(range {low}..{high - 1}): the topic was deleted and recreated, or truncated")  # fmt: skip
            fixes.add("its offsets restart, so landing it into this table would repeat offsets: land the new "
                      "topic into a new table (another LAKEHOUSE_SCHEMA_PREFIX or topic name)")  # fmt: skip
    if problems:
        raise OffsetGap(f"cannot land {target.topic} into {target.uri} without skipping or repeating records: "
                        + "; ".join(problems), fix="; ".join(sorted(fixes)))  # fmt: skip


TOPIC_ID = "lakehouse.kafka_topic_id"  # in every landing commit: which incarnation of the topic it read


def check_incarnation(target: MarkedTable, topic_id: str | None) -> None:
    """Refuse a topic that was deleted and recreated since the table last landed it, even when the new
    topic already has more records than the table's marks (the offsets alone cannot tell then)."""
    if topic_id is None:
        return
    landed_from = target.identity().get(TOPIC_ID)
    if landed_from and landed_from != topic_id:
        raise OffsetGap(
            f"cannot land {target.topic} into {target.uri}: the topic was deleted and recreated (Kafka topic id "
            f"{topic_id}; the table landed {landed_from}), so its offsets restart and would repeat the table's",
            fix="land the new topic into a new table (another LAKEHOUSE_SCHEMA_PREFIX or topic name)",
        )
    target.metadata[TOPIC_ID] = topic_id  # in each commit's info too, for whoever reads the history
    target.remember(**{TOPIC_ID: topic_id})


def acknowledge_gaps(
    kafka: KafkaResource, target: MarkedTable, log: Callable[[str], None] = print
) -> list[dict]:
    """Accept that records deleted from Kafka before they were landed are lost: one commit moves each
    such partition's mark to Kafka's first offset, records the gap in that commit's info and in the
    table's identity (its description), which the raw asset shows in its metadata."""
    target.open()
    watermarks = kafka.watermarks(target.topic)
    position = target.next_offsets(sorted(watermarks))
    gaps = [{"partition": p, "from_offset": position[p], "to_offset": low - 1, "records": low - position[p]}
            for p, (low, _high) in sorted(watermarks.items()) if position[p] < low]  # fmt: skip
    if not gaps:
        log(f"{target.topic}: no gap to acknowledge in {target.uri}")
        return []
    if target.table is None:
        raise OffsetGap(f"{target.uri} does not exist yet", fix="land the topic once first")
    upto = {**position, **{g["partition"]: g["to_offset"] + 1 for g in gaps}}
    target.mark(upto, f"kafka:{target.topic}", metadata={"lakehouse.gap": json.dumps(gaps)})
    target.remember(gaps=[*recorded_gaps(target.table), *gaps])
    for g in gaps:
        log(f"{target.topic} partition {g['partition']}: acknowledged {g['records']} lost records "
            f"(offsets {g['from_offset']}..{g['to_offset']}) at table version {target.table.version()}")  # fmt: skip
    return gaps


def recorded_gaps(table: DeltaTable) -> list[dict]:
    """Every gap acknowledged for a table (oldest first), from its identity (one metadata read)."""
    return table_identity(table).get("gaps", [])


def raw_target(uri: str, storage_options: dict[str, str], topic: str, app: str) -> MarkedTable:
    return MarkedTable(uri, storage_options, app, topic, schema=RAW_SCHEMA)
