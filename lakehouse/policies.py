"""Owners and freshness expectations per layer, in one place."""

from datetime import timedelta

import dagster as dg

PLATFORM_OWNER = "team:data-platform"
ANALYTICS_OWNER = "team:analytics-engineering"

# Streaming layers are landed continuously by sensors: stale within the hour is a problem.
STREAMING_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=2), warn_window=timedelta(hours=1)
)
# Daily layers are built each morning for yesterday: late after 06:00 UTC.
DAILY_FRESHNESS = dg.FreshnessPolicy.cron(deadline_cron="0 6 * * *", lower_bound_delta=timedelta(hours=24))
# the sensors and schedules that keep every layer within its freshness policy (README, "Automation"); the
# automation test and bench-freshness switch exactly these on in a deployment of their own
FRESHNESS_AUTOMATION = ("clickstream_kafka_sensor", "cdc_kafka_sensor", "intraday_batch_schedule", "gold_automation",
                        "late_events_sensor", "stream_jobs_watchdog", "realtime_kafka_sensor")  # fmt: skip

DAILY_PARTITIONS = dg.DailyPartitionsDefinition(start_date="2025-01-01", end_offset=1)

# Spark: a session takes a core and a gigabyte. Its steps share one pool, its runs carry this tag, and the
# instance admits LAKEHOUSE_DAGSTER_SPARK_RUNS such runs at once (dagster.yaml's tag concurrency limit).
SPARK_POOL = "spark"
SPARK_RUN_TAG = ("lakehouse/engine", "spark")


def check_pool_limits(defs: dg.Definitions, limits: dict[str, int]) -> None:
    """Refuse, when the code location loads, a per-pool limit (LAKEHOUSE_DAGSTER_POOL_LIMITS) naming a pool
    no asset uses: a typo would otherwise leave the real pool at the default, silently."""
    pools = {pool for node in defs.resolve_asset_graph().asset_nodes for pool in (node.pools or ())}
    for job in defs.get_repository_def().get_all_jobs():  # ops of op jobs (table maintenance) have pools too
        pools |= {node.pool for node in job.graph.node_defs if getattr(node, "pool", None)}
    unknown = sorted(set(limits) - pools)
    if unknown:
        raise dg.DagsterInvalidDefinitionError(
            f"LAKEHOUSE_DAGSTER_POOL_LIMITS names {', '.join(map(repr, unknown))}, which no asset uses as its "
            f"concurrency pool. The pools are: {', '.join(sorted(pools))}. Fix the name or remove it."
        )
