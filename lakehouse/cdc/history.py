"""Product price history (SCD type 2) from the products change log (pure logic, no I/O).

One row per price a product had, valid from the commit that set it until the commit that changed
it (or deleted the product); the open version has `valid_to` NULL and `is_current` true. Rebuilt
from the whole change log, so it is the same whatever order or how often changes were delivered.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pyarrow as pa

from lakehouse.cdc.apply import change_lsn

PRICE_HISTORY_SCHEMA = pa.schema([
    pa.field("product_id", pa.int64(), nullable=False),
    pa.field("price", pa.decimal128(12, 2), nullable=False),
    pa.field("valid_from", pa.timestamp("ms", tz="UTC"), nullable=False),
    pa.field("valid_to", pa.timestamp("ms", tz="UTC")),
    pa.field("is_current", pa.bool_(), nullable=False),
    pa.field("set_at_lsn", pa.int64(), nullable=False),
])  # fmt: skip


def price_history(changes: list[dict]) -> pa.Table:
    """`changes`: change-log rows (op, before, after, lsn, offset, source_ts) of the products table."""
    seen: set[tuple[int, int]] = set()
    ordered = []
    for c in sorted(changes, key=lambda c: (change_lsn(c), c["offset"])):
        image = json.loads(c["before"] if c["op"] == "d" else c["after"])
        if (image["product_id"], c["lsn"]) in seen:  # a repeated delivery of the same change
            continue
        seen.add((image["product_id"], c["lsn"]))
        ordered.append((image["product_id"], c, image))
    rows: list[dict] = []
    open_version: dict[int, dict] = {}
    for product_id, c, image in ordered:
        current = open_version.get(product_id)
        if c["op"] == "d":
            if current:
                current["valid_to"], current["is_current"] = c["source_ts"], False
                del open_version[product_id]
            continue
        price = Decimal(str(image["price"])).quantize(Decimal("0.01"))
        if current and current["price"] == price:
            continue
        if current:
            current["valid_to"], current["is_current"] = c["source_ts"], False
        version = {"product_id": product_id, "price": price, "valid_from": c["source_ts"], "valid_to": None,
                   "is_current": True, "set_at_lsn": change_lsn(c)}  # fmt: skip
        rows.append(version)
        open_version[product_id] = version
    return pa.Table.from_pylist(rows, schema=PRICE_HISTORY_SCHEMA)
