"""Typing and deduplication of raw messages into bronze rows (pure logic)."""

import json
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from lakehouse.ingest.bronze import BRONZE_SCHEMA, parse_event, to_bronze
from lakehouse.ingest.dead_letters import DEAD_LETTER_SCHEMA
from lakehouse.ingest.landing import RAW_SCHEMA


def event(**overrides):
    base = {"event_id": "e1", "event_type": "click", "event_time": "2026-04-30T23:59:59.500Z", "user_id": 7,
            "session_hint": "s", "product_id": 3, "merchant_id": 2, "price": 9.5, "quantity": None,
            "device": "web", "country": "DE", "schema_version": 1, "properties": {"position": 2}}  # fmt: skip
    base.update(overrides)
    return json.dumps(base).encode()


def raw_table(values: list[bytes]) -> pa.Table:
    n = len(values)
    return pa.table({"topic": ["t"] * n, "partition": [0] * n, "offset": list(range(n)),
                     "kafka_timestamp": [0] * n, "key": [b"k"] * n, "value": values,
                     "ingested_at": [datetime.now(UTC)] * n}, schema=RAW_SCHEMA)  # fmt: skip


def test_parse_types_and_date():
    row, extras = parse_event(event())
    assert extras == {}
    assert row["event_time"] == datetime(2026, 4, 30, 23, 59, 59, 500000, tzinfo=UTC)
    assert str(row["event_date"]) == "2026-04-30"
    assert row["price"] == 9.5 and row["quantity"] is None
    assert json.loads(row["properties"]) == {"position": 2}


def test_timezone_offsets_are_normalised_to_utc():
    row, _ = parse_event(event(event_time="2026-05-01T01:30:00+02:00"))
    assert str(row["event_date"]) == "2026-04-30"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (event(event_id=None), "missing required field(s): event_id"),
        (event(event_time="yesterday"), "event_time is not an ISO-8601 timestamp"),
        (event(user_id="abc"), "user_id is not an integer"),
        (event(price="twelve"), "price is not a number"),
        (event(event_time=1234567), "event_time is not an ISO-8601 timestamp"),
        (event(properties=[1]), "properties is not a JSON object"),
    ],
)
def test_invalid_messages_are_rejected_with_a_reason(value, reason):
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse_event(value)


def test_to_bronze_keeps_first_delivery_and_dead_letters_the_rest():
    batch = to_bronze(raw_table([event(), event(event_id="e2"), event(), b"oops"]))
    assert batch.table.schema == BRONZE_SCHEMA
    assert batch.table.column("event_id").to_pylist() == ["e1", "e2"]
    assert batch.table.column("kafka_offset").to_pylist() == [0, 1]
    assert batch.duplicates == 1
    assert batch.dead_letters.schema == DEAD_LETTER_SCHEMA
    assert batch.dead_letters.column("offset").to_pylist() == [3]
    assert batch.dead_letters.column("value").to_pylist() == [b"oops"]
    assert batch.dead_letters.column("error").to_pylist()[0].startswith("not JSON")


def test_a_new_optional_field_becomes_a_column():
    batch = to_bronze(raw_table([event(), event(event_id="e2", referrer="newsletter"), event(event_id="e3")]))
    assert batch.table.schema.field("referrer").type == pa.string()
    assert batch.table.column("referrer").to_pylist() == [None, "newsletter", None]
    assert batch.dead_letters.num_rows == 0


def test_an_incompatible_change_goes_to_dead_letters_with_the_reason():
    existing = BRONZE_SCHEMA.append(pa.field("referrer", pa.string()))
    batch = to_bronze(raw_table([event(referrer="ads"), event(event_id="e2", referrer=7)]), existing=existing)
    assert batch.table.column("event_id").to_pylist() == ["e1"]
    (reason,) = batch.dead_letters.column("error").to_pylist()
    assert reason == "incompatible change: field 'referrer' is int64, the table has string"


def test_a_column_added_by_an_earlier_run_keeps_accepting_its_type(tmp_path):
    from deltalake import DeltaTable, write_deltalake

    from lakehouse.ingest.delta_sink import arrow_schema

    first = to_bronze(raw_table([event(referrer="ads")]))
    write_deltalake(str(tmp_path / "bronze"), first.table)
    existing = arrow_schema(DeltaTable(str(tmp_path / "bronze")))
    later = to_bronze(raw_table([event(event_id="e9", referrer="newsletter")]), existing=existing)
    assert later.dead_letters.num_rows == 0
    assert later.table.column("referrer").to_pylist() == ["newsletter"]
