"""Gold warehouse tables: the dbt project in `dbt_project/`, run through Trino with dagster-dbt."""

from collections.abc import Mapping
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
from lakehouse.policies import ANALYTICS_OWNER, DAILY_FRESHNESS
from lakehouse.settings import REPO_ROOT

DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"


dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def prepare_manifest(project: DbtProject) -> None:
    """Parse the project into target/manifest.json with this environment's dbt (no warehouse needed):
    on a fresh clone, and on every load under `dagster dev` so model edits show up. (dagster-dbt's own
    preparer runs whichever `dbt` is first on PATH, which need not be this environment's.)"""
    if project.preparer.using_dagster_dev() or not project.manifest_path.exists():
        dbt = DbtCliResource(project_dir=project, dbt_executable=env_executable("dbt") or "dbt")
        dbt.cli(["parse", "--quiet"], target_path=project.target_path).wait()


prepare_manifest(dbt_project)


class LakehouseDbtTranslator(DagsterDbtTranslator):
    """dbt models become `gold/<model>` assets owned by analytics engineering, fresh each morning."""

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
        ).merge_attributes(kinds={"trino"})


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=LakehouseDbtTranslator(
        settings=DagsterDbtTranslatorSettings(enable_asset_checks=True)
    ),
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def gold_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """Build (run and test) the selected dbt models in Trino; dbt tests report as asset checks."""
    yield from dbt.cli(["build"], context=context).stream()


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(project_dir=dbt_project, profiles_dir=str(DBT_PROJECT_DIR),
                          dbt_executable=env_executable("dbt") or "dbt")  # fmt: skip
