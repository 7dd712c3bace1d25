"""Dashboards as code, without Superset: the definitions are checked, the bundle is deterministic and holds
no password, a dashboard's part is closed under its links, and drift finds every edit (property-based)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakehouse.bi import bundle
from lakehouse.bi.definitions import BI_DIR, CHART_TYPES, DefinitionError, dashboard_lineage, load_definitions
from lakehouse.bi.drift import differences
from lakehouse.settings import REPO_ROOT, LakehouseSettings

MANIFEST = json.loads((REPO_ROOT / "dbt_project" / "target" / "manifest.json").read_text())


@pytest.fixture
def bi_copy(tmp_path) -> Path:
    """A copy of bi/ to break."""
    target = tmp_path / "bi"
    shutil.copytree(BI_DIR, target, ignore=shutil.ignore_patterns(".venv", "*.py", "*.txt", "*.lock"))
    return target


def _edit_chart(bi_dir: Path, board: str, index: int, **changes) -> None:
    path = bi_dir / "dashboards" / f"{board}.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["charts"][index].update(changes)
    path.write_text(yaml.safe_dump(spec))


def test_repository_definitions_load_and_every_chart_type_is_current():
    defs = load_definitions(MANIFEST)
    assert set(defs.dashboards) == {"management_daily", "merchant_live"}
    types = {c.type for d in defs.dashboards.values() for c in d.charts}
    assert types == set(CHART_TYPES), "every current chart type is used at least once"


def test_a_missing_column_names_the_chart_the_dataset_and_the_column(bi_copy):
    _edit_chart(bi_copy, "management_daily", 1, metrics=["sum(active_users)", "sum(no_such_column)"])
    with pytest.raises(DefinitionError) as err:
        load_definitions(MANIFEST, bi_dir=bi_copy)
    assert "'KPIs trend'" in err.value.problem
    assert "'no_such_column'" in err.value.problem and "'daily_kpis'" in err.value.problem
    assert "active_users" in err.value.fix  # the columns it could use


def test_a_column_dropped_from_the_model_fails_the_charts_reading_it(bi_copy):
    manifest = json.loads(json.dumps(MANIFEST))
    node = next(n for n in manifest["nodes"].values() if n.get("name") == "cart_abandonment")
    del node["columns"]["abandoned_sessions"]
    with pytest.raises(DefinitionError, match="'Cart abandonment' reads column 'abandoned_sessions'"):
        load_definitions(manifest, bi_dir=bi_copy)


def test_an_unknown_dataset_a_duplicate_slug_and_an_unknown_type_are_named(bi_copy):
    _edit_chart(bi_copy, "merchant_live", 0, dataset="gone_dataset")
    with pytest.raises(DefinitionError, match="'Sales, last 15 minutes' reads dataset 'gone_dataset'"):
        load_definitions(MANIFEST, bi_dir=bi_copy)
    _edit_chart(bi_copy, "merchant_live", 0, dataset="merchant_orders_live", type="dist_bar")
    with pytest.raises(DefinitionError, match="unknown chart type 'dist_bar'") as err:
        load_definitions(MANIFEST, bi_dir=bi_copy)
    assert "NVD3" in err.value.fix
    _edit_chart(bi_copy, "merchant_live", 0, type="big_number_total")
    path = bi_copy / "dashboards" / "merchant_live.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["slug"] = "management-daily"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(DefinitionError, match="same slug 'management-daily'"):
        load_definitions(MANIFEST, bi_dir=bi_copy)


def test_lineage_is_drawn_even_from_broken_definitions(bi_copy):
    _edit_chart(bi_copy, "management_daily", 0, type="not_a_type")
    lineage = dashboard_lineage(bi_copy)
    assert lineage["management_daily"][1] == sorted(
        ["cart_abandonment", "customer_lifetime_value", "daily_funnel", "daily_kpis", "merchant_sales_daily",
         "product_ctr"])  # fmt: skip
    assert lineage["merchant_live"][2] == ["merchant_orders", "product_ctr", "purchase_alerts"]


def test_bundle_is_deterministic_namespaced_and_holds_no_password():
    defs = load_definitions(MANIFEST)
    s = LakehouseSettings(trino_bi_password="s3cret-trino", pinot_reader_password="s3cret-pinot")
    first, second = bundle.build_files(defs, s), bundle.build_files(load_definitions(MANIFEST), s)
    assert bundle.zip_bytes(first) == bundle.zip_bytes(second)
    assert bundle.read_zip(bundle.zip_bytes(first)) == first
    text = "".join(first.values())
    assert "s3cret" not in text and bundle.MASK in text
    assert yaml.safe_load(first["metadata.yaml"])["type"] == "assets"
    other = bundle.build_files(defs, LakehouseSettings(schema_prefix="ns1_"))
    uuids = {yaml.safe_load(t).get("uuid") for t in first.values()} - {None}
    assert uuids.isdisjoint({yaml.safe_load(t).get("uuid") for t in other.values()} - {None})
    for path, text in first.items():
        if path.startswith("charts/"):
            chart = yaml.safe_load(text)
            context = json.loads(chart["query_context"])
            assert context["queries"] and context["form_data"]["viz_type"] == chart["viz_type"], path


def test_a_dashboards_part_holds_exactly_what_it_links():
    s = LakehouseSettings()
    files = bundle.build_files(load_definitions(MANIFEST), s)
    part = bundle.dashboard_files(files, "merchant_live")
    assert {p.split("/")[0] for p in part} == {
        "metadata.yaml",
        "dashboards",
        "charts",
        "datasets",
        "databases",
    }
    assert [p for p in part if p.startswith("databases/")] == ["databases/realtime.yaml"]
    assert all(p.startswith("charts/merchant_live__") for p in part if p.startswith("charts/"))
    assert len([p for p in part if p.startswith("charts/")]) == 5


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_drift_finds_every_edit_and_nothing_else(data):
    """Superset's copy with one chart's param changed (or a chart removed from a dashboard) differs in
    exactly that object; an untouched copy has no drift."""
    files = bundle.build_files(load_definitions(MANIFEST), LakehouseSettings())
    assert differences(files, files) == []
    charts = sorted(p for p in files if p.startswith("charts/"))
    path = data.draw(st.sampled_from(charts))
    chart = yaml.safe_load(files[path])
    edited = dict(files)
    if data.draw(st.booleans()):
        key = data.draw(
            st.sampled_from(sorted(k for k in chart["params"] if k not in ("datasource", "dashboards")))
        )
        chart["params"][key] = data.draw(st.one_of(st.integers(), st.text(max_size=8), st.none()))
        edited[path] = yaml.safe_dump(chart)
        found = differences(files, edited)
        if found:  # the drawn value may equal the old one
            assert all(f"chart {chart['slice_name']!r}" in f for f in found), found
        else:
            assert yaml.safe_load(files[path])["params"][key] == chart["params"][key]
    else:
        board_path = next(p for p in files if p.startswith("dashboards/") and path.split("__")[0][7:] in p)
        board = yaml.safe_load(files[board_path])
        board["position"] = {k: v for k, v in board["position"].items()
                             if not (isinstance(v, dict) and v.get("meta", {}).get("uuid") == chart["uuid"])}  # fmt: skip
        edited[board_path] = yaml.safe_dump(board)
        found = differences(files, edited)
        assert len(found) == 1 and found[0].startswith(f"dashboard {board['dashboard_title']!r}: charts"), (
            found
        )


def test_two_metrics_of_one_aggregate_on_pinot_are_refused(bi_copy):
    """Superset's Pinot engine cannot alias: SUM(clicks) and SUM(impressions) both become sum_1 and one is
    silently dropped from the chart's data (seen on the live stack), so the definition is refused."""
    _edit_chart(bi_copy, "merchant_live", 2, metrics=["sum(clicks)", "sum(impressions)"], order_by=None)
    with pytest.raises(DefinitionError, match="two SUM metrics on Pinot"):
        load_definitions(MANIFEST, bi_dir=bi_copy)


def test_broken_links_and_a_password_in_the_bundle_are_found():
    from lakehouse.bi.definitions import Database

    s = LakehouseSettings()
    files = bundle.build_files(load_definitions(MANIFEST), s)
    assert bundle.broken_links(files) == []
    leaky = dict(files)
    db = yaml.safe_load(files["databases/gold.yaml"])
    db["sqlalchemy_uri"] = bundle.sqlalchemy_uri(s, Database("gold", "g", "trino"), "clear-text")
    leaky["databases/gold.yaml"] = yaml.safe_dump(db)
    del leaky["datasets/daily_kpis.yaml"]
    found = bundle.broken_links(leaky)
    assert "databases/gold.yaml: its URI carries a password" in found
    assert any(f.startswith("charts/management_daily__KPIs_trend.yaml: dataset") for f in found), found


def test_a_valid_top_accepts_any_tied_rows_and_nothing_else():
    from top_rows import a_valid_top

    full = [(1, 9), (2, 7), (3, 7), (4, 7), (5, 1)]
    assert a_valid_top([(1, 9), (3, 7)], full, order=1, limit=2)
    assert a_valid_top([(1, 9), (4, 7)], full, order=1, limit=2)
    assert not a_valid_top([(1, 9), (5, 1)], full, order=1, limit=2)  # not the top
    assert not a_valid_top([(1, 9), (6, 7)], full, order=1, limit=2)  # a row the query never returned
    assert not a_valid_top([(1, 9)], full, order=1, limit=2)  # too few


def test_a_filter_a_slug_a_sql_dataset_and_colliding_names_are_checked(bi_copy):
    _edit_chart(bi_copy, "merchant_live", 0, where="is_gone = 0 AND created_at > now() - 900000")
    with pytest.raises(DefinitionError, match="reads column 'is_gone'"):
        load_definitions(MANIFEST, bi_dir=bi_copy)
    _edit_chart(bi_copy, "merchant_live", 0, where="status = 'is_gone' AND created_at > now() - 900000")
    load_definitions(MANIFEST, bi_dir=bi_copy)  # a string literal is not a column
    manifest = json.loads(json.dumps(MANIFEST))
    node = next(n for n in manifest["nodes"].values() if n.get("name") == "daily_funnel")
    del node["columns"]["checkouts"]
    with pytest.raises(DefinitionError, match="dataset 'daily_funnel_steps': its SQL reads 'checkouts'"):
        load_definitions(manifest, bi_dir=bi_copy)
    path = bi_copy / "dashboards" / "merchant_live.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["slug"] = "Merchant_Live"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(
        DefinitionError, match="slug 'Merchant_Live' is not lower-case words joined by hyphens"
    ):
        load_definitions(MANIFEST, bi_dir=bi_copy)
    spec["slug"] = "merchant-live"
    spec["charts"].append({**spec["charts"][0], "name": "Sales: last 15 minutes"})  # files as Sales__last...
    spec["charts"][0]["name"] = "Sales, last 15 minutes"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(
        DefinitionError, match="make the same file charts/merchant_live__Sales__last_15_minutes"
    ):
        bundle.build_files(load_definitions(MANIFEST, bi_dir=bi_copy), LakehouseSettings())
