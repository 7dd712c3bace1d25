"""The silver daily tables computed through a Spark Connect server (LAKEHOUSE_SPARK_REMOTE) are the
same as those computed by an in-process session: the engine is configuration, not code.

The remote run must have written them itself: each silver table gets new Delta commits made by Spark
while the remote run ran, after the in-process run's. The server (spark-submit, which execs into its JVM)
runs in a process group of its own and is stopped by the group: SIGTERM, then SIGKILL if it has not
exited (a JVM's shutdown hooks can keep it alive for minutes); afterwards no process of the group is left
and nothing listens on its port.
"""

import socket
import subprocess
import time
from datetime import UTC, datetime

import dagster as dg
import psutil
import pytest
from conftest import group_members, stop_in_process_spark, stop_process_group, wait_until
from test_batch_backfill import TABLES, day_fingerprints

from lakehouse.batch.assets import silver_daily
from lakehouse.demo import dagster_env, materialize_command
from lakehouse.generator.clickstream import GeneratorConfig, encode, event_day, generate_events, produce
from lakehouse.ingest.assets import bronze_clickstream, raw_clickstream_events
from lakehouse.resources import LakeResource, build_resources
from lakehouse.resources.spark import connect_server_command
from lakehouse.stack.process import port_owner

pytestmark = pytest.mark.stack
CLOCK_SLACK_MS = 5000  # commit times are the server JVM's clock, the window this process's: one machine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def run(resources, days) -> dg.ExecuteInProcessResult:
    tags = {"dagster/asset_partition_range_start": days[0].isoformat(),
            "dagster/asset_partition_range_end": days[-1].isoformat()}  # fmt: skip
    result = dg.materialize([silver_daily], resources=resources, tags=tags)
    assert result.success
    return result


def run_in_own_group(cmd: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """Run a command in a process group of its own; on timeout the whole group is stopped, and after it
    exits nothing of its group may be left running."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    created = psutil.Process(proc.pid).create_time()
    try:
        out, _ = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
    if not timed_out:  # a child may still be on its way out when the leader has exited: give it time
        deadline = time.monotonic() + 30
        while group_members(proc.pid, created) and time.monotonic() < deadline:
            time.sleep(0.5)
    left = stop_process_group(proc.pid, created, timeout=30)
    if timed_out:
        out, _ = proc.communicate(timeout=30)
    assert not timed_out, f"{cmd[0]} did not finish within {timeout}s (stopped):\n{out[-4000:]}"
    assert not left, f"{cmd[0]} exited and left processes of its group running (stopped now): {left}"
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def commits_after(lake: LakeResource, table: str, version: int) -> list[dict]:
    """The commit info of each version of silver `table` newer than `version`, oldest first."""
    history = lake.table("silver", table).history()
    return sorted((c for c in history if c["version"] > version), key=lambda c: c["version"])


def test_spark_connect_gives_the_same_silver(namespace, tmp_path):
    s = namespace.settings
    events = generate_events(
        GeneratorConfig(events=1500, days=2, seed=5, end=datetime(2026, 1, 20, 18, tzinfo=UTC))
    )
    produce(s, s.events_topic, encode(events), progress=False)
    resources = build_resources(s)
    assert dg.materialize([raw_clickstream_events, bronze_clickstream], resources=resources).success
    days = sorted({event_day(e) for e in events})
    lake = LakeResource.from_settings(s)

    local = run(resources, days)  # an in-process session
    expected = {t: day_fingerprints(lake, t) for t in TABLES}
    versions = {t: lake.table("silver", t).version() for t in TABLES}
    local_apps = {
        m.materialization.metadata["spark_application_id"].value
        for m in local.get_asset_materialization_events()
    }
    stop_in_process_spark()  # its JVM is done: the server gets the memory

    port = free_port()
    log_path = tmp_path / "connect-server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(connect_server_command(s, port, log=lambda _: None), stdout=log,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    server_created = psutil.Process(server.pid).create_time()
    try:
        deadline = time.monotonic() + 180
        while not listening(port):
            assert server.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "the Spark Connect server did not listen within 180s"
            time.sleep(1)
        # The same command a user runs, with the engine chosen by one variable.
        env = {**dagster_env(s), **namespace.env, "LAKEHOUSE_SPARK_REMOTE": f"sc://127.0.0.1:{port}"}
        select = ",".join(f"silver/{t}" for t in TABLES)
        started_ms = int(time.time() * 1000)
        proc = run_in_own_group(materialize_command(days[0], days[-1], select), env, timeout=900)
        finished_ms = int(time.time() * 1000)
        assert proc.returncode == 0, proc.stdout[-4000:]
        assert f"Spark Connect session to sc://127.0.0.1:{port}" in proc.stdout
    finally:
        stop_process_group(server.pid, server_created, timeout=30)
        server.wait(30)
    # The server's JVM and whatever it started are gone, and its port is free again.
    assert not group_members(server.pid, server_created)
    wait_until(lambda: port_owner(port) is None, 30, f"nothing to listen on the server's port {port}")

    # The remote run replaced the range itself: one new Spark commit per table, made while it ran.
    for table in TABLES:
        commits = commits_after(lake, table, versions[table])
        assert [c["operation"] for c in commits] == ["WRITE"], (table, commits)
        (commit,) = commits
        assert "Apache-Spark" in commit.get("engineInfo", ""), (table, commit)  # Spark's Delta, not delta-rs
        assert commit["operationParameters"]["mode"] == "Overwrite", (table, commit)
        assert started_ms - CLOCK_SLACK_MS <= commit["timestamp"] <= finished_ms + CLOCK_SLACK_MS, (
            table, commit["timestamp"], started_ms, finished_ms,
        )  # fmt: skip
    assert {t: day_fingerprints(lake, t) for t in TABLES} == expected

    instance = dg.DagsterInstance.from_config(dagster_env(s)["DAGSTER_HOME"])
    remote_app = instance.get_latest_materialization_event(dg.AssetKey(["silver", "sessions"]))
    assert remote_app.asset_materialization.metadata["spark_application_id"].value not in local_apps
