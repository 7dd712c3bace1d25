"""The PyFlink environment runs a job, and `dagster dev` serves the asset graph in its UI."""

import json
import os
import socket
import subprocess
import urllib.request

import pytest

from lakehouse.executables import env_executable
from lakehouse.settings import REPO_ROOT

FLINK_PYTHON = REPO_ROOT / "streaming" / ".venv" / "bin" / "python"


def test_pyflink_environment_runs_a_job():
    if not FLINK_PYTHON.exists():
        pytest.fail("streaming/.venv is missing: run `make setup`")
    proc = subprocess.run([str(FLINK_PYTHON), str(REPO_ROOT / "streaming" / "env_check.py")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pyflink: OK" in proc.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)["data"]


def test_dagster_dev_serves_the_asset_graph(tmp_path):
    import psutil
    from conftest import group_members, stop_process_group, wait_until

    port = _free_port()
    dagster = env_executable("dagster")
    proc = subprocess.Popen(
        [dagster, "dev", "-w", str(REPO_ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO_ROOT, env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    created = psutil.Process(proc.pid).create_time()
    try:

        def graph_loaded():
            try:
                data = _graphql(port, "{ assetNodes { assetKey { path } dependencyKeys { path } } }")
            except OSError:
                return None
            return data["assetNodes"] or None

        nodes = wait_until(
            graph_loaded, timeout=180, what="the Dagster UI to serve the asset graph", interval=2
        )
        keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
        assert {"raw/clickstream_events", "bronze/clickstream_events", "silver/product_funnel_daily",
                "gold/daily_funnel"} <= keys  # fmt: skip
        deps = {
            "/".join(n["assetKey"]["path"]): {"/".join(d["path"]) for d in n["dependencyKeys"]} for n in nodes
        }
        assert "bronze/clickstream_events" in deps["silver/product_funnel_daily"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as resp:
            assert resp.status == 200 and b"Dagster" in resp.read()
    finally:
        # Its webserver, daemon and code server are in its process group: all of them are stopped.
        stop_process_group(proc.pid, created, timeout=60)
        proc.wait(30)
    assert not group_members(proc.pid, created)
