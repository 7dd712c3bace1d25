"""Benchmark: archival to the cold tier and restore, against a plain boto3 copy of the same objects; the
PostgreSQL base backup and its point-in-time restore (RTO).

In a namespace of its own (LAKEHOUSE_SCHEMA_PREFIX=bench_lc<time>_):
1. A daily-partitioned Delta table (`--days` days, `--files` files a day, `--mb` MB a file of poorly
   compressible rows) is written with delta-rs, expired (dated in January 2026).
2. archive: `archive_day` for every day (copy with SHA-256 and storage class, verify, manifest, remove in
   one commit). Baseline: the same objects copied hot -> cold with plain boto3 get_object/put_object.
3. restore: `restore_days` for the whole range (read back, SHA-256 checked, put back, one commit).
   Baseline: the same objects copied cold -> hot with plain boto3. The row count after the restore must
   equal the count before, or the benchmark fails instead of printing a rate.
4. PostgreSQL: a verified base backup, then a point-in-time restore of it with all archived WAL on the
   scratch port; `pg_rto_s` is the time from the start of the restore to a queryable copy.
Figures line: `archive_mb_per_s=.. archive_baseline_mb_per_s=.. archive_ratio=.. restore_mb_per_s=..
restore_baseline_mb_per_s=.. restore_ratio=..`, then `pg_backup_s=.. pg_backup_mb=.. pg_rto_s=.. pg_rpo_s=..`,
then `leftover_processes=0` (_cleanup.py).
"""

import argparse
import os
import sys
import time
from datetime import UTC, date, datetime, timedelta

from _cleanup import Teardown


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--files", type=int, default=3, help="data files per day")
    parser.add_argument("--mb", type=float, default=4.0, help="size of each data file (MB, about)")
    args = parser.parse_args()
    tag = f"bench_lc{datetime.now(UTC):%m%d%H%M%S}"
    os.environ["LAKEHOUSE_SCHEMA_PREFIX"] = f"{tag}_"
    from lakehouse.settings import get_settings

    get_settings.cache_clear()
    s = get_settings()
    with Teardown(tag, home=s.home) as td:
        td.on_exit("the benchmark's objects", lambda: cleanup(s))
        return benchmark(args, s)


def cleanup(s) -> None:
    from lakehouse.lifecycle.cold_tier import delete_keys, list_keys
    from lakehouse.resources.lake import s3_client

    client = s3_client(s)
    for bucket in (s.bucket, s.cold_bucket):
        delete_keys(client, bucket, [o["Key"] for o in list_keys(client, bucket, s.schema_prefix)])
        delete_keys(
            client, bucket, [o["Key"] for o in list_keys(client, bucket, f"_bench_copy/{s.schema_prefix}")]
        )


def write_table(s, args) -> tuple[list[date], int]:
    import numpy as np
    import pyarrow as pa
    from deltalake import write_deltalake

    rng = np.random.default_rng(14)
    rows = int(args.mb * 1e6 / 64)  # ~64 bytes a row of random hex: Parquet cannot shrink it much
    days = [date(2026, 1, 1) + timedelta(days=i) for i in range(args.days)]
    uri = s.table_uri("bronze", "clickstream_events")
    for day in days:
        for _ in range(args.files):
            blob = rng.bytes(rows * 24).hex()
            payload = pa.array([blob[i * 48 : (i + 1) * 48] for i in range(rows)])
            table = pa.table(
                {"event_date": pa.array([day] * rows, pa.date32()), "n": np.arange(rows), "payload": payload}
            )
            write_deltalake(
                uri,
                table,
                mode="append",
                partition_by=["event_date"],
                storage_options=s.delta_storage_options(),
            )
    return days, args.days * args.files * rows


def plain_copy(client, pairs) -> tuple[int, float]:
    """(bytes, seconds) of copying each (src bucket, key) -> (dst bucket, key) with get/put."""
    started, moved = time.perf_counter(), 0
    for (src_bucket, src_key), (dst_bucket, dst_key) in pairs:
        data = client.get_object(Bucket=src_bucket, Key=src_key)["Body"].read()
        client.put_object(Bucket=dst_bucket, Key=dst_key, Body=data)
        moved += len(data)
    return moved, time.perf_counter() - started


def benchmark(args, s) -> int:
    from deltalake import DeltaTable

    from lakehouse.lifecycle import pg_backup
    from lakehouse.lifecycle.archive import ArchivedTable, archive_day, read_manifest, restore_days
    from lakehouse.lifecycle.delta_log import live_add_actions, object_key
    from lakehouse.resources.lake import s3_client

    print(f"writing {args.days} days x {args.files} files x ~{args.mb} MB ...", flush=True)
    days, rows = write_table(s, args)
    uri, opts = s.table_uri("bronze", "clickstream_events"), s.delta_storage_options()
    t = ArchivedTable(s, "bronze", "clickstream_events")
    client = s3_client(s)
    live = live_add_actions(uri, opts, DeltaTable(uri, storage_options=opts).version())
    keys = [object_key(t.prefix, p) for p in live]
    moved, base_s = plain_copy(client, [((s.bucket, k), (s.cold_bucket, f"_bench_copy/{k}")) for k in keys])
    print(
        f"baseline hot -> cold (boto3 get/put, {len(keys)} objects): {moved / 1e6 / base_s:.1f} MB/s",
        flush=True,
    )

    started = time.perf_counter()
    archived = sum(
        archive_day(s, "bronze", "clickstream_events", d, log=lambda _: None)["bytes"] for d in days
    )
    archive_s = time.perf_counter() - started
    if archived != moved or DeltaTable(uri, storage_options=opts).to_pyarrow_table().num_rows != 0:
        raise SystemExit(
            f"bench-lifecycle: archived {archived} bytes of {moved}, or rows left hot: wrong, no rate"
        )
    print(f"archive ({len(days)} partitions): {archived / 1e6 / archive_s:.1f} MB/s", flush=True)

    cold_keys = [f["key"] for d in days for f in read_manifest(client, t, d)["files"]]
    back, back_base_s = plain_copy(
        client, [((s.cold_bucket, k), (s.bucket, f"_bench_copy/{k}")) for k in cold_keys]
    )
    started = time.perf_counter()
    report = restore_days(s, "bronze", "clickstream_events", days[0], days[-1], log=lambda _: None)
    restore_s = time.perf_counter() - started
    after = DeltaTable(uri, storage_options=opts).to_pyarrow_table().num_rows
    if after != rows or report["bytes"] != back:
        raise SystemExit(f"bench-lifecycle: {after} rows after the restore, {rows} before: wrong, no rate")
    print(f"restore ({len(days)} partitions): {report['bytes'] / 1e6 / restore_s:.1f} MB/s", flush=True)

    archive_mbs, archive_base = archived / 1e6 / archive_s, moved / 1e6 / base_s
    restore_mbs, restore_base = report["bytes"] / 1e6 / restore_s, back / 1e6 / back_base_s
    print(f"archive_mb_per_s={archive_mbs:.1f} archive_baseline_mb_per_s={archive_base:.1f} "
          f"archive_ratio={archive_mbs / archive_base:.2f} restore_mb_per_s={restore_mbs:.1f} "
          f"restore_baseline_mb_per_s={restore_base:.1f} restore_ratio={restore_mbs / restore_base:.2f}", flush=True)  # fmt: skip

    print("PostgreSQL: base backup, then point-in-time restore on the scratch port ...", flush=True)
    started = time.perf_counter()
    manifest = pg_backup.base_backup(s, log=lambda _: None)
    backup_s = time.perf_counter() - started
    rpo = pg_backup.rpo_seconds(s)
    copy = pg_backup.point_in_time_restore(s, log=lambda _: None)
    try:
        with copy.connect(s.postgres_db) as conn:
            conn.execute("select count(*) from pg_class").fetchone()
    finally:
        copy.stop()
    print(f"pg_backup_s={backup_s:.1f} pg_backup_mb={manifest['size'] / 1e6:.1f} pg_database_mb="
          f"{manifest['database_bytes'] / 1e6:.0f} pg_rto_s={copy.rto_seconds:.1f} pg_rpo_s={rpo:.1f}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
