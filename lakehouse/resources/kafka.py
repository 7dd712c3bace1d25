"""Kafka I/O: topics, a producer, and reading a topic's partitions between known offsets."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from lakehouse.stack.errors import StackError


class KafkaUnavailable(StackError):
    """The broker or the topic is not there: says which, and how to fix it."""


def _admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def topic_partitions(bootstrap: str, topic: str, timeout: float = 10.0) -> list[int]:
    """Partition ids of a topic; a clear error when the broker or the topic is missing."""
    try:
        md = _admin(bootstrap).list_topics(topic=topic, timeout=timeout)
    except KafkaException as exc:
        raise KafkaUnavailable(
            f"Kafka at {bootstrap} did not answer ({exc})",
            fix="start it with `lakehouse stack up`, or point LAKEHOUSE_KAFKA_BOOTSTRAP at your cluster",
        ) from exc
    meta = md.topics.get(topic)
    if meta is None or meta.error is not None:
        raise KafkaUnavailable(
            f"topic {topic!r} does not exist on {bootstrap}",
            fix="produce events first (`lakehouse generate events`) or set LAKEHOUSE_EVENTS_TOPIC",
        )
    return sorted(meta.partitions)


def topic_names(bootstrap: str) -> set[str]:
    """Every topic on the cluster; a clear error when the broker does not answer."""
    try:
        return set(_admin(bootstrap).list_topics(timeout=10).topics)
    except KafkaException as exc:
        raise KafkaUnavailable(
            f"Kafka at {bootstrap} did not answer ({exc})", fix="start it with `lakehouse stack up`"
        ) from exc


def ensure_topic(bootstrap: str, topic: str, partitions: int) -> None:
    if topic in topic_names(bootstrap):
        return
    admin = _admin(bootstrap)
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


class PartitionReader:
    """Reads assigned partitions from given offsets, in batches of columns (no per-message objects).

    The positions come from the caller (the Delta table's log), never from the consumer group; the
    group's committed offsets are only updated afterwards, as a hint for monitoring tools."""

    COLUMNS = ("partition", "offset", "timestamp_ms", "key", "value")

    def __init__(self, consumer: Consumer, topic: str, start: dict[int, int], end: dict[int, int] | None):
        self.consumer, self.topic, self.end = consumer, topic, end
        self.pending = {p for p in start if end is None or end[p] > start[p]}
        if self.pending:
            consumer.assign([TopicPartition(topic, p, start[p]) for p in sorted(self.pending)])

    @property
    def done(self) -> bool:
        return not self.pending

    def next_batch(self, max_records: int, max_seconds: float) -> dict[str, list]:
        """Up to `max_records` records, or fewer once `max_seconds` have passed (possibly none)."""
        cols: dict[str, list] = {c: [] for c in self.COLUMNS}
        deadline = time.monotonic() + max_seconds
        end = self.end
        while self.pending and len(cols["offset"]) < max_records:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            msgs = self.consumer.consume(num_messages=min(max_records - len(cols["offset"]), 10000),
                                         timeout=min(left, 0.5))  # fmt: skip
            for m in msgs:
                if m.error():
                    if m.error().code() == KafkaError._AUTO_OFFSET_RESET:
                        raise KafkaUnavailable(
                            f"{self.topic} partition {m.partition()}: the next offset to land is no longer in "
                            f"Kafka ({m.error().str()}); records were deleted while this run read them",
                            fix="run the landing again: it stops before reading and names the gap, and "
                            f"`lakehouse ingest acknowledge-gap --topic {self.topic}` records it if the records "
                            "are lost for good",
                        )
                    raise KafkaException(m.error())
                p, o = m.partition(), m.offset()
                if end is not None:
                    if o >= end[p]:
                        continue
                    if o + 1 >= end[p]:
                        self.pending.discard(p)
                cols["partition"].append(p)
                cols["offset"].append(o)
                cols["timestamp_ms"].append(m.timestamp()[1])
                cols["key"].append(m.key())
                cols["value"].append(m.value())
            if not msgs and end is not None:
                # Offsets may have gaps (transaction markers): the position tells where we are.
                for tp in self.consumer.position([TopicPartition(self.topic, p) for p in self.pending]):
                    if tp.offset >= end[tp.partition]:
                        self.pending.discard(tp.partition)
        return cols

    def commit_hint(self, last: dict[int, int]) -> None:
        """Record progress in the consumer group too (monitoring only; never read back)."""
        if last:
            self.consumer.commit(offsets=[TopicPartition(self.topic, p, o + 1) for p, o in last.items()],
                                 asynchronous=True)  # fmt: skip


class KafkaResource(dg.ConfigurableResource):
    """The Kafka cluster (bootstrap servers) and the topics the platform reads."""

    bootstrap_servers: str
    events_topic: str = "clickstream.events"
    cdc_topic_prefix: str = "cdc"
    cdc_schema: str = "marketplace"
    cdc_tables: str = ""  # LAKEHOUSE_CDC_TABLES: which schema each captured table is in

    def cdc_topic(self, name: str) -> str:
        """Debezium's topic for a captured table, by its name in the lake."""
        from lakehouse.settings import cdc_source

        schema, table = cdc_source(name, self.cdc_tables, self.cdc_schema)
        return f"{self.cdc_topic_prefix}.{schema}.{table}"

    def topic_exists(self, topic: str) -> bool:
        try:
            self.partitions(topic)
        except KafkaUnavailable as exc:
            if "does not exist" in exc.problem:
                return False
            raise
        return True

    def partitions(self, topic: str) -> list[int]:
        return topic_partitions(self.bootstrap_servers, topic)

    def end_offsets(self, topic: str) -> dict[int, int]:
        """Next offset to be written, per partition (the high watermark)."""
        return {p: high for p, (_low, high) in self.watermarks(topic).items()}

    def topic_id(self, topic: str) -> str | None:
        """Kafka's id of this incarnation of the topic (a topic deleted and recreated gets a new one)."""
        try:
            admin = _admin(self.bootstrap_servers)  # held until the answer: a dropped client cancels it
            return str(admin.describe_topics(TopicCollection([topic]))[topic].result(10).topic_id)
        except Exception:  # noqa: BLE001 - an older broker without topic ids: the offset checks still apply
            return None

    def watermarks(self, topic: str) -> dict[int, tuple[int, int]]:
        """(first offset Kafka still has, next offset to be written) per partition."""
        consumer = self._consumer()
        try:
            return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                    for p in self.partitions(topic)}  # fmt: skip
        finally:
            consumer.close()

    def _consumer(self) -> Consumer:
        return Consumer({
            "bootstrap.servers": self.bootstrap_servers,
            "group.id": "lakehouse-ingest",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": False,
            # Positions come from the tables; an offset Kafka no longer has is an error, never a silent jump.
            "auto.offset.reset": "error",
            "fetch.max.bytes": 52428800,
            "max.partition.fetch.bytes": 10485760,
            "queued.max.messages.kbytes": 262144,
        })  # fmt: skip

    @contextmanager
    def reader(
        self, topic: str, start: dict[int, int], end: dict[int, int] | None
    ) -> Iterator[PartitionReader]:
        """Read `topic` from `start` up to `end` (exclusive; None: keep following new records)."""
        consumer = self._consumer()
        try:
            yield PartitionReader(consumer, topic, start, end)
        finally:
            consumer.close()
