"""Dashboards as code: the databases, datasets, charts and dashboards of `bi/`, read and checked.

Everything a chart names is checked here, before a bundle is built or anything imported: its type, its
dataset, and every column it reads (a gold model's columns come from the dbt manifest, a Pinot table's
from its schema in `lakehouse/realtime/pinot/`). A problem is a `DefinitionError` that names the file,
the chart, the dataset and the column, and says how to fix it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lakehouse.settings import REPO_ROOT

BI_DIR = REPO_ROOT / "bi"
PINOT_DIR = REPO_ROOT / "lakehouse" / "realtime" / "pinot"

# The chart types of Superset 5+ the bundle builds (the NVD3 types are gone).
CHART_TYPES = (
    "echarts_timeseries_line",
    "echarts_timeseries_bar",
    "big_number_total",
    "table",
    "funnel",
    "pie",
)
AGGREGATES = {"sum": "SUM", "avg": "AVG", "min": "MIN", "max": "MAX", "count": "COUNT",
              "count_distinct": "COUNT_DISTINCT"}  # fmt: skip
ENGINES = ("trino", "pinot")
_METRIC = re.compile(r"^\s*(?P<agg>[a-z_]+)\s*\(\s*(?P<col>[A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$")
_TEMPORAL = re.compile(r"(_date|_at|_time)$")
_SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
# Words of a chart's `where:` that are SQL, not columns: what is left must be the dataset's columns.
_SQL_WORDS = {"and", "or", "not", "is", "null", "in", "like", "between", "true", "false", "now", "case", "when",
              "then", "else", "end", "cast", "as", "interval", "day", "hour", "minute", "second"}  # fmt: skip
_IDENTIFIER = re.compile(r"'(?:[^']|'')*'|\b([A-Za-z_][A-Za-z0-9_]*)\b")


class DefinitionError(ValueError):
    """A dashboard definition that cannot be built: `problem` says what and where, `fix` what to do."""

    def __init__(self, problem: str, fix: str):
        super().__init__(f"{problem}\n  fix: {fix}")
        self.problem, self.fix = problem, fix


@dataclass(frozen=True)
class Metric:
    aggregate: str  # SUM, AVG, ...
    column: str

    @property
    def label(self) -> str:
        return f"{self.aggregate}({self.column})"

    @classmethod
    def parse(cls, text: str, where: str) -> Metric:
        match = _METRIC.match(str(text))
        if not match or match["agg"].lower() not in AGGREGATES:
            raise DefinitionError(
                f"{where}: metric {text!r} is not aggregate(column)",
                fix=f"write a metric as one of {', '.join(AGGREGATES)} of a column, e.g. sum(revenue)",
            )
        return cls(AGGREGATES[match["agg"].lower()], match["col"])


@dataclass(frozen=True)
class Database:
    key: str
    name: str
    engine: str
    password_setting: str | None = None


@dataclass(frozen=True)
class Dataset:
    key: str
    database: str  # a Database key: gold for dbt models, realtime for Pinot tables
    model: str | None  # the gold dbt model it reads, or
    pinot_table: str | None  # the Pinot table (base name) it reads
    columns: tuple[str, ...]
    time_columns: tuple[str, ...]
    sql: str | None = None
    description: str = ""
    engine: str = "trino"

    @property
    def source(self) -> str:
        return self.model or self.pinot_table or ""


@dataclass(frozen=True)
class Chart:
    name: str
    type: str
    dataset: str
    metrics: tuple[Metric, ...] = ()
    groupby: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()  # a table of rows (no aggregation)
    x_axis: str | None = None
    order_by: tuple[str, bool] | None = None  # (a metric label or column, descending)
    row_limit: int = 1000
    where: str | None = None
    width: int = 6

    def referenced_columns(self) -> list[str]:
        named = [*self.groupby, *self.columns, *(m.column for m in self.metrics)]
        if self.where:  # the identifiers of the filter, less SQL's own words and string literals
            named += [
                m[1] for m in _IDENTIFIER.finditer(self.where) if m[1] and m[1].lower() not in _SQL_WORDS
            ]
        return [*named, self.x_axis] if self.x_axis else named


@dataclass(frozen=True)
class Dashboard:
    key: str  # the file name without .yaml
    title: str
    slug: str
    description: str
    charts: tuple[Chart, ...]


@dataclass(frozen=True)
class BiDefinitions:
    databases: dict[str, Database]
    datasets: dict[str, Dataset]
    dashboards: dict[str, Dashboard]
    files: dict[str, str] = field(default_factory=dict)  # relative path -> text, for the code version

    def datasets_of(self, dashboard: Dashboard) -> list[Dataset]:
        return [self.datasets[k] for k in dict.fromkeys(c.dataset for c in dashboard.charts)]


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise DefinitionError(f"{path} is missing", fix="restore it from the repository") from None
    except yaml.YAMLError as exc:
        raise DefinitionError(f"{path} is not valid YAML: {exc}", fix="correct the YAML syntax") from None
    if not isinstance(data, dict):
        raise DefinitionError(f"{path} holds no mapping", fix="write the definitions as a YAML mapping")
    return data


def model_columns(manifest: dict) -> dict[str, list[str]]:
    """Each dbt model's documented columns, by model name (the marts document every column)."""
    return {n["name"]: list(n.get("columns") or {}) for n in manifest.get("nodes", {}).values()
            if n.get("resource_type") == "model"}  # fmt: skip


def pinot_columns(pinot_dir: Path = PINOT_DIR) -> dict[str, list[str]]:
    out = {}
    for path in sorted(pinot_dir.glob("*.schema.json")):
        schema = json.loads(path.read_text())
        specs = ("dimensionFieldSpecs", "metricFieldSpecs", "dateTimeFieldSpecs")
        out[path.name.removesuffix(".schema.json")] = [c["name"] for k in specs for c in schema.get(k, [])]
    return out


def _databases(path: Path) -> dict[str, Database]:
    out = {}
    for key, spec in _read_yaml(path).items():
        engine = spec.get("engine")
        if engine not in ENGINES:
            raise DefinitionError(f"{path}: database {key!r} has engine {engine!r}",
                                  fix=f"use one of {', '.join(ENGINES)}")  # fmt: skip
        out[key] = Database(key, spec.get("name") or key, engine, spec.get("password_setting"))
    return out


def _datasets(path: Path, databases, models: dict[str, list[str]], pinot: dict[str, list[str]]) -> dict:
    out = {}
    for key, spec in _read_yaml(path).items():
        where = f"{path.name}: dataset {key!r}"
        model, table = spec.get("model"), spec.get("pinot_table")
        if bool(model) == bool(table):
            raise DefinitionError(f"{where} names {'both' if model else 'neither'} a model and a Pinot table",
                                  fix="give it exactly one of `model:` (a gold dbt model) or `pinot_table:`")  # fmt: skip
        known = models if model else pinot
        if (model or table) not in known:
            kind = "dbt model" if model else "Pinot table"
            raise DefinitionError(f"{where} reads the {kind} {model or table!r}, which does not exist",
                                  fix=f"name one of: {', '.join(sorted(known))}")  # fmt: skip
        database = spec.get("database") or ("gold" if model else "realtime")
        if database not in databases:
            raise DefinitionError(f"{where} names database {database!r}",
                                  fix=f"name one of databases.yaml: {', '.join(databases)}")  # fmt: skip
        source_columns = known[model or table]
        columns = spec.get("columns") if spec.get("sql") else source_columns
        missing = [c for c in spec.get("needs") or () if c not in source_columns]
        if spec.get("sql") and not spec.get("needs"):
            raise DefinitionError(f"{where} is SQL without `needs:`",
                                  fix=f"list the columns of {model or table} its SQL reads under `needs:`")  # fmt: skip
        if missing:
            raise DefinitionError(f"{where}: its SQL reads {', '.join(map(repr, missing))}, which {model or table} "
                                  "does not have", fix=f"use its columns: {', '.join(source_columns)}")  # fmt: skip
        if not columns:
            raise DefinitionError(f"{where} has no columns",
                                  fix="document the model's columns in dbt, or list the SQL's `columns:`")  # fmt: skip
        extra_time = [c for c in spec.get("time_columns") or () if c not in columns]
        if extra_time:
            raise DefinitionError(f"{where}: time column {extra_time[0]!r} is not one of its columns",
                                  fix=f"name one of: {', '.join(columns)}")  # fmt: skip
        time_columns = tuple(c for c in columns if _TEMPORAL.search(c)) + tuple(
            spec.get("time_columns") or ()
        )
        out[key] = Dataset(key, database, model, table, tuple(columns), time_columns, spec.get("sql"),
                           spec.get("description") or "", databases[database].engine)  # fmt: skip
    return out


def _order_by(text, chart_where: str, metrics, named) -> tuple[str, bool] | None:
    if not text:
        return None
    target, _, direction = str(text).strip().rpartition(" ")
    if direction.lower() not in ("asc", "desc"):
        target, direction = str(text).strip(), "asc"
    labels = {m.label: m for m in metrics}
    try:
        metric = Metric.parse(target, chart_where)
        target = metric.label
    except DefinitionError:
        metric = None
    if target not in labels and target not in named:
        raise DefinitionError(f"{chart_where}: order_by {text!r} is neither one of its metrics nor its columns",
                              fix="order by a metric or column the chart shows, e.g. `sum(revenue) desc`")  # fmt: skip
    return target, direction.lower() == "desc"


def _chart(spec: dict, where: str, datasets: dict[str, Dataset]) -> Chart:
    name = spec.get("name")
    if not name:
        raise DefinitionError(f"{where}: a chart has no name", fix="give every chart a `name:`")
    where = f"{where}, chart {name!r}"
    ctype = spec.get("type")
    if ctype not in CHART_TYPES:
        raise DefinitionError(f"{where} has the unknown chart type {ctype!r}",
                              fix=f"use one of {', '.join(CHART_TYPES)} (Superset 5+ has no NVD3 types)")  # fmt: skip
    dataset_key = spec.get("dataset")
    if dataset_key not in datasets:
        raise DefinitionError(f"{where} reads dataset {dataset_key!r}, which datasets.yaml does not define",
                              fix=f"name one of: {', '.join(sorted(datasets))}")  # fmt: skip
    metrics = [Metric.parse(m, where) for m in spec.get("metrics") or ()]
    if spec.get("metric"):
        metrics.insert(0, Metric.parse(spec["metric"], where))
    groupby, columns = tuple(spec.get("groupby") or ()), tuple(spec.get("columns") or ())
    needs = {"echarts_timeseries_line": ("x_axis", "metrics"), "echarts_timeseries_bar": ("x_axis", "metrics"),
             "big_number_total": ("metric",), "funnel": ("groupby", "metric"), "pie": ("groupby", "metric")}  # fmt: skip
    for key in needs.get(ctype, ()):
        if not spec.get(key):
            raise DefinitionError(
                f"{where}: a {ctype} chart needs `{key}:`", fix=f"add `{key}:` to the chart"
            )
    if ctype == "table" and not (columns or (groupby or metrics)):
        raise DefinitionError(f"{where}: a table needs `columns:` (rows) or `groupby:`/`metrics:`",
                              fix="list the columns to show, or what to group by and aggregate")  # fmt: skip
    width = spec.get("width", 6)
    if not isinstance(width, int) or not 1 <= width <= 12:
        raise DefinitionError(f"{where}: width {width!r} is not 1..12", fix="a dashboard row is 12 wide")
    chart = Chart(name=name, type=ctype, dataset=dataset_key, metrics=tuple(metrics), groupby=groupby,
                  columns=columns, x_axis=spec.get("x_axis"), row_limit=int(spec.get("row_limit", 1000)),
                  where=spec.get("where"), width=width,
                  order_by=_order_by(spec.get("order_by"), where, metrics, [*groupby, *columns]))  # fmt: skip
    dataset = datasets[dataset_key]
    aggregates = [m.aggregate for m in chart.metrics]
    if dataset.engine == "pinot" and len(set(aggregates)) < len(aggregates):
        raise DefinitionError(
            f"{where} has two {max(aggregates, key=aggregates.count)} metrics on Pinot: Superset's Pinot engine "
            "cannot alias them, so they share one anonymous name and one of them is dropped",
            fix="give a Pinot chart at most one metric per aggregate (e.g. sum(clicks) and avg(ctr))",
        )
    for column in chart.referenced_columns():
        if column not in dataset.columns:
            raise DefinitionError(
                f"{where} reads column {column!r}, which dataset {dataset_key!r} ({dataset.source}) does not have",
                fix=f"use one of its columns: {', '.join(dataset.columns)}",
            )
    return chart


def _dashboard(path: Path, datasets) -> Dashboard:
    spec = _read_yaml(path)
    where = f"{path.name}"
    for key in ("title", "slug", "charts"):
        if not spec.get(key):
            raise DefinitionError(f"{where} has no `{key}:`", fix=f"add `{key}:` to the dashboard")
    charts = [_chart(c, where, datasets) for c in spec["charts"]]
    seen = set()
    for c in charts:
        if c.name in seen:
            raise DefinitionError(f"{where} has two charts named {c.name!r}",
                                  fix="name each chart of a dashboard once (its name makes its UUID)")  # fmt: skip
        seen.add(c.name)
    slug = str(spec["slug"])
    if not _SLUG.match(slug):
        raise DefinitionError(f"{where}: slug {slug!r} is not lower-case words joined by hyphens",
                              fix="write it like management-daily (it is the dashboard's URL)")  # fmt: skip
    return Dashboard(path.stem, spec["title"], slug, spec.get("description") or "", tuple(charts))


def load_definitions(manifest: dict, bi_dir: Path = BI_DIR, pinot_dir: Path = PINOT_DIR) -> BiDefinitions:
    """Read and check every definition; raise DefinitionError on the first problem."""
    databases = _databases(bi_dir / "databases.yaml")
    datasets = _datasets(
        bi_dir / "datasets.yaml", databases, model_columns(manifest), pinot_columns(pinot_dir)
    )
    dashboards: dict[str, Dashboard] = {}
    slugs: dict[str, str] = {}
    for path in sorted((bi_dir / "dashboards").glob("*.yaml")):
        board = _dashboard(path, datasets)
        if board.slug in slugs:
            raise DefinitionError(f"dashboards {slugs[board.slug]} and {path.name} have the same slug {board.slug!r}",
                                  fix="give each dashboard its own slug (it is its URL)")  # fmt: skip
        slugs[board.slug] = path.name
        dashboards[board.key] = board
    if not dashboards:
        raise DefinitionError(f"no dashboards in {bi_dir / 'dashboards'}", fix="add a dashboard YAML file")
    files = {str(p.relative_to(bi_dir)): p.read_text() for p in
             [bi_dir / "databases.yaml", bi_dir / "datasets.yaml", *sorted((bi_dir / "dashboards").glob("*.yaml"))]}  # fmt: skip
    return BiDefinitions(databases, datasets, dashboards, files)


def dashboard_lineage(bi_dir: Path = BI_DIR) -> dict[str, tuple[str, list[str], list[str]]]:
    """dashboard key -> (title, gold models, Pinot tables) its charts read, without checking anything else:
    the asset graph is drawn from this even when a definition is broken (the bundle's run reports that)."""
    try:
        datasets = yaml.safe_load((bi_dir / "datasets.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        datasets = {}
    out = {}
    for path in sorted((bi_dir / "dashboards").glob("*.yaml")):
        try:
            spec = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError:
            spec = {}
        used = [datasets.get(c.get("dataset")) or {} for c in spec.get("charts") or [] if isinstance(c, dict)]
        models = sorted({d["model"] for d in used if d.get("model")})
        tables = sorted({d["pinot_table"] for d in used if d.get("pinot_table")})
        out[path.stem] = (str(spec.get("title") or path.stem), models, tables)
    return out
