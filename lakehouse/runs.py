"""Questions about Dagster runs that sensors and schedules ask before they request another."""

import dagster as dg
from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES

# queued or running: not NOT_STARTED, which a tick that crashed after creating its run leaves (the daemon
# resubmits it), nor CANCELING
IN_FLIGHT = (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED)


def unfinished_run(
    instance: dg.DagsterInstance, tags: dict[str, str], statuses=tuple(NOT_FINISHED_STATUSES)
) -> dg.DagsterRun | None:
    """The latest run with `tags` whose status is one of `statuses` (by default: any not finished), if any."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags=tags, statuses=list(statuses)), limit=1)
    return runs[0] if runs else None
