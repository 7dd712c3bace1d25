"""Alerts: what needs a person, where people and machines look.

Two sensors raise them:
- `run_failure_alerts`: a run that failed for good (the instance retries a failed run up to
  LAKEHOUSE_DAGSTER_RUN_RETRIES times first; a run still waiting for its retry raises nothing);
- `freshness_alerts`: an asset whose freshness policy the daemon found failed (the UI shows it too);
A sensor of the platform that raises reports the error in its tick and keeps its cursor (Dagster's own
behaviour; assets_tests/test_alerts.py holds it to that), and its next tick tries again.

Each alert is one JSON line appended to the alert log (`<LAKEHOUSE_HOME>/logs/alerts.jsonl`) and then one
message on the Kafka topic LAKEHOUSE_ALERTS_TOPIC (`ops.alerts`, keyed by the alert's id), written by
the code location's Kafka principal. The log comes first: a Kafka that is down loses no alert. The tick
fails with the reason, and what Kafka did not take is sent with the next alert or the next tick of
`freshness_alerts` (a run-status sensor moves past a failed event: its retry would not resend it)."""

from __future__ import annotations

import json

import dagster as dg

from lakehouse.dagster_errors import summary
from lakehouse.resources.alerts import FRESHNESS_FAILED, RUN_FAILED, AlertsResource, alert


@dg.run_failure_sensor(
    name="run_failure_alerts",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts (log and Kafka `ops.alerts`) on a run that failed and will not be retried.",
)
def run_failure_alerts(context: dg.RunFailureSensorContext, alerts: AlertsResource):
    run = context.dagster_run
    if run.tags.get("dagster/will_retry") == "true":  # its retry alerts if it fails too
        context.log.info(f"run {run.run_id} failed and is retried by the instance: no alert")
        return
    step_errors = [f"{e.step_key}: {summary(e.step_failure_data.error)}" for e in context.get_step_failure_events()
                   if e.step_failure_data.error][:3]  # fmt: skip
    alerts.publish([alert(
        RUN_FAILED, run.job_name, context.failure_event.message or "run failed", occurrence=run.run_id,
        run_id=run.run_id, retry_number=int(run.tags.get("dagster/retry_number", 0)), steps=step_errors,
        url=f"{alerts.webserver_url}/runs/{run.run_id}",
    )])  # fmt: skip


@dg.sensor(
    name="freshness_alerts",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts (log and Kafka `ops.alerts`) when an asset's freshness policy fails: once per "
    "failure, again after it was fresh in between.",
)
def freshness_alerts(context: dg.SensorEvaluationContext, alerts: AlertsResource):
    from dagster._core.definitions.freshness import FreshnessState

    nodes = [n for n in context.repository_def.asset_graph.asset_nodes if n.freshness_policy]
    records = context.instance.get_freshness_state_records([n.key for n in nodes])
    last = json.loads(context.cursor) if context.cursor else {}
    states = {key.to_user_string(): record for key, record in records.items()}
    new = [alert(FRESHNESS_FAILED, key, f"{key} is not fresh: its freshness policy failed",
                 occurrence=str(record.updated_at), url=f"{alerts.webserver_url}/assets/{key}")
           for key, record in sorted(states.items())
           if record.freshness_state == FreshnessState.FAIL and last.get(key) != FreshnessState.FAIL.value]  # fmt: skip
    alerts.publish(new)  # also sends earlier alerts Kafka did not take; raises: the cursor stays
    context.update_cursor(json.dumps({k: r.freshness_state.value for k, r in states.items()}, sort_keys=True))
    return dg.SkipReason(
        f"{len(new)} new freshness failure(s) alerted" if new else "every asset fresh or known"
    )
