"""Raw -> bronze and dead letters, exactly once, incrementally.

Both tables take in raw offsets through the one commit protocol (exactly_once.py): a run reads
the raw rows after the lower of the two tables' marks, commits the dead letters first and then
MERGEs the valid rows into bronze (insert when the event_id is new, so a duplicate delivery
from any earlier batch is dropped). A crash between the two commits leaves the dead letters
ahead; the next run skips what each table already has.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow.dataset as ds
from deltalake import DeltaTable

from lakehouse.ingest.bronze import to_bronze
from lakehouse.ingest.dead_letters import DEAD_LETTER_SCHEMA
from lakehouse.ingest.delta_sink import landed_partitions, next_offsets
from lakehouse.ingest.exactly_once import MarkedTable, commit_in_order, keep_from

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
    max_new_columns: int = 64,
) -> RefineResult:
    raw = DeltaTable(raw_uri, storage_options=storage_options)
    partitions = landed_partitions(raw)
    upto = next_offsets(raw, raw_app, topic, partitions)  # what the raw table has committed, exclusive
    bronze = MarkedTable(bronze_uri, storage_options, BRONZE_APP, topic).open()
    dead = MarkedTable(
        dead_letter_uri, storage_options, DEAD_LETTER_APP, topic, schema=DEAD_LETTER_SCHEMA
    ).open()
    bronze_marks, dead_marks = bronze.next_offsets(partitions), dead.next_offsets(partitions)
    result = RefineResult()
    todo = [p for p in partitions if bronze_marks[p] < upto[p]]
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
    batch = to_bronze(
        rows, existing=bronze.arrow_schema(), max_new_columns=max_new_columns, decided=dead_marks
    )
    result.duplicates = batch.duplicates
    log(f"bronze: {rows.num_rows} raw rows from partitions {todo}")
    known = set(bronze.arrow_schema().names) if bronze.table is not None else set(batch.table.schema.names)
    valid = keep_from(batch.table, bronze_marks, "kafka_partition", "kafka_offset")
    result.new_columns = [n for n in valid.schema.names if n not in known]

    def merge_bronze() -> None:
        metrics = bronze.merge(
            valid, upto, raw_uri, predicate="t.event_date = s.event_date AND t.event_id = s.event_id",
            clauses=lambda m: m.when_not_matched_insert_all(), partition_by=["event_date"],
        )  # fmt: skip
        result.inserted = metrics["num_target_rows_inserted"]
        result.duplicates += valid.num_rows - result.inserted

    written = commit_in_order(dead, batch.dead_letters, bronze, merge_bronze, upto, raw_uri)
    result.dead_letters = written.num_rows
    result.reasons = Counter(e.split(":")[0] for e in written.column("error").to_pylist())
    log(f"bronze: inserted {result.inserted}, duplicates dropped {result.duplicates}, "
        f"dead letters {result.dead_letters}, new columns {result.new_columns or 'none'}")  # fmt: skip
    return result
