"""Raw and bronze clickstream: Kafka -> Delta exactly as received, then typed, deduplicated and
checked, with every rejected message in a dead-letter table."""

import time

import dagster as dg

from lakehouse.ingest.landing import land_topic, raw_target, recorded_gaps
from lakehouse.ingest.refine import refine
from lakehouse.policies import PLATFORM_OWNER, STREAMING_FRESHNESS
from lakehouse.resources import KafkaResource, LakeResource, TrinoResource
from lakehouse.table_figures import table_figures

RAW_APP_ID = "lakehouse-raw"
# Concurrency pools (limit 1 each: dagster.yaml's `concurrency.pools.default_limit`, written by `lakehouse stack
# up`): two runs never write one Kafka-fed table at once. The commit protocol would stop the second cleanly
# anyway (exactly_once.py); the pool keeps it from being started.
LANDING_POOL = "landing_raw_clickstream_events"
RAW_KEY = dg.AssetKey(["raw", "clickstream_events"])
BRONZE_KEY = dg.AssetKey(["bronze", "clickstream_events"])
DEAD_LETTERS_KEY = dg.AssetKey(["bronze", "clickstream_dead_letters"])


class RawEventsConfig(dg.Config):
    batch_size: int = 50_000  # records per Delta commit, at most
    batch_seconds: float = 5.0  # a batch closes after this long even if smaller


@dg.asset(
    key=RAW_KEY,
    group_name="raw",
    owners=[PLATFORM_OWNER],
    freshness_policy=STREAMING_FRESHNESS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=LANDING_POOL,
    kinds={"kafka", "delta"},
    description=(
        "Clickstream messages exactly as received from Kafka (key and value bytes), with their "
        "topic, partition, offset and Kafka timestamp. Landed exactly once: each commit records the "
        "last offset per partition in the Delta log, and a run resumes from the table."
    ),
)
def raw_clickstream_events(
    context: dg.AssetExecutionContext,
    config: RawEventsConfig,
    kafka: KafkaResource,
    lake: LakeResource,
    trino: TrinoResource,
) -> dg.MaterializeResult:
    started = time.monotonic()
    uri = lake.table_uri("raw", "clickstream_events")
    result = land_topic(kafka, raw_target(uri, lake.storage_options, kafka.events_topic, RAW_APP_ID),
                        batch_size=config.batch_size, batch_seconds=config.batch_seconds,
                        log=context.log.info)  # fmt: skip
    table = lake.table("raw", "clickstream_events")
    trino.register_if_reachable(lake, "raw", "clickstream_events", context.log.warning)
    return dg.MaterializeResult(
        metadata={
            "trino_table": trino.qualified(lake, "raw", "clickstream_events"),
            "topic": kafka.events_topic,
            **result.figures(),
            **table_figures(table, started),
            "table_uri": uri,
            "offsets_landed": {str(p): f"{a}..{b}" for p, (a, b) in sorted(result.offsets.items())},
            # Records Kafka deleted before they were landed, accepted with `lakehouse ingest acknowledge-gap`.
            "gaps_acknowledged": recorded_gaps(table) if table else [],
        }
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            BRONZE_KEY, deps=[RAW_KEY], group_name="bronze", owners=[PLATFORM_OWNER],
            freshness_policy=STREAMING_FRESHNESS, kinds={"python", "delta"},
            description=(
                "Typed clickstream events: one row per event_id (the first delivery wins, across all "
                "batches), event_time in UTC, partitioned by event_date so late events land in their own "
                "day. New optional fields become new columns."
            ),
        ),
        dg.AssetSpec(
            DEAD_LETTERS_KEY, deps=[RAW_KEY], group_name="bronze", owners=[PLATFORM_OWNER],
            freshness_policy=STREAMING_FRESHNESS, kinds={"python", "delta"},
            description=(
                "Every raw message that could not become a bronze event (broken JSON, a missing required "
                "field, a wrong type, an incompatible schema change), with its bytes, the reason, and its "
                "topic, partition, offset and Kafka timestamp. Nothing is dropped silently."
            ),
        ),
    ],
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="refine_bronze_clickstream",
)  # fmt: skip
def bronze_clickstream(
    context: dg.AssetExecutionContext, kafka: KafkaResource, lake: LakeResource, trino: TrinoResource
):
    started = time.monotonic()
    result = refine(
        lake.table_uri("raw", "clickstream_events"),
        lake.table_uri("bronze", "clickstream_events"),
        lake.table_uri("bronze", "clickstream_dead_letters"),
        lake.storage_options, kafka.events_topic, RAW_APP_ID, log=context.log.info,
        max_new_columns=lake.bronze_max_new_columns,
    )  # fmt: skip
    for table in (
        "clickstream_events",
        "clickstream_dead_letters",
    ):  # queryable in Trino from the first write
        trino.register_if_reachable(lake, "bronze", table, context.log.warning)
    yield dg.MaterializeResult(
        asset_key=BRONZE_KEY,
        metadata={
            "raw_rows_read": result.raw_rows_read,
            "rows_inserted": result.inserted,
            "duplicates_dropped": result.duplicates,
            "new_columns": result.new_columns,
            **table_figures(lake.table("bronze", "clickstream_events"), started),
            "table_uri": lake.table_uri("bronze", "clickstream_events"),
            "trino_table": trino.qualified(lake, "bronze", "clickstream_events"),
        },
    )
    yield dg.MaterializeResult(
        asset_key=DEAD_LETTERS_KEY,
        metadata={
            "dead_letters": result.dead_letters,
            **table_figures(lake.table("bronze", "clickstream_dead_letters"), started),
            "reasons": dict(result.reasons.most_common()),
            "trino_table": trino.qualified(lake, "bronze", "clickstream_dead_letters"),
        },  # fmt: skip
    )
