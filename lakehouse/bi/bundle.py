"""The Superset export bundle built from the definitions: a ZIP Superset's `POST /api/v1/assets/import/`
takes (`metadata.yaml` of type assets, then `databases/`, `datasets/`, `charts/`, `dashboards/`).

UUIDs are derived from names (and the environment's schema prefix), so building again gives the same
objects and a re-import updates them in place. A database password never enters the bundle: the URI
carries Superset's mask and the password travels in the import's `passwords` field. Every chart carries
its `query_context`, so its data can be fetched through the API after import.
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid
import zipfile
from urllib.parse import quote

import yaml

from lakehouse.bi.definitions import (
    BiDefinitions,
    Chart,
    Dashboard,
    Database,
    Dataset,
    DefinitionError,
    Metric,
)
from lakehouse.settings import LakehouseSettings

ROOT = "lakehouse_bi"  # Superset strips the bundle's top folder
MASK = "XXXXXXXXXX"  # Superset's placeholder for a password given in `passwords`
_NAMESPACE = uuid.UUID("6f1c1c0e-5b1e-4c55-9d8b-1a5e0c0ffee0")
VERSION = "1.0.0"


def stable_uuid(s: LakehouseSettings, kind: str, name: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{s.schema_prefix}{kind}/{name}"))


def slug(s: LakehouseSettings, board: Dashboard) -> str:
    prefix = "".join(ch if ch.isalnum() else "-" for ch in s.schema_prefix.lower())
    return f"{prefix}{board.slug}"


def database_name(s: LakehouseSettings, db: Database) -> str:
    return f"{s.schema_prefix}{db.name}"


def password(s: LakehouseSettings, db: Database) -> str | None:
    return getattr(s, db.password_setting) if db.password_setting else None


def sqlalchemy_uri(s: LakehouseSettings, db: Database, secret: str | None = None) -> str:
    """The database's URI as Superset reaches it, with `secret` as its password (the mask in a bundle, the
    real one to test a connection)."""
    user = quote(s.trino_bi_user if db.engine == "trino" else s.pinot_reader_user, safe="")
    auth = f"{user}:{quote(secret, safe='')}@" if secret else f"{user}@"
    if db.engine == "trino":
        return f"trino://{auth}{s.superset_trino_host or s.trino_host}:{s.trino_port}/{s.trino_catalog}"
    host = s.superset_pinot_host or "127.0.0.1"
    auth = auth if secret else ""
    controller = quote(f"http://{host}:{s.pinot_controller_port}/", safe="")  # as Superset writes it back
    return f"pinot+http://{auth}{host}:{s.pinot_broker_port}/query/sql?controller={controller}"


def database_extra(s: LakehouseSettings, db: Database) -> dict:
    """The database's `extra`: Trino is reached over HTTPS (its password authentication needs it), its
    certificate verified with the stack's own (LAKEHOUSE_TRINO_CA_FILE) or the system's CAs."""
    extra: dict = {"allows_virtual_table_explore": True}
    if db.engine == "trino":
        extra["engine_params"] = {"connect_args": {"http_scheme": "https", "verify": s.trino_verify}}
    return extra


def table_ref(s: LakehouseSettings, dataset: Dataset) -> tuple[str | None, str]:
    """(schema, table) of what the dataset reads: a gold model in Trino, or a Pinot table."""
    if dataset.model:
        return s.schema("gold"), dataset.model
    return None, s.pinot_table(dataset.pinot_table or "")


def dataset_sql(s: LakehouseSettings, dataset: Dataset) -> str | None:
    if not dataset.sql:
        return None
    schema, table = table_ref(s, dataset)
    return dataset.sql.replace("{table}", f"{schema}.{table}" if schema else table)


def _metric(m: Metric) -> dict:
    return {"expressionType": "SIMPLE", "column": {"column_name": m.column}, "aggregate": m.aggregate,
            "label": m.label, "hasCustomLabel": False, "optionName": f"metric_{m.aggregate}_{m.column}".lower()}  # fmt: skip


def _filters(chart: Chart) -> list[dict]:
    if not chart.where:
        return []
    return [{"expressionType": "SQL", "clause": "WHERE", "sqlExpression": chart.where, "subject": None,
             "operator": None, "comparator": None, "filterOptionName": "where"}]  # fmt: skip


def _orderby(chart: Chart) -> list:
    if chart.order_by:
        target, desc = chart.order_by
        metric = next((m for m in chart.metrics if m.label == target), None)
        return [[_metric(metric) if metric else target, not desc]]
    if chart.metrics and chart.type != "big_number_total":
        return [[_metric(chart.metrics[0]), False]]
    return []


def chart_form_data(chart: Chart) -> dict:
    """The chart's `params`: what Superset's explore view and the chart plugin read."""
    params: dict = {"viz_type": chart.type, "adhoc_filters": _filters(chart), "row_limit": chart.row_limit,
                    "time_range": "No filter", "extra_form_data": {}, "dashboards": [], "annotation_layers": []}  # fmt: skip
    metrics = [_metric(m) for m in chart.metrics]
    if chart.type.startswith("echarts_timeseries"):
        params |= {"x_axis": chart.x_axis, "time_grain_sqla": "P1D", "metrics": metrics,
                   "groupby": list(chart.groupby), "x_axis_sort_asc": True, "show_legend": True,
                   "rich_tooltip": True, "order_desc": True}  # fmt: skip
    elif chart.type == "big_number_total":
        params |= {"metric": metrics[0], "y_axis_format": "SMART_NUMBER", "header_font_size": 0.4,
                   "subheader_font_size": 0.15}  # fmt: skip
    elif chart.type in ("pie", "funnel"):
        params |= {"groupby": list(chart.groupby), "metric": metrics[0], "show_labels": True,
                   "show_legend": True, "sort_by_metric": True}  # fmt: skip
        if chart.type == "pie":
            params |= {"label_type": "key_value", "number_format": "SMART_NUMBER"}
    elif chart.columns:  # a table of rows
        params |= {"query_mode": "raw", "all_columns": list(chart.columns), "server_pagination": False,
                   "order_by_cols": [json.dumps([c, not d]) for c, d in _orderby(chart)]}  # fmt: skip
    else:  # an aggregated table
        params |= {"query_mode": "aggregate", "groupby": list(chart.groupby), "metrics": metrics,
                   "server_pagination": False, "order_desc": bool(chart.order_by and chart.order_by[1])}  # fmt: skip
        if chart.order_by:
            params["timeseries_limit_metric"] = _orderby(chart)[0][0]
    return params


def chart_query(chart: Chart) -> dict:
    """The one query of the chart's saved `query_context` (what `GET /api/v1/chart/{id}/data/` runs)."""
    columns: list = list(chart.columns or chart.groupby)
    if chart.x_axis:
        columns.insert(0, {"columnType": "BASE_AXIS", "sqlExpression": chart.x_axis, "label": chart.x_axis,
                           "expressionType": "SQL", "timeGrain": "P1D"})  # fmt: skip
    return {
        "columns": columns,
        "metrics": [_metric(m) for m in chart.metrics],
        "orderby": _orderby(chart),
        "row_limit": chart.row_limit,
        "filters": [],
        "extras": {
            "where": f"({chart.where})" if chart.where else "",
            "having": "",
            **({"time_grain_sqla": "P1D"} if chart.x_axis else {}),
        },  # fmt: skip
        "series_columns": list(chart.groupby) if chart.x_axis else [],
        "time_range": "No filter",
        "annotation_layers": [],
        "applied_time_extras": {},
        "url_params": {},
        "custom_params": {},
        "custom_form_data": {},
        "post_processing": [],
    }


def _yaml(obj: dict) -> str:
    return yaml.safe_dump(obj, sort_keys=True, allow_unicode=True)


def _file_name(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text).strip("_")


def _position(s: LakehouseSettings, board: Dashboard) -> dict:
    """Charts fill rows of 12 columns in their order."""
    rows: list[list[Chart]] = [[]]
    for chart in board.charts:
        if sum(c.width for c in rows[-1]) + chart.width > 12:
            rows.append([])
        rows[-1].append(chart)
    position: dict = {"DASHBOARD_VERSION_KEY": "v2",
                      "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
                      "HEADER_ID": {"type": "HEADER", "id": "HEADER_ID", "meta": {"text": board.title}},
                      "GRID_ID": {"type": "GRID", "id": "GRID_ID", "parents": ["ROOT_ID"], "children": []}}  # fmt: skip
    for i, row in enumerate(rows):
        row_id = f"ROW-{i}"
        position["GRID_ID"]["children"].append(row_id)
        position[row_id] = {"type": "ROW", "id": row_id, "parents": ["ROOT_ID", "GRID_ID"], "children": [],
                            "meta": {"background": "BACKGROUND_TRANSPARENT"}}  # fmt: skip
        for chart in row:
            chart_uuid = stable_uuid(s, "chart", f"{board.key}/{chart.name}")
            chart_id = f"CHART-{chart_uuid[:8]}"
            position[row_id]["children"].append(chart_id)
            position[chart_id] = {"type": "CHART", "id": chart_id, "children": [],
                                  "parents": ["ROOT_ID", "GRID_ID", row_id],
                                  "meta": {"width": chart.width, "height": 50, "chartId": 0,
                                           "uuid": chart_uuid, "sliceName": chart.name}}  # fmt: skip
    return position


class _Files(dict):
    """A bundle's files, refusing a second object under one file name (names are made file-safe, so two
    names can meet: `a-b` and `a_b`); a silent overwrite would drop a chart from its dashboard."""

    def __setitem__(self, path, text):
        if path in self:
            raise DefinitionError(f"two objects of the bundle make the same file {path}",
                                  fix="rename one: names that differ only in punctuation collide")  # fmt: skip
        super().__setitem__(path, text)


def build_files(defs: BiDefinitions, s: LakehouseSettings) -> dict[str, str]:
    """Every file of the bundle (path under the bundle's root -> YAML text), deterministic."""
    files = _Files({"metadata.yaml": _yaml({"version": VERSION, "type": "assets"})})
    db_uuid = {}
    for db in defs.databases.values():
        db_uuid[db.key] = stable_uuid(s, "database", db.key)
        files[f"databases/{_file_name(db.key)}.yaml"] = _yaml({
            "database_name": database_name(s, db),
            "sqlalchemy_uri": sqlalchemy_uri(s, db, MASK if password(s, db) else None),
            "cache_timeout": None, "expose_in_sqllab": True, "allow_run_async": False, "allow_ctas": False,
            "allow_cvas": False, "allow_dml": False, "allow_file_upload": False,
            "extra": database_extra(s, db),
            "uuid": db_uuid[db.key], "version": VERSION,
        })  # fmt: skip
    ds_uuid = {}
    for ds in defs.datasets.values():
        ds_uuid[ds.key] = stable_uuid(s, "dataset", ds.key)
        schema, table = table_ref(s, ds)
        columns = [{"column_name": c, "is_dttm": c in ds.time_columns, "is_active": True, "filterable": True,
                    "groupby": True, "type": None, "expression": None, "description": None,
                    "verbose_name": None, "python_date_format": None, "extra": None,
                    "advanced_data_type": None} for c in ds.columns]  # fmt: skip
        files[f"datasets/{_file_name(ds.key)}.yaml"] = _yaml({
            "table_name": f"{s.schema_prefix}{ds.key}" if ds.sql else table,
            "main_dttm_col": ds.time_columns[0] if ds.time_columns else None,
            "description": ds.description or None, "default_endpoint": None, "offset": 0, "cache_timeout": None,
            "schema": schema, "catalog": None, "sql": dataset_sql(s, ds), "params": None, "template_params": None,
            "filter_select_enabled": True, "fetch_values_predicate": None, "extra": None, "normalize_columns": False,
            "always_filter_main_dttm": False, "metrics": [], "columns": columns,
            "uuid": ds_uuid[ds.key], "database_uuid": db_uuid[ds.database], "version": VERSION,
        })  # fmt: skip
    for board in defs.dashboards.values():
        for chart in board.charts:
            chart_uuid = stable_uuid(s, "chart", f"{board.key}/{chart.name}")
            params = chart_form_data(chart)
            query_context = {"datasource": {"id": 0, "type": "table"}, "force": False,
                             "queries": [chart_query(chart)], "form_data": params,
                             "result_format": "json", "result_type": "full"}  # fmt: skip
            files[f"charts/{_file_name(board.key)}__{_file_name(chart.name)}.yaml"] = _yaml({
                "slice_name": chart.name, "description": None, "certified_by": None,
                "certification_details": None, "viz_type": chart.type, "params": params,
                "query_context": json.dumps(query_context, sort_keys=True), "cache_timeout": None,
                "uuid": chart_uuid, "dataset_uuid": ds_uuid[chart.dataset], "version": VERSION,
            })  # fmt: skip
        files[f"dashboards/{_file_name(board.key)}.yaml"] = _yaml({
            "dashboard_title": board.title, "description": board.description or None, "css": "",
            "slug": slug(s, board), "certified_by": None, "certification_details": None, "published": True,
            "uuid": stable_uuid(s, "dashboard", board.key), "position": _position(s, board),
            "metadata": {"color_scheme": "supersetColors", "refresh_frequency": 0, "expanded_slices": {},
                         "label_colors": {}, "timed_refresh_immune_slices": [], "cross_filters_enabled": False,
                         "native_filter_configuration": [], "shared_label_colors": [], "color_scheme_domain": []},
            "version": VERSION,
        })  # fmt: skip
    return dict(files)


def dashboard_files(files: dict[str, str], dashboard_key: str) -> dict[str, str]:
    """The part of a bundle one dashboard needs: it, its charts, their datasets and those datasets'
    databases (found by the UUIDs that link them), and the metadata."""
    board = yaml.safe_load(files[f"dashboards/{_file_name(dashboard_key)}.yaml"])
    chart_uuids = {
        v["meta"]["uuid"]
        for v in board["position"].values()
        if isinstance(v, dict) and v.get("type") == "CHART"
    }
    out = {"metadata.yaml": files["metadata.yaml"], f"dashboards/{_file_name(dashboard_key)}.yaml":
           files[f"dashboards/{_file_name(dashboard_key)}.yaml"]}  # fmt: skip
    parsed = {path: yaml.safe_load(text) for path, text in files.items() if path.split("/")[0] in
              ("charts", "datasets", "databases")}  # fmt: skip
    datasets = set()
    for path, obj in parsed.items():
        if path.startswith("charts/") and obj["uuid"] in chart_uuids:
            out[path] = files[path]
            datasets.add(obj["dataset_uuid"])
    databases = set()
    for path, obj in parsed.items():
        if path.startswith("datasets/") and obj["uuid"] in datasets:
            out[path] = files[path]
            databases.add(obj["database_uuid"])
    out.update(
        {p: files[p] for p, o in parsed.items() if p.startswith("databases/") and o["uuid"] in databases}
    )
    return out


def broken_links(files: dict[str, str]) -> list[str]:
    """What in a bundle points outside it, and any database URI that carries a password."""
    from urllib.parse import urlsplit

    parsed = {path: yaml.safe_load(text) for path, text in files.items() if "/" in path}
    uuids = {kind: {str(o["uuid"]) for p, o in parsed.items() if p.startswith(f"{kind}/")}
             for kind in ("databases", "datasets", "charts")}  # fmt: skip
    problems = []
    for path, obj in sorted(parsed.items()):
        if path.startswith("databases/"):
            secret = urlsplit(obj["sqlalchemy_uri"]).password
            if secret and secret != MASK:
                problems.append(f"{path}: its URI carries a password")
        elif path.startswith("datasets/") and str(obj["database_uuid"]) not in uuids["databases"]:
            problems.append(f"{path}: database {obj['database_uuid']} is not in the bundle")
        elif path.startswith("charts/") and str(obj["dataset_uuid"]) not in uuids["datasets"]:
            problems.append(f"{path}: dataset {obj['dataset_uuid']} is not in the bundle")
        elif path.startswith("dashboards/"):
            missing = {u for u, _ in charts_in(obj["position"])} - uuids["charts"]
            problems.extend(f"{path}: chart {u} is not in the bundle" for u in sorted(missing))
    return problems


def charts_in(position: dict) -> list[tuple[str, int]]:
    return sorted((v["meta"]["uuid"], v["meta"].get("width")) for v in position.values()
                  if isinstance(v, dict) and v.get("type") == "CHART")  # fmt: skip


def zip_bytes(files: dict[str, str]) -> bytes:
    """The files as a ZIP under the bundle's root folder; the same files give the same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(files):
            info = zipfile.ZipInfo(f"{ROOT}/{path}", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, files[path])
    return buffer.getvalue()


def read_zip(data: bytes) -> dict[str, str]:
    """A bundle's files by path under its root (the inverse of zip_bytes; also reads Superset's exports)."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name.split("/", 1)[1]: zf.read(name).decode() for name in zf.namelist()
                if "/" in name and not name.endswith("/")}  # fmt: skip


def fingerprint(files: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
