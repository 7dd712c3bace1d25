"""Table maintenance of every Delta table the project writes: compact small files, checkpoint (and drop
expired log files), vacuum unreferenced files and check on the object store that they are gone.

The tables come from `lakehouse.maintenance.maintained_tables` (the asset keys and the configured CDC
tables), the work from the functions next to it; the retention floor that keeps files a landing has
uploaded but not committed yet is explained there.
"""

import dagster as dg
from pydantic import Field

from lakehouse.maintenance import (
    DEFAULT_COMPACTION_ATTEMPTS,
    DEFAULT_TARGET_FILE_MB,
    RetentionTooShort,
    check_retention,
    landing_batch_window_seconds,
    maintain_table,
    maintained_tables,
)
from lakehouse.resources import LakeResource
from lakehouse.settings import get_settings


class MaintenanceConfig(dg.Config):
    retention_hours: int = Field(
        default=get_settings().vacuum_retention_hours,
        description="vacuum deletes unreferenced files older than this (refused below the floor)",
    )
    target_file_mb: int = Field(default=DEFAULT_TARGET_FILE_MB, description="compaction's target file size")
    longest_batch_seconds: float = Field(
        default=landing_batch_window_seconds(),
        description="the longest batch window any landing runs with; the floor is 60x this, at least 1 h",
    )
    compaction_attempts: int = Field(
        default=DEFAULT_COMPACTION_ATTEMPTS,
        description="tries of a compaction that conflicts with concurrent commits before it is skipped",
    )


@dg.op(description="Compact small files, write a checkpoint, drop expired log files and vacuum "
       "unreferenced files older than the retention, for every table the project writes.",
       pool="table_maintenance")  # fmt: skip
def compact_and_vacuum(context: dg.OpExecutionContext, config: MaintenanceConfig, lake: LakeResource) -> dict:
    try:
        floor = check_retention(config.retention_hours, config.longest_batch_seconds)
    except RetentionTooShort as exc:
        raise dg.Failure(description=str(exc)) from exc
    context.log.info(f"vacuum retention {config.retention_hours} h (floor {floor} h)")
    report, failed, skipped = {}, [], []
    for ref in maintained_tables(get_settings()):
        result = maintain_table(
            lake.table_uri(ref.layer, ref.name), lake.storage_options, config.retention_hours,
            longest_batch_seconds=config.longest_batch_seconds, target_size=config.target_file_mb * 2**20,
            compaction_attempts=config.compaction_attempts, log=context.log.info,
            warn=lambda msg, ref=ref: context.log.warning(f"{ref}: {msg}"),
        )  # fmt: skip
        report[str(ref)] = result.summary()
        if result.status == "missing":
            continue
        if result.status == "failed":
            failed.append(str(ref))
            context.log.error(f"{ref}: {result.error}")
        else:
            if result.status == "compaction_skipped":
                skipped.append(str(ref))
            context.log.info(f"{ref}: {report[str(ref)]}")
    present = {name: r for name, r in report.items() if r["status"] != "missing"}
    context.add_output_metadata({
        "tables": len(present),
        "missing": sorted(set(report) - set(present)),
        "compaction_skipped": skipped,
        "failed": failed,
        "vacuumed_files": sum(r.get("vacuumed_files", 0) for r in present.values()),
        "vacuumed_bytes": sum(r.get("vacuumed_bytes", 0) for r in present.values()),
        "compacted_files_removed": sum(r.get("compacted_files_removed", 0) for r in present.values()),
        "per_table": present,
    })  # fmt: skip
    if failed:
        raise dg.Failure(
            description=f"maintenance failed for {', '.join(failed)} (the other tables were maintained)",
            metadata={name: report[name].get("error", "") for name in failed},
        )
    return report


@dg.job(description="Nightly upkeep of every Delta table the project writes (small files, log, vacuum).")
def table_maintenance():
    compact_and_vacuum()


table_maintenance_schedule = dg.ScheduleDefinition(
    job=table_maintenance, cron_schedule="30 3 * * *", default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Compacts, checkpoints and vacuums every table at 03:30 UTC.",
)  # fmt: skip
