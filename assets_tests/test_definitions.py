"""The asset graph: every asset is documented, owned, grouped, checked, has a freshness policy and lineage."""

import dagster as dg
import pytest

from lakehouse.definitions import defs
from lakehouse.lifecycle.assets import ON_DEMAND_TAG


@pytest.fixture(scope="module")
def graph():
    return defs.resolve_asset_graph()


def test_every_asset_is_described_owned_grouped_and_fresh(graph):
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if not node.is_materializable:
            continue
        name = key.to_user_string()
        assert node.description and len(node.description) > 20, name
        assert node.owners, name
        assert node.group_name in {
            "raw",
            "bronze",
            "silver",
            "gold",
            "realtime",
            "pinot",
            "bi",
            "lifecycle",
        }, name
        assert node.group_name == key.path[0], name
        if node.tags.get(ON_DEMAND_TAG):  # run by people only (a restore): freshness would only ever be stale
            assert "on demand" in node.description.lower(), name
        else:
            assert node.freshness_policy is not None, name


def test_every_asset_has_a_check(graph):
    checked = {k.asset_key for k in graph.asset_check_keys}
    for key in graph.materializable_asset_keys:
        assert key in checked, f"{key.to_user_string()} has no asset check"


def test_lineage_runs_unbroken_from_raw_to_gold(graph):
    chain = ["raw/clickstream_events", "bronze/clickstream_events", "silver/product_funnel_daily",
             "gold/stg_silver__product_funnel_daily", "gold/daily_funnel"]  # fmt: skip
    for parent, child in zip(chain, chain[1:], strict=False):
        parents = {p.to_user_string() for p in graph.get(dg.AssetKey.from_user_string(child)).parent_keys}
        assert parent in parents, f"{child} should read {parent}"


def test_partition_ranges_run_in_one_run(graph):
    """`dagster asset materialize --partition-range` needs a single-run backfill policy everywhere."""
    for key in graph.materializable_asset_keys:
        policy = graph.get(key).backfill_policy
        assert policy is not None and policy.max_partitions_per_run is None, key.to_user_string()


def test_every_kafka_fed_table_is_written_by_one_run_at_a_time(tmp_path):
    """Each asset that takes in Kafka offsets sits in a concurrency pool, and the instance `lakehouse stack up`
    writes limits every pool to one step: Dagster never starts two landings of one table together."""
    import yaml

    from lakehouse.definitions import defs
    from lakehouse.settings import get_settings
    from lakehouse.stack.dagster_services import ensure_instance

    graph = defs.resolve_asset_graph()
    kafka_fed = ["raw/clickstream_events", "bronze/clickstream_events", "raw/cdc_orders", "silver/orders"]
    for key in kafka_fed:
        node = graph.get(dg.AssetKey(key.split("/")))
        assert node.pools, f"{key} has no concurrency pool"
    config = yaml.safe_load(ensure_instance(get_settings(), tmp_path).read_text())
    assert config["concurrency"]["pools"]["default_limit"] == 1


def test_lineage_runs_from_kafka_to_each_dashboard(graph):
    """Each dashboard reads exactly the gold models and Pinot tables its charts read (and the bundle)."""
    parents = {k: {p.to_user_string() for p in graph.get(dg.AssetKey(["bi", k])).parent_keys}
               for k in ("management_daily", "merchant_live")}  # fmt: skip
    assert parents["merchant_live"] == {"bi/superset_bundle", "pinot/merchant_orders", "pinot/product_ctr",
                                        "pinot/purchase_alerts"}  # fmt: skip
    assert parents["management_daily"] == {"bi/superset_bundle"} | {
        f"gold/{m}" for m in ("daily_kpis", "daily_funnel", "cart_abandonment", "product_ctr",
                              "merchant_sales_daily", "customer_lifetime_value")}  # fmt: skip
    upstream = graph.get(dg.AssetKey(["gold", "daily_kpis"])).parent_keys
    assert upstream, "and gold reads silver, which reads bronze, raw and Kafka (tested above)"
