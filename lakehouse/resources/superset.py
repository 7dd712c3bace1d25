"""Apache Superset as a Dagster resource: the dashboards' importer and the drift check's reader."""

import dagster as dg

from lakehouse.bi.superset_api import SupersetClient
from lakehouse.resources.secret import as_env_var, reveal
from lakehouse.settings import LakehouseSettings


class SupersetResource(dg.ConfigurableResource):
    """Superset's API, logged in as the admin the stack bootstraps."""

    url: str
    username: str
    password: str

    @classmethod
    def from_settings(cls, s: LakehouseSettings, env_secrets: bool = False) -> "SupersetResource":
        password = as_env_var(s, "superset_admin_password") if env_secrets else s.superset_admin_password
        return cls(url=s.superset_url, username=s.superset_admin_user, password=password)

    def client(self) -> SupersetClient:
        return SupersetClient(self.url, self.username, reveal(self.password))
