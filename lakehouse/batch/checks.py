"""Asset checks of the silver daily tables: each accounts for every bronze event of the days it built.

A late event for a day silver built earlier does not jam the checks (which would block gold for every
day from then on): each run checks the days it built, exactly; days that fell behind bronze are listed
with the command that rebuilds them, and `late_events_sensor` rebuilds them (silver, then gold)."""

from collections import Counter

import dagster as dg
import pyarrow.compute as pc

from lakehouse.batch.assets import BRONZE_VERSION, ENRICHED_KEY, FUNNEL_KEY, SESSIONS_KEY
from lakehouse.policies import DAILY_PARTITIONS
from lakehouse.resources import LakeResource


def day_counts(
    lake: LakeResource, table: str, events_column: str | None, bronze_version: int | None = None
) -> Counter:
    """Events per day in a silver table (the sum of `events_column`, or its rows); bronze's with table=None
    (as of `bronze_version`, if given)."""
    if table is None:
        bronze = lake.read("bronze", "clickstream_events", columns=["event_date"], version=bronze_version)
        return Counter(str(d) for d in bronze.column("event_date").to_pylist())
    silver = lake.read("silver", table, columns=["event_date"] + ([events_column] if events_column else []))
    counts = silver.column(events_column).to_pylist() if events_column else [1] * silver.num_rows
    days: Counter = Counter()
    for day, n in zip(silver.column("event_date").to_pylist(), counts, strict=True):
        days[str(day)] += n
    return days


def days_behind_bronze(
    lake: LakeResource, table: str = "sessions", events_column: str | None = "events"
) -> dict:
    """Days silver has built whose bronze events changed since (late events): day -> {silver, bronze}."""
    silver, bronze = day_counts(lake, table, events_column), day_counts(lake, None, None)
    return {
        d: {"silver": n, "bronze": bronze.get(d, 0)}
        for d, n in sorted(silver.items())
        if n != bronze.get(d, 0)
    }


def rebuild_command(days: list[str]) -> str:
    return (f"dagster asset materialize -m lakehouse.definitions --select 'silver/*' --partition-range "
            f"{days[0]}...{days[-1]}" if len(days) > 1 else
            f"dagster asset materialize -m lakehouse.definitions --select 'silver/*' --partition {days[0]}")  # fmt: skip


def run_days(context) -> set[str] | None:
    """The days the current run built (from its partition tags); None when it is not a partitioned run."""
    tags = context.run.tags if context is not None else {}
    if "dagster/partition" in tags:
        return {tags["dagster/partition"]}
    first, last = (
        tags.get("dagster/asset_partition_range_start"),
        tags.get("dagster/asset_partition_range_end"),
    )
    if first and last:
        return set(DAILY_PARTITIONS.get_partition_keys_in_range(dg.PartitionKeyRange(first, last)))
    return None


def built_from(context, key: dg.AssetKey) -> int | None:
    """The bronze version this run's materialization of `key` was built from (None outside a run)."""
    return None if context is None else bronze_version_of(context.instance, context.run, key)


def bronze_version_of(instance: dg.DagsterInstance, run: dg.DagsterRun, key: dg.AssetKey) -> int | None:
    """The bronze version `run`'s materialization of `key` was built from: looked up in the run's own records,
    then in its parents' (a retry re-runs only the failed steps, so the check of a retried run can follow a
    materialization of its parent run). None without such a materialization."""
    while run is not None:
        records = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records
        for record in reversed(records):
            materialization = record.event_log_entry.asset_materialization
            if materialization is not None and materialization.asset_key == key:
                value = materialization.metadata.get(BRONZE_VERSION)
                return int(value.value) if value is not None else None
        run = instance.get_run_by_id(run.parent_run_id) if run.parent_run_id else None
    return None


def events_per_day_match_bronze(
    context, lake: LakeResource, table: str, events_column: str | None
) -> dg.AssetCheckResult:
    """Per day the run built, the table's events equal bronze's events, as of the bronze version the run
    read (the landing goes on committing meanwhile). Other days that fell behind bronze (late events arrived
    after they were built) do not fail this run: they are listed with the command that rebuilds them, and
    the late_events sensor rebuilds them on its own."""
    version = built_from(context, dg.AssetKey(["silver", table]))
    silver_days, bronze_days = day_counts(lake, table, events_column), day_counts(lake, None, None, version)
    built = run_days(context)
    checked = built if built is not None else set(silver_days)
    mismatched = {d: {"silver": silver_days.get(d, 0), "bronze": bronze_days.get(d, 0)} for d in sorted(checked)
                  if silver_days.get(d, 0) != bronze_days.get(d, 0)}  # fmt: skip
    behind = sorted(d for d, n in silver_days.items() if d not in checked and n != bronze_days.get(d, 0))
    metadata = {
        "bronze_version": version if version is not None else "latest",
        "days_checked": len(checked),
        "mismatched_days": mismatched,
        "other_days_behind_bronze": behind,
    }
    if behind:
        metadata["rebuild_behind_days"] = rebuild_command(behind)
    if mismatched:
        metadata["rebuild_mismatched_days"] = rebuild_command(sorted(mismatched))
    return dg.AssetCheckResult(passed=not mismatched, metadata=metadata)


@dg.asset_check(asset=FUNNEL_KEY, blocking=True,
                description="For every day in silver, the funnel's event total equals bronze's event count.")  # fmt: skip
def silver_funnel_reconciles_with_bronze(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    return events_per_day_match_bronze(context, lake, "product_funnel_daily", "events")


@dg.asset_check(asset=SESSIONS_KEY, blocking=True,
                description="Every bronze event is in exactly one session: per day, session events sum to bronze's.")  # fmt: skip
def sessions_account_for_every_event(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    return events_per_day_match_bronze(context, lake, "sessions", "events")


@dg.asset_check(asset=SESSIONS_KEY, blocking=True, description="session_id is unique; start <= end.")
def session_ids_unique(lake: LakeResource) -> dg.AssetCheckResult:
    table = lake.read("silver", "sessions", columns=["session_id", "session_start", "session_end"])
    ids = table.column("session_id")
    repeated = table.num_rows - pc.count_distinct(ids).as_py()
    backwards = pc.sum(pc.greater(table.column("session_start"), table.column("session_end"))).as_py() or 0
    return dg.AssetCheckResult(passed=repeated == 0 and backwards == 0,
                               metadata={"sessions": table.num_rows, "repeated_ids": repeated,
                                         "start_after_end": backwards})  # fmt: skip


@dg.asset_check(asset=ENRICHED_KEY, blocking=True,
                description="The enrichment keeps every event: per day, as many rows as bronze has events.")  # fmt: skip
def enriched_events_keep_every_event(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    return events_per_day_match_bronze(context, lake, "enriched_events", None)
