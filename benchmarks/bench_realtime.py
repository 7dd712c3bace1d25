"""Benchmark: merchant-dashboard queries on Apache Pinot under load, and data freshness.

In a namespace of its own (its topics, Flink jobs and Pinot tables; the jobs are stopped and the
tables dropped at the end, whatever happens, see _cleanup.py):
1. The Flink CTR job runs on a recent stream of clickstream events (event-time order, ending now);
   its output fills the Pinot `product_ctr` table. `merchant_orders` consumes the orders' change
   stream, with a fresh PostgreSQL workload so that the last 15 minutes hold sales.
2. Load: the two dashboard queries (sales of the last 15 minutes per merchant; top products by
   click-through rate) alternate at `--qps` queries per second for `--seconds`. Query i is due at
   t0 + i / qps whatever happened before (open loop); a pool of `--threads` threads sends each one
   when it is due, so a slow answer delays later queries only once every thread is busy, and then
   that wait is measured. Latency = the answer's arrival - the time the query was due (not - the
   time it was actually sent): no coordinated omission. A query that fails (an HTTP error, an
   exception or a partial answer from Pinot, no answer within `--timeout`) is counted in `failed`,
   never as a latency and never dropped: sent = answers + failed.
   Baseline in the same run: `SELECT COUNT(*)` on the same table at the same rate, measured alike.
3. Freshness, two paths:
   - clickstream (the real path of the alerts): while live clickstream traffic flows into the
     events topic (`--stream-rate` events/s stamped with the current time, keyed by user), a probe
     purchase is produced every `--probe-interval` s. Each probe is the LAKEHOUSE_SUSPICIOUS_BURST_COUNT-th
     purchase of a new user within a moment, so the Flink suspicious_purchases job flags it as a
     `burst`; the alert goes to the job's output topic (committed with its next checkpoint) and into
     the Pinot `purchase_alerts` table. Freshness = from producing the probe event until a Pinot
     query (every 0.1 s) finds its alert. It includes the job's watermark delay, its checkpoint
     interval and Pinot's consumption. `--samples` probes after a warm-up probe was found; a probe
     not found within `--freshness-timeout` counts as missing (an infinite freshness in the figures).
   - committed: an order committed in PostgreSQL, through Debezium and Kafka, until a query finds it.
Figures line: `pinot_p50_ms=.. pinot_p99_ms=.. failed=.. freshness_p50_s=.. freshness_p95_s=..`
(pinot: the dashboard queries; freshness: the clickstream path); then `leftover_processes=0`.
"""

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import requests
from _cleanup import Teardown
from _stats import percentile

POLL_SECONDS = 0.1  # how often the freshness probes' alerts are looked for in Pinot
PROBE_USERS = 2_000_000_000  # probe users' ids start here, far above the generator's
TRAFFIC_USERS = 300
TRAFFIC_TYPES = ("impression", "impression", "impression", "impression", "click", "product_view")


def fmt(values: list[float], unit: str = "ms", scale: float = 1000.0, digits: int = 1) -> str:
    def one(value: float) -> str:
        return "inf" if value == float("inf") else f"{value * scale:.{digits}f}{unit}"

    quantiles = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))
    if not values:
        return " ".join(f"{name}=n/a" for name, _ in quantiles)
    return " ".join(f"{name}={one(percentile(values, q))}" for name, q in quantiles)


class QueryFailed(Exception):
    """A query without a complete answer; `reason` is a short label to count failures by."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class Broker:
    """SQL through the Pinot broker's REST API, one HTTP session (a kept-alive connection) per thread."""

    def __init__(self, url: str, timeout: float, auth: tuple[str, str] | None = None):
        self.url, self.timeout, self.auth = f"{url.rstrip('/')}/query/sql", timeout, auth
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.auth = self.auth
            with self._lock:
                self._sessions.append(session)
        return session

    def query(self, sql: str) -> list[list]:
        """The rows of a complete answer, else QueryFailed."""
        sent = time.perf_counter()
        try:
            response = self._session().post(self.url, json={"sql": sql}, timeout=self.timeout)
        except requests.Timeout:
            raise QueryFailed("timeout") from None
        except requests.RequestException as exc:
            raise QueryFailed("connection", exc.__class__.__name__) from None
        if response.status_code >= 400:
            raise QueryFailed(f"http_{response.status_code}", response.text[:200])
        try:
            body = response.json()
        except ValueError:
            raise QueryFailed("not_json", response.text[:200]) from None
        if body.get("exceptions"):
            error = body["exceptions"][0]
            raise QueryFailed(f"pinot_{error.get('errorCode', '?')}", str(error.get("message", ""))[:200])
        if body.get("numServersResponded", 0) < body.get("numServersQueried", 0):
            raise QueryFailed(
                "partial", f"{body['numServersResponded']} of {body['numServersQueried']} servers"
            )
        if time.perf_counter() - sent > self.timeout:  # requests' timeout bounds each read, not the total
            raise QueryFailed("timeout")
        return body.get("resultTable", {}).get("rows", [])

    def close(self) -> None:
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()


@dataclass
class LoadResult:
    sent: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds from when each answered query was due
    service: list[float] = field(default_factory=list)  # seconds from when it was sent (for reference)
    failures: Counter = field(default_factory=Counter)  # failed queries by reason

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def summary(self) -> str:
        line = f"sent={self.sent} answers={len(self.latencies)} failed={self.failed} {fmt(self.latencies)}"
        if self.failures:
            line += " (" + ", ".join(f"{reason}: {n}" for reason, n in self.failures.most_common()) + ")"
        return line


def load(broker: Broker, queries: list[str], qps: float, seconds: float, threads: int) -> LoadResult:
    """Send the queries in turn, query i due at t0 + i / qps, by a pool of `threads` threads."""
    result = LoadResult()
    lock = threading.Lock()

    def one(sql: str, due: float) -> None:
        sent = time.perf_counter()
        try:
            broker.query(sql)
        except QueryFailed as exc:
            reason = exc.reason
        except Exception as exc:  # noqa: BLE001 - a failure like any other: counted
            reason = exc.__class__.__name__
        else:
            done = time.perf_counter()
            with lock:
                result.latencies.append(done - due)
                result.service.append(done - sent)
            return
        with lock:
            result.failures[reason] += 1

    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="pinot-load")
    start = time.perf_counter() + 0.1
    try:
        for i in range(int(qps * seconds)):
            due = start + i / qps
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, queries[i % len(queries)], due)  # never blocks: late queries queue up
            result.sent += 1
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    assert result.sent == len(result.latencies) + result.failed, result
    return result


def wait_for(predicate, timeout: float, poll: float = 0.05) -> float | None:
    """Seconds until `predicate()` holds, or None after `timeout`."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if predicate():
            return time.perf_counter() - t0
        time.sleep(poll)
    return None


def iso(epoch_seconds: float) -> str:
    """An event time as the generator writes it: ISO-8601 UTC with milliseconds and `Z`."""
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LiveTraffic:
    """Clickstream events as they happen: stamped with the current time, keyed by user like the
    generator's, at `rate` events per second from many users, so every partition of the topic keeps
    receiving events and the stream jobs' watermark follows the clock."""

    def __init__(self, producer, topic: str, rate: float, products: list, schema_version: int):
        self.producer, self.topic, self.rate = producer, topic, rate
        self.products, self.schema_version = products, schema_version
        self.rng = random.Random(5)
        self.started = time.monotonic()
        self.sent = 0
        self.errors: list[str] = []

    def _delivered(self, err, _msg) -> None:
        if err is not None:
            self.errors.append(str(err))

    def event(self, event_type: str, user_id: int, at: float, product=None) -> dict:
        product = product or self.rng.choice(self.products)
        return {
            "event_id": str(uuid.uuid4()), "event_type": event_type, "event_time": iso(at),
            "user_id": user_id, "session_hint": f"live{user_id}", "product_id": product.product_id,
            "merchant_id": product.merchant_id, "price": product.price,
            "quantity": 1 if event_type == "purchase" else None, "device": "web", "country": "DE",
            "schema_version": self.schema_version, "properties": {},
        }  # fmt: skip

    def send(self, event: dict) -> None:
        key, value = str(event["user_id"]).encode(), json.dumps(event).encode()
        while True:
            try:
                self.producer.produce(self.topic, key=key, value=value, on_delivery=self._delivered)
                return
            except BufferError:  # the local queue is full: let the broker catch up
                self.producer.poll(0.05)

    def pump(self) -> None:
        """Produce the events due since the traffic started."""
        due = int((time.monotonic() - self.started) * self.rate)
        while self.sent < due:
            kind = self.rng.choice(TRAFFIC_TYPES)
            self.send(self.event(kind, self.rng.randint(1, TRAFFIC_USERS), time.time()))
            self.sent += 1
        self.producer.poll(0)

    def probe(self, event_id: str, user_id: int, priming: int) -> float:
        """`priming` purchases of a new user, then the probe purchase `event_id`, all stamped now (a
        millisecond apart, in order); returns when the probe was produced (time.perf_counter())."""
        product = self.products[0]
        now = time.time()
        for k in range(priming, 0, -1):
            self.send(self.event("purchase", user_id, now - k / 1000, product))
        produced = time.perf_counter()
        self.send({**self.event("purchase", user_id, time.time(), product), "event_id": event_id})
        self.producer.poll(0)
        return produced


def clickstream_freshness(traffic: LiveTraffic, broker: Broker, alerts_table: str, tag: str, args,
                          priming: int) -> tuple[list[float], int, int]:  # fmt: skip
    """Freshness of probe purchases through the Flink suspicious_purchases job into Pinot: seconds
    for each probe found, the number of probes not found in time, and the number of failed polls."""
    poll_errors = 0

    def found(ids: list[str]) -> set[str]:
        nonlocal poll_errors
        quoted = ", ".join(f"'{i}'" for i in ids)
        sql = f"SELECT event_id, COUNT(*) FROM {alerts_table} WHERE event_id IN ({quoted}) GROUP BY event_id LIMIT {len(ids)}"
        try:
            return {row[0] for row in broker.query(sql)}
        except QueryFailed:
            poll_errors += 1
            return set()

    user = PROBE_USERS
    # Warm-up: the job catches up with the topic and its watermark with the live traffic. A probe
    # every 5 s until one of them is found.
    warmups: list[str] = []
    deadline, next_warmup = time.perf_counter() + args.warmup_timeout, 0.0
    while True:
        now = time.perf_counter()
        traffic.pump()
        if now >= next_warmup:
            user += 1
            warmups.append(f"{tag}-warmup-{len(warmups)}")
            traffic.probe(warmups[-1], user, priming)
            next_warmup = now + 5
        if found(warmups):
            break
        if now > deadline:
            print(f"   no warm-up probe reached Pinot within {args.warmup_timeout:g} s", file=sys.stderr)
            return [], args.samples, poll_errors
        time.sleep(POLL_SECONDS)

    fresh: list[float] = []
    outstanding: dict[str, float] = {}  # event id -> when it was produced
    missing = sent = 0
    next_probe = time.perf_counter()
    while sent < args.samples or outstanding:
        traffic.pump()
        if sent < args.samples and time.perf_counter() >= next_probe:
            user += 1
            event_id = f"{tag}-probe-{sent}"
            outstanding[event_id] = traffic.probe(event_id, user, priming)
            sent += 1
            next_probe += args.probe_interval
        if outstanding:
            seen = found(list(outstanding))
            done = time.perf_counter()  # the answer that found it: an upper bound by one round trip
            for event_id in seen & outstanding.keys():
                fresh.append(done - outstanding.pop(event_id))
            for event_id, produced in list(outstanding.items()):
                if done - produced > args.freshness_timeout:
                    del outstanding[event_id]
                    missing += 1
        time.sleep(POLL_SECONDS)
    return fresh, missing, poll_errors


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=20_000, help="clickstream events for the CTR job")
    p.add_argument("--qps", type=float, default=50.0, help="dashboard queries per second")
    p.add_argument("--seconds", type=float, default=30.0, help="duration of the load")
    p.add_argument("--threads", type=int, default=8, help="threads sending the queries")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds after which a query has failed")
    p.add_argument("--samples", type=int, default=30, help="freshness samples per path")
    p.add_argument("--stream-rate", type=float, default=50.0, help="live clickstream events per second")
    p.add_argument("--probe-interval", type=float, default=1.0, help="seconds between freshness probes")
    p.add_argument("--freshness-timeout", type=float, default=120.0, help="seconds before a probe is missing")
    p.add_argument("--warmup-timeout", type=float, default=300.0, help="seconds for the first probe")
    args = p.parse_args()

    tag = f"bench_rt_{datetime.now(UTC):%m%d%H%M%S}"
    os.environ["LAKEHOUSE_SCHEMA_PREFIX"] = f"{tag}_"
    os.environ["LAKEHOUSE_EVENTS_TOPIC"] = f"{tag}.clickstream.events"

    import psycopg

    from lakehouse.cdc.workload import run_workload
    from lakehouse.generator.clickstream import (
        SCHEMA_VERSION,
        GeneratorConfig,
        catalogue,
        encode,
        generate_events,
        produce,
    )
    from lakehouse.realtime import flink
    from lakehouse.realtime.pinot import PINOT_TABLES, PinotClient, merchant_sales_sql, top_ctr_sql
    from lakehouse.resources.kafka import ensure_topic, make_producer
    from lakehouse.security.kafka_access import client_config
    from lakehouse.settings import get_settings
    from lakehouse.stack import manager

    s = get_settings()
    client = PinotClient.from_settings(s)
    with Teardown(tag, home=s.home) as td:
        td.watch_stream_jobs(flink.namespace(s))
        td.watch_pinot_tables(client, s.schema_prefix)
        manager.up(s)
        ctr_table, orders_table = s.pinot_table("product_ctr"), s.pinot_table("merchant_orders")
        alerts_table = s.pinot_table("purchase_alerts")
        print(
            f"1. data: {args.events:,} events through the Flink CTR job; an OLTP workload for the orders",
            flush=True,
        )
        ensure_topic(client_config(s, "producer"), s.events_topic, partitions=s.events_partitions)
        flink.start(s, flink.by_name("product_ctr"))
        now = datetime.now(UTC)
        events = generate_events(GeneratorConfig(events=args.events, days=1, end=now))
        events.sort(key=lambda e: e["event_time"])
        produce(s, s.events_topic, encode(events), progress=False)
        ensure_topic(client_config(s, "admin"), s.realtime_topic("purchase_alerts"), partitions=1)
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
        broker = Broker(
            s.pinot_broker_url, timeout=args.timeout, auth=(s.pinot_reader_user, s.pinot_reader_password)
        )
        td.on_exit("Pinot HTTP sessions", broker.close)
        warmup_failed = 0
        for _ in range(20):  # warm-up
            for sql in dashboard:
                try:
                    broker.query(sql)
                except QueryFailed:
                    warmup_failed += 1
        if warmup_failed:
            print(f"   warm-up: {warmup_failed} of {2 * 20} queries failed", flush=True)

        print(
            f"2. load: {args.qps:g} queries/s for {args.seconds:g} s, {args.threads} threads; latency from "
            "each query's due time",
            flush=True,
        )
        baseline = load(
            broker, [f"SELECT COUNT(*) FROM {ctr_table}"], args.qps, min(args.seconds, 10), args.threads
        )
        dash = load(broker, dashboard, args.qps, args.seconds, args.threads)
        print(f"   baseline SELECT COUNT(*): {baseline.summary()}")
        print(f"   dashboard queries:       {dash.summary()}")
        print(
            f"   (service time from the actual send, for reference: baseline p50="
            f"{percentile(baseline.service, 0.5) * 1000:.1f}ms, dashboard p50="
            f"{percentile(dash.service, 0.5) * 1000:.1f}ms p99={percentile(dash.service, 0.99) * 1000:.1f}ms)"
        )
        if dash.latencies and baseline.latencies:
            ratio = statistics.median(dash.latencies) / statistics.median(baseline.latencies)
            print(f"   ratio of medians (dashboard / baseline): {ratio:.2f}")
        else:
            print("   ratio of medians (dashboard / baseline): n/a (no answers)")

        print(
            f"3. freshness: {args.samples} samples per path; live traffic {args.stream_rate:g} events/s",
            flush=True,
        )
        flink.start(s, flink.by_name("suspicious_purchases"))
        products = catalogue(random.Random(5), GeneratorConfig())
        producer = make_producer(client_config(s, "producer"))
        traffic = LiveTraffic(producer, s.events_topic, args.stream_rate, products, SCHEMA_VERSION)
        fresh, missing, poll_errors = clickstream_freshness(
            traffic, broker, alerts_table, tag, args, priming=max(0, s.suspicious_burst_count - 1)
        )
        producer.flush(30)
        if traffic.errors:
            print(f"   {len(traffic.errors)} live events were not delivered: {traffic.errors[0]}", flush=True)
        produced = fresh + [float("inf")] * missing  # a probe never found counts, as infinitely late

        committed: list[float] = []
        base = 8_000_000_000 + int(time.time()) % 1_000_000 * 100
        with psycopg.connect(host=s.postgres_host, port=s.postgres_port, user=s.postgres_user,
                             password=s.postgres_password, dbname=s.postgres_db, autocommit=True) as conn:  # fmt: skip
            customer = conn.execute("SELECT min(customer_id) FROM customers").fetchone()[0]
            for i in range(args.samples):
                order_id = base + i
                t0 = time.perf_counter()
                conn.execute("INSERT INTO orders (order_id, customer_id, merchant_id, status, total) "
                             "VALUES (%s, %s, 1, 'placed', 1)", (order_id, customer))  # fmt: skip
                seen = wait_for(lambda oid=order_id: count(orders_table, f"WHERE order_id = {oid}") == 1, 60)
                committed.append(time.perf_counter() - t0 if seen is not None else float("inf"))
        print(
            f"   clickstream event produced to Kafka -> Flink suspicious_purchases -> queryable in Pinot: "
            f"{fmt(produced, 's', 1.0, 3)} (found={len(fresh)} missing={missing} failed_polls={poll_errors})"
        )
        print(f"   committed in PostgreSQL -> queryable:  {fmt(committed, 's', 1.0, 3)}")
        p50, p99 = percentile(dash.latencies, 0.5) * 1000, percentile(dash.latencies, 0.99) * 1000
        fresh50, fresh95 = percentile(produced, 0.5), percentile(produced, 0.95)
        print(f"targets: p99 under 100 ms with no failed query ({'met' if p99 < 100 and not dash.failed else 'missed'}), "
              f"freshness p95 under 5 s ({'met' if fresh95 < 5 else 'missed'})")  # fmt: skip
        print(
            f"pinot_p50_ms={p50:.1f} pinot_p99_ms={p99:.1f} failed={dash.failed} "
            f"freshness_p50_s={fresh50:.2f} freshness_p95_s={fresh95:.2f}",
            flush=True,
        )
        return 0


if __name__ == "__main__":
    sys.exit(main())
