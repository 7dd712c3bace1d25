"""The lake: Delta tables on the S3-compatible object store, read and written with delta-rs."""

from __future__ import annotations

import dagster as dg
import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from lakehouse.resources.secret import as_env_var, reveal
from lakehouse.settings import LakehouseSettings


def s3_client(s: LakehouseSettings, connect_timeout: float = 10, read_timeout: float = 60, attempts: int = 3):
    """A boto3 S3 client of the object store (path-style, the settings' credentials)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=s.s3_endpoint, region_name=s.s3_region,
        aws_access_key_id=s.s3_access_key, aws_secret_access_key=s.s3_secret_key,
        config=Config(connect_timeout=connect_timeout, read_timeout=read_timeout,
                      retries={"max_attempts": attempts}, s3={"addressing_style": "path"}),
    )  # fmt: skip


class LakeResource(dg.ConfigurableResource):
    """Where each layer's Delta tables live (`s3://<bucket>/<prefix><layer>/<table>`) and how to reach them."""

    s3_endpoint: str
    s3_region: str
    s3_access_key: str
    s3_secret_key: str
    bucket: str
    schema_prefix: str = ""
    bronze_max_new_columns: int = 64  # new top-level event fields bronze may add as columns

    @classmethod
    def from_settings(cls, s: LakehouseSettings, env_secrets: bool = False) -> LakeResource:
        """`env_secrets`: the secret as a `dg.EnvVar` (for the Definitions: the UI shows no secret)."""
        secret = as_env_var(s, "s3_secret_key") if env_secrets else s.s3_secret_key
        return cls(s3_endpoint=s.s3_endpoint, s3_region=s.s3_region, s3_access_key=s.s3_access_key,
                   s3_secret_key=secret, bucket=s.bucket, schema_prefix=s.schema_prefix,
                   bronze_max_new_columns=s.bronze_max_new_columns)  # fmt: skip

    def _settings(self) -> LakehouseSettings:
        return LakehouseSettings(s3_endpoint=self.s3_endpoint, s3_region=self.s3_region,
                                 s3_access_key=self.s3_access_key, s3_secret_key=reveal(self.s3_secret_key),
                                 bucket=self.bucket, schema_prefix=self.schema_prefix)  # fmt: skip

    def schema(self, layer: str) -> str:
        return self._settings().schema(layer)

    def table_uri(self, layer: str, table: str) -> str:
        return self._settings().table_uri(layer, table)

    @property
    def storage_options(self) -> dict[str, str]:
        return self._settings().delta_storage_options()

    def put_object(self, key: str, data: bytes) -> str:
        """Store a file (not a table) under this environment's prefix; its s3:// URI."""
        key = f"{self.schema_prefix}{key}"
        s3_client(self._settings()).put_object(Bucket=self.bucket, Key=key, Body=data)
        return f"s3://{self.bucket}/{key}"

    def get_object(self, key: str) -> bytes:
        answer = s3_client(self._settings()).get_object(Bucket=self.bucket, Key=f"{self.schema_prefix}{key}")
        return answer["Body"].read()

    def table(self, layer: str, table: str) -> DeltaTable | None:
        """The Delta table, or None if it has not been written yet."""
        try:
            return DeltaTable(self.table_uri(layer, table), storage_options=self.storage_options)
        except TableNotFoundError:
            return None

    def existing(self, layer: str, table: str) -> DeltaTable:
        """The Delta table; a clear error if it has not been written yet."""
        dt = self.table(layer, table)
        if dt is None:
            raise FileNotFoundError(
                f"Delta table {self.table_uri(layer, table)} does not exist yet: materialize its asset first"
            )
        return dt

    def read(
        self,
        layer: str,
        table: str,
        columns: list[str] | None = None,
        filters=None,
        version: int | None = None,
    ) -> pa.Table:
        """The table's rows (as of `version`, if given)."""
        dt = self.existing(layer, table)
        if version is not None:
            dt.load_as_version(version)
        return dt.to_pyarrow_table(columns=columns, filters=filters)
