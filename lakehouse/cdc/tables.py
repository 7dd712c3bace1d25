"""Which tables are captured is configuration (LAKEHOUSE_CDC_TABLES): checked when the connector is
configured, a table added later snapshotted alone, a removed one marked as no longer captured.

- Refused at configuration time, with the fix: a table that does not exist, is partitioned, is not
  owned by the capture role (Debezium adds it to its publication), has no primary key (its
  changes could not be merged by key), that the capture role cannot read, or that does not log whole
  rows (REPLICA IDENTITY FULL: otherwise an update carries a placeholder for a large unchanged value).
- Added to the list of a connector that already runs: Debezium captures its changes from the restart
  on (it updates its publication itself) but does not snapshot it; an `execute-snapshot` signal (an
  incremental snapshot of that table only) brings its existing rows, while the other tables stream on.
  A table captured before (removed, then added again) gets a blocking snapshot instead, which lets the
  apply mark the rows deleted in the meantime.
- Tables of other schemas: `billing.invoices` in LAKEHOUSE_CDC_TABLES, `billing__invoices` in the lake.
- Removed from the list: its changes are no longer captured; its change log and silver table stay, and
  silver's identity says `captured: false` (shown by the Dagster asset metadata and `lakehouse cdc`).
"""

from __future__ import annotations

import json
import time
import uuid

from lakehouse.settings import LakehouseSettings, cdc_sources
from lakehouse.stack.errors import StackError

TABLE_FACTS = """
SELECT n.nspname, c.relname,
       has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT'),
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
       c.relreplident = 'f',
       pg_has_role(c.relowner, 'USAGE'),
       c.relkind = 'p'
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname || '.' || c.relname = ANY(%s) AND c.relkind IN ('r', 'p')
"""


def table_problems(conn, s: LakehouseSettings, names: list[str]) -> list[str]:
    """What keeps each configured table from being captured, one line each with its fix."""
    sources = {name: s.cdc_source(name) for name in names}
    rows = conn.execute(
        TABLE_FACTS, ([f"{schema}.{table}" for schema, table in sources.values()],)
    ).fetchall()
    facts = {(schema, table): rest for schema, table, *rest in rows}
    problems = []
    for schema, table in sources.values():
        qualified = f"{schema}.{table}"
        if (schema, table) not in facts:
            problems.append(f"LAKEHOUSE_CDC_TABLES lists {qualified}, which is not a table of PostgreSQL database "
                            f"{s.postgres_db}; fix: create it, correct the name (or LAKEHOUSE_CDC_SCHEMA), or "
                            "remove it from LAKEHOUSE_CDC_TABLES")  # fmt: skip
            continue
        readable, keyed, whole_rows, owned, partitioned = facts[(schema, table)]
        if partitioned:
            problems.append(f"{qualified} is a partitioned table, whose changes PostgreSQL publishes per partition; "
                            "fix: list its partitions in LAKEHOUSE_CDC_TABLES instead, or remove it")  # fmt: skip
        elif not readable:
            problems.append(f"role {s.postgres_user} cannot read {qualified}; fix: GRANT USAGE ON SCHEMA "
                            f"{schema} TO {s.postgres_user}; GRANT SELECT ON {qualified} TO {s.postgres_user}")  # fmt: skip
        elif not keyed:
            problems.append(f"{qualified} has no primary key, so its changes cannot be merged into silver by key; "
                            f"fix: ALTER TABLE {qualified} ADD PRIMARY KEY (...), or remove it from "
                            "LAKEHOUSE_CDC_TABLES")  # fmt: skip
        elif not owned:  # Debezium adds the table to its publication, which only the table's owner may do
            problems.append(f"role {s.postgres_user} does not own {qualified}, so Debezium cannot add it to its "
                            f"publication; fix: ALTER TABLE {qualified} OWNER TO {s.postgres_user}")  # fmt: skip
        elif not whole_rows:
            problems.append(f"{qualified} does not log whole rows (REPLICA IDENTITY FULL), so an update could "
                            "overwrite a large unchanged value with Debezium's placeholder and a delete would lack "
                            f"its columns; fix: ALTER TABLE {qualified} REPLICA IDENTITY FULL")  # fmt: skip
    return problems


def check_tables(s: LakehouseSettings) -> None:
    """StackError naming every configured table that cannot be captured, and how to fix it."""
    from lakehouse.cdc.workload import connect

    with connect(s) as conn:
        problems = table_problems(conn, s, s.cdc_table_list)
    if problems:
        raise StackError("; ".join(p.split("; fix: ")[0] for p in problems),
                         fix="; ".join(p.split("; fix: ")[1] for p in problems))  # fmt: skip


def captured_tables(config: dict | None, s: LakehouseSettings) -> list[str] | None:
    """The user tables a connector configuration captures, by their names in the lake (None when there is
    no connector yet)."""
    from lakehouse.cdc.connector import INTERNAL_TABLES

    if config is None:
        return None
    listed = [t.strip() for t in config.get("table.include.list", "").split(",") if t.strip()]
    internal = {f"{s.cdc_schema}.{t}" for t in INTERNAL_TABLES}
    return list(cdc_sources(",".join(t for t in listed if t not in internal), s.cdc_schema))


def request_snapshot(s: LakehouseSettings, names: list[str], blocking: bool = False, log=print,
                     timeout: float = 120.0) -> str:  # fmt: skip
    """Ask Debezium for a snapshot of these tables only (a row in its signal table).

    Incremental for a table silver has never seen: its reads interleave with the stream, every other
    table streams on. Blocking for a table captured before (removed, then added again): while it was not
    captured, rows may have changed or gone, and only a blocking snapshot (its rows carry an LSN and its
    last row says so) lets the apply mark what is gone as deleted; streaming pauses while it runs.
    Sent only once Debezium's publication has the tables: the task that started with the new
    configuration adds them when it starts, and a signal read by the task still running the old one would
    be dropped (it does not know the tables)."""
    from lakehouse.cdc.connector import SIGNAL_TABLE, SLOT_NAME
    from lakehouse.cdc.workload import connect

    wanted = {s.cdc_source(n) for n in names}
    deadline = time.monotonic() + timeout
    while True:
        with connect(s) as conn:
            published = set(conn.execute("SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s",
                                         (SLOT_NAME,)).fetchall())  # fmt: skip
        if wanted <= published:
            break
        if time.monotonic() > deadline:
            missing = ", ".join(f"{a}.{b}" for a, b in sorted(wanted - published))
            raise StackError(f"Debezium did not add {missing} to its publication {SLOT_NAME} within {timeout:.0f}s, "
                             "so they cannot be snapshotted",
                             fix="read `lakehouse stack logs connect`, then run `lakehouse stack up` again")  # fmt: skip
        time.sleep(0.5)
    kind = "blocking" if blocking else "incremental"
    data = json.dumps({"data-collections": [f"{a}.{b}" for a, b in sorted(wanted)], "type": kind})
    others = "streaming pauses while it runs" if blocking else "the other tables stream on"
    topics = [s.cdc_topic(n) for n in names]
    for attempt in range(1, SNAPSHOT_SIGNALS + 1):
        start = _end_offsets(s, topics)
        signal_id = f"lh-{uuid.uuid4()}"  # the id column holds 42 characters
        with connect(s) as conn:
            conn.execute(f'INSERT INTO "{s.cdc_schema}".{SIGNAL_TABLE} (id, type, data) VALUES (%s, %s, %s)',
                         (signal_id, "execute-snapshot", data))  # fmt: skip
        log(f"  snapshot of {', '.join(names)} requested ({kind}; {others})")
        if _snapshot_reads_seen(s, topics, start, SNAPSHOT_START_SECONDS):
            return signal_id
        # The task that read the signal may still have been the one running the old configuration, which
        # drops a signal for tables it does not know: ask again.
        log(
            f"  no snapshot record of {', '.join(names)} after {SNAPSHOT_START_SECONDS} s (attempt {attempt})"
        )
    raise StackError(f"Debezium did not start the {kind} snapshot of {', '.join(names)} after {SNAPSHOT_SIGNALS} "
                     "signals", fix="read `lakehouse stack logs connect`, then run `lakehouse stack up` again")  # fmt: skip


SNAPSHOT_SIGNALS = 3  # signals sent before giving up
SNAPSHOT_START_SECONDS = 60  # a snapshot's first records arrive within seconds of its signal


def _end_offsets(s: LakehouseSettings, topics: list[str]) -> dict[str, dict[int, int]]:
    from lakehouse.resources.kafka import KafkaResource

    kafka = KafkaResource.from_settings(s)
    return {t: kafka.end_offsets(t) if kafka.topic_exists(t) else {} for t in topics}


def _snapshot_reads_seen(s: LakehouseSettings, topics: list[str], start: dict[str, dict[int, int]],
                         timeout: float) -> bool:  # fmt: skip
    """Whether a snapshot read (op `r`) reached any of the topics after `start` (a topic that did not exist
    then: from its beginning), waiting up to `timeout` seconds."""
    from confluent_kafka import Consumer, TopicPartition

    from lakehouse.resources.kafka import KafkaResource

    kafka = KafkaResource.from_settings(s)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for topic in topics:
            if not kafka.topic_exists(topic):
                continue
            end = kafka.end_offsets(topic)
            begin = {p: start.get(topic, {}).get(p, 0) for p in end}
            if all(end[p] <= begin[p] for p in end):
                continue
            consumer = Consumer({**kafka.client_config(), "group.id": f"lakehouse-probe-{uuid.uuid4()}",
                                 "enable.auto.commit": False})  # fmt: skip
            try:
                consumer.assign([TopicPartition(topic, p, o) for p, o in begin.items() if end[p] > o])
                wanted = sum(end[p] - begin[p] for p in end)
                seen = 0
                while seen < wanted and time.monotonic() < deadline:
                    batch = consumer.consume(500, timeout=1)
                    seen += len(batch)
                    if any(m.value() and b'"op":"r"' in m.value() for m in batch if not m.error()):
                        return True
            finally:
                consumer.close()
            start = {**start, topic: end}
        time.sleep(1)
    return False


def captured_before(s: LakehouseSettings, names: list[str]) -> list[str]:
    """The tables whose change topic exists: captured before (a topic outlives the table's removal from the
    list), whatever lake schema prefix this process writes to."""
    from lakehouse.resources.kafka import topic_names
    from lakehouse.security.kafka_access import client_config

    topics = topic_names(client_config(s, "landing"))
    return [n for n in names if s.cdc_topic(n) in topics]


def mark_captured(s: LakehouseSettings, tables: list[str], captured: bool, log=print) -> None:
    """Record in each table's silver identity whether it is captured (tables without silver: nothing)."""
    from lakehouse.cdc.apply import SILVER_CDC_APP
    from lakehouse.ingest.exactly_once import MarkedTable

    for t in tables:
        silver = MarkedTable(
            s.table_uri("silver", t), s.delta_storage_options(), SILVER_CDC_APP, s.cdc_topic(t)
        )
        silver.open()
        if silver.table is not None and silver.identity().get("captured", True) != captured:
            silver.remember(captured=captured)
            log(f"  silver {t}: {'captured again' if captured else 'no longer captured (kept as it is)'}")
