"""Events produced to Kafka arrive unchanged in every layer, raw to gold, on the live stack."""

from __future__ import annotations

import subprocess
from collections import defaultdict
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

import pytest
from conftest import wait_until
from dagster_namespace import Instance
from top_rows import a_valid_top

from lakehouse.demo import materialize_command
from lakehouse.generator.clickstream import (
    GeneratorConfig,
    encode,
    event_day,
    generate_events,
    produce,
    stamped_now,
)
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
def ns_dagster(namespace, tmp_path_factory):
    """The namespace's production-shaped Dagster instance; its code server (started by the automation test)
    refreshes today's partition every minute."""
    inst = Instance(namespace, tmp_path_factory.mktemp("dagster"), LAKEHOUSE_INTRADAY_CRON="* * * * *")
    try:
        yield inst
    finally:
        inst.close()


@pytest.fixture(scope="module")
def produced(namespace, ns_dagster):
    """The README's first run in the namespace: the whole graph for the produced days, recorded in the
    namespace's instance."""
    from lakehouse.cdc.pipeline import wait_for_capture
    from lakehouse.cdc.workload import run_workload

    events = generate_events(GeneratorConfig(events=EVENTS, days=3, seed=42, end=END))
    produce(namespace.settings, namespace.settings.events_topic, encode(events), progress=False)
    run_workload(namespace.settings, operations=100, progress=False)  # as `make demo` does: the source's
    wait_for_capture(namespace.settings)  # change topics exist for the Pinot table that reads orders
    days = sorted({event_day(e) for e in events})
    cmd = materialize_command(days[0], days[-1])
    env = ns_dagster.env
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
    kafka = KafkaResource.from_settings(namespace.settings)  # fmt: skip
    uri = lake.table_uri("raw", "clickstream_events")
    target = raw_target(uri, lake.storage_options, kafka.events_topic, "lakehouse-raw")
    result = land_topic(kafka, target, log=lambda _: None)
    assert result.rows == 0
    assert lake.read("raw", "clickstream_events", columns=["offset"]).num_rows == EVENTS


def test_gold_assets_carry_column_lineage(namespace, produced, ns_dagster):
    """The dbt assets record which upstream columns each gold column comes from (in the run's instance)."""
    import dagster as dg

    with ns_dagster.instance() as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey(["gold", "daily_kpis"]))
        staging = instance.get_latest_materialization_event(dg.AssetKey(["gold", "stg_silver__sessions"]))
    lineage = event.asset_materialization.metadata["dagster/column_lineage"].value
    assert {d.asset_key.path[-1] for d in lineage.deps_by_column["active_users"]} == {"stg_silver__sessions"}
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


# ---------------------------------------------------------------------------------------------------------
# Dashboards: the same run imported both Superset dashboards (bi/*) in this namespace, from Kafka to chart.


def _superset(s):
    from lakehouse.bi.superset_api import SupersetClient

    return SupersetClient(s.superset_url, s.superset_admin_user, s.superset_admin_password)


def _bundle_files(s) -> dict[str, str]:
    from lakehouse.bi import bundle

    return bundle.read_zip(LakeResource.from_settings(s).get_object("bi/superset_bundle.zip"))


def _ours(s, export: dict[str, str]) -> dict[str, str]:
    """Superset's exported files of this namespace's objects (by the bundle's UUIDs)."""
    import yaml

    uuids = {str(yaml.safe_load(t).get("uuid")) for t in _bundle_files(s).values()} - {"None"}
    return {p: t for p, t in export.items() if str(yaml.safe_load(t).get("uuid")) in uuids}


def _boards(s) -> dict[str, dict]:
    import json

    from lakehouse.bi import bundle
    from lakehouse.bi.definitions import load_definitions
    from lakehouse.warehouse.assets import dbt_project

    defs = load_definitions(json.loads(dbt_project.manifest_path.read_text()))
    client = _superset(s)
    out = {}
    for key, board in defs.dashboards.items():
        found = client.dashboard(bundle.slug(s, board))
        assert found is not None, f"dashboard {board.title} was not imported"
        out[key] = {**found, "charts": client.dashboard_charts(found["id"]), "definition": board,
                    "datasets": defs.datasets}  # fmt: skip
    return out


@pytest.fixture(scope="module")
def live_orders(namespace, produced):
    """Orders placed in the last minutes (the merchant dashboard charts the last 15), and three purchase
    alerts on the fraud job's output topic (as the job writes them; its own input here is too old to flag
    anything now), all seen by Pinot."""
    import json
    import time

    from lakehouse.cdc.workload import run_workload
    from lakehouse.generator.clickstream import Message
    from lakehouse.realtime.pinot import PinotClient

    s = namespace.settings
    since_ms = int(time.time() * 1000)
    run_workload(s, 60, rate=30, progress=False)
    now_ms = int(time.time() * 1000)
    alerts = [{"event_id": f"bi-alert-{i}", "user_id": 900 + i, "product_id": 7, "merchant_id": 3,
               "reason": ("burst", "amount")[i % 2], "amount": 250.0 + i, "usual_amount": 40.0,
               "purchases_in_window": 5, "event_time_ms": now_ms - i * 1000} for i in range(3)]  # fmt: skip
    produce(s, s.realtime_topic("purchase_alerts"),
            [Message(str(a["user_id"]).encode(), json.dumps(a).encode(), "event") for a in alerts], progress=False,
            client="admin")  # fmt: skip  # the stream job's topic: the test writes as the admin
    pinot = PinotClient.from_settings(s)
    wait_until(lambda: _pinot_orders(pinot, s, since_ms) == _source_orders(s, since_ms), 120,
               "Pinot's merchant_orders to hold the orders just placed as the source does (count and total)")  # fmt: skip
    assert pinot.count(s.pinot_table("merchant_orders"), "WHERE created_at > now() - 300000") > 0
    wait_until(lambda: pinot.count(s.pinot_table("purchase_alerts"), "WHERE event_id LIKE 'bi-alert-%'") == 3,
               120, "the alerts in Pinot's purchase_alerts")  # fmt: skip


def _source_orders(s, since_ms: int) -> tuple[int, float]:
    """The source's orders created since `since_ms` as (count, total): what Pinot's upserted table must show
    once it caught up (a chart over now() compared while CDC still delivers would compare two moments).
    Only those: earlier test modules delete rows while the capture is down, deletes Pinot never sees."""
    from lakehouse.cdc.workload import connect

    with connect(s) as conn:
        count, total = conn.execute(
            "SELECT count(*), coalesce(sum(total), 0) FROM orders WHERE created_at >= to_timestamp(%s / 1000.0)",
            (since_ms,),
        ).fetchone()
    return count, round(float(total), 2)


def _pinot_orders(pinot, s, since_ms: int) -> tuple[int, float]:
    rows = pinot.query(f"SELECT COUNT(*), SUM(total) FROM {s.pinot_table('merchant_orders')} "
                       f"WHERE is_deleted = 0 AND created_at >= {since_ms}")  # fmt: skip
    return (rows[0][0], round(float(rows[0][1] or 0), 2)) if rows else (0, 0.0)


def test_both_database_uris_connect_inside_the_superset_environment(namespace, produced):
    """The bundle's SQLAlchemy URIs, opened with Superset's own drivers in bi/.venv (SQLAlchemy 1.4)."""
    import json
    import os

    from lakehouse.bi import bundle
    from lakehouse.bi.definitions import Database
    from lakehouse.security import tls
    from lakehouse.settings import REPO_ROOT

    s = namespace.settings
    gold, rt = (
        Database("gold", "gold", "trino", "trino_bi_password"),
        Database("rt", "rt", "pinot", "pinot_reader_password"),
    )
    probes = [  # as Superset connects: its principals, their passwords, Trino over HTTPS
        (gold, f"SELECT count(*) FROM {s.schema('gold')}.daily_kpis"),
        (rt, f"SELECT COUNT(*) FROM {s.pinot_table('merchant_orders')}"),
    ]  # fmt: skip
    script = (
        "import json, sys, sqlalchemy\n"
        "engine = sqlalchemy.create_engine(sys.argv[1], connect_args=json.loads(sys.argv[3]))\n"
        "with engine.connect() as c: print(sqlalchemy.__version__, c.execute(sqlalchemy.text(sys.argv[2])).scalar())\n"
    )
    env = {**os.environ, **tls.requests_environment(tls.paths(s.tls_dir).trust)}
    for db, sql in probes:
        uri = bundle.sqlalchemy_uri(s, db, bundle.password(s, db))
        connect_args = bundle.database_extra(s, db).get("engine_params", {}).get("connect_args", {})
        proc = subprocess.run([str(REPO_ROOT / "bi" / ".venv" / "bin" / "python"), "-c", script, uri, sql,
                               json.dumps(connect_args)], capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
        assert proc.returncode == 0, f"{db.engine}: {proc.stderr[-2000:]}"
        version, count = proc.stdout.split()
        assert version.startswith("1.4.") and int(count) > 0, (db.engine, proc.stdout)


def test_the_run_imported_both_dashboards_with_every_chart(namespace, produced):
    boards = _boards(namespace.settings)
    for board in boards.values():
        names = sorted(c["slice_name"] for c in board["charts"])
        assert names == sorted(c.name for c in board["definition"].charts), board["dashboard_title"]


def _normal(value):
    """One spelling for a value from Superset's JSON and from a driver: numbers rounded, times as epoch ms."""
    from datetime import date

    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        return round(value.timestamp() * 1000)
    if isinstance(value, date):
        return round(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp() * 1000)
    return round(float(value), 6)


def test_every_chart_returns_the_rows_of_its_query_run_directly(namespace, produced, live_orders):
    """For each chart: `GET /api/v1/chart/{id}/data/` (the saved query_context) against the SQL Superset
    generates for it, run straight on Trino or Pinot. Charts over a moving window (now()) get a retry; where
    rows tie at a chart's row limit, any of the tied rows is a right answer (checked against the query
    without its limit)."""
    import re

    from lakehouse.realtime.pinot import PinotClient

    s = namespace.settings
    client, trino, pinot = _superset(s), TrinoResource.from_settings(s), PinotClient.from_settings(s)
    compared = {}
    for board in _boards(s).values():
        datasets = {c.name: c for c in board["definition"].charts}
        for chart in board["charts"]:
            definition = datasets[chart["slice_name"]]
            run = pinot.query if board["datasets"][definition.dataset].engine == "pinot" else trino.query
            for _attempt in range(3):
                result = client.chart_data(chart["id"])["result"][0]
                sql = client.chart_query(chart["id"]).strip().rstrip(";")
                via_superset = sorted(
                    tuple(_normal(r[c]) for c in result["colnames"]) for r in result["data"]
                )
                straight = sorted(tuple(_normal(v) for v in row) for row in run(sql))
                if via_superset == straight or not (definition.where and "now()" in definition.where):
                    break
            if via_superset != straight and definition.metrics and (limit := re.search(r"LIMIT (\d+)$", sql)):
                target = definition.order_by[0] if definition.order_by else definition.metrics[0].label
                full = [tuple(_normal(v) for v in row) for row in run(sql[: limit.start()])]
                ok = a_valid_top(via_superset, full, result["colnames"].index(target), int(limit.group(1)))
                assert ok, (
                    f"{chart['slice_name']}: Superset's rows are not a top {limit.group(1)} of the query"
                )
            else:
                assert via_superset == straight, (
                    f"{chart['slice_name']}: Superset and the direct query differ"
                )
            assert via_superset, f"{chart['slice_name']} has no rows"
            compared[chart["slice_name"]] = len(via_superset)
    assert len(compared) == 12, compared
    # And against independent SQL on gold: the headline number and the funnel's first and last steps.
    gold = s.schema("gold")
    (revenue,) = trino.query(f"SELECT sum(revenue) FROM {gold}.daily_kpis")[0]
    boards = _boards(s)
    chart = next(c for c in boards["management_daily"]["charts"] if c["slice_name"] == "Revenue, all days")
    assert _normal(client.chart_data(chart["id"])["result"][0]["data"][0]["SUM(revenue)"]) == _normal(revenue)
    funnel = next(c for c in boards["management_daily"]["charts"] if c["slice_name"] == "Conversion funnel")
    steps = {r["step"]: r["SUM(events)"] for r in client.chart_data(funnel["id"])["result"][0]["data"]}
    impressions, purchases = trino.query(f"SELECT sum(impressions), sum(purchases) FROM {gold}.daily_funnel")[
        0
    ]
    assert (steps["1 impressions"], steps["5 purchase"]) == (impressions, purchases)


def test_a_second_import_changes_nothing_and_drift_is_reported(namespace, produced):
    """Re-running the bundle and the imports leaves Superset's export of our objects byte for byte; a chart
    edited through Superset's API (as the UI does) is reported by the drift check, and the next import
    puts the repository's version back."""
    import json

    import dagster as dg

    from lakehouse.bi import assets as bi_assets
    from lakehouse.bi import bundle
    from lakehouse.bi.drift import differences
    from lakehouse.resources import build_resources

    s = namespace.settings
    client = _superset(s)
    before = _ours(s, bundle.read_zip(client.export_all()))
    ids_before = {k: (b["id"], sorted(c["id"] for c in b["charts"])) for k, b in _boards(s).items()}
    run = dg.materialize(
        [bi_assets.superset_bundle, *bi_assets.dashboard_assets], resources=build_resources(s)
    )
    assert run.success
    assert _ours(s, bundle.read_zip(client.export_all())) == before
    assert {k: (b["id"], sorted(c["id"] for c in b["charts"])) for k, b in _boards(s).items()} == ids_before

    chart = next(c for c in _boards(s)["management_daily"]["charts"] if c["slice_name"] == "KPIs trend")
    params = json.loads(client.get(f"/api/v1/chart/{chart['id']}", "read a chart").json()["result"]["params"])
    params["row_limit"] = 7
    answer = client.session.put(
        f"{s.superset_url}/api/v1/chart/{chart['id']}", json={"params": json.dumps(params)}
    )
    assert answer.status_code == 200, answer.text
    part = bundle.dashboard_files(_bundle_files(s), "management_daily")
    found = differences(part, bundle.read_zip(client.export_all()))
    assert found == ["chart 'KPIs trend': params.row_limit is 7 in Superset, 1000 in the repository"], found
    management = next(a for a in bi_assets.dashboard_assets if a.key.path[-1] == "management_daily")
    assert dg.materialize([management], resources=build_resources(s)).success
    assert differences(part, bundle.read_zip(client.export_all())) == []


def test_a_chart_removed_from_the_definitions_leaves_the_dashboard(namespace, produced):
    """Import a bundle built from the definitions less one chart: the dashboard loses it; the repository's
    bundle brings it back."""
    import dataclasses
    import json

    from lakehouse.bi import bundle
    from lakehouse.bi.definitions import load_definitions
    from lakehouse.warehouse.assets import dbt_project

    s = namespace.settings
    client = _superset(s)
    defs = load_definitions(json.loads(dbt_project.manifest_path.read_text()))
    board = defs.dashboards["merchant_live"]
    fewer = dataclasses.replace(board, charts=tuple(c for c in board.charts if c.name != "Fraud alerts"))
    smaller = dataclasses.replace(defs, dashboards={**defs.dashboards, "merchant_live": fewer})
    part = bundle.dashboard_files(bundle.build_files(smaller, s), "merchant_live")
    client.import_bundle(bundle.zip_bytes(part), {})
    names = {c["slice_name"] for c in _boards(s)["merchant_live"]["charts"]}
    assert "Fraud alerts" not in names and len(names) == 4
    client.import_bundle(bundle.zip_bytes(bundle.dashboard_files(_bundle_files(s), "merchant_live")), {})
    assert "Fraud alerts" in {c["slice_name"] for c in _boards(s)["merchant_live"]["charts"]}


def test_a_failed_import_leaves_the_dashboards_as_they_were(namespace, produced):
    """A bundle whose first dataset is redescribed and whose dashboard is retitled, but whose last chart points
    at a dataset the bundle lacks: Superset imports datasets before charts, so the dataset was written when the
    chart failed; the import is one transaction, so Superset refuses it, names why, and nothing changed."""
    import yaml

    from lakehouse.bi import bundle
    from lakehouse.bi.superset_api import SupersetError

    s = namespace.settings
    client = _superset(s)
    before = _ours(s, bundle.read_zip(client.export_all()))
    part = bundle.dashboard_files(_bundle_files(s), "management_daily")
    board_path = next(p for p in part if p.startswith("dashboards/"))
    board = yaml.safe_load(part[board_path])
    board["dashboard_title"] = "Retitled by a broken import"
    part[board_path] = yaml.safe_dump(board)
    dataset_path = sorted(p for p in part if p.startswith("datasets/"))[0]  # imported before any chart
    dataset = yaml.safe_load(part[dataset_path])
    dataset["description"] = "changed by a broken import"
    part[dataset_path] = yaml.safe_dump(dataset)
    chart_path = sorted(p for p in part if p.startswith("charts/"))[-1]
    chart = yaml.safe_load(part[chart_path])
    chart["dataset_uuid"] = "00000000-0000-4000-8000-000000000000"
    part[chart_path] = yaml.safe_dump(chart)
    with pytest.raises(SupersetError) as err:
        client.import_bundle(bundle.zip_bytes(part), {})
    assert "import the bundle" in err.value.problem
    assert _ours(s, bundle.read_zip(client.export_all())) == before


def test_a_refused_database_and_superset_down_are_named(namespace, produced):
    from lakehouse.bi import bundle
    from lakehouse.bi.definitions import Database
    from lakehouse.bi.superset_api import SupersetClient, SupersetError

    s = namespace.settings
    gold = Database("gold", "Lakehouse gold (Trino)", "trino", "trino_bi_password")
    with pytest.raises(SupersetError) as err:  # the bi principal with a wrong password
        _superset(s).test_connection(
            "Lakehouse gold (Trino)",
            bundle.sqlalchemy_uri(s, gold, "wrong-password"),
            bundle.database_extra(s, gold),
        )
    assert "cannot connect to database 'Lakehouse gold (Trino)'" in err.value.problem
    assert "LAKEHOUSE_TRINO_BI_PASSWORD" in err.value.fix
    # Superset's event log saved that request (and every import's `passwords`) scrubbed: no secret in it
    import psycopg

    with psycopg.connect(host=s.postgres_host, port=s.postgres_port, user=s.postgres_user,
                         password=s.postgres_password, dbname=s.superset_db) as conn:  # fmt: skip
        logged = conn.execute("SELECT count(*) FILTER (WHERE json LIKE '%wrong-password%'), "
                              "count(*) FILTER (WHERE json LIKE '%test_connection%') FROM logs").fetchone()  # fmt: skip
    assert logged[0] == 0 and logged[1] > 0, logged
    with pytest.raises(SupersetError) as err:
        SupersetClient(s.superset_url, s.superset_admin_user, "not-the-password").dashboard("x")
    assert "refused the login of 'admin'" in err.value.problem
    with socket_closed() as port, pytest.raises(SupersetError) as err:
        SupersetClient(f"http://127.0.0.1:{port}", "admin", "x").export_all()
    assert "does not answer" in err.value.problem and "lakehouse stack up superset" in err.value.fix


def socket_closed():
    """A port nothing listens on (bound, then released)."""
    import contextlib
    import socket

    @contextlib.contextmanager
    def closed():
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        yield port

    return closed()


def test_both_dashboards_render_every_chart_in_chromium(namespace, produced, live_orders):
    """Headless Chromium (Debian's, through Playwright) logs in, opens each dashboard, waits until no chart
    is loading, and finds every chart rendered and none in error; screenshots are kept as artifacts."""
    from lakehouse.bi.browser import render_dashboards

    s = namespace.settings
    boards = _boards(s)
    artifacts = s.home / "test-artifacts"
    results = render_dashboards(s, [f"{s.superset_url}{b['url']}" for b in boards.values()], artifacts)
    for board, result in zip(boards.values(), results, strict=True):
        assert result.errors == [], f"{board['dashboard_title']}: charts in error: {result.errors}"
        assert result.rendered == len(board["charts"]), (board["dashboard_title"], result)
        assert result.screenshot.stat().st_size > 30_000, result.screenshot
        print(
            f"\n{board['dashboard_title']}: {result.rendered} charts in {result.seconds:.1f}s -> {result.screenshot}"
        )


@pytest.mark.automation  # 15-30 minutes on 2 cores: `make test-automation`
def test_automation_alone_makes_every_layer_fresh(namespace, produced, ns_dagster, tmp_path):
    """After the first run (the fixture), nothing is started by hand: the namespace's daemon, with the
    sensors and schedules that keep the layers fresh, takes new clickstream events and OLTP changes to raw,
    bronze, the change logs and CDC silver, and today's silver and gold; then the daemon finds every asset
    with a freshness policy (raw to BI; the lifecycle runs on its own daily schedules) passing it. The
    intraday refresh runs every minute here (LAKEHOUSE_INTRADAY_CRON, 15 minutes by default)."""
    import threading
    import time

    import dagster as dg

    from lakehouse.batch.checks import bronze_version_of
    from lakehouse.cdc.assets import change_log_key, silver_key
    from lakehouse.cdc.workload import connect, run_workload
    from lakehouse.definitions import defs
    from lakehouse.policies import FRESHNESS_AUTOMATION
    from lakehouse.realtime.assets import HEARTBEAT_SECONDS, heartbeats

    s, inst = namespace.settings, ns_dagster
    lake, trino = LakeResource.from_settings(s), TrinoResource.from_settings(s)
    inst.only_on(FRESHNESS_AUTOMATION)
    started = time.time()
    events = stamped_now(generate_events(GeneratorConfig(events=300, days=1, seed=77)))
    assert {event_day(e) for e in events} == {datetime.now(UTC).date()}
    produce(s, s.events_topic, encode(events), progress=False)
    run_workload(s, 40, rate=20, progress=False)
    with connect(s) as conn:
        orders = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
    inst.daemon(tmp_path / "daemon.log")
    # and events go on arriving, 10 every 5 s, until a refresh of today succeeded: the landing commits to
    # bronze while silver builds from it (silver's checks compare with the bronze version it read)
    trickled, errors, stop = [], [], threading.Event()

    def trickle():
        for i in range(120):
            if stop.is_set():
                return
            batch = stamped_now(generate_events(GeneratorConfig(events=10, days=1, seed=1000 + i)))
            try:
                produce(s, s.events_topic, encode(batch), progress=False)
            except Exception as exc:  # noqa: BLE001 - the test fails on it below
                errors.append(exc)
                return
            trickled.extend(batch)
            stop.wait(5)

    producer = threading.Thread(target=trickle)
    producer.start()
    try:
        with inst.instance() as instance:

            def refreshed_today():
                scheduled = {"dagster/schedule_name": "intraday_batch_schedule"}
                runs = instance.get_runs(filters=dg.RunsFilter(tags=scheduled), limit=5)
                lost = [r.run_id for r in runs if r.status == dg.DagsterRunStatus.FAILURE
                        and r.tags.get("dagster/will_retry") != "true"]  # fmt: skip
                assert not lost, f"a refresh of today failed for good: {lost} (see the daemon's runs)"
                return next((r for r in runs if r.status == dg.DagsterRunStatus.SUCCESS), None)

            refresh = wait_until(refreshed_today, 900, "a refresh of today to succeed", 5)
            stats = instance.get_run_stats(refresh.run_id)
            read = bronze_version_of(instance, refresh, dg.AssetKey(["silver", "sessions"]))
            assert read is not None, f"the refresh {refresh.run_id} records no bronze_version for silver"
        stop.set()
        producer.join(60)
        assert not producer.is_alive(), "the producer did not stop"
        assert not errors, errors
        # bronze commits after the version silver read and before the refresh (its checks included) ended
        history = lake.table("bronze", "clickstream_events").history()
        during = [h for h in history if h["version"] > read and h["timestamp"] < stats.end_time * 1000]
        assert during, f"no bronze commit while the refresh ran (it read version {read}): nothing overlapped"
        events += trickled
        new = {e["event_id"] for e in events}
        wait_until(lambda: new <= set(lake.read("bronze", "clickstream_events", columns=["event_id"])
                                      .column("event_id").to_pylist()), 300, "bronze to hold the new events", 2)  # fmt: skip

        def silver_orders() -> int:
            deleted = (
                lake.read("silver", "orders", columns=["_cdc_deleted"]).column("_cdc_deleted").to_pylist()
            )
            return deleted.count(False)

        wait_until(lambda: silver_orders() == orders, 300, "CDC silver orders to match the source", 2)
        today = datetime.now(UTC).date()
        gold = s.schema("gold")

        def gold_today():
            rows = trino.query(f"SELECT events FROM {gold}.daily_funnel WHERE event_date = DATE '{today}'")
            return rows and rows[0][0] == len(events)

        wait_until(gold_today, 900, "gold daily_funnel to count today's events", 5)
        graph = defs.resolve_asset_graph()
        judged = [n.key for n in graph.asset_nodes if n.freshness_policy and n.group_name != "lifecycle"]
        refreshed = [dg.AssetKey(["raw", "clickstream_events"]), dg.AssetKey(["bronze", "clickstream_events"]),
                     change_log_key("orders"), silver_key("orders"), dg.AssetKey(["gold", "daily_funnel"])]  # fmt: skip
        with inst.instance() as instance:

            def states():
                records = instance.get_freshness_state_records(judged)
                return {k.to_user_string(): r.freshness_state.value if r else None
                        for k in judged for r in [records.get(k)]}  # fmt: skip

            def every_asset_passing():  # the daemon of this instance is the only one that evaluates it
                return all(v == "PASS" for v in states().values())

            try:
                wait_until(every_asset_passing, 180, "the daemon to evaluate every asset's freshness", 5)
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {states()}") from None
            latest = instance.get_latest_materialization_events(refreshed)
            late = {
                k.to_user_string() for k in refreshed if not latest.get(k) or latest[k].timestamp < started
            }
            assert not late, f"not materialized by the automation: {sorted(late)}"
            partition = instance.get_latest_materialization_event(dg.AssetKey(["gold", "daily_funnel"]))
            assert partition.dagster_event.partition == today.isoformat(), partition.dagster_event.partition
            # the stream jobs run and the Pinot tables consume: each gets its heartbeat once one is due
            later = time.time() + HEARTBEAT_SECONDS
            beats = {e.asset_key for e in heartbeats(s, instance, now=later)}
            realtime = {n.key for n in graph.asset_nodes if n.group_name in ("realtime", "pinot")}
            assert beats == realtime, sorted(k.to_user_string() for k in realtime - beats)
            runs = instance.get_runs(
                filters=dg.RunsFilter(created_after=datetime.fromtimestamp(started, UTC))
            )
            failed = [r.run_id for r in runs if r.status == dg.DagsterRunStatus.FAILURE
                      and r.tags.get("dagster/will_retry") != "true"]  # fmt: skip
            assert not failed, f"automation runs failed for good: {failed}"
        print(f"\nautomation: {len(judged)} assets passing their freshness policy; today's gold in "
              f"{time.time() - started:.0f} s after the events; {len(runs)} runs")  # fmt: skip
    finally:
        stop.set()
        inst.stop_processes()
