"""Real time on the live stack: the PyFlink jobs against a computation of our own, and Pinot.

The events are the generator's, produced in event-time order (keyed by user, so each partition is
in order and nothing is late), plus hand-made purchases that must be flagged. Once every window
is closed (a page view two hours later in each partition moves the watermark), the outputs must
equal what this module computes from the same events. Then malformed and late messages must be
counted in the rejects topic, and the outputs must reach Pinot with exact counts.
"""

import json
import shutil
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition
from conftest import assert_checks_passed, wait_until

from lakehouse.generator.clickstream import GeneratorConfig, encode, generate_events, produce
from lakehouse.realtime import flink
from lakehouse.realtime.assets import (
    landed_checks,
    pinot_lag_checks,
    pinot_table_assets,
    realtime_outputs_landed,
    stream_job_assets,
    stream_job_checks,
    stream_jobs_watchdog,
)
from lakehouse.realtime.pinot import CONFIG_DIR, PinotClient
from lakehouse.resources import build_resources
from lakehouse.resources.kafka import ensure_topic, make_producer
from lakehouse.security.kafka_access import client_config

pytestmark = pytest.mark.stack
END = datetime(2026, 7, 1, tzinfo=UTC)
SESSION_GAP = timedelta(minutes=30)


def ts(event: dict) -> datetime:
    return datetime.fromisoformat(event["event_time"].replace("Z", "+00:00"))


def millis(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def purchase(user: int, at: datetime, amount: float, n: int) -> dict:
    return {"event_id": f"hand-{user}-{n}", "event_type": "purchase", "event_time": iso(at), "user_id": user,
            "product_id": 7, "merchant_id": 3, "price": amount, "quantity": 1}  # fmt: skip


def hand_made_purchases(start: datetime) -> list[dict]:
    """User 90001 buys for ~20 four times, then for 400 (a spike); user 90002 buys 6 times in 5 minutes."""
    spike = [purchase(90001, start + timedelta(minutes=i * 20), 20.0 + i, i) for i in range(4)]
    spike.append(purchase(90001, start + timedelta(minutes=100), 400.0, 4))
    burst = [purchase(90002, start + timedelta(minutes=i), 15.0, i) for i in range(6)]
    return spike + burst


# --- the independent computation -------------------------------------------------------------------


def expected_ctr(events: list[dict]) -> set[tuple]:
    counts: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for e in events:
        if e["event_type"] in ("impression", "click") and e.get("product_id") is not None:
            minute = ts(e).replace(second=0, microsecond=0)
            counts[(e["product_id"], millis(minute))][e["event_type"] == "click"] += 1
    return {(p, m, i, c) for (p, m), (i, c) in counts.items()}


def expected_abandoned(events: list[dict]) -> set[tuple]:
    by_user: dict[int, list[dict]] = defaultdict(list)
    for e in events:
        by_user[e["user_id"]].append(e)
    found = set()
    for user, evs in by_user.items():
        evs.sort(key=ts)
        sessions, current = [], [evs[0]]
        for e in evs[1:]:
            if ts(e) - ts(current[-1]) >= SESSION_GAP:
                sessions.append(current)
                current = []
            current.append(e)
        sessions.append(current)
        for session in sessions:
            adds = sum(e["event_type"] == "add_to_cart" for e in session)
            if adds and not any(e["event_type"] == "purchase" for e in session):
                found.add((user, millis(ts(session[0])), adds))
    return found


def expected_alerts(events: list[dict], factor=5.0, burst_count=5, burst_window=timedelta(minutes=10)) -> set:
    by_user: dict[int, list[dict]] = defaultdict(list)
    for e in events:
        if e["event_type"] == "purchase":
            by_user[e["user_id"]].append(e)
    found = set()
    for evs in by_user.values():
        evs.sort(key=ts)
        amounts = [(e.get("price") or 0.0) * (e.get("quantity") or 1) for e in evs]
        for i, e in enumerate(evs):
            history = amounts[max(0, i - 20) : i]
            if len(history) >= 3 and amounts[i] > factor * sum(history) / len(history):
                found.add((e["event_id"], "amount_spike"))
            recent = [x for x in evs[: i + 1] if ts(e) - burst_window <= ts(x)]
            if len(recent) >= burst_count:
                found.add((e["event_id"], "burst"))
    return found


# --- reading the outputs ---------------------------------------------------------------------------


def read_output(settings, output: str) -> list[dict]:
    """Every committed record of a stream job's (one-partition) output topic, as JSON."""
    topic = settings.realtime_topic(output)
    consumer = Consumer({**client_config(settings, "admin"), "group.id": "test-realtime-reader",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})  # fmt: skip
    try:
        tp = TopicPartition(topic, 0)
        _, high = consumer.get_watermark_offsets(tp, timeout=10)
        consumer.assign([TopicPartition(topic, 0, 0)])
        out, done = [], high == 0
        while not done:
            msgs = consumer.consume(1000, timeout=2)
            out.extend(json.loads(m.value()) for m in msgs if not m.error() and m.value())
            done = not msgs or consumer.position([tp])[0].offset >= high
        return out
    finally:
        consumer.close()


def assert_outputs_match(settings, events: list[dict], when: str = "") -> dict[str, list[dict]]:
    """Each job's output equals the independent computation from `events`, every row exactly once
    (waits until each output has as many rows as expected). Returns the outputs."""
    expected = {
        "product_ctr": (expected_ctr(events),
                        lambda r: (r["product_id"], r["window_start_ms"], r["impressions"], r["clicks"])),
        "cart_abandonment": (expected_abandoned(events),
                             lambda r: (r["user_id"], r["session_start_ms"], r["cart_adds"])),
        "purchase_alerts": (expected_alerts(events), lambda r: (r["event_id"], r["reason"])),
    }  # fmt: skip
    rows = {output: len(want) for output, (want, _) in expected.items()}
    for output in expected:
        wait_until(
            lambda o=output: len(read_output(settings, o)) >= rows[o], 240, f"the {output} output{when}"
        )
    got = {output: read_output(settings, output) for output in expected}
    for output, (want, row) in expected.items():
        assert len(got[output]) == len(want), f"{output}{when}: each row once"
        assert {row(r) for r in got[output]} == want, f"{output}{when}"
    return got


def materialize(settings, assets, checks=(), run_config=None, raise_on_error=True):
    return dg.materialize([*assets, *checks], resources=build_resources(settings), run_config=run_config,
                          raise_on_error=raise_on_error)  # fmt: skip


def advance_watermark(settings, latest: datetime) -> None:
    """A page view two hours after `latest` in every partition: every window up to `latest` closes."""
    producer = make_producer(client_config(settings, "admin"))
    for p in range(settings.events_partitions):
        flush = {"event_id": f"flush-{p}-{iso(latest)}", "event_type": "page_view",
                 "event_time": iso(latest + timedelta(hours=2)), "user_id": 80000 + p}  # fmt: skip
        producer.produce(settings.events_topic, value=json.dumps(flush).encode(), partition=p)
    producer.flush()


def send(settings, events: list[dict]) -> None:
    """Events in event-time order (keyed by user: each partition is in order), then move the watermark."""
    produce(settings, settings.events_topic, encode(sorted(events, key=ts)), progress=False)
    advance_watermark(settings, max(ts(e) for e in events))


@pytest.fixture(scope="module")
def produced(namespace):
    """The jobs started from Dagster, then the events: the generator's plus the hand-made purchases."""
    s = namespace.settings
    ensure_topic(client_config(s, "admin"), s.events_topic, partitions=s.events_partitions)
    result = materialize(s, stream_job_assets, stream_job_checks)
    assert_checks_passed(result, stream_job_checks)
    events = generate_events(GeneratorConfig(events=3000, days=1, users=60, seed=11, end=END))
    events += hand_made_purchases(END - timedelta(hours=20))
    send(s, events)
    return events


def test_flink_outputs_equal_an_independent_computation(namespace, produced):
    s = namespace.settings
    assert expected_ctr(produced) and expected_abandoned(produced)
    assert {r for _, r in expected_alerts(produced)} == {"amount_spike", "burst"}
    got = assert_outputs_match(s, produced)
    for r in got["product_ctr"]:  # clicks per impression; NULL for a window with clicks and no impression
        want = pytest.approx(r["clicks"] / r["impressions"]) if r["impressions"] else None
        assert r.get("ctr") == want, r
    assert read_output(s, flink.REJECTS_OUTPUT) == []  # in order: none late


def test_malformed_and_late_events_are_counted_not_fatal(namespace, produced):
    s = namespace.settings
    want_windows = len(expected_ctr(produced))  # all windows out: the watermark is past every event
    wait_until(lambda: len(read_output(s, "product_ctr")) >= want_windows,
               240, "the CTR windows")  # fmt: skip
    old = min(ts(e) for e in produced) + timedelta(minutes=5)
    late = [{"event_id": "late-click", "event_type": "click", "event_time": iso(old), "user_id": 5, "product_id": 9},
            purchase(5, old, 99.0, 99)]  # fmt: skip
    malformed = [b"{not json", json.dumps({"event_type": "click", "event_time": iso(old)}).encode(),
                 json.dumps({"event_id": "x", "event_type": "click", "event_time": "yesterday", "user_id": 1}).encode(),
                 json.dumps({"event_id": "y", "event_type": "click", "event_time": iso(old), "user_id": "abc"}).encode(),
                 # Hostile: beyond INT (never coerced), bytes that are not UTF-8, NaN, nesting beyond any parser's limit.
                 json.dumps({"event_id": "q", "event_type": "click", "event_time": iso(old), "user_id": 1,
                             "quantity": 2**40}).encode(),
                 b"\xff\xfe{\"event_id\": 1}",
                 b'{"event_id": "n", "event_type": "click", "user_id": 1, "price": NaN}',
                 b'{"event_id": "d", "nested": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"]  # fmt: skip
    producer = make_producer(client_config(s, "admin"))
    for value in [*(json.dumps(e).encode() for e in late), *malformed]:
        producer.produce(s.events_topic, value=value, partition=0)
    producer.flush()
    jobs = [j.name for j in flink.FLINK_JOBS]
    # Late for: CTR the click, cart abandonment both (every event type counts), fraud the purchase.
    want = {(job, "late"): n for job, n in zip(jobs, (1, 2, 1), strict=True)}
    for job in jobs:
        want[(job, "not a JSON object")] = 4  # broken JSON, not UTF-8, NaN, too deep
        want[(job, "quantity is not an integer in range")] = 1
        want[(job, "missing event_id")] = 1
        want[(job, "event_time is not an ISO-8601 UTC timestamp")] = 1
        want[(job, "user_id is not an integer")] = 1

    def counted() -> dict:
        found: dict[tuple, int] = defaultdict(int)
        for r in read_output(s, flink.REJECTS_OUTPUT):
            found[(r["job"], r["reason"])] += 1
        return dict(found)

    wait_until(lambda: sum(counted().values()) >= sum(want.values()), 120, "the rejects")
    assert counted() == want
    for job in flink.FLINK_JOBS:  # still running, still checkpointing
        assert flink.problem(s, job) is None, flink.problem(s, job)
    # The outputs land in the lake exactly once, rejects included; a second run adds nothing.
    first = materialize(s, [realtime_outputs_landed], landed_checks)
    assert_checks_passed(first, landed_checks)
    landed = [e.event_specific_data.materialization for e in first.get_asset_materialization_events()]
    rows = {m.asset_key.path[-1]: m.metadata["rows_landed"].value for m in landed}
    assert rows["rt_stream_rejects"] == sum(want.values())
    again = materialize(s, [realtime_outputs_landed], landed_checks)
    assert {e.event_specific_data.materialization.metadata["rows_landed"].value
            for e in again.get_asset_materialization_events()} == {0}  # fmt: skip


def test_outputs_and_orders_reach_pinot_with_exact_counts(namespace, produced):
    s = namespace.settings
    materialize(s, pinot_table_assets, pinot_lag_checks)
    client = PinotClient.from_settings(s)
    ctr_rows = len(read_output(s, "product_ctr"))
    alerts = len(read_output(s, "purchase_alerts"))

    def count(table: str, where: str = "") -> int:
        return client.count(s.pinot_table(table), where)

    wait_until(lambda: count("product_ctr") == ctr_rows, 60, "Pinot's product_ctr")
    wait_until(lambda: count("purchase_alerts") == alerts, 60, "Pinot's purchase_alerts")
    top = client.query(f"SELECT product_id, SUM(clicks) FROM {s.pinot_table('product_ctr')} "
                       "GROUP BY product_id ORDER BY SUM(clicks) DESC LIMIT 1")  # fmt: skip
    want_clicks = defaultdict(int)
    for product, _, _, clicks in expected_ctr(produced):
        want_clicks[product] += clicks
    assert top[0][1] == max(want_clicks.values())

    # Orders: inserted, updated and deleted in PostgreSQL, upserted in Pinot through Debezium.
    base = 9_000_000_000 + int(datetime.now(UTC).timestamp()) % 1_000_000 * 10
    with psycopg.connect(host=s.postgres_host, port=s.postgres_port, user=s.postgres_user,
                         password=s.postgres_password, dbname=s.postgres_db, autocommit=True) as conn:  # fmt: skip
        customer = conn.execute("SELECT min(customer_id) FROM marketplace.customers").fetchone()[0]
        for i in range(5):
            conn.execute("INSERT INTO marketplace.orders (order_id, customer_id, merchant_id, status, total) "
                         "VALUES (%s, %s, 1, 'placed', %s)", (base + i, customer, 10 + i))  # fmt: skip
        conn.execute("UPDATE marketplace.orders SET status = 'paid' WHERE order_id = %s", (base + 1,))
        conn.execute("DELETE FROM marketplace.orders WHERE order_id = %s", (base + 4,))
    in_range = f"WHERE order_id BETWEEN {base} AND {base + 9}"
    wait_until(lambda: count("merchant_orders", in_range + " AND is_deleted = 0") == 4
               and count("merchant_orders", in_range + " AND status = 'paid'") == 1, 60, "the orders in Pinot")  # fmt: skip
    assert count("merchant_orders", in_range) == 5  # one row per order: the delete replaced its row
    totals = client.query(
        f"SELECT SUM(total) FROM {s.pinot_table('merchant_orders')} {in_range} AND is_deleted = 0"
    )
    assert totals[0][0] == pytest.approx(10 + 11 + 12 + 13)
    # The checks alone (selected among their assets: checks without their assets in a run are not evaluated).
    lag = dg.materialize([*pinot_table_assets, *pinot_lag_checks], resources=build_resources(s),
                         selection=dg.AssetSelection.checks(*pinot_lag_checks), raise_on_error=False)  # fmt: skip
    assert_checks_passed(lag, pinot_lag_checks)


def test_a_table_config_pinot_rejects_fails_its_asset_with_pinots_reason(namespace, tmp_path):
    s = namespace.settings
    folder = tmp_path / "pinot"
    shutil.copytree(CONFIG_DIR, folder)
    config = folder / "product_ctr.table.json"
    config.write_text(config.read_text().replace('"timeColumnName": "window_start_ms"',
                                                 '"timeColumnName": "no_such_column"'))  # fmt: skip
    asset = next(a for a in pinot_table_assets if a.key.path[-1] == "product_ctr")
    result = materialize(s, [asset], run_config={"ops": {"pinot__product_ctr": {"config": {"config_dir": str(folder)}}}},
                         raise_on_error=False)  # fmt: skip
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.message + str(failure.event_specific_data.user_failure_data)
    assert "Pinot rejected" in message and "no_such_column" in message, message


def test_a_killed_job_is_restarted_by_the_watchdog_and_resumes_exactly_once(namespace, produced):
    """SIGKILL every job while it works through new events; the watchdog's run restarts them from
    their checkpoints: every output is still there exactly once, none is missing.

    Note: Flink's Kafka committer may log `Unable to commit transaction ... already fenced` for the
    transaction open at the kill; the assertions below show that no output is lost."""
    import psutil

    s = namespace.settings
    later = generate_events(
        GeneratorConfig(events=3000, days=1, users=60, seed=12, end=END + timedelta(days=2))
    )
    send(s, later)
    time.sleep(2)
    for job in flink.FLINK_JOBS:
        record = flink.process_record(s, job)
        assert record is not None, job.name
        root = psutil.Process(record.pid)
        for proc in [*root.children(recursive=True), root]:
            proc.kill()
    wait_until(lambda: not any(flink.running(s, j) for j in flink.FLINK_JOBS), 30, "the jobs to be gone")
    jobs = {dg.AssetKey(["realtime", j.name]) for j in flink.FLINK_JOBS}
    with dg.DagsterInstance.ephemeral() as instance:
        result = stream_jobs_watchdog(dg.build_sensor_context(instance=instance))
        (request,) = result.run_requests
        assert set(request.asset_selection) == jobs
        assert result.asset_events == []  # a job that is down gets no heartbeat
        materialize(s, stream_job_assets)
        restarted = time.time()
        wait_until(lambda: all(flink.read_status(s, j).get("checkpoint_at", 0) > restarted for j in flink.FLINK_JOBS),
                   120, "a checkpoint of every restarted job", 1)  # fmt: skip
        again = stream_jobs_watchdog(dg.build_sensor_context(instance=instance))
        # running again: no restart; each job, never recorded in this instance, gets its heartbeat
        assert not again.run_requests and {e.asset_key for e in again.asset_events} == jobs, again
    everything = produced + later
    # Watermarks are not part of a checkpoint: after a restart, windows close as new events arrive.
    advance_watermark(s, max(ts(e) for e in later) + timedelta(hours=3))
    assert_outputs_match(s, everything, " after the restart")
