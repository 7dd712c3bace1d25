"""Drift: what Superset holds now against what the repository's bundle says, object by object (by UUID).

Only what the bundle sets is compared: a chart's name, type and params (less the ids Superset assigns at
import), a dataset's table, schema, SQL and columns, a dashboard's title, slug and charts with their
widths, a database's name and URI. A chart edited, added or removed in the UI shows as a difference.
"""

from __future__ import annotations

import json

import yaml

from lakehouse.bi.bundle import charts_in

# Params Superset rewrites with its own ids on import: not part of what the repository defines.
VOLATILE_PARAMS = {"datasource", "slice_id", "dashboards"}


def owned_fields(files: dict[str, str]) -> dict[str, tuple[str, str, dict]]:
    """uuid -> (kind, name, the fields the bundle sets) for every object of a bundle or an export."""
    out = {}
    for path, text in files.items():
        kind = path.split("/")[0]
        if kind not in ("charts", "datasets", "dashboards", "databases"):
            continue
        obj = yaml.safe_load(text)
        if kind == "charts":
            params = obj.get("params") or {}
            if isinstance(params, str):
                params = json.loads(params)
            fields = {"viz_type": obj.get("viz_type"),
                      "params": {k: v for k, v in params.items() if k not in VOLATILE_PARAMS}}  # fmt: skip
            name = obj["slice_name"]
        elif kind == "datasets":
            fields = {"schema": obj.get("schema"), "sql": obj.get("sql"),
                      "columns": sorted(c["column_name"] for c in obj.get("columns") or [])}  # fmt: skip
            name = obj["table_name"]
        elif kind == "dashboards":
            fields = {"slug": obj.get("slug"), "charts": charts_in(obj.get("position") or {})}
            name = obj["dashboard_title"]
        else:
            fields = {"sqlalchemy_uri": obj.get("sqlalchemy_uri")}
            name = obj["database_name"]
        out[str(obj["uuid"])] = (kind[:-1], name, fields)
    return out


def _describe(value) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 200 else text[:197] + "..."


def differences(repository: dict[str, str], superset: dict[str, str]) -> list[str]:
    """Each way Superset differs from the repository's bundle, in words (empty: no drift)."""
    ours, theirs = owned_fields(repository), owned_fields(superset)
    found = []
    for uuid, (kind, name, fields) in sorted(ours.items(), key=lambda item: (item[1][0], item[1][1])):
        if uuid not in theirs:
            found.append(f"{kind} {name!r} is missing from Superset (deleted there?)")
            continue
        their_kind, their_name, their_fields = theirs[uuid]
        if their_name != name:
            found.append(f"{kind} {name!r} is named {their_name!r} in Superset")
        for key, value in fields.items():
            other = their_fields.get(key)
            if isinstance(value, dict) and isinstance(other, dict):
                for sub in sorted(set(value) | set(other)):
                    if value.get(sub) != other.get(sub):
                        found.append(f"{kind} {name!r}: {key}.{sub} is {_describe(other.get(sub))} in Superset, "
                                     f"{_describe(value.get(sub))} in the repository")  # fmt: skip
            elif value != other:
                found.append(f"{kind} {name!r}: {key} is {_describe(other)} in Superset, "
                             f"{_describe(value)} in the repository")  # fmt: skip
    return found
