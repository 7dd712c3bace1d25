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
from urllib.parse import unquote

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from lakehouse.ingest.delta_sink import table_filesystem

COMMIT = re.compile(r"^(\d{20})\.json$")
CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint(?:\.\d{10}\.\d{10})?\.parquet$")


def _checkpoint_adds(fs: pafs.FileSystem, files: list[str]) -> dict[str, dict]:
    adds: dict[str, dict] = {}
    for path in files:
        table = pq.read_table(path, columns=["add"], filesystem=fs)
        for add in table.column("add").to_pylist():
            if add is not None:
                values = add.get("partitionValues") or {}
                adds[add["path"]] = {"path": add["path"], "size": add.get("size"),
                                     "partitionValues": dict(values) if isinstance(values, list) else values,
                                     "modificationTime": add.get("modificationTime"), "stats": add.get("stats")}  # fmt: skip
    return adds


def live_add_actions(uri: str, storage_options: dict[str, str], version: int) -> dict[str, dict]:
    """{path as the log spells it: add action} of every file live at `version`."""
    fs, root = table_filesystem(uri, storage_options)
    log = f"{root}/_delta_log"
    names = [info.base_name for info in fs.get_file_info(pafs.FileSelector(log))]
    checkpoints: dict[int, list[str]] = {}
    for name in names:
        m = CHECKPOINT.match(name)
        if m and int(m.group(1)) <= version:
            checkpoints.setdefault(int(m.group(1)), []).append(f"{log}/{name}")
    start = max(checkpoints, default=-1)
    adds = _checkpoint_adds(fs, sorted(checkpoints[start])) if start >= 0 else {}
    commits = sorted(
        int(m.group(1)) for n in names if (m := COMMIT.match(n)) and start < int(m.group(1)) <= version
    )
    if commits != list(range(start + 1, version + 1)):
        raise ValueError(f"the log of {uri} lacks commits between {start + 1} and {version} (cleaned up?)")
    for v in commits:
        with fs.open_input_stream(f"{log}/{v:020d}.json") as f:
            for line in f.read().decode().splitlines():
                action = json.loads(line) if line.strip() else {}
                if "add" in action:
                    adds[action["add"]["path"]] = action["add"]
                elif "remove" in action:
                    adds.pop(action["remove"]["path"], None)
    return adds


def object_key(table_prefix: str, log_path: str) -> str:
    """The object key of a data file: the table's prefix and the log's (URL-encoded) relative path."""
    return f"{table_prefix}/{unquote(log_path)}"
