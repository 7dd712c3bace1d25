"""The ingest on the live stack: sensor, dead letters with accounting, schema evolution, maintenance."""

import json
from datetime import UTC, datetime

import dagster as dg
import pytest
from conftest import assert_checks_passed
from deltalake import DeltaTable

from lakehouse.generator.clickstream import (
    DeliveryConfig,
    GeneratorConfig,
    Message,
    deliveries,
    encode,
    generate_events,
    produce,
)
from lakehouse.ingest import checks
from lakehouse.ingest.assets import BRONZE_KEY, RAW_KEY, bronze_clickstream, raw_clickstream_events
from lakehouse.ingest.maintenance import table_maintenance
from lakehouse.ingest.sensors import clickstream_kafka_sensor
from lakehouse.resources import KafkaResource, LakeResource, build_resources

pytestmark = pytest.mark.stack
END = datetime(2026, 6, 1, tzinfo=UTC)
CHECKS = [checks.raw_offsets_contiguous, checks.raw_ingest_lag, checks.bronze_event_id_unique,
          checks.every_raw_message_accounted_for]  # fmt: skip


def ingest(settings) -> dg.ExecuteInProcessResult:
    """The raw and bronze assets with their checks, as the sensor's run would execute them."""
    return dg.materialize(
        [raw_clickstream_events, bronze_clickstream, *CHECKS], resources=build_resources(settings)
    )


def test_sensor_requests_a_run_only_for_new_records(namespace):
    s = namespace.settings
    topic = f"{s.events_topic}.sensor"  # its own topic: the next test counts every event of the main one
    kafka = KafkaResource.from_settings(s, "admin", events_topic=topic)
    produce(
        s,
        topic,
        encode(generate_events(GeneratorConfig(events=50, seed=1, end=END))),
        progress=False,
    )
    with dg.DagsterInstance.ephemeral() as instance:

        def context(cursor):
            return dg.build_sensor_context(cursor=cursor, resources={"kafka": kafka}, instance=instance)

        ctx = context(None)
        first = clickstream_kafka_sensor(ctx)
        assert isinstance(first, dg.RunRequest)
        assert sum(json.loads(ctx.cursor).values()) == 50
        again = clickstream_kafka_sensor(context(ctx.cursor))
        assert isinstance(again, dg.SkipReason)
        produce(s, topic, encode(generate_events(GeneratorConfig(events=5, seed=2, end=END))), progress=False)
        later_ctx = context(ctx.cursor)
        later = clickstream_kafka_sensor(later_ctx)
        assert isinstance(later, dg.RunRequest) and later.run_key != first.run_key
        assert sum(json.loads(later_ctx.cursor).values()) == 55

        # while its run is queued or running, the sensor requests no other (they would pile up in the queue)
        produce(s, topic, encode(generate_events(GeneratorConfig(events=5, seed=3, end=END))), progress=False)
        run = instance.add_run(dg.DagsterRun(job_name="clickstream_ingest", status=dg.DagsterRunStatus.STARTED,
                                             tags={"dagster/sensor_name": "clickstream_kafka_sensor"}))  # fmt: skip
        busy_ctx = context(later_ctx.cursor)
        busy = clickstream_kafka_sensor(busy_ctx)
        assert isinstance(busy, dg.SkipReason) and run.run_id in busy.skip_message, busy
        assert busy_ctx.cursor == later_ctx.cursor  # the new records wait for the next tick
        instance.report_run_failed(run)
        free_ctx = context(later_ctx.cursor)
        assert isinstance(clickstream_kafka_sensor(free_ctx), dg.RunRequest)
        assert sum(json.loads(free_ctx.cursor).values()) == 60


def test_dead_letters_schema_evolution_and_accounting(namespace):
    s = namespace.settings
    lake = LakeResource.from_settings(s)
    events = generate_events(GeneratorConfig(events=2000, seed=3, end=END))
    messages = deliveries(events, DeliveryConfig(duplicate_share=0.05, malformed_share=0.03, seed=3))
    produce(s, s.events_topic, messages, progress=False)
    result = ingest(s)
    assert result.success
    assert_checks_passed(result, CHECKS)

    # A new optional field arrives: it becomes a column, without a restart and without loss.
    newer = generate_events(GeneratorConfig(events=40, seed=4, end=END))
    produce(s, s.events_topic, encode([dict(e, referrer="newsletter") for e in newer]), progress=False)
    # Then an incompatible change of that field: dead letters with the reason.
    broken = generate_events(GeneratorConfig(events=7, seed=5, end=END))
    produce(s, s.events_topic, [Message(b"k", json.dumps(dict(e, referrer=7)).encode(), "malformed") for e in broken],
            progress=False)  # fmt: skip
    result = ingest(s)
    assert result.success
    assert_checks_passed(result, CHECKS)

    bronze = lake.read("bronze", "clickstream_events", columns=["event_id", "referrer"])
    expected_ids = {e["event_id"] for e in events + newer}
    assert bronze.num_rows == len(expected_ids) and set(bronze.column("event_id").to_pylist()) == expected_ids
    referrers = [r for r in bronze.column("referrer").to_pylist() if r is not None]
    assert referrers == ["newsletter"] * 40
    dead = lake.read("bronze", "clickstream_dead_letters", columns=["error"]).column("error").to_pylist()
    malformed = sum(1 for m in messages if m.kind == "malformed")
    assert len(dead) == malformed + 7
    assert dead.count("incompatible change: field 'referrer' is int64, the table has string") == 7

    # Table maintenance: small files compacted, contents unchanged, checkpoint written.
    raw = lake.table("raw", "clickstream_events")
    files_before, rows_before = len(raw.file_uris()), raw.to_pyarrow_table().num_rows
    assert files_before > 1, "two ingest runs commit at least two files: something to compact"
    job = table_maintenance.execute_in_process(resources={"lake": lake})
    assert job.success
    after = DeltaTable(lake.table_uri("raw", "clickstream_events"), storage_options=lake.storage_options)
    assert len(after.file_uris()) < files_before
    assert after.to_pyarrow_table().num_rows == rows_before


def test_a_missing_topic_is_a_clear_error(namespace):
    from lakehouse.resources.kafka import KafkaUnavailable

    kafka = KafkaResource.from_settings(namespace.settings, "admin", events_topic="no.such.topic")
    with pytest.raises(KafkaUnavailable) as err:
        kafka.partitions("no.such.topic")
    assert "'no.such.topic' does not exist" in err.value.problem
    assert "lakehouse generate events" in err.value.fix


def test_every_landing_records_its_figures_as_numeric_metadata(namespace):
    """Rows, bytes, files, version and duration of the table, and how far behind Kafka the landing was: numbers
    the UI plots over time. Checked against the table itself."""
    s = namespace.settings
    lake = LakeResource.from_settings(s)
    before = lake.table("raw", "clickstream_events")
    start_rows = before.to_pyarrow_table().num_rows if before else 0
    produce(
        s,
        s.events_topic,
        encode(generate_events(GeneratorConfig(events=30, seed=21, end=END))),
        progress=False,
    )
    result = ingest(s)
    assert result.success
    (raw,) = [m for m in result.get_asset_materialization_events() if m.asset_key == RAW_KEY]
    meta = raw.materialization.metadata
    table = lake.table("raw", "clickstream_events")
    assert meta["records_behind_at_start"].value == 30 and meta["rows_landed"].value == 30
    assert meta["dagster/row_count"].value == table.to_pyarrow_table().num_rows == start_rows + 30
    assert meta["table_version"].value == table.version()
    assert (
        meta["table_bytes"].value
        == sum(table.get_add_actions(flatten=True).column("size_bytes").to_pylist())
        > 0
    )
    assert meta["table_files"].value == len(table.file_uris())
    assert 0 < meta["duration_s"].value < 600 and 0 <= meta["landing_lag_s"].value < 600
    assert all(isinstance(meta[k], (dg.IntMetadataValue, dg.FloatMetadataValue))
               for k in ("dagster/row_count", "table_bytes", "table_version", "duration_s", "landing_lag_s"))  # fmt: skip
    (bronze,) = [m for m in result.get_asset_materialization_events() if m.asset_key == BRONZE_KEY]
    assert bronze.materialization.metadata["dagster/row_count"].value == lake.read(
        "bronze", "clickstream_events", columns=["event_id"]).num_rows  # fmt: skip
