"""Time travel: any Delta table of the lake as of a version or a point in time, with delta-rs.

A version is readable while its commit is still in the table's log: `cleanup_metadata` (table
maintenance) drops commits older than the table's `delta.logRetentionDuration` (30 days by default)
once a checkpoint covers them, and vacuum deletes the data files that only old versions referenced.
Asking for what is gone is a `TimeTravelError` naming the versions still readable, never an empty or
silently newer table (delta-rs, asked for a time before the log's first commit, would load that commit).
Trino reads the same versions: `SELECT ... FROM delta.<layer>.<table> FOR VERSION AS OF 3` or
`FOR TIMESTAMP AS OF TIMESTAMP '2026-11-27 10:00:00 UTC'`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError


class TimeTravelError(ValueError):
    def __init__(self, problem: str, fix: str):
        super().__init__(f"{problem}\n  fix: {fix}")
        self.problem, self.fix = problem, fix


def retained(dt: DeltaTable) -> list[tuple[int, datetime]]:
    """(version, commit time) of every commit still in the table's log, oldest first."""
    commits = [(h["version"], datetime.fromtimestamp(h["timestamp"] / 1000, UTC)) for h in dt.history()]
    return sorted(commits)


def as_of(uri: str, storage_options: dict[str, str], version: int | None = None,
          timestamp: datetime | None = None) -> DeltaTable:  # fmt: skip
    """The table at `version`, or as it was at `timestamp` (the last commit at or before it)."""
    if (version is None) == (timestamp is None):
        raise ValueError("give exactly one of version and timestamp")
    try:
        dt = DeltaTable(uri, storage_options=storage_options)
    except TableNotFoundError as exc:
        raise TimeTravelError(f"{uri} is not a Delta table", fix="check the layer and table name") from exc
    commits = retained(dt)
    first, last = commits[0], commits[-1]
    readable = (f"its log keeps versions {first[0]} to {last[0]}, committed {first[1]:%Y-%m-%d %H:%M:%S} to "
                f"{last[1]:%Y-%m-%d %H:%M:%S} UTC")  # fmt: skip
    fix = ("read a version in that range; older ones left the log after delta.logRetentionDuration "
           "(a table property) and are only in a backup")  # fmt: skip
    if version is not None:
        if not first[0] <= version <= last[0]:
            raise TimeTravelError(f"version {version} of {uri} cannot be read: {readable}", fix=fix)
        dt.load_as_version(version)
        return dt
    assert timestamp is not None
    when = timestamp if timestamp.tzinfo else timestamp.replace(tzinfo=UTC)
    if when < first[1]:
        raise TimeTravelError(f"{uri} as of {when:%Y-%m-%d %H:%M:%S} UTC cannot be read: {readable}", fix=fix)
    dt.load_as_version(max(v for v, t in commits if t <= when))
    return dt
