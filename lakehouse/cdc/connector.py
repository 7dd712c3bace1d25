"""The Debezium connector: its configuration (connector.json in this folder, filled from the
settings) registered in Kafka Connect idempotently, and its health."""

from __future__ import annotations

import json
import time
from pathlib import Path
from string import Template

import requests

from lakehouse.settings import LakehouseSettings
from lakehouse.stack.errors import StackError

CONNECTOR_NAME = "lakehouse-cdc"
SLOT_NAME = "lakehouse_cdc"  # the replication slot (and publication) in connector.json
TEMPLATE = Path(__file__).resolve().parent / "connector.json"


# The connector's own tables in the captured schema. Debezium updates the heartbeat row every
# HEARTBEAT_MS (`heartbeat.action.query`): a change it reads even when no captured table changes, so the
# replication slot always advances (a quiet database never holds WAL back) and a wait for the capture
# ends. The signal table takes `execute-snapshot` requests: a table added to LAKEHOUSE_CDC_TABLES is
# snapshotted alone (an incremental snapshot), the others are untouched.
HEARTBEAT_TABLE = "lakehouse_heartbeat"
SIGNAL_TABLE = "lakehouse_signal"
INTERNAL_TABLES = (HEARTBEAT_TABLE, SIGNAL_TABLE)
HEARTBEAT_MS = 2000


def internal_tables_ddl(schema: str) -> str:
    q = f'"{schema}"'
    return (
        f"CREATE TABLE IF NOT EXISTS {q}.{HEARTBEAT_TABLE} (id int PRIMARY KEY, beat_at timestamptz NOT NULL);\n"
        f"CREATE TABLE IF NOT EXISTS {q}.{SIGNAL_TABLE} (id varchar(42) PRIMARY KEY, type varchar(32) NOT NULL, "
        "data varchar(2048));\n"
    )


def rest(s: LakehouseSettings) -> requests.Session:
    """Kafka Connect's REST API as connect_user (basic authentication: it takes connector code and configs)."""
    session = requests.Session()
    session.auth = (s.connect_user, s.connect_password)
    return session


def write_rest_login(s: LakehouseSettings, folder: Path) -> str:
    """The local worker's REST users (0600) and the JAAS file naming them; the JVM option that loads it."""
    from lakehouse.secrets_store import write_private
    from lakehouse.stack.services import java_properties

    users = folder / "rest-users.properties"
    write_private(users, java_properties({s.connect_user: s.connect_password}))
    jaas = folder / "rest-jaas.conf"
    write_private(jaas, "KafkaConnect {\n  org.apache.kafka.connect.rest.basic.auth.extension.PropertyFileLoginModule "
                        f'required\n  file="{users}";\n}};\n')  # fmt: skip
    return f"-Djava.security.auth.login.config={jaas}"


def connect_secrets_file(s: LakehouseSettings) -> Path:
    """The local Kafka Connect worker's secrets (mode 0600), read by its FileConfigProvider."""
    return s.home / "connect" / "secrets.properties"


def write_connect_secrets(s: LakehouseSettings) -> Path:
    from lakehouse.secrets_store import write_private
    from lakehouse.stack.services import java_properties

    path = connect_secrets_file(s)
    write_private(path, java_properties({"postgres_password": s.postgres_password}))
    return path


def password_reference(s: LakehouseSettings) -> str:
    """What the connector's configuration holds instead of the password: a reference Kafka Connect resolves
    from the worker's secrets file (its FileConfigProvider), so the REST API never shows the password. A
    Connect served elsewhere (docker compose), which has no such file, gets the password itself."""
    path = connect_secrets_file(s)
    return f"${{file:{path}:postgres_password}}" if path.exists() else s.postgres_password


def connector_config(s: LakehouseSettings) -> dict[str, str]:
    heartbeat = (f'INSERT INTO "{s.cdc_schema}".{HEARTBEAT_TABLE} (id, beat_at) VALUES (1, now()) '
                 "ON CONFLICT (id) DO UPDATE SET beat_at = excluded.beat_at")  # fmt: skip
    values = {**s.model_dump(mode="json"),
              "database_host": s.cdc_database_host or s.postgres_host, "slot_name": SLOT_NAME,
              "schema_include_list": ",".join(sorted({s.cdc_schema, *(a for a, _ in s.cdc_sources.values())})),
              "table_include_list": ",".join([*(f"{a}.{b}" for a, b in s.cdc_sources.values()),
                                              f"{s.cdc_schema}.{HEARTBEAT_TABLE}"]),
              "heartbeat_ms": HEARTBEAT_MS, "heartbeat_query": heartbeat, "postgres_password_ref": password_reference(s),
              "signal_table": f"{s.cdc_schema}.{SIGNAL_TABLE}"}  # fmt: skip
    # Each value goes inside a JSON string of the template: escaped, so quotes and backslashes survive.
    escaped = {k: json.dumps(str(v))[1:-1] for k, v in values.items()}
    return json.loads(Template(TEMPLATE.read_text()).substitute(escaped))


def connector_status(s: LakehouseSettings) -> dict:
    resp = rest(s).get(f"http://127.0.0.1:{s.connect_port}/connectors/{CONNECTOR_NAME}/status", timeout=10)
    return resp.json() if resp.status_code == 200 else {}


def ensure_connector(s: LakehouseSettings, log=print, timeout: float = 120.0) -> None:
    """Check the configured tables, PUT the configuration (creates or updates) and wait until the connector
    and its task run; then snapshot the tables added since the last configuration (those alone) and mark
    the removed ones as no longer captured (lakehouse/cdc/tables.py)."""
    from lakehouse.cdc.tables import (
        captured_before,
        captured_tables,
        check_tables,
        mark_captured,
        request_snapshot,
    )
    from lakehouse.cdc.workload import connect

    base = f"http://127.0.0.1:{s.connect_port}/connectors/{CONNECTOR_NAME}"
    check_tables(s)
    with connect(s) as conn:
        conn.execute(internal_tables_ddl(s.cdc_schema))
    current = rest(s).get(f"{base}/config", timeout=30)
    before = captured_tables(current.json() if current.status_code == 200 else None, s)
    resp = rest(s).put(f"{base}/config", json=connector_config(s), timeout=30)
    if resp.status_code not in (200, 201):
        raise StackError(f"Kafka Connect refused the Debezium connector: {resp.status_code} {resp.text[:500]}",
                         fix="read `lakehouse stack logs connect`; check lakehouse/cdc/connector.json")  # fmt: skip
    deadline = time.monotonic() + timeout
    state, restarted = {}, False
    while time.monotonic() < deadline:
        state = connector_status(s)
        tasks = state.get("tasks", [])
        if (
            state.get("connector", {}).get("state") == "RUNNING"
            and tasks
            and all(t["state"] == "RUNNING" for t in tasks)
        ):
            log(f"  connector {CONNECTOR_NAME} running ({len(s.cdc_table_list)} tables)")
            if before is not None:
                added = [t for t in s.cdc_table_list if t not in before]
                removed = [t for t in before if t not in s.cdc_table_list]
                returning = captured_before(s, added)  # captured before: a blocking snapshot
                for tables, blocking in (
                    (returning, True),
                    ([t for t in added if t not in returning], False),
                ):
                    if tables:
                        request_snapshot(s, tables, blocking=blocking, log=log)
                mark_captured(s, added, True, log=log)
                mark_captured(s, removed, False, log=log)
            return
        if state.get("connector", {}).get("state") in ("STOPPED", "PAUSED"):
            log(f"  connector {CONNECTOR_NAME} was {state['connector']['state'].lower()}; resuming it")
            rest(s).put(f"{base}/resume", timeout=30).raise_for_status()
            time.sleep(1)
            continue
        failed = [t for t in tasks if t["state"] == "FAILED"]
        if failed and not restarted:
            # A task that failed earlier (PostgreSQL gone for too long, say) stays FAILED until restarted.
            first = (failed[0].get("trace") or "?").splitlines()[0]
            log(f"  connector {CONNECTOR_NAME}: task failed ({first[:200]}); restarting it")
            rest(s).post(f"{base}/restart", params={"includeTasks": "true", "onlyFailed": "true"}, timeout=30)
            restarted = True
            time.sleep(3)
            continue
        if failed:
            trace = failed[0].get("trace", "").splitlines()
            raise StackError(f"the Debezium task failed again after a restart: {' | '.join(trace[:3])}",
                             fix="read `lakehouse stack logs connect`; check PostgreSQL and lakehouse/cdc/connector.json")  # fmt: skip
        time.sleep(1)
    raise StackError(f"connector {CONNECTOR_NAME} not running after {timeout:.0f}s: {state}",
                     fix="read `lakehouse stack logs connect`")  # fmt: skip


def resnapshot(s: LakehouseSettings, log=print) -> None:
    """Make Debezium snapshot every captured table again: stop the connector, drop its offsets, resume."""
    base = f"http://127.0.0.1:{s.connect_port}/connectors/{CONNECTOR_NAME}"
    rest(s).put(f"{base}/stop", timeout=30).raise_for_status()
    deadline = time.monotonic() + 60
    while connector_status(s).get("connector", {}).get("state") != "STOPPED":
        if time.monotonic() > deadline:
            raise StackError(
                "the connector did not stop within 60s", fix="read `lakehouse stack logs connect`"
            )
        time.sleep(0.5)
    resp = rest(s).delete(f"{base}/offsets", timeout=60)
    if resp.status_code not in (200, 204):
        raise StackError(f"Kafka Connect did not reset the connector's offsets: {resp.status_code} {resp.text[:300]}",
                         fix="read `lakehouse stack logs connect`")  # fmt: skip
    rest(s).put(f"{base}/resume", timeout=30).raise_for_status()
    log(f"  connector {CONNECTOR_NAME}: offsets reset, snapshotting again")
