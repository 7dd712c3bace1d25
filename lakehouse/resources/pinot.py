"""The Apache Pinot cluster as a Dagster resource."""

import dagster as dg

from lakehouse.realtime.pinot import PinotClient
from lakehouse.resources.secret import as_env_var, reveal
from lakehouse.settings import LakehouseSettings


class PinotResource(dg.ConfigurableResource):
    """The Pinot cluster: controller (tables, schemas) and broker (queries), as the admin principal."""

    controller_url: str
    broker_url: str
    user: str
    password: str

    @classmethod
    def from_settings(cls, s: LakehouseSettings, env_secrets: bool = False) -> "PinotResource":
        password = as_env_var(s, "pinot_admin_password") if env_secrets else s.pinot_admin_password
        return cls(controller_url=s.pinot_controller_url, broker_url=s.pinot_broker_url, user=s.pinot_admin_user,
                   password=password)  # fmt: skip

    def client(self) -> PinotClient:
        return PinotClient(self.controller_url, self.broker_url, auth=(self.user, reveal(self.password)))
