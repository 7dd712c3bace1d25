"""Kafka I/O: topics, a producer, and reading a topic's partitions between known offsets."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from lakehouse.resources.secret import as_env_var, reveal
from lakehouse.stack.errors import StackError


class KafkaUnavailable(StackError):
    """The broker or the topic is not there: says which, and how to fix it."""


class KafkaForbidden(KafkaUnavailable):
    """The broker answered but refused the principal (authentication, or an ACL): a person must act, waiting
    does not help."""


Conf = dict[str, str]  # librdkafka settings: the brokers and a principal's credentials (client_config)


def _admin(conf: Conf) -> AdminClient:
    return AdminClient(dict(conf))


def _unreachable(conf: Conf, exc: Exception) -> KafkaUnavailable:
    where = conf["bootstrap.servers"]
    if "SASL" in str(exc) or "uthentication" in str(exc):
        return KafkaForbidden(
            f"Kafka at {where} refused principal {conf.get('sasl.username')!r} ({exc})",
            fix="check LAKEHOUSE_KAFKA_*_USER/_PASSWORD (or .lakehouse/secrets.env), LAKEHOUSE_KAFKA_SASL_MECHANISM "
            "and LAKEHOUSE_KAFKA_SECURITY_PROTOCOL; `lakehouse stack up kafka` re-creates the local principals",
        )
    return KafkaUnavailable(
        f"Kafka at {where} did not answer ({exc})",
        fix="start it with `lakehouse stack up`, or point LAKEHOUSE_KAFKA_BOOTSTRAP at your cluster",
    )


def topic_partitions(conf: Conf, topic: str, timeout: float = 10.0) -> list[int]:
    """Partition ids of a topic; a clear error when the broker or the topic is missing."""
    try:
        md = _admin(conf).list_topics(topic=topic, timeout=timeout)
    except KafkaException as exc:
        raise _unreachable(conf, exc) from exc
    meta = md.topics.get(topic)
    if (
        meta is not None
        and meta.error is not None
        and meta.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    ):
        raise KafkaForbidden(
            f"Kafka principal {conf.get('sasl.username')!r} may not read topic {topic!r}",
            fix="grant it (lakehouse/security/kafka_access.py lists each principal's ACLs) and run `lakehouse stack up`",
        )
    if meta is None or meta.error is not None:
        raise KafkaUnavailable(
            f"topic {topic!r} does not exist on {conf['bootstrap.servers']}",
            fix="produce events first (`lakehouse generate events`) or set LAKEHOUSE_EVENTS_TOPIC",
        )
    return sorted(meta.partitions)


def topic_names(conf: Conf) -> set[str]:
    """Every topic the principal may see; a clear error when the broker does not answer."""
    try:
        return set(_admin(conf).list_topics(timeout=10).topics)
    except KafkaException as exc:
        raise _unreachable(conf, exc) from exc


def ensure_topic(conf: Conf, topic: str, partitions: int) -> None:
    if topic in topic_names(conf):
        return
    admin = _admin(conf)
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


def make_producer(conf: Conf) -> Producer:
    return Producer({
        **conf,
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
    """The Kafka cluster (bootstrap servers), the landings' principal and the topics the platform reads."""

    bootstrap_servers: str
    events_topic: str = "clickstream.events"
    cdc_topic_prefix: str = "cdc"
    cdc_schema: str = "marketplace"
    cdc_tables: str = ""  # LAKEHOUSE_CDC_TABLES: which schema each captured table is in
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str = ""
    sasl_password: str = ""  # a dg.EnvVar in the Definitions
    ssl_ca_file: str = ""

    @classmethod
    def from_settings(
        cls, s, client: str = "landing", env_secrets: bool = False, **overrides
    ) -> KafkaResource:
        """The resource of one Kafka principal (kafka_access.CLIENTS); `overrides`: other fields (topics)."""
        user, password = s.kafka_principal(client)
        if env_secrets:
            password = as_env_var(s, f"kafka_{client}_password")
        fields = dict(bootstrap_servers=s.kafka_bootstrap, events_topic=s.events_topic,
                      cdc_topic_prefix=s.cdc_topic_prefix, cdc_schema=s.cdc_schema, cdc_tables=s.cdc_tables,
                      security_protocol=s.kafka_security_protocol, sasl_mechanism=s.kafka_sasl_mechanism,
                      sasl_username=user, sasl_password=password, ssl_ca_file=str(s.kafka_ssl_ca_file or ""))  # fmt: skip
        return cls(**{**fields, **overrides})

    def client_config(self) -> Conf:
        conf = {"bootstrap.servers": self.bootstrap_servers}
        if self.security_protocol != "PLAINTEXT":
            conf |= {"security.protocol": self.security_protocol, "sasl.mechanism": self.sasl_mechanism,
                     "sasl.username": self.sasl_username, "sasl.password": reveal(self.sasl_password)}  # fmt: skip
            if self.ssl_ca_file:
                conf["ssl.ca.location"] = self.ssl_ca_file
        return conf

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
        return topic_partitions(self.client_config(), topic)

    def end_offsets(self, topic: str) -> dict[int, int]:
        """Next offset to be written, per partition (the high watermark)."""
        return {p: high for p, (_low, high) in self.watermarks(topic).items()}

    def topic_id(self, topic: str) -> str | None:
        """Kafka's id of this incarnation of the topic (a topic deleted and recreated gets a new one)."""
        try:
            admin = _admin(self.client_config())  # held until the answer: a dropped client cancels it
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
            **self.client_config(),
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
