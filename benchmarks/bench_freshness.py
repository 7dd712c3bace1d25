"""Benchmark: automation end to end. How long after an event is produced can it be queried in bronze, in
today's gold and in Pinot, when nothing but Dagster's daemon moves it?

In a namespace of its own, with a Dagster deployment of its own (lakehouse/stack/namespace_dagster.py: a
database in the stack's PostgreSQL, its code server and daemon; all stopped, the database and the Pinot
tables dropped at the end, whatever happens):
1. The first run, as `make demo` does it: the whole graph but the lifecycle and the dashboards, for today,
   on `--seed-events` events of today (it starts the stream jobs and creates the Pinot tables).
2. The daemon, with the automation of production on: clickstream_kafka_sensor (every
   LAKEHOUSE_SENSOR_INTERVAL_SECONDS, 30 s by default), intraday_batch_schedule (`--intraday-cron`, by
   default LAKEHOUSE_INTRADAY_CRON's `*/15 * * * *`), gold_automation, late_events_sensor and
   stream_jobs_watchdog. Nothing else is started.
3. Live traffic for `--minutes` at `--rate` events/s, each stamped with the time it is produced; every
   `--probe-interval` s a probe purchase that the Flink suspicious_purchases job flags as a burst into
   Pinot's purchase_alerts. Then the traffic stops and the benchmark waits (up to `--drain-timeout` s)
   until gold counts every event.

For each event (each probe, for Pinot), the time from its production until
- bronze: a poll (every `--poll` s) of the bronze Delta table's new versions finds it (so an upper bound
  by one poll interval);
- gold: today's row of gold.daily_funnel (through Trino, every `--poll` s) counts it. Events are produced
  in order, so a count that grew by n covers the next n events produced;
- Pinot: a query (every 0.5 s) finds the probe's alert.
Baseline in the same run: a plain Kafka consumer of the events topic (the transport's own delay); the
ratios are each path's p95 over the baseline's p95. An event that never arrives counts as infinitely late;
a gold count beyond the events produced fails the benchmark instead of printing figures.
Figures line: `bronze_p50_s=.. bronze_p95_s=.. gold_p50_s=.. gold_p95_s=.. pinot_p50_s=.. pinot_p95_s=..
kafka_p95_s=..`; targets: bronze p95 under 60 s, gold p95 under 20 minutes, Pinot p95 under 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _cleanup import Teardown
from _stats import percentile
from bench_realtime import PROBE_USERS, Broker, LiveTraffic, QueryFailed, fmt

INF = float("inf")


class TimedTraffic(LiveTraffic):
    """LiveTraffic that remembers when each event was produced, in order. Its funnel narrows as gold's tests
    require (a product is shown more often than clicked, a day has more add-to-carts than purchases, the
    probes' purchases included): far more impressions than clicks, and add-to-carts at 3.3 per second at
    the default rate against the probes' 0.5 purchases."""

    KINDS = ("impression",) * 8 + ("click", "product_view", "add_to_cart", "add_to_cart")

    def pump(self) -> None:
        due = int((time.monotonic() - self.started) * self.rate)
        while self.sent < due:
            self.send(self.event(self.rng.choice(self.KINDS), self.rng.randint(1, 300), time.time()))
            self.sent += 1
        self.producer.poll(0)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.produced: dict[str, float] = {}
        self.order: list[str] = []

    def send(self, event: dict) -> None:
        super().send(event)
        self.produced[event["event_id"]] = time.time()
        self.order.append(event["event_id"])


class KafkaBaseline(threading.Thread):
    """A plain consumer of the events topic: for each event, receipt time - production time."""

    def __init__(self, conf: dict, topic: str, produced: dict[str, float]):
        super().__init__(daemon=True)
        from confluent_kafka import Consumer

        self.consumer = Consumer({**conf, "group.id": f"bench-freshness-{os.getpid()}",
                                  "auto.offset.reset": "latest", "enable.auto.commit": False})  # fmt: skip
        self.consumer.subscribe([topic])
        self.produced, self.delays, self.stop = produced, [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for msg in self.consumer.consume(500, 0.2):
                if msg.error():
                    continue
                event_id = json.loads(msg.value()).get("event_id")
                at = self.produced.get(event_id)
                if at is not None:
                    self.delays.append(time.time() - at)
        self.consumer.close()


def bronze_poller(lake, today):
    """A function that returns the event ids bronze holds for today, read again only when the table's
    version changed."""
    state = {"version": None, "ids": set()}

    def poll() -> set[str]:
        table = lake.table("bronze", "clickstream_events")
        if table is not None and table.version() != state["version"]:
            state["version"] = table.version()
            rows = table.to_pyarrow_table(columns=["event_id"], filters=[("event_date", "=", today)])
            state["ids"] = set(rows.column("event_id").to_pylist())
        return state["ids"]

    return poll


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=16.0, help="minutes of live traffic")
    p.add_argument("--rate", type=float, default=20.0, help="live clickstream events per second")
    p.add_argument("--probe-interval", type=float, default=10.0, help="seconds between Pinot probes")
    p.add_argument("--poll", type=float, default=3.0, help="seconds between polls of bronze and gold")
    p.add_argument("--seed-events", type=int, default=500, help="today's events for the first run")
    p.add_argument("--intraday-cron", default=None,
                   help="cron of today's refresh (default: LAKEHOUSE_INTRADAY_CRON, `*/15 * * * *`)")  # fmt: skip
    p.add_argument("--drain-timeout", type=float, default=1500.0,
                   help="seconds to wait, once the traffic stopped, for gold to count every event")  # fmt: skip
    args = p.parse_args()

    tag = f"bench_fr_{datetime.now(UTC):%m%d%H%M%S}"
    env = {"LAKEHOUSE_SCHEMA_PREFIX": f"{tag}_", "LAKEHOUSE_EVENTS_TOPIC": f"{tag}.clickstream.events"}
    os.environ.update(env)

    from lakehouse.cdc.pipeline import wait_for_capture
    from lakehouse.cdc.workload import run_workload
    from lakehouse.demo import materialize_command
    from lakehouse.generator.clickstream import (
        SCHEMA_VERSION,
        GeneratorConfig,
        catalogue,
        encode,
        generate_events,
        produce,
        stamped_now,
    )
    from lakehouse.policies import FRESHNESS_AUTOMATION
    from lakehouse.realtime import flink
    from lakehouse.realtime.pinot import PinotClient
    from lakehouse.resources import LakeResource, TrinoResource
    from lakehouse.resources.kafka import make_producer
    from lakehouse.security import kafka_access
    from lakehouse.settings import get_settings
    from lakehouse.stack import manager
    from lakehouse.stack.namespace_dagster import NamespaceDagster

    s = get_settings()
    cron = args.intraday_cron or s.intraday_cron
    today = datetime.now(UTC).date()
    if datetime.now(UTC) + timedelta(minutes=args.minutes + 15) + timedelta(seconds=args.drain_timeout) > (
        datetime.combine(today + timedelta(days=1), datetime.min.time(), UTC)
    ):  # 15 minutes for the first run
        print("bench: the run could cross midnight UTC (today's partition would change): start it later "
              "or shorten --minutes/--drain-timeout", file=sys.stderr)  # fmt: skip
        return 1
    client = PinotClient.from_settings(s)
    with Teardown(tag, home=s.home) as td, tempfile.TemporaryDirectory(prefix=f"{tag}-") as work:
        td.watch_stream_jobs(flink.namespace(s))
        td.watch_pinot_tables(client, s.schema_prefix)
        manager.up(s)
        kafka_access.install(s, log=lambda *_: None)  # the namespace's topics for each principal
        dagster = NamespaceDagster(s, dict(os.environ), Path(work), LAKEHOUSE_INTRADAY_CRON=cron)
        td.on_exit("the namespace's Dagster", dagster.close)

        print(f"1. first run: the whole graph but lifecycle and BI for {today}, {args.seed_events} events ...",
              flush=True)  # fmt: skip
        products = catalogue(random.Random(5), GeneratorConfig())
        seed_events = stamped_now(generate_events(GeneratorConfig(events=args.seed_events, days=1, seed=3)))
        produce(s, s.events_topic, encode(seed_events), progress=False)
        run_workload(s, operations=100, progress=False)  # as `make demo` does: the change topics exist for
        wait_for_capture(s)  # the Pinot table that reads the orders
        started = time.monotonic()
        cmd = materialize_command(today, today, select="not group:lifecycle and not group:bi")
        done = td.run(cmd, "dagster asset materialize", env=dagster.env, cwd=Path(__file__).parents[1])
        if done.returncode != 0:
            print(f"bench: the first run failed:\n{(done.stdout + done.stderr)[-4000:]}", file=sys.stderr)
            return 1
        print(f"   done in {time.monotonic() - started:.0f} s", flush=True)

        print(
            f"2. the daemon, with {', '.join(FRESHNESS_AUTOMATION)} on; today's refresh on `{cron}`",
            flush=True,
        )
        dagster.only_on(FRESHNESS_AUTOMATION)
        dagster.daemon(Path(work) / "daemon.log")
        lake, trino = LakeResource.from_settings(s), TrinoResource.from_settings(s)
        gold_sql = f"SELECT events FROM {s.schema('gold')}.daily_funnel WHERE event_date = DATE '{today}'"

        def gold_count() -> int:
            rows = trino.query(gold_sql)
            return int(rows[0][0]) if rows else 0

        base = gold_count()
        broker = Broker(s.pinot_broker_url, timeout=10, auth=(s.pinot_reader_user, s.pinot_reader_password))
        td.on_exit("Pinot HTTP sessions", broker.close)
        alerts = s.pinot_table("purchase_alerts")
        producer = make_producer(kafka_access.client_config(s, "producer"))
        traffic = TimedTraffic(producer, s.events_topic, args.rate, products, SCHEMA_VERSION)
        baseline = KafkaBaseline(kafka_access.client_config(s, "admin"), s.events_topic, traffic.produced)
        baseline.start()
        time.sleep(3)  # the baseline consumer joins before the traffic starts

        print(f"3. live traffic: {args.rate:g} events/s for {args.minutes:g} min, a Pinot probe every "
              f"{args.probe_interval:g} s; polls every {args.poll:g} s", flush=True)  # fmt: skip
        bronze_seen, bronze = bronze_poller(lake, today), {}
        gold, gold_seen_count = [], 0
        probes, pinot, user = {}, [], PROBE_USERS
        priming = max(0, s.suspicious_burst_count - 1)
        t0 = time.monotonic()
        end, next_probe, next_poll, next_report = t0 + args.minutes * 60, t0, t0, t0 + 60
        drain_deadline = end + args.drain_timeout
        while True:
            now = time.monotonic()
            if now < end:
                traffic.pump()
                if now >= next_probe:
                    user += 1
                    event_id = f"{tag}-probe-{len(probes)}"
                    traffic.probe(event_id, user, priming)
                    probes[event_id] = time.time()
                    next_probe += args.probe_interval
            elif traffic.producer is not None:
                producer.flush(30)
                traffic.producer = None  # the traffic is over
                print(
                    f"   traffic over: {len(traffic.order):,} events produced; waiting for gold ...",
                    flush=True,
                )
            outstanding = [i for i in probes if i not in {p[0] for p in pinot}]
            if outstanding:
                quoted = ", ".join(f"'{i}'" for i in outstanding)
                try:
                    rows = broker.query(f"SELECT event_id, COUNT(*) FROM {alerts} WHERE event_id IN ({quoted}) "
                                        f"GROUP BY event_id LIMIT {len(outstanding)}")  # fmt: skip
                except QueryFailed:
                    rows = []
                for event_id, _ in rows:
                    pinot.append((event_id, time.time() - probes[event_id]))
            if now >= next_poll:
                next_poll = now + args.poll
                at = time.time()
                try:
                    landed, counted = bronze_seen(), gold_count() - base
                except Exception as exc:  # noqa: BLE001 - a poll that failed: the next one looks again
                    print(
                        f"   a poll failed ({type(exc).__name__}: {str(exc)[:200]}); polling on", flush=True
                    )
                    continue
                for event_id in landed - bronze.keys():
                    if event_id in traffic.produced:
                        bronze[event_id] = at - traffic.produced[event_id]
                if counted > len(traffic.order):
                    print(f"bench: gold counts {counted} events of today, {len(traffic.order)} were produced",
                          file=sys.stderr)  # fmt: skip
                    return 1
                for event_id in traffic.order[gold_seen_count:counted]:
                    gold.append(at - traffic.produced[event_id])
                gold_seen_count = max(gold_seen_count, counted)
            if now >= next_report:
                next_report = now + 60
                print(f"   {(now - t0) / 60:.0f} min: produced {len(traffic.order):,}, in bronze {len(bronze):,}, "
                      f"in gold {gold_seen_count:,}, probes found in Pinot {len(pinot)}/{len(probes)}", flush=True)  # fmt: skip
            if now >= end and gold_seen_count >= len(traffic.order) and len(bronze) >= len(traffic.order):
                break
            if now > drain_deadline:
                print(f"   gave up waiting after {args.drain_timeout:g} s: the rest counts as infinitely late",
                      flush=True)  # fmt: skip
                break
            time.sleep(0.5)
        baseline.stop.set()
        baseline.join(10)
        import dagster as dg

        with dagster.instance() as instance:  # a refresh that failed (and was retried) shows in the figures
            failed = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
        for run in failed:
            print(f"   failed run: {run.job_name} {run.run_id} ({run.tags.get('dagster/partition', '-')})")
        if traffic.errors:
            print(f"   {len(traffic.errors)} events were not delivered: {traffic.errors[0]}", flush=True)
        n = len(traffic.order)
        bronze_all = list(bronze.values()) + [INF] * (n - len(bronze))
        gold_all = gold + [INF] * (n - len(gold))
        pinot_all = [d for _, d in pinot] + [INF] * (len(probes) - len(pinot))
        kafka95 = percentile(baseline.delays, 0.95)
        print(f"   bronze (produced -> in a new version of bronze, polled): {fmt(bronze_all, 's', 1.0, 1)}")
        print(f"   gold   (produced -> counted by gold.daily_funnel today): {fmt(gold_all, 's', 1.0, 1)}")
        print(f"   pinot  (produced -> probe's alert queryable):           {fmt(pinot_all, 's', 1.0, 2)}")
        print(
            f"   baseline: plain Kafka consumer of the topic:            {fmt(baseline.delays, 's', 1.0, 3)}"
        )
        figures = {name: (percentile(values, 0.5), percentile(values, 0.95))
                   for name, values in (("bronze", bronze_all), ("gold", gold_all), ("pinot", pinot_all))}  # fmt: skip
        print("   ratios of p95 to the baseline's: " + ", ".join(
            f"{name} {p95 / kafka95:.0f}x" for name, (_, p95) in figures.items()))  # fmt: skip
        b95, g95, p95 = (figures[k][1] for k in ("bronze", "gold", "pinot"))
        print(f"targets: bronze p95 under 60 s ({'met' if b95 < 60 else 'missed'}), gold p95 under 20 min "
              f"({'met' if g95 < 1200 else 'missed'}), Pinot p95 under 5 s ({'met' if p95 < 5 else 'missed'}); "
              f"today's refresh on `{cron}`")  # fmt: skip
        print(" ".join(f"{k}_p50_s={v[0]:.2f} {k}_p95_s={v[1]:.2f}" for k, v in figures.items())
              + f" kafka_p95_s={kafka95:.3f} failed_runs={len(failed)} undelivered={len(traffic.errors)}",
              flush=True)  # fmt: skip
        return 0


if __name__ == "__main__":
    sys.exit(main())
