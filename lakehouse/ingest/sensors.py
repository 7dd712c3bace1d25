"""Kafka sensor: request an ingest run when the events topic has records beyond the last request.

The cursor holds the end offset per partition seen at the last request; the run itself reads from
the offsets recorded in the Delta table, so a skipped or repeated tick never loses or doubles data.
"""

import hashlib
import json

import dagster as dg

from lakehouse.ingest.assets import BRONZE_KEY, DEAD_LETTERS_KEY, RAW_KEY
from lakehouse.resources import KafkaResource
from lakehouse.resources.kafka import KafkaUnavailable
from lakehouse.settings import get_settings

clickstream_ingest_job = dg.define_asset_job(
    "clickstream_ingest",
    selection=dg.AssetSelection.assets(RAW_KEY, BRONZE_KEY, DEAD_LETTERS_KEY),
    description="Land new clickstream messages into raw, then refine them into bronze and dead letters.",
)


def new_offsets(cursor: str | None, end: dict[int, int]) -> dict[int, int] | None:
    """The end offsets if any partition moved past the cursor, else None."""
    seen = {int(p): o for p, o in json.loads(cursor).items()} if cursor else {}
    return end if any(o > seen.get(p, 0) for p, o in end.items()) else None


def run_key(topic: str, end: dict[int, int]) -> str:
    digest = hashlib.sha1(json.dumps(sorted(end.items())).encode()).hexdigest()[:16]
    return f"{topic}@{digest}"


@dg.sensor(
    job=clickstream_ingest_job,
    minimum_interval_seconds=get_settings().sensor_interval_seconds,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests an ingest run whenever the clickstream topic has new records.",
)
def clickstream_kafka_sensor(context: dg.SensorEvaluationContext, kafka: KafkaResource):
    try:
        end = kafka.end_offsets(kafka.events_topic)
    except KafkaUnavailable as exc:
        return dg.SkipReason(str(exc))
    moved = new_offsets(context.cursor, end)
    if moved is None:
        return dg.SkipReason(f"no new records on {kafka.events_topic}")
    context.update_cursor(json.dumps({str(p): o for p, o in moved.items()}))
    return dg.RunRequest(
        run_key=run_key(kafka.events_topic, moved), tags={"lakehouse/end_offsets": json.dumps(moved)}
    )
