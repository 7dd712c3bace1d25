"""Secrets in resources: `dg.EnvVar` in the Definitions (the Dagster UI shows the variable's name, never its
value; Dagster resolves it when a run starts), the value itself for resources built directly in Python."""

from __future__ import annotations

import os

import dagster as dg

from lakehouse.settings import LakehouseSettings, env_name


def as_env_var(s: LakehouseSettings, field: str) -> str:
    """The secret as an EnvVar when its LAKEHOUSE_ variable holds it (the secrets file's values are exported
    to the environment), else the value (a setting given in code)."""
    name = env_name(field)
    value = getattr(s, field)
    return dg.EnvVar(name) if os.environ.get(name) == value else value


def reveal(value: str) -> str:
    """A secret field's value, whether the resource holds it or an EnvVar naming it."""
    return value.get_value() if isinstance(value, dg.EnvVar) else value
