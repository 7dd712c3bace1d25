"""The dbt docs site, built by the pipeline after the gold models (`dbt docs generate`, which reads
the warehouse's columns through Trino) and served by `make docs`."""

import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource

from lakehouse.policies import ANALYTICS_OWNER, DAILY_FRESHNESS
from lakehouse.settings import get_settings
from lakehouse.warehouse.assets import (
    dbt_project_manifest,
    gold_daily_dbt_models,
    gold_dbt_models,
    trust_trino_certificate,
)

DOCS_KEY = dg.AssetKey(["gold", "dbt_docs"])
SITE_FILES = ("index.html", "static_index.html", "manifest.json", "catalog.json")


def model_nodes() -> dict[str, dict]:
    """The dbt models of the manifest, by unique id."""
    return {uid: n for uid, n in dbt_project_manifest()["nodes"].items() if n["resource_type"] == "model"}


def model_keys() -> list[dg.AssetKey]:
    return sorted({*gold_dbt_models.keys, *gold_daily_dbt_models.keys}, key=lambda k: k.to_user_string())


def site_version() -> str:
    """Changes when what the site shows changes: a model's or a source's SQL, description or columns. Today's
    data does not: the intraday refresh leaves the site alone, the nightly daily batch rebuilds it."""
    manifest = dbt_project_manifest()
    shown = {uid: [n.get("checksum"), n.get("description"), n.get("columns")]
             for uid, n in [*manifest["nodes"].items(), *manifest["sources"].items()]}  # fmt: skip
    return hashlib.sha256(json.dumps(shown, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dg.asset(
    key=DOCS_KEY, deps=model_keys(), group_name="gold", owners=[ANALYTICS_OWNER], freshness_policy=DAILY_FRESHNESS,
    kinds={"dbt"}, code_version=site_version(), backfill_policy=dg.BackfillPolicy.single_run(),
    automation_condition=dg.AutomationCondition.on_missing() | dg.AutomationCondition.code_version_changed(),
    description=(
        "The dbt docs site: every model and column with its description, the tests, and the lineage graph "
        "from the silver sources to the gold marts. Served by `make docs` (http://127.0.0.1:8580). Built by the "
        "nightly daily batch and whenever the dbt project changes what it shows, not by the intraday refresh."
    ),
)  # fmt: skip
def dbt_docs_site(context: dg.AssetExecutionContext, dbt: DbtCliResource) -> dg.MaterializeResult:
    out = get_settings().docs_dir
    trust_trino_certificate()
    models = set(model_nodes())
    with tempfile.TemporaryDirectory(prefix="dbt-docs-") as tmp:
        for attempt in range(1, 4):
            dbt.cli(["docs", "generate", "--static"], target_path=Path(tmp), raise_on_error=True).wait()
            catalog = json.loads((Path(tmp) / "catalog.json").read_text())
            # Trino's information_schema skips a table whose metadata it cannot load at that instant (one
            # replaced a moment ago, say): generate again rather than publish a site without it.
            missing = sorted(models - set(catalog.get("nodes", {})))
            if not missing:
                break
            context.log.warning(f"catalog attempt {attempt} lacks {missing}; generating again")
            time.sleep(3)
        out.mkdir(parents=True, exist_ok=True)
        for name in SITE_FILES:
            shutil.copy2(Path(tmp) / name, out / name)
    context.log.info(f"dbt docs site written to {out}; serve it with `make docs`")
    return dg.MaterializeResult(metadata={
        "path": str(out), "url": f"http://127.0.0.1:{get_settings().docs_port}",
        "models_in_warehouse": len(catalog.get("nodes", {})), "sources_in_warehouse": len(catalog.get("sources", {})),
    })  # fmt: skip


@dg.asset_check(asset=DOCS_KEY, blocking=True,
                description="Every dbt model is in the site's catalog (built in Trino) and every model and column is described.")  # fmt: skip
def docs_cover_every_model() -> dg.AssetCheckResult:
    out = get_settings().docs_dir
    catalog = json.loads((out / "catalog.json").read_text())
    models = model_nodes()
    not_built = sorted(uid for uid in models if uid not in catalog.get("nodes", {}))
    undescribed = sorted(
        f"{n['name']}.{c}" if c else n["name"]
        for n in models.values()
        for c in [None, *n["columns"]]
        if not (n["description"] if c is None else n["columns"][c].get("description"))
    )
    return dg.AssetCheckResult(passed=not not_built and not undescribed,
                               metadata={"models": len(models), "not_in_warehouse": not_built,
                                         "undescribed": undescribed[:50]})  # fmt: skip
