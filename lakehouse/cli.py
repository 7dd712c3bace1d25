"""The `lakehouse` command: the local stack, data generators and the demo run."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from lakehouse.lifecycle import cli as lifecycle_cli
from lakehouse.security import cli as security_cli
from lakehouse.settings import LakehouseSettings, explain_settings_error, get_settings
from lakehouse.stack.errors import StackError
from lakehouse.time_travel import TimeTravelError

EXIT_SERVICE = 2  # a service is down or misconfigured: the message says which and how to fix it
DEBUG_ENV = "LAKEHOUSE_DEBUG"  # set to 1: errors are raised with their traceback instead of explained


def _stack(args: argparse.Namespace) -> int:
    from lakehouse.stack import manager

    s = get_settings()
    if args.action == "up":
        manager.up(s, args.services or None, without=tuple(args.without))
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
        return 0 if all(r["health"] in ("healthy", "left out") for r in rows) else 3
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
    from lakehouse.ingest.landing import land_topic, raw_target
    from lakehouse.ingest.refine import refine
    from lakehouse.resources import KafkaResource, LakeResource

    s = get_settings()
    kafka = KafkaResource.from_settings(s)
    lake = LakeResource.from_settings(s)
    raw_uri = lake.table_uri("raw", "clickstream_events")
    result = land_topic(kafka, raw_target(raw_uri, lake.storage_options, s.events_topic, RAW_APP_ID),
                        batch_size=args.batch_size, batch_seconds=args.batch_seconds, follow=args.follow,
                        idle_exit=args.idle_exit, partitions=args.partitions)  # fmt: skip
    print(f"ingest: landed {result.rows} records in {result.commits} commits into {raw_uri}")
    if args.bronze:
        refine(raw_uri, lake.table_uri("bronze", "clickstream_events"),
               lake.table_uri("bronze", "clickstream_dead_letters"), lake.storage_options, s.events_topic,
               RAW_APP_ID, max_new_columns=s.bronze_max_new_columns)  # fmt: skip
    return 0


def landed_tables(s) -> dict[str, tuple[str, str]]:
    """Every topic the platform lands, with its raw table and its writer's app id (the marks' owner)."""
    from lakehouse.cdc.pipeline import RAW_CDC_APP, change_log_table
    from lakehouse.ingest.assets import RAW_APP_ID
    from lakehouse.realtime.assets import LANDED_OUTPUTS, LANDING_APP_ID

    tables = {s.events_topic: ("clickstream_events", RAW_APP_ID)}
    tables.update({s.cdc_topic(t): (change_log_table(t), RAW_CDC_APP) for t in s.cdc_table_list})
    tables.update({s.realtime_topic(o): (f"rt_{o}", LANDING_APP_ID) for o in LANDED_OUTPUTS})
    return tables


def _acknowledge_gap(args: argparse.Namespace) -> int:
    from lakehouse.ingest.landing import acknowledge_gaps, raw_target
    from lakehouse.resources import KafkaResource, LakeResource

    s = get_settings()
    topic = args.topic or s.events_topic
    tables = landed_tables(s)
    if topic not in tables:
        raise StackError(f"{topic} is not a topic the platform lands (it lands {', '.join(sorted(tables))})",
                         fix="pass --topic with one of those, as the landing's error names it")  # fmt: skip
    table, app = tables[topic]
    lake = LakeResource.from_settings(s)
    kafka = KafkaResource.from_settings(s)
    gaps = acknowledge_gaps(kafka, raw_target(lake.table_uri("raw", table), lake.storage_options, topic, app))
    print(f"ingest: acknowledged {sum(g['records'] for g in gaps)} lost records in {len(gaps)} partition(s) "
          f"of {topic} (raw/{table})")  # fmt: skip
    return 0


def _partition_list(text: str) -> list[int]:
    try:
        parts = sorted({int(p) for p in text.split(",") if p.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of partition numbers: {text!r}"
        ) from None
    if not parts or parts[0] < 0:
        raise argparse.ArgumentTypeError(f"partitions are numbers from 0: {text!r}")
    return parts


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
        text, sep, fix = " ".join(problem.split()).rpartition("; fix: ")  # each problem ends with its fix
        _print_error(text if sep else fix, fix if sep else None)
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


def _ui(args: argparse.Namespace) -> int:
    """Print the webserver's address and open it in a browser when there is a display."""
    import webbrowser

    from lakehouse.stack.dagster_services import DagsterWebserver

    s = get_settings()
    web = DagsterWebserver()
    problem = web.health(s)
    if problem:
        raise StackError(f"the Dagster webserver is not serving ({problem})",
                         fix="start it with `lakehouse stack up` (or `make ui`)")  # fmt: skip
    url = web.url(s)
    print(f"Dagster UI: {url}  (webserver, daemon and code server are services of the stack: "
          "`lakehouse stack status`, `lakehouse stack logs dagster-daemon`)")  # fmt: skip
    if not args.no_browser and (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        webbrowser.open(url)
    return 0


def _status(args: argparse.Namespace) -> int:
    """Each layer's freshness, last materialization, lag and failing checks, from the stack's instance."""
    import dagster as dg

    from lakehouse.platform_status import collect, last_runs, render
    from lakehouse.stack.dagster_services import (
        check_storage,
        ensure_instance,
        instance_home,
        storage_environment,
    )

    s = get_settings()
    check_storage(s)  # PostgreSQL down: a clear error now, not Dagster's retries
    home = instance_home(s)
    if not (home / "dagster.yaml").exists():  # read only, but for the instance file `stack up` would write
        ensure_instance(s)
    os.environ.update(storage_environment(s))
    from lakehouse.definitions import defs

    with dg.DagsterInstance.from_config(str(home)) as instance:
        rows = collect(instance, defs.resolve_asset_graph())
        runs = last_runs(instance)
    print(render(rows, runs))
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
    problems = {}
    for job in jobs:
        status, problem = flink.read_status(s, job), flink.problem(s, job)
        if problem is not None:
            problems[job] = problem
        print(f"{job.name:<22} {problem or 'running'}  (Flink job {status.get('job_id', '-')}, "
              f"checkpoint {status.get('checkpoint', '-')}, output {s.realtime_topic(job.output)}, "
              f"log {flink.log_path(s, job)})")  # fmt: skip
    for job, problem in problems.items():
        restart = "" if not flink.running(s, job) else f"`lakehouse stream stop {job.name}`, then "
        _print_error(problem, f"read {flink.log_path(s, job)}; {restart}`lakehouse stream start {job.name}`")
    return 1 if problems else 0


def _as_of(args: argparse.Namespace) -> int:
    from lakehouse.resources import LakeResource
    from lakehouse.time_travel import as_of

    lake = LakeResource.from_settings(get_settings())
    when = datetime.fromisoformat(args.timestamp) if args.timestamp else None
    dt = as_of(
        lake.table_uri(args.layer, args.table), lake.storage_options, version=args.version, timestamp=when
    )
    rows = dt.to_pyarrow_table()
    print(f"{args.layer}/{args.table} at version {dt.version()}: {rows.num_rows} rows")
    for row in rows.slice(0, args.limit).to_pylist():
        print(f"  {row}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from lakehouse.demo import run_demo

    return run_demo(get_settings(), events=args.events, days=args.days)


def _positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (argparse reports anything else as a usage error)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lakehouse",
        description="A real lakehouse on one machine. Configuration comes from LAKEHOUSE_* variables.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    stack = sub.add_parser("stack", help="start, stop and inspect the local services",
                           description="Run the local stack (SeaweedFS, PostgreSQL, the Hive Metastore, Kafka, Kafka "
                           "Connect with Debezium, Trino, ZooKeeper, Pinot, Superset, and Dagster's code server, "
                           "daemon and webserver) as processes on 127.0.0.1. Data survives down/up; downloads are cached.")  # fmt: skip
    stack.add_argument(
        "action",
        choices=["up", "down", "status", "logs", "fetch"],
        help="fetch: download everything (servers, jars) without starting anything",
    )
    stack.add_argument("services", nargs="*", help="only these services (default: all, in order)")
    stack.add_argument("--without", action="append", default=[], metavar="SERVICE",
                       help="up: leave this service out (repeatable), e.g. --without dagster-daemon for a stack "
                            "on which nothing but you starts runs (the test suite does)")  # fmt: skip
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
        "--partitions",
        type=_positive_int,
        default=None,
        help="partitions of the topic when it is created (default: LAKEHOUSE_EVENTS_PARTITIONS)",
    )
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
    iev.add_argument("--partitions", type=_partition_list, default=None, metavar="0,1",
                     help="land only these partitions (default: all); two landers never both commit a partition")  # fmt: skip
    ack = ing_sub.add_parser("acknowledge-gap", help="accept records deleted from Kafka before they were landed",
                             description="When a landing (events, CDC change logs, stream outputs) stops because its next offset is no longer in Kafka "
                             "(retention deleted it), this records the gap (partition, offsets, count) in the "
                             "raw table's history and moves on to Kafka's first offset. Nothing else skips.")  # fmt: skip
    ack.add_argument("--topic", default=None, help="the topic the landing's error names: the events topic (default), "
                     "a CDC topic or a stream job's output topic")  # fmt: skip
    ack.set_defaults(func=_acknowledge_gap)
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

    ui = sub.add_parser("ui", help="open the Dagster UI (the stack's webserver)",
                        description="Checks that the stack's Dagster webserver answers, prints its address "
                        "(LAKEHOUSE_DAGSTER_PORT, default 3000) and opens it in a browser when there is a display.")  # fmt: skip
    ui.add_argument("--no-browser", action="store_true", help="only print the address")
    ui.set_defaults(func=_ui)

    status = sub.add_parser("status", help="each layer's freshness, last run, lag and failing checks",
                            description="One screen from the stack's Dagster instance: per layer (raw to BI) the "
                            "freshness of its assets as the daemon evaluated it, when it was last materialized, "
                            "the largest landing lag and its failing asset checks; then the last runs.")  # fmt: skip
    status.set_defaults(func=_status)

    stream = sub.add_parser("stream", help="the PyFlink stream jobs: start, stop, status",
                            description="Runs the jobs of streaming/jobs as local processes (a Flink mini-cluster "
                            "each), as the realtime/* assets do. status exits 1 if a job is down or stalled.")  # fmt: skip
    stream.add_argument("action", choices=["start", "stop", "status"])
    stream.add_argument(
        "jobs", nargs="*", help="product_ctr, cart_abandonment, suspicious_purchases (default: all)"
    )
    stream.set_defaults(func=_stream)

    lake = sub.add_parser("lake", help="read the lake's Delta tables")
    lake_sub = lake.add_subparsers(dest="what", required=True)
    asof = lake_sub.add_parser("as-of", help="a table as of a version or a time (time travel)",
                               description="Reads LAYER/TABLE as of a version, or as it was at a time (the last "
                               "commit at or before it), with delta-rs; a version that left the table's log is "
                               "refused with the versions still readable. Trino: SELECT ... FOR VERSION AS OF N.")  # fmt: skip
    asof.add_argument("layer", help="raw, bronze, silver or gold")
    asof.add_argument("table")
    when = asof.add_mutually_exclusive_group(required=True)
    when.add_argument("--version", type=int, help="a table version (see its history)")
    when.add_argument("--timestamp", help="ISO time, e.g. 2026-11-27T10:00:00+00:00 (UTC when no zone)")
    asof.add_argument("--limit", type=int, default=5, help="rows to print (default 5)")
    asof.set_defaults(func=_as_of)

    lifecycle_cli.add_parser(sub)
    security_cli.add_parser(sub)
    security_cli.add_privacy_parser(sub)

    demo = sub.add_parser("demo", help="stack up, generate events, materialize every asset, summarise")
    demo.add_argument("--events", type=int, default=5000)
    demo.add_argument("--days", type=int, default=3)
    demo.set_defaults(func=_demo)
    return parser


@dataclass(frozen=True)
class _Service:
    """A service the commands talk to, as the settings locate it, and how to bring it back."""

    name: str
    address: str
    ports: tuple[int, ...]
    stack_name: str  # `lakehouse stack up <stack_name>` starts it locally
    variables: str  # the LAKEHOUSE_ variables that point at it

    @property
    def fix(self) -> str:
        return f"start it with `lakehouse stack up {self.stack_name}`, or point {self.variables} at it"


def _services(s: LakehouseSettings) -> list[_Service]:
    pg = "LAKEHOUSE_POSTGRES_HOST/_PORT (credentials: _USER/_PASSWORD/_DB)"
    return [
        _Service("the object store", s.s3_endpoint, (s.s3_port,), "objectstore", "LAKEHOUSE_S3_ENDPOINT"),
        _Service("Kafka", s.kafka_bootstrap, tuple(p for _, p in s.kafka_brokers), "kafka",
                 "LAKEHOUSE_KAFKA_BOOTSTRAP"),
        _Service("PostgreSQL", f"{s.postgres_host}:{s.postgres_port}", (s.postgres_port,), "postgres", pg),
        _Service("Kafka Connect", f"127.0.0.1:{s.connect_port}", (s.connect_port,), "connect",
                 "LAKEHOUSE_CONNECT_PORT"),
        _Service("Trino", f"{s.trino_host}:{s.trino_port}", (s.trino_port,), "trino", "LAKEHOUSE_TRINO_HOST/_PORT"),
        _Service("the Pinot controller", s.pinot_controller_url, (s.pinot_controller_port,), "pinot",
                 "LAKEHOUSE_PINOT_CONTROLLER_PORT"),
        _Service("the Pinot broker", s.pinot_broker_url, (s.pinot_broker_port,), "pinot",
                 "LAKEHOUSE_PINOT_BROKER_PORT"),
        _Service("ZooKeeper", f"127.0.0.1:{s.zookeeper_port}", (s.zookeeper_port,), "zookeeper",
                 "LAKEHOUSE_ZOOKEEPER_PORT"),
    ]  # fmt: skip


# Words of the errors clients raise when they cannot reach a server (delta-rs, pyarrow and the OS
# report these as plain OSError, next to errors that are bugs, such as a missing local file).
_CONNECTION_WORDS = re.compile(
    r"connect|refused|unreachable|timed? ?out|dns error|name or service not known|name resolution|"
    r"error sending request|reset by peer|broken pipe|no route to host|max retries exceeded",
    re.IGNORECASE,
)
_PORT_IN_TEXT = re.compile(r"(?:[:=]|\bport\s)\s?(\d{1,5})\b")
_LOCAL_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
_SERVICE_OF_CLIENT = {
    "kafka": "Kafka",
    "postgres": "PostgreSQL",
    "trino": "Trino",
    "objectstore": "the object store",
}
_TERMINAL_COLOURS = re.compile(r"\x1b\[[0-9;]*m")  # delta-rs colours the arrows of its error chains


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, then what caused it (`raise ... from`, or the error being handled), once each."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or (None if link.__suppress_context__ else link.__context__)


def _client_kind(exc: BaseException) -> str | None:
    """Which client failed to reach its server ('kafka', 'postgres', 'trino', 'objectstore'), 'network'
    for a connection failure of any client, or None when the exception is not about a service."""
    import psycopg
    import requests
    import trino.exceptions
    from confluent_kafka import KafkaException

    if isinstance(exc, KafkaException):
        return "kafka"
    if isinstance(exc, psycopg.OperationalError):
        return "postgres"
    if isinstance(exc, trino.exceptions.TrinoConnectionError | trino.exceptions.HttpError):
        return "trino"
    if isinstance(exc, requests.HTTPError):
        status = exc.response.status_code if exc.response is not None else 0
        return "network" if status == 404 or status >= 500 else None
    if isinstance(exc, requests.ConnectionError | requests.Timeout | ConnectionError | TimeoutError):
        return "network"
    if type(exc).__module__.startswith("botocore") and "Connect" in type(exc).__name__:
        return "objectstore"
    if isinstance(exc, OSError) and not isinstance(exc, _LOCAL_OS_ERRORS):
        return "network" if _CONNECTION_WORDS.search(str(exc)) else None
    if type(exc).__module__.startswith("deltalake") and _CONNECTION_WORDS.search(str(exc)):
        return "network"
    return None


def _service_named(kind: str, exc: BaseException, services: list[_Service]) -> _Service | None:
    """The service a failed client was talking to: by the client's kind, else by a port in the error."""
    if kind in _SERVICE_OF_CLIENT:
        return next(svc for svc in services if svc.name == _SERVICE_OF_CLIENT[kind])
    request = getattr(exc, "request", None)
    text = f"{getattr(request, 'url', '')} {exc}"
    ports = {int(p) for p in _PORT_IN_TEXT.findall(text)}
    return next((svc for svc in services if ports & set(svc.ports)), None)


def _one_line(exc: BaseException, limit: int = 240) -> str:
    text = " ".join(_TERMINAL_COLOURS.sub("", str(exc)).split()) or "no details"
    return f"{type(exc).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def _service_error(exc: BaseException) -> tuple[str, str] | None:
    """(problem, fix) when the exception, or one that caused it, means a service is down or refused us."""
    for link in _causes(exc):
        kind = _client_kind(link)
        if kind is None:
            continue
        try:
            service = _service_named(kind, link, _services(get_settings()))
        except ValidationError:
            service = None
        if service is None:
            return (f"a service did not answer ({_one_line(link)})",
                    "`lakehouse stack status` shows which one is down; `lakehouse stack up` starts it, or set "
                    "its LAKEHOUSE_ variable to where it runs")  # fmt: skip
        return f"{service.name} at {service.address} did not answer ({_one_line(link)})", service.fix
    return None


def explain(exc: BaseException) -> tuple[str, str | None] | None:
    """What the user sees for an exception: (problem, fix), or None for a bug (shown with its traceback)."""
    if isinstance(exc, StackError | TimeTravelError):
        return exc.problem, exc.fix
    if isinstance(exc, ValidationError) and exc.title == LakehouseSettings.__name__:
        return explain_settings_error(exc)
    return _service_error(exc)


def _print_error(problem: str, fix: str | None) -> None:
    print(f"error: {_TERMINAL_COLOURS.sub('', problem)}", file=sys.stderr)
    if fix:
        print(f"  fix: {fix}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        get_settings()  # refuse bad LAKEHOUSE_ variables before any work starts
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        explained = None if os.environ.get(DEBUG_ENV, "") not in ("", "0") else explain(exc)
        if explained is None:
            raise
        _print_error(*explained)
        return EXIT_SERVICE


if __name__ == "__main__":
    sys.exit(main())
