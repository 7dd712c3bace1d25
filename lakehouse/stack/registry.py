"""Every service of the local stack, in start order (`down` stops them in reverse)."""

from __future__ import annotations

from lakehouse.stack.dagster_services import DAGSTER_SERVICES
from lakehouse.stack.errors import StackError
from lakehouse.stack.services import (
    Connect,
    HiveMetastore,
    Kafka,
    ObjectStore,
    Pinot,
    Postgres,
    Service,
    Superset,
    Trino,
    ZooKeeper,
)

SERVICES: list[Service] = [
    ObjectStore(),
    Postgres(),
    HiveMetastore(),
    Kafka(),
    Connect(),
    Trino(),
    ZooKeeper(),
    Pinot(),
    Superset(),
    *DAGSTER_SERVICES,  # last: the code location's runs use all of the above
]


def by_name(name: str) -> Service:
    for svc in SERVICES:
        if svc.name == name:
            return svc
    raise StackError(f"unknown service {name!r}", fix=f"choose from {', '.join(s.name for s in SERVICES)}")
