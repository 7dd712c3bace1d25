"""The query audit log: every Trino query, by whom, on what, when, in the lake.

Trino's Kafka event listener publishes each completed query (its user, text, state, times and the
tables and columns it read) to LAKEHOUSE_TRINO_AUDIT_TOPIC; the asset `raw/trino_audit` lands that topic
exactly once with the same landing as the clickstream, and the view `raw.trino_audit_reads` has one row
per column a query read, with `pii` true for the columns the dbt sources classify, so an auditor asks:

    SELECT DISTINCT "user", query_start, table_name, column_name FROM delta.raw.trino_audit_reads WHERE pii

Only the `platform` principal reads the raw layer, the audit log included.
"""

from pathlib import Path

import dagster as dg

from lakehouse.ingest.landing import land_topic, raw_target
from lakehouse.policies import PLATFORM_OWNER, STREAMING_FRESHNESS
from lakehouse.resources import KafkaResource, LakeResource, TrinoResource
from lakehouse.resources.trino import sql_literal
from lakehouse.security import pii
from lakehouse.settings import LakehouseSettings, get_settings

AUDIT_KEY = dg.AssetKey(["raw", "trino_audit"])
AUDIT_TABLE = "trino_audit"
READS_VIEW = "trino_audit_reads"
AUDIT_APP_ID = "lakehouse-trino-audit"


def event_listener_properties(s: LakehouseSettings, client_file: Path) -> dict[str, str]:
    """Trino's Kafka event listener: completed queries only (a created event has no inputs yet), as the
    trino principal (its 0600 client settings file, kafka_access.java_client_file)."""
    return {
        "kafka-event-listener.config.resources": str(client_file),
        "event-listener.name": "kafka",
        "kafka-event-listener.broker-endpoints": s.kafka_bootstrap,
        "kafka-event-listener.client-id": "lakehouse-trino",
        "kafka-event-listener.publish-created-event": "false",
        "kafka-event-listener.publish-completed-event": "true",
        "kafka-event-listener.completed-event.topic": s.trino_audit_topic,
    }


def _pii_predicate(s: LakehouseSettings) -> str:
    """SQL true for a (schema, table, column) the dbt sources classify as PII, in any namespace."""
    terms = []
    for (layer, table), columns in sorted(pii.classified().items()):
        names = ", ".join(sql_literal(c) for c in sorted(columns))
        terms.append(f"(regexp_like(schema_name, {sql_literal(f'^(.+_)?{layer}$')}) AND table_name = "
                     f"{sql_literal(table)} AND column_name IN ({names}))")  # fmt: skip
    return " OR ".join(terms) or "false"


def reads_view_sql(s: LakehouseSettings, qualified_table: str, qualified_view: str) -> str:
    """One row per column each audited query read (queries that read no table have none); a record of the
    topic that is not an event of Trino's (not JSON, another shape) has none either, and breaks nothing."""
    event = "try(json_parse(from_utf8(value)))"
    return f"""CREATE OR REPLACE VIEW {qualified_view} SECURITY INVOKER AS
WITH events AS (SELECT * FROM (SELECT "partition", "offset", {event} AS e FROM {qualified_table}) WHERE e IS NOT NULL),
inputs AS (
  SELECT json_extract_scalar(e, '$.eventPayload.metadata.queryId') AS query_id,
         json_extract_scalar(e, '$.eventPayload.context.user') AS "user",
         json_extract_scalar(e, '$.eventPayload.context.principal') AS principal,
         json_extract_scalar(e, '$.eventPayload.createTime') AS query_start,
         json_extract_scalar(e, '$.eventPayload.metadata.queryState') AS state,
         json_extract_scalar(e, '$.eventPayload.metadata.query') AS query,
         json_extract_scalar(i, '$.catalogName') AS catalog_name,
         json_extract_scalar(i, '$.schema') AS schema_name,
         json_extract_scalar(i, '$.table') AS table_name,
         try(CAST(COALESCE(json_extract(i, '$.columns'), json '[]') AS array(json))) AS columns
  FROM events CROSS JOIN UNNEST(
    try(CAST(COALESCE(json_extract(e, '$.eventPayload.ioMetadata.inputs'), json '[]') AS array(json)))) AS t(i)
),
reads AS (
  SELECT query_id, "user", principal, query_start, state, query, catalog_name, schema_name, table_name,
         json_extract_scalar(c, '$.name') AS column_name
  FROM inputs CROSS JOIN UNNEST(columns) AS u(c)
)
SELECT *, ({_pii_predicate(s)}) AS pii FROM reads"""


def land_audit_log(kafka: KafkaResource, lake: LakeResource, trino: TrinoResource, log) -> dict:
    """Land what the audit topic holds beyond the table's offsets, then keep the table and its view in Trino."""
    s = get_settings()
    topic = s.trino_audit_topic
    if not kafka.topic_exists(topic):
        return {"topic": topic, "rows_landed": 0}
    uri = lake.table_uri("raw", AUDIT_TABLE)
    result = land_topic(kafka, raw_target(uri, lake.storage_options, topic, AUDIT_APP_ID), log=log)
    if trino.register_if_reachable(lake, "raw", AUDIT_TABLE, log) or not trino.table_exists(
        lake.schema("raw"), READS_VIEW
    ):  # the view once (each query here is audited too)
        table = trino.qualified(lake, "raw", AUDIT_TABLE)
        trino.query(reads_view_sql(s, table, trino.qualified(lake, "raw", READS_VIEW)))
    return {"topic": topic, "rows_landed": result.rows, "table_uri": uri,
            "trino_view": trino.qualified(lake, "raw", READS_VIEW)}  # fmt: skip


@dg.asset(
    key=AUDIT_KEY, group_name="raw", owners=[PLATFORM_OWNER], kinds={"trino", "kafka", "delta"},
    freshness_policy=STREAMING_FRESHNESS, backfill_policy=dg.BackfillPolicy.single_run(), pool="landing_raw_audit",
    description="Every completed Trino query (who, which text, when, its state, the tables and columns it read), "
    "from Trino's Kafka event listener, landed exactly once; the view `raw.trino_audit_reads` has a row per "
    "column read with `pii` for the classified columns. Readable by the `platform` principal only.",
)  # fmt: skip
def trino_audit(
    context: dg.AssetExecutionContext, kafka: KafkaResource, lake: LakeResource, trino: TrinoResource
):
    return dg.MaterializeResult(metadata=land_audit_log(kafka, lake, trino, context.log.info))


@dg.asset_check(asset=AUDIT_KEY, name="every_event_is_a_query", blocking=True,
                description="Each landed record is a completed-query event with a query id and a user, landed once.")  # fmt: skip
def every_event_is_a_query(lake: LakeResource) -> dg.AssetCheckResult:
    import json

    if lake.table("raw", AUDIT_TABLE) is None:
        return dg.AssetCheckResult(passed=True, description="nothing landed yet", metadata={"rows": 0})
    rows = lake.read("raw", AUDIT_TABLE, columns=["partition", "offset", "value"]).to_pylist()
    bad = []
    for row in rows:
        try:
            payload = json.loads(row["value"])["eventPayload"]
            ok = bool(payload["metadata"]["queryId"]) and bool(payload["context"]["user"])
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            bad.append(f"{row['partition']}:{row['offset']}")
    distinct = len({(r["partition"], r["offset"]) for r in rows})
    return dg.AssetCheckResult(passed=not bad and distinct == len(rows),
                               metadata={"rows": len(rows), "not_a_query": bad[:20], "repeated": len(rows) - distinct})  # fmt: skip


trino_audit_job = dg.define_asset_job("trino_audit_landing", selection=dg.AssetSelection.assets(AUDIT_KEY),
                                      description="Land Trino's query audit log.")  # fmt: skip
# A schedule, not the Kafka sensor: the landing's own Trino queries are audited too, so "new records on the
# topic" would always be true and a sensor would run it back to back.
trino_audit_schedule = dg.ScheduleDefinition(
    name="trino_audit_schedule", job=trino_audit_job, cron_schedule="*/5 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every 5 minutes: land the Trino queries audited since the last landing.",
)  # fmt: skip
