"""Spark: a PySpark session (dagster-pyspark) configured for Delta Lake on the object store.

Local mode by default; `LAKEHOUSE_SPARK_MASTER` points it at a cluster (`spark://...`, `yarn`).
The Delta and S3A jars come from Maven Central into the cache and are passed by path.
"""

from __future__ import annotations

from pathlib import Path

import pyspark
from dagster_pyspark import PySparkResource
from dagster_pyspark.resources import spark_session_from_config

from lakehouse.settings import LakehouseSettings
from lakehouse.stack import fetch


def _jar_key(name: str) -> str:
    """Artifact name of a jar file without its version: `hadoop-aws-3.5.0.jar` -> `hadoop-aws`."""
    parts = name.removesuffix(".jar").split("-")
    while parts and parts[-1][:1].isdigit():
        parts.pop()
    return "-".join(parts)


def spark_jars(cache_dir: Path, log=print) -> list[str]:
    """The cached extra jars that pyspark does not already ship."""
    folder = fetch.jar_set("spark", cache_dir, log=log)
    bundled = {_jar_key(p.name) for p in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}
    return sorted(str(p) for p in folder.glob("*.jar") if _jar_key(p.name) not in bundled)


def spark_config(s: LakehouseSettings, jars: list[str]) -> dict[str, str]:
    return {
        "spark.master": s.spark_master,
        "spark.app.name": "lakehouse",
        "spark.driver.memory": s.spark_driver_memory,
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.host": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "4",
        "spark.sql.session.timeZone": "UTC",
        "spark.jars": ",".join(jars),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        # The catalog Trino shares: the Hive Metastore (Spark's built-in Hive client speaks its Thrift API)
        "spark.sql.catalogImplementation": "hive",
        "spark.hadoop.hive.metastore.uris": s.metastore_uri,
        "spark.sql.warehouse.dir": f"s3a://{s.bucket}/_warehouse",
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.endpoint": s.s3_endpoint,
        "spark.hadoop.fs.s3a.endpoint.region": s.s3_region,
        "spark.hadoop.fs.s3a.access.key": s.s3_access_key,
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": str(s.s3_endpoint.startswith("https")).lower(),
        "spark.hadoop.fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "spark.delta.logStore.s3.impl": "io.delta.storage.S3SingleDriverLogStore",
    }


# Secrets never go into the SparkConf: pyspark passes that conf to the JVM it starts as `--conf` arguments,
# where any local user reads them in the process table. They are set in the running session instead.
HADOOP_SECRETS = {"fs.s3a.secret.key": "s3_secret_key"}


def lake_session(s: LakehouseSettings, conf: dict[str, str]):
    """A Spark session from `conf`, then given the lake's secrets through its Hadoop configuration (which
    every S3A filesystem it opens afterwards reads, on the driver and, serialized with each job, on executors)."""
    session = spark_session_from_config(conf)
    hadoop = session.sparkContext._jsc.hadoopConfiguration()
    for key, field in HADOOP_SECRETS.items():
        hadoop.set(key, getattr(s, field))
    return session


def connect_server_properties(s: LakehouseSettings, conf: dict[str, str]) -> Path:
    """The Spark Connect server's configuration with its secrets, as a properties file only its owner reads
    (`spark-submit --properties-file`): nothing secret on its command line."""
    from lakehouse.secrets_store import write_private
    from lakehouse.stack.services import java_properties

    path = s.home / "spark" / "connect-server.properties"
    values = {**conf, **{f"spark.hadoop.{key}": getattr(s, field) for key, field in HADOOP_SECRETS.items()}}
    write_private(path, java_properties(values))
    return path


class LakehouseSparkResource(PySparkResource):
    """dagster-pyspark's session, with the lake's jars fetched (once, cached) before it starts; or, when
    `remote` is set (LAKEHOUSE_SPARK_REMOTE), a Spark Connect session to a server that has them."""

    cache_dir: str
    remote: str | None = None

    @classmethod
    def from_settings(cls, s: LakehouseSettings) -> LakehouseSparkResource:
        return cls(spark_config=spark_config(s, jars=[]), cache_dir=str(s.cache_dir), remote=s.spark_remote)

    def setup_for_execution(self, context) -> None:
        if self.remote:
            from pyspark.sql import SparkSession

            context.log.info(f"Spark Connect session to {self.remote}")
            self._spark_session = SparkSession.builder.remote(self.remote).getOrCreate()
            return
        from lakehouse.settings import get_settings

        jars = spark_jars(Path(self.cache_dir), log=context.log.info)
        self._spark_session = lake_session(
            get_settings(), {**self.spark_config, "spark.jars": ",".join(jars)}
        )


def connect_server_command(s: LakehouseSettings, port: int, log=print) -> list[str]:
    """A Spark Connect server (bundled with pyspark) with the lake's configuration and jars: what
    LAKEHOUSE_SPARK_REMOTE points at, its configuration in a private properties file. On a cluster, start
    it with the same values.

    `spark-submit` execs into the server's JVM, which may take minutes to exit after a SIGTERM (its
    shutdown hooks) and can start processes of its own: a program that runs it in the background should
    start it in a process group of its own (`start_new_session=True`) and stop that group, with SIGKILL
    after a grace period, then wait until the group is empty and the port is free."""
    jars = spark_jars(s.cache_dir, log=log)
    conf = {**spark_config(s, jars), "spark.jars": ",".join(jars), "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.connect.grpc.binding.port": str(port)}  # fmt: skip
    submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    return [str(submit), "--properties-file", str(connect_server_properties(s, conf)),
            "--class", "org.apache.spark.sql.connect.service.SparkConnectServer", "spark-internal"]  # fmt: skip


def stop_local_spark(timeout: float = 60.0) -> None:
    """Stop this process's in-process Spark session and the py4j JVM behind it (dagster-pyspark never does).

    The JVM runs in this process's group, so it is stopped on its own: its stdin is closed (it exits on
    EOF), then SIGKILL after `timeout`. Nothing happens when pyspark was never used; the next in-process
    run starts a new JVM."""
    import contextlib
    import subprocess
    import sys

    if "pyspark" not in sys.modules:
        return
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    with contextlib.suppress(Exception):
        if SparkSession._instantiatedSession is not None:
            SparkSession._instantiatedSession.stop()
        elif SparkContext._active_spark_context is not None:
            SparkContext._active_spark_context.stop()
    gateway = SparkContext._gateway
    if gateway is None:
        return
    proc = getattr(gateway, "proc", None)
    with contextlib.suppress(Exception):
        gateway.shutdown()
    SparkContext._gateway, SparkContext._jvm = None, None
    if proc is None:
        return
    with contextlib.suppress(OSError):
        proc.stdin.close()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)
