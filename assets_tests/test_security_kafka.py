"""Kafka authenticates every client and gives each principal only what it does (kafka_access.py).

Each test tries to get in: no credentials, a wrong password, an unknown user, another principal's
password, the controller port, and every principal reading or writing a topic that is not its own.
"""

import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from lakehouse.resources.kafka import ensure_topic
from lakehouse.security.kafka_access import client_config

pytestmark = pytest.mark.stack

DENIED = {"TOPIC_AUTHORIZATION_FAILED", "GROUP_AUTHORIZATION_FAILED", "TRANSACTIONAL_ID_AUTHORIZATION_FAILED"}


def refused(conf: dict) -> set[str]:
    """The errors of a client asking for metadata with these settings; empty when it got in."""
    errors = set()
    admin = AdminClient({**conf, "error_cb": lambda e: errors.add(e.name()), "log_level": 0})
    try:
        admin.list_topics(timeout=8)
    except KafkaException as exc:
        errors.add(exc.args[0].name())
        admin.poll(3)  # the client's errors (an authentication failure) arrive through its callback
        return errors
    return errors if "_AUTHENTICATION" in errors else set()


def produce_outcome(conf: dict, topic: str) -> str:
    """'ok' or the error of producing one record to `topic`."""
    outcome = []
    producer = Producer({**conf, "message.timeout.ms": 10000, "enable.idempotence": False, "log_level": 0})
    producer.produce(topic, b"{}", on_delivery=lambda err, _m: outcome.append(err.name() if err else "ok"))
    producer.flush(15)
    return outcome[0] if outcome else "no answer"


def consume_outcome(conf: dict, topic: str, group: str) -> str:
    """'ok' (a record read or the partition's end reached) or the error of reading `topic` from its start:
    first the topic's metadata (a topic the principal may not describe is hidden), then a fetch."""
    consumer = Consumer({**conf, "group.id": group, "enable.auto.commit": False, "enable.partition.eof": True,
                         "log_level": 0})  # fmt: skip
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        if meta.error is not None:
            return meta.error.name()
        consumer.assign([TopicPartition(topic, 0, 0)])
        for _ in range(20):
            msg = consumer.poll(1)
            if msg is None:
                continue
            err = msg.error()
            if err is None or err.code() == KafkaError._PARTITION_EOF:
                return "ok"
            return err.name()
        return "no answer"
    finally:
        consumer.close()


def join_outcome(conf: dict, topic: str, group: str) -> str:
    """'ok' or the error of joining consumer group `group` on `topic` (what a subscriber does)."""
    consumer = Consumer({**conf, "group.id": group, "enable.auto.commit": False, "log_level": 0})
    try:
        consumer.subscribe([topic])
        for _ in range(30):
            msg = consumer.poll(1)
            if msg is not None and msg.error() is not None:
                return msg.error().name()
            if consumer.assignment():
                return "ok"
        return "no answer"
    finally:
        consumer.close()


# Each principal's own consumer group (ACLs on its group prefix): a probe reads through one of them
GROUPS = {"landing": "lakehouse-probe-security", "flink": "lakehouse-flink-probe", "pinot": "lakehouse-pinot-probe",
          "connect": "lakehouse-connect", "producer": "lakehouse-probe-producer", "trino": "lakehouse-probe-trino"}  # fmt: skip


@pytest.fixture(scope="module")
def topics(stack):
    """A topic in each principal's namespace (the events topic's, the real-time prefix, the CDC prefix in a
    schema nobody captures) and the audit topic itself, each with one record, written by the admin. The
    probes write no record a pipeline would take for its own: `{}` is no event of Trino's either."""
    s = stack
    admin = client_config(s, "admin")
    names = {"events": f"{s.events_topic}.acl-probe", "rt": s.realtime_topic("acl_probe"),
             "audit": s.trino_audit_topic, "cdc": f"{s.cdc_topic_prefix}.acl_probe.t",
             "orders": s.cdc_topic("orders"), "customers": s.cdc_topic("customers")}  # fmt: skip
    producer = Producer(admin)
    for key, topic in names.items():
        ensure_topic(admin, topic, 1)
        if key not in ("orders", "customers"):  # Debezium's own topics: read only, never written here
            producer.produce(topic, b"{}")
    producer.flush(30)
    yield names
    probes = [names[k] for k in ("events", "rt", "cdc")]
    client = AdminClient(admin)  # held until the answers: a dropped client cancels them
    for future in client.delete_topics(probes).values():
        future.result(30)


def test_kafka_refuses_clients_without_or_with_wrong_credentials(stack):
    s = stack
    landing = client_config(s, "landing")
    assert not refused(landing)  # the right password gets in
    assert refused({"bootstrap.servers": s.kafka_bootstrap})  # no SASL at all: no metadata
    for wrong in (
        {**landing, "sasl.password": "wrong"},
        {**landing, "sasl.username": "nobody"},
        {**landing, "sasl.password": client_config(s, "pinot")["sasl.password"]},  # another's
        {**client_config(s, "admin", mechanism="PLAIN"), "sasl.password": "x"},
    ):  # the super user's
        assert "_AUTHENTICATION" in refused(wrong), wrong["sasl.username"]
    # the controller listener: PLAIN with the super user's password only
    assert "_AUTHENTICATION" in refused(
        {**landing, "bootstrap.servers": f"127.0.0.1:{s.kafka_controller_port}"}
    )


@pytest.mark.parametrize(
    "client, may_read, may_not_read",
    [
        ("landing", ["events", "cdc", "audit", "rt"], []),
        ("producer", [], ["events", "cdc", "audit", "rt"]),
        ("flink", ["events"], ["cdc", "audit", "rt"]),
        ("pinot", ["rt", "orders"], ["events", "audit", "cdc", "customers"]),
        ("trino", [], ["events", "cdc", "audit", "rt"]),
        ("connect", [], ["events", "audit", "rt"]),
    ],
)
def test_each_principal_reads_only_its_topics(stack, topics, client, may_read, may_not_read):
    conf, group = client_config(stack, client), GROUPS[client]
    for name in may_read:
        assert consume_outcome(conf, topics[name], group) == "ok", (client, name)
    for name in may_not_read:
        assert consume_outcome(conf, topics[name], group) in DENIED, (client, name)


@pytest.mark.parametrize(
    "client, may_write, may_not_write",
    [
        ("landing", [], ["events", "cdc", "audit", "rt"]),
        ("producer", ["events"], ["cdc", "audit", "rt"]),
        ("flink", ["rt"], ["events", "cdc", "audit"]),
        ("pinot", [], ["events", "cdc", "audit", "rt", "orders"]),
        ("trino", ["audit"], ["events", "cdc", "rt"]),
        ("connect", ["cdc"], ["events", "audit", "rt"]),
    ],
)
def test_each_principal_writes_only_its_topics(stack, topics, client, may_write, may_not_write):
    conf = client_config(stack, client)
    for name in may_write:
        assert produce_outcome(conf, topics[name]) == "ok", (client, name)
    for name in may_not_write:
        assert produce_outcome(conf, topics[name]) in DENIED, (client, name)


def test_only_the_admin_creates_topics_and_joins_other_groups(stack, topics):
    s = stack
    name = f"probe.{uuid.uuid4().hex[:8]}"
    for client in ("landing", "pinot", "flink", "trino"):
        admin = AdminClient(client_config(s, client))
        with pytest.raises(KafkaException) as denied:
            admin.create_topics([NewTopic(name, 1, 1)])[name].result(15)
        assert denied.value.args[0].name() == "TOPIC_AUTHORIZATION_FAILED", client
    # a landing cannot join Kafka Connect's or Flink's consumer group (and move their offsets)
    landing = client_config(s, "landing")
    assert join_outcome(landing, topics["events"], "lakehouse-connect") in DENIED
    assert join_outcome(landing, topics["events"], "lakehouse-flink-main-product_ctr") in DENIED
    assert join_outcome(landing, topics["events"], "lakehouse-probe-join") == "ok"  # its own
    # the super user may
    admin = AdminClient(client_config(s, "admin"))
    admin.create_topics([NewTopic(name, 1, 1)])[name].result(15)
    admin.delete_topics([name])[name].result(15)
