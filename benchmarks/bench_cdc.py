"""Benchmark: CDC latency (PostgreSQL commit -> row visible in silver) and MERGE throughput.

1. Latency: while the OLTP workload runs at a sustained rate, a probe row is committed every half
   second; an apply loop (the same code as `lakehouse cdc apply`) lands and MERGEs continuously and
   notes when each probe shows up in silver. Reports p50 and p95 of commit-to-visible seconds.
2. Throughput: 100,000 changed rows (half updates, half inserts) MERGEd by key into a 1,000,000-row
   Delta table on the object store, against a plain append of the same rows, in the same run.
3. Snapshot: a new 1,000,000-row table added to the capture by configuration (an incremental snapshot
   of it alone), from the signal to every row in typed silver, against `COPY ... TO STDOUT` of the same
   table in the same run (the fastest a client can read it).
Figures line: `cdc_p50_s=.. cdc_p95_s=.. merge_rows_per_s=.. append_rows_per_s=.. snapshot_rows_per_s=..
copy_rows_per_s=.. snapshot_ratio=..`; then `leftover_processes=0` (_cleanup.py).
"""

import argparse
import statistics
import sys
import threading
import time

import numpy as np
import pyarrow as pa
from _cleanup import Teardown
from deltalake import DeltaTable, write_deltalake

from lakehouse.cdc.pipeline import run_once
from lakehouse.cdc.workload import connect, run_workload
from lakehouse.resources import LakeResource
from lakehouse.security.kafka_access import client_config
from lakehouse.settings import get_settings

PROBE_BASE = 10_000_000


def latency(s, seconds: float, rate: float) -> list[float]:
    lake = LakeResource.from_settings(s)
    stop = threading.Event()
    committed: dict[int, float] = {}
    seen: dict[int, float] = {}
    run_once(s, log=lambda _: None)  # start from a caught-up silver

    def workload():
        seed = 1000
        while not stop.is_set():
            run_workload(s, operations=int(rate * 5), rate=rate, seed_value=seed, progress=False)
            seed += 1

    def probes():
        with connect(s) as conn:
            start = conn.execute("SELECT coalesce(max(merchant_id), %s) FROM merchants WHERE merchant_id >= %s",
                                 (PROBE_BASE, PROBE_BASE)).fetchone()[0] + 1  # fmt: skip
            i = start
            while not stop.is_set():
                conn.execute("INSERT INTO merchants (merchant_id, name, country) VALUES (%s, 'probe', 'DE')",
                             (i,))  # fmt: skip
                conn.commit()
                committed[i] = time.time()
                i += 1
                time.sleep(0.5)

    threads = [threading.Thread(target=workload, daemon=True), threading.Thread(target=probes, daemon=True)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline or len(seen) < len(committed):
            if time.monotonic() > deadline:
                stop.set()
            run_once(s, log=lambda _: None)
            now = time.time()
            table = DeltaTable(lake.table_uri("silver", "merchants"), storage_options=lake.storage_options)
            ids = table.to_pyarrow_table(columns=["merchant_id"]).column("merchant_id").to_pylist()
            for i in ids:
                if i in committed and i not in seen:
                    seen[i] = now
            if time.monotonic() > deadline + 120:
                break
    finally:  # whatever happens: the workload and the probes stop before the benchmark goes on or ends
        stop.set()
        for t in threads:
            t.join(timeout=60)
    return [seen[i] - committed[i] for i in seen]


def merge_throughput(s, rows: int, changes: int) -> tuple[float, float]:
    lake = LakeResource.from_settings(s)
    base = f"s3://{s.bucket}/_bench/merge_{time.time_ns()}"
    rng = np.random.default_rng(7)
    target = pa.table({"id": np.arange(rows, dtype=np.int64), "amount": rng.random(rows),
                       "status": pa.array(["placed"] * rows), "_cdc_lsn": np.zeros(rows, dtype=np.int64)})  # fmt: skip
    write_deltalake(f"{base}/target", target, storage_options=lake.storage_options)
    ids = np.concatenate(
        [rng.choice(rows, changes // 2, replace=False), np.arange(rows, rows + changes - changes // 2)]
    )
    source = pa.table({"id": ids.astype(np.int64), "amount": rng.random(changes),
                       "status": pa.array(["shipped"] * changes), "_cdc_lsn": np.ones(changes, dtype=np.int64)})  # fmt: skip
    dt = DeltaTable(f"{base}/target", storage_options=lake.storage_options)
    start = time.perf_counter()
    metrics = (
        dt.merge(source, predicate="t.id = s.id", source_alias="s", target_alias="t")
        .when_matched_update_all(predicate="s._cdc_lsn > t._cdc_lsn")
        .when_not_matched_insert_all()
        .execute()
    )
    merge_s = time.perf_counter() - start
    assert metrics["num_target_rows_updated"] + metrics["num_target_rows_inserted"] == changes, metrics
    write_deltalake(f"{base}/append", target.slice(0, 1), storage_options=lake.storage_options)
    start = time.perf_counter()
    write_deltalake(f"{base}/append", source, mode="append", storage_options=lake.storage_options)
    append_s = time.perf_counter() - start
    return changes / merge_s, changes / append_s


def snapshot_throughput(s, rows: int) -> tuple[float, float]:
    """(rows/s from the snapshot signal to all rows in typed silver, rows/s of COPY TO STDOUT of the table)."""
    import os

    from lakehouse.cdc.apply import current_state
    from lakehouse.cdc.connector import ensure_connector
    from lakehouse.cdc.pipeline import apply_table, land_changes
    from lakehouse.resources import build_resources

    table = f"bench_snapshot_{time.time_ns()}"
    with connect(s) as conn:
        conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, amount numeric(12,2) NOT NULL, status text, "
                     "placed_at timestamptz NOT NULL, quantity integer)")  # fmt: skip
        conn.execute(f"ALTER TABLE {table} REPLICA IDENTITY FULL")
        conn.execute(f"INSERT INTO {table} SELECT g, (g % 100000) / 100.0, 'placed', now() - g * interval '1 s', "
                     f"g % 7 FROM generate_series(1, {rows}) g")  # fmt: skip
        conn.commit()
        start, copied = time.perf_counter(), 0
        with conn.cursor().copy(f"COPY {table} TO STDOUT") as copy:
            for block in copy:
                copied += bytes(block).count(b"\n")
        copy_s = time.perf_counter() - start
    assert copied == rows, (copied, rows)
    # the lake side in a prefix of its own, removed afterwards; the capture configured as a user would
    added = s.model_copy(
        update={"schema_prefix": f"bench{time.time_ns()}_", "cdc_tables": f"{s.cdc_tables},{table}"}
    )
    resources = build_resources(added)
    kafka, lake, postgres = resources["kafka"], resources["lake"], resources["postgres"]
    os.environ["LAKEHOUSE_CDC_TABLES"] = added.cdc_tables
    try:
        ensure_connector(added, log=lambda m: print(m, flush=True))
        start, done, last = time.perf_counter(), 0, time.monotonic()
        while done < rows:
            land_changes(kafka, lake, table, log=lambda _: None)
            apply_table(kafka, lake, table, log=lambda _: None, postgres=postgres)
            silver = lake.table("silver", table)
            done = current_state(silver).num_rows if silver is not None else 0
            if time.monotonic() - last > 10:
                print(
                    f"  {done:,}/{rows:,} rows in silver after {time.perf_counter() - start:.0f} s",
                    flush=True,
                )
                last = time.monotonic()
            if time.perf_counter() - start > 1800:
                raise TimeoutError(
                    f"the snapshot of {table} did not reach silver within 30 minutes ({done} rows)"
                )
        snapshot_s = time.perf_counter() - start
        schema = {f.name: str(f.type) for f in pa.schema(silver.schema().to_arrow())}
        assert schema["amount"] == "decimal128(12, 2)" and schema["placed_at"].startswith("timestamp"), schema
    finally:
        os.environ.pop("LAKEHOUSE_CDC_TABLES", None)
        ensure_connector(s, log=lambda _: None)
        with connect(s) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.commit()
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(client_config(s, "admin"))
        for future in admin.delete_topics([s.cdc_topic(table)]).values():
            future.exception()  # gone, or never created
        remove_prefix(s, added.schema_prefix)
    return rows / snapshot_s, rows / copy_s


def remove_prefix(s, prefix: str) -> None:
    """Delete the benchmark's tables from the object store (every key under s3://<bucket>/<prefix>)."""
    import boto3

    client = boto3.client("s3", endpoint_url=s.s3_endpoint, region_name=s.s3_region,
                          aws_access_key_id=s.s3_access_key, aws_secret_access_key=s.s3_secret_key)  # fmt: skip
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=s.bucket, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=s.bucket, Delete={"Objects": keys})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the latency measurement runs")
    parser.add_argument("--rate", type=float, default=20.0, help="workload transactions per second")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--changes", type=int, default=100_000)
    parser.add_argument(
        "--snapshot-rows", type=int, default=1_000_000, help="rows of the table added to the capture"
    )
    args = parser.parse_args()
    s = get_settings()
    # No namespace of its own and no subprocess: the teardown handles SIGTERM/SIGINT, stops any
    # process a library might have started below this one, and checks that none is left.
    with Teardown(None, home=s.home):
        benchmark(args, s)
    return 0


def benchmark(args, s) -> None:
    print(
        f"latency: workload at {args.rate:.0f} tx/s, a probe every 0.5 s, for {args.seconds:.0f} s ...",
        flush=True,
    )
    lat = sorted(latency(s, args.seconds, args.rate))
    p50, p95 = statistics.median(lat), lat[int(0.95 * (len(lat) - 1))]
    print(f"  {len(lat)} probes: p50 {p50:.2f} s, p95 {p95:.2f} s, max {lat[-1]:.2f} s", flush=True)

    print(
        f"throughput: MERGE {args.changes} changed rows into {args.rows} rows, and append them ...",
        flush=True,
    )
    merge_rps, append_rps = merge_throughput(s, args.rows, args.changes)
    print(
        f"  MERGE {merge_rps:,.0f} rows/s, append {append_rps:,.0f} rows/s (ratio {merge_rps / append_rps:.2f})"
    )
    print(
        f"snapshot: a new {args.snapshot_rows:,}-row table added to the capture, to typed silver ...",
        flush=True,
    )
    snap_rps, copy_rps = snapshot_throughput(s, args.snapshot_rows)
    print(f"  snapshot {snap_rps:,.0f} rows/s, COPY TO STDOUT {copy_rps:,.0f} rows/s", flush=True)
    print(
        f"cdc_p50_s={p50:.2f} cdc_p95_s={p95:.2f} merge_rows_per_s={merge_rps:.0f} append_rows_per_s={append_rps:.0f} "
        f"snapshot_rows_per_s={snap_rps:.0f} copy_rows_per_s={copy_rps:.0f} snapshot_ratio={snap_rps / copy_rps:.3f}"
    )


if __name__ == "__main__":
    sys.exit(main())
