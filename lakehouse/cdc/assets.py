"""Raw change logs: one append-only Delta table per captured PostgreSQL table, landed from
Debezium's topics exactly once by the same machinery as the clickstream (ingest/landing.py).

Which tables exist here is configuration (LAKEHOUSE_CDC_TABLES), not code."""

import time
from collections import Counter

import dagster as dg
from deltalake import write_deltalake

from lakehouse.cdc.apply import current_state
from lakehouse.cdc.capture import capture_report
from lakehouse.cdc.history import price_history
from lakehouse.cdc.pipeline import DEAD_LETTERS_TABLE, apply_table, change_log_table, land_changes
from lakehouse.cdc.reconcile import fingerprint
from lakehouse.ingest.checks import offsets_contiguous
from lakehouse.ingest.sensors import kafka_sensor
from lakehouse.policies import PLATFORM_OWNER, STREAMING_FRESHNESS
from lakehouse.resources import KafkaResource, LakeResource, PostgresResource, TrinoResource
from lakehouse.settings import get_settings
from lakehouse.table_figures import table_figures


def change_log_key(source_table: str) -> dg.AssetKey:
    return dg.AssetKey(["raw", change_log_table(source_table)])


def _spec(name: str, schema: str, table: str) -> dg.AssetSpec:
    from lakehouse.security import pii

    held = pii.columns("silver", name)
    return dg.AssetSpec(
        change_log_key(name), group_name="raw", owners=[PLATFORM_OWNER], freshness_policy=STREAMING_FRESHNESS,
        kinds={"debezium", "kafka", "delta"}, skippable=True,
        metadata={"pii_columns": dg.MetadataValue.json(held), "pii_access": "the Trino principal `platform` only "
                  "(the raw layer is readable by no other principal)"} if held else {},
        description=(
            f"Every change of PostgreSQL {schema}.{table} captured by Debezium (initial snapshot, then the "
            "write-ahead log): operation, before and after images, LSN, transaction id and commit time, "
            "with the Kafka coordinates and the record's bytes. Append-only, landed exactly once."
        ),
    )  # fmt: skip


def build_change_log_assets(sources: dict[str, tuple[str, str]]) -> dg.AssetsDefinition:
    """The raw change logs of the captured tables ({name in the lake: (schema, table)})."""

    @dg.multi_asset(
        name="raw_cdc_change_logs",
        specs=[_spec(name, *source) for name, source in sources.items()],
        can_subset=True,
        pool="landing_raw_cdc",
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def raw_cdc_change_logs(
        context: dg.AssetExecutionContext, kafka: KafkaResource, lake: LakeResource, trino: TrinoResource
    ):
        for key in sorted(context.selected_asset_keys, key=lambda k: k.path[-1]):
            table, started = key.path[-1].removeprefix("cdc_"), time.monotonic()
            result = land_changes(kafka, lake, table, log=context.log.info)
            if result is None:
                context.log.info(
                    f"{kafka.cdc_topic(table)} does not exist yet (no change captured): nothing to land"
                )
            trino.register_if_reachable(lake, "raw", change_log_table(table), context.log.warning)
            yield dg.MaterializeResult(asset_key=key, metadata={
                "trino_table": trino.qualified(lake, "raw", change_log_table(table)),
                "topic": kafka.cdc_topic(table), **(result.figures() if result else {"rows_landed": 0}),
                **table_figures(lake.table("raw", change_log_table(table)), started),
            })  # fmt: skip

    return raw_cdc_change_logs


def build_capture_check(tables: list[str]) -> dg.AssetChecksDefinition:
    @dg.multi_asset_check(
        specs=[dg.AssetCheckSpec("capture_running", asset=change_log_key(t), description=(
            "Debezium's connector and task run, the replication slot exists and has a reader, and no topic "
            "under the CDC prefix carries a table that LAKEHOUSE_CDC_TABLES does not list.")) for t in tables],
        can_subset=True,
    )  # fmt: skip
    def capture_running(context: dg.AssetCheckExecutionContext, kafka: KafkaResource):
        report = capture_report(get_settings(), topic_prefix=kafka.cdc_topic_prefix)
        for problem in report.problems:
            context.log.error(problem)
        for key in context.selected_asset_check_keys:
            yield dg.AssetCheckResult(asset_key=key.asset_key, check_name=key.name, passed=report.healthy,
                                      metadata={"problems": report.problems, **report.facts})  # fmt: skip

    return capture_running


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


def silver_key(source_table: str) -> dg.AssetKey:
    return dg.AssetKey(["silver", source_table])


DEAD_LETTERS_KEY = dg.AssetKey(["silver", DEAD_LETTERS_TABLE])


def pii_metadata(layer: str, table: str) -> dict:
    """The PII classification of a table (dbt sources' `meta.pii`) as asset metadata, and who reads it clear."""
    from lakehouse.security import pii

    columns = pii.columns(layer, table)
    if not columns:
        return {}
    return {"pii_columns": dg.MetadataValue.json(columns),
            "pii_access": "clear for the Trino principal `platform` only; masked (a stable pseudonym) for every "
                          "other principal; never selected by gold"}  # fmt: skip


def _silver_spec(key: dg.AssetKey, deps: list[dg.AssetKey], description: str) -> dg.AssetSpec:
    return dg.AssetSpec(key, deps=deps, group_name="silver", owners=[PLATFORM_OWNER],
                        freshness_policy=STREAMING_FRESHNESS, kinds={"python", "delta"}, skippable=True,
                        description=description, metadata=pii_metadata(*key.path[-2:]))  # fmt: skip


def build_silver_assets(sources: dict[str, tuple[str, str]]) -> dg.AssetsDefinition:
    tables = list(sources)
    specs = [
        _silver_spec(
            silver_key(t),
            [change_log_key(t)],
            (
                f"Current state of PostgreSQL {'.'.join(sources[t])}, kept by MERGEing its change log in LSN order: the "
                "newest change per primary key wins, deletes are kept as `_cdc_deleted` markers (the current "
                "state is every row not marked deleted), a primary-key change moves the row."
            ),
        )  # fmt: skip
        for t in tables
    ]
    specs.append(_silver_spec(DEAD_LETTERS_KEY, [change_log_key(t) for t in tables], (
        "Change records that cannot be applied to silver, with their Kafka coordinates, their bytes and the "
        "reason: not JSON, not a Debezium change, no LSN, or a change of another table than its topic's. They "
        "stay in the raw change log too; nothing is dropped.")))  # fmt: skip

    @dg.multi_asset(name="silver_cdc_current_state", specs=specs, can_subset=True, pool="apply_silver_cdc",
                    backfill_policy=dg.BackfillPolicy.single_run())  # fmt: skip
    def silver_cdc_current_state(
        context: dg.AssetExecutionContext,
        kafka: KafkaResource,
        lake: LakeResource,
        trino: TrinoResource,
        postgres: PostgresResource,
    ):
        dead_letters: dict[str, int] = {}
        tables = sorted(k.path[-1] for k in context.selected_asset_keys if k != DEAD_LETTERS_KEY)
        for table in tables:
            started = time.monotonic()
            result = apply_table(kafka, lake, table, log=context.log.info, postgres=postgres)
            dead_letters[table] = result.dead_letters
            if result.dead_letters:
                context.log.warning(
                    f"{table}: {result.dead_letters} change records cannot be applied; see silver/{DEAD_LETTERS_TABLE}"
                )
            trino.register_lake_table(
                lake, "silver", table
            )  # queryable in Trino (for dbt) from its first write
            yield dg.MaterializeResult(asset_key=silver_key(table), metadata={
                "changes_read": result.changes_read, "keys_changed": result.keys_changed,
                "inserted": result.inserted, "updated": result.updated, "dead_letters": result.dead_letters,
                "new_columns": result.new_columns, **table_figures(lake.table("silver", table), started),
            })  # fmt: skip
        if DEAD_LETTERS_KEY in context.selected_asset_keys:
            trino.register_if_reachable(lake, "silver", DEAD_LETTERS_TABLE, context.log.warning)
            yield dg.MaterializeResult(asset_key=DEAD_LETTERS_KEY, metadata={
                "new_dead_letters": sum(dead_letters.values()),
                "new_by_table": {t: n for t, n in dead_letters.items() if n},
            })  # fmt: skip

    return silver_cdc_current_state


@dg.asset_check(asset=DEAD_LETTERS_KEY, name="no_unapplied_changes",
                description="Warns when change records could not be applied: how many, and why.")  # fmt: skip
def no_unapplied_changes(lake: LakeResource) -> dg.AssetCheckResult:
    table = lake.table("silver", DEAD_LETTERS_TABLE)
    if table is None:
        return dg.AssetCheckResult(passed=True, metadata={"dead_letters": 0})
    rows = table.to_pyarrow_table(columns=["topic", "error"]).to_pylist()
    reasons = Counter(f"{r['topic']}: {r['error'].split(':')[0][:120]}" for r in rows)
    return dg.AssetCheckResult(passed=not rows, severity=dg.AssetCheckSeverity.WARN, metadata={"dead_letters": len(rows),
                                                          "reasons": dict(reasons.most_common(10))})  # fmt: skip


def build_reconciliation_checks(tables: list[str]) -> list[dg.AssetChecksDefinition]:
    def build(table: str) -> dg.AssetChecksDefinition:
        @dg.asset_check(asset=silver_key(table), name="reconciles_with_source",
                        description="Row count and a checksum over all rows equal those of the PostgreSQL table.")  # fmt: skip
        def check(lake: LakeResource, postgres: PostgresResource) -> dg.AssetCheckResult:
            silver = lake.table("silver", table)
            source = postgres.rows(table)
            if silver is None:
                return dg.AssetCheckResult(passed=not source, metadata={"source_rows": len(source)})
            mirror = current_state(silver).to_pylist()
            columns = sorted(source[0]) if source else sorted(mirror[0]) if mirror else []
            (n_src, sum_src), (n_silver, sum_silver) = (
                fingerprint(source, columns),
                fingerprint(mirror, columns),
            )
            return dg.AssetCheckResult(
                passed=(n_src, sum_src) == (n_silver, sum_silver),
                metadata={"source_rows": n_src, "silver_rows": n_silver, "source_checksum": sum_src[:16],
                          "silver_checksum": sum_silver[:16]},
            )  # fmt: skip

        return check

    return [build(t) for t in tables]


PRICE_HISTORY_KEY = dg.AssetKey(["silver", "product_price_history"])


@dg.asset(
    key=PRICE_HISTORY_KEY, deps=[change_log_key("products")], group_name="silver", owners=[PLATFORM_OWNER],
    freshness_policy=STREAMING_FRESHNESS, kinds={"python", "delta"},
    backfill_policy=dg.BackfillPolicy.single_run(),
    description=(
        "Price history of every product (SCD type 2): one row per price with the commit time it took effect "
        "(`valid_from`) and the time it was replaced or the product deleted (`valid_to`, NULL while current)."
    ),
)  # fmt: skip
def silver_product_price_history(lake: LakeResource, trino: TrinoResource) -> dg.MaterializeResult:
    log = lake.table("raw", change_log_table("products"))
    if log is None:
        return dg.MaterializeResult(metadata={"versions": 0})
    rows = log.to_pyarrow_table(columns=["op", "before", "after", "lsn", "offset", "source_ts", "error"])
    changes = [r for r in rows.to_pylist() if r["op"] is not None and r["error"] is None]
    history = price_history(changes)
    write_deltalake(lake.table_uri("silver", "product_price_history"), history, mode="overwrite",
                    storage_options=lake.storage_options)  # fmt: skip
    trino.register_lake_table(lake, "silver", "product_price_history")
    return dg.MaterializeResult(metadata={"versions": history.num_rows,
                                          "products": len(set(history.column("product_id").to_pylist()))})  # fmt: skip


@dg.asset_check(asset=PRICE_HISTORY_KEY, blocking=True,
                description="Each product has at most one current price, and it equals the price in PostgreSQL.")  # fmt: skip
def current_prices_match_source(lake: LakeResource, postgres: PostgresResource) -> dg.AssetCheckResult:
    history = lake.read("silver", "product_price_history", columns=["product_id", "price", "is_current"])
    current: dict[int, list] = {}
    for r in history.to_pylist():
        if r["is_current"]:
            current.setdefault(r["product_id"], []).append(r["price"])
    source = {r["product_id"]: r["price"] for r in postgres.rows("products")}
    wrong = {str(p): {"history": [str(v) for v in current.get(p) or []], "source": str(price)}
             for p, price in source.items()
             if current.get(p) != [price]}  # fmt: skip
    stale = [p for p in current if p not in source]
    return dg.AssetCheckResult(passed=not wrong and not stale,
                               metadata={"products": len(source), "mismatched": dict(list(wrong.items())[:20]),
                                         "current_without_source": stale[:20]})  # fmt: skip


_settings = get_settings()
cdc_apply_job = dg.define_asset_job(
    "cdc_apply",
    selection=dg.AssetSelection.assets(*(change_log_key(t) for t in _settings.cdc_table_list),
                                       *(silver_key(t) for t in _settings.cdc_table_list), PRICE_HISTORY_KEY,
                                       DEAD_LETTERS_KEY),
    description="Land new change records into the raw change logs and MERGE them into silver.",
)  # fmt: skip
cdc_kafka_sensor = kafka_sensor(
    "cdc_kafka_sensor", cdc_apply_job, lambda kafka: [kafka.cdc_topic(t) for t in _settings.cdc_table_list],
    "Requests a CDC apply run whenever Debezium has written new change records.",
)  # fmt: skip
raw_cdc_change_logs = build_change_log_assets(_settings.cdc_sources)
change_log_checks = [
    *build_change_log_checks(_settings.cdc_table_list),
    build_capture_check(_settings.cdc_table_list),
]
silver_cdc_current_state = build_silver_assets(_settings.cdc_sources)
reconciliation_checks = build_reconciliation_checks(_settings.cdc_table_list)
