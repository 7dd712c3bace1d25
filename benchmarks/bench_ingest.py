"""Benchmark: Kafka -> raw Delta landing against a plain confluent-kafka consume loop.

Both read the same freshly produced topic (4 partitions of ~300-byte clickstream events) in the
same run. The baseline only consumes and touches each message; the lakehouse path consumes, builds
Arrow batches, uploads Parquet to the object store and commits to the Delta log with offsets.
Prints its figures; the figures line is `ingest_ratio=R lakehouse_msgs_per_s=A baseline_msgs_per_s=B`,
then `leftover_processes=0` (_cleanup.py).
"""

import argparse
import sys
import time
from datetime import UTC, datetime

from _cleanup import Teardown
from confluent_kafka import Consumer, TopicPartition

from lakehouse.generator.clickstream import GeneratorConfig, encode, generate_events, produce
from lakehouse.ingest.landing import land_topic, raw_target
from lakehouse.resources import KafkaResource, LakeResource
from lakehouse.security.kafka_access import client_config
from lakehouse.settings import get_settings


def baseline(conf: dict, topic: str, partitions: list[int], expected: int) -> float:
    """A plain consume loop over the topic, as the landing's principal (its group: a probe)."""
    consumer = Consumer({**conf, "group.id": f"lakehouse-probe-bench-{time.time_ns()}",
                         "enable.auto.commit": False, "fetch.max.bytes": 52428800,
                         "queued.max.messages.kbytes": 262144})  # fmt: skip
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    seen = nbytes = 0
    try:
        start = time.perf_counter()
        while seen < expected:
            for m in consumer.consume(num_messages=10000, timeout=1.0):
                if m.error() is None:
                    seen += 1
                    nbytes += len(m.value())
        elapsed = time.perf_counter() - start
    finally:
        consumer.close()
    return expected / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--batch-size", type=int, default=100_000)
    args = parser.parse_args()

    s = get_settings()
    topic = f"{s.events_topic}.bench-{datetime.now(UTC):%Y%m%d%H%M%S}"  # the producer's and landing's ACLs
    # No subprocess: the teardown handles SIGTERM/SIGINT, stops any process a library might have
    # started below this one, and checks that none is left (nor any naming the topic).
    with Teardown(topic, home=s.home):
        benchmark(args, s, topic)
    return 0


def benchmark(args, s, topic: str) -> None:
    events = generate_events(GeneratorConfig(events=args.messages, seed=1))
    messages = encode(events)
    avg = sum(len(m.value) for m in messages) / len(messages)
    print(f"producing {len(messages)} messages (avg {avg:.0f} bytes) to {topic} ...", flush=True)
    produce(s, topic, messages, progress=False)

    kafka = KafkaResource.from_settings(s, events_topic=topic)  # the landings' principal, as in production
    partitions = kafka.partitions(topic)
    base = baseline(client_config(s, "landing"), topic, partitions, len(messages))
    print(f"baseline (plain consume loop): {base:,.0f} msgs/s", flush=True)

    lake = LakeResource.from_settings(s)
    uri = f"s3://{s.bucket}/_bench/raw_{topic.replace('.', '_')}"
    start = time.perf_counter()
    result = land_topic(kafka, raw_target(uri, lake.storage_options, topic, "bench"), batch_size=args.batch_size,
                        batch_seconds=10.0, log=lambda _: None)  # fmt: skip
    elapsed = time.perf_counter() - start
    assert result.rows == len(messages), (result.rows, len(messages))
    ours = result.rows / elapsed
    print(f"lakehouse (Kafka -> raw Delta, {result.commits} commits): {ours:,.0f} msgs/s", flush=True)
    print(f"ingest_ratio={ours / base:.2f} lakehouse_msgs_per_s={ours:.0f} baseline_msgs_per_s={base:.0f}")


if __name__ == "__main__":
    sys.exit(main())
