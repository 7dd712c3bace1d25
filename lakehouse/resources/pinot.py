"""The Apache Pinot cluster as a Dagster resource."""

import dagster as dg

from lakehouse.realtime.pinot import PinotClient
from lakehouse.settings import LakehouseSettings


class PinotResource(dg.ConfigurableResource):
    """The Pinot cluster: controller (tables, schemas) and broker (queries)."""

    controller_url: str
    broker_url: str

    @classmethod
    def from_settings(cls, s: LakehouseSettings) -> "PinotResource":
        return cls(controller_url=s.pinot_controller_url, broker_url=s.pinot_broker_url)

    def client(self) -> PinotClient:
        return PinotClient(self.controller_url, self.broker_url)
