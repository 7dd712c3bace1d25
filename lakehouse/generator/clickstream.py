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
import time
import uuid
from dataclasses import dataclass, field
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
    kinds: dict[str, int] = field(default_factory=dict)  # messages per kind


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


def stamped_now(events: list[dict], seconds: float = 60.0) -> list[dict]:
    """The events restamped, in their order, over the last `seconds` (never before today's midnight UTC):
    a live stream of today's events, for the intraday refresh and the freshness benchmark."""
    now = datetime.now(UTC)
    span = max(
        0.0, min(seconds, (now - now.replace(hour=0, minute=0, second=0, microsecond=0)).total_seconds() - 1)
    )
    for i, event in enumerate(events):
        at = now - timedelta(seconds=span * (len(events) - i) / len(events))
        event["event_time"] = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return events


def event_day(event: dict) -> date:
    return datetime.fromisoformat(event["event_time"].replace("Z", "+00:00")).date()


@dataclass(frozen=True)
class DeliveryConfig:
    """How the stream misbehaves, as shares of the events."""

    duplicate_share: float = 0.0  # delivered twice (same bytes), a little later
    malformed_share: float = 0.0  # extra messages that are not valid events
    late_share: float = 0.0  # held back and delivered after everything else
    seed: int | None = None


@dataclass(frozen=True)
class Message:
    key: bytes
    value: bytes
    kind: str  # "event", "duplicate" or "malformed"


MALFORMED_KINDS = ("broken_json", "wrong_type", "missing_field")


def _malformed(rng: random.Random, event: dict) -> bytes:
    bad = dict(event, event_id=str(uuid.UUID(int=rng.getrandbits(128))))
    kind = rng.choice(MALFORMED_KINDS)
    if kind == "broken_json":
        text = json.dumps(bad)
        return text[: rng.randint(1, len(text) - 2)].encode()
    if kind == "wrong_type":
        field, value = rng.choice((("user_id", "user-abc"), ("price", "twelve"), ("event_time", 1234567)))
        bad[field] = value
    else:
        bad.pop(rng.choice(("event_id", "event_type", "event_time", "user_id")))
    return json.dumps(bad).encode()


def deliveries(events: list[dict], config: DeliveryConfig) -> list[Message]:
    """The messages a producer sends for `events`: with duplicates, late arrivals and malformed ones."""
    rng = random.Random(config.seed)
    out: list[Message] = []
    late: list[Message] = []
    pending_duplicates: list[tuple[int, Message]] = []
    for event in events:
        msg = Message(str(event["user_id"]).encode(), json.dumps(event).encode(), "event")
        (late if rng.random() < config.late_share else out).append(msg)
        if rng.random() < config.duplicate_share:
            pending_duplicates.append(
                (len(out) + rng.randint(1, 50), Message(msg.key, msg.value, "duplicate"))
            )
        if rng.random() < config.malformed_share:
            out.append(Message(msg.key, _malformed(rng, event), "malformed"))
        while pending_duplicates and pending_duplicates[0][0] <= len(out):
            out.append(pending_duplicates.pop(0)[1])
    out.extend(m for _, m in pending_duplicates)
    out.extend(late)
    return out


def produce(
    settings: LakehouseSettings,
    topic: str,
    messages: list[Message],
    rate: float = 0.0,
    progress: bool = True,
    client: str = "producer",
) -> int:
    """Send messages to Kafka (keyed by user), creating the topic if needed; returns the delivered count.

    `rate` limits the messages per second (0: as fast as the broker takes them); `client`: the Kafka
    principal (kafka_access.CLIENTS) sending them, the events' producer by default."""
    from lakehouse.resources.kafka import ensure_topic, make_producer
    from lakehouse.security.kafka_access import client_config

    conf = client_config(settings, client)
    ensure_topic(conf, topic, settings.events_partitions)
    producer = make_producer(conf)
    failures: list[str] = []

    def on_delivery(err, _msg):
        if err is not None:
            failures.append(str(err))

    step = max(1, len(messages) // 10)
    started = time.monotonic()
    for i, msg in enumerate(messages, 1):
        while True:
            try:
                producer.produce(topic, key=msg.key, value=msg.value, on_delivery=on_delivery)
                break
            except BufferError:  # the local queue is full: let the broker catch up
                producer.poll(0.1)
        producer.poll(0)
        if rate > 0:
            ahead = i / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        if progress and i % step == 0:
            elapsed = time.monotonic() - started
            print(
                f"  produced {i}/{len(messages)} messages ({i / max(elapsed, 1e-6):.0f}/s)", file=sys.stderr
            )
    remaining = producer.flush(60)
    if remaining or failures:
        raise RuntimeError(
            f"{len(failures) + remaining} of {len(messages)} messages were not delivered to {topic}: "
            f"{(failures or ['timed out'])[0]}. Is Kafka up (`lakehouse stack status`)?"
        )
    return len(messages)


def encode(events: list[dict]) -> list[Message]:
    """Events as they are, one message each (no duplicates, nothing malformed)."""
    return deliveries(events, DeliveryConfig())


def produce_events(
    settings: LakehouseSettings,
    config: GeneratorConfig,
    topic: str,
    delivery: DeliveryConfig | None = None,
    rate: float = 0.0,
) -> ProduceSummary:
    events = generate_events(config)
    messages = deliveries(events, delivery or DeliveryConfig(seed=config.seed))
    produce(settings, topic, messages, rate=rate)
    days = sorted({event_day(e) for e in events})
    kinds = {k: sum(1 for m in messages if m.kind == k) for k in ("event", "duplicate", "malformed")}
    return ProduceSummary(topic=topic, produced=len(messages), first_day=days[0] if days else None,
                          last_day=days[-1] if days else None, kinds=kinds)  # fmt: skip
