"""Delta table maintenance: compaction, checkpoints, expired-log cleanup and a vacuum that is checked on
the object store. Plain functions on a table's URI and storage options (no Dagster): the nightly job in
`lakehouse/ingest/maintenance.py` runs them over `maintained_tables`, the one list of every table the
project writes.

Why the retention floor keeps files that are uploaded but not committed yet
---------------------------------------------------------------------------
Every writer uploads its Parquet objects first and commits a log entry naming them afterwards (the
landings' `upload_files` then `MarkedTable.commit_files`; the same inside delta-rs MERGE and OPTIMIZE,
and Spark). In between, the objects sit in the table's folder without any log version referencing them:
to vacuum they look exactly like the leftovers of a writer that crashed before its commit. A full
vacuum (the only kind that removes such leftovers) deletes an unreferenced object only when its
last-modified time, stamped by the object store at upload, is older than now minus the retention. So an
object uploaded less than `retention` ago is never deleted, committed or not.

A landing collects a batch in memory, uploads it once the batch window closes and commits it right away:
the upload-to-commit gap is the upload plus the commit, seconds, less than one batch window. The floor,
`max(1 hour, BATCH_WINDOW_MULTIPLE x the longest batch window)`, means a file can only be deleted under a
writer that has been stalled between its upload and its commit for at least an hour and at least
BATCH_WINDOW_MULTIPLE windows; a writer that crashed never commits, and its objects are the leftovers
vacuum is for (the next run lands the records again from the offsets in the log). The hour also absorbs
clock skew between the object store (which stamps the objects) and the host running vacuum (which
compares). Compaction commits its rewritten files as soon as a group of them is done once
`commit_interval` (a quarter of the retention, at most 15 minutes) has passed since its last commit, so
its own uploads do not wait for the end of a long compaction either. A writer that holds uploads longer
than that (a Spark run writing many days of a silver table before its one commit) needs a retention
longer than its longest run: the default, LAKEHOUSE_VACUUM_RETENTION_HOURS=168, is. Files that commits
removed (compaction, MERGE, overwrites) are deleted once their removal is older than the retention,
which also protects readers still working from an older snapshot.

Below the floor maintenance refuses (`RetentionTooShort`). delta-rs has its own check
(`enforce_retention_duration`, against the table's `delta.deletedFileRetentionDuration`, 7 days unless
set): a retention the table property explicitly asks for longer is raised to it, and delta-rs's check is
only switched off after our floor was checked, so it can never be used to go below the floor. Retentions
are whole hours (delta-rs takes an integer).

The test-only override
----------------------
A test on the real object store cannot backdate objects, so it needs a retention of 0 to see compacted
files really removed. `LAKEHOUSE_MAINTENANCE_MIN_RETENTION_HOURS` lowers the floor, and is honoured only
when `LAKEHOUSE_MAINTENANCE_TEST_ONLY` holds the exact phrase `TEST_FLAG_PHRASE` *and* the process is
inside a running pytest test (`PYTEST_CURRENT_TEST`, set by pytest for each test). Set any other way (in
a deployment's environment, a Dagster run, the CLI) it makes maintenance refuse to run rather than be
silently ignored, so a leftover variable is noticed and can never shorten the floor in production.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import unquote

import pyarrow.fs as pafs
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError

from lakehouse.ingest.delta_sink import open_table, table_filesystem
from lakehouse.settings import LakehouseSettings

MIN_RETENTION_HOURS = 1
BATCH_WINDOW_MULTIPLE = 60
DEFAULT_TARGET_FILE_MB = 128
DEFAULT_COMPACTION_ATTEMPTS = 3
MAX_COMMIT_INTERVAL = timedelta(minutes=15)  # compaction commits at least this often (see above)
DELTA_DEFAULT_RETENTION_HOURS = 168  # delta-rs's default for delta.deletedFileRetentionDuration

TEST_FLOOR_ENV = "LAKEHOUSE_MAINTENANCE_MIN_RETENTION_HOURS"
TEST_FLAG_ENV = "LAKEHOUSE_MAINTENANCE_TEST_ONLY"
TEST_FLAG_PHRASE = "delete-uncommitted-files-in-this-test"

LOG_DIR = "_delta_log"


class RetentionTooShort(ValueError):
    """A vacuum retention below the floor, or the test-only override used outside a test."""


class VacuumIncomplete(RuntimeError):
    """Objects vacuum reported deleted are still on the store, or files the log references are gone."""


Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# --- which tables -----------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class TableRef:
    layer: str
    name: str

    def __str__(self) -> str:
        return f"{self.layer}/{self.name}"


def maintained_tables(settings: LakehouseSettings) -> list[TableRef]:
    """Every Delta table the project writes, from the asset keys and naming helpers its writers use (an
    asset key `[layer, table]` is the table `s3://<bucket>/<prefix><layer>/<table>`) and the configured
    CDC tables (LAKEHOUSE_CDC_TABLES): raw clickstream, bronze and its dead letters; per captured table
    its raw change log and silver current state, the CDC dead letters and the price history; the landed
    stream-job outputs; the silver daily tables."""
    from lakehouse.batch.assets import silver_daily
    from lakehouse.cdc.assets import DEAD_LETTERS_KEY as CDC_DEAD_LETTERS_KEY
    from lakehouse.cdc.assets import PRICE_HISTORY_KEY, change_log_key, silver_key
    from lakehouse.ingest.assets import BRONZE_KEY, RAW_KEY
    from lakehouse.ingest.assets import DEAD_LETTERS_KEY as CLICKSTREAM_DEAD_LETTERS_KEY
    from lakehouse.realtime.assets import LANDED_OUTPUTS, landed_key

    keys = [RAW_KEY, BRONZE_KEY, CLICKSTREAM_DEAD_LETTERS_KEY]
    keys += [change_log_key(t) for t in settings.cdc_table_list]
    keys += [silver_key(t) for t in settings.cdc_table_list]
    keys += [CDC_DEAD_LETTERS_KEY, PRICE_HISTORY_KEY]
    keys += [landed_key(output) for output in LANDED_OUTPUTS]
    keys += sorted(silver_daily.keys, key=lambda k: k.path)
    refs: list[TableRef] = []
    for key in keys:
        layer, name = key.path  # every table asset's key is [layer, table]
        if TableRef(layer, name) not in refs:
            refs.append(TableRef(layer, name))
    return refs


# --- retention ----------------------------------------------------------------------------------------


def landing_batch_window_seconds() -> float:
    """The longest batch window the landings use unless told otherwise: the clickstream asset's default
    and `land_topic`'s own (the CDC change logs and the stream outputs)."""
    import inspect

    from lakehouse.ingest.assets import RawEventsConfig
    from lakehouse.ingest.landing import land_topic

    own = inspect.signature(land_topic).parameters["batch_seconds"].default
    return float(max(RawEventsConfig.model_fields["batch_seconds"].default, own))


def _test_floor_override() -> int | None:
    raw = os.environ.get(TEST_FLOOR_ENV)
    if raw is None:
        return None
    if os.environ.get(TEST_FLAG_ENV) != TEST_FLAG_PHRASE or not os.environ.get("PYTEST_CURRENT_TEST"):
        raise RetentionTooShort(
            f"{TEST_FLOOR_ENV} is set ({raw!r}), but it is honoured only inside a pytest test together "
            f"with {TEST_FLAG_ENV}={TEST_FLAG_PHRASE}: it lets vacuum delete files a landing has "
            f"uploaded and not committed yet. Unset {TEST_FLOOR_ENV} to run maintenance."
        )
    try:
        hours = int(raw)
    except ValueError as exc:
        raise RetentionTooShort(f"{TEST_FLOOR_ENV} must be a whole number of hours, got {raw!r}") from exc
    if hours < 0:
        raise RetentionTooShort(f"{TEST_FLOOR_ENV} must not be negative, got {hours}")
    return hours


def retention_floor_hours(longest_batch_seconds: float | None = None) -> int:
    """The shortest vacuum retention allowed: max(MIN_RETENTION_HOURS, BATCH_WINDOW_MULTIPLE x the longest
    batch window), in whole hours (see the module docstring for why it keeps uncommitted uploads)."""
    override = _test_floor_override()
    if override is not None:
        return override
    window = landing_batch_window_seconds() if longest_batch_seconds is None else longest_batch_seconds
    if window < 0:
        raise ValueError(f"a batch window cannot be negative, got {window}")
    return max(MIN_RETENTION_HOURS, math.ceil(BATCH_WINDOW_MULTIPLE * window / 3600))


def check_retention(retention_hours: int, longest_batch_seconds: float | None = None) -> int:
    """The floor, if `retention_hours` is at or above it; RetentionTooShort otherwise."""
    floor = retention_floor_hours(longest_batch_seconds)
    if isinstance(retention_hours, bool) or not isinstance(retention_hours, int):
        raise RetentionTooShort(
            f"the vacuum retention must be a whole number of hours, got {retention_hours!r}"
        )
    if retention_hours < floor:
        raise RetentionTooShort(
            f"refusing to vacuum with a retention of {retention_hours} h: the floor is {floor} h (at least "
            f"{MIN_RETENTION_HOURS} h and {BATCH_WINDOW_MULTIPLE}x the longest landing batch window), below "
            "which vacuum could delete Parquet files a landing has uploaded and not committed yet; "
            "use a retention of at least the floor (LAKEHOUSE_VACUUM_RETENTION_HOURS, default 168)"
        )
    return floor


_UNIT_HOURS = {"second": 1 / 3600, "minute": 1 / 60, "hour": 1, "day": 24, "week": 168}


def table_retention_hours(table: DeltaTable) -> float | None:
    """The table's `delta.deletedFileRetentionDuration` in hours, if the table sets it (None otherwise);
    raises ValueError if it cannot be read."""
    value = table.metadata().configuration.get("delta.deletedFileRetentionDuration")
    if value is None:
        return None
    match = re.fullmatch(r"\s*(?:interval\s+)?(\d+)\s*([a-z]+?)s?\s*", value.lower())
    if not match or match.group(2) not in _UNIT_HOURS:
        raise ValueError(f"cannot read delta.deletedFileRetentionDuration {value!r}")
    return int(match.group(1)) * _UNIT_HOURS[match.group(2)]


# --- objects on the store -------------------------------------------------------------------------------


def _key(path: str) -> str:
    return unquote(path).lstrip("/")


def data_objects(uri: str, storage_options: dict[str, str]) -> dict[str, int]:
    """Every object under the table outside its log, as path relative to the table -> size in bytes."""
    fs, root = table_filesystem(uri, storage_options)
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    objects = {}
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        rel = info.path[len(root) :].lstrip("/")
        if rel == LOG_DIR or rel.startswith(f"{LOG_DIR}/"):
            continue
        objects[_key(rel)] = info.size or 0
    return objects


def log_objects(uri: str, storage_options: dict[str, str]) -> set[str]:
    fs, root = table_filesystem(uri, storage_options)
    infos = fs.get_file_info(pafs.FileSelector(f"{root}/{LOG_DIR}", allow_not_found=True))
    return {info.base_name for info in infos if info.type == pafs.FileType.File}


def referenced_files(table: DeltaTable) -> set[str]:
    """Paths (relative to the table) of the data files the table's current version references."""
    paths = table.get_add_actions(flatten=True).column("path").to_pylist()
    return {_key(p) for p in paths}


# --- compaction -------------------------------------------------------------------------------------------


@dataclass
class CompactionResult:
    files_added: int = 0
    files_removed: int = 0
    bytes_added: int = 0
    bytes_removed: int = 0
    attempts: int = 0
    skipped: str | None = None  # why compaction gave up (a commit conflict that kept coming back)


def _total_size(stats) -> int:
    if isinstance(stats, str):
        stats = json.loads(stats) if stats else {}
    return int((stats or {}).get("totalSize", 0) or 0)


def commit_interval(retention_hours: int) -> timedelta:
    """How often compaction commits what it has rewritten: a quarter of the retention, at most 15 minutes
    (a retention of 0, only in tests, commits after each partition)."""
    return min(MAX_COMMIT_INTERVAL, timedelta(hours=retention_hours) / 4)


def compact(
    table: DeltaTable,
    target_size: int = DEFAULT_TARGET_FILE_MB * 2**20,
    attempts: int = DEFAULT_COMPACTION_ATTEMPTS,
    retention_hours: int = DELTA_DEFAULT_RETENTION_HOURS,
    log: Log = _quiet,
    warn: Log = _quiet,
    backoff_seconds: float = 0.5,
) -> CompactionResult:
    """Rewrite small files into files of about `target_size`; nothing is lost or changed.

    OPTIMIZE commits with a conflict check: appends committed meanwhile are kept (their files are simply
    not part of this compaction), but when another commit removed files it rewrote (a MERGE, an
    overwrite) that commit fails and nothing of it becomes visible (its uploads are left for vacuum;
    earlier commits of a long compaction, see `commit_interval`, stand). Then it is retried on the new
    version, at most `attempts` times in all; if it still conflicts the table is not compacted this time,
    with a warning."""
    if attempts < 1:
        raise ValueError(f"compaction needs at least one attempt, got {attempts}")
    result = CompactionResult()
    for attempt in range(1, attempts + 1):
        result.attempts = attempt
        try:
            metrics = table.optimize.compact(
                target_size=target_size, min_commit_interval=commit_interval(retention_hours)
            )
        except CommitFailedError as exc:
            reason = " ".join(str(exc).split())[:300]
            if attempt == attempts:
                result.skipped = f"a concurrent commit conflicted {attempts} times; last: {reason}"
                warn(f"compaction skipped: {result.skipped}")
                return result
            log(f"compaction conflicted with a concurrent commit (attempt {attempt}/{attempts}): {reason}")
            time.sleep(backoff_seconds * attempt)
            table.update_incremental()
            continue
        result.files_added += int(metrics.get("numFilesAdded", 0))
        result.files_removed += int(metrics.get("numFilesRemoved", 0))
        result.bytes_added += _total_size(metrics.get("filesAdded"))
        result.bytes_removed += _total_size(metrics.get("filesRemoved"))
        return result
    return result


# --- checkpoint and log cleanup ----------------------------------------------------------------------------


@dataclass
class CheckpointResult:
    version: int
    log_files_removed: int


def checkpoint(table: DeltaTable, uri: str, storage_options: dict[str, str]) -> CheckpointResult:
    """Write a checkpoint at the table's latest version, then delete the log files older than the table's
    log retention (`delta.logRetentionDuration`, 30 days unless set) that the checkpoint made unneeded."""
    table.update_incremental()
    table.create_checkpoint()
    before = log_objects(uri, storage_options)
    table.cleanup_metadata()
    after = log_objects(uri, storage_options)
    return CheckpointResult(version=table.version(), log_files_removed=len(before - after))


# --- vacuum -------------------------------------------------------------------------------------------------


@dataclass
class VacuumResult:
    retention_hours: int
    files_removed: int = 0
    bytes_removed: int = 0
    removed: list[str] = field(default_factory=list)


def vacuum(
    table: DeltaTable,
    uri: str,
    storage_options: dict[str, str],
    retention_hours: int,
    longest_batch_seconds: float | None = None,
    log: Log = _quiet,
) -> VacuumResult:
    """Delete every object of the table that its log does not reference and that is older than the
    retention (removed files: by the time of their removal; never-committed uploads: by their
    last-modified time), then check on the store that each of them is really gone and that every file the
    table references is still there. Refuses a retention below the floor (see the module docstring)."""
    check_retention(retention_hours, longest_batch_seconds)
    retention = retention_hours  # only ever raised below, never lowered
    try:
        own = table_retention_hours(table)
    except ValueError as exc:
        own, enforce = None, True  # let delta-rs apply the property it understands
        log(f"{exc}: leaving delta-rs's retention check on")
    else:
        enforce = False  # our floor is checked above; delta-rs's check only ever raises the retention
    if own is not None and own > retention:
        retention = math.ceil(own)
        log(f"the table keeps removed files {own:g} h (delta.deletedFileRetentionDuration): vacuuming "
            f"with {retention} h instead of {retention_hours} h")  # fmt: skip
    table.update_incremental()
    before = data_objects(uri, storage_options)
    removed = [_key(p) for p in table.vacuum(retention_hours=retention, dry_run=False,
                                              enforce_retention_duration=enforce, full=True)]  # fmt: skip
    result = VacuumResult(retention_hours=retention, files_removed=len(removed), removed=sorted(removed),
                          bytes_removed=sum(before.get(p, 0) for p in removed))  # fmt: skip
    table.update_incremental()
    referenced = referenced_files(table)  # before listing: whatever it names was uploaded before the list
    after = data_objects(uri, storage_options)
    left = sorted(set(removed) & set(after))
    if left:
        raise VacuumIncomplete(
            f"vacuum of {uri} reported {len(removed)} files deleted, but {len(left)} are still on the "
            f"object store: {left[:5]}"
        )
    missing = sorted(referenced - set(after))
    if missing:
        raise VacuumIncomplete(
            f"{len(missing)} files that {uri} references at version {table.version()} are not on the "
            f"object store: {missing[:5]}"
        )
    return result


# --- one table ----------------------------------------------------------------------------------------------


@dataclass
class TableReport:
    uri: str
    status: str = "ok"  # ok | missing | compaction_skipped | failed
    version: int | None = None
    files_before: int = 0
    files_after: int = 0
    compaction: CompactionResult | None = None
    checkpoint: CheckpointResult | None = None
    vacuum: VacuumResult | None = None
    error: str | None = None

    def summary(self) -> dict:
        """Flat numbers for logs and Dagster metadata."""
        out: dict = {"status": self.status}
        if self.status == "missing":
            return out
        out.update(version=self.version, files_before=self.files_before, files_after=self.files_after)
        if self.compaction:
            out.update(compacted_files_removed=self.compaction.files_removed,
                       compacted_files_added=self.compaction.files_added,
                       compaction_attempts=self.compaction.attempts)  # fmt: skip
            if self.compaction.skipped:
                out["compaction_skipped"] = self.compaction.skipped
        if self.checkpoint:
            out.update(checkpoint_version=self.checkpoint.version,
                       log_files_removed=self.checkpoint.log_files_removed)  # fmt: skip
        if self.vacuum:
            v = self.vacuum
            out.update(vacuum_retention_hours=v.retention_hours, vacuumed_files=v.files_removed,
                       vacuumed_bytes=v.bytes_removed)  # fmt: skip
        if self.error:
            out["error"] = self.error
        return out


def maintain_table(
    uri: str,
    storage_options: dict[str, str],
    retention_hours: int,
    longest_batch_seconds: float | None = None,
    target_size: int = DEFAULT_TARGET_FILE_MB * 2**20,
    compaction_attempts: int = DEFAULT_COMPACTION_ATTEMPTS,
    log: Log = _quiet,
    warn: Log = _quiet,
) -> TableReport:
    """Compact, checkpoint (with expired-log cleanup) and vacuum one table. The retention is checked
    first, before anything is touched. A compaction that keeps conflicting with concurrent commits is
    skipped with a warning; the checkpoint and the vacuum still run (they rewrite no data). Any other
    error is reported in the result (`failed`), not raised, so that one table cannot stop the others."""
    check_retention(retention_hours, longest_batch_seconds)
    report = TableReport(uri=uri)
    try:
        table = open_table(uri, storage_options)
        if table is None:
            report.status = "missing"
            return report
        report.files_before = len(referenced_files(table))
        report.compaction = compact(
            table, target_size, compaction_attempts, retention_hours, log=log, warn=warn
        )
        if report.compaction.skipped:
            report.status = "compaction_skipped"
        report.checkpoint = checkpoint(table, uri, storage_options)
        report.vacuum = vacuum(table, uri, storage_options, retention_hours, longest_batch_seconds, log=log)
        table.update_incremental()
        report.version = table.version()
        report.files_after = len(referenced_files(table))
    except RetentionTooShort:
        raise
    except Exception as exc:  # noqa: BLE001 - reported per table; the job fails once all tables ran
        report.status = "failed"
        report.error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}"
    return report
