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


def connector_config(s: LakehouseSettings) -> dict[str, str]:
    values = {**s.model_dump(mode="json"),
              "database_host": s.cdc_database_host or s.postgres_host, "slot_name": SLOT_NAME,
              "table_include_list": ",".join(f"{s.cdc_schema}.{t}" for t in s.cdc_table_list)}  # fmt: skip
    # Each value goes inside a JSON string of the template: escaped, so quotes and backslashes survive.
    escaped = {k: json.dumps(str(v))[1:-1] for k, v in values.items()}
    return json.loads(Template(TEMPLATE.read_text()).substitute(escaped))


def connector_status(s: LakehouseSettings) -> dict:
    resp = requests.get(f"http://127.0.0.1:{s.connect_port}/connectors/{CONNECTOR_NAME}/status", timeout=10)
    return resp.json() if resp.status_code == 200 else {}


def ensure_connector(s: LakehouseSettings, log=print, timeout: float = 120.0) -> None:
    """PUT the configuration (creates or updates) and wait until the connector and its task run."""
    base = f"http://127.0.0.1:{s.connect_port}/connectors/{CONNECTOR_NAME}"
    resp = requests.put(f"{base}/config", json=connector_config(s), timeout=30)
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
            return
        if state.get("connector", {}).get("state") in ("STOPPED", "PAUSED"):
            log(f"  connector {CONNECTOR_NAME} was {state['connector']['state'].lower()}; resuming it")
            requests.put(f"{base}/resume", timeout=30).raise_for_status()
            time.sleep(1)
            continue
        failed = [t for t in tasks if t["state"] == "FAILED"]
        if failed and not restarted:
            # A task that failed earlier (PostgreSQL gone for too long, say) stays FAILED until restarted.
            first = (failed[0].get("trace") or "?").splitlines()[0]
            log(f"  connector {CONNECTOR_NAME}: task failed ({first[:200]}); restarting it")
            requests.post(
                f"{base}/restart", params={"includeTasks": "true", "onlyFailed": "true"}, timeout=30
            )
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
    requests.put(f"{base}/stop", timeout=30).raise_for_status()
    deadline = time.monotonic() + 60
    while connector_status(s).get("connector", {}).get("state") != "STOPPED":
        if time.monotonic() > deadline:
            raise StackError(
                "the connector did not stop within 60s", fix="read `lakehouse stack logs connect`"
            )
        time.sleep(0.5)
    resp = requests.delete(f"{base}/offsets", timeout=60)
    if resp.status_code not in (200, 204):
        raise StackError(f"Kafka Connect did not reset the connector's offsets: {resp.status_code} {resp.text[:300]}",
                         fix="read `lakehouse stack logs connect`")  # fmt: skip
    requests.put(f"{base}/resume", timeout=30).raise_for_status()
    log(f"  connector {CONNECTOR_NAME}: offsets reset, snapshotting again")
