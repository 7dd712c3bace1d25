"""Apache Pinot through its REST APIs: schemas and table configs from the repo, and queries.

The schemas and table configs live in `realtime/pinot/<table>.{schema,table}.json`, with
`${...}` placeholders for what depends on the environment (table name, topic, Kafka). Applying
them is idempotent: a schema is added or overridden, a table is created or updated in place.
When Pinot refuses one, `PinotRejected` carries Pinot's own reason.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path

import requests

from lakehouse.settings import LakehouseSettings
from lakehouse.stack.errors import StackError

CONFIG_DIR = Path(__file__).resolve().parent / "pinot"


class PinotRejected(Exception):
    """Pinot answered a request with an error; the message is Pinot's reason (and `error_code`,
    for a query, the broker's code)."""

    def __init__(self, message: str, error_code: int | None = None):
        super().__init__(message)
        self.error_code = error_code


# What the broker answers while a table's segments cannot be queried yet (a table just created,
# or reloading after a restart): BrokerResourceMissingError, then "segments unavailable".
NOT_ROUTABLE_YET = {410, 305}


@dataclass(frozen=True)
class PinotTable:
    name: str  # base name; the Pinot table is `<schema_prefix><name>`
    description: str

    def topic(self, s: LakehouseSettings) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class CdcTable(PinotTable):
    source_table: str = "orders"

    def topic(self, s):
        return s.cdc_topic(self.source_table)


@dataclass(frozen=True)
class StreamJobTable(PinotTable):
    output: str = ""

    def topic(self, s):
        return s.realtime_topic(self.output)


PINOT_TABLES = [
    CdcTable("merchant_orders", "Orders as they change (CDC of marketplace.orders), upserted by order id."),
    StreamJobTable(
        "product_ctr",
        "Click-through rate per product and minute, from the Flink CTR job.",
        output="product_ctr",
    ),  # fmt: skip
    StreamJobTable(
        "purchase_alerts", "Suspicious purchases flagged by the Flink fraud job.", output="purchase_alerts"
    ),  # fmt: skip
]


def stream_configs(s: LakehouseSettings, topic: str) -> dict[str, str]:
    """How a REALTIME table consumes Kafka (the Kafka 2.x plugin, JSON messages, committed only), as the
    pinot principal (every key without a `stream.` prefix goes to the Kafka consumer as it is): security
    protocol and mechanism only, the login is the Pinot JVM's JAAS file (kafka_access.jaas_login)."""
    from lakehouse.security.kafka_access import java_client_settings

    return {
        **java_client_settings(s),
        "streamType": "kafka",
        "stream.kafka.topic.name": topic,
        "stream.kafka.broker.list": s.pinot_kafka_bootstrap or s.kafka_bootstrap,
        "stream.kafka.consumer.type": "lowlevel",
        "stream.kafka.consumer.factory.class.name": "org.apache.pinot.plugin.stream.kafka20.KafkaConsumerFactory",
        "stream.kafka.decoder.class.name": "org.apache.pinot.plugin.stream.kafka.KafkaJSONMessageDecoder",
        "stream.kafka.consumer.prop.auto.offset.reset": "smallest",
        # Passed through to the Kafka consumer: see the stream jobs' outputs only once committed.
        "isolation.level": "read_committed",
        "realtime.segment.flush.threshold.rows": "500000",
        "realtime.segment.flush.threshold.time": "6h",
    }


def render(table: PinotTable, s: LakehouseSettings, kind: str, config_dir: Path | None = None) -> dict:
    """The schema (`kind="schema"`) or table config (`kind="table"`) of `table` for these settings."""
    values = {
        "table": s.pinot_table(table.name),
        "stream_configs": json.dumps(stream_configs(s, table.topic(s))),
    }
    text = ((config_dir or CONFIG_DIR) / f"{table.name}.{kind}.json").read_text()
    return json.loads(string.Template(text).substitute(values))


def merchant_sales_sql(orders_table: str, since_ms: int, limit: int) -> str:
    """The merchant dashboard: sales per merchant since `since_ms` (live orders only)."""
    return (
        f"SELECT merchant_id, SUM(total), COUNT(*) FROM {orders_table} "
        f"WHERE created_at >= {since_ms} AND is_deleted = 0 GROUP BY merchant_id ORDER BY SUM(total) DESC LIMIT {limit}"
    )


def top_ctr_sql(ctr_table: str, since_ms: int, min_impressions: int, limit: int) -> str:
    """Top products by click-through rate since `since_ms`: product, clicks, impressions."""
    return (
        f"SELECT product_id, SUM(clicks), SUM(impressions) FROM {ctr_table} WHERE window_start_ms >= {since_ms} "
        f"GROUP BY product_id HAVING SUM(impressions) >= {min_impressions} "
        f"ORDER BY SUM(clicks) * 1.0 / SUM(impressions) DESC LIMIT {limit}"
    )


def _reason(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:1000] or f"HTTP {response.status_code}"
    if isinstance(body, dict):
        return str(body.get("error") or body.get("_message") or body)
    return str(body)


class PinotClient:
    """Pinot's controller (tables, schemas) and broker (queries), authenticated as one principal."""

    def __init__(self, controller_url: str, broker_url: str, auth: tuple[str, str] | None = None,
                 timeout: float = 30.0):  # fmt: skip
        self.controller, self.broker, self.timeout = (
            controller_url.rstrip("/"),
            broker_url.rstrip("/"),
            timeout,
        )
        self.auth = auth

    @classmethod
    def from_settings(cls, s: LakehouseSettings, reader: bool = False) -> PinotClient:
        """The platform's client (the admin principal), or with `reader` Superset's (queries only)."""
        auth = (
            (s.pinot_reader_user, s.pinot_reader_password)
            if reader
            else (s.pinot_admin_user, s.pinot_admin_password)
        )
        return cls(s.pinot_controller_url, s.pinot_broker_url, auth=auth)

    def _call(self, method: str, url: str, what: str, **kwargs) -> requests.Response:
        try:
            response = requests.request(method, url, timeout=self.timeout, auth=self.auth, **kwargs)
        except requests.RequestException as exc:
            raise StackError(
                f"Pinot did not answer at {url} ({exc.__class__.__name__})",
                fix="start it with `lakehouse stack up` (or `make up`); `lakehouse stack logs pinot` shows why it stopped",
            ) from exc
        if response.status_code in (401, 403):
            user = self.auth[0] if self.auth else "no user"
            raise PinotRejected(f"Pinot refused {what} to {user} (HTTP {response.status_code}): {_reason(response)}",
                                response.status_code)  # fmt: skip
        if response.status_code >= 400:
            raise PinotRejected(f"Pinot rejected {what}: {_reason(response)}")
        return response

    def apply_schema(self, schema: dict) -> str:
        name = schema["schemaName"]
        self._call(
            "POST", f"{self.controller}/schemas", f"schema {name}", params={"override": "true"}, json=schema
        )
        return name

    def table_exists(self, name: str, kind: str = "REALTIME") -> bool:
        body = self._call(
            "GET", f"{self.controller}/tables/{name}", f"table {name}", params={"type": kind}
        ).json()
        return bool(body.get(kind))

    def apply_table(self, config: dict) -> str:
        """Create the table, or update it in place; returns "created" or "updated"."""
        name = config["tableName"]
        if self.table_exists(name, config["tableType"]):
            self._call("PUT", f"{self.controller}/tables/{name}", f"table config {name}", json=config)
            return "updated"
        self._call("POST", f"{self.controller}/tables", f"table config {name}", json=config)
        return "created"

    def apply(
        self, table: PinotTable, s: LakehouseSettings, config_dir: Path | None = None
    ) -> tuple[str, str]:
        """Apply the schema, then the table config, of `table`: (schema name, "created" or "updated")."""
        schema = self.apply_schema(render(table, s, "schema", config_dir=config_dir))
        return schema, self.apply_table(render(table, s, "table", config_dir=config_dir))

    def delete_table(self, name: str) -> None:
        self._call(
            "DELETE",
            f"{self.controller}/tables/{name}",
            f"deleting table {name}",
            params={"type": "realtime"},
        )
        self._call("DELETE", f"{self.controller}/schemas/{name}", f"deleting schema {name}")

    def drop_tables(self, prefix: str) -> None:
        """Delete the tables (and schemas) `<prefix><name>` of PINOT_TABLES that exist."""
        for table in PINOT_TABLES:
            if self.table_exists(f"{prefix}{table.name}"):
                self.delete_table(f"{prefix}{table.name}")

    def consuming_info(self, table: str) -> dict:
        url = f"{self.controller}/tables/{table}_REALTIME/consumingSegmentsInfo"
        return self._call("GET", url, f"consuming segments of {table}").json()

    def query(self, sql: str) -> list[list]:
        """Rows of a SQL query through the broker; a query error raises PinotRejected."""
        body = self._call("POST", f"{self.broker}/query/sql", "the query", json={"sql": sql}).json()
        if body.get("exceptions"):
            error = body["exceptions"][0]
            raise PinotRejected(
                f"Pinot could not run the query: {error.get('message', '')[:500]}", error.get("errorCode")
            )
        return body.get("resultTable", {}).get("rows", [])

    def count(self, table: str, where: str = "") -> int:
        """COUNT(*) of a table: 0 while its segments cannot be queried yet (a table just created or
        reloading; the broker then answers with an error of NOT_ROUTABLE_YET, or with no row at all).
        Any other error, such as a table that does not exist, raises PinotRejected."""
        try:
            rows = self.query(f"SELECT COUNT(*) FROM {table} {where}")
        except PinotRejected as exc:
            if exc.error_code in NOT_ROUTABLE_YET:
                return 0
            raise
        return rows[0][0] if rows else 0
