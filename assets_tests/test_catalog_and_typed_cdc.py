"""The shared catalog and the faithful CDC mirror, on the live stack.

- A table added to LAKEHOUSE_CDC_TABLES while the workload runs (configuration only: `lakehouse stack up`
  re-applies the connector, here `ensure_connector`) is snapshotted alone; its rows reach silver typed,
  one column of each PostgreSQL type; updates, deletes, a widening type change (int -> bigint) follow; a
  change that is not a widening (text -> integer) becomes dead letters with the reason, never a stall.
  Silver equals PostgreSQL value for value, read with delta-rs and through Trino. Removed from the list,
  the table is no longer captured and its silver table stays, marked so.
- The capture wait ends while captured tables are quiet, and the replication slot does not hold WAL back
  while only uncaptured tables change.
- Spark and Trino see the same tables through the Hive Metastore; it keeps them across a restart; while it
  is down, a Trino call fails with an error naming it.
"""

import os
import random
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from conftest import wait_until
from test_cdc_change_log import Rule, differences

from lakehouse.cdc.apply import SILVER_CDC_APP, current_state
from lakehouse.cdc.connector import SLOT_NAME, ensure_connector, rest
from lakehouse.cdc.pipeline import DEAD_LETTERS_TABLE, apply_table, land_changes, wait_for_capture
from lakehouse.cdc.workload import connect, run_workload
from lakehouse.ingest.exactly_once import MarkedTable
from lakehouse.resources import build_resources
from lakehouse.security.kafka_access import client_config
from lakehouse.settings import LakehouseSettings, get_settings
from lakehouse.stack.errors import StackError

pytestmark = pytest.mark.stack

ROWS = 300
MOODS = ("sad", "ok", "happy")
TYPES_DDL = """
    id bigint PRIMARY KEY, small smallint, num integer, amount numeric(12,2), ratio real, score double precision,
    flag boolean, label varchar(20), note text, uid uuid, doc jsonb, plain_doc json, blob bytea, born date,
    seen_at timestamptz, local_at timestamp, at_time time, tags text[], counts integer[], mood {schema}.probe_mood
"""


def probe_row(rng: random.Random, i: int) -> dict:
    def maybe(value):
        return None if rng.random() < 0.1 else value

    return {
        "id": i, "small": maybe(rng.randint(-32768, 32767)), "num": maybe(rng.randint(-(2**31), 2**31 - 1)),
        "amount": maybe(Decimal(rng.randint(-10**11, 10**11)) / 100), "ratio": maybe(rng.choice([0.5, 1.25, -3.0])),
        "score": maybe(rng.uniform(-1e6, 1e6)), "flag": maybe(rng.random() < 0.5),
        "label": maybe(f"l{rng.randint(0, 10**6)}"), "note": maybe("naïve ☃ text " * rng.randint(0, 3)),
        "uid": maybe(uuid.UUID(int=rng.getrandbits(128))), "doc": maybe({"k": rng.randint(0, 9), "n": [1, None]}),
        "plain_doc": maybe([rng.random() < 0.5, "x"]), "blob": maybe(bytes(rng.getrandbits(8) for _ in range(8))),
        "born": maybe(date(1900, 1, 1) + timedelta(days=rng.randint(0, 70000))),
        "seen_at": maybe(datetime(2020, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.getrandbits(45))),
        "local_at": maybe(datetime(2020, 1, 1) + timedelta(microseconds=rng.getrandbits(45))),
        "at_time": maybe(dtime(rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59), rng.randint(0, 999999))),
        "tags": maybe([f"t{rng.randint(0, 9)}" for _ in range(rng.randint(0, 3))]),
        "counts": maybe([rng.randint(-5, 5) for _ in range(rng.randint(0, 3))]), "mood": maybe(rng.choice(MOODS)),
    }  # fmt: skip


def insert(conn, schema: str, table: str, rows: list[dict]) -> None:
    from psycopg.types.json import Json

    names = list(rows[0])
    values = [
        [Json(r[n]) if n in ("doc", "plain_doc") and r[n] is not None else r[n] for n in names] for r in rows
    ]
    with conn.cursor() as cur:
        cur.executemany(f'INSERT INTO "{schema}"."{table}" ({", ".join(names)}) VALUES '
                        f'({", ".join(["%s"] * len(names))})', values)  # fmt: skip


PROBE_RULES = {"probe_mood": Rule(lambda v: v, {str: lambda v: v})}  # the enum of the probe table


def source_and_silver(s: LakehouseSettings, lake, table: str) -> tuple[dict, dict, dict]:
    """(PostgreSQL types, source rows by id, silver rows by id)."""
    with connect(s) as conn:
        types = dict(conn.execute("SELECT column_name, udt_name FROM information_schema.columns WHERE "
                                  "table_schema = %s AND table_name = %s", (s.cdc_schema, table)).fetchall())  # fmt: skip
        with conn.cursor() as cur:
            cur.execute(f'SELECT * FROM "{s.cdc_schema}"."{table}"')
            names = [d.name for d in cur.description]
            source = {r[0]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}
    silver = lake.table("silver", table)
    mirror = {r["id"]: r for r in current_state(silver).to_pylist()} if silver is not None else {}
    return types, source, mirror


def compare(s, lake, table: str) -> list[str]:
    import test_cdc_change_log

    types, source, mirror = source_and_silver(s, lake, table)
    saved = dict(test_cdc_change_log.RULES)
    test_cdc_change_log.RULES.update(PROBE_RULES)
    try:
        return differences(table, types, {(k,): v for k, v in source.items()}, {(k,): v for k, v in mirror.items()},
                           set())  # fmt: skip
    finally:
        test_cdc_change_log.RULES.clear()
        test_cdc_change_log.RULES.update(saved)


def to_millis(value: datetime) -> datetime:
    """A time rounded to the millisecond, as Trino reads a Delta `timestamp` (half up)."""
    value += timedelta(microseconds=500)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def sync(kafka, lake, postgres, table: str) -> None:
    land_changes(kafka, lake, table, log=lambda _: None)
    apply_table(kafka, lake, table, log=lambda _: None, postgres=postgres)


def snapshot_reads(conf: dict, topic: str, start: dict[int, int]) -> int:
    """How many snapshot reads (op 'r') a topic received after the offsets `start`."""
    consumer = Consumer({**conf, "group.id": f"probe-{uuid.uuid4()}",
                         "enable.auto.commit": False})  # fmt: skip
    try:
        consumer.assign([TopicPartition(topic, p, o) for p, o in start.items()])
        reads, idle = 0, 0
        while idle < 3:
            batch = consumer.consume(500, timeout=1)
            idle = idle + 1 if not batch else 0
            reads += sum(1 for m in batch if m.value() and b'"op":"r"' in m.value())
        return reads
    finally:
        consumer.close()


@pytest.fixture
def probe_table(stack):
    """A table of every type, with rows, in the captured schema; dropped (and its topic deleted) after."""
    s = stack
    table = f"type_probe_{datetime.now(UTC):%H%M%S%f}"
    with connect(s) as conn:
        conn.execute(f"DO $$ BEGIN CREATE TYPE \"{s.cdc_schema}\".probe_mood AS ENUM ('sad', 'ok', 'happy'); "
                     "EXCEPTION WHEN duplicate_object THEN NULL; END $$")  # fmt: skip
        conn.execute(f'CREATE TABLE "{s.cdc_schema}"."{table}" ({TYPES_DDL.format(schema=s.cdc_schema)})')
        conn.execute(f'ALTER TABLE "{s.cdc_schema}"."{table}" REPLICA IDENTITY FULL')
        rng = random.Random(12)
        insert(conn, s.cdc_schema, table, [probe_row(rng, i) for i in range(1, ROWS + 1)])
        conn.commit()
    yield table
    saved = os.environ.get("LAKEHOUSE_CDC_TABLES")
    os.environ.pop("LAKEHOUSE_CDC_TABLES", None)
    get_settings.cache_clear()
    try:
        ensure_connector(get_settings(), log=lambda _: None)  # the configured list again
    finally:
        if saved is not None:
            os.environ["LAKEHOUSE_CDC_TABLES"] = saved
        get_settings.cache_clear()
        with connect(s) as conn:
            conn.execute(f'DROP TABLE IF EXISTS "{s.cdc_schema}"."{table}"')
            conn.commit()
        admin = AdminClient(client_config(s, "admin"))
        for future in admin.delete_topics([s.cdc_topic(table)]).values():
            future.exception()  # deleted, or never created


def test_a_table_added_by_configuration_is_snapshotted_alone_and_mirrored_typed(stack, probe_table):
    resources = build_resources(stack)
    kafka, lake, postgres, trino = (resources[k] for k in ("kafka", "lake", "postgres", "trino"))
    table = probe_table
    # where each other table's topic ends now (a table without any change yet has no topic: from 0)
    others = {t: kafka.end_offsets(kafka.cdc_topic(t)) if kafka.topic_exists(kafka.cdc_topic(t)) else {0: 0}
              for t in stack.cdc_table_list}  # fmt: skip
    workload = threading.Thread(
        target=run_workload, args=(stack, 150), kwargs={"rate": 20, "progress": False}
    )
    workload.start()  # the marketplace keeps changing while the table is added
    messages: list[str] = []
    os.environ["LAKEHOUSE_CDC_TABLES"] = f"{stack.cdc_tables},{table}"
    get_settings.cache_clear()
    try:
        added = get_settings()
        ensure_connector(added, log=messages.append)
        assert any("snapshot of " + table in m for m in messages), messages
        wait_until(lambda: kafka.topic_exists(kafka.cdc_topic(table)), 120, "the new table's topic")

        def mirrored() -> bool:
            sync(kafka, lake, postgres, table)
            return len(source_and_silver(stack, lake, table)[2]) == ROWS

        wait_until(mirrored, 240, f"the {ROWS} existing rows of {table} to reach silver", interval=2)
        workload.join()
        assert not compare(stack, lake, table)
        wait_for_capture(added)
        for t, start in others.items():  # the other tables were not snapshotted again
            if kafka.topic_exists(kafka.cdc_topic(t)):
                assert snapshot_reads(client_config(stack, "admin"), kafka.cdc_topic(t), start) == 0, t

        # updates, deletes and inserts of every type, then a widening ALTER (integer -> bigint)
        rng = random.Random(7)
        with connect(stack) as conn:
            q = f'"{stack.cdc_schema}"."{table}"'
            for i in range(1, 41):
                row = probe_row(rng, i)
                conn.execute(f"DELETE FROM {q} WHERE id = %s", (i,))
                if i % 4:
                    insert(conn, stack.cdc_schema, table, [row])
            conn.execute(f"DELETE FROM {q} WHERE id BETWEEN 41 AND 60")
            conn.execute(f"UPDATE {q} SET amount = amount + 0.01, seen_at = now(), tags = array_append(tags, 'u') "
                         "WHERE id BETWEEN 61 AND 120")  # fmt: skip
            conn.execute(
                f"ALTER TABLE {q} ALTER COLUMN num TYPE bigint, ALTER COLUMN amount TYPE numeric(16,4)"
            )
            conn.execute(f"UPDATE {q} SET num = 1099511627776, amount = 1.2345 WHERE id = 200")
            conn.commit()
        wait_for_capture(added)
        sync(kafka, lake, postgres, table)
        assert not compare(stack, lake, table)
        schema = {f.name: str(f.type) for f in lake.table("silver", table).schema().to_arrow()}
        assert "Int64" in schema["num"] and "Decimal128(16, 4)" in schema["amount"], schema

        # typed all the way through Trino: every value as PostgreSQL has it (timestamptz rounded to the
        # millisecond: Trino's Delta connector reads `timestamp` at that precision)
        trino.register_lake_table(lake, "silver", table)
        via_trino = trino.query(f"SELECT id, amount, num, seen_at, local_at, born, blob, tags, flag, mood "
                                f"FROM {trino.qualified(lake, 'silver', table)} WHERE NOT _cdc_deleted")  # fmt: skip
        types = dict(trino.query(f"SELECT column_name, data_type FROM {trino.catalog}.information_schema.columns "
                                 f"WHERE table_schema = '{lake.schema('silver')}' AND table_name = '{table}'"))  # fmt: skip
        assert types["amount"] == "decimal(16,4)" and types["num"] == "bigint" and types["born"] == "date"
        assert types["seen_at"].startswith("timestamp") and "with time zone" in types["seen_at"]
        assert types["local_at"] == "timestamp(6)" and types["tags"] == "array(varchar)", types
        _, source, _ = source_and_silver(stack, lake, table)
        assert len(via_trino) == len(source)
        for id_, amount, num, seen_at, local_at, born, blob, tags, flag, mood in via_trino:
            row = source[id_]
            expect_seen = row["seen_at"] and to_millis(row["seen_at"])
            got = (amount, num, seen_at, local_at, born, blob, tags, flag, mood)
            assert got == (row["amount"], row["num"], expect_seen, row["local_at"], row["born"],
                           row["blob"], row["tags"], row["flag"], row["mood"]), (id_, got, row)  # fmt: skip

        # a change silver cannot follow (text -> integer) becomes dead letters with the reason
        with connect(stack) as conn:
            conn.execute(f'ALTER TABLE "{stack.cdc_schema}"."{table}" ALTER COLUMN note TYPE integer USING 5')
            conn.execute(f'UPDATE "{stack.cdc_schema}"."{table}" SET note = 6 WHERE id = 201')
            conn.commit()
        wait_for_capture(added)
        sync(kafka, lake, postgres, table)
        dead = lake.read("silver", DEAD_LETTERS_TABLE).to_pylist()
        mine = [d for d in dead if d["topic"] == kafka.cdc_topic(table)]
        assert mine and all("not a widening" in d["error"] for d in mine), mine[:2]
    finally:
        workload.join()
        os.environ.pop("LAKEHOUSE_CDC_TABLES", None)
        get_settings.cache_clear()
    # removed from the list: no longer captured, silver kept and marked so
    ensure_connector(get_settings(), log=lambda _: None)
    silver = MarkedTable(
        lake.table_uri("silver", table), lake.storage_options, SILVER_CDC_APP, kafka.cdc_topic(table)
    )
    assert silver.open().identity().get("captured") is False
    assert lake.table("silver", table).to_pyarrow_table().num_rows >= ROWS

    # changed while not captured, then added again: a blocking snapshot, so the rows deleted meanwhile go too
    with connect(stack) as conn:
        q = f'"{stack.cdc_schema}"."{table}"'
        conn.execute(f"ALTER TABLE {q} ALTER COLUMN note TYPE text USING note::text")
        conn.execute(f"UPDATE {q} SET label = 'while away', amount = 7.5 WHERE id BETWEEN 121 AND 130")
        conn.execute(f"DELETE FROM {q} WHERE id BETWEEN 131 AND 140")
        conn.commit()
    os.environ["LAKEHOUSE_CDC_TABLES"] = f"{stack.cdc_tables},{table}"
    get_settings.cache_clear()
    try:
        messages = []
        ensure_connector(get_settings(), log=messages.append)
        assert any(f"snapshot of {table} requested (blocking" in m for m in messages), messages
        assert silver.open().identity().get("captured") is True

        def converged() -> bool:
            sync(kafka, lake, postgres, table)
            return not compare(stack, lake, table)

        wait_until(  # 240 s timed out once in a slow fresh-clone run (40 min); the snapshot is 200 rows
            converged,
            420,
            f"silver {table} to equal PostgreSQL again after its blocking snapshot",
            interval=2,
        )
    finally:
        os.environ.pop("LAKEHOUSE_CDC_TABLES", None)
        get_settings.cache_clear()


def test_the_capture_wait_ends_while_captured_tables_are_quiet_and_wal_stays_bounded(stack):
    """Only an uncaptured table changes: the slot still advances (Debezium's heartbeat), so PostgreSQL
    keeps no more WAL for it than a few segments, and waiting for the capture returns."""
    with connect(stack) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS public.uncaptured_churn (id bigint, pad text)")
        conn.commit()
        for _ in range(8):  # about 40 MB of WAL that Debezium has no reason to read
            conn.execute(
                "INSERT INTO public.uncaptured_churn SELECT g, repeat('x', 500) FROM generate_series(1, 50000) g"
            )
            conn.execute("TRUNCATE public.uncaptured_churn")
            conn.commit()

    def retained() -> int:
        with connect(stack) as conn:
            return conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint "
                                "FROM pg_replication_slots WHERE slot_name = %s", (SLOT_NAME,)).fetchone()[0]  # fmt: skip

    # the WAL PostgreSQL keeps for the slot starts at its restart position: less than one 16 MB segment
    wait_until(lambda: retained() < 16 * 2**20, 90, "the replication slot to let the uncaptured WAL go")
    started = time.monotonic()
    wait_for_capture(stack, timeout=60)
    assert time.monotonic() - started < 60


def test_spark_and_trino_share_the_metastore_which_survives_a_restart(stack, namespace):
    import pyarrow as pa
    from deltalake import write_deltalake

    from lakehouse.resources.spark import lake_session, spark_config, spark_jars, stop_local_spark
    from lakehouse.stack import manager

    s = namespace.settings
    resources = build_resources(s)
    lake, trino = resources["lake"], resources["trino"]
    # a table delta-rs wrote, registered through Trino ...
    write_deltalake(lake.table_uri("bronze", "from_python"), pa.table({"id": [1, 2], "word": ["a", "b"]}),
                    storage_options=lake.storage_options)  # fmt: skip
    assert trino.register_lake_table(lake, "bronze", "from_python")
    jars = spark_jars(s.cache_dir)
    spark = lake_session(s, {**spark_config(s, jars), "spark.jars": ",".join(jars)})
    try:
        # ... is the same table for Spark, and a table Spark creates is the same table for Trino
        assert sorted(spark.table(f"{lake.schema('bronze')}.from_python").collect()) == [(1, "a"), (2, "b")]
        spark.sql(f"CREATE TABLE {lake.schema('bronze')}.from_spark USING delta LOCATION "
                  f"'{lake.table_uri('bronze', 'from_spark')}' AS SELECT 7 AS n, 'seven' AS word")  # fmt: skip
        spark_tables = {r.tableName for r in spark.sql(f"SHOW TABLES IN {lake.schema('bronze')}").collect()}
    finally:
        stop_local_spark()
    trino_tables = {r[0] for r in trino.query(f"SHOW TABLES FROM {trino.catalog}.{lake.schema('bronze')}")}
    assert {"from_python", "from_spark"} <= spark_tables == trino_tables
    assert trino.query(f"SELECT n, word FROM {trino.qualified(lake, 'bronze', 'from_spark')}") == [
        (7, "seven")
    ]

    manager.down(stack, ["metastore"], log=lambda _: None)
    try:
        with pytest.raises(StackError, match="Hive Metastore"):
            trino.query(f"SELECT count(*) FROM {trino.qualified(lake, 'bronze', 'from_python')}")
    finally:
        manager.up(stack, ["metastore"], log=lambda _: None)
    assert trino.query(f"SELECT count(*) FROM {trino.qualified(lake, 'bronze', 'from_python')}") == [(2,)]


def test_tables_that_cannot_be_captured_are_refused_at_configuration_time(stack):
    """A listed table that does not exist, has no primary key, does not log whole rows, that the capture role
    cannot read or does not own, or that is partitioned: `lakehouse stack up` (ensure_connector) refuses
    before touching the connector, naming each table and its fix."""
    from lakehouse.stack.services import Postgres

    s = stack
    tag = datetime.now(UTC).strftime("%H%M%S%f")
    nokey, partial, hidden = f"nokey_{tag}", f"partial_{tag}", f"hidden_{tag}"
    foreign, parted = f"foreign_{tag}", f"parted_{tag}"
    with connect(s) as conn:
        conn.execute(f'CREATE TABLE "{s.cdc_schema}"."{nokey}" (id bigint, note text)')
        conn.execute(f'CREATE TABLE "{s.cdc_schema}"."{partial}" (id bigint PRIMARY KEY, note text)')
        conn.execute(
            f'CREATE TABLE "{s.cdc_schema}"."{parted}" (id bigint PRIMARY KEY) PARTITION BY RANGE (id)'
        )
        conn.commit()
    with Postgres()._connect(s, dbname=s.postgres_db) as admin:  # tables of another role
        for t in (hidden, foreign):
            admin.execute(f'CREATE TABLE "{s.cdc_schema}"."{t}" (id bigint PRIMARY KEY)')
            admin.execute(f'ALTER TABLE "{s.cdc_schema}"."{t}" REPLICA IDENTITY FULL')
        admin.execute(f'GRANT SELECT ON "{s.cdc_schema}"."{foreign}" TO "{s.postgres_user}"')
    before = (
        rest(s).get(f"http://127.0.0.1:{s.connect_port}/connectors/lakehouse-cdc/config", timeout=10).json()
    )
    bad = s.model_copy(
        update={"cdc_tables": f"{s.cdc_tables},missing_{tag},{nokey},{partial},{hidden},{foreign},{parted}"}
    )
    try:
        with pytest.raises(StackError) as refused:
            ensure_connector(bad, log=lambda _: None)
        problem, fix = refused.value.problem, refused.value.fix
        assert f"{s.cdc_schema}.missing_{tag}, which is not a table" in problem
        assert f"{s.cdc_schema}.{nokey} has no primary key" in problem and "ADD PRIMARY KEY" in fix
        assert (
            f"{s.cdc_schema}.{partial} does not log whole rows" in problem and "REPLICA IDENTITY FULL" in fix
        )
        assert f"cannot read {s.cdc_schema}.{hidden}" in problem and "GRANT SELECT" in fix
        assert f"does not own {s.cdc_schema}.{foreign}" in problem and "OWNER TO" in fix
        assert f"{s.cdc_schema}.{parted} is a partitioned table" in problem
        after = (
            rest(s)
            .get(f"http://127.0.0.1:{s.connect_port}/connectors/lakehouse-cdc/config", timeout=10)
            .json()
        )
        assert after == before  # the connector was not touched
    finally:
        with Postgres()._connect(s, dbname=s.postgres_db) as admin:
            for t in (nokey, partial, hidden, foreign, parted):
                admin.execute(f'DROP TABLE IF EXISTS "{s.cdc_schema}"."{t}"')


def test_a_table_of_another_schema_is_captured_under_its_qualified_name(stack):
    """`billing.invoices` in LAKEHOUSE_CDC_TABLES: captured from its schema, `billing__invoices` in the lake."""
    s = stack
    schema, table = f"billing_{datetime.now(UTC):%H%M%S%f}", "invoices"
    name = f"{schema}__{table}"
    with connect(s) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".{table} (invoice_id bigint PRIMARY KEY, total numeric(10,2), '
                     "issued date)")  # fmt: skip
        conn.execute(f'ALTER TABLE "{schema}".{table} REPLICA IDENTITY FULL')
        conn.execute(f"INSERT INTO \"{schema}\".{table} SELECT g, g * 1.25, DATE '2026-01-01' + g "
                     "FROM generate_series(1, 50) g")  # fmt: skip
        conn.commit()
    os.environ["LAKEHOUSE_CDC_TABLES"] = f"{s.cdc_tables},{schema}.{table}"
    get_settings.cache_clear()
    try:
        added = get_settings()
        assert added.cdc_source(name) == (schema, table) and added.cdc_topic(name) == f"cdc.{schema}.{table}"
        ensure_connector(added, log=lambda _: None)
        resources = build_resources(added)
        kafka, lake, postgres = resources["kafka"], resources["lake"], resources["postgres"]
        wait_until(lambda: kafka.topic_exists(kafka.cdc_topic(name)), 120, "the other schema's topic")
        with connect(s) as conn:
            conn.execute(f'UPDATE "{schema}".{table} SET total = 0 WHERE invoice_id = 7')
            conn.execute(f'DELETE FROM "{schema}".{table} WHERE invoice_id = 8')
            conn.commit()

        def mirrored() -> bool:
            sync(kafka, lake, postgres, name)
            silver = lake.table("silver", name)
            rows = (
                {r["invoice_id"]: r for r in current_state(silver).to_pylist()} if silver is not None else {}
            )
            return len(rows) == 49 and rows[7]["total"] == Decimal("0.00") and 8 not in rows

        wait_until(mirrored, 180, f"silver {name} to mirror {schema}.{table}", interval=2)
        from lakehouse.cdc.capture import capture_report

        assert not [p for p in capture_report(added).problems if name in p]
    finally:
        os.environ.pop("LAKEHOUSE_CDC_TABLES", None)
        get_settings.cache_clear()
        ensure_connector(get_settings(), log=lambda _: None)
        with connect(s) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            conn.commit()
        admin = AdminClient(client_config(s, "admin"))
        for future in admin.delete_topics([f"cdc.{schema}.{table}"]).values():
            future.exception()
