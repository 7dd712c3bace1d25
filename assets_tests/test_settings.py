"""One settings model from LAKEHOUSE_* variables."""

from lakehouse.settings import LakehouseSettings


def test_defaults_point_at_the_local_stack(clean_env):
    s = LakehouseSettings(_env_file=None)
    assert s.s3_endpoint == "http://127.0.0.1:8333"
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.table_uri("silver", "product_funnel_daily") == "s3://lakehouse/silver/product_funnel_daily"
    assert s.delta_storage_options()["AWS_ALLOW_HTTP"] == "true"


def test_environment_overrides(clean_env, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_BUCKET", "acme-lake")
    monkeypatch.setenv("LAKEHOUSE_SCHEMA_PREFIX", "dev_")
    monkeypatch.setenv("LAKEHOUSE_S3_ENDPOINT", "https://s3.eu-west-1.amazonaws.com")
    s = LakehouseSettings()
    assert s.schema("gold") == "dev_gold"
    assert s.table_uri("bronze", "clickstream_events") == "s3://acme-lake/dev_bronze/clickstream_events"
    assert s.delta_storage_options()["AWS_ALLOW_HTTP"] == "false"
