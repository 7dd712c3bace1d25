"""Backups of everything, and the restore drill that proves they restore.

`take_backups` backs up, in order: PostgreSQL (a verified base backup and the archived WAL), every Delta
table the project writes (incremental), Kafka's topics with the tables' offsets, and Dagster's instance;
then enforces retention (LAKEHOUSE_BACKUP_KEEP_DAILY / _WEEKLY).

`restore_drill` restores the newest of each into scratch locations and compares:
- each Delta table: a scratch table with every file's SHA-256 checked, per partition rows and files
  equal to the manifest (a damaged backup file fails the drill with the file named);
- PostgreSQL: point-in-time recovery of the newest base backup and all archived WAL on a scratch port;
  every database of the backup is there and answers; RTO and RPO measured;
- Kafka: the topics created under a scratch prefix with the snapshot's partitions and configs, then dropped;
- Dagster: every SQLite database passes `PRAGMA integrity_check`, and runs.db holds the runs it had.
"""

from __future__ import annotations

import io
import json
import sqlite3
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from lakehouse.lifecycle import delta_backup, pg_backup, platform_backup
from lakehouse.lifecycle.cold_tier import LifecycleError, list_keys
from lakehouse.resources.lake import s3_client
from lakehouse.settings import LakehouseSettings

DRILL_TOPIC_PREFIX = "_drill."


@dataclass
class DrillReport:
    problems: list[str] = field(default_factory=list)
    figures: dict[str, float | int | str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.problems


def backed_up_tables(s: LakehouseSettings) -> list[tuple[str, str]]:
    """Every Delta table the project writes that exists (gold is rebuilt by dbt from silver: not backed up)."""
    from lakehouse.maintenance import maintained_tables

    found = []
    for ref in maintained_tables(s):
        try:
            DeltaTable(s.table_uri(ref.layer, ref.name), storage_options=s.delta_storage_options())
        except TableNotFoundError:
            continue
        found.append((ref.layer, ref.name))
    return found


def take_backups(s: LakehouseSettings, postgres: bool = True, dagster_home: Path | None = None,
                 log: Callable[[str], None] = print) -> dict:  # fmt: skip
    started, figures = time.monotonic(), {}
    if postgres:
        manifest = pg_backup.base_backup(s, log)
        figures["postgres_backup_bytes"] = manifest["size"]
        pg_backup.prune(s, log)
    tables = backed_up_tables(s)
    copied = 0
    for layer, table in tables:
        copied += delta_backup.backup_table(s, layer, table, log)["copied_bytes"]
        delta_backup.prune(s, layer, table, log=log)
    figures.update(delta_tables=len(tables), delta_copied_bytes=copied)
    figures["kafka_topics"] = len(platform_backup.backup_kafka(s, log)["topics"])
    try:
        figures["dagster_databases"] = len(platform_backup.backup_dagster(s, dagster_home, log)["databases"])
    except LifecycleError as exc:  # no instance storage yet (only ephemeral runs so far)
        log(f"  dagster: skipped ({exc.problem})")
    figures["seconds"] = round(time.monotonic() - started, 2)
    return figures


def _latest(client, s: LakehouseSettings, prefix: str, suffix: str) -> str | None:
    keys = sorted(o["Key"] for o in list_keys(client, s.backup_bucket, prefix) if o["Key"].endswith(suffix))
    return keys[-1] if keys else None


def _drill_delta(s: LakehouseSettings, report: DrillReport, log) -> None:
    client = s3_client(s)
    for layer, table in backed_up_tables(s):
        if not delta_backup.backups(client, s, layer, table):
            report.problems.append(f"{layer}/{table}: no backup")
            continue
        try:
            manifest, uri = delta_backup.restore_table(s, layer, table, log=log)
        except LifecycleError as exc:
            report.problems.append(f"{layer}/{table}: {exc.problem}")
            continue
        report.problems += [f"{layer}/{table}: {p}" for p in delta_backup.compare_restored(s, manifest, uri)]


def _drill_postgres(s: LakehouseSettings, report: DrillReport, log) -> None:
    from lakehouse.stack.services import Postgres

    with Postgres()._connect(s) as conn:
        live = {r[0] for r in conn.execute("select datname from pg_database where not datistemplate")}
    report.figures["postgres_rpo_s"] = round(pg_backup.rpo_seconds(s), 1)
    report.figures["postgres_offhost_rpo_s"] = round(pg_backup.bucket_rpo_seconds(s), 1)
    pg_backup.sync_wal(s, log=log)
    try:
        copy = pg_backup.point_in_time_restore(s, log=log)
    except LifecycleError as exc:
        report.problems.append(f"postgres: {exc.problem}")
        return
    try:
        report.figures["postgres_rto_s"] = copy.rto_seconds
        with copy.connect("postgres") as conn:
            restored = {r[0] for r in conn.execute("select datname from pg_database where not datistemplate")}
        for name in sorted(live - restored):
            report.problems.append(f"postgres: database {name} is not in the restored copy")
        with copy.connect(s.postgres_db) as conn:
            tables = conn.execute("select count(*) from information_schema.tables where table_schema = %s",
                                  (s.cdc_schema,)).fetchone()[0]  # fmt: skip
        if not tables:
            report.problems.append(f"postgres: the restored {s.postgres_db} has no table in {s.cdc_schema}")
    finally:
        copy.stop()


def _drill_kafka(s: LakehouseSettings, report: DrillReport) -> None:
    client = s3_client(s)
    key = _latest(client, s, "kafka/", ".json")
    if key is None:
        report.problems.append("kafka: no backup")
        return
    snapshot = json.loads(client.get_object(Bucket=s.backup_bucket, Key=key)["Body"].read())
    prefix = (
        f"{DRILL_TOPIC_PREFIX}{time.time_ns()}."  # its own names: deleting topics finishes asynchronously
    )
    names = [prefix + n for n in snapshot["topics"]]
    try:
        restored = platform_backup.restore_topics(s, snapshot, prefix)
        for name, want in snapshot["topics"].items():
            got = restored[name]
            if got["partitions"] != want["partitions"] or got["configs"] != want["configs"]:
                report.problems.append(f"kafka: topic {name} restored as {got}, the backup says {want}")
    finally:
        platform_backup.delete_topics(s, names)
    report.figures["kafka_topics"] = len(snapshot["topics"])


def _drill_dagster(s: LakehouseSettings, report: DrillReport) -> None:
    client = s3_client(s)
    key = _latest(client, s, "dagster/", ".tar.gz")
    if key is None:
        return  # nothing to restore yet: the instance had no storage when backups ran
    manifest = json.loads(
        client.get_object(Bucket=s.backup_bucket, Key=key.replace(".tar.gz", ".json"))["Body"].read()
    )
    body = client.get_object(Bucket=s.backup_bucket, Key=key)["Body"].read()
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        tar.extractall(tmp, filter="data")
        for name in manifest["databases"]:
            with sqlite3.connect(Path(tmp) / name) as db:
                if db.execute("pragma integrity_check").fetchone()[0] != "ok":
                    report.problems.append(f"dagster: {name} fails its integrity check")
                if (
                    name.endswith("runs.db")
                    and db.execute("select count(*) from runs").fetchone()[0] != manifest["runs"]
                ):
                    report.problems.append(
                        f"dagster: {name} does not hold the {manifest['runs']} runs it had"
                    )
    report.figures["dagster_databases"] = len(manifest["databases"])


def restore_drill(
    s: LakehouseSettings, postgres: bool = True, log: Callable[[str], None] = print
) -> DrillReport:
    report = DrillReport()
    started = time.monotonic()
    _drill_delta(s, report, log)
    if postgres:
        _drill_postgres(s, report, log)
    _drill_kafka(s, report)
    _drill_dagster(s, report)
    report.figures["seconds"] = round(time.monotonic() - started, 2)
    for problem in report.problems:
        log(f"  drill: {problem}")
    return report
