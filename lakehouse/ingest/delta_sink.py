"""Delta helpers shared by every table fed from Kafka: opening, offsets in the log, file uploads.

The commit protocol itself (marks per partition, concurrent writers, dead letters first) is
`lakehouse/ingest/exactly_once.py`.
"""

from __future__ import annotations

import json
import time
import uuid
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError
from deltalake.transaction import AddAction

from lakehouse.stack.errors import StackError


class LakeUnavailable(StackError):
    """The object store did not answer: says where, and how to fix it."""


def txn_app_id(app: str, topic: str, partition: int) -> str:
    return f"{app}:{topic}:{partition}"


def open_table(uri: str, storage_options: dict[str, str]) -> DeltaTable | None:
    """The Delta table at `uri`, or None if nothing has been written there yet."""
    try:
        return DeltaTable(uri, storage_options=storage_options)
    except TableNotFoundError:
        return None


def landed_partitions(table: DeltaTable) -> list[int]:
    """Kafka partitions a table written by DeltaAppender holds, from its files' statistics (no data read)."""
    adds = table.get_add_actions(flatten=True)
    if "min.partition" not in adds.schema.names or adds.num_rows == 0:
        return []
    lo = pc.min(pa.array(adds.column("min.partition").to_pylist())).as_py()
    hi = pc.max(pa.array(adds.column("max.partition").to_pylist())).as_py()
    return list(range(lo, hi + 1))


def arrow_schema(table: DeltaTable) -> pa.Schema:
    """The table's schema as a pyarrow schema (delta-rs hands out arro3 objects)."""
    return pa.schema(table.schema().to_arrow())


def next_offsets(table: DeltaTable | None, app: str, topic: str, partitions: list[int]) -> dict[int, int]:
    """Next offset to read per partition, from the `txn` actions in the table's log (0 if none)."""
    result = {}
    for p in partitions:
        version = table.transaction_version(txn_app_id(app, topic, p)) if table is not None else None
        result[p] = 0 if version is None else version + 1
    return result


def table_filesystem(uri: str, storage_options: dict[str, str]) -> tuple[pafs.FileSystem, str]:
    parsed = urlparse(uri)
    if parsed.scheme in ("s3", "s3a"):
        endpoint = storage_options.get("AWS_ENDPOINT_URL", "")
        ep = urlparse(endpoint) if endpoint else None
        fs = pafs.S3FileSystem(
            access_key=storage_options.get("AWS_ACCESS_KEY_ID"),
            secret_key=storage_options.get("AWS_SECRET_ACCESS_KEY"),
            region=storage_options.get("AWS_REGION", "us-east-1"),
            endpoint_override=ep.netloc if ep else None,
            scheme=ep.scheme if ep else "https",
            allow_bucket_creation=False,
        )
        return fs, f"{parsed.netloc}{parsed.path}".rstrip("/")
    return pafs.LocalFileSystem(), (parsed.path if parsed.scheme == "file" else uri).rstrip("/")


def _stats(table: pa.Table, range_columns: tuple[str, ...]) -> str:
    """Delta file statistics: record count, null counts, min/max of the integer range columns."""
    stats: dict = {"numRecords": table.num_rows, "minValues": {}, "maxValues": {}, "nullCount": {}}
    for name in table.column_names:
        stats["nullCount"][name] = table.column(name).null_count
    for name in range_columns:
        if name in table.column_names and table.num_rows:
            mm = pc.min_max(table.column(name)).as_py()
            stats["minValues"][name], stats["maxValues"][name] = mm["min"], mm["max"]
    return json.dumps(stats)


def upload_files(uri: str, storage_options: dict[str, str], batch: pa.Table,
                 range_columns: tuple[str, ...] = ("partition", "offset")) -> list[AddAction]:  # fmt: skip
    """Phase one of a two-phase append: upload the batch as a Parquet file next to the table's data.
    Nothing is visible until a commit references it (`MarkedTable.commit_files`); a crash in between
    leaves an unreferenced file that vacuum removes once it is older than the retention."""
    fs, root = table_filesystem(uri, storage_options)
    name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex}.zstd.parquet"
    with fs.open_output_stream(f"{root}/{name}") as out:
        pq.write_table(batch, out, compression="zstd", write_statistics=False)
    size = fs.get_file_info(f"{root}/{name}").size
    return [AddAction(path=name, size=size, partition_values={}, modification_time=int(time.time() * 1000),
                      data_change=True, stats=_stats(batch, range_columns))]  # fmt: skip
