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

No single change record can stop the apply: one without a usable key (a table without a primary
key has none), with key columns missing from its image, or with a value whose type no longer fits
its silver column becomes a dead letter with the reason, and the records after it are applied in
the same run. A column whose values widen (integer to double) is rewritten to the wider type first.
Silver and the dead letters take in change-log offsets through the one commit protocol
(lakehouse/ingest/exactly_once.py), dead letters first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import DeltaTable

from lakehouse.cdc.source_types import SourceTypes, arrow_type, typed_column
from lakehouse.ingest import strict_json
from lakehouse.ingest.bronze import COLUMN_NAME, EXACT_DOUBLE, arrow_type_of, to_column
from lakehouse.ingest.dead_letters import DEAD_LETTER_SCHEMA, dead_letter_table
from lakehouse.ingest.delta_sink import landed_partitions, open_table
from lakehouse.ingest.exactly_once import MarkedTable, commit_in_order, keep_from

SILVER_CDC_APP = "lakehouse-silver-cdc"
EPOCH = datetime(1970, 1, 1)
CDC_DEAD_LETTER_APP = "lakehouse-cdc-dead-letters"
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
    """(key columns, one row per key: the newest change's image plus `_cdc_*` fields). The changes are
    validated ones (`validate_changes`): `key` and `image` parsed."""
    newest: dict[str, dict] = {}
    key_columns: list[str] = []
    for c in sorted(changes, key=lambda c: (change_lsn(c), c["offset"])):
        key_columns = list(c["key_values"])
        row = {**c["image"], "_cdc_lsn": change_lsn(c), "_cdc_op": c["op"], "_cdc_deleted": c["op"] == "d",
               "_cdc_source_ts": c["source_ts"]}  # fmt: skip
        newest[strict_json.dumps(c["key_values"])] = row
    return key_columns, list(newest.values())


def change_lsn(change: dict) -> int:
    """The LSN a change is ordered by. An incremental snapshot's reads carry none (Debezium reads them
    outside the log): as 0 they insert a key silver has never seen and never replace a row or a delete
    marker, which is right, since any change of the row since it was read arrives as a change with an LSN."""
    return change["lsn"] if change["lsn"] is not None else 0


KEY_COLUMNS = "key_columns"  # in silver's identity (its table description): a batch can't redefine the key
SOURCE_TYPES = "source_types"  # in silver's identity: each column's PostgreSQL type when silver took it
WIDENINGS = {(pa.int64(), pa.float64())}  # (silver's type, the type a change brings): rewrite the column


def parse_key(key: str | None) -> dict:
    """Debezium's message key: the primary key's columns and values; ValueError if unusable."""
    if key is None:
        raise ValueError("no message key: the source table has no primary key, so Debezium sends none; add a "
                         "primary key to the table (or set message.key.columns for it in the connector)")  # fmt: skip
    parsed = strict_json.loads(key)
    if not isinstance(parsed, dict) or not parsed:
        raise ValueError(f"message key is not a JSON object with the key columns: {key[:80]!r}")
    if any(isinstance(v, bool) or not isinstance(v, (int, str)) for v in parsed.values()):
        raise ValueError(f"message key values must be integers or strings: {key[:80]!r}")
    return parsed


def validate_changes(
    changes: list[dict],
    existing: pa.Schema | None,
    key_columns: list[str] | None = None,
    decided: dict[int, int] | None = None,
    fits_double: Callable[[str], bool] = lambda _: True,
    source: SourceTypes | None = None,
) -> tuple[list[dict], list[tuple], dict, dict]:
    """(usable changes with `key_values` and `image`, dead letters as (row, reason), columns to widen in
    silver, and the type of every column the usable changes need).

    The key columns are silver's (kept in its identity), else the first usable change's; a change with
    other key columns, or whose image disagrees with its key, is a dead letter. Column names must be
    usable as columns (as in bronze) and not collide, in any case, with another column or `_cdc_*`.
    Changes below `decided` (offsets a crashed run already sorted into dead letters) are validated first,
    in the same order as then, so a rerun decides them the same way. `fits_double(column)` says whether
    silver's values of an integer column could widen to double without losing digits."""
    silver_types = {f.name: f.type for f in existing} if existing is not None else {}
    types = dict(silver_types)  # silver's columns, then the new ones this batch adds
    usable, dead, widen = [], [], {}
    checked_names: set[tuple] = set()  # column name sets already found usable (most changes share one)
    decided = decided or {}
    order = sorted(
        changes, key=lambda c: (c["offset"] >= decided.get(c["partition"], 0), change_lsn(c), c["offset"])
    )
    for c in order:
        try:
            key = parse_key(c["key"])
            image = strict_json.loads(c["before"] if c["op"] == "d" else c["after"])
            if not isinstance(image, dict):
                raise ValueError("the change's image is not a JSON object")
            for k, v in key.items():
                if k not in image:
                    raise ValueError(f"key column {k} missing from the change's image")
                if type(image[k]) is not type(v) or image[k] != v:
                    raise ValueError(
                        f"key column {k} is {v!r} in the message key but {image[k]!r} in the image"
                    )
            if key_columns is not None and list(key) != key_columns:
                raise ValueError(f"key columns {list(key)} differ from the table's {key_columns}")
            names = tuple(image)
            if names not in checked_names:
                check_column_names(image, types)
                checked_names.add(names)
            found_types, found_pg = {}, {}
            for name, value in list(image.items()):
                pg, value = source.resolve(name, value) if source is not None else (None, value)
                if pg is not None:  # typed: the column exists in its source type, NULL or not
                    image[name] = value
                    found_types[name] = (typed_column(name, pg, types.get(name), value, image) if value is not None
                                         else types.get(name) or arrow_type(pg))  # fmt: skip
                    found_pg[name] = pg
                    continue
                if isinstance(value, (dict, list)):
                    image[name] = value = strict_json.dumps(value)
                if value is None:
                    continue
                found = arrow_type_of(value)
                column_type = types.get(name, found)
                if (column_type, found) in WIDENINGS:
                    if name in silver_types and not fits_double(name):
                        raise ValueError(f"{name} turns from integer to double, but silver holds integers a "
                                         "double cannot hold exactly")  # fmt: skip
                    column_type = found  # integer to double: the column widens
                to_column(name, value, column_type)  # ValueError: out of range, or a change that cannot widen
                found_types[name] = column_type
        except ValueError as exc:
            dead.append((c, str(exc)))
            continue
        key_columns = list(key)
        if source is not None:
            source.registered.update(found_pg)
        for name, column_type in found_types.items():
            if name in silver_types and silver_types[name] != column_type:
                widen[name] = column_type
            types[name] = column_type
        usable.append({**c, "key_values": key, "image": image})
    # A column that widened in this batch: earlier changes' integers must still be exact as doubles.
    doubles = {n for n, t in types.items() if t == pa.float64()}
    exact = []
    for c in usable:
        lost = [
            n for n in doubles if isinstance(c["image"].get(n), int) and abs(c["image"][n]) > EXACT_DOUBLE
        ]
        if lost:
            dead.append((c, f"{lost[0]} widened to double, which cannot hold {c['image'][lost[0]]} exactly"))
        else:
            exact.append(c)
    return exact, dead, widen, types


def check_column_names(image: dict, types: dict) -> None:
    """Every name can be a silver column and none collides with another (in any case) or with `_cdc_*`."""
    seen: dict[str, str] = {n.lower(): n for n in types}
    for name, _ in META_COLUMNS:
        seen[name.lower()] = name
    for name in image:
        if not COLUMN_NAME.fullmatch(name):
            raise ValueError(f"column {name[:80]!r} cannot become a silver column (letters, digits and _)")
        if name.lower().startswith("_cdc_"):
            raise ValueError(f"column {name!r} collides with silver's change columns (_cdc_*)")
        other = seen.setdefault(name.lower(), name)
        if other != name:
            raise ValueError(f"column {name!r} differs from column {other!r} only in case")


SNAPSHOT_ENDS = {"last", "last_in_data_collection"}


def snapshot_sweep(change_log: DeltaTable, silver: DeltaTable | None, changes: list[dict], key_columns: list[str],
                   newest: list[dict], source: SourceTypes | None = None) -> list[dict]:  # fmt: skip
    """After a table's snapshot completed: turn this batch's older changes of rows the snapshot no longer
    has into deletes (in place), and return delete markers for such rows already in silver."""
    markers: list[dict] = []
    ends = sorted(
        {(c["lsn"], c["source_ts"]) for c in changes if c["op"] == "r" and c["snapshot"] in SNAPSHOT_ENDS},
        key=lambda end: (end[0], end[1] is not None, end[1] or 0),
    )
    if not ends or not key_columns:
        return markers
    # One form for every key: the values as the batch's rows hold them (typed ones decoded, silver's read
    # back from Arrow in the same form), so a date or timestamp key compares equal on every side.
    in_batch = {tuple(r[k] for k in key_columns) for r in newest}
    live = []
    if silver is not None:
        table = silver.to_pyarrow_table()
        live = [{**r, **{k: comparable(r[k]) for k in key_columns}}
                for r in table.filter(pc.invert(table.column("_cdc_deleted"))).to_pylist()]  # fmt: skip
    swept: set[tuple] = set()
    for snap_lsn, snap_ts in ends:
        in_snapshot = change_log.to_pyarrow_dataset().to_table(
            filter=(ds.field("lsn") == snap_lsn) & (ds.field("op") == "r"), columns=["key"]
        )
        keys = {
            key for key in map(_key_tuple(key_columns, source), in_snapshot.column("key").to_pylist()) if key
        }
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


def comparable(value):
    """A key value of silver read back from Arrow in the form a decoded change holds it (days, microseconds)."""
    if isinstance(value, datetime):
        epoch = EPOCH.replace(tzinfo=value.tzinfo) if value.tzinfo else EPOCH
        delta = value - epoch
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(value, date):
        return (value - EPOCH.date()).days
    return value


def _key_tuple(key_columns: list[str], source: SourceTypes | None = None):
    def parse(key: str | None) -> tuple | None:
        try:
            values = parse_key(key)
            if source is not None:
                return tuple(source.resolve(c, values[c])[1] for c in key_columns)
            return tuple(values[c] for c in key_columns)
        except (ValueError, KeyError):
            return None  # not a usable key: that record is a dead letter, not a row of the snapshot

    return parse


def rows_to_arrow(rows: list[dict], existing: pa.Schema | None, validated: dict | None = None) -> pa.Table:
    """Rows as a table: known columns keep the table's types, new columns take the type validation gave
    them (or their JSON value's). Never let Arrow pick: it truncates 1.5 into an integer column."""
    types = {f.name: f.type for f in existing} if existing is not None else {}
    for name, column_type in (validated or {}).items():
        types.setdefault(name, column_type)
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
    read_catalog: Callable[[], dict[str, str]] | None = None,
) -> ApplyResult:
    """Apply the change log's new records to silver; unusable ones (unreadable when landed, or refused
    here) become dead letters first, each table with its own marks, as in the bronze refining.
    `read_catalog` gives the source table's column types ({column: PostgreSQL type}): silver's columns
    then carry them (without it, each column takes its first JSON value's type)."""
    result = ApplyResult()
    change_log = open_table(change_log_uri, storage_options)
    if change_log is None:
        log(f"{change_log_uri}: no change log yet")
        return result
    silver = MarkedTable(silver_uri, storage_options, SILVER_CDC_APP, topic).open()
    dead = MarkedTable(
        dead_letter_uri, storage_options, CDC_DEAD_LETTER_APP, topic, schema=DEAD_LETTER_SCHEMA
    ).open()
    partitions = landed_partitions(change_log)
    marks, dead_marks = silver.next_offsets(partitions), dead.next_offsets(partitions)
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
    upto = {p: max(marks[p], dead_marks[p]) for p in partitions}
    for p, o in zip(last.column("partition").to_pylist(), last.column("offset_max").to_pylist(), strict=True):
        upto[p] = max(upto[p], o + 1)

    rows = keep_from(read, marks, "partition", "offset")
    result.changes_read = rows.num_rows
    readable = rows.filter(pc.and_(pc.is_valid(rows.column("op")), pc.is_null(rows.column("error"))))
    known_key = silver.identity().get(KEY_COLUMNS)
    pg_types = SourceTypes(silver.identity().get(SOURCE_TYPES, {}), read_catalog) if read_catalog else None
    if pg_types is not None and SOURCE_TYPES not in silver.identity():
        check_typed(silver_uri, silver.arrow_schema(), pg_types)
    changes, refused, widen, types = validate_changes(
        readable.to_pylist(), silver.arrow_schema(), known_key, decided=dead_marks,
        fits_double=lambda name: fits_double(silver.table, name), source=pg_types,
    )  # fmt: skip
    unreadable = read.filter(pc.is_valid(read.column("error"))).to_pylist()
    dead_rows = dead_letter_table(
        [(r["topic"], r["partition"], r["offset"], r["kafka_timestamp"], r["value"], r["error"]) for r in unreadable]
        + [(c["topic"], c["partition"], c["offset"], c["kafka_timestamp"], c["value"], reason)
           for c, reason in refused]
    )  # fmt: skip
    key_columns, newest = newest_per_key(changes)
    newest += snapshot_sweep(change_log, silver.table, changes, key_columns, newest, pg_types)
    result.keys_changed = len(newest)

    def write_silver() -> None:
        if widen:
            rewiden(silver, widen, marks, change_log_uri, log)
        existing = silver.arrow_schema()
        source = rows_to_arrow(newest, existing, types) if newest else pa.table({})
        result.new_columns = [
            n for n in source.schema.names if existing is not None and n not in existing.names
        ]
        if not newest:
            if silver.table is not None:
                silver.mark(upto, change_log_uri)
            return
        predicate = " AND ".join(f"t.{k} = s.{k}" for k in key_columns)
        metrics = silver.merge(
            source, upto, change_log_uri, predicate=predicate,
            clauses=lambda m: m.when_matched_update_all(predicate="s._cdc_lsn > t._cdc_lsn").when_not_matched_insert_all(),
        )  # fmt: skip
        result.inserted, result.updated = (
            metrics["num_target_rows_inserted"],
            metrics["num_target_rows_updated"],
        )
        silver.remember(
            **{KEY_COLUMNS: key_columns}, **({SOURCE_TYPES: pg_types.registered} if pg_types else {})
        )

    written = commit_in_order(dead, dead_rows, silver, write_silver, upto, change_log_uri)
    result.dead_letters = written.num_rows
    if written.num_rows:
        reasons = sorted(set(written.column("error").to_pylist()))
        log(f"{silver_uri}: {written.num_rows} change records cannot be applied, kept in {dead_letter_uri}: "
            f"{'; '.join(reasons[:3])}")  # fmt: skip
    log(f"{silver_uri}: {result.changes_read} changes, {result.keys_changed} keys, inserted {result.inserted}, "
        f"updated {result.updated}, dead letters {result.dead_letters}")  # fmt: skip
    return result


def check_typed(silver_uri: str, schema: pa.Schema | None, source: SourceTypes) -> None:
    """StackError when silver was written before it was typed (its columns of typed source columns are
    text): every change would be refused, so the table must be rebuilt from its change log instead."""
    from lakehouse.stack.errors import StackError

    if schema is None:
        return
    untyped = [f.name for f in schema if f.type == pa.string() and not f.name.startswith("_cdc_")
               and f.name in source.catalog() and arrow_type(source.catalog()[f.name]) != pa.string()]  # fmt: skip
    if untyped:
        raise StackError(f"{silver_uri} was written before silver was typed: {', '.join(untyped)} hold text where "
                         "PostgreSQL's types are not text, so no change could be applied",
                         fix=f"remove {silver_uri} (its raw change log keeps every change) and run the apply again: "
                             "it rebuilds the table, typed, from the change log")  # fmt: skip


def fits_double(table: DeltaTable | None, name: str) -> bool:
    """Every integer of silver's column `name` is exact as a double (so the column may widen)."""
    if table is None:
        return True
    column = table.to_pyarrow_dataset().to_table(columns=[name]).column(name)
    biggest = pc.max(pc.abs(column)).as_py() if len(column) else None
    return biggest is None or biggest <= EXACT_DOUBLE


def rewiden(
    silver: MarkedTable, widen: dict[str, pa.DataType], marks: dict[int, int], source: str, log
) -> None:
    """Rewrite silver with the widened column types (one commit; the marks stay where they are)."""
    if silver.table is None:
        return
    table = silver.table.to_pyarrow_table()
    schema = pa.schema([pa.field(f.name, widen.get(f.name, f.type)) for f in table.schema])
    log(f"{silver.uri}: widening {', '.join(f'{n} to {t}' for n, t in widen.items())} (table rewritten)")
    silver.rewrite(table.cast(schema), marks, source)


def current_state(silver: DeltaTable) -> pa.Table:
    """The rows of the source table now: every row not marked deleted, without the `_cdc_` columns."""
    table = silver.to_pyarrow_table()
    live = table.filter(pc.invert(table.column("_cdc_deleted")))
    return live.select([n for n in live.schema.names if not n.startswith("_cdc_")])
