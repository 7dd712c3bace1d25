"""Bad input on the CDC path: nothing is lost, and each case says what happened.

- Records that cannot be applied (not JSON, not a Debezium change, a change of another table than
  its topic's) are dead letters with the reason, exactly once; the valid records around them apply.
- A topic of a table that LAKEHOUSE_CDC_TABLES does not list is reported by the capture check.
- A dropped replication slot makes Debezium snapshot again (snapshot.mode=when_needed), and
  PostgreSQL restarted under the connector is retried: afterwards silver equals PostgreSQL.
"""

import json
import time

import psycopg
import pytest
from conftest import wait_until
from test_cdc_change_log import KEYS, assert_silver_mirrors_source, wait_for_capture

from lakehouse.cdc.capture import capture_report, unconfigured_tables
from lakehouse.cdc.connector import CONNECTOR_NAME, SLOT_NAME, connector_status, rest
from lakehouse.cdc.pipeline import DEAD_LETTERS_TABLE, apply_table, land_changes, run_once
from lakehouse.cdc.workload import connect, run_workload
from lakehouse.resources import KafkaResource, LakeResource, build_resources
from lakehouse.resources.kafka import ensure_topic, make_producer
from lakehouse.security import kafka_access
from lakehouse.security.kafka_access import client_config
from lakehouse.stack import manager

pytestmark = pytest.mark.stack


def change(op: str, lsn: int, order_id: int, status: str, table: str = "orders") -> bytes:
    image = {"order_id": order_id, "status": status}
    return json.dumps({"op": op, "before": image if op == "d" else None, "after": None if op == "d" else image,
                       "source": {"lsn": lsn, "txId": lsn, "ts_ms": 1_700_000_000_000, "table": table,
                                  "snapshot": "false"}}).encode()  # fmt: skip


def test_unusable_change_records_become_dead_letters_exactly_once(namespace):
    s = namespace.settings
    prefix = s.schema_prefix.rstrip("_")
    kafka = KafkaResource.from_settings(s, "admin", cdc_topic_prefix=prefix, cdc_schema=s.cdc_schema)
    # the landings' grants on this test's change topics, as `stack up` makes them for a CDC prefix
    kafka_access.install(s.model_copy(update={"cdc_topic_prefix": prefix}), log=lambda *_: None)
    lake = LakeResource.from_settings(s)
    orders, coupons = kafka.cdc_topic("orders"), kafka.cdc_topic("coupons")
    for topic in (orders, coupons):
        ensure_topic(client_config(s, "admin"), topic, 1)
    key = json.dumps({"order_id": 1}).encode()
    producer = make_producer(client_config(s, "admin"))
    for value in (change("c", 10, 1, "new"), b"{not json", change("u", 20, 1, "paid", table="coupons"),
                  json.dumps({"op": "x"}).encode(), change("u", 30, 1, "shipped")):  # fmt: skip
        producer.produce(orders, key=key, value=value)
    producer.produce(coupons, key=b'{"coupon_id": 1}', value=change("c", 40, 1, "x", table="coupons"))
    producer.flush(30)

    assert land_changes(kafka, lake, "orders", log=lambda _: None).rows == 5
    result = apply_table(kafka, lake, "orders", log=lambda _: None)
    assert result.dead_letters == 3
    silver = lake.read("silver", "orders").to_pylist()
    assert [(r["order_id"], r["status"], r["_cdc_lsn"]) for r in silver] == [(1, "shipped", 30)]
    dead = lake.read("silver", DEAD_LETTERS_TABLE).sort_by("offset").to_pylist()
    assert [d["offset"] for d in dead] == [1, 2, 3]
    assert dead[0]["error"].startswith("not JSON") and dead[0]["value"] == b"{not json"
    assert dead[1]["error"] == "a change of table 'coupons' on the topic of table 'orders'"
    assert dead[2]["error"].startswith("not a Debezium change record")
    assert lake.read("raw", "cdc_orders").num_rows == 5  # the change log keeps every record

    # A rerun adds nothing; a new bad record is dead-lettered once.
    assert apply_table(kafka, lake, "orders", log=lambda _: None).dead_letters == 0
    producer.produce(orders, key=key, value=b"\xff\xfe")
    producer.flush(30)
    land_changes(kafka, lake, "orders", log=lambda _: None)
    assert apply_table(kafka, lake, "orders", log=lambda _: None).dead_letters == 1
    assert apply_table(kafka, lake, "orders", log=lambda _: None).dead_letters == 0
    assert lake.read("silver", DEAD_LETTERS_TABLE).num_rows == 4

    # The unlisted table is reported with the fix, and its records stay in Kafka.
    assert unconfigured_tables(client_config(s, "admin"), prefix, s.cdc_schema, s.cdc_table_list) == [
        "coupons"
    ]
    problems = capture_report(s, topic_prefix=prefix).problems
    assert any("coupons" in p and "LAKEHOUSE_CDC_TABLES" in p for p in problems), problems


def slot_exists(settings) -> bool:
    with connect(settings) as conn:
        return conn.execute(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (SLOT_NAME,)
        ).fetchone()


def snapshot_records(lake: LakeResource) -> int:
    log = lake.read("raw", "cdc_products", columns=["op"])
    return log.column("op").to_pylist().count("r")


@pytest.mark.restarts_stack
def test_a_dropped_slot_and_a_postgres_restart_lose_nothing(stack):
    resources = build_resources(stack)
    kafka, lake, postgres = resources["kafka"], resources["lake"], resources["postgres"]
    base = f"http://127.0.0.1:{stack.connect_port}/connectors/{CONNECTOR_NAME}"
    run_workload(stack, operations=60, seed_value=501, progress=False)
    wait_for_capture(kafka, list(KEYS))
    run_once(stack, log=lambda _: None)
    snapshots_before = snapshot_records(lake)

    # The slot is dropped while the connector is stopped (a DBA's cleanup, a failover), and changes go on.
    rest(stack).put(f"{base}/stop", timeout=30).raise_for_status()
    wait_until(
        lambda: connector_status(stack).get("connector", {}).get("state") == "STOPPED", 60, "connector stop"
    )
    wait_until(lambda: not slot_exists(stack) or _drop_slot(stack), 30, "slot dropped")
    run_workload(stack, operations=80, seed_value=502, progress=False)  # deletes and key changes included
    rest(stack).put(f"{base}/resume", timeout=30).raise_for_status()
    wait_until(lambda: slot_exists(stack), 120, "Debezium to create the slot again")

    # PostgreSQL restarted under the running connector, between two workloads.
    manager.down(stack, ["postgres"], log=lambda _: None)
    time.sleep(3)
    manager.up(stack, ["postgres"], log=lambda _: None)
    run_workload(stack, operations=80, seed_value=503, progress=False)
    wait_until(lambda: capture_report(stack).healthy, 120, "the capture to be healthy again")
    wait_for_capture(kafka, list(KEYS))
    run_once(stack, log=lambda _: None)

    assert snapshot_records(lake) > snapshots_before, "the dropped slot should have led to a new snapshot"
    assert_silver_mirrors_source(postgres, lake)


def _drop_slot(settings) -> bool:
    """Drop the slot once its reader has let go of it (the walsender exits shortly after the stop)."""
    try:
        with connect(settings) as conn:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (SLOT_NAME,))
        return True
    except psycopg.errors.ObjectInUse:
        return False
