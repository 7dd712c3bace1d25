"""A customer's deletion request: `lakehouse privacy forget CUSTOMER_ID`.

Every place the platform keeps that customer's personal data (the columns the dbt sources classify,
lakehouse/security/pii.py), in order, so that nothing brings the values back:
1. the source: the row's PII columns in PostgreSQL are anonymized (NULL where the column allows it, else
   `forgotten`), so later changes carry no personal data; Debezium captures that update;
2. the update is landed and applied (the CDC path, exactly once as always): silver has the anonymized row;
3. the raw change log: every change record of the customer (its before and after images and the original
   message) is rewritten with the PII anonymized, in one MERGE commit; the CDC dead letters likewise;
4. silver: the row's PII columns are anonymized (again, should the CDC path not have reached it);
5. the files that held the clear values are vacuumed (retention 0, below the nightly vacuum's floor on
   purpose: time travel before this point is gone for these tables, a query reading an older version
   fails, and an apply reading it at that moment fails and re-applies on its next run).
The report lists what changed, and where the values still are for a while: Kafka's change topic (until
its retention deletes the records), the backups taken before (until backup retention removes them) and
the statistics in the Delta logs of the vacuumed files (until the log retention)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.settings import LakehouseSettings

FORGOTTEN = "forgotten"
TABLE, KEY = "customers", "customer_id"  # the data subject's table in the source and in silver


@dataclass
class ForgetReport:
    customer_id: int
    changed: list[str] = field(default_factory=list)
    remaining: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return ([f"customer {self.customer_id}:"] + [f"  changed: {c}" for c in self.changed]
                + [f"  still held (until it expires): {r}" for r in self.remaining])  # fmt: skip


def _anonymize_image(image: dict | None, replacement: dict[str, str | None]) -> dict | None:
    if not isinstance(image, dict):
        return image
    return {k: replacement.get(k, v) for k, v in image.items()}


def scrub_record(value: bytes | None, replacement: dict[str, str | None]) -> bytes | None:
    """A Debezium message with the PII of its before and after images replaced (None if not JSON: it
    cannot be told apart from personal data)."""
    if value is None:
        return None
    try:
        message = json.loads(value)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    body = message.get("payload") if isinstance(message.get("payload"), dict) else message
    for side in ("before", "after"):
        if side in body:
            body[side] = _anonymize_image(body[side], replacement)
    return json.dumps(message, separators=(",", ":")).encode()


def _scrub_json_text(text: str | None, replacement: dict[str, str | None]) -> str | None:
    if text is None:
        return None
    try:
        return json.dumps(_anonymize_image(json.loads(text), replacement), separators=(",", ":"))
    except ValueError:
        return None


def _pattern(customer_id: int) -> str:
    return rf'"{KEY}"\s*:\s*{int(customer_id)}([^0-9]|$)'  # RE2: no lookahead


def _mentions(column: pa.ChunkedArray, customer_id: int) -> pa.ChunkedArray:
    if pa.types.is_binary(column.type):
        column = pc.cast(column, pa.string(), safe=False)
    return pc.fill_null(pc.match_substring_regex(column, _pattern(customer_id)), False)


def _key_is(key: str | None, customer_id: int) -> bool:
    try:
        parsed = json.loads(key or "")
    except ValueError:
        return False
    return isinstance(parsed, dict) and parsed.get(KEY) == customer_id


def _retried(dt, commit, attempts: int = 5):
    """Run a commit on `dt`, again on a concurrent commit (a landing or an apply meanwhile)."""
    from deltalake.exceptions import CommitFailedError

    for attempt in range(attempts):
        try:
            return commit()
        except CommitFailedError:
            if attempt == attempts - 1:
                raise
            time.sleep(1 + attempt)
            dt.update_incremental()


def _merge_rewrite(dt, rows: pa.Table, columns: list[str]) -> None:
    """Replace `columns` of the rows (by topic, partition, offset) in one commit."""
    _retried(dt, lambda: dt.merge(rows, "t.topic = s.topic AND t.partition = s.partition AND t.offset = s.offset",
                                  source_alias="s", target_alias="t")
             .when_matched_update({c: f"s.{c}" for c in columns}).execute())  # fmt: skip


def scrub_change_log(dt, customer_id: int, replacement: dict[str, str | None]) -> int:
    """Rewrite the customer's change records in the raw change log; the number rewritten."""
    import pyarrow.dataset as ds

    columns = ["topic", "partition", "offset", "key", "before", "after", "value"]
    # only the rows whose key names the customer are read whole (a pushed-down filter on the key)
    hits = dt.to_pyarrow_dataset().to_table(
        columns=columns, filter=pc.match_substring_regex(ds.field("key"), _pattern(customer_id))
    )
    hits = hits.filter(pa.array([_key_is(k, customer_id) for k in hits["key"].to_pylist()], pa.bool_()))
    if hits.num_rows == 0:
        return 0
    rewritten = hits.select(["topic", "partition", "offset"]).append_column(
        "before", pa.array([_scrub_json_text(v, replacement) for v in hits["before"].to_pylist()], pa.string())
    ).append_column(
        "after", pa.array([_scrub_json_text(v, replacement) for v in hits["after"].to_pylist()], pa.string())
    ).append_column(
        "value", pa.array([scrub_record(v, replacement) for v in hits["value"].to_pylist()], pa.binary())
    )  # fmt: skip
    _merge_rewrite(dt, rewritten, ["before", "after", "value"])
    return hits.num_rows


def scrub_dead_letters(dt, topic: str, customer_id: int, replacement: dict[str, str | None]) -> int:
    """Rewrite the dead letters of the change topic that mention the customer (the record, and the reason,
    which may quote a value); the number rewritten."""
    import pyarrow.dataset as ds

    data = dt.to_pyarrow_dataset().to_table(columns=["topic", "partition", "offset", "value"],
                                            filter=ds.field("topic") == topic)  # fmt: skip
    hits = data.filter(_mentions(data["value"], customer_id))
    if hits.num_rows == 0:
        return 0
    rewritten = (
        hits.select(["topic", "partition", "offset"])
        .append_column(
            "value", pa.array([scrub_record(v, replacement) for v in hits["value"].to_pylist()], pa.binary())
        )
        .append_column(
            "error", pa.array([f"(reason removed by privacy forget of {KEY} {customer_id})"] * hits.num_rows)
        )
    )
    _merge_rewrite(dt, rewritten, ["value", "error"])
    return hits.num_rows


def _anonymize_source(
    s: LakehouseSettings, customer_id: int, columns: list[str]
) -> dict[str, str | None] | None:
    """Anonymize the row in PostgreSQL; the replacement of each PII column (None: no such row)."""
    from psycopg import sql

    from lakehouse.cdc.workload import connect

    with connect(s) as conn:
        nullable = dict(conn.execute(
            "SELECT column_name, is_nullable = 'YES' FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s", (s.cdc_schema, TABLE)).fetchall())  # fmt: skip
        replacement = {c: None if nullable.get(c) else FORGOTTEN for c in columns}
        assignments = sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(c), sql.Literal(v))
                                         for c, v in replacement.items())  # fmt: skip
        updated = conn.execute(sql.SQL("UPDATE {} SET {}, updated_at = now() WHERE {} = %s").format(
            sql.Identifier(TABLE), assignments, sql.Identifier(KEY)), (customer_id,)).rowcount  # fmt: skip
    return replacement if updated else None


def forget(s: LakehouseSettings, customer_id: int, log=print) -> ForgetReport:
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    from lakehouse.cdc.pipeline import (
        DEAD_LETTERS_TABLE,
        apply_table,
        change_log_table,
        land_changes,
        wait_for_capture,
    )
    from lakehouse.resources import KafkaResource, LakeResource, PostgresResource
    from lakehouse.security import pii

    customer_id = int(customer_id)
    columns = sorted(pii.columns("silver", TABLE))
    if not columns:
        raise ValueError(f"no column of silver.{TABLE} is classified as PII (dbt sources' meta.pii)")
    report = ForgetReport(customer_id)
    lake, kafka = LakeResource.from_settings(s), KafkaResource.from_settings(s)

    replacement = _anonymize_source(s, customer_id, columns)
    if replacement is None:
        report.changed.append(
            f"source {s.cdc_schema}.{TABLE}: no row {KEY}={customer_id} (nothing to update)"
        )
        replacement = {c: None for c in columns}
    else:
        report.changed.append(f"source {s.cdc_schema}.{TABLE}: {', '.join(columns)} anonymized")
    if TABLE in s.cdc_table_list:
        # whatever Kafka still holds of the customer (this update, a delete's before image) lands now, so
        # that the rewrite below covers it and nothing lands in clear afterwards
        log("waiting for Debezium to capture everything up to now ...")
        wait_for_capture(s)
        land_changes(kafka, lake, TABLE, log=log)
        apply_table(kafka, lake, TABLE, log=log, postgres=PostgresResource.from_settings(s))

    touched = []

    def table(layer: str, name: str):
        try:
            return DeltaTable(lake.table_uri(layer, name), storage_options=lake.storage_options)
        except TableNotFoundError:
            return None

    raw = table("raw", change_log_table(TABLE))
    if raw is not None:
        n = scrub_change_log(raw, customer_id, replacement)
        report.changed.append(f"raw.{change_log_table(TABLE)}: {n} change records rewritten")
        touched.append((f"raw.{change_log_table(TABLE)}", raw))
    dead = table("silver", DEAD_LETTERS_TABLE)
    if dead is not None:
        n = scrub_dead_letters(dead, kafka.cdc_topic(TABLE), customer_id, replacement)
        report.changed.append(f"silver.{DEAD_LETTERS_TABLE}: {n} dead letters rewritten")
        touched.append((f"silver.{DEAD_LETTERS_TABLE}", dead))
    silver = table("silver", TABLE)
    if silver is not None:
        updates = {c: "NULL" if v is None else f"'{v}'" for c, v in replacement.items()}
        metrics = _retried(silver, lambda: silver.update(updates=updates, predicate=f"{KEY} = {customer_id}"))
        report.changed.append(f"silver.{TABLE}: {metrics.get('num_updated_rows', 0)} rows anonymized")
        touched.append((f"silver.{TABLE}", silver))
    for name, dt in touched:
        dt.update_incremental()
        removed = dt.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
        report.changed.append(f"{name}: vacuumed {len(removed)} files no longer in the table")
    report.remaining += [
        f"Kafka topic {kafka.cdc_topic(TABLE)}: the change records, until its retention deletes them "
        "(7 days on the local broker)",
        "backups taken before now (lakehouse lifecycle backup), until their retention removes them",
        "min/max statistics of the vacuumed files in the tables' Delta logs, until the log retention (30 days)",
        "the Trino audit log (raw.trino_audit): the text of queries that named the customer's values",
    ]
    return report
