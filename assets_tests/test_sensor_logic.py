"""The Kafka sensors' cursor logic (pure)."""

import json

from lakehouse.ingest.sensors import new_offsets, run_key


def test_a_run_is_requested_only_when_a_partition_moved():
    assert new_offsets(None, {"t:0": 0, "t:1": 0}) is None
    assert new_offsets(None, {"t:0": 3, "t:1": 0}) == {"t:0": 3, "t:1": 0}
    cursor = json.dumps({"t:0": 3, "t:1": 0})
    assert new_offsets(cursor, {"t:0": 3, "t:1": 0}) is None
    assert new_offsets(cursor, {"t:0": 3, "t:1": 1}) == {"t:0": 3, "t:1": 1}
    assert new_offsets(cursor, {"t:0": 3, "t:1": 0, "u:0": 1}) is not None  # a new topic appeared


def test_run_keys_are_deterministic_per_offsets():
    assert run_key("s", {"t:0": 3, "t:1": 1}) == run_key("s", {"t:1": 1, "t:0": 3})
    assert run_key("s", {"t:0": 3, "t:1": 1}) != run_key("s", {"t:0": 3, "t:1": 2})
    assert run_key("s", {"t:0": 3}).startswith("s@")


def test_the_intraday_schedule_refreshes_today_and_skips_while_the_last_refresh_runs():
    from datetime import UTC, datetime

    import dagster as dg

    from lakehouse.batch.schedules import intraday_batch_job, intraday_batch_schedule

    when = datetime(2026, 3, 14, 9, 45, tzinfo=UTC)
    with dg.instance_for_test() as instance:
        request = intraday_batch_schedule(
            dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
        )
        assert request.partition_key == "2026-03-14" and request.run_key == f"intraday:{when.isoformat()}"
        step = dg.op(name="noop")(lambda: None)

        @dg.job(name=intraday_batch_job.name)
        def noop():
            step()

        run = instance.create_run_for_job(noop, tags={"dagster/schedule_name": "intraday_batch_schedule"})
        assert run.status == dg.DagsterRunStatus.NOT_STARTED  # an unfinished refresh
        skipped = intraday_batch_schedule(
            dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
        )
        assert isinstance(skipped, dg.SkipReason) and run.run_id in skipped.skip_message
        # failed, and to be retried by the instance: still the refresh in progress
        instance.report_run_failed(run)
        instance.add_run_tags(run.run_id, {"dagster/will_retry": "true"})
        retried = intraday_batch_schedule(
            dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
        )
        assert isinstance(retried, dg.SkipReason) and run.run_id in retried.skip_message
        instance.add_run_tags(
            run.run_id, {"dagster/will_retry": "false"}
        )  # failed for good: the next refresh runs
        again = intraday_batch_schedule(
            dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
        )
        assert isinstance(again, dg.RunRequest)


def test_a_cadence_that_is_not_a_cron_is_refused(clean_env, monkeypatch):
    import pytest

    from lakehouse.settings import get_settings

    monkeypatch.setenv("LAKEHOUSE_INTRADAY_CRON", "every 15 minutes")
    get_settings.cache_clear()
    with pytest.raises(ValueError, match="LAKEHOUSE_INTRADAY_CRON: 'every 15 minutes' is not a cron"):
        get_settings()
