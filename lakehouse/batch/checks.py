"""Asset checks of the silver daily tables: each accounts for every bronze event of its days."""

from collections import Counter

import dagster as dg
import pyarrow.compute as pc

from lakehouse.batch.assets import ENRICHED_KEY, FUNNEL_KEY, SESSIONS_KEY
from lakehouse.resources import LakeResource


def events_per_day_match_bronze(
    lake: LakeResource, table: str, events_column: str | None
) -> dg.AssetCheckResult:
    """Per day, the table's events (the sum of `events_column`, or its rows) equal bronze's events."""
    columns = ["event_date"] + ([events_column] if events_column else [])
    silver = lake.read("silver", table, columns=columns)
    counts = silver.column(events_column).to_pylist() if events_column else [1] * silver.num_rows
    silver_days: Counter = Counter()
    for day, n in zip(silver.column("event_date").to_pylist(), counts, strict=True):
        silver_days[str(day)] += n
    bronze = lake.read("bronze", "clickstream_events", columns=["event_date"])
    bronze_days = Counter(str(d) for d in bronze.column("event_date").to_pylist())
    mismatched = {d: {"silver": n, "bronze": bronze_days.get(d, 0)} for d, n in silver_days.items()
                  if n != bronze_days.get(d, 0)}  # fmt: skip
    return dg.AssetCheckResult(passed=not mismatched, metadata={"days_checked": len(silver_days),
                                                                "mismatched_days": mismatched})  # fmt: skip


@dg.asset_check(asset=FUNNEL_KEY, blocking=True,
                description="For every day in silver, the funnel's event total equals bronze's event count.")  # fmt: skip
def silver_funnel_reconciles_with_bronze(lake: LakeResource) -> dg.AssetCheckResult:
    return events_per_day_match_bronze(lake, "product_funnel_daily", "events")


@dg.asset_check(asset=SESSIONS_KEY, blocking=True,
                description="Every bronze event is in exactly one session: per day, session events sum to bronze's.")  # fmt: skip
def sessions_account_for_every_event(lake: LakeResource) -> dg.AssetCheckResult:
    return events_per_day_match_bronze(lake, "sessions", "events")


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
def enriched_events_keep_every_event(lake: LakeResource) -> dg.AssetCheckResult:
    return events_per_day_match_bronze(lake, "enriched_events", None)
