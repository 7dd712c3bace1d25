"""Benchmark: warm dashboard queries through Trino on the gold tables, and Spark backfill throughput.

1. A week of clickstream events goes through the whole pipeline in a namespace of its own
   (`dagster asset materialize --select 'not group:lifecycle' --partition-range`), as the demo does.
2. Spark: the time to start a Spark session (with the lake's jars), then the silver backfill of the
   week as one run in that warm session: bronze rows per second. Baseline in the same run: a plain
   Spark scan and count of the same bronze rows.
3. Trino: five typical dashboard queries on the gold tables, each run warm `--repeat` times; p50 and
   p95 over all runs. Baseline in the same run: `SELECT 1` round trips.
The namespace's stream jobs and Pinot tables, which step 1 starts with the rest of the graph, are
stopped and dropped as soon as step 1 is done (they would compete with Spark and Trino for the CPUs),
and the Spark session's JVM once step 2 is; everything the benchmark started is stopped at the end
whatever happens (_cleanup.py).
Figures line: `trino_p50_ms=.. trino_p95_ms=.. backfill_rows_per_s=.. spark_start_s=..`; then
`leftover_processes=0`.
"""

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

from _cleanup import Teardown, stop_spark
from _stats import percentile

QUERIES = {
    "kpis of the last 7 days": "SELECT event_date, active_users, sessions, conversion_rate, revenue "
    "FROM {gold}.daily_kpis WHERE event_date >= DATE '{first}' ORDER BY event_date",
    "top products by click-through": "SELECT product_id, sum(clicks) * 1.0 / sum(impressions) AS ctr "
    "FROM {gold}.product_ctr WHERE event_date >= DATE '{first}' GROUP BY product_id "
    "HAVING sum(impressions) >= 20 ORDER BY ctr DESC LIMIT 10",
    "cart abandonment trend": "SELECT event_date, abandonment_rate, sessions_with_cart "
    "FROM {gold}.cart_abandonment ORDER BY event_date",
    "top merchants by revenue": "SELECT merchant_id, merchant_name, sum(revenue) AS revenue "
    "FROM {gold}.merchant_sales_daily GROUP BY merchant_id, merchant_name ORDER BY revenue DESC LIMIT 10",
    "suspicious purchases per day": "SELECT event_date, reason, count(*), sum(purchase_amount) "
    "FROM {gold}.suspicious_purchases GROUP BY event_date, reason ORDER BY event_date",
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000, help="events over the week (default 200000)")
    parser.add_argument("--repeat", type=int, default=20, help="warm runs of each query (default 20)")
    args = parser.parse_args()

    tag = f"bq{datetime.now(UTC):%m%d%H%M%S}"
    os.environ.update(
        {"LAKEHOUSE_SCHEMA_PREFIX": f"{tag}_", "LAKEHOUSE_EVENTS_TOPIC": f"{tag}.clickstream.events"}
    )
    from lakehouse.realtime import flink
    from lakehouse.realtime.pinot import PinotClient
    from lakehouse.settings import get_settings

    s = get_settings()
    with Teardown(tag, home=s.home) as td:
        # The whole graph includes realtime/*, which starts the namespace's three Flink jobs (kept running
        # by design, about 4 GB), and pinot/*, whose tables keep consuming Kafka: both are undone here.
        td.watch_stream_jobs(flink.namespace(s))
        td.watch_pinot_tables(PinotClient.from_settings(s), s.schema_prefix)
        benchmark(args, tag, s, td)
    return 0


def benchmark(args, tag: str, s, td: Teardown) -> None:
    from lakehouse.demo import dagster_env, materialize_command
    from lakehouse.generator.clickstream import GeneratorConfig, encode, event_day, generate_events, produce
    from lakehouse.resources import LakehouseSparkResource, LakeResource, TrinoResource
    from lakehouse.resources.spark import lake_session, spark_config, spark_jars

    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(seconds=1)
    print(f"pipeline: {args.events} events over 7 days into namespace {tag} ...", flush=True)
    events = generate_events(GeneratorConfig(events=args.events, days=7, seed=11, end=end))
    produce(s, s.events_topic, encode(events), progress=False)
    days = sorted({event_day(e) for e in events})
    started = time.monotonic()
    proc = td.run(materialize_command(days[0], days[-1]), "dagster asset materialize", env=dagster_env(s))
    if proc.returncode:
        raise SystemExit(f"materialize failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
    print(f"pipeline: raw to gold in {time.monotonic() - started:.0f}s", flush=True)
    td.stop_stream_jobs()
    td.drop_pinot_tables()
    print("pipeline: the namespace's stream jobs stopped and its Pinot tables dropped", flush=True)

    # Spark: session start, then the week's backfill in the warm session (the asset reuses it).
    import dagster as dg

    from lakehouse.batch.assets import silver_daily
    from lakehouse.resources import build_resources

    jars = spark_jars(s.cache_dir, log=lambda _: None)
    t0 = time.monotonic()
    td.on_exit("Spark session", stop_spark)
    session = lake_session(s, {**spark_config(s, jars), "spark.jars": ",".join(jars)})
    spark_start = time.monotonic() - t0
    lake = LakeResource.from_settings(s)
    t0 = time.monotonic()
    rows = session.read.format("delta").load(lake.table_uri("bronze", "clickstream_events")).count()
    scan_s = time.monotonic() - t0
    resources = build_resources(s)
    assert isinstance(resources["spark"], LakehouseSparkResource)
    tags = {"dagster/asset_partition_range_start": days[0].isoformat(),
            "dagster/asset_partition_range_end": days[-1].isoformat()}  # fmt: skip
    t0 = time.monotonic()
    assert dg.materialize([silver_daily], resources=resources, tags=tags).success
    backfill_s = time.monotonic() - t0
    backfill_rate, scan_rate = rows / backfill_s, rows / scan_s
    print(f"spark: session start {spark_start:.1f}s; backfill of 3 silver tables over {len(days)} days: {rows:,} "
          f"rows in {backfill_s:.1f}s = {backfill_rate:,.0f} rows/s; plain scan+count {scan_rate:,.0f} rows/s "
          f"(ratio {backfill_rate / scan_rate:.2f})", flush=True)  # fmt: skip

    stop_spark()  # its JVM (2 GB of driver memory) has no part in the Trino figures

    trino = TrinoResource.from_settings(s)
    gold = f"{trino.catalog}.{lake.schema('gold')}"
    first = days[0].isoformat()
    baseline = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        trino.query("SELECT 1")
        baseline.append((time.perf_counter() - t0) * 1000)
    timings: list[float] = []
    for name, sql in QUERIES.items():
        sql = sql.format(gold=gold, first=first)
        for _ in range(2):  # warm-up: plans, metadata and file footers cached
            trino.query(sql)
        runs = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            trino.query(sql)
            runs.append((time.perf_counter() - t0) * 1000)
        timings += runs
        print(
            f"trino: {name:32s} p50 {statistics.median(runs):7.1f} ms  p95 {percentile(runs, 0.95):7.1f} ms"
        )
    p50, p95 = statistics.median(timings), percentile(timings, 0.95)
    print(f"trino: all queries p50 {p50:.1f} ms, p95 {p95:.1f} ms; SELECT 1 p50 {statistics.median(baseline):.1f} ms "
          f"(ratio {p50 / statistics.median(baseline):.1f})")  # fmt: skip
    print(
        f"trino_p50_ms={p50:.1f} trino_p95_ms={p95:.1f} backfill_rows_per_s={backfill_rate:.0f} "
        f"spark_start_s={spark_start:.1f}"
    )


if __name__ == "__main__":
    sys.exit(main())
