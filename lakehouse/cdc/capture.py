"""Is the capture healthy? The Debezium connector and its task, PostgreSQL's replication slot, and
topics under the CDC prefix that carry tables LAKEHOUSE_CDC_TABLES does not list.

Debezium recovers from most trouble on its own: a PostgreSQL restart is retried every 10 s, and
with `snapshot.mode=when_needed` a dropped replication slot (the stored position is no longer on
the server) makes it snapshot every table again, which the apply turns into exact deletes. What
it cannot fix, this report names with the fix; nothing is ever skipped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import requests

from lakehouse.cdc.connector import CONNECTOR_NAME, SLOT_NAME, connector_status
from lakehouse.resources.kafka import topic_names
from lakehouse.settings import LakehouseSettings


@dataclass
class CaptureReport:
    problems: list[str] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return not self.problems


def unconfigured_tables(conf: dict, topic_prefix: str, schema: str, configured: list[str],
                        other_schemas: tuple[str, ...] = ()) -> list[str]:  # fmt: skip
    """Tables (by their names in the lake) whose change topics exist under the CDC prefix, for the captured
    schemas, but are not in the configured list."""
    from lakehouse.cdc.connector import INTERNAL_TABLES

    extra = []
    for topic in topic_names(conf):
        owner, _, table = topic.removeprefix(f"{topic_prefix}.").partition(".")
        if not topic.startswith(f"{topic_prefix}.") or not table or owner not in (schema, *other_schemas):
            continue
        name = table if owner == schema else f"{owner}__{table}"
        if name not in configured and not (owner == schema and table in INTERNAL_TABLES):
            extra.append(name)
    return sorted(extra)


def _connector_problems(s: LakehouseSettings, report: CaptureReport) -> None:
    try:
        state = connector_status(s)
    except requests.RequestException as exc:
        report.problems.append(f"Kafka Connect at 127.0.0.1:{s.connect_port} does not answer ({type(exc).__name__}); "
                               "fix: `lakehouse stack up connect`, then `lakehouse stack logs connect`")  # fmt: skip
        return
    if not state:
        report.problems.append(
            f"connector {CONNECTOR_NAME} is not registered; fix: `lakehouse stack up` registers it"
        )
        return
    report.facts["connector"] = state["connector"]["state"]
    report.facts["tasks"] = [t["state"] for t in state.get("tasks", [])]
    if state["connector"]["state"] != "RUNNING":
        report.problems.append(f"connector {CONNECTOR_NAME} is {state['connector']['state']}; "
                               f"fix: curl -u {s.connect_user}:$LAKEHOUSE_CONNECT_PASSWORD -X PUT "
                               f"localhost:{s.connect_port}/connectors/{CONNECTOR_NAME}/resume (the password is in "
                               ".lakehouse/secrets.env)")  # fmt: skip
    for task in state.get("tasks", []):
        if task["state"] == "FAILED":
            first = (task.get("trace") or "").splitlines()[:1]
            report.problems.append(f"Debezium task {task['id']} failed: {first[0][:400] if first else '?'}; "
                                   "fix: read `lakehouse stack logs connect`, then `lakehouse stack up` restarts it")  # fmt: skip
    if not state.get("tasks") and state["connector"]["state"] == "RUNNING":
        report.problems.append(f"connector {CONNECTOR_NAME} has no task; fix: `lakehouse stack up`")


def _slot_problems(s: LakehouseSettings, report: CaptureReport) -> None:
    from lakehouse.cdc.workload import connect

    try:
        with connect(s) as conn:
            row = conn.execute(
                "SELECT active, pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint "
                "FROM pg_replication_slots WHERE slot_name = %s",
                (SLOT_NAME,),
            ).fetchone()
    except Exception as exc:  # noqa: BLE001 - any connection failure is reported the same way
        report.problems.append(f"PostgreSQL at {s.postgres_host}:{s.postgres_port} does not answer "
                               f"({str(exc).splitlines()[0][:200]}); fix: `lakehouse stack up postgres`")  # fmt: skip
        return
    if row is None:
        report.problems.append(f"replication slot {SLOT_NAME} does not exist: Debezium is not reading PostgreSQL's "
                               "write-ahead log; fix: `lakehouse stack up` (the connector recreates it and "
                               "snapshots again)")  # fmt: skip
        return
    report.facts["slot_active"], report.facts["slot_lag_bytes"] = row
    if not row[0]:
        report.problems.append(f"replication slot {SLOT_NAME} has no reader (Debezium is down or reconnecting); "
                               "fix: `lakehouse stack status`, `lakehouse stack logs connect`")  # fmt: skip


def capture_report(s: LakehouseSettings, topic_prefix: str | None = None) -> CaptureReport:
    from lakehouse.security.kafka_access import client_config

    report = CaptureReport()
    _connector_problems(s, report)
    _slot_problems(s, report)
    prefix = topic_prefix or s.cdc_topic_prefix
    try:
        others = tuple(sorted({a for a, _ in s.cdc_sources.values()} - {s.cdc_schema}))
        extra = unconfigured_tables(
            client_config(s, "landing"), prefix, s.cdc_schema, s.cdc_table_list, others
        )
    except Exception as exc:  # noqa: BLE001
        report.problems.append(
            f"Kafka at {s.kafka_bootstrap} does not answer ({getattr(exc, 'problem', exc)}); "
            "fix: `lakehouse stack up kafka`"
        )
        return report
    retired = [t for t in extra if no_longer_captured(s, t)]
    if retired:
        report.facts["no_longer_captured"] = retired  # removed from LAKEHOUSE_CDC_TABLES; silver kept
    for table in (t for t in extra if t not in retired):
        report.problems.append(
            f"changes of {'.'.join(s.cdc_source(table))} arrive on topic {prefix}.{'.'.join(s.cdc_source(table))}, but "
            f"LAKEHOUSE_CDC_TABLES does not list {table!r}: they are kept in Kafka and not landed; fix: add it "
            "to LAKEHOUSE_CDC_TABLES (or drop it from the connector's table.include.list)"
        )
    return report


def no_longer_captured(s: LakehouseSettings, table: str) -> bool:
    """Whether a table was removed from the capture on purpose (its silver identity says so)."""
    from lakehouse.ingest.delta_sink import open_table
    from lakehouse.ingest.exactly_once import table_identity

    return (
        table_identity(open_table(s.table_uri("silver", table), s.delta_storage_options())).get("captured")
        is False
    )
