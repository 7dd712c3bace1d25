"""`stack up` is idempotent; `stack down` stops exactly our processes; data survives down/up."""

from __future__ import annotations

import uuid

import psutil
import pyarrow as pa
import pytest
from conftest import wait_until
from deltalake import DeltaTable, write_deltalake

from lakehouse.realtime.pinot import PINOT_TABLES, PinotClient
from lakehouse.resources import LakeResource
from lakehouse.stack import manager
from lakehouse.stack.process import port_owner
from lakehouse.stack.registry import SERVICES

pytestmark = pytest.mark.stack


def test_up_twice_is_a_no_op(stack):
    before = {r["service"]: r["pid"] for r in manager.status(stack)}
    lines: list[str] = []
    manager.up(stack, log=lines.append)
    after = {r["service"]: r["pid"] for r in manager.status(stack)}
    assert before == after
    for svc in SERVICES:
        if svc.name in manager.left_out(stack):  # LAKEHOUSE_STACK_WITHOUT (the daemon, under `make test`)
            continue
        assert any(line.startswith(f"{svc.name}: already running") for line in lines), lines
    assert not any("starting" in line for line in lines), lines


@pytest.mark.restarts_stack
def test_down_stops_everything_and_data_survives(stack):
    lake = LakeResource.from_settings(stack)
    uri = f"s3://{stack.bucket}/_lifecycle_test/{uuid.uuid4().hex}"
    write_deltalake(uri, pa.table({"n": [1, 2, 3]}), storage_options=lake.storage_options)
    # A Pinot table (the orders' change stream) must come back with its rows too.
    pinot_settings = stack.model_copy(update={"schema_prefix": "lifecycle_"})
    orders = next(t for t in PINOT_TABLES if t.name == "merchant_orders")
    pinot = PinotClient.from_settings(stack)
    pinot.apply(orders, pinot_settings)
    table = pinot_settings.pinot_table("merchant_orders")
    rows = wait_until(lambda: pinot.count(table), 120, "Pinot to consume the orders")
    ours = manager.our_processes(stack)
    assert ours, "the stack should be running"

    manager.down(stack, log=lambda _: None)

    still_alive = [
        p for p in ours if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
    ]
    assert still_alive == []
    for svc in SERVICES:
        for port in svc.ports(stack):
            assert port_owner(port) is None, f"port {port} of {svc.name} still in use"
    assert all(r["state"] == "stopped" for r in manager.status(stack))

    manager.up(stack, log=lambda _: None)
    assert all(r["health"] in ("healthy", "left out") for r in manager.status(stack))
    assert DeltaTable(uri, storage_options=lake.storage_options).to_pyarrow_table().column(
        "n"
    ).to_pylist() == [1, 2, 3]
    wait_until(lambda: pinot.count(table) >= rows, 180, "the Pinot table after the restart")
    pinot.delete_table(table)
