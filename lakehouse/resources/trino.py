"""Trino: SQL over the lake's Delta catalog (schemas, table registration, queries)."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pyarrow as pa
import requests
import trino
import trino.auth

from lakehouse.resources.secret import as_env_var, reveal
from lakehouse.settings import LakehouseSettings
from lakehouse.stack.errors import StackError

PRINCIPALS = ("platform", "analyst", "bi", "merchant")


def principal_login(s: LakehouseSettings, principal: str) -> tuple[str, str]:
    """(Trino user, password) of a principal of the platform (see lakehouse.security.trino_access)."""
    if principal not in PRINCIPALS:
        raise ValueError(f"unknown principal {principal!r}; one of {', '.join(PRINCIPALS)}")
    if principal == "platform":
        return s.trino_user, s.trino_password
    return getattr(s, f"trino_{principal}_user"), getattr(s, f"trino_{principal}_password")


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class TrinoResource(dg.ConfigurableResource):
    """A Trino coordinator and the Delta Lake catalog the lake is registered in."""

    host: str
    port: int
    user: str
    password: str
    catalog: str
    verify: str = ""  # a certificate (PEM) to verify Trino's TLS with; empty: the system's CAs

    @classmethod
    def from_settings(
        cls, s: LakehouseSettings, principal: str = "platform", env_secrets: bool = False
    ) -> TrinoResource:
        """The resource of one of the platform's principals (`platform`, `analyst`, `bi`, `merchant`);
        `env_secrets`: its password as a `dg.EnvVar` (for the Definitions: the UI shows no secret)."""
        user, password = principal_login(s, principal)
        if env_secrets:
            password = as_env_var(
                s, "trino_password" if principal == "platform" else f"trino_{principal}_password"
            )
        verify = s.trino_verify
        return cls(host=s.trino_host, port=s.trino_port, user=user, password=password, catalog=s.trino_catalog,
                   verify=verify if isinstance(verify, str) else "")  # fmt: skip

    def connect(self, **kwargs) -> trino.dbapi.Connection:
        """A DB-API connection over HTTPS, authenticated with this principal's password. With a certificate
        file to verify with, the session ignores REQUESTS_CA_BUNDLE (requests would let it win)."""
        session = requests.Session()
        if self.verify:
            session.verify, session.trust_env = self.verify, False
        return trino.dbapi.connect(host=self.host, port=self.port, user=self.user, catalog=self.catalog,
                                   http_scheme="https", auth=trino.auth.BasicAuthentication(self.user, reveal(self.password)),
                                   http_session=session, request_timeout=300, **kwargs)  # fmt: skip

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple]:
        conn = self.connect()
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
