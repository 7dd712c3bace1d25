"""The clickstream generator (pure logic)."""

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

from lakehouse.generator.clickstream import EVENT_TYPES, GeneratorConfig, event_day, generate_events

END = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def test_exact_count_and_required_fields():
    events = generate_events(GeneratorConfig(events=3000, seed=1, end=END))
    assert len(events) == 3000
    assert len({e["event_id"] for e in events}) == 3000
    for e in events:
        assert e["event_type"] in EVENT_TYPES
        assert e["user_id"] and e["session_hint"] and e["schema_version"] == 1
        t = datetime.fromisoformat(e["event_time"].replace("Z", "+00:00"))
        assert END - timedelta(days=3) <= t <= END


def test_repeatable_by_seed_and_different_without_it():
    a = generate_events(GeneratorConfig(events=500, seed=9, end=END))
    b = generate_events(GeneratorConfig(events=500, seed=9, end=END))
    c = generate_events(GeneratorConfig(events=500, seed=10, end=END))
    assert a == b
    assert a != c


def test_sessions_walk_the_funnel_in_order():
    events = generate_events(GeneratorConfig(events=20000, seed=3, end=END))
    by_session = defaultdict(list)
    for e in events:
        by_session[e["session_hint"]].append(e)
    for session in by_session.values():
        times = [e["event_time"] for e in session]
        assert times == sorted(times)
        carted = set()
        for e in session:
            if e["event_type"] == "add_to_cart":
                carted.add(e["product_id"])
            if e["event_type"] == "purchase":
                assert e["product_id"] in carted
    kinds = Counter(e["event_type"] for e in events)
    # A realistic funnel narrows at every step.
    assert kinds["impression"] > kinds["click"] > kinds["add_to_cart"] > kinds["purchase"] > 0
    assert kinds["checkout_started"] > 0 and kinds["remove_from_cart"] > 0


def test_events_arrive_out_of_order_and_span_days():
    events = generate_events(GeneratorConfig(events=5000, days=3, seed=5, end=END))
    times = [e["event_time"] for e in events]
    assert times != sorted(times)
    assert len({event_day(e) for e in events}) >= 3
