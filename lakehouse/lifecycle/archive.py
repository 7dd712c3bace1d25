"""Archival of expired daily partitions to the cold tier, and their restore.

Archive one partition (`archive_day`), five steps, each safe to crash after:

1. **copy** every live file of the partition to the cold bucket, same relative path, written with the
   cold storage class and its SHA-256 (the store refuses bytes that do not match);
2. **verify** each cold copy's stored SHA-256 against the hot bytes';
3. **manifest**: write `_manifests/event_date=D.json` next to the copies (files, sizes, SHA-256, row
   counts from the Parquet footers, the Delta version read, each file's add action with its original
   statistics), the new entries marked *pending*, read it back and compare;
4. **remove** exactly those files from the hot table in one Delta commit tagged with the manifest: a
   partition-only DELETE on the table as read in step 1, so a write to the partition or a compaction that
   happened meanwhile makes the commit fail (delta-rs's conflict check) instead of removing a file the
   manifest does not hold;
5. **seal**: the pending entries become *archived*, with the version of the remove commit.

A run killed after any step resumes by doing the steps again: copies already in the cold tier with the
right checksum are kept, and pending entries of the manifest are settled from the table's log: removed
by their archive commit -> archived; still live -> archived again by this run; gone another way (a
compaction or overwrite rewrote them: their rows live on in other files) -> dropped with their cold
copies. So nothing is lost and nothing is archived twice. Late data written to an archived partition is
archived by the next run into the same manifest, next to the files archived before. Run one archive per
table at a time (the assets share a Dagster pool per table).

Restore (`restore_days`): for each archived file of the days asked, thaw it if the store needs that
(AWS), read it back, check its SHA-256 against the manifest, put it back at its original path, then one
commit adds all of them with their original statistics. The commit carries a `txn` app id of the table's
restores, so two restores of one table cannot both commit. Again nothing is state: a file already live is
not restored twice.

A restored day is held hot for LAKEHOUSE_RESTORE_HOLD_DAYS: the nightly schedule skips it meanwhile.

Fault points (lakehouse/faults.py): `lifecycle.after_copy`, `lifecycle.after_verify`,
`lifecycle.after_manifest`, `lifecycle.after_remove`, `lifecycle-restore.after_put`,
`lifecycle-restore.after_commit`.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pyarrow.parquet as pq
from botocore.exceptions import ClientError
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.transaction import AddAction, CommitProperties, Transaction

from lakehouse.faults import fault_point
from lakehouse.lifecycle.cold_tier import (
    LifecycleError,
    delete_keys,
    error_code,
    list_keys,
    needs_thaw,
    put_checked,
    require_bucket,
    sha256_b64,
    stored_checksum,
    thaw,
)
from lakehouse.lifecycle.delta_log import LogState, live_add_actions, log_state, object_key, removals_by
from lakehouse.resources.lake import s3_client
from lakehouse.settings import LakehouseSettings

PARTITION_COLUMN = "event_date"
RESTORE_APP = "lakehouse-lifecycle-restore"


@dataclass(frozen=True)
class ArchivedTable:
    """Where one table's hot files, cold copies and manifests live."""

    s: LakehouseSettings
    layer: str
    table: str

    @property
    def name(self) -> str:
        return f"{self.layer}/{self.table}"

    @property
    def uri(self) -> str:
        return self.s.table_uri(self.layer, self.table)

    @property
    def prefix(self) -> str:
        """The table's key prefix, the same in the lake bucket and the cold bucket."""
        return f"{self.s.schema(self.layer)}/{self.table}"

    def manifest_key(self, day: date) -> str:
        return f"{self.prefix}/_manifests/{PARTITION_COLUMN}={day.isoformat()}.json"

    def hold_key(self, day: date) -> str:
        return f"{self.prefix}/_holds/{PARTITION_COLUMN}={day.isoformat()}.json"

    def retention_days(self) -> int:
        days = self.s.archive_retention.get((self.layer, self.table))
        if days is None:
            configured = ", ".join(f"{layer}/{t}" for layer, t in self.s.archive_retention) or "none"
            raise LifecycleError(
                f"{self.name} has no archive retention (configured: {configured})",
                f"add {self.name}=DAYS to LAKEHOUSE_ARCHIVE_AFTER_DAYS",
            )
        return days

    def open(self) -> DeltaTable:
        try:
            dt = DeltaTable(self.uri, storage_options=self.s.delta_storage_options())
        except TableNotFoundError:
            raise LifecycleError(f"the table {self.name} ({self.uri}) does not exist",
                                 "materialize its asset first") from None  # fmt: skip
        if PARTITION_COLUMN not in dt.metadata().partition_columns:
            raise LifecycleError(f"{self.name} is not partitioned by {PARTITION_COLUMN}; only daily partitions "
                                 "are archived", f"remove {self.name} from LAKEHOUSE_ARCHIVE_AFTER_DAYS")  # fmt: skip
        return dt


def expired(day: date, days: int, today: date | None = None) -> bool:
    """A partition is expired once it is older than the retention: day < today - days."""
    return day < (today or datetime.now(UTC).date()) - timedelta(days=days)


def key_day(key: str) -> date:
    """The day of a manifest or hold key (`.../event_date=2026-09-01.json`)."""
    return date.fromisoformat(key.rsplit("=", 1)[1].removesuffix(".json"))


def read_manifest(client, t: ArchivedTable, day: date) -> dict | None:
    try:
        body = client.get_object(Bucket=t.s.cold_bucket, Key=t.manifest_key(day))["Body"].read()
    except ClientError as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return json.loads(body)


def _day_files(live: dict[str, dict], day: date) -> dict[str, dict]:
    return {
        p: a
        for p, a in live.items()
        if (a.get("partitionValues") or {}).get(PARTITION_COLUMN) == day.isoformat()
    }


def _rows(data: bytes) -> int:
    return pq.ParquetFile(io.BytesIO(data)).metadata.num_rows


def archive_day(s: LakehouseSettings, layer: str, table: str, day: date, today: date | None = None,
                log: Callable[[str], None] = print) -> dict:  # fmt: skip
    """Archive one expired partition (see the module doc). Returns what was done, for the asset's metadata."""
    t = ArchivedTable(s, layer, table)
    days = t.retention_days()
    today = today or datetime.now(UTC).date()
    if not expired(day, days, today):
        raise LifecycleError(
            f"{t.name} partition {day} is not older than its retention of {days} days (today is {today}): "
            "archiving it would take data the pipelines still write and read; nothing was changed",
            f"archive only partitions before {today - timedelta(days=days)}, or lower {t.name}'s retention "
            "in LAKEHOUSE_ARCHIVE_AFTER_DAYS",
        )
    client = s3_client(s)
    require_bucket(client, s.cold_bucket, "cold tier", "LAKEHOUSE_COLD_BUCKET")
    dt = t.open()
    version = dt.version()
    state = log_state(t.uri, s.delta_storage_options(), version)
    refuse_deletion_vectors(t.name, state)
    hot = _day_files(state.adds, day)
    earlier = _settled(client, t, day, read_manifest(client, t, day), hot, version)
    report = {"table": t.name, "day": day.isoformat(), "files": 0, "bytes": 0, "rows": 0,
              "already_archived_files": len(earlier), "delta_version": version, "seconds": 0.0}  # fmt: skip
    if not hot:
        _write_manifest(client, t, day, earlier, version)  # records what a crash left to settle, if anything
        log(f"  {t.name} {day}: nothing live to archive ({len(earlier)} files archived before)")
        return report
    started = time.monotonic()
    entries = list(_POOL.map(lambda item: _copy(client, s, t, *item), sorted(hot.items())))  # 1. copy
    log(f"  {t.name} {day}: copied {len(entries)} files to s3://{s.cold_bucket} ({s.cold_storage_class})")
    fault_point("lifecycle.after_copy")
    for e, stored in zip(entries, _POOL.map(lambda e: stored_checksum(client, s.cold_bucket, e["key"]), entries),
                         strict=True):  # 2. verify  # fmt: skip
        if stored != e["sha256"]:
            raise LifecycleError(
                f"the cold copy s3://{s.cold_bucket}/{e['key']} does not match the hot file (SHA-256 {stored} "
                f"!= {e['sha256']}); the hot table is untouched",
                "run the archive again: it copies the file again",
            )
    fault_point("lifecycle.after_verify")
    _write_manifest(client, t, day, earlier + entries, version)  # 3. manifest: the new entries pending
    fault_point("lifecycle.after_manifest")
    try:  # 4. remove, in one commit, exactly the files of the table as read
        metrics = dt.delete(f"{PARTITION_COLUMN} = '{day.isoformat()}'", commit_properties=CommitProperties(
            custom_metadata={ARCHIVE_COMMIT: t.manifest_key(day)}))  # fmt: skip
    except CommitFailedError as exc:
        raise LifecycleError(
            f"{t.name} changed while partition {day} was being archived ({str(exc).splitlines()[0]}); the hot "
            "table is untouched and the cold copies are kept",
            "run the archive again: it archives the partition as it is now",
        ) from None
    if metrics.get("num_added_files") or metrics.get("num_removed_files") != len(entries):
        raise LifecycleError(f"the archive commit of {t.name} {day} removed {metrics.get('num_removed_files')} "
                             f"files and added {metrics.get('num_added_files')}, expected {len(entries)} and 0",
                             "report it: restore the partition with `lakehouse lifecycle restore`")  # fmt: skip
    fault_point("lifecycle.after_remove")
    removed_in = t.open().version()  # 5. seal: the entries are archived as of the remove commit
    removed = removals_by(
        t.uri, s.delta_storage_options(), version, removed_in, ARCHIVE_COMMIT, t.manifest_key(day)
    )
    sealed = [{**e, "archived_version": removed[e["path"]]} for e in entries if e["path"] in removed]
    if len(sealed) != len(entries):
        raise LifecycleError(f"the archive commit of {t.name} {day} is not in the log as expected",
                             "run the archive again: it settles what the log shows")  # fmt: skip
    _write_manifest(client, t, day, earlier + sealed, version)
    report.update(files=len(entries), bytes=sum(e["size"] for e in entries), rows=sum(e["rows"] for e in entries),
                  seconds=round(time.monotonic() - started, 3), manifest=f"s3://{s.cold_bucket}/{t.manifest_key(day)}")  # fmt: skip
    log(f"  {t.name} {day}: archived {report['files']} files, {report['rows']} rows, {report['bytes']} bytes")
    return report


_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="lifecycle")  # object-store I/O overlaps
ARCHIVE_COMMIT = "lakehouse.archive_manifest"  # in the commit info of every archive's remove commit


def refuse_deletion_vectors(name: str, state: LogState) -> None:
    """Deletion vectors (Spark) live beside the data files and cannot be re-added by delta-rs: refuse."""
    marked = [p for p, a in state.adds.items() if a.get("deletionVector")]
    if marked:
        raise LifecycleError(f"{name} has files with deletion vectors (e.g. {marked[0]}); the lifecycle cannot "
                             "move or restore them faithfully; nothing was changed",
                             f"purge them first (Spark: REORG TABLE ... APPLY (PURGE)) or leave {name} out")  # fmt: skip


def _copy(client, s: LakehouseSettings, t: ArchivedTable, path: str, add: dict) -> dict:
    key = object_key(t.prefix, path)
    data = client.get_object(Bucket=s.bucket, Key=key)["Body"].read()
    digest = sha256_b64(data)
    if stored_checksum(client, s.cold_bucket, key) != digest:
        put_checked(client, s.cold_bucket, key, data, s.cold_storage_class)
    return {"path": path, "key": key, "size": len(data), "sha256": digest, "rows": _rows(data),
            "archived_version": None, "read_version": None,
            "add": {k: add.get(k) for k in ("path", "size", "partitionValues", "modificationTime", "stats")}}  # fmt: skip


def _settled(
    client, t: ArchivedTable, day: date, manifest: dict | None, hot: dict, version: int
) -> list[dict]:
    """The manifest's archived entries, once pending ones are settled. Pending: written by an archive that
    stopped before sealing them, or restored since (`restored`). Settling: removed by an archive commit ->
    archived; still live -> taken again by this run; gone any other way (compaction, an overwrite: their
    rows live on in other files) -> dropped, with their cold copies."""
    entries = (manifest or {}).get("files", [])
    ahead = [
        f["path"]
        for f in entries
        if f.get("archived_version") is None and (f.get("read_version") or 0) > version
    ]
    if ahead:
        raise LifecycleError(f"another archive of {t.name} {day} read a newer version of the table than this one "
                             f"(e.g. for {ahead[0]}): two archives of one day must not run together; nothing was "
                             "changed", "run it again once the other one has ended")  # fmt: skip
    pending = [f for f in entries if f.get("archived_version") is None and f["path"] not in hot]
    settled = [f for f in entries if f.get("archived_version") is not None and f["path"] not in hot]
    if pending:
        since = min(f.get("read_version") if f.get("read_version") is not None else manifest["delta_version"]
                    for f in pending)  # fmt: skip
        try:
            removed = removals_by(
                t.uri, t.s.delta_storage_options(), since, version, ARCHIVE_COMMIT, t.manifest_key(day)
            )
        except ValueError as exc:
            raise LifecycleError(f"cannot settle the interrupted archive of {t.name} {day}: {exc}",
                                 "compare the manifest with the table's history by hand") from None  # fmt: skip
        settled += [{**f, "archived_version": removed[f["path"]]} for f in pending if f["path"] in removed]
        dropped = [f["key"] for f in pending if f["path"] not in removed]
        if dropped:
            delete_keys(client, t.s.cold_bucket, dropped)
    return settled


def _write_manifest(client, t: ArchivedTable, day: date, files: list[dict], version: int) -> None:
    """Write the day's manifest (archived entries and this run's pending ones), merged with archived
    entries another run may have written since, and check it reads back as written."""
    current = read_manifest(client, t, day) or {"files": []}
    mine = {f["path"] for f in files}
    files = [
        *files,
        *(f for f in current["files"] if f.get("archived_version") is not None and f["path"] not in mine),
    ]
    files = [
        {**f, "read_version": f.get("read_version") if f.get("read_version") is not None else version}
        for f in files
    ]
    body = {"table": t.name, "uri": t.uri, "partition": {PARTITION_COLUMN: day.isoformat()},
            "cold_bucket": t.s.cold_bucket, "storage_class": t.s.cold_storage_class, "delta_version": version,
            "written_at": datetime.now(UTC).isoformat(), "rows": sum(f["rows"] for f in files),
            "bytes": sum(f["size"] for f in files), "files": sorted(files, key=lambda f: f["path"])}  # fmt: skip
    put_checked(
        client, t.s.cold_bucket, t.manifest_key(day), json.dumps(body, indent=1, sort_keys=True).encode()
    )
    if read_manifest(client, t, day) != body:
        raise LifecycleError(f"the manifest s3://{t.s.cold_bucket}/{t.manifest_key(day)} did not read back as "
                             "written; the hot table is untouched", "run the archive again")  # fmt: skip


def expired_days(s: LakehouseSettings, layer: str, table: str, today: date | None = None) -> list[date]:
    """Days with live files that are older than the table's retention (what `archive --expired` takes)."""
    t = ArchivedTable(s, layer, table)
    days = t.retention_days()
    dt = t.open()
    live = live_add_actions(t.uri, s.delta_storage_options(), dt.version())
    found = {
        date.fromisoformat(v)
        for a in live.values()
        if (v := (a.get("partitionValues") or {}).get(PARTITION_COLUMN))
    }
    client = s3_client(s)
    held = set()
    for obj in list_keys(client, s.cold_bucket, f"{t.prefix}/_holds/"):
        hold = json.loads(client.get_object(Bucket=s.cold_bucket, Key=obj["Key"])["Body"].read())
        if date.fromisoformat(hold["until"]) >= (today or datetime.now(UTC).date()):
            held.add(key_day(obj["Key"]))
    unsettled = set()  # an archive that stopped after its remove commit: the next run seals it
    recent = datetime.now(UTC) - timedelta(days=30)
    for obj in list_keys(client, s.cold_bucket, f"{t.prefix}/_manifests/"):
        if obj["LastModified"] >= recent:
            day = key_day(obj["Key"])
            entries = read_manifest(client, t, day)["files"]
            if any(
                f.get("archived_version") is None and not f.get("restored") and f["path"] not in live
                for f in entries
            ):
                unsettled.add(day)
    return sorted(unsettled | {d for d in found - held if expired(d, days, today)})


def restore_days(s: LakehouseSettings, layer: str, table: str, start: date, end: date,
                 log: Callable[[str], None] = print) -> dict:  # fmt: skip
    """Bring the archived files of days `start`..`end` back into the hot table (see the module doc)."""
    if end < start:
        raise LifecycleError(f"the range {start}..{end} is empty", "give --from on or before --to")
    t = ArchivedTable(s, layer, table)
    client = s3_client(s)
    require_bucket(client, s.cold_bucket, "cold tier", "LAKEHOUSE_COLD_BUCKET")
    dt = t.open()
    version = dt.version()
    live = live_add_actions(t.uri, s.delta_storage_options(), version)
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    manifests = {d: m for d in days if (m := read_manifest(client, t, d)) is not None}
    if not manifests:
        raise LifecycleError(f"no partition of {t.name} from {start} to {end} was ever archived; nothing was changed",
                             f"list what is archived with `lakehouse lifecycle archived {t.name}`")  # fmt: skip
    missing: list[dict] = []
    for day, manifest in manifests.items():
        interrupted = [f["path"] for f in manifest["files"]
                       if f.get("archived_version") is None and not f.get("restored") and f["path"] not in live]  # fmt: skip
        if interrupted:
            raise LifecycleError(f"the archive of {t.name} partition {day} was interrupted ({len(interrupted)} files "
                                 "not settled); nothing was changed",
                                 f"run `lakehouse lifecycle archive {t.name} --date {day}` first: it settles them")  # fmt: skip
        cold = [
            f for f in manifest["files"] if f.get("archived_version") is not None and f["path"] not in live
        ]
        listed = {f["path"] for f in manifest["files"]}
        foreign = sorted(p for p in _day_files(live, day) if p not in listed)
        if cold and foreign:
            raise LifecycleError(
                f"{t.name} partition {day} was written after it was archived ({len(foreign)} files not in its "
                f"manifest, e.g. {foreign[0]}); restoring would mix the two; nothing was changed",
                f"archive the partition again first (`lakehouse lifecycle archive {t.name} --date {day}`): its "
                "manifest then holds both, and the restore brings back all of it",
            )
        missing += cold
    report = {"table": t.name, "from": start.isoformat(), "to": end.isoformat(), "days": len(manifests),
              "files": 0, "bytes": 0, "rows": 0, "seconds": 0.0}  # fmt: skip
    if not missing:
        _mark_restored(client, t, manifests, live, version)
        log(f"  {t.name} {start}..{end}: every archived file is live already")
        return report
    started = time.monotonic()
    if needs_thaw(s):
        thaw(
            client,
            s.cold_bucket,
            [f["key"] for f in missing],
            s.cold_thaw_days,
            s.cold_thaw_timeout_seconds,
            log,
        )

    def put_back(f: dict) -> None:
        data = client.get_object(Bucket=s.cold_bucket, Key=f["key"])["Body"].read()
        if sha256_b64(data) != f["sha256"] or len(data) != f["size"]:
            raise LifecycleError(
                f"the archived file s3://{s.cold_bucket}/{f['key']} does not match its manifest (SHA-256 "
                f"{sha256_b64(data)} != {f['sha256']}, {len(data)} != {f['size']} bytes); nothing was restored",
                "the cold copy is damaged: restore it from the store's versioning or replication first",
            )
        client.put_object(Bucket=s.bucket, Key=f["key"], Body=data)  # unreferenced until the commit below

    list(_POOL.map(put_back, missing))  # the first damaged file raises here, before any commit
    fault_point("lifecycle-restore.after_put")
    actions = [AddAction(path=f["add"]["path"], size=f["size"], partition_values=f["add"]["partitionValues"],
                         modification_time=f["add"]["modificationTime"], data_change=True,
                         stats=f["add"].get("stats"))
               for f in missing]  # fmt: skip
    try:
        dt.create_write_transaction(
            actions, mode="append", schema=dt.schema(), partition_by=dt.metadata().partition_columns,
            commit_properties=CommitProperties(
                custom_metadata={"lakehouse.lifecycle": "restore", "days": f"{start}..{end}"},
                app_transactions=[Transaction(app_id=f"{RESTORE_APP}:{t.name}", version=version)]))  # fmt: skip
    except CommitFailedError as exc:
        raise LifecycleError(f"another restore of {t.name} committed first ({str(exc).splitlines()[0]}); "
                             "nothing was added twice", "run the restore again: it adds what is still missing") from None  # fmt: skip
    fault_point("lifecycle-restore.after_commit")
    now = t.open().version()
    _mark_restored(client, t, manifests, log_state(t.uri, s.delta_storage_options(), now).adds, now)
    until = (datetime.now(UTC) + timedelta(days=s.restore_hold_days)).date().isoformat()
    for day in manifests:  # the nightly schedule leaves restored days hot this long
        put_checked(client, s.cold_bucket, t.hold_key(day), json.dumps({"until": until}).encode())
    report.update(files=len(missing), bytes=sum(f["size"] for f in missing), rows=sum(f["rows"] for f in missing),
                  seconds=round(time.monotonic() - started, 3))  # fmt: skip
    log(f"  {t.name} {start}..{end}: restored {report['files']} files, {report['rows']} rows")
    return report


def _mark_restored(client, t: ArchivedTable, manifests: dict[date, dict], live: dict, version: int) -> None:
    """Archived entries that are live again become pending (`restored`): if table maintenance compacts them
    later, the next archive drops them instead of keeping them as archived next to their compacted copy."""
    for day, manifest in manifests.items():
        back = {
            f["path"]
            for f in manifest["files"]
            if f.get("archived_version") is not None and f["path"] in live
        }
        if back:
            files = [{**f, "archived_version": None, "read_version": version, "restored": True} if f["path"] in back
                     else f for f in manifest["files"]]  # fmt: skip
            _write_manifest(client, t, day, files, version)


def archived(s: LakehouseSettings, layer: str, table: str) -> list[dict]:
    """One line per manifest of the table: day, files archived (not live), rows and bytes."""
    t = ArchivedTable(s, layer, table)
    client = s3_client(s)
    require_bucket(client, s.cold_bucket, "cold tier", "LAKEHOUSE_COLD_BUCKET")
    dt = t.open()
    live = live_add_actions(t.uri, s.delta_storage_options(), dt.version())
    lines = []
    for obj in list_keys(client, s.cold_bucket, f"{t.prefix}/_manifests/"):
        day = key_day(obj["Key"])
        files = [f for f in read_manifest(client, t, day)["files"]
                 if f["path"] not in live and f.get("archived_version") is not None]  # fmt: skip
        lines.append({"day": day.isoformat(), "files": len(files), "rows": sum(f["rows"] for f in files),
                      "bytes": sum(f["size"] for f in files)})  # fmt: skip
    return lines


def archived_days(s: LakehouseSettings, layer: str, table: str, start: date, end: date) -> list[date]:
    """Days in start..end (inclusive) whose archived files are not live: data a reader of those days
    would silently miss (silver recomputed from an archived bronze day would be emptied)."""
    t = ArchivedTable(s, layer, table)
    client = s3_client(s)
    try:
        client.head_bucket(Bucket=s.cold_bucket)
    except ClientError:
        return []  # no cold tier: nothing was ever archived
    days = []
    for obj in list_keys(client, s.cold_bucket, f"{t.prefix}/_manifests/"):
        day = key_day(obj["Key"])
        if start <= day <= end:
            days.append(day)
    if not days:
        return []
    live = live_add_actions(t.uri, s.delta_storage_options(), t.open().version())
    return [d for d in sorted(days) if any(f["path"] not in live and not f.get("restored")
                                           for f in read_manifest(client, t, d)["files"])]  # fmt: skip


def refuse_archived_source(s: LakehouseSettings, layer: str, table: str, start: date, end: date) -> None:
    """Stop a recomputation whose source days are in the cold tier, naming the restore that fixes it."""
    days = archived_days(s, layer, table, start, end)
    if days:
        raise LifecycleError(
            f"{layer}/{table} days {days[0]}..{days[-1]} ({len(days)} days) are archived in the cold tier: "
            "recomputing from them now would replace the results with nothing; nothing was written",
            f"restore them first: lakehouse lifecycle restore {layer}/{table} --from {days[0]} --to {days[-1]}",
        )
