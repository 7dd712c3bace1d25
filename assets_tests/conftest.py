"""Shared fixtures: the live local stack (started once per session) and a private namespace in it."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from lakehouse.settings import LakehouseSettings, get_settings


def pytest_collection_modifyitems(items):
    """Tests that stop and restart the stack run last, after everything that uses it."""
    items.sort(key=lambda item: item.get_closest_marker("restarts_stack") is not None)


@pytest.fixture(scope="session")
def stack() -> Iterator[LakehouseSettings]:
    """The local stack, up and healthy (a no-op when `make test` already started it)."""
    from lakehouse.stack import manager

    settings = get_settings()
    manager.up(settings)
    yield settings


@dataclass(frozen=True)
class Namespace:
    """Settings of a test's own corner of the stack: its topic and its schemas."""

    settings: LakehouseSettings
    env: dict[str, str]


@pytest.fixture(scope="module")
def namespace(stack: LakehouseSettings) -> Iterator[Namespace]:
    """A fresh topic and schema prefix for the tests of one module (the environment is restored after)."""
    tag = f"t{datetime.now(UTC):%m%d%H%M%S%f}"[:16]
    env = {"LAKEHOUSE_SCHEMA_PREFIX": f"{tag}_", "LAKEHOUSE_EVENTS_TOPIC": f"{tag}.clickstream.events"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    try:
        yield Namespace(settings=get_settings(), env={**os.environ, **env})
    finally:
        from lakehouse.realtime.flink import stop_all

        stop_all(stack.home, only_namespace=tag)  # stream jobs a test started in its namespace
        from lakehouse.realtime.pinot import PinotClient

        PinotClient.from_settings(stack).drop_tables(f"{tag}_")  # each would keep consuming Kafka
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()


@pytest.fixture
def clean_env(monkeypatch):
    """No LAKEHOUSE_* variable from the caller's environment: the settings' own defaults."""
    for name in list(os.environ):
        if name.startswith("LAKEHOUSE_"):
            monkeypatch.delenv(name)


def wait_until(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
