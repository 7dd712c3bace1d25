"""Raw and bronze clickstream: Kafka -> Delta exactly as received, then typed and deduplicated."""

from collections import Counter

import dagster as dg
from deltalake import write_deltalake

from lakehouse.ingest.bronze import to_bronze
from lakehouse.ingest.landing import land_topic
from lakehouse.policies import PLATFORM_OWNER, STREAMING_FRESHNESS
from lakehouse.resources import KafkaResource, LakeResource

RAW_APP_ID = "lakehouse-raw"


class RawEventsConfig(dg.Config):
    batch_size: int = 50_000


@dg.asset(
    key=["raw", "clickstream_events"],
    group_name="raw",
    owners=[PLATFORM_OWNER],
    freshness_policy=STREAMING_FRESHNESS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"kafka", "delta"},
    description=(
        "Clickstream messages exactly as received from Kafka (key and value bytes), with their "
        "topic, partition, offset and Kafka timestamp. Appended in batches; each commit records the "
        "last offset per partition in the Delta log, so a run resumes where the last commit ended."
    ),
)
def raw_clickstream_events(
    context: dg.AssetExecutionContext, config: RawEventsConfig, kafka: KafkaResource, lake: LakeResource
) -> dg.MaterializeResult:
    uri = lake.table_uri("raw", "clickstream_events")
    result = land_topic(kafka, uri, lake.storage_options, kafka.events_topic, RAW_APP_ID,
                        batch_size=config.batch_size, log=context.log.info)  # fmt: skip
    table = lake.table("raw", "clickstream_events")
    return dg.MaterializeResult(
        metadata={
            "topic": kafka.events_topic,
            "rows_landed": result.rows,
            "commits": result.commits,
            "table_uri": uri,
            "table_version": table.version() if table else -1,
            "offsets_landed": {str(p): f"{a}..{b}" for p, (a, b) in sorted(result.offsets.items())},
        }
    )


@dg.asset(
    key=["bronze", "clickstream_events"],
    deps=[raw_clickstream_events],
    group_name="bronze",
    owners=[PLATFORM_OWNER],
    freshness_policy=STREAMING_FRESHNESS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"python", "delta"},
    description=(
        "Typed clickstream events: one row per event_id (the first delivery wins), event_time as a "
        "UTC timestamp, partitioned by event_date so late events land in their own day."
    ),
)
def bronze_clickstream_events(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    batch = to_bronze(lake.read("raw", "clickstream_events"))
    uri = lake.table_uri("bronze", "clickstream_events")
    write_deltalake(uri, batch.table, mode="overwrite", partition_by=["event_date"],
                    schema_mode="overwrite", storage_options=lake.storage_options)  # fmt: skip
    for partition, offset, reason in batch.rejected[:20]:
        context.log.warning(f"rejected message {partition}/{offset}: {reason}")
    per_day = Counter(str(d) for d in batch.table.column("event_date").to_pylist())
    return dg.MaterializeResult(
        metadata={
            "rows": batch.table.num_rows,
            "duplicates_dropped": batch.duplicates,
            "rejected": len(batch.rejected),
            "rows_per_day": dict(sorted(per_day.items())),
            "table_uri": uri,
        }
    )
