"""The one exactly-once commit protocol of every table fed from Kafka partitions.

The landing (Kafka -> raw), the bronze refinement (raw -> bronze and dead letters) and the CDC
apply (change log -> silver and dead letters) all write through a `MarkedTable`. Its rules:

1. **Positions live in the table.** Every commit records, in the same Delta transaction as its
   data, a `txn` action per source partition (`app_id = <app>:<topic>:<partition>`, `version =
   last offset taken in`, -1 for none yet). A run starts each partition right after that mark, so
   a crash before a commit takes nothing in and a crash after it re-reads nothing.
2. **Every commit carries every partition the writer holds**, not only those its batch touched.
   delta-rs refuses a commit whose `txn` app ids were committed by another writer since this one
   read the table (`CommitFailedError`), so two writers holding a common partition can never
   both commit it: the loser stops with `ConcurrentWriterError`, having committed nothing.
3. **After each commit the writer re-reads the marks** and stops if any partition it holds was
   moved by someone else: its positions in memory are no longer the truth.
4. **Derived tables commit the dead letters first**, then the data (see `commit_in_order`): a
   crash in between leaves the dead letters ahead; the next run skips, per table, what it has.

Fault points `<app>.before_commit` and `<app>.after_commit` (lakehouse/faults.py) let the crash
tests kill a writer at exactly those windows.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.transaction import AddAction, CommitProperties, Transaction

from lakehouse.faults import fault_point
from lakehouse.ingest.delta_sink import LakeUnavailable, next_offsets, table_filesystem, txn_app_id
from lakehouse.stack.errors import StackError

IDENTITY_PREFIX = "lakehouse:"  # the table description holds its identity as JSON after this prefix
CHECKPOINT_INTERVAL = "20"  # commits between Delta checkpoints: frequent small commits stay cheap to read


class ConcurrentWriterError(StackError):
    """Another writer took in offsets of the same topic partitions into the same table."""


RESUME = "run it again: the next run resumes from the table. Run one writer per table (Dagster's pools do)"


@dataclass
class MarkedTable:
    """A Delta table that takes in records of one topic's partitions exactly once (see module doc)."""

    uri: str
    storage_options: dict[str, str]
    app: str
    topic: str
    schema: pa.Schema | None = None  # create the table empty with this schema when it does not exist
    metadata: dict[str, str] = field(default_factory=dict)  # written into every commit's info
    table: DeltaTable | None = field(default=None, init=False)

    def identity(self) -> dict:
        return table_identity(self.table)

    def remember(self, **facts) -> None:
        """Add facts to the table's identity (one metadata commit, only when something is new). Writers
        starting together may race for it: the loser re-reads and tries again, or finds its facts there."""
        for _ in range(10):
            current = self.identity()
            if self.table is None or all(current.get(k) == v for k, v in facts.items()):
                return
            description = IDENTITY_PREFIX + json.dumps({**current, **facts}, sort_keys=True)
            with contextlib.suppress(
                CommitFailedError
            ):  # another writer changed it first: read, decide again
                self.table.alter.set_table_description(description)
            self.table.update_incremental()
        raise self._lost({}, "its table description kept changing")

    def open(self) -> MarkedTable:
        try:
            self.table = DeltaTable(self.uri, storage_options=self.storage_options)
        except TableNotFoundError:
            self.table = None
        except OSError as exc:
            raise LakeUnavailable(
                f"cannot read {self.uri} at {self.storage_options.get('AWS_ENDPOINT_URL', 'the object store')}: "
                f"{str(exc).splitlines()[0]} ({' '.join(str(exc).split())[-160:]})",
                fix="start the object store (`lakehouse stack up`) or check LAKEHOUSE_S3_ENDPOINT and "
                "the credentials; the next run resumes from the last commit",
            ) from exc
        if self.table is None and self.schema is not None:
            self._create(self.schema, None)
        return self

    def _create(self, schema: pa.Schema, partition_by: list[str] | None) -> None:
        """Create the table empty (another creator may win: then its table is used)."""
        try:
            self.table = DeltaTable.create(
                self.uri, schema, mode="ignore", partition_by=partition_by, storage_options=self.storage_options,
                configuration={"delta.checkpointInterval": CHECKPOINT_INTERVAL},
            )  # fmt: skip
        except Exception:  # noqa: BLE001 - a concurrent creator won: use its table
            self.table = DeltaTable(self.uri, storage_options=self.storage_options)

    def next_offsets(self, partitions: list[int]) -> dict[int, int]:
        """Next offset to take in per partition, from the table's `txn` actions (0 if none)."""
        return next_offsets(self.table, self.app, self.topic, partitions)

    def arrow_schema(self) -> pa.Schema | None:
        return pa.schema(self.table.schema().to_arrow()) if self.table is not None else None

    # -- the commits: each carries the marks of every partition held (`upto`: next offset, exclusive) --

    def commit_files(self, adds: list[AddAction], upto: dict[int, int], source: str) -> None:
        """Append already uploaded data files (two-phase: the landing uploads, then commits). The files
        must still be there: a vacuum with a retention shorter than the time since the upload would have
        removed them, and committing would reference missing data."""
        fs, root = table_filesystem(self.uri, self.storage_options)
        gone = [a.path for a in adds if fs.get_file_info(f"{root}/{a.path}").type == pafs.FileType.NotFound]
        if gone:
            raise StackError(
                f"{len(gone)} data file(s) uploaded to {self.uri} for this batch were deleted before the commit "
                f"({gone[0]}): a vacuum ran with a retention shorter than the batch took; nothing was committed",
                fix="run again (the batch is read again from Kafka); keep LAKEHOUSE_VACUUM_RETENTION_HOURS at 1 or more",
            )
        self._commit(upto, lambda props: self.table.create_write_transaction(
            adds, mode="append", schema=self.table.schema(), commit_properties=props), source)  # fmt: skip

    def append(
        self, rows: pa.Table, upto: dict[int, int], source: str, partition_by: list[str] | None = None
    ) -> None:
        """Append rows (creating the table on first use), or only move the marks when there are none."""
        if self.table is not None and rows.num_rows == 0:
            self.mark(upto, source)
            return
        self._commit(upto, lambda props: write_deltalake(
            self.table, rows, mode="append", schema_mode="merge", commit_properties=props),
            source, create=(rows.schema, partition_by))  # fmt: skip

    def merge(self, rows: pa.Table, upto: dict[int, int], source: str, predicate: str,
              clauses: Callable, partition_by: list[str] | None = None) -> dict:  # fmt: skip
        """MERGE rows into the table (`clauses` adds the when-matched/not-matched rules); creates it
        from the rows on first use (partitioned by `partition_by`). Returns delta-rs's merge metrics."""
        if self.table is None:
            self.append(rows, upto, source, partition_by=partition_by)
            return {"num_target_rows_inserted": rows.num_rows, "num_target_rows_updated": 0}
        if rows.num_rows == 0:
            self.mark(upto, source)
            return {"num_target_rows_inserted": 0, "num_target_rows_updated": 0}
        metrics: dict = {}

        def run(props: CommitProperties) -> None:
            merger = self.table.merge(rows, predicate=predicate, source_alias="s", target_alias="t",
                                      merge_schema=True, commit_properties=props)  # fmt: skip
            metrics.update(clauses(merger).execute())

        self._commit(upto, run, source)
        return metrics

    def rewrite(self, rows: pa.Table, upto: dict[int, int], source: str) -> None:
        """Replace the table's content and schema with `rows` (a type change), keeping the marks at `upto`."""
        self._commit(upto, lambda props: write_deltalake(
            self.table, rows, mode="overwrite", schema_mode="overwrite", commit_properties=props), source)  # fmt: skip

    def mark(self, upto: dict[int, int], source: str, metadata: dict[str, str] | None = None) -> None:
        """A commit with no data: only the marks move (none when they are where they should be)."""
        if self.next_offsets(list(upto)) == upto:
            return
        self._commit(upto, lambda props: self.table.create_write_transaction(
            [], mode="append", schema=self.table.schema(), commit_properties=props), source, metadata)  # fmt: skip

    def _commit(self, upto: dict[int, int], run: Callable[[CommitProperties], None], source: str = "",
                metadata: dict[str, str] | None = None, create: tuple | None = None) -> None:  # fmt: skip
        """Run one commit through `run` against the snapshot the writer's positions came from: delta-rs then
        refuses it if another writer committed any of the same marks since (every write goes through the
        DeltaTable object, never the URI, which would re-read the newest version and skip that check)."""
        believed = self.next_offsets(list(upto))  # what this writer's positions rest on (0s: no table yet)
        if self.table is None:
            self._create(*create)
            if self.next_offsets(list(upto)) != believed:  # another creator already took records in
                raise self._lost(upto, "it created the table first")
        txns = [Transaction(txn_app_id(self.app, self.topic, p), o - 1) for p, o in sorted(upto.items())]
        props = CommitProperties(app_transactions=txns, custom_metadata={
            "lakehouse.source": source or self.topic, "lakehouse.writer": self.app, **self.metadata,
            **(metadata or {})})  # fmt: skip
        fault_point(f"{self.app}.before_commit")
        try:
            run(props)
        except CommitFailedError as exc:
            raise self._lost(upto, str(exc)) from exc
        fault_point(f"{self.app}.after_commit")
        self.table.update_incremental()
        now = self.next_offsets(list(upto))
        if now == believed and now != upto:
            # The operation wrote no commit (a MERGE that changed no row does not commit): the marks must
            # still move, in a commit of their own against the same snapshot.
            try:
                self.table.create_write_transaction([], mode="append", schema=self.table.schema(),
                                                    commit_properties=props)  # fmt: skip
            except CommitFailedError as exc:
                raise self._lost(upto, str(exc)) from exc
            self.table.update_incremental()
            now = self.next_offsets(list(upto))
        moved = {p: v for p, v in now.items() if v != upto[p]}
        if moved:
            raise ConcurrentWriterError(
                f"another writer moved {self.topic} partitions {moved} (next offsets) of {self.uri} right after "
                f"this one committed up to {[upto[p] for p in moved]}; this run stops",
                fix=RESUME,
            )

    def _lost(self, upto: dict[int, int], why: str) -> ConcurrentWriterError:
        return ConcurrentWriterError(
            f"another writer committed to {self.uri} while this one ran (offsets of {self.topic} partitions "
            f"{sorted(upto)}, or files this commit rewrote, e.g. by table maintenance): {why}. This run "
            "committed nothing and stops",
            fix=RESUME,
        )


def table_identity(table: DeltaTable | None) -> dict:
    """What a table must stay true to (e.g. the Kafka topic's incarnation, silver's key columns), kept in
    its description: table metadata lasts as long as the table, unlike commit infos."""
    description = table.metadata().description if table is not None else None
    if description and description.startswith(IDENTITY_PREFIX):
        with contextlib.suppress(ValueError):
            return json.loads(description[len(IDENTITY_PREFIX) :])
    return {}


def keep_from(rows: pa.Table, marks: dict[int, int], partition_col: str, offset_col: str) -> pa.Table:
    """Rows whose offset is at or after their partition's mark."""
    if rows.num_rows == 0:
        return rows
    floor = pa.array([marks.get(p, 0) for p in rows.column(partition_col).to_pylist()], pa.int64())
    return rows.filter(pc.greater_equal(rows.column(offset_col), floor))


def commit_in_order(dead: MarkedTable, dead_rows: pa.Table, main: MarkedTable, write_main: Callable[[], None],
                    upto: dict[int, int], source: str, mark_lag: int = 5000) -> pa.Table:  # fmt: skip
    """Dead letters first, then the main table (`write_main` commits it through `main`).

    The dead-letter table commits when it has rows to take in, or when its marks lag `mark_lag` records
    behind (an empty commit every run would only grow its log; the records below its marks are re-read
    and skipped). Returns the dead letters committed."""
    marks = dead.next_offsets(list(upto))
    fresh = keep_from(dead_rows, marks, "partition", "offset")
    if fresh.num_rows or any(upto[p] - marks[p] > mark_lag for p in upto):
        dead.append(fresh, upto, source)
    write_main()
    return fresh
