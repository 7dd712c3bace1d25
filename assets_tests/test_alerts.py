"""Alerts: a run that failed for good goes to the alert log and Kafka `ops.alerts`, a run the instance will
retry raises none, a Kafka that is down loses no alert, a failed freshness policy alerts once."""

from __future__ import annotations

import json
import socket
import time
import uuid

import dagster as dg
import pytest
from confluent_kafka import Consumer, TopicPartition

from lakehouse.alerts import freshness_alerts, run_failure_alerts
from lakehouse.resources import KafkaResource
from lakehouse.resources.alerts import AlertsResource, alert
from lakehouse.security.kafka_access import client_config
from lakehouse.settings import get_settings

pytestmark = pytest.mark.stack


def _alerts(tmp_path, **kafka) -> AlertsResource:
    """The stack's alerts, logged in `tmp_path` (`kafka`: other fields of its Kafka resource)."""
    s = get_settings()
    return AlertsResource(log_path=str(tmp_path / "alerts.jsonl"), topic=s.alerts_topic,
                          webserver_url="http://127.0.0.1:3000", kafka=KafkaResource.from_settings(s, **kafka))  # fmt: skip


def _topic_messages(s, since: dict[int, int]) -> list[dict]:
    consumer = Consumer({**client_config(s, "admin"), "group.id": f"alerts-test-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False})  # fmt: skip
    try:
        consumer.assign([TopicPartition(s.alerts_topic, p, o) for p, o in since.items()])
        out, idle = [], 0
        while idle < 3:
            msg = consumer.poll(1.0)
            if msg is None:
                idle += 1
            elif not msg.error():
                out.append(json.loads(msg.value()))
        return out
    finally:
        consumer.close()


def _end_offsets(s) -> dict[int, int]:
    consumer = Consumer({**client_config(s, "admin"), "group.id": "alerts-test-offsets"})
    try:
        return {0: consumer.get_watermark_offsets(TopicPartition(s.alerts_topic, 0), timeout=10)[1]}
    finally:
        consumer.close()


@dg.op
def _fails():
    raise RuntimeError("the source table is gone")


@dg.job
def _failing_job():
    _fails()


def _alert_on_failure(instance, alerts, tags: dict[str, str] | None = None, times: int = 1):
    """Run the failing job, then the run-failure sensor on its failure `times` times; the failed run."""
    result = _failing_job.execute_in_process(instance=instance, raise_on_error=False, tags=tags or {})
    run = instance.get_run_by_id(result.run_id)
    event = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    with dg.build_run_status_sensor_context(sensor_name="run_failure_alerts", dagster_instance=instance,
                                            dagster_run=run, dagster_event=event,
                                            resources={"alerts": alerts}) as context:  # fmt: skip
        for _ in range(times):
            run_failure_alerts(context.for_run_failure())
    return run


def test_a_run_that_failed_for_good_is_alerted_once_in_the_log_and_on_kafka(stack, tmp_path):
    s = get_settings()
    alerts = _alerts(tmp_path)
    before = _end_offsets(s)
    with dg.instance_for_test() as instance:
        run_id = _alert_on_failure(instance, alerts, times=2).run_id  # twice: a tick that was retried
    logged = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert len(logged) == 1, logged  # one line per alert id
    (record,) = logged
    assert (
        record["kind"] == "run_failed" and record["subject"] == "_failing_job" and record["run_id"] == run_id
    )
    assert record["steps"] == ["_fails: RuntimeError: the source table is gone"], record
    assert record["url"].endswith(f"/runs/{run_id}")
    sent = [m for m in _topic_messages(s, before) if m.get("run_id") == run_id]
    assert sent and {m["id"] for m in sent} == {record["id"]}  # at least once on Kafka, keyed by the id


def test_a_run_the_instance_will_retry_raises_no_alert_before_or_after_its_retry_started(stack, tmp_path):
    alerts = _alerts(tmp_path)
    with dg.instance_for_test() as instance:
        run = _alert_on_failure(instance, alerts, tags={"dagster/will_retry": "true"})
        assert run.is_complete_and_waiting_to_retry
        # the retry daemon (every 5 s) has usually launched the retry by the sensor's tick (every 30 s)
        _alert_on_failure(
            instance, alerts, tags={"dagster/will_retry": "true", "dagster/auto_retry_run_id": "r2"}
        )
    assert not (tmp_path / "alerts.jsonl").exists()


def test_kafka_down_loses_no_alert_and_the_next_publish_delivers_it(stack, tmp_path):
    s = get_settings()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    down = _alerts(tmp_path, bootstrap_servers=f"127.0.0.1:{port}")
    record = alert("run_failed", "some_job", "boom", occurrence=f"run-{time.time()}")
    with pytest.raises(dg.Failure, match="did not take them") as err:
        down.publish([record])
    assert str(tmp_path / "alerts.jsonl") in str(err.value) and "sent again with the next" in str(err.value)
    assert [r["id"] for r in down.logged()] == [r["id"] for r in down.undelivered()] == [record["id"]]
    # Kafka back: the next publish (here with nothing new, as a freshness tick) sends what it missed, once
    before = _end_offsets(s)
    up = _alerts(tmp_path)
    up.publish([])
    up.publish([])
    assert up.undelivered() == [] and [r["id"] for r in up.logged()] == [record["id"]]
    assert [m["id"] for m in _topic_messages(s, before) if m["id"] == record["id"]] == [record["id"]]


def test_a_line_cut_short_in_the_log_does_not_stop_alerting(stack, tmp_path):
    alerts = _alerts(tmp_path)
    (tmp_path / "alerts.jsonl").write_text(
        '{"id": "a1", "kind": "run_failed"}\n{"id": "a2", "ki'
    )  # a crash mid-line
    record = alert("run_failed", "job", "boom", occurrence=f"run-{time.time()}")
    alerts.publish([record])
    assert [r["id"] for r in alerts.logged()] == ["a1", record["id"]] and alerts.undelivered() == []


def test_a_failed_freshness_policy_alerts_once_until_it_was_fresh_again(stack, tmp_path):
    from dagster._core.definitions.freshness import FreshnessState, FreshnessStateChange

    from lakehouse.definitions import defs

    alerts = _alerts(tmp_path)
    key = dg.AssetKey(["bronze", "clickstream_events"])
    assert defs.get_assets_def(key).specs_by_key[key].freshness_policy is not None

    def change(instance, new):
        instance._report_runless_asset_event(
            FreshnessStateChange(  # noqa: SLF001 - what the daemon reports
                key=key,
                previous_state=FreshnessState.UNKNOWN,
                new_state=new,
                state_change_timestamp=time.time(),
            )
        )

    def tick(instance, cursor):
        with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                     resources={"alerts": alerts}) as context:  # fmt: skip
            freshness_alerts(context)
            return context.cursor

    with dg.instance_for_test() as instance:
        change(instance, FreshnessState.FAIL)
        cursor = tick(instance, None)
        cursor = tick(instance, cursor)  # still failed: no second alert
        assert json.loads(cursor)[key.to_user_string()] == "FAIL"
        change(instance, FreshnessState.PASS)
        cursor = tick(instance, cursor)
        change(instance, FreshnessState.FAIL)
        tick(instance, cursor)
    logged = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert [r["subject"] for r in logged] == [key.to_user_string()] * 2, logged
    assert all(r["kind"] == "freshness_failed" for r in logged)
