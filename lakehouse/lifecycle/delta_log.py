"""A Delta table's add actions as its log records them: path, size, partition values, modification time
and the statistics JSON, exactly as the writer (delta-rs or Spark) wrote it.

delta-rs hands out add actions with statistics already parsed into typed columns; archival keeps the
original JSON instead, so a restored file re-enters the log with the very statistics it left with and
Trino and delta-rs prune it exactly as before. The log is read from its newest checkpoint at or below
the version, then the JSON commits after it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from urllib.parse import unquote

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from lakehouse.ingest.delta_sink import table_filesystem

COMMIT = re.compile(r"^(\d{20})\.json$")
CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint(?:\.\d{10}\.\d{10})?\.parquet$")


@dataclass
class LogState:
    """A table at one version, from its log: live add actions by path, `txn` marks, and the log files read."""

    version: int
    adds: dict[str, dict] = field(default_factory=dict)
    txns: dict[str, int] = field(default_factory=dict)  # app id -> version (the exactly-once marks)
    files: list[str] = field(default_factory=list)  # names in _delta_log/ that hold this version's state


def _read_checkpoint(fs: pafs.FileSystem, log: str, names: list[str], state: LogState) -> None:
    for name in names:
        schema = pq.read_schema(f"{log}/{name}", filesystem=fs)
        table = pq.read_table(
            f"{log}/{name}", columns=[c for c in ("add", "txn") if c in schema.names], filesystem=fs
        )
        for add in table.column("add").to_pylist() if "add" in table.column_names else []:
            if add is not None:
                values = add.get("partitionValues") or {}
                state.adds[add["path"]] = {"path": add["path"], "size": add.get("size"),
                                           "partitionValues": dict(values) if isinstance(values, list) else values,
                                           "modificationTime": add.get("modificationTime"), "stats": add.get("stats"),
                                           "deletionVector": add.get("deletionVector")}  # fmt: skip
        for txn in table.column("txn").to_pylist() if "txn" in table.column_names else []:
            if txn is not None:
                state.txns[txn["appId"]] = txn["version"]


def log_state(uri: str, storage_options: dict[str, str], version: int) -> LogState:
    """The table at `version`: its newest checkpoint at or below it, then the JSON commits after it."""
    fs, root = table_filesystem(uri, storage_options)
    log = f"{root}/_delta_log"
    names = [info.base_name for info in fs.get_file_info(pafs.FileSelector(log))]
    checkpoints: dict[int, list[str]] = {}
    for name in names:
        m = CHECKPOINT.match(name)
        if m and int(m.group(1)) <= version:
            checkpoints.setdefault(int(m.group(1)), []).append(name)
    start = max(checkpoints, default=-1)
    state = LogState(version=version)
    if start >= 0:
        state.files += sorted(checkpoints[start])
        _read_checkpoint(fs, log, state.files, state)
    commits = sorted(
        int(m.group(1)) for n in names if (m := COMMIT.match(n)) and start < int(m.group(1)) <= version
    )
    if commits != list(range(start + 1, version + 1)):
        raise ValueError(f"the log of {uri} lacks commits between {start + 1} and {version} (cleaned up?)")
    for v in commits:
        state.files.append(f"{v:020d}.json")
        with fs.open_input_stream(f"{log}/{v:020d}.json") as f:
            for line in f.read().decode().splitlines():
                action = json.loads(line) if line.strip() else {}
                if "add" in action:
                    state.adds[action["add"]["path"]] = action["add"]
                elif "remove" in action:
                    state.adds.pop(action["remove"]["path"], None)
                elif "txn" in action:
                    state.txns[action["txn"]["appId"]] = action["txn"]["version"]
    return state


def live_add_actions(uri: str, storage_options: dict[str, str], version: int) -> dict[str, dict]:
    """{path as the log spells it: add action} of every file live at `version`."""
    return log_state(uri, storage_options, version).adds


def object_key(table_prefix: str, log_path: str) -> str:
    """The object key of a data file: the table's prefix and the log's (URL-encoded) relative path."""
    return f"{table_prefix}/{unquote(log_path)}"


def removals_by(
    uri: str, storage_options: dict[str, str], after: int, upto: int, key: str, value: str
) -> dict[str, int]:
    """{path: version} of the files removed by commits after `after` up to `upto` whose commit info has
    `key` = `value` (how archival finds its own remove commit after a crash, whatever else ran since)."""
    fs, root = table_filesystem(uri, storage_options)
    found: dict[str, int] = {}
    for v in range(after + 1, upto + 1):
        try:
            with fs.open_input_stream(f"{root}/_delta_log/{v:020d}.json") as f:
                actions = [json.loads(line) for line in f.read().decode().splitlines() if line.strip()]
        except FileNotFoundError:
            raise ValueError(f"the log of {uri} no longer has commit {v} (cleaned up)") from None
        info = next((a["commitInfo"] for a in actions if "commitInfo" in a), {})
        if info.get(key) == value:
            found.update({a["remove"]["path"]: v for a in actions if "remove" in a})
    return found
