"""The `lakehouse` command: the local stack, data generators and the demo run."""

from __future__ import annotations

import argparse
import sys

from lakehouse.settings import get_settings
from lakehouse.stack.errors import StackError


def _stack(args: argparse.Namespace) -> int:
    from lakehouse.stack import manager

    s = get_settings()
    if args.action == "up":
        manager.up(s, args.services or None)
        print("stack: up")
    elif args.action == "fetch":
        manager.fetch_all(s)
        print("stack: everything downloaded")
    elif args.action == "down":
        manager.down(s, args.services or None)
        print("stack: down")
    elif args.action == "status":
        rows = manager.status(s)
        cols = ["service", "state", "pid", "ports", "health", "memory", "url"]
        widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
        print("  ".join(c.upper().ljust(widths[c]) for c in cols))
        for r in rows:
            print("  ".join(r[c].ljust(widths[c]) for c in cols))
        print(f"logs: {s.home / 'logs'}/<service>.log")
        return 0 if all(r["health"] == "healthy" for r in rows) else 3
    elif args.action == "logs":
        for name in args.services or ["objectstore", "postgres", "kafka", "trino"]:
            print(f"==> {name} <==")
            print(manager.logs(s, name, args.lines), end="")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from lakehouse.generator.clickstream import DeliveryConfig, GeneratorConfig, produce_events

    s = get_settings()
    if args.partitions:
        s = s.model_copy(update={"events_partitions": args.partitions})
    config = GeneratorConfig(events=args.events, days=args.days, seed=args.seed, users=args.users)
    delivery = DeliveryConfig(duplicate_share=args.duplicates, malformed_share=args.malformed,
                              late_share=args.late, seed=args.seed)  # fmt: skip
    summary = produce_events(s, config, topic=args.topic or s.events_topic, delivery=delivery, rate=args.rate)
    kinds = ", ".join(f"{n} {k}" for k, n in summary.kinds.items())
    print(f"generate: produced {summary.produced} messages ({kinds}) to {summary.topic}; "
          f"event days {summary.first_day} .. {summary.last_day}")  # fmt: skip
    return 0


def _changes(args: argparse.Namespace) -> int:
    from lakehouse.cdc.workload import run_workload

    result = run_workload(get_settings(), operations=args.operations, rate=args.rate, seed_value=args.seed)
    ops = ", ".join(f"{n} {k}" for k, n in result.operations.most_common())
    print(f"generate: committed {result.transactions} transactions ({ops})")
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from lakehouse.ingest.assets import RAW_APP_ID
    from lakehouse.ingest.landing import land_topic, raw_appender
    from lakehouse.ingest.refine import refine
    from lakehouse.resources import KafkaResource, LakeResource

    s = get_settings()
    kafka = KafkaResource(bootstrap_servers=s.kafka_bootstrap, events_topic=s.events_topic)
    lake = LakeResource.from_settings(s)
    raw_uri = lake.table_uri("raw", "clickstream_events")
    result = land_topic(kafka, raw_appender(raw_uri, lake.storage_options), s.events_topic, RAW_APP_ID,
                        batch_size=args.batch_size, batch_seconds=args.batch_seconds, follow=args.follow,
                        idle_exit=args.idle_exit)  # fmt: skip
    print(f"ingest: landed {result.rows} records in {result.commits} commits into {raw_uri}")
    if args.bronze:
        refine(raw_uri, lake.table_uri("bronze", "clickstream_events"),
               lake.table_uri("bronze", "clickstream_dead_letters"), lake.storage_options, s.events_topic,
               RAW_APP_ID)  # fmt: skip
    return 0


def _cdc_apply(args: argparse.Namespace) -> int:
    from lakehouse.cdc.pipeline import run_loop, run_once

    s = get_settings()
    if args.loop:
        run_loop(s, interval=args.interval, idle_exit=args.idle_exit)
    else:
        print(f"cdc: landed {run_once(s)} change records and applied them to silver")
    return 0


def _cdc_status(args: argparse.Namespace) -> int:
    from lakehouse.cdc.capture import capture_report

    report = capture_report(get_settings())
    for name, value in report.facts.items():
        print(f"{name}: {value}")
    for problem in report.problems:
        print(f"problem: {problem}")
    print("capture: healthy" if report.healthy else f"capture: {len(report.problems)} problem(s)")
    return 0 if report.healthy else 1


def _cdc_resnapshot(args: argparse.Namespace) -> int:
    from lakehouse.cdc.connector import resnapshot

    resnapshot(get_settings())
    print("cdc: Debezium is snapshotting every captured table again; `lakehouse cdc apply` then marks the rows "
          "the snapshot no longer has as deleted")  # fmt: skip
    return 0


def _spark_connect(args: argparse.Namespace) -> int:
    import os

    from lakehouse.resources.spark import connect_server_command

    cmd = connect_server_command(get_settings(), args.port)
    print(f"spark: Spark Connect server on sc://127.0.0.1:{args.port} with the lake's configuration; "
          f"point LAKEHOUSE_SPARK_REMOTE at it (Ctrl-C stops)", flush=True)  # fmt: skip
    os.execv(cmd[0], cmd)
    return 0


def _docs(args: argparse.Namespace) -> int:
    from lakehouse.warehouse.serve_docs import docs_server

    server, url = docs_server(get_settings(), args.port)
    print(f"dbt docs: serving {get_settings().docs_dir} at {url} (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def _stream(args: argparse.Namespace) -> int:
    from lakehouse.realtime import flink

    s = get_settings()
    jobs = [flink.by_name(n) for n in args.jobs] if args.jobs else flink.FLINK_JOBS
    if args.action == "start":
        for job in jobs:
            flink.start(s, job)
        return 0
    if args.action == "stop":
        for job in jobs:
            if not flink.stop(s, job):
                print(f"{job.name}: not running")
        return 0
    problems = 0
    for job in jobs:
        status, problem = flink.read_status(s, job), flink.problem(s, job)
        problems += problem is not None
        print(f"{job.name:<22} {problem or 'running'}  (Flink job {status.get('job_id', '-')}, "
              f"checkpoint {status.get('checkpoint', '-')}, output {s.realtime_topic(job.output)}, "
              f"log {flink.log_path(s, job)})")  # fmt: skip
    return 1 if problems else 0


def _demo(args: argparse.Namespace) -> int:
    from lakehouse.demo import run_demo

    return run_demo(get_settings(), events=args.events, days=args.days)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lakehouse",
        description="A real lakehouse on one machine. Configuration comes from LAKEHOUSE_* variables.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    stack = sub.add_parser("stack", help="start, stop and inspect the local services",
                           description="Run the local stack (SeaweedFS, PostgreSQL, Kafka, Kafka Connect with Debezium, Trino, ZooKeeper, "
                           "Pinot) as "
                           "processes on 127.0.0.1. Data survives down/up; downloads are cached.")  # fmt: skip
    stack.add_argument(
        "action",
        choices=["up", "down", "status", "logs", "fetch"],
        help="fetch: download everything (servers, jars) without starting anything",
    )
    stack.add_argument("services", nargs="*", help="only these services (default: all, in order)")
    stack.add_argument("-n", "--lines", type=int, default=40, help="log lines to show (logs)")
    stack.set_defaults(func=_stack)

    gen = sub.add_parser("generate", help="produce synthetic data")
    gen_sub = gen.add_subparsers(dest="what", required=True)
    ev = gen_sub.add_parser("events", help="clickstream sessions to the events topic in Kafka")
    ev.add_argument("--events", type=int, default=5000, help="number of events (default 5000)")
    ev.add_argument("--days", type=int, default=3, help="spread event times over the last N days")
    ev.add_argument("--users", type=int, default=300, help="number of distinct users")
    ev.add_argument("--seed", type=int, default=None, help="random seed for a repeatable stream")
    ev.add_argument("--topic", default=None, help="topic (default: LAKEHOUSE_EVENTS_TOPIC)")
    ev.add_argument(
        "--rate", type=float, default=0.0, help="messages per second (default 0: as fast as possible)"
    )
    ev.add_argument(
        "--duplicates", type=float, default=0.0, help="share of events delivered twice, e.g. 0.02"
    )
    ev.add_argument(
        "--malformed",
        type=float,
        default=0.0,
        help="share of extra malformed messages (broken JSON, wrong types, missing fields)",
    )
    ev.add_argument("--late", type=float, default=0.0, help="share of events held back and delivered last")
    ev.set_defaults(func=_generate)

    ch = gen_sub.add_parser(
        "changes", help="an OLTP workload on the marketplace database (captured by Debezium)"
    )
    ch.add_argument("--operations", type=int, default=500, help="transactions to commit (default 500)")
    ch.add_argument(
        "--rate", type=float, default=0.0, help="transactions per second (default 0: as fast as possible)"
    )
    ch.add_argument("--seed", type=int, default=None, help="random seed")
    ch.set_defaults(func=_changes)

    ing = sub.add_parser("ingest", help="land Kafka records into the lake outside Dagster (same code path)")
    ing_sub = ing.add_subparsers(dest="what", required=True)
    iev = ing_sub.add_parser("events", help="the clickstream topic into raw (and bronze with --bronze)",
                             description="Exactly-once landing of the events topic into the raw Delta table; "
                             "resumes from the offsets recorded in the table.")  # fmt: skip
    iev.add_argument("--follow", action="store_true", help="keep landing new records instead of stopping")
    iev.add_argument("--idle-exit", type=float, default=None, help="with --follow: stop after N idle seconds")
    iev.add_argument("--batch-size", type=int, default=50_000, help="records per commit, at most")
    iev.add_argument("--batch-seconds", type=float, default=5.0, help="close a batch after N seconds")
    iev.add_argument("--bronze", action="store_true", help="then refine raw into bronze and dead letters")
    iev.set_defaults(func=_ingest)

    cdc = sub.add_parser("cdc", help="change data capture outside Dagster (same code path)")
    cdc_sub = cdc.add_subparsers(dest="what", required=True)
    cap = cdc_sub.add_parser("apply", help="land Debezium's change records and MERGE them into silver",
                             description="For every captured table (LAKEHOUSE_CDC_TABLES): land new change records "
                             "into raw/cdc_<table> exactly once, then MERGE them into silver/<table> by LSN.")  # fmt: skip
    cap.add_argument("--loop", action="store_true", help="keep applying new changes")
    cap.add_argument("--interval", type=float, default=1.0, help="with --loop: seconds between rounds")
    cap.add_argument("--idle-exit", type=float, default=None, help="with --loop: stop after N idle seconds")
    cap.set_defaults(func=_cdc_apply)
    cdc_sub.add_parser(
        "status",
        help="is the capture healthy? connector, task, replication slot, unlisted tables",
        description="Exit status 0 when healthy, 1 with each problem and its fix.",
    ).set_defaults(func=_cdc_status)
    cdc_sub.add_parser(
        "resnapshot",
        help="make Debezium snapshot every captured table again",
        description="Stops the connector, deletes its offsets and resumes it; the next apply "
        "marks rows missing from the snapshot as deleted.",
    ).set_defaults(func=_cdc_resnapshot)

    spark = sub.add_parser("spark", help="Spark helpers")
    spark_sub = spark.add_subparsers(dest="what", required=True)
    scs = spark_sub.add_parser("connect-server", help="run a Spark Connect server configured for the lake",
                               description="Starts the Spark Connect server bundled with pyspark, with the lake's "
                               "jars and S3 settings, on 127.0.0.1; LAKEHOUSE_SPARK_REMOTE=sc://127.0.0.1:PORT "
                               "then runs every Spark asset through it.")  # fmt: skip
    scs.add_argument("--port", type=int, default=15002, help="gRPC port (default 15002)")
    scs.set_defaults(func=_spark_connect)

    docs = sub.add_parser("docs", help="serve the dbt docs site the pipeline built",
                          description="Serves the site written by the gold/dbt_docs asset on 127.0.0.1 "
                          "(LAKEHOUSE_DOCS_PORT, default 8580).")  # fmt: skip
    docs.add_argument("--port", type=int, default=None, help="port (default: LAKEHOUSE_DOCS_PORT)")
    docs.set_defaults(func=_docs)

    stream = sub.add_parser("stream", help="the PyFlink stream jobs: start, stop, status",
                            description="Runs the jobs of streaming/jobs as local processes (a Flink mini-cluster "
                            "each), as the realtime/* assets do. status exits 1 if a job is down or stalled.")  # fmt: skip
    stream.add_argument("action", choices=["start", "stop", "status"])
    stream.add_argument(
        "jobs", nargs="*", help="product_ctr, cart_abandonment, suspicious_purchases (default: all)"
    )
    stream.set_defaults(func=_stream)

    demo = sub.add_parser("demo", help="stack up, generate events, materialize every asset, summarise")
    demo.add_argument("--events", type=int, default=5000)
    demo.add_argument("--days", type=int, default=3)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except StackError as exc:
        print(f"error: {exc.problem}", file=sys.stderr)
        if exc.fix:
            print(f"  fix: {exc.fix}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
