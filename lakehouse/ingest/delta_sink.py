"""Two-phase appends to a Delta table: write Parquet data files, then commit them with `txn` actions.

Splitting the two phases is what makes the ingest's guarantee testable: a crash after the data
files are written but before the commit leaves only unreferenced files (removed later by vacuum),
and the next run, resuming from the offsets in the log, writes those records again.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError
from deltalake.transaction import AddAction, CommitProperties, Transaction

from lakehouse.stack.errors import StackError

# Fault injection for the crash tests: the probability of killing this process between writing
# data files and committing them. Never set outside tests.
CRASH_BEFORE_COMMIT_ENV = "LAKEHOUSE_FAULT_CRASH_BEFORE_COMMIT"


class LakeUnavailable(StackError):
    """The object store did not answer: says where, and how to fix it."""


class ConcurrentWriterError(RuntimeError):
    """Another process landed the same topic partitions into the same table at the same time."""


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


@dataclass
class DeltaAppender:
    uri: str
    storage_options: dict[str, str]
    schema: pa.Schema
    range_columns: tuple[str, ...] = ("partition", "offset")
    checkpoint_interval: int = 20

    def open(self) -> DeltaTable:
        """The table at its latest version, created (empty) if it does not exist yet."""
        try:
            return DeltaTable(self.uri, storage_options=self.storage_options)
        except TableNotFoundError:
            pass
        except OSError as exc:
            raise LakeUnavailable(
                f"cannot read {self.uri} at {self.storage_options.get('AWS_ENDPOINT_URL', 'the object store')}: "
                f"{str(exc).splitlines()[0]} ({' '.join(str(exc).split())[-160:]})",
                fix="start the object store (`lakehouse stack up`) or check LAKEHOUSE_S3_ENDPOINT and "
                "the credentials; the next run resumes from the last commit",
            ) from exc
        try:
            return DeltaTable.create(
                self.uri, self.schema, mode="ignore", storage_options=self.storage_options,
                configuration={"delta.checkpointInterval": str(self.checkpoint_interval)},
            )  # fmt: skip
        except Exception:  # noqa: BLE001 - a concurrent creator won: use its table
            return DeltaTable(self.uri, storage_options=self.storage_options)

    def next_offsets(self, table: DeltaTable, app: str, topic: str, partitions: list[int]) -> dict[int, int]:
        return next_offsets(table, app, topic, partitions)

    def write_files(self, batch: pa.Table) -> list[AddAction]:
        """Phase one: upload the batch as a Parquet file; nothing is visible until `commit`."""
        fs, root = table_filesystem(self.uri, self.storage_options)
        name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex}.zstd.parquet"
        with fs.open_output_stream(f"{root}/{name}") as out:
            pq.write_table(batch, out, compression="zstd", write_statistics=False)
        size = fs.get_file_info(f"{root}/{name}").size
        return [AddAction(path=name, size=size, partition_values={}, modification_time=int(time.time() * 1000),
                          data_change=True, stats=_stats(batch, self.range_columns))]  # fmt: skip

    def commit(
        self, table: DeltaTable, adds: list[AddAction], txns: list[Transaction], metadata: dict
    ) -> None:
        """Phase two: one Delta commit with the files and the offsets. It fails with CommitFailedError if
        another writer committed the same `txn` app ids since `table` was read (no duplicates)."""
        if os.environ.get(CRASH_BEFORE_COMMIT_ENV):
            import random

            if random.random() < float(os.environ[CRASH_BEFORE_COMMIT_ENV]):
                os.kill(os.getpid(), signal.SIGKILL)
        table.create_write_transaction(
            adds, mode="append", schema=self.schema,
            commit_properties=CommitProperties(app_transactions=txns, custom_metadata=metadata),
        )  # fmt: skip
        # Move the snapshot to include our commit, so our next commit is not taken for a concurrent one.
        # If another writer's offsets show up now, stop: positions held in memory are no longer the truth.
        table.update_incremental()
        for txn in txns:
            if table.transaction_version(txn.app_id) != txn.version:
                raise ConcurrentWriterError(
                    f"another writer moved {txn.app_id} of {self.uri} to "
                    f"{table.transaction_version(txn.app_id)} right after we committed {txn.version}; "
                    "stopping so that the next run resumes from the table"
                )
