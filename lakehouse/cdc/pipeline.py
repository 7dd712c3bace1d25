"""The CDC path outside Dagster (same code as the assets): land every captured table's change
records into its raw change log, then MERGE them into silver. Used by `lakehouse cdc apply`."""

from __future__ import annotations

import time

from lakehouse.cdc.apply import apply_changes
from lakehouse.cdc.changes import CHANGE_LOG_SCHEMA, to_change_log
from lakehouse.cdc.connector import SLOT_NAME
from lakehouse.ingest.exactly_once import MarkedTable
from lakehouse.ingest.landing import land_topic
from lakehouse.resources.kafka import KafkaResource
from lakehouse.resources.lake import LakeResource
from lakehouse.resources.postgres import PostgresResource
from lakehouse.settings import LakehouseSettings

RAW_CDC_APP = "lakehouse-raw-cdc"
DEAD_LETTERS_TABLE = "cdc_dead_letters"  # in silver: change records that cannot be applied, with the reason


def change_log_table(source_table: str) -> str:
    return f"cdc_{source_table}"


def land_changes(kafka: KafkaResource, lake: LakeResource, table: str, log=print):
    """Land one table's new change records into its raw change log (None if nothing was captured yet)."""
    topic = kafka.cdc_topic(table)
    if not kafka.topic_exists(topic):
        return None
    target = MarkedTable(lake.table_uri("raw", change_log_table(table)), lake.storage_options, RAW_CDC_APP, topic,
                         schema=CHANGE_LOG_SCHEMA)  # fmt: skip
    return land_topic(kafka, target, to_table=to_change_log, log=log)


def apply_table(kafka: KafkaResource, lake: LakeResource, table: str, log=print,
                postgres: PostgresResource | None = None):  # fmt: skip
    """MERGE one table's new change records into silver, typed by the source table's column types in
    PostgreSQL's catalog (`postgres`; without it, each column takes its first JSON value's type)."""
    return apply_changes(lake.table_uri("raw", change_log_table(table)), lake.table_uri("silver", table),
                         lake.table_uri("silver", DEAD_LETTERS_TABLE), lake.storage_options,
                         kafka.cdc_topic(table), log=log,
                         read_catalog=(lambda: postgres.column_types(table)) if postgres else None)  # fmt: skip


def run_once(s: LakehouseSettings, log=print) -> int:
    """Land and apply every captured table once; the number of change records landed."""
    kafka = KafkaResource.from_settings(s)
    lake = LakeResource.from_settings(s)
    postgres = PostgresResource.from_settings(s)
    landed = 0
    for table in s.cdc_table_list:
        result = land_changes(kafka, lake, table, log=log)
        landed += result.rows if result else 0
        apply_table(kafka, lake, table, log=log, postgres=postgres)
    return landed


def run_loop(s: LakehouseSettings, interval: float = 1.0, idle_exit: float | None = None, log=print) -> None:
    idle_since = time.monotonic()
    while True:
        if run_once(s, log=log):
            idle_since = time.monotonic()
        elif idle_exit is not None and time.monotonic() - idle_since > idle_exit:
            return
        time.sleep(interval)


def _lsn(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def wait_for_capture(s: LakehouseSettings, quiet: float = 3.0, timeout: float = 240.0) -> None:
    """Until Debezium has confirmed PostgreSQL's write-ahead log up to now and its topics stopped growing.

    The connector's heartbeat (a row it updates every HEARTBEAT_MS, lakehouse/cdc/connector.py) is a
    change it reads even when no captured table changes, so the slot's confirmed position passes `now`
    within a few seconds; a TimeoutError says what is behind and why."""
    from lakehouse.cdc.capture import capture_report
    from lakehouse.cdc.workload import connect

    kafka = KafkaResource.from_settings(s)
    with connect(s) as conn:
        target = _lsn(conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])
    deadline, last, since, confirmed = time.monotonic() + timeout, None, time.monotonic(), 0
    while time.monotonic() < deadline:
        with connect(s) as conn:
            row = conn.execute(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
                (SLOT_NAME,),
            ).fetchone()
        confirmed = _lsn(row[0]) if row and row[0] else 0
        ends = {t: sum(kafka.end_offsets(kafka.cdc_topic(t)).values()) if kafka.topic_exists(kafka.cdc_topic(t))
                else 0 for t in s.cdc_table_list}  # fmt: skip
        if ends != last:
            last, since = ends, time.monotonic()
        elif confirmed >= target and time.monotonic() - since > quiet:
            return
        time.sleep(0.5)
    behind = (f"the replication slot {SLOT_NAME} has confirmed the log up to {confirmed:X}, {target - confirmed} bytes "
              f"short of {target:X}" if confirmed < target else f"its topics kept growing ({last})")  # fmt: skip
    problems = capture_report(s).problems
    raise TimeoutError(f"Debezium did not catch up with PostgreSQL within {timeout:.0f}s: {behind}"
                       + (f"; {'; '.join(problems)}" if problems else ""))  # fmt: skip
