"""Trino: SQL over the lake's Delta catalog (schemas, table registration, queries)."""

from __future__ import annotations

from typing import Any

import dagster as dg
import trino

from lakehouse.settings import LakehouseSettings


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
