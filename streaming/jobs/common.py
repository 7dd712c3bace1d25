"""What the stream jobs share: arguments, the Flink environment, the parsed event source, the
rejects sink, and the loop that reports the job's state while it runs.

Event time and lateness: every job reads `event_time` from the event and derives watermarks
`--watermark-seconds` behind the newest event seen. A valid event that arrives after the
watermark has passed the end of the window it belongs to is *late*: it is not counted in the
job's results but written to the rejects topic with the reason `late`, as is every malformed
message (reason: what is wrong with it). Nothing is dropped without a trace, nothing is coerced
(a quantity beyond INT is a reject, not a default), and a malformed message never fails the job.

Exactly once: offsets and window state live in Flink checkpoints (every `--checkpoint-seconds`),
the Kafka sinks write in transactions committed with each checkpoint, and a restarted job
resumes from its newest retained checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

EPOCH = "TIMESTAMP '1970-01-01 00:00:00'"


def epoch_millis(column: str) -> str:
    """SQL for a TIMESTAMP(3) column (UTC) as milliseconds since the epoch."""
    return (f"(CAST(TIMESTAMPDIFF(SECOND, {EPOCH}, {column}) AS BIGINT) * 1000 "
            f"+ CAST(DATE_FORMAT({column}, 'SSS') AS BIGINT))")  # fmt: skip


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    p.add_argument(
        "--kafka-property",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Kafka client setting for the source and the sinks, e.g. security.protocol=SASL_PLAINTEXT "
        "(repeatable; name a secret through a config provider, never by value: this is a command line)",
    )
    p.add_argument("--source-topic", default="clickstream.events", help="the clickstream topic")
    p.add_argument("--output-topic", required=True, help="where the job writes its results")
    p.add_argument("--rejects-topic", default="rt.stream_rejects", help="malformed and late events go here")
    p.add_argument(
        "--group-id", required=True, help="Kafka consumer group (offsets are committed on checkpoints)"
    )
    p.add_argument("--state-dir", required=True, type=Path, help="checkpoints and the status file live here")
    p.add_argument("--connector-jar", required=True, type=Path, help="flink-sql-connector-kafka jar")
    p.add_argument(
        "--checkpoint-seconds", type=int, default=5, help="checkpoint (and output commit) interval"
    )
    p.add_argument("--watermark-seconds", type=int, default=10, help="how out of order events may arrive")
    p.add_argument(
        "--idle-seconds",
        type=int,
        default=0,
        help="a partition without events this long stops holding the watermark back (0: never; "
        "then every partition must see events for windows to close, and nothing is late by accident)",
    )
    return p


def latest_checkpoint(checkpoints: Path) -> Path | None:
    """The newest complete checkpoint under `checkpoints/<job-id>/chk-N` (it has `_metadata`)."""
    found = [(m.stat().st_mtime, m.parent) for m in checkpoints.glob("*/chk-*/_metadata")]
    return max(found)[1] if found else None


def table_env(args: argparse.Namespace, job: str):
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    checkpoints = args.state_dir / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    conf = Configuration()
    values = {
        "pipeline.name": job,
        "pipeline.jars": args.connector_jar.resolve().as_uri(),
        "parallelism.default": "1",
        "execution.checkpointing.interval": f"{args.checkpoint_seconds}s",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.dir": checkpoints.resolve().as_uri(),
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "execution.checkpointing.num-retained": "2",
        "table.local-time-zone": "UTC",
        "taskmanager.memory.process.size": "1024m",
        # The job's mini-cluster listens on loopback only: its REST API accepts job submissions (code), and
        # its RPC, blob and data ports are as much a way in.
        "rest.address": "127.0.0.1",
        "rest.bind-address": "127.0.0.1",
        "jobmanager.rpc.address": "127.0.0.1",
        "jobmanager.bind-host": "127.0.0.1",
        "taskmanager.host": "127.0.0.1",
        "taskmanager.bind-host": "127.0.0.1",
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
    }
    if args.idle_seconds > 0:
        values["table.exec.source.idle-timeout"] = f"{args.idle_seconds}s"
    restore = latest_checkpoint(checkpoints)
    if restore:
        values["execution.state-recovery.path"] = restore.resolve().as_uri()
        values["execution.state-recovery.ignore-unclaimed-state"] = "true"
        print(f"{job}: resuming from checkpoint {restore}", flush=True)
    for key, value in values.items():
        conf.set_string(key, value)
    # PyFlink's "loopback" mode serves Python workers from this process on a gRPC port bound to every
    # interface ([::]); the jobs are SQL only, so no Python worker is ever needed: process mode starts none.
    os.environ.setdefault("_python_worker_execution_mode", "process")
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    return StreamTableEnvironment.create(env)


def kafka_options(args: argparse.Namespace) -> str:
    """The Kafka connector options of a table: the brokers and the client settings given."""
    pairs = [("bootstrap.servers", args.bootstrap)]
    for item in args.kafka_property:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--kafka-property {item!r}: expected KEY=VALUE")
        pairs.append((key, value))
    quote = lambda v: v.replace("'", "''")  # noqa: E731 - SQL string literal
    return ",\n          ".join(f"'properties.{quote(k)}' = '{quote(v)}'" for k, v in pairs)


def kafka_sink(t_env, name: str, columns: str, topic: str, args: argparse.Namespace) -> None:
    """A JSON Kafka sink written in transactions (visible to read_committed consumers on checkpoint)."""
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE {name} ({columns}) WITH (
          'connector' = 'kafka',
          'topic' = '{topic}',
          {kafka_options(args)},
          'properties.transaction.timeout.ms' = '600000',
          'format' = 'json',
          'json.timestamp-format.standard' = 'ISO-8601',
          'sink.delivery-guarantee' = 'exactly-once',
          'sink.transactional-id-prefix' = '{args.group_id}-{name}'
        )""")


def register_events(t_env, args: argparse.Namespace) -> None:
    """`events`: every message of the source topic, parsed; `malformed_reason` is NULL for a good one.

    A good event is a JSON object with event_id, event_type, an integer user_id and an ISO-8601 UTC
    event_time (`...Z`, `...+00:00` or no zone). `event_ts` is its event time (the epoch for a bad
    one, which never moves the watermark)."""
    parsed_time = (
        "TRY_CAST(REPLACE(SUBSTR(JSON_VALUE(payload, '$.event_time'), 1, 23), 'T', ' ') AS TIMESTAMP(3))"
    )
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE events_source (
          payload STRING,
          kafka_partition INT METADATA FROM 'partition' VIRTUAL,
          kafka_offset BIGINT METADATA FROM 'offset' VIRTUAL,
          event_ts AS COALESCE({parsed_time}, {EPOCH}),
          WATERMARK FOR event_ts AS event_ts - INTERVAL '{args.watermark_seconds}' SECOND
        ) WITH (
          'connector' = 'kafka',
          'topic' = '{args.source_topic}',
          {kafka_options(args)},
          'properties.group.id' = '{args.group_id}',
          'properties.isolation.level' = 'read_committed',
          'scan.startup.mode' = 'group-offsets',
          'properties.auto.offset.reset' = 'earliest',
          'format' = 'raw'
        )""")
    zone = "SUBSTR(JSON_VALUE(payload, '$.event_time'), 24)"
    t_env.execute_sql(f"""
        CREATE TEMPORARY VIEW events AS
        SELECT
          payload, kafka_partition, kafka_offset, event_ts,
          JSON_VALUE(payload, '$.event_id') AS event_id,
          JSON_VALUE(payload, '$.event_type') AS event_type,
          TRY_CAST(JSON_VALUE(payload, '$.user_id') AS BIGINT) AS user_id,
          TRY_CAST(JSON_VALUE(payload, '$.product_id') AS BIGINT) AS product_id,
          TRY_CAST(JSON_VALUE(payload, '$.merchant_id') AS BIGINT) AS merchant_id,
          TRY_CAST(JSON_VALUE(payload, '$.price') AS DOUBLE) AS price,
          COALESCE(TRY_CAST(JSON_VALUE(payload, '$.quantity') AS INT), 1) AS quantity,
          CASE
            WHEN payload IS NULL OR NOT (payload IS JSON OBJECT) THEN 'not a JSON object'
            WHEN JSON_VALUE(payload, '$.event_id') IS NULL THEN 'missing event_id'
            WHEN JSON_VALUE(payload, '$.event_type') IS NULL THEN 'missing event_type'
            WHEN JSON_VALUE(payload, '$.user_id') IS NULL THEN 'missing user_id'
            WHEN TRY_CAST(JSON_VALUE(payload, '$.user_id') AS BIGINT) IS NULL THEN 'user_id is not an integer'
            WHEN JSON_VALUE(payload, '$.event_time') IS NULL THEN 'missing event_time'
            WHEN {parsed_time} IS NULL OR {zone} NOT IN ('', 'Z', '+00:00')
              OR CHAR_LENGTH(JSON_VALUE(payload, '$.event_time')) < 19
              THEN 'event_time is not an ISO-8601 UTC timestamp'
            WHEN JSON_VALUE(payload, '$.price') IS NOT NULL
              AND TRY_CAST(JSON_VALUE(payload, '$.price') AS DOUBLE) IS NULL THEN 'price is not a number'
            WHEN JSON_VALUE(payload, '$.quantity') IS NOT NULL
              AND TRY_CAST(JSON_VALUE(payload, '$.quantity') AS INT) IS NULL
              THEN 'quantity is not an integer in range'
            WHEN JSON_VALUE(payload, '$.product_id') IS NOT NULL
              AND TRY_CAST(JSON_VALUE(payload, '$.product_id') AS BIGINT) IS NULL
              THEN 'product_id is not an integer in range'
            WHEN JSON_VALUE(payload, '$.merchant_id') IS NOT NULL
              AND TRY_CAST(JSON_VALUE(payload, '$.merchant_id') AS BIGINT) IS NULL
              THEN 'merchant_id is not an integer in range'
            ELSE CAST(NULL AS STRING)
          END AS malformed_reason
        FROM events_source""")


REJECT_COLUMNS = (
    "job STRING, reason STRING, payload STRING, kafka_partition INT, kafka_offset BIGINT, "
    "event_time TIMESTAMP(3), detected_at TIMESTAMP_LTZ(3)"
)


def reject_statement(job: str, late_condition: str, relevant: str) -> str:
    """One INSERT (a sink needs its own transactional ids) sending malformed messages, and relevant
    events that are late, to `rejects`."""
    columns = "kafka_partition, kafka_offset, event_ts, CURRENT_TIMESTAMP"
    return (
        f"INSERT INTO rejects SELECT '{job}', malformed_reason, payload, {columns} "
        "FROM events WHERE malformed_reason IS NOT NULL "
        f"UNION ALL SELECT '{job}', 'late', payload, {columns} "
        f"FROM events WHERE malformed_reason IS NULL AND ({relevant}) AND ({late_condition})"
    )


def on_time(late_condition: str) -> str:
    """A row is on time unless the late condition holds (no watermark yet: on time)."""
    return f"NOT COALESCE({late_condition}, FALSE)"


def write_status(state_dir: Path, **fields) -> None:
    path = state_dir / "status.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**fields, "updated_at": time.time()}))
    tmp.replace(path)


def run(t_env, statements: list[str], args: argparse.Namespace, job: str) -> int:
    """Submit the statements as one Flink job and report its state every 2 s until it ends."""
    statement_set = t_env.create_statement_set()
    for sql in statements:
        statement_set.add_insert_sql(sql)
    result = statement_set.execute()
    client = result.get_job_client()
    job_id = str(client.get_job_id())
    print(f"{job}: submitted as Flink job {job_id}", flush=True)
    while True:
        status = str(client.get_job_status().result()).rsplit(".", 1)[-1]
        checkpoint = latest_checkpoint(args.state_dir / "checkpoints")
        write_status(args.state_dir, job=job, job_id=job_id, state=status,
                     checkpoint=checkpoint.name if checkpoint else None,
                     checkpoint_at=checkpoint.stat().st_mtime if checkpoint else None)  # fmt: skip
        if status in ("FINISHED", "CANCELED", "FAILED"):
            print(f"{job}: Flink job {job_id} ended {status}", flush=True)
            return 0 if status == "FINISHED" else 1
        time.sleep(2)


def main(build, description: str, job: str, extra_args=None, argv: list[str] | None = None) -> int:
    p = parser(description)
    if extra_args:
        extra_args(p)
    args = p.parse_args(argv)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    write_status(args.state_dir, job=job, state="STARTING")
    try:
        t_env = table_env(args, job)
        register_events(t_env, args)
        kafka_sink(t_env, "rejects", REJECT_COLUMNS, args.rejects_topic, args)
        statements = build(t_env, args)
        return run(t_env, statements, args, job)
    except Exception as exc:  # report why in the status file, then fail loudly
        write_status(args.state_dir, job=job, state="FAILED", error=str(exc)[:2000])
        raise
    finally:
        sys.stdout.flush()
