"""Kafka sensors: request a run when topics have records beyond the last request.

The cursor holds the end offset per topic partition seen at the last request (a tick that fails, e.g. on
a principal Kafka refuses, leaves it as it was); the run itself
reads from the offsets recorded in the Delta tables, so a skipped or repeated tick never loses or
doubles data. One factory serves the clickstream and the CDC topics.
"""

import hashlib
import json
from collections.abc import Callable

import dagster as dg

from lakehouse.ingest.assets import BRONZE_KEY, DEAD_LETTERS_KEY, RAW_KEY
from lakehouse.resources import KafkaResource
from lakehouse.resources.kafka import KafkaForbidden, KafkaUnavailable
from lakehouse.runs import IN_FLIGHT, unfinished_run
from lakehouse.settings import get_settings

clickstream_ingest_job = dg.define_asset_job(
    "clickstream_ingest",
    selection=dg.AssetSelection.assets(RAW_KEY, BRONZE_KEY, DEAD_LETTERS_KEY),
    description="Land new clickstream messages into raw, then refine them into bronze and dead letters.",
)


def end_offsets(kafka: KafkaResource, topics: list[str]) -> dict[str, int]:
    """End offset per `topic:partition`, for the topics that exist."""
    result = {}
    for topic in topics:
        if kafka.topic_exists(topic):
            result.update({f"{topic}:{p}": o for p, o in kafka.end_offsets(topic).items()})
    return result


def new_offsets(cursor: str | None, end: dict[str, int]) -> dict[str, int] | None:
    """The end offsets if any topic partition moved past the cursor, else None."""
    seen = json.loads(cursor) if cursor else {}
    return end if any(o > seen.get(tp, 0) for tp, o in end.items()) else None


def run_key(name: str, end: dict[str, int]) -> str:
    digest = hashlib.sha1(json.dumps(sorted(end.items())).encode()).hexdigest()[:16]
    return f"{name}@{digest}"


def kafka_sensor(name: str, job, topics_of: Callable[[KafkaResource], list[str]], description: str):
    @dg.sensor(name=name, job=job, minimum_interval_seconds=get_settings().sensor_interval_seconds,
               default_status=dg.DefaultSensorStatus.RUNNING, description=description)  # fmt: skip
    def _sensor(context: dg.SensorEvaluationContext, kafka: KafkaResource):
        # runs requested every tick while the last one waits would pile up in the run queue (a landing is
        # slower than a tick on a small machine) and keep other runs, the intraday refresh among them, out
        # of its slots; a run lands up to the topic's end when it runs: one in flight is enough
        busy = unfinished_run(context.instance, {"dagster/sensor_name": name}, IN_FLIGHT)
        if busy is not None:
            return dg.SkipReason(f"the previous run ({busy.run_id}) is still queued or running")
        topics = topics_of(kafka)
        try:
            end = end_offsets(kafka, topics)
        except KafkaForbidden:
            raise  # a refused principal needs a person: the tick fails with the error, the cursor stays
        except KafkaUnavailable as exc:
            return dg.SkipReason(str(exc))  # a broker that is down: the next tick looks again
        moved = new_offsets(context.cursor, end)
        if moved is None:
            return dg.SkipReason(f"no new records on {', '.join(topics)}")
        context.update_cursor(json.dumps(moved))
        return dg.RunRequest(
            run_key=run_key(name, moved), tags={"lakehouse/end_offsets": json.dumps(moved)[:4000]}
        )

    return _sensor


clickstream_kafka_sensor = kafka_sensor(
    "clickstream_kafka_sensor", clickstream_ingest_job, lambda kafka: [kafka.events_topic],
    "Requests an ingest run whenever the clickstream topic has new records.",
)  # fmt: skip
