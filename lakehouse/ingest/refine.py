"""Raw -> bronze and dead letters, exactly once, incrementally.

Each destination table records, per Kafka partition, the last raw offset it has taken in (Delta
`txn` actions, as in the landing). A run reads the raw rows after the lower of the two marks, writes
the dead letters first and then MERGEs the valid rows into bronze (insert when the event_id is
new, so a duplicate delivery from any earlier batch is dropped). A crash between the two commits
leaves the dead letters ahead; the next run skips what each table already has.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow.dataset as ds
from deltalake import DeltaTable, write_deltalake
from deltalake.transaction import CommitProperties, Transaction

from lakehouse.ingest.bronze import to_bronze
from lakehouse.ingest.dead_letters import DEAD_LETTER_SCHEMA, commit_dead_letters, keep_from
from lakehouse.ingest.delta_sink import (
    DeltaAppender,
    arrow_schema,
    landed_partitions,
    next_offsets,
    open_table,
    txn_app_id,
)

BRONZE_APP = "lakehouse-bronze"
DEAD_LETTER_APP = "lakehouse-dead-letters"


@dataclass
class RefineResult:
    raw_rows_read: int = 0
    inserted: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    reasons: Counter = field(default_factory=Counter)
    new_columns: list[str] = field(default_factory=list)


def refine(
    raw_uri: str,
    bronze_uri: str,
    dead_letter_uri: str,
    storage_options: dict[str, str],
    topic: str,
    raw_app: str,
    log: Callable[[str], None] = print,
) -> RefineResult:
    raw = DeltaTable(raw_uri, storage_options=storage_options)
    partitions = landed_partitions(raw)
    upto = next_offsets(raw, raw_app, topic, partitions)  # what the raw table has committed, exclusive
    bronze = open_table(bronze_uri, storage_options)
    dead_appender = DeltaAppender(dead_letter_uri, storage_options, DEAD_LETTER_SCHEMA)
    dead_table = dead_appender.open()
    bronze_marks = next_offsets(bronze, BRONZE_APP, topic, partitions)
    dead_marks = next_offsets(dead_table, DEAD_LETTER_APP, topic, partitions)
    result = RefineResult()
    todo = [p for p in partitions if min(bronze_marks[p], dead_marks[p]) < upto[p]]
    if not todo:
        log("bronze: nothing new in raw")
        return result
    filters = None
    for p in todo:
        f = (
            (ds.field("partition") == p)
            & (ds.field("offset") >= min(bronze_marks[p], dead_marks[p]))
            & (ds.field("offset") < upto[p])
        )
        filters = f if filters is None else filters | f
    rows = raw.to_pyarrow_dataset().to_table(filter=filters)
    result.raw_rows_read = rows.num_rows
    batch = to_bronze(rows, existing=arrow_schema(bronze) if bronze is not None else None)
    result.duplicates = batch.duplicates
    log(f"bronze: {rows.num_rows} raw rows from partitions {todo}")

    # Dead letters first: their marks move with every run, even when there is none to write.
    dead_txns = [Transaction(txn_app_id(DEAD_LETTER_APP, topic, p), upto[p] - 1) for p in todo]
    dead = commit_dead_letters(dead_appender, dead_table, batch.dead_letters, dead_marks, dead_txns, raw_uri)
    result.dead_letters = dead.num_rows
    result.reasons = Counter(e.split(":")[0] for e in dead.column("error").to_pylist())

    valid = keep_from(batch.table, bronze_marks, "kafka_partition", "kafka_offset")
    bronze_txns = [Transaction(txn_app_id(BRONZE_APP, topic, p), upto[p] - 1) for p in todo]
    commit = CommitProperties(app_transactions=bronze_txns, custom_metadata={"lakehouse.source": raw_uri})
    if bronze is None:
        write_deltalake(bronze_uri, valid, partition_by=["event_date"], storage_options=storage_options,
                        commit_properties=commit, configuration={"delta.checkpointInterval": "20"})  # fmt: skip
        result.inserted = valid.num_rows
        result.new_columns = [n for n in valid.schema.names if n not in batch.table.schema.names]
    else:
        known = set(arrow_schema(bronze).names)
        result.new_columns = [n for n in valid.schema.names if n not in known]
        if valid.num_rows:
            metrics = (
                bronze.merge(valid, predicate="t.event_date = s.event_date AND t.event_id = s.event_id",
                             source_alias="s", target_alias="t", merge_schema=True, commit_properties=commit)
                .when_not_matched_insert_all()
                .execute()
            )  # fmt: skip
            result.inserted = metrics["num_target_rows_inserted"]
            result.duplicates += valid.num_rows - result.inserted
        else:
            bronze.create_write_transaction(
                [], mode="append", schema=bronze.schema(), commit_properties=commit
            )
    log(f"bronze: inserted {result.inserted}, duplicates dropped {result.duplicates}, "
        f"dead letters {result.dead_letters}, new columns {result.new_columns or 'none'}")  # fmt: skip
    return result
