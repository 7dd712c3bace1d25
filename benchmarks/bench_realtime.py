"""Benchmark: merchant-dashboard queries on Apache Pinot under load, and data freshness.

In a namespace of its own (its topics, Flink job and Pinot tables, removed at the end):
1. The Flink CTR job runs on a recent stream of clickstream events (event-time order, ending now);
   its output fills the Pinot `product_ctr` table. `merchant_orders` consumes the orders' change
   stream, with a fresh PostgreSQL workload so that the last 15 minutes hold sales.
2. Load: the two dashboard queries (sales of the last 15 minutes per merchant; top products by
   click-through rate) alternate at `--qps` queries per second for `--seconds`, sent on a fixed
   schedule by a pool of threads (open loop: a slow answer does not slow the schedule down).
   Baseline in the same run: `SELECT COUNT(*)` on the same table at the same rate.
3. Freshness, two paths, `--samples` each:
   - produced: a record produced to a Pinot table's Kafka topic, until a query finds it;
   - committed: an order committed in PostgreSQL, through Debezium and Kafka, until a query finds it.
Last line: `pinot_p50_ms=.. pinot_p99_ms=.. freshness_p95_s=..` (freshness: the produced path).
"""

import argparse
import contextlib
import json
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def fmt(values: list[float], unit: str = "ms", scale: float = 1000.0, digits: int = 1) -> str:
    return " ".join(f"{name}={percentile(values, q) * scale:.{digits}f}{unit}" for name, q in
                    (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0)))  # fmt: skip


def load(client, queries: list[str], qps: float, seconds: float, threads: int = 8) -> tuple[list[float], int]:
    """Send the queries in turn on a fixed schedule; latencies in seconds and the number of errors."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def one(sql: str) -> None:
        nonlocal errors
        t0 = time.perf_counter()
        try:
            client.query(sql)
        except Exception:  # noqa: BLE001 - counted and reported
            with lock:
                errors += 1
            return
        with lock:
            latencies.append(time.perf_counter() - t0)

    total = int(qps * seconds)
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for i in range(total):
            delay = start + i / qps - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, queries[i % len(queries)])
    return latencies, errors


def wait_for(predicate, timeout: float, poll: float = 0.05) -> float | None:
    """Seconds until `predicate()` holds, or None after `timeout`."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if predicate():
            return time.perf_counter() - t0
        time.sleep(poll)
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=20_000, help="clickstream events for the CTR job")
    p.add_argument("--qps", type=float, default=50.0, help="dashboard queries per second")
    p.add_argument("--seconds", type=float, default=30.0, help="duration of the load")
    p.add_argument("--samples", type=int, default=30, help="freshness samples per path")
    args = p.parse_args()

    tag = f"bench_rt_{datetime.now(UTC):%m%d%H%M%S}"
    os.environ["LAKEHOUSE_SCHEMA_PREFIX"] = f"{tag}_"
    os.environ["LAKEHOUSE_EVENTS_TOPIC"] = f"{tag}.clickstream.events"

    import psycopg

    from lakehouse.cdc.workload import run_workload
    from lakehouse.generator.clickstream import GeneratorConfig, encode, generate_events, produce
    from lakehouse.realtime import flink
    from lakehouse.realtime.pinot import PINOT_TABLES, PinotClient, merchant_sales_sql, top_ctr_sql
    from lakehouse.resources.kafka import ensure_topic, make_producer
    from lakehouse.settings import get_settings
    from lakehouse.stack import manager

    s = get_settings()
    manager.up(s)
    client = PinotClient.from_settings(s)
    ctr_table, orders_table = s.pinot_table("product_ctr"), s.pinot_table("merchant_orders")
    alerts_table = s.pinot_table("purchase_alerts")
    try:
        print(
            f"1. data: {args.events:,} events through the Flink CTR job; an OLTP workload for the orders",
            flush=True,
        )
        ensure_topic(s.kafka_bootstrap, s.events_topic, partitions=s.events_partitions)
        ctr_job = flink.by_name("product_ctr")
        flink.start(s, ctr_job)
        now = datetime.now(UTC)
        events = generate_events(GeneratorConfig(events=args.events, days=1, end=now))
        events.sort(key=lambda e: e["event_time"])
        produce(s, s.events_topic, encode(events), progress=False)
        ensure_topic(s.kafka_bootstrap, s.realtime_topic("purchase_alerts"), partitions=1)
        for table in PINOT_TABLES:
            client.apply(table, s)
        run_workload(s, operations=300, progress=False)
        count = client.count
        waited = wait_for(lambda: count(ctr_table) > 0 and count(orders_table) > 0, 300, poll=1.0)
        if waited is None:
            print("bench: the Pinot tables stayed empty for 300 s", file=sys.stderr)
            return 1
        time.sleep(10)  # let the CTR job work through the stream
        print(
            f"   {count(ctr_table):,} product-minutes of CTR and {count(orders_table):,} orders in Pinot",
            flush=True,
        )

        since_ms = int((datetime.now(UTC) - timedelta(minutes=15)).timestamp() * 1000)
        day_ms = int((now - timedelta(days=1)).timestamp() * 1000)
        dashboard = [
            merchant_sales_sql(orders_table, since_ms, limit=10),
            top_ctr_sql(ctr_table, day_ms, min_impressions=5, limit=10),
        ]
        for sql in dashboard:
            print(f"   query: {sql[:110]}... -> {len(client.query(sql))} rows")
        for _ in range(20):  # warm-up
            for sql in dashboard:
                client.query(sql)

        print(f"2. load: {args.qps:g} queries/s for {args.seconds:g} s", flush=True)
        baseline, base_errors = load(
            client, [f"SELECT COUNT(*) FROM {ctr_table}"], args.qps, min(args.seconds, 10)
        )
        latencies, errors = load(client, dashboard, args.qps, args.seconds)
        print(f"   baseline SELECT COUNT(*): {len(baseline)} answers, {base_errors} errors, {fmt(baseline)}")
        print(f"   dashboard queries:       {len(latencies)} answers, {errors} errors, {fmt(latencies)}")
        ratio = statistics.median(latencies) / statistics.median(baseline)
        print(f"   ratio of medians (dashboard / baseline): {ratio:.2f}")

        print(f"3. freshness: {args.samples} samples per path", flush=True)
        produced: list[float] = []
        producer = make_producer(s.kafka_bootstrap)
        alerts_topic = s.realtime_topic("purchase_alerts")
        for i in range(args.samples):
            event_id = f"{tag}-fresh-{i}"
            record = {"event_id": event_id, "user_id": 1, "product_id": 1, "merchant_id": 1, "amount": 1.0,
                      "event_time_ms": int(time.time() * 1000), "reason": "benchmark"}  # fmt: skip
            t0 = time.perf_counter()
            producer.produce(alerts_topic, value=json.dumps(record).encode())
            producer.flush()
            seen = wait_for(lambda eid=event_id: count(alerts_table, f"WHERE event_id = '{eid}'") == 1, 60)
            produced.append(time.perf_counter() - t0 if seen is not None else float("inf"))
        committed: list[float] = []
        base = 8_000_000_000 + int(time.time()) % 1_000_000 * 100
        with psycopg.connect(host=s.postgres_host, port=s.postgres_port, user=s.postgres_user,
                             password=s.postgres_password, dbname=s.postgres_db, autocommit=True) as conn:  # fmt: skip
            customer = conn.execute("SELECT min(customer_id) FROM marketplace.customers").fetchone()[0]
            for i in range(args.samples):
                order_id = base + i
                t0 = time.perf_counter()
                conn.execute("INSERT INTO marketplace.orders (order_id, customer_id, merchant_id, status, total) "
                             "VALUES (%s, %s, 1, 'placed', 1)", (order_id, customer))  # fmt: skip
                seen = wait_for(lambda oid=order_id: count(orders_table, f"WHERE order_id = {oid}") == 1, 60)
                committed.append(time.perf_counter() - t0 if seen is not None else float("inf"))
        print(f"   produced to Kafka -> queryable:        {fmt(produced, 's', 1.0, 3)}")
        print(f"   committed in PostgreSQL -> queryable:  {fmt(committed, 's', 1.0, 3)}")
        p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
        print(f"targets: p99 under 100 ms ({'met' if p99 < 100 else 'missed'}), freshness p95 under 5 s "
              f"({'met' if percentile(produced, 0.95) < 5 else 'missed'})")  # fmt: skip
        print(
            f"pinot_p50_ms={p50:.1f} pinot_p99_ms={p99:.1f} freshness_p95_s={percentile(produced, 0.95):.2f}"
        )
        return 0
    finally:
        flink.stop_all(s.home, log=lambda _: None, only_namespace=tag)
        with contextlib.suppress(Exception):  # best effort: the benchmark's figures are printed already
            client.drop_tables(s.schema_prefix)


if __name__ == "__main__":
    sys.exit(main())
