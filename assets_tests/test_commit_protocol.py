"""The one exactly-once commit protocol (real delta-rs on a local folder): marks with the data,
every held partition in every commit, concurrent writers, gaps, and the fault hooks."""

import os
import subprocess
import sys

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from lakehouse.faults import FAULT_ENV, FAULT_MARKER_ENV, armed, fired
from lakehouse.ingest.delta_sink import upload_files
from lakehouse.ingest.exactly_once import ConcurrentWriterError, MarkedTable
from lakehouse.ingest.landing import OffsetGap, check_offsets, last_offsets, raw_target, to_arrow


def batch(partition: int, offsets: range) -> pa.Table:
    n = len(offsets)
    cols = {"partition": [partition] * n, "offset": list(offsets), "timestamp_ms": [0] * n,
            "key": [b"k"] * n, "value": [b"v"] * n}  # fmt: skip
    return to_arrow("events", cols)


def land(target: MarkedTable, b: pa.Table, upto: dict[int, int]) -> None:
    target.commit_files(upload_files(target.uri, target.storage_options, b), upto, "test")


def test_offsets_are_recorded_with_the_data_and_read_back(tmp_path):
    target = raw_target(str(tmp_path / "raw"), {}, "events", "app").open()
    assert target.next_offsets([0, 1]) == {0: 0, 1: 0}
    for first in (0, 10):
        b = batch(1, range(first, first + 10))
        assert last_offsets(b) == {1: first + 9}
        land(target, b, {0: 0, 1: first + 10})
    fresh = raw_target(str(tmp_path / "raw"), {}, "events", "app").open()
    assert fresh.next_offsets([0, 1]) == {0: 0, 1: 20}
    assert fresh.table.to_pyarrow_table().num_rows == 20


def test_files_uploaded_but_not_committed_are_invisible(tmp_path):
    target = raw_target(str(tmp_path / "raw"), {}, "events", "app").open()
    upload_files(target.uri, {}, batch(0, range(5)))  # a crash here: files without a commit
    assert DeltaTable(str(tmp_path / "raw")).to_pyarrow_table().num_rows == 0
    assert target.next_offsets([0]) == {0: 0}


@pytest.mark.parametrize(
    ("first_holds", "second_holds", "conflict"),
    [({0}, {0}, True), ({0, 1}, {1, 2}, True), ({0, 1}, {2, 3}, False), ({0, 1, 2, 3}, {3}, True)],
)
def test_two_writers_holding_a_common_partition_never_both_commit(
    tmp_path, first_holds, second_holds, conflict
):
    """Both read the table, then each commits a batch of only its *first* partition. Because every commit
    carries every partition its writer holds, an overlap anywhere makes the second one fail cleanly."""
    uri = str(tmp_path / "raw")
    a = raw_target(uri, {}, "events", "app").open()
    b = raw_target(uri, {}, "events", "app").open()
    pa_, pb = min(first_holds), min(second_holds)
    land(a, batch(pa_, range(0, 5)), {p: (5 if p == pa_ else 0) for p in first_holds})
    if conflict:
        with pytest.raises(ConcurrentWriterError, match="committed nothing"):
            land(b, batch(pb, range(0, 5)), {p: (5 if p == pb else 0) for p in second_holds})
        assert DeltaTable(uri).to_pyarrow_table().num_rows == 5
    else:
        land(b, batch(pb, range(0, 5)), {p: (5 if p == pb else 0) for p in second_holds})
        assert DeltaTable(uri).to_pyarrow_table().num_rows == 10


def test_a_writer_stops_when_another_moved_its_partition_after_its_commit(tmp_path):
    """A commits; B opens afterwards and lands A's partition too; A's next commit must not rewind it."""
    uri = str(tmp_path / "raw")
    a = raw_target(uri, {}, "events", "app").open()
    land(a, batch(0, range(0, 5)), {0: 5})
    b = raw_target(uri, {}, "events", "app").open()
    land(b, batch(0, range(5, 10)), {0: 10})
    with pytest.raises(ConcurrentWriterError):
        land(a, batch(0, range(5, 8)), {0: 8})  # stale position: would duplicate 5..7 and rewind to 8
    table = raw_target(uri, {}, "events", "app").open()
    assert table.next_offsets([0]) == {0: 10}
    offsets = table.table.to_pyarrow_table().column("offset").to_pylist()
    assert sorted(offsets) == list(range(10))


def test_a_gap_in_kafka_stops_the_landing_with_the_fix(tmp_path):
    target = raw_target(str(tmp_path / "raw"), {}, "events", "app").open()
    land(target, batch(0, range(0, 5)), {0: 5, 1: 0})
    with pytest.raises(OffsetGap) as err:  # retention deleted offsets 5..99 before they were landed
        check_offsets(target, {0: (100, 120), 1: (0, 3)}, {0: 5, 1: 0}, [0])
    assert (
        "partition 0" in err.value.problem
        and "100..119" in err.value.problem
        and "95 records" in err.value.problem
    )
    assert "lakehouse ingest acknowledge-gap --topic events" in err.value.fix
    with pytest.raises(OffsetGap, match="deleted and recreated"):  # a recreated topic with fewer records
        check_offsets(target, {0: (0, 3), 1: (0, 3)}, {0: 5, 1: 0}, [0])
    with pytest.raises(OffsetGap, match="partition 1 .* is gone"):
        check_offsets(target, {0: (0, 10)}, {0: 5}, [0, 1])
    check_offsets(target, {0: (0, 5), 1: (0, 0)}, {0: 5, 1: 0}, [0])  # in step: no error


def test_the_fault_hook_kills_at_its_point_and_leaves_proof(tmp_path):
    assert armed("a.before_commit@0.5, b.after_commit") == {"a.before_commit": 0.5, "b.after_commit": 1.0}
    uri, marker = str(tmp_path / "raw"), tmp_path / "fired"
    code = (
        "import sys; from lakehouse.ingest.landing import raw_target, to_arrow; "
        "from lakehouse.ingest.delta_sink import upload_files\n"
        f"t = raw_target({uri!r}, {{}}, 'events', 'app').open()\n"
        "b = to_arrow('events', {'partition': [0], 'offset': [0], 'timestamp_ms': [0], 'key': [None], 'value': [b'v']})\n"
        "t.commit_files(upload_files(t.uri, {}, b), {0: 1}, 'x')\n"
        "print('survived')"
    )  # fmt: skip
    env = {**os.environ, FAULT_ENV: "app.after_commit", FAULT_MARKER_ENV: str(marker)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert fired(marker) == ["app.after_commit"]
    assert raw_target(uri, {}, "events", "app").open().next_offsets([0]) == {0: 1}  # committed, then killed


def test_files_removed_before_their_commit_are_never_referenced(tmp_path):
    """A vacuum that deleted a batch's uploaded files before the landing committed them: the commit is
    refused (it would reference missing data) and the marks stay, so the batch is read again."""
    target = raw_target(str(tmp_path / "raw"), {}, "events", "app").open()
    adds = upload_files(target.uri, {}, batch(0, range(5)))
    os.remove(tmp_path / "raw" / adds[0].path)
    with pytest.raises(Exception, match="deleted before the commit"):
        target.commit_files(adds, {0: 5}, "test")
    assert raw_target(str(tmp_path / "raw"), {}, "events", "app").open().next_offsets([0]) == {0: 0}


def rows(n: int, first: int = 0) -> pa.Table:
    return pa.table({"id": pa.array(range(first, first + n), pa.int64())})


def test_a_stale_writer_appending_rows_is_refused_not_rewound(tmp_path):
    """Appends go through the table object read with the marks, never the URI (which would re-read the
    newest version and skip the conflict check): B commits 0..9, then A, which read before, is refused."""
    uri = str(tmp_path / "t")
    MarkedTable(uri, {}, "app", "events", schema=rows(0).schema).open()
    a = MarkedTable(uri, {}, "app", "events").open()
    b = MarkedTable(uri, {}, "app", "events").open()
    b.append(rows(10), {0: 10}, "b")
    with pytest.raises(ConcurrentWriterError):
        a.append(rows(5), {0: 5}, "a")
    fresh = MarkedTable(uri, {}, "app", "events").open()
    assert fresh.next_offsets([0]) == {0: 10} and fresh.table.to_pyarrow_table().num_rows == 10


def test_two_first_writers_of_a_new_table_never_both_commit(tmp_path):
    uri = str(tmp_path / "t")
    a, b = MarkedTable(uri, {}, "app", "events").open(), MarkedTable(uri, {}, "app", "events").open()
    assert a.table is None and b.table is None
    a.append(rows(5), {0: 5}, "a")
    with pytest.raises(ConcurrentWriterError, match="created the table first"):
        b.append(rows(5), {0: 5}, "b")
    assert DeltaTable(uri).to_pyarrow_table().num_rows == 5


def test_a_merge_that_changes_nothing_still_moves_the_marks(tmp_path):
    """delta-rs writes no commit for a MERGE that inserts and updates nothing (a redelivered event alone in
    its batch, a replayed change): the marks must move all the same, without a false concurrency error."""
    uri = str(tmp_path / "t")
    t = MarkedTable(uri, {}, "app", "events").open()
    t.append(rows(3), {0: 3}, "first")
    t.merge(
        rows(3), {0: 6}, "again", predicate="t.id = s.id", clauses=lambda m: m.when_not_matched_insert_all()
    )
    fresh = MarkedTable(uri, {}, "app", "events").open()
    assert fresh.next_offsets([0]) == {0: 6} and fresh.table.to_pyarrow_table().num_rows == 3


class Crash(BaseException):
    pass


def test_a_crash_between_dead_letters_and_bronze_decides_every_message_the_same_way_again(
    tmp_path, monkeypatch
):
    """The first value of a new field fixes its column's type. A run crashes after its dead-letter commit; a
    message sorting earlier arrives before the rerun. The rerun must decide the crashed batch's messages as
    before (no message lost, none both in bronze and a dead letter)."""
    import json

    import lakehouse.ingest.exactly_once as eo
    from lakehouse.ingest.refine import refine

    def event(i, ab):
        return json.dumps({"event_id": f"e{i}", "event_type": "click", "event_time": "2026-01-01T00:00:00Z",
                           "user_id": 1, "ab": ab}).encode()  # fmt: skip

    raw_uri = str(tmp_path / "raw")
    raw = raw_target(raw_uri, {}, "events", "lakehouse-raw").open()
    first = to_arrow("events", {"partition": [1, 1], "offset": [0, 1], "timestamp_ms": [0, 0], "key": [None] * 2,
                                "value": [event(101, 1), event(102, "s")]})  # fmt: skip
    raw.commit_files(upload_files(raw_uri, {}, first), {0: 0, 1: 2}, "t")

    def crash_at(point):
        if point == "lakehouse-bronze.before_commit":
            raise Crash(point)

    monkeypatch.setattr(eo, "fault_point", crash_at)
    with pytest.raises(Crash):
        refine(
            raw_uri,
            str(tmp_path / "b"),
            str(tmp_path / "d"),
            {},
            "events",
            "lakehouse-raw",
            log=lambda _: None,
        )
    monkeypatch.undo()
    later = to_arrow("events", {"partition": [0], "offset": [0], "timestamp_ms": [0], "key": [None],
                                "value": [event(1, "x")]})  # fmt: skip
    raw.commit_files(upload_files(raw_uri, {}, later), {0: 1, 1: 2}, "t")
    refine(
        raw_uri, str(tmp_path / "b"), str(tmp_path / "d"), {}, "events", "lakehouse-raw", log=lambda _: None
    )
    bronze = sorted(DeltaTable(str(tmp_path / "b")).to_pyarrow_table().column("event_id").to_pylist())
    dead = sorted(DeltaTable(str(tmp_path / "d")).to_pyarrow_table().column("offset").to_pylist())
    assert bronze == ["e101"]  # ab is an integer column, as the crashed run decided
    assert dead == [0, 1]  # p1:1 (ab "s") once, and p0:0 (ab "x"), which now contradicts the column


def test_acknowledge_gap_knows_every_landed_topic(clean_env):
    """The landing's gap error names `acknowledge-gap --topic <topic>` for whatever topic it lands: the events,
    each CDC table's, each stream output's; each maps to its own raw table and writer."""
    from lakehouse.cli import landed_tables
    from lakehouse.settings import LakehouseSettings

    tables = landed_tables(LakehouseSettings())
    assert tables["clickstream.events"] == ("clickstream_events", "lakehouse-raw")
    assert tables["cdc.marketplace.orders"] == ("cdc_orders", "lakehouse-raw-cdc")
    assert tables["rt.product_ctr"] == ("rt_product_ctr", "lakehouse-rt")
    assert len({app_table for app_table in tables.values()}) == len(tables)
