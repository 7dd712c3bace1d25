"""The Kafka sensors' cursor logic (pure)."""

import json

from lakehouse.ingest.sensors import new_offsets, run_key


def test_a_run_is_requested_only_when_a_partition_moved():
    assert new_offsets(None, {"t:0": 0, "t:1": 0}) is None
    assert new_offsets(None, {"t:0": 3, "t:1": 0}) == {"t:0": 3, "t:1": 0}
    cursor = json.dumps({"t:0": 3, "t:1": 0})
    assert new_offsets(cursor, {"t:0": 3, "t:1": 0}) is None
    assert new_offsets(cursor, {"t:0": 3, "t:1": 1}) == {"t:0": 3, "t:1": 1}
    assert new_offsets(cursor, {"t:0": 3, "t:1": 0, "u:0": 1}) is not None  # a new topic appeared


def test_run_keys_are_deterministic_per_offsets():
    assert run_key("s", {"t:0": 3, "t:1": 1}) == run_key("s", {"t:1": 1, "t:0": 3})
    assert run_key("s", {"t:0": 3, "t:1": 1}) != run_key("s", {"t:0": 3, "t:1": 2})
    assert run_key("s", {"t:0": 3}).startswith("s@")
