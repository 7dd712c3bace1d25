"""Lifecycle assets: archive expired daily partitions to the cold tier, restore them on demand.

Per table of LAKEHOUSE_ARCHIVE_AFTER_DAYS:
- `lifecycle/archive_<layer>_<table>`, daily-partitioned: materializing partition D archives D (refused
  while D is younger than the retention). The schedule `lifecycle_archive_schedule` asks each morning
  for the partitions that expired since (and any older one still live, e.g. after a restore or a missed
  day). Its check verifies every archived file's cold copy against the manifest.
- `lifecycle/restore_<layer>_<table>`, daily-partitioned, on demand: materializing a range of partitions
  restores those days in one run (`lakehouse lifecycle restore` does the same from a shell).
"""

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from lakehouse.lifecycle.archive import (
    ArchivedTable,
    archive_day,
    expired_days,
    read_manifest,
    restore_days,
)
from lakehouse.lifecycle.cold_tier import LifecycleError, stored_checksum
from lakehouse.policies import DAILY_FRESHNESS, DAILY_PARTITIONS, PLATFORM_OWNER
from lakehouse.resources import LakeResource
from lakehouse.resources.lake import s3_client
from lakehouse.settings import LakehouseSettings, get_settings

ON_DEMAND_TAG = "lakehouse/on_demand"  # assets run by people, not automation: no freshness policy


def archive_key(layer: str, table: str) -> dg.AssetKey:
    return dg.AssetKey(["lifecycle", f"archive_{layer}_{table}"])


def restore_key(layer: str, table: str) -> dg.AssetKey:
    return dg.AssetKey(["lifecycle", f"restore_{layer}_{table}"])


def _day_range(context: dg.AssetExecutionContext) -> list[date]:
    window = context.partition_time_window
    first, end = window.start.date(), window.end.date()
    return [first + timedelta(days=i) for i in range((end - first).days)]


def cold_copies_mismatched(s: LakehouseSettings, t: ArchivedTable, day: date) -> list[str]:
    """The cold copies of a day's manifest whose stored SHA-256 differs from the manifest's (or is missing)."""
    client = s3_client(s)
    manifest = read_manifest(client, t, day) or {"files": []}
    return [
        f["key"] for f in manifest["files"] if stored_checksum(client, s.cold_bucket, f["key"]) != f["sha256"]
    ]


def _archive_asset(layer: str, table: str, days: int) -> dg.AssetsDefinition:
    key = archive_key(layer, table)

    @dg.asset(
        key=key, deps=[dg.AssetKey([layer, table])], partitions_def=DAILY_PARTITIONS, group_name="lifecycle",
        owners=[PLATFORM_OWNER], kinds={"delta", "s3"}, freshness_policy=DAILY_FRESHNESS,
        backfill_policy=dg.BackfillPolicy.single_run(), pool=f"lifecycle_{layer}_{table}",
        description=f"Partitions of {layer}/{table} older than {days} days, moved to the cold tier: copied with "
        "their SHA-256 and storage class, verified, listed in a manifest, then removed from the hot table in "
        "one commit. Re-running a partition resumes; a partition not yet expired is refused.",
        check_specs=[dg.AssetCheckSpec("cold_copies_match_manifest", asset=key,
                                       description="every archived file's cold copy has the manifest's SHA-256")],
    )  # fmt: skip
    def archive(context: dg.AssetExecutionContext, lake: LakeResource):
        s = lake._settings()
        reports = [archive_day(s, layer, table, d, log=context.log.info) for d in _day_range(context)]
        t = ArchivedTable(s, layer, table)
        bad = [k for d in _day_range(context) for k in cold_copies_mismatched(s, t, d)]
        moved = sum(r["bytes"] for r in reports)
        seconds = sum(r["seconds"] for r in reports)
        yield dg.MaterializeResult(metadata={
            "files": sum(r["files"] for r in reports), "rows": sum(r["rows"] for r in reports), "bytes": moved,
            "mb_per_s": round(moved / 1e6 / seconds, 2) if seconds else 0.0,
            "already_archived_files": sum(r["already_archived_files"] for r in reports),
            "cold": f"s3://{s.cold_bucket}/{t.prefix}/ ({s.cold_storage_class})",
        })  # fmt: skip
        yield dg.AssetCheckResult(check_name="cold_copies_match_manifest", passed=not bad,
                                  metadata={"mismatched": ", ".join(bad[:20]) or "none"})  # fmt: skip

    return archive


def _restore_asset(layer: str, table: str) -> dg.AssetsDefinition:
    key = restore_key(layer, table)

    @dg.asset(
        key=key, deps=[archive_key(layer, table)], partitions_def=DAILY_PARTITIONS, group_name="lifecycle",
        owners=[PLATFORM_OWNER], kinds={"delta", "s3"}, tags={ON_DEMAND_TAG: "true"},
        backfill_policy=dg.BackfillPolicy.single_run(), pool=f"lifecycle_{layer}_{table}",
        description=f"On demand: the archived partitions of {layer}/{table} in the selected range, brought "
        "back from the cold tier into the hot table, byte-identical (SHA-256 checked against the manifests) "
        "and with their original statistics, in one commit.",
        check_specs=[dg.AssetCheckSpec("restored_files_are_live", asset=key,
                                       description="every file the manifests of the range list is live again")],
    )  # fmt: skip
    def restore(context: dg.AssetExecutionContext, lake: LakeResource):
        s = lake._settings()
        days = _day_range(context)
        report = restore_days(s, layer, table, days[0], days[-1], log=context.log.info)
        t = ArchivedTable(s, layer, table)
        from lakehouse.lifecycle.delta_log import live_add_actions

        live = live_add_actions(t.uri, s.delta_storage_options(), t.open().version())
        client = s3_client(s)
        absent = [f["path"] for d in days for f in (read_manifest(client, t, d) or {"files": []})["files"]
                  if f["path"] not in live]  # fmt: skip
        yield dg.MaterializeResult(
            metadata={k: report[k] for k in ("days", "files", "rows", "bytes", "seconds")}
        )
        yield dg.AssetCheckResult(check_name="restored_files_are_live", passed=not absent,
                                  metadata={"not_live": ", ".join(absent[:20]) or "none"})  # fmt: skip

    return restore


ARCHIVED = get_settings().archive_retention
archive_assets = [_archive_asset(layer, table, days) for (layer, table), days in ARCHIVED.items()]
restore_assets = [_restore_asset(layer, table) for (layer, table) in ARCHIVED]


@dg.schedule(
    cron_schedule="30 2 * * *", execution_timezone="UTC", target=archive_assets or None,
    description="Each night: archive every partition that is older than its table's retention and still live.",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)  # fmt: skip
def lifecycle_archive_schedule(context: dg.ScheduleEvaluationContext, lake: LakeResource):
    s = lake._settings()
    today = (context.scheduled_execution_time or datetime.now(UTC)).date()
    for layer, table in ARCHIVED:
        try:
            days = expired_days(s, layer, table, today)
        except LifecycleError as exc:  # the table does not exist yet: nothing to archive
            context.log.info(str(exc))
            continue
        for day in days:
            yield dg.RunRequest(run_key=f"archive:{layer}/{table}:{day}:{today}", asset_selection=[archive_key(layer, table)],
                                partition_key=day.isoformat())  # fmt: skip


BACKUPS_KEY = dg.AssetKey(["lifecycle", "backups"])
DRILL_KEY = dg.AssetKey(["lifecycle", "restore_drill"])


@dg.asset(
    key=BACKUPS_KEY, group_name="lifecycle", owners=[PLATFORM_OWNER], kinds={"postgres", "delta", "kafka", "s3"},
    freshness_policy=DAILY_FRESHNESS, pool="lifecycle_backups", backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[dg.AssetKey(["raw", "clickstream_events"]), dg.AssetKey(["bronze", "clickstream_events"])],
    description="Backups in LAKEHOUSE_BACKUP_BUCKET: a verified PostgreSQL base backup with the archived WAL, "
    "every Delta table the project writes at its current version (incremental: only new files are copied), "
    "Kafka's topic configurations with the tables' stored offsets, and Dagster's instance; retention keeps "
    "the newest of LAKEHOUSE_BACKUP_KEEP_DAILY days and _WEEKLY weeks.",
    check_specs=[dg.AssetCheckSpec("retention_enforced", asset=BACKUPS_KEY,
                                   description="no more PostgreSQL base backups kept than the retention allows")],
)  # fmt: skip
def backups(context: dg.AssetExecutionContext, lake: LakeResource):
    from lakehouse.lifecycle import drill, pg_backup

    s = lake._settings()
    figures = drill.take_backups(s, log=context.log.info)
    stored = len(pg_backup.base_backups(s3_client(s), s))
    yield dg.MaterializeResult(metadata={**figures, "postgres_base_backups": stored})
    allowed = s.backup_keep_daily + s.backup_keep_weekly
    yield dg.AssetCheckResult(check_name="retention_enforced", passed=stored <= allowed,
                              metadata={"kept": stored, "allowed": allowed})  # fmt: skip


@dg.asset(
    key=DRILL_KEY, deps=[BACKUPS_KEY], group_name="lifecycle", owners=[PLATFORM_OWNER],
    kinds={"postgres", "delta", "kafka"}, freshness_policy=DAILY_FRESHNESS, pool="lifecycle_backups",
    backfill_policy=dg.BackfillPolicy.single_run(),
    description="The restore drill: the newest backups restored into scratch locations (Delta tables under "
    "_restore/, PostgreSQL by point-in-time recovery on LAKEHOUSE_PG_RESTORE_PORT, Kafka topics under a scratch "
    "prefix, Dagster's databases) and compared with their manifests; records RTO and RPO.",
    check_specs=[dg.AssetCheckSpec("restored_copies_match_backups", asset=DRILL_KEY,
                                   description="every restored copy equals its backup; a damaged file is named")],
)  # fmt: skip
def restore_drill(context: dg.AssetExecutionContext, lake: LakeResource):
    from lakehouse.lifecycle.drill import restore_drill as drill

    report = drill(lake._settings(), log=context.log.info)
    yield dg.MaterializeResult(metadata=report.figures)
    yield dg.AssetCheckResult(check_name="restored_copies_match_backups", passed=report.passed,
                              metadata={"problems": "\n".join(report.problems[:50]) or "none"})  # fmt: skip


backups_and_drill_job = dg.define_asset_job(
    "lifecycle_backups", selection=[BACKUPS_KEY, DRILL_KEY],
    description="Back up PostgreSQL, the lake's tables, Kafka and Dagster, then prove the backups restore.",
)  # fmt: skip
backup_schedule = dg.ScheduleDefinition(
    job=backups_and_drill_job, cron_schedule="0 3 * * *", execution_timezone="UTC",
    description="Each night at 03:00 UTC: backups, then the restore drill.",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)  # fmt: skip


@dg.op(description="Copy PostgreSQL's newly archived WAL segments to the backup bucket (off-host RPO).",
       pool="lifecycle_backups")  # fmt: skip
def ship_wal(context: dg.OpExecutionContext, lake: LakeResource) -> int:
    from lakehouse.lifecycle.pg_backup import sync_wal

    return sync_wal(lake._settings(), log=context.log.info)


@dg.job(description="Ship PostgreSQL's archived WAL to the backup bucket.")
def wal_shipping():
    ship_wal()


wal_shipping_schedule = dg.ScheduleDefinition(
    job=wal_shipping, cron_schedule="*/5 * * * *", execution_timezone="UTC",
    description="Every 5 minutes: the WAL PostgreSQL archived locally goes to the backup bucket, so losing "
    "the machine loses at most about 5 minutes of OLTP changes.",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)  # fmt: skip
