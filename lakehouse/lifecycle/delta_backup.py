"""Backups of Delta tables at a version, incremental forever, and their restore into a scratch location.

Layout in the backup bucket (LAKEHOUSE_BACKUP_BUCKET), per table:

    delta/<schema>/<table>/data/<file path>                   data files, shared by every backup
    delta/<schema>/<table>/backups/<stamp>-v<N>/_delta_log/   the log files that hold version N
    delta/<schema>/<table>/backups/<stamp>-v<N>/manifest.json files, sizes, SHA-256, rows, partitions

A Delta data file never changes once written, so a file already in `data/` (same path, the store's
SHA-256 present) is not copied again: each backup copies only the files written since the last one.
The backup is consistent at version N whatever writers do meanwhile: it copies the files live at N and
the log up to N, nothing later. The manifest is written last; a backup without one never happened.

Restore copies a backup into a scratch table (`s3://<bucket>/_restore/<schema>/<table>` unless told),
checks every file's SHA-256 against the manifest on the way, and compares what the restored table holds,
per partition, with the manifest (`compare_restored`).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import unquote

import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from lakehouse.lifecycle.archive import refuse_deletion_vectors
from lakehouse.lifecycle.cold_tier import (
    LifecycleError,
    delete_keys,
    head,
    list_keys,
    put_checked,
    require_bucket,
    sha256_b64,
)
from lakehouse.lifecycle.delta_log import log_state, object_key
from lakehouse.lifecycle.retention import STAMP, kept
from lakehouse.resources.lake import s3_client
from lakehouse.settings import LakehouseSettings

GC_GRACE_SECONDS = 24 * 3600  # an unreferenced data file younger than this may belong to a backup in flight


def table_prefix(s: LakehouseSettings, layer: str, table: str) -> str:
    return f"delta/{s.schema(layer)}/{table}"


def _partition(add: dict) -> str:
    values = add.get("partitionValues") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(values.items())) or "(unpartitioned)"


def _get(client, bucket: str, key: str, what: str) -> bytes:
    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except client.exceptions.NoSuchKey:
        raise LifecycleError(f"{what} s3://{bucket}/{key} is missing", "take a new backup") from None


def backup_table(s: LakehouseSettings, layer: str, table: str, log: Callable[[str], None] = print) -> dict:
    """Back up a table at its current version (see the module doc). Returns the manifest."""
    client = s3_client(s)
    require_bucket(client, s.backup_bucket, "backup", "LAKEHOUSE_BACKUP_BUCKET")
    uri = s.table_uri(layer, table)
    try:
        version = DeltaTable(uri, storage_options=s.delta_storage_options()).version()
    except TableNotFoundError:
        raise LifecycleError(
            f"{layer}/{table} ({uri}) does not exist", "materialize it before backing it up"
        ) from None
    state = log_state(uri, s.delta_storage_options(), version)
    refuse_deletion_vectors(f"{layer}/{table}", state)
    hot_prefix, prefix = f"{s.schema(layer)}/{table}", table_prefix(s, layer, table)
    backup_id = f"{datetime.now(UTC).strftime(STAMP)}-v{version}"
    files, copied, copied_bytes = [], 0, 0
    for path, add in sorted(state.adds.items()):
        key = f"{prefix}/data/{unquote(path)}"
        found = head(client, s.backup_bucket, key)
        if found and found.get("ChecksumSHA256") and "rows" in found.get("Metadata", {}):
            digest, rows, size = (
                found["ChecksumSHA256"],
                int(found["Metadata"]["rows"]),
                found["ContentLength"],
            )
        else:
            data = _get(
                client, s.bucket, object_key(hot_prefix, path), f"{layer}/{table}'s data file (vacuumed?)"
            )
            rows, size = pq.ParquetFile(io.BytesIO(data)).metadata.num_rows, len(data)
            digest = put_checked(client, s.backup_bucket, key, data, metadata={"rows": str(rows)})
            copied, copied_bytes = copied + 1, copied_bytes + size
        files.append({"path": path, "key": key, "size": size, "sha256": digest, "rows": rows,
                      "partition": _partition(add)})  # fmt: skip
    log_files = []
    for name in state.files:
        data = _get(client, s.bucket, f"{hot_prefix}/_delta_log/{name}", f"{layer}/{table}'s log file")
        key = f"{prefix}/backups/{backup_id}/_delta_log/{name}"
        log_files.append({"name": name, "key": key, "size": len(data),
                          "sha256": put_checked(client, s.backup_bucket, key, data)})  # fmt: skip
    partitions: dict[str, dict] = {}
    for f in files:
        p = partitions.setdefault(f["partition"], {"rows": 0, "files": 0, "digest": hashlib.sha256()})
        p["rows"], p["files"] = p["rows"] + f["rows"], p["files"] + 1
    for f in sorted(files, key=lambda f: f["path"]):
        partitions[f["partition"]]["digest"].update(f["sha256"].encode())
    manifest = {"table": f"{layer}/{table}", "uri": uri, "version": version, "backup_id": backup_id,
                "created_at": datetime.now(UTC).isoformat(), "files": files, "log": log_files,
                "txns": state.txns, "rows": sum(f["rows"] for f in files), "bytes": sum(f["size"] for f in files),
                "copied_files": copied, "copied_bytes": copied_bytes,
                "partitions": {k: {**v, "digest": v["digest"].hexdigest()} for k, v in partitions.items()}}  # fmt: skip
    put_checked(client, s.backup_bucket, f"{prefix}/backups/{backup_id}/manifest.json",
                json.dumps(manifest, indent=1, sort_keys=True).encode())  # fmt: skip
    log(f"  {layer}/{table} v{version}: {len(files)} files ({copied} new, {copied_bytes} bytes copied), "
        f"{manifest['rows']} rows -> s3://{s.backup_bucket}/{prefix}/backups/{backup_id}/")  # fmt: skip
    return manifest


def backups(client, s: LakehouseSettings, layer: str, table: str) -> list[str]:
    """The backup ids of a table that have a manifest, oldest first."""
    prefix = f"{table_prefix(s, layer, table)}/backups/"
    return sorted(o["Key"][len(prefix) :].split("/")[0] for o in list_keys(client, s.backup_bucket, prefix)
                  if o["Key"].endswith("/manifest.json"))  # fmt: skip


def read_backup(client, s: LakehouseSettings, layer: str, table: str, backup_id: str) -> dict:
    key = f"{table_prefix(s, layer, table)}/backups/{backup_id}/manifest.json"
    return json.loads(_get(client, s.backup_bucket, key, "the backup manifest"))


def restore_table(s: LakehouseSettings, layer: str, table: str, backup_id: str | None = None,
                  target_uri: str | None = None, log: Callable[[str], None] = print) -> tuple[dict, str]:  # fmt: skip
    """Copy a backup (the newest unless named) into a scratch table, each file checked against the
    manifest; returns (manifest, the restored table's URI). A damaged file stops it, named."""
    client = s3_client(s)
    require_bucket(client, s.backup_bucket, "backup", "LAKEHOUSE_BACKUP_BUCKET")
    ids = backups(client, s, layer, table)
    if not ids:
        raise LifecycleError(f"{layer}/{table} has no backup in s3://{s.backup_bucket}",
                             f"take one: `lakehouse lifecycle backup delta {layer}/{table}`")  # fmt: skip
    backup_id = backup_id or ids[-1]
    manifest = read_backup(client, s, layer, table, backup_id)
    target_uri = target_uri or f"s3://{s.bucket}/_restore/{s.schema(layer)}/{table}"
    if target_uri.rstrip("/") == s.table_uri(layer, table):
        raise LifecycleError(f"{target_uri} is the live table; a restore goes to a scratch location",
                             "leave the target out (default: _restore/) and swap tables once compared")  # fmt: skip
    bucket, _, target = target_uri.removeprefix("s3://").partition("/")
    old = [o["Key"] for o in list_keys(client, bucket, f"{target}/")]
    delete_keys(client, bucket, old)  # a scratch location: whatever an earlier drill left goes
    for f in manifest["files"] + [
        {**entry, "path": f"_delta_log/{entry['name']}"} for entry in manifest["log"]
    ]:
        data = _get(client, s.backup_bucket, f["key"], "a backed-up file")
        if sha256_b64(data) != f["sha256"] or len(data) != f["size"]:
            raise LifecycleError(
                f"the backup file s3://{s.backup_bucket}/{f['key']} does not match its manifest "
                f"(SHA-256 {sha256_b64(data)} != {f['sha256']}); the restore stopped",
                "the backup is damaged: restore an older backup (`--backup ID`) and take a new one",
            )
        client.put_object(Bucket=bucket, Key=f"{target}/{unquote(f['path'])}", Body=data)
    log(f"  {layer}/{table} backup {backup_id}: {len(manifest['files'])} files restored into {target_uri}")
    return manifest, target_uri


def compare_restored(s: LakehouseSettings, manifest: dict, target_uri: str) -> list[str]:
    """What differs between a restored table and its manifest: version, and per partition rows and files."""
    dt = DeltaTable(target_uri, storage_options=s.delta_storage_options())
    problems = []
    if dt.version() != manifest["version"]:
        problems.append(f"version {dt.version()} != {manifest['version']}")
    restored = log_state(target_uri, s.delta_storage_options(), dt.version())
    by_partition: dict[str, dict] = {}
    for add in restored.adds.values():
        p = by_partition.setdefault(_partition(add), {"files": 0})
        p["files"] += 1
    rows = dt.to_pyarrow_table()
    columns = dt.metadata().partition_columns
    counts: dict[str, int] = {}
    for record in rows.select(columns).to_pylist() if columns else [{}] * rows.num_rows:
        key = ",".join(f"{k}={record[k]}" for k in sorted(record)) or "(unpartitioned)"
        counts[key] = counts.get(key, 0) + 1
    for name, want in manifest["partitions"].items():
        got_rows, got_files = counts.get(name, 0), by_partition.get(name, {}).get("files", 0)
        if (got_rows, got_files) != (want["rows"], want["files"]):
            problems.append(f"partition {name}: {got_rows} rows in {got_files} files, the manifest says "
                            f"{want['rows']} rows in {want['files']} files")  # fmt: skip
    for name in set(counts) - set(manifest["partitions"]):
        problems.append(f"partition {name}: {counts[name]} rows the manifest does not have")
    return problems


def prune(s: LakehouseSettings, layer: str, table: str, now: datetime | None = None,
          log: Callable[[str], None] = print) -> list[str]:  # fmt: skip
    """Enforce retention: drop the backups `kept` does not keep, then the data files no kept backup lists
    (only those older than a day: a younger one may belong to a backup still being written)."""
    client = s3_client(s)
    prefix = table_prefix(s, layer, table)
    ids = backups(client, s, layer, table)
    stamps = {datetime.strptime(i.split("-v")[0], STAMP).replace(tzinfo=UTC): i for i in ids}
    keep = {stamps[t] for t in kept(stamps, s.backup_keep_daily, s.backup_keep_weekly)}
    dropped = [i for i in ids if i not in keep]
    for backup_id in dropped:
        delete_keys(client, s.backup_bucket, [o["Key"] for o in list_keys(client, s.backup_bucket,
                                                                            f"{prefix}/backups/{backup_id}/")])  # fmt: skip
    referenced = {f["key"] for i in keep for f in read_backup(client, s, layer, table, i)["files"]}
    now = now or datetime.now(UTC)
    garbage = [o["Key"] for o in list_keys(client, s.backup_bucket, f"{prefix}/data/")
               if o["Key"] not in referenced and (now - o["LastModified"]).total_seconds() > GC_GRACE_SECONDS]  # fmt: skip
    delete_keys(client, s.backup_bucket, garbage)
    if dropped or garbage:
        log(f"  {layer}/{table}: dropped {len(dropped)} backups and {len(garbage)} unreferenced data files")
    return dropped
