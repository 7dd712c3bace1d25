"""Table maintenance: the retention floor, a vacuum that really removes what it reports (and never a file
uploaded but not committed yet), and compaction that loses nothing when it races appends or a MERGE.

Most tests run on local directory tables (delta-rs works on plain paths); the `stack` ones repeat the
essentials on the real object store.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError

from lakehouse import maintenance as m
from lakehouse.ingest.delta_sink import upload_files
from lakehouse.ingest.exactly_once import ConcurrentWriterError, MarkedTable
from lakehouse.resources import LakeResource
from lakehouse.settings import LakehouseSettings

SCHEMA = pa.schema([
    pa.field("partition", pa.int32(), nullable=False),
    pa.field("offset", pa.int64(), nullable=False),
    pa.field("value", pa.string()),
])  # fmt: skip
APP, TOPIC = "maintenance-test", "events"


@pytest.fixture(autouse=True)
def no_test_floor(monkeypatch):
    """No test-only floor from the caller's environment unless a test sets it itself."""
    monkeypatch.delenv(m.TEST_FLOOR_ENV, raising=False)
    monkeypatch.delenv(m.TEST_FLAG_ENV, raising=False)


def allow_zero_retention(monkeypatch) -> None:
    monkeypatch.setenv(m.TEST_FLOOR_ENV, "0")
    monkeypatch.setenv(m.TEST_FLAG_ENV, m.TEST_FLAG_PHRASE)


def batch(partition: int, first: int, n: int) -> pa.Table:
    offsets = range(first, first + n)
    columns = [[partition] * n, offsets, [f"p{partition}-o{o}" for o in offsets]]
    return pa.table(columns, schema=SCHEMA)


def writer(uri: str, storage_options: dict | None = None, schema: pa.Schema = SCHEMA) -> MarkedTable:
    return MarkedTable(uri, storage_options or {}, APP, TOPIC, schema=schema).open()


def land(target: MarkedTable, rows: pa.Table, held: dict[int, int] | None = None) -> None:
    """A landing's two phases: upload the batch's file, then commit it with the partitions' marks."""
    adds = upload_files(target.uri, target.storage_options, rows)
    upto = dict(held or {})
    for p, o in zip(rows.column("partition").to_pylist(), rows.column("offset").to_pylist(), strict=True):
        upto[p] = max(upto.get(p, 0), o + 1)
    target.commit_files(adds, upto, "test")
    if held is not None:
        held.update(upto)


def keep_landing(uri: str, storage_options: dict, partitions: list[int], rows_each: int, rows_per_batch: int,
                 restarts: int = 25) -> int:  # fmt: skip
    """Land offsets 0..rows_each-1 of each partition, a batch at a time, like a landing run. A commit that
    fails (delta-rs gives up after 15 commit retries when many writers commit at once) ends the run as
    in production; the next run resumes from the marks in the table. Returns the number of restarts."""
    restarted = 0
    while True:
        target = writer(uri, storage_options)
        held = target.next_offsets(partitions)
        try:
            while min(held.values()) < rows_each:
                p = min(held, key=held.get)
                land(target, batch(p, held[p], rows_per_batch), held)
            return restarted
        except ConcurrentWriterError:
            restarted += 1
            if restarted > restarts:
                raise


def sorted_rows(uri: str, storage_options: dict | None = None) -> list[tuple]:
    table = DeltaTable(uri, storage_options=storage_options or {}).to_pyarrow_table()
    return sorted(zip(*(table.column(n).to_pylist() for n in table.column_names), strict=True))


def table_of_small_commits(uri: str, commits: int, rows_per_commit: int = 5) -> MarkedTable:
    target = writer(uri)
    held: dict[int, int] = {}
    for i in range(commits):
        land(target, batch(i % 2, (i // 2) * rows_per_commit, rows_per_commit), held)
    return target


def backdate(path: Path, hours: float) -> None:
    t = time.time() - hours * 3600
    os.utime(path, (t, t))


# --- the retention floor ------------------------------------------------------------------------------------


def test_the_floor_is_an_hour_and_a_multiple_of_the_longest_batch_window():
    window = m.landing_batch_window_seconds()
    assert 0 < window <= 60  # the landings' defaults (5 s today)
    assert m.retention_floor_hours() == m.retention_floor_hours(window) == m.MIN_RETENTION_HOURS == 1
    assert m.retention_floor_hours(600) == 10  # 60 windows of 10 minutes
    assert m.retention_floor_hours(3601) == 61
    assert m.check_retention(1) == 1
    assert m.check_retention(168, 600) == 10
    for bad in (0, -5):
        with pytest.raises(m.RetentionTooShort, match="refusing to vacuum with a retention of"):
            m.check_retention(bad)
    with pytest.raises(m.RetentionTooShort, match="the floor is 10 h"):
        m.check_retention(9, 600)
    with pytest.raises(m.RetentionTooShort, match="whole number of hours"):
        m.check_retention(1.5)  # type: ignore[arg-type]


def test_maintenance_below_the_floor_refuses_before_touching_the_table(tmp_path):
    uri = str(tmp_path / "t")
    table_of_small_commits(uri, 6)
    orphan = Path(uri) / upload_files(uri, {}, batch(9, 0, 3))[0].path
    backdate(orphan, 24 * 30)
    version = DeltaTable(uri).version()

    with pytest.raises(m.RetentionTooShort, match="uploaded and not committed"):
        m.maintain_table(uri, {}, retention_hours=0)
    with pytest.raises(m.RetentionTooShort):
        m.vacuum(DeltaTable(uri), uri, {}, retention_hours=0)
    assert DeltaTable(uri).version() == version  # no compaction, no vacuum commit
    assert orphan.exists()


def test_the_test_only_floor_needs_the_flag_and_a_running_test(monkeypatch):
    monkeypatch.setenv(m.TEST_FLOOR_ENV, "0")
    with pytest.raises(m.RetentionTooShort, match="honoured only inside a pytest test"):
        m.check_retention(168)  # set without the flag: maintenance refuses altogether
    monkeypatch.setenv(m.TEST_FLAG_ENV, "yes")
    with pytest.raises(m.RetentionTooShort, match="honoured only inside a pytest test"):
        m.check_retention(168)
    monkeypatch.setenv(m.TEST_FLAG_ENV, m.TEST_FLAG_PHRASE)
    assert m.check_retention(0) == 0
    monkeypatch.delenv("PYTEST_CURRENT_TEST")  # as in a deployment, a Dagster run or the CLI
    with pytest.raises(m.RetentionTooShort, match="honoured only inside a pytest test"):
        m.check_retention(168)


def test_the_dagster_job_refuses_a_retention_below_the_floor():
    from lakehouse.ingest.maintenance import table_maintenance

    lake = LakeResource.from_settings(LakehouseSettings(s3_endpoint="http://127.0.0.1:9"))  # never reached
    result = table_maintenance.execute_in_process(
        resources={"lake": lake}, raise_on_error=False,
        run_config={"ops": {"compact_and_vacuum": {"config": {"retention_hours": 0}}}},
    )  # fmt: skip
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "refusing to vacuum with a retention of 0 h" in str(failure.event_specific_data.error)


class LocalLake(LakeResource):
    """The lake on a local folder: the job's own code path without an object store."""

    root: str

    def table_uri(self, layer: str, table: str) -> str:
        return f"{self.root}/{self.schema(layer)}/{table}"

    @property
    def storage_options(self) -> dict[str, str]:
        return {}


def test_the_job_maintains_every_table_there_is_and_reports_each(tmp_path):
    from lakehouse.ingest.maintenance import table_maintenance

    s = LakehouseSettings()
    lake = LocalLake(s3_endpoint=s.s3_endpoint, s3_region=s.s3_region, s3_access_key=s.s3_access_key,
                     s3_secret_key=s.s3_secret_key, bucket=s.bucket, root=str(tmp_path))  # fmt: skip
    written = {"raw/clickstream_events": 12, "silver/cdc_dead_letters": 5, "raw/rt_stream_rejects": 3}
    for name, commits in written.items():
        layer, table = name.split("/")
        table_of_small_commits(lake.table_uri(layer, table), commits)
    orphan = upload_files(lake.table_uri("raw", "clickstream_events"), {}, batch(7, 0, 2))[0].path
    backdate(Path(lake.table_uri("raw", "clickstream_events")) / orphan, 24 * 8)  # older than 168 h

    result = table_maintenance.execute_in_process(resources={"lake": lake})

    assert result.success
    report = result.output_for_node("compact_and_vacuum")
    for name, commits in written.items():
        assert report[name]["status"] == "ok", report[name]
        assert (report[name]["files_before"], report[name]["files_after"]) == (commits, 1)
    assert report["raw/clickstream_events"]["vacuumed_files"] == 1
    assert report["raw/clickstream_events"]["vacuum_retention_hours"] == 168
    assert {r["status"] for n, r in report.items() if n not in written} == {"missing"}


# --- vacuum -------------------------------------------------------------------------------------------------


def test_vacuum_removes_old_orphans_and_keeps_files_uploaded_but_not_committed(tmp_path):
    uri = str(tmp_path / "t")
    target = table_of_small_commits(uri, 4)
    rows = sorted_rows(uri)

    crashed = upload_files(uri, {}, batch(5, 0, 7))[0]  # a writer that died before its commit, a day ago
    backdate(Path(uri) / crashed.path, 25)
    in_flight_rows = batch(6, 0, 4)
    in_flight = upload_files(uri, {}, in_flight_rows)  # a landing between its upload and its commit
    size = (Path(uri) / crashed.path).stat().st_size

    result = m.vacuum(DeltaTable(uri), uri, {}, retention_hours=1)

    assert result.removed == [crashed.path] and result.files_removed == 1
    assert result.bytes_removed == size > 0
    assert not (Path(uri) / crashed.path).exists()
    assert (Path(uri) / in_flight[0].path).exists()
    assert sorted_rows(uri) == rows
    # The landing commits afterwards: its file is there and its rows are readable.
    target.commit_files(in_flight, {6: 4}, "test")
    assert sorted_rows(uri) == sorted(rows + [tuple(r.values()) for r in in_flight_rows.to_pylist()])


def test_a_vacuum_that_leaves_a_reported_file_on_the_store_is_an_error(tmp_path, monkeypatch):
    uri = str(tmp_path / "t")
    table_of_small_commits(uri, 2)
    orphan = upload_files(uri, {}, batch(5, 0, 3))[0].path
    backdate(Path(uri) / orphan, 25)
    real_vacuum = DeltaTable.vacuum

    def reports_without_deleting(self, **kwargs):
        return real_vacuum(self, **{**kwargs, "dry_run": True})

    monkeypatch.setattr(DeltaTable, "vacuum", reports_without_deleting)
    with pytest.raises(m.VacuumIncomplete, match="still on the object store"):
        m.vacuum(DeltaTable(uri), uri, {}, retention_hours=1)


def test_a_file_the_table_references_missing_from_the_store_is_an_error(tmp_path):
    uri = str(tmp_path / "t")
    table_of_small_commits(uri, 3)
    lost = sorted(m.referenced_files(DeltaTable(uri)))[0]
    (Path(uri) / lost).unlink()  # as if something else deleted a live file
    with pytest.raises(m.VacuumIncomplete, match="references at version 3 are not on the object store"):
        m.vacuum(DeltaTable(uri), uri, {}, retention_hours=1)


def test_a_longer_retention_set_on_the_table_wins(tmp_path):
    uri = str(tmp_path / "t")
    write_deltalake(
        uri, batch(0, 0, 3), configuration={"delta.deletedFileRetentionDuration": "interval 2 days"}
    )
    orphan = upload_files(uri, {}, batch(5, 0, 3))[0].path
    backdate(Path(uri) / orphan, 25)  # older than our 1 h, younger than the table's 48 h
    result = m.vacuum(DeltaTable(uri), uri, {}, retention_hours=1)
    assert result.retention_hours == 48 and result.removed == []
    assert (Path(uri) / orphan).exists()


# --- compaction, checkpoint, vacuum of what compaction replaced -------------------------------------------


def test_compaction_reduces_files_and_keeps_every_row(tmp_path, monkeypatch):
    uri = str(tmp_path / "t")
    table_of_small_commits(uri, 30)
    rows = sorted_rows(uri)
    small = m.referenced_files(DeltaTable(uri))
    assert len(small) == 30

    report = m.maintain_table(uri, {}, retention_hours=1)

    assert report.status == "ok", report.summary()
    assert report.files_before == 30 and report.files_after == 1
    assert report.compaction.files_removed == 30 and report.compaction.files_added == 1
    assert sorted_rows(uri) == rows
    log = os.listdir(Path(uri) / "_delta_log")
    assert f"{report.checkpoint.version:020d}.checkpoint.parquet" in log
    # The replaced files were removed from the table just now: readers of older versions still need them.
    assert report.vacuum.files_removed == 0
    assert all((Path(uri) / f).exists() for f in small)
    assert DeltaTable(uri).transaction_version(f"{APP}:{TOPIC}:0") == 74  # the marks survive compaction

    # With the retention at 0 (test-only), vacuum deletes them, and the rows are all still there.
    allow_zero_retention(monkeypatch)
    time.sleep(0.01)
    sizes = m.data_objects(uri, {})
    result = m.vacuum(DeltaTable(uri), uri, {}, retention_hours=0)
    assert set(result.removed) == small
    assert result.bytes_removed == sum(sizes[f] for f in small) > 0
    assert not any((Path(uri) / f).exists() for f in small)
    assert set(m.data_objects(uri, {})) == m.referenced_files(DeltaTable(uri))
    assert sorted_rows(uri) == rows


def test_a_partitioned_table_is_compacted_per_partition(tmp_path):
    uri = str(tmp_path / "t")
    for i in range(12):
        rows = batch(0, i * 3, 3).append_column("day", pa.array([f"2026-01-0{1 + i % 3}"] * 3))
        write_deltalake(uri, rows, mode="append", partition_by=["day"])
    rows = sorted_rows(uri)
    report = m.maintain_table(uri, {}, retention_hours=1)
    assert report.status == "ok" and report.files_before == 12 and report.files_after == 3
    assert sorted_rows(uri) == rows


class _ConflictingOptimizer:
    def __init__(self, conflicts: int):
        self.conflicts, self.calls = conflicts, 0

    def compact(self, **_):
        self.calls += 1
        if self.calls <= self.conflicts:
            raise CommitFailedError(
                "Commit failed: a concurrent transaction deleted data this operation read."
            )
        return {"numFilesAdded": 1, "numFilesRemoved": 4, "filesAdded": '{"totalSize": 10}',
                "filesRemoved": '{"totalSize": 40}'}  # fmt: skip


class _FakeTable:
    def __init__(self, conflicts: int):
        self.optimize = _ConflictingOptimizer(conflicts)
        self.refreshed = 0

    def update_incremental(self):
        self.refreshed += 1


def test_a_compaction_conflict_is_retried_on_the_new_version_then_skipped_with_a_warning():
    table, warnings = _FakeTable(conflicts=1), []
    result = m.compact(table, attempts=3, warn=warnings.append, backoff_seconds=0)  # type: ignore[arg-type]
    assert (result.attempts, result.files_removed, result.bytes_removed, result.skipped) == (2, 4, 40, None)
    assert table.refreshed == 1 and not warnings

    table = _FakeTable(conflicts=10)
    result = m.compact(table, attempts=3, warn=warnings.append, backoff_seconds=0)  # type: ignore[arg-type]
    assert result.attempts == 3 and table.optimize.calls == 3 and result.files_removed == 0
    assert "conflicted 3 times" in result.skipped
    assert len(warnings) == 1 and "compaction skipped" in warnings[0]


def test_compaction_racing_concurrent_appends_loses_and_doubles_nothing(tmp_path):
    uri = str(tmp_path / "t")
    writers, batches, rows_per_batch = 4, 50, 3
    writer(uri)  # the table exists before the writers start
    errors: list[BaseException] = []

    def append(partition: int) -> None:
        try:
            keep_landing(uri, {}, [partition], batches * rows_per_batch, rows_per_batch)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(p,)) for p in range(writers)]
    for t in threads:
        t.start()
    compactions = []
    while any(t.is_alive() for t in threads) or not compactions:
        result = m.compact(DeltaTable(uri), attempts=5, backoff_seconds=0.05)
        compactions.append(result)
        time.sleep(0.05)
    for t in threads:
        t.join()
    assert not errors, errors

    final = m.maintain_table(uri, {}, retention_hours=1)
    assert final.status == "ok", final.summary()
    table = DeltaTable(uri)
    rows = table.to_pyarrow_table()
    keys = pc.add(pc.multiply(rows.column("partition").cast(pa.int64()), 10**9), rows.column("offset"))
    assert rows.num_rows == writers * batches * rows_per_batch
    assert pc.count_distinct(keys).as_py() == rows.num_rows
    for p in range(writers):
        pairs = zip(rows.column("partition").to_pylist(), rows.column("offset").to_pylist(), strict=True)
        assert sorted(o for q, o in pairs if q == p) == list(range(batches * rows_per_batch))
        assert table.transaction_version(f"{APP}:{TOPIC}:{p}") == batches * rows_per_batch - 1
    assert sum(c.files_removed for c in compactions) > 0, "compaction should have run while appending"
    assert len(m.referenced_files(table)) == 1


def merge_values(uri: str, source: pa.Table) -> None:
    merger = DeltaTable(uri).merge(source, predicate="t.k = s.k", source_alias="s", target_alias="t")
    merger.when_matched_update_all().execute()


def test_compaction_racing_a_merge_never_loses_an_update(tmp_path):
    """Like the CDC apply: MERGEs rewrite the files holding the keys they update while new keys arrive in
    small files; compaction keeps rewriting those same files. Whichever commits second conflicts and
    commits nothing (compaction retries or skips, the MERGE's writer reruns it): no update is lost."""
    uri = str(tmp_path / "t")
    for i in range(12):
        write_deltalake(uri, pa.table({"k": range(i * 5, i * 5 + 5), "v": [0] * 5}), mode="append")
    rounds, expected, errors = 25, {k: 0 for k in range(60)}, []

    def retried(write) -> None:
        for _ in range(100):  # the writer's own rerun after a conflict
            try:
                write()
                return
            except CommitFailedError:
                time.sleep(0.01)
        raise AssertionError("a write kept conflicting")

    def cdc_writer() -> None:
        try:
            for i in range(1, rounds + 1):
                new_keys = list(range(1000 + i * 3, 1003 + i * 3))
                retried(
                    lambda k=new_keys: write_deltalake(uri, pa.table({"k": k, "v": [0] * 3}), mode="append")
                )
                expected.update(dict.fromkeys(new_keys, 0))
                changed = [k for k in expected if k % 7 == i % 7 or k == 1000 + i * 3]
                source = pa.table({"k": changed, "v": [i] * len(changed)})
                retried(lambda src=source: merge_values(uri, src))
                expected.update(dict.fromkeys(changed, i))
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            errors.append(exc)

    thread = threading.Thread(target=cdc_writer)
    thread.start()
    results = []
    while thread.is_alive() or not results:
        results.append(m.compact(DeltaTable(uri), attempts=2, backoff_seconds=0.01))
    thread.join()
    assert not errors, errors
    assert sum(r.files_removed for r in results[1:]) > 0, "compaction should have raced the writes"
    rows = DeltaTable(uri).to_pyarrow_table().to_pylist()
    assert len(rows) == len(expected) == 60 + 3 * rounds
    assert {r["k"]: r["v"] for r in rows} == expected
    assert m.maintain_table(uri, {}, retention_hours=1).status in ("ok", "compaction_skipped")
    assert {r["k"]: r["v"] for r in DeltaTable(uri).to_pyarrow_table().to_pylist()} == expected


# --- which tables ----------------------------------------------------------------------------------------


def test_every_table_the_project_writes_is_maintained_once():
    from lakehouse.realtime.assets import LANDED_OUTPUTS

    tables = [str(t) for t in m.maintained_tables(LakehouseSettings(cdc_tables="customers, orders"))]
    assert len(tables) == len(set(tables))
    expected = {
        "raw/clickstream_events", "bronze/clickstream_events", "bronze/clickstream_dead_letters",
        "raw/cdc_customers", "raw/cdc_orders", "silver/customers", "silver/orders", "silver/cdc_dead_letters",
        "silver/product_price_history", "silver/product_funnel_daily", "silver/sessions",
        "silver/enriched_events", *(f"raw/rt_{o}" for o in LANDED_OUTPUTS),
    }  # fmt: skip
    assert set(tables) == expected
    assert "raw/cdc_products" not in tables  # the list follows LAKEHOUSE_CDC_TABLES


# --- on the object store (the live stack) ----------------------------------------------------------------


def _store_target(namespace, table: str):

    lake = LakeResource.from_settings(namespace.settings)
    uri = lake.table_uri("raw", table)
    return lake, uri, writer(uri, lake.storage_options)


@pytest.mark.stack
def test_vacuum_on_the_object_store_removes_exactly_what_it_reports(namespace, monkeypatch):
    from lakehouse.ingest.landing import RAW_SCHEMA, raw_target, to_arrow
    from lakehouse.ingest.maintenance import table_maintenance

    lake = LakeResource.from_settings(namespace.settings)
    uri, so = lake.table_uri("raw", "clickstream_events"), lake.storage_options
    target = raw_target(uri, so, namespace.settings.events_topic, APP).open()
    assert target.table is not None and target.table.schema().to_arrow().names == RAW_SCHEMA.names

    def raw_batch(partition: int, first: int, n: int) -> pa.Table:
        offsets = list(range(first, first + n))
        values = [f'{{"o": {o}}}'.encode() for o in offsets]
        stamps = [1_767_225_600_000 + o for o in offsets]
        columns = {"partition": [partition] * n, "offset": offsets, "timestamp_ms": stamps, "key": [None] * n}
        return to_arrow(target.topic, {**columns, "value": values})

    held: dict[int, int] = {}
    for i in range(40):
        land(target, raw_batch(i % 4, (i // 4) * 10, 10), held)
    rows = sorted_rows(uri, so)
    small = m.referenced_files(DeltaTable(uri, storage_options=so))
    assert len(rows) == 400 and len(small) == 40
    in_flight = upload_files(uri, so, raw_batch(0, 100, 10))[0].path  # uploaded, not committed

    # The nightly job (default retention): compacted and checkpointed; nothing young is deleted.
    result = table_maintenance.execute_in_process(resources={"lake": lake})
    assert result.success
    report = result.output_for_node("compact_and_vacuum")["raw/clickstream_events"]
    assert report["status"] == "ok" and report["files_before"] == 40 and report["files_after"] == 1
    assert report["vacuumed_files"] == 0
    on_store = m.data_objects(uri, so)
    assert in_flight in on_store and small <= set(on_store)
    assert sorted_rows(uri, so) == rows

    # At the floor: still nothing removed (the replaced files and the upload are minutes old).
    assert m.vacuum(DeltaTable(uri, storage_options=so), uri, so, retention_hours=1).removed == []
    assert in_flight in m.data_objects(uri, so)

    # Test-only retention 0: the replaced files and the never-committed upload go, and are really gone.
    allow_zero_retention(monkeypatch)
    time.sleep(1.5)  # the store stamps whole seconds
    before = m.data_objects(uri, so)
    vacuumed = m.vacuum(DeltaTable(uri, storage_options=so), uri, so, retention_hours=0)
    assert set(vacuumed.removed) == small | {in_flight}
    assert vacuumed.bytes_removed == sum(before[f] for f in small | {in_flight})
    after = m.data_objects(uri, so)
    assert not set(vacuumed.removed) & set(after)
    assert set(after) == m.referenced_files(DeltaTable(uri, storage_options=so))
    assert sorted_rows(uri, so) == rows


@pytest.mark.stack
def test_maintenance_racing_a_landing_on_the_object_store_loses_nothing(namespace, monkeypatch):
    lake, uri, target = _store_target(namespace, "maintenance_race")
    so = lake.storage_options
    batches, rows_per_batch, errors = 60, 5, []
    done = threading.Event()

    def landing() -> None:
        try:
            keep_landing(uri, so, [0, 1], batches * rows_per_batch // 2, rows_per_batch)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=landing)
    thread.start()
    reports = []
    while not done.is_set() or len(reports) < 2:
        reports.append(m.maintain_table(uri, so, retention_hours=1))
    thread.join()
    assert not errors, errors
    assert all(r.status in ("ok", "compaction_skipped") for r in reports), [r.summary() for r in reports]
    assert sum(r.compaction.files_removed for r in reports) > 0

    def check_rows() -> None:
        rows = DeltaTable(uri, storage_options=so).to_pyarrow_table(columns=["partition", "offset"])
        assert rows.num_rows == batches * rows_per_batch
        keys = pc.add(pc.multiply(rows.column("partition").cast(pa.int64()), 10**9), rows.column("offset"))
        assert pc.count_distinct(keys).as_py() == rows.num_rows

    check_rows()
    # Once the landing is done, a test-only retention of 0 clears every replaced file: still every row.
    allow_zero_retention(monkeypatch)
    time.sleep(1.5)
    final = m.maintain_table(uri, so, retention_hours=0)
    assert final.status == "ok", final.summary()
    assert set(m.data_objects(uri, so)) == m.referenced_files(DeltaTable(uri, storage_options=so))
    check_rows()
