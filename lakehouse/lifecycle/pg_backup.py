"""PostgreSQL backups: base backups, continuous WAL archiving, point-in-time recovery into a scratch server.

- PostgreSQL archives every finished WAL segment into a local repository (`archive_command`, see the
  Postgres service; a segment is finished at least every LAKEHOUSE_PG_ARCHIVE_TIMEOUT_SECONDS).
- `base_backup` takes `pg_basebackup -Fp -X stream` (plain format: `pg_verifybackup` checks it against
  its backup manifest), verifies it, and stores it as one tarball with a manifest in the backup bucket
  (`postgres/<system id>/base/<stamp>/`). It also copies the WAL repository's new segments to
  `postgres/<system id>/wal/` (the `lifecycle_wal_shipping` schedule does too, every 5 minutes).
- `point_in_time_restore` starts a scratch server on LAKEHOUSE_PG_RESTORE_PORT from the newest base
  backup before the target time and replays the bucket's WAL up to that time, then promotes it. Its RTO
  (seconds to a queryable copy) is measured; `rpo_seconds` says how much a restore could miss right now.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from lakehouse.lifecycle.cold_tier import (
    LifecycleError,
    delete_keys,
    list_keys,
    put_checked,
    require_bucket,
    sha256_b64,
)
from lakehouse.lifecycle.retention import STAMP, kept
from lakehouse.resources.lake import s3_client
from lakehouse.settings import LakehouseSettings
from lakehouse.stack.services import Postgres, wal_archive_dir

WAL_NAME = re.compile(r"^[0-9A-F]{24}$")  # a segment; .history/.backup files are kept whatever happens


def system_id(s: LakehouseSettings) -> str | None:
    """The cluster's system identifier: from the server, or from its control file when it is down."""
    try:
        with Postgres()._connect(s) as conn:
            return str(conn.execute("select system_identifier from pg_control_system()").fetchone()[0])
    except Exception:  # noqa: BLE001 - down: read it offline
        pass
    try:
        proc = subprocess.run([str(Postgres()._bindir() / "pg_controldata"), "-D", str(Postgres().data_dir(s))],
                              capture_output=True, text=True, user=Postgres()._user(), timeout=30)  # fmt: skip
        m = re.search(r"Database system identifier:\s+(\d+)", proc.stdout)
        return m.group(1) if m else None
    except Exception:  # noqa: BLE001 - no local data directory (PostgreSQL served elsewhere, or lost)
        return None


def clusters(client, s: LakehouseSettings) -> list[str]:
    """System ids with base backups in the bucket, the one with the newest backup last."""
    manifests = [
        o for o in list_keys(client, s.backup_bucket, "postgres/") if o["Key"].endswith("/manifest.json")
    ]
    newest: dict[str, datetime] = {}
    for o in manifests:
        sysid = o["Key"].split("/")[1]
        newest[sysid] = max(newest.get(sysid, o["LastModified"]), o["LastModified"])
    return sorted(newest, key=newest.get)


def prefixes(s: LakehouseSettings, client, cluster: str | None = None) -> tuple[str, str]:
    """(base backups, WAL) prefixes of a cluster: `postgres/<system identifier>/base|wal`, so a cluster
    created anew (or another stack sharing the bucket) never mixes its WAL with this one's. Default: this
    stack's cluster (`system_id`); refused when it cannot be known."""
    sysid = cluster or system_id(s)
    if sysid is None:
        raise LifecycleError("PostgreSQL's system identifier cannot be read (the server is down and its data "
                             "directory is not here)", "start it (`lakehouse stack up postgres`), or name the "
                             f"cluster to restore: one of {', '.join(clusters(client, s)) or 'none in the bucket'}")  # fmt: skip
    return f"postgres/{sysid}/base", f"postgres/{sysid}/wal"


def _run_as_postgres(cmd: list[str], what: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    user = Postgres()._user()
    proc = subprocess.run(cmd, capture_output=True, text=True, user=user, env={**os.environ, **(env or {})},
                          cwd=cwd)  # fmt: skip
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()[-600:]
        if "No space left on device" in detail:
            raise LifecycleError(f"{what} failed: the disk is full ({detail.splitlines()[-1]}); the database and "
                                 "earlier backups are untouched", "free space under LAKEHOUSE_HOME and run it again")  # fmt: skip
        raise LifecycleError(f"{what} failed: {detail}", "see the message; the database is untouched")
    return proc


def _local_dir(s: LakehouseSettings, *parts: str) -> Path:
    path = s.home.joinpath("backups", "postgres", *parts)
    path.mkdir(parents=True, exist_ok=True)
    user = Postgres()._user()
    if user:
        shutil.chown(path, user, user)
    return path


def _check_space(path: Path, needed: int, what: str) -> None:
    free = shutil.disk_usage(path).free
    if free < needed:
        raise LifecycleError(f"{what}: {free // 2**20} MiB free under {path}, about {needed // 2**20} MiB "
                             "needed; nothing was written", "free space there and run it again")  # fmt: skip


def sync_wal(s: LakehouseSettings, client=None, log: Callable[[str], None] = print) -> int:
    """Copy the WAL repository's segments the bucket does not have yet; returns how many were copied."""
    client = client or s3_client(s)
    _, wal = prefixes(s, client)
    have = {o["Key"].rsplit("/", 1)[1] for o in list_keys(client, s.backup_bucket, f"{wal}/")}
    repo = wal_archive_dir(s)
    new = (
        sorted(p for p in repo.iterdir() if not p.name.endswith(".part") and p.name not in have)
        if repo.exists()
        else []
    )
    for path in new:
        put_checked(client, s.backup_bucket, f"{wal}/{path.name}", path.read_bytes())
    if new:
        log(f"  postgres: {len(new)} WAL segments copied to s3://{s.backup_bucket}/{wal}/")
    shipped = (
        sorted(p for p in repo.iterdir() if WAL_NAME.match(p.name) and (p.name in have or p in new))
        if repo.exists()
        else []
    )
    for path in shipped[:-2]:  # in the bucket now; the newest two stay for a quick look
        path.unlink()
    return len(new)


def _start_segment(backup_label: str) -> str:
    m = re.search(r"START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)", backup_label)
    if not m:
        raise LifecycleError(
            "the base backup has no START WAL LOCATION in its backup_label", "take a new one"
        )
    return m.group(1)


def base_backup(s: LakehouseSettings, log: Callable[[str], None] = print) -> dict:
    """A verified base backup in the backup bucket, plus the WAL archived so far. Returns its manifest."""
    client = s3_client(s)
    require_bucket(client, s.backup_bucket, "backup", "LAKEHOUSE_BACKUP_BUCKET")
    base, _ = prefixes(s, client)
    bindir = Postgres()._bindir()
    stamp = datetime.now(UTC).strftime(STAMP)
    work = s.backup_work_dir or _local_dir(s, "work")
    if s.backup_work_dir:
        work.mkdir(parents=True, exist_ok=True)
        if Postgres()._user():
            shutil.chown(work, Postgres()._user(), Postgres()._user())
    target = work / stamp
    with Postgres()._connect(s) as conn:
        size = sum(r[0] for r in conn.execute("select pg_database_size(datname) from pg_database").fetchall())
    _check_space(work, 2 * size, "a base backup")  # the copy and its tarball
    started = time.monotonic()
    try:
        _run_as_postgres([str(bindir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(s.postgres_port),
                          "-U", s.postgres_user, "-D", str(target), "-Fp", "-X", "stream", "-c", "fast", "-w"],
                         "pg_basebackup", env={"PGPASSWORD": s.postgres_password})  # fmt: skip
        _run_as_postgres([str(bindir / "pg_verifybackup"), str(target)], "pg_verifybackup")
        label = (target / "backup_label").read_text()
        tarball = io.BytesIO()
        with tarfile.open(fileobj=tarball, mode="w:gz", compresslevel=1) as tar:
            tar.add(target, arcname="data")
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise LifecycleError(f"the base backup failed: the disk is full under {work}; the database is "
                                 "untouched", "free space there and run it again") from None  # fmt: skip
        raise
    finally:
        shutil.rmtree(target, ignore_errors=True)
    data = tarball.getvalue()
    digest = put_checked(client, s.backup_bucket, f"{base}/{stamp}/base.tar.gz", data)
    manifest = {"stamp": stamp, "created_at": datetime.now(UTC).isoformat(), "start_wal": _start_segment(label),
                "database_bytes": size, "size": len(data), "sha256": digest, "verified_with": "pg_verifybackup",
                "seconds": round(time.monotonic() - started, 2)}  # fmt: skip
    switch_and_wait_archived(s)  # the backup's end goes to the archive now, not in a minute
    sync_wal(s, client, log)
    put_checked(
        client, s.backup_bucket, f"{base}/{stamp}/manifest.json", json.dumps(manifest, indent=1).encode()
    )
    log(
        f"  postgres: base backup {stamp} ({len(data) // 2**20} MiB, verified) -> s3://{s.backup_bucket}/{base}/{stamp}/"
    )
    return manifest


def switch_and_wait_archived(s: LakehouseSettings, timeout: float = 60.0) -> str:
    """Finish the current WAL segment (pg_switch_wal) and wait until the archive has it; returns its name."""
    deadline = time.monotonic() + timeout
    with Postgres()._connect(s) as conn:
        segment = conn.execute("select pg_walfile_name(pg_switch_wal())").fetchone()[0]
        while True:
            archived, failed = conn.execute(
                "select last_archived_wal, last_failed_wal from pg_stat_archiver"
            ).fetchone()
            if archived and archived[:24] >= segment:
                return segment
            if time.monotonic() > deadline:
                raise LifecycleError(f"PostgreSQL did not archive WAL segment {segment} in {timeout:.0f} s "
                                     f"(last archived {archived}, last failed {failed})",
                                     f"check archive_command and the space under {wal_archive_dir(s)}")  # fmt: skip
            time.sleep(0.5)


def base_backups(client, s: LakehouseSettings, cluster: str | None = None) -> list[dict]:
    """Every base backup of a cluster (default: this stack's) with a manifest, oldest first."""
    base, _ = prefixes(s, client, cluster)
    keys = sorted(
        o["Key"] for o in list_keys(client, s.backup_bucket, f"{base}/") if o["Key"].endswith("manifest.json")
    )
    return [json.loads(client.get_object(Bucket=s.backup_bucket, Key=k)["Body"].read()) for k in keys]


def bucket_rpo_seconds(s: LakehouseSettings) -> float:
    """How much a restore could miss if the whole machine were lost now: the age of the newest WAL segment
    in the backup bucket (0 segments: infinite)."""
    client = s3_client(s)
    _, wal = prefixes(s, client)
    newest = max((o["LastModified"] for o in list_keys(client, s.backup_bucket, f"{wal}/")), default=None)
    return (datetime.now(UTC) - newest).total_seconds() if newest else float("inf")


def rpo_seconds(s: LakehouseSettings) -> float:
    """How much committed work a restore from the archive could miss now: the age of the newest archived
    WAL segment (everything written after it is only in the live server's pg_wal)."""
    with Postgres()._connect(s) as conn:
        age = conn.execute(
            "select extract(epoch from now() - last_archived_time) from pg_stat_archiver"
        ).fetchone()[0]
    return float(age) if age is not None else float("inf")


@dataclass
class ScratchPostgres:
    """A restored copy running on its own port and socket directory; stop it when done."""

    data: Path
    socket_dir: Path
    port: int
    process: subprocess.Popen
    rto_seconds: float
    backup: dict

    def connect(self, dbname: str):
        import psycopg

        return psycopg.connect(host=str(self.socket_dir), port=self.port, user="postgres", dbname=dbname,
                               autocommit=True, connect_timeout=5)  # fmt: skip

    def stop(self) -> None:
        (self.data.parent / "postgres.pid").unlink(missing_ok=True)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown: clients are cut off
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)


def point_in_time_restore(s: LakehouseSettings, target: datetime | None = None, timeout: float = 300.0,
                          log: Callable[[str], None] = print, cluster: str | None = None) -> ScratchPostgres:  # fmt: skip
    """Restore the newest base backup taken before `target` (default: the newest), replay the archived WAL
    up to `target` (default: all of it), promote, and return the running copy."""
    started = time.monotonic()
    client = s3_client(s)
    require_bucket(client, s.backup_bucket, "backup", "LAKEHOUSE_BACKUP_BUCKET")
    if cluster is None and system_id(s) not in clusters(client, s):
        cluster = (clusters(client, s) or [None])[
            -1
        ]  # a new cluster without backups yet: the newest that has
    base, wal_prefix = prefixes(s, client, cluster)
    candidates = [
        b
        for b in base_backups(client, s, cluster)
        if target is None or datetime.fromisoformat(b["created_at"]) <= target
    ]
    if not candidates:
        raise LifecycleError(f"no PostgreSQL base backup in s3://{s.backup_bucket}/{base}/ "
                             f"{'before ' + target.isoformat() if target else 'at all'}",
                             "take one: `lakehouse lifecycle backup postgres`")  # fmt: skip
    backup = candidates[-1]
    root = s.home / "restore" / "postgres"
    stop_scratch(root)
    shutil.rmtree(root, ignore_errors=True)
    data, wal, sock = root / "data", root / "wal", root / "run"
    for d in (root, wal, sock):
        d.mkdir(parents=True, exist_ok=True)
    body = client.get_object(Bucket=s.backup_bucket, Key=f"{base}/{backup['stamp']}/base.tar.gz")[
        "Body"
    ].read()
    if sha256_b64(body) != backup["sha256"]:
        raise LifecycleError(f"the base backup s3://{s.backup_bucket}/{base}/{backup['stamp']}/base.tar.gz does "
                             f"not match its manifest (SHA-256 {sha256_b64(body)} != {backup['sha256']})",
                             "restore an older base backup, and take a new one")  # fmt: skip
    _check_space(root, 3 * len(body), "a point-in-time restore")
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        tar.extractall(root, filter="data")
    segments = [o["Key"] for o in list_keys(client, s.backup_bucket, f"{wal_prefix}/")
                if o["Key"].rsplit("/", 1)[1][:24] >= backup["start_wal"] or not WAL_NAME.match(o["Key"].rsplit("/", 1)[1])]  # fmt: skip
    for key in segments:
        (wal / key.rsplit("/", 1)[1]).write_bytes(
            client.get_object(Bucket=s.backup_bucket, Key=key)["Body"].read()
        )
    settings = {"port": s.pg_restore_port, "listen_addresses": "''", "unix_socket_directories": f"'{sock}'",
                "archive_mode": "off", "restore_command": f"'cp {wal}/%f %p'", "recovery_target_action": "'promote'",
                "hot_standby": "on", "max_replication_slots": 10, "max_wal_senders": 10}  # fmt: skip
    if target is not None:
        settings["recovery_target_time"] = f"'{target.astimezone(UTC).isoformat()}'"
    (data / "postgresql.auto.conf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
    (data / "recovery.signal").touch()
    user = Postgres()._user()
    if user:
        for path in [root, *root.rglob("*")]:
            shutil.chown(path, user, user)
    data.chmod(0o700)
    logfile = open(root / "postgres.log", "ab")  # noqa: SIM115 - the server writes to it while it runs
    process = subprocess.Popen([str(Postgres()._bindir() / "postgres"), "-D", str(data)], stdout=logfile,
                               stderr=subprocess.STDOUT, user=user, cwd=root, start_new_session=True)  # fmt: skip
    (root / "postgres.pid").write_text(str(process.pid))
    copy = ScratchPostgres(data, sock, s.pg_restore_port, process, 0.0, backup)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            tail = (root / "postgres.log").read_text(errors="replace").strip().splitlines()[-5:]
            raise LifecycleError("the restored PostgreSQL stopped during recovery: " + " | ".join(tail),
                                 "a target after the newest archived WAL cannot be reached: pick an earlier one")  # fmt: skip
        try:
            with copy.connect("postgres") as conn:
                if not conn.execute("select pg_is_in_recovery()").fetchone()[0]:
                    break
        except Exception:  # noqa: BLE001 - not accepting connections yet
            pass
        if time.monotonic() > deadline:
            copy.stop()
            raise LifecycleError(f"the restored PostgreSQL did not finish recovery in {timeout:.0f} s",
                                 f"see {root / 'postgres.log'}")  # fmt: skip
        time.sleep(0.5)
    copy.rto_seconds = round(time.monotonic() - started, 2)
    log(f"  postgres: restored {backup['stamp']} to {target or 'the newest archived WAL'} on port "
        f"{s.pg_restore_port} in {copy.rto_seconds} s")  # fmt: skip
    return copy


def stop_scratch(root: Path) -> None:
    """Stop a scratch server an earlier restore left running (its pid file), if any."""
    import psutil

    pid_file = root / "postgres.pid"
    if pid_file.exists():
        try:
            proc = psutil.Process(int(pid_file.read_text()))
            if str(root / "data") in proc.cmdline():  # that very server, not a process that got its pid
                proc.send_signal(signal.SIGINT)  # fast shutdown
                try:
                    proc.wait(timeout=60)
                except psutil.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=30)
        except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
            pass
        pid_file.unlink(missing_ok=True)


def prune(s: LakehouseSettings, log: Callable[[str], None] = print) -> list[str]:
    """Enforce retention on base backups, then drop the WAL (bucket and local repository) older than the
    oldest base backup kept."""
    client = s3_client(s)
    base, wal = prefixes(s, client)
    all_backups = base_backups(client, s)
    stamps = {datetime.strptime(b["stamp"], STAMP).replace(tzinfo=UTC): b for b in all_backups}
    keep = kept(stamps, s.backup_keep_daily, s.backup_keep_weekly)
    dropped = [b["stamp"] for t, b in stamps.items() if t not in keep]
    for stamp in dropped:
        delete_keys(
            client,
            s.backup_bucket,
            [o["Key"] for o in list_keys(client, s.backup_bucket, f"{base}/{stamp}/")],
        )
    if keep:
        oldest = min(stamps[t]["start_wal"] for t in keep)
        in_bucket = {
            o["Key"].rsplit("/", 1)[1]: o["Key"] for o in list_keys(client, s.backup_bucket, f"{wal}/")
        }
        old = [name for name in in_bucket if WAL_NAME.match(name) and name < oldest]
        delete_keys(client, s.backup_bucket, [in_bucket[name] for name in old])
        repo = wal_archive_dir(s)
        for path in repo.iterdir() if repo.exists() else []:
            if WAL_NAME.match(path.name) and path.name < oldest and path.name in in_bucket:
                path.unlink()  # only what the bucket had: a segment never uploaded is kept
    if dropped:
        log(f"  postgres: dropped {len(dropped)} base backups past retention, and the WAL only they needed")
    return dropped
