"""Events produced to Kafka arrive unchanged in every layer, raw to gold, on the live stack."""

from __future__ import annotations

import subprocess
from collections import defaultdict
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

import pytest

from lakehouse.demo import dagster_env, materialize_command
from lakehouse.generator.clickstream import GeneratorConfig, encode, event_day, generate_events, produce
from lakehouse.resources import LakeResource, TrinoResource

pytestmark = pytest.mark.stack

EVENTS = 4000
END = datetime(2026, 3, 18, 15, 30, tzinfo=UTC)


def expected_daily_funnel(events: list[dict]) -> dict:
    """The gold table, computed independently from the produced events."""
    steps = {"impression": "impressions", "click": "clicks", "add_to_cart": "add_to_carts",
             "checkout_started": "checkouts", "purchase": "purchases"}  # fmt: skip
    days: dict = defaultdict(lambda: defaultdict(Decimal))
    for e in events:
        day = days[event_day(e)]
        day["events"] += 1
        if e["event_type"] in steps:
            day[steps[e["event_type"]]] += 1
        if e["event_type"] == "purchase":
            day["units_sold"] += e["quantity"]
            day["revenue"] += Decimal(str(e["price"])) * e["quantity"]
    return days


@pytest.fixture(scope="module")
def produced(namespace):
    events = generate_events(GeneratorConfig(events=EVENTS, days=3, seed=42, end=END))
    produce(namespace.settings, namespace.settings.events_topic, encode(events), progress=False)
    days = sorted({event_day(e) for e in events})
    cmd = materialize_command(days[0], days[-1])
    env = {**dagster_env(namespace.settings), **namespace.env}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    return events


def test_every_layer_holds_every_event(namespace, produced):
    lake = LakeResource.from_settings(namespace.settings)
    trino = TrinoResource.from_settings(namespace.settings)
    raw = lake.read("raw", "clickstream_events")
    bronze = lake.read("bronze", "clickstream_events", columns=["event_id"])
    silver = lake.read("silver", "product_funnel_daily", columns=["events"])
    (gold,) = trino.query(f"SELECT sum(events) FROM delta.{lake.schema('gold')}.daily_funnel")
    assert raw.num_rows == EVENTS
    assert set(raw.column("topic").to_pylist()) == {namespace.settings.events_topic}
    assert bronze.num_rows == EVENTS
    assert set(bronze.column("event_id").to_pylist()) == {e["event_id"] for e in produced}
    assert sum(silver.column("events").to_pylist()) == EVENTS
    assert gold[0] == EVENTS


def test_gold_equals_independent_aggregate(namespace, produced):
    lake = LakeResource.from_settings(namespace.settings)
    trino = TrinoResource.from_settings(namespace.settings)
    rows = trino.query(
        "SELECT event_date, events, impressions, clicks, add_to_carts, checkouts, purchases, units_sold, revenue "
        f"FROM delta.{lake.schema('gold')}.daily_funnel ORDER BY event_date"
    )
    expected = expected_daily_funnel(produced)
    assert [r[0] for r in rows] == sorted(expected)
    cols = ["events", "impressions", "clicks", "add_to_carts", "checkouts", "purchases", "units_sold"]
    for row in rows:
        want = expected[row[0]]
        assert dict(zip(cols, row[1:8], strict=True)) == {c: int(want[c]) for c in cols}, row[0]
        cents = want["revenue"].quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        assert abs(row[8] - cents) <= Decimal("0.01"), (row[0], row[8], cents)


def test_rematerializing_lands_nothing_twice(namespace, produced):
    """A second run finds no new offsets: the table's recorded offsets, not the consumer group, decide."""
    from lakehouse.ingest.landing import land_topic, raw_target
    from lakehouse.resources import KafkaResource

    lake = LakeResource.from_settings(namespace.settings)
    kafka = KafkaResource(bootstrap_servers=namespace.settings.kafka_bootstrap,
                          events_topic=namespace.settings.events_topic)  # fmt: skip
    uri = lake.table_uri("raw", "clickstream_events")
    target = raw_target(uri, lake.storage_options, kafka.events_topic, "lakehouse-raw")
    result = land_topic(kafka, target, log=lambda _: None)
    assert result.rows == 0
    assert lake.read("raw", "clickstream_events", columns=["offset"]).num_rows == EVENTS


def test_gold_assets_carry_column_lineage(namespace, produced):
    """The dbt assets record which upstream columns each gold column comes from (in the run's instance)."""
    import dagster as dg

    env = dagster_env(namespace.settings)
    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    event = instance.get_latest_materialization_event(dg.AssetKey(["gold", "daily_kpis"]))
    lineage = event.asset_materialization.metadata["dagster/column_lineage"].value
    assert {d.asset_key.path[-1] for d in lineage.deps_by_column["active_users"]} == {"stg_silver__sessions"}
    staging = instance.get_latest_materialization_event(dg.AssetKey(["gold", "stg_silver__sessions"]))
    deps = staging.asset_materialization.metadata["dagster/column_lineage"].value.deps_by_column["session_id"]
    assert {d.asset_key.to_user_string() for d in deps} == {"silver/sessions"}


MARTS = ("daily_funnel", "daily_kpis", "product_ctr", "cart_abandonment", "suspicious_purchases",
         "merchant_sales_daily", "customer_lifetime_value")  # fmt: skip


def test_dbt_docs_site_shows_gold_models_and_lineage(namespace, produced):
    """The site the pipeline built, served as `make docs` serves it, opened in headless Chromium."""
    import shutil
    import socket
    import threading

    from lakehouse.warehouse.serve_docs import docs_server

    chromium = shutil.which("chromium")
    assert chromium, "Chromium is installed by `make setup` (scripts/system-deps.sh)"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server, url = docs_server(namespace.settings, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    page = f"{url}#!/model/model.lakehouse.daily_kpis?g_v=1"  # the model page with its lineage graph open
    browser = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--window-size=1400,900", "--virtual-time-budget=15000"]  # fmt: skip
    artifacts = namespace.settings.home / "test-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "dbt-docs-lineage.png"
    try:
        dom = subprocess.run(
            [*browser, "--dump-dom", page], capture_output=True, text=True, timeout=120
        ).stdout
        subprocess.run([*browser, f"--screenshot={shot}", page], capture_output=True, timeout=120, check=True)
    finally:
        server.shutdown()
        server.server_close()
    missing = [m for m in MARTS if m not in dom]
    assert not missing, f"gold models missing from the docs site: {missing}"
    assert "Lineage Graph" in dom and 'data-id="layer2-node"' in dom, "the lineage graph did not render"
    assert "stg_silver__sessions" in dom, "the site should list daily_kpis' upstream model"
    assert shot.stat().st_size > 20_000, "the screenshot should show the graph"
    print(f"\ndbt docs screenshot: {shot}")


def test_every_layer_is_queryable_in_trino_and_follows_schema_evolution(namespace, produced):
    """raw (its bytes also as text), bronze and its dead letters, the CDC change logs and silver, the batch
    silver and gold: each in the Trino schema named after its layer, registered by the run that wrote it.
    A new bronze column shows in Trino after the next run, with no step of its own."""
    import dagster as dg

    from lakehouse.ingest.assets import bronze_clickstream, raw_clickstream_events
    from lakehouse.resources import build_resources

    s = namespace.settings
    lake, trino = LakeResource.from_settings(s), TrinoResource.from_settings(s)

    def count(layer: str, table: str, where: str = "true") -> int:
        return trino.query(f"SELECT count(*) FROM {trino.qualified(lake, layer, table)} WHERE {where}")[0][0]

    assert count("raw", "clickstream_events") == EVENTS
    assert (
        count("raw", "clickstream_events_text", "json_extract_scalar(value, '$.event_id') IS NOT NULL")
        == EVENTS
    )
    assert count("bronze", "clickstream_events") == EVENTS
    assert count("bronze", "clickstream_dead_letters") == 0
    for table in s.cdc_table_list:  # the change logs and the current state the same run landed
        assert count("raw", f"cdc_{table}") == lake.read("raw", f"cdc_{table}", columns=["offset"]).num_rows
        assert count("silver", table) == lake.read("silver", table, columns=["_cdc_lsn"]).num_rows
    assert count("silver", "product_funnel_daily") > 0 and count("gold", "daily_funnel") > 0

    event = {**produced[0], "event_id": "schema-evolution-probe", "coupon_code": "WELCOME10"}
    produce(s, s.events_topic, encode([event]), progress=False)
    run = dg.materialize([raw_clickstream_events, bronze_clickstream], resources=build_resources(s))
    assert run.success
    columns = {
        r[0]: r[1] for r in trino.query(f"DESCRIBE {trino.qualified(lake, 'bronze', 'clickstream_events')}")
    }
    assert columns.get("coupon_code") == "varchar", columns
    assert trino.query(f"SELECT coupon_code FROM {trino.qualified(lake, 'bronze', 'clickstream_events')} "
                       "WHERE event_id = 'schema-evolution-probe'") == [("WELCOME10",)]  # fmt: skip
