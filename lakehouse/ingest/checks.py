"""Asset checks of the raw and bronze clickstream tables."""

import json

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.ingest.assets import BRONZE_KEY, DEAD_LETTERS_KEY, RAW_APP_ID, raw_clickstream_events
from lakehouse.ingest.delta_sink import next_offsets, txn_app_id
from lakehouse.ingest.refine import BRONZE_APP
from lakehouse.resources import KafkaResource, LakeResource


class IngestLagConfig(dg.Config):
    max_lag_records: int = 100_000  # per partition; beyond this the check fails


def offsets_contiguous(lake: LakeResource, layer: str, table: str) -> dg.AssetCheckResult:
    """Per Kafka partition, the landed offsets of a table form one gap-free run with no repeats."""
    raw = lake.read(layer, table, columns=["partition", "offset"])
    stats = raw.group_by("partition").aggregate(
        [("offset", "count"), ("offset", "count_distinct"), ("offset", "min"), ("offset", "max")]
    )
    problems = {}
    for row in stats.to_pylist():
        span = row["offset_max"] - row["offset_min"] + 1
        if not (row["offset_count"] == row["offset_count_distinct"] == span):
            problems[str(row["partition"])] = (
                f"{row['offset_count']} rows, {row['offset_count_distinct']} distinct offsets, span {span}"
            )
    return dg.AssetCheckResult(passed=not problems, metadata={"rows": raw.num_rows, "problems": problems})


@dg.asset_check(asset=raw_clickstream_events, blocking=True,
                description="Per Kafka partition, the landed offsets form one gap-free run with no repeats.")  # fmt: skip
def raw_offsets_contiguous(lake: LakeResource) -> dg.AssetCheckResult:
    return offsets_contiguous(lake, "raw", "clickstream_events")


@dg.asset_check(asset=raw_clickstream_events,
                description="Ingest lag: Kafka's latest offset minus the offset recorded in the table, per partition.")  # fmt: skip
def raw_ingest_lag(config: IngestLagConfig, kafka: KafkaResource, lake: LakeResource) -> dg.AssetCheckResult:
    end = kafka.end_offsets(kafka.events_topic)
    landed = next_offsets(lake.table("raw", "clickstream_events"), RAW_APP_ID, kafka.events_topic, list(end))
    lag = {str(p): end[p] - landed[p] for p in end}
    worst = max(lag.values(), default=0)
    return dg.AssetCheckResult(
        passed=worst <= config.max_lag_records,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"lag_per_partition": lag, "max_lag": worst, "threshold": config.max_lag_records},
    )


@dg.asset_check(asset=BRONZE_KEY, blocking=True,
                description="event_id is present and unique: each event appears exactly once in bronze.")  # fmt: skip
def bronze_event_id_unique(lake: LakeResource) -> dg.AssetCheckResult:
    ids = lake.read("bronze", "clickstream_events", columns=["event_id"]).column("event_id")
    nulls = ids.null_count
    distinct = pc.count_distinct(ids).as_py()
    return dg.AssetCheckResult(
        passed=nulls == 0 and distinct == len(ids),
        metadata={"rows": len(ids), "distinct_event_ids": distinct, "null_event_ids": nulls},
    )


@dg.asset_check(asset=DEAD_LETTERS_KEY, blocking=True,
                description="Nothing lost: every raw message bronze has taken in is a bronze row, a dead "
                "letter, or a repeated delivery of an event that is in bronze.")  # fmt: skip
def every_raw_message_accounted_for(kafka: KafkaResource, lake: LakeResource) -> dg.AssetCheckResult:
    bronze_table = lake.table("bronze", "clickstream_events")
    raw = lake.read("raw", "clickstream_events", columns=["partition", "offset", "value"])
    marks = {p: bronze_table.transaction_version(txn_app_id(BRONZE_APP, kafka.events_topic, p))
             for p in set(raw.column("partition").to_pylist())}  # fmt: skip
    upto = pa.array(
        [-1 if marks[p] is None else marks[p] for p in raw.column("partition").to_pylist()], pa.int64()
    )
    taken = raw.filter(pc.less_equal(raw.column("offset"), upto))
    bronze = lake.read(
        "bronze", "clickstream_events", columns=["kafka_partition", "kafka_offset", "event_id"]
    )
    dead = lake.read("bronze", "clickstream_dead_letters", columns=["partition", "offset"])
    placed = pa.concat_tables([
        bronze.select(["kafka_partition", "kafka_offset"]).rename_columns(["partition", "offset"]),
        dead.select(["partition", "offset"]),
    ])  # fmt: skip
    rest = taken.join(placed, keys=["partition", "offset"], join_type="left anti")
    bronze_ids = set(bronze.column("event_id").to_pylist())
    unaccounted = []
    for p, o, value in zip(
        *(rest.column(c).to_pylist() for c in ("partition", "offset", "value")), strict=True
    ):
        try:
            event_id = json.loads(value).get("event_id")
        except ValueError:
            event_id = None
        if event_id not in bronze_ids:
            unaccounted.append(f"{p}/{o}")
    return dg.AssetCheckResult(
        passed=not unaccounted,
        metadata={
            "raw_messages_taken_in": taken.num_rows,
            "bronze_rows": bronze.num_rows,
            "dead_letters": dead.num_rows,
            "repeated_deliveries": rest.num_rows - len(unaccounted),
            "unaccounted": unaccounted[:50],
        },
    )
