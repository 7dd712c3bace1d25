"""The Kafka sensor's cursor logic (pure)."""

import json

from lakehouse.ingest.sensors import new_offsets, run_key


def test_a_run_is_requested_only_when_a_partition_moved():
    assert new_offsets(None, {0: 0, 1: 0}) is None
    assert new_offsets(None, {0: 3, 1: 0}) == {0: 3, 1: 0}
    cursor = json.dumps({"0": 3, "1": 0})
    assert new_offsets(cursor, {0: 3, 1: 0}) is None
    assert new_offsets(cursor, {0: 3, 1: 1}) == {0: 3, 1: 1}


def test_run_keys_are_deterministic_per_offsets():
    assert run_key("t", {0: 3, 1: 1}) == run_key("t", {1: 1, 0: 3})
    assert run_key("t", {0: 3, 1: 1}) != run_key("t", {0: 3, 1: 2})
    assert run_key("t", {0: 3}).startswith("t@")
