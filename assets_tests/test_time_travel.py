"""Time travel on the live stack: a lake table as of a version or a time, through Trino and delta-rs; a
version that left the log is refused with what is still readable, by both."""

from __future__ import annotations

import time
from datetime import timedelta

import pyarrow as pa
import pytest
import trino
from deltalake import DeltaTable, write_deltalake

from lakehouse.cli import main
from lakehouse.resources import LakeResource, TrinoResource
from lakehouse.time_travel import TimeTravelError, as_of, retained

pytestmark = pytest.mark.stack


def test_every_version_reads_back_through_trino_and_delta_rs_until_it_leaves_the_log(namespace, capsys):
    s = namespace.settings
    lake, trino_ = LakeResource.from_settings(s), TrinoResource.from_settings(s)
    uri, opts = lake.table_uri("silver", "time_travel_probe"), lake.storage_options
    stamps = []
    for i in range(3):  # versions 0, 1, 2 hold rows 0..i
        write_deltalake(uri, pa.table({"n": [i]}), mode="append", storage_options=opts,
                        configuration={"delta.logRetentionDuration": "interval 0 seconds"} if i == 0 else None)  # fmt: skip
        stamps.append(retained(DeltaTable(uri, storage_options=opts))[-1][1])
        time.sleep(1.1)  # distinct commit times, to the second
    trino_.register_lake_table(lake, "silver", "time_travel_probe")
    table = trino_.qualified(lake, "silver", "time_travel_probe")

    for version in range(3):
        want = list(range(version + 1))
        assert sorted(as_of(uri, opts, version=version).to_pyarrow_table().column("n").to_pylist()) == want
        assert (
            sorted(r[0] for r in trino_.query(f"SELECT n FROM {table} FOR VERSION AS OF {version}")) == want
        )
        at = stamps[version] + timedelta(milliseconds=500)  # between this commit and the next
        assert sorted(as_of(uri, opts, timestamp=at).to_pyarrow_table().column("n").to_pylist()) == want
        literal = at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        rows = trino_.query(f"SELECT n FROM {table} FOR TIMESTAMP AS OF TIMESTAMP '{literal} UTC'")
        assert sorted(r[0] for r in rows) == want, (version, literal)
    assert main(["lake", "as-of", "silver", "time_travel_probe", "--version", "1"]) == 0
    assert "at version 1: 2 rows" in capsys.readouterr().out

    dt = DeltaTable(uri, storage_options=opts)  # what maintenance does: checkpoint, then drop the old log
    dt.create_checkpoint()
    dt.cleanup_metadata()
    assert [v for v, _ in retained(DeltaTable(uri, storage_options=opts))] == [2]
    with pytest.raises(TimeTravelError) as err:
        as_of(uri, opts, version=0)
    assert "version 0" in err.value.problem and "keeps versions 2 to 2" in err.value.problem
    assert "logRetentionDuration" in err.value.fix
    with pytest.raises(TimeTravelError, match="cannot be read: its log keeps versions 2 to 2"):
        as_of(uri, opts, timestamp=stamps[0] + timedelta(milliseconds=500))  # delta-rs alone would load v2
    with pytest.raises(TimeTravelError):
        as_of(uri, opts, version=7)
    assert main(["lake", "as-of", "silver", "time_travel_probe", "--version", "0"]) == 2
    assert "keeps versions 2 to 2" in capsys.readouterr().err
    with pytest.raises(trino.exceptions.TrinoUserError):
        trino_.query(f"SELECT n FROM {table} FOR VERSION AS OF 0")
    assert sorted(r[0] for r in trino_.query(f"SELECT n FROM {table} FOR VERSION AS OF 2")) == [0, 1, 2]
