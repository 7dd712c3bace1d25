"""Which columns hold personal data: classified once, as `meta: {pii: <kind>}` on the dbt sources' columns.

The same classification masks them in Trino (for every principal but `platform`), shows in the dbt docs
(column meta) and in the Dagster asset metadata of the tables that hold them.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

SOURCES = (
    Path(__file__).resolve().parent.parent.parent / "dbt_project" / "models" / "staging" / "_sources.yml"
)
KINDS = ("contact", "identity")


@cache
def classified(sources: Path = SOURCES) -> dict[tuple[str, str], dict[str, str]]:
    """{(layer, table): {column: kind}} of every column the dbt sources classify as PII."""
    found: dict[tuple[str, str], dict[str, str]] = {}
    for source in yaml.safe_load(sources.read_text()).get("sources", []):
        for table in source.get("tables", []):
            for column in table.get("columns", []):
                kind = (column.get("meta") or {}).get("pii")
                if kind is None:
                    continue
                if kind not in KINDS:
                    raise ValueError(f"{sources}: {source['name']}.{table['name']}.{column['name']} has pii kind "
                                     f"{kind!r}; use one of {', '.join(KINDS)}")  # fmt: skip
                found.setdefault((source["name"], table["name"]), {})[column["name"]] = kind
    return found


def columns(layer: str, table: str) -> dict[str, str]:
    return classified().get((layer, table), {})


MASKED = "masked"


def mask(column: str) -> str:
    """Trino's mask of a PII column: NULL stays NULL, any value reads `masked`. A constant, not a hash: an
    unsalted hash can be tested against a guess (and phone numbers enumerated), and a keyed one would show
    its key in EXPLAIN. PII columns are text (the mask is a varchar)."""
    quoted = '"' + column.replace('"', '""') + '"'
    return f"CASE WHEN {quoted} IS NULL THEN NULL ELSE '{MASKED}' END"
