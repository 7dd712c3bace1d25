"""PostgreSQL -> Debezium -> Kafka -> raw change logs -> silver on the live stack.

A workload of inserts, updates, deletes, primary-key changes and multi-table transactions runs on
the marketplace database; after landing, replaying each change log in LSN order gives back exactly
the rows that are in PostgreSQL, and silver holds them too: the same keys, deletes included, and
every column of every captured table equal, whatever its type (see RULES).
"""

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from uuid import UUID

import dagster as dg
import pyarrow.compute as pc
import pytest
from conftest import assert_checks_passed

from lakehouse.cdc.assets import change_log_checks, change_log_table, raw_cdc_change_logs
from lakehouse.cdc.changes import to_change_log
from lakehouse.cdc.workload import connect, run_workload
from lakehouse.resources import KafkaResource, LakeResource, build_resources
from lakehouse.settings import get_settings

pytestmark = pytest.mark.stack

KEYS = {"customers": ("customer_id",), "merchants": ("merchant_id",), "products": ("product_id",),
        "orders": ("order_id",), "order_items": ("order_id", "line_no"), "payments": ("payment_id",)}  # fmt: skip

# --- comparing a captured value with PostgreSQL's --------------------------------------------------
#
# How a value of each PostgreSQL type reaches the change log (lakehouse/cdc/connector.json: Debezium's JSON
# converter without schemas, decimal.handling.mode=string, time.precision.mode=isostring)
# and silver (typed from PostgreSQL's catalog: lakehouse/cdc/source_types.py), and the normal form both
# sides are compared in:
#
#   PostgreSQL type        change log (JSON)               silver          compared as
#   int2, int4, int8       number                          int16/32/64     int
#   numeric(p,s)           text, "12.50"                   decimal(p,s)    Decimal (by value: 12.5 == 12.50)
#   float4, float8         number                          float32/64      float
#   bool                   true / false                    bool            bool
#   text, varchar, bpchar  text                            string          str
#   uuid                   text                            string          UUID
#   json, jsonb            JSON text                       string          the parsed JSON
#   timestamptz            ISO-8601 text in UTC, "...Z"    timestamp UTC   aware datetime, to the microsecond
#   timestamp              ISO-8601 text, "...Z"           timestamp_ntz   naive datetime, to the microsecond
#   date                   ISO-8601 text, "2026-11-27Z"    date            date
#   time                   ISO-8601 text, "04:05:11.789Z"  string (ISO)    time, to the microsecond
#   bytea                  base64 text                     binary          bytes
#   arrays (_int4, ...)    JSON array                      list            list
#
# A value in a lossy or unexpected form (a float for a numeric, text for an integer) is a difference. A
# column of a type missing here fails the comparison until its rule is added.

EPOCH = datetime(1970, 1, 1)


def _same(value):
    return value


def _ms_datetime(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _ms_time(value: time) -> time:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _utc_text(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None, f"{value!r} has no offset"
    return parsed.astimezone(UTC)


@dataclass(frozen=True)
class Rule:
    source: Callable  # a PostgreSQL (psycopg) value -> its normal form
    captured: dict[type, Callable]  # the Python type of a change-log / silver value -> its normal form


_INT = Rule(_same, {int: _same})
_TEXT = Rule(_same, {str: _same})
_FLOAT = Rule(float, {float: _same, int: float})
RULES: dict[str, Rule] = {
    "int2": _INT, "int4": _INT, "int8": _INT,
    "numeric": Rule(_same, {str: Decimal, Decimal: _same}),
    "float4": _FLOAT, "float8": _FLOAT,
    "bool": Rule(_same, {bool: _same}),
    "text": _TEXT, "varchar": _TEXT, "bpchar": _TEXT,
    "uuid": Rule(_same, {str: UUID, UUID: _same}),
    "json": Rule(_same, {str: json.loads}), "jsonb": Rule(_same, {str: json.loads}),
    "timestamptz": Rule(lambda v: v.astimezone(UTC), {str: _utc_text, datetime: lambda v: v.astimezone(UTC)}),
    "timestamp": Rule(_same, {str: lambda v: datetime.fromisoformat(v).replace(tzinfo=None), datetime: _same}),
    "date": Rule(_same, {str: lambda v: date.fromisoformat(v.removesuffix("Z")), date: _same}),
    "time": Rule(_same, {str: lambda v: time.fromisoformat(v.removesuffix("Z")), time: _same}),
    "bytea": Rule(bytes, {str: base64.b64decode, bytes: _same}),
    "_int4": Rule(_same, {list: _same}), "_text": Rule(_same, {list: _same}),
}  # fmt: skip


def normal_form(pg_type: str, value, captured: bool, where: str):
    """`value` (from PostgreSQL, or `captured` in a change log or silver) in the normal form of its type."""
    rule = RULES.get(pg_type)
    assert rule, f"{where}: no comparison rule for the PostgreSQL type {pg_type!r}: add one to RULES"
    if value is None:
        return None
    if not captured:
        return rule.source(value)
    convert = rule.captured.get(type(value))  # the exact type: a bool is not an int, a datetime not a date
    assert convert, f"{where}: a {pg_type} value captured as {type(value).__name__} {value!r}"
    return convert(value)


def source_table(conn, schema: str, table: str) -> tuple[dict[str, str], dict[tuple, dict]]:
    """(PostgreSQL type of each column, the rows by primary key) of a source table."""
    types = dict(conn.execute(
        "SELECT column_name, udt_name FROM information_schema.columns WHERE table_schema = %s "
        "AND table_name = %s ORDER BY ordinal_position", (schema, table),
    ).fetchall())  # fmt: skip
    with conn.cursor() as cur:
        cur.execute(f'SELECT * FROM "{schema}"."{table}"')
        names = [d.name for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    assert types and set(types) == set(names), (table, types, names)
    return types, {tuple(r[k] for k in KEYS[table]): r for r in rows}


def differences(table: str, types: dict[str, str], source: dict[tuple, dict], captured: dict[tuple, dict],
                compared: set[str]) -> list[str]:  # fmt: skip
    """Where `captured` (rows by key) differs from PostgreSQL's rows: keys on one side only, and every column
    of every row in its normal form (a column absent from a captured row counts as NULL: change-log images
    older than the column lack it). Adds to `compared` each type that had a non-NULL value compared."""
    found = []
    only_source, only_captured = sorted(set(source) - set(captured)), sorted(set(captured) - set(source))
    if only_source or only_captured:
        found.append(f"{table}: {len(only_source)} keys only in PostgreSQL {only_source[:5]}, "
                     f"{len(only_captured)} only captured {only_captured[:5]}")  # fmt: skip
    for key in sorted(set(source) & set(captured)):
        row, image = source[key], captured[key]
        for column, pg_type in types.items():
            where = f"{table} {key} {column} ({pg_type})"
            want = normal_form(pg_type, row[column], captured=False, where=where)
            got = normal_form(pg_type, image.get(column), captured=True, where=where)
            if got != want:
                found.append(f"{where}: PostgreSQL {row[column]!r}, captured {image.get(column)!r}")
            elif want is not None:
                compared.add(pg_type)
    return found


def assert_no_differences(problems: list[str], types_seen: set[str], compared: set[str]) -> None:
    assert not problems, f"{len(problems)} differences, the first ones:\n" + "\n".join(problems[:25])
    not_compared = types_seen - compared
    assert not not_compared, f"no non-NULL value of the types {sorted(not_compared)} was compared"


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
    with connect(settings) as conn:
        return source_table(conn, settings.cdc_schema, table)[1]


def assert_silver_mirrors_source(postgres, lake: LakeResource) -> None:
    """Every silver table holds exactly its PostgreSQL table's rows: the same keys (deletes included), each
    once, and every source column of each row equal in its normal form (RULES)."""
    from lakehouse.cdc.apply import current_state

    problems: list[str] = []
    types_seen: set[str] = set()
    compared: set[str] = set()
    with postgres.connect() as conn:
        for table in KEYS:
            types, source = source_table(conn, postgres.schema_name, table)
            silver = current_state(lake.table("silver", table))
            missing = sorted(set(types) - set(silver.schema.names))
            assert not missing, f"silver/{table} lacks the source columns {missing}"
            mirror = {tuple(r[k] for k in KEYS[table]): r for r in silver.to_pylist()}
            assert len(mirror) == silver.num_rows, f"silver/{table} holds a key more than once"
            types_seen |= set(types.values())
            problems += differences(table, types, source, mirror, compared)
    assert_no_differences(problems, types_seen, compared)


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
    assert_checks_passed(run, change_log_checks)

    problems: list[str] = []
    types_seen: set[str] = set()
    compared: set[str] = set()
    with connect(stack) as conn:
        for table in KEYS:
            types, source = source_table(conn, stack.cdc_schema, table)
            types_seen |= set(types.values())
            problems += differences(table, types, source, replay(lake, table), compared)
    assert_no_differences(problems, types_seen, compared)


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
        assert_checks_passed(run, [*change_log_checks, *reconciliation_checks, current_prices_match_source])
        results = {(e.asset_key.path[-1], e.check_name): e.passed for e in run.get_asset_check_evaluations()}
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
    assert_silver_mirrors_source(resources["postgres"], lake)  # every column, not only the checksums above
