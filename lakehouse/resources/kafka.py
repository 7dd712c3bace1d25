"""Kafka I/O: topics, a producer, and reading a topic's partitions between known offsets."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


class KafkaUnavailable(RuntimeError):
    pass


def _admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def topic_partitions(bootstrap: str, topic: str, timeout: float = 10.0) -> list[int]:
    """Partition ids of a topic; a clear error when the broker or the topic is missing."""
    try:
        md = _admin(bootstrap).list_topics(topic=topic, timeout=timeout)
    except KafkaException as exc:
        raise KafkaUnavailable(
            f"Kafka at {bootstrap} did not answer ({exc}). Start it with `lakehouse stack up` "
            "or set LAKEHOUSE_KAFKA_BOOTSTRAP."
        ) from exc
    meta = md.topics.get(topic)
    if meta is None or meta.error is not None:
        raise KafkaUnavailable(
            f"topic {topic!r} does not exist on {bootstrap}. Produce events first "
            "(`lakehouse generate events`) or set LAKEHOUSE_EVENTS_TOPIC."
        )
    return sorted(meta.partitions)


def ensure_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = _admin(bootstrap)
    try:
        existing = admin.list_topics(timeout=10).topics
    except KafkaException as exc:
        raise KafkaUnavailable(f"Kafka at {bootstrap} did not answer ({exc}); is the stack up?") from exc
    if topic in existing:
        return
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    try:
        futures[topic].result(30)
    except KafkaException as exc:
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise
    # Metadata propagates asynchronously: wait until the topic is visible.
    deadline = time.monotonic() + 30
    while topic not in admin.list_topics(timeout=10).topics and time.monotonic() < deadline:
        time.sleep(0.2)


def make_producer(bootstrap: str) -> Producer:
    return Producer({
        "bootstrap.servers": bootstrap,
        "linger.ms": 20,
        "batch.num.messages": 10000,
        "compression.type": "lz4",
        "enable.idempotence": True,
    })  # fmt: skip


@dataclass(frozen=True)
class KafkaRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None


class KafkaResource(dg.ConfigurableResource):
    """The Kafka cluster (bootstrap servers); owns every consumer the assets use."""

    bootstrap_servers: str
    events_topic: str = "clickstream.events"

    def partitions(self, topic: str) -> list[int]:
        return topic_partitions(self.bootstrap_servers, topic)

    def end_offsets(self, topic: str) -> dict[int, int]:
        """Next offset to be written, per partition (the high watermark)."""
        consumer = self._consumer()
        try:
            return {
                p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in self.partitions(topic)
            }
        finally:
            consumer.close()

    def _consumer(self) -> Consumer:
        return Consumer({
            "bootstrap.servers": self.bootstrap_servers,
            "group.id": "lakehouse-ingest",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "auto.offset.reset": "earliest",
            "fetch.max.bytes": 52428800,
            "queued.max.messages.kbytes": 262144,
        })  # fmt: skip

    def read_batches(
        self,
        topic: str,
        start: dict[int, int],
        end: dict[int, int],
        batch_size: int,
        idle_timeout: float = 30.0,
    ) -> Iterator[list[KafkaRecord]]:
        """Records of each partition from `start` (inclusive) up to `end` (exclusive), in batches."""
        todo = {p: (start.get(p, 0), end[p]) for p in end if end[p] > start.get(p, 0)}
        if not todo:
            return
        consumer = self._consumer()
        try:
            consumer.assign([TopicPartition(topic, p, first) for p, (first, _) in todo.items()])
            pending = set(todo)
            batch: list[KafkaRecord] = []
            last_progress = time.monotonic()
            while pending:
                msgs = consumer.consume(num_messages=min(batch_size, 10000), timeout=1.0)
                for m in msgs:
                    if m.error():
                        raise KafkaException(m.error())
                    p = m.partition()
                    if m.offset() >= end[p]:
                        continue
                    batch.append(KafkaRecord(m.topic(), p, m.offset(), m.timestamp()[1], m.key(), m.value()))
                    if m.offset() + 1 >= end[p]:
                        pending.discard(p)
                if msgs:
                    last_progress = time.monotonic()
                else:
                    # Offsets may have gaps (transaction markers): the position tells where we are.
                    for tp in consumer.position([TopicPartition(topic, p) for p in pending]):
                        if tp.offset >= end[tp.partition]:
                            pending.discard(tp.partition)
                    if pending and time.monotonic() - last_progress > idle_timeout:
                        raise KafkaUnavailable(
                            f"no data from {topic} partitions {sorted(pending)} for {idle_timeout:.0f}s "
                            "although more records were expected; is the broker up?"
                        )
                if len(batch) >= batch_size:
                    yield batch
                    batch = []
            if batch:
                yield batch
        finally:
            consumer.close()
