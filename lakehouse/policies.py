"""Owners and freshness expectations per layer, in one place."""

from datetime import timedelta

import dagster as dg

PLATFORM_OWNER = "team:data-platform"
ANALYTICS_OWNER = "team:analytics-engineering"

# Streaming layers are landed continuously by sensors: stale within the hour is a problem.
STREAMING_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=2), warn_window=timedelta(hours=1)
)
# Daily layers are built each morning for yesterday: late after 06:00 UTC.
DAILY_FRESHNESS = dg.FreshnessPolicy.cron(deadline_cron="0 6 * * *", lower_bound_delta=timedelta(hours=24))

DAILY_PARTITIONS = dg.DailyPartitionsDefinition(start_date="2025-01-01", end_offset=1)
