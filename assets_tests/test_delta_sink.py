"""Two-phase Delta appends with offsets in the log (real delta-rs on a local folder)."""

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import Transaction

from lakehouse.ingest.delta_sink import DeltaAppender
from lakehouse.ingest.landing import RAW_SCHEMA, last_offsets, to_arrow


def batch(partition: int, offsets: range) -> pa.Table:
    n = len(offsets)
    cols = {"partition": [partition] * n, "offset": list(offsets), "timestamp_ms": [0] * n,
            "key": [b"k"] * n, "value": [b"v"] * n}  # fmt: skip
    return to_arrow("events", cols)


def test_offsets_are_recorded_with_the_data_and_read_back(tmp_path):
    appender = DeltaAppender(str(tmp_path / "raw"), {}, RAW_SCHEMA)
    table = appender.open()
    assert appender.next_offsets(table, "app", "events", [0, 1]) == {0: 0, 1: 0}
    for first in (0, 10):
        b = batch(1, range(first, first + 10))
        assert last_offsets(b) == {1: first + 9}
        appender.commit(table, appender.write_files(b), [Transaction("app:events:1", first + 9)], {})
    fresh = DeltaTable(str(tmp_path / "raw"))
    assert appender.next_offsets(fresh, "app", "events", [0, 1]) == {0: 0, 1: 20}
    assert fresh.to_pyarrow_table().num_rows == 20


def test_files_written_but_not_committed_are_invisible(tmp_path):
    appender = DeltaAppender(str(tmp_path / "raw"), {}, RAW_SCHEMA)
    table = appender.open()
    appender.write_files(batch(0, range(5)))  # a crash here: files without a commit
    assert DeltaTable(str(tmp_path / "raw")).to_pyarrow_table().num_rows == 0
    assert appender.next_offsets(table, "app", "events", [0]) == {0: 0}


def test_a_concurrent_writer_of_the_same_offsets_fails_cleanly(tmp_path):
    appender = DeltaAppender(str(tmp_path / "raw"), {}, RAW_SCHEMA)
    first, second = appender.open(), DeltaTable(str(tmp_path / "raw"))
    b = batch(0, range(5))
    appender.commit(first, appender.write_files(b), [Transaction("app:events:0", 4)], {})
    with pytest.raises(CommitFailedError):
        appender.commit(second, appender.write_files(b), [Transaction("app:events:0", 4)], {})
    assert DeltaTable(str(tmp_path / "raw")).to_pyarrow_table().num_rows == 5
