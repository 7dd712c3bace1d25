"""The Dagster code location: the whole lakehouse as one asset graph."""

import dagster as dg

from lakehouse.alerts import freshness_alerts, run_failure_alerts
from lakehouse.batch import assets as batch_assets
from lakehouse.batch import checks as batch_checks
from lakehouse.batch.schedules import (
    daily_batch_job,
    daily_batch_schedule,
    gold_automation_sensor,
    intraday_batch_job,
    intraday_batch_schedule,
    late_events_sensor,
)
from lakehouse.bi.assets import (
    bi_automation_sensor,
    bundle_is_self_contained,
    dashboard_assets,
    dashboard_checks,
    superset_bundle,
)
from lakehouse.cdc.assets import (
    cdc_apply_job,
    cdc_kafka_sensor,
    change_log_checks,
    current_prices_match_source,
    no_unapplied_changes,
    raw_cdc_change_logs,
    reconciliation_checks,
    silver_cdc_current_state,
    silver_product_price_history,
)
from lakehouse.ingest import assets as ingest_assets
from lakehouse.ingest import checks as ingest_checks
from lakehouse.ingest.maintenance import table_maintenance, table_maintenance_schedule
from lakehouse.ingest.sensors import clickstream_ingest_job, clickstream_kafka_sensor
from lakehouse.lifecycle.assets import (
    archive_assets,
    backup_schedule,
    backups,
    backups_and_drill_job,
    lifecycle_archive_schedule,
    restore_assets,
    restore_drill,
    wal_shipping,
    wal_shipping_schedule,
)
from lakehouse.policies import check_pool_limits
from lakehouse.realtime.assets import (
    landed_checks,
    pinot_lag_checks,
    pinot_table_assets,
    realtime_kafka_sensor,
    realtime_landing_job,
    realtime_outputs_landed,
    stream_job_assets,
    stream_job_checks,
    stream_jobs,
    stream_jobs_watchdog,
)
from lakehouse.resources import build_resources
from lakehouse.security.audit import (
    every_event_is_a_query,
    trino_audit,
    trino_audit_job,
    trino_audit_schedule,
)
from lakehouse.settings import get_settings
from lakehouse.warehouse.assets import dbt_resource, gold_daily_dbt_models, gold_dbt_models
from lakehouse.warehouse.docs import dbt_docs_site, docs_cover_every_model

settings = get_settings()

all_assets_job = dg.define_asset_job(
    "lakehouse_all",
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups("lifecycle"),
    description="Every asset, raw to gold, for one partition range (the demo and CI run).",
)

defs = dg.Definitions(
    assets=[
        *dg.load_assets_from_modules([ingest_assets, batch_assets]),
        raw_cdc_change_logs,
        silver_cdc_current_state,
        silver_product_price_history,
        gold_dbt_models,
        gold_daily_dbt_models,
        dbt_docs_site,
        *stream_job_assets,
        realtime_outputs_landed,
        *pinot_table_assets,
        superset_bundle,
        *dashboard_assets,
        *archive_assets,
        *restore_assets,
        backups,
        restore_drill,
        trino_audit,
    ],
    asset_checks=[
        *dg.load_asset_checks_from_modules([ingest_checks, batch_checks]),
        *change_log_checks,
        *reconciliation_checks,
        current_prices_match_source,
        no_unapplied_changes,
        docs_cover_every_model,
        *stream_job_checks,
        *landed_checks,
        *pinot_lag_checks,
        bundle_is_self_contained,
        *dashboard_checks,
        every_event_is_a_query,
    ],
    jobs=[
        all_assets_job,
        daily_batch_job,
        intraday_batch_job,
        clickstream_ingest_job,
        cdc_apply_job,
        table_maintenance,
        stream_jobs,
        realtime_landing_job,
        backups_and_drill_job,
        wal_shipping,
        trino_audit_job,
    ],
    sensors=[
        clickstream_kafka_sensor,
        cdc_kafka_sensor,
        gold_automation_sensor,
        late_events_sensor,
        stream_jobs_watchdog,
        realtime_kafka_sensor,
        bi_automation_sensor,
        run_failure_alerts,
        freshness_alerts,
    ],
    schedules=[
        table_maintenance_schedule,
        daily_batch_schedule,
        intraday_batch_schedule,
        lifecycle_archive_schedule,
        backup_schedule,
        wal_shipping_schedule,
        trino_audit_schedule,
    ],
    resources={**build_resources(settings, env_secrets=True), "dbt": dbt_resource()},
)
check_pool_limits(defs, settings.dagster_pool_limits)
