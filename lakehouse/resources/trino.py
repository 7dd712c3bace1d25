"""Trino: SQL over the lake's Delta catalog (schemas, table registration, queries)."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pyarrow as pa
import trino

from lakehouse.settings import LakehouseSettings
from lakehouse.stack.errors import StackError


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class TrinoResource(dg.ConfigurableResource):
    """A Trino coordinator and the Delta Lake catalog the lake is registered in."""

    host: str
    port: int
    user: str
    catalog: str

    @classmethod
    def from_settings(cls, s: LakehouseSettings) -> TrinoResource:
        return cls(host=s.trino_host, port=s.trino_port, user=s.trino_user, catalog=s.trino_catalog)

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple]:
        conn = trino.dbapi.connect(host=self.host, port=self.port, user=self.user, catalog=self.catalog,
                                   http_scheme="http", request_timeout=300)  # fmt: skip
        try:
            cur = conn.cursor()
            cur.execute(sql, params)
            return [tuple(row) for row in cur.fetchall()]
        except trino.exceptions.TrinoQueryError as exc:
            if exc.error_name == "HIVE_METASTORE_ERROR":  # the catalog itself is down, not the query wrong
                raise StackError(f"the Hive Metastore (the catalog of Trino's {self.catalog} tables) does not "
                                 f"answer: {exc.message}",
                                 fix="`lakehouse stack up metastore`, then `lakehouse stack logs metastore`") from exc  # fmt: skip
            raise
        finally:
            conn.close()

    def ensure_schema(self, schema: str, location: str) -> None:
        self.query(
            f'CREATE SCHEMA IF NOT EXISTS {self.catalog}."{schema}" WITH (location = {sql_literal(location)})'
        )

    def table_exists(self, schema: str, table: str) -> bool:
        rows = self.query(
            f"SELECT 1 FROM {self.catalog}.information_schema.tables WHERE table_schema = ? AND table_name = ?",
            [schema, table],
        )
        return bool(rows)

    def register_delta_table(self, schema: str, table: str, location: str) -> bool:
        """Make a Delta table written outside Trino (Spark, delta-rs) queryable; True if newly registered."""
        schema_location = location.rsplit("/", 1)[0]
        self.ensure_schema(schema, schema_location)
        if self.table_exists(schema, table):
            return False
        # CALL takes no prepared-statement parameters: pass quoted literals.
        self.query(
            f"CALL {self.catalog}.system.register_table(schema_name => {sql_literal(schema)}, "
            f"table_name => {sql_literal(table)}, table_location => {sql_literal(location)})"
        )
        return True

    def register_lake_table(self, lake, layer: str, table: str) -> bool:
        """Make a table of the lake queryable in Trino's catalog (the shared metastore), in the schema named
        after its layer, from its first write on; nothing when it does not exist yet. Trino reads a Delta
        table's columns from its log, so schema evolution (a new bronze column) shows without a step here.
        A table with binary columns (raw Kafka keys and values) also gets a view `<table>_text` showing
        them as text (UTF-8; bytes that are not become U+FFFD). True if newly registered."""
        delta = lake.table(layer, table)
        if delta is None:
            return False
        schema = lake.schema(layer)
        new = self.register_delta_table(schema, table, lake.table_uri(layer, table))
        fields = pa.schema(delta.schema().to_arrow())
        binary = [f.name for f in fields if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)]
        if binary and (new or not self.table_exists(schema, f"{table}_text")):
            columns = ", ".join(f'from_utf8("{f.name}") AS "{f.name}"' if f.name in binary else f'"{f.name}"'
                                for f in fields)  # fmt: skip
            self.query(f'CREATE OR REPLACE VIEW {self.catalog}."{schema}"."{table}_text" AS '
                       f'SELECT {columns} FROM {self.catalog}."{schema}"."{table}"')  # fmt: skip
        return new

    def qualified(self, lake, layer: str, table: str) -> str:
        """The name a table of the lake has in Trino: `delta.bronze.clickstream_events`."""
        return f"{self.catalog}.{lake.schema(layer)}.{table}"

    def register_if_reachable(self, lake, layer: str, table: str, warn) -> bool:
        """`register_lake_table`, for writers that do not need Trino: with Trino or the metastore down, the
        data is committed all the same, `warn` says so, and the next run registers the table."""
        try:
            return self.register_lake_table(lake, layer, table)
        except (
            StackError,
            trino.exceptions.TrinoQueryError,
            OSError,
        ) as exc:  # requests' errors are OSErrors
            warn(f"{self.qualified(lake, layer, table)} is not registered in Trino yet (the next run tries again): "
                 f"{getattr(exc, 'problem', exc)}")  # fmt: skip
            return False
