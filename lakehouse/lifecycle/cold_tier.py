"""The object-store side of the lifecycle: buckets that must exist, objects written with a storage class
and a SHA-256 the store checks, thawing archived objects before a read, and S3 lifecycle rules.

Every object the lifecycle writes carries its SHA-256 as an S3 checksum (`ChecksumSHA256`): the store
refuses an upload whose bytes do not match it, and answers it on HEAD, so an archived object can be
verified without reading it back (a Glacier object cannot be read before it is thawed).

Thawing: on AWS an object of class GLACIER or DEEP_ARCHIVE must be restored (`RestoreObject`) before
it can be read, which takes minutes to hours. `thaw` asks for it and waits, printing progress. A local
store (SeaweedFS) records the storage class but keeps the bytes readable, and refuses RestoreObject:
`LAKEHOUSE_COLD_THAW=auto` (the default) thaws only when the endpoint is AWS S3.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import time
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from botocore.exceptions import ClientError, EndpointConnectionError

from lakehouse.settings import LakehouseSettings
from lakehouse.stack.errors import StackError

THAWED_CLASSES = {"GLACIER", "DEEP_ARCHIVE"}  # classes whose bytes need a RestoreObject first on AWS


class LifecycleError(StackError):
    """Archival, restore or backup refused or failed: what, and how to fix it. Hot data is untouched."""


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def require_bucket(client, bucket: str, purpose: str, variable: str) -> None:
    """Refuse clearly when a bucket the lifecycle needs does not exist (before anything is touched)."""
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if error_code(exc) in ("404", "NoSuchBucket", "NotFound"):
            raise LifecycleError(
                f"the {purpose} bucket s3://{bucket} does not exist; nothing was changed",
                f"`lakehouse stack up` creates it on the local stack; elsewhere create it, or set {variable} "
                "to a bucket that exists",
            ) from None
        raise LifecycleError(f"the {purpose} bucket s3://{bucket} cannot be used: {exc}",
                             "check the object store's credentials (LAKEHOUSE_S3_*)") from None  # fmt: skip
    except EndpointConnectionError:
        where = urlsplit(client.meta.endpoint_url).netloc
        raise LifecycleError(f"the object store at {where} did not answer; nothing was changed",
                             "start it with `lakehouse stack up`, or check LAKEHOUSE_S3_ENDPOINT") from None  # fmt: skip


def put_checked(client, bucket: str, key: str, data: bytes, storage_class: str = "STANDARD",
                metadata: dict[str, str] | None = None) -> str:  # fmt: skip
    """Upload with the SHA-256 the store verifies; returns the checksum (base64)."""
    digest = sha256_b64(data)
    client.put_object(Bucket=bucket, Key=key, Body=data, StorageClass=storage_class,
                      ChecksumSHA256=digest, Metadata=metadata or {})  # fmt: skip
    return digest


def head(client, bucket: str, key: str) -> dict | None:
    """An object's HEAD answer with its checksum, or None when there is no such object."""
    try:
        return client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def stored_checksum(client, bucket: str, key: str) -> str | None:
    """The SHA-256 (base64) the store holds for an object, or None when there is no such object."""
    found = head(client, bucket, key)
    return found.get("ChecksumSHA256") if found else None


def list_keys(client, bucket: str, prefix: str) -> list[dict]:
    """Every object under a prefix (Key, Size, LastModified), all pages."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [obj for page in pages for obj in page.get("Contents", [])]


def delete_keys(client, bucket: str, keys: list[str]) -> None:
    for i in range(0, len(keys), 1000):
        client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]],
                                                      "Quiet": True})  # fmt: skip


def needs_thaw(s: LakehouseSettings) -> bool:
    if s.cold_thaw != "auto":
        return s.cold_thaw == "always"
    host = (urlsplit(s.s3_endpoint).hostname or "").lower()
    return host.endswith(".amazonaws.com") or host == "amazonaws.com"


def _thaw_state(head: dict) -> str:
    """`ready` (readable now), `pending` (a restore is running) or `frozen` (nobody asked yet)."""
    if head.get("StorageClass") not in THAWED_CLASSES:
        return "ready"
    restore = head.get("Restore")
    if not restore:
        return "frozen"
    return "pending" if 'ongoing-request="true"' in restore else "ready"


def thaw(client, bucket: str, keys: Iterable[str], days: int, timeout_s: float,
         log: Callable[[str], None] = print, poll_s: float = 60.0, tier: str = "Standard") -> None:  # fmt: skip
    """Ask the store to make archived objects readable (RestoreObject) and wait until all are."""
    keys = list(keys)
    asked: set[str] = set()
    deadline = time.monotonic() + timeout_s
    while True:
        states = {k: _thaw_state(client.head_object(Bucket=bucket, Key=k)) for k in keys}
        for key in (k for k, state in states.items() if state == "frozen" and k not in asked):
            client.restore_object(Bucket=bucket, Key=key,
                                  RestoreRequest={"Days": days, "GlacierJobParameters": {"Tier": tier}})  # fmt: skip
            asked.add(key)
        ready = sum(state == "ready" for state in states.values())
        log(f"  thawing s3://{bucket}: {ready}/{len(keys)} objects readable")
        if ready == len(keys):
            return
        if time.monotonic() >= deadline:
            raise LifecycleError(
                f"thawing {len(keys) - ready} archived objects in s3://{bucket} did not finish in {timeout_s:.0f} s",
                "run the restore again later (thawing goes on in the store: nothing is asked twice), or raise "
                "LAKEHOUSE_COLD_THAW_TIMEOUT_SECONDS",
            )
        time.sleep(poll_s)


def lifecycle_rules(s: LakehouseSettings, archived_prefixes: list[str], cold_expire_days: int | None = None,
                    snapshot_cold_after_days: int = 30) -> dict[str, dict]:  # fmt: skip
    """S3 lifecycle configurations for real AWS, per bucket and prefix.

    - Lake bucket: no transition, no expiration. Delta files may only leave through a commit (the archive
      assets); S3 acting behind the log's back would make tables unreadable. Only abandoned multipart
      uploads are aborted.
    - Cold bucket: objects are written in their storage class already; per archived table prefix an
      expiration when `cold_expire_days` is given (legal holds: leave it None).
    - Backup bucket:
      - `kafka/` and `dagster/` snapshots move to the cold class after `snapshot_cold_after_days` (the drill
        only ever reads the newest) and expire after the backup retention;
      - `postgres/` (base backups and WAL) expires after the retention, never transitions: a point-in-time
        restore reads it without a thaw step;
      - `delta/` has no rule at all: its data files are shared by every later backup and only the backups'
        own garbage collection may delete them.
    """
    abort = {"ID": "abort-incomplete-uploads", "Filter": {"Prefix": ""}, "Status": "Enabled",
             "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}  # fmt: skip
    cold_rules = [abort]
    if cold_expire_days:
        cold_rules += [{"ID": f"expire-{p.strip('/').replace('/', '-')}", "Filter": {"Prefix": p},
                        "Status": "Enabled", "Expiration": {"Days": cold_expire_days}}
                       for p in archived_prefixes]  # fmt: skip
    keep_days = (
        s.backup_keep_daily + 7 * s.backup_keep_weekly + 7
    )  # the oldest backup retention keeps, and a week
    expire_days = max(keep_days, snapshot_cold_after_days + 90)  # Glacier bills 90 days at least
    backup_rules = [abort]
    for prefix in ("kafka/", "dagster/"):
        backup_rules.append({"ID": f"{prefix.strip('/')}-to-cold", "Filter": {"Prefix": prefix}, "Status": "Enabled",
                             "Transitions": [{"Days": snapshot_cold_after_days, "StorageClass": s.cold_storage_class}]})  # fmt: skip
    for prefix in ("kafka/", "dagster/", "postgres/"):
        backup_rules.append({"ID": f"{prefix.strip('/')}-expire", "Filter": {"Prefix": prefix}, "Status": "Enabled",
                             "Expiration": {"Days": expire_days if prefix != "postgres/" else keep_days}})  # fmt: skip
    return {s.bucket: {"Rules": [abort]}, s.cold_bucket: {"Rules": cold_rules},
            s.backup_bucket: {"Rules": backup_rules}}  # fmt: skip


def apply_rules(client, rules: dict[str, dict], log: Callable[[str], None] = print) -> dict[str, list[str]]:
    """Put each bucket's rules; a rule the store does not implement (SeaweedFS: transitions, multipart
    aborts) is dropped with a message. Returns {bucket: the rule ids applied}."""
    applied: dict[str, list[str]] = {}
    for bucket in rules:
        require_bucket(client, bucket, "lifecycle rules'", "LAKEHOUSE_BUCKET / _COLD_BUCKET / _BACKUP_BUCKET")
    for bucket, config in rules.items():
        kept: list[dict] = []
        for rule in config["Rules"]:
            try:
                client.put_bucket_lifecycle_configuration(Bucket=bucket,
                                                          LifecycleConfiguration={"Rules": [*kept, rule]})  # fmt: skip
                kept.append(rule)
            except ClientError as exc:
                log(f"  s3://{bucket}: rule {rule['ID']!r} not supported by this store ({error_code(exc)})")
        if not kept:
            with contextlib.suppress(ClientError):
                client.delete_bucket_lifecycle(Bucket=bucket)
        applied[bucket] = [r["ID"] for r in kept]
    return applied
