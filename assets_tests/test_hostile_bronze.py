"""No poison pill in bronze: generated streams of valid and hostile messages, through the whole
parse -> Arrow -> Delta path (raw table, refine, bronze MERGE and dead letters on a local folder).

Exact accounting: bronze rows + dead letters + duplicate deliveries = messages; every valid event
is in bronze with its values unchanged; every hostile message is a dead letter with its reason."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from conftest import report_hostile_kinds
from deltalake import DeltaTable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakehouse.ingest.bronze import to_bronze
from lakehouse.ingest.delta_sink import upload_files
from lakehouse.ingest.landing import raw_target, to_arrow
from lakehouse.ingest.refine import refine

BASE_TIME = datetime(2026, 3, 1, tzinfo=UTC)
TRIED: Counter = Counter()  # hostile kinds tried across all examples (reported at the end)


def event(i: int, **fields) -> dict:
    e = {"event_id": f"e-{i}", "event_type": "click", "event_time": (BASE_TIME + timedelta(minutes=i)).isoformat(),
         "user_id": i, "product_id": 10 + i, "price": 9.5, "quantity": 2, "schema_version": 1,
         "properties": {"page": "home"}}  # fmt: skip
    return {**e, **fields}


def encoded(e: dict) -> bytes:
    return json.dumps(e).encode()


# Each hostile kind: (name, a function of a unique index giving the message bytes, text the reason contains)
HOSTILE = [
    ("int beyond int64", lambda i: encoded(event(i, user_id=2**64)), "out of range for int64"),
    ("int beyond int32 column", lambda i: encoded(event(i, quantity=2**31)), "out of range for int32"),
    ("huge int literal", lambda i: encoded(event(i)).replace(b'"product_id": ', b'"product_id": ' + b"9" * 5000), "digits (at most"),
    ("NaN", lambda i: encoded(event(i)).replace(b'"price": 9.5', b'"price": NaN'), "NaN is not valid JSON"),
    ("Infinity", lambda i: encoded(event(i)).replace(b'"price": 9.5', b'"price": -Infinity'), "-Infinity is not"),
    ("double overflow", lambda i: encoded(event(i)).replace(b'"price": 9.5', b'"price": 1e999'), "out of the range"),
    ("fraction for int", lambda i: encoded(event(i, quantity=2.5)), "not an integer"),
    ("integral double beyond int32", lambda i: encoded(event(i, quantity=1e10)), "out of range for int32"),
    ("number as string", lambda i: encoded(event(i, quantity="2")), "not an integer"),
    ("price as string", lambda i: encoded(event(i, price="9.5")), "not a number"),
    ("boolean as number", lambda i: encoded(event(i, quantity=True)), "not an integer"),
    ("int beyond exact double", lambda i: encoded(event(i, price=2**60 + 1)), "exactly as a double"),
    ("huge string", lambda i: encoded(event(i, device="x" * 70_000)), "characters"),
    ("deep nesting", lambda i: encoded(event(i, properties={"a": json.loads("[" * 40 + "]" * 40)})), "nested deeper"),
    ("very deep nesting", lambda i: b'{"properties": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested deeper"),
    ("object for string", lambda i: encoded(event(i, device={"os": "ios"})), "not a string"),
    ("non-UTF-8 bytes", lambda i: encoded(event(i)).replace(b"click", b"cl\xffck"), "not UTF-8"),
    ("UTF-16", lambda i: json.dumps(event(i)).encode("utf-16"), "not UTF-8"),
    ("lone surrogate", lambda i: encoded(event(i)).replace(b'"home"', b'"\\ud800"'), "lone surrogate"),
    ("duplicate key", lambda i: encoded(event(i))[:-1] + b', "user_id": 5}', "duplicate key 'user_id'"),
    ("JSON array", lambda i: json.dumps([event(i)]).encode(), "not a JSON object"),
    ("JSON string", lambda i: b'"just a string"', "not a JSON object"),
    ("JSON null", lambda i: b"null", "not a JSON object"),
    ("empty", lambda i: b"", "not JSON"),
    ("tombstone", lambda i: None, "no value"),
    ("missing event_id", lambda i: encoded({k: v for k, v in event(i).items() if k != "event_id"}), "missing required"),
    ("bad event_time", lambda i: encoded(event(i, event_time="yesterday")), "event_time"),
    ("event_time overflow", lambda i: encoded(event(i, event_time="9999-12-31T23:59:59-14:00")), "event_time"),
    ("computed column", lambda i: encoded(event(i, event_date="2020-01-01")), "computed by bronze"),
    ("bad column name", lambda i: encoded(event(i, **{"bad name;": 1})), "cannot become a column"),
    ("case collision", lambda i: encoded(event(i, USER_ID=1)), "only in case"),
    ("incompatible new field", lambda i: encoded(event(i, ab_bucket="seven")), "incompatible change"),
    ("integral double beyond 2**53", lambda i: encoded(event(i, user_id=9007199254740993.0)), "at or beyond 2**53"),
    ("nanosecond event_time", lambda i: encoded(event(i, event_time="2026-03-01T00:00:00.1234567Z")),
     "more precise than microseconds"),
]  # fmt: skip


def write_raw(uri: str, values: list[bytes | None]) -> None:
    target = raw_target(uri, {}, "events", "lakehouse-raw").open()
    cols = {"partition": [i % 2 for i in range(len(values))], "offset": [i // 2 for i in range(len(values))],
            "timestamp_ms": [0] * len(values), "key": [None] * len(values), "value": values}  # fmt: skip
    batch = to_arrow("events", cols)
    upto = {p: sum(1 for i in range(len(values)) if i % 2 == p) for p in (0, 1)}
    target.commit_files(upload_files(uri, {}, batch), upto, "test")


@st.composite
def streams(draw):
    """Messages: valid events (some with new stable fields, some redelivered) and hostile ones, mixed."""
    n = draw(st.integers(min_value=20, max_value=80))
    # The first message (partition 0, offset 0: bronze takes messages in that order) fixes the new fields' types.
    first = event(0, ab_bucket=1, app_version="1.0", experiment={"id": 1})
    messages, expected = (
        [encoded(first)],
        [("valid", first)],
    )  # ("valid", e) | ("duplicate", _) | ("hostile", _)
    valid_sent: list[dict] = [first]
    for i in range(1, n):
        roll = draw(st.integers(0, 99))
        if roll < 45:
            extra = draw(st.sampled_from([{}, {"ab_bucket": draw(st.integers(-(2**63), 2**63 - 1))},
                                          {"app_version": draw(st.text(max_size=30))},
                                          {"experiment": {"id": draw(st.integers(0, 9))}}]))  # fmt: skip
            e = event(i, quantity=draw(st.integers(-(2**31), 2**31 - 1)),
                      price=draw(st.floats(allow_nan=False, allow_infinity=False)),
                      device=draw(st.text(max_size=50)), **extra)  # fmt: skip
            messages.append(encoded(e))
            expected.append(("valid", e))
            valid_sent.append(e)
        elif roll < 52 and valid_sent:
            messages.append(encoded(draw(st.sampled_from(valid_sent))))
            expected.append(("duplicate", None))
        else:
            kind, make, reason = draw(st.sampled_from(HOSTILE))
            messages.append(make(10_000 + i))
            expected.append(("hostile", (kind, reason)))
    return messages, expected


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(streams())
def test_any_stream_is_accounted_for_exactly(tmp_path_factory, stream):
    messages, expected = stream
    root = tmp_path_factory.mktemp("lake")
    write_raw(str(root / "raw"), messages)
    result = refine(str(root / "raw"), str(root / "bronze"), str(root / "dead"), {}, "events", "lakehouse-raw",
                    log=lambda _: None)  # fmt: skip
    bronze = DeltaTable(str(root / "bronze")).to_pyarrow_table()
    dead = DeltaTable(str(root / "dead")).to_pyarrow_table()
    kinds = Counter(k for k, _ in expected)
    assert bronze.num_rows == result.inserted == kinds["valid"]
    assert dead.num_rows == kinds["hostile"]
    assert bronze.num_rows + dead.num_rows + result.duplicates == len(messages)

    rows = {r["event_id"]: r for r in bronze.to_pylist()}
    for kind, e in expected:
        if kind != "valid":
            continue
        row = rows[e["event_id"]]  # present, and nothing coerced or truncated
        assert (row["quantity"], row["price"], row["device"], row["user_id"]) == (
            e["quantity"], e["price"], e.get("device"), e["user_id"])  # fmt: skip
        for name in ("ab_bucket", "app_version"):
            assert row.get(name) == e.get(name)
        if "experiment" in e:
            assert json.loads(row["experiment"]) == e["experiment"]
    # Each hostile message is a dead letter carrying its own bytes and the reason for its kind.
    dead_by_offset = {(r["partition"], r["offset"]): r for r in dead.to_pylist()}
    for i, (kind, info) in enumerate(expected):
        if kind == "hostile":
            letter = dead_by_offset[(i % 2, i // 2)]
            assert letter["value"] == messages[i]
            assert info[1] in letter["error"], (info[0], letter["error"])
            TRIED[info[0]] += 1


def test_a_single_value_arrow_refuses_becomes_a_dead_letter_not_a_failed_batch(monkeypatch):
    """The last line of defence: if validation ever lets through a value Arrow cannot store, only that
    message is dead-lettered, with Arrow's reason, and the batch goes on."""
    import lakehouse.ingest.bronze as bronze

    real = bronze.to_column

    def lenient(name, value, column_type):  # a validation gap, simulated for quantity only
        return value if name == "quantity" else real(name, value, column_type)

    monkeypatch.setattr(bronze, "to_column", lenient)
    raw = to_arrow("events", {"partition": [0, 0, 0], "offset": [0, 1, 2], "timestamp_ms": [0] * 3, "key": [None] * 3,
                              "value": [encoded(event(1)), encoded(event(2, quantity=2**40)), encoded(event(3))]})  # fmt: skip
    batch = to_bronze(raw)
    assert sorted(batch.table.column("event_id").to_pylist()) == ["e-1", "e-3"]
    assert batch.dead_letters.column("offset").to_pylist() == [1]
    assert "cannot be stored in bronze" in batch.dead_letters.column("error")[0].as_py()


def test_new_columns_are_bounded(tmp_path):
    values = [encoded(event(i, **{f"field_{i}": i})) for i in range(6)]
    raw = to_arrow("events", {"partition": [0] * 6, "offset": list(range(6)), "timestamp_ms": [0] * 6,
                              "key": [None] * 6, "value": values})  # fmt: skip
    batch = to_bronze(raw, max_new_columns=4)
    assert batch.table.num_rows == 4 and batch.dead_letters.num_rows == 2
    assert [n for n in batch.table.schema.names if n.startswith("field_")] == [f"field_{i}" for i in range(4)]
    assert all(
        "LAKEHOUSE_BRONZE_MAX_NEW_COLUMNS" in e for e in batch.dead_letters.column("error").to_pylist()
    )
    # An event rejected for another reason adds no column.
    bad = to_arrow("events", {"partition": [0], "offset": [0], "timestamp_ms": [0], "key": [None],
                              "value": [encoded(event(1, brand_new=1, quantity="x"))]})  # fmt: skip
    assert "brand_new" not in to_bronze(bad).table.schema.names


@pytest.fixture(scope="module", autouse=True)
def report_hostile():
    yield
    report_hostile_kinds(TRIED, {k for k, _, _ in HOSTILE}, "messages")


def test_the_schema_of_bronze_follows_new_fields(tmp_path):
    write_raw(str(tmp_path / "raw"), [encoded(event(1, app_version="1.2")), encoded(event(2, ab_bucket=3))])
    refine(str(tmp_path / "raw"), str(tmp_path / "b"), str(tmp_path / "d"), {}, "events", "lakehouse-raw",
           log=lambda _: None)  # fmt: skip
    schema = pa.schema(DeltaTable(str(tmp_path / "b")).schema().to_arrow())
    assert schema.field("app_version").type == pa.string() and schema.field("ab_bucket").type == pa.int64()
