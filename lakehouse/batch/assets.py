"""Silver daily facts computed with PySpark, one Spark session for a whole partition range."""

import dagster as dg
from pyspark.sql import functions as F

from lakehouse.batch.funnel import product_funnel_daily
from lakehouse.ingest.assets import BRONZE_KEY
from lakehouse.policies import DAILY_FRESHNESS, DAILY_PARTITIONS, PLATFORM_OWNER
from lakehouse.resources import LakehouseSparkResource, LakeResource, TrinoResource


@dg.asset(
    key=["silver", "product_funnel_daily"],
    deps=[BRONZE_KEY],
    partitions_def=DAILY_PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="silver",
    owners=[PLATFORM_OWNER],
    freshness_policy=DAILY_FRESHNESS,
    kinds={"spark", "delta"},
    description=(
        "Daily product funnel facts: per day and product, impressions, clicks, product views, "
        "add-to-carts, checkouts, purchases, units and revenue. Computed by Spark from bronze; a run "
        "over a range of days replaces exactly those days (Delta replaceWhere)."
    ),
)
def silver_product_funnel_daily(
    context: dg.AssetExecutionContext, spark: LakehouseSparkResource, lake: LakeResource, trino: TrinoResource
) -> dg.MaterializeResult:
    window = context.partition_time_window
    first, after = window.start.date().isoformat(), window.end.date().isoformat()
    predicate = f"event_date >= '{first}' AND event_date < '{after}'"
    session = spark.spark_session
    events = (
        session.read.format("delta")
        .load(lake.table_uri("bronze", "clickstream_events"))
        .where(F.col("event_date") >= F.lit(first).cast("date"))
        .where(F.col("event_date") < F.lit(after).cast("date"))
    )
    facts = product_funnel_daily(events).cache()
    uri = lake.table_uri("silver", "product_funnel_daily")
    (
        facts.write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", predicate)
        .partitionBy("event_date")
        .save(uri)
    )
    per_day = {str(r["event_date"]): r["events"] for r in facts.groupBy("event_date").agg(
        F.sum("events").alias("events")).collect()}  # fmt: skip
    facts.unpersist()
    newly = trino.register_delta_table(lake.schema("silver"), "product_funnel_daily", uri)
    context.log.info(f"silver: wrote {first}..{after} (exclusive); registered in Trino: {newly}")
    return dg.MaterializeResult(
        metadata={
            "days": f"{first}..{after} (end exclusive)",
            "events_per_day": dict(sorted(per_day.items())),
            "empty_days": sorted(set(context.partition_keys) - set(per_day)),
            "table_uri": uri,
            "trino_table": f"{trino.catalog}.{lake.schema('silver')}.product_funnel_daily",
        }
    )
