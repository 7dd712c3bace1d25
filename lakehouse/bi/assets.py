"""BI: the Superset bundle built from `bi/`, and one asset per dashboard that imports it.

`bi/superset_bundle` checks every definition against the dbt manifest and the Pinot schemas, builds the
export ZIP and stores it on S3 and under the stack's home. Each `bi/<dashboard>` asset imports its part
of that bundle (it, its charts, datasets and databases) after testing each database connection from
inside Superset, and records the dashboard's URL. Each dashboard depends on exactly the gold models and
Pinot tables its charts read, so the graph runs from Kafka to the dashboard; it is re-imported when the
bundle or those tables change (eager automation). Two checks per dashboard: Superset still holds what the
repository says (drift), and every chart returns data.
"""

import hashlib
import json
from pathlib import Path

import dagster as dg
import yaml

from lakehouse.bi import bundle
from lakehouse.bi.definitions import (
    BI_DIR,
    PINOT_DIR,
    DefinitionError,
    dashboard_lineage,
    load_definitions,
    model_columns,
)
from lakehouse.bi.drift import differences
from lakehouse.bi.superset_api import SupersetError
from lakehouse.policies import ANALYTICS_OWNER, DAILY_FRESHNESS
from lakehouse.realtime.assets import pinot_key
from lakehouse.resources import LakeResource
from lakehouse.resources.superset import SupersetResource
from lakehouse.settings import get_settings
from lakehouse.warehouse.assets import dbt_project

BUNDLE_KEY = dg.AssetKey(["bi", "superset_bundle"])
BUNDLE_OBJECT = "bi/superset_bundle.zip"


def _local_copy(s) -> Path:
    """Where the bundle's local copy lives (beside the S3 object), per schema prefix."""
    return s.home / "bi" / f"{s.schema_prefix}superset_bundle.zip"


def _manifest() -> dict:
    return json.loads(dbt_project.manifest_path.read_text())


def _code_version() -> str:
    """Changes when a definition, a gold model's documented columns or a Pinot schema changes."""
    digest = hashlib.sha256()
    for path in sorted(
        [*BI_DIR.glob("*.yaml"), *(BI_DIR / "dashboards").glob("*.yaml"), *PINOT_DIR.glob("*.schema.json")]
    ):
        digest.update(path.name.encode() + path.read_bytes())
    try:
        columns = model_columns(_manifest())
    except (OSError, ValueError, KeyError):
        columns = {}
    digest.update(json.dumps(columns, sort_keys=True).encode())
    return digest.hexdigest()[:16]


@dg.asset(
    key=BUNDLE_KEY, group_name="bi", kinds={"superset"}, owners=[ANALYTICS_OWNER], code_version=_code_version(),
    automation_condition=dg.AutomationCondition.on_missing() | dg.AutomationCondition.code_version_changed()
    | dg.AutomationCondition.on_cron("30 5 * * *"),  # and each morning: checked against that day's manifest
    freshness_policy=DAILY_FRESHNESS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    description="The Superset export bundle (databases, datasets, charts, dashboards) built from the definitions "
    "in `bi/` and the dbt manifest's columns; stored on S3 and under the stack's home. A chart naming a dataset "
    "or column that does not exist fails here, before anything is imported.",
)  # fmt: skip
def superset_bundle(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    s = get_settings()
    try:
        defs = load_definitions(_manifest())
    except DefinitionError as exc:
        raise dg.Failure(description=str(exc)) from exc
    files = bundle.build_files(defs, s)
    data = bundle.zip_bytes(files)
    local = _local_copy(s)
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(data)
    uri = lake.put_object(BUNDLE_OBJECT, data)
    charts = sum(len(d.charts) for d in defs.dashboards.values())
    context.log.info(
        f"bundle: {len(defs.dashboards)} dashboards, {charts} charts, {len(defs.datasets)} datasets -> {uri}"
    )
    return dg.MaterializeResult(metadata={
        "s3_uri": uri, "local_path": dg.MetadataValue.path(str(local)), "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(), "dashboards": len(defs.dashboards), "charts": charts,
        "datasets": len(defs.datasets), "files": dg.MetadataValue.json(sorted(files)),
    })  # fmt: skip


@dg.asset_check(asset=BUNDLE_KEY, name="bundle_is_self_contained",
                description="The stored bundle equals the local copy, every link (chart to dataset to database, "
                "dashboard to chart) resolves inside it, and no database URI carries a password.")  # fmt: skip
def bundle_is_self_contained(lake: LakeResource) -> dg.AssetCheckResult:
    s = get_settings()
    data = lake.get_object(BUNDLE_OBJECT)
    local = _local_copy(s)
    problems = bundle.broken_links(bundle.read_zip(data))
    if not local.exists() or local.read_bytes() != data:
        problems.append(f"the local copy {local} differs from the stored bundle")
    return dg.AssetCheckResult(passed=not problems, metadata={"problems": dg.MetadataValue.json(problems)})


def _board_part(lake: LakeResource, key: str) -> tuple[dict[str, str], dict]:
    """One dashboard's part of the stored bundle, and its dashboard YAML (the slug, the charts)."""
    part = bundle.dashboard_files(bundle.read_zip(lake.get_object(BUNDLE_OBJECT)), key)
    return part, yaml.safe_load(next(t for p, t in part.items() if p.startswith("dashboards/")))


def _passwords_and_checks(part: dict[str, str], client) -> dict[str, str]:
    """Test each database of the part from inside Superset (a refused password or a database that is down
    fails here, before the import); the passwords to send with the import, by the database's file."""
    s = get_settings()
    try:
        databases = load_definitions(_manifest()).databases.values()
    except DefinitionError as exc:
        raise SupersetError(f"the definitions changed since the bundle was built and no longer load: {exc.problem}",
                            fix=f"{exc.fix}; then materialize bi/superset_bundle again") from exc  # fmt: skip
    by_uuid = {bundle.stable_uuid(s, "database", db.key): db for db in databases}
    passwords = {}
    for path in sorted(p for p in part if p.startswith("databases/")):
        stored = yaml.safe_load(part[path])
        db = by_uuid.get(str(stored["uuid"]))
        if db is None:
            raise SupersetError(f"the bundle's database {stored['database_name']!r} is no longer in bi/databases.yaml",
                                fix="materialize bi/superset_bundle again")  # fmt: skip
        secret = bundle.password(s, db)
        client.test_connection(bundle.database_name(s, db), bundle.sqlalchemy_uri(s, db, secret),
                               bundle.database_extra(s, db))  # fmt: skip
        if secret:
            passwords[path] = secret
    return passwords


def import_dashboard(key: str, lake: LakeResource, superset: SupersetResource) -> dict:
    """Import one dashboard's part of the stored bundle; Superset's answer about it."""
    s = get_settings()
    part, board_yaml = _board_part(lake, key)
    client = superset.client()
    client.import_bundle(bundle.zip_bytes(part), _passwords_and_checks(part, client))
    slug = board_yaml["slug"]
    board = client.dashboard(slug)
    if board is None:
        raise SupersetError(
            f"dashboard {slug} is not in Superset after its import", fix="read Superset's log"
        )
    charts = client.dashboard_charts(board["id"])
    expected = len(bundle.charts_in(board_yaml["position"]))
    if len(charts) != expected:
        raise SupersetError(f"dashboard {slug} holds {len(charts)} charts after its import, the bundle {expected}",
                            fix="read Superset's log (`lakehouse stack logs superset`)")  # fmt: skip
    return {"id": board["id"], "url": f"{s.superset_url}{board['url']}", "charts": charts, "slug": slug}


def _build_dashboard_asset(key: str, title: str, models: list[str], tables: list[str]) -> dg.AssetsDefinition:
    deps = [BUNDLE_KEY, *(dg.AssetKey(["gold", m]) for m in models), *(pinot_key(t) for t in tables)]

    @dg.asset(
        key=dg.AssetKey(["bi", key]), deps=deps, group_name="bi", kinds={"superset"}, owners=[ANALYTICS_OWNER],
        # not re-imported for the Pinot tables' heartbeats (stream_jobs_watchdog): their data is live anyway
        automation_condition=dg.AutomationCondition.eager().ignore(dg.AssetSelection.groups("pinot")),
        freshness_policy=DAILY_FRESHNESS, backfill_policy=dg.BackfillPolicy.single_run(),
        description=f"The Superset dashboard **{title}**, imported from its part of `bi/superset_bundle` (it, its "
        f"charts, datasets and databases; each database connection tested first). Reads "
        f"{', '.join([*(f'gold.{m}' for m in models), *(f'Pinot {t}' for t in tables)])}.",
    )  # fmt: skip
    def dashboard(context: dg.AssetExecutionContext, lake: LakeResource, superset: SupersetResource):
        try:
            result = import_dashboard(key, lake, superset)
        except SupersetError as exc:
            raise dg.Failure(description=str(exc)) from exc
        context.log.info(f"dashboard {title}: {result['url']} ({len(result['charts'])} charts)")
        return dg.MaterializeResult(metadata={
            "url": dg.MetadataValue.url(result["url"]), "dashboard_id": result["id"], "slug": result["slug"],
            "charts": len(result["charts"]),
        })  # fmt: skip

    return dashboard


def _build_checks(key: str) -> list[dg.AssetChecksDefinition]:
    asset_key = dg.AssetKey(["bi", key])

    @dg.asset_check(asset=asset_key, name="matches_repository",
                    description="Superset's own export of the dashboard's objects equals the repository's bundle "
                    "(a chart edited, added or removed in the UI is drift).")  # fmt: skip
    def matches_repository(lake: LakeResource, superset: SupersetResource) -> dg.AssetCheckResult:
        part = bundle.dashboard_files(bundle.read_zip(lake.get_object(BUNDLE_OBJECT)), key)
        found = differences(part, bundle.read_zip(superset.client().export_all()))
        return dg.AssetCheckResult(passed=not found, metadata={
            "differences": len(found), "drift": dg.MetadataValue.md("\n".join(f"- {d}" for d in found) or "none")})  # fmt: skip

    @dg.asset_check(asset=asset_key, name="charts_return_data",
                    description="Every chart of the dashboard answers `GET /api/v1/chart/{id}/data/`.")  # fmt: skip
    def charts_return_data(lake: LakeResource, superset: SupersetResource) -> dg.AssetCheckResult:
        client = superset.client()
        _, board_yaml = _board_part(lake, key)
        slug, expected = board_yaml["slug"], len(bundle.charts_in(board_yaml["position"]))
        board = client.dashboard(slug)
        if board is None:
            return dg.AssetCheckResult(passed=False, metadata={"problem": f"no dashboard {slug} in Superset"})
        rows, failed = {}, {}
        charts = client.dashboard_charts(board["id"])
        if len(charts) != expected:
            failed["(dashboard)"] = f"{len(charts)} charts in Superset, {expected} in the bundle"
        for chart in charts:
            try:
                rows[chart["slice_name"]] = client.chart_data(chart["id"])["result"][0]["rowcount"]
            except SupersetError as exc:
                failed[chart["slice_name"]] = exc.problem[:300]
        return dg.AssetCheckResult(passed=not failed, metadata={"rows": dg.MetadataValue.json(rows),
                                                                "failed": dg.MetadataValue.json(failed)})  # fmt: skip

    return [matches_repository, charts_return_data]


_LINEAGE = dashboard_lineage()
dashboard_assets = [_build_dashboard_asset(k, *v) for k, v in _LINEAGE.items()]
dashboard_checks = [c for k in _LINEAGE for c in _build_checks(k)]

bi_automation_sensor = dg.AutomationConditionSensorDefinition(
    "bi_automation",
    target=dg.AssetSelection.groups("bi"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Rebuilds the Superset bundle when its definitions change, and re-imports a dashboard when the "
    "bundle or the gold models and Pinot tables it charts change.",
)
