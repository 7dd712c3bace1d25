"""Dagster as it runs in production: code server, daemon and webserver as services of the stack, the
instance's storage in PostgreSQL, and stopping that works in any state."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request

import psutil
import pytest
import yaml
from conftest import wait_until

from lakehouse.settings import get_settings
from lakehouse.stack import manager, process
from lakehouse.stack.dagster_services import DAGSTER_SERVICES, DagsterCode, ensure_instance, instance_home
from lakehouse.stack.errors import StackError

pytestmark = pytest.mark.stack

NAMES = [svc.name for svc in DAGSTER_SERVICES]


def graphql(port: int, query: str) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.load(resp)["data"]


def test_the_instance_keeps_its_runs_in_postgres_with_a_queue_monitoring_and_retries(stack):
    import dagster as dg
    from dagster_postgres import PostgresRunStorage

    s = get_settings()
    path = ensure_instance(s)
    text = path.read_text()
    assert s.dagster_db_password not in text and s.postgres_password not in text, (
        "dagster.yaml names no secret"
    )
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with dg.DagsterInstance.from_config(str(instance_home(s))) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.run_monitoring_enabled and instance.run_retries_enabled
        assert instance.run_retries_max_retries == s.dagster_run_retries
        queue = instance.get_concurrency_config().run_queue_config
        assert queue.max_concurrent_runs == s.dagster_max_concurrent_runs
        assert {"key": "lakehouse/engine", "value": "spark", "limit": s.dagster_spark_runs} in (
            queue.tag_concurrency_limits
        )
        assert instance.get_concurrency_config().pool_config.default_pool_limit == s.dagster_pool_limit
    config = yaml.safe_load(text.split("\n", 4)[-1])
    assert config["storage"]["postgres"]["postgres_db"]["password"] == {
        "env": "LAKEHOUSE_DAGSTER_DB_PASSWORD"
    }


def test_the_webserver_serves_the_code_location_from_the_code_server(stack):
    s = get_settings()
    for name in ("dagster-code", "dagster-webserver"):
        manager.up(s, [name], log=lambda _: None)
    data = graphql(
        s.dagster_port,
        """{ workspaceOrError { ... on Workspace { locationEntries {
        name loadStatus locationOrLoadError { __typename } } } } }""",
    )
    (entry,) = data["workspaceOrError"]["locationEntries"]
    assert entry["name"] == "lakehouse" and entry["loadStatus"] == "LOADED", entry
    assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry
    nodes = graphql(s.dagster_port, "{ assetNodes { assetKey { path } dependencyKeys { path } } }")[
        "assetNodes"
    ]
    deps = {
        "/".join(n["assetKey"]["path"]): {"/".join(d["path"]) for d in n["dependencyKeys"]} for n in nodes
    }
    assert {"raw/clickstream_events", "bronze/clickstream_events", "silver/product_funnel_daily",
            "gold/daily_funnel", "pinot/merchant_orders", "bi/management_daily"} <= set(deps)  # fmt: skip
    assert "bronze/clickstream_events" in deps["silver/product_funnel_daily"]
    with urllib.request.urlopen(f"http://127.0.0.1:{s.dagster_port}/", timeout=30) as resp:
        assert resp.status == 200 and b"Dagster" in resp.read()
    # the code server's process is the one the stack recorded, on loopback only
    record = process.read_record(s.home / "run", "dagster-code")
    assert record and process.listens_on(record, s.dagster_code_port)


def test_a_storage_database_that_is_down_is_a_clear_error_at_stack_up(stack, tmp_path, monkeypatch):
    """Dagster's services are refused before they start, with what is wrong and the fix, not left retrying."""
    from lakehouse.stack.dagster_services import DagsterWebserver

    with socket_bound() as closed_port:
        s = get_settings().model_copy(update={"postgres_port": closed_port, "home": tmp_path})
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
        with pytest.raises(StackError) as err:
            DagsterWebserver().prepare(s, log=lambda _: None)
    assert "Dagster's storage" in err.value.problem and "does not answer" in err.value.problem
    assert "lakehouse stack up postgres" in err.value.fix


class socket_bound:
    """A port on 127.0.0.1 that nothing answers on (bound, never listening) while the block runs."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self.sock.close()


def test_a_misconfigured_pool_is_refused_when_the_code_location_loads(stack):
    """A per-pool limit naming no pool (a typo) stops the code location from loading, with the pools it could
    have meant; a code server started on it is refused at `stack up` with that error."""
    import subprocess

    from conftest import stop_process_group

    from lakehouse.executables import env_executable

    s = get_settings()
    with socket_bound() as port:
        pass  # a free port for a second code server
    env = {**os.environ, "LAKEHOUSE_DAGSTER_POOL_LIMITS": '{"sprak": 1}'}
    proc = subprocess.Popen([env_executable("dagster"), "code-server", "start", "-h", "127.0.0.1", "-p", str(port),
                             "-m", "lakehouse.definitions"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    created = psutil.Process(proc.pid).create_time()
    bad = s.model_copy(update={"dagster_code_port": port})
    try:
        wait_until(lambda: DagsterCode().health(bad) is None, 240, "the second code server to answer", 1)
        with pytest.raises(StackError) as err:
            DagsterCode().after_start(bad, log=lambda _: None)
    finally:
        stop_process_group(proc.pid, created, timeout=10)
        proc.wait(30)
    assert "failed to load" in err.value.problem and "'sprak', which no asset uses" in err.value.problem
    assert "table_maintenance" in err.value.problem and ", spark" in err.value.problem  # the pools there are
    assert DagsterCode().load_error(s) is None  # the stack's own code server loads
    with pytest.raises(ValueError, match="at least 1"):
        type(s).model_validate({**s.model_dump(), "dagster_pool_limits": {"spark": 0}})


@pytest.mark.restarts_stack
def test_stack_down_stops_dagster_within_seconds_in_any_state(stack):
    """`stack down` stops the three services within seconds even when they hang (SIGSTOP: SIGTERM is not
    delivered, as with the `dagster dev` that kept running for half an hour), and leaves no child behind."""
    s = get_settings()
    manager.up(s, NAMES, log=lambda _: None)
    records = {name: process.read_record(s.home / "run", name) for name in NAMES}
    roots = [psutil.Process(r.pid) for r in records.values()]
    tree = {p.pid for root in roots for p in [root, *root.children(recursive=True)]}
    code_children = roots[0].children(recursive=True)
    assert code_children, "the code server runs its gRPC server as a child"
    hung = [records["dagster-webserver"].pid, code_children[0].pid]
    for pid in hung:
        os.kill(pid, signal.SIGSTOP)
    started = time.monotonic()
    try:
        manager.down(s, NAMES, log=lambda _: None)
        took = time.monotonic() - started
        left = [pid for pid in tree if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    finally:
        manager.up(s, [n for n in NAMES if n not in manager.left_out(s)], log=lambda _: None)
    assert took < 30, f"stack down took {took:.1f}s"
    assert not left, f"still running after stack down: {left}"
    assert all(
        r["state"] == "running"
        for r in manager.status(s)
        if r["service"] in ("dagster-code", "dagster-webserver")
    )
