"""The test namespace's own production-shaped Dagster (lakehouse.stack.namespace_dagster), its daemon wrapped
with the lakehouse's fault points (daemon_with_fault_points.py) and its sensors ticking every 5 s."""

from __future__ import annotations

import sys
from pathlib import Path

from lakehouse.stack.namespace_dagster import NamespaceDagster

WRAPPER = Path(__file__).with_name("daemon_with_fault_points.py")


class Instance(NamespaceDagster):
    def __init__(self, namespace, tmp: Path, **code_env: str):
        super().__init__(namespace.settings, namespace.env, tmp, **code_env)
        self.env["LAKEHOUSE_SENSOR_INTERVAL_SECONDS"] = "5"

    def daemon_command(self) -> list[str]:
        return [sys.executable, str(WRAPPER), "run", "-w", str(self.home / "workspace.yaml")]
