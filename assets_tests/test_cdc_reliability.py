"""CDC converges under fire: during a running workload Kafka Connect is SIGKILLed 10 times, the
apply process 10 times, and Debezium re-snapshots once; afterwards every silver table equals its
PostgreSQL table row for row (by checksum), deletes included."""

import os
import random
import signal
import subprocess
import threading
import time

import pytest
from test_cdc_change_log import KEYS, assert_silver_mirrors_source, wait_for_capture

from lakehouse.cdc.connector import ensure_connector, resnapshot
from lakehouse.cdc.pipeline import run_once
from lakehouse.cdc.workload import run_workload
from lakehouse.executables import env_executable
from lakehouse.resources import build_resources
from lakehouse.stack import manager, process

pytestmark = pytest.mark.stack
KILLS = 10


def kill_connect(settings) -> None:
    record = process.read_record(settings.home / "run", "connect")
    assert record and record.is_alive(), "Kafka Connect should be running"
    os.kill(record.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while record.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not record.is_alive(), f"Kafka Connect (pid {record.pid}) survived SIGKILL for 30s"


def test_silver_equals_source_after_kills_and_a_resnapshot(stack):
    resources = build_resources(stack)
    kafka, lake, postgres = resources["kafka"], resources["lake"], resources["postgres"]
    stop = threading.Event()
    workload_errors: list[BaseException] = []

    def workload():
        seed = 100
        try:
            while not stop.is_set():
                run_workload(stack, operations=40, rate=25, seed_value=seed, progress=False)
                seed += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            workload_errors.append(exc)

    thread = threading.Thread(target=workload, daemon=True)
    thread.start()
    rng = random.Random(3)
    apply_kills = connect_kills = 0
    while apply_kills < KILLS or connect_kills < KILLS:
        proc = subprocess.Popen([env_executable("lakehouse"), "cdc", "apply", "--loop", "--interval", "0.5"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
        time.sleep(rng.uniform(3.0, 6.0))
        if connect_kills < KILLS:
            kill_connect(stack)
            connect_kills += 1
        # Still applying when it is killed (not exited on an error of its own, which would go unseen).
        assert proc.poll() is None, f"the apply loop exited ({proc.returncode}): {proc.stderr.read()[-3000:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        apply_kills += 1
        manager.up(stack, ["connect"], log=lambda _: None)  # restarts it and waits for the connector
        if apply_kills == KILLS // 2:
            resnapshot(stack, log=lambda _: None)
    stop.set()
    thread.join(timeout=120)
    assert not thread.is_alive(), "the workload did not stop within 120s"
    assert not workload_errors, workload_errors
    ensure_connector(stack, log=lambda _: None)
    wait_for_capture(kafka, list(KEYS))
    run_once(stack, log=lambda _: None)

    assert_silver_mirrors_source(postgres, lake)
    print(f"\ncdc reliability: {connect_kills} Connect kills, {apply_kills} apply kills, 1 re-snapshot")
