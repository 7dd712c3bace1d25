"""Backups of what is neither a lake table nor the OLTP database: Kafka's topic configurations with the
offsets the lake's tables hold, and Dagster's own instance (run history, asset records, cursors).

Kafka (`kafka/<stamp>.json`): each topic's partitions and non-default configurations, and for every
Kafka-fed Delta table its exactly-once marks (`txn` app id -> last offset taken in). Records themselves
are not backed up: the lake holds them (raw keeps every record's topic, partition, offset, key and value).
A topic restored from this file is a new incarnation with a new topic id and offsets from 0; the landing
refuses to mix it with the old marks (`check_incarnation`), see the README's "Backups and restore drills".

Dagster (`dagster/<stamp>.tar.gz`): for an instance on SQLite, its storages copied with SQLite's online
backup API (consistent while the daemon writes), plus dagster.yaml. The stack's instance lives in
PostgreSQL (`lakehouse stack up` writes its dagster.yaml): the PostgreSQL base backups hold it.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import tarfile
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import yaml

from lakehouse.lifecycle.cold_tier import LifecycleError, put_checked, require_bucket
from lakehouse.lifecycle.delta_log import log_state
from lakehouse.lifecycle.retention import STAMP
from lakehouse.resources.lake import s3_client
from lakehouse.settings import LakehouseSettings


def kafka_snapshot(s: LakehouseSettings) -> dict:
    """Topics (partitions, replication, non-default configs) and every lake table's stored offsets."""
    from confluent_kafka.admin import AdminClient, ConfigResource
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    from lakehouse.maintenance import maintained_tables
    from lakehouse.security.kafka_access import client_config

    admin = AdminClient(client_config(s, "admin"))
    metadata = admin.list_topics(timeout=10)
    topics = {}
    names = sorted(n for n in metadata.topics if n in platform_topics(s))
    resources = [ConfigResource(ConfigResource.Type.TOPIC, n) for n in names]
    configs = (
        {r.name: f.result(10) for r, f in admin.describe_configs(resources).items()} if resources else {}
    )
    for name in names:
        partitions = metadata.topics[name].partitions
        topics[name] = {
            "partitions": len(partitions),
            "replication": len(next(iter(partitions.values())).replicas) if partitions else 0,
            "configs": {
                k: v.value for k, v in configs[name].items() if not v.is_default and v.value is not None
            },
        }
    offsets = {}
    for ref in maintained_tables(s):
        uri = s.table_uri(ref.layer, ref.name)
        try:
            version = DeltaTable(uri, storage_options=s.delta_storage_options()).version()
        except TableNotFoundError:
            continue
        txns = log_state(uri, s.delta_storage_options(), version).txns
        if txns:
            offsets[f"{ref.layer}/{ref.name}"] = {"version": version, "marks": txns}
    return {"created_at": datetime.now(UTC).isoformat(), "bootstrap": s.kafka_bootstrap, "topics": topics,
            "table_offsets": offsets}  # fmt: skip


def platform_topics(s: LakehouseSettings) -> set[str]:
    """The topics the platform reads: the clickstream, the captured tables' change topics, the stream jobs'
    outputs (Debezium's and Kafka Connect's own topics are rebuilt by them)."""
    from lakehouse.realtime.assets import LANDED_OUTPUTS

    return {
        s.events_topic,
        *(s.cdc_topic(t) for t in s.cdc_table_list),
        *(s.realtime_topic(o) for o in LANDED_OUTPUTS),
    }


def backup_kafka(s: LakehouseSettings, log: Callable[[str], None] = print) -> dict:
    client = s3_client(s)
    require_bucket(client, s.backup_bucket, "backup", "LAKEHOUSE_BACKUP_BUCKET")
    snapshot = kafka_snapshot(s)
    key = f"kafka/{datetime.now(UTC).strftime(STAMP)}.json"
    put_checked(client, s.backup_bucket, key, json.dumps(snapshot, indent=1, sort_keys=True).encode())
    log(f"  kafka: {len(snapshot['topics'])} topics, offsets of {len(snapshot['table_offsets'])} tables -> "
        f"s3://{s.backup_bucket}/{key}")  # fmt: skip
    return {**snapshot, "key": key}


def restore_topics(s: LakehouseSettings, snapshot: dict, prefix: str) -> dict[str, dict]:
    """Create each topic of a snapshot as `<prefix><name>` with its partitions and configs; returns what
    Kafka then reports for them (to compare with the snapshot). The drill uses a scratch prefix."""
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

    from lakehouse.security.kafka_access import client_config

    admin = AdminClient(client_config(s, "admin"))
    existing = set(admin.list_topics(timeout=10).topics)
    new = [NewTopic(prefix + name, num_partitions=t["partitions"], replication_factor=t["replication"],
                    config=t["configs"]) for name, t in snapshot["topics"].items() if prefix + name not in existing]  # fmt: skip
    for _topic, future in admin.create_topics(new, operation_timeout=30).items() if new else []:
        future.result(30)
    wanted = {prefix + n for n in snapshot["topics"]}
    deadline = time.monotonic() + 30
    while (
        not wanted <= set((metadata := admin.list_topics(timeout=10)).topics) and time.monotonic() < deadline
    ):
        time.sleep(0.5)  # metadata reaches every listener a moment after the creation
    resources = [ConfigResource(ConfigResource.Type.TOPIC, prefix + n) for n in snapshot["topics"]]
    configs = (
        {r.name: f.result(10) for r, f in admin.describe_configs(resources).items()} if resources else {}
    )
    return {name: {"partitions": len(metadata.topics[prefix + name].partitions),
                   "configs": {k: v.value for k, v in configs[prefix + name].items()
                               if k in snapshot["topics"][name]["configs"]}}
            for name in snapshot["topics"]}  # fmt: skip


def delete_topics(s: LakehouseSettings, names: list[str]) -> None:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from lakehouse.security.kafka_access import client_config

    admin = AdminClient(client_config(s, "admin"))  # kept alive until the futures resolve
    for _topic, future in admin.delete_topics(names, operation_timeout=30).items() if names else []:
        try:
            future.result(30)
        except KafkaException as exc:
            if "UNKNOWN_TOPIC" not in str(exc):  # never created (the drill stopped before): nothing to delete
                raise


def dagster_home() -> Path:
    from lakehouse.settings import get_settings

    return Path(os.environ.get("DAGSTER_HOME") or get_settings().home / "dagster")


def backup_dagster(
    s: LakehouseSettings, home: Path | None = None, log: Callable[[str], None] = print
) -> dict:
    """The instance's SQLite databases (online backup API: consistent while in use) and dagster.yaml."""
    home = home or dagster_home()
    config = home / "dagster.yaml"
    storage = (yaml.safe_load(config.read_text()) or {}).get("storage", {}) if config.exists() else {}
    if "postgres" in storage:
        database = storage["postgres"].get("postgres_db", {}).get("db_name", "?")
        raise LifecycleError(f"the Dagster instance in {home} lives in PostgreSQL (database {database})",
                             "nothing to copy here: the PostgreSQL base backups hold it")  # fmt: skip
    client = s3_client(s)
    require_bucket(client, s.backup_bucket, "backup", "LAKEHOUSE_BACKUP_BUCKET")
    databases = sorted(p for p in home.rglob("*.db") if p.is_file())
    if not databases:
        raise LifecycleError(f"no Dagster instance storage under {home}",
                             "set DAGSTER_HOME to the instance to back up (`make ui` uses .lakehouse/dagster)")  # fmt: skip
    tarball, runs = io.BytesIO(), None
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(fileobj=tarball, mode="w:gz") as tar:
        for db in databases:
            copy = Path(tmp) / db.name
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as source, sqlite3.connect(copy) as target:
                source.backup(target)
            tar.add(copy, arcname=str(db.relative_to(home)))
            if db.name == "runs.db":
                with sqlite3.connect(copy) as c:
                    runs = c.execute("select count(*) from runs").fetchone()[0]
        if (home / "dagster.yaml").exists():
            tar.add(home / "dagster.yaml", arcname="dagster.yaml")
    key = f"dagster/{datetime.now(UTC).strftime(STAMP)}.tar.gz"
    put_checked(client, s.backup_bucket, key, tarball.getvalue())
    log(f"  dagster: {len(databases)} databases of {home} -> s3://{s.backup_bucket}/{key}")
    manifest = {"key": key, "databases": [str(db.relative_to(home)) for db in databases], "runs": runs}
    put_checked(client, s.backup_bucket, key.replace(".tar.gz", ".json"), json.dumps(manifest).encode())
    return manifest
