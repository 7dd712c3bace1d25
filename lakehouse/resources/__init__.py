"""Resources own all I/O and configuration; each is built from the one settings model."""

from lakehouse.resources.alerts import AlertsResource
from lakehouse.resources.kafka import KafkaResource
from lakehouse.resources.lake import LakeResource
from lakehouse.resources.pinot import PinotResource
from lakehouse.resources.postgres import PostgresResource
from lakehouse.resources.spark import LakehouseSparkResource
from lakehouse.resources.superset import SupersetResource
from lakehouse.resources.trino import TrinoResource
from lakehouse.settings import LakehouseSettings


def build_resources(s: LakehouseSettings, env_secrets: bool = False) -> dict:
    """Every resource from the settings; `env_secrets` for the Definitions: secrets as `dg.EnvVar`, which the
    Dagster UI shows by name only."""
    return {
        "kafka": KafkaResource.from_settings(s, env_secrets=env_secrets),
        "lake": LakeResource.from_settings(s, env_secrets=env_secrets),
        "postgres": PostgresResource.from_settings(s, env_secrets=env_secrets),
        "trino": TrinoResource.from_settings(s, env_secrets=env_secrets),
        "spark": LakehouseSparkResource.from_settings(s),
        "pinot": PinotResource.from_settings(s, env_secrets=env_secrets),
        "superset": SupersetResource.from_settings(s, env_secrets=env_secrets),
        "alerts": AlertsResource.from_settings(s, env_secrets=env_secrets),
    }
