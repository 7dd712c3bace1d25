"""Silver daily tables computed with PySpark: one Spark session for a whole partition range.

Each asset reads the range's bronze events, computes its table and writes it with Delta
`replaceWhere` on the range, so a run replaces exactly its days (a day without events becomes an
empty partition) and re-running any range gives the same rows. Each table is then registered in
Trino for dbt.
"""

import time
from collections.abc import Callable
from datetime import timedelta

import dagster as dg
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.batch.enrich import MERCHANT_COLUMNS, PRODUCT_COLUMNS, enriched_events
from lakehouse.batch.funnel import product_funnel_daily
from lakehouse.batch.sessions import SESSION_GAP_MINUTES, sessions
from lakehouse.cdc.assets import silver_key
from lakehouse.ingest.assets import BRONZE_KEY
from lakehouse.lifecycle.archive import refuse_archived_source
from lakehouse.policies import DAILY_FRESHNESS, DAILY_PARTITIONS, PLATFORM_OWNER, SPARK_POOL
from lakehouse.resources import LakehouseSparkResource, LakeResource, TrinoResource
from lakehouse.table_figures import table_figures

FUNNEL_KEY = dg.AssetKey(["silver", "product_funnel_daily"])
SESSIONS_KEY = dg.AssetKey(["silver", "sessions"])
ENRICHED_KEY = dg.AssetKey(["silver", "enriched_events"])
BRONZE_VERSION = "bronze_version"  # metadata: the version of bronze a silver materialization was built from


def read_bronze(session: SparkSession, lake: LakeResource, first: str, after: str, version: int) -> DataFrame:
    """Bronze's events of [first, after) as of one version: the landing keeps committing meanwhile, and the
    run's checks compare silver with the bronze it was built from (its metadata's `bronze_version`)."""
    return (
        session.read.format("delta")
        .option("versionAsOf", version)
        .load(lake.table_uri("bronze", "clickstream_events"))
        .where(F.col("event_date") >= F.lit(first).cast("date"))
        .where(F.col("event_date") < F.lit(after).cast("date"))
    )


def write_days(
    context: dg.AssetExecutionContext,
    spark: LakehouseSparkResource,
    lake: LakeResource,
    trino: TrinoResource,
    table: str,
    compute: Callable[[SparkSession, DataFrame], DataFrame],
    events: DataFrame,
    metadata: dict | None = None,
    asset_key: dg.AssetKey | None = None,
) -> dg.MaterializeResult:
    """Compute `table` from the run's bronze `events`, replace exactly the run's days, register it in Trino."""
    window = context.partition_time_window
    first, after = window.start.date().isoformat(), window.end.date().isoformat()
    session = spark.spark_session
    started = time.monotonic()
    rows = compute(session, events).cache()
    uri = lake.table_uri("silver", table)
    (
        rows.write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", f"event_date >= '{first}' AND event_date < '{after}'")
        .partitionBy("event_date")
        .save(uri)
    )
    per_day = {str(r["event_date"]): r["n"] for r in rows.groupBy("event_date").agg(F.count(F.lit(1)).alias("n"))
               .collect()}  # fmt: skip
    rows.unpersist()
    trino.register_lake_table(lake, "silver", table)
    empty = sorted(set(context.partition_keys) - set(per_day))
    seconds = time.monotonic() - started
    context.log.info(f"silver/{table}: replaced {first}..{after} (exclusive), {sum(per_day.values())} rows, "
                     f"{len(empty)} empty days, in {seconds:.1f}s")  # fmt: skip
    return dg.MaterializeResult(asset_key=asset_key, metadata={
        "days": f"{first}..{after} (end exclusive)", "rows": sum(per_day.values()),
        "rows_per_day": dict(sorted(per_day.items())), "empty_days": empty, "table_uri": uri,
        "trino_table": f"{trino.catalog}.{lake.schema('silver')}.{table}",
        "spark_application_id": session.conf.get("spark.app.id"), **table_figures(lake.table("silver", table), started),
        # per partition, Dagster records the row count on each day this run built: the days' rows, not the table's
        "dagster/row_count": dg.MetadataValue.int(sum(per_day.values())),
        **(metadata or {}),
    })  # fmt: skip


SPECS = {
    FUNNEL_KEY: (
        "Daily product funnel facts: per day and product, impressions, clicks, product views, add-to-carts, "
        "checkouts, purchases, units and revenue (events without a product under product_id NULL).",
        [],
    ),
    SESSIONS_KEY: (
        f"User sessions per day: a user's events with no gap over {SESSION_GAP_MINUTES} minutes (cut at "
        "midnight UTC), with start, end, duration, event counts, revenue, whether it converted (a purchase) "
        "and whether it abandoned a cart (an add-to-cart and no purchase).",
        [],
    ),
    ENRICHED_KEY: (
        "Every bronze event of the day with its product (title, category, catalogue price) and merchant "
        "(name, country) from the CDC mirror of PostgreSQL; NULL where the mirror does not have them (yet).",
        [silver_key("products"), silver_key("merchants")],
    ),
}


def enrich(context: dg.AssetExecutionContext, lake: LakeResource):
    mirrored = {t: lake.table("silver", t) is not None for t in ("products", "merchants")}
    if not all(mirrored.values()):
        context.log.warning(f"CDC mirror missing {[t for t, ok in mirrored.items() if not ok]}: product and "
                            "merchant columns stay NULL; materialize silver_cdc_current_state to fill them")  # fmt: skip

    def compute(session: SparkSession, events: DataFrame) -> DataFrame:
        def mirror(table: str, empty_schema):
            if mirrored[table]:
                return session.read.format("delta").load(lake.table_uri("silver", table))
            return session.createDataFrame([], empty_schema)

        return enriched_events(
            events, mirror("products", PRODUCT_COLUMNS), mirror("merchants", MERCHANT_COLUMNS)
        )

    return compute, {"cdc_mirror": mirrored}


@dg.multi_asset(
    name="silver_daily",
    specs=[
        dg.AssetSpec(
            key,
            deps=[BRONZE_KEY, *deps],
            group_name="silver",
            owners=[PLATFORM_OWNER],
            freshness_policy=DAILY_FRESHNESS,
            kinds={"spark", "delta"},
            description=description,
            skippable=True,
        )  # fmt: skip
        for key, (description, deps) in SPECS.items()
    ],
    partitions_def=DAILY_PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    can_subset=True,
    pool=SPARK_POOL,
)
def silver_daily(
    context: dg.AssetExecutionContext, spark: LakehouseSparkResource, lake: LakeResource, trino: TrinoResource
):
    """The silver daily tables selected, in one Spark session for the run's whole range of days (bronze is
    read once and cached for all of them)."""
    window = context.partition_time_window
    refuse_archived_source(lake._settings(), "bronze", "clickstream_events", window.start.date(),
                           window.end.date() - timedelta(days=1))  # fmt: skip
    session = spark.spark_session
    bronze_version = lake.existing("bronze", "clickstream_events").version()
    events = read_bronze(
        session, lake, window.start.date().isoformat(), window.end.date().isoformat(), bronze_version
    ).cache()
    computations = {
        FUNNEL_KEY: ("product_funnel_daily", lambda _, e: product_funnel_daily(e), None),
        SESSIONS_KEY: ("sessions", lambda _, e: sessions(e), None),
    }
    if ENRICHED_KEY in context.selected_asset_keys:
        compute, extra = enrich(context, lake)
        computations[ENRICHED_KEY] = ("enriched_events", compute, extra)
    for key, (table, compute, extra) in computations.items():
        if key in context.selected_asset_keys:
            metadata = {**(extra or {}), BRONZE_VERSION: bronze_version}
            yield write_days(context, spark, lake, trino, table, compute, events, metadata, asset_key=key)
    events.unpersist()
