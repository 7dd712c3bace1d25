"""Events produced to Kafka arrive unchanged in every layer, raw to gold, on the live stack."""

from __future__ import annotations

import subprocess
from collections import defaultdict
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

import pytest

from lakehouse.demo import dagster_env, materialize_command
from lakehouse.generator.clickstream import GeneratorConfig, encode, event_day, generate_events, produce
from lakehouse.resources import LakeResource, TrinoResource

pytestmark = pytest.mark.stack

EVENTS = 4000
END = datetime(2026, 3, 18, 15, 30, tzinfo=UTC)


def expected_daily_funnel(events: list[dict]) -> dict:
    """The gold table, computed independently from the produced events."""
    steps = {"impression": "impressions", "click": "clicks", "add_to_cart": "add_to_carts",
             "checkout_started": "checkouts", "purchase": "purchases"}  # fmt: skip
    days: dict = defaultdict(lambda: defaultdict(Decimal))
    for e in events:
        day = days[event_day(e)]
        day["events"] += 1
        if e["event_type"] in steps:
            day[steps[e["event_type"]]] += 1
        if e["event_type"] == "purchase":
            day["units_sold"] += e["quantity"]
            day["revenue"] += Decimal(str(e["price"])) * e["quantity"]
    return days


@pytest.fixture(scope="module")
def produced(namespace):
    events = generate_events(GeneratorConfig(events=EVENTS, days=3, seed=42, end=END))
    produce(namespace.settings, namespace.settings.events_topic, encode(events), progress=False)
    days = sorted({event_day(e) for e in events})
    cmd = materialize_command(days[0], days[-1])
    env = {**dagster_env(namespace.settings), **namespace.env}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    return events


def test_every_layer_holds_every_event(namespace, produced):
    lake = LakeResource.from_settings(namespace.settings)
    trino = TrinoResource.from_settings(namespace.settings)
    raw = lake.read("raw", "clickstream_events")
    bronze = lake.read("bronze", "clickstream_events", columns=["event_id"])
    silver = lake.read("silver", "product_funnel_daily", columns=["events"])
    (gold,) = trino.query(f"SELECT sum(events) FROM delta.{lake.schema('gold')}.daily_funnel")
    assert raw.num_rows == EVENTS
    assert set(raw.column("topic").to_pylist()) == {namespace.settings.events_topic}
    assert bronze.num_rows == EVENTS
    assert set(bronze.column("event_id").to_pylist()) == {e["event_id"] for e in produced}
    assert sum(silver.column("events").to_pylist()) == EVENTS
    assert gold[0] == EVENTS


def test_gold_equals_independent_aggregate(namespace, produced):
    lake = LakeResource.from_settings(namespace.settings)
    trino = TrinoResource.from_settings(namespace.settings)
    rows = trino.query(
        "SELECT event_date, events, impressions, clicks, add_to_carts, checkouts, purchases, units_sold, revenue "
        f"FROM delta.{lake.schema('gold')}.daily_funnel ORDER BY event_date"
    )
    expected = expected_daily_funnel(produced)
    assert [r[0] for r in rows] == sorted(expected)
    cols = ["events", "impressions", "clicks", "add_to_carts", "checkouts", "purchases", "units_sold"]
    for row in rows:
        want = expected[row[0]]
        assert dict(zip(cols, row[1:8], strict=True)) == {c: int(want[c]) for c in cols}, row[0]
        cents = want["revenue"].quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        assert abs(row[8] - cents) <= Decimal("0.01"), (row[0], row[8], cents)


def test_rematerializing_lands_nothing_twice(namespace, produced):
    """A second run finds no new offsets: the table's recorded offsets, not the consumer group, decide."""
    from lakehouse.ingest.landing import land_topic, raw_appender
    from lakehouse.resources import KafkaResource

    lake = LakeResource.from_settings(namespace.settings)
    kafka = KafkaResource(bootstrap_servers=namespace.settings.kafka_bootstrap,
                          events_topic=namespace.settings.events_topic)  # fmt: skip
    uri = lake.table_uri("raw", "clickstream_events")
    appender = raw_appender(uri, lake.storage_options)
    result = land_topic(kafka, appender, kafka.events_topic, "lakehouse-raw", log=lambda _: None)
    assert result.rows == 0
    assert lake.read("raw", "clickstream_events", columns=["offset"]).num_rows == EVENTS
