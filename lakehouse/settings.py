"""One settings model for the whole platform, read from `LAKEHOUSE_*` environment variables.

Every default points at the local stack on 127.0.0.1; pointing the platform at real clusters
(AWS S3, MSK, a Trino cluster) is a matter of setting these variables, not of changing code.
"""

from __future__ import annotations

import ipaddress
import re
from functools import cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "LAKEHOUSE_"

# Constrained types: a bad value is refused when the settings are built, naming the field, instead of
# surfacing later as a service that will not start or a loop that never sleeps.
Port = Annotated[int, Field(ge=1, le=65535)]
JvmSize = Annotated[str, Field(pattern=r"^[1-9][0-9]*[kKmMgGtT]?$")]  # -Xmx768M, -Xmx2G
SCHEME_PORTS = {"http": 80, "https": 443}
_BROKER = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[A-Za-z0-9_.-]+)):(?P<port>[0-9]{1,5})$")


class SettingValueError(ValueError):
    """A refused setting: the problem names the LAKEHOUSE_ variable, `fix` says what to set instead.

    pydantic keeps the exception in the validation error's context, so the CLI can print the fix."""

    def __init__(self, problem: str, fix: str):
        super().__init__(f"{problem}; fix: {fix}")
        self.problem, self.fix = problem, fix


def env_name(field: str) -> str:
    """The environment variable of a settings field: `s3_endpoint` -> `LAKEHOUSE_S3_ENDPOINT`."""
    return f"{ENV_PREFIX}{field.upper()}"


def parse_endpoint(url: str, variable: str = "LAKEHOUSE_S3_ENDPOINT") -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL; the port defaults to the scheme's (443 or 80)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in SCHEME_PORTS or not parts.netloc:
        problem = (
            f"{variable}={url!r} has no http:// or https:// scheme"
            if "://" not in url
            else f"{variable}={url!r} has the scheme {parts.scheme!r}; only http and https are supported"
        )
        host = url.split("://", 1)[-1]
        example = f"http://{host or '127.0.0.1:8333'}"
        raise SettingValueError(problem, f"set {variable} to a URL such as {example} (https:// for TLS)")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if not parts.hostname or port == 0:
        raise SettingValueError(
            f"{variable}={url!r} has no valid host and port (the port must be 1..65535)",
            f"set {variable} to a URL such as {scheme}://host:8333 or {scheme}://host",
        )
    return scheme, parts.hostname, port or SCHEME_PORTS[scheme]


def _broker(entry: str, variable: str) -> tuple[str, int]:
    """One `host:port` (or `[ipv6]:port`) of a bootstrap list."""
    fix = f"set {variable} to host:port entries separated by commas, e.g. kafka1:9092,[::1]:9092"
    match = _BROKER.match(entry)
    if match is None:
        unbracketed_v6 = entry.count(":") > 1 and "[" not in entry
        hint = "; write an IPv6 host in brackets" if unbracketed_v6 else ""
        raise SettingValueError(f"{variable}: {entry!r} is not host:port{hint}", fix)
    host, port = match["v6"] or match["host"], int(match["port"])
    if match["v6"]:
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])  # a zone id (%eth0) is allowed
        except ValueError:
            raise SettingValueError(f"{variable}: {entry!r} has no IPv6 address in brackets", fix) from None
    if not 1 <= port <= 65535:
        raise SettingValueError(f"{variable}: {entry!r} has no port from 1 to 65535", fix)
    return host, port


def parse_brokers(bootstrap: str, variable: str = "LAKEHOUSE_KAFKA_BOOTSTRAP") -> list[tuple[str, int]]:
    """(host, port) of every broker in a Kafka bootstrap list such as `kafka1:9092,[::1]:9092`."""
    entries = [e.strip() for e in bootstrap.split(",") if e.strip()]
    if not entries:
        raise SettingValueError(f"{variable} is empty", f"set {variable} to host:port, e.g. 127.0.0.1:9092")
    return [_broker(e, variable) for e in entries]


ARCHIVE_AFTER_DAYS_DEFAULT = "bronze/clickstream_events=30,silver/enriched_events=30,silver/sessions=90,silver/product_funnel_daily=365"


def archive_after_days(
    spec: str, variable: str = "LAKEHOUSE_ARCHIVE_AFTER_DAYS"
) -> dict[tuple[str, str], int]:
    """{(layer, table): days} from `bronze/clickstream_events=30,silver/sessions=90` (empty: archive nothing).
    A retention below one day would archive today's partition, which is still being written: refused."""
    result: dict[tuple[str, str], int] = {}
    example = "bronze/clickstream_events=30,silver/sessions=90"
    for entry in (e.strip() for e in spec.split(",")):
        if not entry:
            continue
        name, sep, days = entry.partition("=")
        layer, slash, table = name.strip().partition("/")
        if not (sep and slash and layer and table):
            raise SettingValueError(f"{variable} entry {entry!r} is not layer/table=days",
                                    f"set {variable} to entries such as {example}")  # fmt: skip
        try:
            n = int(days)
        except ValueError:
            raise SettingValueError(f"{variable} entry {entry!r}: {days.strip()!r} is not a whole number of days",
                                    f"set {variable} to entries such as {example}") from None  # fmt: skip
        if n < 1:
            raise SettingValueError(
                f"{variable} entry {entry!r} would archive today's partition, which is still being written",
                f"give {layer}/{table} a retention of at least 1 day (or leave it out to never archive it)",
            )
        result[(layer.strip(), table.strip())] = n
    return result


class _SecretsFile(PydanticBaseSettingsSource):
    """The secrets the environment does not set, from the private secrets file (generated on first use)."""

    def get_field_value(self, field, field_name):  # pragma: no cover - __call__ does the work
        return None, field_name, False

    def __call__(self) -> dict[str, str]:
        from lakehouse import secrets_store

        values = secrets_store.export()
        return {f: values[secrets_store.variable(f)] for f in secrets_store.SECRET_FIELDS}


class LakehouseSettings(BaseSettings):
    # an empty variable is no setting: a secret is never the empty string
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", env_ignore_empty=True)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):  # fmt: skip
        return init_settings, env_settings, _SecretsFile(settings_cls), dotenv_settings, file_secret_settings

    # Where the local stack keeps its data, logs and pid files, and where downloads are cached.
    home: Path = Field(REPO_ROOT / ".lakehouse", description="data, logs and pid files of the local stack")
    stack_without: str = Field(
        "",
        description="services `lakehouse stack up` leaves out unless named, comma-separated (`make test` sets "
        "dagster-daemon: nothing but the tests starts runs)",
    )
    cache_dir: Path = Field(Path.home() / ".cache" / "lakehouse", description="downloaded archives and jars")

    # Object store (S3 API)
    s3_endpoint: str = "http://127.0.0.1:8333"
    s3_region: str = "us-east-1"
    s3_access_key: str = "lakehouse"
    s3_secret_key: str = Field(description="secret key of the object store (generated: see secrets_store)")
    bucket: str = "lakehouse"

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_controller_port: Port = 9093
    kafka_security_protocol: Literal["SASL_PLAINTEXT", "SASL_SSL", "PLAINTEXT"] = Field(
        "SASL_PLAINTEXT",
        description="how clients reach Kafka: the local broker takes SASL_PLAINTEXT on loopback; SASL_SSL for a "
        "managed cluster; PLAINTEXT only for an unsecured cluster of your own",
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism of the client principals (PLAIN for API-key clusters)"
    )
    kafka_ssl_ca_file: Path | None = Field(
        None,
        description="CA certificate (PEM) the brokers' TLS is verified with (SASL_SSL); default: the system's",
    )
    # One principal per client, each with its own ACLs (lakehouse/security/kafka_access.py)
    kafka_admin_user: str = Field("admin", description="Kafka super user: the broker itself and `stack up`")
    kafka_admin_password: str = Field(description="password of kafka_admin_user (generated)")
    kafka_landing_user: str = Field(
        "landing", description="Kafka principal of the landings: reads its topics"
    )
    kafka_landing_password: str = Field(description="password of kafka_landing_user (generated)")
    kafka_producer_user: str = Field("clickstream", description="Kafka principal writing the events topic")
    kafka_producer_password: str = Field(description="password of kafka_producer_user (generated)")
    kafka_connect_user: str = Field("debezium", description="Kafka principal of Kafka Connect and Debezium")
    kafka_connect_password: str = Field(description="password of kafka_connect_user (generated)")
    kafka_flink_user: str = Field("flink", description="Kafka principal of the Flink jobs")
    kafka_flink_password: str = Field(description="password of kafka_flink_user (generated)")
    kafka_pinot_user: str = Field("pinot", description="Kafka principal of Pinot's real-time tables")
    kafka_pinot_password: str = Field(description="password of kafka_pinot_user (generated)")
    kafka_trino_user: str = Field("trino", description="Kafka principal of Trino's audit event listener")
    kafka_trino_password: str = Field(description="password of kafka_trino_user (generated)")
    events_topic: str = "clickstream.events"
    events_partitions: int = Field(4, ge=1, description="partitions of the events topic when it is created")
    sensor_interval_seconds: int = Field(
        30, ge=1, description="how often the Kafka sensor looks for new records"
    )
    bronze_max_new_columns: int = Field(
        64,
        ge=0,
        description="new top-level event fields schema evolution may add to bronze; beyond it, events with "
        "more new fields are dead letters",
    )

    # PostgreSQL (the OLTP source for CDC)
    postgres_host: str = "127.0.0.1"
    postgres_port: Port = 5432
    postgres_user: str = "lakehouse"
    postgres_password: str = Field(description="password of postgres_user (generated: see secrets_store)")
    postgres_db: str = "marketplace"

    # Change data capture: Kafka Connect with Debezium. Which tables are captured is configuration.
    connect_port: Port = 8083
    connect_heap: JvmSize = "768M"
    connect_user: str = Field("lakehouse", description="Kafka Connect REST API user (basic authentication)")
    connect_password: str = Field(description="password of connect_user (generated)")
    cdc_topic_prefix: str = "cdc"
    cdc_schema: str = "marketplace"
    cdc_tables: str = "customers,merchants,products,orders,order_items,payments"
    cdc_database_host: str | None = (
        None  # PostgreSQL's host as Kafka Connect sees it (default: postgres_host)
    )

    # Hive Metastore: the catalog Trino and Spark share (its data in PostgreSQL, database metastore_db)
    metastore_host: str = "127.0.0.1"
    metastore_port: Port = 9083
    metastore_db: str = Field("lakehouse_metastore", description="the metastore's database in PostgreSQL")
    metastore_heap: JvmSize = "512M"

    # Trino
    trino_host: str = "127.0.0.1"
    trino_port: Port = Field(8443, description="Trino's HTTPS port (clients authenticate with a password)")
    trino_user: str = Field("platform", description="the pipelines' Trino principal: everything")
    trino_password: str = Field(description="password of trino_user (generated: see secrets_store)")
    trino_analyst_user: str = Field("analyst", description="Trino principal reading gold, and silver masked")
    trino_analyst_password: str = Field(description="password of trino_analyst_user (generated)")
    trino_bi_user: str = Field("bi", description="Superset's Trino principal: gold, read only")
    trino_bi_password: str = Field(description="password of trino_bi_user (generated)")
    trino_merchant_user: str = Field(
        "merchant_1", description="a merchant's Trino principal (merchant_<id>): only that merchant's rows"
    )
    trino_merchant_password: str = Field(description="password of trino_merchant_user (generated)")
    trino_shared_secret: str = Field(description="Trino's internal-communication shared secret (generated)")
    trino_ca_file: Path | None = Field(
        None,
        description="certificate (PEM) Trino's TLS is verified with; default: the one `stack up` generates "
        "for a local Trino, else the system's CAs",
    )
    trino_audit_topic: str = Field(
        "trino.audit", description="Kafka topic Trino's event listener writes every completed query to"
    )
    trino_access_rules: Path | None = Field(
        None, description="Trino access rules (JSON) to use instead of lakehouse/security/access_rules.json"
    )
    trino_catalog: str = "delta"
    trino_java_home: Path | None = Field(
        None, description="a JDK 24+ for Trino; found under /usr/lib/jvm if unset"
    )
    trino_heap: JvmSize = "2G"
    kafka_heap: JvmSize = "768M"

    # Apache Pinot (real-time tables) and the ZooKeeper that holds its cluster state
    zookeeper_port: Port = 2181
    pinot_controller_port: Port = 9000
    pinot_broker_port: Port = 8099
    pinot_server_port: Port = 8098
    pinot_server_admin_port: Port = 8097
    pinot_heap: JvmSize = Field(
        "1536M", description="heap of the one JVM running controller, broker and server"
    )
    pinot_cluster: str = "lakehouse"
    pinot_admin_user: str = Field(
        "admin", description="Pinot principal of the platform (tables, schemas, queries)"
    )
    pinot_admin_password: str = Field(
        description="password of pinot_admin_user (generated: see secrets_store)"
    )
    pinot_reader_user: str = Field("reader", description="Pinot principal of Superset: queries only (READ)")
    pinot_reader_password: str = Field(description="password of pinot_reader_user (generated)")
    pinot_kafka_bootstrap: str | None = Field(
        None,
        description="Kafka as Pinot's servers see it (default: kafka_bootstrap; `kafka:29092` in compose)",
    )

    # Flink stream jobs (PyFlink, in the streaming/ environment)
    flink_checkpoint_seconds: int = Field(
        5, ge=1, description="checkpoint interval: outputs are committed this often"
    )
    flink_watermark_seconds: int = Field(
        10, ge=0, description="how far out of order events may arrive (watermark delay)"
    )
    flink_idle_seconds: int = Field(
        0,
        ge=0,
        description="a Kafka partition without events this long no longer holds the watermark back (0: never)",
    )
    cart_abandon_minutes: int = Field(
        30, ge=1, description="inactivity after which a cart without checkout is abandoned"
    )
    suspicious_amount_factor: float = Field(
        5.0, gt=1, description="a purchase this many times the user's mean is flagged"
    )
    suspicious_burst_count: int = Field(
        5, ge=2, description="this many purchases by one user within the burst window are flagged"
    )
    suspicious_burst_minutes: int = Field(10, ge=1, description="the burst window for suspicious purchases")

    # Apache Superset (dashboards as code, in its own environment bi/.venv; metadata in PostgreSQL)
    superset_port: Port = 8088
    superset_db: str = Field("lakehouse_superset", description="Superset's metadata database in PostgreSQL")
    superset_secret_key: str = Field(description="signs Superset's sessions (generated: see secrets_store)")
    superset_admin_user: str = "admin"
    superset_admin_password: str = Field(description="password of the Superset admin (generated)")
    superset_workers: int = Field(2, ge=1, description="gunicorn worker processes of the Superset webserver")
    superset_dashboard_virtualization: bool = Field(
        False,
        description="Superset's DASHBOARD_VIRTUALIZATION: charts below the fold render only when scrolled to",
    )
    superset_trino_host: str | None = Field(
        None, description="Trino's host as Superset sees it (default: trino_host; `trino` in compose)"
    )
    superset_pinot_host: str | None = Field(
        None, description="Pinot's host as Superset sees it (default: 127.0.0.1; `pinot` in compose)"
    )

    # Spark (local mode by default; a spark://, yarn or sc:// master by configuration)
    spark_master: str = "local[2]"
    spark_driver_memory: str = "2g"
    spark_remote: str | None = Field(
        None, description="a Spark Connect server (sc://host:15002) instead of a session in this process"
    )

    # Naming of the lake: schemas in Trino are `<schema_prefix><layer>`, e.g. `silver`, `gold`.
    schema_prefix: str = ""

    # Table maintenance: vacuum keeps unreferenced files this long (time travel and readers in flight).
    vacuum_retention_hours: int = Field(168, ge=1)

    # Data lifecycle: archival to a cold tier, backups (lakehouse/lifecycle)
    cold_bucket: str = Field(
        "lakehouse-cold", description="the cold tier: archived partitions and their manifests"
    )
    cold_storage_class: Literal["GLACIER", "DEEP_ARCHIVE", "GLACIER_IR", "STANDARD_IA", "STANDARD"] = Field(
        "GLACIER", description="storage class every archived object is written with"
    )
    archive_after_days: str = Field(
        ARCHIVE_AFTER_DAYS_DEFAULT,
        description="per daily-partitioned table (layer/table=days): partitions older than this many days are "
        "archived to the cold tier",
    )
    cold_thaw: Literal["auto", "always", "never"] = Field(
        "auto",
        description="whether a restore first asks the store to thaw archived objects (RestoreObject); "
        "auto: only on AWS S3",
    )
    cold_thaw_days: int = Field(7, ge=1, description="how long a thawed copy stays readable on AWS")
    cold_thaw_timeout_seconds: int = Field(
        48 * 3600, ge=1, description="how long a restore waits for thawing (Glacier: hours)"
    )
    restore_hold_days: int = Field(
        7,
        ge=0,
        description="a restored partition stays hot this long before the nightly archive takes it again",
    )
    backup_bucket: str = Field("lakehouse-backup", description="where backups of tables and databases go")
    backup_keep_daily: int = Field(7, ge=1, description="backups kept: the newest of each of this many days")
    backup_keep_weekly: int = Field(4, ge=0, description="and the newest of each of this many weeks before")
    backup_work_dir: Path | None = Field(
        None,
        description="local scratch space of PostgreSQL base backups (default: LAKEHOUSE_HOME/backups/postgres/work)",
    )
    pg_archive_timeout_seconds: int = Field(
        60,
        ge=10,
        description="PostgreSQL switches to a new WAL segment at least this often, so it is archived: "
        "the most data a restore from the archive can miss (RPO)",
    )
    pg_restore_port: Port = Field(5439, description="port of the scratch PostgreSQL a restore drill starts")

    # Dagster as it runs in production: webserver, daemon and code server, storage in PostgreSQL
    dagster_port: Port = Field(3000, description="port of the Dagster webserver (the UI, `make ui`)")
    dagster_code_port: Port = Field(4266, description="port of the Dagster code server (gRPC)")
    dagster_db: str = Field("lakehouse_dagster", description="Dagster's run, event-log and schedule storage "
                            "database in PostgreSQL")  # fmt: skip
    dagster_db_user: str = Field("lakehouse_dagster", description="PostgreSQL role owning dagster_db")
    dagster_db_password: str = Field(description="password of dagster_db_user (generated)")
    dagster_max_concurrent_runs: int = Field(4, ge=1, description="runs in progress at once (the rest queue)")
    dagster_spark_runs: int = Field(1, ge=1, description="runs tagged `lakehouse/engine=spark` in progress at "
                                    "once: a Spark session takes a core and a gigabyte")  # fmt: skip
    dagster_pool_limit: int = Field(1, ge=1, description="steps of one concurrency pool in progress at once "
                                    "(a pool per Kafka-fed table, `spark` for the Spark steps)")  # fmt: skip
    dagster_pool_limits: dict[str, int] = Field(
        default_factory=dict,
        description='a limit per pool, overriding dagster_pool_limit, as JSON: {"spark": 1}; an unknown pool '
        "is refused when the code location loads",
    )
    dagster_run_retries: int = Field(2, ge=0, description="times a failed run is retried before it alerts")
    dagster_run_start_timeout_seconds: int = Field(
        300, ge=30, description="a run that has not started after this long is marked failed (run monitoring)"
    )
    dagster_max_runtime_seconds: int = Field(
        6 * 3600,
        ge=60,
        description="a run still in progress after this long is marked failed (run monitoring)",
    )
    dagster_run_retention_days: int = Field(30, ge=1, description="days sensor and schedule ticks are kept")
    intraday_cron: str = Field(
        "*/15 * * * *",
        description="when today's silver and gold partitions are refreshed (UTC cron); "
        "yesterday's are closed at 01:30 UTC",
    )
    alerts_topic: str = Field(
        "ops.alerts", description="Kafka topic failed runs and failed freshness policies are alerted on"
    )
    docs_port: Port = Field(8580, description="port of the dbt docs site (`make docs`)")

    @field_validator("intraday_cron")
    @classmethod
    def _a_cron(cls, value: str, info: ValidationInfo) -> str:
        from dagster._utils.schedules import is_valid_cron_string

        if not is_valid_cron_string(value):
            raise ValueError(
                f"{env_name(info.field_name)}: {value!r} is not a cron schedule (e.g. '*/15 * * * *')"
            )
        return value

    @field_validator("dagster_pool_limits")
    @classmethod
    def _pool_limits_positive(cls, value: dict[str, int], info: ValidationInfo) -> dict[str, int]:
        bad = {pool: limit for pool, limit in value.items() if limit < 1}
        if bad:
            raise ValueError(
                f"{env_name(info.field_name)}: every pool needs a limit of at least 1, not {bad}"
            )
        return value

    @field_validator("archive_after_days")
    @classmethod
    def _archive_after_days_parse(cls, value: str, info: ValidationInfo) -> str:
        archive_after_days(value, env_name(info.field_name))
        return value

    @field_validator("s3_endpoint")
    @classmethod
    def _endpoint_is_a_url(cls, value: str, info: ValidationInfo) -> str:
        parse_endpoint(value, env_name(info.field_name))
        return value

    @field_validator("kafka_bootstrap", "pinot_kafka_bootstrap")
    @classmethod
    def _bootstrap_is_a_broker_list(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            parse_brokers(value, env_name(info.field_name))
        return value

    @property
    def archive_retention(self) -> dict[tuple[str, str], int]:
        """{(layer, table): days} of every table the lifecycle archives (see `archive_after_days`)."""
        return archive_after_days(self.archive_after_days)

    def realtime_topic(self, name: str) -> str:
        """A stream job's output topic, e.g. `rt.product_ctr` (inside the namespace when prefixed)."""
        prefix = self.schema_prefix.rstrip("_")
        return f"{prefix}.rt.{name}" if prefix else f"rt.{name}"

    def pinot_table(self, name: str) -> str:
        return f"{self.schema_prefix}{name}"

    def kafka_principal(self, client: str) -> tuple[str, str]:
        """(user, password) of a Kafka client: admin, landing, producer, connect, flink, pinot or trino."""
        return getattr(self, f"kafka_{client}_user"), getattr(self, f"kafka_{client}_password")

    @property
    def alerts_log(self) -> Path:
        """The alert log: one JSON line per alert (lakehouse/alerts.py), also sent to `alerts_topic`."""
        return self.home / "logs" / "alerts.jsonl"

    @property
    def tls_dir(self) -> Path:
        """Where `stack up` keeps the local stack's TLS certificate (see lakehouse.security.tls)."""
        return self.home / "tls"

    @property
    def trino_verify(self) -> str | bool:
        """What Trino's certificate is verified with: LAKEHOUSE_TRINO_CA_FILE, else the local stack's bundle
        (the system's CAs and its own certificate) when there is one, else the system's CAs."""
        if self.trino_ca_file:
            return str(self.trino_ca_file)
        local = self.tls_dir / "trust.pem"
        return str(local) if local.exists() else True

    @property
    def superset_url(self) -> str:
        return f"http://127.0.0.1:{self.superset_port}"

    @property
    def pinot_controller_url(self) -> str:
        return f"http://127.0.0.1:{self.pinot_controller_port}"

    @property
    def pinot_broker_url(self) -> str:
        return f"http://127.0.0.1:{self.pinot_broker_port}"

    @property
    def kafka_brokers(self) -> list[tuple[str, int]]:
        """(host, port) of each broker of the bootstrap list."""
        return parse_brokers(self.kafka_bootstrap)

    @property
    def kafka_port(self) -> int:
        """The first broker's port: the one the local stack's single broker listens on."""
        return self.kafka_brokers[0][1]

    @property
    def cdc_sources(self) -> dict[str, tuple[str, str]]:
        """{name in the lake: (PostgreSQL schema, table)} of every captured table (see `cdc_sources`)."""
        return cdc_sources(self.cdc_tables, self.cdc_schema)

    @property
    def cdc_table_list(self) -> list[str]:
        """The captured tables by their names in the lake (`orders`, `billing__invoices`)."""
        return list(self.cdc_sources)

    def cdc_source(self, name: str) -> tuple[str, str]:
        return cdc_source(name, self.cdc_tables, self.cdc_schema)

    def cdc_topic(self, name: str) -> str:
        """Debezium's topic for a captured table: <prefix>.<schema>.<table>."""
        schema, table = self.cdc_source(name)
        return f"{self.cdc_topic_prefix}.{schema}.{table}"

    @property
    def metastore_uri(self) -> str:
        return f"thrift://{self.metastore_host}:{self.metastore_port}"

    @property
    def s3_port(self) -> int:
        """The object store's port, from the endpoint or its scheme (443 for https, 80 for http)."""
        return parse_endpoint(self.s3_endpoint)[2]

    @property
    def s3_uses_tls(self) -> bool:
        return parse_endpoint(self.s3_endpoint)[0] == "https"

    @property
    def docs_dir(self) -> Path:
        """Where the pipeline writes the dbt docs site (one per schema prefix)."""
        return self.home / "dbt_docs" / (self.schema_prefix.rstrip("_") or "main")

    def schema(self, layer: str) -> str:
        """Trino schema of a layer (`silver`, `gold`), with the configured prefix."""
        return f"{self.schema_prefix}{layer}"

    def table_uri(self, layer: str, table: str) -> str:
        """Location of a Delta table on the object store: s3://<bucket>/<schema>/<table>."""
        return f"s3://{self.bucket}/{self.schema(layer)}/{table}"

    def delta_storage_options(self) -> dict[str, str]:
        """Options for delta-rs (deltalake) to reach the object store."""
        return {
            "AWS_ENDPOINT_URL": self.s3_endpoint,
            "AWS_REGION": self.s3_region,
            "AWS_ACCESS_KEY_ID": self.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": self.s3_secret_key,
            "AWS_ALLOW_HTTP": "false" if self.s3_uses_tls else "true",
        }


def cdc_sources(tables: str, default_schema: str) -> dict[str, tuple[str, str]]:
    """LAKEHOUSE_CDC_TABLES as {name in the lake: (PostgreSQL schema, table)}: `orders` is a table of
    LAKEHOUSE_CDC_SCHEMA and keeps its name; `billing.invoices`, of another schema, is `billing__invoices`
    in the lake (its change log `raw/cdc_billing__invoices`, its silver table `silver/billing__invoices`)."""
    sources: dict[str, tuple[str, str]] = {}
    for entry in (e.strip() for e in tables.split(",")):
        if entry:
            schema, _, table = entry.rpartition(".")
            schema = schema or default_schema
            sources[table if schema == default_schema else f"{schema}__{table}"] = (schema, table)
    return sources


def cdc_source(name: str, tables: str, default_schema: str) -> tuple[str, str]:
    """(schema, table) of a name in the lake; a name the list does not hold (a table removed from it) is
    `schema__table` of another schema, or a table of LAKEHOUSE_CDC_SCHEMA."""
    listed = cdc_sources(tables, default_schema)
    if name in listed:
        return listed[name]
    schema, sep, table = name.partition("__")
    return (schema, table) if sep and schema and table else (default_schema, name)


@cache
def get_settings() -> LakehouseSettings:
    return LakehouseSettings()


def _requirement(field: str) -> str:
    """What a field accepts, from its type and constraints: `a whole number from 1 to 65535`."""
    info = LakehouseSettings.model_fields[field]
    bounds = {k: getattr(m, k) for m in info.metadata for k in ("ge", "gt", "le", "lt") if hasattr(m, k)}
    if any(getattr(m, "pattern", None) for m in info.metadata):
        return "a size such as 768M or 2G"  # the one pattern: JvmSize
    kind = {int: "a whole number", float: "a number"}.get(info.annotation, "a value")
    if "ge" in bounds and "le" in bounds:
        return f"{kind} from {bounds['ge']} to {bounds['le']}"
    words = {"ge": "at least", "gt": "greater than", "le": "at most", "lt": "less than"}
    return " and ".join(f"{kind} {words[k]} {v}" for k, v in bounds.items()) or kind


def explain_settings_error(exc: ValidationError) -> tuple[str, str]:
    """(problem, fix) of refused settings, each one line naming the LAKEHOUSE_ variables: what the
    CLI prints instead of pydantic's multi-line report."""
    problems, fixes = [], []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, SettingValueError):
            problems.append(cause.problem)
            fixes.append(cause.fix)
            continue
        variable = env_name(field)
        problems.append(f"{variable}={err.get('input')!r}: {err['msg'][:1].lower()}{err['msg'][1:]}")
        if field in LakehouseSettings.model_fields:
            default = LakehouseSettings.model_fields[field].default
            fixes.append(f"set {variable} to {_requirement(field)}, or unset it (default {default})")
        else:
            fixes.append(f"check {variable}")
    return "; ".join(problems), "; ".join(fixes)
