"""Asset checks of the raw and bronze clickstream tables."""

import dagster as dg
import pyarrow.compute as pc

from lakehouse.ingest.assets import bronze_clickstream_events, raw_clickstream_events
from lakehouse.resources import LakeResource


@dg.asset_check(asset=raw_clickstream_events, blocking=True,
                description="Per Kafka partition, the landed offsets form one gap-free run with no repeats.")  # fmt: skip
def raw_offsets_contiguous(lake: LakeResource) -> dg.AssetCheckResult:
    raw = lake.read("raw", "clickstream_events", columns=["partition", "offset"])
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


@dg.asset_check(asset=bronze_clickstream_events, blocking=True,
                description="event_id is present and unique: each event appears exactly once in bronze.")  # fmt: skip
def bronze_event_id_unique(lake: LakeResource) -> dg.AssetCheckResult:
    ids = lake.read("bronze", "clickstream_events", columns=["event_id"]).column("event_id")
    nulls = ids.null_count
    distinct = pc.count_distinct(ids).as_py()
    return dg.AssetCheckResult(
        passed=nulls == 0 and distinct == len(ids),
        metadata={"rows": len(ids), "distinct_event_ids": distinct, "null_event_ids": nulls},
    )
