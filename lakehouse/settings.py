"""One settings model for the whole platform, read from `LAKEHOUSE_*` environment variables.

Every default points at the local stack on 127.0.0.1; pointing the platform at real clusters
(AWS S3, MSK, a Trino cluster) is a matter of setting these variables, not of changing code.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class LakehouseSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LAKEHOUSE_", extra="ignore")

    # Where the local stack keeps its data, logs and pid files, and where downloads are cached.
    home: Path = Field(REPO_ROOT / ".lakehouse", description="data, logs and pid files of the local stack")
    cache_dir: Path = Field(Path.home() / ".cache" / "lakehouse", description="downloaded archives and jars")

    # Object store (S3 API)
    s3_endpoint: str = "http://127.0.0.1:8333"
    s3_region: str = "us-east-1"
    s3_access_key: str = "lakehouse"
    s3_secret_key: str = "lakehouse-local-secret"
    bucket: str = "lakehouse"

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_controller_port: int = 9093
    events_topic: str = "clickstream.events"
    events_partitions: int = 4
    sensor_interval_seconds: int = 30  # how often the Kafka sensor looks for new records

    # PostgreSQL (the OLTP source for CDC)
    postgres_host: str = "127.0.0.1"
    postgres_port: int = 5432
    postgres_user: str = "lakehouse"
    postgres_password: str = "lakehouse-local-secret"
    postgres_db: str = "marketplace"

    # Change data capture: Kafka Connect with Debezium. Which tables are captured is configuration.
    connect_port: int = 8083
    connect_heap: str = "768M"
    cdc_topic_prefix: str = "cdc"
    cdc_schema: str = "marketplace"
    cdc_tables: str = "customers,merchants,products,orders,order_items,payments"
    cdc_database_host: str | None = (
        None  # PostgreSQL's host as Kafka Connect sees it (default: postgres_host)
    )

    # Trino
    trino_host: str = "127.0.0.1"
    trino_port: int = 8080
    trino_user: str = "lakehouse"
    trino_catalog: str = "delta"
    trino_java_home: Path | None = Field(
        None, description="a JDK 24+ for Trino; found under /usr/lib/jvm if unset"
    )
    trino_heap: str = "2G"
    kafka_heap: str = "768M"

    # Apache Pinot (real-time tables) and the ZooKeeper that holds its cluster state
    zookeeper_port: int = 2181
    pinot_controller_port: int = 9000
    pinot_broker_port: int = 8099
    pinot_server_port: int = 8098
    pinot_server_admin_port: int = 8097
    pinot_heap: str = Field("1536M", description="heap of the one JVM running controller, broker and server")
    pinot_cluster: str = "lakehouse"
    pinot_kafka_bootstrap: str | None = Field(
        None,
        description="Kafka as Pinot's servers see it (default: kafka_bootstrap; `kafka:29092` in compose)",
    )

    # Flink stream jobs (PyFlink, in the streaming/ environment)
    flink_checkpoint_seconds: int = Field(
        5, description="checkpoint interval: outputs are committed this often"
    )
    flink_watermark_seconds: int = Field(
        10, description="how far out of order events may arrive (watermark delay)"
    )
    flink_idle_seconds: int = Field(
        0,
        description="a Kafka partition without events this long no longer holds the watermark back (0: never)",
    )
    cart_abandon_minutes: int = Field(
        30, description="inactivity after which a cart without checkout is abandoned"
    )
    suspicious_amount_factor: float = Field(
        5.0, description="a purchase this many times the user's mean is flagged"
    )
    suspicious_burst_count: int = Field(
        5, description="this many purchases by one user within the burst window are flagged"
    )
    suspicious_burst_minutes: int = Field(10, description="the burst window for suspicious purchases")

    # Spark (local mode by default; a spark://, yarn or sc:// master by configuration)
    spark_master: str = "local[2]"
    spark_driver_memory: str = "2g"
    spark_remote: str | None = Field(
        None, description="a Spark Connect server (sc://host:15002) instead of a session in this process"
    )

    # Naming of the lake: schemas in Trino are `<schema_prefix><layer>`, e.g. `silver`, `gold`.
    schema_prefix: str = ""

    # Table maintenance: vacuum keeps unreferenced files this long (time travel and readers in flight).
    vacuum_retention_hours: int = 168

    # Dagster UI
    dagster_port: int = 3000
    docs_port: int = Field(8580, description="port of the dbt docs site (`make docs`)")

    def realtime_topic(self, name: str) -> str:
        """A stream job's output topic, e.g. `rt.product_ctr` (inside the namespace when prefixed)."""
        prefix = self.schema_prefix.rstrip("_")
        return f"{prefix}.rt.{name}" if prefix else f"rt.{name}"

    def pinot_table(self, name: str) -> str:
        return f"{self.schema_prefix}{name}"

    @property
    def pinot_controller_url(self) -> str:
        return f"http://127.0.0.1:{self.pinot_controller_port}"

    @property
    def pinot_broker_url(self) -> str:
        return f"http://127.0.0.1:{self.pinot_broker_port}"

    @property
    def kafka_port(self) -> int:
        return int(self.kafka_bootstrap.rsplit(":", 1)[1])

    @property
    def cdc_table_list(self) -> list[str]:
        return [t.strip() for t in self.cdc_tables.split(",") if t.strip()]

    def cdc_topic(self, table: str) -> str:
        """Debezium's topic for a source table: <prefix>.<schema>.<table>."""
        return f"{self.cdc_topic_prefix}.{self.cdc_schema}.{table}"

    @property
    def s3_port(self) -> int:
        return int(self.s3_endpoint.rsplit(":", 1)[1].split("/")[0])

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
            "AWS_ALLOW_HTTP": "true" if self.s3_endpoint.startswith("http://") else "false",
        }


@cache
def get_settings() -> LakehouseSettings:
    return LakehouseSettings()
