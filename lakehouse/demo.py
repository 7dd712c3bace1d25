"""`lakehouse demo`: stack up, generate events, materialize the whole graph, print a summary."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date

from lakehouse import secrets_store
from lakehouse.executables import env_executable
from lakehouse.settings import LakehouseSettings
from lakehouse.stack.errors import StackError


def dagster_env(s: LakehouseSettings) -> dict[str, str]:
    """Environment for dagster commands: the stack's instance (storage in PostgreSQL, as the webserver's)."""
    from lakehouse.stack.dagster_services import ensure_instance, storage_environment

    ensure_instance(s)
    return {**os.environ, **storage_environment(s)}


# The whole graph but the lifecycle (archival, backups, drills), which runs on its own schedules: archiving
# the days just built would be refused (not expired), and a backup belongs after the data, not in it.
WHOLE_GRAPH = "not group:lifecycle"


def materialize_command(first: date, last: date, select: str = WHOLE_GRAPH) -> list[str]:
    return [env_executable("dagster") or "dagster", "asset", "materialize",
            "-m", "lakehouse.definitions", "--select", select,
            "--partition-range", f"{first.isoformat()}...{last.isoformat()}"]  # fmt: skip


PROGRESS_EVENTS = ("STEP_START", "STEP_SUCCESS", "STEP_FAILURE", "ASSET_CHECK_EVALUATION", "RUN_SUCCESS")


def materialize(s: LakehouseSettings, first: date, last: date, select: str = WHOLE_GRAPH) -> None:
    """Run `dagster asset materialize` for a partition range, showing each step as it goes."""
    cmd = materialize_command(first, last, select)
    print(f"materializing: {' '.join(cmd[1:])}", flush=True)
    log = s.home / "logs" / "materialize.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, env=dagster_env(s), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for line in proc.stdout:
            out.write(line)
            parts = [p.strip() for p in line.split(" - ")]
            event = next((e for e in PROGRESS_EVENTS if e in parts), None)
            if event:
                print(f"  {event}: {parts[-1][:140]}", flush=True)
            if "Error" in line or "FAILURE" in line:
                failures.append(line.rstrip())
        proc.wait()
    if proc.returncode != 0:
        raise StackError(
            "materialization failed:\n" + "\n".join(failures[-12:]),
            fix=f"read the full log at {log}; the services' logs are under {s.home / 'logs'}",
        )


def layer_counts(s: LakehouseSettings) -> dict[str, int]:
    """Events per layer, over all days: equal when every layer is up to date and nothing was lost."""
    from lakehouse.resources import LakeResource, TrinoResource

    lake, trino = LakeResource.from_settings(s), TrinoResource.from_settings(s)
    silver = lake.read("silver", "product_funnel_daily", columns=["events"])
    (gold,) = trino.query(
        f"SELECT coalesce(sum(events), 0) FROM {trino.catalog}.{lake.schema('gold')}.daily_funnel"
    )
    return {
        "raw (messages)": lake.read("raw", "clickstream_events", columns=["offset"]).num_rows,
        "dead letters": lake.read("bronze", "clickstream_dead_letters", columns=["offset"]).num_rows,
        "bronze (events)": lake.read("bronze", "clickstream_events", columns=["event_id"]).num_rows,
        "silver (events)": sum(silver.column("events").to_pylist()),
        "gold (events)": int(gold[0]),
        "silver orders (CDC)": _live_rows(lake, "orders"),
    }


def gold_summary(s: LakehouseSettings) -> list[str]:
    """A line per gold mart: its rows, and a headline figure."""
    from lakehouse.resources import TrinoResource

    trino = TrinoResource.from_settings(s)
    gold = f"{trino.catalog}.{s.schema('gold')}"
    queries = {
        "daily_kpis": f"SELECT count(*), round(avg(conversion_rate), 3) FROM {gold}.daily_kpis",
        "product_ctr": f"SELECT count(*), round(sum(clicks) * 1.0 / nullif(sum(impressions), 0), 3) FROM {gold}.product_ctr",
        "cart_abandonment": f"SELECT count(*), round(avg(abandonment_rate), 3) FROM {gold}.cart_abandonment",
        "suspicious_purchases": f"SELECT count(*), count(DISTINCT user_id) FROM {gold}.suspicious_purchases",
        "merchant_sales_daily": f"SELECT count(*), sum(revenue) FROM {gold}.merchant_sales_daily",
        "customer_lifetime_value": f"SELECT count(*), max(lifetime_value) FROM {gold}.customer_lifetime_value",
    }
    labels = {"daily_kpis": "mean conversion", "product_ctr": "click-through", "cart_abandonment": "mean abandonment",
              "suspicious_purchases": "users", "merchant_sales_daily": "revenue", "customer_lifetime_value": "top value"}  # fmt: skip
    lines = []
    for table, sql in queries.items():
        rows, figure = trino.query(sql)[0]
        lines.append(f"{table:<24} {rows:>7} rows   {labels[table]} {figure}")
    return lines


def realtime_summary(s: LakehouseSettings, events: int = 3000) -> list[str]:
    """Live traffic through the stream jobs into Pinot, and what a merchant's dashboard shows."""
    from datetime import UTC, datetime, timedelta

    from lakehouse.generator.clickstream import GeneratorConfig, encode, generate_events, produce
    from lakehouse.realtime import flink
    from lakehouse.realtime.pinot import PinotClient, merchant_sales_sql, top_ctr_sql

    live = generate_events(GeneratorConfig(events=events, days=1))
    live.sort(key=lambda e: e["event_time"])  # live traffic arrives about in event-time order
    produce(s, s.events_topic, encode(live), progress=False)
    client = PinotClient.from_settings(s)
    ctr, orders, alerts = (s.pinot_table(n) for n in ("product_ctr", "merchant_orders", "purchase_alerts"))
    deadline = time.monotonic() + 180
    while client.count(ctr) == 0 and time.monotonic() < deadline:
        time.sleep(2)
    since = int((datetime.now(UTC) - timedelta(minutes=15)).timestamp() * 1000)
    sales = client.query(merchant_sales_sql(orders, since, limit=3))
    top = client.query(top_ctr_sql(ctr, since_ms=0, min_impressions=10, limit=3))
    lines = [f"sent {len(live)} live events (the last day, in event-time order) to {s.events_topic}"]
    lines += [f"{j.name:<22} {flink.problem(s, j) or 'running'}" for j in flink.FLINK_JOBS]
    lines.append(
        f"Pinot rows: {client.count(ctr)} product-minutes of CTR, {client.count(orders)} orders, "
        f"{client.count(alerts)} alerts"
    )
    lines.append("sales of the last 15 minutes: " + (", ".join(
        f"merchant {m} {total:.2f} ({n} orders)" for m, total, n in sales) or "none"))  # fmt: skip
    lines.append(
        "top click-through: " + (", ".join(f"product {p} {c / i:.3f}" for p, c, i in top) or "none yet")
    )
    return lines


def dashboard_summary(s: LakehouseSettings) -> list[str]:
    """Each dashboard the run imported: its URL (from its asset's last materialization) and charts."""
    import warnings

    import dagster as dg

    with warnings.catch_warnings():  # the asset definitions' beta parameters, not news to a demo's reader
        warnings.simplefilter("ignore")
        from lakehouse.bi.assets import dashboard_assets

    instance = dg.DagsterInstance.from_config(dagster_env(s)["DAGSTER_HOME"])
    lines = []
    for asset in dashboard_assets:
        event = instance.get_latest_materialization_event(asset.key)
        if event is None or event.asset_materialization is None:
            lines.append(f"{asset.key.to_user_string():<22} not imported")
            continue
        meta = event.asset_materialization.metadata
        lines.append(f"{asset.key.to_user_string():<22} {meta['url'].value}  ({meta['charts'].value} charts)")
    lines.append(f"log in as {s.superset_admin_user} (LAKEHOUSE_SUPERSET_ADMIN_USER / _PASSWORD)")
    return lines


def _live_rows(lake, table: str) -> int:
    from lakehouse.cdc.apply import current_state

    silver = lake.table("silver", table)
    return current_state(silver).num_rows if silver is not None else 0


def run_demo(s: LakehouseSettings, events: int, days: int) -> int:
    from lakehouse.generator.clickstream import DeliveryConfig, GeneratorConfig, produce_events
    from lakehouse.stack import manager

    t0 = time.monotonic()
    manager.up(s)
    print(f"generating {events} clickstream events over {days} days ...", flush=True)
    # A realistic stream: a few repeated deliveries, late arrivals and malformed messages.
    delivery = DeliveryConfig(duplicate_share=0.01, malformed_share=0.005, late_share=0.01)
    summary = produce_events(
        s, GeneratorConfig(events=events, days=days), topic=s.events_topic, delivery=delivery
    )
    first, last = summary.first_day, summary.last_day
    from lakehouse.cdc.pipeline import wait_for_capture
    from lakehouse.cdc.workload import run_workload

    print("running 300 OLTP transactions on PostgreSQL (captured by Debezium) ...", flush=True)
    run_workload(s, operations=300, progress=False)
    wait_for_capture(s)
    materialize(s, first, last)
    counts = layer_counts(s)
    print("\nrows per layer:")
    for layer, n in counts.items():
        print(f"  {layer:<20} {n:>9}")
    from lakehouse.resources import PostgresResource

    source_orders = len(PostgresResource.from_settings(s).rows("orders"))
    print(f"  {'postgres orders':<20} {source_orders:>9}")
    print("\ngold (Trino):")
    for line in gold_summary(s):
        print(f"  {line}")
    print("\nreal time (Flink -> Kafka -> Pinot):", flush=True)
    for line in realtime_summary(s):
        print(f"  {line}")
    print("\ndashboards (Superset, imported by the bi/* assets of this run):", flush=True)
    for line in dashboard_summary(s):
        print(f"  {line}")
    print("\nopen:")
    print(f"  Dagster UI    make ui  ->  http://127.0.0.1:{s.dagster_port}")
    print(f"  dbt docs      make docs  ->  http://127.0.0.1:{s.docs_port}  (built at {s.docs_dir})")
    print(f"  Pinot         {s.pinot_controller_url}  (query console; broker {s.pinot_broker_url})")
    layers = ", ".join(s.schema(layer) for layer in ("raw", "bronze", "silver", "gold"))
    print(f"  Trino         https://{s.trino_host}:{s.trino_port}/ui/  (catalog {s.trino_catalog} in the Hive "
          f"Metastore at {s.metastore_uri}, schemas {layers}; principals: `lakehouse security principals`, "
          f"passwords in {secrets_store.secrets_path()})")  # fmt: skip
    print(f"  Object store  {s.s3_endpoint}  (bucket {s.bucket})")
    print(f"  Superset      {s.superset_url}  (dashboards above; SQL Lab over the gold and Pinot databases)")
    # Raw keeps every message; the checks of this run proved each is a bronze event, a dead letter
    # or a repeated delivery. From bronze on, every layer must hold every event.
    events_per_layer = {counts["bronze (events)"], counts["silver (events)"], counts["gold (events)"]}
    if (
        len(events_per_layer) != 1
        or counts["raw (messages)"] < counts["bronze (events)"] + counts["dead letters"]
        or counts["silver orders (CDC)"] != source_orders
    ):
        print(f"demo: FAILED, layer counts do not add up: {counts}", file=sys.stderr)
        return 1
    print(f"demo: OK ({counts['gold (events)']} events from Kafka to gold, {source_orders} orders mirrored from "
          f"PostgreSQL, in {time.monotonic() - t0:.0f}s)")  # fmt: skip
    return 0
