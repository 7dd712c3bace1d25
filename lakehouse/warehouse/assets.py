"""Gold warehouse tables: the dbt project in `dbt_project/`, run through Trino with dagster-dbt."""

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)

from lakehouse.executables import env_executable
from lakehouse.policies import ANALYTICS_OWNER, DAILY_FRESHNESS, DAILY_PARTITIONS
from lakehouse.resources import TrinoResource
from lakehouse.security import tls
from lakehouse.settings import REPO_ROOT, get_settings

DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"


# The manifest names the schemas (which carry LAKEHOUSE_SCHEMA_PREFIX): a prefixed environment (a test's
# namespace, a developer's sandbox) gets its own, so column lineage reads the relations it really built.
_PREFIX = get_settings().schema_prefix.rstrip("_")
dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR,
                         target_path=Path("target") / "prefixed" / _PREFIX if _PREFIX else Path("target"))  # fmt: skip


def prepare_manifest(project: DbtProject) -> None:
    """Parse the project into target/manifest.json with this environment's dbt (no warehouse needed):
    on a fresh clone, and on every load under `dagster dev` so model edits show up. (dagster-dbt's own
    preparer runs whichever `dbt` is first on PATH, which need not be this environment's.)"""
    if project.preparer.using_dagster_dev() or not project.manifest_path.exists():
        dbt = DbtCliResource(project_dir=project, dbt_executable=env_executable("dbt") or "dbt")
        dbt.cli(["parse", "--quiet"], target_path=project.target_path).wait()


prepare_manifest(dbt_project)


class LakehouseDbtTranslator(DagsterDbtTranslator):
    """dbt models become `gold/<model>` assets owned by analytics engineering, fresh each morning and
    rebuilt automatically when what they read changes (declarative automation)."""

    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None
    ) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if props["resource_type"] != "model":
            return spec
        return spec.replace_attributes(
            key=dg.AssetKey(["gold", props["name"]]),
            group_name="gold",
            owners=[ANALYTICS_OWNER],
            freshness_policy=DAILY_FRESHNESS,
            automation_condition=dg.AutomationCondition.eager(),
        ).merge_attributes(kinds={"trino"})


TRANSLATOR = LakehouseDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))
DAILY_SELECTION = "tag:daily"
SILVER_DAILY_KEYS = [
    dg.AssetKey(["silver", t]) for t in ("product_funnel_daily", "sessions", "enriched_events")
]


def failing_rows(event, manifest: Mapping[str, Any], trino: TrinoResource, log) -> Any:
    """A failed dbt test's check result, with a sample of the rows that failed it (dbt stores them,
    `store_failures`) in its metadata and in the log; any other event unchanged."""
    if not isinstance(event, dg.AssetCheckResult) or event.passed:
        return event
    unique_id = getattr(event.metadata.get("unique_id"), "value", None)
    node = manifest["nodes"].get(unique_id) if unique_id else None
    if not node or not node.get("relation_name"):
        return event
    # The manifest was parsed without this run's schema prefix: name the audit table from the settings.
    relation = f'"{trino.catalog}"."{get_settings().schema("gold")}_dbt_test__audit"."{node["alias"]}"'
    try:
        rows = trino.query(f"SELECT * FROM {relation} LIMIT 20")
    except Exception as exc:  # noqa: BLE001 - the failure itself is reported either way
        log.warning(f"could not read the failing rows of {unique_id} from {relation}: {exc}")
        return event
    sample = "\n".join(" | ".join(str(v) for v in row) for row in rows)
    log.error(f"dbt test {unique_id} failed; rows that fail it (from {relation}):\n{sample}")
    return dg.AssetCheckResult(
        passed=False, asset_key=event.asset_key, check_name=event.check_name, severity=event.severity,
        metadata={**event.metadata, "failing_rows_table": relation, "failing_rows_sample": sample[:4000]},
    )  # fmt: skip


def missing_upstream_days(context: dg.AssetExecutionContext) -> dict[str, list[str]]:
    """The run's days that a silver daily table has never been materialized for."""
    wanted = set(context.partition_keys)
    missing = {}
    for key in SILVER_DAILY_KEYS:
        have = context.instance.get_materialized_partitions(key)
        if wanted - have:
            missing[key.to_user_string()] = sorted(wanted - have)
    return missing


def trust_trino_certificate() -> None:
    """Let dbt's Trino driver (a subprocess with this environment) verify the stack's certificate, which
    REQUESTS_CA_BUNDLE would otherwise override (see lakehouse.security.tls)."""
    os.environ.update(tls.requests_environment(tls.paths(get_settings().tls_dir).trust))


def build(context: dg.AssetExecutionContext, dbt: DbtCliResource, trino: TrinoResource, args: list[str]):
    manifest = dbt_project_manifest()
    trust_trino_certificate()
    invocation = dbt.cli(["build", *args], context=context)
    for event in invocation.stream().fetch_column_metadata():
        yield failing_rows(event, manifest, trino, context.log)


def dbt_project_manifest() -> Mapping[str, Any]:
    return json.loads(dbt_project.manifest_path.read_text())


@dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project, dagster_dbt_translator=TRANSLATOR,
            exclude=DAILY_SELECTION, backfill_policy=dg.BackfillPolicy.single_run())  # fmt: skip
def gold_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, trino: TrinoResource):
    """Build (run and test) the unpartitioned dbt models in Trino: staging and intermediate views and the
    marts over the CDC mirror. dbt tests report as asset checks; a failing one names its rows."""
    yield from build(context, dbt, trino, [])


@dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project, dagster_dbt_translator=TRANSLATOR,
            select=DAILY_SELECTION, partitions_def=DAILY_PARTITIONS,
            backfill_policy=dg.BackfillPolicy.single_run())  # fmt: skip
def gold_daily_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, trino: TrinoResource):
    """Build the daily marts for the run's days (dbt vars `min_date`, `max_date`; end exclusive): each
    deletes those days and inserts them again. Refuses to run on days silver has never produced."""
    missing = missing_upstream_days(context)
    if missing:
        raise dg.Failure(
            description=(
                f"silver has no partition for some of the days {context.partition_key_range.start}.."
                f"{context.partition_key_range.end}: {missing}. Materialize those silver partitions first "
                "(a day without events is materialized as an empty partition, so this is a day never run)."
            ),
            metadata={"missing": missing},
        )
    window = context.partition_time_window
    dbt_vars = {"min_date": window.start.date().isoformat(), "max_date": window.end.date().isoformat()}
    context.log.info(f"dbt vars: {dbt_vars}")
    yield from build(context, dbt, trino, ["--vars", json.dumps(dbt_vars)])


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(project_dir=dbt_project, profiles_dir=str(DBT_PROJECT_DIR),
                          dbt_executable=env_executable("dbt") or "dbt")  # fmt: skip
