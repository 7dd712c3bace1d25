"""No poison pill in the CDC apply: generated change streams mixing valid Debezium records and hostile
ones, through the whole path (Kafka record -> change log row -> Delta -> MERGE into silver, on a local
folder). Silver converges to the state the valid changes describe; every hostile record is a dead
letter with its reason; change-log rows = records, dead letters = hostile records."""

from __future__ import annotations

import json
import re
from collections import Counter

import pyarrow as pa
import pytest
from conftest import report_hostile_kinds
from deltalake import DeltaTable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakehouse.cdc.apply import apply_changes, current_state
from lakehouse.cdc.changes import CHANGE_LOG_SCHEMA, to_change_log
from lakehouse.ingest.delta_sink import upload_files
from lakehouse.ingest.exactly_once import MarkedTable

TOPIC = "cdc.marketplace.merchants"
TRIED: Counter = Counter()


def record(op: str, lsn: int, image: dict, key: dict | None = None, table: str = "merchants") -> tuple:
    key = {"merchant_id": image["merchant_id"]} if key is None else key
    value = {"op": op, "before": image if op == "d" else None, "after": None if op == "d" else image,
             "source": {"lsn": lsn, "txId": lsn, "ts_ms": 1_700_000_000_000 + lsn, "table": table,
                        "snapshot": "false"}}  # fmt: skip
    return json.dumps(key).encode(), json.dumps(value).encode()


def merchant(mid: int, lsn: int, **fields) -> dict:
    return {"merchant_id": mid, "name": f"m{mid}-{lsn}", "rating": 3, "active": True, **fields}


# Hostile records: (kind, function of (merchant id, lsn) -> (key bytes or None, value bytes), reason text)
HOSTILE = [
    ("null key (no primary key)", lambda m, lsn: (None, record("u", lsn, merchant(m, lsn))[1]), "no primary key"),
    ("non-JSON key", lambda m, lsn: (b"merchant-7", record("u", lsn, merchant(m, lsn))[1]), "not JSON"),
    ("non-UTF-8 key", lambda m, lsn: (b'{"merchant_id": \xff}', record("u", lsn, merchant(m, lsn))[1]), "not UTF-8"),
    ("key not an object", lambda m, lsn: (b"[1]", record("u", lsn, merchant(m, lsn))[1]), "not a JSON object"),
    ("key column missing from image", lambda m, lsn: record("u", lsn, {"name": "x"}, key={"merchant_id": m}),
     "missing from the change's image"),
    ("other key columns", lambda m, lsn: record("u", lsn, merchant(m, lsn, region=1), key={"region": 1}),
     "differ from the table's"),
    ("type change: string for a number", lambda m, lsn: record("u", lsn, merchant(m, lsn, rating="five")),
     "rating is not a"),
    ("type change: integer for boolean", lambda m, lsn: record("u", lsn, merchant(m, lsn, active=1)),
     "not a boolean"),
    ("integer beyond int64", lambda m, lsn: record("u", lsn, merchant(m, lsn, rating=2**70)),
     "out of range|exactly as a double"),
    ("NaN", lambda m, lsn: (record("u", lsn, merchant(m, lsn))[0],
                            record("u", lsn, merchant(m, lsn, rating=1))[1].replace(b'"rating": 1', b'"rating": NaN')),
     "NaN is not valid JSON"),
    ("not JSON", lambda m, lsn: (record("u", lsn, merchant(m, lsn))[0], b"{broken"), "not JSON"),
    ("not a change", lambda m, lsn: (record("u", lsn, merchant(m, lsn))[0], b'{"op": "x"}'), "not a Debezium"),
    ("no LSN", lambda m, lsn: (record("u", lsn, merchant(m, lsn))[0], json.dumps(
        {"op": "u", "after": merchant(m, lsn), "source": {"table": "merchants"}}).encode()), "without source.lsn"),
    ("LSN not a number", lambda m, lsn: (record("u", lsn, merchant(m, lsn))[0], json.dumps(
        {"op": "u", "after": merchant(m, lsn), "source": {"lsn": {"x": 1}, "table": "merchants"}}).encode()),
     "source.lsn is not an integer"),
    ("source not an object", lambda m, lsn: (record("u", lsn, merchant(m, lsn))[0], json.dumps(
        {"op": "u", "after": merchant(m, lsn), "source": 5}).encode()), "without source.lsn"),
    ("image not an object", lambda m, lsn: (record("u", lsn, merchant(m, lsn))[0], json.dumps(
        {"op": "u", "after": [1], "source": {"lsn": lsn, "table": "merchants"}}).encode()), "image"),
    ("deep nesting", lambda m, lsn: record("u", lsn, merchant(m, lsn, tags=json.loads("[" * 50 + "]" * 50))),
     "nested deeper"),
    ("another table", lambda m, lsn: record("u", lsn, merchant(m, lsn), table="coupons"), "a change of table"),
    ("op not a string", lambda m, lsn: (record("u", lsn, merchant(m, lsn))[0], b'{"op": [1]}'), "not a Debezium"),
    ("columns differing in case", lambda m, lsn: record("u", lsn, merchant(m, lsn, Name="x")), "only in case"),
    ("a _CDC_ column", lambda m, lsn: record("u", lsn, merchant(m, lsn, _CDC_LSN=1)), "_cdc_"),
    ("column name with a space", lambda m, lsn: record("u", lsn, merchant(m, lsn, **{"my col": 1})),
     "cannot become a silver column"),
    ("ts_ms beyond year 9999", lambda m, lsn: (record("u", lsn, merchant(m, lsn))[0], json.dumps(
        {"op": "u", "after": merchant(m, lsn), "source": {"lsn": lsn, "ts_ms": 253402300800000,
                                                          "table": "merchants"}}).encode()), "range of a timestamp"),
    ("key differs from image", lambda m, lsn: record("u", lsn, merchant(m, lsn), key={"merchant_id": m + 100}),
     "in the message key but"),
    ("float key", lambda m, lsn: record("u", lsn, merchant(m, lsn), key={"merchant_id": float(m)}),
     "integers or strings"),
]  # fmt: skip


@st.composite
def change_streams(draw):
    """A snapshot of 3 merchants, then inserts, updates (a float rating widens the column), deletes, key
    changes and hostile records, with strictly increasing LSNs; the model state the valid ones lead to."""
    records, hostile, state = [], [], {}
    lsn = 0
    for mid in (1, 2, 3):
        lsn += 10
        state[mid] = merchant(mid, lsn)
        records.append(record("r", lsn, state[mid]))
    for _ in range(draw(st.integers(10, 60))):
        lsn += 10
        roll = draw(st.integers(0, 99))
        mid = draw(st.integers(1, 6))
        if roll < 30:
            image = merchant(mid, lsn, rating=draw(st.one_of(st.integers(-5, 5), st.floats(-5, 5, allow_nan=False))),
                             name=draw(st.text(max_size=20)))  # fmt: skip
            records.append(record("c" if mid not in state else "u", lsn, image))
            state[mid] = image
        elif roll < 45 and mid in state:
            records.append(record("d", lsn, state.pop(mid)))
        elif roll < 55 and mid in state and mid + 10 not in state:  # primary-key change: delete + create
            moved = {**state.pop(mid), "merchant_id": mid + 10}
            records.append(record("d", lsn, merchant(mid, lsn)))
            records.append(record("c", lsn + 1, moved))
            lsn += 1
            state[mid + 10] = moved
        elif roll < 60 and mid in state:
            records.append(
                (json.dumps({"merchant_id": mid}).encode(), None)
            )  # tombstone after a delete: ignored
        else:
            kind, make, reason = draw(st.sampled_from(HOSTILE))
            hostile.append((len(records), kind, reason))
            records.append(make(mid, lsn))
    return records, hostile, state


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(change_streams(), st.integers(1, 3))
def test_silver_converges_whatever_the_stream_holds(tmp_path_factory, stream, batches):
    records, hostile, state = stream
    root = tmp_path_factory.mktemp("cdc")
    log_uri, silver_uri, dead_uri = str(root / "log"), str(root / "silver"), str(root / "dead")
    # Land and apply in 1..3 slices: marks, widening and dead letters must hold across runs too.
    size = -(-len(records) // batches)
    landed = 0
    for first in range(0, len(records), size):
        target = MarkedTable(log_uri, {}, "lakehouse-raw-cdc", TOPIC, schema=CHANGE_LOG_SCHEMA).open()
        part = records[first : first + size]
        cols = {"partition": [0] * len(part), "offset": list(range(first, first + len(part))),
                "timestamp_ms": [0] * len(part), "key": [k for k, _ in part], "value": [v for _, v in part]}  # fmt: skip
        target.commit_files(
            upload_files(log_uri, {}, to_change_log(TOPIC, cols)), {0: first + len(part)}, "t"
        )
        landed += len(part)
        apply_changes(log_uri, silver_uri, dead_uri, {}, TOPIC, log=lambda _: None)

    assert DeltaTable(log_uri).to_pyarrow_table().num_rows == len(records) == landed
    dead = DeltaTable(dead_uri).to_pyarrow_table().to_pylist()
    assert len(dead) == len(hostile)
    by_offset = {d["offset"]: d for d in dead}
    for offset, kind, reason in hostile:
        assert re.search(reason, by_offset[offset]["error"]), (kind, by_offset[offset]["error"])
        assert by_offset[offset]["value"] == records[offset][1]
        TRIED[kind] += 1
    silver = {r["merchant_id"]: r for r in current_state(DeltaTable(silver_uri)).to_pylist()}
    assert set(silver) == set(state)
    for mid, image in state.items():
        row = silver[mid]
        assert (row["name"], row["rating"], row["active"]) == (
            image["name"],
            image["rating"],
            image["active"],
        )
        if isinstance(image["rating"], float) and not image["rating"].is_integer():
            assert pa.schema(DeltaTable(silver_uri).schema().to_arrow()).field("rating").type == pa.float64()


@pytest.fixture(scope="module", autouse=True)
def report_hostile():
    yield
    report_hostile_kinds(TRIED, {k for k, _, _ in HOSTILE}, "change records")
