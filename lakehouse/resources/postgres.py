"""PostgreSQL: the marketplace's OLTP database (the CDC source), read for reconciliation."""

import dagster as dg
import psycopg

from lakehouse.resources.secret import as_env_var, reveal
from lakehouse.settings import LakehouseSettings


class PostgresResource(dg.ConfigurableResource):
    host: str
    port: int
    user: str
    password: str
    dbname: str
    schema_name: str = "marketplace"
    cdc_tables: str = ""  # LAKEHOUSE_CDC_TABLES: which schema each captured table is in

    @classmethod
    def from_settings(cls, s: LakehouseSettings, env_secrets: bool = False) -> "PostgresResource":
        password = as_env_var(s, "postgres_password") if env_secrets else s.postgres_password
        return cls(host=s.postgres_host, port=s.postgres_port, user=s.postgres_user, password=password,
                   dbname=s.postgres_db, schema_name=s.cdc_schema, cdc_tables=s.cdc_tables)  # fmt: skip

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(host=self.host, port=self.port, user=self.user, password=reveal(self.password),
                               dbname=self.dbname)  # fmt: skip

    def source(self, name: str) -> tuple[str, str]:
        """(schema, table) in PostgreSQL of a captured table's name in the lake."""
        from lakehouse.settings import cdc_source

        return cdc_source(name, self.cdc_tables, self.schema_name)

    def rows(self, name: str) -> list[dict]:
        """Every row of a source table, as Python values."""
        from psycopg import sql

        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT * FROM {}.{}").format(*map(sql.Identifier, self.source(name))))
            names = [d.name for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def column_types(self, name: str) -> dict[str, str]:
        """{column: PostgreSQL type} of a source table, from the catalog (empty if there is no such table)."""
        from lakehouse.cdc.source_types import catalog_types

        with self.connect() as conn:
            return catalog_types(conn, *self.source(name))
