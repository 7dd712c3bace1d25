"""Synthetic marketplace clickstream: realistic shopping sessions as JSON events.

Users browse, search and see products (impressions); some click, view and add to cart; fewer
check out and buy; some carts are abandoned. Sessions interleave, so event times arrive out of
order, and they spread over the last `days` days. Generation is pure and repeatable by seed;
`produce_events` sends the events to Kafka keyed by user.
"""

from __future__ import annotations

import json
import random
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from lakehouse.settings import LakehouseSettings

SCHEMA_VERSION = 1
EVENT_TYPES = (
    "page_view", "search", "impression", "click", "product_view",
    "add_to_cart", "remove_from_cart", "checkout_started", "purchase",
)  # fmt: skip
DEVICES = ("web", "ios", "android")
COUNTRIES = ("DE", "FR", "GB", "US", "NL", "ES", "IT", "PL", "SE", "BR")
SEARCH_TERMS = ("shoes", "jacket", "lamp", "coffee", "headphones", "desk", "tent", "watch", "sofa", "book")


@dataclass(frozen=True)
class GeneratorConfig:
    events: int = 5000
    days: int = 3
    users: int = 300
    products: int = 200
    merchants: int = 20
    seed: int | None = None
    end: datetime | None = None  # newest event time; default: now


@dataclass(frozen=True)
class Product:
    product_id: int
    merchant_id: int
    price: float


@dataclass
class ProduceSummary:
    topic: str
    produced: int
    first_day: date | None
    last_day: date | None


def catalogue(rng: random.Random, config: GeneratorConfig) -> list[Product]:
    return [
        Product(product_id=pid, merchant_id=rng.randint(1, config.merchants),
                price=round(rng.lognormvariate(3.2, 0.9), 2))
        for pid in range(1, config.products + 1)
    ]  # fmt: skip


def _session(rng: random.Random, products: list[Product], user_id: int, start: datetime) -> list[dict]:
    """One user's visit: a funnel walk that may end anywhere."""
    device = DEVICES[user_id % len(DEVICES)]
    country = COUNTRIES[user_id % len(COUNTRIES)]
    session_hint = uuid.UUID(int=rng.getrandbits(128)).hex[:16]
    clock = start
    events: list[dict] = []

    def emit(event_type: str, product: Product | None = None, quantity: int | None = None, **props) -> None:
        nonlocal clock
        clock += timedelta(seconds=rng.uniform(2, 75))
        events.append({
            "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "event_type": event_type,
            "event_time": clock.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "user_id": user_id,
            "session_hint": session_hint,
            "product_id": product.product_id if product else None,
            "merchant_id": product.merchant_id if product else None,
            "price": product.price if product else None,
            "quantity": quantity,
            "device": device,
            "country": country,
            "schema_version": SCHEMA_VERSION,
            "properties": props,
        })  # fmt: skip

    emit("page_view", page="home")
    cart: list[Product] = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        if rng.random() < 0.6:
            emit("search", query=rng.choice(SEARCH_TERMS))
        shown = rng.sample(products, k=rng.randint(3, 8))
        for position, product in enumerate(shown):
            emit("impression", product, position=position)
        for product in shown:
            if rng.random() < 0.12:
                emit("click", product)
                emit("product_view", product)
                if rng.random() < 0.35:
                    emit("add_to_cart", product, quantity=rng.randint(1, 3))
                    cart.append(product)
    if cart and rng.random() < 0.15:
        emit("remove_from_cart", cart.pop(), quantity=1)
    if cart and rng.random() < 0.55:
        emit("checkout_started", cart_size=len(cart))
        if rng.random() < 0.75:
            for product in cart:
                emit("purchase", product, quantity=rng.randint(1, 3), order_ref=session_hint)
    return events


def generate_events(config: GeneratorConfig) -> list[dict]:
    """Exactly `config.events` events from interleaved sessions, in production order."""
    rng = random.Random(config.seed)
    products = catalogue(rng, config)
    end = config.end or datetime.now(UTC)
    span = timedelta(days=config.days)
    # A session starts at least an hour before `end`, so its events do not run into the future.
    window = span - timedelta(hours=1)
    events: list[dict] = []
    while len(events) < config.events:
        user_id = rng.randint(1, config.users)
        start = end - span + timedelta(seconds=rng.uniform(0, window.total_seconds()))
        events.extend(_session(rng, products, user_id, start))
    return events[: config.events]


def event_day(event: dict) -> date:
    return datetime.fromisoformat(event["event_time"].replace("Z", "+00:00")).date()


def produce(settings: LakehouseSettings, topic: str, events: list[dict], progress=True) -> int:
    """Send events to Kafka keyed by user, creating the topic if needed; returns delivered count."""
    from lakehouse.resources.kafka import ensure_topic, make_producer

    ensure_topic(settings.kafka_bootstrap, topic, settings.events_partitions)
    producer = make_producer(settings.kafka_bootstrap)
    failures: list[str] = []

    def on_delivery(err, _msg):
        if err is not None:
            failures.append(str(err))

    step = max(1, len(events) // 10)
    for i, event in enumerate(events, 1):
        producer.produce(topic, key=str(event["user_id"]).encode(), value=json.dumps(event).encode(),
                         on_delivery=on_delivery)  # fmt: skip
        producer.poll(0)
        if progress and i % step == 0:
            print(f"  produced {i}/{len(events)} events", file=sys.stderr)
    remaining = producer.flush(60)
    if remaining or failures:
        raise RuntimeError(
            f"{len(failures) + remaining} of {len(events)} events were not delivered to {topic}: "
            f"{(failures or ['timed out'])[0]}. Is Kafka up (`lakehouse stack status`)?"
        )
    return len(events)


def produce_events(settings: LakehouseSettings, config: GeneratorConfig, topic: str) -> ProduceSummary:
    events = generate_events(config)
    produced = produce(settings, topic, events)
    days = sorted({event_day(e) for e in events})
    return ProduceSummary(topic=topic, produced=produced, first_day=days[0] if days else None,
                          last_day=days[-1] if days else None)  # fmt: skip
