"""PostgreSQL: the marketplace's OLTP database (the CDC source), read for reconciliation."""

import dagster as dg
import psycopg

from lakehouse.settings import LakehouseSettings


class PostgresResource(dg.ConfigurableResource):
    host: str
    port: int
    user: str
    password: str
    dbname: str
    schema_name: str = "marketplace"

    @classmethod
    def from_settings(cls, s: LakehouseSettings) -> "PostgresResource":
        return cls(host=s.postgres_host, port=s.postgres_port, user=s.postgres_user, password=s.postgres_password,
                   dbname=s.postgres_db, schema_name=s.cdc_schema)  # fmt: skip

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                               dbname=self.dbname)  # fmt: skip

    def rows(self, table: str) -> list[dict]:
        """Every row of a source table, as Python values."""
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(f'SELECT * FROM "{self.schema_name}"."{table}"')
            names = [d.name for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def column_types(self, table: str) -> dict[str, str]:
        """{column: PostgreSQL type} of a source table, from the catalog (empty if there is no such table)."""
        from lakehouse.cdc.source_types import catalog_types

        with self.connect() as conn:
            return catalog_types(conn, self.schema_name, table)
