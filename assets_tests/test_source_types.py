"""Typed silver from PostgreSQL's column types (pure logic): every value Debezium can send for a column
either becomes exactly its silver value or a ValueError with the reason (a dead letter), never anything
else; a source type change widens silver's column or is refused."""

import base64
import math
import struct
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lakehouse.cdc.source_types import SourceTypes, arrow_type, decode, fit, typed_column, widens

PG_TYPES = ["smallint", "integer", "bigint", "real", "double precision", "boolean", "numeric(12,2)",
            "numeric(38,10)", "numeric", "text", "character varying(20)", "uuid", "jsonb", "enum", "bytea", "date",
            "timestamp without time zone", "timestamp(3) without time zone", "timestamp with time zone",
            "time without time zone", "time with time zone", "interval", "integer[]", "text[]", "numeric(5,2)[]"]  # fmt: skip

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.sampled_from([1e300, -3.5e38, 2**63, -(2**63) - 1, "1e400", "NaN", "Infinity", "", "00:00"])
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_any_json_value_is_a_silver_value_or_a_reason(value):
    for pg in PG_TYPES:
        check_value(pg, value)


def check_value(pg, value):
    try:
        decoded = decode("c", pg, value)
    except ValueError as exc:
        assert "c" in str(exc)
        return
    column = arrow_type(pg)
    # whatever decode accepts, Arrow stores in the column unchanged (it would truncate rather than refuse)
    stored = pa.array([decoded], type=column).to_pylist()[0]
    if decoded is None:
        assert stored is None
    elif pa.types.is_decimal(column):
        assert stored == decoded
    elif pa.types.is_timestamp(column):  # microseconds since 1970 (UTC, or the wall clock without a zone)
        expected = datetime(1970, 1, 1, tzinfo=UTC if column.tz else None) + timedelta(microseconds=decoded)
        assert stored == expected
    elif column == pa.date32():
        assert stored == date(1970, 1, 1) + timedelta(days=decoded)
    elif isinstance(decoded, float) and math.isnan(decoded):
        assert math.isnan(stored)
    elif column == pa.float32():  # a real is a float32: Debezium's JSON double of it rounds back to it
        assert stored == struct.unpack("f", struct.pack("f", decoded))[0]
    else:
        assert stored == decoded


@pytest.mark.parametrize(
    ("pg", "value", "expected"),
    [
        ("numeric(12,2)", "299.70", Decimal("299.70")),
        ("numeric(12,2)", "5", Decimal("5.00")),
        ("numeric", "123456789012345678901234567890.123456789", "123456789012345678901234567890.123456789"),
        ("timestamp with time zone", "2026-11-27T10:00:00.123456Z", 1795773600123456),
        ("timestamp with time zone", "2026-11-27T11:00:00.123456+01:00", 1795773600123456),
        ("timestamp without time zone", "2026-11-27T10:00:00.123456Z", 1795773600123456),
        ("timestamp(3) without time zone", "2026-11-27T10:00:00.1Z", 1795773600100000),
        ("date", "2025-11-27Z", 20419),
        ("date", 20419, 20419),
        ("time without time zone", "01:02:03.000001Z", "01:02:03.000001"),
        ("time without time zone", "01:02:03Z", "01:02:03"),
        ("numeric(2,5)", "0.00012", "0.00012"),  # scale above precision: exact text
        ("bytea", base64.b64encode(b"\x00\xff").decode(), b"\x00\xff"),
        ("integer[]", [1, None, 3], [1, None, 3]),
        ("jsonb", '{"a": 1}', '{"a": 1}'),
        ("uuid", "0b9d6c1e-6c3a-4d8e-9f00-6f1f0c1f2a3b", "0b9d6c1e-6c3a-4d8e-9f00-6f1f0c1f2a3b"),
        ("interval", 31557600000000, 31557600000000),
        ("real", 3.4028235e38, 3.4028235e38),  # Java's Float.MAX_VALUE as it prints it
    ],
)
def test_debezium_values_become_their_types(pg, value, expected):
    assert decode("c", pg, value) == expected


@pytest.mark.parametrize(
    ("pg", "value", "reason"),
    [
        ("numeric(12,2)", "1.005", "more than 2 decimal places"),
        ("numeric(4,2)", "123.45", "more digits"),
        ("integer", 2**31, "out of range"),
        ("smallint", True, "smallint"),
        ("bytea", "not base64!", "not base64"),
        ("timestamp with time zone", "2026-11-27T10:00:00", "no time zone"),
        ("date", "27.11.2026", "not an ISO-8601 date"),
        ("timestamp without time zone", 1795773600123456, "ISO-8601 text expected"),
        ("time without time zone", 3723000001, "time of day expected"),
        ("real", 1e300, "beyond its range"),
        ("real", 3.4028236e38, "beyond its range"),
        ("text", 6, "text expected"),  # text -> integer in PostgreSQL: never made "6" silently
        ("uuid", {"a": 1}, "text expected"),
    ],
)
def test_values_that_do_not_fit_say_why(pg, value, reason):
    with pytest.raises(ValueError, match=reason):
        decode("c", pg, value)


def test_widening_rules():
    assert widens(pa.int32(), pa.int64()) and not widens(pa.int64(), pa.int32())
    assert widens(pa.decimal128(10, 2), pa.decimal128(12, 2))
    assert widens(pa.decimal128(10, 2), pa.decimal128(12, 4))
    assert not widens(pa.decimal128(12, 2), pa.decimal128(12, 4))  # fewer digits before the point
    assert not widens(pa.int64(), pa.string()) and not widens(pa.string(), pa.int64())
    assert widens(pa.list_(pa.int32()), pa.list_(pa.int64()))


def test_a_column_widens_with_its_source_and_a_narrower_value_fits_the_wider_column():
    image = {"n": 5}
    assert typed_column("n", "bigint", pa.int32(), 5, image) == pa.int64()
    image = {"n": 5}
    assert typed_column("n", "integer", pa.int64(), 5, image) == pa.int64()  # an old change, before the ALTER
    image = {"p": Decimal("1.50")}
    assert typed_column("p", "numeric(14,4)", pa.decimal128(12, 2), Decimal("1.5"), image) == pa.decimal128(
        14, 4
    )
    assert image["p"] == Decimal("1.5000")
    with pytest.raises(ValueError, match="not a widening"):
        typed_column("n", "text", pa.int64(), "five", {"n": "five"})
    assert fit("n", 5, pa.decimal128(12, 2)) == Decimal("5.00")


def test_a_changed_source_type_is_read_from_the_catalog_only_when_needed():
    reads = []

    def catalog():
        reads.append(1)
        return {"n": "bigint", "new": "date"}

    types = SourceTypes({"n": "integer"}, catalog)
    assert types.resolve("n", 7) == ("integer", 7) and not reads
    assert types.resolve("n", 2**40) == ("bigint", 2**40) and len(reads) == 1  # the ALTER to bigint
    assert types.resolve("new", 3) == ("date", 3)
    assert types.resolve("gone", "x") == (None, "x")  # dropped since: typed from its JSON value
    assert len(reads) == 1


# --- the typed apply under hostile values: each record is applied or a dead letter, never a stall -----------

CATALOG = {"merchant_id": "bigint", "name": "text", "rating": "numeric(4,1)", "active": "boolean",
           "opened": "date", "seen_at": "timestamp with time zone", "tags": "text[]"}  # fmt: skip
column_values = st.fixed_dictionaries({
    "name": json_values, "rating": st.one_of(json_values, st.sampled_from(["4.5", "999.9", "1000.0", "0.05", "NaN"])),
    "active": json_values, "opened": st.one_of(json_values, st.sampled_from(["2026-11-27Z", "0001-01-01Z", "x"])),
    "seen_at": st.one_of(json_values, st.sampled_from(["2026-11-27T10:00:00.5Z", "2026-11-27T10:00:00"])),
    "tags": json_values,
})  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(images=st.lists(st.tuples(st.integers(1, 4), column_values), min_size=1, max_size=12))
def test_typed_apply_takes_every_record_or_dead_letters_it(tmp_path_factory, images):
    import json

    from deltalake import DeltaTable

    from lakehouse.cdc.apply import apply_changes, current_state
    from lakehouse.cdc.changes import CHANGE_LOG_SCHEMA, to_change_log
    from lakehouse.ingest.delta_sink import upload_files
    from lakehouse.ingest.exactly_once import MarkedTable

    base = tmp_path_factory.mktemp("typed")
    log_uri, silver_uri, dead_uri = (str(base / n) for n in ("log", "silver", "dead"))
    topic = "cdc.marketplace.merchants"
    records, expected, invalid = [], {}, 0
    for lsn, (mid, values) in enumerate(images, start=1):
        image = {"merchant_id": mid, **values}
        change = {"op": "u", "before": None, "after": image,
                  "source": {"lsn": lsn, "txId": lsn, "ts_ms": 1_700_000_000_000, "table": "merchants"}}  # fmt: skip
        records.append((json.dumps({"merchant_id": mid}).encode(), json.dumps(change).encode()))
        try:
            expected[mid] = {c: decode(c, CATALOG[c], v) for c, v in image.items()}
        except ValueError:  # a dead letter: the key keeps its previous state
            invalid += 1
    cols = {"partition": [0] * len(records), "offset": list(range(len(records))), "timestamp_ms": [0] * len(records),
            "key": [k for k, _ in records], "value": [v for _, v in records]}  # fmt: skip
    target = MarkedTable(log_uri, {}, "lakehouse-raw-cdc", topic, schema=CHANGE_LOG_SCHEMA).open()
    target.commit_files(upload_files(log_uri, {}, to_change_log(topic, cols)), {0: len(records)}, "t")
    result = apply_changes(
        log_uri, silver_uri, dead_uri, {}, topic, log=lambda _: None, read_catalog=lambda: CATALOG
    )
    dead = DeltaTable(dead_uri).to_pyarrow_table().num_rows
    assert dead == result.dead_letters == invalid and result.changes_read == len(records)
    if not expected:
        return
    silver = {r["merchant_id"]: r for r in current_state(DeltaTable(silver_uri)).to_pylist()}
    assert set(silver) == set(expected)
    for mid, want in expected.items():
        assert silver[mid]["name"] == want["name"] and silver[mid]["tags"] == want["tags"]
        assert silver[mid]["rating"] == want["rating"] and silver[mid]["active"] == want["active"]


def test_silver_written_before_it_was_typed_is_refused_with_the_rebuild(tmp_path):
    import json

    from lakehouse.cdc.apply import apply_changes
    from lakehouse.cdc.changes import CHANGE_LOG_SCHEMA, to_change_log
    from lakehouse.ingest.delta_sink import upload_files
    from lakehouse.ingest.exactly_once import MarkedTable
    from lakehouse.stack.errors import StackError

    log_uri, silver_uri, dead_uri = (str(tmp_path / n) for n in ("log", "silver", "dead"))
    topic = "cdc.marketplace.merchants"

    def land(first: int, rating: str) -> None:
        change = {"op": "u", "before": None, "after": {"merchant_id": 1, "rating": rating},
                  "source": {"lsn": first + 1, "ts_ms": 1_700_000_000_000, "table": "merchants"}}  # fmt: skip
        cols = {"partition": [0], "offset": [first], "timestamp_ms": [0], "key": [b'{"merchant_id": 1}'],
                "value": [json.dumps(change).encode()]}  # fmt: skip
        target = MarkedTable(log_uri, {}, "lakehouse-raw-cdc", topic, schema=CHANGE_LOG_SCHEMA).open()
        target.commit_files(upload_files(log_uri, {}, to_change_log(topic, cols)), {0: first + 1}, "t")

    land(0, "4.5")
    apply_changes(log_uri, silver_uri, dead_uri, {}, topic, log=lambda _: None)  # the untyped path of old
    land(1, "3.5")
    catalog = {"merchant_id": "bigint", "rating": "numeric(4,1)"}
    with pytest.raises(StackError, match="written before silver was typed: rating") as refused:
        apply_changes(
            log_uri, silver_uri, dead_uri, {}, topic, log=lambda _: None, read_catalog=lambda: catalog
        )
    assert "rebuilds the table" in refused.value.fix
    import shutil

    from deltalake import DeltaTable

    from lakehouse.cdc.apply import current_state

    shutil.rmtree(silver_uri)  # the fix as the message gives it: the change log rebuilds silver, typed
    apply_changes(log_uri, silver_uri, dead_uri, {}, topic, log=lambda _: None, read_catalog=lambda: catalog)
    assert current_state(DeltaTable(silver_uri)).to_pylist() == [{"merchant_id": 1, "rating": Decimal("3.5")}]
