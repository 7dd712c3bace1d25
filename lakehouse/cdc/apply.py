"""Change log -> silver current state, with Delta MERGE ordered by LSN.

Per run: the change-log rows after the silver table's mark (a Delta `txn` action per partition,
as in the landing) are reduced to the newest change per primary key (by LSN, then offset), then
MERGEd: a key's row is replaced only by a change with a higher LSN, so at-least-once replays
from Debezium and any delivery order converge to the same state. Deletes are kept as markers
(`_cdc_deleted`) so that an older change replayed later cannot bring a deleted row back; the
current state is every row not marked deleted. A primary-key change arrives as a delete of the
old key and a create of the new one, so the row moves. A snapshot ('r' records, after a
re-snapshot for instance) cannot say what was deleted in the meantime: when a table's snapshot
is complete, every row older than the snapshot that it did not contain is marked deleted, in
the same commit as the rest of the batch. The key columns come from Debezium's
message key and the other columns from the images: adding a table or a column needs no code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import DeltaTable, write_deltalake
from deltalake.transaction import CommitProperties, Transaction

from lakehouse.ingest.bronze import arrow_type_of
from lakehouse.ingest.dead_letters import DEAD_LETTER_SCHEMA, commit_dead_letters, keep_from
from lakehouse.ingest.delta_sink import (
    DeltaAppender,
    arrow_schema,
    landed_partitions,
    next_offsets,
    open_table,
    txn_app_id,
)

SILVER_CDC_APP = "lakehouse-silver-cdc"
CDC_DEAD_LETTER_APP = "lakehouse-cdc-dead-letters"
DEAD_LETTER_MARK_LAG = 5000  # records a dead-letter mark may lag behind before an empty commit moves it
META_COLUMNS = [("_cdc_lsn", pa.int64()), ("_cdc_op", pa.string()), ("_cdc_deleted", pa.bool_()),
                ("_cdc_source_ts", pa.timestamp("ms", tz="UTC"))]  # fmt: skip


@dataclass
class ApplyResult:
    changes_read: int = 0
    keys_changed: int = 0
    dead_letters: int = 0
    inserted: int = 0
    updated: int = 0
    new_columns: list[str] = field(default_factory=list)


def newest_per_key(changes: list[dict]) -> tuple[list[str], list[dict]]:
    """(key columns, one row per key: the newest change's image plus `_cdc_*` fields)."""
    newest: dict[str, dict] = {}
    key_columns: list[str] = []
    for c in sorted(changes, key=lambda c: (c["lsn"], c["offset"])):
        key = json.loads(c["key"])
        key_columns = list(key)
        image = json.loads(c["before"] if c["op"] == "d" else c["after"])
        row = {**image, "_cdc_lsn": c["lsn"], "_cdc_op": c["op"], "_cdc_deleted": c["op"] == "d",
               "_cdc_source_ts": c["source_ts"]}  # fmt: skip
        newest[json.dumps(key, sort_keys=True)] = row
    return key_columns, list(newest.values())


SNAPSHOT_ENDS = {"last", "last_in_data_collection"}


def snapshot_sweep(change_log: DeltaTable, silver: DeltaTable | None, changes: list[dict], key_columns: list[str],
                   newest: list[dict]) -> list[dict]:  # fmt: skip
    """After a table's snapshot completed: turn this batch's older changes of rows the snapshot no longer
    has into deletes (in place), and return delete markers for such rows already in silver."""
    markers: list[dict] = []
    ends = sorted(
        {(c["lsn"], c["source_ts"]) for c in changes if c["op"] == "r" and c["snapshot"] in SNAPSHOT_ENDS}
    )
    if not ends or not key_columns:
        return markers
    in_batch = {tuple(r[k] for k in key_columns) for r in newest}
    live = []
    if silver is not None:
        table = silver.to_pyarrow_table()
        live = table.filter(pc.invert(table.column("_cdc_deleted"))).to_pylist()
    swept: set[tuple] = set()
    for snap_lsn, snap_ts in ends:
        in_snapshot = change_log.to_pyarrow_dataset().to_table(
            filter=(ds.field("lsn") == snap_lsn) & (ds.field("op") == "r"), columns=["key"]
        )
        keys = {tuple(json.loads(k)[c] for c in key_columns) for k in in_snapshot.column("key").to_pylist()}
        marker = {"_cdc_lsn": snap_lsn, "_cdc_op": "d", "_cdc_deleted": True, "_cdc_source_ts": snap_ts}
        for row in newest:
            if (
                row["_cdc_lsn"] < snap_lsn
                and not row["_cdc_deleted"]
                and tuple(row[k] for k in key_columns) not in keys
            ):
                row.update(marker)
        for row in live:
            key = tuple(row[k] for k in key_columns)
            if key not in keys and key not in swept and key not in in_batch and row["_cdc_lsn"] < snap_lsn:
                swept.add(key)
                markers.append({**row, **marker})
    return markers


def rows_to_arrow(rows: list[dict], existing: pa.Schema | None) -> pa.Table:
    """Rows as a table: known columns keep the table's types, new columns take their JSON value's type."""
    types = {f.name: f.type for f in existing} if existing is not None else {}
    for name, t in META_COLUMNS:
        types.setdefault(name, t)
    for row in rows:
        for name, value in row.items():
            if name not in types and value is not None:
                types[name] = arrow_type_of(value)
    names = [n for n in types if any(n in r for r in rows)] or list(types)
    for name in names:
        types.setdefault(name, pa.string())
    return pa.Table.from_pylist(rows, schema=pa.schema([pa.field(n, types[n]) for n in names]))


def apply_changes(
    change_log_uri: str,
    silver_uri: str,
    dead_letter_uri: str,
    storage_options: dict[str, str],
    topic: str,
    log: Callable[[str], None] = print,
) -> ApplyResult:
    """Apply the change log's new records to silver; unreadable ones (kept in the change log with the
    reason) become dead letters first, each table with its own marks, as in the bronze refining."""
    result = ApplyResult()
    change_log = open_table(change_log_uri, storage_options)
    if change_log is None:
        log(f"{change_log_uri}: no change log yet")
        return result
    silver = open_table(silver_uri, storage_options)
    dead_appender = DeltaAppender(dead_letter_uri, storage_options, DEAD_LETTER_SCHEMA)
    dead_table = dead_appender.open()
    partitions = landed_partitions(change_log)
    marks = next_offsets(silver, SILVER_CDC_APP, topic, partitions)
    dead_marks = next_offsets(dead_table, CDC_DEAD_LETTER_APP, topic, partitions)
    filters = None
    for p in partitions:
        f = (ds.field("partition") == p) & (ds.field("offset") >= min(marks[p], dead_marks[p]))
        filters = f if filters is None else filters | f
    columns = ["topic", "partition", "offset", "kafka_timestamp", "key", "op", "before", "after", "lsn",
               "source_ts", "snapshot", "value", "error"]  # fmt: skip
    read = change_log.to_pyarrow_dataset().to_table(filter=filters, columns=columns)
    if read.num_rows == 0:
        log(f"{silver_uri}: up to date")
        return result
    last = read.group_by("partition").aggregate([("offset", "max")])
    last = dict(zip(last.column("partition").to_pylist(), last.column("offset_max").to_pylist(), strict=True))

    unreadable = read.filter(pc.is_valid(read.column("error")))
    dead = unreadable.select(["topic", "partition", "offset", "kafka_timestamp", "value", "error"])
    dead = dead.append_column("dead_lettered_at", pa.array([datetime.now(UTC)] * dead.num_rows,
                                                           pa.timestamp("us", tz="UTC")))  # fmt: skip
    # The dead letters' marks move with a commit only when there is one to write or they lag far behind:
    # an empty commit per run would grow the table's log for nothing.
    dead = keep_from(dead.cast(DEAD_LETTER_SCHEMA), dead_marks, "partition", "offset")
    if dead.num_rows or any(o + 1 - dead_marks[p] > DEAD_LETTER_MARK_LAG for p, o in last.items()):
        dead_txns = [Transaction(txn_app_id(CDC_DEAD_LETTER_APP, topic, p), o) for p, o in last.items()]
        commit_dead_letters(dead_appender, dead_table, dead, dead_marks, dead_txns, change_log_uri)
    result.dead_letters = dead.num_rows
    if dead.num_rows:
        reasons = sorted(set(dead.column("error").to_pylist()))
        log(f"{silver_uri}: {dead.num_rows} change records cannot be applied, kept in {dead_letter_uri}: "
            f"{'; '.join(reasons[:3])}")  # fmt: skip

    rows = keep_from(read, marks, "partition", "offset")
    if rows.num_rows == 0:
        return result
    result.changes_read = rows.num_rows
    txns = [Transaction(txn_app_id(SILVER_CDC_APP, topic, p), o) for p, o in last.items()]
    commit = CommitProperties(app_transactions=txns, custom_metadata={"lakehouse.source": change_log_uri})
    changes = rows.filter(
        pc.and_(pc.is_valid(rows.column("op")), pc.is_null(rows.column("error")))
    ).to_pylist()
    key_columns, newest = newest_per_key(changes)
    newest += snapshot_sweep(change_log, silver, changes, key_columns, newest)
    result.keys_changed = len(newest)
    existing = arrow_schema(silver) if silver is not None else None
    if not newest:
        if silver is not None:
            silver.create_write_transaction(
                [], mode="append", schema=silver.schema(), commit_properties=commit
            )
        return result
    source = rows_to_arrow(newest, existing)
    result.new_columns = [n for n in source.schema.names if existing is not None and n not in existing.names]
    if silver is None:
        write_deltalake(silver_uri, source, storage_options=storage_options, commit_properties=commit,
                        configuration={"delta.checkpointInterval": "20"})  # fmt: skip
        result.inserted = source.num_rows
    else:
        predicate = " AND ".join(f"t.{k} = s.{k}" for k in key_columns)
        metrics = (
            silver.merge(source, predicate=predicate, source_alias="s", target_alias="t", merge_schema=True,
                         commit_properties=commit)
            .when_matched_update_all(predicate="s._cdc_lsn > t._cdc_lsn")
            .when_not_matched_insert_all()
            .execute()
        )  # fmt: skip
        result.inserted, result.updated = (
            metrics["num_target_rows_inserted"],
            metrics["num_target_rows_updated"],
        )
    log(f"{silver_uri}: {result.changes_read} changes, {result.keys_changed} keys, inserted {result.inserted}, "
        f"updated {result.updated}, dead letters {result.dead_letters}")  # fmt: skip
    return result


def current_state(silver: DeltaTable) -> pa.Table:
    """The rows of the source table now: every row not marked deleted, without the `_cdc_` columns."""
    table = silver.to_pyarrow_table()
    live = table.filter(pc.invert(table.column("_cdc_deleted")))
    return live.select([n for n in live.schema.names if not n.startswith("_cdc_")])
