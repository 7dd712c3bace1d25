"""The figures every table materialization records, as numeric metadata the Dagster UI plots over time:
rows and bytes of the table (from its Delta log, no scan), its version and the step's duration."""

from __future__ import annotations

import time

import dagster as dg


def table_figures(table, started: float) -> dict[str, dg.MetadataValue]:
    """`table`: a deltalake.DeltaTable (None: not written yet); `started`: time.monotonic() at the start."""
    figures = {"duration_s": dg.MetadataValue.float(round(time.monotonic() - started, 3))}
    if table is None:
        return figures
    adds = table.get_add_actions(flatten=True)
    columns = set(adds.schema.names)
    counts = adds.column("num_records").to_pylist() if "num_records" in columns else [None]
    rows = None if any(v is None for v in counts) else sum(counts)  # a file without statistics: no count
    size = sum(v or 0 for v in adds.column("size_bytes").to_pylist()) if "size_bytes" in columns else 0
    figures |= {"table_bytes": dg.MetadataValue.int(int(size)), "table_files": dg.MetadataValue.int(adds.num_rows),
                "table_version": dg.MetadataValue.int(table.version())}  # fmt: skip
    if rows is not None:
        figures["dagster/row_count"] = figures["table_rows"] = dg.MetadataValue.int(int(rows))
    return figures
