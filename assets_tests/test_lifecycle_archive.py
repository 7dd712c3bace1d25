"""Archival to the cold tier and restore on the live stack: a week of real bronze goes cold and comes back
row for row (delta-rs and Trino), a kill after each step resumes without loss or double archival, a
write racing the archive is never removed unarchived, and bad input changes nothing."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest
from deltalake import DeltaTable, write_deltalake

from lakehouse import faults
from lakehouse.faults import FAULT_ENV, FAULT_MARKER_ENV, fired
from lakehouse.generator.clickstream import GeneratorConfig, encode, event_day, generate_events, produce
from lakehouse.ingest.assets import bronze_clickstream, raw_clickstream_events
from lakehouse.lifecycle import archive as archive_mod
from lakehouse.lifecycle.archive import ArchivedTable, archive_day, read_manifest, restore_days
from lakehouse.lifecycle.assets import archive_assets, archive_key, restore_assets, restore_key
from lakehouse.lifecycle.cold_tier import LifecycleError
from lakehouse.lifecycle.delta_log import live_add_actions
from lakehouse.resources import LakeResource, TrinoResource, build_resources
from lakehouse.resources.lake import s3_client

pytestmark = pytest.mark.stack

END = datetime(2026, 9, 8, 20, 0, tzinfo=UTC)  # long expired: bronze's retention is 30 days
LAYER, TABLE = "bronze", "clickstream_events"


def fingerprints(s) -> dict[str, tuple[int, str]]:
    """Per day of bronze: (rows, SHA-256 over the sorted rows), read with delta-rs."""
    rows = DeltaTable(s.table_uri(LAYER, TABLE), storage_options=s.delta_storage_options()).to_pyarrow_table()
    days: dict[str, list[str]] = {}
    for r in rows.to_pylist():
        days.setdefault(str(r["event_date"]), []).append(json.dumps(r, sort_keys=True, default=str))
    return {d: (len(v), hashlib.sha256("\n".join(sorted(v)).encode()).hexdigest()) for d, v in days.items()}


def trino_days(s) -> dict[str, tuple[int, int]]:
    """Per day through Trino: (rows, rows of one user segment, a filter whose pruning uses file statistics)."""
    lake, trino = LakeResource.from_settings(s), TrinoResource.from_settings(s)
    trino.register_lake_table(lake, LAYER, TABLE)
    table = trino.qualified(lake, LAYER, TABLE)
    rows = trino.query(f"SELECT CAST(event_date AS varchar), count(*), count_if(event_time < TIMESTAMP "
                       f"'2026-09-05 12:00:00 UTC') FROM {table} GROUP BY 1")  # fmt: skip
    return {d: (n, m) for d, n, m in rows}


def live(s) -> dict[str, dict]:
    dt = DeltaTable(s.table_uri(LAYER, TABLE), storage_options=s.delta_storage_options())
    return live_add_actions(s.table_uri(LAYER, TABLE), s.delta_storage_options(), dt.version())


def version(s) -> int:
    return DeltaTable(s.table_uri(LAYER, TABLE), storage_options=s.delta_storage_options()).version()


@pytest.fixture(scope="module")
def week(namespace):
    """A week of clickstream events landed into bronze by the real pipeline; the state before archival."""
    s = namespace.settings
    events = generate_events(GeneratorConfig(events=2500, days=7, seed=14, end=END))
    produce(s, s.events_topic, encode(events), progress=False)
    resources = build_resources(s)
    assert dg.materialize([raw_clickstream_events, bronze_clickstream], resources=resources).success
    days = sorted({event_day(e) for e in events})
    assert len(days) >= 7
    return resources, days, fingerprints(s), trino_days(s), live(s)


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lakehouse.cli", "lifecycle", *args], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_a_week_of_bronze_goes_cold_and_comes_back_row_for_row(namespace, week):
    s = namespace.settings
    resources, days, before, before_trino, before_live = week
    t = ArchivedTable(s, LAYER, TABLE)
    archive = next(a for a in archive_assets if archive_key(LAYER, TABLE) in a.keys)
    tags = {"dagster/asset_partition_range_start": days[0].isoformat(),
            "dagster/asset_partition_range_end": days[-1].isoformat()}  # fmt: skip
    result = dg.materialize([archive], resources=resources, tags=tags, selection=[archive_key(LAYER, TABLE)])
    assert result.success
    assert all(c.passed for c in result.get_asset_check_evaluations())
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["rows"].value == sum(n for n, _ in before.values())

    hot = fingerprints(s)
    assert not set(hot) & {d.isoformat() for d in days}, "archived days must leave the hot table"
    assert not set(trino_days(s)) & {d.isoformat() for d in days}
    client = s3_client(s)
    for day in days:
        manifest = read_manifest(client, t, day)
        assert manifest["rows"] == before[day.isoformat()][0]
        assert len({f["path"] for f in manifest["files"]}) == len(manifest["files"])
        for f in manifest["files"]:
            head = client.head_object(Bucket=s.cold_bucket, Key=f["key"])
            assert head["StorageClass"] == s.cold_storage_class == "GLACIER"

    restore = next(a for a in restore_assets if restore_key(LAYER, TABLE) in a.keys)
    result = dg.materialize([restore], resources=resources, tags=tags, selection=[restore_key(LAYER, TABLE)])
    assert result.success and all(c.passed for c in result.get_asset_check_evaluations())
    assert fingerprints(s) == before
    assert trino_days(s) == before_trino
    after_live = live(s)
    assert after_live.keys() == before_live.keys()
    for path, add in before_live.items():  # same files, same statistics, same partition values
        assert {k: after_live[path][k] for k in ("size", "partitionValues", "stats")} == {
            k: add[k] for k in ("size", "partitionValues", "stats")}, path  # fmt: skip
    again = restore_days(s, LAYER, TABLE, days[0], days[-1], log=lambda _: None)
    assert again["files"] == 0 and fingerprints(s) == before  # nothing is restored twice


STEPS = (
    "lifecycle.after_copy",
    "lifecycle.after_verify",
    "lifecycle.after_manifest",
    "lifecycle.after_remove",
)


def test_a_kill_after_any_step_resumes_without_loss_or_double_archival(namespace, week, tmp_path):
    s = namespace.settings
    _, days, before, _, _ = week
    t = ArchivedTable(s, LAYER, TABLE)
    client = s3_client(s)
    for step, day in zip(STEPS, days, strict=False):
        marker = tmp_path / f"{step}.marker"
        env = {**namespace.env, FAULT_ENV: step, FAULT_MARKER_ENV: str(marker)}
        killed = cli(["archive", f"{LAYER}/{TABLE}", "--date", day.isoformat()], env)
        assert killed.returncode == -9, killed.stderr
        assert fired(marker) == [step]
        done = cli(["archive", f"{LAYER}/{TABLE}", "--date", day.isoformat()], namespace.env)
        assert done.returncode == 0, done.stderr
        manifest = read_manifest(client, t, day)
        assert manifest["rows"] == before[day.isoformat()][0], step
        assert len({f["path"] for f in manifest["files"]}) == len(manifest["files"]), step
        assert day.isoformat() not in fingerprints(s), step

    for step in ("lifecycle-restore.after_put", "lifecycle-restore.after_commit"):
        marker = tmp_path / f"{step}.marker"
        env = {**namespace.env, FAULT_ENV: step, FAULT_MARKER_ENV: str(marker)}
        span = ["--from", days[0].isoformat(), "--to", days[len(STEPS) - 1].isoformat()]
        killed = cli(["restore", f"{LAYER}/{TABLE}", *span], env)
        assert killed.returncode == -9 and fired(marker) == [step], killed.stderr
        assert cli(["restore", f"{LAYER}/{TABLE}", *span], namespace.env).returncode == 0
        assert fingerprints(s) == before, step  # every row back, none twice
        if step.endswith("after_put"):  # archive them again for the next kill
            for day in days[: len(STEPS)]:
                archive_day(s, LAYER, TABLE, day, log=lambda _: None)


def test_a_write_racing_the_archive_is_never_removed_unarchived(namespace, week, monkeypatch):
    s = namespace.settings
    _, days, before, _, _ = week
    day = days[-1]
    opts = s.delta_storage_options()
    late = DeltaTable(s.table_uri(LAYER, TABLE), storage_options=opts).to_pyarrow_table(
        filters=[("event_date", "=", day)]).slice(0, 1)  # fmt: skip
    late = late.set_column(late.schema.get_field_index("event_id"), "event_id",
                           [[f"late-{late.column('event_id')[0].as_py()}"]])  # fmt: skip

    def write_between(point: str) -> None:  # another writer commits to the partition after the manifest
        if point == "lifecycle.after_manifest":
            write_deltalake(s.table_uri(LAYER, TABLE), late, mode="append", storage_options=opts)

    monkeypatch.setattr(archive_mod, "fault_point", write_between)
    with pytest.raises(LifecycleError, match="changed while partition"):
        archive_day(s, LAYER, TABLE, day, log=lambda _: None)
    assert fingerprints(s)[day.isoformat()][0] == before[day.isoformat()][0] + 1  # nothing removed
    monkeypatch.setattr(archive_mod, "fault_point", faults.fault_point)
    report = archive_day(s, LAYER, TABLE, day, log=lambda _: None)
    assert report["rows"] == before[day.isoformat()][0] + 1 and day.isoformat() not in fingerprints(s)
    restore_days(s, LAYER, TABLE, day, day, log=lambda _: None)
    assert fingerprints(s)[day.isoformat()][0] == before[day.isoformat()][0] + 1


def test_a_compaction_racing_the_archive_leaves_no_duplicate_after_restore(namespace, week, monkeypatch):
    s = namespace.settings
    _, days, before, _, _ = week
    day = days[4]
    opts = s.delta_storage_options()
    uri = s.table_uri(LAYER, TABLE)
    late = (
        DeltaTable(uri, storage_options=opts).to_pyarrow_table(filters=[("event_date", "=", day)]).slice(0, 1)
    )
    late = late.set_column(late.schema.get_field_index("event_id"), "event_id", [["late-compacted"]])
    write_deltalake(uri, late, mode="append", storage_options=opts)  # the day now has several files
    fired_at = []

    def compact_between(point: str) -> None:  # table maintenance rewrites the day after the manifest
        if point == "lifecycle.after_manifest":
            fired_at.append(point)
            DeltaTable(uri, storage_options=opts).optimize.compact(
                partition_filters=[("event_date", "=", day)]
            )

    monkeypatch.setattr(archive_mod, "fault_point", compact_between)
    with pytest.raises(LifecycleError, match="changed while partition"):
        archive_day(s, LAYER, TABLE, day, log=lambda _: None)
    assert fired_at == ["lifecycle.after_manifest"]
    monkeypatch.setattr(archive_mod, "fault_point", faults.fault_point)
    report = archive_day(s, LAYER, TABLE, day, log=lambda _: None)  # settles the pending entries, drops them
    manifest = read_manifest(s3_client(s), ArchivedTable(s, LAYER, TABLE), day)
    assert report["rows"] == manifest["rows"] == before[day.isoformat()][0] + 1
    assert all(f["archived_version"] is not None for f in manifest["files"])
    restore_days(s, LAYER, TABLE, day, day, log=lambda _: None)
    assert fingerprints(s)[day.isoformat()][0] == before[day.isoformat()][0] + 1  # every row once


def test_a_restored_day_compacted_later_is_archived_once_and_restored_once(namespace, week):
    from lakehouse.lifecycle.archive import refuse_archived_source

    s = namespace.settings
    _, days, before, _, _ = week
    day = days[2]  # archived, then restored by the kill test
    opts, uri = s.delta_storage_options(), s.table_uri(LAYER, TABLE)
    if day.isoformat() not in fingerprints(s):
        restore_days(s, LAYER, TABLE, day, day, log=lambda _: None)
    late = (
        DeltaTable(uri, storage_options=opts).to_pyarrow_table(filters=[("event_date", "=", day)]).slice(0, 1)
    )
    late = late.set_column(late.schema.get_field_index("event_id"), "event_id", [["late-after-restore"]])
    write_deltalake(uri, late, mode="append", storage_options=opts)
    DeltaTable(uri, storage_options=opts).optimize.compact(
        partition_filters=[("event_date", "=", day)]
    )  # maintenance
    refuse_archived_source(s, LAYER, TABLE, day, day)  # all of it is hot: nothing refused
    assert restore_days(s, LAYER, TABLE, day, day, log=lambda _: None)["files"] == 0
    archive_day(s, LAYER, TABLE, day, log=lambda _: None)
    manifest = read_manifest(s3_client(s), ArchivedTable(s, LAYER, TABLE), day)
    assert manifest["rows"] == before[day.isoformat()][0] + 1  # the compacted file only, not its sources too
    restore_days(s, LAYER, TABLE, day, day, log=lambda _: None)
    assert fingerprints(s)[day.isoformat()][0] == before[day.isoformat()][0] + 1


def test_silver_refuses_to_recompute_days_whose_bronze_is_archived(namespace, week):
    from lakehouse.lifecycle.archive import refuse_archived_source

    s = namespace.settings
    _, days, _, _, _ = week
    archive_day(s, LAYER, TABLE, days[5], log=lambda _: None)
    with pytest.raises(LifecycleError, match="archived in the cold tier") as err:
        refuse_archived_source(s, LAYER, TABLE, days[0], days[-1])
    assert f"--from {days[5]}" in err.value.fix
    restore_days(s, LAYER, TABLE, days[5], days[5], log=lambda _: None)
    refuse_archived_source(s, LAYER, TABLE, days[0], days[-1])  # restored: nothing to refuse
    from lakehouse.lifecycle.archive import expired_days

    assert days[5] not in expired_days(s, LAYER, TABLE)  # held hot after its restore


def test_bad_input_is_refused_and_leaves_the_hot_table_untouched(namespace, week):
    s = namespace.settings
    _, days, before, _, _ = week
    t = ArchivedTable(s, LAYER, TABLE)
    v = version(s)
    today = datetime.now(UTC).date()
    with pytest.raises(LifecycleError, match="not older than its retention") as err:
        archive_day(s, LAYER, TABLE, today, log=lambda _: None)
    assert "LAKEHOUSE_ARCHIVE_AFTER_DAYS" in err.value.fix
    with pytest.raises(LifecycleError, match="was ever archived"):
        restore_days(s, LAYER, TABLE, date(2025, 3, 1), date(2025, 3, 7), log=lambda _: None)
    missing_bucket = s.model_copy(update={"cold_bucket": "no-such-cold-bucket"})
    with pytest.raises(LifecycleError, match="does not exist") as err:
        archive_day(missing_bucket, LAYER, TABLE, days[0], log=lambda _: None)
    assert "LAKEHOUSE_COLD_BUCKET" in err.value.fix
    assert version(s) == v

    day = days[1]  # a manifest that does not match its files: the damaged file is named, nothing restored
    archive_day(s, LAYER, TABLE, day, log=lambda _: None)
    v = version(s)
    client = s3_client(s)
    damaged = read_manifest(client, t, day)["files"][0]["key"]
    body = client.get_object(Bucket=s.cold_bucket, Key=damaged)["Body"].read()
    client.put_object(Bucket=s.cold_bucket, Key=damaged, Body=body[:-1] + bytes([body[-1] ^ 1]))
    with pytest.raises(LifecycleError, match="does not match its manifest") as err:
        restore_days(s, LAYER, TABLE, day, day, log=lambda _: None)
    assert damaged in err.value.problem
    assert version(s) == v and day.isoformat() not in fingerprints(s)
    client.put_object(Bucket=s.cold_bucket, Key=damaged, Body=body)  # repaired: it comes back whole
    restore_days(s, LAYER, TABLE, day, day, log=lambda _: None)
    assert fingerprints(s)[day.isoformat()] == before[day.isoformat()]

    env = {**namespace.env, "LAKEHOUSE_ARCHIVE_AFTER_DAYS": "bronze/clickstream_events=0"}
    refused = cli(["archive", f"{LAYER}/{TABLE}", "--date", (today - timedelta(days=2)).isoformat()], env)
    assert refused.returncode != 0 and "would archive today's partition" in refused.stderr
    assert os.environ.get(FAULT_ENV) is None
