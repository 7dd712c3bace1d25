"""The PyFlink environment runs a job (the stack's Dagster webserver is tried in test_dagster_services)."""

import subprocess

import pytest

from lakehouse.settings import REPO_ROOT

FLINK_PYTHON = REPO_ROOT / "streaming" / ".venv" / "bin" / "python"


def test_pyflink_environment_runs_a_job():
    if not FLINK_PYTHON.exists():
        pytest.fail("streaming/.venv is missing: run `make setup`")
    proc = subprocess.run([str(FLINK_PYTHON), str(REPO_ROOT / "streaming" / "env_check.py")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pyflink: OK" in proc.stdout
