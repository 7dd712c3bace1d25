"""One settings model from LAKEHOUSE_* variables: every documented configuration works, or is refused when
the settings are built with a message that names the variable and the fix."""

from unittest import mock

import psycopg
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import ValidationError

from lakehouse.settings import LakehouseSettings, explain_settings_error


def test_defaults_point_at_the_local_stack(clean_env):
    s = LakehouseSettings(_env_file=None)
    assert s.s3_endpoint == "http://127.0.0.1:8333"
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.table_uri("silver", "product_funnel_daily") == "s3://lakehouse/silver/product_funnel_daily"
    assert s.delta_storage_options()["AWS_ALLOW_HTTP"] == "true"
    assert (s.s3_port, s.kafka_port, s.bronze_max_new_columns) == (8333, 9092, 64)


def test_environment_overrides(clean_env, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_BUCKET", "acme-lake")
    monkeypatch.setenv("LAKEHOUSE_SCHEMA_PREFIX", "dev_")
    monkeypatch.setenv("LAKEHOUSE_S3_ENDPOINT", "https://s3.eu-west-1.amazonaws.com")
    s = LakehouseSettings()
    assert s.schema("gold") == "dev_gold"
    assert s.table_uri("bronze", "clickstream_events") == "s3://acme-lake/dev_bronze/clickstream_events"
    assert s.delta_storage_options()["AWS_ALLOW_HTTP"] == "false"


def refusal(monkeypatch, variable: str, value: str) -> tuple[str, str, str]:
    """Build the settings with one variable set: pydantic's message, and the CLI's problem and fix."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as err:
        LakehouseSettings()
    return (str(err.value), *explain_settings_error(err.value))


# --- the object store endpoint -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "port", "tls"),
    [
        ("https://s3.eu-west-1.amazonaws.com", 443, True),
        ("http://minio.internal", 80, False),
        ("HTTPS://storage.example.com:9443/", 9443, True),
        ("http://[::1]:8333", 8333, False),
    ],
)
def test_an_endpoint_without_a_port_takes_the_port_of_its_scheme(clean_env, monkeypatch, endpoint, port, tls):
    monkeypatch.setenv("LAKEHOUSE_S3_ENDPOINT", endpoint)
    s = LakehouseSettings()
    assert s.s3_port == port
    options = s.delta_storage_options()
    assert options["AWS_ENDPOINT_URL"] == endpoint
    assert options["AWS_ALLOW_HTTP"] == ("false" if tls else "true")


@pytest.mark.parametrize(
    "endpoint",
    ["127.0.0.1:8333", "localhost:8333", "s3.amazonaws.com", "ftp://files:21", "http://", "http://host:0",
     "http://host:70000", "http://host:port"],
)  # fmt: skip
def test_an_endpoint_without_scheme_or_valid_port_is_refused(clean_env, monkeypatch, endpoint):
    message, problem, fix = refusal(monkeypatch, "LAKEHOUSE_S3_ENDPOINT", endpoint)
    assert "LAKEHOUSE_S3_ENDPOINT" in message and "fix:" in message
    assert problem.startswith(f"LAKEHOUSE_S3_ENDPOINT={endpoint!r}")
    assert fix.startswith("set LAKEHOUSE_S3_ENDPOINT to a URL such as http")


# --- Kafka bootstrap lists ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bootstrap", "brokers"),
    [
        ("kafka1:9092,kafka2:9093", [("kafka1", 9092), ("kafka2", 9093)]),
        (" b-1.msk.amazonaws.com:9094 , b-2.msk.amazonaws.com:9094 ,", [("b-1.msk.amazonaws.com", 9094),
                                                                         ("b-2.msk.amazonaws.com", 9094)]),
        ("[::1]:9092", [("::1", 9092)]),
        ("[fe80::1%eth0]:19092,10.0.0.7:9092", [("fe80::1%eth0", 19092), ("10.0.0.7", 9092)]),
    ],
)  # fmt: skip
def test_multi_broker_and_ipv6_bootstrap_lists(clean_env, monkeypatch, bootstrap, brokers):
    monkeypatch.setenv("LAKEHOUSE_KAFKA_BOOTSTRAP", bootstrap)
    s = LakehouseSettings()
    assert s.kafka_brokers == brokers
    assert s.kafka_port == brokers[0][1]  # the local stack's broker listens on the first one's port
    assert s.kafka_bootstrap == bootstrap  # handed to the clients as given


@pytest.mark.parametrize(
    "bootstrap", ["kafka1", "kafka1:", "kafka1:0", "kafka1:65536", "kafka1:x", "::1:9092", "[::1]", "[nope]:9092",
                  "kafka1:9092,kafka2", " , ", "http://kafka1:9092"],
)  # fmt: skip
def test_a_bootstrap_entry_that_is_not_host_and_port_is_refused(clean_env, monkeypatch, bootstrap):
    message, problem, fix = refusal(monkeypatch, "LAKEHOUSE_KAFKA_BOOTSTRAP", bootstrap)
    assert "LAKEHOUSE_KAFKA_BOOTSTRAP" in message
    assert problem.startswith("LAKEHOUSE_KAFKA_BOOTSTRAP")
    assert fix.startswith("set LAKEHOUSE_KAFKA_BOOTSTRAP to host:port")


def test_unbracketed_ipv6_is_refused_with_the_hint(clean_env, monkeypatch):
    _, problem, _ = refusal(monkeypatch, "LAKEHOUSE_KAFKA_BOOTSTRAP", "::1:9092")
    assert "IPv6 host in brackets" in problem


def test_pinot_kafka_bootstrap_is_checked_too(clean_env, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_PINOT_KAFKA_BOOTSTRAP", "kafka:29092")
    assert LakehouseSettings().pinot_kafka_bootstrap == "kafka:29092"
    _, problem, _ = refusal(monkeypatch, "LAKEHOUSE_PINOT_KAFKA_BOOTSTRAP", "kafka")
    assert problem.startswith("LAKEHOUSE_PINOT_KAFKA_BOOTSTRAP")


# --- numbers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "accepts"),
    [
        ("LAKEHOUSE_EVENTS_PARTITIONS", "0", "a whole number at least 1"),
        ("LAKEHOUSE_SENSOR_INTERVAL_SECONDS", "0", "a whole number at least 1"),
        ("LAKEHOUSE_VACUUM_RETENTION_HOURS", "-1", "a whole number at least 1"),
        ("LAKEHOUSE_FLINK_CHECKPOINT_SECONDS", "0", "a whole number at least 1"),
        ("LAKEHOUSE_FLINK_WATERMARK_SECONDS", "-1", "a whole number at least 0"),
        ("LAKEHOUSE_FLINK_IDLE_SECONDS", "-5", "a whole number at least 0"),
        ("LAKEHOUSE_CART_ABANDON_MINUTES", "0", "a whole number at least 1"),
        ("LAKEHOUSE_SUSPICIOUS_AMOUNT_FACTOR", "0.5", "a number greater than 1"),
        ("LAKEHOUSE_SUSPICIOUS_BURST_COUNT", "1", "a whole number at least 2"),
        ("LAKEHOUSE_BRONZE_MAX_NEW_COLUMNS", "-1", "a whole number at least 0"),
        ("LAKEHOUSE_TRINO_PORT", "0", "a whole number from 1 to 65535"),
        ("LAKEHOUSE_POSTGRES_PORT", "65536", "a whole number from 1 to 65535"),
        ("LAKEHOUSE_CONNECT_PORT", "eighty", "a whole number from 1 to 65535"),
        ("LAKEHOUSE_PINOT_BROKER_PORT", "-8099", "a whole number from 1 to 65535"),
        ("LAKEHOUSE_TRINO_HEAP", "2 GB", "a size such as 768M or 2G"),
    ],
)
def test_nonsensical_numbers_are_refused_naming_the_variable(
    clean_env, monkeypatch, variable, value, accepts
):
    message, problem, fix = refusal(monkeypatch, variable, value)
    assert variable.removeprefix("LAKEHOUSE_").lower() in message  # pydantic names the field
    assert problem.startswith(f"{variable}={value!r}: ")
    assert fix.startswith(f"set {variable} to {accepts}, or unset it (default ")


def test_every_refused_variable_is_reported_at_once(clean_env, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_EVENTS_PARTITIONS", "0")
    _, problem, fix = refusal(monkeypatch, "LAKEHOUSE_S3_ENDPOINT", "minio:9000")
    assert "LAKEHOUSE_EVENTS_PARTITIONS" in problem and "LAKEHOUSE_S3_ENDPOINT" in problem
    assert "\n" not in problem + fix  # one line each, for the CLI


@pytest.mark.parametrize(
    ("variable", "value"),
    [("LAKEHOUSE_FLINK_WATERMARK_SECONDS", "0"), ("LAKEHOUSE_FLINK_IDLE_SECONDS", "0"),
     ("LAKEHOUSE_BRONZE_MAX_NEW_COLUMNS", "0"), ("LAKEHOUSE_TRINO_PORT", "1"), ("LAKEHOUSE_TRINO_PORT", "65535"),
     ("LAKEHOUSE_TRINO_HEAP", "512m"), ("LAKEHOUSE_BRONZE_MAX_NEW_COLUMNS", "1000")],
)  # fmt: skip
def test_the_edges_of_each_range_are_accepted(clean_env, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    assert str(getattr(LakehouseSettings(), variable.removeprefix("LAKEHOUSE_").lower())) == value


# --- passwords with any character --------------------------------------------------------------------

TRICKY = "p'a\"ss w\\o$rd#1 ${ENV:HOME} %s é😀 "

# Anything an environment variable can hold: no NUL, no lone surrogates.
secrets = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1)


def parse_java_properties(text: str) -> dict[str, str]:
    """What java.util.Properties.load reads from a file (the test's own reader, written from its spec):
    comments, continuation lines, key separators, and the escapes \\t \\n \\r \\f \\uXXXX and \\x -> x."""
    lines, logical, result = text.splitlines(), [], {}
    i = 0
    while i < len(lines):
        line = lines[i].lstrip(" \t\f")
        i += 1
        if not line or line[0] in "#!":
            continue
        while (len(line) - len(line.rstrip("\\"))) % 2 == 1 and i < len(lines):  # odd backslashes: continued
            line = line[:-1] + lines[i].lstrip(" \t\f")
            i += 1
        logical.append(line)
    for line in logical:
        key, rest = _split_key(line)
        result[_unescape(key)] = _unescape(rest)
    return result


def _split_key(line: str) -> tuple[str, str]:
    i = 0
    while i < len(line) and line[i] not in "=: \t\f":
        i += 2 if line[i] == "\\" else 1
    key, rest = line[:i], line[i:].lstrip(" \t\f")
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(" \t\f")
    return key, rest


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch != "\\" or i + 1 == len(text):
            out.append(ch)
            i += 1
        elif text[i + 1] == "u":
            out.append(chr(int(text[i + 2 : i + 6], 16)))
            i += 6
        else:
            out.append({"t": "\t", "n": "\n", "r": "\r", "f": "\f"}.get(text[i + 1], text[i + 1]))
            i += 2
    # Java strings are UTF-16: \uXXXX pairs of surrogates make one character.
    return "".join(out).encode("utf-16-be", "surrogatepass").decode("utf-16-be")


def test_the_properties_reader_reads_what_java_reads():
    text = "# comment\n  ! also\nkey = value \\\n    continued\nother:x\\:y\\=z\nspace\\ key  v\\u00e9\n"
    assert parse_java_properties(text) == {"key": "value continued", "other": "x:y=z", "space key": "vé"}


def test_java_properties_escape_every_special_character():
    from lakehouse.stack.services import java_properties

    text = java_properties({"k": " a\\b\n#é😀", "plain": "x=y:z"})
    assert text == "k=\\ a\\\\b\\n#\\u00e9\\ud83d\\ude00\nplain=x=y:z\n"
    assert parse_java_properties(text) == {"k": " a\\b\n#é😀", "plain": "x=y:z"}


@given(value=st.text(st.characters(exclude_categories=["Cs"])))
@example(value=" leading and trailing \\")
@example(value="\\\n\\u0041#!=:")
def test_java_properties_round_trip_any_value(value):
    from lakehouse.stack.services import java_properties

    assert parse_java_properties(java_properties({"s3.endpoint": value, "next": "1"})) == {
        "s3.endpoint": value,
        "next": "1",
    }


def test_the_trino_catalog_takes_the_s3_credentials_from_its_environment(clean_env):
    from lakehouse.stack.services import trino_catalog

    text, env = trino_catalog(LakehouseSettings(s3_access_key="AK#1", s3_secret_key=TRICKY))
    assert "s3.aws-access-key=${ENV:LAKEHOUSE_S3_ACCESS_KEY}\n" in text
    assert "s3.aws-secret-key=${ENV:LAKEHOUSE_S3_SECRET_KEY}\n" in text
    assert TRICKY not in text  # Trino would trim it and resolve its ${...}
    assert env == {"LAKEHOUSE_S3_ACCESS_KEY": "AK#1", "LAKEHOUSE_S3_SECRET_KEY": TRICKY}
    catalog = parse_java_properties(text)
    assert catalog["s3.endpoint"] == "http://127.0.0.1:8333"
    assert catalog["connector.name"] == "delta_lake"


def connect_kwargs(connect) -> dict:
    """The keyword arguments a function hands to psycopg.connect (no server needed)."""
    with mock.patch.object(psycopg, "connect") as fake:
        connect()
    return fake.call_args.kwargs


@settings(max_examples=60, deadline=None)
@given(password=secrets)
@example(password=TRICKY)
@example(password="' host=evil.example.com '")
def test_any_postgres_password_reaches_libpq_unchanged(password):
    from lakehouse.cdc.workload import connect
    from lakehouse.resources.postgres import PostgresResource

    s = LakehouseSettings(_env_file=None, postgres_password=password)
    for kwargs in (connect_kwargs(lambda: connect(s)),
                   connect_kwargs(lambda: PostgresResource.from_settings(s).connect())):  # fmt: skip
        params = conninfo_to_dict(make_conninfo("", **kwargs))  # what psycopg builds, parsed back by libpq
        assert params["password"] == password
        assert (params["host"], params["port"]) == ("127.0.0.1", "5432")


@settings(max_examples=60, deadline=None)
@given(password=secrets)
@example(password=TRICKY)
@example(password='", "database.hostname": "evil')
def test_any_postgres_password_reaches_debezium_unchanged(password):
    """Through the local worker's secrets file (the configuration only names it), or, for a Connect served
    elsewhere, in the configuration itself: either way the same characters."""
    import tempfile
    from pathlib import Path

    from lakehouse.cdc.connector import connector_config, write_connect_secrets

    with tempfile.TemporaryDirectory() as home:
        s = LakehouseSettings(_env_file=None, postgres_password=password, home=Path(home))
        config = connector_config(s)
        assert config["database.password"] == password
        assert config["database.hostname"] == "127.0.0.1"
        secrets_file = write_connect_secrets(s)
        assert secrets_file.stat().st_mode & 0o777 == 0o600
        config = connector_config(s)
        assert config["database.password"] == f"${{file:{secrets_file}:postgres_password}}"
        assert parse_java_properties(secrets_file.read_text()) == {"postgres_password": password}


def test_passwords_are_read_from_the_environment_verbatim(clean_env, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_POSTGRES_PASSWORD", TRICKY)
    monkeypatch.setenv("LAKEHOUSE_S3_SECRET_KEY", TRICKY)
    s = LakehouseSettings()
    assert s.postgres_password == TRICKY
    assert s.delta_storage_options()["AWS_SECRET_ACCESS_KEY"] == TRICKY


def test_spark_gets_the_secret_and_tls_from_the_endpoint(clean_env):
    from lakehouse.resources.spark import spark_config

    conf = spark_config(
        LakehouseSettings(s3_endpoint="https://s3.eu-west-1.amazonaws.com", s3_secret_key=TRICKY), jars=[]
    )
    assert TRICKY not in conf.values()  # pyspark would put it on the JVM's command line
    assert conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "true"


def test_captured_tables_of_other_schemas_take_qualified_names_in_the_lake():
    from lakehouse.settings import cdc_source, cdc_sources

    tables = "orders, billing.invoices,marketplace.payments,,"
    assert cdc_sources(tables, "marketplace") == {
        "orders": ("marketplace", "orders"),
        "billing__invoices": ("billing", "invoices"),
        "payments": ("marketplace", "payments"),
    }
    assert cdc_source("billing__invoices", tables, "marketplace") == ("billing", "invoices")
    assert cdc_source("gone__table", tables, "marketplace") == (
        "gone",
        "table",
    )  # removed from the list since
    assert cdc_source("coupons", tables, "marketplace") == ("marketplace", "coupons")
