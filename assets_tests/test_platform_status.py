"""`lakehouse status` reads what the instance recorded: freshness per layer, the newest materialization, the
largest landing lag and failing checks (a real Dagster instance; a two-asset graph stands in for the lakehouse)."""

import time

import dagster as dg
from dagster._core.definitions.freshness import FreshnessState, FreshnessStateChange

from lakehouse.platform_status import collect, last_runs, render
from lakehouse.policies import STREAMING_FRESHNESS


@dg.asset(key=["raw", "events"], group_name="raw", freshness_policy=STREAMING_FRESHNESS)
def raw_events():
    return dg.MaterializeResult(metadata={"landing_lag_s": dg.MetadataValue.float(4.25)})


@dg.asset(
    key=["bronze", "events"], group_name="bronze", deps=[raw_events], freshness_policy=STREAMING_FRESHNESS
)
def bronze_events():
    return None


@dg.asset_check(asset=raw_events)
def offsets_contiguous():
    return dg.AssetCheckResult(passed=False, metadata={"gaps": 2})


def test_status_shows_each_layers_freshness_last_run_lag_and_failing_checks():
    defs = dg.Definitions(assets=[raw_events, bronze_events], asset_checks=[offsets_contiguous])
    with dg.instance_for_test() as instance:
        result = dg.materialize([raw_events, offsets_contiguous], instance=instance, raise_on_error=False)
        instance._report_runless_asset_event(FreshnessStateChange(  # noqa: SLF001 - as the freshness daemon does
            key=raw_events.key, previous_state=FreshnessState.UNKNOWN, new_state=FreshnessState.FAIL,
            state_change_timestamp=time.time()))  # fmt: skip
        rows = {r.layer: r for r in collect(instance, defs.resolve_asset_graph())}
        runs = last_runs(instance)
    assert set(rows) == {"raw", "bronze"}
    raw, bronze = rows["raw"], rows["bronze"]
    assert raw.worst_freshness == "FAIL" and bronze.worst_freshness == "UNKNOWN"
    assert raw.landing_lag_s == 4.25 and bronze.landing_lag_s is None
    assert raw.failing_checks == ["raw/events:offsets_contiguous"] and raw.checks == 1
    assert (
        raw.last_materialized is not None
        and bronze.last_materialized is None
        and bronze.never_materialized == 1
    )
    assert [run.run_id for run, _ in runs] == [result.run_id]
    screen = render(list(rows.values()), runs)
    assert "1 fail" in screen and "4.2 s" in screen and "1 failing of 1" in screen and "never" in screen
    assert "raw/events:offsets_contiguous" in screen and result.run_id[:8] in screen
    assert len(screen.splitlines()) < 25  # one screen
