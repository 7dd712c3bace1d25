"""Backups and restore drills on the live stack: PostgreSQL point-in-time recovery between two known
transactions, a Delta table backup restored equal to the table as it was, incremental backups and
retention, the drill asset passing and failing with the damaged file named, and bad input refused."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from lakehouse.generator.clickstream import GeneratorConfig, encode, generate_events, produce
from lakehouse.ingest.assets import bronze_clickstream, raw_clickstream_events
from lakehouse.lifecycle import delta_backup, pg_backup
from lakehouse.lifecycle.assets import DRILL_KEY, backups, restore_drill
from lakehouse.lifecycle.cold_tier import LifecycleError, list_keys
from lakehouse.resources import build_resources
from lakehouse.resources.lake import s3_client
from lakehouse.stack.services import Postgres, wal_archive_dir
from lakehouse.time_travel import as_of

pytestmark = pytest.mark.stack


def rows_by_partition(table: pa.Table) -> dict[str, tuple[int, str]]:
    days: dict[str, list[str]] = {}
    for r in table.to_pylist():
        days.setdefault(str(r["event_date"]), []).append(json.dumps(r, sort_keys=True, default=str))
    return {d: (len(v), hashlib.sha256("\n".join(sorted(v)).encode()).hexdigest()) for d, v in days.items()}


def test_point_in_time_recovery_holds_the_first_transaction_and_not_the_second(namespace):
    s = namespace.settings
    pg_backup.base_backup(s, log=lambda _: None)
    with Postgres()._connect(s, dbname=s.postgres_db) as conn:
        conn.execute("create schema if not exists pitr_probe")
        conn.execute("create table if not exists pitr_probe.marks (name text primary key, at timestamptz)")
        conn.execute(
            "insert into pitr_probe.marks values (%s, clock_timestamp())",
            (f"first-{namespace.env['LAKEHOUSE_SCHEMA_PREFIX']}",),
        )
        time.sleep(1.0)
        between = conn.execute("select clock_timestamp()").fetchone()[0]
        time.sleep(1.0)
        conn.execute(
            "insert into pitr_probe.marks values (%s, clock_timestamp())",
            (f"second-{namespace.env['LAKEHOUSE_SCHEMA_PREFIX']}",),
        )
    pg_backup.switch_and_wait_archived(s)
    pg_backup.sync_wal(s, log=lambda _: None)
    copy = pg_backup.point_in_time_restore(s, target=between, log=lambda _: None)
    try:
        with copy.connect(s.postgres_db) as conn:
            names = {r[0] for r in conn.execute("select name from pitr_probe.marks")}
        prefix = namespace.env["LAKEHOUSE_SCHEMA_PREFIX"]
        assert f"first-{prefix}" in names and f"second-{prefix}" not in names
        assert 0 < copy.rto_seconds < 300
    finally:
        copy.stop()
    assert pg_backup.rpo_seconds(s) < s.pg_archive_timeout_seconds + 30

    with pytest.raises(LifecycleError, match="no PostgreSQL base backup"):
        pg_backup.point_in_time_restore(s, target=datetime(2020, 1, 1, tzinfo=UTC), log=lambda _: None)


def test_a_delta_backup_restores_the_table_as_it_was_and_copies_only_new_files(namespace):
    s = namespace.settings
    uri, opts = s.table_uri("silver", "backup_probe"), s.delta_storage_options()
    for day in range(3):
        write_deltalake(uri, pa.table({"event_date": [f"2026-10-0{day + 1}"] * 50, "n": list(range(50))}),
                        mode="append", partition_by=["event_date"], storage_options=opts)  # fmt: skip
    DeltaTable(uri, storage_options=opts).delete(
        "n < 10 and event_date = '2026-10-01'"
    )  # removes and rewrites
    first = delta_backup.backup_table(s, "silver", "backup_probe", log=lambda _: None)
    write_deltalake(uri, pa.table({"event_date": ["2026-10-04"] * 5, "n": list(range(5))}), mode="append",
                    partition_by=["event_date"], storage_options=opts)  # fmt: skip
    second = delta_backup.backup_table(s, "silver", "backup_probe", log=lambda _: None)
    assert second["copied_files"] == 1 and first["copied_files"] == len(first["files"])

    manifest, restored = delta_backup.restore_table(s, "silver", "backup_probe", backup_id=first["backup_id"],
                                                    log=lambda _: None)  # fmt: skip
    assert delta_backup.compare_restored(s, manifest, restored) == []
    want = rows_by_partition(as_of(uri, opts, version=first["version"]).to_pyarrow_table())
    assert rows_by_partition(DeltaTable(restored, storage_options=opts).to_pyarrow_table()) == want
    assert {k: v["rows"] for k, v in manifest["partitions"].items()} == {
        f"event_date={d}": n for d, (n, _) in want.items()
    }


def test_retention_drops_old_backups_and_only_the_files_no_kept_backup_needs(namespace):
    s = namespace.settings.model_copy(update={"backup_keep_daily": 2, "backup_keep_weekly": 1})
    uri, opts = s.table_uri("silver", "retention_probe"), s.delta_storage_options()
    client = s3_client(s)
    prefix = delta_backup.table_prefix(s, "silver", "retention_probe")
    write_deltalake(uri, pa.table({"n": [1, 2, 3]}), storage_options=opts)
    oldest = delta_backup.backup_table(
        s, "silver", "retention_probe", log=lambda _: None
    )  # holds file f0 only
    write_deltalake(
        uri, pa.table({"n": [4, 5]}), mode="overwrite", storage_options=opts
    )  # f0 leaves the table
    newest = delta_backup.backup_table(s, "silver", "retention_probe", log=lambda _: None)
    only_oldest = {f["key"] for f in oldest["files"]} - {f["key"] for f in newest["files"]}
    assert only_oldest
    now = datetime.now(UTC)
    for age, source in ((30, oldest), (1, newest), (2, newest), (9, newest), (10, newest)):  # as if days ago
        old_id = f"{(now - timedelta(days=age)).strftime(delta_backup.STAMP)}-v{source['version']}"
        for obj in list_keys(client, s.backup_bucket, f"{prefix}/backups/{source['backup_id']}/"):
            key = obj["Key"].replace(source["backup_id"], old_id)
            client.copy_object(
                Bucket=s.backup_bucket, Key=key, CopySource={"Bucket": s.backup_bucket, "Key": obj["Key"]}
            )
    for obj in list_keys(client, s.backup_bucket, f"{prefix}/backups/{oldest['backup_id']}/"):
        client.delete_object(Bucket=s.backup_bucket, Key=obj["Key"])  # the oldest exists only 30 days back
    delta_backup.prune(s, "silver", "retention_probe", log=lambda _: None)
    remaining = delta_backup.backups(client, s, "silver", "retention_probe")
    assert len(remaining) == 3 and newest["backup_id"] in remaining  # 2 daily + 1 weekly
    data = {o["Key"] for o in list_keys(client, s.backup_bucket, f"{prefix}/data/")}
    assert only_oldest <= data  # younger than a day: could belong to a backup being written, kept
    delta_backup.prune(s, "silver", "retention_probe", now=now + timedelta(days=2), log=lambda _: None)
    data = {o["Key"] for o in list_keys(client, s.backup_bucket, f"{prefix}/data/")}
    assert not only_oldest & data and {f["key"] for f in newest["files"]} <= data
    for backup_id in delta_backup.backups(client, s, "silver", "retention_probe"):
        manifest, restored = delta_backup.restore_table(s, "silver", "retention_probe", backup_id=backup_id,
                                                        log=lambda _: None)  # fmt: skip
        assert delta_backup.compare_restored(s, manifest, restored) == []  # every kept backup restores whole


def test_postgres_retention_drops_base_backups_and_only_the_wal_they_alone_needed(namespace):
    s = namespace.settings.model_copy(update={"backup_keep_daily": 1, "backup_keep_weekly": 0})
    client = s3_client(s)
    pg_backup.base_backup(s, log=lambda _: None)
    time.sleep(1.1)  # distinct stamps
    kept = pg_backup.base_backup(s, log=lambda _: None)
    pg_backup.prune(s, log=lambda _: None)
    assert [b["stamp"] for b in pg_backup.base_backups(client, s)] == [kept["stamp"]]
    _, wal = pg_backup.prefixes(s, client)
    names = [o["Key"].rsplit("/", 1)[1] for o in list_keys(client, s.backup_bucket, f"{wal}/")]
    segments = [n for n in names if pg_backup.WAL_NAME.match(n)]
    assert segments and min(segments) >= kept["start_wal"]
    local = [p.name for p in wal_archive_dir(s).iterdir() if pg_backup.WAL_NAME.match(p.name)]
    assert all(n >= kept["start_wal"] for n in local)
    copy = pg_backup.point_in_time_restore(s, log=lambda _: None)  # what is left still restores
    try:
        with copy.connect(s.postgres_db) as conn:
            assert conn.execute("select count(*) from pg_namespace").fetchone()[0] > 0
    finally:
        copy.stop()


@pytest.fixture(scope="module")
def landed(namespace):
    s = namespace.settings
    produce(
        s,
        s.events_topic,
        encode(generate_events(GeneratorConfig(events=600, days=2, seed=3))),
        progress=False,
    )
    resources = build_resources(s)
    assert dg.materialize([raw_clickstream_events, bronze_clickstream], resources=resources).success
    return resources


def test_the_drill_passes_then_fails_naming_a_damaged_backup_file(namespace, landed):
    s = namespace.settings
    result = dg.materialize([backups, restore_drill], resources=landed)
    assert result.success
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["retention_enforced"].passed
    assert checks["restored_copies_match_backups"].passed, checks["restored_copies_match_backups"].metadata
    drill = next(m for m in result.get_asset_materialization_events() if m.asset_key == DRILL_KEY)
    assert drill.materialization.metadata["postgres_rto_s"].value > 0

    client = s3_client(s)
    data_keys = [
        o["Key"]
        for o in list_keys(client, s.backup_bucket, f"delta/{s.schema('bronze')}/clickstream_events/data/")
    ]
    damaged = data_keys[0]
    body = client.get_object(Bucket=s.backup_bucket, Key=damaged)["Body"].read()
    client.put_object(Bucket=s.backup_bucket, Key=damaged, Body=body[:-1] + bytes([body[-1] ^ 1]))
    no_pg = s.model_copy()
    from lakehouse.lifecycle.drill import restore_drill as run_drill

    report = run_drill(no_pg, postgres=False, log=lambda _: None)
    assert not report.passed and any(damaged in p for p in report.problems), report.problems
    result = dg.materialize([restore_drill], resources=landed, selection=[DRILL_KEY])
    check = result.get_asset_check_evaluations()[0]
    assert not check.passed and damaged in check.metadata["problems"].value
    client.put_object(Bucket=s.backup_bucket, Key=damaged, Body=body)


def test_bad_input_is_refused_and_leaves_the_database_untouched(namespace):
    s = namespace.settings
    with pytest.raises(LifecycleError, match="does not exist") as err:
        pg_backup.base_backup(
            s.model_copy(update={"backup_bucket": "no-such-backup-bucket"}), log=lambda _: None
        )
    assert "LAKEHOUSE_BACKUP_BUCKET" in err.value.fix
    with pytest.raises(LifecycleError, match="does not exist"):
        delta_backup.backup_table(
            s.model_copy(update={"backup_bucket": "no-such-backup-bucket"}), "silver", "x"
        )
    if os.geteuid() != 0:
        pytest.skip("a full disk is simulated with a small tmpfs, which needs root to mount")
    small = (
        s.home / "backups" / f"full-disk-{namespace.env['LAKEHOUSE_SCHEMA_PREFIX']}"
    )  # postgres can reach it
    small.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(small)], check=True)
    try:
        before = len(pg_backup.base_backups(s3_client(s), s))
        full = s.model_copy(update={"backup_work_dir": small})
        with pytest.raises(LifecycleError, match="MiB free") as err:
            pg_backup.base_backup(full, log=lambda _: None)
        assert "free space" in err.value.fix
        real_check = pg_backup._check_space
        pg_backup._check_space = lambda *a: None  # let pg_basebackup itself run into the full disk
        try:
            with pytest.raises(LifecycleError, match="disk is full"):
                pg_backup.base_backup(full, log=lambda _: None)
        finally:
            pg_backup._check_space = real_check
        assert len(pg_backup.base_backups(s3_client(s), s)) == before  # no half backup recorded
        with Postgres()._connect(s) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
    finally:
        subprocess.run(["umount", str(small)], check=False)
        small.rmdir()
