"""Asset checks of the silver tables."""

from collections import Counter

import dagster as dg

from lakehouse.batch.assets import silver_product_funnel_daily
from lakehouse.resources import LakeResource


@dg.asset_check(asset=silver_product_funnel_daily, blocking=True,
                description="For every day in silver, the funnel's event total equals bronze's event count.")  # fmt: skip
def silver_funnel_reconciles_with_bronze(lake: LakeResource) -> dg.AssetCheckResult:
    silver = lake.read("silver", "product_funnel_daily", columns=["event_date", "events"])
    bronze = lake.read("bronze", "clickstream_events", columns=["event_date"])
    silver_days: Counter = Counter()
    for day, n in zip(
        silver.column("event_date").to_pylist(), silver.column("events").to_pylist(), strict=True
    ):
        silver_days[str(day)] += n
    bronze_days = Counter(str(d) for d in bronze.column("event_date").to_pylist())
    mismatched = {d: {"silver": n, "bronze": bronze_days.get(d, 0)} for d, n in silver_days.items()
                  if n != bronze_days.get(d, 0)}  # fmt: skip
    return dg.AssetCheckResult(
        passed=not mismatched,
        metadata={"days_checked": len(silver_days), "mismatched_days": mismatched},
    )
