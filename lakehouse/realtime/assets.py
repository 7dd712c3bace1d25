"""Real-time assets: the PyFlink stream jobs (and their output topics), the landing of their
outputs in the lake, and the Apache Pinot tables that serve merchants' dashboards."""

import time
from pathlib import Path

import dagster as dg

from lakehouse.cdc.assets import change_log_key
from lakehouse.ingest.assets import RAW_KEY
from lakehouse.ingest.landing import land_topic, raw_target
from lakehouse.ingest.sensors import kafka_sensor
from lakehouse.policies import PLATFORM_OWNER, STREAMING_FRESHNESS
from lakehouse.realtime import flink
from lakehouse.realtime.pinot import PINOT_TABLES, CdcTable, PinotClient, PinotRejected
from lakehouse.resources import KafkaResource, LakeResource, PinotResource, TrinoResource
from lakehouse.settings import get_settings
from lakehouse.stack.errors import StackError
from lakehouse.table_figures import table_figures

LANDING_APP_ID = "lakehouse-rt"
MAX_INGESTION_LAG = 10_000  # records behind Kafka before the lag check warns


def job_key(job: flink.FlinkJob) -> dg.AssetKey:
    return dg.AssetKey(["realtime", job.name])


def landed_key(output: str) -> dg.AssetKey:
    return dg.AssetKey(["raw", f"rt_{output}"])


def pinot_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["pinot", name])


def _build_job_asset(job: flink.FlinkJob) -> dg.AssetsDefinition:
    @dg.asset(
        key=job_key(job), deps=[RAW_KEY], group_name="realtime", owners=[PLATFORM_OWNER],
        kinds={"flink", "kafka"}, freshness_policy=STREAMING_FRESHNESS,
        backfill_policy=dg.BackfillPolicy.single_run(),
        description=f"{job.description} A PyFlink job, started here and kept running; its output topic "
        f"is `rt.{job.output}`, malformed and late events go to `rt.{flink.REJECTS_OUTPUT}`.",
    )  # fmt: skip
    def stream_job(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        s = get_settings()
        try:
            status = flink.start(s, job, log=context.log.info)
        except StackError as exc:
            raise dg.Failure(description=str(exc)) from exc
        return dg.MaterializeResult(
            metadata={
                "flink_job_id": status["job_id"],
                "pid": status["pid"],
                "output_topic": s.realtime_topic(job.output),
                "rejects_topic": s.realtime_topic(flink.REJECTS_OUTPUT),
                "source_topic": s.events_topic,
                "latest_checkpoint": str(status.get("checkpoint")),
                "state_dir": str(flink.state_dir(s, job)),
            }
        )

    return stream_job


def _build_job_check(job: flink.FlinkJob) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=job_key(job), name="flink_job_running",
                    description="The Flink job runs, reports its state and completes checkpoints.")  # fmt: skip
    def check() -> dg.AssetCheckResult:
        s = get_settings()
        status = flink.read_status(s, job)
        reason = flink.problem(s, job)
        return dg.AssetCheckResult(
            passed=reason is None,
            description=reason or "running",
            metadata={
                "state": str(status.get("state")),
                "checkpoint": str(status.get("checkpoint")),
                "log": str(flink.log_path(s, job)),
            },  # fmt: skip
        )

    return check


stream_job_assets = [_build_job_asset(job) for job in flink.FLINK_JOBS]
stream_job_checks = [_build_job_check(job) for job in flink.FLINK_JOBS]

LANDED_OUTPUTS = [*(job.output for job in flink.FLINK_JOBS), flink.REJECTS_OUTPUT]


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            landed_key(output), group_name="raw", owners=[PLATFORM_OWNER], kinds={"kafka", "delta"},
            freshness_policy=STREAMING_FRESHNESS,
            deps=[job_key(j) for j in flink.FLINK_JOBS if output in (j.output, flink.REJECTS_OUTPUT)],
            description=f"The stream jobs' `rt.{output}` topic landed in the lake as received, exactly "
            "once (the same Kafka -> Delta landing as the clickstream).",
        )
        for output in LANDED_OUTPUTS
    ],
    can_subset=True,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="landing_raw_rt",
)  # fmt: skip
def realtime_outputs_landed(
    context: dg.AssetExecutionContext, kafka: KafkaResource, lake: LakeResource, trino: TrinoResource
):
    s = get_settings()
    for output in LANDED_OUTPUTS:
        key = landed_key(output)
        if key not in context.selected_asset_keys:
            continue
        topic, table = s.realtime_topic(output), f"rt_{output}"
        if not kafka.topic_exists(topic):
            context.log.info(f"{topic} does not exist yet (its stream job never ran): nothing to land")
            yield dg.MaterializeResult(asset_key=key, metadata={"topic": topic, "rows_landed": 0})
            continue
        uri, started = lake.table_uri("raw", table), time.monotonic()
        result = land_topic(kafka, raw_target(uri, lake.storage_options, topic, LANDING_APP_ID),
                            log=context.log.info)  # fmt: skip
        trino.register_if_reachable(lake, "raw", table, context.log.warning)
        yield dg.MaterializeResult(asset_key=key, metadata={
            "topic": topic, **result.figures(), **table_figures(lake.table("raw", table), started), "table_uri": uri,
            "trino_table": trino.qualified(lake, "raw", table),
        })  # fmt: skip


class PinotTableConfig(dg.Config):
    config_dir: str = ""  # another folder of <table>.{schema,table}.json; default: the repo's


def _pinot_deps(table) -> list[dg.AssetKey]:
    if isinstance(table, CdcTable):
        return [change_log_key(table.source_table)]
    return [job_key(j) for j in flink.FLINK_JOBS if j.output == table.output]


def _build_pinot_asset(table) -> dg.AssetsDefinition:
    @dg.asset(
        key=pinot_key(table.name), deps=_pinot_deps(table), group_name="pinot", owners=[PLATFORM_OWNER],
        kinds={"pinot", "kafka"}, freshness_policy=STREAMING_FRESHNESS,
        backfill_policy=dg.BackfillPolicy.single_run(),
        description=f"{table.description} A Pinot REALTIME table consuming Kafka; its schema and table "
        f"config are `lakehouse/realtime/pinot/{table.name}.*.json`, applied idempotently.",
    )  # fmt: skip
    def pinot_table(
        context: dg.AssetExecutionContext,
        config: PinotTableConfig,
        pinot: PinotResource,
        kafka: KafkaResource,
    ):
        s = get_settings()
        topic = table.topic(s)
        if not kafka.topic_exists(topic):  # Pinot would answer with a NullPointerException
            raise dg.Failure(
                description=f"the Kafka topic {topic} that Pinot table {s.pinot_table(table.name)} "
                "consumes does not exist yet; materialize the assets upstream of this one first "
                f"({', '.join(k.to_user_string() for k in _pinot_deps(table))})"
            )
        folder = Path(config.config_dir) if config.config_dir else None
        try:
            schema, action = pinot.client().apply(table, s, config_dir=folder)
        except PinotRejected as exc:
            raise dg.Failure(description=str(exc), metadata={"table": s.pinot_table(table.name)}) from exc
        except StackError as exc:
            raise dg.Failure(description=str(exc)) from exc
        context.log.info(f"Pinot table {s.pinot_table(table.name)}: {action}")
        return dg.MaterializeResult(
            metadata={
                "table": s.pinot_table(table.name),
                "schema": schema,
                "action": action,
                "topic": topic,
                "controller": pinot.controller_url,
            }  # fmt: skip
        )

    return pinot_table


def _build_lag_check(table) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=pinot_key(table.name), name="ingestion_lag",
                    description=f"How many records of the Kafka topic Pinot has not consumed yet "
                    f"(warns above {MAX_INGESTION_LAG:,}).")  # fmt: skip
    def check(kafka: KafkaResource, pinot: PinotResource) -> dg.AssetCheckResult:
        s = get_settings()
        name = s.pinot_table(table.name)
        try:
            info = pinot.client().consuming_info(name)
        except (PinotRejected, StackError) as exc:
            return dg.AssetCheckResult(passed=False, description=str(exc))
        consumed: dict[int, int] = {}
        for replicas in info.get("_segmentToConsumingInfoMap", {}).values():
            for replica in replicas:
                for partition, offset in replica.get("partitionToOffsetMap", {}).items():
                    consumed[int(partition)] = max(consumed.get(int(partition), 0), int(offset))
        end = kafka.end_offsets(table.topic(s))
        lag = {p: max(0, e - consumed.get(p, 0)) for p, e in end.items()}
        total = sum(lag.values())
        return dg.AssetCheckResult(
            passed=total <= MAX_INGESTION_LAG and bool(consumed),
            severity=dg.AssetCheckSeverity.WARN,
            description=f"{total:,} records behind Kafka" if consumed else "no consuming segment",
            metadata={"records_behind": total, "per_partition": {str(p): v for p, v in lag.items()}},
        )

    return check


pinot_table_assets = [_build_pinot_asset(t) for t in PINOT_TABLES]
pinot_lag_checks = [_build_lag_check(t) for t in PINOT_TABLES]


def _build_landed_check(output: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=landed_key(output), name="landed_exactly_once", blocking=True,
                    description="No Kafka record is landed twice (each partition and offset appears once; "
                    "transaction markers leave gaps, so offsets need not be contiguous).")  # fmt: skip
    def check(lake: LakeResource) -> dg.AssetCheckResult:
        if lake.table("raw", f"rt_{output}") is None:
            return dg.AssetCheckResult(passed=True, description="nothing landed yet", metadata={"rows": 0})
        rows = lake.read("raw", f"rt_{output}", columns=["partition", "offset"])
        distinct = rows.group_by(["partition", "offset"]).aggregate([]).num_rows
        return dg.AssetCheckResult(
            passed=distinct == rows.num_rows,
            metadata={"rows": rows.num_rows, "distinct_offsets": distinct},
        )

    return check


landed_checks = [_build_landed_check(output) for output in LANDED_OUTPUTS]


stream_jobs = dg.define_asset_job(
    "stream_jobs",
    selection=dg.AssetSelection.assets(*(job_key(j) for j in flink.FLINK_JOBS)),
    description="Start the PyFlink stream jobs that are not running (each resumes from its checkpoint).",
)


def jobs_to_restart(s) -> dict[str, str]:
    """Jobs that were started here once and whose process is gone, with what is wrong."""
    return {
        job.name: flink.problem(s, job) or ""
        for job in flink.FLINK_JOBS
        # never started in this environment: materialize realtime/<job> to start it
        if flink.state_dir(s, job).exists() and not flink.running(s, job)
    }


HEARTBEAT_SECONDS = 1800  # half the streaming layers' warn window (lakehouse/policies.py)


def heartbeats(s, instance, now: float | None = None) -> list[dg.AssetMaterialization]:
    """Materializations of the stream jobs that run and checkpoint, and of the Pinot tables that consume,
    for those last materialized HEARTBEAT_SECONDS ago or more. A stream job or a Pinot table is started
    once and then runs by itself: without this, its freshness policy would fail two hours after the start
    while it works, and stay passing while it is down if nothing looked."""
    now = time.time() if now is None else now
    keys = {**{job_key(j): j for j in flink.FLINK_JOBS}, **{pinot_key(t.name): t for t in PINOT_TABLES}}
    latest = instance.get_latest_materialization_events(list(keys))
    due = [k for k in keys if latest.get(k) is None or now - latest[k].timestamp >= HEARTBEAT_SECONDS]
    events = []
    pinot = None
    for key in due:
        if isinstance(keys[key], flink.FlinkJob):
            status = flink.read_status(s, keys[key])
            # problem() judges the checkpoint's age by the clock; a job that never checkpointed gets none
            if flink.problem(s, keys[key]) is None and status.get("checkpoint_at"):
                events.append(dg.AssetMaterialization(key, description="running and checkpointing",
                                                      metadata={"observed_by": "stream_jobs_watchdog",
                                                                "latest_checkpoint": str(status.get("checkpoint"))}))  # fmt: skip
            continue
        if latest.get(key) is None:
            continue  # a table never created here: materialize it to create it
        try:
            pinot = pinot or PinotClient.from_settings(s)
            info = pinot.consuming_info(s.pinot_table(keys[key].name))
        except (PinotRejected, StackError, ValueError):
            break  # Pinot does not answer: no heartbeat for any table, their policies will say so
        segments = info.get("_segmentToConsumingInfoMap") or {}
        consuming = [
            r for replicas in segments.values() for r in replicas if r.get("consumerState") == "CONSUMING"
        ]
        if consuming:
            events.append(dg.AssetMaterialization(key, description="consuming Kafka",
                                                  metadata={"observed_by": "stream_jobs_watchdog",
                                                            "consuming_segments": len(consuming)}))  # fmt: skip
    return events


@dg.sensor(job=stream_jobs, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Watchdog: restarts a stream job whose process is gone (it resumes from its newest "
           "checkpoint, so nothing is lost or written twice); jobs never started are left alone. Records a "
           "materialization of each stream job that runs and each Pinot table that consumes, every 30 "
           "minutes, so that their freshness says whether they work.")  # fmt: skip
def stream_jobs_watchdog(context: dg.SensorEvaluationContext):
    s = get_settings()
    down = jobs_to_restart(s)  # first: a heartbeat that fails must not keep a dead job down
    for problem in down.values():
        context.log.warning(problem)
    try:
        events = heartbeats(s, context.instance)
    except Exception as exc:  # noqa: BLE001 - reported; the restart below still happens
        context.log.warning(f"no heartbeats this tick: {type(exc).__name__}: {exc}")
        events = []
    if not down:
        return dg.SensorResult(
            asset_events=events, skip_reason="every stream job that was started is running"
        )
    return dg.SensorResult(asset_events=events, run_requests=[dg.RunRequest(
        run_key=f"restart-{'-'.join(sorted(down))}-{int(time.time())}",
        asset_selection=[job_key(flink.by_name(n)) for n in sorted(down)],
        tags={"lakehouse/restarted": ",".join(sorted(down))},
    )])  # fmt: skip


realtime_landing_job = dg.define_asset_job(
    "realtime_landing",
    selection=dg.AssetSelection.assets(*(landed_key(o) for o in LANDED_OUTPUTS)),
    description="Land the stream jobs' new output records in the lake (raw/rt_*), exactly once.",
)
realtime_kafka_sensor = kafka_sensor(
    "realtime_kafka_sensor", realtime_landing_job,
    lambda kafka: [get_settings().realtime_topic(o) for o in LANDED_OUTPUTS],
    "Requests a landing run whenever a stream job's output topic has new records.",
)  # fmt: skip
