"""PostgreSQL -> Debezium -> Kafka -> raw change logs on the live stack.

A workload of inserts, updates, deletes, primary-key changes and multi-table transactions runs on
the marketplace database; after landing, replaying each change log in LSN order gives back exactly
the rows that are in PostgreSQL (keys and values), deletes included.
"""

import json
from decimal import Decimal

import dagster as dg
import pyarrow.compute as pc
import pytest

from lakehouse.cdc.assets import change_log_checks, change_log_table, raw_cdc_change_logs
from lakehouse.cdc.changes import to_change_log
from lakehouse.cdc.workload import connect, run_workload
from lakehouse.resources import KafkaResource, LakeResource, build_resources
from lakehouse.settings import get_settings

pytestmark = pytest.mark.stack

KEYS = {"customers": ("customer_id",), "merchants": ("merchant_id",), "products": ("product_id",),
        "orders": ("order_id",), "order_items": ("order_id", "line_no"), "payments": ("payment_id",)}  # fmt: skip


def replay(lake: LakeResource, table: str) -> dict[tuple, dict]:
    """The current state a change log describes: the latest complete snapshot (its 'r' records all
    carry the snapshot's LSN), then every later change in LSN order; deletes remove."""
    log = lake.read(
        "raw",
        change_log_table(table),
        columns=["op", "before", "after", "lsn", "offset", "snapshot", "error"],
    )
    assert log.column("error").null_count == log.num_rows, "no unreadable change records expected"
    log = log.filter(pc.is_valid(log.column("op"))).sort_by([("lsn", "ascending"), ("offset", "ascending")])
    rows = log.to_pylist()
    ends = [r["lsn"] for r in rows if r["op"] == "r" and r["snapshot"] in ("last", "last_in_data_collection")]
    start = max(ends, default=0)
    state: dict[tuple, dict] = {}
    for r in rows:
        if r["lsn"] < start or (r["lsn"] == start and r["op"] != "r"):
            continue
        image = json.loads(r["before"] if r["op"] == "d" else r["after"])
        key = tuple(image[k] for k in KEYS[table])
        if r["op"] == "d":
            state.pop(key, None)
        else:
            state[key] = image
    return state


def source_rows(settings, table: str) -> dict[tuple, dict]:
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT * FROM marketplace.{table}")
        names = [d.name for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    return {tuple(r[k] for k in KEYS[table]): r for r in rows}


def assert_silver_mirrors_source(postgres, lake: LakeResource) -> None:
    """Every silver table equals its PostgreSQL table row for row (count and checksum), deletes included."""
    from lakehouse.cdc.apply import current_state
    from lakehouse.cdc.reconcile import fingerprint

    for table in KEYS:
        source = postgres.rows(table)
        mirror = current_state(lake.table("silver", table)).to_pylist()
        columns = sorted(source[0])
        assert fingerprint(mirror, columns) == fingerprint(source, columns), table


def wait_for_capture(kafka: KafkaResource, tables: list[str]) -> None:
    from lakehouse.cdc.pipeline import wait_for_capture as wait

    wait(get_settings())
    assert all(kafka.topic_exists(kafka.cdc_topic(t)) for t in tables)


def test_change_logs_replay_to_the_source(stack):
    resources = build_resources(stack)
    kafka, lake = resources["kafka"], resources["lake"]
    result = run_workload(stack, operations=300, seed_value=21, progress=False)
    assert result.operations["change_order_key"] > 0 and result.operations["delete_order"] > 0
    wait_for_capture(kafka, list(KEYS))

    run = dg.materialize([raw_cdc_change_logs, *change_log_checks], resources=resources)
    assert run.success
    assert all(e.passed for e in run.get_asset_check_evaluations())

    for table in KEYS:
        replayed, source = replay(lake, table), source_rows(stack, table)
        assert set(replayed) == set(source), table
        for key, row in source.items():
            image = replayed[key]
            for column, value in row.items():
                if isinstance(value, Decimal):
                    assert Decimal(image[column]) == value, (table, key, column)
                elif isinstance(value, (int, str)) or value is None:
                    assert image.get(column) == value, (table, key, column)  # absent: added later, NULL


def test_an_unreadable_change_record_is_kept_with_the_reason():
    cols = {"partition": [0, 0, 0], "offset": [0, 1, 2], "timestamp_ms": [0, 0, 0], "key": [b"{}", b"{}", b"{}"],
            "value": [b"{broken", None, json.dumps({"op": "c", "after": {"id": 1},
                                                   "source": {"lsn": 7, "txId": 3, "ts_ms": 0}}).encode()]}  # fmt: skip
    rows = to_change_log("cdc.marketplace.t", cols).to_pylist()
    assert rows[0]["error"].startswith("not JSON") and rows[0]["value"] == b"{broken"
    assert rows[1]["op"] is None and rows[1]["error"] is None  # a tombstone
    assert rows[2]["op"] == "c" and rows[2]["lsn"] == 7 and rows[2]["tx_id"] == 3


def test_silver_converges_to_the_source_across_runs(stack):
    from lakehouse.cdc.assets import (
        current_prices_match_source,
        reconciliation_checks,
        silver_cdc_current_state,
        silver_product_price_history,
    )

    resources = build_resources(stack)
    kafka, lake = resources["kafka"], resources["lake"]
    graph = [raw_cdc_change_logs, silver_cdc_current_state, silver_product_price_history, *change_log_checks,
             *reconciliation_checks, current_prices_match_source]  # fmt: skip
    for round_seed in (31, 32):  # the second round MERGEs into existing silver tables
        run_workload(stack, operations=200, seed_value=round_seed, progress=False)
        if round_seed == 32:
            # A new source column: it reaches the change log and silver without any code change.
            with connect(stack) as conn:
                conn.execute("ALTER TABLE marketplace.customers ADD COLUMN IF NOT EXISTS loyalty_tier text")
                conn.execute(
                    "UPDATE marketplace.customers SET loyalty_tier = 'gold' WHERE customer_id % 7 = 0"
                )
        wait_for_capture(kafka, list(KEYS))
        run = dg.materialize(graph, resources=resources)
        assert run.success
        results = {(e.asset_key.path[-1], e.check_name): e.passed for e in run.get_asset_check_evaluations()}
        assert all(results.values()), {k: v for k, v in results.items() if not v}
        assert {t for t, name in results if name == "reconciles_with_source"} == set(KEYS)
        assert results[("product_price_history", "current_prices_match_source")]
    tiers = lake.read(
        "silver", "customers", columns=["customer_id", "loyalty_tier", "_cdc_deleted"]
    ).to_pylist()
    assert {r["customer_id"] for r in tiers if r["loyalty_tier"] == "gold" and not r["_cdc_deleted"]} == {
        r["customer_id"] for r in source_rows(stack, "customers").values() if r["loyalty_tier"] == "gold"
    }
    history = lake.read("silver", "product_price_history", columns=["product_id", "is_current"])
    assert history.num_rows > sum(history.column("is_current").to_pylist())  # prices changed: closed versions
