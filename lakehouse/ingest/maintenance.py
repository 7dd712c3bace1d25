"""Table maintenance of the streaming tables: compact small files, checkpoint, vacuum old files."""

import dagster as dg

from lakehouse.resources import LakeResource
from lakehouse.settings import get_settings

STREAMING_TABLES = [("raw", "clickstream_events"), ("bronze", "clickstream_events"),
                    ("bronze", "clickstream_dead_letters")]  # fmt: skip


class MaintenanceConfig(dg.Config):
    retention_hours: int = get_settings().vacuum_retention_hours
    target_file_mb: int = 128


@dg.op(description="Compact small files, write a checkpoint, and vacuum files older than the retention.")
def compact_and_vacuum(context: dg.OpExecutionContext, config: MaintenanceConfig, lake: LakeResource) -> dict:
    report = {}
    for layer, name in STREAMING_TABLES:
        table = lake.table(layer, name)
        if table is None:
            continue
        files_before = len(table.file_uris())
        metrics = table.optimize.compact(target_size=config.target_file_mb * 2**20)
        table.create_checkpoint()
        removed = table.vacuum(retention_hours=config.retention_hours, enforce_retention_duration=False,
                               dry_run=False)  # fmt: skip
        report[f"{layer}.{name}"] = {
            "files_before": files_before,
            "files_added": metrics.get("numFilesAdded", 0),
            "files_removed": metrics.get("numFilesRemoved", 0),
            "vacuumed": len(removed),
        }
        context.log.info(f"{layer}/{name}: {report[f'{layer}.{name}']}")
    return report


@dg.job(description="Daily upkeep of the streaming Delta tables (small files from frequent commits).")
def table_maintenance():
    compact_and_vacuum()


table_maintenance_schedule = dg.ScheduleDefinition(
    job=table_maintenance, cron_schedule="30 3 * * *", default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Compacts and vacuums the streaming tables every night at 03:30 UTC.",
)  # fmt: skip
