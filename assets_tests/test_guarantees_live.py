"""The guarantees on the live stack, attacked: a poison message, a keyless change record, a gap in Kafka,
and several landers on one topic at once (real Kafka, the real object store, real processes)."""

import json
import signal
import subprocess
import time

import pyarrow.compute as pc
import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from lakehouse.cdc.apply import current_state
from lakehouse.cdc.pipeline import DEAD_LETTERS_TABLE, apply_table, land_changes
from lakehouse.executables import env_executable
from lakehouse.ingest.assets import RAW_APP_ID
from lakehouse.ingest.landing import OffsetGap, land_topic, raw_target, recorded_gaps
from lakehouse.resources import KafkaResource, LakeResource
from lakehouse.resources.kafka import ensure_topic, make_producer
from lakehouse.security import kafka_access
from lakehouse.security.kafka_access import client_config

pytestmark = pytest.mark.stack


@pytest.fixture
def ns(namespace, request):
    """The module's namespace narrowed to this test: its own topic and its own tables."""
    name = request.node.name.split("_")[1][:6] + str(abs(hash(request.node.name)) % 1000)
    prefix = f"{namespace.settings.schema_prefix}{name}_"
    topic = f"{prefix.rstrip('_')}.clickstream.events"
    env = {**namespace.env, "LAKEHOUSE_SCHEMA_PREFIX": prefix, "LAKEHOUSE_EVENTS_TOPIC": topic}
    settings = namespace.settings.model_copy(update={"schema_prefix": prefix, "events_topic": topic})
    kafka_access.install(settings, log=lambda *_: None)  # its topics for the principals, as `stack up` does
    return type(namespace)(settings=settings, env=env)


def valid_event(i: int) -> dict:
    return {"event_id": f"live-{i}", "event_type": "click", "event_time": "2026-04-01T10:00:00Z", "user_id": i,
            "quantity": 1, "price": 2.5}  # fmt: skip


def merchant_change(op: str, lsn: int, mid: int, name: str) -> bytes:
    """A Debezium change record (JSON, schemas disabled) of a merchants row."""
    image = {"merchant_id": mid, "name": name}
    return json.dumps({"op": op, "before": image if op == "d" else None, "after": None if op == "d" else image,
                       "source": {"lsn": lsn, "ts_ms": 1_700_000_000_000, "table": "merchants"}}).encode()  # fmt: skip


def produce(conf: dict, topic: str, values: list, keys: list | None = None, partition: int | None = None):
    producer = make_producer(conf)
    for i, value in enumerate(values):
        kwargs = {"partition": partition} if partition is not None else {}
        producer.produce(topic, key=(keys[i] if keys else str(i).encode()), value=value, **kwargs)
    producer.flush(30)


def lakehouse(env: dict, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([env_executable("lakehouse"), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def test_one_poison_event_does_not_stop_the_valid_ones_after_it(ns):
    s = ns.settings
    ensure_topic(client_config(s, "admin"), s.events_topic, 1)
    poison = json.dumps({**valid_event(0), "quantity": 2**40}).encode()  # well-formed JSON, beyond int32
    produce(
        client_config(s, "admin"),
        s.events_topic,
        [poison] + [json.dumps(valid_event(i)).encode() for i in range(1, 51)],
    )
    run = lakehouse(ns.env, "ingest", "events", "--bronze")  # one run, as a user would
    assert run.returncode == 0, run.stderr[-3000:]
    lake = LakeResource.from_settings(s)
    bronze = lake.read("bronze", "clickstream_events", columns=["event_id"]).column("event_id").to_pylist()
    assert sorted(bronze) == sorted(f"live-{i}" for i in range(1, 51))
    dead = lake.read("bronze", "clickstream_dead_letters").to_pylist()
    assert [(d["offset"], d["value"]) for d in dead] == [(0, poison)]
    assert "quantity is out of range for int32" in dead[0]["error"]


def test_a_keyless_change_record_does_not_stop_the_cdc_apply(ns):
    s = ns.settings
    prefix = s.schema_prefix.rstrip("_")
    kafka = KafkaResource.from_settings(s, "admin", cdc_topic_prefix=prefix, cdc_schema=s.cdc_schema)
    lake = LakeResource.from_settings(s)
    topic = kafka.cdc_topic("merchants")
    ensure_topic(client_config(s, "admin"), topic, 1)

    values = [merchant_change("c", 10, 1, "keyless"), merchant_change("c", 20, 2, "after"),
              merchant_change("c", 30, 3, "after too")]  # fmt: skip
    keys = [None, b'{"merchant_id": 2}', b'{"merchant_id": 3}']
    produce(client_config(s, "admin"), topic, values, keys)
    assert land_changes(kafka, lake, "merchants", log=lambda _: None).rows == 3
    result = apply_table(kafka, lake, "merchants", log=lambda _: None)  # one run
    assert result.dead_letters == 1
    silver = current_state(lake.table("silver", "merchants")).to_pylist()
    assert sorted((r["merchant_id"], r["name"]) for r in silver) == [(2, "after"), (3, "after too")]
    dead = lake.read("silver", DEAD_LETTERS_TABLE).to_pylist()
    assert [d["offset"] for d in dead] == [0] and "no primary key" in dead[0]["error"]


def test_a_gap_in_kafka_stops_the_landing_until_acknowledged(ns):
    """Retention deletes records before they were landed: the landing names the gap and the command; the
    acknowledgement records it in the table's history; a recreated topic is refused, never re-landed."""
    s = ns.settings
    ensure_topic(client_config(s, "admin"), s.events_topic, 1)
    kafka = KafkaResource.from_settings(s, "admin", events_topic=s.events_topic)
    lake = LakeResource.from_settings(s)
    uri = lake.table_uri("raw", "clickstream_events")
    produce(client_config(s, "admin"), s.events_topic, [b"a"] * 10, partition=0)
    assert (
        land_topic(kafka, raw_target(uri, lake.storage_options, s.events_topic, RAW_APP_ID), log=print).rows
        == 10
    )
    produce(client_config(s, "admin"), s.events_topic, [b"b"] * 20, partition=0)
    admin = AdminClient(client_config(s, "admin"))
    admin.delete_records([TopicPartition(s.events_topic, 0, 25)])[
        TopicPartition(s.events_topic, 0, 25)
    ].result(30)

    run = lakehouse(ns.env, "ingest", "events")
    assert run.returncode != 0 and "Traceback" not in run.stderr, run.stderr[-3000:]
    assert "15 records were deleted before they were landed" in run.stderr
    assert f"lakehouse ingest acknowledge-gap --topic {s.events_topic}" in run.stderr
    assert (
        lake.read("raw", "clickstream_events", columns=["offset"]).num_rows == 10
    )  # nothing skipped silently

    ack = lakehouse(ns.env, "ingest", "acknowledge-gap")
    assert ack.returncode == 0, ack.stderr[-3000:]
    assert "acknowledged 15 lost records" in ack.stdout
    assert recorded_gaps(lake.table("raw", "clickstream_events")) == [
        {"partition": 0, "from_offset": 10, "to_offset": 24, "records": 15}
    ]
    assert lakehouse(ns.env, "ingest", "events").returncode == 0
    offsets = lake.read("raw", "clickstream_events", columns=["offset"]).column("offset").to_pylist()
    assert sorted(offsets) == list(range(10)) + list(range(25, 30))

    # The topic deleted and recreated with fewer records: refused, with the way out.
    admin.delete_topics([s.events_topic])[s.events_topic].result(30)
    deadline = time.monotonic() + 60
    while s.events_topic in admin.list_topics(timeout=10).topics and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2)
    ensure_topic(client_config(s, "admin"), s.events_topic, 1)
    produce(client_config(s, "admin"), s.events_topic, [b"new"] * 5, partition=0)
    with pytest.raises(OffsetGap, match="deleted and recreated"):
        land_topic(kafka, raw_target(uri, lake.storage_options, s.events_topic, RAW_APP_ID), log=print)
    # Even once the new topic has more records than the table's marks (offsets alone cannot tell): its id can.
    produce(client_config(s, "admin"), s.events_topic, [b"newer"] * 40, partition=0)
    with pytest.raises(OffsetGap, match="topic id"):
        land_topic(kafka, raw_target(uri, lake.storage_options, s.events_topic, RAW_APP_ID), log=print)
    raw = lake.read("raw", "clickstream_events", columns=["partition", "offset"])
    assert raw.num_rows == 15


def test_concurrent_landers_with_overlapping_partitions_never_duplicate(ns):
    """Four landers on one 4-partition topic, holding overlapping and disjoint partition subsets, on the real
    object store, while records arrive; one is SIGKILLed. Then one clean run: every record exactly once."""
    s = ns.settings
    ensure_topic(client_config(s, "admin"), s.events_topic, 4)
    total = 6000
    produce(
        client_config(s, "admin"),
        s.events_topic,
        [json.dumps(valid_event(i)).encode() for i in range(total // 2)],
    )
    subsets = ["0,1", "1,2", "2,3", "3"]
    procs = [subprocess.Popen([env_executable("lakehouse"), "ingest", "events", "--follow", "--idle-exit", "5",
                               "--batch-size", "200", "--batch-seconds", "0.5", "--partitions", sub],
                              env=ns.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              start_new_session=True) for sub in subsets]  # fmt: skip
    produce(
        client_config(s, "admin"),
        s.events_topic,
        [json.dumps(valid_event(i)).encode() for i in range(total // 2, total)],
    )
    time.sleep(3)
    procs[1].send_signal(signal.SIGKILL)
    outcomes = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        outcomes.append((p.returncode, err[-3000:]))
    stopped_cleanly = [err for code, err in outcomes if code not in (0, -signal.SIGKILL)]
    for err in stopped_cleanly:
        assert "another writer" in err and "Traceback" not in err, err

    final = lakehouse(ns.env, "ingest", "events")
    assert final.returncode == 0, final.stderr[-3000:]
    lake = LakeResource.from_settings(s)
    raw = lake.read("raw", "clickstream_events", columns=["partition", "offset"])
    keys = pc.add(pc.multiply(raw.column("partition").cast("int64"), 10**12), raw.column("offset"))
    assert raw.num_rows == total == pc.count_distinct(keys).as_py()
    target = raw_target(
        lake.table_uri("raw", "clickstream_events"), lake.storage_options, s.events_topic, RAW_APP_ID
    )
    assert target.open().next_offsets([0, 1, 2, 3]) == kafka_ends(s)
    print(
        f"\nconcurrent landers: exit codes {[c for c, _ in outcomes]}, {len(stopped_cleanly)} stopped cleanly"
    )


def kafka_ends(s) -> dict[int, int]:
    return KafkaResource.from_settings(s, "admin", events_topic=s.events_topic).end_offsets(s.events_topic)


@pytest.mark.parametrize(
    "point", ["lakehouse-cdc-dead-letters.after_commit", "lakehouse-silver-cdc.before_commit"]
)
def test_the_cdc_apply_killed_with_uncommitted_work_converges(ns, point, tmp_path):
    """`lakehouse cdc apply` is SIGKILLed by a fault hook after its dead-letter commit and before its MERGE
    (or just before the MERGE's commit): the hook fired, silver has nothing yet, and the next run applies
    every change once and keeps each dead letter once."""
    from lakehouse.faults import FAULT_ENV, FAULT_MARKER_ENV, fired

    s = ns.settings
    prefix = s.schema_prefix.rstrip("_")
    env = {**ns.env, "LAKEHOUSE_CDC_TOPIC_PREFIX": prefix, "LAKEHOUSE_CDC_TABLES": "merchants"}
    kafka_access.install(s.model_copy(update={"cdc_topic_prefix": prefix}), log=lambda *_: None)
    kafka = KafkaResource.from_settings(s, "admin", cdc_topic_prefix=prefix, cdc_schema=s.cdc_schema)
    topic = kafka.cdc_topic("merchants")
    ensure_topic(client_config(s, "admin"), topic, 1)

    values = [merchant_change("c", 10, 1, "a"), b"{broken", merchant_change("c", 20, 2, "b"),
              merchant_change("u", 30, 1, "a2"), merchant_change("d", 40, 2, "b")]  # fmt: skip
    keys = [b'{"merchant_id": 1}', b'{"merchant_id": 1}', b'{"merchant_id": 2}', b'{"merchant_id": 1}',
            b'{"merchant_id": 2}']  # fmt: skip
    produce(client_config(s, "admin"), topic, values, keys)
    marker = tmp_path / "fired"
    crashed = lakehouse({**env, FAULT_ENV: point, FAULT_MARKER_ENV: str(marker)}, "cdc", "apply")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-3000:]
    assert fired(marker) == [point]
    lake = LakeResource.from_settings(s)
    silver = lake.table("silver", "merchants")  # at most created empty: killed before its first data commit
    assert silver is None or silver.to_pyarrow_table().num_rows == 0
    assert lake.read("silver", DEAD_LETTERS_TABLE).num_rows == 1  # committed first, in both windows

    again = lakehouse(env, "cdc", "apply")
    assert again.returncode == 0, again.stderr[-3000:]
    silver = current_state(lake.table("silver", "merchants")).to_pylist()
    assert [(r["merchant_id"], r["name"]) for r in silver] == [(1, "a2")]
    dead = lake.read("silver", DEAD_LETTERS_TABLE).to_pylist()
    assert [(d["offset"], d["value"]) for d in dead] == [(1, b"{broken")]
