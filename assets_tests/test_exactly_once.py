"""Exactly-once ingest under fire: the ingest is SIGKILLed 20+ times while the generator runs.

200,000 events (with 2% duplicate deliveries, 1% extra malformed messages and 1% late ones) go
to 4 partitions while `lakehouse ingest events --follow` is started and killed again and again,
a third of the time with a fault that kills it between writing data files and committing them.
Afterwards raw holds every message exactly once, bronze every event exactly once, and the dead
letters exactly the malformed messages.
"""

import random
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime

import pyarrow.compute as pc
import pyarrow.fs as pafs
import pytest

from lakehouse.executables import env_executable
from lakehouse.faults import FAULT_ENV, FAULT_MARKER_ENV, fired
from lakehouse.generator.clickstream import (
    DeliveryConfig,
    GeneratorConfig,
    deliveries,
    generate_events,
    produce,
)
from lakehouse.ingest.delta_sink import table_filesystem
from lakehouse.resources import LakeResource

pytestmark = pytest.mark.stack

EVENTS = 200_000
KILLS = 20


def _ingest(env: dict, *args: str) -> subprocess.Popen:
    cmd = [env_executable("lakehouse"), "ingest", "events", *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_ingest_survives_repeated_kills_without_loss_or_duplicates(namespace, tmp_path):
    settings = namespace.settings
    events = generate_events(
        GeneratorConfig(events=EVENTS, days=3, seed=11, end=datetime(2026, 2, 1, tzinfo=UTC))
    )
    messages = deliveries(events, DeliveryConfig(duplicate_share=0.02, malformed_share=0.01, late_share=0.01,
                                                 seed=11))  # fmt: skip
    malformed = sum(1 for m in messages if m.kind == "malformed")
    assert settings.events_partitions == 4

    producer = threading.Thread(target=produce, args=(settings, settings.events_topic, messages),
                                kwargs={"rate": 2500, "progress": False}, daemon=True)  # fmt: skip
    producer.start()
    time.sleep(2)
    rng = random.Random(7)
    kills = faulted = 0
    while kills < KILLS:
        env = dict(namespace.env)
        if kills % 3 == 0:  # killed by the hook between uploading a batch's files and committing them
            env.update(
                {FAULT_ENV: "lakehouse-raw.before_commit@0.5", FAULT_MARKER_ENV: str(tmp_path / "landing")}
            )
        proc = _ingest(env, "--follow", "--batch-size", "5000", "--batch-seconds", "1")
        time.sleep(rng.uniform(3.0, 7.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        else:
            assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-3000:]
            faulted += 1
        kills += 1
    producer.join(timeout=300)
    assert not producer.is_alive()
    lake = LakeResource.from_settings(settings)
    landed_under_fire = lake.read("raw", "clickstream_events", columns=["offset"]).num_rows
    assert landed_under_fire > 0, "the killed ingests should have committed some batches"

    assert len(fired(tmp_path / "landing")) >= faulted > 0, (
        "the before-commit hook should have killed some runs"
    )
    # Refining into bronze crashes after its dead-letter commit and before its MERGE into bronze.
    env = {
        **namespace.env,
        FAULT_ENV: "lakehouse-dead-letters.after_commit",
        FAULT_MARKER_ENV: str(tmp_path / "bronze"),
    }
    crashed = subprocess.run([env_executable("lakehouse"), "ingest", "events", "--bronze"], env=env,
                             capture_output=True, text=True, timeout=600)  # fmt: skip
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-3000:]
    assert fired(tmp_path / "bronze") == ["lakehouse-dead-letters.after_commit"]
    bronze = lake.table(
        "bronze", "clickstream_events"
    )  # at most created empty: killed before its first MERGE
    assert bronze is None or bronze.to_pyarrow_table().num_rows == 0
    assert lake.read("bronze", "clickstream_dead_letters", columns=["offset"]).num_rows == malformed
    final = subprocess.run([env_executable("lakehouse"), "ingest", "events", "--bronze"], env=namespace.env,
                           capture_output=True, text=True, timeout=900)  # fmt: skip
    assert final.returncode == 0, final.stderr[-3000:]

    raw = lake.read("raw", "clickstream_events", columns=["partition", "offset"])
    assert raw.num_rows == len(messages)
    keys = pc.add(pc.multiply(raw.column("partition").cast("int64"), 10**12), raw.column("offset"))
    assert pc.count_distinct(keys).as_py() == len(messages)
    assert set(raw.column("partition").to_pylist()) == {0, 1, 2, 3}

    bronze = lake.read("bronze", "clickstream_events", columns=["event_id"]).column("event_id")
    assert len(bronze) == pc.count_distinct(bronze).as_py()
    assert len(bronze) == EVENTS
    assert set(bronze.to_pylist()) == {e["event_id"] for e in events}

    dead = lake.read("bronze", "clickstream_dead_letters", columns=["error", "value"])
    assert dead.num_rows == malformed
    malformed_values = sorted(m.value for m in messages if m.kind == "malformed")
    assert sorted(dead.column("value").to_pylist()) == malformed_values
    fs, root = table_filesystem(lake.table_uri("raw", "clickstream_events"), lake.storage_options)
    log_files = [f.base_name for f in fs.get_file_info(pafs.FileSelector(f"{root}/_delta_log"))]
    assert any(name.endswith(".checkpoint.parquet") for name in log_files), "checkpoints should be written"
    print(f"\ncrash test: {kills} kills ({faulted} between data files and commit), {len(messages)} messages, "
          f"{landed_under_fire} landed while killing, {malformed} dead letters")  # fmt: skip
