"""Raw change logs: one append-only Delta table per captured PostgreSQL table, landed from
Debezium's topics exactly once by the same machinery as the clickstream (ingest/landing.py).

Which tables exist here is configuration (LAKEHOUSE_CDC_TABLES), not code."""

import dagster as dg

from lakehouse.cdc.changes import CHANGE_LOG_SCHEMA, to_change_log
from lakehouse.ingest.checks import offsets_contiguous
from lakehouse.ingest.delta_sink import DeltaAppender
from lakehouse.ingest.landing import land_topic
from lakehouse.policies import PLATFORM_OWNER, STREAMING_FRESHNESS
from lakehouse.resources import KafkaResource, LakeResource
from lakehouse.settings import get_settings

RAW_CDC_APP = "lakehouse-raw-cdc"


def change_log_table(source_table: str) -> str:
    return f"cdc_{source_table}"


def change_log_key(source_table: str) -> dg.AssetKey:
    return dg.AssetKey(["raw", change_log_table(source_table)])


def _spec(schema: str, table: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        change_log_key(table), group_name="raw", owners=[PLATFORM_OWNER], freshness_policy=STREAMING_FRESHNESS,
        kinds={"debezium", "kafka", "delta"}, skippable=True,
        description=(
            f"Every change of PostgreSQL {schema}.{table} captured by Debezium (initial snapshot, then the "
            "write-ahead log): operation, before and after images, LSN, transaction id and commit time, "
            "with the Kafka coordinates and the record's bytes. Append-only, landed exactly once."
        ),
    )  # fmt: skip


def build_change_log_assets(schema: str, tables: list[str]) -> dg.AssetsDefinition:
    @dg.multi_asset(
        name="raw_cdc_change_logs",
        specs=[_spec(schema, t) for t in tables],
        can_subset=True,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def raw_cdc_change_logs(context: dg.AssetExecutionContext, kafka: KafkaResource, lake: LakeResource):
        for key in sorted(context.selected_asset_keys, key=lambda k: k.path[-1]):
            table = key.path[-1].removeprefix("cdc_")
            topic = kafka.cdc_topic(table)
            if not kafka.topic_exists(topic):
                context.log.info(f"{topic} does not exist yet (no change captured): nothing to land")
                yield dg.MaterializeResult(asset_key=key, metadata={"topic": topic, "rows_landed": 0})
                continue
            appender = DeltaAppender(lake.table_uri("raw", change_log_table(table)), lake.storage_options,
                                     CHANGE_LOG_SCHEMA)  # fmt: skip
            result = land_topic(
                kafka, appender, topic, RAW_CDC_APP, to_table=to_change_log, log=context.log.info
            )
            yield dg.MaterializeResult(
                asset_key=key,
                metadata={"topic": topic, "rows_landed": result.rows, "commits": result.commits},
            )

    return raw_cdc_change_logs


def build_change_log_checks(tables: list[str]) -> list[dg.AssetChecksDefinition]:
    def build(table: str) -> dg.AssetChecksDefinition:
        @dg.asset_check(asset=change_log_key(table), name="change_log_offsets_contiguous", blocking=True,
                        description="Per partition, the landed offsets form one gap-free run with no repeats.")  # fmt: skip
        def check(lake: LakeResource) -> dg.AssetCheckResult:
            if lake.table("raw", change_log_table(table)) is None:
                return dg.AssetCheckResult(
                    passed=True, metadata={"rows": 0, "note": "no change captured yet"}
                )
            return offsets_contiguous(lake, "raw", change_log_table(table))

        return check

    return [build(t) for t in tables]


_settings = get_settings()
raw_cdc_change_logs = build_change_log_assets(_settings.cdc_schema, _settings.cdc_table_list)
change_log_checks = build_change_log_checks(_settings.cdc_table_list)
