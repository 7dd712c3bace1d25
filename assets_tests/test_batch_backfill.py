"""Silver and gold daily partitions on the live stack: a range of days is one Spark run, re-running a
day replaces exactly that day, an empty day is an empty partition, a day silver never produced
stops gold with a clear error, and a failing dbt test blocks gold and names the failing rows."""

import hashlib
import json
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pyarrow.compute as pc
import pytest
from deltalake import write_deltalake

from lakehouse.batch.assets import silver_daily
from lakehouse.generator.clickstream import GeneratorConfig, encode, event_day, generate_events, produce
from lakehouse.ingest.assets import bronze_clickstream, raw_clickstream_events
from lakehouse.resources import LakeResource, build_resources
from lakehouse.warehouse.assets import dbt_resource, gold_daily_dbt_models, gold_dbt_models

pytestmark = pytest.mark.stack

END = datetime(2026, 2, 12, 20, 0, tzinfo=UTC)
TABLES = ("product_funnel_daily", "sessions", "enriched_events")


def day_fingerprints(lake: LakeResource, table: str) -> dict[str, tuple[int, str]]:
    """Per day: (rows, SHA-256 over the sorted rows)."""
    rows = lake.read("silver", table).to_pylist()
    days: dict[str, list[str]] = {}
    for r in rows:
        days.setdefault(str(r["event_date"]), []).append(json.dumps(r, sort_keys=True, default=str))
    return {d: (len(v), hashlib.sha256("\n".join(sorted(v)).encode()).hexdigest()) for d, v in days.items()}


@pytest.fixture(scope="module")
def lakehouse(namespace):
    """Events over four days in Kafka, landed into bronze; a shared instance for partition status."""
    events = generate_events(GeneratorConfig(events=3000, days=4, seed=7, end=END))
    produce(namespace.settings, namespace.settings.events_topic, encode(events), progress=False)
    resources = {**build_resources(namespace.settings), "dbt": dbt_resource()}
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize(
        [raw_clickstream_events, bronze_clickstream], resources=resources, instance=instance
    ).success
    days = sorted({event_day(e) for e in events})
    return resources, instance, days, events


def run_silver(lakehouse, first: date, last: date):
    resources, instance, _, _ = lakehouse
    tags = {"dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat()}  # fmt: skip
    return dg.materialize([silver_daily], resources=resources, instance=instance, tags=tags)


def test_a_range_is_one_spark_run_and_a_rerun_replaces_exactly_its_day(namespace, lakehouse):
    lake = LakeResource.from_settings(namespace.settings)
    _, _, days, events = lakehouse
    empty_day = days[-1] + timedelta(days=1)  # no events: an empty partition, not an error
    result = run_silver(lakehouse, days[0], empty_day)
    assert result.success
    materializations = result.get_asset_materialization_events()
    apps = {m.materialization.metadata["spark_application_id"].value for m in materializations}
    assert len(apps) == 1, f"one Spark session for the whole range, got {apps}"
    assert {m.partition for m in materializations} == {d.isoformat() for d in [*days, empty_day]}
    funnel = next(m for m in materializations if m.asset_key.path[-1] == "product_funnel_daily")
    assert funnel.materialization.metadata["empty_days"].value == [empty_day.isoformat()]

    before = {t: day_fingerprints(lake, t) for t in TABLES}
    assert sum(n for n, _ in before["enriched_events"].values()) == len(events)
    assert sum(r["events"] for r in lake.read("silver", "sessions").to_pylist()) == len(events)
    assert empty_day.isoformat() not in before["sessions"]

    versions = {t: lake.table("silver", t).version() for t in TABLES}
    assert run_silver(lakehouse, days[1], days[1]).success  # re-run one day
    after = {t: day_fingerprints(lake, t) for t in TABLES}
    assert after == before, "re-running a day must give identical rows for every day"
    assert all(lake.table("silver", t).version() == versions[t] + 1 for t in TABLES)


def test_gold_refuses_days_silver_never_produced(namespace, lakehouse):
    resources, instance, days, _ = lakehouse
    never = days[0] - timedelta(days=30)
    result = dg.materialize([gold_dbt_models, gold_daily_dbt_models], resources=resources, instance=instance,
                            partition_key=never.isoformat(), selection="gold/daily_kpis", raise_on_error=False)  # fmt: skip
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.user_failure_data.description
    assert "silver has no partition" in message and never.isoformat() in message


def test_a_failing_dbt_test_blocks_gold_and_names_the_rows(namespace, lakehouse):
    resources, instance, days, _ = lakehouse
    lake = LakeResource.from_settings(namespace.settings)
    day = days[2]
    assert run_silver(lakehouse, days[0], days[-1]).success
    # Corrupt silver: one session twice.
    sessions = lake.read("silver", "sessions")
    dupe = sessions.filter(pc.equal(sessions.column("event_date"), day)).slice(0, 1)
    write_deltalake(
        lake.table_uri("silver", "sessions"), dupe, mode="append", storage_options=lake.storage_options
    )
    bad_id = dupe.column("session_id")[0].as_py()

    selection = [dg.AssetKey(["gold", "stg_silver__sessions"]), dg.AssetKey(["gold", "daily_kpis"])]
    result = dg.materialize([gold_dbt_models, gold_daily_dbt_models], resources=resources, instance=instance,
                            partition_key=day.isoformat(), selection=selection, raise_on_error=False)  # fmt: skip
    assert not result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    failed = checks["unique_stg_silver__sessions_session_id"]
    assert not failed.passed
    assert bad_id in failed.metadata["failing_rows_sample"].value
    materialized = {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()}
    assert "gold/daily_kpis" not in materialized, "a failing upstream test must block the daily mart"

    # Re-running the day in silver replaces it: the duplicate is gone and gold builds.
    assert run_silver(lakehouse, day, day).success
    result = dg.materialize([gold_dbt_models, gold_daily_dbt_models], resources=resources, instance=instance,
                            partition_key=day.isoformat(), selection=selection)  # fmt: skip
    assert result.success


def test_a_late_event_for_a_built_day_does_not_jam_the_checks_and_the_day_is_rebuilt(namespace, lakehouse):
    """A late event reaches bronze for a day silver already built: a run of another day still passes its
    (exact) accounting check and names the day behind; the late-events sensor asks for exactly that day; once
    rebuilt, nothing is behind."""
    from lakehouse.batch.checks import days_behind_bronze, sessions_account_for_every_event
    from lakehouse.batch.schedules import late_events_sensor

    resources, instance, days, events = lakehouse
    lake = LakeResource.from_settings(namespace.settings)
    assert run_silver(lakehouse, days[0], days[-1]).success
    assert days_behind_bronze(lake) == {}
    late = {**events[0], "event_id": "late-arrival-1", "event_time": f"{days[0].isoformat()}T12:00:00+00:00"}
    produce(namespace.settings, namespace.settings.events_topic, encode([late]), progress=False)
    assert dg.materialize(
        [raw_clickstream_events, bronze_clickstream], resources=resources, instance=instance
    ).success
    behind = days_behind_bronze(lake)
    assert list(behind) == [days[0].isoformat()] and behind[days[0].isoformat()]["bronze"] == (
        behind[days[0].isoformat()]["silver"] + 1)  # fmt: skip

    tags = {"dagster/asset_partition_range_start": days[1].isoformat(),
            "dagster/asset_partition_range_end": days[1].isoformat()}  # fmt: skip
    result = dg.materialize([silver_daily, sessions_account_for_every_event], resources=resources,
                            instance=instance, tags=tags, selection=[dg.AssetKey(["silver", "sessions"])])  # fmt: skip
    check = result.get_asset_check_evaluations()[0]
    assert check.passed, check.metadata
    assert check.metadata["other_days_behind_bronze"].value == [days[0].isoformat()]
    assert f"--partition {days[0].isoformat()}" in check.metadata["rebuild_behind_days"].value

    requests = late_events_sensor(dg.build_sensor_context(instance=instance, resources={"lake": lake}))
    assert [r.partition_key for r in requests] == [days[0].isoformat()]
    assert run_silver(lakehouse, days[0], days[0]).success
    assert days_behind_bronze(lake) == {}
