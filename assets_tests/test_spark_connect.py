"""The silver daily tables computed through a Spark Connect server (LAKEHOUSE_SPARK_REMOTE) are the
same as those computed by an in-process session: the engine is configuration, not code."""

import socket
import subprocess
import time
from datetime import UTC, datetime

import dagster as dg
import pytest
from test_batch_backfill import TABLES, day_fingerprints

from lakehouse.batch.assets import silver_daily
from lakehouse.demo import dagster_env, materialize_command
from lakehouse.generator.clickstream import GeneratorConfig, encode, event_day, generate_events, produce
from lakehouse.ingest.assets import bronze_clickstream, raw_clickstream_events
from lakehouse.resources import LakeResource, build_resources
from lakehouse.resources.spark import connect_server_command

pytestmark = pytest.mark.stack


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

    port = free_port()
    log = (tmp_path / "connect-server.log").open("w")
    server = subprocess.Popen(
        connect_server_command(s, port, log=lambda _: None), stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 180
        while not listening(port):
            assert server.poll() is None, (tmp_path / "connect-server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the Spark Connect server did not listen within 180s"
            time.sleep(1)
        # The same command a user runs, with the engine chosen by one variable.
        env = {**dagster_env(s), **namespace.env, "LAKEHOUSE_SPARK_REMOTE": f"sc://127.0.0.1:{port}"}
        select = ",".join(f"silver/{t}" for t in TABLES)
        proc = subprocess.run(materialize_command(days[0], days[-1], select), env=env, capture_output=True,
                              text=True, timeout=900)  # fmt: skip
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
        assert f"Spark Connect session to sc://127.0.0.1:{port}" in proc.stdout + proc.stderr
    finally:
        server.terminate()
        server.wait(60)
    assert {t: day_fingerprints(lake, t) for t in TABLES} == expected

    instance = dg.DagsterInstance.from_config(dagster_env(s)["DAGSTER_HOME"])
    remote_app = instance.get_latest_materialization_event(dg.AssetKey(["silver", "sessions"]))
    local_apps = {
        m.materialization.metadata["spark_application_id"].value
        for m in local.get_asset_materialization_events()
    }
    assert remote_app.asset_materialization.metadata["spark_application_id"].value not in local_apps
