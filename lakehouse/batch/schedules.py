"""The daily batch: yesterday's silver partitions and the gold models, closed every night at 01:30 UTC;
today's partition refreshed every 15 minutes (LAKEHOUSE_INTRADAY_CRON); days rebuilt when late events
reach bronze; gold rebuilt automatically when the silver it reads changes (declarative automation)."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from lakehouse.policies import DAILY_PARTITIONS, SPARK_RUN_TAG
from lakehouse.resources import LakeResource
from lakehouse.runs import unfinished_run
from lakehouse.settings import get_settings
from lakehouse.warehouse.assets import SILVER_DAILY_KEYS
from lakehouse.warehouse.docs import DOCS_KEY

DAILY_BATCH = dg.AssetSelection.assets(*SILVER_DAILY_KEYS) | dg.AssetSelection.groups("gold")

daily_batch_job = dg.define_asset_job(
    "daily_batch",
    selection=DAILY_BATCH,
    description="Silver daily tables (Spark), the gold warehouse (dbt on Trino) and the dbt docs site, for a "
    "range of days.",
    tags=dict([SPARK_RUN_TAG]),
)

intraday_batch_job = dg.define_asset_job(
    "intraday_batch",
    selection=DAILY_BATCH - dg.AssetSelection.assets(DOCS_KEY),
    description="Today's silver daily tables and gold models: the daily batch without the dbt docs site, whose "
    "pages describe the models and columns, not today's data (rebuilt nightly by daily_batch). Its steps run in "
    "the run's own process, one after another: no step pays for a process of its own.",
    tags=dict([SPARK_RUN_TAG]),
    executor_def=dg.in_process_executor,
)


@dg.schedule(job=daily_batch_job, cron_schedule="30 1 * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.RUNNING,
             description="At 01:30 UTC, yesterday's partition of the daily batch (the day is complete by then).")  # fmt: skip
def daily_batch_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    yesterday = (context.scheduled_execution_time - timedelta(days=1)).date().isoformat()
    return dg.RunRequest(run_key=f"daily_batch:{yesterday}", partition_key=yesterday)


@dg.schedule(job=intraday_batch_job, cron_schedule=get_settings().intraday_cron, execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.RUNNING,
             description="Today's partition of silver and gold, every 15 minutes by default (LAKEHOUSE_INTRADAY_CRON): "
             "today's numbers lag by at most the cadence plus a run. Skipped while the previous refresh runs.")  # fmt: skip
def intraday_batch_schedule(context: dg.ScheduleEvaluationContext):
    tags = {"dagster/schedule_name": "intraday_batch_schedule"}
    unfinished = unfinished_run(context.instance, tags)
    last = context.instance.get_runs(filters=dg.RunsFilter(tags=tags), limit=1)
    if not unfinished and last and last[0].tags.get("dagster/will_retry") == "true" and last[0].is_finished:
        unfinished = last[0]  # failed, and the instance is about to retry it (its retry keeps the tags)
    if unfinished:
        return dg.SkipReason(f"the previous refresh ({unfinished.run_id}) has not finished")
    when = context.scheduled_execution_time
    return dg.RunRequest(run_key=f"intraday:{when.isoformat()}", partition_key=when.date().isoformat(),
                         tags={"lakehouse/reason": "intraday refresh of today's partition"})  # fmt: skip


gold_automation_sensor = dg.AutomationConditionSensorDefinition(
    "gold_automation",
    target=dg.AssetSelection.groups("gold"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Rebuilds gold models (eager automation condition) when the silver tables they read change.",
)


@dg.sensor(job=daily_batch_job, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Rebuilds a day of silver (and its gold) when late events reached bronze after the day was "
           "built: one run per day and per new bronze count.")  # fmt: skip
def late_events_sensor(context: dg.SensorEvaluationContext, lake: LakeResource):
    from lakehouse.batch.checks import days_behind_bronze

    if lake.table("silver", "sessions") is None or lake.table("bronze", "clickstream_events") is None:
        return dg.SkipReason("silver has not been built yet")
    behind = days_behind_bronze(lake)
    # closed days only: today's partition grows all day, and intraday_batch_schedule refreshes it
    today = datetime.now(UTC).date().isoformat()
    valid = {day for day in DAILY_PARTITIONS.get_partition_keys() if day < today}
    requests = [dg.RunRequest(run_key=f"late-events:{day}:{n['bronze']}", partition_key=day,
                              tags={"lakehouse/reason": f"late events: bronze {n['bronze']}, silver {n['silver']}"})
                for day, n in behind.items() if day in valid]  # fmt: skip
    if not requests:
        return dg.SkipReason("every silver day accounts for all of bronze's events")
    context.log.info(f"rebuilding days behind bronze: {behind}")
    return requests
