"""Which tables are captured is configuration (LAKEHOUSE_CDC_TABLES): checked when the connector is
configured, a table added later snapshotted alone, a removed one marked as no longer captured.

- Refused at configuration time, with the fix: a table that does not exist, has no primary key (its
  changes could not be merged by key), that the capture role cannot read, or that does not log whole
  rows (REPLICA IDENTITY FULL: otherwise an update carries a placeholder for a large unchanged value).
- Added to the list of a connector that already runs: Debezium captures its changes from the restart
  on (it updates its publication itself) but does not snapshot it; an `execute-snapshot` signal (an
  incremental snapshot of that table only) brings its existing rows, while the other tables stream on.
- Removed from the list: its changes are no longer captured; its change log and silver table stay, and
  silver's identity says `captured: false` (shown by the Dagster asset metadata and `lakehouse cdc`).
"""

from __future__ import annotations

import json
import time
import uuid

from lakehouse.settings import LakehouseSettings
from lakehouse.stack.errors import StackError

TABLE_FACTS = """
SELECT c.relname,
       has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT'),
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
       c.relreplident = 'f'
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind IN ('r', 'p')
"""


def table_problems(conn, s: LakehouseSettings, tables: list[str]) -> list[str]:
    """What keeps each configured table from being captured, one line each with its fix."""
    rows = conn.execute(TABLE_FACTS, (s.cdc_schema, tables)).fetchall()
    facts = {name: (readable, keyed, full) for name, readable, keyed, full in rows}
    problems = []
    for t in tables:
        qualified = f"{s.cdc_schema}.{t}"
        if t not in facts:
            problems.append(f"LAKEHOUSE_CDC_TABLES lists {qualified}, which is not a table of PostgreSQL database "
                            f"{s.postgres_db}; fix: create it, correct the name (or LAKEHOUSE_CDC_SCHEMA), or "
                            "remove it from LAKEHOUSE_CDC_TABLES")  # fmt: skip
        elif not facts[t][0]:
            problems.append(f"role {s.postgres_user} cannot read {qualified}; fix: GRANT USAGE ON SCHEMA "
                            f"{s.cdc_schema} TO {s.postgres_user}; GRANT SELECT ON {qualified} TO {s.postgres_user}")  # fmt: skip
        elif not facts[t][1]:
            problems.append(f"{qualified} has no primary key, so its changes cannot be merged into silver by key; "
                            f"fix: ALTER TABLE {qualified} ADD PRIMARY KEY (...), or remove it from "
                            "LAKEHOUSE_CDC_TABLES")  # fmt: skip
        elif not facts[t][2]:
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


def captured_tables(config: dict | None, schema: str) -> list[str] | None:
    """The user tables a connector configuration captures (None when there is no connector yet)."""
    from lakehouse.cdc.connector import INTERNAL_TABLES

    if config is None:
        return None
    listed = [t.strip() for t in config.get("table.include.list", "").split(",") if t.strip()]
    return [
        t.split(".", 1)[1]
        for t in listed
        if t.startswith(f"{schema}.") and t.split(".", 1)[1] not in INTERNAL_TABLES
    ]


def request_snapshot(s: LakehouseSettings, tables: list[str], log=print, timeout: float = 120.0) -> str:
    """Ask Debezium for an incremental snapshot of these tables only (a row in its signal table).

    Only once Debezium's publication has the tables: the task that started with the new configuration
    adds them when it starts, and a signal read by the task still running the old configuration would
    be dropped (it does not know the tables)."""
    from lakehouse.cdc.connector import SIGNAL_TABLE, SLOT_NAME
    from lakehouse.cdc.workload import connect

    deadline = time.monotonic() + timeout
    while True:
        with connect(s) as conn:
            published = {r[0] for r in conn.execute(
                "SELECT tablename FROM pg_publication_tables WHERE pubname = %s AND schemaname = %s",
                (SLOT_NAME, s.cdc_schema)).fetchall()}  # fmt: skip
        if set(tables) <= published:
            break
        if time.monotonic() > deadline:
            raise StackError(f"Debezium did not add {', '.join(sorted(set(tables) - published))} to its publication "
                             f"{SLOT_NAME} within {timeout:.0f}s, so they cannot be snapshotted",
                             fix="read `lakehouse stack logs connect`, then run `lakehouse stack up` again")  # fmt: skip
        time.sleep(0.5)
    signal_id = f"lh-{uuid.uuid4()}"  # the id column holds 42 characters
    data = json.dumps({"data-collections": [f"{s.cdc_schema}.{t}" for t in tables], "type": "incremental"})
    with connect(s) as conn:
        conn.execute(f'INSERT INTO "{s.cdc_schema}".{SIGNAL_TABLE} (id, type, data) VALUES (%s, %s, %s)',
                     (signal_id, "execute-snapshot", data))  # fmt: skip
    log(f"  snapshot of {', '.join(tables)} requested (incremental; the other tables stream on)")
    return signal_id


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
